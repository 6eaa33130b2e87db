//! The Kubernetes HorizontalPodAutoscaler (autoscaling/v2) algorithm, as a pure function of
//! its inputs: the local rehearsal backend scales its `rtc-demo serve` children with it, so
//! a rehearsal on a laptop behaves like the cluster does with the same manifest.
//!
//! What is implemented (from the Kubernetes documentation and `pkg/controller/podautoscaler`):
//! - desired = ceil(current × metric / target), nothing done while |ratio − 1| ≤ tolerance (0.1);
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

/// Which way a policy list applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyType {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingPolicy {
    pub kind: PolicyType,
    pub value: u32,
    pub period_seconds: u32,
}

#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// `Object`/`External` metric with a `Value` target: one number for the whole workload.
    Value,
    /// `Pods` metric or an `AverageValue`/`Utilization` target: a per-pod average.
    AverageValue,
}

/// The autoscaler settings of one HorizontalPodAutoscaler.
#[derive(Debug, Clone, PartialEq)]
pub struct HpaSpec {
    pub name: String,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Metric name as written in the manifest (e.g. `app_request_latency_p95_seconds`).
    pub metric_name: String,
    pub metric_kind: MetricKind,
    /// The target in the metric's unit (seconds for latency: `100m` → 0.1).
    pub target: f64,
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
            metric_name: "app_request_latency_p95_seconds".into(),
            metric_kind: MetricKind::Value,
            target: 0.1,
            tolerance: 0.1,
            scale_up: ScalingRules { stabilization_window_seconds: 30, ..ScalingRules::default_up() },
            scale_down: ScalingRules { stabilization_window_seconds: 120, ..ScalingRules::default_down() },
        }
    }

    /// Reads the first `HorizontalPodAutoscaler` document of a YAML file.
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        Self::from_yaml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a standard autoscaling/v2 HorizontalPodAutoscaler (the first such document).
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        use serde::Deserialize;
        use serde_yaml::Value;
        let mut found = None;
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v = Value::deserialize(doc).map_err(|e| format!("invalid YAML: {e}"))?;
            if v.get("kind").and_then(Value::as_str) == Some("HorizontalPodAutoscaler") {
                found = Some(v);
                break;
            }
        }
        let v = found.ok_or("no document with kind: HorizontalPodAutoscaler")?;
        let name = v.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("hpa").to_string();
        let spec = v.get("spec").ok_or("missing spec")?;
        let min_replicas = match spec.get("minReplicas") {
            None => 1,
            Some(x) => uint(x, "spec.minReplicas")?,
        };
        let max_replicas = uint(spec.get("maxReplicas").ok_or("missing spec.maxReplicas")?, "spec.maxReplicas")?;
        if min_replicas < 1 || max_replicas < min_replicas {
            return Err(format!(
                "spec.minReplicas {min_replicas} / spec.maxReplicas {max_replicas}: need 1 ≤ minReplicas ≤ maxReplicas"
            ));
        }
        let metrics = spec
            .get("metrics")
            .and_then(Value::as_sequence)
            .filter(|s| !s.is_empty())
            .ok_or("spec.metrics: expected a non-empty list")?;
        let m = &metrics[0];
        let ty = m.get("type").and_then(Value::as_str).ok_or("spec.metrics[0].type: missing")?;
        let key = match ty {
            "Object" => "object",
            "Pods" => "pods",
            "External" => "external",
            "Resource" => "resource",
            "ContainerResource" => "containerResource",
            other => {
                return Err(format!(
                    "spec.metrics[0].type: unknown {other:?} (allowed: Object, Pods, External, Resource, ContainerResource)"
                ))
            }
        };
        let body = m.get(key).ok_or_else(|| format!("spec.metrics[0].{key}: missing"))?;
        let metric_name = body
            .get("metric")
            .and_then(|x| x.get("name"))
            .or_else(|| body.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("metric")
            .to_string();
        let target = body.get("target").ok_or_else(|| format!("spec.metrics[0].{key}.target: missing"))?;
        let tty = target.get("type").and_then(Value::as_str).unwrap_or("Value");
        let (metric_kind, field) = match tty {
            "Value" => (if ty == "Pods" { MetricKind::AverageValue } else { MetricKind::Value }, "value"),
            "AverageValue" => (MetricKind::AverageValue, "averageValue"),
            "Utilization" => (MetricKind::AverageValue, "averageUtilization"),
            other => {
                return Err(format!(
                    "spec.metrics[0].{key}.target.type: unknown {other:?} (allowed: Value, AverageValue, Utilization)"
                ))
            }
        };
        let tv = target.get(field).ok_or_else(|| format!("spec.metrics[0].{key}.target.{field}: missing"))?;
        let target_value = quantity(tv).map_err(|e| format!("spec.metrics[0].{key}.target.{field}: {e}"))?;
        if target_value.is_nan() || target_value <= 0.0 {
            return Err(format!("spec.metrics[0].{key}.target.{field}: must be > 0"));
        }
        let behavior = spec.get("behavior");
        let scale_up =
            rules(behavior.and_then(|b| b.get("scaleUp")), "spec.behavior.scaleUp", ScalingRules::default_up())?;
        let scale_down =
            rules(behavior.and_then(|b| b.get("scaleDown")), "spec.behavior.scaleDown", ScalingRules::default_down())?;
        let mut tolerance = 0.1;
        // Kubernetes 1.33+ (alpha): behavior.scaleUp.tolerance; read it when present.
        if let Some(t) = behavior.and_then(|b| b.get("scaleUp")).and_then(|b| b.get("tolerance")) {
            tolerance = quantity(t).map_err(|e| format!("spec.behavior.scaleUp.tolerance: {e}"))?;
        }
        Ok(HpaSpec {
            name,
            min_replicas,
            max_replicas,
            metric_name,
            metric_kind,
            target: target_value,
            tolerance,
            scale_up,
            scale_down,
        })
    }
}

fn uint(v: &serde_yaml::Value, what: &str) -> Result<u32, String> {
    v.as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| format!("{what}: expected a non-negative integer, got {}", yaml_short(v)))
}

fn yaml_short(v: &serde_yaml::Value) -> String {
    serde_yaml::to_string(v).unwrap_or_default().trim().chars().take(40).collect()
}

fn rules(v: Option<&serde_yaml::Value>, what: &str, default: ScalingRules) -> Result<ScalingRules, String> {
    let Some(v) = v else { return Ok(default) };
    let mut r = default;
    if let Some(w) = v.get("stabilizationWindowSeconds") {
        r.stabilization_window_seconds = uint(w, &format!("{what}.stabilizationWindowSeconds"))?;
        if r.stabilization_window_seconds > 3600 {
            return Err(format!("{what}.stabilizationWindowSeconds: must be 0..=3600"));
        }
    }
    if let Some(s) = v.get("selectPolicy") {
        r.select_policy = match s.as_str() {
            Some("Max") => SelectPolicy::Max,
            Some("Min") => SelectPolicy::Min,
            Some("Disabled") => SelectPolicy::Disabled,
            _ => return Err(format!("{what}.selectPolicy: got {}, allowed: Max, Min, Disabled", yaml_short(s))),
        };
    }
    if let Some(ps) = v.get("policies") {
        let seq = ps.as_sequence().ok_or_else(|| format!("{what}.policies: expected a list"))?;
        let mut out = Vec::new();
        for (i, p) in seq.iter().enumerate() {
            let kind = match p.get("type").and_then(serde_yaml::Value::as_str) {
                Some("Pods") => PolicyType::Pods,
                Some("Percent") => PolicyType::Percent,
                _ => return Err(format!("{what}.policies[{i}].type: allowed: Pods, Percent")),
            };
            let value = uint(
                p.get("value").ok_or_else(|| format!("{what}.policies[{i}].value: missing"))?,
                &format!("{what}.policies[{i}].value"),
            )?;
            let period_seconds = uint(
                p.get("periodSeconds").ok_or_else(|| format!("{what}.policies[{i}].periodSeconds: missing"))?,
                &format!("{what}.policies[{i}].periodSeconds"),
            )?;
            if value == 0 || period_seconds == 0 || period_seconds > 1800 {
                return Err(format!("{what}.policies[{i}]: value must be > 0 and periodSeconds 1..=1800"));
            }
            out.push(ScalingPolicy { kind, value, period_seconds });
        }
        r.policies = out;
    }
    Ok(r)
}

/// A Kubernetes resource quantity (`100m`, `0.1`, `2`, `500Mi`, `1k`) as a float.
pub fn quantity(v: &serde_yaml::Value) -> Result<f64, String> {
    if let Some(f) = v.as_f64() {
        return Ok(f);
    }
    let s = v.as_str().ok_or_else(|| format!("expected a quantity such as 100m, got {}", yaml_short(v)))?.trim();
    let suffixes: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024f64.powi(4)),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("", 1.0),
    ];
    for (suf, mul) in suffixes {
        if let Some(num) = s.strip_suffix(suf) {
            if let Ok(x) = num.parse::<f64>() {
                if x.is_finite() {
                    return Ok(x * mul);
                }
            }
            if !suf.is_empty() {
                continue;
            }
        }
    }
    Err(format!("{s:?} is not a quantity (examples: 100m, 0.1, 2, 500Mi)"))
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
    pub metric: MetricInput,
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
    /// The metric value used (after missing/not-ready adjustments for per-pod metrics).
    pub metric_value: Option<f64>,
    pub ratio: Option<f64>,
    pub conditions: Vec<Condition>,
    /// Why the count changed (for the SuccessfulRescale event), if it did.
    pub rescale_reason: Option<String>,
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
    pub fn recommend(&self, input: &HpaInput) -> Option<(u32, f64, f64)> {
        let current = input.current_replicas;
        let target = self.spec.target;
        let tol = self.spec.tolerance;
        match &input.metric {
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
        let metric = self.recommend(input);
        let (desired, recommended, reason_text, limit);
        if current == 0 && min > 0 {
            conditions.push(Condition {
                kind: "ScalingActive",
                status: false,
                reason: "ScalingDisabled",
                message: "scaling is disabled since the replica count of the target is zero".into(),
            });
            return HpaDecision {
                desired: 0,
                recommended: 0,
                metric_value: metric.map(|m| m.1),
                ratio: metric.map(|m| m.2),
                conditions,
                rescale_reason: None,
            };
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
        } else if let Some((rec, _v, _r)) = metric {
            recommended = rec;
            let stabilized = self.stabilize(now, current, rec);
            let (d, why) = self.apply_rate_limits(now, current, stabilized);
            desired = d;
            limit = Some(why);
            reason_text = if rec > current {
                format!("{} above target", self.spec.metric_name)
            } else {
                "All metrics below target".to_string()
            };
        } else {
            conditions.push(Condition {
                kind: "ScalingActive",
                status: false,
                reason: "FailedGetObjectMetric",
                message: format!("unable to get metric {}", self.spec.metric_name),
            });
            return HpaDecision {
                desired: current,
                recommended: current,
                metric_value: None,
                ratio: None,
                conditions,
                rescale_reason: None,
            };
        }
        conditions.push(Condition {
            kind: "ScalingActive",
            status: true,
            reason: "ValidMetricFound",
            message: format!(
                "the HPA was able to successfully calculate a replica count from {}",
                self.spec.metric_name
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
        HpaDecision {
            desired,
            recommended,
            metric_value: metric.map(|m| m.1),
            ratio: metric.map(|m| m.2),
            conditions,
            rescale_reason,
        }
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
            metric_name: "m".into(),
            metric_kind: MetricKind::Value,
            target: 100.0,
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
        HpaInput { now_s: now, current_replicas: cur, ready_replicas: cur, metric: MetricInput::Value(Some(v)) }
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
        s.target = 0.1;
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
            metric: MetricInput::Value(Some(200.0)),
        });
        assert_eq!(d.desired, 4);
        let d = c.reconcile(&HpaInput {
            now_s: 1.0,
            current_replicas: 4,
            ready_replicas: 3,
            metric: MetricInput::Value(Some(200.0)),
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
            metric: MetricInput::PerPod(vec![
                p(true, Some(200.0)),
                p(true, Some(200.0)),
                p(false, None),
                p(false, None),
            ]),
        };
        assert_eq!(c.recommend(&i).unwrap().0, 4);
        // 2 ready at 300, 1 not ready: (600 + 0)/3 = 200 → ratio 2 × 3 = 6.
        let i = HpaInput {
            now_s: 0.0,
            current_replicas: 3,
            ready_replicas: 2,
            metric: MetricInput::PerPod(vec![p(true, Some(300.0)), p(true, Some(300.0)), p(false, None)]),
        };
        assert_eq!(c.recommend(&i).unwrap().0, 6);
        // Scale-down with a missing metric: missing counted at 100 %: (20 + 20 + 100)/3 ≈ 46.7 → ceil(0.467 × 3) = 2.
        let i = HpaInput {
            now_s: 0.0,
            current_replicas: 3,
            ready_replicas: 3,
            metric: MetricInput::PerPod(vec![p(true, Some(20.0)), p(true, Some(20.0)), p(true, None)]),
        };
        assert_eq!(c.recommend(&i).unwrap().0, 2);
        // Scale-down where the missing pod reverses direction: (95+95+100)/3... within tolerance → keep.
        let i = HpaInput {
            now_s: 0.0,
            current_replicas: 3,
            ready_replicas: 3,
            metric: MetricInput::PerPod(vec![p(true, Some(80.0)), p(true, Some(80.0)), p(true, None)]),
        };
        assert_eq!(c.recommend(&i).unwrap().0, 3);
        // Not-ready pods are ignored for scale-down.
        let i = HpaInput {
            now_s: 0.0,
            current_replicas: 4,
            ready_replicas: 2,
            metric: MetricInput::PerPod(vec![p(true, Some(10.0)), p(true, Some(10.0)), p(false, None), p(false, None)]),
        };
        assert_eq!(c.recommend(&i).unwrap().0, 1);
    }

    #[test]
    fn missing_metric_keeps_count_and_says_why() {
        let mut c = HpaController::new(spec());
        let d = c.reconcile(&HpaInput {
            now_s: 0.0,
            current_replicas: 3,
            ready_replicas: 3,
            metric: MetricInput::Value(None),
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
        assert!((s.target - 0.1).abs() < 1e-12);
        assert_eq!(s.scale_up.stabilization_window_seconds, 30);
        assert_eq!(s.scale_down.stabilization_window_seconds, 120);
        assert_eq!(s.scale_up.select_policy, SelectPolicy::Max);
        assert_eq!(s.scale_down.policies[0].kind, PolicyType::Percent);
        assert_eq!(s.metric_kind, MetricKind::Value);
    }

    #[test]
    fn parses_real_manifest_when_present() {
        let p = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/autoscaling/latency-adapter/hpa.yaml"
        ));
        if p.exists() {
            let s = HpaSpec::load(p).unwrap();
            assert_eq!((s.min_replicas, s.max_replicas), (2, 10));
            assert!((s.target - 0.1).abs() < 1e-9, "target {}", s.target);
        }
    }

    #[test]
    fn bad_manifests_name_the_field() {
        let e = HpaSpec::from_yaml("kind: Deployment\n").unwrap_err();
        assert!(e.contains("HorizontalPodAutoscaler"), "{e}");
        let e = HpaSpec::from_yaml("kind: HorizontalPodAutoscaler\nspec:\n  minReplicas: 2\n").unwrap_err();
        assert!(e.contains("maxReplicas"), "{e}");
        let y = "kind: HorizontalPodAutoscaler\nspec:\n  maxReplicas: 3\n  metrics:\n  - type: Object\n    object:\n      target: {type: Value, value: 100m}\n  behavior:\n    scaleUp:\n      selectPolicy: Fastest\n";
        let e = HpaSpec::from_yaml(y).unwrap_err();
        assert!(e.contains("selectPolicy") && e.contains("Max, Min, Disabled"), "{e}");
        let y = "kind: HorizontalPodAutoscaler\nspec:\n  maxReplicas: 3\n  metrics:\n  - type: Object\n    object:\n      target: {type: Value, value: lots}\n";
        let e = HpaSpec::from_yaml(y).unwrap_err();
        assert!(e.contains("target.value"), "{e}");
        assert!(HpaSpec::from_yaml(":\n  - [").is_err());
    }

    #[test]
    fn quantities() {
        let q = |s: &str| quantity(&serde_yaml::Value::String(s.into())).unwrap();
        assert_eq!(q("100m"), 0.1);
        assert_eq!(q("2"), 2.0);
        assert_eq!(q("1k"), 1000.0);
        assert_eq!(q("1Mi"), 1048576.0);
        assert!(quantity(&serde_yaml::Value::String("m".into())).is_err());
    }
}
