//! rtc-demo: the command-line binary around the media service.
//!
//! - `commands`: the command layer (argument parsing, `load` and `check`), thin over the rest.
//! - `load`: the open-loop load engine behind `rtc-demo load` (and inside `conduct`).
//! - `scenario`: scenario files (`scenarios/*.toml`) and `rtc-demo check`.
//! - `conduct`: the presenter's console.
//! - `errors`: the one error-chain formatter.
pub mod commands;
pub mod conduct;
pub mod errors;
pub mod image_ref;
pub mod kustomize;
pub mod load;
pub mod scenario;
