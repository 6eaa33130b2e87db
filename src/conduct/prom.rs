//! Server-side p95 from a Prometheus (`--prometheus URL`): one instant query per interval,
//! marked stale when it fails, retried with exponential backoff (1 s, 2 s, 4 s … 10 s).
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{urlencode, HttpGet};

/// The latest answer of a polled source, and how healthy the polling is.
#[derive(Debug, Clone, Default)]
pub struct Polled<T> {
    pub value: T,
    pub last_ok: Option<Instant>,
    pub error: Option<String>,
    pub failures: u32,
}

impl<T> Polled<T> {
    /// Stale: never answered, the last poll failed, or the last answer is older than `max_age`.
    pub fn stale(&self, max_age: Duration) -> bool {
        self.failures > 0 || self.last_ok.is_none_or(|t| t.elapsed() > max_age)
    }

    /// Takes one poll's outcome; returns how long to wait before the next poll.
    fn record(&mut self, outcome: Result<T, String>, interval: Duration) -> Duration {
        match outcome {
            Ok(v) => {
                self.value = v;
                self.last_ok = Some(Instant::now());
                self.error = None;
                self.failures = 0;
                interval
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                self.error = Some(e);
                backoff(self.failures)
            }
        }
    }
}

/// Polls `fetch` every `interval`, backing off while it fails; the state is shared with
/// whoever reads it (the backends' loops).
pub fn spawn_poller<T, F, Fut>(interval: Duration, mut fetch: F) -> (Arc<Mutex<Polled<T>>>, tokio::task::JoinHandle<()>)
where
    T: Default + Send + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, String>> + Send,
{
    let state = Arc::new(Mutex::new(Polled::<T>::default()));
    let st = state.clone();
    let task = tokio::spawn(async move {
        loop {
            let outcome = fetch().await;
            let wait = st.lock().unwrap_or_else(|e| e.into_inner()).record(outcome, interval);
            tokio::time::sleep(wait).await;
        }
    });
    (state, task)
}

/// Server-side p95 as the local backend reads it.
pub type PromState = Polled<Option<f64>>;

/// Parses an instant-query answer: `{"status":"success","data":{"result":[{"value":[t,"0.12"]}]}}`.
/// An empty result is 0 (the queries are written to give 0 when idle); NaN counts as 0.
pub fn parse_instant(body: &str) -> Result<f64, String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("status").and_then(|s| s.as_str()) != Some("success") {
        let err = v.get("error").and_then(|e| e.as_str()).unwrap_or("status is not success");
        return Err(err.chars().take(120).collect());
    }
    let result = v.pointer("/data/result").and_then(|r| r.as_array()).ok_or("no data.result in the answer")?;
    let Some(first) = result.first() else { return Ok(0.0) };
    let s = first.pointer("/value/1").and_then(|x| x.as_str()).ok_or("no value in the first result")?;
    let x: f64 = s.parse().map_err(|_| format!("value {s:?} is not a number"))?;
    Ok(if x.is_finite() { x } else { 0.0 })
}

/// Starts polling `query` at `base`; the task ends with the runtime.
pub fn spawn(base: String, query: String, interval: Duration) -> Arc<Mutex<PromState>> {
    let url = Arc::new(format!("{}/api/v1/query?query={}", base.trim_end_matches('/'), urlencode(&query)));
    let http = HttpGet::new();
    let (state, _task) = spawn_poller(interval, move || {
        let (http, url) = (http.clone(), url.clone());
        async move {
            match http.get(&url, Duration::from_millis(1500)).await {
                Ok((200, body)) => parse_instant(&body).map(Some),
                Ok((code, body)) => Err(format!("HTTP {code}: {}", body.chars().take(80).collect::<String>())),
                Err(e) => Err(e),
            }
        }
    });
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers_and_errors() {
        assert_eq!(
            parse_instant(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.0,"0.123"]}]}}"#
            ),
            Ok(0.123)
        );
        assert_eq!(parse_instant(r#"{"status":"success","data":{"result":[]}}"#), Ok(0.0));
        assert_eq!(parse_instant(r#"{"status":"success","data":{"result":[{"value":[1,"NaN"]}]}}"#), Ok(0.0));
        assert!(parse_instant(r#"{"status":"error","error":"bad query"}"#).unwrap_err().contains("bad query"));
        assert!(parse_instant("<html>").is_err());
    }
}

/// Retry delay after `failures` failed polls in a row: 1, 2, 4, 8, then every 10 seconds.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.saturating_sub(1).min(4)).min(10))
}
