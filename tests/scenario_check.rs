//! Scenario files: the shipped ones pass `rtc-demo check`; malformed ones fail with
//! file:line:column and the expected form.
use std::path::Path;
use std::process::Command;

use rtc_demo::scenario::{Advance, Rate, Scenario, StageLoad};

const BIN: &str = env!("CARGO_BIN_EXE_rtc-demo");
const SHIPPED: &[&str] = &["baseline", "moderate", "heavy", "keynote", "keynote-local", "rehearsal", "webrtc"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_shipped_scenario_passes_check() {
    let files: Vec<String> =
        SHIPPED.iter().map(|n| root().join(format!("scenarios/{n}.toml")).display().to_string()).collect();
    let out = Command::new(BIN).arg("check").args(&files).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), SHIPPED.len(), "{stdout}");
}

#[test]
fn shipped_scenarios_follow_the_slo_and_have_real_notes() {
    for name in SHIPPED {
        let s = Scenario::load(root().join(format!("scenarios/{name}.toml"))).unwrap();
        assert_eq!(s.name, *name);
        assert_eq!(s.slo.p95.as_millis(), 100, "{name}");
        assert_eq!((s.slo.scale_up_above.as_millis(), s.slo.scale_down_below.as_millis()), (100, 50), "{name}");
        assert_eq!((s.slo.scale_up_after.as_secs(), s.slo.scale_down_after.as_secs()), (30, 120), "{name}");
        assert_eq!((s.slo.min_replicas, s.slo.max_replicas), (2, 10), "{name}");
        for st in &s.stages {
            assert!(st.notes.len() > 80, "{name}/{}: notes too thin", st.name);
        }
    }
    let k = Scenario::load(root().join("scenarios/keynote.toml")).unwrap();
    let names: Vec<&str> = k.stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["idle", "ramp", "peak", "cool-down"]);
    let total = k.total_duration().as_secs();
    assert!((200..=300).contains(&total), "keynote lasts {total}s");
    assert!(matches!(k.stages[1].load, StageLoad::PodRate(Rate::Ramp { .. })), "the keynote ramps in pods of capacity");
    assert!(k.request.service_time.is_some(), "and sizes its request to a service time on the pod's device");
    assert_eq!(k.stages[3].advance, Advance::Manual);
    let r = Scenario::load(root().join("scenarios/rehearsal.toml")).unwrap();
    let total = r.total_duration().as_secs();
    assert!((120..=400).contains(&total), "rehearsal lasts {total}s: a few minutes at most");
    // The cool-down must outlast the 2-minute scale-down window, or replicas never fall back.
    let cool_down = r.stages.last().unwrap().duration;
    assert!(
        cool_down > r.slo.scale_down_after,
        "cool-down {cool_down:?} vs scale-down window {:?}",
        r.slo.scale_down_after
    );
    assert!(r.local.replicas_min >= 1 && r.local.replicas_max <= 6);
    // The story about whole stages: a steady peak keeps its pods.
    let peak = r.stages.iter().find(|s| s.name == "peak").unwrap();
    assert_eq!(peak.expect.scale_downs_at_most, Some(0));
    assert!(peak.expect.out_of_slo_at_most.is_some());
    // Scale-out must add capacity on any laptop: the replicas are emulated GPU pods.
    assert_eq!(r.local.device, rtc_demo::scenario::LocalDevice::Emulated);
    assert!(r.stages.iter().any(|s| s.expect.p95_recovers_below.is_some_and(|d| d.as_millis() <= 100)));
    assert!(r.stages.last().unwrap().expect.p95_below.is_some_and(|d| d.as_millis() <= 50));
}

/// (fixture, line, column, words the message must contain)
const MALFORMED: &[(&str, usize, usize, &str)] = &[
    ("unknown_key", 11, 1, "unknown field `speed`"),
    ("wrong_type", 10, 8, "rate `fast` is not a rate"),
    ("wrong_type_iters", 5, 9, "invalid type"),
    ("negative_rate", 10, 8, "rate -20 is out of range"),
    ("no_stages", 2, 10, "no stages"),
    ("missing_stages", 1, 1, "missing field `stages`"),
    ("ramp_without_to", 10, 8, "a ramp without `to`"),
    ("bad_duration", 9, 12, "`10 parsecs` is not a duration"),
    ("stage_without_rate", 7, 1, "neither `rate` nor `concurrency`"),
    ("bad_threshold", 2, 14, "unknown metric `p97`"),
    ("syntax", 2, 9, "unclosed table"),
    ("bad_image", 6, 9, "repository name must be lowercase"),
    ("bad_ingress_from", 6, 16, "`http://lb.example.com` is neither a namespace name"),
    ("bad_prometheus_service", 5, 11, "`http://prometheus-server` is not a Service name"),
    ("zero_pods", 10, 8, "rate `0 pods` is out of range"),
    ("negative_pods", 10, 8, "rate `-1 pods` is out of range"),
    ("pods_bad_unit", 10, 8, "rate `2.5 nodes` is not a rate"),
    ("ramp_mixed_units", 10, 8, "different units"),
    ("iters_and_service_time", 5, 1, "both `iters` and `service_time`"),
    ("service_time_over_slo", 8, 1, "service_time = 150ms is not below the SLO's p95 of 100ms"),
    ("webrtc_h264", 5, 1, "codec = \"h264\""),
    ("sessions_in_http", 10, 1, "ramps WebRTC sessions in a scenario of HTTP requests"),
    ("rate_in_webrtc", 9, 1, "offers `rate` in a WebRTC scenario"),
    ("webrtc_http_threshold", 2, 1, "threshold `error_rate<1%` does not judge"),
    ("sessions_ramp_without_to", 9, 12, "a sessions ramp needs `from` and `to`"),
];

#[test]
fn malformed_scenarios_name_line_column_and_the_expected_form() {
    for (fixture, line, col, words) in MALFORMED {
        let path = root().join(format!("tests/fixtures/scenarios/{fixture}.toml"));
        let err = Scenario::load(&path).expect_err(fixture);
        assert_eq!((err.line, err.column), (*line, *col), "{fixture}: {err}");
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("{}:{line}:{col}: ", path.display())), "{shown}");
        assert!(shown.contains(words), "{fixture}: {shown}");
        assert!(shown.contains("expected"), "{fixture}: {shown}");
    }
}

#[test]
fn check_exits_1_and_reports_every_bad_file() {
    let good = root().join("scenarios/keynote.toml");
    let bad1 = root().join("tests/fixtures/scenarios/negative_rate.toml");
    let bad2 = root().join("tests/fixtures/scenarios/bad_duration.toml");
    let out = Command::new(BIN).arg("check").args([&good, &bad1, &bad2]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("negative_rate.toml:10:8:"), "{err}");
    assert!(err.contains("bad_duration.toml:9:12:"), "{err}");
    let missing = Command::new(BIN).args(["check", "/nonexistent/x.toml"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn unknown_keys_are_rejected_at_every_level() {
    for (text, key) in [
        ("name = \"x\"\ncolour = 1\n[[stages]]\nname = \"a\"\nduration = \"1s\"\nrate = 1\n", "colour"),
        ("name = \"x\"\n[slo]\np96 = \"1s\"\n[[stages]]\nname = \"a\"\nduration = \"1s\"\nrate = 1\n", "p96"),
        ("name = \"x\"\n[local]\nreplicas = 3\n[[stages]]\nname = \"a\"\nduration = \"1s\"\nrate = 1\n", "replicas"),
        ("name = \"x\"\n[[stages]]\nname = \"a\"\nduration = \"1s\"\nrate = { from = 1, to = 2, by = 3 }\n", "by"),
        (
            "name = \"x\"\n[[stages]]\nname = \"a\"\nduration = \"1s\"\nrate = 1\nexpect = { replicas = 3 }\n",
            "replicas",
        ),
    ] {
        let e = Scenario::from_toml(text, "inline.toml").unwrap_err();
        assert!(e.line > 0 && e.column > 0 && e.message.contains(key), "{e}");
    }
}

#[test]
fn a_valid_scenario_parses_to_engine_plans() {
    let text = r#"
name = "t"
[request]
pixels = "320x180"
iters = 1
effects = ["blur"]
[[stages]]
name = "up"
duration = "1m30s"
rate = { from = 10, to = 40 }
[[stages]]
name = "closed"
duration = "10s"
concurrency = 4
advance = "manual"
expect = { replicas_at_least = 4 }
"#;
    let s = Scenario::from_toml(text, "t.toml").unwrap();
    assert_eq!(s.request.path_and_query(), "/process?pixels=320x180&iters=1&effects=blur");
    assert_eq!(
        s.stages[0].plan(),
        Ok(rtc_demo::load::RatePlan::Ramp { from: 10.0, to: 40.0, over: std::time::Duration::from_secs(90) })
    );
    assert_eq!(s.stages[1].plan(), Ok(rtc_demo::load::RatePlan::Concurrency { workers: 4 }));
    assert_eq!(s.stages[1].expect.replicas_at_least, Some(4));
    assert!(s.prometheus.p95.contains(">= 0") && s.prometheus.p95.contains("or vector(0)"));
}

#[test]
fn a_webrtc_scenario_parses_to_session_plans() {
    use rtc_demo::load::webrtc::SessionPlan;
    let s = Scenario::load(root().join("scenarios/webrtc.toml")).unwrap();
    assert_eq!(s.request.kind, rtc_demo::scenario::RequestKind::Webrtc);
    assert_eq!((s.request.pixels, s.request.fps, s.request.kbps), ((640, 360), 15, 600));
    assert_eq!(
        s.request.url_for("http://10.0.0.7:8080"),
        "http://10.0.0.7:8080/whip?iters=1&effects=blur,translate,color"
    );
    assert_eq!(s.stages[0].session_plan(), Some(SessionPlan::Constant { sessions: 2 }));
    assert_eq!(
        s.stages[1].session_plan(),
        Some(SessionPlan::Ramp { from: 2, to: 8, over: std::time::Duration::from_secs(60) })
    );
    // The console's request-rate stages refuse it by name instead of guessing a rate.
    let e = s.stages[0].plan().unwrap_err().to_string();
    assert!(e.contains("ramps WebRTC sessions") && e.contains("expected `rtc-demo load --scenario`"), "{e}");
    assert!(s.thresholds.iter().all(|t| t.metric.is_webrtc()));
}

/// `check --hpa` reads a HorizontalPodAutoscaler as the local rehearsal does; `conduct` reads
/// its HPA through it (a child process) and reports the same errors, file named.
#[test]
fn check_hpa_prints_the_settings_and_conduct_reports_its_errors() {
    let hpa = root().join("manifests/autoscaling/load-adapter/hpa.yaml");
    let out = Command::new(BIN).args(["check", "--hpa"]).arg(&hpa).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("HPA gpu-media: 2–10 replicas"), "{stdout}");
    let out = Command::new(BIN).args(["check", "--hpa"]).arg(&hpa).arg("--json").output().unwrap();
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!((j["min_replicas"].as_u64(), j["max_replicas"].as_u64()), (Some(2), Some(10)));
    let metrics: Vec<(&str, f64)> = j["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .map(|m| (m["name"].as_str().unwrap(), m["target"].as_f64().unwrap()))
        .collect();
    assert_eq!(metrics, [("rtc_worker_utilization", 0.7), ("rtc_latency_guard", 0.1)]);

    let dir = std::env::temp_dir().join(format!("rtc-check-hpa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("hpa.yaml");
    std::fs::write(
        &bad,
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nspec:\n  minReplicas: 3\n  maxReplicas: 2\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["check", "--hpa"]).arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains(&bad.display().to_string()) && stderr.contains("minReplicas"), "{stderr}");
    let scenario = root().join("tests/fixtures/conduct/e2e-cpu.toml");
    let out = Command::new(BIN)
        .args(["conduct", "--backend", "local", "--headless", "--hpa"])
        .arg(&bad)
        .arg(&scenario)
        .arg("--report-dir")
        .arg(dir.join("report"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&bad.display().to_string()) && stderr.contains("need 1 ≤ minReplicas ≤ maxReplicas"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rates in pods of capacity wait for the measurement, then become requests/s; `check`
/// explains them.
#[test]
fn pod_rates_are_resolved_by_the_measured_capacity_and_explained_by_check() {
    let text = r#"
name = "pods"
[request]
service_time = "20ms"
[[stages]]
name = "idle"
duration = "10s"
rate = 0
[[stages]]
name = "ramp"
duration = "20s"
rate = { from = "0 pods", to = "2.5 pods" }
[[stages]]
name = "peak"
duration = "30s"
rate = "3.2 pods"
"#;
    let s = Scenario::from_toml(text, "pods.toml").unwrap();
    assert!(s.needs_capacity());
    assert_eq!(s.request.service_time, Some(std::time::Duration::from_millis(20)));
    assert!(matches!(s.stages[2].load, StageLoad::PodRate(Rate::Constant(p)) if p == 3.2));
    let e = s.stages[2].plan().unwrap_err().to_string();
    assert!(e.contains("stage `peak`") && e.contains("pods of capacity"), "{e}");
    let m = s.in_measured_units(Some(40.0), Some(12));
    assert_eq!(m.request.iters, 12);
    assert_eq!(m.stages[0].plan(), Ok(rtc_demo::load::RatePlan::Constant { rps: 0.0 }));
    assert_eq!(
        m.stages[1].plan(),
        Ok(rtc_demo::load::RatePlan::Ramp { from: 0.0, to: 100.0, over: std::time::Duration::from_secs(20) })
    );
    assert_eq!(m.stages[2].plan(), Ok(rtc_demo::load::RatePlan::Constant { rps: 128.0 }));
    assert_eq!(m.stages[2].pods_text().as_deref(), Some("3.2 pods"), "the pods as written stay");

    let dir = std::env::temp_dir().join(format!("rtc-check-pods-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pods.toml");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(BIN).arg("check").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("rates in pods of capacity (ramp 0 → 2.5 pods, peak 3.2 pods)"), "{stdout}");
    assert!(stdout.contains("one pod = the requests/s one pod holds within the SLO's p95 of 100ms"), "{stdout}");
    assert!(stdout.contains("iters sized to a 20ms service time"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
