//! A tiny HTTP/1.1 client with a whole-request timeout: the local replicas' `/readyz` and
//! `/metrics`, and the capacity probe's bodiless requests to one pod.
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    pub fn new() -> Self {
        Self::with_idle_connections(2)
    }

    /// Keeps up to `n` idle connections per host (as many as requests run at once).
    pub fn with_idle_connections(n: usize) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(Duration::from_millis(500)));
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(n)
            .build(conn);
        HttpClient { client }
    }

    /// GET `url`: (status, body) or why not ("timeout after 800ms", "… connection refused").
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<(u16, String), HttpError> {
        self.send(hyper::Method::GET, url, timeout).await
    }

    /// `method url` without a body: (status, body) or why not.
    pub async fn send(&self, method: hyper::Method, url: &str, timeout: Duration) -> Result<(u16, String), HttpError> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url { url: url.into(), reason: e.to_string() })?;
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .body(Empty::new())
            .map_err(|e| HttpError::Url { url: url.into(), reason: e.to_string() })?;
        let fut = async {
            let resp = self.client.request(req).await.map_err(|e| HttpError::Transport(crate::errors::chain(&e)))?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map_err(|e| HttpError::Transport(e.to_string()))?.to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout { ms: timeout.as_millis() as u64 }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("timeout after {ms}ms")]
    Timeout { ms: u64 },
    /// Connecting, sending or reading failed: the transport's error chain.
    #[error("{0}")]
    Transport(String),
}
