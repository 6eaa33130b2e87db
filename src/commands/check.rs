//! `rtc-demo check FILE...`: validates scenario files offline.
use std::path::PathBuf;
use std::process::ExitCode;

use crate::scenario::Scenario;

/// `rtc-demo check FILE...`
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Scenario files to validate (TOML).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Validates every file; prints `ok FILE (name: N stages, total T)` or the error; exit 1
/// when any is invalid.
pub fn main(args: CheckArgs) -> ExitCode {
    let mut failed = 0;
    for file in &args.files {
        match Scenario::load(file) {
            Ok(s) => println!(
                "ok {} ({}: {} stages, {})",
                file.display(),
                s.name,
                s.stages.len(),
                rtc_service::duration::format_duration(s.total_duration())
            ),
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
