//! `rtc-demo conduct`: the presenter's console (`crate::conduct`), with its exit status.
use std::process::ExitCode;

use crate::conduct::ConductArgs;

pub fn main(args: ConductArgs) -> ExitCode {
    match crate::conduct::run::main(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rtc-demo conduct: {}", crate::errors::chain(e.as_ref()));
            ExitCode::from(2)
        }
    }
}
