//! `rtc-demo serve`: flags, logging, the device, the listener, and graceful shutdown.
//!
//! Shutdown (SIGTERM/SIGINT): readiness turns false at once; new requests are still
//! served for `--drain-delay` so endpoints can drop this pod; then the listener closes
//! and in-flight work gets `--shutdown-timeout` to finish. Exit 0 when it did, 1 if work
//! had to be abandoned. A second signal skips the rest of the drain delay. WebRTC sessions
//! take no newcomers once draining; running ones continue until they end or the shutdown
//! timeout, when they are ended (a session is not abandoned work: exit 0).
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::Notify;

use crate::app::{AppConfig, AppState};
use crate::device::{self, DeviceChoice};
use crate::duration::duration_arg;
use crate::http_server::{self, ConnectionLimits};
use crate::memory::{self, MemoryBudget};

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the log says which).
    #[arg(long, env = "RTC_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Where effects run: auto = CUDA if a driver and GPU are found, else CPU (logged).
    #[arg(long, env = "RTC_DEVICE", value_enum, default_value = "auto")]
    pub device: DeviceChoice,

    /// emulated device: effective memory bandwidth of the modelled GPU, GB/s (service time =
    /// the bytes the CUDA kernels move / this). Default: an H100 SXM's 3,350 GB/s.
    #[arg(long, env = "RTC_EMULATED_BANDWIDTH", default_value_t = device::emulated::DEFAULT_BANDWIDTH_GBPS, value_name = "GBPS")]
    pub emulated_bandwidth: f64,

    /// emulated device: the same service time for every frame instead of the bandwidth model.
    #[arg(long, env = "RTC_EMULATED_FRAME_TIME", value_parser = duration_arg, value_name = "DUR")]
    pub emulated_frame_time: Option<Duration>,

    /// Requests computed at once; the rest wait in the queue, served in arrival order.
    /// Default: 1 on the CPU (each request gets every core and finishes before the next
    /// starts), 2 streams on CUDA and the emulated device.
    #[arg(long, env = "RTC_WORKERS", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: Option<u32>,

    /// CPU threads per worker (0 = the cores shared out among the workers). Workers x
    /// threads never exceeds the cores: asking for more gives fewer, with a warning.
    #[arg(long, env = "RTC_THREADS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub threads: u32,

    /// Requests admitted at once (queued + computing); beyond it, 503 with Retry-After.
    #[arg(long, env = "RTC_MAX_INFLIGHT", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_inflight: u32,

    /// Memory the service may use, e.g. 900Mi or 2GiB. Default: the container's cgroup memory
    /// limit less 10 % (at least 64 MiB), else half the machine's memory. Requests whose
    /// frames do not fit in what is left of it are answered 503 (reason `memory`).
    #[arg(long, env = "RTC_MEMORY_BUDGET", value_parser = memory::parse_size, value_name = "SIZE")]
    pub memory_budget: Option<u64>,

    /// Window of the app_request_latency_p95_seconds gauge (whole seconds).
    #[arg(long, env = "RTC_P95_WINDOW", default_value = "30s", value_parser = duration_arg)]
    pub p95_window: Duration,

    /// After SIGTERM: keep serving this long with readiness false.
    #[arg(long, env = "RTC_DRAIN_DELAY", default_value = "5s", value_parser = duration_arg)]
    pub drain_delay: Duration,

    /// After the drain delay: how long in-flight requests may take to finish.
    #[arg(long, env = "RTC_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = duration_arg)]
    pub shutdown_timeout: Duration,

    /// A /process body must arrive whole within this of its head; a slower one is answered
    /// 408 and its memory reservation released, so trickling clients cannot hold the pod.
    #[arg(long, env = "RTC_BODY_TIMEOUT", default_value = "30s", value_parser = duration_arg)]
    pub body_timeout: Duration,

    /// Connections open at once; one more is closed as soon as it is accepted
    /// (app_connections_refused_total).
    #[arg(long, env = "RTC_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// A kept-alive connection with no request for this long is closed.
    #[arg(long, env = "RTC_IDLE_TIMEOUT", default_value = "60s", value_parser = duration_arg)]
    pub idle_timeout: Duration,

    #[command(flatten)]
    pub webrtc: crate::webrtc::WebRtcArgs,

    /// Log format: auto = JSON when stdout is not a terminal.
    #[arg(long, env = "RTC_LOG_FORMAT", value_enum, default_value = "auto")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Auto,
    Json,
    Text,
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RTC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}

pub fn main(args: ServeArgs) -> ExitCode {
    init_logging(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("serve-io").build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtc-demo serve: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rtc-demo serve: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let emulated = device::ServiceTimeModel::from_flags(args.emulated_bandwidth, args.emulated_frame_time);
    let budget = MemoryBudget::new(memory::limit::resolve(args.memory_budget)).map_err(anyhow::Error::msg)?;
    tracing::info!(
        budget = %budget.choice(),
        for_requests_mib = budget.for_requests() >> 20,
        pool_mib = budget.pool().cap() >> 20,
        "memory budget"
    );
    tokio::spawn(budget.clone().release_idle_buffers());
    let device = device::open(
        args.device,
        args.workers.map(|w| w as usize),
        args.threads as usize,
        emulated,
        budget.pool().clone(),
    )?;
    tracing::info!(device = device.info().kind, name = %device.info().name, workers = device.workers(), "device opened");
    let state = AppState::new(
        device,
        budget,
        &AppConfig {
            max_inflight: args.max_inflight as usize,
            p95_window: args.p95_window,
            body_timeout: args.body_timeout,
        },
    );
    state.attach_webrtc(crate::webrtc::WebRtc::start(&args.webrtc, state.clone()).await?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (--listen): {e}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, max_inflight = args.max_inflight, "listening");

    let stop_accepting = Arc::new(Notify::new());
    let server = {
        let stop = stop_accepting.clone();
        let state = state.clone();
        let limits = ConnectionLimits {
            max_connections: args.max_connections as usize,
            head_timeout: Duration::from_secs(30),
            idle_timeout: args.idle_timeout,
        };
        tokio::spawn(
            async move { http_server::serve(listener, state, limits, async move { stop.notified().await }).await },
        )
    };

    let mut signals = Signals::new()?;
    let which = signals.next().await;
    state.start_draining();
    tracing::info!(signal = which, drain_delay = ?args.drain_delay, inflight = state.inflight(), "draining: readiness is now false");
    tokio::select! {
        _ = tokio::time::sleep(args.drain_delay) => {}
        again = signals.next() => tracing::warn!(signal = again, "second signal: skipping the rest of the drain delay"),
    }
    stop_accepting.notify_one();
    tracing::info!(inflight = state.inflight(), timeout = ?args.shutdown_timeout, "closing the listener; finishing in-flight work");
    let webrtc = state.webrtc().cloned();
    let sessions = webrtc.as_ref().map_or(0, |w| w.active_sessions());
    if sessions > 0 {
        tracing::info!(sessions, timeout = ?args.shutdown_timeout, "WebRTC sessions continue until they end or the shutdown timeout");
    }
    let sessions_done = async {
        if let Some(w) = &webrtc {
            if tokio::time::timeout(args.shutdown_timeout, w.idle()).await.is_err() {
                let ended = w.end_all().await;
                tracing::info!(ended, "shutdown timeout: WebRTC sessions ended");
            }
        }
    };
    let (http, ()) = tokio::join!(tokio::time::timeout(args.shutdown_timeout, server), sessions_done);
    match http {
        Ok(Ok(Ok(()))) => {
            tracing::info!("shut down cleanly");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Ok(Err(e))) => Err(anyhow::anyhow!("server error: {e}")),
        Ok(Err(e)) => Err(anyhow::anyhow!("server task failed: {e}")),
        Err(_) => {
            tracing::error!(inflight = state.inflight(), "shutdown timeout passed with work in flight; abandoning it");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// SIGTERM and SIGINT as one stream.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
}
