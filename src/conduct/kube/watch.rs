//! Watchers (kube-runtime `watcher`, not polling) on the Deployment, its Pods, the HPA (or
//! the one KEDA makes for the ScaledObject) and the namespace's Events, folded into a [`ClusterView`] that
//! yields the same snapshot parts the local backend produces (`PodInfo`, `AutoscalerState`,
//! `EventInfo`). The watcher tasks only send [`WatchUpdate`]s; the backend's one owner task
//! folds them into its `ClusterView`.
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscaler, MetricStatus, MetricTarget, MetricValueStatus};
use k8s_openapi::api::core::v1::{Event, Pod, PodStatus};
use kube::api::Api;
use kube::runtime::watcher;
use kube::Client;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::conduct::backoff::Backoff;
use crate::conduct::model::{AutoscalerState, ConditionInfo, EventInfo, MetricState, PodInfo, PodProblem};

/// Events kept for the panel.
pub const MAX_EVENTS: usize = 200;

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchTargets {
    pub namespace: String,
    pub deployment: String,
    /// Label selector of the Deployment's pods (`app.kubernetes.io/name=gpu-media`).
    pub pod_selector: String,
    /// The HPA to show: the overlay's HPA, or the one KEDA makes (`super::keda_hpa_name`).
    pub hpa: String,
    /// Names whose events matter (the deployment's pods and ReplicaSets share its prefix).
    pub event_prefixes: Vec<String>,
}

pub use crate::conduct::timeline::unix_now;

pub use crate::conduct::hpa::quantity as parse_quantity;

/// One pod as the pods panel shows it. `now` is unix seconds.
pub fn pod_info(p: &Pod, now: f64) -> PodInfo {
    let name = p.metadata.name.clone().unwrap_or_default();
    let st = p.status.as_ref();
    let terminating = p.metadata.deletion_timestamp.is_some();
    let phase = if terminating {
        "Terminating".to_string()
    } else {
        st.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into())
    };
    let ready = !terminating
        && st
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let restarts = st
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count.max(0) as u32).sum())
        .unwrap_or(0);
    let created = p.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second() as f64).unwrap_or(now);
    PodInfo {
        name,
        phase,
        ready,
        node: p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        age_s: (now - created).max(0.0) as u64,
        restarts,
        problem: if terminating { None } else { st.and_then(pod_problem) },
        sessions: None,
        p95_s: None,
    }
}

/// Waiting reasons of a container that is on its way up, not stuck.
const STARTING: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// Why the pod does not start: the first container (init containers first, as the kubelet
/// starts them) that waits for a reason other than starting up, else a PodScheduled=False
/// condition (the scheduler found no node). The reasons are the kubelet's and scheduler's:
/// `ErrImagePull`, `ImagePullBackOff`, `InvalidImageName` (pkg/kubelet/images/types.go),
/// `CrashLoopBackOff` (pkg/kubelet/container/sync_result.go), `Unschedulable`
/// (k8s.io/api core/v1 `PodReasonUnschedulable`) …
pub fn pod_problem(st: &PodStatus) -> Option<PodProblem> {
    let all = st.init_container_statuses.iter().flatten().chain(st.container_statuses.iter().flatten());
    all.filter_map(|c| {
        let waiting = c.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.clone().filter(|r| !r.is_empty() && !STARTING.contains(&r.as_str()))?;
        let mut message = waiting.message.clone().unwrap_or_default();
        if let Some(t) = c.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
            let last = format!(
                "last exit: {} (exit code {}){}",
                t.reason.as_deref().unwrap_or("terminated"),
                t.exit_code,
                t.message
                    .as_deref()
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            message = if message.is_empty() { last } else { format!("{message}; {last}") };
        }
        let hint = problem_hint(&reason, &message);
        Some(PodProblem { container: c.name.clone(), reason, message, hint, kubectl: String::new() })
    })
    .next()
    .or_else(|| {
        let c = st.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
        let reason = c.reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| "Unschedulable".into());
        let message = c.message.clone().unwrap_or_default();
        let hint = problem_hint(&reason, &message);
        Some(PodProblem { container: String::new(), reason, message, hint, kubectl: String::new() })
    })
}

fn problem_hint(reason: &str, message: &str) -> Option<String> {
    if message.contains("exec format error") {
        return Some(
            "the image is built for another CPU architecture than the node's: build it with \
docker buildx build --platform linux/amd64 (README \"Build and push the image\")"
                .into(),
        );
    }
    if reason == "Unschedulable" && message.contains("Insufficient nvidia.com/gpu") {
        return Some(
            "every GPU is taken: add GPU nodes (let the node pool autoscale to maxReplicas) or lower the \
autoscaler's maxReplicas"
                .into(),
        );
    }
    match reason {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => Some(
            "the nodes cannot pull the image: push it, check --image / [manifests] image, and give a private \
registry's credentials as imagePullSecrets (README \"Build and push the image\")"
                .into(),
        ),
        _ => None,
    }
}

fn target_value(t: &MetricTarget) -> (f64, &'static str) {
    if let Some(u) = t.average_utilization {
        return (u as f64, "%");
    }
    let q = t.average_value.as_ref().or(t.value.as_ref()).and_then(|q| parse_quantity(&q.0)).unwrap_or(0.0);
    (q, "")
}

fn current_value(v: &MetricValueStatus) -> Option<f64> {
    if let Some(u) = v.average_utilization {
        return Some(u as f64);
    }
    v.average_value.as_ref().or(v.value.as_ref()).and_then(|q| parse_quantity(&q.0))
}

fn status_value(m: &MetricStatus) -> Option<f64> {
    if let Some(p) = &m.pods {
        return current_value(&p.current);
    }
    if let Some(e) = &m.external {
        return current_value(&e.current);
    }
    if let Some(r) = &m.resource {
        return current_value(&r.current);
    }
    if let Some(o) = &m.object {
        return current_value(&o.current);
    }
    m.container_resource.as_ref().and_then(|c| current_value(&c.current))
}

/// The metric's name as the spec side names it (see [`autoscaler_state`]).
fn status_metric_name(m: &MetricStatus) -> Option<String> {
    if let Some(p) = &m.pods {
        return Some(p.metric.name.clone());
    }
    if let Some(e) = &m.external {
        return Some(e.metric.name.clone());
    }
    if let Some(o) = &m.object {
        return Some(o.metric.name.clone());
    }
    m.resource.as_ref().map(|r| format!("{} utilisation", r.name))
}

/// The HPA as the HPA panel shows it (what `kubectl describe hpa` prints).
pub fn autoscaler_state(h: &HorizontalPodAutoscaler) -> AutoscalerState {
    let spec = h.spec.as_ref();
    let st = h.status.as_ref();
    let current = st.and_then(|s| s.current_metrics.as_deref()).unwrap_or_default();
    let metrics = spec
        .and_then(|s| s.metrics.as_deref())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (name, target, unit_hint) = if let Some(p) = &m.pods {
                let (t, u) = target_value(&p.target);
                (p.metric.name.clone(), t, u)
            } else if let Some(e) = &m.external {
                let (t, u) = target_value(&e.target);
                (e.metric.name.clone(), t, u)
            } else if let Some(r) = &m.resource {
                let (t, u) = target_value(&r.target);
                (format!("{} utilisation", r.name), t, u)
            } else if let Some(o) = &m.object {
                let (t, u) = target_value(&o.target);
                (o.metric.name.clone(), t, u)
            } else {
                (m.type_.clone(), 0.0, "")
            };
            // Our latency metrics are in seconds: the adapter's rtc_request_latency_p95_seconds
            // and KEDA's "s0-prometheus" (KEDA names external metrics by trigger index, and
            // the p95 trigger is the first of manifests/autoscaling/load-keda).
            // Utilisation is a percentage.
            let unit = if unit_hint == "%" {
                "%".to_string()
            } else if name.contains("seconds") || name.contains("latency") || name == "s0-prometheus" {
                "s".to_string()
            } else {
                String::new()
            };
            // status.currentMetrics lists the metrics in the spec's order; a metric the
            // controller could not read is left out there, so match by name, not by index.
            let value = current
                .iter()
                .find(|c| status_metric_name(c).as_deref() == Some(name.as_str()))
                .or_else(|| current.get(i).filter(|c| status_metric_name(c).is_none()))
                .and_then(status_value);
            MetricState { name, value, target, unit }
        })
        .collect();
    AutoscalerState {
        name: h.metadata.name.clone().unwrap_or_default(),
        current: st.and_then(|s| s.current_replicas).unwrap_or(0).max(0) as u32,
        desired: st.map(|s| s.desired_replicas).unwrap_or(0).max(0) as u32,
        min: spec.and_then(|s| s.min_replicas).unwrap_or(1).max(0) as u32,
        max: spec.map(|s| s.max_replicas).unwrap_or(0).max(0) as u32,
        metrics,
        conditions: st
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| ConditionInfo {
                        kind: c.type_.clone(),
                        status: c.status == "True",
                        reason: c.reason.clone().unwrap_or_default(),
                        message: without_metric_selectors(c.message.as_deref().unwrap_or_default()),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The HPA controller names an External metric with its selector printed by Go's `%+v`:
/// `external metric s0-prometheus(&LabelSelector{MatchLabels:map[string]string{scaledobject.keda.sh/name: gpu-media,},MatchExpressions:[]LabelSelectorRequirement{},})`
/// (kubernetes pkg/controller/podautoscaler/horizontal.go, computeStatusForExternalMetric:
/// `fmt.Sprintf("external metric %s(%+v)", …)`, the selector's String() from k8s.io/apimachinery
/// pkg/apis/meta/v1/generated.pb.go; `(nil)` without a selector), and puts that name in its
/// ValidMetricFound condition and its SuccessfulRescale events ("… above target"). KEDA sets
/// the selector on every metric of its HPA (kedacore/keda controllers/keda/hpa.go), so on a
/// projector the line would be mostly selector: the panels show the metric's name alone.
pub fn without_metric_selectors(message: &str) -> String {
    const SELECTOR: &str = "(&LabelSelector{";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let at_selector = rest.find(SELECTOR);
        let at_nil = rest.find("(nil)");
        let Some(at) = [at_selector, at_nil].into_iter().flatten().min() else { break };
        // Only right after a metric name (no space before the parenthesis).
        if at == 0 || rest[..at].ends_with(' ') {
            out.push_str(&rest[..at + 1]);
            rest = &rest[at + 1..];
            continue;
        }
        let end = if Some(at) == at_nil {
            Some(at + "(nil)".len())
        } else {
            // Past the matching `}` of `{`, then its `)`.
            let open = at + SELECTOR.len() - 1;
            let mut depth = 0usize;
            rest[open..]
                .char_indices()
                .find_map(|(i, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    (depth == 0).then_some(open + i + 1)
                })
                .filter(|&close| rest[close..].starts_with(')'))
                .map(|close| close + 1)
        };
        match end {
            Some(end) => {
                out.push_str(&rest[..at]);
                rest = &rest[end..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// Short kind names as kubectl's resource shortnames (`hpa/gpu-media`, `pod/…`).
fn short_kind(kind: &str) -> String {
    match kind {
        "HorizontalPodAutoscaler" => "hpa".into(),
        "Deployment" => "deploy".into(),
        "ReplicaSet" => "rs".into(),
        "ScaledObject" => "scaledobject".into(),
        k => k.to_ascii_lowercase(),
    }
}

/// When the event last happened (unix seconds): lastTimestamp, else eventTime, else firstTimestamp, else creation.
pub fn event_time(e: &Event) -> Option<f64> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond() as f64 / 1000.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0.as_millisecond() as f64 / 1000.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0.as_millisecond() as f64 / 1000.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0.as_millisecond() as f64 / 1000.0))
}

/// Everything the watchers have seen.
#[derive(Debug, Default)]
pub struct ClusterView {
    pub deployment: Option<Deployment>,
    pods: BTreeMap<String, Pod>,
    pods_init: Option<BTreeMap<String, Pod>>,
    pub hpa: Option<HorizontalPodAutoscaler>,
    events: VecDeque<EventInfo>,
    seen: HashSet<String>,
    /// Watch errors by watcher ("pods: 403 Forbidden …"); cleared when that watcher recovers.
    pub errors: BTreeMap<&'static str, WatchTrouble>,
}

/// Why a watcher is not current, as the status line tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchTrouble {
    /// Routine: the API server no longer holds the resourceVersion the watch resumes from
    /// (410, reason Expired: "too old resource version", k8s.io/apiserver
    /// pkg/storage/cacher/watch_cache.go with apimachinery's NewResourceExpired), and
    /// kube-runtime lists again from scratch (kube-runtime src/watcher.rs: a 410 WatchError
    /// resets the state to Empty), yielding that error first.
    Relisting(String),
    /// The API server refused (401, 403): a permissions problem.
    Denied(String),
    /// Anything else (the connection, a 5xx): retried with back-off.
    Failed(String),
}

impl WatchTrouble {
    /// Sorts by the HTTP status the API server answered (None: no answer).
    fn by_status(code: Option<u16>, text: String) -> WatchTrouble {
        match code {
            Some(410) => WatchTrouble::Relisting(text),
            Some(401 | 403) => WatchTrouble::Denied(text),
            _ => WatchTrouble::Failed(text),
        }
    }

    /// Sorts a kube-rs client error by its HTTP status.
    pub fn of_client(e: &kube::Error) -> WatchTrouble {
        let code = match e {
            kube::Error::Api(s) => Some(s.code),
            _ => None,
        };
        WatchTrouble::by_status(code, super::error_text(e))
    }

    /// Sorts a watcher error: a watch ERROR event carries the Status the API server sent.
    pub fn of_watcher(e: &watcher::Error) -> WatchTrouble {
        use watcher::Error as W;
        match e {
            W::InitialListFailed(k) | W::WatchStartFailed(k) | W::WatchFailed(k) => WatchTrouble::of_client(k),
            W::WatchError(s) if [401, 403, 410].contains(&s.code) => {
                WatchTrouble::by_status(Some(s.code), format!("{} {}: {}", s.code, s.reason, s.message))
            }
            other => WatchTrouble::Failed(super::watcher_error_text(other)),
        }
    }

    /// `pods: …` with what to do about it: nothing for a re-list (it heals itself), the
    /// permissions check for a denial, the server's reachability otherwise.
    fn line(&self, watcher: &str, k: &super::kubectl::Kubectl) -> String {
        match self {
            WatchTrouble::Relisting(why) => {
                format!("watch {watcher}: the API server expired the watch ({why}); listing again")
            }
            WatchTrouble::Denied(why) => format!("watch {watcher}: {why} (check: {})", k.auth_can_i_list()),
            WatchTrouble::Failed(why) => format!("watch {watcher}: {why} (check: {})", k.server_version()),
        }
    }
}

impl ClusterView {
    pub fn on_pod(&mut self, ev: watcher::Event<Pod>) {
        let key = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
        match ev {
            watcher::Event::Apply(p) => {
                self.pods.insert(key(&p), p);
            }
            watcher::Event::Delete(p) => {
                self.pods.remove(&key(&p));
            }
            watcher::Event::Init => self.pods_init = Some(BTreeMap::new()),
            watcher::Event::InitApply(p) => {
                self.pods_init.get_or_insert_with(BTreeMap::new).insert(key(&p), p);
            }
            watcher::Event::InitDone => {
                if let Some(m) = self.pods_init.take() {
                    self.pods = m;
                }
            }
        }
    }

    pub fn on_hpa(&mut self, ev: watcher::Event<HorizontalPodAutoscaler>) {
        match ev {
            watcher::Event::Apply(h) | watcher::Event::InitApply(h) => self.hpa = Some(h),
            watcher::Event::Delete(_) => self.hpa = None,
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    pub fn on_deployment(&mut self, ev: watcher::Event<Deployment>) {
        match ev {
            watcher::Event::Apply(d) | watcher::Event::InitApply(d) => self.deployment = Some(d),
            watcher::Event::Delete(_) => self.deployment = None,
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }

    /// Events of the demo's objects (names starting with one of `prefixes`) that happened at or
    /// after `since` (unix seconds), timed relative to `run_start` (unix seconds).
    pub fn on_event(&mut self, ev: watcher::Event<Event>, prefixes: &[String], since: f64, run_start: f64) {
        let e = match ev {
            watcher::Event::Apply(e) | watcher::Event::InitApply(e) => e,
            _ => return,
        };
        let obj = &e.involved_object;
        let name = obj.name.clone().unwrap_or_default();
        if !prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            return;
        }
        let Some(t) = event_time(&e) else { return };
        if t < since {
            return;
        }
        let count = e.count.unwrap_or(1);
        // One entry per (event, count): a repeated event (count 2, 3 …) shows again.
        let id = format!("{}#{count}", e.metadata.uid.clone().or(e.metadata.name.clone()).unwrap_or_default());
        if !self.seen.insert(id) {
            return;
        }
        let info = EventInfo {
            at_s: (t - run_start).max(0.0),
            kind: e.type_.clone().unwrap_or_else(|| "Normal".into()),
            reason: e.reason.clone().unwrap_or_default(),
            object: format!("{}/{}", short_kind(obj.kind.as_deref().unwrap_or("")), name),
            message: without_metric_selectors(e.message.as_deref().unwrap_or_default()),
        };
        // Keep them in time order (watch order is not strictly time order).
        let pos = self.events.iter().rposition(|x| x.at_s <= info.at_s).map(|i| i + 1).unwrap_or(0);
        self.events.insert(pos, info);
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }

    pub fn pods(&self, now: f64) -> Vec<PodInfo> {
        self.pods.values().map(|p| pod_info(p, now)).collect()
    }

    pub fn events(&self) -> Vec<EventInfo> {
        self.events.iter().cloned().collect()
    }

    pub fn autoscaler(&self) -> Option<AutoscalerState> {
        self.hpa.as_ref().map(autoscaler_state)
    }

    /// (ready, total) pods, terminating ones counted in total only.
    pub fn pod_counts(&self, now: f64) -> (u32, u32) {
        let pods = self.pods(now);
        (pods.iter().filter(|p| p.ready).count() as u32, pods.len() as u32)
    }

    /// Desired replicas: the HPA's, else the Deployment's spec.
    pub fn desired(&self) -> Option<u32> {
        if let Some(h) = &self.hpa {
            return h.status.as_ref().map(|s| s.desired_replicas.max(0) as u32);
        }
        self.deployment.as_ref().and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas).map(|r| r.max(0) as u32)
    }

    /// One line about watch errors, for the status line, each with the kubectl command that
    /// checks it.
    pub fn error_line(&self, k: &super::kubectl::Kubectl) -> Option<String> {
        if self.errors.is_empty() {
            return None;
        }
        Some(self.errors.iter().map(|(name, trouble)| trouble.line(name, k)).collect::<Vec<_>>().join("; "))
    }
}

/// What a watcher saw, for the owner of the `ClusterView`.
// Each update moves once, through a channel, to be taken apart at once: boxing the large
// watch events would add an allocation to every one and save nothing that stays.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum WatchUpdate {
    Deployment(watcher::Event<Deployment>),
    Pod(watcher::Event<Pod>),
    Hpa(watcher::Event<HorizontalPodAutoscaler>),
    Event(watcher::Event<Event>),
    /// The named watcher failed with this error (it retries with backoff), or recovered (None).
    Health(&'static str, Option<WatchTrouble>),
}

/// Which events are the demo's, and the run's clock (unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct EventFilter {
    pub prefixes: Vec<String>,
    /// Events from this time on (a little before the run: the apply).
    pub since: f64,
    pub run_start: f64,
}

impl ClusterView {
    pub fn update(&mut self, u: WatchUpdate, filter: &EventFilter) {
        match u {
            WatchUpdate::Deployment(e) => self.on_deployment(e),
            WatchUpdate::Pod(e) => self.on_pod(e),
            WatchUpdate::Hpa(e) => self.on_hpa(e),
            WatchUpdate::Event(e) => self.on_event(e, &filter.prefixes, filter.since, filter.run_start),
            WatchUpdate::Health(name, None) => {
                self.errors.remove(name);
            }
            WatchUpdate::Health(name, Some(e)) => {
                self.errors.insert(name, e);
            }
        }
    }
}

async fn drive<K, E>(
    name: &'static str,
    api: Api<K>,
    cfg: watcher::Config,
    tx: mpsc::UnboundedSender<E>,
    wrap: fn(WatchUpdate) -> E,
    update: fn(watcher::Event<K>) -> WatchUpdate,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    // The watcher re-lists and re-watches by itself; errors come out of the stream and we
    // back off (1 s doubling to 10 s) before polling it again, so a 403 does not spin.
    let mut stream = watcher(api, cfg).boxed();
    let mut backoff = Backoff::default();
    let mut failing = false;
    while let Some(ev) = stream.next().await {
        let sent = match ev {
            Ok(e) => {
                backoff.succeeded();
                let healed = !std::mem::take(&mut failing) || tx.send(wrap(WatchUpdate::Health(name, None))).is_ok();
                healed && tx.send(wrap(update(e))).is_ok()
            }
            Err(e) => {
                failing = true;
                let sent = tx.send(wrap(WatchUpdate::Health(name, Some(WatchTrouble::of_watcher(&e))))).is_ok();
                tokio::time::sleep(backoff.failed()).await;
                sent
            }
        };
        if !sent {
            return;
        }
    }
}

/// The running watchers. The HPA's is kept apart: it is replaced when KEDA names its HPA.
pub struct Watchers {
    hpa: JoinHandle<()>,
    others: Vec<JoinHandle<()>>,
}

impl Watchers {
    /// Watch another HPA from now on (the old watcher stops).
    pub fn replace_hpa(&mut self, watcher: JoinHandle<()>) {
        std::mem::replace(&mut self.hpa, watcher).abort();
    }

    /// Another task that lives as long as the watchers (the hpaName reader).
    pub fn push(&mut self, task: JoinHandle<()>) {
        self.others.push(task);
    }

    pub fn abort_all(&mut self) {
        self.hpa.abort();
        self.others.drain(..).for_each(|w| w.abort());
    }
}

/// The HPA watcher alone: started again when the HPA's name turns out to be another.
pub fn spawn_hpa_watcher<E: Send + 'static>(
    client: Client,
    ns: &str,
    name: &str,
    tx: mpsc::UnboundedSender<E>,
    wrap: fn(WatchUpdate) -> E,
) -> JoinHandle<()> {
    tokio::spawn(drive(
        "hpa",
        Api::<HorizontalPodAutoscaler>::namespaced(client, ns),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
        tx,
        wrap,
        WatchUpdate::Hpa,
    ))
}

/// What the ScaledObject reader reports.
#[derive(Debug)]
pub enum ScaledObjectUpdate {
    /// KEDA's `status.hpaName`: the HPA it really made (sent once).
    HpaName(String),
    /// KEDA's `Fallback` condition, when it changes (None: KEDA has not set it). KEDA sets it
    /// True, reason FallbackExists, once a trigger has failed `fallback.failureThreshold`
    /// times and the HPA is fed the fallback's made-up value (kedacore/keda
    /// pkg/fallback/fallback.go, `updateStatus`): the HPA panel must say so, since the
    /// metric it shows is then not a measurement.
    Fallback(Option<ConditionInfo>),
}

/// Polls the ScaledObject (every 2 s until KEDA names its HPA, then every 5 s) for its
/// `status.hpaName` and its `Fallback` condition; failures back off (2 s to 10 s) and show as
/// the `scaledobject` watch's health. Runs until `tx`'s receiver is gone.
pub fn spawn_scaled_object_reader<E: Send + 'static>(
    client: Client,
    ns: &str,
    scaled_object: &str,
    tx: mpsc::UnboundedSender<E>,
    wrap: fn(ScaledObjectUpdate) -> E,
    wrap_health: fn(WatchUpdate) -> E,
) -> JoinHandle<()> {
    const NAME: &str = "scaledobject";
    const POLL: Duration = Duration::from_secs(2);
    const POLL_NAMED: Duration = Duration::from_secs(5);
    let ar = kube::core::ApiResource {
        group: "keda.sh".into(),
        version: "v1alpha1".into(),
        api_version: "keda.sh/v1alpha1".into(),
        kind: "ScaledObject".into(),
        plural: "scaledobjects".into(),
    };
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client, ns, &ar);
    let name = scaled_object.to_string();
    tokio::spawn(async move {
        let mut backoff = Backoff::default();
        let mut named = false;
        let mut fallback: Option<Option<ConditionInfo>> = None;
        while !tx.is_closed() {
            let failure = match api.get_opt(&name).await {
                Ok(Some(so)) => {
                    if backoff.failures() > 0 {
                        backoff.succeeded();
                        let _ = tx.send(wrap_health(WatchUpdate::Health(NAME, None)));
                    }
                    let hpa = so.data.pointer("/status/hpaName").and_then(|h| h.as_str()).filter(|h| !h.is_empty());
                    if let (false, Some(h)) = (named, hpa) {
                        named = true;
                        let _ = tx.send(wrap(ScaledObjectUpdate::HpaName(h.to_string())));
                    }
                    let now = fallback_condition(&so.data);
                    if fallback.as_ref() != Some(&now) {
                        let _ = tx.send(wrap(ScaledObjectUpdate::Fallback(now.clone())));
                        fallback = Some(now);
                    }
                    None
                }
                Ok(None) => Some(WatchTrouble::Failed(format!("ScaledObject {name} not found"))),
                Err(e) => Some(WatchTrouble::of_client(&e)),
            };
            let wait = match failure {
                None if named => POLL_NAMED,
                None => POLL,
                Some(e) => {
                    let wait = backoff.failed();
                    let _ = tx.send(wrap_health(WatchUpdate::Health(NAME, Some(e))));
                    wait.max(POLL)
                }
            };
            tokio::time::sleep(wait).await;
        }
    })
}

/// The ScaledObject's `Fallback` condition, as the HPA panel lists conditions.
fn fallback_condition(so: &serde_json::Value) -> Option<ConditionInfo> {
    let c = so.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == "Fallback")?;
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some(ConditionInfo {
        kind: "Fallback".into(),
        status: c["status"] == "True",
        reason: text("reason"),
        message: text("message"),
    })
}

/// Starts the four watchers; they run until aborted or until `tx`'s receiver is gone.
pub fn spawn_watchers<E: Send + 'static>(
    client: Client,
    t: &WatchTargets,
    tx: mpsc::UnboundedSender<E>,
    wrap: fn(WatchUpdate) -> E,
) -> Watchers {
    let ns = t.namespace.as_str();
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let hpa = spawn_hpa_watcher(client.clone(), ns, &t.hpa, tx.clone(), wrap);
    let others = vec![
        tokio::spawn(drive(
            "deployment",
            Api::<Deployment>::namespaced(client.clone(), ns),
            by_name(&t.deployment),
            tx.clone(),
            wrap,
            WatchUpdate::Deployment,
        )),
        tokio::spawn(drive(
            "pods",
            Api::<Pod>::namespaced(client.clone(), ns),
            watcher::Config::default().labels(&t.pod_selector),
            tx.clone(),
            wrap,
            WatchUpdate::Pod,
        )),
        tokio::spawn(drive(
            "events",
            Api::<Event>::namespaced(client, ns),
            watcher::Config::default(),
            tx,
            wrap,
            WatchUpdate::Event,
        )),
    ];
    Watchers { hpa, others }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// KEDA's selector as the HPA controller prints it (see [`without_metric_selectors`]).
    const KEDA_METRIC: &str = "external metric s0-prometheus(&LabelSelector{MatchLabels:map[string]string{scaledobject.keda.sh/name: gpu-media,},MatchExpressions:[]LabelSelectorRequirement{},})";

    #[test]
    fn metric_selectors_leave_the_hpas_messages() {
        assert_eq!(
            without_metric_selectors(&format!("New size: 4; reason: {KEDA_METRIC} above target")),
            "New size: 4; reason: external metric s0-prometheus above target"
        );
        assert_eq!(
            without_metric_selectors(&format!(
                "the HPA was able to successfully calculate a replica count from {KEDA_METRIC}"
            )),
            "the HPA was able to successfully calculate a replica count from external metric s0-prometheus"
        );
        assert_eq!(
            without_metric_selectors("New size: 3; reason: external metric queue(nil) above target"),
            "New size: 3; reason: external metric queue above target"
        );
        // Other messages, and parentheses that are not a selector, are left as they are.
        for keep in [
            "New size: 2; reason: All metrics below target",
            "New size: 5; reason: pods metric rtc_worker_utilization above target",
            "back-off (nil) pulling",
            "a (&LabelSelector{ left open",
        ] {
            assert_eq!(without_metric_selectors(keep), keep);
        }
    }
}
