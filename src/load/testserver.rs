//! A small HTTP/1.1 server on loopback for the load engine's tests, benchmark and memory
//! scripts (`cargo run --release --example load_static_server`): answers every request with
//! a fixed body, `/status/NNN` with that status, `/delay/MS` after MS milliseconds, and can
//! stall every response for a window of time (to show coordinated omission).
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Debug, Clone, Default)]
pub struct TestServerOptions {
    /// Body of a normal answer (default `ok`).
    pub body: Option<Bytes>,
    /// Hold every response that would be written in `[start + .0, start + .0 + .1)` until the
    /// end of that window (start = when the server was spawned).
    pub stall: Option<(Duration, Duration)>,
}

/// A running server; it stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (use port 0 for any) and serves on the current tokio runtime.
pub async fn spawn(addr: SocketAddr, opts: TestServerOptions) -> std::io::Result<TestServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let requests = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let body = opts.body.clone().unwrap_or_else(|| Bytes::from_static(b"ok"));
    let stall = opts.stall.map(|(after, len)| (start + after, start + after + len));
    let counter = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let body = body.clone();
                    let counter = counter.clone();
                    async move {
                        let resp = answer(req, body, stall).await;
                        counter.fetch_add(1, Relaxed);
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok(TestServer { addr, requests, task })
}

async fn answer(req: Request<Incoming>, body: Bytes, stall: Option<(Instant, Instant)>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let mut status = StatusCode::OK;
    if let Some(code) = path.strip_prefix("/status/") {
        status = code.parse::<u16>().ok().and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::BAD_REQUEST);
    } else if let Some(ms) = path.strip_prefix("/delay/") {
        let ms = ms.parse::<u64>().unwrap_or(0).min(60_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some((from, until)) = stall {
        let now = Instant::now();
        if now >= from && now < until {
            tokio::time::sleep_until(until.into()).await;
        }
    }
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp
}
