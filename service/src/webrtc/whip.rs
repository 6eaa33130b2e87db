//! Signalling as WHIP (RFC 9725) and WHEP do it, and the page.
//!
//! - `POST /whip[?effects=…&sigma=…&iters=…]`, `Content-Type: application/sdp`: a publisher's
//!   offer. `201 Created`, the answer, `Location: /whip/{session}`, `ETag`. A `sendrecv`
//!   video line gets the processed video back on the same connection (our extension of
//!   WHIP); a `sendonly` one (OBS) gets `recvonly`, and its output is played with WHEP.
//! - `POST /whip/{session}` with a `recvonly` offer: a WHEP viewer of the processed video,
//!   `Location: /whip/{session}/viewers/{viewer}`.
//! - `DELETE` of a Location ends it; `GET /whip/{session}` is the session's figures (JSON);
//!   `PATCH` (trickle ICE, ICE restart) is 501: candidates travel in the offer and answer.
//! - `OPTIONS` answers CORS preflights with `Accept-Post: application/sdp`.
// A refusal here is the HTTP answer itself (`Result<_, Response>`, axum's idiom), built once
// per refused request: boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use str0m::change::SdpOffer;

use super::metrics::{REFUSED_BAD_OFFER, REFUSED_DRAINING, REFUSED_FULL, REFUSED_MEMORY};
use super::{OfferError, WebRtc};
use crate::app::{error_response, retry_later, AppState};
use crate::device::RawFormat;
use crate::effects::ChainPlan;
use crate::params;

/// An offer larger than this is refused (413): real offers are a few KiB.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
const SDP: &str = "application/sdp";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webrtc", get(page))
        .route("/whip", any(endpoint))
        .route("/whip/{session}", any(session_resource))
        .route("/whip/{session}/viewers/{viewer}", any(viewer_resource))
        .layer(axum::middleware::map_response(cors))
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

/// WHIP clients run in browsers on other origins: every answer of these routes carries CORS
/// headers (one layer, so no refusal can miss them).
async fn cors(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Accept-Post, Retry-After"),
    );
    r
}

fn preflight(methods: &'static str) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type, If-Match"));
    h.insert(header::ALLOW, HeaderValue::from_static(methods));
    h.insert("accept-post", HeaderValue::from_static(SDP));
    r
}

fn not_allowed(method: &Method, allow: &'static str, what: &str) -> Response {
    let detail = format!("{method} {what}; allowed: {allow}");
    let mut r = error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed", None, detail);
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn webrtc_of(state: &AppState) -> Result<&WebRtc, Response> {
    state.webrtc().ok_or_else(|| {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "WebRTC is off",
            None,
            "this service was started without WebRTC",
        )
    })
}

/// WHIP's `Authorization: Bearer` check, where `--webrtc-token` is set.
fn authorised(webrtc: &WebRtc, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = &webrtc.token else { return Ok(()) };
    let given =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if given == Some(token.as_str()) {
        return Ok(());
    }
    let mut r = error_response(
        StatusCode::UNAUTHORIZED,
        "unauthorised",
        Some("Authorization"),
        "this endpoint needs `Authorization: Bearer TOKEN` with the service's --webrtc-token",
    );
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Err(r)
}

/// The offer: `application/sdp` (415 otherwise), at most [`MAX_SDP_BYTES`] (413), SDP that
/// parses and offers VP8 video (400 naming what is wrong).
async fn read_offer(state: &AppState, req: Request, who: Offerer) -> Result<SdpOffer, Response> {
    let webrtc_metrics = state.metrics().webrtc();
    let refuse = |r: Response| {
        webrtc_metrics.refused(REFUSED_BAD_OFFER);
        r
    };
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case(SDP) {
        let detail = format!("Content-Type is `{content_type}`; an offer is sent as {SDP}");
        return Err(refuse(error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported media type",
            Some("Content-Type"),
            detail,
        )));
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_SDP_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let detail = format!("an offer may be at most {MAX_SDP_BYTES} bytes");
            return Err(refuse(error_response(StatusCode::PAYLOAD_TOO_LARGE, "offer too large", Some("body"), detail)));
        }
    };
    let bad = |detail: String| refuse(error_response(StatusCode::BAD_REQUEST, "bad offer", Some("body"), detail));
    let text = std::str::from_utf8(&body).map_err(|_| bad("the offer is not UTF-8 text".into()))?;
    check_video_codecs(text, who, super::h264::available().is_ok()).map_err(bad)?;
    SdpOffer::from_sdp_string(text).map_err(|e| bad(format!("the SDP does not parse: {e}")))
}

/// Who sends an offer: a publisher (a camera in) or a WHEP viewer (processed video out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offerer {
    Publisher,
    Viewer,
}

/// What the offer's video lines ask for, read before the SDP goes to str0m so that a
/// refusal can say what was offered.
#[derive(Debug, Default)]
struct OfferedVideo {
    lines: usize,
    codecs: Vec<String>,
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive` of the first video line.
    direction: String,
}

impl OfferedVideo {
    fn read(sdp: &str) -> Self {
        let mut v = OfferedVideo::default();
        let mut in_video = false;
        for line in sdp.lines().map(str::trim) {
            if let Some(m) = line.strip_prefix("m=") {
                in_video = m.starts_with("video ");
                if in_video {
                    v.lines += 1;
                    if v.lines == 1 {
                        v.direction = "sendrecv".into();
                    }
                }
                continue;
            }
            if !in_video {
                continue;
            }
            if let Some(map) = line.strip_prefix("a=rtpmap:") {
                let codec = map.split_whitespace().nth(1).and_then(|c| c.split('/').next()).unwrap_or("");
                if !v.codecs.iter().any(|c| c.eq_ignore_ascii_case(codec)) {
                    v.codecs.push(codec.to_string());
                }
            } else if let Some(d) = ["sendrecv", "sendonly", "recvonly", "inactive"]
                .into_iter()
                .find(|d| line.strip_prefix("a=") == Some(d))
                .filter(|_| v.lines == 1)
            {
                v.direction = d.into();
            }
        }
        v
    }

    fn offers(&self, codec: &str) -> bool {
        self.codecs.iter().any(|c| c.eq_ignore_ascii_case(codec))
    }
}

/// An offer must carry video the service can use: VP8 from anyone; H.264 (OBS) from a
/// `sendonly` publisher, whose output is played with WHEP (the processed video goes out in
/// VP8, so a `sendrecv` offer must take VP8 back). Says what was offered otherwise.
fn check_video_codecs(sdp: &str, who: Offerer, h264: bool) -> Result<(), String> {
    let v = OfferedVideo::read(sdp);
    if v.lines == 0 {
        return Err(match who {
            Offerer::Publisher => "the offer has no video line (m=video); publish a camera track".into(),
            Offerer::Viewer => "the offer has no video line (m=video); a viewer receives video (recvonly)".into(),
        });
    }
    if v.offers("VP8") {
        return Ok(());
    }
    let offered = if v.codecs.is_empty() { "no codec".into() } else { v.codecs.join(", ") };
    if who == Offerer::Publisher && v.offers("H264") {
        if !h264 {
            return Err(format!("the offer's video offers {offered}; H.264 needs libopenh264-7 on this pod, which is missing; offer VP8"));
        }
        if v.direction == "sendonly" {
            return Ok(());
        }
        return Err(format!(
            "a {} offer gets the processed video back in VP8, which it does not offer (it offers {offered}); offer VP8, or publish sendonly and watch with WHEP",
            v.direction
        ));
    }
    Err(format!(
        "no usable codec: the offer's video offers {offered}; this service takes VP8 (and H.264 from sendonly publishers)"
    ))
}

/// The effects the session applies, from the URL's query (the parameters `/process` takes
/// for them; the picture's size comes from the video).
fn session_plan(query: Option<&str>) -> Result<(ChainPlan, u32), Response> {
    let query = query.unwrap_or("");
    for (key, _) in form_urlencoded::parse(query.as_bytes()) {
        if matches!(&*key, "pixels" | "format" | "seed") {
            let detail = format!("`{key}` is set by the video itself; a session takes effects, sigma, dx, dy, iters");
            return Err(error_response(StatusCode::BAD_REQUEST, "invalid parameter", Some(&key), detail));
        }
    }
    let req = params::parse_query(query).map_err(|e| {
        let error = format!("invalid parameter `{}`", e.param);
        error_response(StatusCode::BAD_REQUEST, &error, Some(&e.param), e.detail)
    })?;
    Ok((ChainPlan::new(req.effects, req.params), req.iters))
}

fn created(location: String, answer: String) -> Response {
    let mut r = (StatusCode::CREATED, answer).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", location.rsplit('/').next().unwrap_or(""))).expect("hex"),
    );
    h.insert(header::LOCATION, HeaderValue::from_str(&location).expect("an ASCII path"));
    r
}

fn offer_refused(state: &AppState, e: OfferError) -> Response {
    let webrtc_metrics = state.metrics().webrtc();
    match e {
        OfferError::BadSdp(d) | OfferError::NoCodec(d) => {
            webrtc_metrics.refused(REFUSED_BAD_OFFER);
            error_response(StatusCode::BAD_REQUEST, "bad offer", Some("body"), d)
        }
        OfferError::Full(d) => {
            webrtc_metrics.refused(REFUSED_FULL);
            retry_later("too many sessions", d)
        }
        OfferError::NotFound(d) => error_response(StatusCode::NOT_FOUND, "no such session", None, d),
        OfferError::Unavailable(d) => error_response(StatusCode::SERVICE_UNAVAILABLE, "WebRTC unavailable", None, d),
    }
}

/// A session's frames reserve their memory one at a time; a pod whose budget cannot hold even
/// one 720p frame now takes no new session (the client goes to another pod).
fn refuse_if_no_memory(state: &AppState) -> Result<(), Response> {
    let (w, h) = (1280, 720);
    let need = crate::i420::i420_len(w, h) + state.device().working_bytes(w, h, Some(RawFormat::I420));
    if state.memory().try_reserve(need).is_err() {
        state.metrics().webrtc().refused(REFUSED_MEMORY);
        return Err(retry_later(
            "memory budget full",
            format!("the requests and sessions in flight leave less than a 720p frame's {need} bytes of the memory budget; retry shortly, or another pod"),
        ));
    }
    Ok(())
}

/// A draining pod takes no new sessions: the client goes to another pod.
fn refuse_if_draining(state: &AppState) -> Result<(), Response> {
    if state.draining() {
        state.metrics().webrtc().refused(REFUSED_DRAINING);
        return Err(retry_later(
            "draining",
            "this pod is shutting down and takes no new sessions; retry to reach another pod".into(),
        ));
    }
    Ok(())
}

async fn endpoint(State(state): State<AppState>, req: Request) -> Response {
    const ALLOW: &str = "POST, OPTIONS";
    match *req.method() {
        Method::OPTIONS => preflight(ALLOW),
        Method::POST => publish(state, req).await.unwrap_or_else(|r| r),
        ref other => not_allowed(other, ALLOW, "/whip"),
    }
}

async fn publish(state: AppState, req: Request) -> Result<Response, Response> {
    let webrtc = webrtc_of(&state)?.clone();
    authorised(&webrtc, req.headers())?;
    let (plan, iters) = session_plan(req.uri().query())?;
    refuse_if_draining(&state)?;
    refuse_if_no_memory(&state)?;
    let offer = read_offer(&state, req, Offerer::Publisher).await?;
    match webrtc.publish(offer, plan, iters).await {
        Ok((id, answer)) => Ok(created(format!("/whip/{id}"), answer.to_sdp_string())),
        Err(e) => Err(offer_refused(&state, e)),
    }
}

async fn session_resource(State(state): State<AppState>, Path(session): Path<String>, req: Request) -> Response {
    const ALLOW: &str = "GET, POST, DELETE, PATCH, OPTIONS";
    let result = async {
        let webrtc = webrtc_of(&state)?.clone();
        match *req.method() {
            Method::OPTIONS => Ok(preflight(ALLOW)),
            Method::GET => match webrtc.session(&session) {
                Some(s) => Ok(axum::Json(s.stats_json(state.device().info())).into_response()),
                None => Err(no_session(&session)),
            },
            Method::POST => {
                authorised(&webrtc, req.headers())?;
                refuse_if_draining(&state)?;
                let offer = read_offer(&state, req, Offerer::Viewer).await?;
                match webrtc.view(&session, offer).await {
                    Ok((viewer, answer)) => {
                        Ok(created(format!("/whip/{session}/viewers/{viewer}"), answer.to_sdp_string()))
                    }
                    Err(e) => Err(offer_refused(&state, e)),
                }
            }
            Method::DELETE => {
                authorised(&webrtc, req.headers())?;
                if webrtc.end(&session, None).await {
                    Ok(StatusCode::OK.into_response())
                } else {
                    Err(no_session(&session))
                }
            }
            Method::PATCH => Ok(trickle_unsupported()),
            ref other => Err(not_allowed(other, ALLOW, "a session")),
        }
    }
    .await;
    result.unwrap_or_else(|r| r)
}

async fn viewer_resource(
    State(state): State<AppState>,
    Path((session, viewer)): Path<(String, String)>,
    req: Request,
) -> Response {
    const ALLOW: &str = "DELETE, PATCH, OPTIONS";
    // The head only: a body is not `Sync`, so a borrowed request cannot be held across awaits.
    let (head, _) = req.into_parts();
    let result = async {
        let webrtc = webrtc_of(&state)?.clone();
        match head.method {
            Method::OPTIONS => Ok(preflight(ALLOW)),
            Method::DELETE => {
                authorised(&webrtc, &head.headers)?;
                if webrtc.end(&session, Some(&viewer)).await {
                    Ok(StatusCode::OK.into_response())
                } else {
                    Err(no_session(&format!("{session}/viewers/{viewer}")))
                }
            }
            Method::PATCH => Ok(trickle_unsupported()),
            ref other => Err(not_allowed(other, ALLOW, "a viewer")),
        }
    }
    .await;
    result.unwrap_or_else(|r| r)
}

fn no_session(what: &str) -> Response {
    error_response(StatusCode::NOT_FOUND, "no such session", None, format!("no session {what} on this pod"))
}

fn trickle_unsupported() -> Response {
    error_response(
        StatusCode::NOT_IMPLEMENTED,
        "trickle ICE not supported",
        None,
        "send every candidate in the offer (wait for ICE gathering to complete); the answer carries the pod's",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_must_offer_a_codec_the_service_takes() {
        let vp8 = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 102\r\na=rtpmap:96 VP8/90000\r\n";
        assert_eq!(check_video_codecs(vp8, Offerer::Publisher, true), Ok(()));
        assert_eq!(check_video_codecs(vp8, Offerer::Viewer, true), Ok(()));
        let h264 = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102 103\r\na=sendrecv\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\n";
        assert_eq!(
            check_video_codecs(h264, Offerer::Publisher, true).unwrap_err(),
            "a sendrecv offer gets the processed video back in VP8, which it does not offer (it offers H264, rtx); offer VP8, or publish sendonly and watch with WHEP"
        );
        let obs = h264.replace("a=sendrecv", "a=sendonly");
        assert_eq!(check_video_codecs(&obs, Offerer::Publisher, true), Ok(()), "OBS: H.264 sendonly");
        assert!(check_video_codecs(&obs, Offerer::Publisher, false).unwrap_err().contains("libopenh264-7"));
        assert_eq!(
            check_video_codecs(&obs, Offerer::Viewer, true).unwrap_err(),
            "no usable codec: the offer's video offers H264, rtx; this service takes VP8 (and H.264 from sendonly publishers)"
        );
        let audio = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 VP8/90000\r\n";
        assert!(check_video_codecs(audio, Offerer::Publisher, true).unwrap_err().contains("no video line"));
    }
}
