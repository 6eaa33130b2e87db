//! The load engine and `rtc-demo load` against real HTTP servers on loopback.
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc_demo::load::testserver::{self, TestServer, TestServerOptions};
use rtc_demo::load::{LoadConfig, LoadEngine, LoadMode, LoadSecond, RatePlan, Threshold};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rtc-demo");

async fn server(opts: TestServerOptions) -> TestServer {
    testserver::spawn("127.0.0.1:0".parse().unwrap(), opts).await.expect("bind loopback")
}

/// Runs the binary on a blocking thread while the servers keep running on the runtime.
async fn run_bin(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(BIN).args(&args).output().expect("run rtc-demo")).await.unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn json(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {text}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    })
}

fn u(v: &Value, path: &str) -> u64 {
    v.pointer(path).and_then(Value::as_u64).unwrap_or_else(|| panic!("no integer at {path}"))
}

fn f(v: &Value, path: &str) -> f64 {
    v.pointer(path).and_then(Value::as_f64).unwrap_or_else(|| panic!("no number at {path}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_holds_the_rate_and_json_carries_everything() {
    let srv = server(TestServerOptions::default()).await;
    let out = run_bin(args(&["load", "-q", "500", "-z", "10s", "-c", "4", "--json", &srv.url("/")])).await;
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let j = json(&out);
    let (planned, sent, dropped) = (u(&j, "/summary/planned"), u(&j, "/summary/sent"), u(&j, "/summary/dropped"));
    assert_eq!(planned, sent + dropped);
    // The plan is exact (500 a second for 10 s); what was sent on time depends on how loaded
    // this machine is, so it is bounded loosely: an engine that waited for answers (closed
    // loop) or lost its schedule would fall far below.
    assert!((planned as f64 - 5000.0).abs() <= 1.0, "planned {planned}, want 5000");
    let achieved = f(&j, "/summary/achieved_rps");
    assert!(achieved >= 400.0, "achieved {achieved} req/s of the 500 planned");
    assert!(u(&j, "/summary/completed") >= 4000, "{}", j["summary"]);
    assert_eq!(u(&j, "/summary/status/ok"), u(&j, "/summary/completed"));
    for key in ["ok", "shed_503", "other_5xx", "client_4xx", "timeouts", "connect_errors", "other_errors"] {
        assert!(j.pointer(&format!("/summary/status/{key}")).is_some(), "status.{key} missing");
    }
    assert_eq!(u(&j, "/summary/status_codes/200"), u(&j, "/summary/completed"));
    for h in ["corrected", "uncorrected"] {
        for p in ["p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms"] {
            let v = f(&j, &format!("/summary/{h}/{p}"));
            assert!(v > 0.0, "{h}.{p} = {v}");
        }
        assert!(j.pointer(&format!("/latency_labels/{h}")).and_then(Value::as_str).is_some());
    }
    let seconds = j["seconds"].as_array().expect("per-second series");
    assert!(seconds.len() >= 10, "{} seconds", seconds.len());
    for s in &seconds[1..9] {
        assert!((f(s, "/offered_rps") - 500.0).abs() < 1.0);
        assert!(s.pointer("/corrected/p95_ms").is_some() && s.pointer("/uncorrected/p95_ms").is_some());
    }
    let per_second_sent: u64 = seconds.iter().map(|s| u(s, "/sent")).sum();
    assert_eq!(per_second_sent, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_server_shows_in_corrected_latency_only() {
    // Every response that falls due between 2 s and 3 s after start waits until 3 s.
    let srv = server(TestServerOptions {
        stall: Some((Duration::from_secs(2), Duration::from_secs(1))),
        ..Default::default()
    })
    .await;
    let out = run_bin(args(&["load", "-q", "100", "-z", "5s", "-c", "4", "--json", &srv.url("/")])).await;
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let j = json(&out);
    let corrected = f(&j, "/summary/corrected/p95_ms");
    let uncorrected = f(&j, "/summary/uncorrected/p95_ms");
    eprintln!("stall: corrected p95 {corrected} ms, uncorrected p95 {uncorrected} ms");
    assert!(corrected >= 500.0, "corrected p95 {corrected} ms");
    assert!(uncorrected < 100.0, "uncorrected p95 {uncorrected} ms");
    assert_eq!(u(&j, "/summary/planned"), u(&j, "/summary/sent") + u(&j, "/summary/dropped"));
    assert!(f(&j, "/summary/corrected/max_ms") >= 900.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_counts_in_the_second_it_came_while_the_next_request_waits() {
    // 2 connections, 1.5 s answers, 10 req/s offered (2 more may wait): every worker always has the next
    // request waiting, so it sends again at once. The first two answers come at about 1.5 s
    // and belong to second 1; a worker that held its sample until its next answer (3 s) would
    // report them in second 3, and the achieved rate would clump.
    let srv = server(TestServerOptions::default()).await;
    let out = run_bin(args(&[
        "load",
        "-q",
        "10",
        "-z",
        "4s",
        "-c",
        "2",
        "--max-inflight",
        "4",
        "-t",
        "10s",
        "--json",
        &srv.url("/delay/1500"),
    ]))
    .await;
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let j = json(&out);
    let seconds = j["seconds"].as_array().expect("per-second series");
    let done: Vec<u64> = seconds.iter().map(|s| u(s, "/completed")).collect();
    assert_eq!(done.get(..2), Some(&[0, 2][..]), "answers per second: {done:?}");
    assert_eq!(done.get(3), Some(&2), "the next pair, at about 3 s, in second 3: {done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_threshold_exits_1_with_the_observed_value() {
    let srv = server(TestServerOptions::default()).await;
    let out = run_bin(args(&[
        "load",
        "-q",
        "50",
        "-z",
        "1s",
        "-c",
        "2",
        "--threshold",
        "p95<1us",
        "--threshold",
        "error_rate<1%",
        &srv.url("/"),
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.contains("p95<1us")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains('✗') && line.contains("observed") && (line.contains("ms") || line.contains("µs")), "{line}");
    assert!(stdout.lines().any(|l| l.contains("✓ error_rate<1%")), "{stdout}");

    let ok = run_bin(args(&["load", "-q", "50", "-z", "1s", "--threshold", "p95<10s", &srv.url("/")])).await;
    assert!(ok.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_exit_2_and_say_what_is_allowed() {
    for (a, want) in [
        (vec!["load", "--threshold", "p97<5ms", "http://127.0.0.1:9/"], "expected METRIC OP VALUE"),
        (vec!["load", "-z", "10 parsecs", "http://127.0.0.1:9/"], "expected a duration"),
        (vec!["load", "-q", "-5", "http://127.0.0.1:9/"], "expected"),
        (vec!["load", "https://127.0.0.1:9/"], "https is not supported"),
        (vec!["load"], "no target URL"),
        (
            vec!["load", "--scenario", "scenarios/keynote.toml", "--stage", "nope", "http://127.0.0.1:9"],
            "no stage `nope`",
        ),
    ] {
        let out = run_bin(args(&a)).await;
        assert_eq!(out.status.code(), Some(2), "{a:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{a:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_with_a_request_count() {
    let srv = server(TestServerOptions::default()).await;
    let out = run_bin(args(&["load", "--concurrency", "3", "-n", "200", "--json", &srv.url("/")])).await;
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let j = json(&out);
    assert_eq!(u(&j, "/summary/planned"), 200);
    assert_eq!(u(&j, "/summary/sent"), 200);
    assert_eq!(u(&j, "/summary/status/ok"), 200);
    assert_eq!(srv.requests(), 200);
}

/// The kubelet stops the in-cluster load pod with SIGTERM (the console deletes the Job between
/// stages): the run stops, still prints its summary, and exits 143.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_run_with_its_summary() {
    let srv = server(TestServerOptions::default()).await;
    let child = Command::new(BIN)
        .args(["load", "-q", "50", "-z", "60s", "--json", &srv.url("/")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rtc-demo");
    let started = Instant::now();
    while srv.requests() < 20 && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(srv.requests() >= 20, "the load never started");
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(30), "stopped long after SIGTERM");
    assert_eq!(out.status.code(), Some(143), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let j = json(&out);
    assert!(u(&j, "/summary/completed") >= 20);
    assert_eq!(u(&j, "/summary/status/ok"), u(&j, "/summary/completed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hgrm_files_hold_both_distributions() {
    let srv = server(TestServerOptions::default()).await;
    let dir = std::env::temp_dir().join(format!("rtc-load-hgrm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("lat.hgrm");
    let out = run_bin(args(&["load", "-q", "100", "-z", "1s", "--hgrm", file.to_str().unwrap(), &srv.url("/")])).await;
    assert!(out.status.success());
    for p in [file.clone(), dir.join("lat.uncorrected.hgrm")] {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("Value") && text.contains("Percentile") && text.contains("#[Max"), "{text}");
        assert!(text.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())).count() > 5);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn config(targets: Vec<String>, plan: RatePlan) -> LoadConfig {
    LoadConfig {
        targets: targets.iter().map(|t| t.parse().unwrap()).collect(),
        connections: 4,
        timeout: Duration::from_millis(300),
        plan,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_error_classes_are_counted_apart() {
    let srv = server(TestServerOptions::default()).await;
    // A port nobody listens on: bind, note it, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let targets = vec![
        srv.url("/"),
        srv.url("/status/503"),
        srv.url("/status/500"),
        srv.url("/status/404"),
        srv.url("/delay/2000"),
        format!("http://{closed}/"),
    ];
    let h = LoadEngine::start(config(targets, RatePlan::Constant { rps: 60.0 })).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = h.finish(Duration::from_secs(2)).await;
    let st = s.status;
    assert!(
        st.ok > 0
            && st.shed_503 > 0
            && st.other_5xx > 0
            && st.client_4xx > 0
            && st.timeouts > 0
            && st.connect_errors > 0,
        "{st:?}"
    );
    assert_eq!(s.planned, s.sent + s.dropped);
    assert_eq!(st.total(), s.sent);
    // Round robin: each class got about a sixth.
    let spread = [st.ok, st.shed_503, st.other_5xx, st.client_4xx, st.timeouts, st.connect_errors];
    let (lo, hi) = (spread.iter().min().unwrap(), spread.iter().max().unwrap());
    assert!(hi - lo <= 2, "{spread:?}");
    assert!(!Threshold::parse("shed_rate<1%").unwrap().evaluate(&s).passed);
    // Every class but 2xx is a failure (k6's http_req_failed); latency of successes apart.
    assert_eq!(st.failed(), st.total() - st.ok);
    assert!((s.error_rate() - st.failed() as f64 / st.total() as f64).abs() < 1e-12);
    assert!(s.error_rate() > 0.7, "{}", s.error_rate());
    assert!(!Threshold::parse("timeout_rate<1%").unwrap().evaluate(&s).passed);
    assert_eq!(s.corrected.count, st.ok);
    assert_eq!(s.all_corrected.count, st.total() - st.cancelled);
    assert!(s.all_corrected.max_ms >= s.corrected.max_ms);
}

/// A service shedding most requests cannot pass `error_rate<2%` (it did before: shed 503s
/// were left out of error_rate), and its instant 503s stay out of the 2xx latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_requests_shed_fail_error_rate() {
    let srv = server(TestServerOptions::default()).await;
    let shed = srv.url("/status/503");
    let out = run_bin(args(&[
        "load",
        "-q",
        "100",
        "-z",
        "2s",
        "--json",
        "--threshold",
        "error_rate<2%",
        "--threshold",
        "shed_rate<2%",
        &srv.url("/delay/20"),
        &shed,
        &shed,
        &shed,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let j = json(&out);
    let results = j["thresholds"].as_array().unwrap_or_else(|| panic!("{j}"));
    for r in results {
        assert_eq!(r["passed"], false, "{r}");
        let observed = r["observed"].as_f64().unwrap();
        assert!((0.7..0.8).contains(&observed), "{r}");
    }
    let ok = u(&j, "/summary/status/ok");
    assert_eq!(u(&j, "/summary/corrected/count"), ok);
    assert!(f(&j, "/summary/corrected/p50_ms") >= 20.0, "2xx latency holds the 20 ms answers only: {j}");
    assert!(f(&j, "/summary/all_corrected/p50_ms") < 20.0, "all-request latency has the instant 503s: {j}");
}

async fn next(rx: &mut tokio::sync::broadcast::Receiver<Arc<LoadSecond>>) -> Arc<LoadSecond> {
    tokio::time::timeout(Duration::from_secs(3), rx.recv()).await.expect("a second").expect("open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_while_running_and_stop_cancels() {
    let a = server(TestServerOptions::default()).await;
    let b = server(TestServerOptions::default()).await;
    let h = LoadEngine::start(config(vec![a.url("/")], RatePlan::Constant { rps: 200.0 })).unwrap();
    let mut rx = h.subscribe();
    let s0 = next(&mut rx).await;
    assert_eq!(s0.second, 0);
    assert_eq!(s0.mode, LoadMode::OpenLoop);

    // Replicas come and go: b joins.
    h.set_targets(&[a.url("/").parse().unwrap(), b.url("/").parse().unwrap()]).unwrap();
    h.scale(0.5);
    let _ = next(&mut rx).await;
    let s = next(&mut rx).await;
    assert!((s.offered_rps - 100.0).abs() < 1e-6, "{}", s.offered_rps);
    assert!(b.requests() > 0);

    h.pause();
    let _ = next(&mut rx).await;
    let s = next(&mut rx).await;
    assert_eq!(s.mode, LoadMode::Idle);
    assert_eq!(s.planned, 0);
    h.resume();
    h.set_scale(1.0);
    h.set_plan(RatePlan::Concurrency { workers: 2 }).unwrap();
    let _ = next(&mut rx).await;
    let s = next(&mut rx).await;
    assert_eq!((s.mode, s.concurrency), (LoadMode::ClosedLoop, 2));
    assert!(s.completed > 0);

    // Stop cancels requests stuck on the wire and returns promptly.
    h.set_targets(&[a.url("/delay/10000").parse().unwrap()]).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await; // requests time out after 300 ms
    let t = Instant::now();
    let sum = h.stop().await;
    assert!(t.elapsed() < Duration::from_secs(3), "stop took {:?}", t.elapsed());
    assert!(sum.status.cancelled > 0);
    assert_eq!(sum.planned, sum.sent + sum.dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_when_more_is_due_than_the_bound_allows() {
    let srv = server(TestServerOptions::default()).await;
    let mut c = config(vec![srv.url("/delay/1000")], RatePlan::Constant { rps: 200.0 });
    c.connections = 2;
    c.max_inflight = 10;
    c.timeout = Duration::from_secs(5);
    let h = LoadEngine::start(c).unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let s = h.stop().await;
    assert!(s.dropped > 100, "{s:?}");
    assert_eq!(s.planned, s.sent + s.dropped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_offers_the_integral_of_its_rate() {
    let srv = server(TestServerOptions::default()).await;
    let h = LoadEngine::start(config(
        vec![srv.url("/")],
        RatePlan::Ramp { from: 0.0, to: 400.0, over: Duration::from_secs(2) },
    ))
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = h.finish(Duration::from_secs(1)).await;
    // 0 -> 400 req/s over 2 s: 400 requests.
    assert!((s.planned as i64 - 400).abs() <= 8, "planned {}", s.planned);
}

/// A stand-in for kube-proxy in front of a ClusterIP Service: a TCP proxy that picks the next
/// backend, round robin, for each new connection and then only forwards bytes both ways.
async fn per_connection_balancer(backends: Arc<std::sync::Mutex<Vec<std::net::SocketAddr>>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut n = 0usize;
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { continue };
            let target = {
                let b = backends.lock().unwrap();
                b[n % b.len()]
            };
            n += 1;
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

/// Requests each backend answered during `window`, after `change` was made.
async fn answered_during(servers: &[&TestServer], window: Duration, change: impl FnOnce()) -> Vec<u64> {
    let before: Vec<u64> = servers.iter().map(|s| s.requests()).collect();
    change();
    tokio::time::sleep(window).await;
    servers.iter().zip(before).map(|(s, b)| s.requests() - b).collect()
}

/// A pod the autoscaler adds behind a per-connection balancer gets its share of the load
/// within 10 s: connections are re-opened on their age budget. With connections kept for the
/// whole run (the engine before the budget), the new backend gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_behind_a_per_connection_balancer_gets_its_share() {
    let (a, b, c) = (
        server(TestServerOptions::default()).await,
        server(TestServerOptions::default()).await,
        server(TestServerOptions::default()).await,
    );
    for (max_age, name) in [(Some(rtc_demo::load::DEFAULT_CONNECTION_MAX_AGE), "age budget"), (None, "kept")] {
        let backends = Arc::new(std::sync::Mutex::new(vec![a.addr, b.addr]));
        let proxy = per_connection_balancer(backends.clone()).await;
        let mut cfg = config(vec![format!("http://{proxy}/")], RatePlan::Constant { rps: 200.0 });
        cfg.connection_max_age = max_age;
        let h = LoadEngine::start(cfg).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let window = if max_age.is_some() { Duration::from_secs(10) } else { Duration::from_secs(4) };
        let got = answered_during(&[&a, &b, &c], window, || backends.lock().unwrap().push(c.addr)).await;
        let _ = h.stop().await;
        let total: u64 = got.iter().sum();
        let share = got[2] as f64 / total.max(1) as f64;
        eprintln!(
            "{name}: the added backend answered {} of {total} requests ({:.1} %) in {window:?}",
            got[2],
            share * 100.0
        );
        assert!(total > 500, "{name}: load went through the balancer: {got:?}");
        if max_age.is_some() {
            assert!(share >= 0.5 / 3.0, "{name}: at least half its fair third: {got:?}");
        } else {
            assert_eq!(got[2], 0, "{name}: kept connections never reach the new backend: {got:?}");
        }
    }
}
