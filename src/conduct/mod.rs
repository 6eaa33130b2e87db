//! Placeholder until this subcommand is built.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ConductArgs {}

pub fn main(_args: ConductArgs) -> ExitCode {
    crate::cli::not_built_yet("conduct")
}
