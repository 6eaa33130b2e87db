//! Reading a replica's Prometheus text exposition: the few series the console needs.

/// What one scrape of a replica's `/metrics` says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplicaMetrics {
    /// `app_request_latency_p95_seconds` (sliding window; 0 when the window is empty).
    pub p95_s: Option<f64>,
    /// `app_requests_total` summed over `/process` (all codes).
    pub process_requests: f64,
    /// `app_requests_total` for `/process` with code 503.
    pub process_503: f64,
    /// `app_rejected_total` summed over reasons.
    pub rejected: f64,
    pub inflight: Option<f64>,
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    // labels: `a="x",b="y"` (values without escaped quotes are all we need here)
    for part in labels.split(',') {
        let (k, v) = part.split_once('=')?;
        if k.trim() == name {
            return Some(v.trim().trim_matches('"'));
        }
    }
    None
}

/// Parses the exposition text; unknown lines are ignored, bad numbers skipped.
pub fn parse(text: &str) -> ReplicaMetrics {
    let mut m = ReplicaMetrics::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name_labels, rest) = match line.find('}') {
            Some(i) => (&line[..=i], line[i + 1..].trim()),
            None => match line.split_once(' ') {
                Some((a, b)) => (a, b.trim()),
                None => continue,
            },
        };
        let value: f64 = match rest.split_whitespace().next().and_then(|v| v.parse().ok()) {
            Some(v) => v,
            None => continue,
        };
        let (name, labels) = match name_labels.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (name_labels, ""),
        };
        match name {
            "app_request_latency_p95_seconds" => {
                if label(labels, "endpoint").is_none_or(|e| e == "/process") {
                    m.p95_s = Some(m.p95_s.map_or(value, |p: f64| p.max(value)));
                }
            }
            "app_requests_total" => {
                if label(labels, "endpoint") == Some("/process") {
                    m.process_requests += value;
                    if label(labels, "code") == Some("503") {
                        m.process_503 += value;
                    }
                }
            }
            "app_rejected_total" => m.rejected += value,
            "app_inflight_requests" => m.inflight = Some(value),
            _ => {}
        }
    }
    m
}

/// The replicas' p95 as one number: weighted by each replica's requests in the last interval
/// (what a PromQL quantile over the summed histogram approximates); None if none has data.
pub fn combine_p95(parts: &[(Option<f64>, f64)]) -> Option<f64> {
    let with: Vec<(f64, f64)> = parts.iter().filter_map(|(p, w)| p.map(|p| (p, *w))).collect();
    if with.is_empty() {
        return None;
    }
    let total: f64 = with.iter().map(|x| x.1.max(0.0)).sum();
    if total > 0.0 {
        Some(with.iter().map(|(p, w)| p * w.max(0.0)).sum::<f64>() / total)
    } else {
        Some(with.iter().map(|x| x.0).fold(0.0, f64::max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_service_metrics() {
        let t = r#"# HELP app_requests_total Requests.
# TYPE app_requests_total counter
app_requests_total{endpoint="/process",code="200"} 120
app_requests_total{endpoint="/process",code="503"} 7
app_requests_total{endpoint="/healthz",code="200"} 50
app_rejected_total{reason="overload"} 7
app_request_latency_p95_seconds 0.142
app_inflight_requests 3
app_request_latency_seconds_bucket{le="0.1"} 90
garbage line
app_requests_total{endpoint="/process",code="500"} notanumber
"#;
        let m = parse(t);
        assert_eq!(m.process_requests, 127.0);
        assert_eq!(m.process_503, 7.0);
        assert_eq!(m.rejected, 7.0);
        assert_eq!(m.p95_s, Some(0.142));
        assert_eq!(m.inflight, Some(3.0));
        assert_eq!(parse(""), ReplicaMetrics::default());
    }

    #[test]
    fn combines_weighted() {
        assert_eq!(combine_p95(&[]), None);
        assert_eq!(combine_p95(&[(None, 3.0)]), None);
        let p = combine_p95(&[(Some(0.1), 1.0), (Some(0.2), 3.0)]).unwrap();
        assert!((p - 0.175).abs() < 1e-12);
        assert_eq!(combine_p95(&[(Some(0.0), 0.0), (Some(0.05), 0.0)]), Some(0.05));
    }
}
