//! The HTTP API (SPEC §1): the axum router, `/process` over a `dyn Device` included, served
//! by [`crate::http_server`].
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::device::{Device, HostFrame, Job, JobInput, JobOutput};
use crate::effects::{ChainPlan, EFFECT_NAMES};
use crate::frame_body::{BodyError, FrameBody};
use crate::memory::{BufferPool, MemoryBudget, Refusal, Reservation};
use crate::metrics::{Metrics, REJECT_MEMORY, REJECT_OVERLOAD};
use crate::params::{self, ParamError, ProcessRequest, MAX_BODY_BYTES};

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    device: Arc<dyn Device>,
    metrics: Metrics,
    /// Admission by bytes: what a request needs must fit in what is left of the budget.
    memory: Arc<MemoryBudget>,
    /// Admission: at most `max_inflight` /process requests past the door at once.
    admission: Arc<Semaphore>,
    max_inflight: usize,
    /// Compute slots: at most `workers` jobs on the device at once; the rest queue, served
    /// in arrival order (tokio's semaphore is fair).
    workers: Arc<Semaphore>,
    worker_count: usize,
    draining: AtomicBool,
    body_timeout: Duration,
    /// WebRTC sessions, where `serve` started them (the HTTP API works without).
    webrtc: OnceLock<crate::webrtc::WebRtc>,
}

/// How long a body that a request will not use may take to arrive and be thrown away, so the
/// client reads the answer rather than a reset.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct AppConfig {
    pub max_inflight: usize,
    pub p95_window: Duration,
    /// A `/process` body must arrive whole within this of its head (else 408).
    pub body_timeout: Duration,
}

impl AppState {
    pub fn new(device: Arc<dyn Device>, memory: Arc<MemoryBudget>, config: &AppConfig) -> Self {
        let workers = device.workers();
        let metrics = Metrics::new(device.info(), workers, config.p95_window);
        AppState {
            inner: Arc::new(Inner {
                device,
                metrics,
                memory,
                admission: Arc::new(Semaphore::new(config.max_inflight)),
                max_inflight: config.max_inflight,
                workers: Arc::new(Semaphore::new(workers)),
                worker_count: workers,
                draining: AtomicBool::new(false),
                body_timeout: config.body_timeout,
                webrtc: OnceLock::new(),
            }),
        }
    }

    /// Readiness goes false at once; requests are still served (endpoints need time to update).
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    pub fn inflight(&self) -> usize {
        self.inner.max_inflight - self.inner.admission.available_permits()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub fn draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Give the API its WebRTC side (once, at start-up).
    pub fn attach_webrtc(&self, webrtc: crate::webrtc::WebRtc) {
        let _ = self.inner.webrtc.set(webrtc);
    }

    pub fn webrtc(&self) -> Option<&crate::webrtc::WebRtc> {
        self.inner.webrtc.get()
    }

    pub(crate) fn device(&self) -> &Arc<dyn Device> {
        &self.inner.device
    }

    pub(crate) fn memory(&self) -> &Arc<MemoryBudget> {
        &self.inner.memory
    }

    /// The device's compute slots, shared by `/process` and WebRTC sessions.
    pub(crate) fn workers(&self) -> Arc<Semaphore> {
        self.inner.workers.clone()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/process", any(process))
        .merge(crate::webrtc::whip::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

/// `app_requests_total{endpoint,code}` for every answer, known paths by name, the rest as
/// `other`.
async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = match req.uri().path() {
        "/" => "/",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/process" => "/process",
        "/webrtc" => "/webrtc",
        "/whip" => "/whip",
        p if p.starts_with("/whip/") => "/whip/{session}",
        _ => "other",
    };
    let response = next.run(req).await;
    state.inner.metrics.count_request(endpoint, response.status().as_u16());
    response
}

/// A 400/404/503 with the JSON body every client error has: `{error, param, detail}`.
pub(crate) fn error_response(
    status: StatusCode,
    error: &str,
    param: Option<&str>,
    detail: impl Into<String>,
) -> Response {
    let body = json!({ "error": error, "param": param, "detail": detail.into() });
    (status, Json(body)).into_response()
}

fn bad_request(e: ParamError) -> Response {
    error_response(StatusCode::BAD_REQUEST, &format!("invalid parameter `{}`", e.param), Some(&e.param), e.detail)
}

async fn not_found(req: Request) -> Response {
    let detail = format!("no endpoint {}; try GET / for the API", req.uri().path());
    error_response(StatusCode::NOT_FOUND, "not found", None, detail)
}

async fn index(State(state): State<AppState>) -> Json<serde_json::Value> {
    let inner = &state.inner;
    Json(json!({
        "service": "rtc-demo",
        "version": env!("CARGO_PKG_VERSION"),
        "device": inner.device.info().kind,
        "device_name": inner.device.info().name,
        "effects": EFFECT_NAMES,
        "defaults": params::defaults_json(),
        "limits": {
            "side": format!("{}..={}", params::MIN_SIDE, params::MAX_SIDE),
            "max_pixels": params::MAX_PIXELS,
            "iters": format!("1..={}", params::MAX_ITERS),
            "max_body_bytes": MAX_BODY_BYTES,
            "max_inflight": inner.max_inflight,
            "workers": inner.worker_count,
        },
        "cpu": inner.device.cpu_shape().map(|s| json!({
            "workers": s.workers,
            "threads_per_worker": s.threads,
            "cores": s.cores,
        })),
        "memory": inner.memory.to_json(),
        "endpoints": ["/process", "/healthz", "/readyz", "/metrics", "/whip", "/webrtc"],
        "webrtc": inner.webrtc.get().map(|w| json!({
            "udp": w.udp.to_string(),
            "candidate": w.candidate.to_string(),
            "tcp_candidates": w.tcp_candidates.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "sessions": w.active_sessions(),
            "session_urls": w.session_ids().iter().map(|id| format!("/whip/{id}")).collect::<Vec<_>>(),
            "codec_problem": w.codec_problem,
        })),
    }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.inner.draining.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else if !state.inner.device.ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "device not ready\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.inner.metrics.render(state.inner.device.memory(), &state.inner.memory);
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// `/process` (GET: a synthetic frame, POST: a raw one, else 405).
///
/// Order of admission, so that a slow client holds nothing a fast one needs: the parameters
/// and the declared size are checked from the head; the request's memory is reserved (the
/// budget bounds what bodies on their way may hold); the body is read within
/// `--body-timeout` (408 after it, the reservation released); only then is it admitted past
/// `--max-inflight` and queued for a worker.
async fn process(State(state): State<AppState>, req: Request) -> Response {
    let arrived = Instant::now();
    let (head, body) = req.into_parts();
    let waits_for_continue =
        head.headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let mut body = FrameBody::new(body, state.inner.body_timeout, waits_for_continue);
    let inner = &state.inner;
    if head.method != Method::GET && head.method != Method::POST {
        let detail = format!("{} /process; use GET (synthetic frame) or POST (raw frame in the body)", head.method);
        let mut r = error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", None, detail);
        r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return refuse(&mut body, r).await;
    }
    let req = match params::parse_query(head.uri.query().unwrap_or("")) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    if let Err(e) = check_declared_body(&req, &head.headers) {
        return bad_request(e);
    }
    // The frame (the body, or the synthetic one) and the device's working buffers, decided
    // from the parameters before a byte of the body is read.
    let need = req.expected_body_len().unwrap_or(0) + inner.device.working_bytes(req.width, req.height, req.format);
    let reservation = match inner.memory.try_reserve(need) {
        Ok(r) => r,
        Err(Refusal::Busy { need, free }) => {
            inner.metrics.count_rejected(REJECT_MEMORY);
            let detail = format!(
                "this request needs {} MiB of working memory and the requests in flight leave {} MiB of the memory budget; retry shortly",
                mib(need),
                mib(free)
            );
            return refuse(&mut body, retry_later("memory budget full", detail)).await;
        }
        Err(Refusal::TooLarge { need, limit }) => {
            let detail = format!(
                "{} needs {} MiB of working memory; this service admits requests of at most {} MiB (its memory budget, --memory-budget or the pod's memory limit); send a smaller frame",
                req.pixels(),
                mib(need),
                mib(limit)
            );
            let r = error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too large for the memory budget",
                Some("pixels"),
                detail,
            );
            return refuse(&mut body, r).await;
        }
    };
    let mut raw = match read_body(&req, &mut body, inner.device.as_ref(), inner.memory.pool()).await {
        Ok(raw) => raw,
        Err(BodyRefusal::Late(detail)) => {
            return error_response(StatusCode::REQUEST_TIMEOUT, "body too slow", Some("body"), detail)
        }
        Err(BodyRefusal::Bad(e)) => {
            if e.detail.starts_with("reading the body failed") {
                inner.metrics.count_malformed();
            }
            return bad_request(e);
        }
    };
    let Ok(permit) = inner.admission.clone().try_acquire_owned() else {
        if let Some(frame) = raw.take() {
            frame.give_back(inner.memory.pool());
        }
        inner.metrics.count_rejected(REJECT_OVERLOAD);
        let detail = format!("{} requests in flight (--max-inflight); retry shortly", inner.max_inflight);
        return retry_later("overloaded", detail);
    };
    // In flight until answered, on every exit path (cancellation included): the admission
    // slot, and the level `app_inflight_requests` and its time integral are read from.
    let _admitted = permit;
    let _inflight = inner.metrics.enter_inflight();

    let Ok(worker) = inner.workers.clone().acquire_owned().await else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "shutting down", None, "the service is stopping");
    };
    let queued = arrived.elapsed();
    let device = inner.device.clone();
    let plan = ChainPlan::new(req.effects.clone(), req.params.clone());
    let job_req = req.clone();
    let compute_start = Instant::now();
    let busy_state = state.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let _worker = worker;
        let _busy = busy_state.inner.metrics.enter_busy();
        let input = match (job_req.format, raw.as_mut()) {
            (Some(format), Some(frame)) => JobInput::Raw { format, frame },
            _ => JobInput::Synthetic { seed: job_req.seed },
        };
        let job = Job { width: job_req.width, height: job_req.height, iters: job_req.iters, plan: &plan, input };
        (device.process(job), raw)
    })
    .await;
    let compute = compute_start.elapsed();
    let (result, raw) = match outcome {
        Ok((Ok(result), raw)) => (result, raw),
        Ok((Err(e), _)) => {
            tracing::error!(error = %e, "device failed");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "device error", None, e.to_string());
        }
        Err(e) => {
            tracing::error!(error = %e, "compute task failed");
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None, "compute task failed");
        }
    };
    let total = arrived.elapsed();
    inner.metrics.observe_processed(total, &result.timings);
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    match (result.output, raw) {
        (JobOutput::FrameInPlace, Some(frame)) => {
            let frame =
                OutgoingFrame { data: Some(frame), pool: inner.memory.pool().clone(), _reservation: reservation };
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            for (name, value) in [("x-queue-ms", queued), ("x-compute-ms", compute), ("x-total-ms", total)] {
                headers
                    .insert(name, HeaderValue::from_str(&ms(value).to_string()).expect("a number is a valid header"));
            }
            // Sent from the frame's own buffer, which goes back to the pool (and the request's
            // memory to the budget) when hyper has written it.
            (headers, axum::body::Body::from(bytes::Bytes::from_owner(frame))).into_response()
        }
        (JobOutput::Checksum(checksum), _) => Json(json!({
            "device": inner.device.info().kind,
            "device_name": inner.device.info().name,
            "pixels": req.pixels(),
            "iters": req.iters,
            "effects": req.effects.iter().map(|e| e.name()).collect::<Vec<_>>(),
            "queue_ms": ms(queued),
            "compute_ms": ms(compute),
            "total_ms": ms(total),
            "checksum": checksum,
        }))
        .into_response(),
        (JobOutput::FrameInPlace, None) => {
            tracing::error!("the device answered a synthetic job with a frame");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None, "no frame to send")
        }
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

/// A 503 with `Retry-After`: the request was fine, the service is busy.
pub(crate) fn retry_later(error: &str, detail: String) -> Response {
    let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, error, None, detail);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Answer a request refused for now (busy), for its size or for its method once the body it
/// sent has been read and thrown away (see [`FrameBody::discard`]), so the connection can be
/// used again.
async fn refuse(body: &mut FrameBody, response: Response) -> Response {
    body.discard(DRAIN_LIMIT).await;
    response
}

/// The answer's bytes: the request's own frame buffer, given back (to the pool, or to the
/// device that lent it), and the request's memory back to the budget, once it has been sent.
struct OutgoingFrame {
    data: Option<HostFrame>,
    pool: Arc<BufferPool>,
    _reservation: Reservation,
}

impl AsRef<[u8]> for OutgoingFrame {
    fn as_ref(&self) -> &[u8] {
        self.data.as_deref().unwrap_or_default()
    }
}

impl Drop for OutgoingFrame {
    fn drop(&mut self) {
        if let Some(frame) = self.data.take() {
            frame.give_back(&self.pool);
        }
    }
}

/// Refuse from the headers alone when the declared body cannot be right.
fn check_declared_body(req: &ProcessRequest, headers: &HeaderMap) -> Result<(), ParamError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match (req.expected_body_len(), declared) {
        (_, Some(n)) if n > MAX_BODY_BYTES as u64 => {
            Err(body_error(format!("{n} bytes is more than the limit of {MAX_BODY_BYTES} bytes")))
        }
        (Some(want), Some(n)) if n != want as u64 => Err(body_error(body_size_detail(req, want, n))),
        (None, Some(n)) if n > 0 => {
            Err(body_error(format!("{n} bytes sent without `format`; a raw frame needs format=rgba or format=i420")))
        }
        _ => Ok(()),
    }
}

fn body_error(detail: String) -> ParamError {
    ParamError { param: "body".into(), detail }
}

fn body_size_detail(req: &ProcessRequest, want: usize, got: u64) -> String {
    let format = if matches!(req.format, Some(crate::device::RawFormat::I420)) { "i420" } else { "rgba" };
    format!("{got} bytes, but a {} {format} frame is exactly {want} bytes", req.pixels())
}

/// Why a body was not taken: too slow (408) or not a frame of the announced size (400).
enum BodyRefusal {
    Late(String),
    Bad(ParamError),
}

/// Read the body into the frame the device works on: one copy, from hyper's frames into
/// memory the device lends (CUDA's page-locked frames) or else a buffer from the pool.
async fn read_body(
    req: &ProcessRequest,
    body: &mut FrameBody,
    device: &dyn Device,
    pool: &BufferPool,
) -> Result<Option<HostFrame>, BodyRefusal> {
    let bad = |detail: String| BodyRefusal::Bad(body_error(detail));
    let Some(want) = req.expected_body_len() else {
        return match body.read_exact_into(&mut []).await {
            Ok(()) => Ok(None),
            Err(BodyError::Long) => {
                Err(bad("a body sent without `format`; a raw frame needs format=rgba or format=i420".into()))
            }
            Err(e @ BodyError::Deadline { .. }) => Err(BodyRefusal::Late(e.to_string())),
            Err(e) => Err(bad(e.to_string())),
        };
    };
    let mut frame = device.lend_frame(want).unwrap_or_else(|| HostFrame::Pooled(pool.take(want)));
    let error = match body.read_exact_into(&mut frame).await {
        Ok(()) => return Ok(Some(frame)),
        Err(BodyError::Long) => bad(format!("body is longer than the {want} bytes a {} frame has; cut off", req.pixels())),
        Err(BodyError::Short { got }) => bad(body_size_detail(req, want, got)),
        Err(BodyError::Deadline { after, limit }) => BodyRefusal::Late(format!(
            "{after} of the {want} bytes of a {} frame arrived within the body deadline of {} s (--body-timeout); send it faster",
            req.pixels(),
            limit.as_secs_f64()
        )),
        Err(e) => bad(e.to_string()),
    };
    frame.give_back(pool);
    Err(error)
}
