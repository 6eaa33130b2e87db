//! The `kube` backend (SPEC §4): a real cluster through kubeconfig/`--context`.
//!
//! - [`client`]: kubeconfig, context, namespace; a bounded first contact.
//! - [`preflight`]: reachable, allowed (SelfSubjectAccessReview), namespace, GPU nodes,
//!   KEDA/adapter, Prometheus; each failure with the kubectl command that shows it.
//! - [`apply`]: server-side apply (field manager `rtc-demo`) of the rendered kustomize
//!   folders, rollout wait with kubectl's progress lines, teardown.
//! - [`watch`]: kube-runtime watchers on the Deployment, its Pods, the HPA (or KEDA's
//!   HPA it makes, named by [`keda_hpa_name`]) and Events, folded into the snapshot types the
//!   local backend uses.
//! - [`job_driver`]: the in-cluster load Job behind the console's `LoadDriver` interface.
//!
//! One task, the controller, owns the backend's state; the watchers, the Prometheus poller,
//! the apply/rollout task and the load Job's log follower send it [`KubeEvent`]s.
//! - [`prometheus`]: p95/RPS/errors/shed/GPU through prometheus-http-query, stale + backoff.
//! - [`load_job`]: the in-cluster load Job + ConfigMap, and its per-second log lines.
//! - [`pod_capacity`]: the capacity probe against one ready pod, through `kubectl port-forward pod/NAME`.
//! - [`kubectl`]: the exact kubectl command for every step and view (the fallback panel).
//!
//! Testing: no API server can run on the build machines, so everything that talks to the
//! Kubernetes API is tested against a mocked `tower` service answering real Kubernetes JSON
//! (tests/conduct_kube_mock.rs), as kube-rs documents; the Prometheus source is tested
//! against a real Prometheus scraping real `rtc-demo serve` processes
//! (tests/conduct_prometheus.rs).
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::load_driver::{EngineDriver, LoadDriver, Unconfigured, WebRtcDriver, STOP_DEADLINE};
use super::model::*;
use super::timeline::{PodCounts, Timeline};
use crate::image_ref::{ImageRef, PLACEHOLDER_NAME};
use crate::kustomize::ImageOverride;
use crate::load::LoadConfig;
use crate::scenario::Scenario;

pub mod apply;
pub mod client;
pub mod console;
pub mod job_driver;
pub mod kubectl;
pub mod load_job;
pub mod pod_capacity;
pub mod port_forward;
pub mod preflight;
pub mod prometheus;
pub mod proxy;
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

pub(crate) use crate::errors::chain as error_chain;

/// Why the kube backend could not start or do what it was asked; each says where and what
/// would fix it.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    #[error(transparent)]
    LoadJob(#[from] load_job::LoadJobError),
    #[error(transparent)]
    Backend(#[from] BackendGone),
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: [load] from = \"this-machine\" needs [load] url with the kube backend (an ingress, or `kubectl -n {namespace} port-forward svc/{service} 8080:80` and url = \"http://127.0.0.1:8080\"), or use from = \"in-cluster\"", scenario.display())]
    NoLoadUrl { scenario: PathBuf, namespace: String, service: String },
    #[error("load URL {url:?}: {reason}")]
    LoadUrl { url: String, reason: String },
    #[error("preflight: {failed} check(s) failed on {server} (see above); nothing was applied")]
    Preflight { failed: usize, server: String },
    /// A Kubernetes API call failed (`403 Forbidden: …`, a transport error …).
    #[error("{what}: {detail}")]
    Api { what: String, detail: String },
    #[error("Job {name} still exists {} s after its deletion (see `kubectl describe job {name}`)", budget.as_secs())]
    JobNotDeleted { name: &'static str, budget: std::time::Duration },
    #[error("the load pod did not run within {} s ({last}); raise [load] pod_start_timeout, or see `kubectl describe pod -l job-name=rtc-demo-load`", timeout.as_secs())]
    LoadPodNotStarted { timeout: std::time::Duration, last: String },
    #[error("the load pod {pod} cannot start: {why} (see `kubectl describe pod {pod}`)")]
    LoadPodCannotStart { pod: String, why: String },
    #[error("--prometheus port-forward: {0}")]
    PortForward(#[from] port_forward::PortForwardError),
}

impl KubeError {
    pub(crate) fn api(what: impl Into<String>, e: &kube::Error) -> KubeError {
        KubeError::Api { what: what.into(), detail: error_text(e) }
    }
}

/// The manifests' NetworkPolicies admit Prometheus from namespace `monitoring`; point them at
/// the namespace the scenario's `[prometheus] namespace` names instead.
fn admit_scrapes_from(objects: &mut [Value], prometheus_ns: &str) {
    const NAME_LABEL: &str = "kubernetes.io/metadata.name";
    for o in objects.iter_mut().filter(|o| o.get("kind").and_then(|k| k.as_str()) == Some("NetworkPolicy")) {
        for rule in o.pointer_mut("/spec/ingress").and_then(|i| i.as_array_mut()).into_iter().flatten() {
            for peer in rule.get_mut("from").and_then(|f| f.as_array_mut()).into_iter().flatten() {
                if let Some(v) = peer.pointer_mut("/namespaceSelector/matchLabels").and_then(|m| m.get_mut(NAME_LABEL))
                {
                    if v.as_str() == Some("monitoring") {
                        *v = Value::String(prometheus_ns.into());
                    }
                }
            }
        }
    }
}

/// The Prometheus Operator's Service for every Prometheus it runs: the StatefulSets' governing
/// Service `prometheus-operated`, web port 9090 (prometheus-operator
/// pkg/prometheus/server/statefulset.go, governingServiceName; the web port in pkg/prometheus/common.go).
const OPERATOR_PROMETHEUS: (&str, u16) = ("prometheus-operated", 9090);

/// `http://NAME.NAMESPACE.svc[.cluster.local][:PORT][/…]` → (NAME, NAMESPACE, PORT); None for
/// any other URL (an external Prometheus the console must not rewrite).
fn in_cluster_service(url: &str) -> Option<(String, String, u16)> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split(['/', '?']).next()?;
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (authority, 80),
    };
    let mut labels = host.split('.');
    let (name, ns) = (labels.next()?, labels.next()?);
    let tail: Vec<&str> = labels.collect();
    (tail == ["svc"] || tail == ["svc", "cluster", "local"]).then(|| (name.to_string(), ns.to_string(), port))
}

/// Prometheus's Service and port in its namespace: the scenario's `[prometheus] service`/`port`,
/// else the Service the overlay's ScaledObject reads (so `gpu-keda-no-operator` forwards to the
/// community chart's `prometheus-server:80`), else the Operator's.
pub fn prometheus_service(settings: &crate::scenario::Prometheus, objects: &[Value]) -> (String, u16) {
    let from_overlay = objects
        .iter()
        .filter(|o| o.get("kind").and_then(|k| k.as_str()) == Some("ScaledObject"))
        .flat_map(|o| o.pointer("/spec/triggers").and_then(|t| t.as_array()).into_iter().flatten())
        .filter_map(|t| t.pointer("/metadata/serverAddress").and_then(|a| a.as_str()))
        .find_map(in_cluster_service)
        .map(|(name, _, port)| (name, port));
    let (default_name, default_port) =
        from_overlay.unwrap_or_else(|| (OPERATOR_PROMETHEUS.0.to_string(), OPERATOR_PROMETHEUS.1));
    match (&settings.service, settings.port) {
        (Some(name), port) => {
            let port =
                port.map(u16::from).unwrap_or(if *name == default_name { default_port } else { OPERATOR_PROMETHEUS.1 });
            (name.clone(), port)
        }
        (None, Some(port)) => (default_name, port.into()),
        (None, None) => (default_name, default_port),
    }
}

/// Points the ScaledObjects' Prometheus triggers that read an in-cluster Service at
/// `service:port` in Prometheus's namespace (`[prometheus] namespace`), so KEDA reads the
/// Prometheus the console reads.
fn read_prometheus_at(objects: &mut [Value], namespace: &str, (service, port): &(String, u16)) {
    let address = format!("http://{service}.{namespace}.svc:{port}");
    for o in objects.iter_mut().filter(|o| o.get("kind").and_then(|k| k.as_str()) == Some("ScaledObject")) {
        for t in o.pointer_mut("/spec/triggers").and_then(|t| t.as_array_mut()).into_iter().flatten() {
            if let Some(a) = t.pointer_mut("/metadata/serverAddress") {
                if a.as_str().and_then(in_cluster_service).is_some() {
                    *a = Value::String(address.clone());
                }
            }
        }
    }
}

/// Adds a rule to the service's NetworkPolicy (named like the Deployment) admitting `[manifests]
/// ingress_from` on its HTTP port: the ingress controller's namespace, a load balancer's ranges.
fn admit_ingress_from(objects: &mut [Value], policy: &str, peers: &[crate::scenario::IngressPeer]) {
    use crate::scenario::IngressPeer;
    if peers.is_empty() {
        return;
    }
    let from: Vec<Value> = peers
        .iter()
        .map(|p| match p {
            IngressPeer::Namespace(ns) => {
                serde_json::json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}})
            }
            IngressPeer::Cidr(cidr) => serde_json::json!({"ipBlock": {"cidr": cidr}}),
        })
        .collect();
    let rule = serde_json::json!({"from": from, "ports": [{"protocol": "TCP", "port": "http"}]});
    for o in objects.iter_mut().filter(|o| {
        o.get("kind").and_then(|k| k.as_str()) == Some("NetworkPolicy")
            && o.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(policy)
    }) {
        if let Some(rules) = o.pointer_mut("/spec/ingress").and_then(|i| i.as_array_mut()) {
            rules.push(rule.clone());
        }
    }
}

/// The registry path Gatekeeper's K8sAllowedRepos must allow for `image`: its name up to the
/// last `/` (`registry.example.com/you/`), or the whole name for a bare one (`rtc-demo`).
fn allowed_repo_of(image: &str) -> String {
    match image.rfind('/') {
        Some(i) => image[..=i].to_string(),
        None => image.to_string(),
    }
}

/// The `policy` folder's constraint allows the placeholder's registry path; with `--image` /
/// `[manifests] image` it allows that image's instead, so the policy never blocks the image
/// the console deploys.
fn allow_image_in_policy(objects: &mut [Value], image: &ImageRef) {
    let (placeholder, ours) = (allowed_repo_of(PLACEHOLDER_NAME), allowed_repo_of(&image.name));
    for o in objects.iter_mut().filter(|o| {
        o.get("apiVersion").and_then(|v| v.as_str()).is_some_and(|v| v.starts_with("constraints.gatekeeper.sh/"))
            && o.get("kind").and_then(|k| k.as_str()) == Some("K8sAllowedRepos")
    }) {
        for r in o.pointer_mut("/spec/parameters/repos").and_then(|r| r.as_array_mut()).into_iter().flatten() {
            if r.as_str() == Some(placeholder.as_str()) {
                *r = Value::String(ours.clone());
            }
        }
    }
}

/// The rendered manifests made to fit the scenario's cluster: its image (and the policy that
/// must allow it), Prometheus's namespace and Service, the ingress path of the load.
pub fn fit_to_cluster(objects: &mut [Value], scenario: &Scenario, image: Option<&ImageRef>) {
    if let Some(image) = image {
        ImageOverride::replacing(PLACEHOLDER_NAME, image).apply(objects.iter_mut());
        allow_image_in_policy(objects, image);
    }
    let prometheus = prometheus_service(&scenario.prometheus, objects);
    read_prometheus_at(objects, &scenario.prometheus.namespace, &prometheus);
    admit_scrapes_from(objects, &scenario.prometheus.namespace);
    admit_ingress_from(objects, &scenario.manifests.deployment, &scenario.manifests.ingress_from);
}

/// How long an earlier overlay's autoscaler may take to be deleted before an apply.
const AUTOSCALER_DELETE_BUDGET: Duration = Duration::from_secs(60);

/// Names the backend derives from the rendered manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub deployment: String,
    pub pod_selector: String,
    /// The HPA to watch: the overlay's HPA, or the one KEDA makes for the ScaledObject.
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
    let so = of_kind(objects, "ScaledObject").next();
    let scaled_object = so.map(name);
    let hpa = match so {
        Some(so) => keda_hpa_name(so),
        None => of_kind(objects, "HorizontalPodAutoscaler").next().map(name).unwrap_or_else(|| deployment.to_string()),
    };
    Names { deployment: deployment.to_string(), pod_selector, hpa, scaled_object }
}

/// The name of the HPA KEDA creates for a ScaledObject, as KEDA's controller names it
/// (kedacore/keda, controllers/keda/hpa.go, `getHPAName`: a non-empty
/// `spec.advanced.horizontalPodAutoscalerConfig.name`, else `keda-hpa-<ScaledObject name>`).
pub fn keda_hpa_name(scaled_object: &Value) -> String {
    match scaled_object.pointer("/spec/advanced/horizontalPodAutoscalerConfig/name").and_then(|n| n.as_str()) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            let so = scaled_object.pointer("/metadata/name").and_then(|n| n.as_str()).unwrap_or("");
            format!("keda-hpa-{so}")
        }
    }
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
            v.push(k.server_version());
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

/// How the load reaches the service: an in-cluster Job, the engine from this machine, or
/// nothing (with why). Built again when the capacity probe has sized the request.
fn load_driver(cfg: &KubeConfig, tell: &Tell) -> Result<Box<dyn LoadDriver>, KubeError> {
    Ok(if cfg.in_cluster_load {
        // The Job runs `rtc-demo load --scenario`: requests or WebRTC sessions, as the
        // scenario says.
        Box::new(job_driver::JobDriver::new(
            cfg.connected.client.clone(),
            cfg.job_spec()?,
            cfg.root.join("manifests/load"),
            cfg.scenario.stages.iter().map(|s| s.name.clone()).collect(),
            cfg.scenario.load.pod_start_timeout,
            tell.clone(),
        ))
    } else if let Some(base) = &cfg.load_url {
        let url = cfg.scenario.request.url_for(base);
        let uri: hyper::Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| KubeError::LoadUrl {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        match crate::conduct::settings::webrtc_config(&cfg.scenario) {
            Some(webrtc) => match WebRtcDriver::new(crate::load::webrtc::WebRtcConfig { targets: vec![uri], ..webrtc })
            {
                Ok(d) => Box::new(d),
                Err(e) => Box::new(Unconfigured::new(e.to_string())),
            },
            None => Box::new(EngineDriver::new(LoadConfig {
                targets: vec![uri],
                method: cfg.scenario.request.method.as_hyper(),
                connections: cfg.scenario.load.connections,
                timeout: cfg.scenario.request.timeout,
                max_inflight: cfg.scenario.load.max_inflight,
                ..Default::default()
            })),
        }
    } else {
        Box::new(Unconfigured::new("no load URL: set [load] url in the scenario (or from = \"in-cluster\")"))
    })
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
    /// The image of the service Deployment and the load Job (None: the manifests').
    pub image: Option<ImageRef>,
    /// Port of the Service (the in-cluster load's target).
    pub service_port: u16,
    /// The rendered manifests, rendered once by [`configure`] (or [`KubeConfig::render`]).
    pub objects: Vec<Value>,
    /// The supervised `kubectl port-forward` to Prometheus (`--prometheus port-forward`);
    /// the forward ends when the last clone of the configuration goes.
    pub port_forward: Option<Arc<port_forward::PortForward>>,
    /// Why `--prometheus port-forward` did not forward: preflight reports it in its checklist,
    /// beside the access reviews of the forward, rather than the console stopping before it.
    pub port_forward_failure: Option<String>,
    /// One pod's measured capacity and the sized iterations, once the probe has run.
    pub measured: Option<(f64, u32)>,
}

/// `--prometheus port-forward`: forward to Prometheus through kubectl, supervised.
pub const PORT_FORWARD: &str = "port-forward";

impl KubeConfig {
    /// Renders the manifests (extra folders, then the overlay) in this backend's namespace.
    pub fn render(&self) -> Result<Vec<Value>, KubeError> {
        let m = &self.scenario.manifests;
        let mut objects = apply::render_manifests(&self.root, &m.overlay, &m.extra, &m.namespace, &self.namespace)?;
        fit_to_cluster(&mut objects, &self.scenario, self.image.as_ref());
        Ok(objects)
    }

    /// Prometheus's Service and port (the port-forward's target, preflight's hint).
    pub fn prometheus_service(&self) -> (String, u16) {
        prometheus_service(&self.scenario.prometheus, &self.objects)
    }

    pub fn kubectl(&self) -> kubectl::Kubectl {
        self.connected.kubectl(&self.namespace)
    }

    /// The in-cluster load Job's spec (the stage is set per stage); reads the scenario's text.
    pub fn job_spec(&self) -> Result<load_job::LoadJobSpec, KubeError> {
        let text = std::fs::read_to_string(&self.scenario_path)
            .map_err(|source| KubeError::Read { path: self.scenario_path.clone(), source })?;
        Ok(load_job::LoadJobSpec {
            scenario_toml: text,
            run_id: self.run_id.clone(),
            namespace: self.namespace.clone(),
            stage: None,
            service_url: load_job::service_url(&self.scenario.manifests.service, &self.namespace, self.service_port),
            image: self.image.clone(),
            measured: self.measured,
        })
    }

    /// The preflight plan for this run.
    pub fn preflight_plan(&self, objects: &[Value], teardown: bool) -> preflight::Plan {
        preflight::Plan {
            namespace: self.namespace.clone(),
            server: self.connected.server.clone(),
            access: preflight::required_access(
                objects,
                &self.namespace,
                preflight::Uses {
                    in_cluster_load: self.in_cluster_load,
                    teardown,
                    prometheus_port_forward: (self.port_forward.is_some() || self.port_forward_failure.is_some())
                        .then_some(self.scenario.prometheus.namespace.as_str()),
                },
            ),
            needs: preflight::needs(objects, &self.namespace),
            prometheus: self.prometheus.clone(),
            prometheus_service: {
                let (service, port) = prometheus_service(&self.scenario.prometheus, objects);
                (self.scenario.prometheus.namespace.clone(), service, port)
            },
            ingress_from: self.scenario.manifests.ingress_from.clone(),
            prometheus_forward_failure: self.port_forward_failure.clone(),
            load_url: if self.in_cluster_load { None } else { self.load_url.clone() },
            images: crate::kustomize::images_of(objects),
        }
    }
}

/// The kube backend's settings, resolved from the flags with the scenario loaded
/// (`conduct::settings`); [`configure`] connects and turns them into a [`KubeConfig`].
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
    /// `--image`, else the scenario's `[manifests] image` (None: the manifests').
    pub image: Option<ImageRef>,
}

/// Connects (failing within 10 s with the server's address, or listing the contexts when
/// `--context` names none of them) and derives the backend's configuration.
pub async fn configure(a: KubeArgs) -> Result<KubeConfig, KubeError> {
    let connected = connect(&a.target).await?;
    let namespace = a.target.namespace.clone().unwrap_or_else(|| a.scenario.manifests.namespace.clone());
    let in_cluster = a.scenario.load.from == crate::scenario::LoadOrigin::InCluster;
    let load_url = a.scenario.load.url.clone();
    if !in_cluster && load_url.is_none() {
        return Err(KubeError::NoLoadUrl {
            scenario: a.scenario_path.clone(),
            namespace,
            service: a.scenario.manifests.service.clone(),
        });
    }
    let prometheus = a.prometheus.or_else(|| a.scenario.prometheus.url.clone());
    let mut cfg = KubeConfig {
        connected,
        namespace,
        scenario: a.scenario,
        scenario_path: a.scenario_path,
        root: a.root,
        prometheus,
        load_url,
        in_cluster_load: in_cluster,
        run_id: a.run_id,
        image: a.image,
        service_port: 80,
        objects: Vec::new(),
        port_forward: None,
        port_forward_failure: None,
        measured: None,
    };
    cfg.objects = cfg.render()?;
    // `--prometheus port-forward`: the console runs and re-runs kubectl's forward itself, to the
    // Service the scenario or the overlay names.
    if cfg.prometheus.as_deref() == Some(PORT_FORWARD) {
        let ns = cfg.scenario.prometheus.namespace.clone();
        let (service, port) = cfg.prometheus_service();
        let args = cfg.connected.kubectl(&ns).port_forward_args(&ns, &format!("svc/{service}"));
        match port_forward::PortForward::start(&kubectl::Kubectl::program(), &args, port).await {
            Ok(pf) => {
                cfg.prometheus = Some(pf.url.clone());
                cfg.port_forward = Some(Arc::new(pf));
            }
            Err(e) => {
                cfg.prometheus = None;
                cfg.port_forward_failure = Some(e.to_string());
            }
        }
    }
    Ok(cfg)
}

/// Runs preflight for this configuration (the console's checklist).
pub async fn preflight(cfg: &KubeConfig, teardown: bool) -> Vec<preflight::Check> {
    preflight::run(&cfg.connected.client, &cfg.preflight_plan(&cfg.objects, teardown), &cfg.kubectl()).await
}

/// The kube backend is a controller task behind the shared handle.
pub type KubeBackend = BackendHandle;

/// What the kube backend's tasks (watchers, the Prometheus poller, apply and rollout, the
/// load Job and its log follower) tell the controller, the one task that owns the state.
// As `WatchUpdate`: each event moves once through the channel and is taken apart at once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum KubeEvent {
    Watch(watch::WatchUpdate),
    Prometheus(Result<prometheus::Reading, prometheus::PromError>),
    /// The flow's phase (None: unchanged) and the status line (None clears it).
    Status(Option<Phase>, Option<String>),
    /// An event of the console's own (Preflight, Applied, LoadStarted …), timed by the sender.
    Event(EventInfo),
    /// The rendered load Job's file, named in the kubectl panel.
    LoadFile(Option<String>),
    /// KEDA's ScaledObject: the HPA it really made, its Fallback condition.
    ScaledObject(watch::ScaledObjectUpdate),
}

/// A task's way to tell the controller something (a clone per task).
#[derive(Clone, Debug)]
pub struct Tell {
    tx: mpsc::UnboundedSender<KubeEvent>,
    start: Instant,
}

impl Tell {
    pub fn send(&self, e: KubeEvent) {
        // The controller gone means the console is stopping: nothing to tell.
        let _ = self.tx.send(e);
    }
    pub fn status(&self, phase: Option<Phase>, status: Option<String>) {
        self.send(KubeEvent::Status(phase, status));
    }
    pub fn event(&self, kind: &str, reason: &str, object: &str, message: String) {
        let at_s = self.start.elapsed().as_secs_f64();
        self.send(KubeEvent::Event(EventInfo {
            at_s,
            kind: kind.into(),
            reason: reason.into(),
            object: object.into(),
            message,
        }));
    }
}

/// Starts the watchers and the Prometheus poller on the rendered manifests. Nothing is
/// applied until `Apply`, which runs preflight first. Needs a tokio runtime.
pub fn start_backend(cfg: KubeConfig) -> Result<KubeBackend, KubeError> {
    start(cfg, None)
}

/// As [`start_backend`], with preflight already run (and passed): the first `Apply` applies.
pub fn start_backend_checked(cfg: KubeConfig, checks: Vec<preflight::Check>) -> Result<KubeBackend, KubeError> {
    start(cfg, Some(checks))
}

fn start(cfg: KubeConfig, checks: Option<Vec<preflight::Check>>) -> Result<KubeBackend, KubeError> {
    let objects = cfg.objects.clone();
    let names = names_from(&objects, &cfg.scenario.manifests.deployment);
    let label = BackendLabel::Kube { context: cfg.connected.context.clone(), namespace: cfg.namespace.clone() };
    let (snap_tx, snap) =
        tokio::sync::watch::channel(Arc::new(ClusterSnapshot { backend: label, ..Default::default() }));
    let (tx, rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut ctl = Controller::new(cfg, objects, names, snap_tx, events_tx)?;
    ctl.preflight = checks;
    tokio::spawn(run_backend_task(ctl, rx, events_rx));
    Ok(BackendHandle::new("kube", snap, tx))
}

struct Controller {
    cfg: KubeConfig,
    objects: Vec<Value>,
    names: Names,
    k: kubectl::Kubectl,
    start: Instant,
    snap_tx: tokio::sync::watch::Sender<Arc<ClusterSnapshot>>,
    tell: Tell,
    view: watch::ClusterView,
    filter: watch::EventFilter,
    watchers: watch::Watchers,
    prom: Option<(prometheus::PromState, JoinHandle<()>)>,
    prom_error: Option<String>,
    phase: Phase,
    status: Option<String>,
    own_events: Vec<EventInfo>,
    load_file: Option<String>,
    load: Box<dyn LoadDriver>,
    summary: Totals,
    timeline: Timeline,
    stage_name: Option<String>,
    apply_task: Option<JoinHandle<()>>,
    /// Preflight already run for the first Apply (by `console::prepare`).
    preflight: Option<Vec<preflight::Check>>,
    /// KEDA's Fallback condition on the ScaledObject, shown with the HPA's conditions.
    fallback: Option<ConditionInfo>,
}

impl Controller {
    fn new(
        cfg: KubeConfig,
        objects: Vec<Value>,
        names: Names,
        snap_tx: tokio::sync::watch::Sender<Arc<ClusterSnapshot>>,
        events_tx: mpsc::UnboundedSender<KubeEvent>,
    ) -> Result<Self, KubeError> {
        let k = cfg.kubectl();
        let start = Instant::now();
        let tell = Tell { tx: events_tx, start };
        let run_start = watch::unix_now();
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
        // Events from a little before the run (the apply) onwards.
        let filter = watch::EventFilter { prefixes: targets.event_prefixes.clone(), since: run_start - 5.0, run_start };
        let mut watchers =
            watch::spawn_watchers(cfg.connected.client.clone(), &targets, tell.tx.clone(), KubeEvent::Watch);
        // The HPA name comes from the ScaledObject's spec; KEDA confirms it in its status.
        if let Some(so) = &names.scaled_object {
            watchers.push(watch::spawn_scaled_object_reader(
                cfg.connected.client.clone(),
                &cfg.namespace,
                so,
                tell.tx.clone(),
                KubeEvent::ScaledObject,
                KubeEvent::Watch,
            ));
        }
        let mut prom_error = None;
        let prom = match &cfg.prometheus {
            Some(url) => match prometheus::Source::new(url) {
                Ok(src) => {
                    let q = prometheus::Queries::from_scenario(&cfg.scenario.prometheus)
                        .in_namespace(&cfg.scenario.manifests.namespace, &cfg.namespace);
                    let every = cfg.scenario.prometheus.interval.max(Duration::from_millis(500));
                    let task = prometheus::spawn(src, q, every, tell.tx.clone(), KubeEvent::Prometheus);
                    Some((prometheus::PromState::default(), task))
                }
                Err(e) => {
                    prom_error = Some(e.to_string());
                    None
                }
            },
            None => None,
        };
        let load = load_driver(&cfg, &tell)?;
        Ok(Controller {
            cfg,
            objects,
            names,
            k,
            start,
            snap_tx,
            tell,
            view: watch::ClusterView::default(),
            filter,
            watchers,
            prom,
            prom_error,
            phase: Phase::Idle,
            status: None,
            own_events: Vec::new(),
            load_file: None,
            load,
            summary: None,
            timeline: Timeline::default(),
            stage_name: None,
            apply_task: None,
            preflight: None,
            fallback: None,
        })
    }

    fn now_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn set_status(&mut self, status: String) {
        self.status = Some(status);
    }

    /// Preflight, then server-side apply, then the rollout wait, in the background.
    fn apply(&mut self) {
        if self.apply_task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let cfg = self.cfg.clone();
        let objects = self.objects.clone();
        let tell = self.tell.clone();
        let deployment = self.names.deployment.clone();
        let already = self.preflight.take();
        self.apply_task = Some(tokio::spawn(async move {
            tell.status(Some(Phase::Preflight), Some("preflight…".into()));
            let checks = match already {
                Some(c) => c,
                None => {
                    preflight::run(&cfg.connected.client, &cfg.preflight_plan(&objects, false), &cfg.kubectl()).await
                }
            };
            for c in &checks {
                let kind = match c.verdict {
                    preflight::Verdict::Fail => "Warning",
                    _ => "Normal",
                };
                tell.event(kind, "Preflight", &c.name, c.line());
            }
            if !preflight::passed(&checks) {
                let failed: Vec<String> =
                    checks.iter().filter(|c| c.verdict == preflight::Verdict::Fail).map(|c| c.line()).collect();
                tell.status(
                    Some(Phase::Preflight),
                    Some(format!("preflight failed, nothing applied: {}", failed.join("; "))),
                );
                return;
            }
            tell.status(
                Some(Phase::Applying),
                Some(format!("applying {} objects (server-side, field manager rtc-demo)", objects.len())),
            );
            let objects = match apply::leave_foreign_namespace(&cfg.connected.client, &objects, &cfg.namespace).await {
                Ok((kept, foreign)) => {
                    if foreign {
                        tell.event(
                            "Normal",
                            "NamespaceKept",
                            &format!("namespace/{}", cfg.namespace),
                            "exists and is not labelled app.kubernetes.io/part-of=rtc-demo: its labels are left as they are and --teardown keeps it".into(),
                        );
                    }
                    kept
                }
                Err(e) => {
                    tell.status(Some(Phase::Applying), Some(format!("apply failed: {e}")));
                    return;
                }
            };
            let mut applier = apply::Applier::new(cfg.connected.client.clone());
            let progress = tell.clone();
            match applier
                .remove_other_autoscalers(&objects, &cfg.namespace, AUTOSCALER_DELETE_BUDGET, |line| {
                    progress.status(None, Some(line.to_string()))
                })
                .await
            {
                Ok(removed) => {
                    for r in removed {
                        tell.event(
                            "Normal",
                            "Removed",
                            &format!("{}/{}", r.kind, r.name),
                            "an earlier overlay's autoscaler, not in this one: deleted before applying".into(),
                        );
                    }
                }
                Err(e) => {
                    tell.event("Warning", "ApplyFailed", "kustomize", e.to_string());
                    tell.status(Some(Phase::Applying), Some(format!("apply failed: {e}")));
                    return;
                }
            }
            let r = applier
                .apply_all(&objects, |i, n, what| {
                    progress.status(None, Some(format!("applying {}/{n}: {what}", i + 1)))
                })
                .await;
            match r {
                Ok(done) => tell.event(
                    "Normal",
                    "Applied",
                    "kustomize",
                    format!("{} objects applied server-side (field manager rtc-demo)", done.len()),
                ),
                Err(e) => {
                    tell.event("Warning", "ApplyFailed", "kustomize", e.to_string());
                    tell.status(Some(Phase::Applying), Some(format!("apply failed: {e}")));
                    return;
                }
            }
            tell.status(Some(Phase::RollingOut), Some("waiting for the rollout".into()));
            let progress = tell.clone();
            let r = apply::wait_rollout(
                cfg.connected.client.clone(),
                &cfg.namespace,
                &deployment,
                Duration::from_secs(600),
                |line| progress.status(None, Some(line.to_string())),
            )
            .await;
            match r {
                Ok(()) => {
                    tell.event(
                        "Normal",
                        "RolledOut",
                        &format!("deploy/{deployment}"),
                        format!("deployment {deployment:?} successfully rolled out"),
                    );
                    tell.status(Some(Phase::Running), None);
                }
                Err(e) => tell.status(Some(Phase::RollingOut), Some(e.to_string())),
            }
        }));
    }

    fn teardown(&mut self) {
        let client = self.cfg.connected.client.clone();
        let objects = self.objects.clone();
        let tell = self.tell.clone();
        self.phase = Phase::TearingDown;
        self.status = Some("deleting what was applied".into());
        let namespace = self.cfg.namespace.clone();
        tokio::spawn(async move {
            let errs = apply::teardown(&client, &objects, &namespace).await;
            let msg = if errs.is_empty() { None } else { Some(format!("teardown: {}", errs.join("; "))) };
            tell.status(None, msg);
        });
    }

    /// The Prometheus reading, or nothing while it is stale.
    fn fresh_reading(&self) -> Option<&prometheus::Reading> {
        self.prom.as_ref().map(|(p, _)| p).filter(|p| !p.stale()).map(|p| &p.value)
    }

    fn record(&mut self) {
        let (ready, total) = self.view.pod_counts(watch::unix_now());
        let pods = PodCounts { ready, total, desired: self.view.desired().unwrap_or(0) };
        let server = self.fresh_reading().copied().unwrap_or_default();
        let paused = self.load.is_paused();
        self.timeline.sample(self.now_s(), Instant::now(), pods, server, paused);
    }

    fn publish(&mut self, done: bool) {
        let now_unix = watch::unix_now();
        let mut events = self.view.events();
        events.extend(self.own_events.iter().cloned());
        events.sort_by(|a, b| a.at_s.partial_cmp(&b.at_s).unwrap_or(std::cmp::Ordering::Equal));
        let excess = events.len().saturating_sub(watch::MAX_EVENTS);
        events.drain(..excess);
        let staleness = match (&self.prom, &self.cfg.prometheus) {
            (Some((p, _)), Some(url)) => Staleness {
                metrics_source: format!("prometheus {url}"),
                metrics_stale: p.stale(),
                metrics_age_s: p.last_ok.map(|t| t.elapsed().as_secs_f64()),
                metrics_error: match self.cfg.port_forward.as_ref().and_then(|pf| pf.down()) {
                    Some(down) => Some(match &p.error {
                        Some(e) => format!("Prometheus port-forward {down}; {e}"),
                        None => format!("Prometheus port-forward {down}"),
                    }),
                    None => p.error.clone(),
                },
                load_stale: self.cfg.in_cluster_load
                    && self.stage_name.is_some()
                    && self.timeline.client_stale(Instant::now()),
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
            self.load_file
                .as_ref()
                .map(|f| format!("{} && {}", self.k.delete_job(load_job::JOB_NAME), self.k.apply_f(f)))
        } else {
            match (&self.cfg.load_url, &self.stage_name) {
                (Some(u), Some(st)) => {
                    Some(self.k.load_from_here(&self.cfg.scenario_path.display().to_string(), st, u))
                }
                _ => None,
            }
        };
        let mut kubectl =
            kubectl_panel(&self.k, &self.phase, &self.cfg.scenario.manifests.overlay, &self.names, load_cmd.as_deref());
        if self.cfg.in_cluster_load && self.stage_name.is_some() {
            kubectl.push(self.k.logs_job(load_job::JOB_NAME));
        }
        let status = match (self.status.clone(), self.view.error_line(&self.k)) {
            (Some(s), Some(w)) => Some(format!("{s}; {w}")),
            (Some(s), None) => Some(s),
            (None, Some(w)) => Some(w),
            (None, None) => None,
        };
        let mut pods = self.view.pods(now_unix);
        for (pod, problem) in pods.iter_mut().filter_map(|p| Some((p.name.clone(), p.problem.as_mut()?))) {
            problem.kubectl = if problem.reason == "CrashLoopBackOff" {
                self.k.logs_previous(&pod, &problem.container)
            } else {
                self.k.describe_pod(&pod)
            };
        }
        if let Some(p) = pods.iter().find_map(|p| p.problem.as_ref()) {
            kubectl.insert(0, p.kubectl.clone());
        }
        let snap = ClusterSnapshot {
            at_s: self.now_s(),
            backend: BackendLabel::Kube {
                context: self.cfg.connected.context.clone(),
                namespace: self.cfg.namespace.clone(),
            },
            pods,
            autoscaler: self.view.autoscaler().map(|mut a| {
                // KEDA's fallback feeds the HPA a made-up value: say so beside its conditions.
                a.conditions.extend(self.fallback.clone());
                a
            }),
            events,
            series: self.timeline.series(),
            staleness,
            kubectl,
            status,
            stage: None,
            done,
        };
        let _ = self.snap_tx.send(Arc::new(snap));
    }
}

impl BackendTask for Controller {
    type Event = KubeEvent;

    async fn client_second(&mut self) {
        let s = self.load.next_second().await;
        self.timeline.client_second(s, Instant::now());
    }

    fn on_event(&mut self, e: KubeEvent) {
        match e {
            KubeEvent::Watch(u) => self.view.update(u, &self.filter),
            KubeEvent::Prometheus(outcome) => {
                if let Some((p, _)) = self.prom.as_mut() {
                    p.record(outcome);
                }
            }
            KubeEvent::Status(phase, status) => {
                if let Some(p) = phase {
                    self.phase = p;
                }
                self.status = status;
            }
            KubeEvent::Event(e) => self.own_events.push(e),
            KubeEvent::LoadFile(f) => self.load_file = f,
            KubeEvent::ScaledObject(watch::ScaledObjectUpdate::Fallback(c)) => self.fallback = c,
            KubeEvent::ScaledObject(watch::ScaledObjectUpdate::HpaName(name)) if name != self.names.hpa => {
                let so = self.names.scaled_object.clone().unwrap_or_default();
                self.tell.event(
                    "Normal",
                    "HpaName",
                    &format!("scaledobject/{so}"),
                    format!("KEDA's HPA is {name} (status.hpaName), not {}: watching it", self.names.hpa),
                );
                self.watchers.replace_hpa(watch::spawn_hpa_watcher(
                    self.cfg.connected.client.clone(),
                    &self.cfg.namespace,
                    &name,
                    self.tell.tx.clone(),
                    KubeEvent::Watch,
                ));
                self.filter.prefixes.push(name.clone());
                self.names.hpa = name;
            }
            KubeEvent::ScaledObject(watch::ScaledObjectUpdate::HpaName(_)) => {}
        }
    }

    async fn command(&mut self, c: BackendCommand) {
        let r = match c {
            BackendCommand::Apply => {
                self.apply();
                Ok(())
            }
            BackendCommand::StartStage { index, plan } => {
                self.timeline.set_stage(index);
                self.stage_name = self.cfg.scenario.stages.get(index).map(|s| s.name.clone());
                if self.cfg.in_cluster_load {
                    // The next stage's figures come from a new pod: none carry over.
                    self.timeline.clear_client();
                }
                self.load.start_stage(index, plan)
            }
            BackendCommand::Measured { pod_rps, iters } => {
                // Before the first stage: the load is idle, so it is rebuilt with the sized request.
                self.cfg.scenario = self.cfg.scenario.in_measured_units(Some(pod_rps), Some(iters));
                self.cfg.measured = Some((pod_rps, iters));
                match load_driver(&self.cfg, &self.tell) {
                    Ok(l) => self.load = l,
                    Err(e) => self.set_status(format!("the load after the capacity probe: {e}")),
                }
                Ok(())
            }
            BackendCommand::Pause => self.load.pause(),
            BackendCommand::Resume => self.load.resume(),
            BackendCommand::ScaleLoad(f) => self.load.scale(f),
            BackendCommand::Stop => {
                if let Some(s) = self.load.stop(STOP_DEADLINE).await {
                    self.summary = Some(s);
                }
                Ok(())
            }
            BackendCommand::Teardown => {
                self.teardown();
                Ok(())
            }
        };
        if let Err(e) = r {
            self.set_status(e.to_string());
        }
    }

    async fn shutdown(&mut self, teardown: bool) -> Totals {
        if let Some(s) = self.load.stop(STOP_DEADLINE).await {
            self.summary = Some(s);
        }
        if let Some(t) = self.apply_task.take() {
            t.abort();
        }
        let client = self.cfg.connected.client.clone();
        if self.cfg.in_cluster_load {
            let _ = tokio::time::timeout(Duration::from_secs(3), job_driver::delete_job(&client, &self.cfg.namespace))
                .await;
        }
        if teardown {
            self.phase = Phase::TearingDown;
            self.status = None;
            let errs = tokio::time::timeout(
                Duration::from_secs(20),
                apply::teardown(&client, &self.objects, &self.cfg.namespace),
            )
            .await;
            if let Ok(errs) = errs {
                if !errs.is_empty() {
                    self.status = Some(format!("teardown: {}", errs.join("; ")));
                }
            }
        }
        self.watchers.abort_all();
        if let Some((_, h)) = self.prom.as_ref() {
            h.abort();
        }
        self.publish(true);
        self.summary.take()
    }

    async fn tick(&mut self) {
        self.record();
        self.publish(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_service_admits_scrapes_from_the_scenarios_prometheus_namespace() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut objs = apply::render_manifests(root, "manifests/overlays/gpu-keda", &[], "rtc", "rtc").unwrap();
        admit_scrapes_from(&mut objs, "observability");
        let np = objs.iter().find(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == "gpu-media").unwrap();
        let peers = np["spec"]["ingress"][0]["from"].to_string();
        assert!(
            peers.contains("\"kubernetes.io/metadata.name\":\"observability\"") && !peers.contains("monitoring"),
            "{peers}"
        );
        assert!(peers.contains("\"podSelector\":{}"), "the namespace's own pods still reach it: {peers}");
    }

    fn scenario(extra_toml: &str) -> Scenario {
        let text = format!("name = \"t\"\n{extra_toml}\n[[stages]]\nname = \"idle\"\nduration = \"5s\"\nrate = 1\n");
        Scenario::from_toml(&text, "t.toml").unwrap()
    }

    fn fitted(overlay: &str, extra: &[String], sc: &Scenario, image: Option<&ImageRef>) -> Vec<Value> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut objs = apply::render_manifests(root, overlay, extra, "rtc", "rtc").unwrap();
        fit_to_cluster(&mut objs, sc, image);
        objs
    }

    fn server_addresses(objs: &[Value]) -> Vec<String> {
        let so = objs.iter().find(|o| o["kind"] == "ScaledObject").unwrap();
        so["spec"]["triggers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["metadata"]["serverAddress"].as_str().unwrap().to_string())
            .collect()
    }

    /// The Prometheus the console forwards to and KEDA reads is the one each overlay is for,
    /// in the scenario's Prometheus namespace, unless the scenario names another Service.
    #[test]
    fn prometheus_service_follows_the_overlay_and_the_scenario() {
        let operator = scenario("");
        let objs = fitted("manifests/overlays/gpu-keda", &[], &operator, None);
        assert_eq!(prometheus_service(&operator.prometheus, &objs), ("prometheus-operated".to_string(), 9090));
        let no_operator = scenario("[prometheus]\nnamespace = \"observability\"");
        let objs = fitted("manifests/overlays/gpu-keda-no-operator", &[], &no_operator, None);
        assert_eq!(prometheus_service(&no_operator.prometheus, &objs), ("prometheus-server".to_string(), 80));
        assert_eq!(server_addresses(&objs), vec!["http://prometheus-server.observability.svc:80"; 2]);
        let named = scenario("[prometheus]\nservice = \"kps-kube-prometheus-stack-prometheus\"\nport = 9090");
        let objs = fitted("manifests/overlays/gpu-keda", &[], &named, None);
        assert_eq!(server_addresses(&objs), vec!["http://kps-kube-prometheus-stack-prometheus.monitoring.svc:9090"; 2]);
        // An adapter overlay has no ScaledObject to learn from: the Operator's Service.
        let objs = fitted("manifests/overlays/gpu-adapter", &[], &operator, None);
        assert_eq!(prometheus_service(&operator.prometheus, &objs), ("prometheus-operated".to_string(), 9090));
        assert_eq!(in_cluster_service("https://prom.example.com/"), None, "an external Prometheus is left alone");
    }

    #[test]
    fn ingress_from_is_admitted_to_the_service_port() {
        let sc = scenario("[manifests]\ningress_from = [\"ingress-nginx\", \"35.191.0.0/16\"]");
        let objs = fitted("manifests/overlays/gpu-keda", &[], &sc, None);
        let np = objs.iter().find(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == "gpu-media").unwrap();
        let rule = np["spec"]["ingress"].as_array().unwrap().last().unwrap();
        assert_eq!(
            rule,
            &json!({"from":[{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"ingress-nginx"}}},{"ipBlock":{"cidr":"35.191.0.0/16"}}],
                "ports":[{"protocol":"TCP","port":"http"}]})
        );
        let plain = fitted("manifests/overlays/gpu-keda", &[], &scenario(""), None);
        let np = plain.iter().find(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == "gpu-media").unwrap();
        // HTTP from the namespace and Prometheus, WebRTC media from the namespace; no more.
        assert_eq!(np["spec"]["ingress"].as_array().unwrap().len(), 2, "nothing added without the setting");
    }

    #[test]
    fn the_policy_allows_the_image_the_console_deploys() {
        let image = ImageRef::parse("registry.example.com/you/rtc-demo:0.2.0").unwrap();
        let objs =
            fitted("manifests/overlays/gpu-keda", &["manifests/policy".to_string()], &scenario(""), Some(&image));
        let c = objs.iter().find(|o| o["kind"] == "K8sAllowedRepos").unwrap();
        assert_eq!(c["spec"]["parameters"]["repos"], json!(["registry.example.com/you/"]));
        let dep = objs.iter().find(|o| o["kind"] == "Deployment").unwrap();
        let img = dep["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap();
        assert!(img.starts_with("registry.example.com/you/"), "{img}");
    }

    #[test]
    fn an_observability_folder_the_console_applies_admits_the_scenarios_prometheus() {
        let sc = scenario("[prometheus]\nnamespace = \"observability\"");
        let objs = fitted("manifests/overlays/gpu-keda", &["manifests/observability".to_string()], &sc, None);
        let np =
            objs.iter().find(|o| o["kind"] == "NetworkPolicy" && o["metadata"]["name"] == "dcgm-exporter").unwrap();
        assert_eq!(
            np["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "observability"
        );
    }

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
        // KEDA takes spec.advanced.horizontalPodAutoscalerConfig.name when it is set
        // (controllers/keda/hpa.go, getHPAName); the shipped ScaledObject sets it.
        let named = json!({"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"gpu-media"},
            "spec":{"advanced":{"horizontalPodAutoscalerConfig":{"name":"gpu-media-hpa"}}}});
        assert_eq!(keda_hpa_name(&named), "gpu-media-hpa");
        let empty = json!({"kind":"ScaledObject","metadata":{"name":"so"},"spec":{"advanced":{"horizontalPodAutoscalerConfig":{"name":""}}}});
        assert_eq!(keda_hpa_name(&empty), "keda-hpa-so");
        let shipped = apply::render_manifests(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
            "manifests/overlays/gpu-keda",
            &[],
            "rtc",
            "rtc",
        )
        .unwrap();
        assert_eq!(names_from(&shipped, "gpu-media").hpa, "gpu-media");
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
