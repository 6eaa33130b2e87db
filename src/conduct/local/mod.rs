//! The `local` backend: replicas are `rtc-demo serve` child processes on loopback ports,
//! scaled by [`HpaController`] with the manifest's settings; load from the load engine spreads
//! over the ready replicas (round robin). One task owns everything (the replicas, the
//! autoscaler, the [`Timeline`], the load driver, the Prometheus readings sent by its
//! poller) and publishes a snapshot every second; the console talks to it through channels
//! only. Dropping the backend stops every replica.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::hpa::{dead_band_p95, HpaController, HpaDecision, HpaInput, HpaSpec, MetricInput, MetricKind, PodSample};
use super::http::{HttpClient, HttpError};
use super::load_driver::{DriverResult, EngineDriver, LoadDriver, Unconfigured, WebRtcDriver, STOP_DEADLINE};
use super::model::*;
use super::prom::{self, Polled};
use super::timeline::{self, PodCounts, ServerReading, Timeline};
use crate::load::LoadConfig;
use metrics::LocalSignal;

pub mod metrics;
pub mod replica;

use replica::{Phase, Replica, SpawnSpec};

/// Everything the local backend needs.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub spawn: SpawnSpec,
    pub port_base: u16,
    /// The autoscaler (min/max already set for this machine).
    pub hpa: HpaSpec,
    /// `/process?pixels=…` (path and query of the target request).
    pub path_and_query: String,
    pub method: hyper::Method,
    pub connections: usize,
    pub max_inflight: usize,
    pub timeout: Duration,
    /// `--prometheus URL` and the p95 query.
    pub prometheus: Option<(String, String)>,
    /// How often the autoscaler runs (the HPA's sync period).
    pub sync_period: Duration,
    pub namespace: String,
    pub deployment: String,
    pub overlay: String,
    /// WebRTC sessions instead of requests (a scenario whose `[request] kind = "webrtc"`):
    /// the publishers' video; targets and plan come from the replicas and the stages.
    pub webrtc: Option<crate::load::webrtc::WebRtcConfig>,
}

impl LocalConfig {
    fn label(&self) -> BackendLabel {
        BackendLabel::Local { device: self.spawn.device.label().into() }
    }
}

pub struct LocalBackend {
    handle: BackendHandle,
}

impl LocalBackend {
    /// Starts the controller task (nothing is spawned until `Apply`). Needs a tokio runtime.
    pub fn start(cfg: LocalConfig) -> Self {
        replica::kill_children_on_panic();
        let (snap_tx, snap) = watch::channel(Arc::new(ClusterSnapshot { backend: cfg.label(), ..Default::default() }));
        let (tx, rx) = mpsc::unbounded_channel();
        let mut ctl = Controller::new(cfg, snap_tx);
        let prom_rx = ctl.start_poller();
        tokio::spawn(run_backend_task(ctl, rx, prom_rx));
        LocalBackend { handle: BackendHandle::new("local", snap, tx) }
    }
}

impl Backend for LocalBackend {
    fn subscribe(&self) -> watch::Receiver<Arc<ClusterSnapshot>> {
        self.handle.subscribe()
    }
    fn command(&self, cmd: BackendCommand) -> Result<(), BackendGone> {
        self.handle.command(cmd)
    }
    fn shutdown(&mut self, teardown: bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = Totals> + Send + '_>> {
        Box::pin(async move {
            let totals = self.handle.shutdown(teardown).await;
            replica::kill_all_children();
            totals
        })
    }
}

impl Drop for LocalBackend {
    fn drop(&mut self) {
        // Whatever happened, no replica outlives the backend.
        replica::kill_all_children();
    }
}

struct Scrape {
    idx: usize,
    pid: i32,
    ready: Result<bool, HttpError>,
    metrics: Result<metrics::ReplicaMetrics, ScrapeError>,
}

#[derive(Debug, thiserror::Error)]
enum ScrapeError {
    #[error("/metrics answered {0}")]
    Status(u16),
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// Server-side p95 from `--prometheus`, as its poller reports it.
type PromP95 = Polled<Option<f64>>;

struct Controller {
    cfg: LocalConfig,
    start: Instant,
    snap_tx: watch::Sender<Arc<ClusterSnapshot>>,
    replicas: Vec<Replica>,
    hpa: HpaController,
    decision: Option<HpaDecision>,
    last_sync: Option<Instant>,
    load: Box<dyn LoadDriver>,
    summary: Totals,
    targets: Vec<String>,
    timeline: Timeline,
    events: VecDeque<EventInfo>,
    plan_line: String,
    prom: Option<PromP95>,
    http: HttpClient,
    status: Option<String>,
    applied: bool,
    metrics_ok_at: Option<Instant>,
    metrics_error: Option<String>,
    /// How far back the utilisation signal looks: the replicas' p95 window.
    signal_window: Duration,
}

impl Controller {
    fn new(cfg: LocalConfig, snap_tx: watch::Sender<Arc<ClusterSnapshot>>) -> Self {
        let hpa = HpaController::new(cfg.hpa.clone());
        let signal_window = cfg.spawn.p95_window();
        let load: Box<dyn LoadDriver> = match &cfg.webrtc {
            Some(w) => match WebRtcDriver::new(w.clone()) {
                Ok(d) => Box::new(d),
                Err(e) => Box::new(Unconfigured::new(e.to_string())),
            },
            None => Box::new(EngineDriver::new(LoadConfig {
                targets: Vec::new(),
                method: cfg.method.clone(),
                connections: cfg.connections,
                timeout: cfg.timeout,
                max_inflight: cfg.max_inflight,
                // Each replica is its own target (round robin here), so new replicas get their
                // share at once: no balancer to re-balance, no connection age budget needed.
                connection_max_age: None,
                ..Default::default()
            })),
        };
        Controller {
            cfg,
            start: Instant::now(),
            snap_tx,
            replicas: Vec::new(),
            hpa,
            decision: None,
            last_sync: None,
            load,
            summary: None,
            targets: Vec::new(),
            timeline: Timeline::default(),
            events: VecDeque::new(),
            plan_line: String::new(),
            prom: None,
            http: HttpClient::new(),
            status: None,
            applied: false,
            metrics_ok_at: None,
            metrics_error: None,
            signal_window,
        }
    }

    fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn event(&mut self, kind: &str, reason: &str, object: &str, message: String) {
        let e =
            EventInfo { at_s: self.now_s(), kind: kind.into(), reason: reason.into(), object: object.into(), message };
        self.events.push_back(e);
        while self.events.len() > 200 {
            self.events.pop_front();
        }
    }

    /// Starts the `--prometheus` poller, if one was asked for; its outcomes are this task's
    /// events, so this task alone keeps the reading.
    fn start_poller(&mut self) -> mpsc::UnboundedReceiver<Result<Option<f64>, prom::PromError>> {
        let (prom_tx, prom_rx) = mpsc::unbounded_channel();
        if let Some((url, q)) = self.cfg.prometheus.clone() {
            match prom::Source::new(&url) {
                Ok(src) => {
                    self.prom = Some(PromP95::default());
                    let src = Arc::new(src);
                    let q = Arc::new(q);
                    let fetch = move || {
                        let (src, q) = (src.clone(), q.clone());
                        async move { src.value(&q).await }
                    };
                    // Ends by itself once this task (the receiver) is gone.
                    prom::spawn_poller(Duration::from_secs(1), fetch, prom_tx, |o| o);
                }
                Err(e) => self.status = Some(e.to_string()),
            }
        }
        prom_rx
    }

    fn free_port(&self, slot: u32) -> Option<u16> {
        let used: Vec<u16> = self.replicas.iter().map(|r| r.port).collect();
        let want = Some(self.cfg.port_base).filter(|&b| b != 0).and_then(|b| b.checked_add(slot as u16));
        match want {
            Some(p) if !used.contains(&p) && replica::port_free(p) => Some(p),
            _ => replica::ephemeral_port(),
        }
    }

    fn spawn_replica(&mut self, slot: u32, restarts: u32) {
        let Some(port) = self.free_port(slot) else {
            self.status = Some("no free loopback port for a replica".into());
            return;
        };
        match self.cfg.spawn.spawn(slot, port, restarts) {
            Ok(r) => {
                let msg = format!("Started {} on 127.0.0.1:{port} (pid {})", r.name, r.pid);
                let name = format!("pod/{}", r.name);
                self.replicas.push(r);
                self.event("Normal", "Started", &name, msg);
            }
            Err(e) => {
                self.event("Warning", "FailedCreate", "deploy/local", e.to_string());
                self.status = Some(e.to_string());
            }
        }
    }

    fn next_slot(&self) -> u32 {
        let mut s = 1;
        while self.replicas.iter().any(|r| r.slot == s) {
            s += 1;
        }
        s
    }

    fn active(&self) -> impl Iterator<Item = &Replica> {
        self.replicas.iter().filter(|r| r.phase != Phase::Terminating)
    }

    fn load_result(&mut self, f: impl FnOnce(&mut dyn LoadDriver) -> DriverResult) {
        if let Err(e) = f(self.load.as_mut()) {
            self.status = Some(e.to_string());
        }
    }

    async fn stop_load(&mut self) {
        if let Some(s) = self.load.stop(STOP_DEADLINE).await {
            self.summary = Some(s);
        }
    }

    fn kill_replicas(&mut self) {
        for r in self.replicas.iter_mut() {
            replica::kill(r);
        }
        self.replicas.clear();
    }

    async fn scrape(&mut self) {
        let mut set = JoinSet::new();
        for (idx, r) in self.replicas.iter().enumerate() {
            let http = self.http.clone();
            let base = r.base_url();
            let pid = r.pid;
            set.spawn(async move {
                let t = Duration::from_millis(700);
                let ready = http.get(&format!("{base}/readyz"), t).await.map(|(c, _)| c == 200);
                let metrics = match http.get(&format!("{base}/metrics"), t).await {
                    Ok((200, body)) => Ok(metrics::parse(&body)),
                    Ok((c, _)) => Err(ScrapeError::Status(c)),
                    Err(e) => Err(e.into()),
                };
                Scrape { idx, pid, ready, metrics }
            });
        }
        let mut any_ok = false;
        let mut last_err = None;
        let mut became_ready = Vec::new();
        while let Some(Ok(s)) = set.join_next().await {
            let Some(r) = self.replicas.get_mut(s.idx) else { continue };
            if r.pid != s.pid {
                continue;
            }
            let ready = matches!(s.ready, Ok(true)) && r.phase != Phase::Terminating;
            if ready && !r.ready {
                became_ready.push((r.name.clone(), r.created.elapsed().as_secs_f64()));
            }
            r.ready = ready;
            if ready {
                r.phase = Phase::Running;
            }
            match s.metrics {
                Ok(m) => {
                    any_ok = true;
                    // With WebRTC sessions the pod's p95 is its frames', weighed by frames.
                    let (p95, count) = m.p95_and_count(self.cfg.webrtc.is_some());
                    r.weight = match r.last_requests {
                        Some(prev) => (count - prev).max(0.0),
                        None => 0.0,
                    };
                    r.last_requests = Some(count);
                    r.p95_s = p95;
                    r.sessions = m.webrtc_sessions.map(|n| n as u32);
                    r.utilization.record(Instant::now(), &m, self.signal_window);
                    r.scrape_error = None;
                }
                Err(e) => {
                    r.scrape_error = Some(e.to_string());
                    r.p95_s = None;
                    last_err = Some(e.to_string());
                }
            }
        }
        for (name, secs) in became_ready {
            self.event(
                "Normal",
                "Ready",
                &format!("pod/{name}"),
                format!("{name} ready after {secs:.1}s (/readyz 200)"),
            );
        }
        if any_ok {
            self.metrics_ok_at = Some(Instant::now());
            self.metrics_error = None;
        } else if !self.replicas.is_empty() {
            self.metrics_error = last_err;
        }
    }

    fn reap(&mut self) {
        let mut died = Vec::new();
        let mut gone = Vec::new();
        for (i, r) in self.replicas.iter_mut().enumerate() {
            if let Some(how) = replica::exited(r) {
                if r.phase == Phase::Terminating {
                    gone.push(i);
                } else {
                    died.push((i, r.slot, r.restarts, r.name.clone(), how));
                }
            } else if r.phase == Phase::Terminating
                && r.terminating_since.is_some_and(|t| t.elapsed() > Duration::from_secs(15))
            {
                replica::kill(r);
                gone.push(i);
            }
        }
        let mut remove: Vec<usize> = gone.into_iter().chain(died.iter().map(|d| d.0)).collect();
        remove.sort_unstable();
        for i in remove.into_iter().rev() {
            self.replicas.remove(i);
        }
        for (_, slot, restarts, name, how) in died {
            self.event(
                "Warning",
                "BackOff",
                &format!("pod/{name}"),
                format!("{name} exited ({how}); starting a replacement"),
            );
            self.status = Some(format!("{name} died ({how}); replaced"));
            self.spawn_replica(slot, restarts + 1);
        }
    }

    /// Server-side p95 (None while its source is stale) and how fresh that source is.
    fn server_p95(&self) -> (Option<f64>, Staleness) {
        if let Some(p) = &self.prom {
            let stale = p.stale();
            let url = self.cfg.prometheus.as_ref().map(|x| x.0.clone()).unwrap_or_default();
            let staleness = Staleness {
                metrics_source: format!("prometheus {url}"),
                metrics_stale: stale,
                metrics_age_s: p.last_ok.map(|t| t.elapsed().as_secs_f64()),
                metrics_error: p.error.clone(),
                load_stale: false,
            };
            return (if stale { None } else { p.value }, staleness);
        }
        let parts: Vec<(Option<f64>, f64)> = self.active().filter(|r| r.ready).map(|r| (r.p95_s, r.weight)).collect();
        let stale = !self.replicas.is_empty() && timeline::stale(self.metrics_ok_at, Instant::now());
        let staleness = Staleness {
            metrics_source: "replica /metrics".into(),
            metrics_stale: stale,
            metrics_age_s: self.metrics_ok_at.map(|t| t.elapsed().as_secs_f64()),
            metrics_error: self.metrics_error.clone(),
            load_stale: false,
        };
        (if stale { None } else { metrics::combine_p95(&parts) }, staleness)
    }

    fn autoscale(&mut self, p95: Option<f64>) {
        if !self.applied {
            return;
        }
        if self.last_sync.is_some_and(|t| t.elapsed() < self.cfg.sync_period) {
            return;
        }
        self.last_sync = Some(Instant::now());
        let current = self.active().count() as u32;
        let ready = self.active().filter(|r| r.ready).count() as u32;
        let metrics = self.cfg.hpa.metrics.iter().map(|m| self.metric_input(m, p95)).collect();
        let input = HpaInput { now_s: self.now_s(), current_replicas: current, ready_replicas: ready, metrics };
        let d = self.hpa.reconcile(&input);
        if d.desired > current {
            for _ in current..d.desired {
                let slot = self.next_slot();
                self.spawn_replica(slot, 0);
            }
        } else if d.desired < current {
            // Like a ReplicaSet: not-ready pods go first, then the newest.
            let mut order: Vec<usize> =
                (0..self.replicas.len()).filter(|&i| self.replicas[i].phase != Phase::Terminating).collect();
            order.sort_by_key(|&i| (self.replicas[i].ready, std::cmp::Reverse(self.replicas[i].created)));
            let mut stopped = Vec::new();
            for &i in order.iter().take((current - d.desired) as usize) {
                replica::terminate(&mut self.replicas[i]);
                stopped.push(self.replicas[i].name.clone());
            }
            for n in stopped {
                self.event("Normal", "Killing", &format!("pod/{n}"), format!("Stopping {n} (SIGTERM, draining)"));
            }
        }
        if let Some(reason) = &d.rescale_reason {
            let msg = format!("New size: {}; reason: {reason}", d.desired);
            self.event("Normal", "SuccessfulRescale", &format!("hpa/{}", self.cfg.hpa.name), msg);
        }
        self.decision = Some(d);
    }

    /// One metric of the manifest as the rehearsal reads it (the adapter rules' definitions):
    /// a Pods/AverageValue metric per replica, a Value metric for the workload. A replica
    /// whose scrape failed has no value (the HPA's missing-metric rules), never 0.
    fn metric_input(&self, m: &super::hpa::MetricTarget, p95: Option<f64>) -> MetricInput {
        let signal = LocalSignal::for_metric(&m.name);
        let per_pod = |value: &dyn Fn(&Replica) -> Option<f64>| {
            self.active()
                .map(|r| PodSample { ready: r.ready, value: if r.scrape_error.is_some() { None } else { value(r) } })
                .collect::<Vec<_>>()
        };
        match (signal, m.kind) {
            (Some(LocalSignal::WorkerUtilization), MetricKind::AverageValue) => {
                MetricInput::PerPod(per_pod(&|r| r.utilization.utilization()))
            }
            (Some(LocalSignal::WorkerUtilization), MetricKind::Value) => {
                let ready: Vec<Option<f64>> =
                    self.active().filter(|r| r.ready).map(|r| r.utilization.utilization()).collect();
                MetricInput::Value(ready.iter().copied().sum::<Option<f64>>())
            }
            (Some(latency @ (LocalSignal::P95 | LocalSignal::LatencyGuard)), kind) => {
                let read: fn(f64, f64) -> f64 =
                    if latency == LocalSignal::P95 { dead_band_p95 } else { metrics::latency_guard };
                // With `--prometheus` the workload's p95 comes from its query, as KEDA reads it.
                if kind == MetricKind::AverageValue && self.prom.is_none() {
                    MetricInput::PerPod(per_pod(&|r| Some(read(r.p95_s.unwrap_or(0.0), m.target))))
                } else {
                    MetricInput::Value(p95.map(|v| read(v, m.target)))
                }
            }
            // Refused when the settings were resolved; unreadable if it ever came here.
            (None, _) => MetricInput::Value(None),
        }
    }

    fn update_targets(&mut self) {
        let targets: Vec<String> =
            self.active().filter(|r| r.ready).map(|r| format!("{}{}", r.base_url(), self.cfg.path_and_query)).collect();
        if targets != self.targets {
            let uris: Vec<hyper::Uri> = targets.iter().filter_map(|t| t.parse().ok()).collect();
            if let Err(e) = self.load.set_targets(uris) {
                self.status = Some(e.to_string());
            }
            self.targets = targets;
        }
    }

    fn publish(&mut self) {
        let (_, staleness) = self.server_p95();
        let spec = &self.cfg.hpa;
        let autoscaler = Some(AutoscalerState {
            name: spec.name.clone(),
            current: self.active().count() as u32,
            desired: self.decision.as_ref().map(|d| d.desired).unwrap_or(spec.min_replicas),
            min: spec.min_replicas,
            max: spec.max_replicas,
            metrics: spec
                .metrics
                .iter()
                .enumerate()
                .map(|(i, m)| MetricState {
                    name: m.name.clone(),
                    value: self.decision.as_ref().and_then(|d| d.metrics.get(i)).and_then(|r| r.value),
                    target: m.target,
                    unit: match LocalSignal::for_metric(&m.name) {
                        Some(LocalSignal::P95 | LocalSignal::LatencyGuard) => "s".into(),
                        _ => String::new(),
                    },
                })
                .collect(),
            conditions: self
                .decision
                .as_ref()
                .map(|d| {
                    d.conditions
                        .iter()
                        .map(|c| ConditionInfo {
                            kind: c.kind.into(),
                            status: c.status,
                            reason: c.reason.into(),
                            message: c.message.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        });
        let pods = self
            .replicas
            .iter()
            .map(|r| PodInfo {
                name: r.name.clone(),
                phase: r.phase.as_str().into(),
                ready: r.ready,
                node: format!("localhost:{}", r.port),
                age_s: r.created.elapsed().as_secs(),
                restarts: r.restarts,
                problem: None,
                sessions: r.sessions,
                p95_s: r.p95_s,
            })
            .collect();
        let ns = &self.cfg.namespace;
        // Most useful first: what to watch, then the load, then how it was applied.
        let mut kubectl =
            vec![format!("kubectl -n {ns} get hpa,pods -w"), format!("kubectl -n {ns} describe hpa {}", spec.name)];
        if !self.plan_line.is_empty() {
            kubectl.push(self.plan_line.clone());
        }
        kubectl.push(format!("kubectl -n {ns} get events --field-selector reason=SuccessfulRescale"));
        kubectl.push(format!("kubectl apply --server-side --field-manager=rtc-demo -k {}", self.cfg.overlay));
        let snap = ClusterSnapshot {
            at_s: self.now_s(),
            backend: self.cfg.label(),
            pods,
            autoscaler,
            events: self.events.iter().cloned().collect(),
            series: self.timeline.series(),
            staleness,
            kubectl,
            status: self.status.clone(),
            stage: None,
            done: false,
        };
        let _ = self.snap_tx.send(Arc::new(snap));
    }
}

/// The `rtc-demo load` command equivalent to a stage's plan (shown in the kubectl panel).
pub fn load_line(plan: &StagePlan, path_and_query: &str) -> String {
    let url = format!("http://$SERVICE{path_and_query}");
    match plan {
        StagePlan::Idle => "(idle: no load)".into(),
        StagePlan::Requests(RatePlan::Constant { rps }) => format!("rtc-demo load -q {rps:.0} '{url}'"),
        StagePlan::Requests(RatePlan::Ramp { from, to, over }) => {
            format!("rtc-demo load -q {from:.0}..{to:.0} --ramp {}s '{url}'", over.as_secs())
        }
        StagePlan::Requests(RatePlan::Concurrency { workers }) => {
            format!("rtc-demo load --concurrency {workers} '{url}'")
        }
        StagePlan::Sessions(SessionPlan::Constant { sessions }) => {
            format!("rtc-demo load --webrtc --sessions {sessions} '{url}'")
        }
        StagePlan::Sessions(SessionPlan::Ramp { from, to, over }) => {
            format!("rtc-demo load --webrtc --sessions {from}..{to} -z {}s '{url}'", over.as_secs())
        }
    }
}

/// The rehearsal's capacity probe: one replica started as every other will be (same device,
/// same flags), on a free port outside the autoscaler's, measured alone before any other
/// starts (CPU replicas would share this machine's cores), then stopped.
pub async fn measure_capacity(
    spawn: &SpawnSpec,
    scenario: &crate::scenario::Scenario,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<super::capacity::Capacity, LocalCapacityError> {
    let port = replica::ephemeral_port().ok_or(LocalCapacityError::NoPort)?;
    let mut r = spawn.spawn_for_capacity(port)?;
    progress(format!("capacity: starting {} on 127.0.0.1:{port} to measure one replica …", r.name));
    let http = HttpClient::new();
    let deadline = Instant::now() + READY_FOR_CAPACITY;
    let outcome = loop {
        if let Some(how) = replica::exited(&mut r) {
            break Err(LocalCapacityError::Exited {
                how,
                log: spawn.log_dir.as_ref().map(|d| d.join("serve-capacity.log")),
            });
        }
        if matches!(http.get(&format!("{}/readyz", r.base_url()), Duration::from_millis(800)).await, Ok((200, _))) {
            let probe = super::capacity::CapacityProbe {
                base: r.base_url(),
                request: scenario.request.clone(),
                slo: scenario.slo.p95,
                measured_on: format!("replica {} on loopback", r.name),
            };
            break probe.measure(progress).await.map_err(LocalCapacityError::Probe);
        }
        if Instant::now() >= deadline {
            break Err(LocalCapacityError::NotReady { secs: READY_FOR_CAPACITY.as_secs() });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    replica::kill(&mut r);
    outcome
}

/// How long the probe's replica may take to answer `/readyz` 200.
const READY_FOR_CAPACITY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum LocalCapacityError {
    #[error("capacity probe: no free loopback port for its replica")]
    NoPort,
    #[error("capacity probe: {0}")]
    Spawn(#[from] replica::ReplicaError),
    #[error("capacity probe: its replica exited ({how}) before it was ready{}", log.as_ref().map(|l| format!("; its log: {}", l.display())).unwrap_or_default())]
    Exited { how: String, log: Option<std::path::PathBuf> },
    #[error("capacity probe: its replica was not ready within {secs} s")]
    NotReady { secs: u64 },
    #[error(transparent)]
    Probe(super::capacity::CapacityError),
}

impl BackendTask for Controller {
    type Event = Result<Option<f64>, prom::PromError>;

    async fn client_second(&mut self) {
        let s = self.load.next_second().await;
        self.timeline.client_second(s, Instant::now());
    }

    fn on_event(&mut self, outcome: Result<Option<f64>, prom::PromError>) {
        if let Some(p) = self.prom.as_mut() {
            p.record(outcome);
        }
    }

    async fn command(&mut self, c: BackendCommand) {
        match c {
            BackendCommand::Apply => {
                if self.applied {
                    return;
                }
                self.applied = true;
                let n = self.cfg.hpa.min_replicas;
                for _ in 0..n {
                    let slot = self.next_slot();
                    self.spawn_replica(slot, 0);
                }
                if let Err(e) = self.load.start() {
                    self.status = Some(e.to_string());
                }
            }
            BackendCommand::StartStage { index, plan } => {
                self.timeline.set_stage(index);
                self.plan_line = load_line(&plan, &self.cfg.path_and_query);
                self.load_result(|l| l.start_stage(index, plan));
            }
            // The rehearsal is measured before it starts (run.rs): its config already has them.
            BackendCommand::Measured { .. } => {}
            BackendCommand::Pause => self.load_result(|l| l.pause()),
            BackendCommand::Resume => self.load_result(|l| l.resume()),
            BackendCommand::ScaleLoad(f) => self.load_result(|l| l.scale(f)),
            BackendCommand::Stop => self.stop_load().await,
            BackendCommand::Teardown => self.kill_replicas(),
        }
    }

    async fn shutdown(&mut self, _teardown: bool) -> Totals {
        // Kill replicas first: requests on the wire fail at once, so the load stops fast.
        self.kill_replicas();
        self.stop_load().await;
        self.publish();
        self.summary.take()
    }

    async fn tick(&mut self) {
        self.reap();
        if !self.replicas.is_empty() {
            self.scrape().await;
        }
        self.update_targets();
        let (p95, _) = self.server_p95();
        self.autoscale(p95);
        let pods = PodCounts {
            ready: self.active().filter(|r| r.ready).count() as u32,
            total: self.replicas.len() as u32,
            desired: self.decision.as_ref().map(|d| d.desired).unwrap_or(self.cfg.hpa.min_replicas),
        };
        let server = ServerReading { p95_s: p95, ..Default::default() };
        let paused = self.load.is_paused();
        self.timeline.sample(self.now_s(), Instant::now(), pods, server, paused);
        self.publish();
    }
}
