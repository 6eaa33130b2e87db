//! `rtc-demo check FILE...`: validates scenario files offline; `--hpa FILE` reads a
//! HorizontalPodAutoscaler manifest as the local rehearsal's autoscaler will.
use std::path::PathBuf;
use std::process::ExitCode;

use crate::conduct::hpa::HpaSpec;
use crate::scenario::Scenario;

/// `rtc-demo check FILE...` or `rtc-demo check --hpa FILE [--json]`
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Scenario files to validate (TOML).
    #[arg(required_unless_present = "hpa", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Read a HorizontalPodAutoscaler manifest (YAML) and print the settings the local
    /// rehearsal's autoscaler takes from it: replicas, metric, target, windows, policies.
    #[arg(long, value_name = "FILE", conflicts_with = "files")]
    pub hpa: Option<PathBuf>,
    /// With --hpa: print the settings as one JSON line (what `conduct` reads back).
    #[arg(long, requires = "hpa")]
    pub json: bool,
}

/// Validates every file; prints `ok FILE (name: N stages, total T)` or the error; exit 1
/// when any is invalid.
pub fn main(args: CheckArgs) -> ExitCode {
    if let Some(path) = &args.hpa {
        return check_hpa(path, args.json);
    }
    let mut failed = 0;
    for file in &args.files {
        match Scenario::load(file) {
            Ok(s) => {
                println!(
                    "ok {} ({}: {} stages, {})",
                    file.display(),
                    s.name,
                    s.stages.len(),
                    rtc_service::duration::format_duration(s.total_duration())
                );
                for line in measured_units(&s) {
                    println!("  {line}");
                }
            }
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} scenario files invalid", args.files.len());
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// What a scenario leaves to the capacity probe, explained: rates in pods, iterations sized
/// to a service time.
fn measured_units(s: &Scenario) -> Vec<String> {
    let mut out = Vec::new();
    let pods: Vec<String> =
        s.stages.iter().filter_map(|st| st.pods_text().map(|p| format!("{} {p}", st.name))).collect();
    if !pods.is_empty() {
        out.push(format!(
            "rates in pods of capacity ({}): one pod = the requests/s one pod holds within the SLO's p95 of {}, which `rtc-demo conduct` measures on one pod (one rehearsal replica) before the stages; each rate is that many times it",
            pods.join(", "),
            rtc_service::duration::format_duration(s.slo.p95)
        ));
    }
    if let Some(t) = s.request.service_time {
        out.push(format!(
            "iters sized to a {} service time: `rtc-demo conduct` times the request at 1 and 10 iterations on the pod's device and picks the iterations nearest it",
            rtc_service::duration::format_duration(t)
        ));
    }
    out
}

/// `--hpa FILE`: the settings, or the error (file, field, what is allowed) with exit 1.
fn check_hpa(path: &std::path::Path, json: bool) -> ExitCode {
    match HpaSpec::load(path) {
        Ok(spec) if json => match serde_json::to_string(&spec) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot write the settings as JSON: {e}");
                ExitCode::from(2)
            }
        },
        Ok(spec) => {
            println!("ok {} ({})", path.display(), spec.summary());
            ExitCode::SUCCESS
        }
        Err(e) if json => {
            // The bare reason: the console that asked names the file itself.
            eprintln!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}
