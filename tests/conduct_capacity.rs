//! The capacity probe against real `rtc-demo serve` processes on loopback: an emulated GPU
//! pod with a fixed service time, one whose time grows with the iterations (the
//! `service_time` sizing), and real CPU effects. The figures are checked against what each
//! device model must give (one 20 ms stream holds at most 50 req/s), not against a speed.
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rtc_demo::conduct::capacity::{CapacityError, CapacityProbe};
use rtc_demo::conduct::http::HttpClient;
use rtc_demo::scenario::TargetRequest;

const BIN: &str = env!("CARGO_BIN_EXE_rtc-demo");

struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve(args: &[&str]) -> Serve {
    let port = support::free_port();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = Serve { child, base: format!("http://127.0.0.1:{port}") };
    let http = HttpClient::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(http.get(&format!("{}/readyz", s.base), Duration::from_millis(500)).await, Ok((200, _))) {
        assert!(Instant::now() < deadline, "serve {args:?} not ready in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s
}

fn probe(base: &str, request: TargetRequest) -> CapacityProbe {
    CapacityProbe {
        base: base.into(),
        request,
        slo: Duration::from_millis(100),
        measured_on: "a test server on loopback".into(),
    }
}

fn request(pixels: (u32, u32), iters: u32) -> TargetRequest {
    TargetRequest { pixels, iters, ..TargetRequest::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emulated_pod_holds_what_its_stream_allows() {
    let s = serve(&["--device", "emulated", "--emulated-frame-time", "20ms", "--workers", "1"]).await;
    let mut lines = Vec::new();
    let c = probe(&s.base, request((1280, 720), 1)).measure(&mut |l| lines.push(l)).await.unwrap();
    assert_eq!((c.device.as_str(), c.workers, c.concurrency, c.iters), ("emulated", 1, 2, 1), "{c:?}");
    assert!((20.0..40.0).contains(&c.service_ms), "a 20 ms frame: {c:?}");
    // The emulated frame is a timer: it never ends early, and on a busy machine it ends late
    // (CI saw a 21.4 ms median), so the figure is checked against the 20 ms from below and
    // against the round trip it is a part of from above.
    assert!(c.compute_ms >= 19.5 && c.compute_ms <= c.service_ms, "the service's own compute time: {c:?}");
    // One stream: at most one frame per compute time, and the probe keeps it nearly busy.
    let most = 1000.0 / c.compute_ms;
    assert!(c.pod_rps <= 1.15 * most && c.pod_rps >= 0.7 * most, "one 20 ms stream: {c:?}");
    assert!(c.p95_busy_ms < 100.0, "{c:?}");
    assert!(c.line().starts_with("1280×720 × 1 iters: "), "{}", c.line());
    assert!(c.line().contains("emulated") && c.line().contains("within 100 ms"), "{}", c.line());
    assert!(lines.iter().any(|l| l.contains("in flight")), "progress is shown: {lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterations_are_sized_to_the_service_time() {
    // The bandwidth model: 1280×720 through 3 effects moves 22 MB an iteration; at 10 GB/s
    // that is 2.2 ms, plus 0.7 ms of upload and checksum: 20 ms is about 9 iterations.
    let s = serve(&["--device", "emulated", "--emulated-bandwidth", "10", "--workers", "2"]).await;
    let req = TargetRequest { service_time: Some(Duration::from_millis(20)), ..request((1280, 720), 1) };
    let c = probe(&s.base, req).measure(&mut |_| {}).await.unwrap();
    assert!((7..=11).contains(&c.iters), "{c:?}");
    assert_eq!(c.sized_to_ms, Some(20.0));
    assert!((15.0..30.0).contains(&c.service_ms), "sized to about 20 ms: {c:?}");
    assert_eq!((c.workers, c.concurrency), (2, 4));
    // Two streams: at most 2 frames per compute time. The compute time is the median of the
    // serial requests' timers, which run a little later than those under load (CI: 101.5
    // req/s against 2 × 1000 / 20.4 ms), hence the 15 % above it.
    let most = 2.0 * 1000.0 / c.compute_ms;
    assert!(c.pod_rps <= 1.15 * most && c.pod_rps >= 0.7 * most, "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_replicas_are_measured_and_labelled_cpu() {
    // One admitted at a time: the probe keeps no more in flight than the pod admits.
    let s = serve(&["--device", "cpu", "--max-inflight", "1"]).await;
    let c = probe(&s.base, request((320, 180), 1)).measure(&mut |_| {}).await.unwrap();
    assert_eq!((c.device.as_str(), c.concurrency), ("cpu", 1));
    assert!(c.pod_rps > 0.0 && c.service_ms > 0.0 && c.service_ms < 100.0, "{c:?}");
    assert!(c.line().contains("CPU"), "a CPU figure says so: {}", c.line());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_slower_than_the_slo_is_refused_with_what_to_change() {
    let s = serve(&["--device", "emulated", "--emulated-frame-time", "150ms", "--workers", "1"]).await;
    let e = probe(&s.base, request((1280, 720), 1)).measure(&mut |_| {}).await.unwrap_err();
    assert!(matches!(e, CapacityError::OverSlo { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("over the SLO's 100 ms") && text.contains("expected fewer `iters`"), "{text}");
    let gone = probe("http://127.0.0.1:9", request((64, 64), 1)).measure(&mut |_| {}).await.unwrap_err();
    assert!(gone.to_string().contains("did not answer"), "{gone}");
}
