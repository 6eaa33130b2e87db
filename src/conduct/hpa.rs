//! The Kubernetes HorizontalPodAutoscaler (autoscaling/v2) algorithm, as a pure function of
//! its inputs: the local rehearsal backend scales its `rtc-demo serve` children with it, so
//! a rehearsal on a laptop behaves like the cluster does with the same manifest.
//!
//! What is implemented (from the Kubernetes documentation and `pkg/controller/podautoscaler`):
//! - desired = ceil(current × metric / target), nothing done while |ratio − 1| ≤ tolerance (0.1);
//! - several metrics: each proposes a count and the largest wins (`computeReplicasForMetrics`
//!   in `horizontal.go`), so scale-down needs every metric to agree; when some metrics cannot
//!   be read the HPA scales up on the others but never down, and when none can it keeps the
//!   count;
//! - object/external `Value` metrics scale the *ready* pod count (not-ready pods do not count);
//!   per-pod metrics (`Pods`, `AverageValue`) set not-ready pods and pods without metrics aside,
//!   then count them as 0 % (scale-up) or 100 % (scale-down) and give up if that reverses the
//!   direction or falls within the tolerance;
//! - stabilisation windows: the recommendation is the *min* of the recommendations over the
//!   scale-up window and the *max* over the scale-down window (relative to the current count);
//! - rate policies `Pods` and `Percent` with `periodSeconds`, combined by `selectPolicy`
//!   `Max` | `Min` | `Disabled`, counted from the scale events within each period;
//! - `minReplicas`/`maxReplicas` clamps (also when the current count is already outside them),
//!   and the conditions `AbleToScale`, `ScalingActive`, `ScalingLimited` with their reasons.
//!
//! Time is passed in (seconds since any fixed origin), so tests are deterministic.
//! [`HpaSpec::from_yaml`] reads a standard `HorizontalPodAutoscaler` manifest.
use std::fmt;

use k8s_openapi::api::autoscaling::v2::{HPAScalingRules, HorizontalPodAutoscaler, MetricSpec};

/// Which way a policy list applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PolicyType {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScalingPolicy {
    pub kind: PolicyType,
    pub value: u32,
    pub period_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScalingRules {
    pub stabilization_window_seconds: u32,
    pub select_policy: SelectPolicy,
    pub policies: Vec<ScalingPolicy>,
}

impl ScalingRules {
    /// Kubernetes' default for scale-up: no window, max of (4 pods, 100 %) per 15 s.
    pub fn default_up() -> Self {
        ScalingRules {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![
                ScalingPolicy { kind: PolicyType::Pods, value: 4, period_seconds: 15 },
                ScalingPolicy { kind: PolicyType::Percent, value: 100, period_seconds: 15 },
            ],
        }
    }
    /// Kubernetes' default for scale-down: 300 s window, 100 % per 15 s.
    pub fn default_down() -> Self {
        ScalingRules {
            stabilization_window_seconds: 300,
            select_policy: SelectPolicy::Max,
            policies: vec![ScalingPolicy { kind: PolicyType::Percent, value: 100, period_seconds: 15 }],
        }
    }
}

/// How the metric is compared with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MetricKind {
    /// `Object`/`External` metric with a `Value` target: one number for the whole workload.
    Value,
    /// `Pods` metric or an `AverageValue`/`Utilization` target: a per-pod average.
    AverageValue,
}

/// One entry of `spec.metrics`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MetricTarget {
    /// Metric name as written in the manifest (e.g. `rtc_request_latency_p95_seconds`).
    pub name: String,
    pub kind: MetricKind,
    /// The target in the metric's unit (seconds for latency: `100m` → 0.1).
    pub target: f64,
    /// How the controller names it in events: `pods metric NAME`, `Service metric NAME`
    /// (`horizontal.go`, `computeReplicasForMetric`'s metricNameProposal).
    pub described: String,
}

#[cfg(test)]
impl MetricTarget {
    /// A `Pods` metric with an `AverageValue` target, as the tests write one.
    pub fn pods(name: &str, target: f64) -> Self {
        MetricTarget {
            name: name.into(),
            kind: MetricKind::AverageValue,
            target,
            described: format!("pods metric {name}"),
        }
    }
}

/// The autoscaler settings of one HorizontalPodAutoscaler.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HpaSpec {
    pub name: String,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// `spec.metrics`, in the manifest's order (never empty).
    pub metrics: Vec<MetricTarget>,
    pub tolerance: f64,
    pub scale_up: ScalingRules,
    pub scale_down: ScalingRules,
}

impl HpaSpec {
    /// The settings SPEC §5 gives (min 2, max 10, target p95 100 ms, windows 30 s / 120 s):
    /// what the local backend uses when the manifest is not there.
    pub fn slo_default() -> Self {
        HpaSpec {
            name: "gpu-media".into(),
            min_replicas: 2,
            max_replicas: 10,
            metrics: vec![MetricTarget {
                name: "app_request_latency_p95_seconds".into(),
                kind: MetricKind::Value,
                target: 0.1,
                described: "Service metric app_request_latency_p95_seconds".into(),
            }],
            tolerance: 0.1,
            scale_up: ScalingRules { stabilization_window_seconds: 30, ..ScalingRules::default_up() },
            scale_down: ScalingRules { stabilization_window_seconds: 120, ..ScalingRules::default_down() },
        }
    }

    /// The metrics' names, `a + b`, as the report and the HPA panel title name them.
    pub fn metric_names(&self) -> String {
        self.metrics.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(" + ")
    }

    /// One line for people: `HPA gpu-media: 2–10 replicas, rtc_worker_utilization
    /// (AverageValue) target 0.7 + …, tolerance 10 %, windows up 30 s / down 120 s`.
    pub fn summary(&self) -> String {
        let metrics: Vec<String> = self
            .metrics
            .iter()
            .map(|m| {
                let kind = match m.kind {
                    MetricKind::Value => "Value",
                    MetricKind::AverageValue => "AverageValue",
                };
                format!("{} ({kind}) target {}", m.name, m.target)
            })
            .collect();
        format!(
            "HPA {}: {}–{} replicas, {}, tolerance {} %, windows up {} s / down {} s",
            self.name,
            self.min_replicas,
            self.max_replicas,
            metrics.join(" + "),
            (self.tolerance * 100.0).round(),
            self.scale_up.stabilization_window_seconds,
            self.scale_down.stabilization_window_seconds
        )
    }

    /// Reads the first `HorizontalPodAutoscaler` document of a YAML file.
    pub fn load(path: &std::path::Path) -> Result<Self, HpaError> {
        let text = std::fs::read_to_string(path).map_err(|e| HpaError::Read(e.to_string()))?;
        Self::from_yaml(&text)
    }

    /// Parses a standard autoscaling/v2 HorizontalPodAutoscaler (the first such document)
    /// into k8s-openapi's type, then takes the settings the algorithm uses.
    pub fn from_yaml(text: &str) -> Result<Self, HpaError> {
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(text).map_err(|e| HpaError::Yaml(e.to_string()))?;
        let doc = docs
            .into_iter()
            .find(|d| d.get("kind").and_then(|k| k.as_str()) == Some("HorizontalPodAutoscaler"))
            .ok_or(HpaError::NotFound)?;
        let hpa: HorizontalPodAutoscaler = serde_json::from_value(doc)
            .map_err(|e| HpaError::Invalid { field: "spec".into(), problem: e.to_string() })?;
        let bad = |field: &str, problem: String| HpaError::Invalid { field: field.into(), problem };
        let spec = hpa.spec.ok_or_else(|| bad("spec", "missing".into()))?;
        let min_replicas = spec.min_replicas.unwrap_or(1);
        let max_replicas = spec.max_replicas;
        if min_replicas < 1 || max_replicas < min_replicas {
            return Err(bad(
                "spec.minReplicas/maxReplicas",
                format!("{min_replicas} / {max_replicas}: need 1 ≤ minReplicas ≤ maxReplicas"),
            ));
        }
        let list = spec.metrics.as_deref().unwrap_or_default();
        if list.is_empty() {
            return Err(bad("spec.metrics", "expected a non-empty list".into()));
        }
        let metrics = list.iter().enumerate().map(|(i, m)| metric_target(i, m)).collect::<Result<Vec<_>, _>>()?;
        let behavior = spec.behavior.as_ref();
        let up = behavior.and_then(|b| b.scale_up.as_ref());
        let scale_up = rules(up, "spec.behavior.scaleUp", ScalingRules::default_up())?;
        let scale_down = rules(
            behavior.and_then(|b| b.scale_down.as_ref()),
            "spec.behavior.scaleDown",
            ScalingRules::default_down(),
        )?;
        // Kubernetes 1.33+ (alpha): behavior.scaleUp.tolerance; read it when present.
        let tolerance = match up.and_then(|r| r.tolerance.as_ref()) {
            Some(q) => quantity(&q.0).ok_or_else(|| bad("spec.behavior.scaleUp.tolerance", not_a_quantity(&q.0)))?,
            None => 0.1,
        };
        Ok(HpaSpec {
            name: hpa.metadata.name.unwrap_or_else(|| "hpa".into()),
            min_replicas: min_replicas as u32,
            max_replicas: max_replicas as u32,
            metrics,
            tolerance,
            scale_up,
            scale_down,
        })
    }
}

/// Why a HorizontalPodAutoscaler manifest cannot be used; names the field and what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HpaError {
    #[error("cannot read: {0}")]
    Read(String),
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("no document with kind: HorizontalPodAutoscaler")]
    NotFound,
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// What `rtc-demo check --hpa` (the helper that read the manifest) said was wrong.
    #[error("{0}")]
    Reported(String),
}

/// `spec.metrics[i]` as the algorithm reads it; errors name the field and what is allowed.
fn metric_target(i: usize, m: &MetricSpec) -> Result<MetricTarget, HpaError> {
    let bad = |field: &str, problem: String| HpaError::Invalid { field: field.into(), problem };
    let at = format!("spec.metrics[{i}]");
    let (key, name, target, described) = match m.type_.as_str() {
        "Object" => m.object.as_ref().map(|o| {
            let n = o.metric.name.clone();
            ("object", n.clone(), &o.target, format!("{} metric {n}", o.described_object.kind))
        }),
        "Pods" => m.pods.as_ref().map(|o| {
            let n = o.metric.name.clone();
            ("pods", n.clone(), &o.target, format!("pods metric {n}"))
        }),
        "External" => m.external.as_ref().map(|o| {
            let n = o.metric.name.clone();
            ("external", n.clone(), &o.target, format!("external metric {n}"))
        }),
        "Resource" => {
            m.resource.as_ref().map(|o| ("resource", o.name.clone(), &o.target, format!("{} resource", o.name)))
        }
        "ContainerResource" => m
            .container_resource
            .as_ref()
            .map(|o| ("containerResource", o.name.clone(), &o.target, format!("{} container resource", o.name))),
        other => {
            return Err(bad(
                &format!("{at}.type"),
                format!("unknown {other:?} (allowed: Object, Pods, External, Resource, ContainerResource)"),
            ))
        }
    }
    .ok_or_else(|| bad(&at, format!("type {} without its {} block", m.type_, m.type_)))?;
    let (kind, field, value) = match target.type_.as_str() {
        "Value" => (
            if m.type_ == "Pods" { MetricKind::AverageValue } else { MetricKind::Value },
            "value",
            target.value.as_ref().map(|q| q.0.clone()),
        ),
        "AverageValue" => {
            (MetricKind::AverageValue, "averageValue", target.average_value.as_ref().map(|q| q.0.clone()))
        }
        "Utilization" => {
            (MetricKind::AverageValue, "averageUtilization", target.average_utilization.map(|u| u.to_string()))
        }
        other => {
            return Err(bad(
                &format!("{at}.{key}.target.type"),
                format!("unknown {other:?} (allowed: Value, AverageValue, Utilization)"),
            ))
        }
    };
    let field = format!("{at}.{key}.target.{field}");
    let value = value.ok_or_else(|| bad(&field, "missing".into()))?;
    let target = quantity(&value).ok_or_else(|| bad(&field, not_a_quantity(&value)))?;
    if target.is_nan() || target <= 0.0 {
        return Err(bad(&field, "must be > 0".into()));
    }
    Ok(MetricTarget { name, kind, target, described })
}

fn not_a_quantity(s: &str) -> String {
    format!("{s:?} is not a quantity (examples: 100m, 0.1, 2, 500Mi)")
}

fn rules(v: Option<&HPAScalingRules>, what: &str, default: ScalingRules) -> Result<ScalingRules, HpaError> {
    let bad = |field: String, problem: String| HpaError::Invalid { field, problem };
    let Some(v) = v else { return Ok(default) };
    let mut r = default;
    if let Some(w) = v.stabilization_window_seconds {
        if !(0..=3600).contains(&w) {
            return Err(bad(format!("{what}.stabilizationWindowSeconds"), format!("{w}: must be 0..=3600")));
        }
        r.stabilization_window_seconds = w as u32;
    }
    if let Some(s) = &v.select_policy {
        r.select_policy = match s.as_str() {
            "Max" => SelectPolicy::Max,
            "Min" => SelectPolicy::Min,
            "Disabled" => SelectPolicy::Disabled,
            other => {
                return Err(bad(format!("{what}.selectPolicy"), format!("got {other:?}, allowed: Max, Min, Disabled")))
            }
        };
    }
    if let Some(ps) = &v.policies {
        let mut out = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            let kind = match p.type_.as_str() {
                "Pods" => PolicyType::Pods,
                "Percent" => PolicyType::Percent,
                other => {
                    return Err(bad(
                        format!("{what}.policies[{i}].type"),
                        format!("got {other:?}, allowed: Pods, Percent"),
                    ))
                }
            };
            if p.value <= 0 || !(1..=1800).contains(&p.period_seconds) {
                return Err(bad(
                    format!("{what}.policies[{i}]"),
                    "value must be > 0 and periodSeconds 1..=1800".into(),
                ));
            }
            out.push(ScalingPolicy { kind, value: p.value as u32, period_seconds: p.period_seconds as u32 });
        }
        r.policies = out;
    }
    Ok(r)
}

/// A Kubernetes quantity as a number: `100m` → 0.1, `1.5` → 1.5, `2k` → 2000, `1Ki` → 1024,
/// `2E` → 2·10¹⁸ (the suffixes of apimachinery's `resource.Quantity`). The one parser the
/// console uses, for HPA targets and for the cluster's GPU counts alike.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E'))
        .unwrap_or(q.len());
    // `e` may be an exponent (1e3) or nothing else; suffixes never start with e/E except "E" (exa).
    let (num, suffix) = q.split_at(split);
    let (num, suffix) = if suffix.is_empty() && (num.ends_with('E') || num.ends_with('e')) && num.len() > 1 {
        (&num[..num.len() - 1], &q[num.len() - 1..])
    } else {
        (num, suffix)
    };
    let x: f64 = num.parse().ok()?;
    Some(rtc_service::quantity::scale(suffix)?.apply(x)).filter(|v| v.is_finite())
}

/// The local autoscaler's metric: p95 through the same dead band as the cluster's PromQL.
/// Between 50 ms and 100 ms it counts as exactly the target (no change); otherwise measured.
pub fn dead_band_p95(p95_s: f64, target_s: f64) -> f64 {
    if (0.05..=0.1).contains(&p95_s) {
        target_s
    } else {
        p95_s
    }
}

/// One pod's sample for per-pod metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodSample {
    pub ready: bool,
    /// None: the metric is missing for this pod.
    pub value: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricInput {
    /// One value for the whole workload (Object/External `Value`); None: the query failed.
    Value(Option<f64>),
    /// Per-pod values (Pods metrics / `AverageValue`), one entry per existing pod.
    PerPod(Vec<PodSample>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct HpaInput {
    pub now_s: f64,
    /// Replicas in the scale subresource (pods that exist or are being started).
    pub current_replicas: u32,
    pub ready_replicas: u32,
    /// One reading per `spec.metrics` entry, in the same order.
    pub metrics: Vec<MetricInput>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={} {}", self.kind, if self.status { "True" } else { "False" }, self.reason)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HpaDecision {
    /// What the replica count should become now.
    pub desired: u32,
    /// The metric-only recommendation (before windows, policies and clamps).
    pub recommended: u32,
    /// Per metric, in the spec's order: what was read and what it proposed.
    pub metrics: Vec<MetricReading>,
    pub conditions: Vec<Condition>,
    /// Why the count changed (for the SuccessfulRescale event), if it did.
    pub rescale_reason: Option<String>,
}

/// One metric's part in a decision.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricReading {
    /// The value used (after missing/not-ready adjustments for per-pod metrics); None: not read.
    pub value: Option<f64>,
    pub ratio: Option<f64>,
    /// The replica count this metric alone asks for.
    pub proposal: Option<u32>,
}

/// The controller's memory: recommendations and scale events, as the kube-controller keeps them.
#[derive(Debug, Clone)]
pub struct HpaController {
    pub spec: HpaSpec,
    recommendations: Vec<(f64, u32)>,
    up_events: Vec<(f64, u32)>,
    down_events: Vec<(f64, u32)>,
}

impl HpaController {
    pub fn new(spec: HpaSpec) -> Self {
        HpaController { spec, recommendations: Vec::new(), up_events: Vec::new(), down_events: Vec::new() }
    }

    /// The metric-based recommendation (`replica_calculator.go`). Returns (replicas, value, ratio)
    /// or None when no metric could be read.
    pub fn recommend(&self, metric: usize, input: &HpaInput) -> Option<(u32, f64, f64)> {
        let current = input.current_replicas;
        let target = self.spec.metrics.get(metric)?.target;
        let tol = self.spec.tolerance;
        match input.metrics.get(metric)? {
            MetricInput::Value(None) => None,
            MetricInput::Value(Some(v)) => {
                let v = if v.is_finite() { *v } else { 0.0 };
                let ratio = v / target;
                if current == 0 {
                    return Some((ratio.ceil() as u32, v, ratio));
                }
                if (1.0 - ratio).abs() <= tol {
                    return Some((current, v, ratio));
                }
                let ready = input.ready_replicas.min(current);
                Some((ceil_u32(ratio * ready as f64), v, ratio))
            }
            MetricInput::PerPod(pods) => {
                let with: Vec<f64> = pods.iter().filter(|p| p.ready).filter_map(|p| p.value).collect();
                if with.is_empty() {
                    return None;
                }
                let missing = pods.iter().filter(|p| p.ready && p.value.is_none()).count();
                let unready = pods.iter().filter(|p| !p.ready).count();
                let sum: f64 = with.iter().sum();
                let n = with.len() as f64;
                let ratio = sum / n / target;
                let scale_up = ratio > 1.0;
                let unready_matter = unready > 0 && scale_up;
                if !unready_matter && missing == 0 {
                    if (1.0 - ratio).abs() <= tol {
                        return Some((current, sum / n, ratio));
                    }
                    return Some((ceil_u32(ratio * n), sum / n, ratio));
                }
                // Conservative recount: missing pods at 100 % for scale-down, 0 % for scale-up;
                // not-ready pods at 0 % when scaling up.
                let mut total = sum;
                let mut count = n;
                if missing > 0 {
                    if !scale_up {
                        total += target * missing as f64;
                    }
                    count += missing as f64;
                }
                if unready_matter {
                    count += unready as f64;
                }
                let new_ratio = total / count / target;
                if (1.0 - new_ratio).abs() <= tol
                    || (ratio < 1.0 && new_ratio > 1.0)
                    || (ratio > 1.0 && new_ratio < 1.0)
                {
                    return Some((current, total / count, new_ratio));
                }
                let new = ceil_u32(new_ratio * count);
                if (new_ratio < 1.0 && new > current) || (new_ratio > 1.0 && new < current) {
                    return Some((current, total / count, new_ratio));
                }
                Some((new, total / count, new_ratio))
            }
        }
    }

    /// One sync of the controller: what the replica count becomes. Records the rescale (the
    /// caller is expected to apply `desired`).
    pub fn reconcile(&mut self, input: &HpaInput) -> HpaDecision {
        let now = input.now_s;
        let current = input.current_replicas;
        let (min, max) = (self.spec.min_replicas, self.spec.max_replicas);
        let mut conditions = vec![Condition {
            kind: "AbleToScale",
            status: true,
            reason: "ReadyForNewScale",
            message: "recommended size matches current size".into(),
        }];
        let readings: Vec<Option<(u32, f64, f64)>> =
            (0..self.spec.metrics.len()).map(|i| self.recommend(i, input)).collect();
        let metrics: Vec<MetricReading> = readings
            .iter()
            .map(|r| MetricReading { value: r.map(|m| m.1), ratio: r.map(|m| m.2), proposal: r.map(|m| m.0) })
            .collect();
        // `computeReplicasForMetrics`: the largest proposal, the first metric on a tie.
        let mut best: Option<(usize, u32)> = None;
        for (i, r) in readings.iter().enumerate() {
            if let Some((rec, _, _)) = r {
                if best.is_none_or(|(_, b)| *rec > b) {
                    best = Some((i, *rec));
                }
            }
        }
        let invalid = readings.iter().position(Option::is_none);
        let (desired, recommended, reason_text, limit);
        if current == 0 && min > 0 {
            conditions.push(Condition {
                kind: "ScalingActive",
                status: false,
                reason: "ScalingDisabled",
                message: "scaling is disabled since the replica count of the target is zero".into(),
            });
            return HpaDecision { desired: 0, recommended: 0, metrics, conditions, rescale_reason: None };
        } else if current > max {
            desired = max;
            recommended = max;
            reason_text = "Current number of replicas above Spec.MaxReplicas".to_string();
            limit = None;
        } else if current < min {
            desired = min;
            recommended = min;
            reason_text = "Current number of replicas below Spec.MinReplicas".to_string();
            limit = None;
        } else if let Some((i, rec)) = best.filter(|&(_, rec)| invalid.is_none() || rec >= current) {
            // Some metrics unreadable: scale up on the others, never down (`horizontal.go`:
            // "some are invalid and we would scale down, return an error").
            recommended = rec;
            let stabilized = self.stabilize(now, current, rec);
            let (d, why) = self.apply_rate_limits(now, current, stabilized);
            desired = d;
            limit = Some(why);
            reason_text = if rec > current {
                format!("{} above target", self.spec.metrics[i].described)
            } else {
                "All metrics below target".to_string()
            };
        } else {
            let m = &self.spec.metrics[invalid.unwrap_or(0)];
            conditions.push(Condition {
                kind: "ScalingActive",
                status: false,
                reason: match m.kind {
                    MetricKind::Value => "FailedGetObjectMetric",
                    MetricKind::AverageValue => "FailedGetPodsMetric",
                },
                message: format!("unable to get metric {}", m.name),
            });
            return HpaDecision { desired: current, recommended: current, metrics, conditions, rescale_reason: None };
        }
        conditions.push(Condition {
            kind: "ScalingActive",
            status: true,
            reason: "ValidMetricFound",
            message: format!(
                "the HPA was able to successfully calculate a replica count from {}",
                self.spec.metrics[best.map_or(0, |b| b.0)].described
            ),
        });
        let (limited, why) = match limit {
            Some(why) => (why != "DesiredWithinRange", why),
            None => (true, if current > max { "TooManyReplicas" } else { "TooFewReplicas" }),
        };
        conditions.push(Condition {
            kind: "ScalingLimited",
            status: limited,
            reason: why,
            message: match why {
                "TooManyReplicas" => "the desired replica count is more than the maximum replica count".into(),
                "TooFewReplicas" => "the desired replica count is less than the minimum replica count".into(),
                "ScaleUpLimit" => "the desired replica count is increasing faster than the maximum scale rate".into(),
                "ScaleDownLimit" => "the desired replica count is decreasing faster than the maximum scale rate".into(),
                _ => "the desired count is within the acceptable range".into(),
            },
        });
        let mut rescale_reason = None;
        if desired != current {
            conditions[0].reason = "SucceededRescale";
            conditions[0].message = format!("the HPA controller was able to update the target scale to {desired}");
            rescale_reason = Some(reason_text);
            if desired > current {
                self.up_events.push((now, desired - current));
            } else {
                self.down_events.push((now, current - desired));
            }
            let keep = self
                .spec
                .scale_up
                .policies
                .iter()
                .chain(self.spec.scale_down.policies.iter())
                .map(|p| p.period_seconds)
                .max()
                .unwrap_or(0) as f64;
            self.up_events.retain(|e| e.0 > now - keep - 1.0);
            self.down_events.retain(|e| e.0 > now - keep - 1.0);
        }
        HpaDecision { desired, recommended, metrics, conditions, rescale_reason }
    }

    /// `stabilizeRecommendationWithBehaviors`.
    fn stabilize(&mut self, now: f64, current: u32, desired: u32) -> u32 {
        let up_cutoff = now - self.spec.scale_up.stabilization_window_seconds as f64;
        let down_cutoff = now - self.spec.scale_down.stabilization_window_seconds as f64;
        let mut up = desired;
        let mut down = desired;
        for &(t, r) in &self.recommendations {
            if t > up_cutoff {
                up = up.min(r);
            }
            if t > down_cutoff {
                down = down.max(r);
            }
        }
        let mut rec = current;
        if rec < up {
            rec = up;
        }
        if rec > down {
            rec = down;
        }
        let longest =
            self.spec.scale_up.stabilization_window_seconds.max(self.spec.scale_down.stabilization_window_seconds)
                as f64;
        self.recommendations.retain(|&(t, _)| t > now - longest);
        self.recommendations.push((now, desired));
        rec
    }

    fn change_in_period(events: &[(f64, u32)], now: f64, period: u32) -> i64 {
        let cutoff = now - period as f64;
        events.iter().filter(|e| e.0 > cutoff).map(|e| e.1 as i64).sum()
    }

    /// `convertDesiredReplicasWithBehaviorRate`: (replicas, ScalingLimited reason).
    fn apply_rate_limits(&self, now: f64, current: u32, desired: u32) -> (u32, &'static str) {
        let (min, max) = (self.spec.min_replicas as i64, self.spec.max_replicas as i64);
        let cur = current as i64;
        let d = desired as i64;
        if d > cur {
            let mut up_limit = self.scale_up_limit(now, cur);
            if up_limit < cur {
                up_limit = cur;
            }
            let (allowed, why) = if max > up_limit { (up_limit, "ScaleUpLimit") } else { (max, "TooManyReplicas") };
            if d > allowed {
                return (allowed as u32, why);
            }
        } else if d < cur {
            let mut down_limit = self.scale_down_limit(now, cur);
            if down_limit > cur {
                down_limit = cur;
            }
            let (allowed, why) =
                if min < down_limit { (down_limit, "ScaleDownLimit") } else { (min, "TooFewReplicas") };
            if d < allowed {
                return (allowed as u32, why);
            }
        }
        (d as u32, "DesiredWithinRange")
    }

    fn scale_up_limit(&self, now: f64, cur: i64) -> i64 {
        let rules = &self.spec.scale_up;
        let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select_policy {
            SelectPolicy::Disabled => return cur,
            SelectPolicy::Min => (i64::MAX, std::cmp::min),
            SelectPolicy::Max => (i64::MIN, std::cmp::max),
        };
        for p in &rules.policies {
            let added = Self::change_in_period(&self.up_events, now, p.period_seconds);
            let deleted = Self::change_in_period(&self.down_events, now, p.period_seconds);
            let start = cur - added + deleted;
            let proposed = match p.kind {
                PolicyType::Pods => start + p.value as i64,
                PolicyType::Percent => (start as f64 * (1.0 + p.value as f64 / 100.0)).ceil() as i64,
            };
            result = pick(result, proposed);
        }
        if rules.policies.is_empty() {
            return cur;
        }
        result
    }

    fn scale_down_limit(&self, now: f64, cur: i64) -> i64 {
        let rules = &self.spec.scale_down;
        let (mut result, pick): (i64, fn(i64, i64) -> i64) = match rules.select_policy {
            SelectPolicy::Disabled => return cur,
            SelectPolicy::Min => (i64::MIN, std::cmp::max),
            SelectPolicy::Max => (i64::MAX, std::cmp::min),
        };
        for p in &rules.policies {
            let added = Self::change_in_period(&self.up_events, now, p.period_seconds);
            let deleted = Self::change_in_period(&self.down_events, now, p.period_seconds);
            let start = cur - added + deleted;
            let proposed = match p.kind {
                PolicyType::Pods => start - p.value as i64,
                PolicyType::Percent => (start as f64 * (1.0 - p.value as f64 / 100.0)) as i64,
            };
            result = pick(result, proposed);
        }
        if rules.policies.is_empty() {
            return cur;
        }
        result
    }
}

fn ceil_u32(x: f64) -> u32 {
    if !x.is_finite() || x <= 0.0 {
        0
    } else {
        x.ceil().min(u32::MAX as f64) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HpaSpec {
        // Policies generous enough not to interfere unless a test sets them.
        HpaSpec {
            name: "t".into(),
            min_replicas: 1,
            max_replicas: 100,
            metrics: vec![MetricTarget {
                name: "m".into(),
                kind: MetricKind::Value,
                target: 100.0,
                described: "Service metric m".into(),
            }],
            tolerance: 0.1,
            scale_up: ScalingRules {
                stabilization_window_seconds: 0,
                select_policy: SelectPolicy::Max,
                policies: vec![ScalingPolicy { kind: PolicyType::Pods, value: 1000, period_seconds: 15 }],
            },
            scale_down: ScalingRules {
                stabilization_window_seconds: 0,
                select_policy: SelectPolicy::Max,
                policies: vec![ScalingPolicy { kind: PolicyType::Percent, value: 100, period_seconds: 15 }],
            },
        }
    }
    fn val(now: f64, cur: u32, v: f64) -> HpaInput {
        HpaInput { now_s: now, current_replicas: cur, ready_replicas: cur, metrics: vec![MetricInput::Value(Some(v))] }
    }

    #[test]
    fn docs_example_ratio() {
        // Docs: current 200m, desired 100m → replicas double; 50m → halve.
        let mut c = HpaController::new(spec());
        assert_eq!(c.reconcile(&val(0.0, 4, 200.0)).desired, 8);
        let mut c = HpaController::new(spec());
        assert_eq!(c.reconcile(&val(0.0, 4, 50.0)).desired, 2);
        // ceil: 3 × 1.5 = 4.5 → 5
        let mut c = HpaController::new(spec());
        assert_eq!(c.reconcile(&val(0.0, 3, 150.0)).desired, 5);
    }

    #[test]
    fn tolerance_band_keeps_count() {
        let mut c = HpaController::new(spec());
        // (1.0 - 1.1 is 0.10000000000000009 in float64, as in the controller: use 1.09/0.91)
        assert_eq!(c.reconcile(&val(0.0, 4, 109.0)).desired, 4, "ratio 1.09 is within 0.1");
        assert_eq!(c.reconcile(&val(1.0, 4, 91.0)).desired, 4, "ratio 0.91 is within 0.1");
        assert_eq!(c.reconcile(&val(2.0, 4, 111.0)).desired, 5, "ratio 1.11 is outside");
        let mut c = HpaController::new(spec());
        assert_eq!(c.reconcile(&val(0.0, 10, 89.0)).desired, 9);
    }

    #[test]
    fn dead_band_counts_as_target() {
        assert_eq!(dead_band_p95(0.07, 0.1), 0.1);
        assert_eq!(dead_band_p95(0.05, 0.1), 0.1);
        assert_eq!(dead_band_p95(0.1, 0.1), 0.1);
        assert_eq!(dead_band_p95(0.049, 0.1), 0.049);
        assert_eq!(dead_band_p95(0.2, 0.1), 0.2);
        let mut s = spec();
        s.metrics[0].target = 0.1;
        let mut c = HpaController::new(s);
        assert_eq!(c.reconcile(&val(0.0, 4, dead_band_p95(0.06, 0.1))).desired, 4);
    }

    #[test]
    fn min_max_clamps() {
        let mut s = spec();
        s.min_replicas = 2;
        s.max_replicas = 10;
        let mut c = HpaController::new(s.clone());
        let d = c.reconcile(&val(0.0, 4, 1000.0));
        assert_eq!(d.desired, 10);
        assert!(d.conditions.iter().any(|c| c.kind == "ScalingLimited" && c.status && c.reason == "TooManyReplicas"));
        let mut c = HpaController::new(s.clone());
        let d = c.reconcile(&val(0.0, 4, 0.0));
        assert_eq!(d.desired, 2);
        assert!(d.conditions.iter().any(|c| c.reason == "TooFewReplicas"));
        // Already outside the range: brought back regardless of the metric.
        let mut c = HpaController::new(s.clone());
        assert_eq!(c.reconcile(&val(0.0, 12, 100.0)).desired, 10);
        let mut c = HpaController::new(s.clone());
        assert_eq!(c.reconcile(&val(0.0, 1, 100.0)).desired, 2);
        // Zero replicas with min > 0: autoscaling disabled.
        let mut c = HpaController::new(s);
        let d = c.reconcile(&val(0.0, 0, 500.0));
        assert_eq!(d.desired, 0);
        assert!(d.conditions.iter().any(|c| c.reason == "ScalingDisabled"));
    }

    #[test]
    fn scale_down_window_takes_max() {
        let mut s = spec();
        s.scale_down.stabilization_window_seconds = 120;
        let mut c = HpaController::new(s);
        assert_eq!(c.reconcile(&val(0.0, 4, 200.0)).desired, 8);
        // Metric drops: recommendation 2, but the max over the last 120 s is 8... relative to current 8.
        assert_eq!(c.reconcile(&val(10.0, 8, 25.0)).desired, 8);
        assert_eq!(c.reconcile(&val(60.0, 8, 25.0)).desired, 8);
        assert_eq!(c.reconcile(&val(119.0, 8, 25.0)).desired, 8);
        // After the window has passed the high recommendation, it goes down.
        assert_eq!(c.reconcile(&val(121.0, 8, 25.0)).desired, 2);
    }

    #[test]
    fn scale_up_window_takes_min() {
        let mut s = spec();
        s.scale_up.stabilization_window_seconds = 30;
        let mut c = HpaController::new(s);
        assert_eq!(c.reconcile(&val(0.0, 4, 100.0)).desired, 4);
        // A spike: recommendation 8, but the min over the last 30 s is 4.
        assert_eq!(c.reconcile(&val(10.0, 4, 200.0)).desired, 4);
        assert_eq!(c.reconcile(&val(25.0, 4, 200.0)).desired, 4);
        // 31 s: the 4 from t=0 is out of the window; min(8 @10, 8 @25, 8 now) = 8.
        assert_eq!(c.reconcile(&val(31.0, 4, 200.0)).desired, 8);
    }

    #[test]
    fn pods_policy_limits_rate() {
        let mut s = spec();
        s.scale_up.policies = vec![ScalingPolicy { kind: PolicyType::Pods, value: 4, period_seconds: 60 }];
        let mut c = HpaController::new(s);
        let d = c.reconcile(&val(0.0, 2, 1000.0));
        assert_eq!(d.desired, 6);
        assert!(d.conditions.iter().any(|c| c.reason == "ScaleUpLimit" && c.status));
        // Within the same 60 s period the 4 pods are used up.
        assert_eq!(c.reconcile(&val(30.0, 6, 1000.0)).desired, 6);
        // After the period, 4 more.
        assert_eq!(c.reconcile(&val(61.0, 6, 1000.0)).desired, 10);
    }

    #[test]
    fn percent_policy_limits_rate() {
        let mut s = spec();
        s.scale_down.policies = vec![ScalingPolicy { kind: PolicyType::Percent, value: 50, period_seconds: 60 }];
        let mut c = HpaController::new(s.clone());
        assert_eq!(c.reconcile(&val(0.0, 10, 10.0)).desired, 5, "50 % of 10 may go");
        assert_eq!(c.reconcile(&val(30.0, 5, 10.0)).desired, 5, "period start is still 10: 5 is the floor");
        assert_eq!(c.reconcile(&val(61.0, 5, 10.0)).desired, 2, "new period: int(5 × 0.5) = 2");
        // Percent up: ceil(3 × 1.5) = 5.
        s.scale_up.policies = vec![ScalingPolicy { kind: PolicyType::Percent, value: 50, period_seconds: 60 }];
        let mut c = HpaController::new(s);
        assert_eq!(c.reconcile(&val(0.0, 3, 1000.0)).desired, 5);
    }

    #[test]
    fn select_policy_max_min_disabled() {
        let pols = vec![
            ScalingPolicy { kind: PolicyType::Pods, value: 4, period_seconds: 60 },
            ScalingPolicy { kind: PolicyType::Percent, value: 100, period_seconds: 60 },
        ];
        for (sel, want) in [(SelectPolicy::Max, 20), (SelectPolicy::Min, 14), (SelectPolicy::Disabled, 10)] {
            let mut s = spec();
            s.scale_up.policies = pols.clone();
            s.scale_up.select_policy = sel;
            let mut c = HpaController::new(s);
            assert_eq!(c.reconcile(&val(0.0, 10, 10_000.0)).desired, want, "{sel:?}");
        }
        // Scale-down: Max picks the larger change (smaller count), Min the smaller change.
        let pols = vec![
            ScalingPolicy { kind: PolicyType::Pods, value: 2, period_seconds: 60 },
            ScalingPolicy { kind: PolicyType::Percent, value: 50, period_seconds: 60 },
        ];
        for (sel, want) in [(SelectPolicy::Max, 5), (SelectPolicy::Min, 8), (SelectPolicy::Disabled, 10)] {
            let mut s = spec();
            s.scale_down.policies = pols.clone();
            s.scale_down.select_policy = sel;
            let mut c = HpaController::new(s);
            assert_eq!(c.reconcile(&val(0.0, 10, 1.0)).desired, want, "{sel:?}");
        }
    }

    #[test]
    fn value_metric_scales_ready_pods_only() {
        let mut c = HpaController::new(spec());
        // 4 replicas, 2 ready, ratio 2 → ceil(2 × 2) = 4: no change (not ready pods don't count).
        let d = c.reconcile(&HpaInput {
            now_s: 0.0,
            current_replicas: 4,
            ready_replicas: 2,
            metrics: vec![MetricInput::Value(Some(200.0))],
        });
        assert_eq!(d.desired, 4);
        let d = c.reconcile(&HpaInput {
            now_s: 1.0,
            current_replicas: 4,
            ready_replicas: 3,
            metrics: vec![MetricInput::Value(Some(200.0))],
        });
        assert_eq!(d.desired, 6);
    }

    #[test]
    fn per_pod_not_ready_and_missing() {
        let p = |ready, value| PodSample { ready, value };
        let c = HpaController::new(spec());
        // Scale-up: 2 ready at 200, 2 not ready → counted as 0: avg 100 → within tolerance: no scale.
        let i = HpaInput {
            now_s: 0.0,
            current_replicas: 4,
            ready_replicas: 2,
            metrics: vec![MetricInput::PerPod(vec![
                p(true, Some(200.0)),
                p(true, Some(200.0)),
                p(false, None),
                p(false, None),
            ])],
        };
        assert_eq!(c.recommend(0, &i).unwrap().0, 4);
        // 2 ready at 300, 1 not ready: (600 + 0)/3 = 200 → ratio 2 × 3 = 6.
        let i = HpaInput {
            now_s: 0.0,
            current_replicas: 3,
            ready_replicas: 2,
            metrics: vec![MetricInput::PerPod(vec![p(true, Some(300.0)), p(true, Some(300.0)), p(false, None)])],
        };
        assert_eq!(c.recommend(0, &i).unwrap().0, 6);
        // Scale-down with a missing metric: missing counted at 100 %: (20 + 20 + 100)/3 ≈ 46.7 → ceil(0.467 × 3) = 2.
        let i = HpaInput {
            now_s: 0.0,
            current_replicas: 3,
            ready_replicas: 3,
            metrics: vec![MetricInput::PerPod(vec![p(true, Some(20.0)), p(true, Some(20.0)), p(true, None)])],
        };
        assert_eq!(c.recommend(0, &i).unwrap().0, 2);
        // Scale-down where the missing pod reverses direction: (95+95+100)/3... within tolerance → keep.
        let i = HpaInput {
            now_s: 0.0,
            current_replicas: 3,
            ready_replicas: 3,
            metrics: vec![MetricInput::PerPod(vec![p(true, Some(80.0)), p(true, Some(80.0)), p(true, None)])],
        };
        assert_eq!(c.recommend(0, &i).unwrap().0, 3);
        // Not-ready pods are ignored for scale-down.
        let i = HpaInput {
            now_s: 0.0,
            current_replicas: 4,
            ready_replicas: 2,
            metrics: vec![MetricInput::PerPod(vec![
                p(true, Some(10.0)),
                p(true, Some(10.0)),
                p(false, None),
                p(false, None),
            ])],
        };
        assert_eq!(c.recommend(0, &i).unwrap().0, 1);
    }

    #[test]
    fn missing_metric_keeps_count_and_says_why() {
        let mut c = HpaController::new(spec());
        let d = c.reconcile(&HpaInput {
            now_s: 0.0,
            current_replicas: 3,
            ready_replicas: 3,
            metrics: vec![MetricInput::Value(None)],
        });
        assert_eq!(d.desired, 3);
        assert!(d
            .conditions
            .iter()
            .any(|c| c.kind == "ScalingActive" && !c.status && c.reason == "FailedGetObjectMetric"));
    }

    #[test]
    fn parses_manifest_fixture() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/conduct/hpa.yaml")).unwrap();
        let s = HpaSpec::from_yaml(&text).unwrap();
        assert_eq!((s.min_replicas, s.max_replicas), (2, 10));
        assert!((s.metrics[0].target - 0.1).abs() < 1e-12);
        assert_eq!(s.scale_up.stabilization_window_seconds, 30);
        assert_eq!(s.scale_down.stabilization_window_seconds, 120);
        assert_eq!(s.scale_up.select_policy, SelectPolicy::Max);
        assert_eq!(s.scale_down.policies[0].kind, PolicyType::Percent);
        assert_eq!(s.metrics[0].kind, MetricKind::Value);
        assert_eq!(s.metrics[0].described, "Service metric app_request_latency_p95_seconds");
        // What it says it shares with the shipped manifests, it does.
        let shipped = HpaSpec::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/autoscaling/load-adapter/hpa.yaml"
        )))
        .unwrap();
        assert_eq!((&s.scale_up, &s.scale_down), (&shipped.scale_up, &shipped.scale_down));
    }

    #[test]
    fn parses_real_manifest_when_present() {
        let p =
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/autoscaling/load-adapter/hpa.yaml"));
        let s = HpaSpec::load(p).unwrap();
        assert_eq!((s.min_replicas, s.max_replicas), (2, 10));
        let names: Vec<&str> = s.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["rtc_worker_utilization", "rtc_latency_guard"]);
        assert!((s.metrics[0].target - 0.7).abs() < 1e-9, "{:?}", s.metrics[0]);
        assert!((s.metrics[1].target - 0.1).abs() < 1e-9, "{:?}", s.metrics[1]);
        assert!(s.metrics.iter().all(|m| m.kind == MetricKind::AverageValue));
    }

    fn two_metrics() -> HpaSpec {
        let mut s = spec();
        s.metrics = vec![MetricTarget::pods("load", 0.7), MetricTarget::pods("p95", 0.1)];
        s
    }

    fn pods(values: &[Option<f64>]) -> MetricInput {
        MetricInput::PerPod(values.iter().map(|&value| PodSample { ready: true, value }).collect())
    }

    #[test]
    fn several_metrics_take_the_largest_proposal() {
        let mut c = HpaController::new(two_metrics());
        // Load asks for ceil(4 × 1.0/0.7) = 6, latency (dead band: at target) keeps 4.
        let i = |now, load, p95| HpaInput {
            now_s: now,
            current_replicas: 4,
            ready_replicas: 4,
            metrics: vec![pods(&[Some(load); 4]), pods(&[Some(p95); 4])],
        };
        let d = c.reconcile(&i(0.0, 1.0, 0.1));
        assert_eq!(d.desired, 6);
        assert_eq!(d.metrics.iter().map(|m| m.proposal).collect::<Vec<_>>(), [Some(6), Some(4)]);
        assert_eq!(d.rescale_reason.as_deref(), Some("pods metric load above target"));
        // Latency far over: its proposal wins and names it.
        let mut c = HpaController::new(two_metrics());
        let d = c.reconcile(&i(0.0, 0.7, 0.3));
        assert_eq!(d.desired, 12);
        assert_eq!(d.rescale_reason.as_deref(), Some("pods metric p95 above target"));
        // A steady load at target while p95 sits at the 20 ms service time: latency alone would
        // halve the pods, the load keeps them (scale-down needs every metric to agree).
        let mut c = HpaController::new(two_metrics());
        assert_eq!(c.reconcile(&i(0.0, 0.68, 0.02)).desired, 4);
        // Both low: down, "All metrics below target".
        let mut c = HpaController::new(two_metrics());
        let d = c.reconcile(&i(0.0, 0.1, 0.02));
        assert_eq!(d.desired, 1);
        assert_eq!(d.rescale_reason.as_deref(), Some("All metrics below target"));
    }

    #[test]
    fn an_unreadable_metric_allows_scale_up_but_never_down() {
        let mut c = HpaController::new(two_metrics());
        let i = |now, load| HpaInput {
            now_s: now,
            current_replicas: 4,
            ready_replicas: 4,
            metrics: vec![pods(&[Some(load); 4]), pods(&[None; 4])],
        };
        assert_eq!(c.reconcile(&i(0.0, 1.4)).desired, 8, "up on the readable metric");
        let mut c = HpaController::new(two_metrics());
        let d = c.reconcile(&i(0.0, 0.1));
        assert_eq!(d.desired, 4, "no scale-down while p95 is unreadable");
        assert!(d.conditions.iter().any(|c| c.reason == "FailedGetPodsMetric" && c.message.contains("p95")), "{d:?}");
    }

    #[test]
    fn bad_manifests_name_the_field() {
        let e = HpaSpec::from_yaml("kind: Deployment\n").unwrap_err().to_string();
        assert!(e.contains("HorizontalPodAutoscaler"), "{e}");
        let e = HpaSpec::from_yaml("kind: HorizontalPodAutoscaler\nspec:\n  minReplicas: 2\n").unwrap_err().to_string();
        assert!(e.contains("maxReplicas"), "{e}");
        // An Object metric as autoscaling/v2 requires it: describedObject, metric, target.
        let object = "  - type: Object\n    object:\n      describedObject: {apiVersion: apps/v1, kind: Deployment, name: gpu-media}\n      metric: {name: p95}\n";
        let y = format!("kind: HorizontalPodAutoscaler\nspec:\n  maxReplicas: 3\n  scaleTargetRef: {{kind: Deployment, name: gpu-media}}\n  metrics:\n{object}      target: {{type: Value, value: 100m}}\n  behavior:\n    scaleUp:\n      selectPolicy: Fastest\n");
        let e = HpaSpec::from_yaml(&y).unwrap_err().to_string();
        assert!(e.contains("selectPolicy") && e.contains("Max, Min, Disabled"), "{e}");
        let y = format!("kind: HorizontalPodAutoscaler\nspec:\n  maxReplicas: 3\n  scaleTargetRef: {{kind: Deployment, name: gpu-media}}\n  metrics:\n{object}      target: {{type: Value, value: lots}}\n");
        let e = HpaSpec::from_yaml(&y).unwrap_err().to_string();
        assert!(e.contains("target.value"), "{e}");
        // A number is a quantity too, as the API server takes it.
        let y = y.replace("value: lots", "value: 2");
        assert_eq!(HpaSpec::from_yaml(&y).unwrap().metrics[0].target, 2.0);
        assert!(HpaSpec::from_yaml(":\n  - [").is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("100m"), Some(0.1));
        assert_eq!(quantity("700m"), Some(0.7));
        assert_eq!(quantity("0.1"), Some(0.1));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("2k"), Some(2000.0));
        assert_eq!(quantity("1Ki"), Some(1024.0));
        assert_eq!(quantity("1Mi"), Some(1048576.0));
        assert_eq!(quantity("87500u"), Some(0.0875));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("2E"), Some(2e18));
        assert_eq!(quantity("2P"), Some(2e15));
        for bad in ["m", "abc", "1x", ""] {
            assert_eq!(quantity(bad), None, "{bad}");
        }
    }
}
