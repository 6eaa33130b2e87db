//! One pod's capacity, measured before the stages on the pod's own device: how long the
//! scenario's request takes there, and the rate one pod holds within the SLO. A T4 and an
//! H100 differ by 10×, and CPU or emulated replicas by more; a scenario that writes its
//! rates in pods (`rate = "2.5 pods"`) and sizes its request to a service time
//! (`service_time = "20ms"`) tells the same story on each, because both are resolved here.
//!
//! The probe talks to ONE endpoint (a rehearsal replica started for it, or a port-forward to
//! one pod), never to a Service that would spread it over several pods.
//!
//! 1. `GET /`: the device (kind and name) and its workers (streams, CPU workers).
//! 2. With `service_time`: the request at 1 and at [`FIT_ITERS`] iterations, one at a time;
//!    the line through both (t = a + b·iters) picks the iterations nearest the target.
//! 3. Service time: the request one at a time; the median is what one frame costs.
//! 4. Capacity: a closed loop with twice the workers in flight (every worker busy, one
//!    request queued behind each, so the client's turnaround does not idle the device; never
//!    more than the pod's `--max-inflight`) for
//!    [`SATURATION_FOR`]: completed requests per second is what one pod holds; the p95 of that
//!    loop (a service time plus one queued) must be within the SLO.
//!
//! Every answer must be a 2xx: a probe that is shed, errors or times out says so and stops.
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::http::{HttpClient, HttpError};
use crate::scenario::TargetRequest;
use rtc_service::params::MAX_ITERS;

/// The second point of the service-time fit.
pub const FIT_ITERS: u32 = 10;
/// How long the saturating closed loop runs.
pub const SATURATION_FOR: Duration = Duration::from_secs(3);
/// Sequential requests whose median is the service time.
const SERIAL_SAMPLES: usize = 9;
/// A service time this much faster per iteration than the whole is "does not depend on iters".
const FLAT_FIT: f64 = 0.02;

#[derive(Debug, thiserror::Error)]
pub enum CapacityError {
    #[error(
        "capacity probe: {url} did not answer: {source} (expected the service's `GET /` with its device and workers)"
    )]
    Unreachable { url: String, source: HttpError },
    #[error("capacity probe: {url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
    #[error("capacity probe: {url} answered `GET /` without {field} (expected rtc-demo serve's index)")]
    NotTheService { url: String, field: &'static str },
    #[error("capacity probe: one {request} takes {service_ms:.1} ms on {device}, over the SLO's {slo_ms:.0} ms: no rate is held within it (expected fewer `iters`, a smaller `pixels`, or `service_time` below the SLO)")]
    OverSlo { request: String, service_ms: f64, device: String, slo_ms: f64 },
    #[error("capacity probe: with every worker busy ({concurrency} in flight) p95 is {p95_ms:.1} ms on {device}, over the SLO's {slo_ms:.0} ms (expected a request that takes at most about half the SLO: lower `iters` or `service_time`)")]
    SaturatedOverSlo { concurrency: u32, p95_ms: f64, device: String, slo_ms: f64 },
}

/// What the probe measured, as the header, preflight, the report and the summary show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// `cuda`, `cpu` or `emulated` (the service's `device`).
    pub device: String,
    /// The service's `device_name` ("NVIDIA L4", "emulated GPU (20.0 ms per frame …)").
    pub device_name: String,
    /// Where it was measured ("replica serve-capacity on loopback", "pod gpu-media-x via port-forward").
    pub measured_on: String,
    pub workers: u32,
    pub pixels: (u32, u32),
    pub iters: u32,
    /// `service_time` the iterations were sized to, in ms.
    pub sized_to_ms: Option<f64>,
    /// Why `iters` is not nearer `sized_to_ms` (1 is already slower, the maximum is still faster,
    /// the device's time does not depend on iterations).
    pub sizing_note: Option<String>,
    /// Median of one-at-a-time requests, as the client sees them.
    pub service_ms: f64,
    /// Median of the service's own `compute_ms` for those requests.
    pub compute_ms: f64,
    /// Completed requests per second with every worker busy: one pod of capacity.
    pub pod_rps: f64,
    /// p95 of that closed loop, and how many it kept in flight.
    pub p95_busy_ms: f64,
    pub concurrency: u32,
    pub slo_ms: f64,
}

impl Capacity {
    /// `1280×720 × 37 iters: 19.6 ms a frame on NVIDIA L4 (cuda); one pod holds 41 req/s within 100 ms`.
    pub fn line(&self) -> String {
        format!(
            "{}×{} × {} iters: {:.1} ms a frame on {}; one pod holds {:.0} req/s within {:.0} ms",
            self.pixels.0,
            self.pixels.1,
            self.iters,
            self.service_ms,
            self.device_label(),
            self.pod_rps,
            self.slo_ms
        )
    }

    /// The header's short form: `one pod 41 req/s · 19.6 ms a frame (GPU)`.
    pub fn short(&self) -> String {
        let kind = match self.device.as_str() {
            "cuda" => "GPU",
            "cpu" => "CPU",
            other => other,
        };
        format!("one pod {:.0} req/s · {:.1} ms a frame ({kind})", self.pod_rps, self.service_ms)
    }

    /// How the rest is measured, for the report and preflight.
    pub fn detail(&self) -> String {
        let mut s = format!(
            "measured on {}: {} worker(s); device time {:.1} ms a frame; {} in flight: {:.1} req/s, p95 {:.1} ms",
            self.measured_on, self.workers, self.compute_ms, self.concurrency, self.pod_rps, self.p95_busy_ms
        );
        if let Some(t) = self.sized_to_ms {
            s.push_str(&format!("; iters sized to a {t:.0} ms service time"));
        }
        if let Some(n) = &self.sizing_note {
            s.push_str(&format!(" ({n})"));
        }
        s
    }

    /// The device as a figure must name it: emulated, CPU or GPU, never ambiguous.
    pub fn device_label(&self) -> String {
        let name = self.device_name.trim();
        let kind = match self.device.as_str() {
            "cuda" => "GPU",
            "cpu" => "CPU",
            "emulated" => "emulated",
            other => other,
        };
        if name.is_empty() {
            kind.to_string()
        } else if name.to_lowercase().starts_with(&kind.to_lowercase()) {
            // `cpu (1 x 2 threads)` → `CPU (1 x 2 threads)`
            format!("{kind}{}", name.get(kind.len()..).unwrap_or_default())
        } else if name.contains(kind) {
            name.to_string()
        } else {
            format!("{name} ({kind})")
        }
    }
}

/// The probe against one endpoint.
pub struct CapacityProbe {
    /// `http://host:port` of one pod or replica.
    pub base: String,
    pub request: TargetRequest,
    pub slo: Duration,
    pub measured_on: String,
}

/// One answered request: client-side latency and the service's own compute time.
struct Sample {
    latency: Duration,
    compute_ms: Option<f64>,
}

impl CapacityProbe {
    /// Measures; `progress` gets one line per step (they take seconds).
    pub async fn measure(&self, progress: &mut (dyn FnMut(String) + Send)) -> Result<Capacity, CapacityError> {
        let base = self.base.trim_end_matches('/').to_string();
        let (device, device_name, workers, max_inflight) = self.device(&base).await?;
        let workers = workers.max(1);
        // Never past what the pod admits (`--max-inflight`), which would be shed, not served.
        let concurrency = (2 * workers).min(max_inflight.max(1));
        let client = HttpClient::with_idle_connections(concurrency as usize);
        let slo_ms = self.slo.as_secs_f64() * 1e3;
        let mut request = self.request.clone();
        let (mut sized_to_ms, mut sizing_note) = (None, None);
        if let Some(target) = self.request.service_time {
            progress(format!(
                "capacity: sizing iters to a {:.0} ms service time on {device_name} …",
                target.as_secs_f64() * 1e3
            ));
            let at = |iters: u32| TargetRequest { iters, ..self.request.clone() };
            let t1 = median_latency(&self.serial(&client, &base, &at(1), 5).await?);
            let tn = median_latency(&self.serial(&client, &base, &at(FIT_ITERS), 5).await?);
            let (iters, note) = fit_iters(t1, tn, target);
            request.iters = iters;
            sized_to_ms = Some(target.as_secs_f64() * 1e3);
            sizing_note = note;
        }
        progress(format!(
            "capacity: timing {}×{} × {} iters one at a time …",
            request.pixels.0, request.pixels.1, request.iters
        ));
        let _warm = self.serial(&client, &base, &request, 2).await?;
        let serial = self.serial(&client, &base, &request, SERIAL_SAMPLES).await?;
        let service_ms = median_latency(&serial).as_secs_f64() * 1e3;
        let mut computes: Vec<f64> = serial.iter().filter_map(|s| s.compute_ms).collect();
        computes.sort_by(f64::total_cmp);
        let compute_ms = computes.get(computes.len() / 2).copied().unwrap_or(f64::NAN);
        let label = Capacity {
            device: device.clone(),
            device_name: device_name.clone(),
            measured_on: self.measured_on.clone(),
            workers,
            pixels: request.pixels,
            iters: request.iters,
            sized_to_ms,
            sizing_note,
            service_ms,
            compute_ms,
            pod_rps: 0.0,
            p95_busy_ms: 0.0,
            concurrency,
            slo_ms,
        };
        if service_ms > slo_ms {
            return Err(CapacityError::OverSlo {
                request: format!("{}×{} × {} iters", request.pixels.0, request.pixels.1, request.iters),
                service_ms,
                device: label.device_label(),
                slo_ms,
            });
        }
        progress(format!(
            "capacity: {service_ms:.1} ms a frame; {concurrency} in flight for {} s …",
            SATURATION_FOR.as_secs()
        ));
        let (rps, p95) = self.saturate(&client, &base, &request, concurrency).await?;
        let cap = Capacity { pod_rps: rps, p95_busy_ms: p95.as_secs_f64() * 1e3, ..label };
        if cap.p95_busy_ms > slo_ms {
            return Err(CapacityError::SaturatedOverSlo {
                concurrency: cap.concurrency,
                p95_ms: cap.p95_busy_ms,
                device: cap.device_label(),
                slo_ms,
            });
        }
        Ok(cap)
    }

    /// The device's kind and name, its workers and the requests it admits at once.
    async fn device(&self, base: &str) -> Result<(String, String, u32, u32), CapacityError> {
        let url = format!("{base}/");
        let (status, body) = HttpClient::new()
            .get(&url, Duration::from_secs(5))
            .await
            .map_err(|source| CapacityError::Unreachable { url: url.clone(), source })?;
        if !(200..300).contains(&status) {
            return Err(CapacityError::Status { url, status, body: snippet(&body) });
        }
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let text = |field: &'static str| {
            v[field].as_str().map(str::to_string).ok_or(CapacityError::NotTheService { url: url.clone(), field })
        };
        let limit = |field: &'static str, key: &str| {
            v["limits"][key].as_u64().ok_or(CapacityError::NotTheService { url: url.clone(), field })
        };
        let workers = limit("limits.workers", "workers")?;
        let max_inflight = limit("limits.max_inflight", "max_inflight")?;
        Ok((text("device")?, text("device_name")?, workers.min(4096) as u32, max_inflight.min(100_000) as u32))
    }

    async fn one(&self, client: &HttpClient, url: &str) -> Result<Sample, CapacityError> {
        let start = Instant::now();
        let (status, body) = client
            .send(self.request.method.as_hyper(), url, self.request.timeout)
            .await
            .map_err(|source| CapacityError::Unreachable { url: url.to_string(), source })?;
        let latency = start.elapsed();
        if !(200..300).contains(&status) {
            return Err(CapacityError::Status { url: url.to_string(), status, body: snippet(&body) });
        }
        let compute_ms = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["compute_ms"].as_f64());
        Ok(Sample { latency, compute_ms })
    }

    async fn serial(
        &self,
        client: &HttpClient,
        base: &str,
        request: &TargetRequest,
        n: usize,
    ) -> Result<Vec<Sample>, CapacityError> {
        let url = request.url_for(base);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.one(client, &url).await?);
        }
        Ok(out)
    }

    /// `concurrency` loops, each sending the next request when its last one is answered.
    async fn saturate(
        &self,
        client: &HttpClient,
        base: &str,
        request: &TargetRequest,
        concurrency: u32,
    ) -> Result<(f64, Duration), CapacityError> {
        let url = request.url_for(base);
        let start = Instant::now();
        let end = start + SATURATION_FOR;
        let loops = (0..concurrency).map(|_| async {
            let mut latencies = Vec::new();
            while Instant::now() < end {
                latencies.push(self.one(client, &url).await?.latency);
            }
            Ok::<_, CapacityError>(latencies)
        });
        let mut all = Vec::new();
        for r in futures_util::future::join_all(loops).await {
            all.extend(r?);
        }
        // Requests started before `end` are counted over the time until the last one ended.
        let elapsed = start.elapsed().as_secs_f64();
        all.sort();
        let p95 = all.get(((all.len() as f64 * 0.95).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default();
        Ok((all.len() as f64 / elapsed, p95))
    }
}

fn median_latency(samples: &[Sample]) -> Duration {
    let mut v: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// The iterations whose service time is nearest `target`, from the times at 1 and at
/// [`FIT_ITERS`] iterations (t = a + b·iters), and why it is not nearer when it cannot be.
pub fn fit_iters(t1: Duration, tn: Duration, target: Duration) -> (u32, Option<String>) {
    let (t1s, tns, target_s) = (t1.as_secs_f64(), tn.as_secs_f64(), target.as_secs_f64());
    let b = (tns - t1s) / (FIT_ITERS - 1) as f64;
    if b <= FLAT_FIT * t1s {
        return (
            1,
            Some(format!(
                "the service time does not grow with iters here: {:.1} ms at 1, {:.1} ms at {FIT_ITERS}",
                t1s * 1e3,
                tns * 1e3
            )),
        );
    }
    let a = t1s - b;
    let ideal = (target_s - a) / b;
    if ideal < 1.0 {
        return (1, Some(format!("1 iteration already takes {:.1} ms", t1s * 1e3)));
    }
    if ideal > MAX_ITERS as f64 {
        let at_max = (a + b * MAX_ITERS as f64) * 1e3;
        return (
            MAX_ITERS,
            Some(format!("{MAX_ITERS} iterations, the most /process takes, take about {at_max:.1} ms")),
        );
    }
    (ideal.round().max(1.0) as u32, None)
}

fn snippet(body: &str) -> String {
    let t = body.trim();
    match t.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: f64) -> Duration {
        Duration::from_secs_f64(v / 1e3)
    }

    #[test]
    fn iters_come_from_the_line_through_both_timings() {
        // 2 ms fixed + 1.5 ms an iteration: 20 ms is 12 iterations.
        assert_eq!(fit_iters(ms(3.5), ms(17.0), ms(20.0)), (12, None));
        let (i, note) = fit_iters(ms(30.0), ms(57.0), ms(20.0));
        assert_eq!(i, 1);
        assert!(note.unwrap().contains("1 iteration already takes 30.0 ms"));
        let (i, note) = fit_iters(ms(0.1), ms(0.2), ms(20.0));
        assert_eq!(i, MAX_ITERS);
        assert!(note.unwrap().contains("the most /process takes"));
        let (i, note) = fit_iters(ms(20.0), ms(20.1), ms(20.0));
        assert_eq!(i, 1);
        assert!(note.unwrap().contains("does not grow with iters"));
    }

    #[test]
    fn the_line_says_what_was_measured_on_which_device() {
        let c = Capacity {
            device: "cuda".into(),
            device_name: "NVIDIA L4".into(),
            measured_on: "pod gpu-media-0 via port-forward".into(),
            workers: 2,
            pixels: (1280, 720),
            iters: 37,
            sized_to_ms: Some(20.0),
            sizing_note: None,
            service_ms: 19.64,
            compute_ms: 19.1,
            pod_rps: 41.2,
            p95_busy_ms: 40.0,
            concurrency: 4,
            slo_ms: 100.0,
        };
        assert_eq!(
            c.line(),
            "1280×720 × 37 iters: 19.6 ms a frame on NVIDIA L4 (GPU); one pod holds 41 req/s within 100 ms"
        );
        let e = Capacity { device: "emulated".into(), device_name: "emulated GPU (20.0 ms per frame)".into(), ..c };
        assert_eq!(e.device_label(), "emulated GPU (20.0 ms per frame)");
    }
}
