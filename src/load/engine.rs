//! The engine: one scheduler task (intended send times from the rate plan), worker tasks
//! (one keep-alive HTTP/1.1 connection per target each, one request at a time), and one
//! aggregator task that owns the histograms and publishes a [`LoadSecond`] once per second.
//!
//! Connections have an age budget ([`LoadConfig::connection_max_age`], 1 s by default, a
//! little different for each worker): past it a worker closes its connection and opens a
//! new one. A balancer that picks a backend per connection (kube-proxy for a ClusterIP
//! Service, IPVS, Cilium, most ingresses) so spreads the load onto pods the autoscaler adds
//! within seconds; with connections kept for the whole run, a new pod would get nothing.
//!
//! Open loop: the scheduler puts each request's intended time in a queue when it falls due;
//! a free worker takes it and sends it. Latency is recorded from the intended time
//! (corrected) and from the actual send (uncorrected). When more than `max_inflight`
//! requests are due but unfinished, new ones are counted as dropped instead of queued.
//! Closed loop: N workers each send their next request as soon as the last one ends.
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::{broadcast, mpsc, oneshot, watch, Semaphore};

use super::stats::{micros, record_latency, LoadMode, LoadSecond, LoadSummary, Outcome, Percentiles, StatusCounts};

/// What to offer. Rates are requests per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RatePlan {
    /// Open loop at a constant rate (0 = idle).
    Constant { rps: f64 },
    /// Open loop, rate moving linearly from `from` to `to` over `over`, then held at `to`.
    Ramp { from: f64, to: f64, over: Duration },
    /// Closed loop with this many workers (each on its own connection).
    Concurrency { workers: usize },
}

impl RatePlan {
    fn validate(&self) -> Result<(), LoadError> {
        let ok = |r: f64| (0.0..=10_000_000.0).contains(&r);
        let valid = match *self {
            RatePlan::Constant { rps } => ok(rps),
            RatePlan::Ramp { from, to, .. } => ok(from) && ok(to),
            RatePlan::Concurrency { workers } => (1..=100_000).contains(&workers),
        };
        if valid {
            Ok(())
        } else {
            Err(LoadError::Plan(format!("{self:?} (expected rates in 0..=10000000 requests/s, workers in 1..=100000)")))
        }
    }
}

/// Everything the engine needs to start.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `http://host:port/path?query` URLs, used in round robin (may be empty: requests then
    /// fail as connect errors until `set_targets` gives some).
    pub targets: Vec<Uri>,
    pub method: Method,
    /// Request body (empty for none).
    pub body: Bytes,
    /// Connections per target in open loop (= workers).
    pub connections: usize,
    /// Whole-request timeout (connect + send + response body).
    pub timeout: Duration,
    /// Most requests due but unfinished (waiting for a connection + on the wire) in open loop.
    pub max_inflight: usize,
    pub plan: RatePlan,
    /// Stop scheduling after this many requests (`-n`).
    pub request_limit: Option<u64>,
    /// Close and re-open a connection once it is this old (each worker's budget is 75–125 %
    /// of it, so reconnects do not come in bursts); None keeps connections for the whole run.
    pub connection_max_age: Option<Duration>,
    /// Where worker tasks (and their connections) run: spread over these runtimes in turn,
    /// e.g. [`WorkerRuntimes::per_core`]'s one current-thread runtime per core, which avoids
    /// cross-thread wake-ups. Empty: the runtime `start` is called from.
    pub runtimes: Vec<tokio::runtime::Handle>,
}

/// One single-threaded tokio runtime per thread, kept alive until dropped; hand
/// [`WorkerRuntimes::handles`] to [`LoadConfig::runtimes`].
pub struct WorkerRuntimes {
    handles: Vec<tokio::runtime::Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl WorkerRuntimes {
    /// `threads` runtimes (0 = one per available core).
    pub fn per_core(threads: usize) -> std::io::Result<WorkerRuntimes> {
        let n = if threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { threads };
        let mut w = WorkerRuntimes { handles: Vec::new(), stops: Vec::new(), threads: Vec::new() };
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            w.handles.push(rt.handle().clone());
            w.stops.push(stop_tx);
            w.threads.push(std::thread::Builder::new().name(format!("load-worker-{i}")).spawn(move || {
                let _ = rt.block_on(stop_rx);
            })?);
        }
        Ok(w)
    }
    pub fn handles(&self) -> Vec<tokio::runtime::Handle> {
        self.handles.clone()
    }
}

impl Drop for WorkerRuntimes {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            targets: Vec::new(),
            method: Method::GET,
            body: Bytes::new(),
            connections: 50,
            timeout: Duration::from_secs(10),
            max_inflight: 10_000,
            plan: RatePlan::Constant { rps: 0.0 },
            request_limit: None,
            connection_max_age: Some(DEFAULT_CONNECTION_MAX_AGE),
            runtimes: Vec::new(),
        }
    }
}

/// The default connection age budget: new pods behind a per-connection balancer get their
/// share of the load within a couple of seconds.
pub const DEFAULT_CONNECTION_MAX_AGE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("`{url}` is not a usable target URL: {reason} (expected http://HOST:PORT/PATH?QUERY)")]
    Target { url: String, reason: String },
    #[error("invalid rate plan {0}")]
    Plan(String),
    #[error("the load engine needs a tokio runtime (expected LoadEngine::start to be called inside one)")]
    NoRuntime,
    #[error("connections must be in 1..=10000 and max-inflight at least 1 (got {connections} and {max_inflight})")]
    Sizes { connections: usize, max_inflight: usize },
}

/// A parsed target URL, ready for requests.
#[derive(Debug)]
pub(crate) struct Target {
    id: u64,
    authority: String,
    host: HeaderValue,
    path: Uri,
}

static TARGET_IDS: AtomicU64 = AtomicU64::new(1);

fn parse_target(uri: &Uri) -> Result<Target, LoadError> {
    let err = |reason: &str| LoadError::Target { url: uri.to_string(), reason: reason.to_string() };
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => return Err(err("https is not supported")),
        Some(_) => return Err(err("the scheme must be http")),
        None => return Err(err("no scheme")),
    }
    let auth = uri.authority().ok_or_else(|| err("no host"))?;
    if auth.host().is_empty() {
        return Err(err("no host"));
    }
    let authority = format!("{}:{}", auth.host(), auth.port_u16().unwrap_or(80));
    let host = HeaderValue::from_str(auth.as_str()).map_err(|_| err("the host is not a valid header value"))?;
    let pq = uri.path_and_query().map(|p| p.as_str()).filter(|p| !p.is_empty()).unwrap_or("/");
    let path = pq.parse::<Uri>().map_err(|_| err("the path is not valid"))?;
    Ok(Target { id: TARGET_IDS.fetch_add(1, Relaxed), authority, host, path })
}

fn parse_targets(uris: &[Uri]) -> Result<Vec<Arc<Target>>, LoadError> {
    uris.iter().map(|u| parse_target(u).map(Arc::new)).collect()
}

const RUNNING: u8 = 0;
const FINISHING: u8 = 1;
const STOPPING: u8 = 2;

/// Control state every worker watches: a version bumped on every mode change, and the run state.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Control {
    version: u64,
    state: u8,
}

struct Shared {
    start: Instant,
    method: Method,
    body: Bytes,
    timeout: Duration,
    connections: usize,
    connection_max_age: Option<Duration>,
    max_inflight: u64,
    queue: Mutex<VecDeque<Instant>>,
    permits: Semaphore,
    outstanding: AtomicU64,
    planned: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    /// Requests still allowed under `-n`.
    budget: AtomicU64,
    unlimited: bool,
    targets: RwLock<Arc<Vec<Arc<Target>>>>,
    targets_version: AtomicU64,
    rr: AtomicUsize,
    /// Closed-loop worker count; 0 = open loop.
    closed_workers: AtomicUsize,
    paused: AtomicBool,
    offered_bits: AtomicU64,
    scale_bits: AtomicU64,
    workers_spawned: AtomicUsize,
    runtimes: Vec<tokio::runtime::Handle>,
    control: watch::Sender<Control>,
    end: Mutex<Option<Instant>>,
}

impl Shared {
    fn bump(&self) {
        self.control.send_modify(|c| c.version += 1);
    }
    fn set_state(&self, state: u8) {
        self.control.send_modify(|c| {
            if c.state < state {
                c.state = state;
            }
        });
    }
    fn take_budget(&self) -> bool {
        if self.unlimited {
            return true;
        }
        self.budget.fetch_update(Relaxed, Relaxed, |b| b.checked_sub(1)).is_ok()
    }
}

struct Sample {
    intended: Instant,
    started: Instant,
    outcome: Outcome,
    done: Instant,
}

enum Ctl {
    Plan(RatePlan),
    Pause,
    Resume,
    Scale(f64),
    SetScale(f64),
    Finish,
}

/// Starts load engines. See [`LoadEngine::start`].
pub struct LoadEngine;

impl LoadEngine {
    /// Starts scheduling at once. Must be called inside a tokio runtime (multi-thread
    /// recommended). The first [`LoadSecond`] is published one second later.
    pub fn start(config: LoadConfig) -> Result<LoadHandle, LoadError> {
        config.plan.validate()?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(LoadError::NoRuntime);
        }
        if !(1..=10_000).contains(&config.connections) || config.max_inflight == 0 {
            return Err(LoadError::Sizes { connections: config.connections, max_inflight: config.max_inflight });
        }
        let targets = parse_targets(&config.targets)?;
        let (control, _) = watch::channel(Control { version: 0, state: RUNNING });
        let shared = Arc::new(Shared {
            start: Instant::now(),
            method: config.method,
            body: config.body,
            timeout: config.timeout,
            connections: config.connections,
            connection_max_age: config.connection_max_age.filter(|d| !d.is_zero()),
            max_inflight: config.max_inflight as u64,
            queue: Mutex::new(VecDeque::new()),
            permits: Semaphore::new(0),
            outstanding: AtomicU64::new(0),
            planned: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            budget: AtomicU64::new(config.request_limit.unwrap_or(u64::MAX)),
            unlimited: config.request_limit.is_none(),
            targets: RwLock::new(Arc::new(targets)),
            targets_version: AtomicU64::new(0),
            rr: AtomicUsize::new(0),
            closed_workers: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            offered_bits: AtomicU64::new(0f64.to_bits()),
            scale_bits: AtomicU64::new(1f64.to_bits()),
            workers_spawned: AtomicUsize::new(0),
            runtimes: config.runtimes,
            control,
            end: Mutex::new(None),
        });
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let (seconds, _) = broadcast::channel(1024);
        let (latest_tx, latest) = watch::channel(None);
        let (exhausted_tx, exhausted) = watch::channel(false);
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = oneshot::channel();

        ensure_workers(&shared, &results_tx, config.connections);
        let agg = Aggregator {
            shared: shared.clone(),
            seconds: seconds.clone(),
            latest: latest_tx,
            exhausted: exhausted_tx,
            limit: config.request_limit,
        };
        tokio::spawn(async move {
            let summary = agg.run(results_rx).await;
            let _ = done_tx.send(summary);
        });
        tokio::spawn(scheduler(shared.clone(), ctl_rx, results_tx, config.plan));
        Ok(LoadHandle { shared, ctl: ctl_tx, seconds, latest, exhausted, done: done_rx })
    }
}

/// Control over a running engine. Dropping it without `stop`/`finish` stops the load.
pub struct LoadHandle {
    shared: Arc<Shared>,
    ctl: mpsc::UnboundedSender<Ctl>,
    seconds: broadcast::Sender<Arc<LoadSecond>>,
    latest: watch::Receiver<Option<Arc<LoadSecond>>>,
    exhausted: watch::Receiver<bool>,
    done: oneshot::Receiver<LoadSummary>,
}

impl LoadHandle {
    /// Switches to another plan now (a ramp starts from now). The scale factor stays.
    pub fn set_plan(&self, plan: RatePlan) -> Result<(), LoadError> {
        plan.validate()?;
        let _ = self.ctl.send(Ctl::Plan(plan));
        Ok(())
    }
    /// Offered rate 0 (closed-loop workers idle) until `resume`; a ramp is frozen meanwhile.
    pub fn pause(&self) {
        let _ = self.ctl.send(Ctl::Pause);
    }
    pub fn resume(&self) {
        let _ = self.ctl.send(Ctl::Resume);
    }
    /// Multiplies the offered rate (or closed-loop worker count) by `factor`, e.g. 1.1 or 1/1.1.
    pub fn scale(&self, factor: f64) {
        if factor.is_finite() && factor > 0.0 {
            let _ = self.ctl.send(Ctl::Scale(factor));
        }
    }
    /// Sets the scale factor (1.0 = the plan as written).
    pub fn set_scale(&self, factor: f64) {
        if factor.is_finite() && factor > 0.0 {
            let _ = self.ctl.send(Ctl::SetScale(factor));
        }
    }
    /// The current scale factor.
    pub fn scale_factor(&self) -> f64 {
        f64::from_bits(self.shared.scale_bits.load(Relaxed))
    }
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Relaxed)
    }
    /// Replaces the round-robin target list (replicas come and go); open connections to
    /// removed targets are closed.
    pub fn set_targets(&self, targets: &[Uri]) -> Result<(), LoadError> {
        let parsed = parse_targets(targets)?;
        *self.shared.targets.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(parsed);
        self.shared.targets_version.fetch_add(1, Relaxed);
        Ok(())
    }
    /// Per-second snapshots from now on (a lagging receiver skips the oldest).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LoadSecond>> {
        self.seconds.subscribe()
    }
    /// The latest snapshot (None before the first second).
    pub fn latest(&self) -> watch::Receiver<Option<Arc<LoadSecond>>> {
        self.latest.clone()
    }
    pub fn elapsed(&self) -> Duration {
        self.shared.start.elapsed()
    }
    /// Resolves once `request_limit` requests were planned and all of them ended
    /// (never, without a limit).
    pub async fn exhausted(&self) {
        let mut rx = self.exhausted.clone();
        let _ = rx.wait_for(|e| *e).await;
        if !*rx.borrow() {
            std::future::pending::<()>().await;
        }
    }
    /// Stops now: nothing new is sent, requests on the wire are cancelled (counted as
    /// `cancelled`), requests still waiting count as dropped. Returns within about a second.
    pub async fn stop(mut self) -> LoadSummary {
        self.shared.mark_end();
        self.shared.set_state(STOPPING);
        let _ = self.ctl.send(Ctl::Finish);
        (&mut self.done).await.unwrap_or_else(|_| LoadSummary::empty())
    }
    /// Ends the run gracefully: nothing new is scheduled; requests already due are still
    /// sent and answered, for at most `grace`; then as `stop`.
    pub async fn finish(mut self, grace: Duration) -> LoadSummary {
        self.shared.mark_end();
        let _ = self.ctl.send(Ctl::Finish);
        self.shared.set_state(FINISHING);
        let done = &mut self.done;
        match tokio::time::timeout(grace, &mut *done).await {
            Ok(r) => r.unwrap_or_else(|_| LoadSummary::empty()),
            Err(_) => {
                self.shared.set_state(STOPPING);
                done.await.unwrap_or_else(|_| LoadSummary::empty())
            }
        }
    }
}

impl Drop for LoadHandle {
    fn drop(&mut self) {
        self.shared.set_state(STOPPING);
        let _ = self.ctl.send(Ctl::Finish);
    }
}

impl Shared {
    fn mark_end(&self) {
        let mut end = self.end.lock().unwrap_or_else(|e| e.into_inner());
        if end.is_none() {
            *end = Some(Instant::now());
        }
    }
}

fn ensure_workers(shared: &Arc<Shared>, results: &mpsc::UnboundedSender<Vec<Sample>>, n: usize) {
    while shared.workers_spawned.load(Relaxed) < n {
        let idx = shared.workers_spawned.fetch_add(1, Relaxed);
        let w = worker(idx, shared.clone(), results.clone());
        match shared.runtimes.get(idx % shared.runtimes.len().max(1)) {
            Some(rt) => drop(rt.spawn(w)),
            None => drop(tokio::spawn(w)),
        }
    }
}

/// A rate plan anchored at an instant: request k (0-based) is due at t0 + T(k+1), where
/// N(T) = k+1 and N is the integral of the scaled rate.
struct Segment {
    t0: Instant,
    from: f64,
    to: f64,
    over: f64,
    emitted: u64,
}

impl Segment {
    fn new(t0: Instant, plan: RatePlan) -> Segment {
        match plan {
            RatePlan::Constant { rps } => Segment { t0, from: rps, to: rps, over: 0.0, emitted: 0 },
            RatePlan::Ramp { from, to, over } => Segment { t0, from, to, over: over.as_secs_f64(), emitted: 0 },
            RatePlan::Concurrency { .. } => Segment { t0, from: 0.0, to: 0.0, over: 0.0, emitted: 0 },
        }
    }
    /// The unscaled rate `e` seconds after t0.
    fn rate_at(&self, e: f64) -> f64 {
        if self.over <= 0.0 || e >= self.over {
            self.to
        } else {
            self.from + (self.to - self.from) * (e / self.over).max(0.0)
        }
    }
    /// The rest of this plan from `now`, as a new segment.
    fn remaining(&self, now: Instant) -> Segment {
        let e = now.saturating_duration_since(self.t0).as_secs_f64();
        Segment { t0: now, from: self.rate_at(e), to: self.to, over: (self.over - e).max(0.0), emitted: 0 }
    }
    /// When request number `emitted` is due, with the rate multiplied by `scale`.
    fn next_due(&self, scale: f64) -> Option<Instant> {
        let n = (self.emitted + 1) as f64;
        let b = self.from * scale;
        let a = if self.over > 0.0 { (self.to - self.from) * scale / (2.0 * self.over) } else { 0.0 };
        let n_over = if self.over > 0.0 { (b + a * self.over) * self.over } else { 0.0 };
        let t = if self.over > 0.0 && n <= n_over {
            let denom = b + (b * b + 4.0 * a * n).max(0.0).sqrt();
            if denom <= 0.0 {
                return None;
            }
            2.0 * n / denom
        } else {
            let r = self.to * scale;
            if r <= 0.0 {
                return None;
            }
            self.over.max(0.0) + (n - n_over) / r
        };
        if !t.is_finite() || t > 1.0e9 {
            return None;
        }
        Some(self.t0 + Duration::from_secs_f64(t))
    }
}

async fn scheduler(
    shared: Arc<Shared>,
    mut ctl: mpsc::UnboundedReceiver<Ctl>,
    results: mpsc::UnboundedSender<Vec<Sample>>,
    plan: RatePlan,
) {
    let mut scale = 1.0f64;
    let mut plan_now = plan;
    let mut seg = Segment::new(Instant::now(), plan);
    let mut paused = false;
    let apply_mode = |plan: RatePlan, scale: f64, paused: bool, shared: &Arc<Shared>, seg: &Segment| {
        let closed = match plan {
            RatePlan::Concurrency { workers } => ((workers as f64 * scale).round() as usize).clamp(1, 100_000),
            _ => 0,
        };
        if closed > 0 {
            ensure_workers(shared, &results, closed);
        }
        shared.closed_workers.store(closed, Relaxed);
        shared.paused.store(paused, Relaxed);
        let offered = if paused || closed > 0 {
            0.0
        } else {
            seg.rate_at(Instant::now().saturating_duration_since(seg.t0).as_secs_f64()) * scale
        };
        shared.offered_bits.store(offered.to_bits(), Relaxed);
        shared.scale_bits.store(scale.to_bits(), Relaxed);
        shared.bump();
    };
    apply_mode(plan_now, scale, paused, &shared, &seg);
    let far = Duration::from_secs(3600);
    loop {
        let open = !matches!(plan_now, RatePlan::Concurrency { .. });
        let due = if open && !paused && shared.budget.load(Relaxed) > 0 { seg.next_due(scale) } else { None };
        let wake = due.unwrap_or_else(|| Instant::now() + far);
        tokio::select! {
            biased;
            msg = ctl.recv() => {
                let now = Instant::now();
                match msg {
                    None | Some(Ctl::Finish) => break,
                    Some(Ctl::Plan(p)) => { plan_now = p; seg = Segment::new(now, p); }
                    Some(Ctl::Pause) => { if !paused { paused = true; seg = seg.remaining(now); } }
                    Some(Ctl::Resume) => { if paused { paused = false; seg.t0 = now; seg.emitted = 0; } }
                    Some(Ctl::Scale(f)) => { scale = (scale * f).clamp(1e-6, 1e6); if !paused { seg = seg.remaining(now); } }
                    Some(Ctl::SetScale(f)) => { scale = f.clamp(1e-6, 1e6); if !paused { seg = seg.remaining(now); } }
                }
                apply_mode(plan_now, scale, paused, &shared, &seg);
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                if due.is_some() {
                    emit_due(&shared, &mut seg, scale);
                }
                let e = Instant::now().saturating_duration_since(seg.t0).as_secs_f64();
                let offered = if !open || paused { 0.0 } else { seg.rate_at(e) * scale };
                shared.offered_bits.store(offered.to_bits(), Relaxed);
            }
        }
    }
    shared.offered_bits.store(0f64.to_bits(), Relaxed);
    // Workers drain the queue (finish) or leave at once (stop); `results` drops here.
    shared.set_state(FINISHING);
}

fn emit_due(shared: &Shared, seg: &mut Segment, scale: f64) {
    let now = Instant::now();
    let mut queued = 0usize;
    {
        let mut q = shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(t) = seg.next_due(scale) {
            if t > now || !shared.take_budget() {
                break;
            }
            seg.emitted += 1;
            shared.planned.fetch_add(1, Relaxed);
            if shared.outstanding.load(Relaxed) >= shared.max_inflight {
                shared.dropped.fetch_add(1, Relaxed);
            } else {
                shared.outstanding.fetch_add(1, Relaxed);
                q.push_back(t);
                queued += 1;
            }
        }
    }
    if queued > 0 {
        shared.permits.add_permits(queued);
    }
}

/// An open connection: its target, its sender, and when its age budget runs out.
struct Conn {
    target: u64,
    sender: SendRequest<Full<Bytes>>,
    retire_at: Option<Instant>,
}

type Conns = Vec<Conn>;

/// This worker's connection age budget: 75–125 % of the configured one, spread by index.
fn worker_max_age(idx: usize, base: Option<Duration>) -> Option<Duration> {
    // The golden-ratio sequence spreads any number of workers evenly over [0, 1).
    let frac = (idx as f64 * 0.618_033_988_75).fract();
    base.map(|b| b.mul_f64(0.75 + 0.5 * frac))
}

async fn worker(idx: usize, shared: Arc<Shared>, results: mpsc::UnboundedSender<Vec<Sample>>) {
    let mut control = shared.control.subscribe();
    let mut conns: Conns = Vec::new();
    let max_age = worker_max_age(idx, shared.connection_max_age);
    let mut batch: Vec<Sample> = Vec::with_capacity(64);
    let mut targets = shared.targets.read().unwrap_or_else(|e| e.into_inner()).clone();
    let mut targets_version = shared.targets_version.load(Relaxed);
    // Long-lived futures, polled by every request: cancellation on stop, and the timeout
    // (pushing a timer's deadline later is cheap, creating one per request is not).
    let mut stop_rx = shared.control.subscribe();
    let stopped = async move {
        let _ = stop_rx.wait_for(|c| c.state == STOPPING).await;
    };
    tokio::pin!(stopped);
    let deadline = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(deadline);
    // A batch goes to the aggregator at most FLUSH_AFTER after its first sample, also while
    // the next request is still on its way: a request that queues for seconds on a saturated
    // pod must not hold the last one's sample back, or the per-second counts clump (the
    // achieved rate read 16, 80, 18, 80 req/s with the pod answering a steady 49).
    let flush_due = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(flush_due);
    loop {
        let ctl = *control.borrow_and_update();
        if ctl.state == STOPPING {
            break;
        }
        let closed = shared.closed_workers.load(Relaxed);
        let (intended, open) = if closed > 0 && ctl.state == RUNNING {
            if idx >= closed || shared.paused.load(Relaxed) || !shared.take_budget() {
                flush(&mut batch, &results);
                if control.changed().await.is_err() {
                    break;
                }
                continue;
            }
            shared.planned.fetch_add(1, Relaxed);
            (Instant::now(), false)
        } else if closed == 0 && idx < shared.connections {
            match shared.permits.try_acquire() {
                Ok(p) => p.forget(),
                Err(_) => {
                    flush(&mut batch, &results);
                    if ctl.state != RUNNING {
                        break;
                    }
                    tokio::select! {
                        p = shared.permits.acquire() => match p { Ok(p) => p.forget(), Err(_) => break },
                        r = control.changed() => { if r.is_err() { break; } continue; }
                    }
                }
            }
            let job = shared.queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
            match job {
                Some(t) => (t, true),
                None => continue,
            }
        } else {
            flush(&mut batch, &results);
            if ctl.state != RUNNING || control.changed().await.is_err() {
                break;
            }
            continue;
        };

        let v = shared.targets_version.load(Relaxed);
        if v != targets_version {
            targets = shared.targets.read().unwrap_or_else(|e| e.into_inner()).clone();
            targets_version = v;
            conns.retain(|c| targets.iter().any(|t| t.id == c.target));
        }
        shared.sent.fetch_add(1, Relaxed);
        let started = Instant::now();
        let outcome = if targets.is_empty() {
            Outcome::ConnectError
        } else {
            let target = if targets.len() == 1 {
                &targets[0]
            } else {
                &targets[shared.rr.fetch_add(1, Relaxed) % targets.len()]
            };
            deadline.as_mut().reset((started + shared.timeout).into());
            let outcome = {
                let send = send_one(&shared, &mut conns, target, max_age);
                tokio::pin!(send);
                loop {
                    tokio::select! {
                        biased;
                        o = &mut send => break o,
                        _ = &mut deadline => break Outcome::Timeout,
                        _ = &mut stopped => break Outcome::Cancelled,
                        _ = &mut flush_due, if !batch.is_empty() => flush(&mut batch, &results),
                    }
                }
            };
            if matches!(outcome, Outcome::Timeout | Outcome::Cancelled) {
                // The connection is mid-request: it cannot be reused.
                conns.retain(|c| c.target != target.id);
            }
            outcome
        };
        let done = Instant::now();
        if open {
            shared.outstanding.fetch_sub(1, Relaxed);
        }
        if batch.is_empty() {
            flush_due.as_mut().reset((done + FLUSH_AFTER).into());
        }
        batch.push(Sample { intended, started, outcome, done });
        if batch.len() >= 64 || done.duration_since(batch[0].done) >= FLUSH_AFTER {
            flush(&mut batch, &results);
        }
    }
    flush(&mut batch, &results);
}

/// How long a worker may hold finished samples before they go to the aggregator.
const FLUSH_AFTER: Duration = Duration::from_millis(20);

fn flush(batch: &mut Vec<Sample>, results: &mpsc::UnboundedSender<Vec<Sample>>) {
    if !batch.is_empty() {
        let _ = results.send(std::mem::replace(batch, Vec::with_capacity(64)));
    }
}

async fn connect(target: &Target) -> Result<SendRequest<Full<Bytes>>, Outcome> {
    let stream = tokio::net::TcpStream::connect(&target.authority).await.map_err(|_| Outcome::ConnectError)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|_| Outcome::ConnectError)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send_one(shared: &Shared, conns: &mut Conns, target: &Target, max_age: Option<Duration>) -> Outcome {
    // A reused keep-alive connection may have been closed by the server meanwhile: one retry
    // on a fresh connection when that happens before the request went out.
    for attempt in 0..2 {
        // Closed ones go, and so do those past their age budget (dropping the sender closes it).
        let now = Instant::now();
        conns.retain(|c| !c.sender.is_closed() && c.retire_at.is_none_or(|t| now < t));
        let (reused, pos) = match conns.iter().position(|c| c.target == target.id) {
            Some(p) => (true, p),
            None => match connect(target).await {
                Ok(sender) => {
                    conns.push(Conn { target: target.id, sender, retire_at: max_age.map(|a| Instant::now() + a) });
                    (false, conns.len() - 1)
                }
                Err(o) => return o,
            },
        };
        let sender = &mut conns[pos].sender;
        if sender.ready().await.is_err() {
            conns.swap_remove(pos);
            if reused && attempt == 0 {
                continue;
            }
            return Outcome::OtherError;
        }
        let req = Request::builder()
            .method(shared.method.clone())
            .uri(target.path.clone())
            .header(HOST, target.host.clone())
            .body(Full::new(shared.body.clone()));
        let req = match req {
            Ok(r) => r,
            Err(_) => return Outcome::OtherError,
        };
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                conns.swap_remove(pos);
                if reused && attempt == 0 && e.is_canceled() {
                    continue;
                }
                return Outcome::OtherError;
            }
        };
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                conns.retain(|c| c.target != target.id);
                return Outcome::OtherError;
            }
        }
        return Outcome::Status(status);
    }
    Outcome::OtherError
}

struct Aggregator {
    shared: Arc<Shared>,
    seconds: broadcast::Sender<Arc<LoadSecond>>,
    latest: watch::Sender<Option<Arc<LoadSecond>>>,
    exhausted: watch::Sender<bool>,
    limit: Option<u64>,
}

/// The second being aggregated: its latencies (µs) as recorded, reused from second to second.
#[derive(Default)]
struct Window {
    corrected: Vec<u64>,
    uncorrected: Vec<u64>,
    all_corrected: Vec<u64>,
    status: StatusCounts,
}

impl Window {
    fn clear(&mut self) {
        self.corrected.clear();
        self.uncorrected.clear();
        self.all_corrected.clear();
        self.status = StatusCounts::default();
    }
}

impl Aggregator {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Vec<Sample>>) -> LoadSummary {
        let mut total = LoadSummary::empty();
        let mut win = Window::default();
        let mut second = 0u64;
        let mut last = (0u64, 0u64, 0u64);
        let start = self.shared.start;
        loop {
            let tick = start + Duration::from_secs(second + 1);
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => {
                        for s in batch {
                            record(&mut total, &mut win, &s);
                        }
                        self.check_exhausted(&total);
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(tick.into()) => {
                    self.publish(second, 1.0, &mut win, &mut last);
                    self.check_exhausted(&total);
                    second += 1;
                }
            }
        }
        // Requests still waiting when the run ended were never sent.
        let left = {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            let n = q.len() as u64;
            q.clear();
            n
        };
        self.shared.dropped.fetch_add(left, Relaxed);
        self.shared.outstanding.fetch_sub(left.min(self.shared.outstanding.load(Relaxed)), Relaxed);
        let end = self.shared.end.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(Instant::now);
        // The last, partial second: from its start to now (requests due before the end may
        // have completed during the drain).
        let span = (start.elapsed().as_secs_f64() - second as f64).clamp(0.001, 1.0);
        if win.status.total() > 0 || end.saturating_duration_since(start).as_secs_f64() - second as f64 > 0.05 {
            self.publish(second, span, &mut win, &mut last);
        }
        let elapsed = end.saturating_duration_since(start).as_secs_f64().max(1e-9);
        total.elapsed_s = elapsed;
        total.planned = self.shared.planned.load(Relaxed);
        total.sent = self.shared.sent.load(Relaxed);
        total.dropped = self.shared.dropped.load(Relaxed);
        total.offered_rps = total.planned as f64 / elapsed;
        total.achieved_rps = total.completed as f64 / elapsed;
        total.corrected = Percentiles::of(&total.corrected_histogram);
        total.uncorrected = Percentiles::of(&total.uncorrected_histogram);
        total.all_corrected = Percentiles::of(&total.all_corrected_histogram);
        total.all_uncorrected = Percentiles::of(&total.all_uncorrected_histogram);
        total
    }

    fn check_exhausted(&self, total: &LoadSummary) {
        if let Some(limit) = self.limit {
            if total.status.total() + self.shared.dropped.load(Relaxed) >= limit && !*self.exhausted.borrow() {
                let _ = self.exhausted.send(true);
            }
        }
    }

    fn publish(&self, second: u64, span_s: f64, win: &mut Window, last: &mut (u64, u64, u64)) {
        let s = &self.shared;
        let (planned, sent, dropped) = (s.planned.load(Relaxed), s.sent.load(Relaxed), s.dropped.load(Relaxed));
        let closed = s.closed_workers.load(Relaxed) as u64;
        let paused = s.paused.load(Relaxed);
        let offered = f64::from_bits(s.offered_bits.load(Relaxed));
        let mode = if paused || (closed == 0 && offered <= 0.0) {
            LoadMode::Idle
        } else if closed > 0 {
            LoadMode::ClosedLoop
        } else {
            LoadMode::OpenLoop
        };
        let completed = win.status.total() - win.status.cancelled;
        let snap = LoadSecond {
            second,
            mode,
            offered_rps: offered,
            concurrency: if paused { 0 } else { closed },
            planned: planned - last.0,
            sent: sent - last.1,
            dropped: dropped - last.2,
            completed,
            achieved_rps: completed as f64 / span_s,
            inflight: s.outstanding.load(Relaxed) + if paused { 0 } else { closed },
            targets: s.targets.read().map(|t| t.len()).unwrap_or(0),
            status: win.status,
            corrected: Percentiles::of_samples(&mut win.corrected),
            uncorrected: Percentiles::of_samples(&mut win.uncorrected),
            all_corrected: Percentiles::of_samples(&mut win.all_corrected),
        };
        *last = (planned, sent, dropped);
        win.clear();
        let snap = Arc::new(snap);
        let _ = self.seconds.send(snap.clone());
        let _ = self.latest.send(Some(snap));
    }
}

fn record(total: &mut LoadSummary, win: &mut Window, s: &Sample) {
    total.status.add(s.outcome);
    win.status.add(s.outcome);
    match s.outcome {
        Outcome::Cancelled => return,
        Outcome::Status(code) => *total.status_codes.entry(code).or_insert(0) += 1,
        _ => {}
    }
    total.completed += 1;
    let corrected = micros(s.done.saturating_duration_since(s.intended));
    let uncorrected = micros(s.done.saturating_duration_since(s.started));
    record_latency(&mut total.all_corrected_histogram, corrected);
    record_latency(&mut total.all_uncorrected_histogram, uncorrected);
    win.all_corrected.push(corrected);
    // The SLO is about answers: an instant 503 must not make the latency look better.
    if matches!(s.outcome, Outcome::Status(200..=299)) {
        record_latency(&mut total.corrected_histogram, corrected);
        record_latency(&mut total.uncorrected_histogram, uncorrected);
        win.corrected.push(corrected);
        win.uncorrected.push(uncorrected);
    }
}
