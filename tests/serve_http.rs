//! The real `serve` binary on a loopback port: every endpoint, every bad input of SPEC §1.
mod support;

use std::sync::Arc;

use rtc_service::device::{CpuDevice, CpuShape, Device, HostFrame, Job, JobInput, JobOutput, RawFormat};
use rtc_service::effects::{ChainPlan, Effect, EffectParams};
use rtc_service::frame::{hash32, synthesize, Frame};
use rtc_service::i420::i420_len;
use rtc_service::memory::BufferPool;
use support::serve::Server;

#[test]
fn every_endpoint_answers() {
    let server = Server::start(&["--max-inflight", "8"]);

    let index = server.get("/").json();
    assert_eq!(index["device"], "cpu");
    assert_eq!(index["effects"], serde_json::json!(["blur", "bgblur", "translate", "color"]));
    assert_eq!(index["limits"]["iters"], "1..=50");
    assert_eq!(index["limits"]["max_inflight"], 8);

    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/readyz").status, 200);

    let r = server.post("/process?pixels=64x48&iters=2&effects=blur,bgblur,translate,color&seed=5", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(
        (j["device"].as_str(), j["pixels"].as_str(), j["iters"].as_u64()),
        (Some("cpu"), Some("64x48"), Some(2))
    );
    assert_eq!(j["effects"], serde_json::json!(["blur", "bgblur", "translate", "color"]));
    for field in ["queue_ms", "compute_ms", "total_ms"] {
        assert!(j[field].as_f64().unwrap() >= 0.0, "{field}");
    }
    // The checksum is the frame the library computes: same seed, same bytes.
    let mut expected = Frame::new(64, 48);
    synthesize(&mut expected, 5);
    let plan = ChainPlan::new(Effect::ALL.to_vec(), EffectParams::default());
    rtc_service::effects::apply_chain(&mut expected, &plan, 2, &mut Default::default());
    assert_eq!(j["checksum"], rtc_service::frame::checksum(&expected.data, 64 * 4));
    let again = server.get("/process?pixels=64x48&iters=2&effects=blur,bgblur,translate,color&seed=5").json();
    assert_eq!(again["checksum"], j["checksum"], "GET and POST, same answer");
    let other_seed = server.get("/process?pixels=64x48&iters=2&effects=blur,bgblur,translate,color&seed=6").json();
    assert_ne!(other_seed["checksum"], j["checksum"]);

    let metrics = server.get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for name in [
        "app_requests_total{endpoint=\"/process\",code=\"200\"} 3",
        "app_request_latency_seconds_bucket{le=\"0.1\"}",
        "app_request_latency_p95_seconds",
        "app_inflight_requests 0",
        "app_rejected_total{reason=\"overload\"} 0",
        "app_effect_seconds_count{effect=\"bgblur\",device=\"cpu\"} 3",
        "app_device_info{device=\"cpu\"",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }

    let missing = server.get("/nope");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["detail"].as_str().unwrap().contains("/nope"));
}

fn random_bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n).map(|i| hash32(i as u32 ^ seed) as u8).collect()
}

#[test]
fn raw_frames_come_back_processed_in_their_format() {
    let server = Server::start(&[]);
    let (w, h) = (37, 21);
    let input = random_bytes(w * h * 4, 3);
    let r = server.post(&format!("/process?pixels={w}x{h}&format=rgba&effects=blur,color"), &input);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert!(r.header("x-compute-ms").is_some());
    let device = CpuDevice::new(CpuShape { workers: 1, threads: 1, cores: 1 }, Arc::new(BufferPool::new(0))).unwrap();
    let plan = ChainPlan::new(vec![Effect::Blur, Effect::Color], EffectParams::default());
    let mut expected = HostFrame::Pooled(input.clone());
    let job = Job {
        width: w,
        height: h,
        iters: 1,
        plan: &plan,
        input: JobInput::Raw { format: RawFormat::Rgba, frame: &mut expected },
    };
    assert_eq!(device.process(job).unwrap().output, JobOutput::FrameInPlace);
    assert_eq!(r.body, &*expected);

    let yuv = random_bytes(i420_len(w, h), 4);
    let r = server.post(&format!("/process?pixels={w}x{h}&format=i420&effects=translate"), &yuv);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.len(), i420_len(w, h));
    assert_ne!(r.body, yuv);
}

#[test]
fn every_bad_input_is_a_fast_400_naming_the_parameter() {
    let server = Server::start(&[]);
    let cases: &[(&str, &[u8], &str)] = &[
        ("/process?pixels=abc", b"", "pixels"),
        ("/process?pixels=0x0", b"", "pixels"),
        ("/process?pixels=100000x100000", b"", "pixels"),
        ("/process?pixels=7681x16", b"", "pixels"),
        ("/process?iters=0", b"", "iters"),
        ("/process?iters=-1", b"", "iters"),
        ("/process?iters=51", b"", "iters"),
        ("/process?iters=abc", b"", "iters"),
        ("/process?effects=blur,sepia", b"", "effects"),
        ("/process?sigma=-1", b"", "sigma"),
        ("/process?pixels=16x16&format=rgba", &[0u8; 100], "body"),
        ("/process?pixels=16x16&format=i420", &[0u8; 16 * 16 * 4], "body"),
        ("/process?pixels=16x16", &[1u8; 10], "body"),
        ("/process?pixels=16x16&format=bmp", b"", "format"),
    ];
    for (path, body, param) in cases {
        let r = server.post(path, body);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        let j = r.json();
        assert_eq!(j["param"], *param, "{path}: {j}");
        assert!(j["error"].as_str().unwrap().contains(param), "{path}: {j}");
        assert!(!j["detail"].as_str().unwrap().is_empty());
        assert!(r.elapsed.as_millis() < 100, "{path} took {:?}", r.elapsed);
    }
    // The ranges are spelled out where it matters.
    assert!(server.get("/process?iters=51").json()["detail"].as_str().unwrap().contains("1..=50"));
    assert!(server.get("/process?pixels=7681x16").json()["detail"].as_str().unwrap().contains("16..=7680"));
    // Still serving, and nothing was counted as processed.
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(server.get("/process?pixels=32x32").status, 200);
    assert_eq!(server.metric("app_requests_total{endpoint=\"/process\",code=\"400\"}"), cases.len() as f64 + 2.0);
    assert_eq!(server.metric("app_request_latency_seconds_count"), 1.0);
}

#[test]
fn an_oversized_body_is_refused_from_its_header() {
    let server = Server::start(&[]);
    // Declares 65 MiB but sends nothing: refused without reading the body.
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"POST /process?pixels=4096x4096&format=rgba HTTP/1.1\r\nHost: x\r\nContent-Length: 68157440\r\nConnection: close\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 400");
}

/// Reads one answer off a kept-alive connection: status, fields, and a Content-Length body.
fn read_answer(conn: &mut std::io::BufReader<std::net::TcpStream>) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use std::io::{BufRead, Read};
    let mut status_line = String::new();
    conn.read_line(&mut status_line).unwrap();
    let status =
        status_line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{status_line:?}"));
    let mut fields = Vec::new();
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        match line.trim_end().split_once(':') {
            Some((k, v)) => fields.push((k.to_ascii_lowercase(), v.trim().to_string())),
            None => break,
        }
    }
    let len = fields.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    conn.read_exact(&mut body).unwrap();
    (status, fields, body)
}

#[test]
fn one_connection_carries_pipelined_requests_answered_in_order() {
    use std::io::{Read, Write};
    let server = Server::start(&[]);
    let frame = random_bytes(16 * 16 * 4, 3);
    let mut conn = std::net::TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    // Five requests in one write: a raw frame, a probe, a bad parameter (with a body the
    // server must skip to find the next request), a synthetic frame, a chunked raw frame.
    let mut out = Vec::new();
    out.extend_from_slice(
        b"POST /process?pixels=16x16&format=rgba&effects=color HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n",
    );
    out.extend_from_slice(&frame);
    out.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    out.extend_from_slice(b"POST /process?iters=0 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    out.extend_from_slice(b"GET /process?pixels=16x16 HTTP/1.1\r\nHost: t\r\n\r\n");
    out.extend_from_slice(b"POST /process?pixels=16x16&format=rgba&effects=color HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for part in frame.chunks(300) {
        out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    conn.write_all(&out).unwrap();
    let mut conn = std::io::BufReader::new(conn);
    let (status, fields, processed) = read_answer(&mut conn);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&processed));
    assert!(fields.iter().any(|(k, v)| k == "content-type" && v == "application/octet-stream"), "{fields:?}");
    assert_eq!(processed.len(), frame.len());
    assert_ne!(processed, frame);
    assert_eq!(read_answer(&mut conn).2, b"ok\n");
    let (status, _, body) = read_answer(&mut conn);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("iters"));
    let (status, _, body) = read_answer(&mut conn);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("checksum"));
    let (status, _, chunked) = read_answer(&mut conn);
    assert_eq!((status, &chunked), (200, &processed), "the same frame, sent chunked, gives the same answer");

    // Still open: a request waiting for `100 Continue` gets it, then its answer; `Connection:
    // close` ends the connection after it.
    let mut conn = conn.into_inner();
    conn.write_all(b"POST /process?pixels=16x16&format=rgba&effects=color HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").unwrap();
    let mut interim = [0u8; 25];
    conn.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.write_all(&frame).unwrap();
    let mut conn = std::io::BufReader::new(conn);
    let (status, fields, body) = read_answer(&mut conn);
    assert_eq!((status, &body), (200, &processed));
    assert!(fields.iter().any(|(k, v)| k == "connection" && v == "close"), "{fields:?}");
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0, "closed after the answer");
    assert_eq!(server.metric("app_requests_total{endpoint=\"/process\",code=\"200\"}"), 4.0);
}

#[test]
fn requests_the_api_has_no_answer_for_are_refused_by_name() {
    let server = Server::start(&[]);
    let r = support::serve::request(server.addr, "PUT", "/process", b"x");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, POST")), "{}", r.text());
    assert!(r.json()["detail"].as_str().unwrap().contains("PUT /process"));
    assert_eq!(server.get("/nowhere").status, 404);
    let (status, text) = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nContent-Length: twelve\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        (raw.split(' ').nth(1).unwrap_or("").to_string(), raw)
    };
    // hyper refuses the head itself (a bare 400, closing the connection); it is counted.
    assert_eq!(status, "400", "{text}");
    // Counted when hyper's connection task returns its parse error, which can be just after
    // the client has read the 400 and the close: wait for it, never for a fixed time.
    support::process::wait_until("the malformed head to be counted", std::time::Duration::from_secs(10), || {
        server.metric("app_malformed_requests_total") == 1.0
    });
    assert_eq!(server.get("/healthz").status, 200, "still serving");
    assert_eq!(server.metric("app_requests_total{endpoint=\"/process\",code=\"405\"}"), 1.0);
}
