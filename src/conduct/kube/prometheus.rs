//! The kube backend's Prometheus source (prometheus-http-query): server-side p95, RPS,
//! errors and shed requests, GPU utilisation (DCGM), with the scenario's queries or their
//! defaults. Each poll runs all queries; a failure marks the data stale and retries with
//! backoff (1 s, 2 s, 4 s, 8 s, then every 10 s); the last good values are kept but not shown
//! as current (the snapshot carries `None` while stale).
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_http_query::Client;

use crate::scenario::Prometheus as PromCfg;

/// How long one query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(1500);

/// The queries the console runs (from the scenario's `[prometheus]`, defaults filled in).
#[derive(Debug, Clone, PartialEq)]
pub struct Queries {
    pub p95: String,
    pub rps: String,
    pub errors: String,
    pub shed: String,
    pub gpu: String,
}

impl Queries {
    pub fn from_scenario(p: &PromCfg) -> Self {
        Queries {
            p95: p.p95.clone(),
            rps: p.rps.clone(),
            errors: p.errors.clone(),
            shed: p.shed.clone(),
            gpu: p.gpu_utilisation.clone(),
        }
    }

    /// The scenario's queries with `namespace="rtc"` moved to another namespace (`--namespace`).
    pub fn in_namespace(mut self, from: &str, to: &str) -> Self {
        if from != to {
            let (a, b) = (format!("namespace=\"{from}\""), format!("namespace=\"{to}\""));
            for q in [&mut self.p95, &mut self.rps, &mut self.errors, &mut self.shed, &mut self.gpu] {
                *q = q.replace(&a, &b);
            }
        }
        self
    }
}

/// One poll's answers. `None`: empty answer or NaN (the GPU query is empty without DCGM).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    pub p95_s: Option<f64>,
    pub rps: Option<f64>,
    pub errors_per_s: Option<f64>,
    pub shed_per_s: Option<f64>,
    pub gpu_util: Option<f64>,
}

/// The readings as the kube backend sees them.
pub type PromState = crate::conduct::prom::Polled<Reading>;

/// Backoff after `failures` consecutive failures: 1, 2, 4, 8, 10, 10 … seconds.
pub use crate::conduct::prom::backoff;

/// A Prometheus at `url` (http only: a port-forward or a URL reachable from this machine).
#[derive(Clone)]
pub struct Source {
    client: Client,
    pub url: String,
}

impl Source {
    pub fn new(url: &str) -> Result<Source, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!("Prometheus URL {url:?}: must start with http:// (e.g. http://127.0.0.1:9090 after `kubectl -n monitoring port-forward svc/prometheus-operated 9090`)"));
        }
        if url.starts_with("https://") {
            return Err(format!("Prometheus URL {url:?}: https is not supported by this build; port-forward and use http://127.0.0.1:9090"));
        }
        let client = url.trim_end_matches('/').parse::<Client>().map_err(|e| format!("Prometheus URL {url:?}: {e}"))?;
        Ok(Source { client, url: url.trim_end_matches('/').to_string() })
    }

    /// One instant query: the first sample's value (`None` when the answer is empty or NaN).
    pub async fn value(&self, query: &str) -> Result<Option<f64>, String> {
        let fut = self.client.query(query).timeout(QUERY_TIMEOUT.as_millis() as i64).get();
        let r = match tokio::time::timeout(QUERY_TIMEOUT + Duration::from_millis(500), fut).await {
            Err(_) => return Err(format!("{}: no answer within {}ms", self.url, QUERY_TIMEOUT.as_millis())),
            Ok(Err(e)) => return Err(format!("{}: {}", self.url, super::error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        let data = r.data();
        let v = if let Some(vec) = data.as_vector() {
            vec.first().map(|s| s.sample().value())
        } else if let Some(s) = data.as_scalar() {
            Some(s.value())
        } else {
            return Err(format!("{}: query {query:?} gave a range vector, expected an instant vector", self.url));
        };
        Ok(v.filter(|x| x.is_finite()))
    }

    /// Runs the five queries concurrently. Any failure fails the poll (with the first error),
    /// except the GPU query, which is optional (no DCGM exporter: `None`).
    pub async fn poll(&self, q: &Queries) -> Result<Reading, String> {
        let (p95, rps, errors, shed, gpu) = tokio::join!(
            self.value(&q.p95),
            self.value(&q.rps),
            self.value(&q.errors),
            self.value(&q.shed),
            self.value(&q.gpu)
        );
        Ok(Reading { p95_s: p95?, rps: rps?, errors_per_s: errors?, shed_per_s: shed?, gpu_util: gpu.ok().flatten() })
    }

    /// Is Prometheus up (answers `vector(1)`)?
    pub async fn reachable(&self) -> Result<(), String> {
        match self.value("vector(1)").await? {
            Some(v) if (v - 1.0).abs() < 1e-9 => Ok(()),
            other => Err(format!("{}: `vector(1)` answered {other:?}", self.url)),
        }
    }

    /// How many series of `metric` exist in `namespace` (0 when none).
    pub async fn series_count(&self, metric: &str, namespace: &str) -> Result<f64, String> {
        Ok(self.value(&format!("count({metric}{{namespace=\"{namespace}\"}})")).await?.unwrap_or(0.0))
    }
}

/// Starts polling every `interval` (backing off on failures); the state is shared.
pub fn spawn(
    src: Source,
    queries: Queries,
    interval: Duration,
) -> (Arc<Mutex<PromState>>, tokio::task::JoinHandle<()>) {
    let (src, queries) = (Arc::new(src), Arc::new(queries));
    crate::conduct::prom::spawn_poller(interval, move || {
        let (src, queries) = (src.clone(), queries.clone());
        async move { src.poll(&queries).await }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        let s: Vec<u64> = (1..=7).map(|f| backoff(f).as_secs()).collect();
        assert_eq!(s, vec![1, 2, 4, 8, 10, 10, 10]);
    }

    #[test]
    fn namespace_moves_in_every_query() {
        let q = Queries::from_scenario(&PromCfg::default()).in_namespace("rtc", "demo");
        for x in [&q.p95, &q.rps, &q.errors, &q.shed, &q.gpu] {
            assert!(x.contains("namespace=\"demo\"") && !x.contains("namespace=\"rtc\""), "{x}");
        }
    }

    #[test]
    fn bad_urls_say_what_is_allowed() {
        assert!(Source::new("localhost:9090").err().unwrap().contains("http://"));
        assert!(Source::new("https://prom.example").err().unwrap().contains("port-forward"));
        assert!(Source::new("http://127.0.0.1:9090").is_ok());
    }

    #[test]
    fn stale_until_first_answer_and_after_a_failure() {
        let mut s = PromState::default();
        assert!(s.stale(Duration::from_secs(5)));
        s.last_ok = Some(Instant::now());
        assert!(!s.stale(Duration::from_secs(5)));
        s.failures = 1;
        assert!(s.stale(Duration::from_secs(5)));
    }
}
