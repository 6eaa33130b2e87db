//! The shipped rehearsal, end to end: `rtc-demo conduct --backend local
//! scenarios/rehearsal.toml --headless` with real emulated-GPU `serve` children, the real
//! load engine and the HPA algorithm; in CI with every time scaled down (about 2½ minutes),
//! in real time (about 6½ minutes) with `scripts/test.sh --full`. It must tell the talk's story in
//! order: a replica added in the climb while p95 is still under the SLO → at the load step
//! p95 over the SLO → scale-up → p95 back under the SLO at the same offered rate for at
//! least 10 s, with no scale-down while the peak holds → scale-down in the cool-down; under
//! 2 % of requests failed; verdict passed.
//!
//! Beside it, in the same binary so that they run at the same time (they wait on real time
//! and need little CPU):
//! the autoscaling claim at a steady peak, compressed for CI: scenarios/soak.toml's sizing
//! (emulated replicas of about 49 req/s, a step to 150 req/s, about 3 replicas of capacity)
//! with every time scaled about a quarter (tests/fixtures/conduct/soak-compressed.toml), run
//! headless twice at once with real `serve` children and the real load engine:
//! - with the shipped load-adapter HPA (worker utilisation, p95 as the guard): no scale-down
//!   while the peak holds, p95 within the SLO for at least 95 % of the peak's seconds once
//!   the step has been answered, and the cool-down still scales down;
//! - with the latency-only HPA on the same file: it gives the replicas back during the peak
//!   and takes them again (the flap), which the figures count.
//!
//! The HPA manifests are the shipped ones with their windows and policy periods scaled the
//! same way, so the metrics and targets under test are exactly what a cluster runs. The full
//! 11-minute soak is `scripts/soak.sh`.
use std::path::{Path, PathBuf};
use std::process::Command;

use rtc_demo::conduct::report::{self, Report};

const BIN: &str = env!("CARGO_BIN_EXE_rtc-demo");

/// The shipped rehearsal in real time (about 6½ minutes): `scripts/test.sh --full` runs it;
/// CI runs [`the_compressed_rehearsal_tells_the_same_story`], the same file and assertions
/// with every time scaled down.
#[test]
#[ignore = "the full rehearsal in real time (6½ min): scripts/test.sh --full runs it"]
fn the_rehearsal_shows_scale_out_restoring_the_slo() {
    let dir = std::env::temp_dir().join(format!("rtc-rehearsal-{}", std::process::id()));
    let out = Command::new(BIN)
        .args(["conduct", "--backend", "local", "scenarios/rehearsal.toml", "--headless", "--report-dir"])
        .arg(&dir)
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the verdict must pass:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    check_the_rehearsal_story(&report::read(&dir).unwrap(), &stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

/// scenarios/rehearsal.toml itself with its stages, the replicas' p95 window and the HPA's
/// windows and periods scaled down (idle 8 s, ramp 10 s, climb 22 s, peak 45 s, cool-down
/// 45 s; 8 s up, 30 s down): the same sizing, story and assertions as the full run, which
/// it replaces in CI.
#[test]
fn the_compressed_rehearsal_tells_the_same_story() {
    let mut scenario = std::fs::read_to_string(root().join("scenarios/rehearsal.toml")).unwrap();
    for (from, to) in [
        ("name = \"idle\"\nduration = \"20s\"", "name = \"idle\"\nduration = \"8s\""),
        ("name = \"ramp\"\nduration = \"30s\"", "name = \"ramp\"\nduration = \"10s\""),
        ("name = \"climb\"\nduration = \"40s\"", "name = \"climb\"\nduration = \"22s\""),
        ("name = \"peak\"\nduration = \"120s\"", "name = \"peak\"\nduration = \"45s\""),
        ("name = \"cool-down\"\nduration = \"170s\"", "name = \"cool-down\"\nduration = \"45s\""),
        ("port_base = 18080", "port_base = 0"),
        ("\"--max-inflight\", \"192\"]", "\"--max-inflight\", \"192\", \"--p95-window\", \"5s\"]"),
    ] {
        assert!(scenario.contains(from), "scenarios/rehearsal.toml no longer has `{from}`: update this test's scaling");
        scenario = scenario.replace(from, to);
    }
    let r = run("rehearsal", "manifests/autoscaling/load-adapter/hpa.yaml", &scenario);
    assert!(r.exited_ok, "the verdict must pass:\n{}", r.stdout);
    check_the_rehearsal_story(&r.report, &r.stdout);
}

/// scenarios/webrtc-local.toml in real time (about 5 minutes): `scripts/test.sh --full`.
#[test]
#[ignore = "the full WebRTC rehearsal in real time (5 min): scripts/test.sh --full runs it"]
fn the_webrtc_rehearsal_pins_sessions_to_their_pods() {
    let scenario = std::fs::read_to_string(root().join("scenarios/webrtc-local.toml")).unwrap();
    let scenario = scenario.replace("port_base = 18280", "port_base = 0");
    let r = run_with_hpa("webrtc-full", "manifests/autoscaling/load-adapter/hpa.yaml", &scenario, false);
    check_the_webrtc_story(&r);
}

/// scenarios/webrtc-local.toml with its stages, the replicas' p95 window and the HPA's windows
/// scaled down (calls 8 s, join 15 s, wait 22 s, more 12 s, hold 10 s, leave 45 s): synthetic
/// WebRTC publishers from the real load engine on real emulated-GPU `serve` replicas, the
/// codecs real. Replaces the full run in CI, with its assertions.
#[test]
fn the_compressed_webrtc_rehearsal_pins_sessions_to_their_pods() {
    let mut scenario = std::fs::read_to_string(root().join("scenarios/webrtc-local.toml")).unwrap();
    for (from, to) in [
        ("name = \"calls\"\nduration = \"20s\"", "name = \"calls\"\nduration = \"8s\""),
        ("name = \"join\"\nduration = \"30s\"", "name = \"join\"\nduration = \"15s\""),
        ("name = \"wait\"\nduration = \"45s\"", "name = \"wait\"\nduration = \"22s\""),
        ("name = \"more\"\nduration = \"20s\"", "name = \"more\"\nduration = \"12s\""),
        ("name = \"hold\"\nduration = \"30s\"", "name = \"hold\"\nduration = \"10s\""),
        ("name = \"leave\"\nduration = \"160s\"", "name = \"leave\"\nduration = \"45s\""),
        ("port_base = 18280", "port_base = 0"),
        ("\"--webrtc-tcp\", \"127.0.0.1:0\"]", "\"--webrtc-tcp\", \"127.0.0.1:0\", \"--p95-window\", \"5s\"]"),
    ] {
        assert!(
            scenario.contains(from),
            "scenarios/webrtc-local.toml no longer has `{from}`: update this test's scaling"
        );
        scenario = scenario.replace(from, to);
    }
    let r = run("webrtc", "manifests/autoscaling/load-adapter/hpa.yaml", &scenario);
    check_the_webrtc_story(&r);
}

/// The WebRTC lesson on a report: sessions ramp; the first replicas saturate (frame p95 over
/// the SLO); scale-out; the later sessions land on the new replicas, whose frames come back
/// within the SLO while the first replicas stay over it; the cool-down scales in with no
/// session cut.
fn check_the_webrtc_story(r: &Run) {
    assert!(r.exited_ok, "the verdict must pass:\n{}", r.stdout);
    let load = r.report.summary.load.as_ref().unwrap_or_else(|| panic!("no load totals:\n{}", r.stdout));
    let counts = &load["counts"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v} in {load}"));
    assert!(n(&counts["connected"]) >= 16, "sessions ramp to 16: {counts}");
    assert_eq!(n(&counts["failed"]), 0, "no session cut, not even by the scale-in: {load}");
    assert!(n(&counts["refused"]) >= 1, "the full replicas refused offers, retried elsewhere: {counts}");
    let wait = stage(&r.report, "wait");
    assert!(
        wait.iter().any(|row| row.sample.p95_server_s.is_some_and(|p| p > 0.1)),
        "frame p95 over the SLO on the saturated replicas:\n{}",
        r.stdout
    );
    assert!(
        stage(&r.report, "more").first().is_some_and(|row| row.sample.pods_ready >= 3),
        "scale-out before `more`:\n{}",
        r.stdout
    );
    // Per replica (the engine's view): the first two hold the early sessions, over the SLO;
    // the later ones went to new replicas, within it.
    let pods = load["pods"].as_array().unwrap_or_else(|| panic!("no per-pod figures: {load}"));
    let p95 = |p: &serde_json::Value| p["frame"]["p95_ms"].as_f64().unwrap_or(f64::NAN);
    let (first, later): (Vec<&serde_json::Value>, Vec<&serde_json::Value>) =
        pods.iter().partition(|p| n(&p["connected"]) >= 6);
    assert_eq!(first.len(), 2, "two first replicas with their six sessions each: {pods:?}");
    assert!(first.iter().all(|p| p95(p) > 100.0), "the first replicas stay over the SLO: {pods:?}");
    let new: Vec<_> = later.iter().filter(|p| n(&p["connected"]) > 0).collect();
    assert!(!new.is_empty(), "later sessions on the new replicas: {pods:?}");
    assert!(new.iter().all(|p| p95(p) < 100.0), "the new replicas' frames within the SLO: {pods:?}");
    let last = r.report.rows.last().unwrap();
    assert_eq!((last.sample.pods_ready, last.sample.desired), (2, 2), "scaled back in:\n{}", r.stdout);
}

/// The talk's story, in order, on a rehearsal's report.
fn check_the_rehearsal_story(rep: &Report, stdout: &str) {
    let (rows, summary) = (&rep.rows, &rep.summary);
    assert!(summary.backend.contains("emulated GPU"), "{}", summary.backend);
    let talk = &summary.talk;
    let over = talk.first_over_slo_s.unwrap_or_else(|| panic!("p95 never went over the SLO:\n{stdout}"));
    let up = talk.first_scale_up_s.unwrap_or_else(|| panic!("no scale-up after p95 went over:\n{stdout}"));
    let restored = talk.slo_restored_s.unwrap_or_else(|| panic!("SLO never restored:\n{stdout}"));
    assert!(over < up && up < restored, "{talk:?}");

    // Restored while the peak load goes on: the same offered rate, under the SLO, ≥ 10 s.
    let at = |t: f64| rows.iter().find(|r| r.sample.t_s >= t).expect("a row at that second");
    let peak = &at(restored).stage_name;
    assert_eq!(peak, "peak", "restored in stage {peak}, not under the peak load");
    let held: Vec<_> = rows.iter().filter(|r| r.sample.t_s >= restored && &r.stage_name == peak).collect();
    assert!(held.len() >= 10, "only {} seconds of peak left after the restore", held.len());
    let rate = held[0].sample.offered_rps;
    // The peak is written as 3.25 pods: one replica's capacity, measured before the stages.
    let cap = summary.capacity.as_ref().unwrap_or_else(|| panic!("no capacity measured:\n{stdout}"));
    assert_eq!((cap.device.as_str(), cap.workers, cap.iters), ("emulated", 1, 1), "{cap:?}");
    // One 20 ms stream (a timer that runs late on a busy machine): one frame per compute time.
    let most = 1000.0 / cap.compute_ms;
    assert!(
        cap.compute_ms >= 19.5 && cap.pod_rps <= 1.15 * most && cap.pod_rps >= 0.7 * most,
        "one 20 ms stream: {cap:?}"
    );
    assert!((rate - 3.25 * cap.pod_rps).abs() <= 0.05 * rate, "peak {rate} req/s vs 3.25 × {}", cap.pod_rps);
    assert!(stdout.contains(&format!("capacity: {}", cap.line())), "{stdout}");
    for r in &held {
        assert!((r.sample.offered_rps - rate).abs() <= 0.05 * rate, "offered rate changed: {:?}", r.sample);
        let p95 = r.sample.p95_server_s.or(r.sample.p95_client_s).expect("p95 known");
        assert!(p95 <= 0.1, "p95 over the SLO after the restore: {:?}", r.sample);
    }
    // Scale-out on load before latency: a third replica in the climb, p95 never over there.
    let climb = stage(rep, "climb");
    assert!(climb.last().unwrap().sample.desired >= 3, "no replica added in the climb:\n{stdout}");
    assert_eq!(stage_figures(rep, "climb").out_of_slo_s, 0, "{stdout}");
    assert!(climb.iter().any(|r| r.sample.desired >= 3 && r.sample.t_s < over), "{talk:?}");
    // The steady peak keeps its replicas.
    assert_eq!(stage_figures(rep, "peak").scale_downs, 0, "scaled down while the peak held:\n{stdout}");
    let replicas_at_restore = talk.restored_at_replicas.unwrap();
    assert!(replicas_at_restore > 2, "restored at {replicas_at_restore} replicas: no scale-out");

    // Scale-down in the cool-down, after the 2-minute window.
    let cool: Vec<_> = rows.iter().filter(|r| r.stage_name == "cool-down").collect();
    let first = cool.first().expect("cool-down recorded");
    let last = cool.last().unwrap();
    assert!(first.sample.pods_ready > 2 && last.sample.desired == 2, "{:?} .. {:?}", first.sample, last.sample);
    assert!(
        summary.events.iter().any(|e| e.reason == "SuccessfulRescale" && e.at_s >= first.sample.t_s),
        "no scale-down event in the cool-down"
    );

    // Under 2 % failed (every request without a 2xx answer), and every expectation held.
    let load = summary.load.as_ref().expect("load summary");
    let status = load["status"].as_object().expect("status counts");
    let count = |k: &str| status[k].as_u64().unwrap_or_else(|| panic!("no status.{k}"));
    // Every counter but `ok` is a request without a 2xx answer.
    let failed: u64 = status.keys().filter(|k| *k != "ok").map(|k| count(k)).sum();
    let total = count("ok") + failed;
    assert!(failed as f64 <= 0.02 * total as f64, "{failed} failed of {total}");
    assert!(summary.passed, "{stdout}");
    for e in &summary.expectations {
        assert!(e.ok, "expectation failed: {}\n{stdout}", e.text);
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shipped manifest with its windows and periods scaled for the compressed run.
fn compressed_hpa(manifest: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(root().join(manifest)).unwrap();
    let mut out = text.clone();
    for (from, to) in [
        ("stabilizationWindowSeconds: 30\n", "stabilizationWindowSeconds: 8\n"),
        ("stabilizationWindowSeconds: 120\n", "stabilizationWindowSeconds: 30\n"),
        ("periodSeconds: 15\n", "periodSeconds: 4\n"),
        ("periodSeconds: 30\n", "periodSeconds: 8\n"),
    ] {
        assert!(out.contains(from), "{manifest} no longer has `{}`: update this test's scaling", from.trim());
        out = out.replace(from, to);
    }
    let path = dir.join(Path::new(manifest).file_name().unwrap());
    std::fs::write(&path, out).unwrap();
    path
}

struct Run {
    report: Report,
    stdout: String,
    exited_ok: bool,
}

/// `conduct --headless` on `scenario` (a TOML text) with `hpa_manifest` compressed.
fn run(name: &str, hpa_manifest: &str, scenario: &str) -> Run {
    run_with_hpa(name, hpa_manifest, scenario, true)
}

/// As [`run`], the HPA's windows compressed or as shipped.
fn run_with_hpa(name: &str, hpa_manifest: &str, scenario: &str, compress: bool) -> Run {
    let dir = std::env::temp_dir().join(format!("rtc-autoscaling-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let hpa = if compress { compressed_hpa(hpa_manifest, &dir) } else { root().join(hpa_manifest) };
    let scenario_path = dir.join("scenario.toml");
    std::fs::write(&scenario_path, scenario).unwrap();
    let report_dir = dir.join("report");
    let out = Command::new(BIN)
        .args(["conduct", "--backend", "local", "--headless", "--sync-period", "1s", "--hpa"])
        .arg(&hpa)
        .arg("--report-dir")
        .arg(&report_dir)
        .arg(&scenario_path)
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let report = report::read(&report_dir)
        .unwrap_or_else(|e| panic!("{name}: no report ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    let _ = std::fs::remove_dir_all(&dir);
    // The run's figures in the test's output (.config/nextest.toml shows it for this binary
    // even when it passes): the summary, everything after the per-second lines.
    if let Some(at) = stdout.find("── summary") {
        eprintln!("{name}, {}:\n{}", Path::new(hpa_manifest).display(), &stdout[at..]);
    }
    Run { report, stdout, exited_ok: out.status.success() }
}

/// The compressed soak (its replicas on ports the OS picks, so two run side by side).
fn soak(name: &str, hpa_manifest: &str) -> Run {
    let scenario = std::fs::read_to_string(root().join("tests/fixtures/conduct/soak-compressed.toml")).unwrap();
    run(name, hpa_manifest, &scenario)
}

fn stage<'a>(r: &'a Report, name: &str) -> Vec<&'a report::Row> {
    r.rows.iter().filter(|row| row.stage_name == name).collect()
}

fn stage_figures<'a>(r: &'a Report, name: &str) -> &'a rtc_demo::conduct::story::StageWithinSlo {
    let idx = r.summary.stages.iter().position(|s| s.name == name).unwrap();
    r.summary.talk.stages.iter().find(|s| s.stage == idx).unwrap()
}

#[test]
fn a_steady_peak_keeps_its_pods_and_the_latency_only_autoscaler_flaps() {
    let load = std::thread::spawn(|| soak("load", "manifests/autoscaling/load-adapter/hpa.yaml"));
    let naive = soak("latency-only", "manifests/autoscaling/latency-only-adapter/hpa.yaml");
    let load = load.join().unwrap();

    // The load-proportional autoscaler.
    let (r, out) = (&load.report, &load.stdout);
    let talk = &r.summary.talk;
    assert_eq!(talk.load_step_stage.map(|i| r.summary.stages[i].name.as_str()), Some("peak"), "{out}");
    let climb = stage(r, "climb");
    assert!(
        climb.last().unwrap().sample.desired > 2,
        "utilisation over target in the climb must add a replica before p95 moves:\n{out}"
    );
    assert_eq!(stage_figures(r, "climb").out_of_slo_s, 0, "p95 over the SLO in the climb:\n{out}");
    let peak = stage(r, "peak");
    let peak_fig = stage_figures(r, "peak");
    assert_eq!(peak_fig.scale_downs, 0, "scaled down while the peak held:\n{out}");
    assert!(peak.iter().map(|row| row.sample.pods_ready).max().unwrap() >= 4, "{out}");
    // Once the step is answered (the SLO restored, or never broken), p95 holds for ≥ 95 %.
    let settled_at = talk.load_step_s.unwrap() + talk.step_to_restored_s.unwrap_or(0.0);
    let after: Vec<_> = peak.iter().filter(|row| row.sample.t_s >= settled_at).collect();
    assert!(after.len() >= 60, "only {} peak seconds after the step was answered:\n{out}", after.len());
    let within = after
        .iter()
        .filter(|row| row.sample.p95_server_s.or(row.sample.p95_client_s).is_some_and(|p| p <= 0.1))
        .count();
    assert!(within * 100 >= after.len() * 95, "p95 within the SLO {within} of {} seconds:\n{out}", after.len());
    let cool = stage(r, "cool-down");
    assert_eq!(cool.last().unwrap().sample.desired, 2, "the cool-down did not scale down:\n{out}");
    assert!(talk.flaps <= 1, "{} direction changes (up in climb/peak, down once in the cool-down):\n{out}", talk.flaps);
    assert!(r.summary.passed, "thresholds failed:\n{out}");
    // The summary prints the figures.
    assert!(out.contains("load step at") && out.contains("peak: ") && out.contains("flap"), "{out}");

    // The latency-only autoscaler on the same load: the flap.
    let (r, out) = (&naive.report, &naive.stdout);
    let peak_fig = stage_figures(r, "peak");
    assert!(
        peak_fig.scale_downs >= 1 && peak_fig.scale_ups >= 2 && peak_fig.flaps >= 2,
        "latency-only at a steady peak should give replicas back and take them again: {peak_fig:?}\n{out}"
    );
    assert!(
        stage_figures(r, "climb").scale_ups == 0,
        "latency-only must not react before p95 crosses: {:?}\n{out}",
        stage_figures(r, "climb")
    );
    let naive_out = stage_figures(r, "peak").out_of_slo_s;
    let load_out = stage_figures(&load.report, "peak").out_of_slo_s;
    assert!(naive_out > load_out, "latency-only was out of the SLO {naive_out} s, load-proportional {load_out} s");
}
