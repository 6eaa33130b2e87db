//! Scenario files (`scenarios/*.toml`, SPEC §3); `rtc-demo check` is `crate::commands::check`.
//!
//! # Public API (stable; the conductor builds on it)
//!
//! - [`Scenario::load`]`(path) -> Result<Scenario, ScenarioError>` and
//!   [`Scenario::from_toml`]`(text, file_label)`: strict parsing (unknown keys rejected) plus
//!   semantic checks. [`ScenarioError`]'s Display is `file:line:column: message (expected …)`.
//! - [`Scenario`]: `name`, `description`, [`Slo`], [`TargetRequest`] (`request`),
//!   [`LoadSource`] (`load`), [`Manifests`], [`Prometheus`] (queries with NaN-safe defaults),
//!   [`LocalRehearsal`] (`local`: replica min/max, port base, [`LocalDevice`], serve flags),
//!   `thresholds: Vec<`[`crate::load::Threshold`]`>`, `stages: Vec<`[`Stage`]`>`.
//! - [`Stage`]: `name`, `duration`, `load:` [`StageLoad`] (`Rate(`[`Rate`]`)` constant or ramp
//!   in requests/s, `PodRate(`[`Rate`]`)` in pods of measured capacity (`rate = "2.5 pods"`),
//!   or `Concurrency(n)`), `notes`, `advance:` [`Advance`] (auto | manual), `expect:`
//!   [`Expect`] (`replicas_at_least`, `replicas_at_most`, `p95_below`, `p95_above`,
//!   `p95_recovers_below`, and about the whole stage `out_of_slo_at_most`,
//!   `scale_downs_at_most`).
//!   [`Stage::plan`] gives the engine's [`crate::load::RatePlan`] once
//!   [`Scenario::in_measured_units`] has turned pods into requests/s (the console measures
//!   one pod's capacity first, `crate::conduct::capacity`), and the iterations sized to
//!   `[request] service_time`.
//! - [`TargetRequest::path_and_query`] builds `/process?pixels=WxH&iters=N&effects=…`;
//!   [`TargetRequest::url_for`] joins it to a base URL.
//! - WebRTC sessions as the load: `[request] kind = "webrtc"` ([`RequestKind`]; `fps`, `kbps`,
//!   `codec`, the WHIP URL `/whip?iters=…&effects=…`) and stages of `sessions`
//!   ([`StageLoad::Sessions`], [`Stage::session_plan`] for the WebRTC engine); a scenario is
//!   one kind or the other, its thresholds too.
//!
//! Durations are written as in flags (`90s`, `2m`, `1m30s`, `500ms`).
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::load::webrtc::SessionPlan;
use crate::load::{RatePlan, Threshold};
use rtc_service::duration::{parse_duration, DURATION_FORMS};

/// Effects the media service knows (SPEC §1).
pub const KNOWN_EFFECTS: &[&str] = &["blur", "bgblur", "translate", "color"];

/// A whole presenter flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub slo: Slo,
    #[serde(default)]
    pub request: TargetRequest,
    #[serde(default)]
    pub load: LoadSource,
    #[serde(default)]
    pub manifests: Manifests,
    #[serde(default)]
    pub prometheus: Prometheus,
    #[serde(default)]
    pub local: LocalRehearsal,
    /// k6-style criteria checked at the end (`p95<100ms`, `error_rate<1%`).
    #[serde(default)]
    pub thresholds: Vec<Threshold>,
    #[serde(deserialize_with = "de_stages")]
    pub stages: Vec<Stage>,
}

/// The service-level objective and the autoscaling rule derived from it (SPEC §5).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "SloRaw")]
pub struct Slo {
    /// The objective: p95 latency under this.
    pub p95: Duration,
    /// Scale up when p95 stays above `scale_up_above` for `scale_up_after`.
    pub scale_up_above: Duration,
    pub scale_up_after: Duration,
    /// Scale down when p95 stays below `scale_down_below` for `scale_down_after`.
    pub scale_down_below: Duration,
    pub scale_down_after: Duration,
    pub min_replicas: u32,
    pub max_replicas: u32,
}

impl Default for Slo {
    fn default() -> Self {
        Slo {
            p95: Duration::from_millis(100),
            scale_up_above: Duration::from_millis(100),
            scale_up_after: Duration::from_secs(30),
            scale_down_below: Duration::from_millis(50),
            scale_down_after: Duration::from_secs(120),
            min_replicas: 2,
            max_replicas: 10,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SloRaw {
    #[serde(default, deserialize_with = "de_opt_duration")]
    p95: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    scale_up_above: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    scale_up_after: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    scale_down_below: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    scale_down_after: Option<Duration>,
    min_replicas: Option<u32>,
    max_replicas: Option<u32>,
}

/// `Scenario::stage` asked for a name the scenario does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scenario `{scenario}` has no stage `{stage}` (expected one of: {})", stages.join(", "))]
pub struct NoSuchStage {
    pub scenario: String,
    pub stage: String,
    pub stages: Vec<String>,
}

impl TryFrom<SloRaw> for Slo {
    type Error = String;
    fn try_from(r: SloRaw) -> Result<Self, String> {
        let d = Slo::default();
        let slo = Slo {
            p95: r.p95.unwrap_or(d.p95),
            scale_up_above: r.scale_up_above.or(r.p95).unwrap_or(d.scale_up_above),
            scale_up_after: r.scale_up_after.unwrap_or(d.scale_up_after),
            scale_down_below: r.scale_down_below.unwrap_or(d.scale_down_below),
            scale_down_after: r.scale_down_after.unwrap_or(d.scale_down_after),
            min_replicas: r.min_replicas.unwrap_or(d.min_replicas),
            max_replicas: r.max_replicas.unwrap_or(d.max_replicas),
        };
        if slo.min_replicas == 0 || slo.min_replicas > slo.max_replicas {
            return Err(format!(
                "min_replicas = {} and max_replicas = {} (expected 1 <= min_replicas <= max_replicas)",
                slo.min_replicas, slo.max_replicas
            ));
        }
        if slo.scale_down_below >= slo.scale_up_above {
            return Err(
                "scale_down_below must be lower than scale_up_above (expected a dead band, e.g. 50ms and 100ms)".into(),
            );
        }
        Ok(slo)
    }
}

/// HTTP method of the target request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HttpMethod {
    #[serde(rename = "GET")]
    Get,
    #[serde(rename = "POST")]
    Post,
}

impl HttpMethod {
    pub fn as_hyper(self) -> hyper::Method {
        match self {
            HttpMethod::Get => hyper::Method::GET,
            HttpMethod::Post => hyper::Method::POST,
        }
    }
}

/// What the load sends: HTTP requests to `/process`, or WebRTC sessions (`kind = "webrtc"`:
/// synthetic WHIP publishers whose stages ramp `sessions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    #[default]
    Http,
    Webrtc,
}

/// The request each load request sends (SPEC §1's `/process` API), or with `kind = "webrtc"`
/// what each session publishes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "TargetRequestRaw")]
pub struct TargetRequest {
    pub kind: RequestKind,
    pub method: HttpMethod,
    pub path: String,
    /// Frame size, `WxH`.
    pub pixels: (u32, u32),
    pub iters: u32,
    pub effects: Vec<String>,
    pub timeout: Duration,
    /// `service_time = "20ms"` instead of `iters`: the console picks the iterations that
    /// take about this long on the pod's own device, measured before the stages.
    pub service_time: Option<Duration>,
    /// WebRTC: the publishers' frame rate and their clip's bitrate (`pixels` is the video size).
    pub fps: u32,
    pub kbps: u32,
}

impl Default for TargetRequest {
    fn default() -> Self {
        TargetRequest {
            kind: RequestKind::Http,
            method: HttpMethod::Post,
            path: "/process".into(),
            pixels: (1280, 720),
            iters: 5,
            effects: vec!["blur".into(), "translate".into(), "color".into()],
            timeout: Duration::from_secs(5),
            service_time: None,
            fps: 15,
            kbps: 600,
        }
    }
}

/// The codecs synthetic publishers can send, quoted in errors.
const WEBRTC_CODECS: &str =
    "\"vp8\" (the service answers a sendrecv offer in VP8; it has no H.264 encoder for the way back)";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetRequestRaw {
    method: Option<HttpMethod>,
    path: Option<String>,
    #[serde(default, deserialize_with = "de_opt_pixels")]
    pixels: Option<(u32, u32)>,
    iters: Option<i64>,
    #[serde(default, deserialize_with = "de_opt_effects")]
    effects: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    service_time: Option<Duration>,
    kind: Option<RequestKind>,
    fps: Option<i64>,
    kbps: Option<i64>,
    codec: Option<String>,
}

impl TryFrom<TargetRequestRaw> for TargetRequest {
    type Error = String;
    fn try_from(r: TargetRequestRaw) -> Result<Self, String> {
        let d = TargetRequest::default();
        let kind = r.kind.unwrap_or_default();
        if kind == RequestKind::Http {
            for (key, given) in [("fps", r.fps.is_some()), ("kbps", r.kbps.is_some()), ("codec", r.codec.is_some())] {
                if given {
                    return Err(format!("`{key}` is for WebRTC sessions (expected `kind = \"webrtc\"` with it, or no `{key}` for HTTP requests)"));
                }
            }
        } else {
            if r.service_time.is_some() {
                return Err("service_time with kind = \"webrtc\" (expected `iters`: sessions are not sized to a measured service time)".into());
            }
            if r.method.is_some() {
                return Err(
                    "`method` with kind = \"webrtc\" (expected no method: a session's offer is always a WHIP POST)"
                        .into(),
                );
            }
            if let Some(c) = &r.codec {
                if !c.eq_ignore_ascii_case("vp8") {
                    return Err(format!("codec = \"{c}\" (expected {WEBRTC_CODECS})"));
                }
            }
        }
        let fps = match r.fps {
            Some(f) if (1..=60).contains(&f) => f as u32,
            Some(f) => return Err(format!("fps = {f} (expected an integer in 1..=60)")),
            None => d.fps,
        };
        let kbps = match r.kbps {
            Some(k) if (50..=20_000).contains(&k) => k as u32,
            Some(k) => return Err(format!("kbps = {k} (expected an integer in 50..=20000 kbit/s)")),
            None => d.kbps,
        };
        let max = rtc_service::params::MAX_ITERS;
        let iters = match r.iters {
            Some(_) if r.service_time.is_some() => {
                return Err("both `iters` and `service_time` (expected one of them: `iters = 5`, or `service_time = \"20ms\"` for the console to pick the iterations on the pod's device)".into())
            }
            Some(n) if (1..=max as i64).contains(&n) => n as u32,
            Some(n) => return Err(format!("iters = {n} (expected an integer in 1..={max}, as /process accepts)")),
            None if kind == RequestKind::Webrtc => 1,
            None => d.iters,
        };
        if r.service_time.is_some_and(|t| t < Duration::from_millis(1)) {
            return Err("service_time is under 1ms (expected a duration such as \"20ms\", below the SLO's p95)".into());
        }
        let timeout = r.timeout.unwrap_or(d.timeout);
        if timeout.is_zero() {
            return Err("timeout = \"0s\" (expected a positive duration such as \"5s\")".into());
        }
        let (path, pixels) = match kind {
            RequestKind::Http => (d.path, d.pixels),
            RequestKind::Webrtc => ("/whip".to_string(), (640, 360)),
        };
        Ok(TargetRequest {
            kind,
            method: r.method.unwrap_or(d.method),
            path: r.path.unwrap_or(path),
            pixels: r.pixels.unwrap_or(pixels),
            iters,
            effects: r.effects.unwrap_or(d.effects),
            timeout,
            service_time: r.service_time,
            fps,
            kbps,
        })
    }
}

impl TargetRequest {
    /// `/process?pixels=1280x720&iters=5&effects=blur,translate,color`; for WebRTC the WHIP
    /// URL `/whip?iters=1&effects=…` (the size is the video's, not a parameter).
    pub fn path_and_query(&self) -> String {
        format!("{}?{}", self.path, self.query())
    }

    /// The query alone (`pixels=…&iters=…&effects=…`, no pixels for WebRTC).
    pub fn query(&self) -> String {
        let mut s = match self.kind {
            RequestKind::Http => format!("pixels={}x{}&iters={}", self.pixels.0, self.pixels.1, self.iters),
            RequestKind::Webrtc => format!("iters={}", self.iters),
        };
        if !self.effects.is_empty() {
            s.push_str("&effects=");
            s.push_str(&self.effects.join(","));
        }
        s
    }
    /// `base` (`http://host:port`, any path dropped) joined with [`Self::path_and_query`].
    pub fn url_for(&self, base: &str) -> String {
        let base = base.trim_end_matches('/');
        let root = match base.find("://") {
            Some(i) => match base[i + 3..].find('/') {
                Some(j) => &base[..i + 3 + j],
                None => base,
            },
            None => base,
        };
        format!("{root}{}", self.path_and_query())
    }
}

/// Where load comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoadOrigin {
    /// This machine sends the load (to `url`, or to local replicas in rehearsal).
    ThisMachine,
    /// A Job in the cluster runs `rtc-demo load` against the Service.
    InCluster,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadSource {
    pub from: LoadOrigin,
    /// Base URL of the service when load comes from this machine (port-forward, ingress).
    pub url: Option<String>,
    /// Keep-alive connections (open loop) per target.
    #[serde(deserialize_with = "de_positive_usize")]
    pub connections: usize,
    /// Most requests due but unanswered before new ones count as dropped.
    #[serde(deserialize_with = "de_positive_usize")]
    pub max_inflight: usize,
    /// In-cluster load: how long each stage's load pod may take to start running (image
    /// pull, scheduling) before the stage says it did not start.
    #[serde(deserialize_with = "de_duration")]
    pub pod_start_timeout: Duration,
}

impl Default for LoadSource {
    fn default() -> Self {
        LoadSource {
            from: LoadOrigin::ThisMachine,
            url: None,
            connections: 64,
            max_inflight: 10_000,
            pod_start_timeout: Duration::from_secs(120),
        }
    }
}

/// Which manifests the conductor applies (kustomize directories under `manifests/`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Manifests {
    /// The kustomize overlay to apply (exactly one autoscaler in it).
    pub overlay: String,
    pub namespace: String,
    pub deployment: String,
    pub service: String,
    /// Extra kustomize directories applied before the overlay (e.g. observability).
    pub extra: Vec<String>,
    /// The image the service Deployment and the load Job run (`REGISTRY/rtc-demo:TAG`),
    /// set as kustomize's `images` override does; None keeps the manifests' placeholder.
    #[serde(deserialize_with = "de_image")]
    pub image: Option<crate::image_ref::ImageRef>,
    /// Where load from this machine enters the cluster, beside namespace `namespace` and
    /// Prometheus's: namespaces (an ingress controller's, e.g. `ingress-nginx`) and CIDRs (a
    /// cloud load balancer that sends to pod IPs). The service's NetworkPolicy admits them.
    #[serde(deserialize_with = "de_ingress_from")]
    pub ingress_from: Vec<IngressPeer>,
}

/// One source `[manifests] ingress_from` admits to the service's HTTP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngressPeer {
    Namespace(String),
    Cidr(String),
}

impl Default for Manifests {
    fn default() -> Self {
        Manifests {
            overlay: "manifests/overlays/gpu-keda".into(),
            namespace: "rtc".into(),
            deployment: "gpu-media".into(),
            service: "gpu-media".into(),
            extra: Vec::new(),
            image: None,
            ingress_from: Vec::new(),
        }
    }
}

/// PromQL the console charts. Defaults are NaN-safe (`>= 0` drops the NaN an idle
/// `histogram_quantile` gives, then `or vector(0)`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prometheus {
    /// Prometheus base URL; None = discover / not used.
    pub url: Option<String>,
    /// The namespace Prometheus runs in: the service's NetworkPolicy admits scrapes from it,
    /// and preflight's port-forward hint names it.
    pub namespace: String,
    /// Prometheus's Service there (`--prometheus port-forward` forwards to it, KEDA's triggers
    /// read it). None: the one the overlay's ScaledObject names, else the Prometheus
    /// Operator's `prometheus-operated`.
    #[serde(deserialize_with = "de_service_name")]
    pub service: Option<String>,
    /// That Service's port (None: as for `service`; the Operator's is 9090).
    pub port: Option<std::num::NonZeroU16>,
    pub p95: String,
    pub rps: String,
    pub errors: String,
    pub shed: String,
    pub replicas: String,
    pub gpu_utilisation: String,
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
}

impl Default for Prometheus {
    fn default() -> Self {
        Prometheus {
            url: None,
            namespace: "monitoring".into(),
            service: None,
            port: None,
            p95: r#"(histogram_quantile(0.95, sum by (le) (rate(app_request_latency_seconds_bucket{namespace="rtc"}[30s]))) >= 0) or vector(0)"#.into(),
            // Every /process answer. A ServiceMonitor adds its own `endpoint` label (the port),
            // which renames the service's to `exported_endpoint`; match either.
            rps: r#"sum(rate(app_requests_total{namespace="rtc",endpoint="/process"}[30s])) or sum(rate(app_requests_total{namespace="rtc",exported_endpoint="/process"}[30s])) or vector(0)"#.into(),
            errors: r#"sum(rate(app_requests_total{namespace="rtc",endpoint="/process",code=~"5..",code!="503"}[30s])) or sum(rate(app_requests_total{namespace="rtc",exported_endpoint="/process",code=~"5..",code!="503"}[30s])) or vector(0)"#.into(),
            shed: r#"sum(rate(app_rejected_total{namespace="rtc"}[30s])) or vector(0)"#.into(),
            replicas: r#"kube_deployment_status_replicas_ready{namespace="rtc",deployment="gpu-media"}"#.into(),
            // Our DCGM exporter's ServiceMonitor honours its labels (`namespace` is the pod's);
            // the GPU Operator's does not by default (deployments/gpu-operator/values.yaml,
            // dcgmExporter.serviceMonitor.honorLabels: false), so Prometheus renames the pod's
            // label to `exported_namespace`. Match either.
            gpu_utilisation: r#"avg(DCGM_FI_DEV_GPU_UTIL{namespace="rtc"}) or avg(DCGM_FI_DEV_GPU_UTIL{exported_namespace="rtc"})"#.into(),
            interval: Duration::from_secs(2),
        }
    }
}

/// Rehearsal on one machine: replicas are `rtc-demo serve` child processes on loopback.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "LocalRaw")]
pub struct LocalRehearsal {
    pub replicas_min: u32,
    pub replicas_max: u32,
    /// Replica i listens on `port_base + i` (or a free port when that one is taken); 0: on
    /// ports the OS picks, for runs side by side on one machine (tests, CI).
    pub port_base: u16,
    /// What the replicas compute on.
    pub device: LocalDevice,
    /// Flags given to every `rtc-demo serve` replica (not `--device`: that is `device`).
    pub serve_args: Vec<String>,
}

/// The device of the local replicas (`[local] device`, or `conduct --local-device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LocalDevice {
    /// Each replica models a GPU pod's own fixed capacity (`serve --device emulated`):
    /// adding a replica adds capacity, as on a cluster, whatever this machine's core count.
    Emulated,
    /// Real CPU effects: every replica shares this machine's cores, so scale-out only adds
    /// capacity on a machine with many more cores than replicas.
    Cpu,
}

impl LocalDevice {
    /// The `serve --device` value.
    pub fn serve_flag(self) -> &'static str {
        match self {
            LocalDevice::Emulated => "emulated",
            LocalDevice::Cpu => "cpu",
        }
    }
    /// How the console labels it ("LOCAL · emulated GPU").
    pub fn label(self) -> &'static str {
        match self {
            LocalDevice::Emulated => "emulated GPU",
            LocalDevice::Cpu => "CPU",
        }
    }
}

impl Default for LocalRehearsal {
    fn default() -> Self {
        LocalRehearsal {
            replicas_min: 1,
            replicas_max: 4,
            port_base: 18080,
            device: LocalDevice::Emulated,
            serve_args: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalRaw {
    replicas_min: Option<u32>,
    replicas_max: Option<u32>,
    port_base: Option<u16>,
    device: Option<LocalDevice>,
    serve_args: Option<Vec<String>>,
}

impl TryFrom<LocalRaw> for LocalRehearsal {
    type Error = String;
    fn try_from(r: LocalRaw) -> Result<Self, String> {
        let d = LocalRehearsal::default();
        let l = LocalRehearsal {
            replicas_min: r.replicas_min.unwrap_or(d.replicas_min),
            replicas_max: r.replicas_max.unwrap_or(d.replicas_max),
            port_base: r.port_base.unwrap_or(d.port_base),
            device: r.device.unwrap_or(d.device),
            serve_args: r.serve_args.unwrap_or(d.serve_args),
        };
        if l.serve_args.iter().any(|a| a == "--device" || a.starts_with("--device=")) {
            return Err(
                "serve_args sets `--device` (expected `device = \"emulated\"` or `device = \"cpu\"` in [local] \
instead)"
                    .into(),
            );
        }
        if l.replicas_min == 0 || l.replicas_min > l.replicas_max || l.replicas_max > 64 {
            return Err(format!(
                "replicas_min = {} and replicas_max = {} (expected 1 <= replicas_min <= replicas_max <= 64)",
                l.replicas_min, l.replicas_max
            ));
        }
        if (l.port_base != 0 && l.port_base < 1024) || l.port_base as u32 + l.replicas_max > 65535 {
            return Err(format!(
                "port_base = {} (expected 1024..={} so every replica gets a port, or 0 for ports the OS picks)",
                l.port_base,
                65535 - l.replicas_max
            ));
        }
        Ok(l)
    }
}

/// A stage's offered rate in requests/s: `rate = 40` or `rate = { from = 10, to = 120 }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Constant(f64),
    /// Linear from `from` to `to` over the stage's duration.
    Ramp {
        from: f64,
        to: f64,
    },
}

/// What a stage offers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StageLoad {
    Rate(Rate),
    /// A rate in pods of capacity (`rate = "2.5 pods"`): multiples of what one pod holds
    /// within the SLO, as the console measures it before the stages
    /// ([`Scenario::in_measured_units`] turns it into requests/s).
    PodRate(Rate),
    /// Closed loop with this many workers (the old script's behaviour).
    Concurrency(usize),
    /// WebRTC sessions kept up (`sessions = 4` or `sessions = { from = 2, to = 24 }`).
    Sessions(SessionCount),
}

/// A stage's WebRTC sessions: constant, or a ramp over the stage's duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCount {
    Constant(usize),
    Ramp { from: usize, to: usize },
}

const SESSIONS_FORMS: &str =
    "`sessions = 4`, or a ramp over the stage, `sessions = { from = 2, to = 24 }`, with 0..=1000 sessions";

impl<'de> Deserialize<'de> for SessionCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn count<E: de::Error>(v: i64) -> Result<usize, E> {
            if (0..=SessionPlan::MAX_SESSIONS as i64).contains(&v) {
                Ok(v as usize)
            } else {
                Err(E::custom(format!("{v} sessions is out of range (expected {SESSIONS_FORMS})")))
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = SessionCount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SESSIONS_FORMS)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SessionCount, E> {
                count(v).map(SessionCount::Constant)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SessionCount, E> {
                count(i64::try_from(v).unwrap_or(i64::MAX)).map(SessionCount::Constant)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SessionCount, A::Error> {
                let (mut from, mut to) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    let v: i64 = map.next_value().map_err(|_| {
                        de::Error::custom(format!("`{key}` is not a whole number (expected {SESSIONS_FORMS})"))
                    })?;
                    match key.as_str() {
                        "from" => from = Some(count(v)?),
                        "to" => to = Some(count(v)?),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}` in a sessions ramp (expected `from` and `to`)"
                            )))
                        }
                    }
                }
                match (from, to) {
                    (Some(from), Some(to)) => Ok(SessionCount::Ramp { from, to }),
                    _ => Err(de::Error::custom(format!(
                        "a sessions ramp needs `from` and `to` (expected {SESSIONS_FORMS})"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// How a stage ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Advance {
    /// Move on when `duration` has passed.
    #[default]
    Auto,
    /// Hold the stage's load (its final rate) after `duration` until the presenter moves on.
    Manual,
}

/// What should be true by the end of a stage (shown ✓/✗ by the conductor).
#[derive(Debug, Clone, Copy, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub replicas_at_least: Option<u32>,
    pub replicas_at_most: Option<u32>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub p95_below: Option<Duration>,
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub p95_above: Option<Duration>,
    /// p95 was over this earlier in the run, and is back under it for at least the last
    /// 10 s of the stage, without going over again: the SLO restored under the same load.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub p95_recovers_below: Option<Duration>,
    /// Seconds of the stage with p95 over `p95_recovers_below` (else the SLO's p95), at most:
    /// the whole stage, not its end.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub out_of_slo_at_most: Option<Duration>,
    /// Times the autoscaler lowered its desired count during the stage, at most (0: a
    /// steady load keeps its pods).
    pub scale_downs_at_most: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "StageRaw")]
pub struct Stage {
    pub name: String,
    pub duration: Duration,
    pub load: StageLoad,
    /// The rate as written in pods of capacity, kept after [`Scenario::in_measured_units`]
    /// for the console to show next to the requests/s it became.
    pub pods: Option<Rate>,
    /// Speaker notes: what to say, what to point at.
    pub notes: String,
    pub advance: Advance,
    pub expect: Expect,
}

/// Why a stage has no request-rate plan (yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRatePlan {
    /// Its rate is in pods of capacity and no capacity has been measured yet.
    #[error("stage `{stage}` offers a rate in pods of capacity: it needs one pod's measured capacity (rtc-demo conduct measures it before the stages; `rtc-demo load --pod-rps N` states it)")]
    NeedsCapacity { stage: String },
    /// It ramps WebRTC sessions, not requests.
    #[error("stage `{stage}` ramps WebRTC sessions, not requests (expected `rtc-demo load --scenario` for a kind = \"webrtc\" scenario; the console does not drive WebRTC sessions yet)")]
    Sessions { stage: String },
}

impl Stage {
    /// The engine plan for this stage (a ramp spans the stage's duration); a rate in pods
    /// needs [`Scenario::in_measured_units`] first.
    pub fn plan(&self) -> Result<RatePlan, NoRatePlan> {
        Ok(match self.load {
            StageLoad::Rate(Rate::Constant(rps)) => RatePlan::Constant { rps },
            StageLoad::Rate(Rate::Ramp { from, to }) => RatePlan::Ramp { from, to, over: self.duration },
            StageLoad::Concurrency(workers) => RatePlan::Concurrency { workers },
            StageLoad::PodRate(_) => return Err(NoRatePlan::NeedsCapacity { stage: self.name.clone() }),
            StageLoad::Sessions(_) => return Err(NoRatePlan::Sessions { stage: self.name.clone() }),
        })
    }

    /// The WebRTC engine's plan for a sessions stage (a ramp spans the stage's duration).
    pub fn session_plan(&self) -> Option<SessionPlan> {
        match self.load {
            StageLoad::Sessions(SessionCount::Constant(sessions)) => Some(SessionPlan::Constant { sessions }),
            StageLoad::Sessions(SessionCount::Ramp { from, to }) => {
                Some(SessionPlan::Ramp { from, to, over: self.duration })
            }
            _ => None,
        }
    }

    /// `2.5 pods` or `from 1 to 3 pods` when the scenario wrote the rate in pods.
    pub fn pods_text(&self) -> Option<String> {
        self.pods.map(|r| match r {
            Rate::Constant(p) => format!("{p} pods"),
            Rate::Ramp { from, to } => format!("{from} → {to} pods"),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StageRaw {
    name: String,
    #[serde(deserialize_with = "de_duration")]
    duration: Duration,
    rate: Option<RateSpec>,
    concurrency: Option<u32>,
    sessions: Option<SessionCount>,
    #[serde(default)]
    notes: String,
    #[serde(default)]
    advance: Advance,
    #[serde(default)]
    expect: Expect,
}

impl TryFrom<StageRaw> for Stage {
    type Error = String;
    fn try_from(r: StageRaw) -> Result<Self, String> {
        let given = r.rate.is_some() as u8 + r.concurrency.is_some() as u8 + r.sessions.is_some() as u8;
        if given > 1 {
            return Err(format!(
                "stage `{}` has more than one of `rate`, `concurrency` and `sessions` (expected exactly one of them)",
                r.name
            ));
        }
        let load = match (r.rate, r.concurrency, r.sessions) {
            (Some(RateSpec { rate, unit: RateUnit::PerSecond }), _, _) => StageLoad::Rate(rate),
            (Some(RateSpec { rate, unit: RateUnit::Pods }), _, _) => StageLoad::PodRate(rate),
            (_, Some(c), _) if (1..=100_000).contains(&c) => StageLoad::Concurrency(c as usize),
            (_, Some(c), _) => return Err(format!("stage `{}`: concurrency = {c} (expected 1..=100000)", r.name)),
            (_, _, Some(n)) => StageLoad::Sessions(n),
            (None, None, None) => {
                return Err(format!(
                    "stage `{}` has neither `rate` nor `concurrency` nor `sessions` (expected `rate = 40`, `rate = {{ from = 10, to = 120 }}` or `concurrency = 8`; `rate = 0` for idle; `sessions = 4` with `[request] kind = \"webrtc\"`)",
                    r.name
                ))
            }
        };
        if r.name.trim().is_empty() {
            return Err("a stage with an empty name (expected name = \"...\")".into());
        }
        if r.duration.is_zero() {
            return Err(format!("stage `{}` lasts 0s (expected a positive duration such as 90s)", r.name));
        }
        if let (Some(lo), Some(hi)) = (r.expect.replicas_at_least, r.expect.replicas_at_most) {
            if lo > hi {
                return Err(format!("stage `{}`: replicas_at_least = {lo} > replicas_at_most = {hi}", r.name));
            }
        }
        let pods = match load {
            StageLoad::PodRate(r) => Some(r),
            _ => None,
        };
        Ok(Stage {
            name: r.name,
            duration: r.duration,
            load,
            pods,
            notes: r.notes,
            advance: r.advance,
            expect: r.expect,
        })
    }
}

const RATE_FORMS: &str = "a rate in requests/s (a number >= 0 such as `rate = 40`), in pods of capacity (`rate = \"2.5 pods\"`: multiples of what one pod holds within the SLO, measured before the stages), or a ramp of either (`rate = { from = 10, to = 120 }`, `rate = { from = \"1 pods\", to = \"3 pods\" }`)";

/// Most pods of capacity a stage may ask for.
const MAX_PODS: f64 = 1000.0;

/// How a stage's rate is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateUnit {
    PerSecond,
    Pods,
}

/// A stage's `rate` as written: the numbers and their unit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct RateSpec {
    rate: Rate,
    unit: RateUnit,
}

fn check_rate(v: f64) -> Result<f64, String> {
    if v.is_finite() && (0.0..=1_000_000.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("rate {v} is out of range (expected {RATE_FORMS}, at most 1000000 requests/s)"))
    }
}

/// `"2.5 pods"` → 2.5; `ramp_from` admits `"0 pods"` (a ramp may start from nothing).
fn parse_pods(text: &str, ramp_from: bool) -> Result<f64, String> {
    let bad = |why: &str| format!("rate `{text}` {why} (expected {RATE_FORMS})");
    let t = text.trim();
    let number = t.strip_suffix("pods").or_else(|| t.strip_suffix("pod")).ok_or_else(|| {
        bad(if t.parse::<f64>().is_ok() {
            "is a quoted number: requests/s are written unquoted, pods as \"N pods\""
        } else {
            "is not a rate"
        })
    })?;
    let v: f64 = number.trim().parse().map_err(|_| bad("does not start with a number of pods"))?;
    let low_ok = if ramp_from { v >= 0.0 } else { v > 0.0 };
    if !v.is_finite() || !low_ok || v > MAX_PODS {
        let allowed =
            if ramp_from { "0 to 1000 pods" } else { "more than 0 and at most 1000 pods; for idle, `rate = 0`" };
        return Err(bad(&format!("is out of range: {allowed}")));
    }
    Ok(v)
}

/// One number of a rate: requests/s (a TOML number) or pods (a string).
struct RateNumber {
    value: f64,
    unit: RateUnit,
}

impl<'de> Deserialize<'de> for RateNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RateVisitor { ramp_from: false }).and_then(|s| match s.rate {
            Rate::Constant(value) => Ok(RateNumber { value, unit: s.unit }),
            Rate::Ramp { .. } => Err(de::Error::custom(format!("a ramp inside a ramp (expected {RATE_FORMS})"))),
        })
    }
}

/// The `from` of a ramp, where `"0 pods"` is allowed.
struct RampFrom(RateNumber);

impl<'de> Deserialize<'de> for RampFrom {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RateVisitor { ramp_from: true }).and_then(|s| match s.rate {
            Rate::Constant(value) => Ok(RampFrom(RateNumber { value, unit: s.unit })),
            Rate::Ramp { .. } => Err(de::Error::custom(format!("a ramp inside a ramp (expected {RATE_FORMS})"))),
        })
    }
}

struct RateVisitor {
    ramp_from: bool,
}

impl<'de> Visitor<'de> for RateVisitor {
    type Value = RateSpec;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(RATE_FORMS)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RateSpec, E> {
        self.visit_f64(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RateSpec, E> {
        self.visit_f64(v as f64)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RateSpec, E> {
        check_rate(v).map(|r| RateSpec { rate: Rate::Constant(r), unit: RateUnit::PerSecond }).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RateSpec, E> {
        parse_pods(v, self.ramp_from)
            .map(|p| RateSpec { rate: Rate::Constant(p), unit: RateUnit::Pods })
            .map_err(E::custom)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RateSpec, A::Error> {
        let (mut from, mut to): (Option<RateNumber>, Option<RateNumber>) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "from" => from = Some(map.next_value::<RampFrom>()?.0),
                "to" => to = Some(map.next_value::<RateNumber>()?),
                other => {
                    return Err(de::Error::custom(format!(
                        "unknown key `{other}` in a ramp (expected `from` and `to`)"
                    )))
                }
            }
        }
        match (from, to) {
            (Some(f), Some(t)) if f.unit != t.unit => Err(de::Error::custom(
                "a ramp with `from` and `to` in different units (expected both in requests/s, `{ from = 10, to = 120 }`, or both in pods, `{ from = \"1 pods\", to = \"3 pods\" }`)",
            )),
            (Some(f), Some(t)) => Ok(RateSpec { rate: Rate::Ramp { from: f.value, to: t.value }, unit: f.unit }),
            (None, _) => Err(de::Error::custom("a ramp without `from` (expected `rate = { from = 10, to = 120 }`)")),
            (_, None) => Err(de::Error::custom("a ramp without `to` (expected `rate = { from = 10, to = 120 }`)")),
        }
    }
}

impl<'de> Deserialize<'de> for RateSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RateVisitor { ramp_from: false })
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)
        .map_err(|_| de::Error::custom(format!("not a string (expected {DURATION_FORMS}, quoted)")))?;
    parse_duration(&s).map_err(de::Error::custom)
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    de_duration(d).map(Some)
}

fn de_image<'de, D: Deserializer<'de>>(d: D) -> Result<Option<crate::image_ref::ImageRef>, D::Error> {
    let s = String::deserialize(d)?;
    crate::image_ref::ImageRef::parse(&s).map(Some).map_err(de::Error::custom)
}

/// A DNS-1123 label (namespace names), or with `first_letter` a DNS-1035 label (Service
/// names): at most 63 lower-case letters, digits and '-', starting and ending alphanumeric
/// (k8s.io/apimachinery pkg/util/validation/validation.go, IsDNS1123Label, IsDNS1035Label).
fn is_dns_label(s: &str, first_letter: bool) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let end = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (1..=63).contains(&b.len())
        && b.iter().all(inner)
        && b.first().is_some_and(|c| if first_letter { c.is_ascii_lowercase() } else { end(c) })
        && b.last().is_some_and(end)
}

fn de_service_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    if is_dns_label(&s, true) {
        Ok(Some(s))
    } else {
        Err(de::Error::custom(format!("`{s}` is not a Service name (expected a DNS-1035 label: at most 63 lower-case letters, digits and '-', starting with a letter, e.g. \"prometheus-server\")")))
    }
}

fn de_ingress_from<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IngressPeer>, D::Error> {
    let entries = Vec::<String>::deserialize(d)?;
    entries
        .into_iter()
        .map(|s| {
            if is_dns_label(&s, false) {
                return Ok(IngressPeer::Namespace(s));
            }
            let cidr = s.split_once('/').and_then(|(ip, bits)| {
                let ip: std::net::IpAddr = ip.parse().ok()?;
                let bits: u8 = bits.parse().ok()?;
                (bits <= if ip.is_ipv4() { 32 } else { 128 }).then_some(())
            });
            match cidr {
                Some(()) => Ok(IngressPeer::Cidr(s)),
                None => Err(de::Error::custom(format!("`{s}` is neither a namespace name (a DNS-1123 label, e.g. \"ingress-nginx\") nor a CIDR (e.g. \"10.0.0.0/8\")"))),
            }
        })
        .collect()
}

fn de_positive_usize<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let v = i64::deserialize(d)?;
    if (1..=100_000).contains(&v) {
        Ok(v as usize)
    } else {
        Err(de::Error::custom(format!("{v} is out of range (expected an integer in 1..=100000)")))
    }
}

fn de_pixels<'de, D: Deserializer<'de>>(d: D) -> Result<(u32, u32), D::Error> {
    let s = String::deserialize(d)?;
    let bad = || {
        de::Error::custom(format!("`{s}` is not a frame size (expected \"WxH\" with W and H in 16..=7680 and W*H <= 7680*4320, e.g. \"1280x720\")"))
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?);
    if !(16..=7680).contains(&w) || !(16..=7680).contains(&h) || w as u64 * h as u64 > 7680 * 4320 {
        return Err(bad());
    }
    Ok((w, h))
}

fn de_opt_pixels<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(u32, u32)>, D::Error> {
    de_pixels(d).map(Some)
}

fn de_opt_effects<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    de_effects(d).map(Some)
}

fn de_effects<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    for e in &v {
        if !KNOWN_EFFECTS.contains(&e.as_str()) {
            return Err(de::Error::custom(format!(
                "unknown effect `{e}` (expected some of {})",
                KNOWN_EFFECTS.join(", ")
            )));
        }
    }
    Ok(v)
}

fn de_stages<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Stage>, D::Error> {
    let v = Vec::<Stage>::deserialize(d)?;
    if v.is_empty() {
        return Err(de::Error::custom(
            "no stages (expected at least one [[stages]] table with name, duration and rate)",
        ));
    }
    for (i, s) in v.iter().enumerate() {
        if v[..i].iter().any(|o| o.name == s.name) {
            return Err(de::Error::custom(format!("two stages are named `{}` (expected unique stage names)", s.name)));
        }
    }
    Ok(v)
}

/// A scenario file that could not be read or is not valid.
/// Display: `file:line:column: message (expected …)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based; 0 when the file could not be read at all.
    pub line: usize,
    /// 1-based, in characters; 0 when the file could not be read at all.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for ScenarioError {}

/// Where `key = …` is first written (1-based line and column), or the file's start.
fn key_position(text: &str, key: &str) -> (usize, usize) {
    key_offset(text, key).map_or((1, 1), |offset| line_col(text, offset))
}

/// Byte offset of the first line of `text` that assigns `key` (`key = …`).
fn key_offset(text: &str, key: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('=')) {
            return Some(offset + line.len() - trimmed.len());
        }
        offset += line.len();
    }
    None
}

/// Where a table's own check (`[request]`'s: `codec = "h264"`, `fps` without WebRTC) found
/// fault: toml blames the table's header, the message names the key first, and the key is
/// written in the table's lines (up to the next header).
fn named_key_offset(text: &str, header: std::ops::Range<usize>, message: &str) -> Option<usize> {
    if !text.get(header.clone())?.starts_with('[') {
        return None;
    }
    let key: String = message
        .trim_start_matches("both ")
        .trim_start_matches('`')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if key.is_empty() {
        return None;
    }
    let rest = &text[header.start..];
    let mut end = 0;
    for (i, line) in rest.split_inclusive('\n').enumerate() {
        if i > 0 && line.trim_start().starts_with('[') {
            break;
        }
        end += line.len();
    }
    key_offset(&rest[..end], &key).map(|offset| header.start + offset)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, col)
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            message: format!("cannot read the file: {e} (expected a readable UTF-8 TOML scenario file)"),
        })?;
        Scenario::from_toml(&text, path)
    }

    /// Parses scenario text; `file` only labels errors.
    pub fn from_toml(text: &str, file: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let file = file.as_ref().to_path_buf();
        let scenario = toml::from_str::<Scenario>(text).map_err(|e| {
            let mut message = e.message().trim().replace('\n', " ");
            let offset =
                e.span().map_or(0, |span| named_key_offset(text, span.clone(), &message).unwrap_or(span.start));
            let (line, column) = line_col(text, offset);
            if !message.contains("expected") {
                message
                    .push_str(" (expected a scenario as in scenarios/keynote.toml: name, [request], [[stages]] ...)");
            }
            ScenarioError { file: file.clone(), line, column, message }
        })?;
        // Checks across tables, located at the key they are about.
        let at = |key: &str, message: String| {
            let (line, column) = key_position(text, key);
            ScenarioError { file: file.clone(), line, column, message }
        };
        let webrtc = scenario.request.kind == RequestKind::Webrtc;
        for st in &scenario.stages {
            let (sessions, key) = match st.load {
                StageLoad::Sessions(_) => (true, "sessions"),
                StageLoad::Concurrency(_) => (false, "concurrency"),
                _ => (false, "rate"),
            };
            if sessions && !webrtc {
                return Err(at(key, format!("stage `{}` ramps WebRTC sessions in a scenario of HTTP requests (expected `[request] kind = \"webrtc\"`, or `rate = …` for requests)", st.name)));
            }
            if webrtc && !sessions {
                return Err(at(
                    key,
                    format!("stage `{}` offers `{key}` in a WebRTC scenario (expected {SESSIONS_FORMS})", st.name),
                ));
            }
        }
        if let Some(t) = scenario.thresholds.iter().find(|t| t.metric.is_webrtc() != webrtc) {
            let expected = if webrtc {
                "frame_p95<100ms, frame_loss<1%, session_fail<1%, offer_fail<5% for WebRTC sessions"
            } else {
                "p95<100ms, error_rate<1%, … for HTTP requests; frame_… thresholds need `[request] kind = \"webrtc\"`"
            };
            return Err(at(
                "thresholds",
                format!("threshold `{t}` does not judge this scenario's load (expected {expected})"),
            ));
        }
        if let Some(t) = scenario.request.service_time {
            if t >= scenario.slo.p95 {
                let (line, column) = key_position(text, "service_time");
                return Err(ScenarioError {
                    file,
                    line,
                    column,
                    message: format!(
                        "service_time = {} is not below the SLO's p95 of {} (expected a fraction of it, e.g. a fifth: one frame must fit in the SLO with room to queue)",
                        rtc_service::duration::format_duration(t),
                        rtc_service::duration::format_duration(scenario.slo.p95)
                    ),
                });
            }
        }
        Ok(scenario)
    }

    /// Does any stage write its rate in pods of capacity, or the request its service time?
    /// Then one pod's capacity must be measured before the stages.
    pub fn needs_capacity(&self) -> bool {
        self.request.service_time.is_some() || self.stages.iter().any(|s| s.pods.is_some())
    }

    /// This scenario in measured units: with `pod_rps`, every rate in pods becomes
    /// `pods × pod_rps` requests/s (the pods as written stay in [`Stage::pods`]); `iters`
    /// (when given) replaces the request's, as sized to its `service_time`.
    pub fn in_measured_units(&self, pod_rps: Option<f64>, iters: Option<u32>) -> Scenario {
        let mut s = self.clone();
        if let Some(i) = iters {
            s.request.iters = i;
        }
        let Some(pod_rps) = pod_rps else { return s };
        for st in &mut s.stages {
            if let StageLoad::PodRate(r) = st.load {
                let rps = |p: f64| (p * pod_rps * 10.0).round() / 10.0;
                st.load = StageLoad::Rate(match r {
                    Rate::Constant(p) => Rate::Constant(rps(p)),
                    Rate::Ramp { from, to } => Rate::Ramp { from: rps(from), to: rps(to) },
                });
            }
        }
        s
    }

    /// The stage called `name`, or an error listing the names there are.
    pub fn stage(&self, name: &str) -> Result<&Stage, NoSuchStage> {
        self.stages.iter().find(|s| s.name == name).ok_or_else(|| NoSuchStage {
            scenario: self.name.clone(),
            stage: name.to_string(),
            stages: self.stages.iter().map(|s| s.name.clone()).collect(),
        })
    }

    /// Sum of the stages' durations.
    pub fn total_duration(&self) -> Duration {
        self.stages.iter().map(|s| s.duration).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let t = "a = 1\nµb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 8), (2, 2));
    }

    #[test]
    fn a_missing_stage_names_the_ones_there_are() {
        let s = Scenario::load(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/rehearsal.toml")).unwrap();
        assert_eq!(s.stage("peak").map(|st| st.name.as_str()), Ok("peak"));
        let e = s.stage("finale").unwrap_err();
        assert_eq!(e.stage, "finale");
        let text = e.to_string();
        assert!(
            text.contains("no stage `finale`") && text.contains("expected one of: idle, ramp, climb, peak"),
            "{text}"
        );
    }

    #[test]
    fn request_url() {
        let r = TargetRequest::default();
        assert_eq!(
            r.url_for("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080/process?pixels=1280x720&iters=5&effects=blur,translate,color"
        );
        assert_eq!(
            r.url_for("http://h:1/x/y"),
            "http://h:1/process?pixels=1280x720&iters=5&effects=blur,translate,color"
        );
    }
}
