//! The command layer: the one binary's four subcommands, each parsed by clap and handed to
//! its command module (`serve` lives with the service crate). Library modules below hold no
//! command of their own.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod check;
pub mod conduct;
pub mod load;

#[derive(Debug, Parser)]
#[command(
    name = "rtc-demo",
    version,
    about = "Autoscaling real-time GPU media processing on Kubernetes, scripted for the stage",
    long_about = "rtc-demo serve runs the media service inside pods; rtc-demo conduct is the \
presenter's console that applies the manifests, ramps load through a scenario and charts \
pods, HPA state and p95 latency live; rtc-demo load is the open-loop load generator; \
rtc-demo check validates scenario files offline."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the media service (HTTP API, effects on CPU or CUDA, Prometheus metrics).
    Serve(rtc_service::server::ServeArgs),
    /// Generate load against one or more URLs (open-loop by default, coordinated-omission corrected).
    Load(load::LoadArgs),
    /// The presenter's console: run a scenario against a cluster, locally, or replay a report.
    Conduct(crate::conduct::ConductArgs),
    /// Validate scenario files offline.
    Check(check::CheckArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => rtc_service::server::main(args),
        Command::Load(args) => load::main(args),
        Command::Conduct(args) => conduct::main(args),
        Command::Check(args) => check::main(args),
    }
}
