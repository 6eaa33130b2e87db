//! The service's own HTTP/1.1 server. hyper hands a request body over as chunks of its own
//! read buffer, so every frame would be copied once more on its way to the effects; here the
//! head is read without taking a byte past it, and `/process` reads its body from the socket
//! into the pooled frame the effects work on (`body`), and sends the processed frame from
//! that same buffer (`response`). Every other endpoint is the axum router's.
//!
//! Connections are kept alive and may pipeline; requests on one connection are answered in
//! order. On shutdown the listener closes, idle connections close at once, and a connection
//! in the middle of a request answers it (with `Connection: close`) before it closes.
mod body;
mod head;
mod response;

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::http::Method;
use axum::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;

pub use body::{BodyError, RequestBody};
pub use head::RequestHead;
pub use response::Answer;

use crate::app::{self, AppState};

/// After the answer that ends a connection, how long the client's unread bytes are taken and
/// thrown away so that it reads the answer rather than a reset.
const LINGER: Duration = Duration::from_secs(2);
/// How long a request head may take to arrive whole, from its first byte (hyper's default).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a body a request will not use may take to arrive and be thrown away.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Serve `listener` until `stop` completes, then finish the requests in progress.
pub async fn serve(listener: TcpListener, state: AppState, stop: impl Future<Output = ()>) -> io::Result<()> {
    let router = app::router(state.clone());
    let (shutdown, shutting_down) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, state.clone(), router.clone(), shutting_down.clone()));
                }
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

async fn serve_connection(
    mut stream: TcpStream,
    state: AppState,
    router: Router,
    mut shutting_down: watch::Receiver<bool>,
) {
    // The answer's head and body go out in one write; nothing is gained by waiting to merge.
    let _ = stream.set_nodelay(true);
    let mut scratch = Vec::new();
    loop {
        let head = tokio::select! {
            head = head::next_head(&mut stream, &mut scratch, HEAD_TIMEOUT) => head,
            _ = shutting_down.wait_for(|stop| *stop) => return,
        };
        let head = match head {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                if let Some(status) = e.status() {
                    let answer = Answer::Response(app::error_response(status, "bad request head", None, e.to_string()));
                    let delivery =
                        response::Delivery { version: axum::http::Version::HTTP_11, head_only: false, close: true };
                    let _ = response::write(&mut stream, answer, &delivery).await;
                    linger(stream).await;
                }
                return;
            }
        };
        let mut body = RequestBody::new(&mut stream, &mut scratch, &head);
        let answer = if head.path == "/process" {
            app::process(&state, &head, &mut body).await
        } else {
            body.discard(DRAIN_LIMIT).await;
            let response = router.clone().oneshot(head.to_request()).await;
            Answer::Response(response.unwrap_or_else(|never| match never {}))
        };
        let finished = body.is_finished();
        let close = !head.keep_alive || !finished || *shutting_down.borrow();
        let delivery = response::Delivery { version: head.version, head_only: head.method == Method::HEAD, close };
        let written = response::write(&mut stream, answer, &delivery).await;
        if written.is_err() {
            return;
        }
        if close {
            linger(stream).await;
            return;
        }
    }
}

/// Close our side, then take what the client still sends until it closes too.
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 16 * 1024];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}
