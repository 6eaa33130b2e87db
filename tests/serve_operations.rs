//! Load shedding, the decaying p95 gauge and graceful shutdown, on the real binary.
mod support;

use std::time::{Duration, Instant};

use support::serve::{request, Server};

const HEAVY: &str = "/process?pixels=1920x1080&iters=8&effects=blur,bgblur";

#[test]
fn beyond_max_inflight_requests_are_shed_with_retry_after() {
    let server = Server::start(&["--max-inflight", "2", "--workers", "1"]);
    let addr = server.addr;
    let answers: Vec<_> = (0..32)
        .map(|_| std::thread::spawn(move || request(addr, "POST", HEAVY, b"")))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("every request gets an answer"))
        .collect();
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let shed: Vec<_> = answers.iter().filter(|r| r.status == 503).collect();
    assert!(ok >= 1, "some work was done");
    assert!(!shed.is_empty(), "some requests were shed");
    assert_eq!(ok + shed.len(), 32, "no other status: {:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    for r in &shed {
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.json()["error"], "overloaded");
    }
    assert_eq!(server.metric("app_rejected_total{reason=\"overload\"}"), shed.len() as f64);
    assert_eq!(server.metric("app_inflight_requests"), 0.0);
}

#[test]
fn the_p95_gauge_rises_under_traffic_and_returns_to_zero() {
    let server = Server::start(&["--p95-window", "2s"]);
    assert_eq!(server.metric("app_request_latency_p95_seconds"), 0.0);
    for _ in 0..5 {
        assert_eq!(server.get("/process?pixels=320x180&iters=2").status, 200);
    }
    let under_load = server.metric("app_request_latency_p95_seconds");
    assert!(under_load > 0.0, "p95 under traffic: {under_load}");
    std::thread::sleep(Duration::from_millis(3100));
    assert_eq!(server.metric("app_request_latency_p95_seconds"), 0.0, "window passed idle");
}

#[test]
fn sigterm_drains_then_finishes_in_flight_work_and_exits_zero() {
    let mut server =
        Server::start(&["--workers", "2", "--max-inflight", "8", "--drain-delay", "4s", "--shutdown-timeout", "30s"]);
    let addr = server.addr;
    let slow = "/process?pixels=1920x1080&iters=6&effects=blur,bgblur,translate";
    let inflight: Vec<_> = (0..4).map(|_| std::thread::spawn(move || request(addr, "POST", slow, b""))).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("app_inflight_requests") < 4.0 {
        assert!(Instant::now() < deadline, "requests never got in flight");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.signal("TERM");
    // "At once": well within the drain delay (4 s), however loaded the machine.
    let signalled = Instant::now();
    while server.get("/readyz").status != 503 {
        assert!(signalled.elapsed() < Duration::from_secs(3), "readiness still true 3 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(5));
    }
    // During the drain delay new work is still served (endpoints take time to update).
    assert_eq!(server.get("/healthz").status, 200);
    for t in inflight {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200, "in-flight request completed: {}", r.text());
    }
    let status = server.wait_exit(Duration::from_secs(30)).expect("exited after draining");
    assert_eq!(status.code(), Some(0));
}

/// Threads named `effects-*` (the CPU workers' pools) in process `pid`.
fn effects_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|comm| comm.starts_with("effects-"))
        .count()
}

#[test]
fn the_queue_is_served_in_arrival_order_and_the_workers_never_share_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // By default one worker with every core.
    let server = Server::start(&[]);
    let cpu = server.get("/").json()["cpu"].clone();
    assert_eq!((cpu["workers"].as_u64(), cpu["threads_per_worker"].as_u64()), (Some(1), Some(cores as u64)), "{cpu}");
    drop(server);

    // Asking for more threads than cores gets fewer.
    let server = Server::start(&["--workers", "2", "--threads", "64", "--max-inflight", "32"]);
    let v = server.get("/").json();
    let (workers, threads) =
        (v["cpu"]["workers"].as_u64().unwrap() as usize, v["cpu"]["threads_per_worker"].as_u64().unwrap() as usize);
    assert_eq!(v["cpu"]["cores"].as_u64(), Some(cores as u64));
    assert_eq!(v["limits"]["workers"].as_u64(), Some(workers as u64));
    assert!(workers * threads <= cores, "{workers} x {threads} on {cores} cores");
    assert!(effects_threads(server.child.id()) <= cores, "{} effects threads", effects_threads(server.child.id()));

    // Twelve requests, each sent once the one before it has arrived (the server counts it in
    // flight or done), each longer than it takes to send the next: a queue forms in a known
    // order, however loaded the machine. Each answer says when it was sent back; none may be
    // overtaken by more than `workers` later arrivals.
    let arrived = || {
        server.metric("app_inflight_requests")
            + server.metric_or_zero("app_requests_total{endpoint=\"/process\",code=\"200\"}")
    };
    let clients: Vec<_> = (0..12u32)
        .map(|i| {
            let addr = server.addr;
            let client = std::thread::spawn(move || {
                let r = request(addr, "GET", "/process?pixels=1280x720&iters=3", &[]);
                assert_eq!(r.status, 200, "{}", r.text());
                (i, Instant::now(), r.json()["queue_ms"].as_f64().unwrap())
            });
            let deadline = Instant::now() + Duration::from_secs(30);
            while arrived() < f64::from(i + 1) {
                assert!(Instant::now() < deadline, "request {i} never arrived");
                std::thread::sleep(Duration::from_millis(1));
            }
            client
        })
        .collect();
    let mut done: Vec<(u32, Instant, f64)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let longest_wait = done.iter().map(|d| d.2).fold(0.0, f64::max);
    assert!(longest_wait > 30.0, "no queue formed (longest wait {longest_wait} ms): the test shows nothing");
    done.sort_by_key(|d| d.1);
    let order: Vec<u32> = done.iter().map(|d| d.0).collect();
    for (pos, &i) in order.iter().enumerate() {
        let overtaken_by = order[..pos].iter().filter(|&&j| j > i).count();
        assert!(overtaken_by <= workers, "request {i} overtaken by {overtaken_by} later ones: {order:?}");
    }
}
