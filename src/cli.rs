//! The command line: one binary, four subcommands.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Load(crate::load::LoadArgs),
    /// The presenter's console: run a scenario against a cluster, locally, or replay a report.
    Conduct(crate::conduct::ConductArgs),
    /// Validate scenario files offline.
    Check(crate::scenario::CheckArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => rtc_service::server::main(args),
        Command::Load(args) => crate::load::main(args),
        Command::Conduct(args) => crate::conduct::main(args),
        Command::Check(args) => crate::scenario::main(args),
    }
}

/// What a subcommand that does not exist yet answers: exit 2 and say so.
pub fn not_built_yet(what: &str) -> ExitCode {
    eprintln!("rtc-demo {what}: not built yet in this version");
    ExitCode::from(2)
}
