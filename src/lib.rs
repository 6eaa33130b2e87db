//! rtc-demo: the command-line binary around the media service.
//!
//! - `cli`: argument parsing and dispatch to the subcommands.
//! - `load`: the open-loop load engine behind `rtc-demo load` (and inside `conduct`).
//! - `scenario`: scenario files (`scenarios/*.toml`) and `rtc-demo check`.
//! - `conduct`: the presenter's console.
pub mod cli;
pub mod conduct;
pub mod kustomize;
pub mod load;
pub mod scenario;
