//! Placeholder until this subcommand is built.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {}

pub fn main(_args: CheckArgs) -> ExitCode {
    crate::cli::not_built_yet("check")
}
