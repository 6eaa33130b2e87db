//! The `kube` backend (SPEC §4): a real cluster through kubeconfig/`--context`.
//!
//! - [`client`]: kubeconfig, context, namespace; a bounded first contact.
//! - [`preflight`]: reachable, allowed (SelfSubjectAccessReview), namespace, GPU nodes,
//!   KEDA/adapter, Prometheus; each failure with the kubectl command that shows it.
//! - [`apply`]: server-side apply (field manager `rtc-demo`) of the rendered kustomize
//!   folders, rollout wait with kubectl's progress lines, teardown.
//! - [`watch`]: kube-runtime watchers on the Deployment, its Pods, the HPA (or KEDA's
//!   `keda-hpa-<name>`) and Events, folded into the snapshot types the local backend uses.
//! - [`prometheus`]: p95/RPS/errors/shed/GPU through prometheus-http-query, stale + backoff.
//! - [`load_job`]: the in-cluster load Job + ConfigMap, and its per-second log lines.
//! - [`kubectl`]: the exact kubectl command for every step and view (the fallback panel).
//!
//! Testing: no API server can run on the build machines, so everything that talks to the
//! Kubernetes API is tested against a mocked `tower` service answering real Kubernetes JSON
//! (tests/conduct_kube_mock.rs), as kube-rs documents; the Prometheus source is tested
//! against a real Prometheus scraping real `rtc-demo serve` processes
//! (tests/conduct_prometheus.rs).
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams};
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use super::model::*;
use crate::load::{LoadConfig, LoadEngine, LoadHandle, LoadSecond, LoadSummary};
use crate::scenario::Scenario;

pub mod apply;
pub mod client;
pub mod console;
pub mod kubectl;
pub mod load_job;
pub mod preflight;
pub mod prometheus;
pub mod watch;

pub use client::{cluster_configured, connect, ConnectError, Connected, KubeTarget};

/// A kube-rs error in one line: API errors as `403 Forbidden: message`, others with their cause.
pub fn error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let reason = if s.reason.is_empty() { String::new() } else { format!(" {}", s.reason) };
            format!("{}{reason}: {}", s.code, s.message)
        }
        other => error_chain(other),
    }
}

/// A watcher error in one line.
pub fn watcher_error_text(e: &kube::runtime::watcher::Error) -> String {
    use kube::runtime::watcher::Error as W;
    match e {
        W::InitialListFailed(k) | W::WatchStartFailed(k) | W::WatchFailed(k) => error_text(k),
        other => error_chain(other),
    }
}

/// An error and its sources, each said once.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s = format!("{s}: {t}");
        }
        src = inner.source();
    }
    s
}

/// Names the backend derives from the rendered manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub deployment: String,
    pub pod_selector: String,
    /// The HPA to watch: the overlay's HPA, or `keda-hpa-<ScaledObject name>`.
    pub hpa: String,
    /// The ScaledObject, when KEDA owns the scaling.
    pub scaled_object: Option<String>,
}

/// Finds the Deployment's pod selector and the autoscaler's HPA in the rendered objects.
pub fn names_from(objects: &[Value], deployment: &str) -> Names {
    fn of_kind<'a>(objects: &'a [Value], k: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        objects.iter().filter(move |o| o.get("kind").and_then(|x| x.as_str()) == Some(k))
    }
    let name = |o: &Value| o.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("").to_string();
    let dep = of_kind(objects, "Deployment").find(|o| name(o) == deployment);
    let pod_selector = dep
        .and_then(|d| d.pointer("/spec/selector/matchLabels"))
        .and_then(|m| m.as_object())
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("app.kubernetes.io/name={deployment}"));
    let scaled_object = of_kind(objects, "ScaledObject").next().map(name);
    let hpa = match &scaled_object {
        Some(so) => format!("keda-hpa-{so}"),
        None => of_kind(objects, "HorizontalPodAutoscaler").next().map(name).unwrap_or_else(|| deployment.to_string()),
    };
    Names { deployment: deployment.to_string(), pod_selector, hpa, scaled_object }
}

/// Where the console is in its flow (what the kubectl panel shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Preflight,
    Applying,
    RollingOut,
    Running,
    TearingDown,
}

/// The kubectl panel: the commands for what the console is doing now, then the views.
pub fn kubectl_panel(k: &kubectl::Kubectl, phase: &Phase, overlay: &str, n: &Names, load: Option<&str>) -> Vec<String> {
    let mut v = Vec::new();
    match phase {
        Phase::Idle | Phase::Preflight => {
            v.push(k.cluster_info());
            v.push(k.auth_can_i_list());
            v.push(k.diff_k(overlay));
        }
        Phase::Applying => v.push(k.apply_k(overlay)),
        Phase::RollingOut => v.push(k.rollout_status(&n.deployment)),
        Phase::TearingDown => v.push(k.delete_k(overlay)),
        Phase::Running => {}
    }
    if let Some(l) = load {
        v.push(l.to_string());
    }
    v.push(k.get_hpa(&n.hpa));
    v.push(k.describe_hpa(&n.hpa));
    if let Some(so) = &n.scaled_object {
        v.push(k.get_scaledobject(so));
    }
    v.push(k.get_pods(&n.pod_selector));
    v.push(k.get_rescale_events());
    v
}

/// Everything the kube backend needs.
#[derive(Clone)]
pub struct KubeConfig {
    pub connected: Connected,
    pub namespace: String,
    pub scenario: Scenario,
    /// The scenario file (its text goes into the in-cluster load ConfigMap).
    pub scenario_path: PathBuf,
    /// Where `manifests/` paths in the scenario are relative to (the repository root).
    pub root: PathBuf,
    /// Prometheus base URL (`--prometheus`, else the scenario's `[prometheus] url`).
    pub prometheus: Option<String>,
    /// Load from this machine to this base URL; None with in-cluster load.
    pub load_url: Option<String>,
    pub in_cluster_load: bool,
    /// The run's id (report folder name), annotated on the load Job.
    pub run_id: String,
    /// Image for the load Job (None: the template's).
    pub load_image: Option<String>,
    /// Port of the Service (the in-cluster load's target).
    pub service_port: u16,
}

impl KubeConfig {
    /// The rendered manifests (extra folders, then the overlay), in this backend's namespace.
    pub fn objects(&self) -> Result<Vec<Value>, String> {
        let m = &self.scenario.manifests;
        apply::render_manifests(&self.root, &m.overlay, &m.extra, &m.namespace, &self.namespace)
    }

    pub fn kubectl(&self) -> kubectl::Kubectl {
        self.connected.kubectl(&self.namespace)
    }

    /// The preflight plan for this run.
    pub fn preflight_plan(&self, objects: &[Value], teardown: bool) -> preflight::Plan {
        preflight::Plan {
            namespace: self.namespace.clone(),
            server: self.connected.server.clone(),
            access: preflight::required_access(objects, &self.namespace, self.in_cluster_load, teardown),
            needs: preflight::needs(objects, &self.namespace),
            prometheus: self.prometheus.clone(),
            prometheus_service: ("monitoring".into(), "prometheus-operated".into(), 9090),
        }
    }
}

/// What `conduct::main` hands over to start the kube backend (its flags and the scenario).
#[derive(Clone)]
pub struct KubeArgs {
    /// `--kubeconfig`, `--context`, `--namespace` (None: kubeconfig's current context, the
    /// scenario's namespace).
    pub target: KubeTarget,
    /// `--prometheus` (None: the scenario's `[prometheus] url`).
    pub prometheus: Option<String>,
    pub scenario: Scenario,
    pub scenario_path: PathBuf,
    /// The repository root (`manifests/` paths in scenarios are relative to it).
    pub root: PathBuf,
    /// The run's id (the report folder's name).
    pub run_id: String,
    /// `--load-image` (None: the load Job template's image).
    pub load_image: Option<String>,
}

/// Connects (failing within 10 s with the server's address, or listing the contexts when
/// `--context` names none of them) and derives the backend's configuration.
pub async fn configure(a: KubeArgs) -> Result<KubeConfig, String> {
    let connected = connect(&a.target).await.map_err(|e| e.to_string())?;
    let namespace = a.target.namespace.clone().unwrap_or_else(|| a.scenario.manifests.namespace.clone());
    let in_cluster = a.scenario.load.from == crate::scenario::LoadOrigin::InCluster;
    let load_url = a.scenario.load.url.clone();
    if !in_cluster && load_url.is_none() {
        return Err(format!(
            "{}: [load] from = \"this-machine\" needs [load] url with the kube backend (an ingress, or `kubectl -n {namespace} port-forward svc/{} 8080:80` and url = \"http://127.0.0.1:8080\"), or use from = \"in-cluster\"",
            a.scenario_path.display(),
            a.scenario.manifests.service
        ));
    }
    let prometheus = a.prometheus.or_else(|| a.scenario.prometheus.url.clone());
    let cfg = KubeConfig {
        connected,
        namespace,
        scenario: a.scenario,
        scenario_path: a.scenario_path,
        root: a.root,
        prometheus,
        load_url,
        in_cluster_load: in_cluster,
        run_id: a.run_id,
        load_image: a.load_image,
        service_port: 80,
    };
    cfg.objects()?;
    Ok(cfg)
}

/// Runs preflight for this configuration (the console's checklist).
pub async fn preflight(cfg: &KubeConfig, teardown: bool) -> Result<Vec<preflight::Check>, String> {
    let objs = cfg.objects()?;
    Ok(preflight::run(&cfg.connected.client, &cfg.preflight_plan(&objs, teardown), &cfg.kubectl()).await)
}

/// The kube backend is a controller task behind the shared handle.
pub type KubeBackend = BackendHandle;

/// Renders the manifests (errors here, before anything runs), starts the watchers and the
/// Prometheus poller. Nothing is applied until `Apply`. Needs a tokio runtime.
pub fn start_backend(cfg: KubeConfig) -> Result<KubeBackend, String> {
    let objects = cfg.objects()?;
    let names = names_from(&objects, &cfg.scenario.manifests.deployment);
    let label = BackendLabel::Kube { context: cfg.connected.context.clone(), namespace: cfg.namespace.clone() };
    let (snap_tx, snap) =
        tokio::sync::watch::channel(Arc::new(ClusterSnapshot { backend: label, ..Default::default() }));
    let (tx, rx) = mpsc::unbounded_channel();
    let ctl = Controller::new(cfg, objects, names, snap_tx)?;
    tokio::spawn(ctl.run(rx));
    Ok(BackendHandle::new("kube", snap, tx))
}

/// Shared between the controller and its background tasks (apply, load Job, log reader).
#[derive(Default)]
struct Shared {
    phase: Option<Phase>,
    status: Option<String>,
    events: Vec<EventInfo>,
    load_line: Option<(Instant, load_job::LoadLine)>,
    load_file: Option<String>,
}

struct Controller {
    cfg: KubeConfig,
    objects: Vec<Value>,
    names: Names,
    k: kubectl::Kubectl,
    start: Instant,
    run_start_unix: f64,
    snap_tx: tokio::sync::watch::Sender<Arc<ClusterSnapshot>>,
    view: Arc<Mutex<watch::ClusterView>>,
    watchers: Vec<JoinHandle<()>>,
    prom: Option<(Arc<Mutex<prometheus::PromState>>, JoinHandle<()>)>,
    prom_error: Option<String>,
    shared: Arc<Mutex<Shared>>,
    load: Option<LoadHandle>,
    seconds: Option<broadcast::Receiver<Arc<LoadSecond>>>,
    last_second: Option<Arc<LoadSecond>>,
    summary: Option<LoadSummary>,
    series: VecDeque<Sample>,
    stage: usize,
    stage_name: Option<String>,
    task: Option<JoinHandle<()>>,
    log_task: Option<JoinHandle<()>>,
    load_desc: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Controller {
    fn new(
        cfg: KubeConfig,
        objects: Vec<Value>,
        names: Names,
        snap_tx: tokio::sync::watch::Sender<Arc<ClusterSnapshot>>,
    ) -> Result<Self, String> {
        let k = cfg.kubectl();
        let run_start_unix = watch::unix_now();
        let view = Arc::new(Mutex::new(watch::ClusterView::default()));
        let targets = watch::WatchTargets {
            namespace: cfg.namespace.clone(),
            deployment: names.deployment.clone(),
            pod_selector: names.pod_selector.clone(),
            hpa: names.hpa.clone(),
            event_prefixes: vec![names.deployment.clone(), names.hpa.clone(), load_job::JOB_NAME.to_string()]
                .into_iter()
                .chain(names.scaled_object.clone())
                .collect(),
        };
        let watchers = watch::spawn_watchers(cfg.connected.client.clone(), &targets, view.clone(), run_start_unix);
        let mut prom_error = None;
        let prom = match &cfg.prometheus {
            Some(url) => match prometheus::Source::new(url) {
                Ok(src) => {
                    let q = prometheus::Queries::from_scenario(&cfg.scenario.prometheus)
                        .in_namespace(&cfg.scenario.manifests.namespace, &cfg.namespace);
                    Some(prometheus::spawn(src, q, cfg.scenario.prometheus.interval.max(Duration::from_millis(500))))
                }
                Err(e) => {
                    prom_error = Some(e);
                    None
                }
            },
            None => None,
        };
        Ok(Controller {
            cfg,
            objects,
            names,
            k,
            start: Instant::now(),
            run_start_unix,
            snap_tx,
            view,
            watchers,
            prom,
            prom_error,
            shared: Arc::new(Mutex::new(Shared { phase: Some(Phase::Idle), ..Default::default() })),
            load: None,
            seconds: None,
            last_second: None,
            summary: None,
            series: VecDeque::with_capacity(SERIES_SECONDS),
            stage: 0,
            stage_name: None,
            task: None,
            log_task: None,
            load_desc: None,
        })
    }

    fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<ControlMsg>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.tick(),
                m = rx.recv() => match m {
                    Some(ControlMsg::Cmd(c)) => self.command(c).await,
                    Some(ControlMsg::Shutdown(teardown, reply)) => {
                        let t = self.shutdown(teardown).await;
                        let _ = reply.send(t);
                        return;
                    }
                    None => {
                        self.shutdown(false).await;
                        return;
                    }
                }
            }
        }
    }

    fn set_status(shared: &Mutex<Shared>, phase: Option<Phase>, status: Option<String>) {
        let mut s = lock(shared);
        if let Some(p) = phase {
            s.phase = Some(p);
        }
        s.status = status;
    }

    fn event(shared: &Mutex<Shared>, at_s: f64, kind: &str, reason: &str, object: &str, message: String) {
        lock(shared).events.push(EventInfo {
            at_s,
            kind: kind.into(),
            reason: reason.into(),
            object: object.into(),
            message,
        });
    }

    async fn command(&mut self, c: BackendCommand) {
        match c {
            BackendCommand::Apply => self.apply(),
            BackendCommand::StartStage { index, plan } => {
                self.stage = index;
                self.stage_name = self.cfg.scenario.stages.get(index).map(|s| s.name.clone());
                self.load_desc = Some(describe_plan(&plan, 1.0));
                if self.cfg.in_cluster_load {
                    // Past the last stage (the director's "finished" plan) or a 0 rps stage: no Job.
                    let idle = matches!(plan, RatePlan::Constant { rps } if rps <= 0.0);
                    if self.stage_name.is_none() || idle {
                        self.stop_job("idle");
                    } else {
                        self.start_job();
                    }
                } else {
                    self.start_local_load(plan);
                }
            }
            BackendCommand::Pause => {
                if let Some(h) = &self.load {
                    h.pause();
                } else if self.cfg.in_cluster_load {
                    self.stop_job("paused");
                }
            }
            BackendCommand::Resume => {
                if let Some(h) = &self.load {
                    h.resume();
                } else if self.cfg.in_cluster_load {
                    self.start_job();
                }
            }
            BackendCommand::ScaleLoad(f) => {
                if let Some(h) = &self.load {
                    h.scale(f);
                } else if self.cfg.in_cluster_load {
                    Self::set_status(&self.shared, None, Some(format!("rate ×{f:.2} is not available with in-cluster load: the Job runs the stage's plan (r restarts the stage)")));
                }
            }
            BackendCommand::Stop => {
                self.stop_local_load().await;
                if self.cfg.in_cluster_load {
                    self.stop_job("stopped");
                }
            }
            BackendCommand::Teardown => self.teardown(),
        }
    }

    /// Preflight, then server-side apply, then the rollout wait, in the background.
    fn apply(&mut self) {
        if self.task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let cfg = self.cfg.clone();
        let objects = self.objects.clone();
        let shared = self.shared.clone();
        let start = self.start;
        let deployment = self.names.deployment.clone();
        self.task = Some(tokio::spawn(async move {
            let at = || start.elapsed().as_secs_f64();
            Self::set_status(&shared, Some(Phase::Preflight), Some("preflight…".into()));
            let checks =
                preflight::run(&cfg.connected.client, &cfg.preflight_plan(&objects, false), &cfg.kubectl()).await;
            for c in &checks {
                let kind = match c.verdict {
                    preflight::Verdict::Fail => "Warning",
                    _ => "Normal",
                };
                Self::event(&shared, at(), kind, "Preflight", &c.name, c.line());
            }
            if !preflight::passed(&checks) {
                let failed: Vec<String> =
                    checks.iter().filter(|c| c.verdict == preflight::Verdict::Fail).map(|c| c.line()).collect();
                Self::set_status(
                    &shared,
                    Some(Phase::Preflight),
                    Some(format!("preflight failed, nothing applied: {}", failed.join("; "))),
                );
                return;
            }
            Self::set_status(
                &shared,
                Some(Phase::Applying),
                Some(format!("applying {} objects (server-side, field manager rtc-demo)", objects.len())),
            );
            let mut applier = apply::Applier::new(cfg.connected.client.clone());
            let sh = shared.clone();
            let r = applier
                .apply_all(&objects, |i, n, what| {
                    Self::set_status(&sh, None, Some(format!("applying {}/{n}: {what}", i + 1)))
                })
                .await;
            match r {
                Ok(done) => Self::event(
                    &shared,
                    at(),
                    "Normal",
                    "Applied",
                    "kustomize",
                    format!("{} objects applied server-side (field manager rtc-demo)", done.len()),
                ),
                Err(e) => {
                    Self::event(&shared, at(), "Warning", "ApplyFailed", "kustomize", e.to_string());
                    Self::set_status(&shared, Some(Phase::Applying), Some(format!("apply failed: {e}")));
                    return;
                }
            }
            Self::set_status(&shared, Some(Phase::RollingOut), Some("waiting for the rollout".into()));
            let sh = shared.clone();
            let r = apply::wait_rollout(
                cfg.connected.client.clone(),
                &cfg.namespace,
                &deployment,
                Duration::from_secs(600),
                |line| Self::set_status(&sh, None, Some(line.to_string())),
            )
            .await;
            match r {
                Ok(()) => {
                    Self::event(
                        &shared,
                        at(),
                        "Normal",
                        "RolledOut",
                        &format!("deploy/{deployment}"),
                        format!("deployment {deployment:?} successfully rolled out"),
                    );
                    Self::set_status(&shared, Some(Phase::Running), None);
                }
                Err(e) => Self::set_status(&shared, Some(Phase::RollingOut), Some(e)),
            }
        }));
    }

    fn start_local_load(&mut self, plan: RatePlan) {
        let Some(base) = self.cfg.load_url.clone() else {
            Self::set_status(
                &self.shared,
                None,
                Some("no load URL: set [load] url in the scenario (or from = \"in-cluster\")".into()),
            );
            return;
        };
        if self.load.is_none() {
            let url = self.cfg.scenario.request.url_for(&base);
            let uri: hyper::Uri = match url.parse() {
                Ok(u) => u,
                Err(e) => {
                    Self::set_status(&self.shared, None, Some(format!("load URL {url:?}: {e}")));
                    return;
                }
            };
            let cfg = LoadConfig {
                targets: vec![uri],
                method: self.cfg.scenario.request.method.as_hyper(),
                connections: self.cfg.scenario.load.connections,
                timeout: self.cfg.scenario.request.timeout,
                max_inflight: self.cfg.scenario.load.max_inflight,
                plan: RatePlan::Constant { rps: 0.0 },
                ..Default::default()
            };
            match LoadEngine::start(cfg) {
                Ok(h) => {
                    self.seconds = Some(h.subscribe());
                    self.load = Some(h);
                }
                Err(e) => {
                    Self::set_status(&self.shared, None, Some(format!("load engine: {e}")));
                    return;
                }
            }
        }
        if let Some(h) = &self.load {
            h.set_scale(1.0);
            h.resume();
            if let Err(e) = h.set_plan(plan) {
                Self::set_status(&self.shared, None, Some(format!("load plan: {e}")));
            }
        }
    }

    async fn stop_local_load(&mut self) {
        if let Some(h) = self.load.take() {
            if let Ok(s) = tokio::time::timeout(Duration::from_millis(800), h.stop()).await {
                self.summary = Some(s);
            }
        }
    }

    fn job_spec(&self) -> Result<load_job::LoadJobSpec, String> {
        let text = std::fs::read_to_string(&self.cfg.scenario_path)
            .map_err(|e| format!("{}: cannot read: {e}", self.cfg.scenario_path.display()))?;
        Ok(load_job::LoadJobSpec {
            scenario_toml: text,
            run_id: self.cfg.run_id.clone(),
            namespace: self.cfg.namespace.clone(),
            stage: self.stage_name.clone(),
            service_url: load_job::service_url(
                &self.cfg.scenario.manifests.service,
                &self.cfg.namespace,
                self.cfg.service_port,
            ),
            image: self.cfg.load_image.clone(),
        })
    }

    /// (Re)creates the load Job for the current stage and follows its pod's log.
    fn start_job(&mut self) {
        if let Some(t) = self.log_task.take() {
            t.abort();
        }
        let spec = match self.job_spec().and_then(|s| load_job::render(&self.cfg.root.join("manifests/load"), &s)) {
            Ok(objs) => objs,
            Err(e) => {
                Self::set_status(&self.shared, None, Some(format!("in-cluster load: {e}")));
                return;
            }
        };
        // Written to disk so the kubectl panel's `apply -f` names a real file.
        let file = std::env::temp_dir().join(format!("rtc-demo-load-{}.yaml", sanitize(&self.cfg.run_id)));
        let file_s = file.display().to_string();
        match std::fs::write(&file, load_job::to_yaml(&spec)) {
            Ok(()) => lock(&self.shared).load_file = Some(file_s),
            Err(_) => lock(&self.shared).load_file = None,
        }
        let client = self.cfg.connected.client.clone();
        let ns = self.cfg.namespace.clone();
        let shared = self.shared.clone();
        let start = self.start;
        self.log_task = Some(tokio::spawn(async move {
            if let Err(e) = run_load_job(client, &ns, &spec, &shared, start).await {
                Self::set_status(&shared, None, Some(format!("in-cluster load: {e}")));
            }
        }));
    }

    fn stop_job(&mut self, why: &str) {
        if let Some(t) = self.log_task.take() {
            t.abort();
        }
        let client = self.cfg.connected.client.clone();
        let ns = self.cfg.namespace.clone();
        let shared = self.shared.clone();
        let why = why.to_string();
        tokio::spawn(async move {
            match delete_job(&client, &ns).await {
                Ok(()) => {
                    Self::set_status(&shared, None, Some(format!("load {why}: Job {} deleted", load_job::JOB_NAME)))
                }
                Err(e) => Self::set_status(
                    &shared,
                    None,
                    Some(format!("load {why}, but deleting Job {}: {e}", load_job::JOB_NAME)),
                ),
            }
        });
        lock(&self.shared).load_line = None;
    }

    fn teardown(&mut self) {
        let client = self.cfg.connected.client.clone();
        let objects = self.objects.clone();
        let shared = self.shared.clone();
        Self::set_status(&shared, Some(Phase::TearingDown), Some("deleting what was applied".into()));
        tokio::spawn(async move {
            let errs = apply::Applier::new(client).delete_all(&objects).await;
            let msg = if errs.is_empty() { None } else { Some(format!("teardown: {}", errs.join("; "))) };
            Self::set_status(&shared, None, msg);
        });
    }

    async fn shutdown(&mut self, teardown: bool) -> Totals {
        self.stop_local_load().await;
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(t) = self.log_task.take() {
            t.abort();
        }
        let client = self.cfg.connected.client.clone();
        if self.cfg.in_cluster_load {
            let _ = tokio::time::timeout(Duration::from_secs(3), delete_job(&client, &self.cfg.namespace)).await;
        }
        if teardown {
            Self::set_status(&self.shared, Some(Phase::TearingDown), None);
            let errs =
                tokio::time::timeout(Duration::from_secs(20), apply::Applier::new(client).delete_all(&self.objects))
                    .await;
            if let Ok(errs) = errs {
                if !errs.is_empty() {
                    Self::set_status(&self.shared, None, Some(format!("teardown: {}", errs.join("; "))));
                }
            }
        }
        for w in self.watchers.drain(..) {
            w.abort();
        }
        if let Some((_, h)) = self.prom.take() {
            h.abort();
        }
        self.publish(true);
        self.summary.take()
    }

    fn tick(&mut self) {
        if let Some(rx) = self.seconds.as_mut() {
            loop {
                match rx.try_recv() {
                    Ok(s) => self.last_second = Some(s),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
        }
        self.record();
        self.publish(false);
    }

    fn prom_state(&self) -> Option<prometheus::PromState> {
        self.prom.as_ref().map(|(s, _)| lock(s).clone())
    }

    fn record(&mut self) {
        let now_unix = watch::unix_now();
        let (ready, total, desired) = {
            let v = lock(&self.view);
            let (r, t) = v.pod_counts(now_unix);
            (r, t, v.desired().unwrap_or(0))
        };
        let prom = self.prom_state();
        let fresh = prom.as_ref().filter(|p| !p.stale(Duration::from_secs(10)));
        let reading = fresh.map(|p| p.value.clone()).unwrap_or_default();
        let pct = |p: &crate::load::Percentiles| if p.count > 0 { Some(p.p95_ms / 1000.0) } else { None };
        let paused = self.load.as_ref().is_some_and(|h| h.is_paused());
        let mut s = Sample {
            t_s: self.now_s().round(),
            pods_ready: ready,
            pods_total: total,
            desired,
            p95_server_s: reading.p95_s,
            gpu_util: reading.gpu_util,
            stage: self.stage,
            ..Default::default()
        };
        if let Some(ls) = self.last_second.as_deref().filter(|_| self.load.is_some()) {
            s.p95_client_s = pct(&ls.corrected);
            s.p95_client_uncorrected_s = pct(&ls.uncorrected);
            s.offered_rps = if paused { 0.0 } else { ls.offered_rps };
            s.achieved_rps = ls.achieved_rps;
            s.errors = ls.status.errors();
            s.shed = ls.status.shed_503;
            s.dropped = ls.dropped;
        } else if let Some((at, l)) =
            lock(&self.shared).load_line.clone().filter(|(at, _)| at.elapsed() < Duration::from_secs(5))
        {
            let _ = at;
            s.p95_client_s = l.p95_corrected_s;
            s.p95_client_uncorrected_s = l.p95_uncorrected_s;
            s.offered_rps = l.offered_rps;
            s.achieved_rps = l.achieved_rps;
            s.errors = l.errors;
            s.shed = l.shed;
            s.dropped = l.dropped;
        } else {
            // No client figures: the service's own counters from Prometheus.
            s.achieved_rps = reading.rps.unwrap_or(0.0);
            s.errors = reading.errors_per_s.map(|x| x.round() as u64).unwrap_or(0);
            s.shed = reading.shed_per_s.map(|x| x.round() as u64).unwrap_or(0);
        }
        if self.series.len() >= SERIES_SECONDS {
            self.series.pop_front();
        }
        self.series.push_back(s);
    }

    fn publish(&mut self, done: bool) {
        let now_unix = watch::unix_now();
        let (pods, autoscaler, mut events, watch_err) = {
            let v = lock(&self.view);
            (v.pods(now_unix), v.autoscaler(), v.events(), v.error_line())
        };
        let (phase, status, own_events, load_file) = {
            let s = lock(&self.shared);
            (s.phase.clone().unwrap_or(Phase::Idle), s.status.clone(), s.events.clone(), s.load_file.clone())
        };
        events.extend(own_events);
        events.sort_by(|a, b| a.at_s.partial_cmp(&b.at_s).unwrap_or(std::cmp::Ordering::Equal));
        let excess = events.len().saturating_sub(watch::MAX_EVENTS);
        events.drain(..excess);
        let prom = self.prom_state();
        let staleness = match (&prom, &self.cfg.prometheus) {
            (Some(p), Some(url)) => Staleness {
                metrics_source: format!("prometheus {url}"),
                metrics_stale: p.stale(Duration::from_secs(10)),
                metrics_age_s: p.last_ok.map(|t| t.elapsed().as_secs_f64()),
                metrics_error: p.error.clone(),
                load_stale: self.cfg.in_cluster_load
                    && lock(&self.shared)
                        .load_line
                        .as_ref()
                        .is_none_or(|(at, _)| at.elapsed() > Duration::from_secs(5))
                    && self.stage_name.is_some(),
            },
            _ => Staleness {
                metrics_source: "no prometheus".into(),
                metrics_stale: true,
                metrics_age_s: None,
                metrics_error: self.prom_error.clone(),
                load_stale: false,
            },
        };
        let load_cmd = if self.cfg.in_cluster_load {
            load_file.as_ref().map(|f| format!("{} && {}", self.k.delete_job(load_job::JOB_NAME), self.k.apply_f(f)))
        } else {
            match (&self.cfg.load_url, &self.stage_name) {
                (Some(u), Some(st)) => {
                    Some(self.k.load_from_here(&self.cfg.scenario_path.display().to_string(), st, u))
                }
                _ => None,
            }
        };
        let mut kubectl =
            kubectl_panel(&self.k, &phase, &self.cfg.scenario.manifests.overlay, &self.names, load_cmd.as_deref());
        if self.cfg.in_cluster_load && self.stage_name.is_some() {
            kubectl.push(self.k.logs_job(load_job::JOB_NAME));
        }
        let status = match (status, watch_err) {
            (Some(s), Some(w)) => Some(format!("{s}; {w} (check: {})", self.k.auth_can_i_list())),
            (Some(s), None) => Some(s),
            (None, Some(w)) => Some(format!("{w} (check: {})", self.k.auth_can_i_list())),
            (None, None) => None,
        };
        let snap = ClusterSnapshot {
            at_s: self.now_s(),
            backend: BackendLabel::Kube {
                context: self.cfg.connected.context.clone(),
                namespace: self.cfg.namespace.clone(),
            },
            pods,
            autoscaler,
            events,
            series: self.series.iter().cloned().collect(),
            staleness,
            kubectl,
            status,
            stage: None,
            done,
        };
        let _ = self.snap_tx.send(Arc::new(snap));
        let _ = self.run_start_unix;
    }
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect()
}

/// Deletes the load Job (its pods with it) and waits until it is gone (at most 20 s).
pub async fn delete_job(client: &kube::Client, ns: &str) -> Result<(), String> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    match jobs.delete(load_job::JOB_NAME, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(error_text(&e)),
    }
    for _ in 0..40 {
        match jobs.get_opt(load_job::JOB_NAME).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => return Err(error_text(&e)),
        }
    }
    Err(format!("Job {} still exists 20 s after its deletion", load_job::JOB_NAME))
}

/// Replaces the load Job with `objects` (ConfigMap, Job, …), waits for its pod to run and
/// follows its log, putting each per-second line into `shared`.
async fn run_load_job(
    client: kube::Client,
    ns: &str,
    objects: &[Value],
    shared: &Arc<Mutex<Shared>>,
    start: Instant,
) -> Result<(), String> {
    delete_job(&client, ns).await?;
    let mut applier = apply::Applier::new(client.clone());
    applier.apply_all(objects, |_, _, _| {}).await.map_err(|e| e.to_string())?;
    Controller::event(
        shared,
        start.elapsed().as_secs_f64(),
        "Normal",
        "LoadStarted",
        &format!("job/{}", load_job::JOB_NAME),
        "in-cluster load Job created".into(),
    );
    let pods: Api<Pod> = Api::namespaced(client, ns);
    let lp = ListParams::default().labels(&format!("job-name={}", load_job::JOB_NAME));
    let mut pod_name = None;
    for _ in 0..120 {
        let list = pods.list(&lp).await.map_err(|e| format!("listing the load pod: {}", error_text(&e)))?;
        if let Some(p) = list.items.iter().find(|p| {
            matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Running") | Some("Succeeded") | Some("Failed")
            )
        }) {
            pod_name = p.metadata.name.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let name = pod_name.ok_or("the load pod did not start within 60 s")?;
    let logs = pods
        .log_stream(&name, &LogParams { follow: true, ..Default::default() })
        .await
        .map_err(|e| format!("reading the load pod's log: {}", error_text(&e)))?;
    let mut lines = logs.lines();
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| format!("load pod log: {e}"))?;
        if let Some(l) = load_job::parse_line(&line) {
            lock(shared).load_line = Some((Instant::now(), l));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn objs() -> Vec<Value> {
        vec![
            json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"gpu-media"},"spec":{"selector":{"matchLabels":{"app.kubernetes.io/name":"gpu-media"}}}}),
            json!({"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"gpu-media"}}),
        ]
    }

    #[test]
    fn names_follow_keda_and_hpa() {
        let n = names_from(&objs(), "gpu-media");
        assert_eq!(n.pod_selector, "app.kubernetes.io/name=gpu-media");
        assert_eq!(n.hpa, "keda-hpa-gpu-media");
        let o = vec![
            objs()[0].clone(),
            json!({"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"gpu-media-hpa"}}),
        ];
        let n = names_from(&o, "gpu-media");
        assert_eq!((n.hpa.as_str(), n.scaled_object.is_none()), ("gpu-media-hpa", true));
    }

    #[test]
    fn panel_per_phase() {
        let k = kubectl::Kubectl::new(None, "rtc");
        let n = names_from(&objs(), "gpu-media");
        let ov = "manifests/overlays/gpu-keda";
        let p = kubectl_panel(&k, &Phase::Applying, ov, &n, None);
        assert_eq!(
            p[0],
            "kubectl apply --server-side --field-manager=rtc-demo --force-conflicts -k manifests/overlays/gpu-keda"
        );
        assert!(p.contains(&"kubectl -n rtc get hpa keda-hpa-gpu-media -w".to_string()), "{p:#?}");
        assert!(p.contains(&"kubectl -n rtc get scaledobject gpu-media".to_string()));
        let p = kubectl_panel(&k, &Phase::RollingOut, ov, &n, None);
        assert_eq!(p[0], "kubectl -n rtc rollout status deployment/gpu-media --timeout=5m");
        let p = kubectl_panel(&k, &Phase::TearingDown, ov, &n, None);
        assert_eq!(p[0], "kubectl delete -k manifests/overlays/gpu-keda --ignore-not-found --wait=false");
        let p = kubectl_panel(&k, &Phase::Running, ov, &n, Some("rtc-demo load -q 5 -z 30s URL"));
        assert_eq!(p[0], "rtc-demo load -q 5 -z 30s URL");
        assert_eq!(
            p.last().unwrap(),
            "kubectl -n rtc get events --field-selector reason=SuccessfulRescale --sort-by=.lastTimestamp -w"
        );
    }
}
