"""The manifests (SPEC §5): layout, strict Kubernetes 1.30 schemas, the SLO numbers, pod
security and operations, the CRD objects field by field. Static: no cluster needed."""

from __future__ import annotations

import copy
import re

import kubernetes_validate
import pytest

from conftest import CRD_KINDS, MANIFESTS, find, kustomize_dirs, load_yaml, one, rel

K8S_VERSION = "1.30.0"
OVERLAYS = [
    "gpu-keda",
    "gpu-adapter",
    "gpu-hpa-cpu",
    "gpu-latency-only",
    "cpu-keda",
    "cpu-adapter",
    "cpu-hpa-cpu",
    "gpu-keda-no-operator",
]
EXPECTED_DIRS = {
    "base",
    "scrape",
    "deployment/gpu",
    "deployment/cpu",
    "autoscaling/hpa-cpu",
    "autoscaling/load-keda",
    "autoscaling/load-keda-no-operator",
    "autoscaling/load-adapter",
    "autoscaling/latency-only-adapter",
    "policy",
    "observability",
    "load",
    "prometheus-access",
} | {f"overlays/{o}" for o in OVERLAYS}
POD_LABELS = {"app.kubernetes.io/name": "gpu-media"}
APP_UID = 10001

# The SLO (SPEC §5): min 2, max 10, up after 30 s over 100 ms, down after 2 min under 50 ms.
MIN_REPLICAS, MAX_REPLICAS = 2, 10
UP_WINDOW_S, DOWN_WINDOW_S = 30, 120
TARGET_S, LOW_S = 0.1, 0.05
# The load-proportional signal: worker utilisation per pod, target 0.7 (README "Autoscaling").
UTILIZATION_TARGET = 0.7


def duration_s(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    assert m, f"not a duration: {text!r}"
    return float(m[1]) * {"ms": 0.001, "s": 1, "m": 60}[m[2]]


def quantity(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", str(text))
    assert m, f"not a plain quantity: {text!r}"
    return float(m[1]) / (1000 if m[2] else 1)


def autoscalers(objects):
    return [o for o in objects if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]


def behavior_of(a: dict) -> dict:
    if a["kind"] == "ScaledObject":
        return a["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    return a["spec"]["behavior"]


# ---- layout -----------------------------------------------------------------------------


def test_layout_has_every_folder_spec_5_lists():
    assert {rel(d) for d in kustomize_dirs()} == EXPECTED_DIRS
    assert (MANIFESTS / "README.md").is_file()
    assert (MANIFESTS / "autoscaling/load-adapter/hpa.yaml").is_file()


@pytest.mark.parametrize("d", sorted(EXPECTED_DIRS))
def test_kustomization_uses_only_resources_namespace_and_images(d):
    k = load_yaml(MANIFESTS / d / "kustomization.yaml")
    assert set(k) <= {"apiVersion", "kind", "resources", "namespace", "images"}, f"{d}: {sorted(k)}"
    assert k["resources"], d
    # The one place a `kubectl apply -k` user names their image: the placeholder's name.
    for image in k.get("images", []):
        assert image["name"] == "ghcr.io/rtc-demo/rtc-demo", f"{d}: {image}"
        assert set(image) <= {"name", "newName", "newTag", "digest"}, f"{d}: {image}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_has_exactly_one_autoscaler_and_the_whole_service(rendered, overlay):
    objs = rendered[f"overlays/{overlay}"]
    scalers = autoscalers(objs)
    assert len(scalers) == 1, f"{overlay}: {[(a['kind'], a['metadata']['name']) for a in scalers]}"
    for kind in ["Namespace", "ServiceAccount", "Service", "NetworkPolicy", "PodDisruptionBudget", "Deployment"]:
        assert find(objs, kind), f"{overlay} lacks a {kind}"
    # The ServiceMonitor in every overlay but those for clusters without the Operator.
    assert bool(find(objs, "ServiceMonitor")) == (not overlay.endswith("-no-operator")), overlay
    dep = one(objs, "Deployment", "gpu-media")
    assert "replicas" not in dep["spec"], f"{overlay}: the autoscaler owns replicas"
    ref = scalers[0]["spec"]["scaleTargetRef"]
    assert (ref.get("kind", "Deployment"), ref["name"]) == ("Deployment", "gpu-media")
    for o in objs:
        if o["kind"] != "Namespace":
            assert o["metadata"]["namespace"] == "rtc", (overlay, o["kind"])
    kind = "ScaledObject" if "-keda" in overlay else "HorizontalPodAutoscaler"
    assert scalers[0]["kind"] == kind
    expect_gpu = overlay.startswith("gpu")
    limits = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert ("nvidia.com/gpu" in limits) == expect_gpu


def test_only_overlays_combine_parts(rendered):
    for d, objs in rendered.items():
        if not d.startswith("overlays/"):
            assert len(autoscalers(objs)) <= 1, d
            if d.startswith("deployment/"):
                assert not autoscalers(objs) and [o["kind"] for o in objs] == ["Deployment"], d


# ---- schemas ----------------------------------------------------------------------------


def test_every_core_object_validates_strictly_against_kubernetes_1_30(rendered):
    checked, crds = 0, 0
    for d, objs in rendered.items():
        for o in objs:
            what = f"{d}: {o['kind']}/{o['metadata']['name']}"
            if o["kind"] in CRD_KINDS:
                with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                    kubernetes_validate.validate(o, K8S_VERSION, strict=True)
                crds += 1
                continue
            try:
                kubernetes_validate.validate(o, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{what}: {e.message} at {list(e.path)}", pytrace=False)
            except kubernetes_validate.SchemaNotFoundError:
                pytest.fail(f"{what}: no Kubernetes {K8S_VERSION} schema and not a known CRD kind")
            checked += 1
    assert checked > 50 and crds > 8, (checked, crds)


def test_strict_validation_catches_a_misspelt_field(rendered):
    """Control: the validator used above does reject what a typo produces."""
    dep = copy.deepcopy(one(rendered["deployment/gpu"], "Deployment"))
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, K8S_VERSION, strict=True)


# ---- autoscaling per the SLO --------------------------------------------------------------


def all_autoscalers(rendered):
    return {d: autoscalers(objs)[0] for d, objs in rendered.items() if d.startswith("autoscaling/")}


def test_replica_bounds_and_behavior_follow_the_slo(rendered):
    scalers = all_autoscalers(rendered)
    assert set(scalers) == {
        "autoscaling/hpa-cpu",
        "autoscaling/load-keda",
        "autoscaling/load-keda-no-operator",
        "autoscaling/load-adapter",
        "autoscaling/latency-only-adapter",
    }
    behaviors = []
    for d, a in scalers.items():
        s = a["spec"]
        if a["kind"] == "ScaledObject":
            assert (s["minReplicaCount"], s["maxReplicaCount"]) == (MIN_REPLICAS, MAX_REPLICAS), d
        else:
            assert a["apiVersion"] == "autoscaling/v2", d
            assert (s["minReplicas"], s["maxReplicas"]) == (MIN_REPLICAS, MAX_REPLICAS), d
        b = behavior_of(a)
        assert b["scaleUp"]["stabilizationWindowSeconds"] == UP_WINDOW_S, d
        assert b["scaleDown"]["stabilizationWindowSeconds"] == DOWN_WINDOW_S, d
        for direction in ("scaleUp", "scaleDown"):
            pol = b[direction]
            assert pol["selectPolicy"] in ("Max", "Min"), (d, direction)
            assert pol["policies"], (d, direction)
            for p in pol["policies"]:
                assert p["type"] in ("Pods", "Percent") and p["value"] > 0 and 0 < p["periodSeconds"] <= 60
        behaviors.append(b)
        assert a["metadata"]["name"] == "gpu-media", d
    # One behaviour for all: only the signal differs between overlays.
    assert all(b == behaviors[0] for b in behaviors)


def test_no_autoscaler_uses_a_resource_metric_on_gpus(rendered):
    for d, objs in rendered.items():
        for a in autoscalers(objs):
            if a["kind"] == "HorizontalPodAutoscaler":
                for m in a["spec"]["metrics"]:
                    if m["type"] == "Resource":
                        assert m["resource"]["name"] in ("cpu", "memory"), d
                        assert "gpu" not in m["resource"]["name"], d
            else:
                for t in a["spec"]["triggers"]:
                    assert t["type"] not in ("cpu", "memory") or "gpu" not in str(t), d


def test_keda_triggers_scale_on_utilisation_with_a_nan_safe_latency_guard_and_fallback(rendered):
    so = one(rendered["autoscaling/load-keda"], "ScaledObject", "gpu-media")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["name"] == "gpu-media"
    fb = spec["fallback"]
    assert fb["failureThreshold"] >= 1 and MIN_REPLICAS <= fb["replicas"] <= MAX_REPLICAS
    assert fb.get("behavior", "static") in ("static", "currentReplicas", "currentReplicasIfHigher")
    guard, load = spec["triggers"]
    # KEDA names the HPA's metrics s<index>-<type>: the console reads s0-prometheus as p95.
    assert guard["name"] == "p95-guard" and load["name"] == "worker-utilization"
    for t in (guard, load):
        md = t["metadata"]
        assert t["type"] == "prometheus"
        assert "metricName" not in md, "metricName is deprecated in KEDA's prometheus scaler"
        assert md["ignoreNullValues"] == "false"
        assert md["serverAddress"].startswith("http")
        assert set(md) <= {"serverAddress", "query", "threshold", "activationThreshold", "ignoreNullValues",
                           "namespace", "unsafeSsl", "timeout", "queryParameters"}
        # A missing signal is never 0: an absent series must leave the query empty.
        assert "vector(0)" not in md["query"], md["query"]
        assert 'namespace="rtc"' in md["query"] and "[30s]" in md["query"]
    assert load["metricType"] == "AverageValue" and float(load["metadata"]["threshold"]) == UTILIZATION_TARGET
    assert "app_busy_worker_seconds_total" in load["metadata"]["query"] and "app_workers" in load["metadata"]["query"]
    assert guard["metricType"] == "Value" and float(guard["metadata"]["threshold"]) == TARGET_S
    q = guard["metadata"]["query"]
    # NaN-safe: every histogram_quantile result passes through a comparison (which drops
    # NaN); the dead band edges are the SLO's; over the SLO the guard reads 1.25 × target.
    n_hq = q.count("histogram_quantile(")
    assert n_hq >= 3 and len(re.findall(r"\)\)\)\s*(>|>=)\s*[\d.]+", q)) == n_hq, q
    assert "> 0.1) + 0.125" in q and ">= 0.05" in q and "+ 0.1" in q
    # Idle gives 0 only while the series exist: the last term is the request rate times 0.
    last = q.split("\nor\n")[-1].strip().strip("()").strip()
    assert last.startswith("0 * sum(rate(app_request_latency_seconds_count{"), last


def test_adapter_hpa_scales_on_utilisation_with_the_latency_guard(rendered):
    hpa_file = load_yaml(MANIFESTS / "autoscaling/load-adapter/hpa.yaml")
    hpa = one(rendered["autoscaling/load-adapter"], "HorizontalPodAutoscaler", "gpu-media")
    assert hpa_file["spec"] == hpa["spec"]
    load, guard = hpa["spec"]["metrics"]
    rules = load_yaml(MANIFESTS / "observability/prometheus-adapter-values.yaml")["rules"]["custom"]
    names = [r["name"]["as"] for r in rules]
    for m, name, target in ((load, "rtc_worker_utilization", UTILIZATION_TARGET), (guard, "rtc_latency_guard", TARGET_S)):
        assert m["type"] == "Pods"
        assert m["pods"]["metric"]["name"] == name and name in names
        assert m["pods"]["target"]["type"] == "AverageValue"
        assert quantity(m["pods"]["target"]["averageValue"]) == target


def test_latency_only_hpa_is_the_naive_signal(rendered):
    hpa = one(rendered["autoscaling/latency-only-adapter"], "HorizontalPodAutoscaler", "gpu-media")
    (m,) = hpa["spec"]["metrics"]
    assert m["pods"]["metric"]["name"] == "rtc_request_latency_p95_seconds"
    assert quantity(m["pods"]["target"]["averageValue"]) == TARGET_S


def test_adapter_rules_keep_the_resource_labels():
    values = load_yaml(MANIFESTS / "observability/prometheus-adapter-values.yaml")
    assert values["prometheus"]["url"].startswith("http") and values["prometheus"]["port"] == 9090
    rules = values["rules"]["custom"]
    assert rules and values["rules"]["default"] is False
    for r in rules:
        assert r["resources"]["overrides"] == {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        assert 'namespace!=""' in r["seriesQuery"] and 'pod!=""' in r["seriesQuery"]
        q = r["metricsQuery"]
        assert "<<.Series>>" in q and "<<.LabelMatchers>>" in q
        groupings = re.findall(r"\bby \(([^)]*)\)", q)
        assert groupings, q
        for g in groupings:
            labels = {x.strip() for x in g.split(",")}
            assert {"namespace", "<<.GroupBy>>"} <= labels, f"aggregation drops resource labels: by ({g})"
        assert "without" not in q


# ---- pod security and operations ---------------------------------------------------------


def workloads(rendered):
    """(where, pod template spec) for the service's Deployments and the load Job."""
    out = [(f"deployment/{v}", one(rendered[f"deployment/{v}"], "Deployment", "gpu-media")["spec"]["template"])
           for v in ("gpu", "cpu")]
    out.append(("load", one(rendered["load"], "Job", "rtc-demo-load")["spec"]["template"]))
    return out


def test_pod_security_fields(rendered):
    for where, tpl in workloads(rendered):
        pod = tpl["spec"]
        assert pod["automountServiceAccountToken"] is False, where
        assert pod["serviceAccountName"] not in ("", "default"), where
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == APP_UID and psc["runAsGroup"] == APP_UID, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), where
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == APP_UID, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["privileged"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            res = c["resources"]
            for k in ("cpu", "memory"):
                assert k in res["requests"] and k in res["limits"], (where, k)
                assert quantity_bytes(res["requests"][k]) <= quantity_bytes(res["limits"][k]), (where, k)
            assert c["image"].startswith("ghcr.io/rtc-demo/rtc-demo:") and not c["image"].endswith(":latest")


def quantity_bytes(v: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?", str(v))
    assert m, v
    return float(m[1]) * {None: 1, "m": 0.001, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}[m[2]]


def test_service_accounts_mount_no_token(rendered):
    for d, objs in rendered.items():
        for sa in find(objs, "ServiceAccount"):
            assert sa.get("automountServiceAccountToken") is False, (d, sa["metadata"]["name"])


@pytest.mark.parametrize("variant", ["gpu", "cpu"])
def test_deployment_operations(rendered, variant):
    dep = one(rendered[f"deployment/{variant}"], "Deployment", "gpu-media")
    assert dep["metadata"]["namespace"] == "rtc"
    assert "replicas" not in dep["spec"]
    assert dep["spec"]["selector"]["matchLabels"] == POD_LABELS
    tpl = dep["spec"]["template"]
    assert POD_LABELS.items() <= tpl["metadata"]["labels"].items()
    pod = tpl["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["serve"]
    assert c["ports"][0] == {"name": "http", "containerPort": 8080, "protocol": "TCP"}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["RTC_DEVICE"] == ("cuda" if variant == "gpu" else "cpu")
    assert env["RTC_LISTEN"].endswith(":8080")
    # Three probes, on the service's own endpoints.
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    start_budget = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
    assert start_budget >= 30, "NVRTC compiles the kernels at start-up"
    # preStop + grace period longer than the whole drain.
    pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = duration_s(env["RTC_DRAIN_DELAY"]) + duration_s(env["RTC_SHUTDOWN_TIMEOUT"])
    assert pre_stop >= 1
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain
    # Spread across zones (and nodes), selecting these pods.
    keys = {t["topologyKey"]: t for t in pod["topologySpreadConstraints"]}
    assert "topology.kubernetes.io/zone" in keys
    for t in keys.values():
        assert t["labelSelector"]["matchLabels"] == POD_LABELS and t["maxSkew"] == 1
    res = c["resources"]
    if variant == "gpu":
        assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"] == "1"
        # The GPU request places the pod; a label only the GPU Operator sets must not be needed.
        assert "nodeSelector" not in pod
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    else:
        assert "nvidia.com/gpu" not in res["limits"] and "nvidia.com/gpu" not in res.get("requests", {})
        assert "nodeSelector" not in pod and "tolerations" not in pod


def test_base_service_networkpolicy_pdb_servicemonitor(rendered):
    objs = rendered["base"] + rendered["scrape"]
    ns = one(objs, "Namespace", "rtc")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    svc = one(objs, "Service", "gpu-media")
    assert svc["spec"]["selector"] == POD_LABELS
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    # A plain Prometheus scrapes the Service through these (the *-no-operator overlays).
    dep = one(rendered["deployment/gpu"], "Deployment", "gpu-media")
    port = dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert port["name"] == "http"
    assert svc["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": str(port["containerPort"]), "prometheus.io/path": "/metrics"}
    np = one(objs, "NetworkPolicy", "gpu-media")
    assert np["spec"]["podSelector"]["matchLabels"] == POD_LABELS
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert not np["spec"].get("egress"), "the service makes no outbound calls"
    http, media = np["spec"]["ingress"]
    assert http["ports"] == [{"protocol": "TCP", "port": "http"}]
    # WebRTC media only from the namespace's own pods (the load pods' publishers).
    assert media["from"] == [{"podSelector": {}}], media
    assert media["ports"] == [{"protocol": "UDP", "port": "webrtc-udp"}, {"protocol": "TCP", "port": "webrtc-tcp"}]
    for d in ("deployment/gpu", "deployment/cpu"):
        c = one(rendered[d], "Deployment", "gpu-media")["spec"]["template"]["spec"]["containers"][0]
        assert {(p["name"], p["containerPort"], p["protocol"]) for p in c["ports"]} == {
            ("http", 8080, "TCP"), ("webrtc-udp", 8443, "UDP"), ("webrtc-tcp", 8443, "TCP")}, c["ports"]
        env = {e["name"]: e for e in c["env"]}
        assert env["RTC_WEBRTC_UDP"]["value"] == "0.0.0.0:8443" and env["RTC_WEBRTC_TCP"]["value"] == "0.0.0.0:8443"
        assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}, "candidates name the pod"
    pdb = one(objs, "PodDisruptionBudget", "gpu-media")
    assert pdb["spec"]["selector"]["matchLabels"] == POD_LABELS
    if "maxUnavailable" in pdb["spec"]:
        assert pdb["spec"]["maxUnavailable"] == 1
    else:
        assert pdb["spec"]["minAvailable"] < MIN_REPLICAS
    sm = one(objs, "ServiceMonitor", "gpu-media")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["rtc"]}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "http" and ep["path"] == "/metrics"
    assert duration_s(ep["interval"]) <= 15 and duration_s(ep["scrapeTimeout"]) < duration_s(ep["interval"])
    assert not ep.get("honorLabels"), "the target's namespace/pod/service labels must win"


# ---- policy, observability, load ------------------------------------------------------------


def test_gatekeeper_template_and_constraint(rendered):
    objs = rendered["policy"]
    ct = one(objs, "ConstraintTemplate", "k8sallowedrepos")
    assert ct["apiVersion"] == "templates.gatekeeper.sh/v1"
    assert ct["spec"]["crd"]["spec"]["names"]["kind"] == "K8sAllowedRepos"
    schema = ct["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]
    assert schema["properties"]["repos"] == {**schema["properties"]["repos"], "type": "array", "items": {"type": "string"}}
    (target,) = ct["spec"]["targets"]
    assert target["target"] == "admission.k8s.gatekeeper.sh"
    rego = target["rego"]
    assert rego.lstrip().startswith("package k8sallowedrepos")
    assert "violation[{\"msg\": msg}]" in rego
    for field in ("containers", "initContainers", "ephemeralContainers"):
        assert f"spec.{field}[_]" in rego, field
    c = one(objs, "K8sAllowedRepos", "rtc-allowed-repos")
    assert c["apiVersion"] == "constraints.gatekeeper.sh/v1beta1"
    assert c["spec"]["match"]["kinds"] == [{"apiGroups": [""], "kinds": ["Pod"]}]
    assert c["spec"]["match"]["namespaces"] == ["rtc"]
    assert c["spec"].get("enforcementAction", "deny") == "deny"
    repos = c["spec"]["parameters"]["repos"]
    assert repos and all(r.endswith("/") for r in repos)
    for o in (ct, c):
        assert "namespace" not in o["metadata"], "cluster-scoped"
    # Every image that runs in namespace rtc passes the constraint.
    for d, dobjs in rendered.items():
        for o in dobjs:
            tpl = (o.get("spec") or {}).get("template")
            if o["metadata"].get("namespace") == "rtc" and tpl and "containers" in tpl.get("spec", {}):
                for ctr in tpl["spec"]["containers"]:
                    assert any(ctr["image"].startswith(r) for r in repos), (d, ctr["image"])


def test_dcgm_exporter(rendered):
    objs = rendered["observability"]
    ds = one(objs, "DaemonSet", "dcgm-exporter")
    assert ds["metadata"]["namespace"] == "gpu-monitoring"
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert re.fullmatch(r"nvcr\.io/nvidia/k8s/dcgm-exporter:\d+\.\d+\.\d+-\d+\.\d+\.\d+-[a-z0-9.]+", c["image"])
    assert {"name": "metrics", "containerPort": 9400, "protocol": "TCP"} in c["ports"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["DCGM_EXPORTER_KUBERNETES"] == "true"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["pod-resources"]["mountPath"] == "/var/lib/kubelet/pod-resources"
    assert mounts["pod-resources"]["readOnly"] is True
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert "nodeSelector" not in pod, "a nodeSelector on one label misses GPU nodes others label"
    np = one(objs, "NetworkPolicy", "dcgm-exporter")
    assert np["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "dcgm-exporter"}
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"} and not np["spec"].get("egress")
    sm = one(objs, "ServiceMonitor", "dcgm-exporter")
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"


def test_load_job_template_and_rbac(rendered):
    objs = rendered["load"]
    cm = one(objs, "ConfigMap", "rtc-demo-load-scenario")
    assert cm["data"]["scenario.toml"].strip() == "__RTC_SCENARIO_TOML__"
    job = one(objs, "Job", "rtc-demo-load")
    assert job["metadata"]["annotations"]["rtc-demo/run-id"] == "__RTC_RUN_ID__"
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["activeDeadlineSeconds"] > 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    assert c["args"][:3] == ["load", "--scenario", "/etc/rtc-demo/scenario.toml"]
    (mount,) = c["volumeMounts"]
    assert mount["mountPath"] == "/etc/rtc-demo" and mount["readOnly"] is True
    (vol,) = pod["volumes"]
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    assert pod["serviceAccountName"] == "rtc-demo-load"
    role = one(objs, "Role", "rtc-demo-conductor")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert "secrets" not in rule["resources"] and "pods/exec" not in rule["resources"]
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    for need in [("batch", "jobs", "create"), ("batch", "jobs", "delete"), ("", "configmaps", "create"),
                 ("", "pods/log", "get"), ("", "pods", "watch"), ("autoscaling", "horizontalpodautoscalers", "watch")]:
        assert need in granted, need
    crole = one(objs, "ClusterRole", "rtc-demo-conductor")
    cgranted = {(r, v) for rule in crole["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert cgranted == {("namespaces", v) for v in ("create", "patch", "delete", "get")} | {
        ("nodes", "list"), ("customresourcedefinitions", "get"), ("apiservices", "get")}
    crb = one(objs, "ClusterRoleBinding", "rtc-demo-conductor")
    assert crb["roleRef"]["kind"] == "ClusterRole" and crb["subjects"][0]["name"] == "rtc-demo-conductor"
    rb = one(objs, "RoleBinding", "rtc-demo-conductor")
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rtc-demo-conductor"}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "rtc-demo-conductor", "namespace": "rtc"}]
    np = one(objs, "NetworkPolicy", "rtc-demo-load")
    assert np["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "rtc-demo-load"}
    assert not np["spec"].get("ingress")
    targets = [t for rule in np["spec"]["egress"] for t in rule.get("to", [])]
    assert {"podSelector": {"matchLabels": POD_LABELS}} in targets
    to_service = [r for r in np["spec"]["egress"] if r.get("to") == [{"podSelector": {"matchLabels": POD_LABELS}}]]
    assert {(p["protocol"], p["port"]) for r in to_service for p in r["ports"]} == {
        ("TCP", 8080), ("UDP", 8443), ("TCP", 8443)}, "HTTP and WebRTC media (UDP, ICE-TCP) to the pods"
    # DNS on port 53, UDP and TCP, to any destination (NodeLocal DNSCache, cloud DNS).
    dns = [r for r in np["spec"]["egress"] if "to" not in r]
    assert len(dns) == 1 and {(p["protocol"], p["port"]) for p in dns[0]["ports"]} == {("UDP", 53), ("TCP", 53)}


# ---- issue 29: what a real cluster would break -------------------------------------------


def keda_objects(rendered):
    return [(d, so) for d, objs in rendered.items() for so in find(objs, "ScaledObject")]


def test_scaled_objects_set_nothing_keda_ignores_with_min_replicas_above_zero(rendered):
    # KEDA >= 2.20 warns on every apply of a ScaledObject that sets pollingInterval (or
    # cooldownPeriod) with minReplicaCount > 0, no idleReplicaCount and no useCachedMetrics
    # trigger: "PollingInterval is configured but is not relevant. ..." (kedacore/keda
    # apis/keda/v1alpha1/scaledobject_webhook.go, verifyScaledObjects), and records it as an
    # Event the console's events panel would show.
    seen = keda_objects(rendered)
    assert seen
    for d, so in seen:
        spec = so["spec"]
        idle = "idleReplicaCount" in spec
        cached = any(t.get("useCachedMetrics") for t in spec["triggers"])
        if spec.get("minReplicaCount", 0) > 0 and not idle:
            assert "cooldownPeriod" not in spec, d
            if not cached:
                assert "pollingInterval" not in spec, d


def server_addresses(so):
    return {t["metadata"]["serverAddress"] for t in so["spec"]["triggers"]}


def test_keda_reads_the_prometheus_each_overlay_is_for(rendered):
    # The Prometheus Operator serves every Prometheus through its governing Service
    # `prometheus-operated` on port 9090, the web port (prometheus-operator
    # pkg/prometheus/server/statefulset.go governingServiceName, pkg/prometheus/common.go); the
    # community `prometheus` chart names
    # its Service `<release>-server` (release `prometheus`) on port 80
    # (prometheus-community/helm-charts charts/prometheus/templates/service.yaml, _helpers.tpl
    # prometheus.server.fullname, values.yaml server.service.servicePort).
    for overlay in OVERLAYS:
        scalers = find(rendered[f"overlays/{overlay}"], "ScaledObject")
        if not scalers:
            continue
        (so,) = scalers
        want = ("http://prometheus-server.monitoring.svc:80" if overlay.endswith("-no-operator")
                else "http://prometheus-operated.monitoring.svc:9090")
        assert server_addresses(so) == {want}, overlay
    # The no-operator ScaledObject is the load-keda one but for its serverAddress.
    a = copy.deepcopy(one(rendered["autoscaling/load-keda"], "ScaledObject", "gpu-media"))
    b = copy.deepcopy(one(rendered["autoscaling/load-keda-no-operator"], "ScaledObject", "gpu-media"))
    for so in (a, b):
        so["metadata"]["labels"].pop("rtc-demo/autoscaler")
        for t in so["spec"]["triggers"]:
            t["metadata"].pop("serverAddress")
    assert a == b


def node_affinity_admits(pod_spec: dict, labels: dict) -> bool:
    """Does the pod's required node affinity admit a node with these labels (terms ORed,
    expressions ANDed: core/v1 NodeSelector)?"""
    terms = pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]

    def matches(e):
        op, key = e["operator"], e["key"]
        if op == "Exists":
            return key in labels
        if op == "In":
            return labels.get(key) in e["values"]
        raise AssertionError(f"operator {op} not modelled")

    return any(all(matches(e) for e in t["matchExpressions"]) for t in terms)


def test_dcgm_exporter_schedules_where_only_the_device_plugin_runs(rendered):
    pod = one(rendered["observability"], "DaemonSet", "dcgm-exporter")["spec"]["template"]["spec"]
    # Node labels as each set-up writes them: the GPU Operator's node labelling
    # (gpu-operator controllers/nodelabeling_controller.go, commonGPULabelKey "nvidia.com/gpu.present"),
    # Node Feature Discovery's PCI label that NVIDIA's device plugin chart schedules on
    # (k8s-device-plugin deployments/helm/nvidia-device-plugin/values.yaml), and a GKE GPU node
    # (cloud.google.com/gke-accelerator=<type>, container-engine-accelerators
    # nvidia-driver-installer/cos/daemonset-preloaded.yaml).
    gpu_nodes = {
        "GPU Operator": {"nvidia.com/gpu.present": "true", "kubernetes.io/os": "linux"},
        "NFD + device plugin chart": {"feature.node.kubernetes.io/pci-10de.present": "true"},
        "GKE": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    }
    for who, labels in gpu_nodes.items():
        assert node_affinity_admits(pod, labels), who
    assert not node_affinity_admits(pod, {"kubernetes.io/os": "linux"}), "a CPU node"
    assert not node_affinity_admits(pod, {"nvidia.com/gpu.present": "false"}), "the Operator's GPU-less node"
    # It tolerates the GPU taint the README puts on GPU nodes.
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]


def test_gpu_operator_values_make_its_exporter_scraped_by_our_prometheus():
    values = load_yaml(MANIFESTS / "observability/gpu-operator-values.yaml")
    sm = values["dcgmExporter"]["serviceMonitor"]
    assert sm["enabled"] is True
    ours = load_yaml(MANIFESTS / "scrape/servicemonitor.yaml")["metadata"]["labels"]["release"]
    assert sm["additionalLabels"]["release"] == ours
    assert sm["honorLabels"] is True, "the exporter's namespace/pod labels name the GPU's pod"


def rules_of(role: dict) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]}


def test_prometheus_access_lets_the_console_port_forward_to_prometheus(rendered):
    # `kubectl port-forward svc/NAME` GETs the Service, lists its pods (first ready one),
    # GETs that pod and opens pods/portforward (kubectl pkg/cmd/portforward/portforward.go,
    # polymorphichelpers attachablepodforobject.go GetFirstPod). The upgrade is a POST (SPDY,
    # verb create) or a GET (WebSocket, verb get, plus create from Kubernetes 1.35's
    # AuthorizePodWebsocketUpgradeCreatePermission, kubernetes PR #134577).
    objs = rendered["prometheus-access"]
    role = one(objs, "Role", "rtc-demo-conductor-prometheus")
    assert role["metadata"]["namespace"] == "monitoring"
    assert rules_of(role) == {("", "services", "get"), ("", "pods", "get"), ("", "pods", "list"),
                              ("", "pods", "watch"), ("", "pods/portforward", "create"),
                              ("", "pods/portforward", "get")}
    rb = one(objs, "RoleBinding", "rtc-demo-conductor-prometheus")
    assert rb["metadata"]["namespace"] == "monitoring"
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "rtc-demo-conductor", "namespace": "rtc"}]


def test_the_conductor_role_runs_the_kubectl_panels_commands(rendered):
    role = one(rendered["load"], "Role", "rtc-demo-conductor")
    granted = rules_of(role)
    # kubectl rollout status GETs the Deployment, then lists and watches it by name
    # (kubectl pkg/cmd/rollout/rollout_status.go); kubectl diff GETs each object
    # (pkg/cmd/diff/diff.go); port-forward pod/NAME (the capacity probe) GETs the pod and opens
    # pods/portforward; logs --previous reads pods/log; `get deployments,jobs` and
    # `get ingress,svc` list them; `get servicemonitors` lists them.
    for need in [("apps", "deployments", "get"), ("", "pods", "get"), ("", "pods/portforward", "create"),
                 ("", "pods/portforward", "get"), ("", "pods/log", "get"), ("batch", "jobs", "list"),
                 ("", "services", "list"), ("networking.k8s.io", "ingresses", "list"),
                 ("monitoring.coreos.com", "servicemonitors", "list"), ("", "services", "get"),
                 ("keda.sh", "scaledobjects", "get")]:
        assert need in granted, need
