//! Slow and hostile clients against the real `rtc-demo serve` on loopback: bodies trickled
//! at a byte a second cannot starve ordinary requests and end with 408 at the body
//! deadline; malformed framings (the request-smuggling class) are answered 400 and counted,
//! never processed.
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::serve::Server;

/// The status of the first answer on `conn`, or None when it closed without one.
fn status_of(conn: &mut TcpStream) -> Option<u16> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(2).any(|w| w == b"\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&got);
    line.split(' ').nth(1).and_then(|c| c.parse().ok())
}

#[test]
fn trickled_bodies_end_with_408_and_starve_nobody() {
    let server = Server::start(&["--max-inflight", "4", "--body-timeout", "3s"]);
    let addr = server.addr;
    let frame_len = 1280 * 720 * 4;
    // 2 × max-inflight clients announce a 720p frame and send it at a byte a second.
    let trickles: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_millis(900))).unwrap();
                let head = format!(
                    "POST /process?pixels=1280x720&format=rgba&iters=1 HTTP/1.1\r\nHost: t\r\nContent-Length: {frame_len}\r\n\r\n"
                );
                c.write_all(head.as_bytes()).unwrap();
                let start = Instant::now();
                loop {
                    if c.write_all(b"x").is_err() {
                        break;
                    }
                    if let Some(s) = status_of(&mut c) {
                        return (Some(s), start.elapsed());
                    }
                    if start.elapsed() > Duration::from_secs(15) {
                        break;
                    }
                }
                (status_of(&mut c), start.elapsed())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Meanwhile, ordinary requests are answered, within the SLO.
    for _ in 0..10 {
        let t = Instant::now();
        let r = server.get("/process?pixels=64x64&iters=1");
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(t.elapsed() < Duration::from_millis(100), "an ordinary request took {:?}", t.elapsed());
    }
    for t in trickles {
        let (status, after) = t.join().unwrap();
        assert_eq!(status, Some(408), "a trickling client ends with 408 (after {after:?})");
        assert!(after < Duration::from_secs(6), "by the 3 s deadline, not {after:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("app_memory_bytes{state=\"reserved\"}") != 0.0 {
        assert!(Instant::now() < deadline, "reservations did not return to zero");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each framing hyper refuses; a lenient parser behind an Ingress that parses differently
/// is a request-smuggling vector (CVE-2025-22871, CVE-2025-58056, CVE-2025-55315).
#[test]
fn malformed_framings_are_answered_400_and_counted() {
    let server = Server::start(&[]);
    let frame = vec![7u8; 16 * 16 * 4];
    let head =
        "POST /process?pixels=16x16&format=rgba&iters=1 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n";
    let body = |size_line: &[u8], tail: &[u8]| {
        let mut v = head.as_bytes().to_vec();
        v.extend_from_slice(size_line);
        v.extend_from_slice(&frame);
        v.extend_from_slice(tail);
        v
    };
    let many_trailers: Vec<u8> = [b"\r\n0\r\n".to_vec(), b"X-T: 1\r\n".repeat(5000), b"\r\n".to_vec()].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a bare LF after the chunk size", body(b"400\n", b"\r\n0\r\n\r\n")),
        ("a + before the size", body(b"+400\r\n", b"\r\n0\r\n\r\n")),
        ("a space before the size", body(b" 400\r\n", b"\r\n0\r\n\r\n")),
        ("a bare LF after the last chunk", body(b"400\r\n", b"\r\n0\n\n")),
        ("a lone CR in a chunk extension", body(b"400;a\rb\r\n", b"\r\n0\r\n\r\n")),
        ("5,000 trailer fields", body(b"400\r\n", &many_trailers)),
    ];
    let well_formed = body(b"400\r\n", b"\r\n0\r\n\r\n");
    let mut ok = TcpStream::connect(server.addr).unwrap();
    ok.write_all(&well_formed).unwrap();
    assert_eq!(status_of(&mut ok), Some(200), "the same body, well framed");
    let before = server.metric("app_malformed_requests_total");
    for (what, bytes) in &cases {
        let mut c = TcpStream::connect(server.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = c.write_all(bytes);
        let status = status_of(&mut c);
        assert!(status.is_some_and(|s| (400..500).contains(&s)), "{what}: answered {status:?}");
    }
    let counted = server.metric("app_malformed_requests_total") - before;
    assert!(counted >= cases.len() as f64, "{counted} of {} counted", cases.len());
    assert_eq!(server.metric("app_requests_total{endpoint=\"/process\",code=\"200\"}"), 1.0, "none processed");
}

#[test]
fn connections_past_the_limit_are_closed_and_counted() {
    let server = Server::start(&["--max-connections", "4", "--idle-timeout", "1s"]);
    let held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(server.addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut extra = TcpStream::connect(server.addr).unwrap();
    extra.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = extra.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status_of(&mut extra), None, "the fifth connection is closed without an answer");
    // Idle kept-alive connections close after --idle-timeout, and the slots come back.
    std::thread::sleep(Duration::from_millis(1800));
    for mut c in held {
        c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(c.read(&mut b), Ok(0)), "an idle connection is closed by the server");
    }
    assert_eq!(server.get("/healthz").status, 200);
    assert!(server.metric("app_connections_refused_total") >= 1.0);
}
