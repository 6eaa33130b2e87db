//! What the console shows, as immutable snapshots, and the interface every backend implements.
//!
//! A backend (local child processes, a Kubernetes cluster, a recorded report) publishes an
//! `Arc<ClusterSnapshot>` through a `tokio::sync::watch` channel about once per second and
//! takes [`BackendCommand`]s. The UI, the headless printer and the report writer only ever
//! see snapshots, so none of them knows which backend produced them.
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

pub use crate::load::webrtc::SessionPlan;
pub use crate::load::RatePlan;

/// How many seconds of series a snapshot carries (the charts show "the last minutes").
pub const SERIES_SECONDS: usize = 600;

/// Which backend a snapshot comes from; shown in the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendLabel {
    /// `device`: what the replicas compute on, as shown ("emulated GPU", "CPU").
    Local {
        device: String,
    },
    Replay,
    Kube {
        context: String,
        namespace: String,
    },
}

impl Default for BackendLabel {
    fn default() -> Self {
        BackendLabel::Local { device: crate::scenario::LocalDevice::Emulated.label().into() }
    }
}

impl BackendLabel {
    pub fn text(&self) -> String {
        match self {
            BackendLabel::Local { device } => format!("LOCAL · {device}"),
            BackendLabel::Replay => "REPLAY".into(),
            BackendLabel::Kube { context, namespace } => format!("{context}/{namespace}"),
        }
    }
}

/// One pod (a child process for the local backend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PodInfo {
    pub name: String,
    /// Pending | Running | Terminating | Failed | Succeeded
    pub phase: String,
    pub ready: bool,
    pub node: String,
    pub age_s: u64,
    pub restarts: u32,
    /// Why the pod does not start (None: nothing wrong, or the local backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<PodProblem>,
    /// WebRTC sessions pinned to the pod (None: not known, e.g. the kube backend, which
    /// does not read per-pod metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u32>,
    /// The pod's own windowed p95 (its frames' with WebRTC sessions), where it is read per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p95_s: Option<f64>,
}

/// Why a pod does not start: the reason kubectl's STATUS column shows (`ErrImagePull`,
/// `ImagePullBackOff`, `CrashLoopBackOff` …) with the kubelet's own message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PodProblem {
    pub container: String,
    pub reason: String,
    /// The waiting message, then for a crash the last exit (reason, code, message).
    pub message: String,
    /// What to do, when the message says what is wrong (wrong CPU architecture, no such image).
    pub hint: Option<String>,
    /// The kubectl command that shows the same (set by the kube backend).
    pub kubectl: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConditionInfo {
    pub kind: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// The autoscaler as `kubectl describe hpa` would show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AutoscalerState {
    pub name: String,
    pub current: u32,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    /// Every metric it scales on, in the spec's order (the largest proposal wins).
    pub metrics: Vec<MetricState>,
    pub conditions: Vec<ConditionInfo>,
}

/// One metric of the autoscaler, against its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MetricState {
    pub name: String,
    /// Value as the autoscaler saw it (after the dead band), in `unit`s; None: no data.
    pub value: Option<f64>,
    pub target: f64,
    /// "s" for latency metrics (shown in ms).
    pub unit: String,
}

impl AutoscalerState {
    pub fn pinned_at_max(&self) -> bool {
        self.max > 0 && self.current >= self.max && self.desired >= self.max
    }
}

/// A Kubernetes-style event (SuccessfulRescale, Started, Killing, Unhealthy, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EventInfo {
    /// Seconds since the run started.
    pub at_s: f64,
    /// Normal | Warning
    pub kind: String,
    pub reason: String,
    pub object: String,
    pub message: String,
}

/// One second of the run: every series the charts and the report need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_s: f64,
    pub pods_ready: u32,
    pub pods_total: u32,
    pub desired: u32,
    /// Server-side p95 (replica metrics or Prometheus), seconds; None when unknown or stale.
    pub p95_server_s: Option<f64>,
    /// Client-side p95, coordinated-omission corrected, seconds.
    pub p95_client_s: Option<f64>,
    /// Client-side p95 measured from the actual send time (uncorrected), seconds.
    pub p95_client_uncorrected_s: Option<f64>,
    pub offered_rps: f64,
    pub achieved_rps: f64,
    /// Errors in this second (timeouts, connect errors, 5xx other than shed).
    pub errors: u64,
    /// 503 answers (load shedding) in this second.
    pub shed: u64,
    /// Requests the client could not send in time (open-loop shortfall).
    pub dropped: u64,
    pub gpu_util: Option<f64>,
    /// Stage index (0-based) running at this second.
    pub stage: usize,
}

/// Data freshness: shown as "stale" on screen when a source stops answering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Staleness {
    /// Where server-side latency comes from ("replica /metrics", "prometheus URL").
    pub metrics_source: String,
    pub metrics_stale: bool,
    /// Seconds since the source last answered.
    pub metrics_age_s: Option<f64>,
    /// The last error from the source (short).
    pub metrics_error: Option<String>,
    pub load_stale: bool,
}

/// The running stage as the console shows it (from the director, or recorded in a replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StageView {
    pub index: usize,
    pub count: usize,
    pub name: String,
    pub elapsed_s: f64,
    pub duration_s: f64,
    pub manual: bool,
    pub notes: String,
    pub next_name: Option<String>,
    /// Human description of the load plan ("ramp 5→40 rps", "40 rps ×1.1").
    pub load_desc: String,
    pub paused: bool,
    pub finished: bool,
}

/// Everything a backend knows at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ClusterSnapshot {
    /// Seconds since the run started.
    pub at_s: f64,
    pub backend: BackendLabel,
    pub pods: Vec<PodInfo>,
    pub autoscaler: Option<AutoscalerState>,
    /// Most recent last; bounded.
    pub events: Vec<EventInfo>,
    /// One sample per second, oldest first, at most `SERIES_SECONDS`.
    pub series: Vec<Sample>,
    pub staleness: Staleness,
    /// The kubectl commands equivalent to what the backend is doing/showing.
    pub kubectl: Vec<String>,
    /// A one-line status (errors from the backend, e.g. "replica 3 died; replacing").
    pub status: Option<String>,
    /// Set by backends that carry their own stage (replay); the director's otherwise.
    pub stage: Option<StageView>,
    /// The backend has finished (replay at its end, or stopped).
    pub done: bool,
}

impl ClusterSnapshot {
    pub fn last(&self) -> Option<&Sample> {
        self.series.last()
    }
}

/// What the load's rate and latency count, wherever a figure of them is shown: requests
/// (their latency), or WebRTC frames (asked for by the plan and processed back, their round trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadUnit {
    #[default]
    Requests,
    Frames,
}

impl LoadUnit {
    pub fn of(scenario: &crate::scenario::Scenario) -> Self {
        match scenario.request.kind {
            crate::scenario::RequestKind::Http => LoadUnit::Requests,
            crate::scenario::RequestKind::Webrtc => LoadUnit::Frames,
        }
    }
    /// The rate's unit, short (`rps`, `frames/s`).
    pub fn rate(self) -> &'static str {
        match self {
            LoadUnit::Requests => "rps",
            LoadUnit::Frames => "frames/s",
        }
    }
    /// What the rate counts, long (a chart's caption).
    pub fn what(self) -> &'static str {
        match self {
            LoadUnit::Requests => "requests/s",
            LoadUnit::Frames => "WebRTC frames/s (the plan's; processed back)",
        }
    }
}

/// What a stage asks of the load: nothing, requests at a rate, or WebRTC sessions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StagePlan {
    Idle,
    Requests(RatePlan),
    Sessions(SessionPlan),
}

/// A human description of a load plan ("ramp 5→150 rps/30s ×1.10", "sessions 2→8/60s").
pub fn describe_plan(plan: &StagePlan, scale: f64) -> String {
    let sc = if (scale - 1.0).abs() > 1e-9 { format!(" ×{scale:.2}") } else { String::new() };
    match plan {
        StagePlan::Idle | StagePlan::Requests(RatePlan::Constant { rps: 0.0 }) => "idle (0 rps)".into(),
        StagePlan::Requests(RatePlan::Constant { rps }) => format!("{rps:.0} rps{sc}"),
        StagePlan::Requests(RatePlan::Ramp { from, to, over }) => {
            format!("ramp {from:.0}→{to:.0} rps/{:.0}s{sc}", over.as_secs_f64())
        }
        StagePlan::Requests(RatePlan::Concurrency { workers }) => format!("{workers} closed-loop workers{sc}"),
        StagePlan::Sessions(SessionPlan::Constant { sessions }) => format!("{sessions} WebRTC sessions{sc}"),
        StagePlan::Sessions(SessionPlan::Ramp { from, to, over }) => {
            format!("sessions {from}→{to}/{:.0}s{sc}", over.as_secs_f64())
        }
    }
}

/// What the console asks a backend to do.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendCommand {
    /// Apply the manifests / start the replicas (idempotent).
    Apply,
    /// The capacity probe's result, before the first stage: one pod holds `pod_rps`, and the
    /// request runs `iters` iterations (the load is built again with them).
    Measured {
        pod_rps: f64,
        iters: u32,
    },
    /// A new stage starts with this plan (load restarts from the plan's beginning).
    StartStage {
        index: usize,
        plan: StagePlan,
    },
    Pause,
    Resume,
    /// Multiply the offered rate by this factor (1.1 for "+", 1/1.1 for "-").
    ScaleLoad(f64),
    /// Stop the load at once (quitting).
    Stop,
    /// Remove what Apply created (only with `--teardown`).
    Teardown,
}

/// One threshold's or expectation's verdict (the final summary, the report).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub text: String,
    pub ok: bool,
}

/// A load engine's cumulative summary: of requests or of WebRTC sessions.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum LoadTotals {
    Requests(Box<crate::load::LoadSummary>),
    Sessions(Box<crate::load::webrtc::WebRtcSummary>),
}

/// What a backend hands back when it shuts down: the load engine's cumulative summary
/// (None when there was no load, or for a replay).
pub type Totals = Option<LoadTotals>;

/// A source of cluster snapshots that takes commands. The UI never knows which one it has.
pub trait Backend: Send {
    /// Snapshots, newest wins (about one per second).
    fn subscribe(&self) -> watch::Receiver<Arc<ClusterSnapshot>>;
    /// Queue a command; never blocks. Fails only when the backend has shut down.
    fn command(&self, cmd: BackendCommand) -> Result<(), BackendGone>;
    /// Stop everything the backend started (load within 1 s, child processes), and wait for it.
    /// With `teardown`, also remove applied resources. Idempotent.
    fn shutdown(&mut self, teardown: bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = Totals> + Send + '_>>;
}

/// A command sent to a backend that has already shut down (named: "local", "kube" …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {0} backend has shut down")]
pub struct BackendGone(pub &'static str);

/// What a backend's controller task receives from its `BackendHandle`.
pub enum ControlMsg {
    Cmd(BackendCommand),
    /// Stop (with teardown or not) and answer with the load totals.
    Shutdown(bool, oneshot::Sender<Totals>),
}

/// A backend's controller task, as the one owner loop ([`run_backend_task`]) drives it: a
/// tick a second, the load engine's seconds, the backend's own events (watch updates,
/// Prometheus outcomes) and the console's commands, one at a time, so the state needs no lock.
pub trait BackendTask: Send + 'static {
    /// What the backend's own tasks send it.
    type Event: Send + 'static;
    /// Waits for the load engine's next second and records it.
    fn client_second(&mut self) -> impl std::future::Future<Output = ()> + Send;
    /// Once a second: read, decide, publish a snapshot.
    fn tick(&mut self) -> impl std::future::Future<Output = ()> + Send;
    fn on_event(&mut self, event: Self::Event);
    fn command(&mut self, command: BackendCommand) -> impl std::future::Future<Output = ()> + Send;
    /// Stops everything this backend started; with `teardown`, also what it applied.
    fn shutdown(&mut self, teardown: bool) -> impl std::future::Future<Output = Totals> + Send;
}

/// The owner loop of both live backends, until a `Shutdown` or until the console's handle
/// is gone. A handle dropped without `Shutdown` (a console that died) stops the load and
/// the processes but never tears down: removing a presenter's resources is only ever asked for.
pub async fn run_backend_task<C: BackendTask>(
    mut ctl: C,
    mut control: mpsc::UnboundedReceiver<ControlMsg>,
    mut events: mpsc::UnboundedReceiver<C::Event>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => ctl.tick().await,
            () = ctl.client_second() => {}
            Some(e) = events.recv() => ctl.on_event(e),
            m = control.recv() => match m {
                Some(ControlMsg::Cmd(c)) => ctl.command(c).await,
                Some(ControlMsg::Shutdown(teardown, reply)) => {
                    let _ = reply.send(ctl.shutdown(teardown).await);
                    return;
                }
                None => {
                    ctl.shutdown(false).await;
                    return;
                }
            }
        }
    }
}

/// The `Backend` of a backend that runs as a controller task: snapshots come out through a
/// watch channel, commands go in through `ControlMsg`s, and shutdown happens once.
pub struct BackendHandle {
    name: &'static str,
    snap: watch::Receiver<Arc<ClusterSnapshot>>,
    tx: mpsc::UnboundedSender<ControlMsg>,
    finished: Option<Totals>,
}

impl BackendHandle {
    /// `name` appears in errors ("the local backend has shut down").
    pub fn new(
        name: &'static str,
        snap: watch::Receiver<Arc<ClusterSnapshot>>,
        tx: mpsc::UnboundedSender<ControlMsg>,
    ) -> Self {
        BackendHandle { name, snap, tx, finished: None }
    }
}

impl Backend for BackendHandle {
    fn subscribe(&self) -> watch::Receiver<Arc<ClusterSnapshot>> {
        self.snap.clone()
    }
    fn command(&self, cmd: BackendCommand) -> Result<(), BackendGone> {
        self.tx.send(ControlMsg::Cmd(cmd)).map_err(|_| BackendGone(self.name))
    }
    fn shutdown(&mut self, teardown: bool) -> std::pin::Pin<Box<dyn std::future::Future<Output = Totals> + Send + '_>> {
        Box::pin(async move {
            if let Some(t) = &self.finished {
                return t.clone();
            }
            let (otx, orx) = oneshot::channel();
            let totals = if self.tx.send(ControlMsg::Shutdown(teardown, otx)).is_ok() {
                orx.await.unwrap_or(None)
            } else {
                None
            };
            self.finished = Some(totals.clone());
            totals
        })
    }
}
