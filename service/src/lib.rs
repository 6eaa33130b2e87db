//! The rtc-demo media service.
//!
//! - `frame`: RGBA8 frames, the deterministic synthetic test frame, checksums.
//! - `effects`: the effect definitions (blur, bgblur, translate, color) and their CPU implementation.
//! - `i420`: I420 <-> RGBA conversion for raw frames.
//! - `device`: the `Device` trait the HTTP layer talks to, with the CPU and CUDA back ends.
//! - `memory`: the memory budget (from the cgroup limit) that admission counts bytes against,
//!   and the pool of frame buffers kept for reuse.
//! - `params`: parsing and validating `/process` requests.
//! - `metrics`: Prometheus metrics, including the time-windowed p95 (`latency_window`) and
//!   the load-proportional signal (`load_signal`: concurrency and busy workers over time).
//! - `app`: the API: `/process`, and the axum router for the rest.
//! - `http1`: the HTTP/1.1 server under it, which reads a frame from the socket straight into
//!   the buffer the effects work on.
//! - `server`: the `serve` subcommand (flags, signals, shutdown).
pub mod app;
pub mod device;
pub mod duration;
pub mod effects;
pub mod frame;
pub mod http1;
pub mod i420;
pub mod latency_window;
pub mod load_signal;
pub mod memory;
pub mod metrics;
pub mod params;
pub mod server;
