//! The shipped rehearsal, end to end and in real time (about 5½ minutes): `rtc-demo conduct
//! --backend local scenarios/rehearsal.toml --headless` with real emulated-GPU `serve`
//! children, the real load engine and the HPA algorithm. It must tell the talk's story in
//! order: p95 over the SLO → scale-up → p95 back under the SLO at the same offered rate for
//! at least 10 s → scale-down in the cool-down; under 2 % of requests failed; verdict passed.
//! One test, because it is long (see README: the test suite's timing).
use std::path::Path;
use std::process::Command;

use rtc_demo::conduct::report;

const BIN: &str = env!("CARGO_BIN_EXE_rtc-demo");

#[test]
fn the_rehearsal_shows_scale_out_restoring_the_slo() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("rtc-rehearsal-{}", std::process::id()));
    let out = Command::new(BIN)
        .args(["conduct", "--backend", "local", "scenarios/rehearsal.toml", "--headless", "--report-dir"])
        .arg(&dir)
        .current_dir(root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the verdict must pass:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let rep = report::read(&dir).unwrap();
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
    for r in &held {
        assert!((r.sample.offered_rps - rate).abs() <= 0.05 * rate, "offered rate changed: {:?}", r.sample);
        let p95 = r.sample.p95_server_s.or(r.sample.p95_client_s).expect("p95 known");
        assert!(p95 <= 0.1, "p95 over the SLO after the restore: {:?}", r.sample);
    }
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
    let count = |k: &str| load["status"][k].as_u64().unwrap_or_else(|| panic!("no status.{k}"));
    let failed: u64 = [
        "shed_503",
        "other_5xx",
        "client_4xx",
        "other_status",
        "timeouts",
        "connect_errors",
        "other_errors",
        "cancelled",
    ]
    .into_iter()
    .map(count)
    .sum();
    let total = count("ok") + failed;
    assert!(failed as f64 <= 0.02 * total as f64, "{failed} failed of {total}");
    assert!(summary.passed, "{stdout}");
    for e in &summary.expectations {
        assert!(e.ok, "expectation failed: {}\n{stdout}", e.text);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
