//! The exact kubectl command for each step the console takes and each view it shows: the
//! presenter's fallback when the console fails mid-talk (SPEC §4, "the kubectl panel").
//!
//! Pure functions of names; every string is pinned by a unit test below. A command never
//! includes anything the presenter would have to invent: where the console wrote a file
//! (the filled load Job), the command names that file.

/// Quotes a shell word when it needs it (single quotes; `'` inside becomes `'\''`).
pub fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// kubectl aimed at one context and namespace (the console's `--context`/`--namespace`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubectl {
    /// `None`: the kubeconfig's current context (no `--context` flag).
    pub context: Option<String>,
    pub namespace: String,
}

impl Kubectl {
    pub fn new(context: Option<&str>, namespace: &str) -> Self {
        Kubectl { context: context.map(str::to_string), namespace: namespace.to_string() }
    }

    /// `kubectl [--context C]`
    fn base(&self) -> String {
        match &self.context {
            Some(c) => format!("kubectl --context {}", sh_quote(c)),
            None => "kubectl".to_string(),
        }
    }

    /// `kubectl [--context C] -n NS`
    pub fn ns(&self) -> String {
        format!("{} -n {}", self.base(), sh_quote(&self.namespace))
    }

    // ---- preflight -------------------------------------------------------------------

    /// Cluster reachable: the server's version, as preflight asks it. Every user may read
    /// `/version` (ClusterRole system:public-info-viewer, kubernetes
    /// plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go); `kubectl cluster-info` would
    /// list Services in kube-system (kubectl pkg/cmd/clusterinfo/clusterinfo.go), which the
    /// console's Role does not grant.
    pub fn server_version(&self) -> String {
        format!("{} version", self.base())
    }

    /// The contexts the kubeconfig holds.
    pub fn get_contexts(&self) -> String {
        "kubectl config get-contexts".to_string()
    }

    /// Allowed: one SelfSubjectAccessReview, as kubectl asks it.
    /// `resource` is `plural[.group]` (e.g. `deployments.apps`, `pods/log` style subresources
    /// are given as `pods --subresource=log`).
    pub fn auth_can_i(&self, verb: &str, resource: &str, subresource: Option<&str>) -> String {
        let sub = subresource.map(|s| format!(" --subresource={}", sh_quote(s))).unwrap_or_default();
        format!("{} auth can-i {} {}{sub}", self.ns(), sh_quote(verb), sh_quote(resource))
    }

    /// Everything the current user may do in the namespace.
    pub fn auth_can_i_list(&self) -> String {
        format!("{} auth can-i --list", self.ns())
    }

    pub fn get_namespace(&self) -> String {
        format!("{} get namespace {}", self.base(), sh_quote(&self.namespace))
    }

    /// Nodes with their allocatable GPUs.
    pub fn get_gpu_nodes(&self) -> String {
        format!(
            r"{} get nodes -o custom-columns=NAME:.metadata.name,GPU:.status.allocatable.nvidia\.com/gpu",
            self.base()
        )
    }

    /// A CustomResourceDefinition (KEDA: `scaledobjects.keda.sh`).
    pub fn get_crd(&self, name: &str) -> String {
        format!("{} get crd {}", self.base(), sh_quote(name))
    }

    /// An aggregated API (the Prometheus Adapter: `v1beta1.custom.metrics.k8s.io`).
    pub fn get_apiservice(&self, name: &str) -> String {
        format!("{} get apiservice {}", self.base(), sh_quote(name))
    }

    /// A custom metric as the HPA reads it from the adapter.
    pub fn get_custom_metric(&self, metric: &str) -> String {
        format!(
            "{} get --raw /apis/custom.metrics.k8s.io/v1beta1/namespaces/{}/pods/*/{}",
            self.base(),
            self.namespace,
            metric
        )
    }

    /// The ServiceMonitors Prometheus Operator should pick up.
    pub fn get_servicemonitors(&self) -> String {
        format!("{} get servicemonitors -o wide", self.ns())
    }

    /// The program the console runs for port-forwards: `$RTC_KUBECTL`, else `kubectl`.
    pub fn program() -> String {
        std::env::var("RTC_KUBECTL").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "kubectl".into())
    }

    /// The arguments of a forward to `target` (`svc/prometheus-operated`, `pod/gpu-media-x`)
    /// in `namespace`, without the `LOCAL:REMOTE` ports the supervisor adds.
    pub fn port_forward_args(&self, namespace: &str, target: &str) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(c) = &self.context {
            args.extend(["--context".to_string(), c.clone()]);
        }
        args.extend(["-n".to_string(), namespace.to_string(), "port-forward".into(), target.to_string()]);
        args
    }

    pub fn port_forward_prometheus(&self, namespace: &str, service: &str, port: u16) -> String {
        format!("{} -n {} port-forward svc/{} {port}:{port}", self.base(), sh_quote(namespace), sh_quote(service))
    }

    // ---- apply / rollout / teardown --------------------------------------------------

    /// Server-side apply of a kustomize folder, as the console does it.
    pub fn apply_k(&self, dir: &str) -> String {
        format!("{} apply --server-side --field-manager=rtc-demo --force-conflicts -k {}", self.base(), sh_quote(dir))
    }

    /// Server-side apply of one file (the filled load Job the console wrote).
    pub fn apply_f(&self, file: &str) -> String {
        format!("{} apply --server-side --field-manager=rtc-demo --force-conflicts -f {}", self.base(), sh_quote(file))
    }

    /// What the console applies, without applying it.
    pub fn diff_k(&self, dir: &str) -> String {
        format!("{} diff --server-side --field-manager=rtc-demo --force-conflicts -k {}", self.base(), sh_quote(dir))
    }

    pub fn rollout_status(&self, deployment: &str) -> String {
        format!("{} rollout status deployment/{} --timeout=5m", self.ns(), sh_quote(deployment))
    }

    /// `--teardown`: remove what the overlay created.
    pub fn delete_k(&self, dir: &str) -> String {
        format!("{} delete -k {} --ignore-not-found --wait=false", self.base(), sh_quote(dir))
    }

    /// Pin the replica count by hand (the autoscaler takes over again at its next sync).
    pub fn scale(&self, deployment: &str, replicas: u32) -> String {
        format!("{} scale deployment/{} --replicas={replicas}", self.ns(), sh_quote(deployment))
    }

    // ---- the views -------------------------------------------------------------------

    pub fn get_deployment(&self, deployment: &str) -> String {
        format!("{} get deployment {} -w", self.ns(), sh_quote(deployment))
    }

    /// The pods panel: name, phase, ready, node, age, restarts.
    pub fn get_pods(&self, selector: &str) -> String {
        format!("{} get pods -l {} -o wide -w", self.ns(), sh_quote(selector))
    }

    /// The HPA panel (for KEDA, the HPA it made: see `kube::keda_hpa_name`).
    pub fn get_hpa(&self, hpa: &str) -> String {
        format!("{} get hpa {} -w", self.ns(), sh_quote(hpa))
    }

    /// Conditions with reasons, metric value vs target, and the HPA's own events.
    pub fn describe_hpa(&self, hpa: &str) -> String {
        format!("{} describe hpa {}", self.ns(), sh_quote(hpa))
    }

    pub fn get_scaledobject(&self, name: &str) -> String {
        format!("{} get scaledobject {}", self.ns(), sh_quote(name))
    }

    /// The scaling-events panel.
    pub fn get_rescale_events(&self) -> String {
        format!("{} get events --field-selector reason=SuccessfulRescale --sort-by=.lastTimestamp -w", self.ns())
    }

    /// Every event in the namespace, newest last.
    pub fn get_events(&self) -> String {
        format!("{} get events --sort-by=.lastTimestamp -w", self.ns())
    }

    /// The images the Deployment and the load Job run (the IMAGES column).
    pub fn get_images(&self) -> String {
        format!("{} get deployments,jobs -o wide", self.ns())
    }

    /// Where load from outside the cluster can enter (not a port-forward).
    pub fn get_ingress(&self) -> String {
        format!("{} get ingress,svc", self.ns())
    }

    /// Why one pod does not start: its container states and the kubelet's events.
    pub fn describe_pod(&self, pod: &str) -> String {
        format!("{} describe pod {}", self.ns(), sh_quote(pod))
    }

    /// What a crashed container printed before it exited.
    pub fn logs_previous(&self, pod: &str, container: &str) -> String {
        format!("{} logs {} -c {} --previous", self.ns(), sh_quote(pod), sh_quote(container))
    }

    /// Logs of the service's pods (one line per request error, start-up, drain).
    pub fn logs_pods(&self, selector: &str) -> String {
        format!("{} logs -l {} --prefix --tail=20 -f", self.ns(), sh_quote(selector))
    }

    // ---- in-cluster load -------------------------------------------------------------

    /// Stop a load Job (pause, stop, next stage): foreground, so it returns once its pod is gone
    /// (what the console does before the next stage's Job).
    pub fn delete_job(&self, job: &str) -> String {
        format!("{} delete job {} --ignore-not-found --cascade=foreground", self.ns(), sh_quote(job))
    }

    /// The load Job's per-second lines and its final JSON summary.
    pub fn logs_job(&self, job: &str) -> String {
        format!("{} logs -f job/{}", self.ns(), sh_quote(job))
    }

    pub fn get_job(&self, job: &str) -> String {
        format!("{} get job {} -w", self.ns(), sh_quote(job))
    }

    /// Load from this machine: the same stage the console's engine runs (`base_url` is the
    /// service's `http://HOST:PORT`, e.g. a port-forward; the scenario gives path and rates).
    pub fn load_from_here(&self, scenario: &str, stage: &str, base_url: &str) -> String {
        format!("rtc-demo load --scenario {} --stage {} {}", sh_quote(scenario), sh_quote(stage), sh_quote(base_url))
    }

    /// The Service on this machine (for load from here when it has no external URL).
    pub fn port_forward_service(&self, service: &str, local: u16, port: u16) -> String {
        format!("{} port-forward svc/{} {local}:{port}", self.ns(), sh_quote(service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k() -> Kubectl {
        Kubectl::new(Some("gke-demo"), "rtc")
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("rtc"), "rtc");
        assert_eq!(sh_quote("app.kubernetes.io/name=gpu-media"), "app.kubernetes.io/name=gpu-media");
        assert_eq!(sh_quote("my ctx"), "'my ctx'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a;rm -rf /"), "'a;rm -rf /'");
    }

    #[test]
    fn context_flag_only_when_given() {
        assert_eq!(Kubectl::new(None, "rtc").get_hpa("gpu-media"), "kubectl -n rtc get hpa gpu-media -w");
        assert_eq!(k().get_hpa("gpu-media"), "kubectl --context gke-demo -n rtc get hpa gpu-media -w");
        assert_eq!(
            Kubectl::new(Some("arn:aws:eks:eu-west-1:1:cluster/x"), "rtc").server_version(),
            "kubectl --context arn:aws:eks:eu-west-1:1:cluster/x version"
        );
    }

    #[test]
    fn preflight_commands() {
        let k = k();
        assert_eq!(k.server_version(), "kubectl --context gke-demo version");
        assert_eq!(k.get_contexts(), "kubectl config get-contexts");
        assert_eq!(
            k.auth_can_i("patch", "deployments.apps", None),
            "kubectl --context gke-demo -n rtc auth can-i patch deployments.apps"
        );
        assert_eq!(
            k.auth_can_i("get", "pods", Some("log")),
            "kubectl --context gke-demo -n rtc auth can-i get pods --subresource=log"
        );
        assert_eq!(k.auth_can_i_list(), "kubectl --context gke-demo -n rtc auth can-i --list");
        assert_eq!(k.get_namespace(), "kubectl --context gke-demo get namespace rtc");
        assert_eq!(
            k.get_gpu_nodes(),
            r"kubectl --context gke-demo get nodes -o custom-columns=NAME:.metadata.name,GPU:.status.allocatable.nvidia\.com/gpu"
        );
        assert_eq!(k.get_crd("scaledobjects.keda.sh"), "kubectl --context gke-demo get crd scaledobjects.keda.sh");
        assert_eq!(
            k.get_apiservice("v1beta1.custom.metrics.k8s.io"),
            "kubectl --context gke-demo get apiservice v1beta1.custom.metrics.k8s.io"
        );
        assert_eq!(
            k.get_custom_metric("rtc_request_latency_p95_seconds"),
            "kubectl --context gke-demo get --raw /apis/custom.metrics.k8s.io/v1beta1/namespaces/rtc/pods/*/rtc_request_latency_p95_seconds"
        );
        assert_eq!(k.get_servicemonitors(), "kubectl --context gke-demo -n rtc get servicemonitors -o wide");
        assert_eq!(
            k.port_forward_prometheus("monitoring", "prometheus-operated", 9090),
            "kubectl --context gke-demo -n monitoring port-forward svc/prometheus-operated 9090:9090"
        );
    }

    #[test]
    fn apply_rollout_teardown_commands() {
        let k = k();
        assert_eq!(
            k.apply_k("manifests/overlays/gpu-keda"),
            "kubectl --context gke-demo apply --server-side --field-manager=rtc-demo --force-conflicts -k manifests/overlays/gpu-keda"
        );
        assert_eq!(k.apply_f("/tmp/rtc-demo-load.yaml"), "kubectl --context gke-demo apply --server-side --field-manager=rtc-demo --force-conflicts -f /tmp/rtc-demo-load.yaml");
        assert_eq!(k.diff_k("manifests/overlays/gpu-keda"), "kubectl --context gke-demo diff --server-side --field-manager=rtc-demo --force-conflicts -k manifests/overlays/gpu-keda");
        assert_eq!(
            k.rollout_status("gpu-media"),
            "kubectl --context gke-demo -n rtc rollout status deployment/gpu-media --timeout=5m"
        );
        assert_eq!(
            k.delete_k("manifests/overlays/gpu-keda"),
            "kubectl --context gke-demo delete -k manifests/overlays/gpu-keda --ignore-not-found --wait=false"
        );
        assert_eq!(
            k.scale("gpu-media", 2),
            "kubectl --context gke-demo -n rtc scale deployment/gpu-media --replicas=2"
        );
    }

    #[test]
    fn view_commands() {
        let k = k();
        assert_eq!(k.get_deployment("gpu-media"), "kubectl --context gke-demo -n rtc get deployment gpu-media -w");
        assert_eq!(
            k.get_pods("app.kubernetes.io/name=gpu-media"),
            "kubectl --context gke-demo -n rtc get pods -l app.kubernetes.io/name=gpu-media -o wide -w"
        );
        assert_eq!(k.get_hpa("keda-hpa-gpu-media"), "kubectl --context gke-demo -n rtc get hpa keda-hpa-gpu-media -w");
        assert_eq!(k.describe_hpa("gpu-media"), "kubectl --context gke-demo -n rtc describe hpa gpu-media");
        assert_eq!(k.get_scaledobject("gpu-media"), "kubectl --context gke-demo -n rtc get scaledobject gpu-media");
        assert_eq!(k.get_rescale_events(), "kubectl --context gke-demo -n rtc get events --field-selector reason=SuccessfulRescale --sort-by=.lastTimestamp -w");
        assert_eq!(k.get_events(), "kubectl --context gke-demo -n rtc get events --sort-by=.lastTimestamp -w");
        assert_eq!(
            k.logs_pods("app.kubernetes.io/name=gpu-media"),
            "kubectl --context gke-demo -n rtc logs -l app.kubernetes.io/name=gpu-media --prefix --tail=20 -f"
        );
    }

    #[test]
    fn load_commands() {
        let k = k();
        assert_eq!(
            k.delete_job("rtc-demo-load"),
            "kubectl --context gke-demo -n rtc delete job rtc-demo-load --ignore-not-found --cascade=foreground"
        );
        assert_eq!(k.logs_job("rtc-demo-load"), "kubectl --context gke-demo -n rtc logs -f job/rtc-demo-load");
        assert_eq!(k.get_job("rtc-demo-load"), "kubectl --context gke-demo -n rtc get job rtc-demo-load -w");
        assert_eq!(
            k.load_from_here("scenarios/keynote.toml", "ramp", "http://127.0.0.1:8080"),
            "rtc-demo load --scenario scenarios/keynote.toml --stage ramp http://127.0.0.1:8080"
        );
        assert_eq!(
            k.load_from_here("my scenarios/k.toml", "cool down", "http://x:1"),
            "rtc-demo load --scenario 'my scenarios/k.toml' --stage 'cool down' http://x:1"
        );
        assert_eq!(
            k.port_forward_service("gpu-media", 8080, 80),
            "kubectl --context gke-demo -n rtc port-forward svc/gpu-media 8080:80"
        );
    }

    #[test]
    fn names_with_spaces_are_quoted_not_split() {
        let k = Kubectl::new(Some("my cluster"), "team a");
        assert_eq!(k.get_hpa("x"), "kubectl --context 'my cluster' -n 'team a' get hpa x -w");
    }
}
