//! The kube backend's Prometheus source against a REAL Prometheus (Debian's package, from
//! scripts/setup/test-deps.sh) scraping two REAL `rtc-demo serve` processes on loopback, loaded
//! by the real load engine. The scrape config adds the labels a ServiceMonitor adds
//! (`namespace="rtc"`, `pod`, `service`), so the scenario's default queries run unchanged.
//! Checks: p95, RPS, errors and shed requests from Prometheus agree with what the load engine
//! measured (p95 within the histogram's bucket precision), and an unreachable Prometheus is
//! reported stale with backoff.
mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc_demo::conduct::kube::prometheus::{self as kp, Queries, Source};
use rtc_demo::load::{LoadConfig, LoadEngine, LoadSecond, RatePlan};

/// The service's histogram edges (SPEC §1).
const BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.04, 0.05, 0.06, 0.075, 0.09, 0.1, 0.11, 0.125, 0.15, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0];

fn prometheus_bin() -> String {
    match std::env::var("RTC_TEST_PROMETHEUS") {
        Ok(p) if std::path::Path::new(&p).is_file() => p,
        _ if std::path::Path::new("/usr/bin/prometheus").is_file() => "/usr/bin/prometheus".into(),
        other => panic!(
            "Prometheus not found (RTC_TEST_PROMETHEUS={other:?}): run `eval \"$(scripts/setup/test-deps.sh)\"` first"
        ),
    }
}

use support::free_port;

struct Prom {
    child: Child,
    dir: std::path::PathBuf,
    url: String,
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_prometheus(targets: &[(String, &str)]) -> Prom {
    let dir = std::env::temp_dir().join(format!("rtc-prom-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let statics: Vec<String> = targets
        .iter()
        .map(|(addr, pod)| format!("      - targets: ['{addr}']\n        labels: {{namespace: rtc, pod: {pod}, service: gpu-media, container: serve}}\n"))
        .collect();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: gpu-media\n    metrics_path: /metrics\n    static_configs:\n{}",
        statics.join("")
    );
    std::fs::write(dir.join("prometheus.yml"), cfg).unwrap();
    let port = free_port();
    let child = Command::new(prometheus_bin())
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start prometheus");
    Prom { child, dir, url: format!("http://127.0.0.1:{port}") }
}

async fn wait_ready(src: &Source) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if src.reachable().await.is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "Prometheus at {} not ready within 30 s", src.url);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The bucket (lower, upper] holding `x`.
fn bucket_of(x: f64) -> (f64, f64) {
    let mut lo = 0.0;
    for &b in BUCKETS {
        if x <= b {
            return (lo, b);
        }
        lo = b;
    }
    (lo, f64::INFINITY)
}

/// Runs the load engine at `rate` for `secs` against `targets`, then (load still running, so
/// the [30s] windows hold only this run's steady seconds) polls the default queries.
async fn load_and_query(
    src: &Source,
    targets: Vec<hyper::Uri>,
    rate: f64,
    secs: u64,
) -> (Vec<Arc<LoadSecond>>, rtc_demo::load::LoadSummary, kp::Reading) {
    let h = LoadEngine::start(LoadConfig {
        targets,
        method: hyper::Method::POST,
        connections: 8,
        timeout: Duration::from_secs(5),
        max_inflight: 1000,
        plan: RatePlan::Constant { rps: rate },
        ..Default::default()
    })
    .expect("start the load engine");
    let mut rx = h.subscribe();
    let mut seconds: Vec<Arc<LoadSecond>> = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(3), rx.recv()).await {
            seconds.push(s);
        }
    }
    let q = Queries::from_scenario(&rtc_demo::scenario::Prometheus::default());
    let r = kp::poll(src, &q).await.expect("the default queries run");
    let summary = h.stop().await;
    assert!(seconds.len() as u64 >= secs - 2, "only {} load seconds", seconds.len());
    (seconds, summary, r)
}

/// Per-second averages of the client's figures over the last 30 complete seconds.
fn client_window(seconds: &[Arc<LoadSecond>]) -> (f64, f64, f64) {
    let n = seconds.len();
    let w = &seconds[n.saturating_sub(31)..n - 1];
    let avg = |f: &dyn Fn(&LoadSecond) -> f64| w.iter().map(|s| f(s)).sum::<f64>() / w.len() as f64;
    (avg(&|s| s.achieved_rps), avg(&|s| s.status.shed_503 as f64), avg(&|s| s.status.errors() as f64))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_queries_agree_with_the_load_engine() {
    // Two replicas; the second sheds past one request in flight, so 503s happen for real.
    let a = support::serve::Server::start(&[]);
    let b = support::serve::Server::start(&["--max-inflight", "1"]);
    let prom = start_prometheus(&[(a.addr.to_string(), "gpu-media-a"), (b.addr.to_string(), "gpu-media-b")]);
    let src = Source::new(&prom.url).unwrap();
    wait_ready(&src).await;
    let path = "/process?pixels=320x240&iters=2&effects=blur,color";
    let uri = |ad: std::net::SocketAddr| -> hyper::Uri { format!("http://{ad}{path}").parse().unwrap() };

    // Phase 1: light load on both replicas (the machine has 2 cores: keep it unsaturated so
    // the client's latency is the service's plus little): RPS, errors and p95.
    let (seconds, summary, r) = load_and_query(&src, vec![uri(a.addr), uri(b.addr)], 15.0, 34).await;
    let (client_rps, _, client_err) = client_window(&seconds);
    let client_p95 = summary.uncorrected.p95_ms / 1000.0;
    eprintln!("phase 1: prometheus {r:?}\n  client: rps {client_rps:.2} errors/s {client_err:.2} p95 {client_p95:.4}s (uncorrected)");
    assert!(client_rps > 10.0, "the comparison needs real traffic: only {client_rps:.1} req/s answered");
    let rps = r.rps.expect("rps answered");
    assert!(
        (rps - client_rps).abs() <= 0.1 * client_rps + 1.0,
        "RPS: prometheus {rps:.2} vs load engine {client_rps:.2}"
    );
    let errors = r.errors_per_s.expect("errors answered");
    assert!(
        (errors - client_err).abs() <= 0.25 * client_err + 0.2,
        "errors/s: prometheus {errors:.2} vs load engine {client_err:.2}"
    );
    // p95: histogram_quantile interpolates inside a bucket, and the server does not see the
    // client's network and scheduling time; so the server's p95 must fall in the bucket of the
    // client's p95 or the one below it.
    let p95 = r.p95_s.expect("p95 answered");
    let (lo, hi) = bucket_of(client_p95);
    let floor = if lo == 0.0 { 0.0 } else { bucket_of(lo).0 };
    assert!(p95 > 0.0, "p95 must not be the idle 0 under load (does the query match the histogram's labels?)");
    assert!(
        p95 > floor && p95 <= hi + 1e-9,
        "p95: prometheus {p95:.4}s not in ({floor}, {hi}] around the load engine's {client_p95:.4}s"
    );

    // Phase 2: the replica that sheds, with frames that take longer than the 25 ms between
    // requests at 40 req/s (whatever the machine's speed), so requests overlap and the
    // second is shed: the shed rate both sides see.
    let heavy: hyper::Uri =
        format!("http://{}/process?pixels=1920x1080&iters=4&effects=blur,bgblur", b.addr).parse().unwrap();
    let (seconds, summary, r) = load_and_query(&src, vec![heavy], 40.0, 34).await;
    let (_, client_shed, _) = client_window(&seconds);
    // Whether Prometheus got b's figures all through the window: rate() over a window with
    // failed scrapes reads low, and a shed mismatch is then the scrapes', not the counters'.
    let mut scrapes = String::new();
    for q in [
        "count_over_time(up{pod=\"gpu-media-b\"}[30s])",
        "sum_over_time(up{pod=\"gpu-media-b\"}[30s])",
        "max_over_time(scrape_duration_seconds{pod=\"gpu-media-b\"}[30s])",
    ] {
        scrapes.push_str(&format!("\n  {q} = {:?}", src.value(q).await));
    }
    eprintln!(
        "phase 2: prometheus {r:?}\n  client: shed/s {client_shed:.2} (total shed {}){scrapes}",
        summary.status.shed_503
    );
    assert!(
        summary.status.shed_503 > 0,
        "replica b (--max-inflight 1) shed nothing at 40 req/s: the shed comparison would be empty"
    );
    let shed = r.shed_per_s.expect("shed answered");
    assert!(
        (shed - client_shed).abs() <= 0.25 * client_shed + 0.5,
        "shed/s: prometheus {shed:.2} vs load engine {client_shed:.2}; b's scrapes:{scrapes}"
    );
    drop(a);
    drop(b);
}

#[tokio::test]
async fn the_p95_query_reads_zero_not_nan_when_idle() {
    let a = support::serve::Server::start(&[]);
    let prom = start_prometheus(&[(a.addr.to_string(), "gpu-media-a")]);
    let src = Source::new(&prom.url).unwrap();
    wait_ready(&src).await;
    // Wait for a few scrapes of a service that got no traffic.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if src.series_count("app_requests_total", "rtc").await.unwrap() > 0.0 {
            break;
        }
        assert!(Instant::now() < deadline, "no app_requests_total series scraped");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = kp::poll(&src, &Queries::from_scenario(&rtc_demo::scenario::Prometheus::default())).await.unwrap();
    assert_eq!(r.p95_s, Some(0.0), "{r:?}");
    assert_eq!(r.rps, Some(0.0), "{r:?}");
    assert_eq!(r.gpu_util, None, "no DCGM exporter: no GPU figure");
}

#[tokio::test]
async fn an_unreachable_prometheus_is_stale_and_backs_off() {
    let port = free_port(); // nothing listens there
    let src = Source::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let e = kp::poll(&src, &Queries::from_scenario(&rtc_demo::scenario::Prometheus::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    // The poller sends every outcome to its owner, who keeps the state.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = kp::spawn(
        src,
        Queries::from_scenario(&rtc_demo::scenario::Prometheus::default()),
        Duration::from_millis(200),
        tx,
        |o| o,
    );
    // Two failures (at about 0 s and 1 s), however slow the machine; the schedule itself is
    // checked on a paused clock (prom.rs `a_failing_source_is_polled_with_backoff_…`).
    let started = Instant::now();
    let mut s = kp::PromState::default();
    while s.failures < 2 {
        let outcome = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
        s.record(outcome.expect("the poller reported nothing for 60 s").expect("the poller ended"));
    }
    let took = started.elapsed();
    task.abort();
    assert!(s.stale());
    assert!(s.error.as_deref().is_some_and(|e| e.contains("127.0.0.1")), "{s:?}");
    // Backing off, not polling every 200 ms: the second try waited at least a second.
    assert!(took >= Duration::from_secs(1), "two failures within {took:?}: no backoff");
}
