//! `rtc-demo load`: flags (oha-compatible where they overlap) resolved into a run of the
//! load engine, from URLs or a scenario's stages; live lines, the summary or `--json`,
//! `--hgrm` files, and the thresholds' exit code.
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::{Method, Uri};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use anyhow::Context as _;

use crate::load::*;
use crate::scenario::Scenario;
use rtc_service::duration::{duration_arg, format_duration};

/// `rtc-demo load`: flags as in oha where they overlap.
#[derive(Debug, clap::Args)]
#[command(after_help = "Without -q (and without --concurrency or --scenario) the run is closed-loop with -c workers, \
as fast as the server answers (as oha does). With -q it is open-loop: every request has an intended send time, \
latency is reported both from it (corrected for coordinated omission) and from the actual send (uncorrected), \
and requests the client could not send in time are counted as dropped. \
Per-second lines go to stderr; the summary (or --json) to stdout. Exit 1 when a --threshold fails, 2 on bad input. \
With --webrtc (or a scenario whose [request] kind is \"webrtc\") the load is WebRTC sessions: \
`rtc-demo load --webrtc http://127.0.0.1:8080/whip?effects=blur,color --sessions 2..8 -z 60s --threshold frame_p95<100ms`.")]
pub struct LoadArgs {
    /// Target URL(s), used in round robin. With --scenario only http://HOST:PORT is taken from
    /// each; the scenario's [request] gives path and query (default: the scenario's load.url).
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,
    /// Open loop at this many requests per second.
    #[arg(short = 'q', long = "rate", value_name = "RPS", value_parser = rate_arg, conflicts_with_all = ["concurrency", "scenario"])]
    pub rate: Option<f64>,
    /// How long to run (default 10s, or until -n requests when -n is given).
    #[arg(short = 'z', long = "duration", value_name = "DURATION", value_parser = duration_arg, conflicts_with = "scenario")]
    pub duration: Option<Duration>,
    /// Keep-alive connections per target (default 50; the scenario's load.connections with --scenario).
    #[arg(short = 'c', long = "connections", value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub connections: Option<u64>,
    /// Stop after this many requests.
    #[arg(short = 'n', long = "requests", value_name = "N", value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "scenario")]
    pub requests: Option<u64>,
    /// Closed loop with N workers (the old demo's curl/xargs behaviour, for comparison).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100000), conflicts_with = "scenario")]
    pub concurrency: Option<u64>,
    /// HTTP method (default GET; the scenario's request.method with --scenario).
    #[arg(short = 'm', long, value_name = "METHOD", value_parser = method_arg)]
    pub method: Option<Method>,
    /// Whole-request timeout (default 10s; the scenario's request.timeout with --scenario).
    #[arg(short = 't', long, value_name = "DURATION", value_parser = duration_arg)]
    pub timeout: Option<Duration>,
    /// Most requests due but unanswered before new ones are counted as dropped (default 10000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10000000))]
    pub max_inflight: Option<u64>,
    /// Print the summary and the per-second series as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write the corrected latency distribution (HdrHistogram percentile format) to FILE, and
    /// the uncorrected one next to it (FILE with `.uncorrected` before the extension).
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Run the stages of this scenario file in order (manual stages advance after their duration).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Run only this stage of the scenario.
    #[arg(long, value_name = "NAME", requires = "scenario")]
    pub stage: Option<String>,
    /// One pod's capacity in requests/s, for a scenario whose rates are in pods
    /// (`rate = "2.5 pods"`); `rtc-demo conduct` measures it and passes it to its load Job.
    #[arg(long, value_name = "RPS", value_parser = rate_arg, requires = "scenario")]
    pub pod_rps: Option<f64>,
    /// The request's iterations, for a scenario that sizes them to a `service_time`
    /// (what `rtc-demo conduct` measured on the pod's device).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=rtc_service::params::MAX_ITERS as i64), requires = "scenario")]
    pub iters: Option<u32>,
    /// Pass/fail criterion, k6 style (repeatable): p95<100ms, uncorrected_p99<50ms, error_rate<1%, rps>=400 ...
    #[arg(long = "threshold", value_name = "EXPR", value_parser = threshold_arg)]
    pub thresholds: Vec<Threshold>,
    /// No per-second lines.
    #[arg(long)]
    pub quiet: bool,
    /// Re-open each connection once it is this old (0: keep it for the whole run), so that a
    /// balancer working per connection (a Kubernetes Service, an ingress) spreads the load
    /// onto pods added mid-run. `kubectl port-forward` sends everything to one pod whatever this is.
    #[arg(long, default_value = "1s", value_parser = duration_arg, value_name = "DUR")]
    pub connection_max_age: Duration,
    /// WebRTC sessions instead of HTTP requests: synthetic WHIP publishers (sendrecv, VP8, a
    /// clip encoded once) against each URL (http://HOST:PORT, `/whip` added; a URL's query
    /// gives the effects: http://HOST:PORT/whip?effects=blur,color). Each processed frame is
    /// timed back to its frame; a frame that never comes back is lost.
    #[arg(long, conflicts_with_all = ["rate", "concurrency", "requests", "hgrm", "method", "connections", "timeout", "max_inflight"])]
    pub webrtc: bool,
    /// WebRTC sessions to keep up: N, or FROM..TO ramped over --duration (default 1). A
    /// refused offer (503) is retried after its Retry-After, a failed session re-dialled.
    #[arg(long, value_name = "N|FROM..TO", value_parser = webrtc::sessions_arg)]
    pub sessions: Option<crate::load::webrtc::SessionPlan>,
    /// WebRTC: the video's size (default 640x360, or the scenario's pixels).
    #[arg(long, value_name = "WxH", value_parser = webrtc::size_arg)]
    pub size: Option<(usize, usize)>,
    /// WebRTC: frames per second each publisher sends (default 15).
    #[arg(long, value_name = "FPS", value_parser = clap::value_parser!(u32).range(1..=60))]
    pub fps: Option<u32>,
    /// WebRTC: the clip's bitrate in kbit/s (default 600).
    #[arg(long, value_name = "KBPS", value_parser = clap::value_parser!(u32).range(50..=20000))]
    pub kbps: Option<u32>,
    /// WebRTC: a frame whose processed frame is not back within this is lost (default 1s).
    #[arg(long, value_name = "DUR", value_parser = duration_arg)]
    pub frame_timeout: Option<Duration>,
    /// WebRTC: the bearer token the service's WHIP endpoint asks for (its --webrtc-token).
    #[arg(long, env = "RTC_WEBRTC_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

mod webrtc;

/// A flag value that is not what the flag takes.
#[derive(Debug, thiserror::Error)]
enum FlagError {
    #[error("`{0}` is not a rate (expected requests per second, a number in (0, 10000000])")]
    Rate(String),
    #[error("`{0}` is not an HTTP method (expected GET, POST, PUT, HEAD ...)")]
    Method(String),
}

fn rate_arg(s: &str) -> Result<f64, FlagError> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 10_000_000.0 => Ok(v),
        _ => Err(FlagError::Rate(s.into())),
    }
}

fn method_arg(s: &str) -> Result<Method, FlagError> {
    Method::from_bytes(s.to_ascii_uppercase().as_bytes()).map_err(|_| FlagError::Method(s.into()))
}

fn threshold_arg(s: &str) -> Result<Threshold, ThresholdError> {
    Threshold::parse(s)
}

/// One phase of a run: a plan held for a duration.
struct Phase {
    name: String,
    plan: RatePlan,
    duration: Option<Duration>,
}

struct Setup {
    targets: Vec<Uri>,
    config: LoadConfig,
    phases: Vec<Phase>,
    thresholds: Vec<Threshold>,
    label: String,
}

fn setup(args: &LoadArgs) -> anyhow::Result<Setup> {
    let scenario = match &args.scenario {
        Some(p) => {
            let s = Scenario::load(p)?;
            // Pods of capacity: only with the capacity stated (conduct measures it).
            Some(s.in_measured_units(args.pod_rps, args.iters))
        }
        None => None,
    };
    let mut urls: Vec<String> = args.urls.clone();
    if let Some(s) = &scenario {
        if urls.is_empty() {
            urls.extend(s.load.url.clone());
        }
        if urls.is_empty() {
            anyhow::bail!(
                "scenario `{}` has no load.url: give the service's base URL(s) after `rtc-demo load`, e.g. http://127.0.0.1:8080",
                s.name
            );
        }
        urls = urls.iter().map(|u| s.request.url_for(u)).collect();
    }
    if urls.is_empty() {
        anyhow::bail!("no target URL (expected one or more http://HOST:PORT/PATH URLs)");
    }
    let mut targets = Vec::new();
    for u in &urls {
        let uri: Uri =
            u.parse().map_err(|e| anyhow::anyhow!("`{u}` is not a URL: {e} (expected http://HOST:PORT/PATH?QUERY)"))?;
        targets.push(uri);
    }
    let mut thresholds = Vec::new();
    let mut phases = Vec::new();
    let mut config = LoadConfig { targets: targets.clone(), ..LoadConfig::default() };
    let label;
    if let Some(s) = &scenario {
        config.method = args.method.clone().unwrap_or(s.request.method.as_hyper());
        config.timeout = args.timeout.unwrap_or(s.request.timeout);
        config.connections = args.connections.map(|c| c as usize).unwrap_or(s.load.connections);
        config.max_inflight = args.max_inflight.map(|c| c as usize).unwrap_or(s.load.max_inflight);
        let stages: Vec<&crate::scenario::Stage> = match &args.stage {
            Some(name) => vec![s.stage(name)?],
            None => s.stages.iter().collect(),
        };
        for st in stages {
            phases.push(Phase { name: st.name.clone(), plan: st.plan()?, duration: Some(st.duration) });
        }
        thresholds.extend(s.thresholds.iter().cloned());
        label = format!("scenario {}", s.name);
    } else {
        config.method = args.method.clone().unwrap_or(Method::GET);
        config.timeout = args.timeout.unwrap_or(Duration::from_secs(10));
        config.connections = args.connections.map(|c| c as usize).unwrap_or(50);
        config.max_inflight = args.max_inflight.map(|c| c as usize).unwrap_or(10_000);
        config.request_limit = args.requests;
        let duration = args.duration.or(if args.requests.is_some() { None } else { Some(Duration::from_secs(10)) });
        let plan = match (args.rate, args.concurrency) {
            (Some(rps), _) => RatePlan::Constant { rps },
            (None, Some(n)) => {
                config.connections = n as usize;
                RatePlan::Concurrency { workers: n as usize }
            }
            (None, None) => RatePlan::Concurrency { workers: config.connections },
        };
        label = match plan {
            RatePlan::Constant { rps } => format!("open loop at {rps} req/s"),
            RatePlan::Concurrency { workers } => format!("closed loop, {workers} workers"),
            RatePlan::Ramp { .. } => "ramp".into(),
        };
        phases.push(Phase { name: "run".into(), plan, duration });
    }
    config.connection_max_age = Some(args.connection_max_age).filter(|d| !d.is_zero());
    if config.timeout.is_zero() {
        anyhow::bail!("--timeout must be positive (expected a duration such as 5s)");
    }
    thresholds.extend(args.thresholds.iter().cloned());
    config.plan = phases[0].plan;
    Ok(Setup { targets, config, phases, thresholds, label })
}

#[derive(Serialize)]
struct JsonReport<'a> {
    run: &'a str,
    targets: Vec<String>,
    connections: usize,
    latency_labels: LatencyLabels,
    summary: &'a LoadSummary,
    seconds: Vec<&'a LoadSecond>,
    thresholds: &'a [ThresholdResult],
    passed: bool,
}

#[derive(Serialize)]
struct LatencyLabels {
    corrected: &'static str,
    uncorrected: &'static str,
}

pub fn main(args: LoadArgs) -> ExitCode {
    match webrtc::wanted(&args) {
        Ok(true) => return webrtc::main(args),
        Ok(false) => {}
        Err(e) => {
            eprintln!("rtc-demo load: {}", crate::errors::chain(e.as_ref()));
            return ExitCode::from(2);
        }
    }
    let setup = match setup(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtc-demo load: {}", crate::errors::chain(e.as_ref()));
            return ExitCode::from(2);
        }
    };
    // Workers on one single-threaded runtime per core (a request, its connection and its
    // timer stay on one thread); scheduler, aggregator and printing on this thread.
    let runtimes = WorkerRuntimes::per_core(0);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let (rt, runtimes) = match (rt, runtimes) {
        (Ok(rt), Ok(w)) => (rt, w),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("rtc-demo load: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let mut setup = setup;
    setup.config.runtimes = runtimes.handles();
    let code = rt.block_on(run(args, setup));
    drop(runtimes);
    code
}

/// Resolves on SIGINT or SIGTERM with the shell's exit code for it (128 + signal number).
/// The SIGTERM handler is installed now, not at the first poll, so a signal that comes
/// before the first second is not the default (silent) death.
fn stop_signal() -> impl std::future::Future<Output = u8> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate()).ok();
    async move {
        let term = async {
            match term {
                Some(mut t) => t.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => 130,
            _ = term => 143,
        }
    }
}

async fn run(args: LoadArgs, setup: Setup) -> ExitCode {
    let Setup { targets, config, phases, thresholds, label } = setup;
    let connections = config.connections;
    let timeout = config.timeout;
    let handle = match LoadEngine::start(config) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("rtc-demo load: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rx = handle.subscribe();
    let mut series: Vec<Arc<LoadSecond>> = Vec::new();
    if !args.quiet {
        eprintln!(
            "rtc-demo load: {label}, {} target(s), {connections} connection(s), timeout {}",
            targets.len(),
            format_duration(timeout)
        );
    }
    // Ctrl-C, or SIGTERM from the kubelet when the console deletes the load Job between
    // stages: either stops the load and still prints the summary.
    let stop_signal = stop_signal();
    tokio::pin!(stop_signal);
    let mut interrupted = None;
    'phases: for (i, phase) in phases.iter().enumerate() {
        if i > 0 {
            if let Err(e) = handle.set_plan(phase.plan) {
                eprintln!("rtc-demo load: {e}");
                break;
            }
        }
        if phases.len() > 1 && !args.quiet {
            eprintln!("-- stage {}/{}: {} ({})", i + 1, phases.len(), phase.name, describe_plan(&phase.plan));
        }
        let end = phase.duration.map(|d| tokio::time::Instant::now() + d);
        loop {
            tokio::select! {
                s = rx.recv() => match s {
                    Ok(snap) => { print_second(&args, &snap); series.push(snap); }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break 'phases,
                },
                _ = sleep_until_opt(end) => break,
                _ = handle.exhausted() => break 'phases,
                code = &mut stop_signal => { interrupted = Some(code); break 'phases; }
            }
        }
    }
    let summary = if interrupted.is_some() { handle.stop().await } else { handle.finish(timeout).await };
    while let Ok(snap) = rx.try_recv() {
        print_second(&args, &snap);
        series.push(snap);
    }
    let results: Vec<ThresholdResult> = thresholds.iter().map(|t| t.evaluate(&summary)).collect();
    let passed = results.iter().all(|r| r.passed);

    if let Some(path) = &args.hgrm {
        if let Err(e) = write_hgrm(path, &summary) {
            eprintln!("rtc-demo load: {}", crate::errors::chain(e.as_ref()));
            return ExitCode::from(2);
        }
    }
    let human = human_summary(&label, connections, targets.len(), &summary, &results);
    let report = JsonReport {
        run: &label,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        connections,
        latency_labels: LatencyLabels { corrected: CORRECTED_LABEL, uncorrected: UNCORRECTED_LABEL },
        summary: &summary,
        seconds: series.iter().map(|s| s.as_ref()).collect(),
        thresholds: &results,
        passed,
    };
    print_outcome(&human, args.json.then_some(&report), interrupted, passed)
}

/// The summary on stdout, or with `--json` the report there and the summary on stderr; the
/// exit code: the signal's (128 + n) when interrupted, else 1 when a threshold failed.
fn print_outcome(human: &str, json: Option<&impl Serialize>, interrupted: Option<u8>, passed: bool) -> ExitCode {
    match json {
        Some(report) => {
            eprint!("{human}");
            match serde_json::to_string_pretty(report) {
                Ok(j) => println!("{j}"),
                Err(e) => {
                    eprintln!("rtc-demo load: cannot write JSON: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        None => print!("{human}"),
    }
    let _ = std::io::stdout().flush();
    match interrupted {
        Some(code) => ExitCode::from(code),
        None if passed => ExitCode::SUCCESS,
        None => ExitCode::from(1),
    }
}

async fn sleep_until_opt(end: Option<tokio::time::Instant>) {
    match end {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn describe_plan(p: &RatePlan) -> String {
    match *p {
        RatePlan::Constant { rps } => format!("{rps} req/s"),
        RatePlan::Ramp { from, to, over } => format!("ramp {from} -> {to} req/s over {}", format_duration(over)),
        RatePlan::Concurrency { workers } => format!("closed loop, {workers} workers"),
    }
}

fn print_second(args: &LoadArgs, s: &LoadSecond) {
    if args.quiet {
        return;
    }
    eprintln!("{}", second_line(s));
}

fn uncorrected_path(path: &Path) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.uncorrected.{}", ext.to_string_lossy()),
        None => format!("{stem}.uncorrected"),
    };
    path.with_file_name(name)
}

fn write_hgrm(path: &Path, s: &LoadSummary) -> anyhow::Result<()> {
    let up = uncorrected_path(path);
    for (p, h, title) in [
        (path, &s.corrected_histogram, format!("latency in ms, {CORRECTED_LABEL}")),
        (up.as_path(), &s.uncorrected_histogram, format!("latency in ms, {UNCORRECTED_LABEL}")),
    ] {
        std::fs::write(p, percentile_distribution(h, &title))
            .with_context(|| format!("--hgrm: cannot write {} (expected a writable file path)", p.display()))?;
    }
    Ok(())
}
