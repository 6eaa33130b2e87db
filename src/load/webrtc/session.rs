//! One synthetic publisher: a sendrecv WHIP session that sends the clip at its frame rate
//! and matches each processed frame that comes back to the frame it was made from by RTP
//! timestamp (the service keeps the publisher's timestamp on the processed frame).
//!
//! A slot keeps one session up for as long as the plan wants it: a refused offer (503) is
//! retried after its Retry-After, a failed session is re-dialled after a second, as a
//! client would; each attempt goes to the next target.
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use str0m::change::SdpAnswer;
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::stats::Report;
use super::{Clip, Targets};

/// What every slot shares.
pub(super) struct Shared {
    pub clip: Arc<Clip>,
    pub query: String,
    pub token: Option<String>,
    pub frame_timeout: Duration,
    pub connect_timeout: Duration,
    pub stall: Duration,
    pub targets: Targets,
    /// Reports, with the pod (the target's host:port) they are about where there is one.
    pub reports: mpsc::UnboundedSender<(Option<Arc<str>>, Report)>,
    pub http: Client<HttpConnector, Full<Bytes>>,
}

impl Shared {
    fn report(&self, pod: Option<&Arc<str>>, r: Report) {
        let _ = self.reports.send((pod.cloned(), r));
    }
}

/// How one attempt ended.
enum Attempt {
    /// The slot was asked to stop (the session, if any, was ended with DELETE).
    Stopped,
    /// Try again after this long.
    Retry(Duration),
}

/// How long a failed attempt waits before the next, as a client re-dialling would.
const REDIAL: Duration = Duration::from_secs(1);

/// Keep one session up until `stop` turns true.
pub(super) async fn run_slot(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match attempt(&shared, &mut stop).await {
            Attempt::Stopped => return,
            Attempt::Retry(d) => d,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn attempt(shared: &Shared, stop: &mut watch::Receiver<bool>) -> Attempt {
    let Some(target) = shared.targets.next() else {
        shared.report(None, Report::Offer);
        shared.report(None, Report::OfferFailed("no target to send the offer to".into()));
        return Attempt::Retry(REDIAL);
    };
    let whip = whip_url(&target, &shared.query);
    let pod: Arc<str> = Arc::from(target.authority().map_or("?", |a| a.as_str()));
    let pod = Some(&pod);
    let socket = match bind_towards(&target).await {
        Ok(s) => s,
        Err(e) => {
            shared.report(pod, Report::Offer);
            shared.report(pod, Report::OfferFailed(format!("no local UDP socket towards {target}: {e}")));
            return Attempt::Retry(REDIAL);
        }
    };
    let Ok(local) = socket.local_addr() else { return Attempt::Retry(REDIAL) };
    let now = Instant::now();
    let mut rtc = Rtc::builder().clear_codecs().enable_vp8(true).build(now);
    match Candidate::host(local, "udp") {
        Ok(c) => {
            rtc.add_local_candidate(c);
        }
        Err(e) => {
            shared.report(pod, Report::Offer);
            shared.report(pod, Report::OfferFailed(format!("host candidate {local}: {e}")));
            return Attempt::Retry(REDIAL);
        }
    }
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let Some((offer, pending)) = api.apply() else { return Attempt::Retry(REDIAL) };

    shared.report(pod, Report::Offer);
    let (location, answer) = match post_offer(shared, &whip, offer.to_sdp_string()).await {
        Ok(a) => a,
        Err(Refusal::Busy(retry_after)) => {
            shared.report(pod, Report::Refused);
            return Attempt::Retry(retry_after);
        }
        Err(Refusal::Failed(why)) => {
            shared.report(pod, Report::OfferFailed(why));
            return Attempt::Retry(REDIAL);
        }
    };
    if let Err(e) = rtc.sdp_api().accept_answer(pending, answer) {
        shared.report(pod, Report::OfferFailed(format!("the answer could not be applied: {e}")));
        return Attempt::Retry(REDIAL);
    }
    shared.report(pod, Report::Answered);
    let session_url = location.map(|l| resolve(&target, &l));

    let mut media = Media::new(shared, pod.cloned(), rtc, mid, socket, local);
    let end = media.run(stop).await;
    let connected = media.connected_at.is_some();
    if let Some(url) = &session_url {
        // Best effort: a pod that went away answers nothing, and the session is over anyway.
        let _ = tokio::time::timeout(Duration::from_secs(2), delete(shared, url)).await;
    }
    match end {
        MediaEnd::Stopped => {
            shared.report(pod, Report::Ended { connected });
            Attempt::Stopped
        }
        MediaEnd::Failed(reason) => {
            shared.report(pod, Report::Failed { reason, connected });
            Attempt::Retry(REDIAL)
        }
    }
}

/// `http://host:port` (or a URL with a path) + the WHIP path and the effect parameters.
pub(super) fn whip_url(target: &Uri, query: &str) -> String {
    let authority = target.authority().map(|a| a.as_str()).unwrap_or("");
    let path = match target.path() {
        "" | "/" => "/whip",
        p => p,
    };
    let query = target.query().filter(|q| !q.is_empty()).unwrap_or(query);
    if query.is_empty() {
        format!("http://{authority}{path}")
    } else {
        format!("http://{authority}{path}?{query}")
    }
}

/// The session URL from a Location header (absolute, or a path on the target).
fn resolve(target: &Uri, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        let authority = target.authority().map(|a| a.as_str()).unwrap_or("");
        format!("http://{authority}{location}")
    }
}

/// A UDP socket on the local address that routes to the target's host (the address the
/// service's ICE-lite side will see and answer).
async fn bind_towards(target: &Uri) -> std::io::Result<UdpSocket> {
    let host = target.host().unwrap_or("127.0.0.1").trim_start_matches('[').trim_end_matches(']');
    let port = target.port_u16().unwrap_or(80);
    let remote = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} has no address")))?;
    let any: IpAddr = if remote.is_ipv4() { [0, 0, 0, 0].into() } else { [0u16; 8].into() };
    let probe = std::net::UdpSocket::bind((any, 0))?;
    probe.connect(remote)?;
    UdpSocket::bind((probe.local_addr()?.ip(), 0)).await
}

enum Refusal {
    /// 503: try again after this long.
    Busy(Duration),
    Failed(String),
}

async fn post_offer(shared: &Shared, url: &str, sdp: String) -> Result<(Option<String>, SdpAnswer), Refusal> {
    let mut req = Request::builder().method(Method::POST).uri(url).header(CONTENT_TYPE, "application/sdp");
    if let Some(t) = &shared.token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req.body(Full::new(Bytes::from(sdp))).map_err(|e| Refusal::Failed(format!("{url}: {e}")))?;
    let exchange = async {
        let resp = shared.http.request(req).await.map_err(|e| Refusal::Failed(crate::errors::chain(&e)))?;
        let status = resp.status();
        let header = |name| resp.headers().get(name).and_then(|v: &hyper::header::HeaderValue| v.to_str().ok());
        let location = header(LOCATION).map(str::to_string);
        let retry_after = header(RETRY_AFTER).and_then(|v| v.trim().parse::<f64>().ok());
        let body = resp.into_body().collect().await.map_err(|e| Refusal::Failed(e.to_string()))?.to_bytes();
        let text = String::from_utf8_lossy(&body);
        match status {
            StatusCode::CREATED => SdpAnswer::from_sdp_string(&text)
                .map(|a| (location, a))
                .map_err(|e| Refusal::Failed(format!("201 with an answer that is not SDP: {e}"))),
            StatusCode::SERVICE_UNAVAILABLE => {
                let secs = retry_after.filter(|s| s.is_finite()).unwrap_or(1.0).clamp(0.1, 30.0);
                Err(Refusal::Busy(Duration::from_secs_f64(secs)))
            }
            s => Err(Refusal::Failed(format!("{} {}", s.as_u16(), first_line(&text)))),
        }
    };
    match tokio::time::timeout(shared.connect_timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Refusal::Failed(format!("no answer within {:?}", shared.connect_timeout))),
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    line.chars().take(160).collect()
}

async fn delete(shared: &Shared, url: &str) {
    let mut req = Request::builder().method(Method::DELETE).uri(url);
    if let Some(t) = &shared.token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Ok(req) = req.body(Full::new(Bytes::new())) {
        if let Ok(resp) = shared.http.request(req).await {
            let _ = resp.into_body().collect().await;
        }
    }
}

enum MediaEnd {
    Stopped,
    Failed(String),
}

/// The media of one answered session: str0m fed with packets and time; the clip written on
/// its frame clock once DTLS is up; processed frames matched as they come back.
struct Media<'a> {
    shared: &'a Shared,
    pod: Option<Arc<str>>,
    rtc: Rtc,
    mid: Mid,
    socket: UdpSocket,
    local: SocketAddr,
    opened: Instant,
    connected_at: Option<Instant>,
    /// The next frame's slot on the frame clock, and its number (for the RTP timestamp).
    next_frame: Instant,
    frame_no: u64,
    /// Where in the clip the next frame comes from (0 after a key-frame request).
    clip_pos: usize,
    /// Frames sent and not yet back: (RTP timestamp, intended send time).
    in_flight: VecDeque<(u32, Instant)>,
    last_back: Option<Instant>,
    interval: Duration,
    pt: Option<Pt>,
}

impl<'a> Media<'a> {
    fn new(
        shared: &'a Shared,
        pod: Option<Arc<str>>,
        rtc: Rtc,
        mid: Mid,
        socket: UdpSocket,
        local: SocketAddr,
    ) -> Self {
        let now = Instant::now();
        Media {
            shared,
            pod,
            rtc,
            mid,
            socket,
            local,
            opened: now,
            connected_at: None,
            next_frame: now,
            frame_no: 0,
            clip_pos: 0,
            in_flight: VecDeque::new(),
            last_back: None,
            interval: Duration::from_secs_f64(1.0 / shared.clip.fps as f64),
            pt: None,
        }
    }

    async fn run(&mut self, stop: &mut watch::Receiver<bool>) -> MediaEnd {
        let mut buf = vec![0u8; 2048];
        loop {
            let wake = match self.drive().await {
                Ok(t) => t,
                Err(reason) => return self.fail(reason),
            };
            let now = Instant::now();
            if let Some(reason) = self.overdue(now) {
                return self.fail(reason);
            }
            let mut next = wake.min(now + Duration::from_millis(200));
            if self.connected_at.is_some() {
                next = next.min(self.next_frame);
            }
            tokio::select! {
                got = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = got {
                        if let Ok(contents) = buf[..n].try_into() {
                            let input = Input::Receive(Instant::now(), Receive { proto: Protocol::Udp, source, destination: self.local, contents });
                            if let Err(e) = self.rtc.handle_input(input) {
                                return self.fail(format!("str0m: {e}"));
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(next.into()) => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        return self.fail(format!("str0m: {e}"));
                    }
                    if self.connected_at.is_some() && Instant::now() >= self.next_frame {
                        if let Err(reason) = self.send_frame() {
                            return self.fail(reason);
                        }
                    }
                }
                _ = stop.changed() => {
                    self.rtc.disconnect();
                    return MediaEnd::Stopped;
                }
            }
        }
    }

    fn report(&self, r: Report) {
        self.shared.report(self.pod.as_ref(), r);
    }

    /// A failed session's frames still on the way never come back.
    fn fail(&mut self, reason: String) -> MediaEnd {
        let lost = self.in_flight.len() as u64;
        if lost > 0 {
            self.report(Report::Lost(lost));
        }
        self.in_flight.clear();
        self.rtc.disconnect();
        MediaEnd::Failed(reason)
    }

    /// Why the session is over by the clock: not connected in time, or no processed video
    /// for the stall limit. Frames past the frame timeout are counted lost.
    fn overdue(&mut self, now: Instant) -> Option<String> {
        let timeout = self.shared.frame_timeout;
        let mut lost = 0;
        while self.in_flight.front().is_some_and(|(_, at)| now.duration_since(*at) > timeout) {
            self.in_flight.pop_front();
            lost += 1;
        }
        if lost > 0 {
            self.report(Report::Lost(lost));
        }
        match self.connected_at {
            None if now.duration_since(self.opened) > self.shared.connect_timeout => {
                Some(format!("ICE/DTLS did not connect within {:?}", self.shared.connect_timeout))
            }
            Some(at) => {
                let quiet_since = self.last_back.unwrap_or(at);
                (now.duration_since(quiet_since) > self.shared.stall)
                    .then(|| format!("no processed video for {:?}", self.shared.stall))
            }
            None => None,
        }
    }

    /// Carry out what str0m asks; returns when it next wants the time.
    async fn drive(&mut self) -> Result<Instant, String> {
        loop {
            match self.rtc.poll_output().map_err(|e| format!("str0m: {e}"))? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    // A pod that went away answers with ICMP unreachable: the send fails,
                    // and the stall limit ends the session.
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Output::Event(e) => self.event(e)?,
            }
        }
    }

    fn event(&mut self, event: Event) -> Result<(), String> {
        match event {
            Event::Connected if self.connected_at.is_none() => {
                let now = Instant::now();
                self.connected_at = Some(now);
                self.next_frame = now;
                self.report(Report::Connected);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Err("ICE disconnected".into());
            }
            Event::MediaData(data) if data.mid == self.mid => {
                let ts = data.time.rebase(Frequency::NINETY_KHZ).numer() as u32;
                self.back(ts, data.data.len());
            }
            Event::KeyframeRequest(_) => self.clip_pos = 0,
            _ => {}
        }
        Ok(())
    }

    /// A processed frame with RTP timestamp `ts`: frames older than it were skipped by
    /// the pod (it processes the newest) and are lost.
    fn back(&mut self, ts: u32, bytes: usize) {
        let now = Instant::now();
        let mut lost = 0;
        while let Some(&(sent_ts, intended)) = self.in_flight.front() {
            let behind = ts.wrapping_sub(sent_ts) as i32;
            if behind < 0 {
                // Older than anything still waiting (already counted lost): ignore it.
                break;
            }
            self.in_flight.pop_front();
            if behind == 0 {
                if let Some(last) = self.last_back {
                    let gap = now.duration_since(last);
                    if gap > (self.interval * 3).max(self.interval + Duration::from_millis(150)) {
                        self.report(Report::Freeze);
                    }
                }
                self.last_back = Some(now);
                self.report(Report::Back { round_trip: now.duration_since(intended), bytes });
                break;
            }
            lost += 1;
        }
        if lost > 0 {
            self.report(Report::Lost(lost));
        }
    }

    /// Write the frame(s) due: one frame for the current slot; slots the task missed
    /// (it ran late) are skipped and counted, as a camera drops what it cannot send.
    fn send_frame(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let missed = (now.duration_since(self.next_frame).as_secs_f64() / self.interval.as_secs_f64()) as u64;
        if missed > 0 {
            self.report(Report::Late(missed));
            self.frame_no += missed;
            self.next_frame += self.interval * missed as u32;
            // The clip position does not skip: the pod decodes every frame, and a gap in
            // the chain of VP8 references would corrupt its picture.
        }
        let intended = self.next_frame;
        let clip = &self.shared.clip;
        let ts = self.frame_no * 90_000 / clip.fps as u64;
        let frame = clip.frames[self.clip_pos].clone();
        let writer = self.rtc.writer(self.mid).ok_or("the video line has no writer")?;
        // The answer's VP8 payload type, found once per session rather than per frame.
        let pt = match self.pt {
            Some(pt) => pt,
            None => {
                let pt = writer
                    .payload_params()
                    .find(|p| p.spec().codec == Codec::Vp8)
                    .map(|p| p.pt())
                    .ok_or("the answer has no VP8")?;
                self.pt = Some(pt);
                pt
            }
        };
        let bytes = frame.len();
        writer.write(pt, now, MediaTime::from_90khz(ts), frame).map_err(|e| format!("writing a frame: {e}"))?;
        self.report(Report::Sent(bytes));
        self.in_flight.push_back((ts as u32, intended));
        self.frame_no += 1;
        self.next_frame += self.interval;
        self.clip_pos = (self.clip_pos + 1) % clip.frames.len();
        Ok(())
    }
}
