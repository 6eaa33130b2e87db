//! Placeholder until this subcommand is built.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct LoadArgs {}

pub fn main(_args: LoadArgs) -> ExitCode {
    crate::cli::not_built_yet("load")
}
