//! The real `rtc-demo serve` binary on a loopback port, and a minimal HTTP/1.1 client over std's TcpStream (one request per connection).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    pub addr: SocketAddr,
    pub child: Child,
    /// Every log line the server printed, as it arrives.
    pub log: mpsc::Receiver<String>,
}

impl Server {
    /// `rtc-demo serve --listen 127.0.0.1:0 --device cpu` plus `extra` flags; waits for "listening".
    pub fn start(extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
            .args(["serve", "--listen", "127.0.0.1:0", "--device", "cpu", "--log-format", "json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn rtc-demo serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        match listening_addr(&rx) {
            Ok(addr) => Server { addr, child, log: rx },
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("rtc-demo serve {extra:?}: {why}");
            }
        }
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[])
    }

    pub fn post(&self, path: &str, body: &[u8]) -> Response {
        request(self.addr, "POST", path, body)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The value of an unlabelled (or exactly labelled) sample in `/metrics`.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").text();
        sample(&text, series).unwrap_or_else(|| panic!("no `{series}` in /metrics:\n{text}"))
    }

    /// As [`Server::metric`], 0 while the series does not exist yet (a counter before its
    /// first event).
    pub fn metric_or_zero(&self, series: &str) -> f64 {
        sample(&self.get("/metrics").text(), series).unwrap_or(0.0)
    }
}

/// The address from serve's `listening` log line (JSON logs), within 20 s.
fn listening_addr(log: &mpsc::Receiver<String>) -> Result<SocketAddr, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = log.recv_timeout(left).map_err(|_| "printed no `listening` line within 20 s".to_string())?;
        let v: serde_json::Value = serde_json::from_str(&line).map_err(|_| format!("non-JSON log: {line}"))?;
        if v["message"] == "listening" {
            return v["addr"].as_str().and_then(|a| a.parse().ok()).ok_or_else(|| format!("no address in {line}"));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Response {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let elapsed = started.elapsed();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response has a head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Response { status, headers, body, elapsed }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().expect("a number"))
}
