//! In-cluster load: the console fills `manifests/load/job.yaml` (ConfigMap with the scenario,
//! Job running `rtc-demo load --scenario … --stage NAME SERVICE-URL`), applies it server-side,
//! and reads the load pod's figures back through the API server: its log carries one line per
//! second (`rtc-demo load`'s live output), parsed here into [`LoadLine`]s.
use std::path::Path;

use serde_json::Value;

use crate::conduct::timeline::ClientSecond;
use crate::image_ref::{ImageRef, PLACEHOLDER_NAME};
use crate::kustomize::ImageOverride;

/// Names fixed by the template (the conductor's Role is scoped to the ConfigMap's name).
pub const JOB_NAME: &str = "rtc-demo-load";
pub const CONFIGMAP_NAME: &str = "rtc-demo-load-scenario";
pub const SCENARIO_KEY: &str = "scenario.toml";
pub const SCENARIO_PLACEHOLDER: &str = "__RTC_SCENARIO_TOML__";
pub const RUN_ID_PLACEHOLDER: &str = "__RTC_RUN_ID__";
pub const RUN_ID_ANNOTATION: &str = "rtc-demo/run-id";

/// What one in-cluster load run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadJobSpec {
    /// The scenario file's text (goes into the ConfigMap unchanged).
    pub scenario_toml: String,
    pub run_id: String,
    pub namespace: String,
    /// The stage the Job runs (`--stage NAME`); None runs all stages in order.
    pub stage: Option<String>,
    /// Base URL of the Service as the pods reach it (`http://gpu-media.rtc.svc:80`).
    pub service_url: String,
    /// The image instead of the template's placeholder (None: keep it).
    pub image: Option<ImageRef>,
    /// One pod's measured capacity (`--pod-rps`) and the iterations sized to the scenario's
    /// `service_time` (`--iters`), for a scenario whose rates are in pods.
    pub measured: Option<(f64, u32)>,
}

/// The Service URL inside the cluster.
pub fn service_url(service: &str, namespace: &str, port: u16) -> String {
    format!("http://{service}.{namespace}.svc:{port}")
}

/// The load Job template is missing or not what the console expects.
#[derive(Debug, thiserror::Error)]
pub enum LoadJobError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("{}: {problem}", path.display())]
    Template { path: std::path::PathBuf, problem: String },
}

/// Fills the template folder (`manifests/load`): every object of `job.yaml`, plus the load
/// ServiceAccount and NetworkPolicy (so the Job's `serviceAccountName` exists and its traffic is
/// allowed). The conductor's own Role/RoleBinding are not applied (they are for an admin to
/// grant). Errors name the file and what is wrong.
pub fn render(dir: &Path, spec: &LoadJobSpec) -> Result<Vec<Value>, LoadJobError> {
    let job_path = dir.join("job.yaml");
    let text =
        std::fs::read_to_string(&job_path).map_err(|source| LoadJobError::Read { path: job_path.clone(), source })?;
    let bad = |problem: String| LoadJobError::Template { path: job_path.clone(), problem };
    // The template's comments name the placeholders too; count them in the YAML itself.
    let body: String = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    for p in [SCENARIO_PLACEHOLDER, RUN_ID_PLACEHOLDER] {
        let n = body.matches(p).count();
        if n != 1 {
            return Err(bad(format!("placeholder {p} must appear exactly once outside comments (found {n})")));
        }
    }
    // Substitute in the parsed objects (not in the text): the scenario goes in verbatim
    // whatever it contains, no YAML quoting or indentation can break it.
    let mut objs = parse_docs(&text, &job_path)?;
    let mut saw_cm = false;
    let mut saw_job = false;
    for o in objs.iter_mut() {
        let kind = o.get("kind").and_then(|k| k.as_str()).unwrap_or("").to_string();
        set_namespace(o, &spec.namespace);
        match kind.as_str() {
            "ConfigMap" => {
                saw_cm = true;
                let data = o
                    .pointer_mut("/data")
                    .and_then(|d| d.as_object_mut())
                    .ok_or_else(|| bad("the ConfigMap has no data".into()))?;
                data.insert(SCENARIO_KEY.into(), Value::String(spec.scenario_toml.clone()));
            }
            "Job" => {
                saw_job = true;
                let ann = o
                    .pointer_mut("/metadata/annotations")
                    .and_then(|a| a.as_object_mut())
                    .ok_or_else(|| bad("the Job has no annotations".into()))?;
                ann.insert(RUN_ID_ANNOTATION.into(), Value::String(spec.run_id.clone()));
                let c = o
                    .pointer_mut("/spec/template/spec/containers/0")
                    .and_then(|c| c.as_object_mut())
                    .ok_or_else(|| bad("the Job has no container".into()))?;
                let mut args: Vec<Value> = c.get("args").and_then(|a| a.as_array()).cloned().unwrap_or_default();
                if let Some((pod_rps, iters)) = spec.measured {
                    args.extend(["--pod-rps".into(), format!("{pod_rps:.2}").into()]);
                    args.extend(["--iters".into(), iters.to_string().into()]);
                }
                if let Some(st) = &spec.stage {
                    args.push("--stage".into());
                    args.push(st.clone().into());
                }
                args.push(spec.service_url.clone().into());
                c.insert("args".into(), Value::Array(args));
            }
            _ => {}
        }
    }
    if !saw_cm || !saw_job {
        return Err(bad("expected a ConfigMap and a Job".into()));
    }
    if let Some(image) = &spec.image {
        ImageOverride::replacing(PLACEHOLDER_NAME, image).apply(objs.iter_mut());
    }
    // The ServiceAccount the Job runs as, and the NetworkPolicy for its pods.
    let rbac = dir.join("rbac.yaml");
    if let Ok(t) = std::fs::read_to_string(&rbac) {
        for mut o in parse_docs(&t, &rbac)? {
            if o.get("kind").and_then(|k| k.as_str()) == Some("ServiceAccount")
                && o.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(JOB_NAME)
            {
                set_namespace(&mut o, &spec.namespace);
                objs.insert(0, o);
            }
        }
    }
    let np = dir.join("networkpolicy.yaml");
    if let Ok(t) = std::fs::read_to_string(&np) {
        for mut o in parse_docs(&t, &np)? {
            set_namespace(&mut o, &spec.namespace);
            objs.push(o);
        }
    }
    Ok(objs)
}

fn set_namespace(o: &mut Value, ns: &str) {
    if let Some(m) = o.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        m.insert("namespace".into(), Value::String(ns.into()));
    }
}

fn parse_docs(text: &str, path: &Path) -> Result<Vec<Value>, LoadJobError> {
    // Empty documents are skipped; errors carry line and column.
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| LoadJobError::Template { path: path.to_path_buf(), problem: e.to_string() })?;
    Ok(docs.into_iter().filter(|v| !v.is_null()).collect())
}

/// The objects as one YAML file (what the kubectl panel's `apply -f` names).
pub fn to_yaml(objs: &[Value]) -> String {
    // Plain JSON values always serialise.
    serde_saphyr::to_string_multiple(objs).unwrap_or_default()
}

/// One second of the in-cluster load as its log line reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadLine {
    pub second: u64,
    /// Successful (2xx) answers.
    pub ok: u64,
    /// What the timeline takes: rates, p95, failures.
    pub figures: ClientSecond,
}

/// `850µs`, `2.50ms`, `12.3ms`, `1.20s` → seconds (the load engine's `fmt_ms`).
pub fn parse_latency(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(x) = s.strip_suffix("µs") {
        (x, 1e-6)
    } else if let Some(x) = s.strip_suffix("ms") {
        (x, 1e-3)
    } else if let Some(x) = s.strip_suffix('s') {
        (x, 1.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult).filter(|v| v.is_finite() && *v >= 0.0)
}

/// Parses a live line of `rtc-demo load` (see `crate::load::second_line`, and for WebRTC
/// sessions `crate::load::webrtc::second_line`); other lines (stage headers, the final
/// JSON) give `None`.
pub fn parse_line(line: &str) -> Option<LoadLine> {
    let line = line.trim();
    let rest = line.strip_prefix('[')?;
    let (sec, rest) = rest.split_once("s]")?;
    let second: u64 = sec.trim().parse().ok()?;
    if rest.trim_start().starts_with("sessions ") {
        return parse_webrtc_line(second.saturating_sub(1), rest);
    }
    let toks: Vec<&str> = rest.split_whitespace().collect();
    let after = |key: &str, from: usize| -> Option<(usize, &str)> {
        let i = toks.iter().skip(from).position(|t| *t == key)? + from;
        toks.get(i + 1).map(|t| (i + 1, *t))
    };
    let mut l = LoadLine { second: second.saturating_sub(1), ..Default::default() };
    let f = &mut l.figures;
    if let Some((_, v)) = after("offered", 0) {
        f.offered_rps = v.strip_suffix("/s").and_then(|x| x.parse().ok()).unwrap_or(0.0);
    }
    // "(   198.0/s)"
    let achieved = rest.split_once('(').and_then(|(_, r)| r.split_once("/s)")).map(|(x, _)| x.trim().to_string());
    f.achieved_rps = achieved.and_then(|x| x.parse().ok()).unwrap_or(0.0);
    let corr = toks.iter().position(|t| *t == "corrected")?;
    f.p95_corrected_s = after("p95", corr).and_then(|(_, v)| parse_latency(v));
    let unc = toks.iter().position(|t| *t == "uncorrected")?;
    f.p95_uncorrected_s = after("p95", unc).and_then(|(_, v)| parse_latency(v));
    // "  ok (2xx) 190  shed 503 5  other 5xx 1 …": each counter after its label.
    let counters = &rest[rest.find("uncorrected")?..];
    let mut status = crate::load::StatusCounts::default();
    for (label, n) in status.labelled_mut() {
        let after_label = counters.split_once(&format!("  {label} ")).map(|(_, r)| r);
        *n = after_label.and_then(|r| r.split_whitespace().next()?.parse().ok()).unwrap_or(0);
    }
    f.shed = status.shed_503;
    f.errors = status.errors();
    f.dropped = after("dropped", unc).and_then(|(_, v)| v.parse::<u64>().ok()).unwrap_or(0);
    l.ok = status.ok;
    if status.total() == 0 {
        // "no requests": keep the percentiles unknown rather than 0.
        f.p95_corrected_s = None;
        f.p95_uncorrected_s = None;
    }
    Some(l)
}

/// A WebRTC run's second in the console's terms (as `ClientSecond::from(&WebRtcSecond)`):
/// frames the plan asks for and processed back per second, the frame round trip's p95, failed sessions and
/// offers as errors, refused offers as shed, lost frames as dropped.
fn parse_webrtc_line(second: u64, rest: &str) -> Option<LoadLine> {
    let toks: Vec<&str> = rest.split_whitespace().collect();
    let after = |key: &str| toks.iter().position(|t| *t == key).and_then(|i| toks.get(i + 1)).copied();
    let count = |key: &str| after(key).and_then(|v| v.trim_end_matches(')').parse::<u64>().ok());
    let back = count("back")?;
    // "back    30 ( 30.0/s)"
    let fps_back =
        rest.split_once(" back ").and_then(|(_, r)| r.split_once('(')).and_then(|(_, r)| r.split_once("/s)"));
    let figures = ClientSecond {
        offered_rps: after("asked").and_then(|v| v.trim_end_matches("/s").parse().ok())?,
        achieved_rps: fps_back.and_then(|(x, _)| x.trim().parse().ok()).unwrap_or(0.0),
        p95_corrected_s: if back > 0 { after("p95").and_then(parse_latency) } else { None },
        p95_uncorrected_s: None,
        errors: count("failed").unwrap_or(0),
        shed: count("refused").unwrap_or(0),
        dropped: count("lost").unwrap_or(0),
    };
    Some(LoadLine { second, ok: back, figures })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{LoadMode, LoadSecond, Percentiles, StatusCounts};

    #[test]
    fn parses_the_webrtc_engines_own_line() {
        use crate::load::webrtc::{PodSecond, SessionCounts, WebRtcSecond};
        let s = WebRtcSecond {
            second: 6,
            target_sessions: 8,
            offered_fps: 120.0,
            active_sessions: 7,
            counts: SessionCounts {
                connected: 1,
                refused: 2,
                failed: 1,
                frames_sent: 105,
                frames_back: 90,
                frames_lost: 12,
                ..Default::default()
            },
            fps_back: 90.0,
            kbps_out: 600.0,
            kbps_in: 550.0,
            frame: Percentiles { count: 90, p95_ms: 143.2, ..Default::default() },
            all_frame: Percentiles::default(),
            pods: ["10.0.0.7:8080", "10.0.0.8:8080"]
                .map(|pod| PodSecond {
                    pod: pod.into(),
                    active_sessions: 3,
                    frames_back: 45,
                    frames_lost: 6,
                    frame: Percentiles { count: 45, p95_ms: 20.0, ..Default::default() },
                })
                .to_vec(),
        };
        let line = crate::load::webrtc::second_line(&s);
        let l = parse_line(&line).unwrap_or_else(|| panic!("not parsed: {line}"));
        assert_eq!((l.second, l.ok), (6, 90), "{line}");
        // The same figures as on this machine, the p95 to the line's precision.
        let here = ClientSecond::from(&s);
        let p95 = l.figures.p95_corrected_s.unwrap_or_else(|| panic!("no p95: {line}"));
        assert!((p95 - 0.1432).abs() < 0.001, "{line}");
        assert_eq!(ClientSecond { p95_corrected_s: here.p95_corrected_s, ..l.figures }, here, "{line}");
    }

    #[test]
    fn parses_the_load_engines_own_line() {
        let s = LoadSecond {
            second: 4,
            mode: LoadMode::OpenLoop,
            offered_rps: 200.0,
            sent: 200,
            completed: 198,
            achieved_rps: 198.0,
            status: StatusCounts {
                ok: 190,
                shed_503: 5,
                other_5xx: 1,
                client_4xx: 1,
                timeouts: 2,
                ..Default::default()
            },
            corrected: Percentiles { count: 198, p95_ms: 123.4, ..Default::default() },
            uncorrected: Percentiles { count: 198, p95_ms: 87.65, ..Default::default() },
            all_corrected: Percentiles { count: 199, p95_ms: 120.0, ..Default::default() },
            dropped: 3,
            concurrency: 0,
            planned: 203,
            inflight: 2,
            targets: 1,
        };
        let line = crate::load::second_line(&s);
        let l = parse_line(&line).unwrap_or_else(|| panic!("not parsed: {line}"));
        assert_eq!(l.second, 4, "{line}");
        let f = &l.figures;
        assert_eq!(f.offered_rps, 200.0);
        assert_eq!(f.achieved_rps, 198.0);
        assert!((f.p95_corrected_s.unwrap() - 0.1234).abs() < 1e-9, "{line}");
        assert!((f.p95_uncorrected_s.unwrap() - 0.08765).abs() < 1e-4, "{line}");
        assert_eq!((l.ok, f.shed, f.errors, f.dropped), (190, 5, 4, 3), "{line}");
    }

    #[test]
    fn fills_the_real_template() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/load");
        let spec = LoadJobSpec {
            scenario_toml: "name = \"x\"\n# a comment: __RTC_RUN_ID__\n[load]\nfrom = \"in-cluster\"\n".into(),
            run_id: "r1".into(),
            namespace: "demo".into(),
            stage: Some("peak".into()),
            service_url: service_url("gpu-media", "demo", 80),
            image: Some(ImageRef::parse("registry.example/rtc-demo:test").unwrap()),
            measured: Some((41.256, 12)),
        };
        let objs = render(&dir, &spec).unwrap();
        let kinds: Vec<&str> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, vec!["ServiceAccount", "ConfigMap", "Job", "NetworkPolicy"]);
        assert!(objs.iter().all(|o| o["metadata"]["namespace"] == "demo"));
        assert_eq!(
            objs[1]["data"][SCENARIO_KEY],
            spec.scenario_toml.as_str(),
            "verbatim, even with a placeholder-looking line"
        );
        assert_eq!(objs[2]["metadata"]["annotations"][RUN_ID_ANNOTATION], "r1");
        let c = &objs[2]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "registry.example/rtc-demo:test");
        assert_eq!(
            c["args"],
            serde_json::json!([
                "load",
                "--scenario",
                "/etc/rtc-demo/scenario.toml",
                "--json",
                "--pod-rps",
                "41.26",
                "--iters",
                "12",
                "--stage",
                "peak",
                "http://gpu-media.demo.svc:80"
            ])
        );
        let e = render(std::path::Path::new("/nonexistent"), &spec).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/job.yaml") && e.contains("cannot read"), "{e}");
    }

    #[test]
    fn other_lines_are_ignored() {
        assert_eq!(parse_line("-- stage 1/4: idle (5 rps)"), None);
        assert_eq!(parse_line("{\"summary\": 1}"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("[abc] nonsense"), None);
    }

    #[test]
    fn latencies() {
        assert_eq!(parse_latency("850µs"), Some(0.00085));
        assert_eq!(parse_latency("2.50ms"), Some(0.0025));
        assert_eq!(parse_latency("1.20s"), Some(1.2));
        assert_eq!(parse_latency("fast"), None);
    }
}
