//! The memory budget: the real `serve` binary under a burst of large, legal frames stays
//! inside its budget, answers only 200 or 503, keeps serving, and gives the memory back.
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc_service::frame::hash32;
use support::serve::{request, Server};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A `/proc/PID/status` figure in bytes (`VmHWM`: the peak resident size; `VmRSS`: now).
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// POST `body` on its own connection, then read the answer without keeping it: the status,
/// and how many body bytes came back.
fn post_counting(addr: SocketAddr, path: &str, body: &[u8]) -> (u16, usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head =
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).expect("the service reads every body, even one it refuses");
    let mut reader = BufReader::new(s);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let status = status_line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let mut sink = [0u8; 1 << 16];
    let mut n = 0;
    loop {
        match reader.read(&mut sink).expect("read the answer") {
            0 => return (status, n),
            k => n += k,
        }
    }
}

#[test]
fn a_burst_of_large_frames_stays_inside_a_1_gib_budget_and_gives_the_memory_back() {
    let server = Server::start(&["--max-inflight", "64", "--memory-budget", "1GiB"]);
    let memory = server.get("/").json()["memory"].clone();
    assert_eq!(memory["budget_bytes"], GIB, "{memory}");
    assert!(memory["source"].as_str().unwrap().contains("--memory-budget"), "{memory}");
    let pid = server.child.id();

    // 24 legal 4000x4000 RGBA frames at once: 64,000,000 bytes each, 1.5 GB in all.
    let frame: Arc<Vec<u8>> = Arc::new((0..4000 * 4000 * 4).map(|i| hash32(i as u32) as u8).collect());
    let path = "/process?pixels=4000x4000&iters=1&format=rgba";
    let started = Instant::now();
    let clients: Vec<_> = (0..24)
        .map(|_| {
            let (frame, addr) = (frame.clone(), server.addr);
            std::thread::spawn(move || post_counting(addr, path, &frame))
        })
        .collect();
    let answers: Vec<(u16, usize)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let burst = started.elapsed();
    let peak = proc_status(pid, "VmHWM");
    let served = answers.iter().filter(|(s, _)| *s == 200).count();
    let refused = answers.iter().filter(|(s, _)| *s == 503).count();
    eprintln!(
        "burst of 24 in {:.1} s: {served} x 200, {refused} x 503; peak resident {} MiB",
        burst.as_secs_f64(),
        peak / MIB
    );
    assert_eq!(served + refused, 24, "only 200 and 503: {answers:?}");
    assert!(served > 0, "the budget holds several such frames: {answers:?}");
    assert!(answers.iter().all(|&(s, n)| s != 200 || n == frame.len()), "every 200 carries the whole frame");
    assert!(peak < GIB, "peak resident {} MiB, budget 1024 MiB", peak / MIB);
    let counted = server.metric("app_rejected_total{reason=\"memory\"}");
    assert_eq!(counted as usize, refused, "each 503 counted as reason=memory");

    // Still serving, at once.
    let r = server.get("/process?pixels=64x64");
    assert_eq!(r.status, 200, "{}", r.text());

    let settled = Instant::now() + Duration::from_secs(30);
    loop {
        let rss = proc_status(pid, "VmRSS");
        if rss < 300 * MIB {
            eprintln!(
                "resident {} MiB {:.0} s after the burst",
                rss / MIB,
                30.0 - (settled - Instant::now()).as_secs_f64()
            );
            break;
        }
        assert!(Instant::now() < settled, "still {} MiB resident 30 s after the burst", rss / MIB);
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_frame_that_can_never_fit_is_413_and_a_small_budget_is_refused_at_start() {
    let server = Server::start(&["--memory-budget", "128MiB"]);
    // 128 MiB less the process's 32 MiB and the pool's 16 MiB leaves 80 MiB; a synthetic
    // 4000x4000 frame and its scratch need 122 MiB.
    let r = server.get("/process?pixels=4000x4000");
    assert_eq!(r.status, 413, "{}", r.text());
    let v = r.json();
    assert_eq!(v["param"], "pixels");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("122.1 MiB") && detail.contains("at most 80.0 MiB"), "{detail}");
    assert_eq!(request(server.addr, "GET", "/process?pixels=1280x720", &[]).status, 200);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
        .args(["serve", "--listen", "127.0.0.1:0", "--memory-budget", "10MiB"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("10 MiB is below the minimum of 96 MiB"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
        .args(["serve", "--memory-budget", "lots"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--memory-budget") && stderr.contains("e.g. 1GiB"), "{stderr}");
}

/// Send `head` (and `body`), read the whole answer: status and text.
fn exchange(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

#[test]
fn a_body_is_judged_before_it_is_read_and_cut_off_past_its_size() {
    let server = Server::start(&["--memory-budget", "128MiB"]);
    // Admission decides from the parameters and Content-Length alone: a client that waits for
    // `100 Continue` is answered without sending a byte of its 64 MB body.
    let head = "POST /process?pixels=4000x4000&format=rgba HTTP/1.1\r\nHost: t\r\nContent-Length: 64000000\r\n\
                Expect: 100-continue\r\nConnection: close\r\n\r\n";
    let (status, text) = exchange(server.addr, head, &[]);
    assert_eq!(status, 413, "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    // Chunked, so no Content-Length to refuse it by: 2,000 bytes for a 1,024-byte frame.
    let head = "POST /process?pixels=16x16&format=rgba HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
                Connection: close\r\n\r\n";
    let mut body = Vec::new();
    for _ in 0..2 {
        body.extend_from_slice(b"3e8\r\n");
        body.extend_from_slice(&[7u8; 1000]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let (status, text) = exchange(server.addr, head, &body);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("longer than the 1024 bytes"), "{text}");
}

/// The Deployments' memory limits hold what their env admits: `RTC_MAX_INFLIGHT` requests
/// of the talk's frame (1280x720, raw RGBA: the heaviest way it is sent) and two (the
/// default `--workers`) of the largest legal frame, within what the budget under the limit
/// leaves for requests. The sizing comments in the manifests give the same figures.
#[test]
fn the_deployments_memory_limits_hold_their_admitted_requests() {
    use rtc_service::device::{cuda::CudaDevice, CpuDevice, RawFormat};
    use rtc_service::memory::{limit::budget_under, parse_size, BudgetChoice, BudgetSource, MemoryBudget};
    use rtc_service::params::MAX_PIXELS;
    for (variant, working) in [
        ("cpu", CpuDevice::working_bytes_for as fn(usize, usize, Option<RawFormat>) -> usize),
        ("gpu", CudaDevice::working_bytes_for),
    ] {
        let path = format!("{}/manifests/deployment/{variant}/deployment.yaml", env!("CARGO_MANIFEST_DIR"));
        let doc: serde_json::Value = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let container = &doc["spec"]["template"]["spec"]["containers"][0];
        let limit = parse_size(container["resources"]["limits"]["memory"].as_str().unwrap()).unwrap();
        let env = |name: &str| {
            let vars = container["env"].as_array().unwrap();
            vars.iter().find(|v| v["name"] == name).map(|v| v["value"].as_str().unwrap().to_string())
        };
        assert_eq!(env("RTC_MEMORY_BUDGET"), None, "{path}: the budget comes from the limit");
        let max_inflight: usize = env("RTC_MAX_INFLIGHT").unwrap().parse().unwrap();
        let budget =
            MemoryBudget::new(BudgetChoice { bytes: budget_under(limit), source: BudgetSource::Flag }).unwrap();
        let need = |w: usize, h: usize| w * h * 4 + working(w, h, Some(RawFormat::Rgba));
        let talk = max_inflight * need(1280, 720);
        let largest = 2 * need(MAX_PIXELS, 1);
        eprintln!(
            "{variant}: limit {} MiB, for requests {} MiB; {max_inflight} x 720p = {} MiB; 2 x largest = {} MiB",
            limit >> 20,
            budget.for_requests() >> 20,
            talk >> 20,
            largest >> 20
        );
        assert!(talk <= budget.for_requests(), "{path}: {max_inflight} 720p requests need {talk} bytes");
        assert!(largest <= budget.for_requests(), "{path}: two of the largest frames need {largest} bytes");
    }
}
