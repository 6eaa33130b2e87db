//! The kube backend against a MOCKED Kubernetes API server.
//!
//! No Kubernetes API server can run on the build machines, so — as kube-rs documents for its
//! own tests — the client talks to a `tower_test::mock` service that answers with real
//! Kubernetes JSON (APIResourceLists, object lists, watch event streams, Status errors).
//! What this proves: the exact requests we send (paths, query, content type, bodies) and how
//! real API answers turn into snapshots and preflight verdicts. What it cannot prove: that a
//! real API server, admission, RBAC or the HPA controller behave as our fixtures say.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use kube::client::Body;
use kube::Client;
use rtc_demo::conduct::kube::{self as kb, preflight::Verdict, Connected, KubeConfig};
use rtc_demo::conduct::model::{Backend, BackendCommand, ClusterSnapshot, RatePlan};
use serde_json::{json, Value};

/// One request the mocked API server received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query, as sent.
    uri: String,
    content_type: String,
    body: Vec<u8>,
}

impl Seen {
    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
    fn query(&self) -> &str {
        self.uri.split_once('?').map(|x| x.1).unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the mock answers: a status and a body, `Hang` (no answer: a watch that stays open), a
/// transport error (the server is unreachable), an answer that comes only after a while, or
/// `Open`: 200 with a body that sends its text and then nothing more while the connection stays
/// open (a half-open stream: the peer vanished without a FIN).
enum Answer {
    Json(u16, String),
    Hang,
    Error(&'static str),
    After(Duration, Box<Answer>),
    Open(String),
}

/// The mocked server's response bodies: whole, or a stream that never ends.
type MockBody = BoxBody<Bytes, std::convert::Infallible>;
type Reply = tower_test::mock::SendResponse<Response<MockBody>>;

fn json_response(code: u16, body: MockBody) -> Response<MockBody> {
    Response::builder().status(code).header("content-type", "application/json").body(body).unwrap()
}

/// Sends `answer` on `send`; a hanging one is kept in `hung` so its request stays open.
fn reply(send: Reply, answer: Answer, hung: &mut Vec<Reply>) {
    match answer {
        Answer::Json(code, b) => send.send_response(json_response(code, Full::new(Bytes::from(b)).boxed())),
        Answer::Open(text) => {
            let frames =
                futures_util::stream::iter([Ok(Frame::data(Bytes::from(text)))]).chain(futures_util::stream::pending());
            send.send_response(json_response(200, BodyExt::boxed(StreamBody::new(frames))));
        }
        Answer::Hang => hung.push(send),
        Answer::Error(e) => send.send_error(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, e)),
        Answer::After(wait, later) => {
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let mut still_hung = Vec::new();
                reply(send, *later, &mut still_hung);
                if !still_hung.is_empty() {
                    std::future::pending::<()>().await;
                }
            });
        }
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A client whose every request goes to `route`; returns the request log.
fn mock(route: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> (Client, Log) {
    let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    tokio::spawn(async move {
        let mut hung = Vec::new();
        while let Some((req, send)) = handle.next_request().await {
            let (parts, body) = req.into_parts();
            let body = body.collect_bytes().await.map(|b| b.to_vec()).unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                uri: parts.uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
                content_type: parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
                body,
            };
            let answer = route(&seen);
            l.lock().unwrap().push(seen);
            reply(send, answer, &mut hung);
        }
    });
    (Client::new(svc, "default"), log)
}

/// What RBAC calls one request, as the API server works it out (k8s.io/apiserver
/// pkg/endpoints/request/requestinfo.go, `NewRequestInfo`: GET on a collection is `list`, or
/// `watch` with `watch=true`; GET on a name `get`; POST `create`; PATCH `patch`; DELETE
/// `delete`). `None` for requests every user may send (discovery, `/version`, access reviews).
fn access_of(s: &Seen) -> Option<kb::preflight::Access> {
    let path = s.path();
    let (group, rest) = if let Some(r) = path.strip_prefix("/api/v1") {
        ("", r)
    } else {
        let r = path.strip_prefix("/apis/")?;
        let mut it = r.splitn(3, '/');
        let (g, _v, rest) = (it.next()?, it.next()?, it.next().unwrap_or(""));
        if g == "authorization.k8s.io" {
            return None;
        }
        (g, rest)
    };
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return None; // discovery
    }
    let (namespace, parts) = match parts.as_slice() {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail.to_vec()),
        _ => (None, parts.clone()),
    };
    let named = parts.len() >= 2;
    let verb = match (s.method.as_str(), named) {
        ("GET", false) if s.query().contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => return None,
    };
    Some(kb::preflight::Access {
        verb: verb.into(),
        group: group.into(),
        resource: parts[0].into(),
        subresource: parts.get(2).map(|x| x.to_string()),
        namespace,
    })
}

/// Every request the console sent is one preflight asked permission for.
fn assert_all_in_the_access_table(log: &[Seen], allowed: &[kb::preflight::Access]) {
    for s in log {
        if let Some(a) = access_of(s) {
            assert!(allowed.contains(&a), "{} {} needs {a:?}, which preflight's table lacks", s.method, s.uri);
        }
    }
}

fn ok(v: Value) -> Answer {
    Answer::Json(200, v.to_string())
}

fn status(code: u16, reason: &str, message: &str) -> Answer {
    Answer::Json(code, json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":message,"reason":reason,"code":code}).to_string())
}

/// The API groups our manifests use, as a real server's discovery lists them.
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("v1", "namespaces", "Namespace", false),
    ("v1", "nodes", "Node", false),
    ("v1", "serviceaccounts", "ServiceAccount", true),
    ("v1", "services", "Service", true),
    ("v1", "configmaps", "ConfigMap", true),
    ("v1", "pods", "Pod", true),
    ("v1", "events", "Event", true),
    ("apps/v1", "deployments", "Deployment", true),
    ("batch/v1", "jobs", "Job", true),
    ("autoscaling/v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", true),
    ("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", true),
    ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget", true),
    ("monitoring.coreos.com/v1", "servicemonitors", "ServiceMonitor", true),
    ("keda.sh/v1alpha1", "scaledobjects", "ScaledObject", true),
];

/// Discovery answers (`GET /api/v1`, `GET /apis/G/V`); `None` when the path is not discovery.
/// `missing`: group/versions the cluster does not serve (their CRDs are not installed).
fn discovery(s: &Seen, missing: &[&str]) -> Option<Answer> {
    if s.method != "GET" {
        return None;
    }
    let gv = if s.path() == "/api/v1" { "v1".to_string() } else { s.path().strip_prefix("/apis/")?.to_string() };
    if gv.matches('/').count() != 1 && gv != "v1" {
        return None;
    }
    if missing.contains(&gv.as_str()) {
        return Some(status(404, "NotFound", "the server could not find the requested resource"));
    }
    if gv == "external.metrics.k8s.io/v1beta1" {
        // KEDA's metrics server: preflight only checks that the group answers, not its list.
        return Some(ok(json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion":gv,"resources":[]})));
    }
    let rs: Vec<Value> = RESOURCES
        .iter()
        .filter(|r| r.0 == gv)
        .map(|(_, plural, kind, ns)| json!({"name":plural,"singularName":kind.to_lowercase(),"namespaced":ns,"kind":kind,"verbs":["create","delete","get","list","patch","update","watch"]}))
        .collect();
    if rs.is_empty() {
        return Some(status(404, "NotFound", "the server could not find the requested resource"));
    }
    Some(ok(json!({"kind":"APIResourceList","apiVersion":"v1","groupVersion":gv,"resources":rs})))
}

fn version() -> Answer {
    ok(
        json!({"major":"1","minor":"33","gitVersion":"v1.33.2","gitCommit":"x","gitTreeState":"clean","buildDate":"2025-06-17T18:36:53Z","goVersion":"go1.24.4","compiler":"gc","platform":"linux/amd64"}),
    )
}

fn overlay(dir: &str) -> Vec<Value> {
    kb::apply::render_manifests(std::path::Path::new(env!("CARGO_MANIFEST_DIR")), dir, &[], "rtc", "rtc")
        .expect("render the overlay")
}

// ---------------------------------------------------------------------------------------
// apply

#[tokio::test]
async fn apply_sends_one_server_side_apply_patch_per_object() {
    let (client, log) = mock(|s| {
        if let Some(a) = discovery(s, &[]) {
            return a;
        }
        if s.method == "PATCH" {
            // A real server answers with the applied object.
            return Answer::Json(200, String::from_utf8_lossy(&s.body).into_owned());
        }
        status(404, "NotFound", "unexpected request")
    });
    let objs = overlay("manifests/overlays/gpu-keda");
    let mut applier = kb::apply::Applier::new(client);
    let mut progress = Vec::new();
    let done =
        applier.apply_all(&objs, |i, n, what| progress.push(format!("{}/{n} {what}", i + 1))).await.expect("apply");
    assert_eq!(done.len(), objs.len());
    assert_eq!(progress.len(), objs.len());
    let log = log.lock().unwrap().clone();
    let patches: Vec<&Seen> = log.iter().filter(|s| s.method == "PATCH").collect();
    assert_eq!(
        patches.len(),
        objs.len(),
        "one PATCH per object: {:#?}",
        log.iter().map(|s| &s.uri).collect::<Vec<_>>()
    );
    // The Namespace goes first, at its cluster-scoped path.
    assert_eq!(patches[0].uri, "/api/v1/namespaces/rtc?&force=true&fieldManager=rtc-demo");
    for p in &patches {
        assert_eq!(p.content_type, "application/apply-patch+yaml", "{}", p.uri);
        assert!(p.query().contains("fieldManager=rtc-demo") && p.query().contains("force=true"), "{}", p.uri);
        let sent = p.json();
        let orig = objs
            .iter()
            .find(|o| o["kind"] == sent["kind"] && o["metadata"]["name"] == sent["metadata"]["name"])
            .expect("body is one of the objects");
        assert_eq!(&sent, orig, "the body is the rendered object, unchanged");
    }
    let uris: Vec<&str> = patches.iter().map(|p| p.uri.as_str()).collect();
    for want in [
        "/apis/apps/v1/namespaces/rtc/deployments/gpu-media?&force=true&fieldManager=rtc-demo",
        "/apis/keda.sh/v1alpha1/namespaces/rtc/scaledobjects/gpu-media?&force=true&fieldManager=rtc-demo",
        "/api/v1/namespaces/rtc/services/gpu-media?&force=true&fieldManager=rtc-demo",
        "/apis/monitoring.coreos.com/v1/namespaces/rtc/servicemonitors/gpu-media?&force=true&fieldManager=rtc-demo",
    ] {
        assert!(uris.contains(&want), "no PATCH {want} in {uris:#?}");
    }
    // Discovery once per group/version, not once per object.
    let disc = log.iter().filter(|s| s.method == "GET").count();
    let gvs: std::collections::BTreeSet<String> =
        objs.iter().map(|o| o["apiVersion"].as_str().unwrap().to_string()).collect();
    assert_eq!(disc, gvs.len());
}

#[tokio::test]
async fn apply_without_keda_names_the_missing_kind() {
    let (client, _log) = mock(|s| {
        discovery(s, &["keda.sh/v1alpha1"])
            .unwrap_or_else(|| Answer::Json(200, String::from_utf8_lossy(&s.body).into_owned()))
    });
    let objs = overlay("manifests/overlays/gpu-keda");
    let e = kb::apply::Applier::new(client).apply_all(&objs, |_, _, _| {}).await.unwrap_err().to_string();
    assert!(e.contains("keda.sh/v1alpha1") && e.contains("ScaledObject"), "{e}");
    assert!(
        e.contains("CRD scaledobjects.keda.sh is not installed") && e.contains("helm install keda kedacore/keda"),
        "{e}"
    );
}

/// Without the Prometheus Operator: the usual overlays stop at the ServiceMonitor with the
/// CRD and the install command, after everything the pods need; the no-operator overlay
/// applies whole, and its preflight does not ask for the Operator.
#[tokio::test]
async fn without_the_prometheus_operator_the_no_operator_overlay_applies() {
    let route = |s: &Seen| {
        discovery(s, &["monitoring.coreos.com/v1"])
            .unwrap_or_else(|| Answer::Json(200, String::from_utf8_lossy(&s.body).into_owned()))
    };
    let (client, log) = mock(route);
    let e = kb::apply::Applier::new(client)
        .apply_all(&overlay("manifests/overlays/gpu-keda"), |_, _, _| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("CRD servicemonitors.monitoring.coreos.com is not installed")
            && e.contains("kube-prometheus-stack")
            && e.contains("gpu-keda-no-operator"),
        "{e}"
    );
    assert!(
        log.lock().unwrap().iter().any(|s| s.method == "PATCH" && s.path().ends_with("/deployments/gpu-media")),
        "the Deployment went first"
    );
    let objs = overlay("manifests/overlays/gpu-keda-no-operator");
    assert!(!objs.iter().any(|o| o["kind"] == "ServiceMonitor"));
    let (client, _) = mock(route);
    let done =
        kb::apply::Applier::new(client).apply_all(&objs, |_, _, _| {}).await.expect("applies without the Operator");
    assert_eq!(done.len(), objs.len());
    assert!(!kb::preflight::needs(&objs, "rtc").prometheus_operator);
}

#[tokio::test]
async fn apply_error_from_the_server_names_the_object() {
    let (client, _log) = mock(|s| {
        discovery(s, &[]).unwrap_or_else(|| {
            if s.uri.contains("/deployments/") {
                status(
                    422,
                    "Invalid",
                    "Deployment.apps \"gpu-media\" is invalid: spec.template.spec.containers[0].image: Required value",
                )
            } else {
                Answer::Json(200, String::from_utf8_lossy(&s.body).into_owned())
            }
        })
    });
    let e = kb::apply::Applier::new(client)
        .apply_all(&overlay("manifests/overlays/gpu-keda"), |_, _, _| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("Deployment/gpu-media") && e.contains("422") && e.contains("Required value"), "{e}");
}

// ---------------------------------------------------------------------------------------
// switching overlays

/// An autoscaler left by an earlier overlay, in the namespace: what the cluster holds and
/// answers. `deleting` counts the GETs still answered (with a deletionTimestamp, as foreground
/// deletion does while dependents are removed) after the DELETE.
struct Leftover {
    path: &'static str,
    object: Value,
    deleted: bool,
    deleting: u32,
}

fn switching_route(
    leftovers: Vec<Leftover>,
) -> (impl Fn(&Seen) -> Answer + Send + Sync + 'static, Arc<Mutex<Vec<Leftover>>>) {
    let state = Arc::new(Mutex::new(leftovers));
    let st = state.clone();
    let route = move |s: &Seen| {
        if let Some(a) = discovery(s, &[]) {
            return a;
        }
        let mut st = st.lock().unwrap();
        let present = |l: &Leftover| !l.deleted || l.deleting > 0;
        for (coll, kind) in [
            ("/apis/autoscaling/v2/namespaces/rtc/horizontalpodautoscalers", "HorizontalPodAutoscaler"),
            ("/apis/keda.sh/v1alpha1/namespaces/rtc/scaledobjects", "ScaledObject"),
        ] {
            if s.method == "GET" && s.path() == coll {
                assert!(s.query().contains("labelSelector=app.kubernetes.io%2Fpart-of%3Drtc-demo"), "{}", s.uri);
                let items =
                    st.iter().filter(|l| present(l) && l.object["kind"] == kind).map(|l| l.object.clone()).collect();
                return list(kind, items);
            }
        }
        if let Some(l) = st.iter_mut().find(|l| s.path() == l.path) {
            match s.method.as_str() {
                "DELETE" if !l.deleted => {
                    l.deleted = true;
                    l.object["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
                    return ok(l.object.clone());
                }
                "GET" if l.deleted && l.deleting > 0 => {
                    l.deleting -= 1;
                    return ok(l.object.clone());
                }
                "GET" | "DELETE" if l.deleted => return status(404, "NotFound", "not found"),
                "GET" => return ok(l.object.clone()),
                _ => {}
            }
        }
        if s.method == "PATCH" && s.path() == "/apis/keda.sh/v1alpha1/namespaces/rtc/scaledobjects/gpu-media" {
            // …unless the ScaledObject of that name owns the HPA (verifyHpas' `owned`).
            let owned = |h: &Value| {
                h["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| o["kind"] == "ScaledObject" && o["name"] == "gpu-media")
            };
            let other_hpa =
                st.iter().any(|l| present(l) && l.object["kind"] == "HorizontalPodAutoscaler" && !owned(&l.object));
            if other_hpa {
                // KEDA's validating webhook refuses a ScaledObject for a workload another HPA
                // scales (kedacore/keda apis/keda/v1alpha1/scaledobject_webhook.go, verifyHpas;
                // webhook vscaledobject.kb.io); controller-runtime turns the error into a 403
                // Forbidden denial (pkg/webhook/admission/validator_custom.go → Denied →
                // response.go ValidationResponse), which the API server prefixes with
                // `admission webhook "NAME" denied the request:` (k8s.io/apiserver
                // pkg/admission/plugin/webhook/errors/statuserror.go, ToStatusErr).
                return status(403, "Forbidden", "admission webhook \"vscaledobject.kb.io\" denied the request: the workload 'gpu-media' of type 'apps/v1.Deployment' is already managed by the hpa 'gpu-media'");
            }
        }
        if s.method == "PATCH" {
            return Answer::Json(200, String::from_utf8_lossy(&s.body).into_owned());
        }
        status(404, "NotFound", "unexpected request")
    };
    (route, state)
}

/// The HPA the hpa-cpu overlay applied (ours: labelled, no owner).
fn our_hpa() -> Value {
    json!({"apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler",
        "metadata":{"name":"gpu-media","namespace":"rtc","resourceVersion":"7",
            "labels":{"app.kubernetes.io/name":"gpu-media","app.kubernetes.io/part-of":"rtc-demo"}},
        "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"gpu-media"},"maxReplicas":10}})
}

/// The HPA KEDA made for ScaledObject gpu-media: the ScaledObject's labels copied over its own
/// and the ScaledObject as controller (kedacore/keda controllers/keda/hpa.go,
/// newHPAForScaledObject, SetControllerReference).
fn kedas_hpa() -> Value {
    let mut h = our_hpa();
    h["metadata"]["labels"]["app.kubernetes.io/managed-by"] = json!("keda-operator");
    h["metadata"]["ownerReferences"] = json!([{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","name":"gpu-media","uid":"so-uid","controller":true,"blockOwnerDeletion":true}]);
    h
}

fn our_scaledobject() -> Value {
    json!({"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject",
        "metadata":{"name":"gpu-media","namespace":"rtc","uid":"so-uid","resourceVersion":"9",
            "labels":{"app.kubernetes.io/name":"gpu-media","app.kubernetes.io/part-of":"rtc-demo"}},
        "spec":{"scaleTargetRef":{"name":"gpu-media"}}})
}

async fn switch_to(dir: &str, leftovers: Vec<Leftover>) -> (Result<(), String>, Vec<Seen>) {
    let (route, _state) = switching_route(leftovers);
    let (client, log) = mock(route);
    let objs = overlay(dir);
    let mut applier = kb::apply::Applier::new(client);
    let r = async {
        applier.remove_other_autoscalers(&objs, "rtc", Duration::from_secs(10), |_| {}).await?;
        applier.apply_all(&objs, |_, _, _| {}).await?;
        Ok::<(), kb::apply::ApplyError>(())
    }
    .await
    .map_err(|e| e.to_string());
    let log = log.lock().unwrap().clone();
    (r, log)
}

fn at(log: &[Seen], method: &str, path: &str) -> Option<usize> {
    log.iter().position(|s| s.method == method && s.path() == path)
}

#[tokio::test]
async fn switching_from_hpa_cpu_to_keda_removes_the_old_hpa_first() {
    let hpa_path = "/apis/autoscaling/v2/namespaces/rtc/horizontalpodautoscalers/gpu-media";
    let so_path = "/apis/keda.sh/v1alpha1/namespaces/rtc/scaledobjects/gpu-media";
    let left = || vec![Leftover { path: hpa_path, object: our_hpa(), deleted: false, deleting: 2 }];
    let (r, log) = switch_to("manifests/overlays/gpu-keda", left()).await;
    let uris: Vec<String> = log.iter().map(|s| format!("{} {}", s.method, s.uri)).collect();
    r.unwrap_or_else(|e| panic!("{e}\n{uris:#?}"));
    let objs = overlay("manifests/overlays/gpu-keda");
    assert_all_in_the_access_table(&log, &kb::preflight::required_access(&objs, "rtc", kb::preflight::Uses::default()));
    let del = at(&log, "DELETE", hpa_path).expect("the old HPA deleted");
    assert_eq!(log[del].json()["propagationPolicy"], "Foreground");
    let gone = log.iter().rposition(|s| s.method == "GET" && s.path() == hpa_path).expect("waited for it");
    let patch = at(&log, "PATCH", so_path).expect("ScaledObject applied");
    assert!(del < gone && gone < patch, "delete, wait until gone, then apply: {uris:#?}");

    // Without the removal the webhook refuses the ScaledObject: the fixture is a real gate.
    let (route, _) = switching_route(left());
    let (client, _) = mock(route);
    let e = kb::apply::Applier::new(client)
        .apply_all(&overlay("manifests/overlays/gpu-keda"), |_, _, _| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("already managed by the hpa 'gpu-media'"), "{e}");
}

#[tokio::test]
async fn switching_from_keda_to_hpa_cpu_removes_the_scaledobject_and_waits_for_its_hpa() {
    let hpa_path = "/apis/autoscaling/v2/namespaces/rtc/horizontalpodautoscalers/gpu-media";
    let so_path = "/apis/keda.sh/v1alpha1/namespaces/rtc/scaledobjects/gpu-media";
    let left = || {
        vec![
            Leftover { path: so_path, object: our_scaledobject(), deleted: false, deleting: 2 },
            Leftover { path: hpa_path, object: kedas_hpa(), deleted: false, deleting: 0 },
        ]
    };
    let (r, log) = switch_to("manifests/overlays/gpu-hpa-cpu", left()).await;
    let uris: Vec<String> = log.iter().map(|s| format!("{} {}", s.method, s.uri)).collect();
    r.unwrap_or_else(|e| panic!("{e}\n{uris:#?}"));
    let objs = overlay("manifests/overlays/gpu-hpa-cpu");
    assert_all_in_the_access_table(&log, &kb::preflight::required_access(&objs, "rtc", kb::preflight::Uses::default()));
    let del = at(&log, "DELETE", so_path).expect("the ScaledObject deleted");
    assert_eq!(log[del].json()["propagationPolicy"], "Foreground", "its HPA goes before it does");
    assert_eq!(at(&log, "DELETE", hpa_path), None, "KEDA's HPA goes with its ScaledObject, not by us");
    let gone = log.iter().rposition(|s| s.method == "GET" && s.path() == so_path).unwrap();
    let patch = at(&log, "PATCH", hpa_path).expect("our HPA applied");
    assert!(del < gone && gone < patch, "{uris:#?}");

    // Staying on keda: nothing deleted, KEDA's HPA kept.
    let (r, log) = switch_to("manifests/overlays/gpu-keda", left()).await;
    r.unwrap();
    assert!(!log.iter().any(|s| s.method == "DELETE"), "{:#?}", log.iter().map(|s| &s.uri).collect::<Vec<_>>());
}

/// `--namespace` into a namespace that exists and is someone else's: its labels (Pod Security
/// enforcement among them) are not applied over, its `default` ServiceAccount is neither patched
/// nor deleted, and `--teardown` leaves both.
#[tokio::test]
async fn a_namespace_the_console_did_not_create_is_neither_relabelled_nor_deleted() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let objs = kb::apply::render_manifests(root, "manifests/overlays/gpu-keda", &[], "rtc", "team-a").unwrap();
    assert!(objs.iter().any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == "team-a"));
    for (labels, ours) in [
        (json!({"kubernetes.io/metadata.name":"team-a"}), false),
        (json!({"kubernetes.io/metadata.name":"team-a","app.kubernetes.io/part-of":"rtc-demo"}), true),
    ] {
        let ns = json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a","resourceVersion":"1","labels":labels},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}});
        let (client, log) = mock(move |s| {
            if let Some(a) = discovery(s, &[]) {
                return a;
            }
            if s.method == "GET" && s.path() == "/api/v1/namespaces/team-a" {
                return ok(ns.clone());
            }
            if s.method == "DELETE" && s.path() == "/api/v1/namespaces/team-a" {
                // A Namespace with finalizers is not gone at once: its DELETE answers the
                // Namespace itself, with deletionTimestamp set and phase Terminating (kubernetes
                // pkg/registry/core/namespace/storage/storage.go, REST.Delete), status 200.
                let mut terminating = ns.clone();
                terminating["metadata"]["deletionTimestamp"] = json!("2026-12-01T21:00:00Z");
                terminating["status"]["phase"] = json!("Terminating");
                return ok(terminating);
            }
            if s.method == "DELETE" {
                return ok(json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success"}));
            }
            Answer::Json(200, String::from_utf8_lossy(&s.body).into_owned())
        });
        let (kept, foreign) = kb::apply::leave_foreign_namespace(&client, &objs, "team-a").await.unwrap();
        assert_eq!(foreign, !ours);
        assert_eq!(kept.iter().any(|o| o["kind"] == "Namespace"), ours);
        let default_sa = |o: &&Value| o["kind"] == "ServiceAccount" && o["metadata"]["name"] == "default";
        assert_eq!(kept.iter().any(|o| default_sa(&o)), ours, "the default ServiceAccount goes with the namespace");
        assert_eq!(kept.len(), objs.len() - 2 * usize::from(!ours));
        let errs = kb::apply::teardown(&client, &objs, "team-a").await;
        assert!(errs.is_empty(), "{errs:?}");
        let log = log.lock().unwrap().clone();
        let ns_deleted = log.iter().any(|s| s.method == "DELETE" && s.path() == "/api/v1/namespaces/team-a");
        assert_eq!(
            ns_deleted,
            ours,
            "{:#?}",
            log.iter().map(|s| format!("{} {}", s.method, s.uri)).collect::<Vec<_>>()
        );
        let sa_deleted =
            log.iter().any(|s| s.method == "DELETE" && s.path() == "/api/v1/namespaces/team-a/serviceaccounts/default");
        assert_eq!(sa_deleted, ours);
        assert!(log.iter().any(|s| s.method == "DELETE" && s.path().ends_with("/deployments/gpu-media")));
    }
}

// ---------------------------------------------------------------------------------------
// watchers → snapshots

fn pod(name: &str, phase: &str, ready: bool, rv: &str) -> Value {
    json!({
        "apiVersion":"v1","kind":"Pod",
        "metadata":{"name":name,"namespace":"rtc","resourceVersion":rv,"uid":format!("uid-{name}"),
            "creationTimestamp":"2025-01-01T00:00:00Z","labels":{"app.kubernetes.io/name":"gpu-media"}},
        "spec":{"nodeName":"gpu-node-1","containers":[{"name":"serve","image":"x"}]},
        "status":{"phase":phase,
            "conditions":[{"type":"Ready","status":if ready {"True"} else {"False"}}],
            "containerStatuses":[{"name":"serve","image":"x","imageID":"","ready":ready,"restartCount":1}]}
    })
}

/// How the HPA controller names KEDA's first metric in its conditions and events: Go's `%+v`
/// of the metric's selector (kubernetes pkg/controller/podautoscaler/horizontal.go,
/// computeStatusForExternalMetric, `fmt.Sprintf("external metric %s(%+v)", …)`; the
/// selector's String() is k8s.io/apimachinery pkg/apis/meta/v1/generated.pb.go
/// `(*LabelSelector).String`), the selector KEDA sets on every metric of its HPA
/// (kedacore/keda controllers/keda/hpa.go: MatchLabels scaledobject.keda.sh/name).
const KEDA_METRIC_NAME: &str = "external metric s0-prometheus(&LabelSelector{MatchLabels:map[string]string{scaledobject.keda.sh/name: gpu-media,},MatchExpressions:[]LabelSelectorRequirement{},})";

fn hpa(desired: i32, current: i32, value: &str, rv: &str) -> Value {
    json!({
        "apiVersion":"autoscaling/v2","kind":"HorizontalPodAutoscaler",
        // KEDA names the HPA after spec.advanced.horizontalPodAutoscalerConfig.name, which the
        // shipped ScaledObject sets to gpu-media (kedacore/keda controllers/keda/hpa.go, getHPAName).
        "metadata":{"name":"gpu-media","namespace":"rtc","resourceVersion":rv},
        "spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"gpu-media"},"minReplicas":2,"maxReplicas":10,
            "metrics":[{"type":"External","external":{"metric":{"name":"s0-prometheus","selector":{"matchLabels":{"scaledobject.keda.sh/name":"gpu-media"}}},"target":{"type":"Value","value":"100m"}}}]},
        "status":{"currentReplicas":current,"desiredReplicas":desired,
            "currentMetrics":[{"type":"External","external":{"metric":{"name":"s0-prometheus"},"current":{"value":value}}}],
            "conditions":[
                // horizontal.go: setCondition(…AbleToScale… "SucceededRescale", "the HPA controller was able to update the target scale to %d")
                // and (…ScalingActive… "ValidMetricFound", "the HPA was able to successfully calculate a replica count from %s", metric).
                {"type":"AbleToScale","status":"True","reason":"SucceededRescale","message":"the HPA controller was able to update the target scale to 4","lastTransitionTime":"2025-01-01T00:00:00Z"},
                {"type":"ScalingActive","status":"True","reason":"ValidMetricFound","message":format!("the HPA was able to successfully calculate a replica count from {KEDA_METRIC_NAME}"),"lastTransitionTime":"2025-01-01T00:00:00Z"}]}
    })
}

fn rescale_event(rv: &str) -> Value {
    let now = jiff_now();
    json!({
        "apiVersion":"v1","kind":"Event",
        "metadata":{"name":"gpu-media.1","namespace":"rtc","uid":"ev-1","resourceVersion":rv},
        "involvedObject":{"kind":"HorizontalPodAutoscaler","name":"gpu-media","namespace":"rtc","apiVersion":"autoscaling/v2"},
        // horizontal.go: Eventf(…"SuccessfulRescale", "New size: %d; reason: %s", …) with the
        // reason `fmt.Sprintf("%s above target", rescaleMetric)`.
        "reason":"SuccessfulRescale","message":format!("New size: 4; reason: {KEDA_METRIC_NAME} above target"),
        "type":"Normal","count":1,"firstTimestamp":now,"lastTimestamp":now,"source":{"component":"horizontal-pod-autoscaler"}
    })
}

fn jiff_now() -> String {
    // RFC 3339 "now", second precision, as the API server writes timestamps.
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // civil-from-days (Howard Hinnant)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

fn list(kind: &str, items: Vec<Value>) -> Answer {
    ok(json!({"kind":format!("{kind}List"),"apiVersion":"v1","metadata":{"resourceVersion":"100"},"items":items}))
}

/// A watch stream body: one JSON event per line.
fn watch_stream(events: Vec<(&str, Value)>) -> Answer {
    let body: String = events.into_iter().map(|(t, o)| format!("{}\n", json!({"type":t,"object":o}))).collect();
    Answer::Json(200, body)
}

/// The cluster as the watchers see it: lists first, then one watch stream each with changes.
/// Later watch requests (the watcher re-watching after a stream ends) hang, like an idle watch.
fn cluster_route(served_watch: Arc<Mutex<BTreeMap<String, u32>>>) -> impl Fn(&Seen) -> Answer + Send + Sync + 'static {
    move |s: &Seen| {
        if s.path() == "/version" {
            return version();
        }
        let watching = s.query().contains("watch=true");
        let key = s.path().to_string();
        if watching {
            let mut w = served_watch.lock().unwrap();
            let n = w.entry(key.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                return Answer::Hang;
            }
        }
        match (key.as_str(), watching) {
            ("/apis/apps/v1/namespaces/rtc/deployments", false) => list("Deployment", vec![]),
            ("/apis/apps/v1/namespaces/rtc/deployments", true) => Answer::Hang,
            ("/api/v1/namespaces/rtc/pods", false) => {
                list("Pod", vec![pod("gpu-media-a", "Running", true, "10"), pod("gpu-media-b", "Running", false, "11")])
            }
            ("/api/v1/namespaces/rtc/pods", true) => watch_stream(vec![
                ("MODIFIED", pod("gpu-media-b", "Running", true, "12")),
                ("ADDED", pod("gpu-media-c", "Pending", false, "13")),
            ]),
            ("/apis/autoscaling/v2/namespaces/rtc/horizontalpodautoscalers", false) => {
                list("HorizontalPodAutoscaler", vec![hpa(2, 2, "40m", "20")])
            }
            ("/apis/autoscaling/v2/namespaces/rtc/horizontalpodautoscalers", true) => {
                watch_stream(vec![("MODIFIED", hpa(4, 3, "150m", "21"))])
            }
            ("/api/v1/namespaces/rtc/events", false) => list("Event", vec![]),
            ("/api/v1/namespaces/rtc/events", true) => watch_stream(vec![("ADDED", rescale_event("30"))]),
            _ => status(404, "NotFound", &format!("mock: no route for {} {}", s.method, s.uri)),
        }
    }
}

fn scenario() -> rtc_demo::scenario::Scenario {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut s = rtc_demo::scenario::Scenario::load(root.join("scenarios/keynote.toml")).expect("keynote.toml loads");
    // The test pins the overlay it renders (the scenario's own choice may change).
    s.manifests.overlay = "manifests/overlays/gpu-keda".into();
    s
}

fn kube_config(client: Client, in_cluster: bool) -> KubeConfig {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cfg = KubeConfig {
        connected: Connected {
            client,
            context: "mock".into(),
            server: "https://mock.invalid".into(),
            context_flag: Some("mock".into()),
        },
        namespace: "rtc".into(),
        scenario: scenario(),
        scenario_path: root.join("scenarios/keynote.toml"),
        root,
        prometheus: None,
        load_url: None,
        in_cluster_load: in_cluster,
        run_id: "20250101-000000".into(),
        image: None,
        service_port: 80,
        objects: Vec::new(),
        port_forward: None,
        port_forward_failure: None,
        measured: None,
    };
    cfg.objects = cfg.render().expect("the overlay renders");
    cfg
}

#[tokio::test]
async fn the_configured_image_runs_in_the_deployment_and_the_load_job() {
    let (client, _) = mock(|_| status(404, "NotFound", "not used"));
    let mut cfg = kube_config(client, true);
    let placeholder = |objs: &[Value]| rtc_demo::kustomize::images_of(objs);
    assert_eq!(placeholder(&cfg.objects), ["ghcr.io/rtc-demo/rtc-demo:0.1.0"], "the overlay's own image");
    let image = "registry.example.com:5000/me/rtc-demo:0.2.0";
    cfg.image = Some(rtc_demo::image_ref::ImageRef::parse(image).unwrap());
    cfg.objects = cfg.render().unwrap();
    let dep = cfg.objects.iter().find(|o| o["kind"] == "Deployment").expect("a Deployment");
    assert_eq!(dep["spec"]["template"]["spec"]["containers"][0]["image"], image);
    assert_eq!(rtc_demo::kustomize::images_of(&cfg.objects), [image]);
    let job = kb::load_job::render(&cfg.root.join("manifests/load"), &cfg.job_spec().unwrap()).unwrap();
    let job = job.iter().find(|o| o["kind"] == "Job").expect("a Job");
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["image"], image);
}

async fn wait_for(
    rx: &mut tokio::sync::watch::Receiver<Arc<ClusterSnapshot>>,
    what: &str,
    f: impl Fn(&ClusterSnapshot) -> bool,
) -> Arc<ClusterSnapshot> {
    // Long enough for a silent log stream to be noticed and reopened (job_driver's LOG_SILENCE).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = rx.borrow().clone();
        if f(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: not seen within 20 s; last snapshot: {s:#?}");
        let _ = tokio::time::timeout(Duration::from_millis(500), rx.changed()).await;
    }
}

#[tokio::test]
async fn watchers_turn_pods_hpa_and_events_into_snapshots() {
    let (client, log) = mock(cluster_route(Arc::new(Mutex::new(BTreeMap::new()))));
    let mut be = kb::start_backend(kube_config(client, false)).expect("start");
    let mut rx = be.subscribe();
    let snap = wait_for(&mut rx, "3 pods, 2 ready; HPA desired 4; a SuccessfulRescale event", |s| {
        s.pods.len() == 3
            && s.pods.iter().filter(|p| p.ready).count() == 2
            && s.autoscaler.as_ref().is_some_and(|a| a.desired == 4)
            && s.events.iter().any(|e| e.reason == "SuccessfulRescale")
    })
    .await;
    // Pods: b turned ready, c appeared Pending, with node and restarts.
    let b = snap.pods.iter().find(|p| p.name == "gpu-media-b").unwrap();
    assert!(b.ready && b.phase == "Running" && b.node == "gpu-node-1" && b.restarts == 1, "{b:?}");
    let c = snap.pods.iter().find(|p| p.name == "gpu-media-c").unwrap();
    assert!(!c.ready && c.phase == "Pending", "{c:?}");
    // The HPA: KEDA's external metric, value vs target in seconds, conditions with reasons.
    let a = snap.autoscaler.as_ref().unwrap();
    assert_eq!((a.name.as_str(), a.current, a.desired, a.min, a.max), ("gpu-media", 3, 4, 2, 10));
    let m = &a.metrics[0];
    assert_eq!(m.name, "s0-prometheus");
    assert_eq!(m.unit, "s");
    assert!((m.target - 0.1).abs() < 1e-12 && (m.value.unwrap() - 0.15).abs() < 1e-12, "{a:?}");
    assert!(a.conditions.iter().any(|c| c.kind == "AbleToScale" && c.status && c.reason == "SucceededRescale"));
    // The controller's texts with the metric's name, not its Go-printed selector.
    let valid = a.conditions.iter().find(|c| c.reason == "ValidMetricFound").unwrap();
    assert_eq!(
        valid.message,
        "the HPA was able to successfully calculate a replica count from external metric s0-prometheus"
    );
    // The event, as the events panel shows it.
    let e = snap.events.iter().find(|e| e.reason == "SuccessfulRescale").unwrap();
    assert_eq!((e.kind.as_str(), e.object.as_str()), ("Normal", "hpa/gpu-media"));
    assert_eq!(e.message, "New size: 4; reason: external metric s0-prometheus above target", "{e:?}");
    // The series carries the same figures.
    let last = wait_for(&mut rx, "a sample with the watched counts", |s| {
        s.last().is_some_and(|x| x.pods_ready == 2 && x.pods_total == 3 && x.desired == 4)
    })
    .await;
    assert!(last.backend.text().contains("mock/rtc"));
    // The kubectl panel names the KEDA HPA and the pods' real selector.
    assert!(
        last.kubectl.contains(&"kubectl --context mock -n rtc get hpa gpu-media -w".to_string()),
        "{:#?}",
        last.kubectl
    );
    assert!(
        last.kubectl.contains(
            &"kubectl --context mock -n rtc get pods -l app.kubernetes.io/name=gpu-media -o wide -w".to_string()
        ),
        "{:#?}",
        last.kubectl
    );
    // Watchers, not polling: each resource was listed once and then watched.
    let log = log.lock().unwrap().clone();
    assert_all_in_the_access_table(
        &log,
        &kb::preflight::required_access(&overlay("manifests/overlays/gpu-keda"), "rtc", kb::preflight::Uses::default()),
    );
    let pod_lists =
        log.iter().filter(|s| s.path() == "/api/v1/namespaces/rtc/pods" && !s.query().contains("watch=true")).count();
    let pod_watches: Vec<&Seen> =
        log.iter().filter(|s| s.path() == "/api/v1/namespaces/rtc/pods" && s.query().contains("watch=true")).collect();
    assert_eq!(pod_lists, 1, "{:#?}", log.iter().map(|s| &s.uri).collect::<Vec<_>>());
    assert!(!pod_watches.is_empty());
    assert!(
        pod_watches[0].query().contains("labelSelector=app.kubernetes.io%2Fname%3Dgpu-media"),
        "{}",
        pod_watches[0].uri
    );
    let hpa_w = log
        .iter()
        .find(|s| s.path().ends_with("/horizontalpodautoscalers") && s.query().contains("watch=true"))
        .unwrap();
    assert!(hpa_w.query().contains("fieldSelector=metadata.name%3Dgpu-media"), "{}", hpa_w.uri);
    be.shutdown(false).await;
}

/// The cluster route, plus KEDA's side of `status.hpaName`: the ScaledObject read (the nth,
/// from 0) is answered by `read`, and the HPA KEDA names is listed.
fn keda_named_hpa_route(
    read: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> impl Fn(&Seen) -> Answer + Send + Sync + 'static {
    let base = cluster_route(Arc::new(Mutex::new(BTreeMap::new())));
    let reads = std::sync::atomic::AtomicUsize::new(0);
    move |s| {
        if s.method == "GET" && s.path() == "/apis/keda.sh/v1alpha1/namespaces/rtc/scaledobjects/gpu-media" {
            return read(reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        }
        if s.path() == "/apis/autoscaling/v2/namespaces/rtc/horizontalpodautoscalers"
            && s.query().contains("keda-hpa-gpu-media")
            && !s.query().contains("watch=true")
        {
            let mut h = hpa(3, 3, "90m", "40");
            h["metadata"]["name"] = json!("keda-hpa-gpu-media");
            return list("HorizontalPodAutoscaler", vec![h]);
        }
        base(s)
    }
}

/// ScaledObjectStatus.HpaName (kedacore/keda apis/keda/v1alpha1/scaledobject_types.go), here
/// as if the advanced name had been removed: KEDA's default keda-hpa-<name>.
fn scaled_object_naming_its_hpa() -> Answer {
    ok(json!({"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject",
        "metadata":{"name":"gpu-media","namespace":"rtc","resourceVersion":"5"},
        "spec":{"scaleTargetRef":{"name":"gpu-media"}},
        "status":{"hpaName":"keda-hpa-gpu-media","originalReplicaCount":2}}))
}

/// The HPA name is the ScaledObject's advanced name until KEDA's `status.hpaName` says
/// otherwise; then the console watches that one (and the kubectl panel names it).
#[tokio::test]
async fn the_hpa_watched_is_the_one_keda_names_in_status_hpa_name() {
    let (client, log) = mock(keda_named_hpa_route(|_| scaled_object_naming_its_hpa()));
    let mut be = kb::start_backend(kube_config(client, false)).expect("start");
    let mut rx = be.subscribe();
    let snap = wait_for(&mut rx, "the HPA KEDA named", |s| {
        s.autoscaler.as_ref().is_some_and(|a| a.name == "keda-hpa-gpu-media")
    })
    .await;
    assert!(snap.kubectl.iter().any(|c| c.contains("keda-hpa-gpu-media")), "{:#?}", snap.kubectl);
    let log = log.lock().unwrap().clone();
    assert!(log.iter().any(|s| s.uri.contains("fieldSelector=metadata.name%3Dkeda-hpa-gpu-media")));
    be.shutdown(false).await;
}

/// KEDA falling back: after `fallback.failureThreshold` failed polls of a trigger KEDA sets
/// the ScaledObject's condition as kedacore/keda pkg/fallback/fallback.go (`updateStatus`)
/// writes it (type Fallback, status True, reason FallbackExists, message "At least one
/// trigger is falling back on this scaled object"), and feeds the HPA a made-up value. The
/// HPA panel must show that condition beside the HPA's, so the value is not read as real.
#[tokio::test]
async fn keda_falling_back_shows_on_the_hpa_panel() {
    let (client, _log) = mock(keda_named_hpa_route(|_| {
        ok(json!({"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject",
            "metadata":{"name":"gpu-media","namespace":"rtc","resourceVersion":"6"},
            "spec":{"scaleTargetRef":{"name":"gpu-media"}},
            "status":{"hpaName":"keda-hpa-gpu-media","originalReplicaCount":2,
                "conditions":[
                    {"type":"Ready","status":"True","reason":"ScaledObjectReady","message":"ScaledObject is defined correctly and is ready for scaling"},
                    {"type":"Fallback","status":"True","reason":"FallbackExists","message":"At least one trigger is falling back on this scaled object"}]}}))
    }));
    let mut be = kb::start_backend(kube_config(client, false)).expect("start");
    let mut rx = be.subscribe();
    let snap = wait_for(&mut rx, "KEDA's Fallback condition on the HPA panel", |s| {
        s.autoscaler.as_ref().is_some_and(|a| a.conditions.iter().any(|c| c.kind == "Fallback"))
    })
    .await;
    let a = snap.autoscaler.clone().unwrap();
    let c = a.conditions.iter().find(|c| c.kind == "Fallback").unwrap();
    assert!(c.status && c.reason == "FallbackExists", "{c:?}");
    assert!(c.message.contains("falling back"), "{c:?}");
    be.shutdown(false).await;
}

/// A ScaledObject the console may not read yet: the denial shows in the status line (not a
/// silent 2 s poll), and once a read succeeds the error clears and KEDA's HPA is watched.
#[tokio::test]
async fn a_forbidden_scaled_object_read_is_reported_then_retried() {
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = reads.clone();
    let (client, _log) = mock(keda_named_hpa_route(move |n| {
        counted.store(n + 1, std::sync::atomic::Ordering::SeqCst);
        if n > 0 {
            return scaled_object_naming_its_hpa();
        }
        // The RBAC denial's wording: kubernetes apiserver
        // pkg/endpoints/handlers/responsewriters/errors.go, forbiddenMessage.
        status(403, "Forbidden", "scaledobjects.keda.sh \"gpu-media\" is forbidden: User \"dev\" cannot get resource \"scaledobjects\" in API group \"keda.sh\" in the namespace \"rtc\"")
    }));
    let mut be = kb::start_backend(kube_config(client, false)).expect("start");
    let mut rx = be.subscribe();
    let denied = wait_for(&mut rx, "the denied read in the status line", |s| {
        s.status.as_deref().is_some_and(|x| x.contains("watch scaledobject"))
    })
    .await;
    assert!(denied.status.as_deref().unwrap().contains("cannot get resource \"scaledobjects\""), "{:?}", denied.status);
    let healed = wait_for(&mut rx, "KEDA's HPA after the retry", |s| {
        s.autoscaler.as_ref().is_some_and(|a| a.name == "keda-hpa-gpu-media")
    })
    .await;
    assert!(!healed.status.as_deref().unwrap_or("").contains("watch scaledobject"), "{:?}", healed.status);
    assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 2, "one denied read, one retry after the back-off");
    be.shutdown(false).await;
}

/// Pod statuses of pods that do not start, as the kubelet writes them (sources in the file).
fn stuck_pod(name: &str, reason: &str, rv: &str) -> Value {
    let fixtures: Value =
        serde_json::from_str(include_str!("fixtures/kube/pods-not-starting.json")).expect("fixture parses");
    let mut p = pod(name, "Pending", false, rv);
    p["status"] = fixtures[reason].clone();
    p
}

#[tokio::test]
async fn the_rollout_view_says_why_pods_do_not_start_with_the_kubectl_to_see_it() {
    let (client, _log) = mock(|s| {
        if s.path() == "/version" {
            return version();
        }
        let watching = s.query().contains("watch=true");
        match (s.path(), watching) {
            ("/api/v1/namespaces/rtc/pods", false) => list(
                "Pod",
                vec![
                    stuck_pod("gpu-media-a", "ErrImagePull", "10"),
                    stuck_pod("gpu-media-b", "ImagePullBackOff", "11"),
                ],
            ),
            ("/api/v1/namespaces/rtc/pods", true) => watch_stream(vec![
                ("ADDED", stuck_pod("gpu-media-c", "CrashLoopBackOff", "12")),
                ("ADDED", stuck_pod("gpu-media-d", "Unschedulable", "13")),
            ]),
            (_, true) => Answer::Hang,
            ("/api/v1/namespaces/rtc/events", false) => list("Event", vec![]),
            ("/apis/autoscaling/v2/namespaces/rtc/horizontalpodautoscalers", false) => {
                list("HorizontalPodAutoscaler", vec![])
            }
            ("/apis/apps/v1/namespaces/rtc/deployments", false) => list("Deployment", vec![]),
            _ => status(404, "NotFound", &format!("mock: no route for {} {}", s.method, s.uri)),
        }
    });
    let mut be = kb::start_backend(kube_config(client, false)).expect("start");
    let mut rx = be.subscribe();
    let snap = wait_for(&mut rx, "four pods that do not start", |s| {
        s.pods.len() == 4 && s.pods.iter().all(|p| p.problem.as_ref().is_some_and(|x| !x.kubectl.is_empty()))
    })
    .await;
    let pull_error = "registry.example/me/rtc-demo:0.2.0: not found";
    // (pod, reason, container, in the message, in the hint, the kubectl that shows the same)
    let expected = [
        ("gpu-media-a", "ErrImagePull", "gpu-media", pull_error, "cannot pull the image", "describe pod gpu-media-a"),
        (
            "gpu-media-b",
            "ImagePullBackOff",
            "gpu-media",
            "Back-off pulling image \"registry.example/me/rtc-demo:0.2.0\"",
            "cannot pull the image",
            "describe pod gpu-media-b",
        ),
        (
            "gpu-media-c",
            "CrashLoopBackOff",
            "gpu-media",
            "last exit: Error (exit code 255): exec /usr/local/bin/rtc-demo: exec format error",
            "--platform linux/amd64",
            "logs gpu-media-c -c gpu-media --previous",
        ),
        (
            "gpu-media-d",
            "Unschedulable",
            "",
            "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
            "every GPU is taken",
            "describe pod gpu-media-d",
        ),
    ];
    for (pod, reason, container, message, hint, kubectl) in expected {
        let p = snap.pods.iter().find(|p| p.name == pod).and_then(|p| p.problem.clone()).unwrap();
        assert_eq!((p.reason.as_str(), p.container.as_str()), (reason, container), "{p:?}");
        assert!(p.message.contains(message), "{p:?}");
        assert!(p.hint.as_deref().is_some_and(|h| h.contains(hint)), "{p:?}");
        assert_eq!(p.kubectl, format!("kubectl --context mock -n rtc {kubectl}"));
        // The kubelet's and scheduler's own wording leads (the back-off and "0/N nodes" forms).
        if matches!(reason, "ImagePullBackOff" | "Unschedulable") {
            assert!(p.message.starts_with(message), "{p:?}");
        }
    }
    // The first stuck pod's command heads the kubectl panel.
    assert_eq!(snap.kubectl[0], "kubectl --context mock -n rtc describe pod gpu-media-a", "{:#?}", snap.kubectl);
    be.shutdown(false).await;
}

/// Starts the backend and waits for the status line to speak of the pods' watch.
async fn status_about_the_pods_watch(
    client: Client,
) -> (kb::KubeBackend, tokio::sync::watch::Receiver<Arc<ClusterSnapshot>>, String) {
    let be = kb::start_backend(kube_config(client, false)).expect("start");
    let mut rx = be.subscribe();
    let s = wait_for(&mut rx, "a status line about the pods' watch", |s| {
        s.status.as_deref().is_some_and(|x| x.contains("watch pods"))
    })
    .await;
    let status = s.status.clone().unwrap_or_default();
    (be, rx, status)
}

#[tokio::test]
async fn a_forbidden_watch_shows_in_the_status_line_with_the_kubectl_check() {
    let (client, _log) = mock(|s| {
        if s.path() == "/api/v1/namespaces/rtc/pods" {
            return status(403, "Forbidden", "pods is forbidden: User \"dev\" cannot list resource \"pods\" in API group \"\" in the namespace \"rtc\"");
        }
        if s.query().contains("watch=true") {
            return Answer::Hang;
        }
        list("X", vec![])
    });
    let (mut be, _rx, st) = status_about_the_pods_watch(client).await;
    assert!(st.contains("403 Forbidden") && st.contains("cannot list resource"), "{st}");
    assert!(st.contains("kubectl --context mock -n rtc auth can-i --list"), "{st}");
    be.shutdown(false).await;
}

/// A routine watch expiry. The pods' watch first gets a BOOKMARK (its object as the Kubernetes
/// API concepts page shows one: the kind with only `metadata.resourceVersion`,
/// kubernetes/website content/en/docs/reference/using-api/api-concepts.md, "Watch bookmarks"),
/// then an ERROR event carrying the 410 Status the watch cache sends for a resourceVersion it
/// no longer holds (k8s.io/apiserver pkg/storage/cacher/watch_cache.go:
/// `errors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", …))`, which
/// k8s.io/apimachinery pkg/api/errors/errors.go makes `Failure`, code 410, reason `Expired`).
/// kube-runtime lists again; the status line says so, and never calls it a permissions problem.
#[tokio::test]
async fn an_expired_watch_is_shown_as_a_relist_not_a_permissions_problem() {
    let pod_lists = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pod_watches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (lists, watches) = (pod_lists.clone(), pod_watches.clone());
    let (client, log) = mock(move |s| {
        if s.path() == "/version" {
            return version();
        }
        let watching = s.query().contains("watch=true");
        match (s.path(), watching) {
            ("/api/v1/namespaces/rtc/pods", false) => {
                let n = lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n == 0 {
                    return list("Pod", vec![pod("gpu-media-a", "Running", true, "10")]);
                }
                // The re-list answers after a pause, so the status line is seen while it runs.
                let relisted = list(
                    "Pod",
                    vec![pod("gpu-media-a", "Running", true, "10"), pod("gpu-media-z", "Running", true, "40")],
                );
                Answer::After(Duration::from_millis(2500), Box::new(relisted))
            }
            ("/api/v1/namespaces/rtc/pods", true) if watches.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 => {
                watch_stream(vec![
                    ("BOOKMARK", json!({"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":"12746"}})),
                    (
                        "ERROR",
                        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                        "message":"too old resource version: 12746 (12801)","reason":"Expired","code":410}),
                    ),
                ])
            }
            (_, true) => Answer::Hang,
            (path, false) => list(if path.ends_with("/events") { "Event" } else { "X" }, vec![]),
        }
    });
    let (mut be, mut rx, st) = status_about_the_pods_watch(client).await;
    assert!(st.contains("expired the watch") && st.contains("410 Expired: too old resource version"), "{st}");
    assert!(st.contains("listing again"), "{st}");
    assert!(!st.contains("auth can-i"), "a 410 is not a permissions problem: {st}");
    let healed =
        wait_for(&mut rx, "the pod the new list holds", |s| s.pods.iter().any(|p| p.name == "gpu-media-z")).await;
    assert!(!healed.status.as_deref().unwrap_or("").contains("watch pods"), "{:?}", healed.status);
    assert!(pod_lists.load(std::sync::atomic::Ordering::SeqCst) >= 2, "listed again after the 410");
    let log = log.lock().unwrap().clone();
    let first_watch =
        log.iter().find(|s| s.path() == "/api/v1/namespaces/rtc/pods" && s.query().contains("watch=true")).unwrap();
    assert!(first_watch.query().contains("allowWatchBookmarks=true"), "{}", first_watch.uri);
    be.shutdown(false).await;
}

// ---------------------------------------------------------------------------------------
// preflight

fn plan(objs: &[Value]) -> kb::preflight::Plan {
    kb::preflight::Plan {
        namespace: "rtc".into(),
        server: "https://10.0.0.1:6443".into(),
        access: kb::preflight::required_access(objs, "rtc", in_cluster()),
        needs: kb::preflight::needs(objs, "rtc"),
        prometheus: None,
        prometheus_service: ("monitoring".into(), "prometheus-operated".into(), 9090),
        load_url: None,
        images: rtc_demo::kustomize::images_of(objs),
        ingress_from: Vec::new(),
        prometheus_forward_failure: None,
    }
}

fn k() -> kb::kubectl::Kubectl {
    kb::kubectl::Kubectl::new(Some("demo"), "rtc")
}

fn in_cluster() -> kb::preflight::Uses<'static> {
    kb::preflight::Uses { in_cluster_load: true, ..Default::default() }
}

fn node(name: &str, gpus: Option<&str>) -> Value {
    let mut alloc = json!({"cpu":"8","memory":"32Gi","pods":"110"});
    if let Some(g) = gpus {
        alloc["nvidia.com/gpu"] = json!(g);
    }
    json!({"apiVersion":"v1","kind":"Node","metadata":{"name":name},"status":{"allocatable":alloc}})
}

/// A cluster for preflight: `deny` lists "verb resource" pairs the user may not do.
fn preflight_route(
    deny: &'static [&'static str],
    gpus: bool,
    missing: &'static [&'static str],
) -> impl Fn(&Seen) -> Answer + Send + Sync + 'static {
    move |s: &Seen| {
        if s.path() == "/version" {
            return version();
        }
        if s.method == "POST" && s.path() == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
            let mut r = s.json();
            let ra = &r["spec"]["resourceAttributes"];
            let key = format!("{} {}", ra["verb"].as_str().unwrap_or(""), ra["resource"].as_str().unwrap_or(""));
            let allowed = !deny.contains(&key.as_str());
            r["status"] = if allowed {
                json!({"allowed":true,"reason":"RBAC: allowed by RoleBinding \"rtc-demo-conductor/rtc\""})
            } else {
                json!({"allowed":false,"reason":""})
            };
            return ok(r);
        }
        if s.path() == "/api/v1/namespaces/rtc" {
            return status(404, "NotFound", "namespaces \"rtc\" not found");
        }
        if s.path() == "/api/v1/nodes" {
            let items = if gpus {
                vec![node("cpu-1", None), node("gpu-1", Some("1")), node("gpu-2", Some("2"))]
            } else {
                vec![node("cpu-1", None), node("cpu-2", Some("0"))]
            };
            return list("Node", items);
        }
        if s.path() == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/scaledobjects.keda.sh" {
            return ok(keda_crd_metadata("2.18.0"));
        }
        if let Some(a) = discovery(s, missing) {
            return a;
        }
        status(404, "NotFound", "mock: no route")
    }
}

/// KEDA's ScaledObject CRD as a metadata-only answer (`Accept: …;as=PartialObjectMetadata`,
/// Kubernetes API concepts, "Receiving resources as metadata only"), labelled as KEDA's release
/// manifests label it (kedacore/keda config/default/kustomize-config/metadataLabelTransformer.yaml).
fn keda_crd_metadata(version: &str) -> Value {
    json!({"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":{"name":"scaledobjects.keda.sh",
        "resourceVersion":"100","labels":{"app.kubernetes.io/part-of":"keda-operator","app.kubernetes.io/version":version}}})
}

fn find<'a>(checks: &'a [kb::preflight::Check], name: &str) -> &'a kb::preflight::Check {
    checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
}

#[tokio::test]
async fn preflight_passes_on_a_ready_cluster() {
    let (client, log) = mock(preflight_route(&[], true, &[]));
    let objs = overlay("manifests/overlays/gpu-keda");
    let checks = kb::preflight::run(&client, &plan(&objs), &k()).await;
    assert!(kb::preflight::passed(&checks), "{checks:#?}");
    assert_eq!(find(&checks, "cluster reachable").verdict, Verdict::Ok);
    let gpu = find(&checks, "GPU nodes");
    assert!(gpu.detail.contains("2 nodes, 3 allocatable") && gpu.detail.contains("may ask for 10 pods"), "{checks:#?}");
    assert_eq!(gpu.verdict, Verdict::Warn, "3 GPUs for up to 10 one-GPU pods");
    assert_eq!(find(&checks, "metrics API").verdict, Verdict::Ok, "KEDA's external metrics API answers");
    assert!(find(&checks, "namespace").detail.contains("the manifests create it"));
    assert_eq!(find(&checks, "KEDA").verdict, Verdict::Ok);
    assert_eq!(find(&checks, "KEDA version").detail, "KEDA 2.18.0");
    assert_eq!(find(&checks, "Prometheus").verdict, Verdict::Warn, "no Prometheus configured is a warning");
    assert_eq!(find(&checks, "image").verdict, Verdict::Warn, "the placeholder image is a warning");
    // One SelfSubjectAccessReview per permission, each a real review object.
    let log = log.lock().unwrap().clone();
    let reviews: Vec<Value> =
        log.iter().filter(|s| s.path().ends_with("/selfsubjectaccessreviews")).map(|s| s.json()).collect();
    assert_eq!(reviews.len(), plan(&objs).access.len());
    assert!(reviews
        .iter()
        .all(|r| r["kind"] == "SelfSubjectAccessReview" && r["apiVersion"] == "authorization.k8s.io/v1"));
    assert!(
        reviews.iter().any(|r| r["spec"]["resourceAttributes"]
            == json!({"namespace":"rtc","verb":"patch","group":"apps","resource":"deployments"})),
        "{reviews:#?}"
    );
    assert!(reviews.iter().any(|r| r["spec"]["resourceAttributes"]["subresource"] == "log"));
    // The capacity probe's port-forward to one pod is reviewed before anything is applied.
    assert!(reviews.iter().any(|r| r["spec"]["resourceAttributes"]
        == json!({"namespace":"rtc","verb":"create","group":"","resource":"pods","subresource":"portforward"})));
    // Preflight's own reads (the namespace, the nodes) are in the table it reviews.
    assert_all_in_the_access_table(&log, &plan(&objs).access);
}

#[tokio::test]
async fn preflight_unreachable_names_the_server_and_skips_the_rest() {
    let (client, _log) = mock(|_| Answer::Error("connection refused"));
    let checks = kb::preflight::run(&client, &plan(&overlay("manifests/overlays/gpu-keda")), &k()).await;
    assert!(!kb::preflight::passed(&checks));
    let c = find(&checks, "cluster reachable");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("https://10.0.0.1:6443") && c.detail.contains("connection refused"), "{c:?}");
    assert_eq!(c.kubectl, "kubectl --context demo version");
    assert_eq!(checks.len(), 2, "{checks:#?}");
    assert_eq!(checks[1].verdict, Verdict::Skipped);
}

#[tokio::test]
async fn preflight_forbidden_lists_what_is_denied_with_kubectl_auth_can_i() {
    let (client, _log) = mock(preflight_route(&["patch deployments", "create configmaps"], true, &[]));
    let checks = kb::preflight::run(&client, &plan(&overlay("manifests/overlays/gpu-keda")), &k()).await;
    let c = find(&checks, "allowed");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("patch deployments.apps") && c.detail.contains("create configmaps"), "{c:?}");
    assert!(!c.detail.contains("watch pods"), "{c:?}");
    assert!(c.kubectl.starts_with("kubectl --context demo -n rtc auth can-i "), "{c:?}");
    assert!(!kb::preflight::passed(&checks));
}

/// No node with a GPU now is a warning, not a failure: a GPU node pool that scales from zero
/// gets its first node only once the pods ask for one. The warning says what will happen.
#[tokio::test]
async fn preflight_without_gpu_nodes_warns_what_will_happen() {
    let (client, _log) = mock(preflight_route(&[], false, &[]));
    let checks = kb::preflight::run(&client, &plan(&overlay("manifests/overlays/gpu-keda")), &k()).await;
    let c = find(&checks, "GPU nodes");
    assert_eq!(c.verdict, Verdict::Warn);
    assert!(c.detail.contains("none of 2 nodes") && c.detail.contains("cpu-* overlay"), "{c:?}");
    assert!(c.detail.contains("stay Pending") && c.detail.contains("autoscales from zero adds one"), "{c:?}");
    assert!(kb::preflight::passed(&checks), "the run goes on: {checks:#?}");
    assert_eq!(
        c.kubectl,
        r"kubectl --context demo get nodes -o custom-columns=NAME:.metadata.name,GPU:.status.allocatable.nvidia\.com/gpu"
    );
    // A CPU overlay does not ask for GPU nodes at all.
    let (client, _log) = mock(preflight_route(&[], false, &[]));
    let checks = kb::preflight::run(&client, &plan(&overlay("manifests/overlays/cpu-keda")), &k()).await;
    assert!(checks.iter().all(|c| c.name != "GPU nodes"), "{checks:#?}");
}

/// `--prometheus port-forward` needs the port-forward in Prometheus's namespace: preflight
/// reviews it there and names the namespace in what is denied, with the kubectl check for it.
#[tokio::test]
async fn preflight_checks_the_prometheus_port_forward_in_its_namespace() {
    let base = preflight_route(&[], true, &[]);
    let (client, _log) = mock(move |s| {
        if s.path() == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
            let mut r = s.json();
            let ra = r["spec"]["resourceAttributes"].clone();
            if ra["namespace"] == "monitoring" && ra["subresource"] == "portforward" {
                r["status"] = json!({"allowed":false,"reason":""});
                return ok(r);
            }
        }
        base(s)
    });
    let objs = overlay("manifests/overlays/gpu-keda");
    let mut p = plan(&objs);
    let uses = kb::preflight::Uses { prometheus_port_forward: Some("monitoring"), ..in_cluster() };
    p.access = kb::preflight::required_access(&objs, "rtc", uses);
    let checks = kb::preflight::run(&client, &p, &k()).await;
    let c = find(&checks, "allowed");
    assert_eq!(c.verdict, Verdict::Fail, "{checks:#?}");
    assert!(c.detail.contains("create pods/portforward in namespace monitoring"), "{c:?}");
    assert!(!c.detail.contains("services"), "get services there is allowed: {c:?}");
    assert_eq!(c.kubectl, "kubectl --context demo -n monitoring auth can-i create pods --subresource=portforward");
    // The forward the console tried before preflight failed: the checklist says so (the
    // console goes on to show the whole checklist rather than stopping at the forward).
    let (client, _log) = mock(preflight_route(&[], true, &[]));
    p.prometheus_forward_failure = Some("`kubectl -n monitoring port-forward svc/prometheus-operated 40000:9090` did not forward within 10 s: error: pods \"prometheus-0\" is forbidden".into());
    let checks = kb::preflight::run(&client, &p, &k()).await;
    let c = find(&checks, "Prometheus");
    assert_eq!(c.verdict, Verdict::Fail, "{checks:#?}");
    assert!(
        c.detail.starts_with("--prometheus port-forward: `kubectl") && c.detail.contains("namespace monitoring"),
        "{c:?}"
    );
    assert_eq!(c.kubectl, "kubectl --context demo -n monitoring port-forward svc/prometheus-operated 9090:9090");
    assert!(!kb::preflight::passed(&checks));
}

/// Every overlay applies a ServiceMonitor: without the Prometheus Operator, preflight says so
/// before anything is applied (discovery of an unserved group answers 404, as above).
#[tokio::test]
async fn preflight_without_the_prometheus_operator_fails_before_applying() {
    let (client, _log) = mock(preflight_route(&[], true, &["monitoring.coreos.com/v1"]));
    let checks = kb::preflight::run(&client, &plan(&overlay("manifests/overlays/gpu-keda")), &k()).await;
    assert!(!kb::preflight::passed(&checks));
    let c = find(&checks, "Prometheus Operator");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("not installed") && c.detail.contains("kube-prometheus-stack"), "{c:?}");
    assert_eq!(c.kubectl, "kubectl --context demo get crd servicemonitors.monitoring.coreos.com");
    let (client, _log) = mock(preflight_route(&[], true, &[]));
    let checks = kb::preflight::run(&client, &plan(&overlay("manifests/overlays/gpu-keda")), &k()).await;
    assert_eq!(find(&checks, "Prometheus Operator").verdict, Verdict::Ok);
}

#[tokio::test]
async fn preflight_without_keda_crd_fails_with_the_crd_command() {
    let (client, _log) = mock(preflight_route(&[], true, &["keda.sh/v1alpha1"]));
    let checks = kb::preflight::run(&client, &plan(&overlay("manifests/overlays/gpu-keda")), &k()).await;
    let c = find(&checks, "KEDA");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("KEDA is not installed"), "{c:?}");
    assert_eq!(c.kubectl, "kubectl --context demo get crd scaledobjects.keda.sh");
    // The adapter overlay asks for the custom metrics API instead.
    let (client, _log) = mock(preflight_route(&[], true, &["keda.sh/v1alpha1"]));
    let checks = kb::preflight::run(&client, &plan(&overlay("manifests/overlays/gpu-adapter")), &k()).await;
    let c = find(&checks, "metrics API");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(c.detail.contains("Prometheus Adapter"), "{c:?}");
    assert_eq!(c.kubectl, "kubectl --context demo get apiservice v1beta1.custom.metrics.k8s.io");
    assert!(checks.iter().all(|c| c.name != "KEDA"));
}

/// KEDA 2.17's webhook rejects the shipped ScaledObject (fallback on a Value trigger): a
/// preflight failure, before anything is applied.
#[tokio::test]
async fn preflight_with_keda_older_than_2_18_fails() {
    let base = preflight_route(&[], true, &[]);
    let (client, log) = mock(move |s| {
        if s.path() == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/scaledobjects.keda.sh" {
            return ok(keda_crd_metadata("2.17.2"));
        }
        base(s)
    });
    let checks = kb::preflight::run(&client, &plan(&overlay("manifests/overlays/gpu-keda")), &k()).await;
    let c = find(&checks, "KEDA version");
    assert_eq!(c.verdict, Verdict::Fail, "{checks:#?}");
    assert!(c.detail.contains("KEDA 2.17.2") && c.detail.contains(">= 2.18"), "{c:?}");
    assert!(!kb::preflight::passed(&checks));
    let log = log.lock().unwrap().clone();
    let crd = log.iter().find(|s| s.path().ends_with("/scaledobjects.keda.sh")).unwrap();
    assert_eq!(crd.method, "GET");
    assert_all_in_the_access_table(&log, &plan(&overlay("manifests/overlays/gpu-keda")).access);
}

/// KEDA installed but its metrics server down: the HPA KEDA creates could not read the
/// metric, so preflight fails the metrics API line.
#[tokio::test]
async fn preflight_with_kedas_metrics_api_unavailable_fails() {
    let base = preflight_route(&[], true, &[]);
    let (client, _log) = mock(move |s| {
        if s.path() == "/apis/external.metrics.k8s.io/v1beta1" {
            // The kube-aggregator's answer for an APIService whose backend does not answer:
            // plain-text 503 (kubernetes staging/src/k8s.io/kube-aggregator/pkg/apiserver/
            // handler_proxy.go, proxyError(w, req, "service unavailable", 503)).
            return Answer::Json(503, "service unavailable\n".into());
        }
        base(s)
    });
    let checks = kb::preflight::run(&client, &plan(&overlay("manifests/overlays/gpu-keda")), &k()).await;
    let c = find(&checks, "metrics API");
    assert_eq!(c.verdict, Verdict::Fail, "{checks:#?}");
    assert!(c.detail.contains("not Available"), "{c:?}");
    assert_eq!(c.kubectl, "kubectl --context demo get apiservice v1beta1.external.metrics.k8s.io");
    assert!(!kb::preflight::passed(&checks));
}

// ---------------------------------------------------------------------------------------
// in-cluster load

#[tokio::test]
async fn in_cluster_load_applies_configmap_and_job_and_reads_the_pods_log() {
    let line1 = "[   1s] offered     5/s  sent      5  done      5 (     5.0/s)  corrected p50   12.0ms p95   20.5ms p99   22.0ms max   25.0ms | uncorrected p95   19.0ms  ok (2xx) 3  shed 503 2  other 5xx 0  4xx 0  1xx/3xx 0  timeouts 0  connect errors 0  other errors 0  cancelled 0 dropped 0 inflight 0 | all p95 20.5ms";
    let line2 = "[   2s] offered     5/s  sent      5  done      5 (     5.0/s)  corrected p50   12.0ms p95   31.0ms p99   33.0ms max   35.0ms | uncorrected p95   30.0ms  ok (2xx) 4  shed 503 1  other 5xx 0  4xx 0  1xx/3xx 0  timeouts 0  connect errors 0  other errors 0  cancelled 0 dropped 0 inflight 0 | all p95 31.0ms";
    // The new pod's first log stream goes silent after one second without closing (a half-open
    // connection: the console notices the silence and reopens it), the second is cut after one
    // second (an API server connection closing: reopened again); the console skips what it
    // already has.
    let first_log = format!("-- stage 1/1: idle (5 rps)\n{line1}\n");
    let full_log = format!("-- stage 1/1: idle (5 rps)\n{line1}\n{line2}\n");
    let old_line = line2.replace("p95   31.0ms", "p95  999.0ms");
    let served = Arc::new(Mutex::new(BTreeMap::new()));
    let base = cluster_route(served);
    // Mocked cluster state: does the Job exist, how often the pods were listed, how often the
    // new pod's log was opened.
    #[derive(Default)]
    struct LoadState {
        job: Option<Value>,
        lists: u32,
        logs: u32,
    }
    let st = Arc::new(Mutex::new(LoadState { job: Some(json!({"kind":"Job"})), ..Default::default() }));
    // A pod the Job controller made: it sets a controller owner reference to the Job on every
    // pod (kubernetes pkg/controller/job/job_controller.go, via metav1.NewControllerRef) and the
    // `job-name` label (batch/v1 Job docs, "Pod selector").
    let load_pod = |name: &str, job_uid: &str, phase: &str| {
        let mut p = pod(name, phase, phase == "Running", "50");
        p["metadata"]["labels"] = json!({"job-name":"rtc-demo-load","batch.kubernetes.io/job-name":"rtc-demo-load"});
        p["metadata"]["ownerReferences"] = json!([{"apiVersion":"batch/v1","kind":"Job","name":"rtc-demo-load","uid":job_uid,"controller":true,"blockOwnerDeletion":true}]);
        p
    };
    let (client, log) = mock(move |s| {
        let mut st = st.lock().unwrap();
        if s.path() == "/apis/batch/v1/namespaces/rtc/jobs/rtc-demo-load" {
            let not_found = || status(404, "NotFound", "jobs.batch \"rtc-demo-load\" not found");
            return match s.method.as_str() {
                // Foreground deletion answers 200 with the object; it is gone once its pods are.
                "DELETE" => match st.job.take() {
                    Some(j) => ok(j),
                    None => not_found(),
                },
                "GET" => st.job.clone().map(ok).unwrap_or_else(not_found),
                _ => {
                    let mut j: Value = serde_json::from_slice(&s.body).unwrap();
                    j["metadata"]["uid"] = json!("job-uid-2");
                    st.job = Some(j.clone());
                    ok(j)
                }
            };
        }
        if s.method == "PATCH" {
            return Answer::Json(200, String::from_utf8_lossy(&s.body).into_owned());
        }
        if s.path() == "/api/v1/namespaces/rtc/pods" && s.query().contains("job-name%3Drtc-demo-load") {
            st.lists += 1;
            // The previous stage's pod, still terminating (deletionTimestamp set), listed first;
            // the new Job's pod is Pending (pulling) on the first two lists.
            let mut old = load_pod("rtc-demo-load-old11", "job-uid-1", "Running");
            old["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
            let mut new =
                load_pod("rtc-demo-load-x7k2p", "job-uid-2", if st.lists <= 2 { "Pending" } else { "Running" });
            if st.lists <= 2 {
                new["status"]["containerStatuses"][0]["state"] = json!({"waiting":{"reason":"ContainerCreating"}});
            }
            return list("Pod", vec![old, new]);
        }
        if s.path() == "/api/v1/namespaces/rtc/pods/rtc-demo-load-old11/log" {
            return Answer::Json(200, format!("{old_line}\n"));
        }
        if s.path() == "/api/v1/namespaces/rtc/pods/rtc-demo-load-x7k2p/log" {
            st.logs += 1;
            return match st.logs {
                1 => Answer::Open(first_log.clone()),
                2 => Answer::Json(200, first_log.clone()),
                _ => Answer::Json(200, full_log.clone()),
            };
        }
        if s.path() == "/api/v1/namespaces/rtc/pods/rtc-demo-load-x7k2p" && s.method == "GET" {
            // Still running after the silent stream and the cut, finished after the third.
            return ok(load_pod(
                "rtc-demo-load-x7k2p",
                "job-uid-2",
                if st.logs <= 2 { "Running" } else { "Succeeded" },
            ));
        }
        if let Some(a) = discovery(s, &[]) {
            return a;
        }
        base(s)
    });
    let mut be = kb::start_backend(kube_config(client, true)).unwrap();
    let mut rx = be.subscribe();
    be.command(BackendCommand::StartStage {
        index: 0,
        plan: rtc_demo::conduct::model::StagePlan::Requests(RatePlan::Constant { rps: 5.0 }),
    })
    .unwrap();
    wait_for(&mut rx, "the status line says what the load pod waits for", |s| {
        s.status.as_deref().is_some_and(|t| t.contains("pod rtc-demo-load-x7k2p: ContainerCreating"))
    })
    .await;
    let snap = wait_for(&mut rx, "the load pod's figures in a sample", |s| {
        s.last().is_some_and(|x| x.p95_client_s == Some(0.031))
    })
    .await;
    let x = snap.last().unwrap();
    assert_eq!((x.offered_rps, x.achieved_rps, x.shed, x.errors), (5.0, 5.0, 1, 0));
    assert_eq!(x.p95_client_uncorrected_s, Some(0.030));
    let log = log.lock().unwrap().clone();
    let uris: Vec<String> = log.iter().map(|s| format!("{} {}", s.method, s.uri)).collect();
    let cfg_objs = overlay("manifests/overlays/gpu-keda");
    assert_all_in_the_access_table(&log, &kb::preflight::required_access(&cfg_objs, "rtc", in_cluster()));
    // The old Job is deleted first (foreground: it goes once its pods are gone), then
    // ConfigMap + Job applied.
    let del =
        log.iter().position(|s| s.method == "DELETE" && s.path().ends_with("/jobs/rtc-demo-load")).expect("DELETE job");
    assert_eq!(log[del].json()["propagationPolicy"], "Foreground", "{uris:#?}");
    let cm = log
        .iter()
        .find(|s| s.method == "PATCH" && s.path() == "/api/v1/namespaces/rtc/configmaps/rtc-demo-load-scenario")
        .expect("PATCH configmap");
    let job = log
        .iter()
        .position(|s| s.method == "PATCH" && s.path() == "/apis/batch/v1/namespaces/rtc/jobs/rtc-demo-load")
        .expect("PATCH job");
    assert!(del < job, "delete before apply: {uris:#?}");
    assert_eq!(cm.content_type, "application/apply-patch+yaml");
    assert!(cm.query().contains("fieldManager=rtc-demo"));
    let toml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/keynote.toml")).unwrap();
    assert_eq!(cm.json()["data"]["scenario.toml"], Value::String(toml), "the scenario goes in verbatim");
    let j = log[job].json();
    assert_eq!(j["metadata"]["annotations"]["rtc-demo/run-id"], "20250101-000000");
    assert_eq!(j["metadata"]["namespace"], "rtc");
    let args: Vec<&str> = j["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        vec![
            "load",
            "--scenario",
            "/etc/rtc-demo/scenario.toml",
            "--json",
            "--stage",
            "idle",
            "http://gpu-media.rtc.svc:80"
        ]
    );
    assert!(!j.to_string().contains("__RTC_"), "no placeholder left: {j}");
    // The ServiceAccount the Job runs as is applied too.
    assert!(
        log.iter().any(|s| s.method == "PATCH" && s.path() == "/api/v1/namespaces/rtc/serviceaccounts/rtc-demo-load"),
        "{uris:#?}"
    );
    // The new Job's pod's log is followed through the API server, reopened after the silence
    // and after the cut; the terminating pod of the old Job is never read.
    let lg: Vec<&Seen> = log.iter().filter(|s| s.path().ends_with("/pods/rtc-demo-load-x7k2p/log")).collect();
    assert_eq!(lg.len(), 3, "{uris:#?}");
    assert!(lg.iter().all(|l| l.query().contains("follow=true")), "{}", lg[0].uri);
    assert!(!uris.iter().any(|u| u.contains("rtc-demo-load-old11/log")), "{uris:#?}");
    // Each second counted once, though the later streams repeated the first line (2 + 1 shed).
    let shed: u64 = snap.series.iter().map(|x| x.shed).sum();
    assert_eq!(shed, 3, "{:#?}", snap.series);
    // The kubectl panel names the file the console wrote and the Job's log.
    assert!(snap.kubectl.iter().any(|c| c.starts_with("kubectl --context mock -n rtc delete job rtc-demo-load --ignore-not-found --cascade=foreground && kubectl --context mock apply --server-side --field-manager=rtc-demo --force-conflicts -f ")), "{:#?}", snap.kubectl);
    assert!(snap.kubectl.contains(&"kubectl --context mock -n rtc logs -f job/rtc-demo-load".to_string()));
    be.shutdown(false).await;
}

/// The capacity probe on a cluster goes to ONE ready pod through `kubectl port-forward
/// pod/NAME` (here a stand-in that relays to a real `rtc-demo serve` on loopback, the "pod"),
/// found in the snapshots the mocked API's watch produces, on the Deployment's container port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_is_measured_on_one_ready_pod_through_a_port_forward() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut pod = std::process::Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--device", "emulated"])
        .args(["--emulated-frame-time", "20ms", "--workers", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("rtc-kube-capacity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (log, kubectl) = (dir.join("forwards.log"), dir.join("kubectl"));
    let python = std::env::var("RTC_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let relay = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kube/kubectl-port-forward.py");
    std::fs::write(
        &kubectl,
        format!(
            "#!/bin/sh\nexec '{python}' '{}' --to 127.0.0.1:{port} --log '{}' \"$@\"\n",
            relay.display(),
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (client, _) = mock(cluster_route(Arc::new(Mutex::new(BTreeMap::new()))));
    let cfg = kube_config(client, false);
    let target = kb::pod_capacity::PodProbeTarget::of(&cfg);
    assert_eq!(target.port, 8080, "the Deployment's containerPort");
    let mut be = kb::start_backend(cfg.clone()).expect("start");
    let mut scenario = cfg.scenario.clone();
    scenario.request.service_time = None;
    scenario.request.iters = 1;
    let mut lines = Vec::new();
    let measured = kb::pod_capacity::measure(
        &target,
        &kubectl.display().to_string(),
        be.subscribe(),
        Duration::from_secs(20),
        &scenario,
        &mut |l| lines.push(l),
    )
    .await;
    be.shutdown(false).await;
    let _ = pod.kill();
    let _ = pod.wait();
    let c = measured.unwrap_or_else(|e| panic!("{e}; progress: {lines:?}"));
    let forwards = std::fs::read_to_string(&log).unwrap();
    let forwards = forwards.trim();
    assert!(
        forwards.starts_with("--context mock -n rtc port-forward pod/gpu-media-a ") && forwards.ends_with(":8080"),
        "one forward, to the ready pod, on the container port: {forwards}"
    );
    assert!(c.measured_on.contains("pod gpu-media-a via kubectl port-forward"), "{c:?}");
    assert_eq!((c.device.as_str(), c.workers), ("emulated", 1));
    // One 20 ms stream (a timer that runs late on a busy machine): one frame per compute time.
    let most = 1000.0 / c.compute_ms;
    assert!(c.compute_ms >= 19.5 && c.pod_rps <= 1.15 * most && c.pod_rps >= 0.7 * most, "one 20 ms stream: {c:?}");
    assert!(lines.iter().any(|l| l.contains("waiting for a ready pod of deployment/gpu-media")), "{lines:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
