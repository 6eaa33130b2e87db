//! Server-side apply of a scenario's manifests (field manager `rtc-demo`), teardown, and
//! waiting for the rollout with kubectl's own progress messages.
//!
//! The kustomize folders are rendered by [`crate::kustomize::render`] (their `resources` and
//! `namespace`), so what we apply is what `kubectl apply -k` applies. Each object's REST path
//! comes from API discovery (one request per group/version, cached), so any kind the
//! manifests hold (CRDs such as KEDA's ScaledObject included) is applied the same way.
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersion};
use kube::discovery::{self, ApiCapabilities, ApiGroup, Scope};
use kube::runtime::watcher;
use kube::Client;
use serde_json::Value;

use super::error_text;

/// The field manager every write of the console uses.
pub const FIELD_MANAGER: &str = "rtc-demo";

/// The label every object of the manifests carries (`app.kubernetes.io/part-of: rtc-demo`).
pub const PART_OF_SELECTOR: &str = "app.kubernetes.io/part-of=rtc-demo";

/// The kinds that scale the Deployment; each overlay holds one of them.
pub const AUTOSCALER_KINDS: [(&str, &str); 2] =
    [("autoscaling/v2", "HorizontalPodAutoscaler"), ("keda.sh/v1alpha1", "ScaledObject")];

/// One object to apply, with what discovery found for its kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn of(v: &Value) -> Result<ObjectRef, ApplyError> {
        let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).map(str::to_string);
        let api_version = s("/apiVersion").ok_or(ApplyError::NoApiVersion)?;
        let kind = s("/kind").ok_or_else(|| ApplyError::NoKind { api_version: api_version.clone() })?;
        let name = s("/metadata/name").ok_or_else(|| ApplyError::NoName { kind: kind.clone() })?;
        Ok(ObjectRef { api_version, kind, namespace: s("/metadata/namespace"), name })
    }
    /// `kind/name` as kubectl prints it (`deployment.apps/gpu-media` style is overkill here).
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{} (namespace {ns})", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }
}

/// Renders the scenario's kustomize folders, `extra` first then the overlay, and moves
/// namespaced objects to `namespace` when it differs from the scenario's (`--namespace`).
pub fn render_manifests(
    root: &Path,
    overlay: &str,
    extra: &[String],
    scenario_ns: &str,
    namespace: &str,
) -> Result<Vec<Value>, ApplyError> {
    let mut out = Vec::new();
    for dir in extra.iter().map(String::as_str).chain(std::iter::once(overlay)) {
        let p = root.join(dir);
        let objs = crate::kustomize::render(&p).map_err(|source| ApplyError::Render { dir: dir.into(), source })?;
        out.extend(objs);
    }
    if namespace != scenario_ns {
        for o in out.iter_mut() {
            retarget_namespace(o, scenario_ns, namespace);
        }
    }
    sort_for_apply(&mut out);
    Ok(out)
}

/// Kinds in the order `kubectl apply -k` applies them, first and last; every other kind
/// (ServiceMonitor, ScaledObject, HorizontalPodAutoscaler, NetworkPolicy …) sits between.
/// From kustomize's legacy sort, the default of `kubectl kustomize`
/// (kubernetes-sigs/kustomize, api/internal/builtins/SortOrderTransformer.go,
/// `defaultOrderFirst` / `defaultOrderLast`, marked "DO NOT CHANGE").
const APPLY_FIRST: [&str; 22] = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const APPLY_LAST: [&str; 2] = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"];

/// Sorts objects as kustomize's legacy sorter does (`legacyIDSorter.Less`): by the kind's
/// place in the lists above, then by group_version_kind (`~G` for the core group), then by
/// namespace (`~X` for none) and name. So the Deployment exists before an object of a kind
/// the cluster may not serve (a ServiceMonitor without the Prometheus Operator) is tried.
pub fn sort_for_apply(objects: &mut [Value]) {
    fn key(o: &Value) -> (i64, String, String, String) {
        let s = |p: &str| o.pointer(p).and_then(|x| x.as_str()).unwrap_or("").to_string();
        let kind = s("/kind");
        let order = match (APPLY_FIRST.iter().position(|k| *k == kind), APPLY_LAST.iter().position(|k| *k == kind)) {
            (Some(i), _) => i as i64 - APPLY_FIRST.len() as i64,
            (None, Some(i)) => 1 + i as i64,
            (None, None) => 0,
        };
        let api_version = s("/apiVersion");
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
        let or = |v: &str, none: &str| if v.is_empty() { none.to_string() } else { v.to_string() };
        let gvk = [or(group, "~G"), or(version, "~V"), or(&kind, "~K")].join("_");
        (order, gvk, or(&s("/metadata/namespace"), "~X"), or(&s("/metadata/name"), "~N"))
    }
    objects.sort_by_cached_key(key);
}

fn retarget_namespace(o: &mut Value, from: &str, to: &str) {
    let kind = o.get("kind").and_then(|k| k.as_str()).unwrap_or_default().to_string();
    let Some(meta) = o.get_mut("metadata").and_then(|m| m.as_object_mut()) else { return };
    if kind == "Namespace" {
        if meta.get("name").and_then(|n| n.as_str()) == Some(from) {
            meta.insert("name".into(), Value::String(to.into()));
        }
    } else if meta.get("namespace").and_then(|n| n.as_str()) == Some(from) {
        meta.insert("namespace".into(), Value::String(to.into()));
    }
    match kind.as_str() {
        // Prometheus scrapes the Service in the namespaces this selector names.
        "ServiceMonitor" => {
            if let Some(names) = o.pointer_mut("/spec/namespaceSelector/matchNames").and_then(|n| n.as_array_mut()) {
                for n in names.iter_mut().filter(|n| n.as_str() == Some(from)) {
                    *n = Value::String(to.into());
                }
            }
        }
        // KEDA's Prometheus queries select the service's series by namespace.
        "ScaledObject" => {
            let (a, b) = (format!("namespace=\"{from}\""), format!("namespace=\"{to}\""));
            for t in o.pointer_mut("/spec/triggers").and_then(|t| t.as_array_mut()).into_iter().flatten() {
                if let Some(Value::String(q)) = t.pointer_mut("/metadata/query") {
                    *q = q.replace(&a, &b);
                }
            }
        }
        _ => {}
    }
}

/// `--teardown`: deletes what was applied, except a namespace the console did not create;
/// returns the errors.
pub async fn teardown(client: &Client, objects: &[Value], namespace: &str) -> Vec<String> {
    match leave_foreign_namespace(client, objects, namespace).await {
        Ok((kept, _)) => Applier::new(client.clone()).delete_all(&kept).await,
        Err(e) => vec![format!("{e}; nothing deleted")],
    }
}

/// Is this Namespace one the console may relabel and delete: one the manifests made (it
/// carries [`PART_OF_SELECTOR`]'s label)? A namespace that existed before, without that label,
/// is someone else's: its labels (Pod Security enforcement among them) are left as they are and
/// `--teardown` does not delete it.
pub fn namespace_is_ours(ns: &k8s_openapi::api::core::v1::Namespace) -> bool {
    let (key, value) = PART_OF_SELECTOR.split_once('=').unwrap_or_default();
    ns.metadata.labels.as_ref().and_then(|l| l.get(key)).is_some_and(|v| v == value)
}

/// The objects without the Namespace `namespace` and its `default` ServiceAccount when the
/// namespace already exists and is not ours ([`namespace_is_ours`]), and whether they were left
/// out. Every namespace has a `default` ServiceAccount (kube-controller-manager's
/// serviceaccounts controller makes it: kubernetes pkg/controller/serviceaccount/
/// serviceaccounts_controller.go); in someone else's namespace its owner's pods may need its
/// token, so the base's `automountServiceAccountToken: false` is not applied over it and
/// `--teardown` does not delete it.
pub async fn leave_foreign_namespace(
    client: &Client,
    objects: &[Value],
    namespace: &str,
) -> Result<(Vec<Value>, bool), ApplyError> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let existing = api
        .get_opt(namespace)
        .await
        .map_err(|e| ApplyError::Api { what: format!("reading namespace {namespace}"), detail: error_text(&e) })?;
    let foreign = existing.as_ref().is_some_and(|ns| !namespace_is_ours(ns));
    let theirs = |o: &Value| {
        let kind = o.get("kind").and_then(|k| k.as_str());
        let name = o.pointer("/metadata/name").and_then(|n| n.as_str());
        let ns = o.pointer("/metadata/namespace").and_then(|n| n.as_str());
        (kind == Some("Namespace") && name == Some(namespace))
            || (kind == Some("ServiceAccount") && name == Some("default") && ns == Some(namespace))
    };
    let kept = objects.iter().filter(|o| !(foreign && theirs(o))).cloned().collect();
    Ok((kept, foreign))
}

/// Discovery cache: group/version → its resources.
pub struct Applier {
    client: Client,
    groups: HashMap<String, ApiGroup>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{0}")]
    Bad(String),
    #[error("an object without apiVersion")]
    NoApiVersion,
    #[error("an object of apiVersion {api_version} without kind")]
    NoKind { api_version: String },
    #[error("a {kind} without metadata.name")]
    NoName { kind: String },
    #[error("rendering {dir}: {source}")]
    Render { dir: String, source: crate::kustomize::RenderError },
    #[error("the watch of deployment {name} ended before its rollout did")]
    WatchEnded { name: String },
    #[error("rollout of deployment {name} not done after {secs}s: {last}")]
    RolloutTimeout { name: String, secs: u64, last: String },
    #[error("applying {kind}: the cluster does not serve {api_version} {kind}: CRD {crd} is not installed; {install} (check: `kubectl get crd {crd}`)")]
    UnknownKind { api_version: String, kind: String, crd: String, install: String },
    #[error("{what}: {detail}")]
    Api { what: String, detail: String },
}

impl ApplyError {
    /// A kind the cluster does not serve, with its CRD's name and how to install it.
    fn unknown_kind(api_version: &str, kind: &str) -> ApplyError {
        let group = api_version.split_once('/').map(|x| x.0).unwrap_or("");
        let crd = format!("{}.{group}", super::preflight::plural_in_group(group, kind).0);
        let install = match group {
            "keda.sh" => "install KEDA >= 2.18: `helm install keda kedacore/keda -n keda --create-namespace`, or pick an *-adapter overlay".to_string(),
            "monitoring.coreos.com" => "install the Prometheus Operator: `helm install kube-prometheus-stack prometheus-community/kube-prometheus-stack -n monitoring --create-namespace`, or pick manifests/overlays/gpu-keda-no-operator".to_string(),
            "templates.gatekeeper.sh" | "constraints.gatekeeper.sh" => "install Gatekeeper: `helm install gatekeeper gatekeeper/gatekeeper -n gatekeeper-system --create-namespace`, or leave manifests/policy out of [manifests] extra".to_string(),
            _ => format!("install the operator that defines {kind}"),
        };
        ApplyError::UnknownKind { api_version: api_version.into(), kind: kind.into(), crd, install }
    }
}

impl Applier {
    pub fn new(client: Client) -> Self {
        Applier { client, groups: HashMap::new() }
    }

    /// The REST resource and scope for `apiVersion`/`kind`.
    pub async fn resolve(
        &mut self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, ApiCapabilities), ApplyError> {
        let what = format!("discovering {api_version} {kind}");
        if !self.groups.contains_key(api_version) {
            let gv: GroupVersion =
                api_version.parse().map_err(|e| ApplyError::Bad(format!("apiVersion {api_version:?}: {e}")))?;
            let unknown = || ApplyError::unknown_kind(api_version, kind);
            let g = match discovery::pinned_group(&self.client, &gv).await {
                Ok(g) => g,
                // The group/version is not served at all: its CRD is not installed.
                Err(kube::Error::Api(s)) if s.code == 404 => return Err(unknown()),
                Err(e) => return Err(ApplyError::Api { what: what.clone(), detail: error_text(&e) }),
            };
            self.groups.insert(api_version.to_string(), g);
        }
        let g = &self.groups[api_version];
        let ver = api_version.rsplit('/').next().unwrap_or(api_version);
        g.versioned_resources(ver)
            .into_iter()
            .find(|(ar, _)| ar.kind == kind)
            .ok_or_else(|| ApplyError::unknown_kind(api_version, kind))
    }

    fn api(&self, ar: &ApiResource, caps: &ApiCapabilities, ns: Option<&str>) -> Api<DynamicObject> {
        match (&caps.scope, ns) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, ar),
            (Scope::Namespaced, None) => Api::default_namespaced_with(self.client.clone(), ar),
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), ar),
        }
    }

    /// Server-side apply of one object: `PATCH …?fieldManager=rtc-demo&force=true` with
    /// `Content-Type: application/apply-patch+yaml` (what `kubectl apply --server-side
    /// --field-manager=rtc-demo --force-conflicts` sends).
    pub async fn apply(&mut self, obj: &Value) -> Result<ObjectRef, ApplyError> {
        let r = ObjectRef::of(obj)?;
        let (ar, caps) = self.resolve(&r.api_version, &r.kind).await?;
        let api = self.api(&ar, &caps, r.namespace.as_deref());
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&r.name, &pp, &Patch::Apply(obj))
            .await
            .map_err(|e| ApplyError::Api { what: format!("applying {}", r.display()), detail: error_text(&e) })?;
        Ok(r)
    }

    /// Applies all objects in order (Namespaces and CRD-free kinds first, as listed),
    /// calling `progress(i, n, object)` before each.
    pub async fn apply_all(
        &mut self,
        objs: &[Value],
        mut progress: impl FnMut(usize, usize, &str),
    ) -> Result<Vec<ObjectRef>, ApplyError> {
        let mut order: Vec<&Value> = objs.iter().collect();
        // Namespaces first (what kubectl does too), otherwise the rendered order.
        order.sort_by_key(|o| o.get("kind").and_then(|k| k.as_str()) != Some("Namespace"));
        let mut done = Vec::new();
        for (i, o) in order.iter().enumerate() {
            let label = ObjectRef::of(o).map(|r| r.display()).unwrap_or_else(|e| e.to_string());
            progress(i, order.len(), &label);
            done.push(self.apply(o).await?);
        }
        Ok(done)
    }

    /// Deletes one object (absent is fine). Background propagation, as kubectl does.
    pub async fn delete(&mut self, obj: &Value) -> Result<ObjectRef, ApplyError> {
        let r = ObjectRef::of(obj)?;
        let (ar, caps) = self.resolve(&r.api_version, &r.kind).await?;
        let api = self.api(&ar, &caps, r.namespace.as_deref());
        match api.delete(&r.name, &DeleteParams::background()).await {
            Ok(_) => Ok(r),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(r),
            Err(e) => Err(ApplyError::Api { what: format!("deleting {}", r.display()), detail: error_text(&e) }),
        }
    }

    /// Before an overlay is applied: deletes the autoscalers an earlier overlay left in
    /// `namespace` that this one does not contain, and waits until they are gone. Without it,
    /// hpa-cpu → keda is refused by KEDA's admission webhook (an HPA already scales the
    /// Deployment), and keda → hpa-cpu leaves KEDA and this apply writing one HPA.
    ///
    /// Ours are the HPAs and ScaledObjects labelled [`PART_OF_SELECTOR`]. KEDA copies a
    /// ScaledObject's labels onto the HPA it creates and makes the ScaledObject its controller
    /// (kedacore/keda controllers/keda/hpa.go, `newHPAForScaledObject`), so such an HPA is kept
    /// while its ScaledObject is, and goes with it otherwise: the deletion is foreground, so a
    /// ScaledObject is gone only once its HPA is.
    pub async fn remove_other_autoscalers(
        &mut self,
        objects: &[Value],
        namespace: &str,
        budget: Duration,
        mut progress: impl FnMut(&str),
    ) -> Result<Vec<ObjectRef>, ApplyError> {
        let wanted: Vec<(String, String)> = objects
            .iter()
            .filter_map(|o| ObjectRef::of(o).ok())
            .filter(|r| AUTOSCALER_KINDS.iter().any(|(_, k)| *k == r.kind))
            .map(|r| (r.kind, r.name))
            .collect();
        let mut removed = Vec::new();
        for (api_version, kind) in AUTOSCALER_KINDS {
            let (ar, caps) = match self.resolve(api_version, kind).await {
                Ok(x) => x,
                // KEDA not installed: no ScaledObject can be left over.
                Err(ApplyError::UnknownKind { .. }) => continue,
                Err(e) => return Err(e),
            };
            let api = self.api(&ar, &caps, Some(namespace));
            let what = format!("listing {kind}s labelled {PART_OF_SELECTOR} in namespace {namespace}");
            let list = api
                .list(&ListParams::default().labels(PART_OF_SELECTOR))
                .await
                .map_err(|e| ApplyError::Api { what, detail: error_text(&e) })?;
            for o in list.items {
                let name = o.metadata.name.clone().unwrap_or_default();
                // An HPA a ScaledObject controls goes (or stays) with its ScaledObject.
                let owned = o.metadata.owner_references.iter().flatten().any(|r| r.controller == Some(true));
                if owned || wanted.iter().any(|(k, n)| k == kind && *n == name) {
                    continue;
                }
                let r = ObjectRef {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                    namespace: Some(namespace.to_string()),
                    name: name.clone(),
                };
                // Already being deleted (an earlier run's removal still under way): only wait.
                if o.metadata.deletion_timestamp.is_some() {
                    removed.push(r);
                    continue;
                }
                progress(&format!("removing {} (not in this overlay)", r.display()));
                match api.delete(&name, &DeleteParams::foreground()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => continue,
                    Err(e) => {
                        return Err(ApplyError::Api {
                            what: format!("deleting {}", r.display()),
                            detail: error_text(&e),
                        })
                    }
                }
                removed.push(r);
            }
        }
        let since = std::time::Instant::now();
        for r in &removed {
            let (ar, caps) = self.resolve(&r.api_version, &r.kind).await?;
            let api = self.api(&ar, &caps, Some(namespace));
            loop {
                match api.get_opt(&r.name).await {
                    Ok(None) => break,
                    Ok(Some(_)) if since.elapsed() < budget => {
                        progress(&format!("waiting for {} to be deleted", r.display()));
                        tokio::time::sleep(Duration::from_millis(500)).await
                    }
                    Ok(Some(_)) => {
                        return Err(ApplyError::Api {
                            what: format!("deleting {}", r.display()),
                            detail: format!(
                                "still there after {} s (see `kubectl -n {namespace} describe {} {}`)",
                                budget.as_secs(),
                                r.kind.to_lowercase(),
                                r.name
                            ),
                        })
                    }
                    Err(e) => {
                        return Err(ApplyError::Api {
                            what: format!("deleting {}", r.display()),
                            detail: error_text(&e),
                        })
                    }
                }
            }
        }
        Ok(removed)
    }

    /// `--teardown`: deletes in reverse order (the Namespace last); returns the errors.
    pub async fn delete_all(&mut self, objs: &[Value]) -> Vec<String> {
        let is_ns = |o: &&Value| o.get("kind").and_then(|k| k.as_str()) == Some("Namespace");
        let order: Vec<&Value> =
            objs.iter().rev().filter(|o| !is_ns(o)).chain(objs.iter().filter(|o| is_ns(o))).collect();
        let mut errs = Vec::new();
        for o in order {
            if let Err(e) = self.delete(o).await {
                errs.push(e.to_string());
            }
        }
        errs
    }
}

/// Where a rollout stands, in kubectl's words (`kubectl rollout status`).
pub fn rollout_progress(d: &Deployment) -> (bool, String) {
    let name = d.metadata.name.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(st) = &d.status else { return (false, "Waiting for deployment spec update to be observed...".into()) };
    if st.observed_generation.unwrap_or(0) < generation {
        return (false, "Waiting for deployment spec update to be observed...".into());
    }
    if let Some(c) = st.conditions.iter().flatten().find(|c| c.type_ == "Progressing") {
        if c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return (false, format!("deployment {name:?} exceeded its progress deadline"));
        }
    }
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = st.updated_replicas.unwrap_or(0);
    let total = st.replicas.unwrap_or(0);
    let available = st.available_replicas.unwrap_or(0);
    if updated < want {
        return (false, format!("Waiting for deployment {name:?} rollout to finish: {updated} out of {want} new replicas have been updated..."));
    }
    if total > updated {
        return (
            false,
            format!(
                "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
                total - updated
            ),
        );
    }
    if available < updated {
        return (false, format!("Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."));
    }
    (true, format!("deployment {name:?} successfully rolled out"))
}

/// Watches the Deployment until it has rolled out, reporting each new progress line; gives up
/// after `timeout` with the last line.
pub async fn wait_rollout(
    client: Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<(), ApplyError> {
    let api: Api<Deployment> = Api::namespaced(client, namespace);
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut last = String::from("waiting for the Deployment to appear");
    let fut = async {
        let mut stream = watcher(api, cfg).boxed();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(d)) | Ok(watcher::Event::InitApply(d)) => {
                    let (done, line) = rollout_progress(&d);
                    if line != last {
                        progress(&line);
                        last = line;
                    }
                    if done {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let line = format!("watching deployment {name}: {e}");
                    progress(&line);
                    last = line;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        Err(ApplyError::WatchEnded { name: name.into() })
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ApplyError::RolloutTimeout { name: name.into(), secs: timeout.as_secs(), last }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(j: Value) -> Deployment {
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn rollout_messages_follow_kubectl() {
        let d = dep(
            serde_json::json!({"metadata":{"name":"gpu-media","generation":2},"spec":{"replicas":2,"selector":{},"template":{}},"status":{"observedGeneration":1}}),
        );
        assert_eq!(rollout_progress(&d), (false, "Waiting for deployment spec update to be observed...".into()));
        let d = dep(
            serde_json::json!({"metadata":{"name":"gpu-media","generation":2},"spec":{"replicas":2,"selector":{},"template":{}},"status":{"observedGeneration":2,"replicas":2,"updatedReplicas":1}}),
        );
        assert!(
            rollout_progress(&d).1.ends_with("1 out of 2 new replicas have been updated..."),
            "{:?}",
            rollout_progress(&d)
        );
        let d = dep(
            serde_json::json!({"metadata":{"name":"gpu-media","generation":2},"spec":{"replicas":2,"selector":{},"template":{}},"status":{"observedGeneration":2,"replicas":3,"updatedReplicas":2}}),
        );
        assert!(rollout_progress(&d).1.ends_with("1 old replicas are pending termination..."));
        let d = dep(
            serde_json::json!({"metadata":{"name":"gpu-media","generation":2},"spec":{"replicas":2,"selector":{},"template":{}},"status":{"observedGeneration":2,"replicas":2,"updatedReplicas":2,"availableReplicas":1}}),
        );
        assert!(rollout_progress(&d).1.ends_with("1 of 2 updated replicas are available..."));
        let d = dep(
            serde_json::json!({"metadata":{"name":"gpu-media","generation":2},"spec":{"replicas":2,"selector":{},"template":{}},"status":{"observedGeneration":2,"replicas":2,"updatedReplicas":2,"availableReplicas":2}}),
        );
        assert_eq!(rollout_progress(&d), (true, "deployment \"gpu-media\" successfully rolled out".into()));
    }

    #[test]
    fn namespace_override_moves_namespaced_objects_and_renames_the_namespace() {
        let mut ns = serde_json::json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"rtc"}});
        let mut d =
            serde_json::json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x","namespace":"rtc"}});
        let mut other =
            serde_json::json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"y","namespace":"monitoring"}});
        retarget_namespace(&mut ns, "rtc", "demo");
        retarget_namespace(&mut d, "rtc", "demo");
        retarget_namespace(&mut other, "rtc", "demo");
        assert_eq!(ns["metadata"]["name"], "demo");
        assert_eq!(d["metadata"]["namespace"], "demo");
        assert_eq!(other["metadata"]["namespace"], "monitoring");
    }

    #[test]
    fn namespace_override_moves_the_scrape_selector_and_the_keda_queries() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let objs = render_manifests(root, "manifests/overlays/gpu-keda", &[], "rtc", "demo").unwrap();
        let one = |k: &str| objs.iter().find(|o| o["kind"] == k).unwrap_or_else(|| panic!("no {k}"));
        assert_eq!(one("ServiceMonitor")["spec"]["namespaceSelector"]["matchNames"], serde_json::json!(["demo"]));
        let so = one("ScaledObject").to_string();
        assert!(so.contains("namespace=\\\"demo\\\"") && !so.contains("namespace=\\\"rtc\\\""), "{so}");
        assert!(!serde_json::to_string(&objs).unwrap().contains("\"rtc\""), "nothing left in rtc");
    }

    #[test]
    fn applied_in_kubectl_kustomize_order() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let objs = render_manifests(root, "manifests/overlays/gpu-keda", &[], "rtc", "rtc").unwrap();
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap_or("")).collect();
        let at = |k: &str| kinds.iter().position(|x| *x == k).unwrap_or_else(|| panic!("no {k} in {kinds:?}"));
        assert_eq!(at("Namespace"), 0, "{kinds:?}");
        assert!(at("Service") < at("Deployment"), "{kinds:?}");
        // Kinds the cluster may not serve come after everything the pods need.
        for late in ["ServiceMonitor", "ScaledObject", "NetworkPolicy"] {
            assert!(at(late) > at("Deployment") && at(late) > at("PodDisruptionBudget"), "{late}: {kinds:?}");
        }
        let mut v = vec![
            serde_json::json!({"apiVersion":"admissionregistration.k8s.io/v1","kind":"ValidatingWebhookConfiguration","metadata":{"name":"w"}}),
            serde_json::json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"b","namespace":"rtc"}}),
            serde_json::json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","namespace":"rtc"}}),
            serde_json::json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"rtc"}}),
        ];
        sort_for_apply(&mut v);
        let order: Vec<&str> = v.iter().map(|o| o["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(order, ["rtc", "a", "b", "w"]);
    }

    #[test]
    fn object_refs_name_what_is_missing() {
        assert!(ObjectRef::of(&serde_json::json!({"kind":"X"})).unwrap_err().to_string().contains("apiVersion"));
        assert!(ObjectRef::of(&serde_json::json!({"apiVersion":"v1","kind":"Service","metadata":{}}))
            .unwrap_err()
            .to_string()
            .contains("Service without metadata.name"));
    }
}
