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
//! - `app`: the API, an axum router (`/process` and the rest); `frame_body`: a `/process`
//!   body copied once into the pooled frame, within its deadline.
//! - `http_server`: hyper's HTTP/1.1 server under it, with the per-pod connection bounds.
//! - `webrtc`: WebRTC sessions (WHIP/WHEP signalling, str0m, VP8 through libvpx), the
//!   camera's frames through the same device and effects, and the page at `/webrtc`.
//! - `server`: the `serve` subcommand (flags, signals, shutdown).
pub mod app;
pub mod device;
pub mod duration;
pub mod effects;
pub mod frame;
pub mod frame_body;
pub mod http_server;
pub mod i420;
pub mod latency_window;
pub mod load_signal;
pub mod memory;
pub mod metrics;
pub mod params;
pub mod quantity;
pub mod server;
pub mod webrtc;
