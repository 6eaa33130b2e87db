//! Server-side p95 from a Prometheus (`--prometheus URL`): one instant query per interval,
//! marked stale when it fails, retried with exponential backoff (1 s, 2 s, 4 s … 10 s).
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http::{urlencode, HttpGet};

#[derive(Debug, Clone, Default)]
pub struct PromState {
    pub value: Option<f64>,
    pub last_ok: Option<Instant>,
    pub error: Option<String>,
    pub failures: u32,
}

impl PromState {
    /// Stale: never answered, or the last answer is older than `max_age`.
    pub fn stale(&self, max_age: Duration) -> bool {
        self.last_ok.is_none_or(|t| t.elapsed() > max_age) || self.failures > 0
    }
}

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

/// Starts the polling task; the state is shared with the backend's loop.
pub fn spawn(base: String, query: String, interval: Duration) -> Arc<Mutex<PromState>> {
    let state = Arc::new(Mutex::new(PromState::default()));
    let st = state.clone();
    let url = format!("{}/api/v1/query?query={}", base.trim_end_matches('/'), urlencode(&query));
    tokio::spawn(async move {
        let http = HttpGet::new();
        loop {
            let r = match http.get(&url, Duration::from_millis(1500)).await {
                Ok((200, body)) => parse_instant(&body),
                Ok((code, body)) => Err(format!("HTTP {code}: {}", body.chars().take(80).collect::<String>())),
                Err(e) => Err(e),
            };
            let wait = {
                let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                match r {
                    Ok(v) => {
                        s.value = Some(v);
                        s.last_ok = Some(Instant::now());
                        s.error = None;
                        s.failures = 0;
                        interval
                    }
                    Err(e) => {
                        s.failures = s.failures.saturating_add(1);
                        s.error = Some(e);
                        backoff(s.failures)
                    }
                }
            };
            tokio::time::sleep(wait).await;
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
