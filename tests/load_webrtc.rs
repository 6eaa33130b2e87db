//! The WebRTC load engine (`rtc-demo load --webrtc`) against the real `rtc-demo serve` on
//! loopback: processed frames come back and are timed, a refused offer is retried after its
//! Retry-After, a pod killed mid-run counts its sessions as failed, thresholds set the exit
//! code. Media stays on 127.0.0.1 (the service's candidate is its --webrtc-udp address).
mod support;

use std::process::Command;
use std::time::Duration;

use rtc_demo::load::webrtc::{SessionPlan, WebRtcConfig, WebRtcLoad, WebRtcSummary};
use support::serve::Server;

fn serve(extra: &[&str]) -> Server {
    let mut args = vec!["--webrtc-udp", "127.0.0.1:0", "--webrtc-tcp", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn config(server: &Server, sessions: usize) -> WebRtcConfig {
    WebRtcConfig {
        targets: vec![format!("http://{}/whip?effects=color", server.addr).parse().unwrap()],
        width: 160,
        height: 96,
        fps: 15,
        kbps: 150,
        plan: SessionPlan::Constant { sessions },
        ..WebRtcConfig::default()
    }
}

/// Runs the engine for `run`, calling `midway` after `midway_at`.
fn run(config: WebRtcConfig, run: Duration, midway_at: Duration, midway: impl FnOnce()) -> WebRtcSummary {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let handle = WebRtcLoad::start(config).await.expect("libvpx7 (scripts/setup/test-deps.sh installs it)");
        tokio::time::sleep(midway_at).await;
        midway();
        tokio::time::sleep(run.saturating_sub(midway_at)).await;
        handle.stop().await
    })
}

#[test]
fn processed_frames_come_back_and_are_timed() {
    let server = serve(&[]);
    let s = run(config(&server, 2), Duration::from_secs(4), Duration::ZERO, || {});
    let c = s.counts;
    assert_eq!((c.offers, c.answered, c.connected, c.failed), (2, 2, 2, 0), "{s:#?}");
    assert_eq!(c.ended, 2, "both sessions ended as planned: {s:#?}");
    // Two sessions at 15 fps for about 3 s of media: most frames back, each matched by its
    // RTP timestamp to the frame it was made from.
    assert!(c.frames_sent >= 60, "{s:#?}");
    assert!(c.frames_back as f64 >= 0.8 * c.frames_sent as f64, "{s:#?}");
    assert!(s.frame.p50_ms > 0.0 && s.frame.p50_ms < 1000.0, "{s:#?}");
    assert!(c.bytes_in > 0 && c.bytes_out > 0);
    // The pod saw the same frames: what it sent back is what came back.
    let out = server.metric("app_webrtc_frames_total{stage=\"out\"}");
    assert!(out >= c.frames_back as f64, "pod sent {out}, engine got {}", c.frames_back);
    // Every session was ended with DELETE: the pod has none left.
    support::process::wait_until("the pod's sessions to end", Duration::from_secs(10), || {
        server.metric("app_webrtc_sessions{role=\"publisher\"}") == 0.0
    });
}

#[test]
fn a_refused_offer_is_retried_after_retry_after() {
    let server = serve(&["--max-sessions", "1"]);
    let s = run(config(&server, 2), Duration::from_secs(4), Duration::ZERO, || {});
    let c = s.counts;
    assert_eq!(c.connected, 1, "one session fits: {s:#?}");
    // Retry-After is 1 s: the second slot asked again and again, never as a failure of a session.
    assert!(c.refused >= 2, "refused offers retried: {s:#?}");
    assert_eq!(c.offers, c.answered + c.refused + c.offer_failed, "{s:#?}");
    assert!(s.offer_fail > 0.0 && c.failed == 0, "{s:#?}");
    let refused = server.metric("app_webrtc_offers_refused_total{reason=\"max_sessions\"}");
    assert_eq!(refused, c.refused as f64, "the pod counted the same refusals");
}

#[test]
fn a_pod_stopped_mid_run_fails_its_sessions() {
    let mut server = serve(&[]);
    let mut cfg = config(&server, 2);
    cfg.stall = Duration::from_secs(2);
    cfg.connect_timeout = Duration::from_secs(2);
    let pid = server.child.id() as i32;
    let s = run(cfg, Duration::from_secs(7), Duration::from_secs(2), || support::process::kill9(pid));
    let _ = server.wait_exit(Duration::from_secs(5));
    let c = s.counts;
    assert_eq!(c.connected, 2, "{s:#?}");
    assert_eq!(c.failed, 2, "both sessions on the killed pod failed: {s:#?}");
    assert!(s.session_fail == 1.0, "{s:#?}");
    assert!(
        s.failures.keys().any(|k| k.starts_with("session: no processed video") || k.starts_with("session: ICE")),
        "{:?}",
        s.failures
    );
    // The slots re-dialled a pod that is gone: offers without an answer, counted.
    assert!(c.offer_failed >= 1, "{s:#?}");
}

#[test]
fn thresholds_set_the_exit_code_and_bad_flags_say_what_is_allowed() {
    let server = serve(&[]);
    let url = format!("http://{}/whip?effects=color", server.addr);
    let load = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
            .args(["load", "--webrtc", &url, "--size", "160x96", "--fps", "10", "-z", "2s", "--quiet"])
            .args(extra)
            .output()
            .unwrap()
    };
    let failed = load(&["--json", "--threshold", "frame_p95<0.001ms", "--threshold", "frame_loss<100%"]);
    assert_eq!(failed.status.code(), Some(1), "{}", String::from_utf8_lossy(&failed.stderr));
    let report: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(report["passed"], false);
    assert_eq!(report["thresholds"][0]["passed"], false);
    assert_eq!(report["thresholds"][1]["passed"], true);
    assert!(report["summary"]["counts"]["frames_back"].as_u64().unwrap() > 0, "{report}");
    assert!(!report["seconds"].as_array().unwrap().is_empty());

    let passed = load(&["--threshold", "session_fail<1%"]);
    assert_eq!(passed.status.code(), Some(0), "{}", String::from_utf8_lossy(&passed.stdout));
    assert!(String::from_utf8_lossy(&passed.stdout).contains("✓ session_fail<1%"));

    for (flags, says) in [
        (&["--threshold", "p95<1s"][..], "judges HTTP requests"),
        (&["--sessions", "2..x"][..], "not a session count"),
        (&["--kbps", "1"][..], "50..=20000"),
    ] {
        let out = load(flags);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    let http = Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
        .args(["load", &format!("http://{}/healthz", server.addr), "--sessions", "2"])
        .output()
        .unwrap();
    assert_eq!(http.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&http.stderr).contains("--sessions applies to WebRTC sessions"));
}

/// The lesson of scaling WebRTC: a session stays on the pod that answered its offer. Pod A is
/// full with two sessions; pod B is added (both are targets now, as behind a Service); the two
/// new sessions land on B (an offer that reaches A is refused and retried), A keeps its own.
#[test]
fn sessions_stay_on_their_pod_and_new_ones_land_where_there_is_room() {
    let a = serve(&["--max-sessions", "2"]);
    let b = serve(&[]);
    let whip = |s: &Server| -> hyper::Uri { format!("http://{}/whip?effects=color", s.addr).parse().unwrap() };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let s = rt.block_on(async {
        let handle = WebRtcLoad::start(config(&a, 2)).await.expect("libvpx7");
        tokio::time::sleep(Duration::from_secs(3)).await;
        handle.set_targets(&[whip(&a), whip(&b)]);
        handle.set_plan(SessionPlan::Constant { sessions: 4 });
        tokio::time::sleep(Duration::from_secs(4)).await;
        handle.stop().await
    });
    let pod = |srv: &Server| {
        let name = srv.addr.to_string();
        s.pods.iter().find(|p| p.pod == name).cloned().unwrap_or_else(|| panic!("no pod {name} in {:#?}", s.pods))
    };
    let (pa, pb) = (pod(&a), pod(&b));
    assert_eq!((pa.connected, pa.failed), (2, 0), "A keeps its first two sessions: {s:#?}");
    assert_eq!((pb.connected, pb.failed), (2, 0), "the new sessions are on B: {s:#?}");
    assert!(pa.frames_back > 0 && pb.frames_back > 0, "{s:#?}");
    assert_eq!(s.counts.offers, s.counts.answered + s.counts.refused + s.counts.offer_failed, "{s:#?}");
    assert_eq!(s.peak_sessions, 4, "{s:#?}");
}
