//! The kube backend's Prometheus queries: server-side p95, RPS, errors and shed requests,
//! GPU utilisation (DCGM), with the scenario's queries or their defaults, run through the
//! shared [`Source`](crate::conduct::prom::Source). Each poll runs all queries; a failure
//! marks the data stale and the poller backs off (1 s, 2 s, 4 s, 8 s, then every 10 s); the
//! last good values are kept but not shown as current (the snapshot carries `None` while stale).
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

pub use crate::conduct::prom::{PromError, Source};
use crate::scenario::Prometheus as PromCfg;

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

/// One poll's answers are the timeline's server reading (`None`: empty answer or NaN; the
/// GPU query is empty without DCGM).
pub use crate::conduct::timeline::ServerReading as Reading;

/// The readings as the kube backend sees them.
pub type PromState = crate::conduct::prom::Polled<Reading>;

/// Runs the five queries concurrently. Any failure fails the poll (with the first error),
/// except the GPU query, which is optional (no DCGM exporter: `None`).
pub async fn poll(src: &Source, q: &Queries) -> Result<Reading, PromError> {
    let (p95, rps, errors, shed, gpu) =
        tokio::join!(src.value(&q.p95), src.value(&q.rps), src.value(&q.errors), src.value(&q.shed), src.value(&q.gpu));
    Ok(Reading { p95_s: p95?, rps: rps?, errors_per_s: errors?, shed_per_s: shed?, gpu_util: gpu.ok().flatten() })
}

/// Starts polling every `interval` (backing off on failures); each outcome goes to `tx`.
pub fn spawn<E: Send + 'static>(
    src: Source,
    queries: Queries,
    interval: Duration,
    tx: mpsc::UnboundedSender<E>,
    wrap: fn(Result<Reading, PromError>) -> E,
) -> tokio::task::JoinHandle<()> {
    let (src, queries) = (Arc::new(src), Arc::new(queries));
    crate::conduct::prom::spawn_poller(
        interval,
        move || {
            let (src, queries) = (src.clone(), queries.clone());
            async move { poll(&src, &queries).await }
        },
        tx,
        wrap,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_moves_in_every_query() {
        let q = Queries::from_scenario(&PromCfg::default()).in_namespace("rtc", "demo");
        for x in [&q.p95, &q.rps, &q.errors, &q.shed, &q.gpu] {
            assert!(x.contains("namespace=\"demo\"") && !x.contains("namespace=\"rtc\""), "{x}");
        }
    }

    #[test]
    fn bad_urls_say_what_is_allowed() {
        assert!(Source::new("localhost:9090").err().unwrap().to_string().contains("http://"));
        assert!(Source::new("https://prom.example").err().unwrap().to_string().contains("port-forward"));
        assert!(Source::new("http://127.0.0.1:9090").is_ok());
    }
}
