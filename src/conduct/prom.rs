//! The Prometheus source both live backends use (prometheus-http-query): instant queries
//! with a timeout, and a poller task that sends each poll's outcome to the task that owns the
//! backend's state (no shared lock), backing off while Prometheus fails (1 s, 2 s, 4 s, 8 s,
//! then every 10 s). The owner keeps a [`Polled`]: the last good value, and whether it is
//! stale by the timeline's one window.
use std::time::{Duration, Instant};

use prometheus_http_query::Client;
use tokio::sync::mpsc;

use super::backoff::Backoff;
use super::timeline;

/// How long one query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(1500);

/// What went wrong asking Prometheus; each names the URL.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PromError {
    #[error("Prometheus URL {url:?}: must start with http:// (e.g. http://127.0.0.1:9090 after `kubectl -n monitoring port-forward svc/prometheus-operated 9090`)")]
    NotHttp { url: String },
    #[error(
        "Prometheus URL {url:?}: https is not supported by this build; port-forward and use http://127.0.0.1:9090"
    )]
    Https { url: String },
    #[error("Prometheus URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{url}: no answer within {}ms", QUERY_TIMEOUT.as_millis())]
    NoAnswer { url: String },
    /// The query failed (connection refused, bad PromQL …): the client's error chain.
    #[error("{url}: {reason}")]
    Query { url: String, reason: String },
    #[error("{url}: query {query:?} gave a range vector, expected an instant vector")]
    RangeVector { url: String, query: String },
    #[error("{url}: `vector(1)` answered {answer}, expected 1")]
    NotUp { url: String, answer: String },
}

/// The latest answer of a polled source, and how healthy the polling is.
#[derive(Debug, Clone, Default)]
pub struct Polled<T> {
    pub value: T,
    pub last_ok: Option<Instant>,
    pub error: Option<String>,
    pub failures: u32,
}

impl<T> Polled<T> {
    /// Stale: never answered, the last poll failed, or the last answer is older than
    /// [`timeline::STALE_AFTER`].
    pub fn stale(&self) -> bool {
        self.failures > 0 || timeline::stale(self.last_ok, Instant::now())
    }

    /// Takes one poll's outcome.
    pub fn record(&mut self, outcome: Result<T, PromError>) {
        match outcome {
            Ok(v) => {
                self.value = v;
                self.last_ok = Some(Instant::now());
                self.error = None;
                self.failures = 0;
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.error = Some(e.to_string());
            }
        }
    }
}

/// Polls `fetch` every `interval`, backing off while it fails, and sends every outcome as
/// `wrap(outcome)` to `tx`. Ends when the receiver is gone.
pub fn spawn_poller<T, E, F, Fut>(
    interval: Duration,
    mut fetch: F,
    tx: mpsc::UnboundedSender<E>,
    wrap: fn(Result<T, PromError>) -> E,
) -> tokio::task::JoinHandle<()>
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, PromError>> + Send,
{
    tokio::spawn(async move {
        let mut backoff = Backoff::default();
        loop {
            let outcome = fetch().await;
            let wait = if outcome.is_ok() {
                backoff.succeeded();
                interval
            } else {
                backoff.failed()
            };
            if tx.send(wrap(outcome)).is_err() {
                return;
            }
            tokio::time::sleep(wait).await;
        }
    })
}

/// A Prometheus at `url` (http only: a port-forward or a URL reachable from this machine).
#[derive(Clone)]
pub struct Source {
    client: Client,
    pub url: String,
}

impl Source {
    pub fn new(url: &str) -> Result<Source, PromError> {
        if url.starts_with("https://") {
            return Err(PromError::Https { url: url.into() });
        }
        if !url.starts_with("http://") {
            return Err(PromError::NotHttp { url: url.into() });
        }
        let client = url
            .trim_end_matches('/')
            .parse::<Client>()
            .map_err(|e| PromError::BadUrl { url: url.into(), reason: e.to_string() })?;
        Ok(Source { client, url: url.trim_end_matches('/').to_string() })
    }

    /// One instant query: the first sample's value (`None` when the answer is empty or NaN).
    pub async fn value(&self, query: &str) -> Result<Option<f64>, PromError> {
        let url = || self.url.clone();
        let fut = self.client.query(query).timeout(QUERY_TIMEOUT.as_millis() as i64).get();
        let r = match tokio::time::timeout(QUERY_TIMEOUT + Duration::from_millis(500), fut).await {
            Err(_) => return Err(PromError::NoAnswer { url: url() }),
            Ok(Err(e)) => return Err(PromError::Query { url: url(), reason: crate::errors::chain(&e) }),
            Ok(Ok(r)) => r,
        };
        let data = r.data();
        let v = if let Some(vec) = data.as_vector() {
            vec.first().map(|s| s.sample().value())
        } else if let Some(s) = data.as_scalar() {
            Some(s.value())
        } else {
            return Err(PromError::RangeVector { url: url(), query: query.into() });
        };
        Ok(v.filter(|x| x.is_finite()))
    }

    /// Is Prometheus up (answers `vector(1)`)?
    pub async fn reachable(&self) -> Result<(), PromError> {
        match self.value("vector(1)").await? {
            Some(v) if (v - 1.0).abs() < 1e-9 => Ok(()),
            other => Err(PromError::NotUp { url: self.url.clone(), answer: format!("{other:?}") }),
        }
    }

    /// How many series of `metric` exist in `namespace` (0 when none).
    pub async fn series_count(&self, metric: &str, namespace: &str) -> Result<f64, PromError> {
        Ok(self.value(&format!("count({metric}{{namespace=\"{namespace}\"}})")).await?.unwrap_or(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On tokio's paused clock (this replaced tests/conduct_prometheus.rs counting tries in
    /// 3.5 s of real time): a failing source is asked at 0, 1, 3 and 7 s, not every 200 ms,
    /// and at the interval again once it answers.
    #[tokio::test(start_paused = true)]
    async fn a_failing_source_is_polled_with_backoff_then_at_the_interval() {
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let t0 = tokio::time::Instant::now();
        let log = asked.clone();
        let fetch = move || {
            let at = t0.elapsed().as_millis() as u64;
            log.lock().unwrap().push(at);
            let heals = at >= 7_000;
            async move {
                if heals {
                    Ok(1.0)
                } else {
                    Err(PromError::Query { url: "http://127.0.0.1:9".into(), reason: "connection refused".into() })
                }
            }
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = spawn_poller(Duration::from_millis(200), fetch, tx, |o| o);
        tokio::time::sleep(Duration::from_millis(7_500)).await;
        task.abort();
        assert_eq!(*asked.lock().unwrap(), [0, 1_000, 3_000, 7_000, 7_200, 7_400]);
        let failures = std::iter::from_fn(|| rx.try_recv().ok()).filter(Result::is_err).count();
        assert_eq!(failures, 3);
    }

    #[test]
    fn polled_is_stale_until_it_answers_and_after_a_failure() {
        let mut p = Polled::<Option<f64>>::default();
        assert!(p.stale());
        p.record(Ok(Some(0.12)));
        assert!(!p.stale());
        assert_eq!(p.value, Some(0.12));
        p.record(Err(PromError::Query { url: "http://127.0.0.1:9".into(), reason: "connection refused".into() }));
        assert!(p.stale());
        assert_eq!(
            (p.value, p.failures, p.error.as_deref()),
            (Some(0.12), 1, Some("http://127.0.0.1:9: connection refused"))
        );
    }
}
