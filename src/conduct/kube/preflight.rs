//! Preflight (SPEC §4): before anything is applied, check the cluster is reachable, that we
//! are allowed to do what the console will do (SelfSubjectAccessReview per verb/resource),
//! the namespace, GPU nodes with allocatable `nvidia.com/gpu` (GPU overlays), KEDA's CRD or the
//! metrics adapter (when the overlay needs them), and Prometheus with the service's metrics.
//! Every failure carries its reason and the kubectl command that shows the same thing.
use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::Value;

use super::error_text;
use super::kubectl::Kubectl;
use super::prometheus::Source;
use crate::image_ref::ImageRef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Not fatal (e.g. no service metrics yet before the first apply).
    Warn,
    Fail,
    /// Not run because an earlier check failed.
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    /// The kubectl command that shows the same thing.
    pub kubectl: String,
}

impl Check {
    fn new(name: &str, verdict: Verdict, detail: impl Into<String>, kubectl: String) -> Check {
        Check { name: name.into(), verdict, detail: detail.into(), kubectl }
    }
    /// `✓ name: detail` / `✗ name: detail (check: kubectl …)` — marks and words, not colour.
    pub fn line(&self) -> String {
        match self.verdict {
            Verdict::Ok => format!("✓ {}: {}", self.name, self.detail),
            Verdict::Warn => format!("! {}: {} (see: {})", self.name, self.detail, self.kubectl),
            Verdict::Fail => format!("✗ {}: {} (see: {})", self.name, self.detail, self.kubectl),
            Verdict::Skipped => format!("- {}: {}", self.name, self.detail),
        }
    }
}

/// Did every check pass (warnings allowed)?
pub fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| matches!(c.verdict, Verdict::Ok | Verdict::Warn))
}

/// One permission the console needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: Option<String>,
    /// `None` for cluster-scoped resources.
    pub namespace: Option<String>,
}

impl Access {
    fn new(verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> Access {
        Access {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: None,
            namespace: namespace.map(str::to_string),
        }
    }
    /// `deployments.apps`, `pods` — kubectl's spelling.
    pub fn resource_arg(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// The REST plural and scope of the kinds our manifests hold; others fall back to the
/// lower-case plural (namespaced).
pub fn plural_of(kind: &str) -> (String, bool) {
    let cluster = matches!(
        kind,
        "Namespace"
            | "Node"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "CustomResourceDefinition"
            | "ConstraintTemplate"
            | "PriorityClass"
            | "StorageClass"
            | "K8sAllowedRepos"
    );
    let known = match kind {
        "NetworkPolicy" => Some("networkpolicies"),
        "PodDisruptionBudget" => Some("poddisruptionbudgets"),
        "HorizontalPodAutoscaler" => Some("horizontalpodautoscalers"),
        "PriorityClass" => Some("priorityclasses"),
        "StorageClass" => Some("storageclasses"),
        _ => None,
    };
    let plural = known.map(str::to_string).unwrap_or_else(|| {
        let l = kind.to_ascii_lowercase();
        if l.ends_with('s') || l.ends_with('x') {
            format!("{l}es")
        } else if l.ends_with('y') && !l.ends_with("ey") {
            format!("{}ies", &l[..l.len() - 1])
        } else {
            format!("{l}s")
        }
    });
    (plural, cluster)
}

/// The REST plural of `kind` in API group `group`. Gatekeeper makes each constraint kind's CRD
/// with the lower-cased kind as its plural, `k8sallowedrepos` for K8sAllowedRepos
/// (open-policy-agent/frameworks constraint/pkg/client/crds/crds.go, CreateCRD:
/// `Plural: strings.ToLower(templ.Spec.CRD.Spec.Names.Kind)`), not English plurals.
pub fn plural_in_group(group: &str, kind: &str) -> (String, bool) {
    if group == "constraints.gatekeeper.sh" {
        return (kind.to_ascii_lowercase(), true);
    }
    plural_of(kind)
}

/// Which namespace a call is made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The service's namespace (`--namespace`, `[manifests] namespace`).
    Service,
    /// Prometheus's (`[prometheus] namespace`).
    Prometheus,
    Cluster,
}

/// When the console makes a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// `[load] from = "in-cluster"`.
    InClusterLoad,
    /// `--prometheus port-forward`.
    PrometheusPortForward,
}

/// One row of [`CALLS`]: what RBAC calls a request the console sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    pub verb: &'static str,
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: Option<&'static str>,
    pub scope: Scope,
    pub when: When,
}

const fn call(verb: &'static str, group: &'static str, resource: &'static str, when: When) -> Call {
    Call { verb, group, resource, subresource: None, scope: Scope::Service, when }
}

/// Every call the console makes besides applying the manifests' own objects (which need
/// `patch` and, as a server-side apply may create, `create`; `get` for `kubectl diff`; `delete`
/// with `--teardown`), and what the kubectl commands its panel and preflight's hints show need
/// (kubectl's own calls, each row naming the command and the kubectl source). Preflight's
/// access reviews come from this table, `manifests/load/rbac.yaml` and
/// `manifests/prometheus-access/rbac.yaml` are tested against it, and the mocked-API tests check
/// that every request they see is in it.
pub const CALLS: &[Call] = &[
    // Preflight reads the namespace and counts GPUs on the nodes (cluster-scoped).
    Call { scope: Scope::Cluster, ..call("get", "", "namespaces", When::Always) },
    Call { scope: Scope::Cluster, ..call("list", "", "nodes", When::Always) },
    // …and KEDA's version, from its ScaledObject CRD's labels.
    Call { scope: Scope::Cluster, ..call("get", "apiextensions.k8s.io", "customresourcedefinitions", When::Always) },
    // Preflight's hint for a metrics API: `kubectl get apiservice NAME`.
    Call { scope: Scope::Cluster, ..call("get", "apiregistration.k8s.io", "apiservices", When::Always) },
    // The watchers (kube-runtime's watcher lists, then watches) and the rollout wait.
    call("list", "apps", "deployments", When::Always),
    call("watch", "apps", "deployments", When::Always),
    // `kubectl rollout status` GETs the Deployment first (kubectl pkg/cmd/rollout/rollout_status.go).
    call("get", "apps", "deployments", When::Always),
    call("list", "", "pods", When::Always),
    call("watch", "", "pods", When::Always),
    call("list", "autoscaling", "horizontalpodautoscalers", When::Always),
    call("watch", "autoscaling", "horizontalpodautoscalers", When::Always),
    call("list", "", "events", When::Always),
    call("watch", "", "events", When::Always),
    // Before an apply, an earlier overlay's autoscalers are listed, deleted and waited for.
    call("get", "autoscaling", "horizontalpodautoscalers", When::Always),
    call("delete", "autoscaling", "horizontalpodautoscalers", When::Always),
    call("list", "keda.sh", "scaledobjects", When::Always),
    call("get", "keda.sh", "scaledobjects", When::Always),
    call("delete", "keda.sh", "scaledobjects", When::Always),
    // A pod that does not start: `kubectl describe pod`, `kubectl logs --previous`.
    call("get", "", "pods", When::Always),
    Call { subresource: Some("log"), ..call("get", "", "pods", When::Always) },
    // The capacity probe's `kubectl port-forward pod/NAME` GETs the pod, then opens
    // pods/portforward (kubectl pkg/cmd/portforward/portforward.go): a POST over SPDY (create) or
    // a GET over WebSocket (get, and also create from Kubernetes 1.35: feature gate
    // AuthorizePodWebsocketUpgradeCreatePermission, kubernetes PR #134577).
    Call { subresource: Some("portforward"), ..call("create", "", "pods", When::Always) },
    Call { subresource: Some("portforward"), ..call("get", "", "pods", When::Always) },
    // Preflight's hints: `kubectl get deployments,jobs`, `kubectl get ingress,svc`,
    // `kubectl get servicemonitors`.
    call("list", "batch", "jobs", When::Always),
    call("list", "", "services", When::Always),
    call("list", "networking.k8s.io", "ingresses", When::Always),
    call("list", "monitoring.coreos.com", "servicemonitors", When::Always),
    // In-cluster load: each stage applies the load objects, replaces the Job, waits for its
    // pod and follows its log. `kubectl delete job --cascade=foreground` waits with a list and
    // watch by name (kubectl pkg/cmd/wait/delete.go).
    call("patch", "", "serviceaccounts", When::InClusterLoad),
    call("create", "", "serviceaccounts", When::InClusterLoad),
    call("patch", "", "configmaps", When::InClusterLoad),
    call("create", "", "configmaps", When::InClusterLoad),
    call("patch", "networking.k8s.io", "networkpolicies", When::InClusterLoad),
    call("create", "networking.k8s.io", "networkpolicies", When::InClusterLoad),
    call("patch", "batch", "jobs", When::InClusterLoad),
    call("create", "batch", "jobs", When::InClusterLoad),
    call("get", "batch", "jobs", When::InClusterLoad),
    call("delete", "batch", "jobs", When::InClusterLoad),
    call("watch", "batch", "jobs", When::InClusterLoad),
    // `--prometheus port-forward`: `kubectl port-forward svc/NAME` in Prometheus's namespace
    // GETs the Service, lists (and, when none is ready yet, watches) its pods, GETs the first
    // (kubectl pkg/polymorphichelpers/helpers.go, GetFirstPod) and opens pods/portforward.
    Call { scope: Scope::Prometheus, ..call("get", "", "services", When::PrometheusPortForward) },
    Call { scope: Scope::Prometheus, ..call("list", "", "pods", When::PrometheusPortForward) },
    Call { scope: Scope::Prometheus, ..call("watch", "", "pods", When::PrometheusPortForward) },
    Call { scope: Scope::Prometheus, ..call("get", "", "pods", When::PrometheusPortForward) },
    Call {
        scope: Scope::Prometheus,
        subresource: Some("portforward"),
        ..call("create", "", "pods", When::PrometheusPortForward)
    },
    Call {
        scope: Scope::Prometheus,
        subresource: Some("portforward"),
        ..call("get", "", "pods", When::PrometheusPortForward)
    },
];

/// What the console will be used for, beyond applying the objects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Uses<'a> {
    /// `[load] from = "in-cluster"`.
    pub in_cluster_load: bool,
    /// `--teardown`.
    pub teardown: bool,
    /// `--prometheus port-forward`: the namespace it forwards in.
    pub prometheus_port_forward: Option<&'a str>,
}

/// What the console will do, as SelfSubjectAccessReviews: patch and create (server-side
/// apply) and get (`kubectl diff`) every object it applies, delete them with `--teardown`, and
/// every call of [`CALLS`] that applies.
pub fn required_access(objects: &[Value], namespace: &str, uses: Uses) -> Vec<Access> {
    let mut set = BTreeSet::new();
    for o in objects {
        let (Some(av), Some(kind)) =
            (o.get("apiVersion").and_then(|v| v.as_str()), o.get("kind").and_then(|v| v.as_str()))
        else {
            continue;
        };
        let group = av.split_once('/').map(|x| x.0).unwrap_or("");
        let (plural, cluster) = plural_in_group(group, kind);
        let ns = o
            .pointer("/metadata/namespace")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .or((!cluster).then(|| namespace.to_string()));
        let ns = if cluster { None } else { ns };
        set.insert(Access::new("patch", group, &plural, ns.as_deref()));
        set.insert(Access::new("create", group, &plural, ns.as_deref()));
        set.insert(Access::new("get", group, &plural, ns.as_deref()));
        if uses.teardown {
            set.insert(Access::new("delete", group, &plural, ns.as_deref()));
        }
    }
    for c in CALLS {
        let wanted = match c.when {
            When::Always => true,
            When::InClusterLoad => uses.in_cluster_load,
            When::PrometheusPortForward => uses.prometheus_port_forward.is_some(),
        };
        let ns = match c.scope {
            Scope::Service => Some(namespace),
            Scope::Prometheus => uses.prometheus_port_forward,
            Scope::Cluster => None,
        };
        if wanted {
            let mut a = Access::new(c.verb, c.group, c.resource, ns);
            a.subresource = c.subresource.map(str::to_string);
            set.insert(a);
        }
    }
    set.into_iter().collect()
}

/// What the overlay needs from the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    pub gpu: bool,
    pub keda: bool,
    /// A ServiceMonitor (or another monitoring.coreos.com object) is applied.
    pub prometheus_operator: bool,
    /// Aggregated metrics APIs the HPAs read (`v1beta1.custom.metrics.k8s.io`, …).
    pub metrics_apis: Vec<String>,
    /// The Namespace object is part of the manifests (so a missing namespace is fine).
    pub creates_namespace: bool,
    /// The most pods the autoscaler may ask for (HPA `maxReplicas`, ScaledObject
    /// `maxReplicaCount`).
    pub max_replicas: Option<u32>,
}

pub fn needs(objects: &[Value], namespace: &str) -> Needs {
    let mut n = Needs::default();
    let mut apis = BTreeSet::new();
    for o in objects {
        let kind = o.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        let av = o.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("");
        if av.starts_with("keda.sh/") {
            n.keda = true;
            // The HPA KEDA creates reads KEDA's metrics server (external metrics API).
            apis.insert("v1beta1.external.metrics.k8s.io");
        }
        let max = match kind {
            "HorizontalPodAutoscaler" => o.pointer("/spec/maxReplicas"),
            // KEDA's default when unset is 100 (ScaledObject spec docs, maxReplicaCount).
            "ScaledObject" => Some(o.pointer("/spec/maxReplicaCount").unwrap_or(&Value::Null)),
            _ => None,
        };
        if let Some(m) = max {
            let m = if m.is_null() { 100 } else { m.as_u64().unwrap_or(0) as u32 };
            n.max_replicas = Some(n.max_replicas.map_or(m, |x| x.max(m)));
        }
        if av.starts_with("monitoring.coreos.com/") {
            n.prometheus_operator = true;
        }
        if kind == "Namespace" && o.pointer("/metadata/name").and_then(|v| v.as_str()) == Some(namespace) {
            n.creates_namespace = true;
        }
        if kind == "Deployment" && o.to_string().contains("\"nvidia.com/gpu\"") {
            n.gpu = true;
        }
        if kind == "HorizontalPodAutoscaler" {
            for m in o.pointer("/spec/metrics").and_then(|v| v.as_array()).into_iter().flatten() {
                match m.get("type").and_then(|t| t.as_str()) {
                    Some("Pods") | Some("Object") => apis.insert("v1beta1.custom.metrics.k8s.io"),
                    Some("External") => apis.insert("v1beta1.external.metrics.k8s.io"),
                    Some("Resource") | Some("ContainerResource") => apis.insert("v1beta1.metrics.k8s.io"),
                    _ => false,
                };
            }
        }
    }
    n.metrics_apis = apis.into_iter().map(str::to_string).collect();
    n
}

/// Everything preflight needs to know.
#[derive(Debug, Clone)]
pub struct Plan {
    pub namespace: String,
    pub server: String,
    pub access: Vec<Access>,
    pub needs: Needs,
    /// Prometheus to check (None: no Prometheus configured — a warning).
    pub prometheus: Option<String>,
    /// The Prometheus namespace/service for the port-forward hint.
    pub prometheus_service: (String, String, u16),
    /// Where load from this machine goes (`[load] url`; None with in-cluster load).
    pub load_url: Option<String>,
    /// The container images the objects run (the load Job gets the same `--image`).
    pub images: Vec<String>,
    /// `[manifests] ingress_from`: what the service's NetworkPolicy admits besides its own
    /// namespace and Prometheus's.
    pub ingress_from: Vec<crate::scenario::IngressPeer>,
    /// Why `--prometheus port-forward` could not forward (None: it forwards, or not asked for).
    pub prometheus_forward_failure: Option<String>,
}

/// Whether the images are the presenter's own: the manifests' placeholder is a repository no
/// registry serves, so every pod would wait in ImagePullBackOff.
pub fn image_check(images: &[String], k: &Kubectl) -> Check {
    let kubectl = k.get_images();
    let placeholder: Vec<&str> =
        images.iter().map(String::as_str).filter(|i| ImageRef::parse(i).is_ok_and(|r| r.is_placeholder())).collect();
    if placeholder.is_empty() {
        return Check::new("image", Verdict::Ok, images.join(", "), kubectl);
    }
    Check::new(
        "image",
        Verdict::Warn,
        format!(
            "{} is the manifests' placeholder, which no registry serves: pods will wait in ImagePullBackOff. \
Build and push your own (README \"Build and push the image\"), then pass --image REGISTRY/rtc-demo:TAG \
or set [manifests] image",
            placeholder.join(", ")
        ),
        kubectl,
    )
}

/// A warning when load from this machine goes to this machine: that is a `kubectl
/// port-forward`, which tunnels every connection to one pod, so the pods the autoscaler adds
/// get no load and p95 cannot come back under the SLO.
pub fn load_target_check(load_url: &str, k: &Kubectl) -> Option<Check> {
    let host = load_url.split("://").nth(1).unwrap_or(load_url).split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host).trim_matches(['[', ']']);
    let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    local.then(|| {
        Check::new(
            "load target",
            Verdict::Warn,
            format!(
                "{load_url} is this machine, a port-forward: it sends every request to one pod, so added pods get none; \
use an ingress URL or [load] from = \"in-cluster\""
            ),
            k.get_ingress(),
        )
    })
}

/// A warning when load from this machine goes through an ingress or a load balancer that the
/// service's NetworkPolicy does not admit: it admits only pods of its own namespace and of
/// Prometheus's, so on a CNI that enforces policy (GKE Dataplane V2, Calico, Cilium, EKS with
/// network policy enabled) the ingress controller's or the balancer's connections are dropped
/// and every request times out.
pub fn ingress_check(plan: &Plan, k: &Kubectl) -> Option<Check> {
    let url = plan.load_url.as_deref()?;
    if !plan.ingress_from.is_empty() || load_target_check(url, k).is_some() {
        return None;
    }
    Some(Check::new(
        "load path",
        Verdict::Warn,
        format!(
            "{url} reaches the pods through an ingress or a load balancer, but the service's NetworkPolicy admits only namespaces {} and {}: \
set [manifests] ingress_from to the ingress controller's namespace (e.g. \"ingress-nginx\") or the balancer's source ranges (CIDRs), \
or use [load] from = \"in-cluster\"",
            plan.namespace, plan.prometheus_service.0
        ),
        format!("{} get networkpolicy gpu-media -o yaml", k.ns()),
    ))
}

/// Runs every check in order. A failed reachability check skips the rest.
pub async fn run(client: &Client, plan: &Plan, k: &Kubectl) -> Vec<Check> {
    let mut out = Vec::new();
    let t = Duration::from_secs(5);
    // 1. reachable
    match tokio::time::timeout(t, client.apiserver_version()).await {
        Ok(Ok(v)) => out.push(Check::new(
            "cluster reachable",
            Verdict::Ok,
            format!("{} (Kubernetes {}.{})", plan.server, v.major, v.minor),
            k.server_version(),
        )),
        Ok(Err(e)) => {
            out.push(Check::new(
                "cluster reachable",
                Verdict::Fail,
                format!("API server {}: {}", plan.server, error_text(&e)),
                k.server_version(),
            ));
            return skip_rest(out);
        }
        Err(_) => {
            out.push(Check::new(
                "cluster reachable",
                Verdict::Fail,
                format!("API server {}: no answer within {}s", plan.server, t.as_secs()),
                k.server_version(),
            ));
            return skip_rest(out);
        }
    }
    if let Some(c) = plan.load_url.as_deref().and_then(|u| load_target_check(u, k)) {
        out.push(c);
    }
    if let Some(c) = ingress_check(plan, k) {
        out.push(c);
    }
    out.push(image_check(&plan.images, k));
    // 2. allowed
    let ssar: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut denied = Vec::new();
    let mut first_cmd = None;
    for a in &plan.access {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: a.namespace.clone(),
                    verb: Some(a.verb.clone()),
                    group: Some(a.group.clone()),
                    resource: Some(a.resource.clone()),
                    subresource: a.subresource.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        // A call in another namespace (Prometheus's) says where, and so does its kubectl check.
        let elsewhere = a.namespace.as_deref().filter(|ns| *ns != plan.namespace);
        let cmd = match elsewhere {
            Some(ns) => Kubectl::new(k.context.as_deref(), ns),
            None => k.clone(),
        }
        .auth_can_i(&a.verb, &a.resource_arg(), a.subresource.as_deref());
        let what = format!(
            "{} {}{}{}",
            a.verb,
            a.resource_arg(),
            a.subresource.as_ref().map(|s| format!("/{s}")).unwrap_or_default(),
            elsewhere.map(|ns| format!(" in namespace {ns}")).unwrap_or_default()
        );
        match ssar.create(&PostParams::default(), &review).await {
            Ok(r) => {
                let st = r.status.unwrap_or_default();
                if !st.allowed {
                    let why = st.reason.filter(|r| !r.is_empty()).map(|r| format!(" ({r})")).unwrap_or_default();
                    denied.push(format!("{what}{why}"));
                    first_cmd.get_or_insert(cmd);
                }
            }
            Err(e) => {
                denied.push(format!("{what}: cannot ask ({})", error_text(&e)));
                first_cmd.get_or_insert(cmd);
            }
        }
    }
    if denied.is_empty() {
        out.push(Check::new(
            "allowed",
            Verdict::Ok,
            format!("{} permissions (SelfSubjectAccessReview)", plan.access.len()),
            k.auth_can_i_list(),
        ));
    } else {
        out.push(Check::new(
            "allowed",
            Verdict::Fail,
            format!("forbidden in namespace {}: {}", plan.namespace, denied.join(", ")),
            first_cmd.unwrap_or_else(|| k.auth_can_i_list()),
        ));
    }
    // 3. namespace
    let nsapi: Api<Namespace> = Api::all(client.clone());
    match nsapi.get_opt(&plan.namespace).await {
        Ok(Some(ns)) => {
            let phase = ns.status.and_then(|s| s.phase).unwrap_or_else(|| "Active".into());
            let v = if phase == "Active" { Verdict::Ok } else { Verdict::Fail };
            out.push(Check::new("namespace", v, format!("{} is {phase}", plan.namespace), k.get_namespace()));
        }
        Ok(None) if plan.needs.creates_namespace => out.push(Check::new(
            "namespace",
            Verdict::Ok,
            format!("{} does not exist yet; the manifests create it", plan.namespace),
            k.get_namespace(),
        )),
        Ok(None) => out.push(Check::new(
            "namespace",
            Verdict::Fail,
            format!("{} does not exist and the manifests do not create it", plan.namespace),
            k.get_namespace(),
        )),
        Err(e) => out.push(Check::new(
            "namespace",
            Verdict::Fail,
            format!("{}: {}", plan.namespace, error_text(&e)),
            k.get_namespace(),
        )),
    }
    // 4. GPU nodes
    if plan.needs.gpu {
        let nodes: Api<Node> = Api::all(client.clone());
        match nodes.list(&ListParams::default()).await {
            Ok(list) => {
                let gpus: Vec<(String, f64)> = list
                    .items
                    .iter()
                    .filter_map(|n| {
                        let q = n.status.as_ref()?.allocatable.as_ref()?.get("nvidia.com/gpu")?;
                        let g = super::watch::parse_quantity(&q.0)?;
                        (g > 0.0).then(|| (n.metadata.name.clone().unwrap_or_default(), g))
                    })
                    .collect();
                if gpus.is_empty() {
                    // Not a failure: a GPU node pool that scales from zero has no GPU node until
                    // pods ask for one, and the cluster autoscaler adds a node for a pod that is
                    // Unschedulable for want of a resource such a pool's nodes would have.
                    out.push(Check::new(
                        "GPU nodes",
                        Verdict::Warn,
                        format!("none of {} nodes has allocatable nvidia.com/gpu now: the gpu-media pods stay Pending (Unschedulable) until a GPU node joins. A GPU node pool that autoscales from zero adds one for them (allow several minutes: the node boots, then the driver and the device plugin start); without such a pool they never start: add one with the NVIDIA device plugin (or the GPU Operator), or pick a cpu-* overlay", list.items.len()),
                        k.get_gpu_nodes(),
                    ));
                } else {
                    let total: f64 = gpus.iter().map(|g| g.1).sum();
                    match plan.needs.max_replicas {
                        // Each pod requests one GPU: pods beyond the GPUs stay Pending.
                        Some(max) if total < f64::from(max) => out.push(Check::new(
                            "GPU nodes",
                            Verdict::Warn,
                            format!("{} nodes, {total} allocatable nvidia.com/gpu, but the autoscaler may ask for {max} pods of one GPU each: pods beyond {total} stay Pending (add GPU nodes, or lower maxReplicas)", gpus.len()),
                            k.get_gpu_nodes(),
                        )),
                        _ => out.push(Check::new(
                            "GPU nodes",
                            Verdict::Ok,
                            format!("{} nodes, {total} allocatable nvidia.com/gpu", gpus.len()),
                            k.get_gpu_nodes(),
                        )),
                    }
                }
            }
            Err(e) => out.push(Check::new(
                "GPU nodes",
                Verdict::Fail,
                format!("cannot list nodes: {}", error_text(&e)),
                k.get_gpu_nodes(),
            )),
        }
    }
    // 5. KEDA / metrics adapters (API discovery: allowed to every authenticated user)
    if plan.needs.prometheus_operator {
        out.push(group_check(client, "Prometheus Operator", "monitoring.coreos.com/v1", "ServiceMonitor", "the Prometheus Operator is not installed (no monitoring.coreos.com/v1 ServiceMonitor), and every overlay applies one: `helm install kube-prometheus-stack prometheus-community/kube-prometheus-stack -n monitoring --create-namespace`", k.get_crd("servicemonitors.monitoring.coreos.com")).await);
    }
    if plan.needs.keda {
        let installed = group_check(client, "KEDA", "keda.sh/v1alpha1", "ScaledObject", "KEDA is not installed (no keda.sh/v1alpha1 ScaledObject): `helm install keda kedacore/keda -n keda --create-namespace`, or pick an *-adapter overlay", k.get_crd("scaledobjects.keda.sh")).await;
        let served = installed.verdict == Verdict::Ok;
        out.push(installed);
        if served {
            out.push(keda_version_check(client, k).await);
        }
    }
    for apisvc in &plan.needs.metrics_apis {
        let (ver, group) = apisvc.split_once('.').unwrap_or(("v1beta1", apisvc));
        let gv = format!("{group}/{ver}");
        let what = match group {
            "custom.metrics.k8s.io" => "the Prometheus Adapter (custom metrics API) is not installed: see manifests/observability/prometheus-adapter-values.yaml",
            "external.metrics.k8s.io" => "no external metrics API (KEDA's metrics server or an adapter) is installed",
            _ => "metrics-server (resource metrics API) is not installed",
        };
        out.push(group_check(client, "metrics API", &gv, "", what, k.get_apiservice(apisvc)).await);
    }
    // 6. Prometheus
    match &plan.prometheus {
        None if plan.prometheus_forward_failure.is_some() => out.push(Check::new(
            "Prometheus",
            Verdict::Fail,
            format!(
                "--prometheus port-forward: {} (the access it needs in namespace {} is reviewed under \"allowed\")",
                plan.prometheus_forward_failure.as_deref().unwrap_or_default(),
                plan.prometheus_service.0
            ),
            k.port_forward_prometheus(
                &plan.prometheus_service.0,
                &plan.prometheus_service.1,
                plan.prometheus_service.2,
            ),
        )),
        None => out.push(Check::new(
            "Prometheus",
            Verdict::Warn,
            "no Prometheus URL (scenario [prometheus] url or --prometheus): server-side p95 and GPU charts stay empty",
            k.port_forward_prometheus(
                &plan.prometheus_service.0,
                &plan.prometheus_service.1,
                plan.prometheus_service.2,
            ),
        )),
        Some(url) => {
            let pf = k.port_forward_prometheus(
                &plan.prometheus_service.0,
                &plan.prometheus_service.1,
                plan.prometheus_service.2,
            );
            match Source::new(url) {
                Err(e) => out.push(Check::new("Prometheus", Verdict::Fail, e.to_string(), pf)),
                Ok(src) => match src.reachable().await {
                    Err(e) => out.push(Check::new("Prometheus", Verdict::Fail, format!("unreachable: {e}"), pf)),
                    Ok(()) => {
                        out.push(Check::new("Prometheus", Verdict::Ok, format!("{url} answers"), pf.clone()));
                        match src.series_count("app_requests_total", &plan.namespace).await {
                            Ok(n) if n > 0.0 => out.push(Check::new(
                                "service metrics",
                                Verdict::Ok,
                                format!("{n} app_requests_total series in {}", plan.namespace),
                                k.get_pods("app.kubernetes.io/name=gpu-media"),
                            )),
                            Ok(_) => out.push(absent_series_check(
                                &plan.namespace,
                                deployment_ready(client, &plan.namespace).await,
                                k,
                            )),
                            Err(e) => out.push(Check::new("service metrics", Verdict::Fail, e.to_string(), pf.clone())),
                        }
                        if plan.needs.gpu {
                            match src.value("count(DCGM_FI_DEV_GPU_UTIL)").await {
                                Ok(Some(n)) if n > 0.0 => out.push(Check::new("DCGM metrics", Verdict::Ok, format!("{n} GPUs report DCGM_FI_DEV_GPU_UTIL"), pf.clone())),
                                Ok(_) => out.push(Check::new("DCGM metrics", Verdict::Warn, "no DCGM_FI_DEV_GPU_UTIL: the GPU chart stays empty. With the GPU Operator, its exporter's ServiceMonitor needs the release label your Prometheus selects (helm upgrade gpu-operator nvidia/gpu-operator -n gpu-operator -f manifests/observability/gpu-operator-values.yaml); without it, kubectl apply -k manifests/observability", pf.clone())),
                                Err(e) => out.push(Check::new("DCGM metrics", Verdict::Warn, e.to_string(), pf)),
                            }
                        }
                    }
                },
            }
        }
    }
    out
}

/// Ready pods of the `gpu-media` Deployment, if it exists (an earlier apply).
async fn deployment_ready(client: &Client, ns: &str) -> Option<i32> {
    // A list by name, not a get: the console's Role lists Deployments (to watch them) and
    // does not get them.
    let api: kube::Api<k8s_openapi::api::apps::v1::Deployment> = kube::Api::namespaced(client.clone(), ns);
    let lp = kube::api::ListParams::default().fields("metadata.name=gpu-media");
    let d = api.list(&lp).await.ok()?.items.into_iter().next()?;
    Some(d.status.and_then(|s| s.ready_replicas).unwrap_or(0))
}

/// No `app_requests_total` series in the namespace. Before the first apply that is expected
/// (a warning); with the service's pods already running it means Prometheus does not scrape
/// them, and every autoscaling query answers empty: KEDA falls back and the adapter HPA
/// cannot read its metrics, so the talk cannot scale on its signal (a failure). The usual
/// cause is a Prometheus whose `serviceMonitorSelector` does not match the ServiceMonitor's
/// `release: kube-prometheus-stack` label (a chart installed under another release name).
pub fn absent_series_check(ns: &str, ready_pods: Option<i32>, k: &Kubectl) -> Check {
    match ready_pods {
        Some(n) if n > 0 => Check::new(
            "service metrics",
            Verdict::Fail,
            format!(
                "{n} gpu-media pods are ready in {ns} but Prometheus has no app_requests_total{{namespace=\"{ns}\"}}: it does not scrape them, so the autoscaler has no signal. Compare the ServiceMonitor's `release: kube-prometheus-stack` label (manifests/scrape/servicemonitor.yaml) with your Prometheus's serviceMonitorSelector (kubectl get prometheus -A -o jsonpath='{{..serviceMonitorSelector}}')"
            ),
            k.get_servicemonitors(),
        ),
        _ => Check::new(
            "service metrics",
            Verdict::Warn,
            format!("no app_requests_total{{namespace=\"{ns}\"}} yet: fine before the first apply; afterwards check the ServiceMonitor is selected by Prometheus"),
            k.get_servicemonitors(),
        ),
    }
}

fn skip_rest(mut out: Vec<Check>) -> Vec<Check> {
    out.push(Check::new("the other checks", Verdict::Skipped, "skipped: the cluster is unreachable", String::new()));
    out
}

/// Is `group/version` served (and, when `kind` is given, does it hold that kind)?
/// The oldest KEDA whose admission webhook accepts `fallback` on a `metricType: Value`
/// trigger, which the shipped ScaledObject uses.
pub const KEDA_MIN: (u64, u64) = (2, 18);

/// `2.18.0`, `v2.17.2` → (major, minor); `main`, `latest` and the like → None.
pub fn parse_keda_version(v: &str) -> Option<(u64, u64)> {
    let mut it = v.trim().trim_start_matches('v').split('.');
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    Some((major, minor))
}

/// KEDA's version from its ScaledObject CRD: KEDA's release manifests label every object
/// with `app.kubernetes.io/version` (kedacore/keda config/default/kustomize-config/
/// metadataLabelTransformer.yaml, set to the release by the Makefile's `release` target).
async fn keda_version_check(client: &Client, k: &Kubectl) -> Check {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let name = "KEDA version";
    let kubectl = format!("{} -o jsonpath='{{.metadata.labels}}'", k.get_crd("scaledobjects.keda.sh"));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let meta = match crds.get_metadata("scaledobjects.keda.sh").await {
        Ok(m) => m,
        Err(e) => {
            return Check::new(
                name,
                Verdict::Warn,
                format!(
                    "cannot read the ScaledObject CRD ({}): KEDA must be >= {}.{}",
                    error_text(&e),
                    KEDA_MIN.0,
                    KEDA_MIN.1
                ),
                kubectl,
            )
        }
    };
    let label = meta.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/version")).cloned();
    match label.as_deref().map(|v| (v, parse_keda_version(v))) {
        Some((v, Some(found))) if found < KEDA_MIN => Check::new(
            name,
            Verdict::Fail,
            format!("KEDA {v}: the shipped ScaledObject's fallback on a metricType: Value trigger needs KEDA >= {}.{} (older webhooks reject it, leaving no autoscaler): `helm upgrade keda kedacore/keda -n keda`, or pick an *-adapter overlay", KEDA_MIN.0, KEDA_MIN.1),
            kubectl,
        ),
        Some((v, Some(_))) => Check::new(name, Verdict::Ok, format!("KEDA {v}"), kubectl),
        Some((v, None)) => Check::new(name, Verdict::Warn, format!("KEDA {v:?} (not a release): it must be >= {}.{}", KEDA_MIN.0, KEDA_MIN.1), kubectl),
        None => Check::new(name, Verdict::Warn, format!("the ScaledObject CRD has no app.kubernetes.io/version label: KEDA must be >= {}.{}", KEDA_MIN.0, KEDA_MIN.1), kubectl),
    }
}

async fn group_check(client: &Client, name: &str, gv: &str, kind: &str, missing: &str, kubectl: String) -> Check {
    let path = format!("/apis/{gv}");
    let req = match http::Request::get(path.as_str()).body(Vec::new()) {
        Ok(r) => r,
        Err(e) => return Check::new(name, Verdict::Fail, e.to_string(), kubectl),
    };
    match client.request::<Value>(req).await {
        Ok(v) => {
            let has = kind.is_empty()
                || v.get("resources")
                    .and_then(|r| r.as_array())
                    .is_some_and(|rs| rs.iter().any(|r| r.get("kind").and_then(|k| k.as_str()) == Some(kind)));
            if has {
                Check::new(name, Verdict::Ok, format!("{gv} is served"), kubectl)
            } else {
                Check::new(name, Verdict::Fail, format!("{gv} is served but has no {kind}: {missing}"), kubectl)
            }
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Check::new(name, Verdict::Fail, missing.to_string(), kubectl),
        // The aggregator answers 503 for a registered APIService whose backend is down
        // (its Available condition is False).
        Err(kube::Error::Api(s)) if s.code == 503 => Check::new(
            name,
            Verdict::Fail,
            format!("{gv} is registered but not Available (its server does not answer: {})", s.message),
            kubectl,
        ),
        Err(e) => Check::new(name, Verdict::Fail, format!("{gv}: {}", error_text(&e)), kubectl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn k() -> Kubectl {
        Kubectl::new(Some("demo"), "rtc")
    }

    #[test]
    fn a_port_forwarded_load_target_is_warned_about() {
        for url in ["http://127.0.0.1:8080", "http://localhost:8080/", "http://[::1]:8080"] {
            let c = load_target_check(url, &k()).unwrap_or_else(|| panic!("{url}: no warning"));
            assert_eq!(c.verdict, Verdict::Warn);
            assert!(c.detail.contains("one pod") && c.detail.contains("in-cluster"), "{}", c.detail);
            assert_eq!(c.kubectl, "kubectl --context demo -n rtc get ingress,svc");
        }
        assert_eq!(load_target_check("http://gpu-media.example.com", &k()), None);
        assert_eq!(load_target_check("http://10.0.0.7:80", &k()), None);
    }

    fn plan_loading_from(url: &str, ingress_from: Vec<crate::scenario::IngressPeer>) -> Plan {
        Plan {
            namespace: "rtc".into(),
            server: "https://10.0.0.1:6443".into(),
            access: Vec::new(),
            needs: Needs::default(),
            prometheus: None,
            prometheus_service: ("monitoring".into(), "prometheus-operated".into(), 9090),
            load_url: Some(url.into()),
            images: Vec::new(),
            ingress_from,
            prometheus_forward_failure: None,
        }
    }

    #[test]
    fn load_through_an_ingress_the_network_policy_does_not_admit_is_warned_about() {
        let c = ingress_check(&plan_loading_from("http://gpu-media.example.com", Vec::new()), &k()).unwrap();
        assert_eq!(c.verdict, Verdict::Warn);
        assert!(
            c.detail.contains("admits only namespaces rtc and monitoring") && c.detail.contains("ingress_from"),
            "{c:?}"
        );
        let admitted = vec![crate::scenario::IngressPeer::Namespace("ingress-nginx".into())];
        assert_eq!(ingress_check(&plan_loading_from("http://gpu-media.example.com", admitted), &k()), None);
        // A port-forward has its own warning; in-cluster load has no URL.
        assert_eq!(ingress_check(&plan_loading_from("http://127.0.0.1:8080", Vec::new()), &k()), None);
    }

    #[test]
    fn absent_series_warn_before_the_first_apply_and_fail_after_it() {
        let before = absent_series_check("rtc", None, &k());
        assert_eq!(before.verdict, Verdict::Warn, "{before:?}");
        assert_eq!(absent_series_check("rtc", Some(0), &k()).verdict, Verdict::Warn);
        let after = absent_series_check("rtc", Some(2), &k());
        assert_eq!(after.verdict, Verdict::Fail, "{after:?}");
        assert!(
            after.detail.contains("release: kube-prometheus-stack") && after.detail.contains("serviceMonitorSelector"),
            "{after:?}"
        );
    }

    #[test]
    fn the_placeholder_image_is_a_warning() {
        let own = image_check(&["registry.example/me/rtc-demo:0.2.0".into()], &k());
        assert_eq!(own.verdict, Verdict::Ok, "{own:?}");
        let placeholder = image_check(&["ghcr.io/rtc-demo/rtc-demo:0.1.0".into(), "other/sidecar:1".into()], &k());
        assert_eq!(placeholder.verdict, Verdict::Warn);
        assert!(
            placeholder.detail.starts_with("ghcr.io/rtc-demo/rtc-demo:0.1.0 is the manifests' placeholder"),
            "{placeholder:?}"
        );
        assert!(placeholder.detail.contains("--image REGISTRY/rtc-demo:TAG"));
        assert_eq!(placeholder.kubectl, "kubectl --context demo -n rtc get deployments,jobs -o wide");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural_of("NetworkPolicy"), ("networkpolicies".into(), false));
        assert_eq!(plural_of("Deployment"), ("deployments".into(), false));
        assert_eq!(plural_of("Namespace"), ("namespaces".into(), true));
        assert_eq!(plural_of("ScaledObject"), ("scaledobjects".into(), false));
        assert_eq!(plural_of("Ingress"), ("ingresses".into(), false));
    }

    #[test]
    fn access_covers_apply_watch_and_load() {
        let objs = vec![
            json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"rtc"}}),
            json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"gpu-media","namespace":"rtc"}}),
            json!({"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","metadata":{"name":"gpu-media","namespace":"rtc"}}),
        ];
        let a = required_access(&objs, "rtc", Uses { in_cluster_load: true, ..Uses::default() });
        let s: Vec<String> = a
            .iter()
            .map(|a| format!("{} {} {:?} {:?}", a.verb, a.resource_arg(), a.subresource, a.namespace))
            .collect();
        for want in [
            "patch namespaces None None",
            "patch deployments.apps None Some(\"rtc\")",
            "patch scaledobjects.keda.sh None Some(\"rtc\")",
            "watch pods None Some(\"rtc\")",
            "watch horizontalpodautoscalers.autoscaling None Some(\"rtc\")",
            "watch events None Some(\"rtc\")",
            "create configmaps None Some(\"rtc\")",
            "delete jobs.batch None Some(\"rtc\")",
            "get pods Some(\"log\") Some(\"rtc\")",
        ] {
            assert!(s.iter().any(|x| x == want), "missing {want} in {s:#?}");
        }
        assert!(!s.iter().any(|x| x.starts_with("delete deployments")), "no delete without --teardown");
        assert!(required_access(&objs, "rtc", Uses { teardown: true, ..Uses::default() })
            .iter()
            .any(|a| a.verb == "delete" && a.resource == "deployments"));
    }

    /// `manifests/load/rbac.yaml` (the service's namespace and the cluster) and
    /// `manifests/prometheus-access/rbac.yaml` (Prometheus's namespace) grant the console exactly
    /// what [`required_access`] asks for with any shipped overlay, in-cluster load, `--teardown`
    /// and `--prometheus port-forward`: nothing missing, nothing more.
    #[test]
    fn the_conductor_roles_match_the_access_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let scope_of = |ns: Option<&str>| match ns {
            None => "cluster",
            Some("rtc") => "service",
            Some(_) => "prometheus",
        };
        let everything = Uses { in_cluster_load: true, teardown: true, prometheus_port_forward: Some("monitoring") };
        let mut want: BTreeSet<(&str, String, String, String)> = BTreeSet::new();
        for e in std::fs::read_dir(root.join("manifests/overlays")).unwrap() {
            let dir = format!("manifests/overlays/{}", e.unwrap().file_name().to_string_lossy());
            let objs = crate::conduct::kube::apply::render_manifests(root, &dir, &[], "rtc", "rtc").unwrap();
            for a in required_access(&objs, "rtc", everything) {
                let res = match &a.subresource {
                    Some(sub) => format!("{}/{sub}", a.resource),
                    None => a.resource.clone(),
                };
                want.insert((scope_of(a.namespace.as_deref()), a.group, res, a.verb));
            }
        }
        let mut granted = BTreeSet::new();
        for (file, role_scope) in
            [("manifests/load/rbac.yaml", "service"), ("manifests/prometheus-access/rbac.yaml", "prometheus")]
        {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
            for d in &docs {
                let scope = match d["kind"].as_str() {
                    Some("Role") => role_scope,
                    Some("ClusterRole") => "cluster",
                    _ => continue,
                };
                assert!(d["metadata"]["name"].as_str().unwrap().starts_with("rtc-demo-conductor"), "{file}");
                for rule in d["rules"].as_array().unwrap() {
                    assert!(rule.get("resourceNames").is_none(), "the table has no names: {rule}");
                    let list = |k: &str| -> Vec<String> {
                        rule[k].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect()
                    };
                    for g in list("apiGroups") {
                        for r in list("resources") {
                            for v in list("verbs") {
                                granted.insert((scope, g.clone(), r.clone(), v));
                            }
                        }
                    }
                }
            }
        }
        let missing: Vec<_> = want.difference(&granted).collect();
        let extra: Vec<_> = granted.difference(&want).collect();
        assert!(missing.is_empty() && extra.is_empty(), "the roles lack {missing:#?}\nand grant more: {extra:#?}");
    }

    /// Gatekeeper's constraint CRDs take the lower-cased kind as their plural, so the access
    /// review and the missing-CRD hint name `k8sallowedrepos`, not an English plural.
    #[test]
    fn gatekeeper_constraints_are_reviewed_under_their_crds_plural() {
        let constraint = json!({"apiVersion":"constraints.gatekeeper.sh/v1beta1","kind":"K8sAllowedRepos","metadata":{"name":"rtc-allowed-repos"}});
        let a = required_access(&[constraint], "rtc", Uses::default());
        let patch = a.iter().find(|a| a.verb == "patch").unwrap();
        assert_eq!(patch.resource_arg(), "k8sallowedrepos.constraints.gatekeeper.sh");
        assert_eq!(patch.namespace, None, "constraints are cluster-scoped");
        assert_eq!(plural_in_group("apps", "Deployment"), ("deployments".to_string(), false));
    }

    #[test]
    fn keda_versions() {
        assert_eq!(parse_keda_version("2.18.0"), Some((2, 18)));
        assert_eq!(parse_keda_version("v2.17.2"), Some((2, 17)));
        assert_eq!(parse_keda_version("2.19.0-rc1"), Some((2, 19)));
        assert_eq!(parse_keda_version("main"), None);
        assert!(parse_keda_version("2.17.2").unwrap() < KEDA_MIN && parse_keda_version("2.18.0").unwrap() >= KEDA_MIN);
    }

    #[test]
    fn needs_from_objects() {
        let objs = vec![
            json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"rtc"}}),
            json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},"spec":{"template":{"spec":{"containers":[{"resources":{"limits":{"nvidia.com/gpu":1}}}]}}}}),
            json!({"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler","metadata":{"name":"h"},"spec":{"metrics":[{"type":"Pods"}]}}),
        ];
        let n = needs(&objs, "rtc");
        assert!(n.gpu && n.creates_namespace && !n.keda);
        assert_eq!(n.metrics_apis, vec!["v1beta1.custom.metrics.k8s.io".to_string()]);
        assert!(!needs(&objs, "other").creates_namespace);
    }
}
