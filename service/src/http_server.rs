//! The HTTP/1.1 server: hyper's connection state machine (strict chunked grammar, bounded
//! heads, keep-alive, pipelining, `Expect: 100-continue`) under the axum router, which
//! answers every endpoint, `/process` included. What this module adds is what a pod needs
//! against slow or hostile clients:
//!
//! - at most `max_connections` open at once: one more is closed as soon as it is accepted,
//!   counted in `app_connections_refused_total` (`app_open_connections` is the gauge), so a
//!   flood of sockets cannot exhaust descriptors;
//! - a head must arrive whole within `head_timeout` (hyper's `header_read_timeout`);
//! - a kept-alive connection with no request in flight for `idle_timeout` is closed;
//! - framing hyper refuses (a bare LF in a chunk line, a sign before a chunk size, …) is
//!   answered 400 by hyper and counted in `app_malformed_requests_total`. A body's deadline
//!   is `/process`'s own (`crate::app`).
//!
//! On shutdown the listener closes and every connection shuts down gracefully: idle ones at
//! once, busy ones after the answer in progress.
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::app::{self, AppState};

/// What the server bounds per connection and per pod.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            head_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Serve `listener` until `stop` completes, then finish the requests in progress.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let router = app::router(state.clone());
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (shutdown, shutting_down) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let conn = serve_connection(stream, router.clone(), state.clone(), limits, shutting_down.clone(), slot);
                        connections.spawn(conn);
                    }
                    // Dropped at once: the client sees the connection close, not a hang.
                    Err(_) => state.metrics().count_connection_refused(),
                },
                // Out of descriptors, or a connection reset before it was taken: the listener
                // is still good; a short pause keeps a persistent error from spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => log_panic(done),
        }
    }
    drop(listener);
    let _ = shutdown.send(true);
    while let Some(done) = connections.join_next().await {
        log_panic(done);
    }
    Ok(())
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "a connection task failed");
    }
}

/// Requests in flight on one connection, and when the last one ended: what idleness is.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    last_end: Mutex<Option<Instant>>,
}

impl Activity {
    fn idle_for(&self, since_open: Instant) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = self.last_end.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or(since_open);
        Some(last.elapsed())
    }
}

/// Ends a request's activity when its handler is done, however it ends.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_end.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    state: AppState,
    limits: ConnectionLimits,
    mut shutting_down: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    // An answer's head and body go out together; nothing is gained by waiting to merge.
    let _ = stream.set_nodelay(true);
    let _open = state.metrics().enter_connection();
    let opened = Instant::now();
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            activity.in_flight.fetch_add(1, Ordering::SeqCst);
            let guard = InFlight(activity.clone());
            let router = router.clone();
            async move {
                let response = router.oneshot(req.map(axum::body::Body::new)).await;
                drop(guard);
                response
            }
        })
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut idle_check = tokio::time::interval((limits.idle_timeout / 4).max(Duration::from_millis(50)));
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    if e.is_parse() {
                        state.metrics().count_malformed();
                    }
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = shutting_down.wait_for(|stop| *stop), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = idle_check.tick(), if !closing => {
                if activity.idle_for(opened).is_some_and(|d| d >= limits.idle_timeout) {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}
