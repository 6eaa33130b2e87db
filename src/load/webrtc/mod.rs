//! The WebRTC load engine (`rtc-demo load --webrtc`): N synthetic publishers in one process,
//! each a sendrecv WHIP session against the service, sending a looping clip encoded once at
//! start and timing every processed frame that comes back.
//!
//! ```text
//! let handle = WebRtcLoad::start(WebRtcConfig { targets, plan: SessionPlan::Constant { sessions: 4 }, ..Default::default() }).await?;
//! let mut seconds = handle.subscribe();          // broadcast::Receiver<Arc<WebRtcSecond>>
//! handle.set_plan(SessionPlan::Ramp { from: 2, to: 12, over: Duration::from_secs(60) });
//! handle.set_targets(&uris);                     // new sessions go to these (round robin)
//! let summary: WebRtcSummary = handle.stop().await;  // every session ended with DELETE
//! ```
//!
//! Sessions, the data sources and the renderer stay apart as in the HTTP engine: each
//! session task sends [`stats::Report`]s through a channel; one aggregator owns the
//! histograms and publishes a [`WebRtcSecond`] a second.
mod clip;
mod report;
mod session;
mod stats;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hyper::Uri;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use clip::Clip;
pub use report::{human_summary, second_line, FRAME_LABEL};
pub use stats::{PodSecond, PodTotals, SessionCounts, WebRtcSecond, WebRtcSummary};

use session::Shared;
use stats::{Aggregator, Report};

/// How many sessions to keep up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SessionPlan {
    Constant {
        sessions: usize,
    },
    /// From `from` to `to` sessions, linearly over `over`, then held at `to`.
    Ramp {
        from: usize,
        to: usize,
        over: Duration,
    },
}

impl SessionPlan {
    /// Most sessions one process is allowed to drive.
    pub const MAX_SESSIONS: usize = 1000;

    fn at(&self, elapsed: Duration) -> usize {
        match *self {
            SessionPlan::Constant { sessions } => sessions,
            SessionPlan::Ramp { from, to, over } => {
                let f = if over.is_zero() { 1.0 } else { (elapsed.as_secs_f64() / over.as_secs_f64()).min(1.0) };
                (from as f64 + (to as f64 - from as f64) * f).round() as usize
            }
        }
    }

    pub fn peak(&self) -> usize {
        match *self {
            SessionPlan::Constant { sessions } => sessions,
            SessionPlan::Ramp { from, to, .. } => from.max(to),
        }
    }
}

/// Everything the engine needs.
#[derive(Debug, Clone)]
pub struct WebRtcConfig {
    /// `http://host:port` (the WHIP path `/whip` is added) or a full WHIP URL; a URL's own
    /// query replaces `query`. Used in round robin, one attempt each.
    pub targets: Vec<Uri>,
    /// The WHIP offer's parameters (`effects=blur,color&sigma=2`).
    pub query: String,
    pub width: usize,
    pub height: usize,
    pub fps: u32,
    /// The clip's bitrate.
    pub kbps: u32,
    pub plan: SessionPlan,
    /// A frame not back within this is lost.
    pub frame_timeout: Duration,
    /// An offer must be answered, and the session connected, within this.
    pub connect_timeout: Duration,
    /// A connected session with no processed frame for this long has failed.
    pub stall: Duration,
    pub token: Option<String>,
}

impl Default for WebRtcConfig {
    fn default() -> Self {
        WebRtcConfig {
            targets: Vec::new(),
            query: String::new(),
            width: 640,
            height: 360,
            fps: 15,
            kbps: 600,
            plan: SessionPlan::Constant { sessions: 1 },
            frame_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(10),
            stall: Duration::from_secs(5),
            token: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebRtcLoadError {
    #[error("the clip could not be encoded: {0} (the WebRTC load needs libvpx: Debian's libvpx7)")]
    Clip(String),
    #[error("{0}")]
    Config(String),
}

/// The targets new sessions go to, in turn.
#[derive(Clone, Default)]
pub(crate) struct Targets {
    list: Arc<RwLock<Vec<Uri>>>,
    next: Arc<AtomicUsize>,
}

impl Targets {
    fn set(&self, targets: &[Uri]) {
        *self.list.write().unwrap_or_else(|p| p.into_inner()) = targets.to_vec();
    }
    fn next(&self) -> Option<Uri> {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        if list.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % list.len();
        Some(list[i].clone())
    }
}

pub struct WebRtcLoad;

impl WebRtcLoad {
    /// Encode the clip (on a blocking thread) and start the sessions the plan asks for.
    pub async fn start(config: WebRtcConfig) -> Result<WebRtcHandle, WebRtcLoadError> {
        let c = config.clone();
        let clip = tokio::task::spawn_blocking(move || WebRtcLoad::clip(&c))
            .await
            .map_err(|e| WebRtcLoadError::Clip(e.to_string()))??;
        Ok(WebRtcLoad::start_with_clip(config, Arc::new(clip)))
    }

    /// The clip `config` asks for, its size and rate checked first (takes from milliseconds
    /// for small sizes to about a second at 720p on one core).
    pub fn clip(config: &WebRtcConfig) -> Result<Clip, WebRtcLoadError> {
        validate(config)?;
        Clip::encode(config.width, config.height, config.fps, config.kbps, 2)
            .map_err(|e| WebRtcLoadError::Clip(e.to_string()))
    }

    /// Start with a clip made before (inside a tokio runtime).
    pub fn start_with_clip(config: WebRtcConfig, clip: Arc<Clip>) -> WebRtcHandle {
        let (reports_tx, reports_rx) = mpsc::unbounded_channel();
        let targets = Targets::default();
        targets.set(&config.targets);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        let shared = Arc::new(Shared {
            clip: clip.clone(),
            query: config.query.clone(),
            token: config.token.clone(),
            frame_timeout: config.frame_timeout,
            connect_timeout: config.connect_timeout,
            stall: config.stall,
            targets: targets.clone(),
            reports: reports_tx,
            http: Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(5)).build(connector),
        });
        let (plan_tx, plan_rx) = watch::channel((config.plan, Instant::now()));
        let (seconds, _) = broadcast::channel(256);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        tokio::spawn(control(shared, plan_rx, stop_rx, done_tx, reports_rx, seconds.clone()));
        WebRtcHandle { plan: plan_tx, seconds, targets, stop: Some(stop_tx), done: done_rx, clip }
    }
}

fn validate(c: &WebRtcConfig) -> Result<(), WebRtcLoadError> {
    let bad = |m: String| Err(WebRtcLoadError::Config(m));
    if !(16..=3840).contains(&c.width) || !(16..=2160).contains(&c.height) {
        return bad(format!("{}x{} is not a video size (expected 16x16 to 3840x2160)", c.width, c.height));
    }
    if !(1..=60).contains(&c.fps) {
        return bad(format!("{} fps is out of range (expected 1 to 60)", c.fps));
    }
    if c.plan.peak() > SessionPlan::MAX_SESSIONS {
        return bad(format!(
            "{} sessions is more than one process drives (at most {})",
            c.plan.peak(),
            SessionPlan::MAX_SESSIONS
        ));
    }
    Ok(())
}

/// The running engine.
pub struct WebRtcHandle {
    plan: watch::Sender<(SessionPlan, Instant)>,
    seconds: broadcast::Sender<Arc<WebRtcSecond>>,
    targets: Targets,
    stop: Option<oneshot::Sender<()>>,
    done: oneshot::Receiver<WebRtcSummary>,
    clip: Arc<Clip>,
}

impl WebRtcHandle {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WebRtcSecond>> {
        self.seconds.subscribe()
    }
    /// A new plan, its time counted from now.
    pub fn set_plan(&self, plan: SessionPlan) {
        let _ = self.plan.send((plan, Instant::now()));
    }
    /// Where new sessions (and re-dials) go; sessions already up stay where they are, as a
    /// WebRTC session is pinned to the pod that answered it.
    pub fn set_targets(&self, targets: &[Uri]) {
        self.targets.set(targets);
    }
    /// The clip the publishers send.
    pub fn clip(&self) -> &Clip {
        &self.clip
    }
    /// End every session (DELETE) and return the summary.
    pub async fn stop(mut self) -> WebRtcSummary {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.done).await.expect("the control task always sends the summary")
    }
}

struct Slot {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Keeps the session count at the plan, aggregates reports, publishes seconds.
async fn control(
    shared: Arc<Shared>,
    mut plan: watch::Receiver<(SessionPlan, Instant)>,
    mut stop: oneshot::Receiver<()>,
    done: oneshot::Sender<WebRtcSummary>,
    mut reports: mpsc::UnboundedReceiver<(Option<Arc<str>>, Report)>,
    seconds: broadcast::Sender<Arc<WebRtcSecond>>,
) {
    let started = Instant::now();
    let mut agg = Aggregator::new();
    let mut slots: Vec<Slot> = Vec::new();
    let mut ending: Vec<JoinHandle<()>> = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut second_start = Instant::now();
    let mut next_second = second_start + Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let (p, since) = *plan.borrow_and_update();
                let want = p.at(since.elapsed());
                while slots.len() < want {
                    let (tx, rx) = watch::channel(false);
                    let task = tokio::spawn(session::run_slot(shared.clone(), rx));
                    slots.push(Slot { stop: tx, task });
                }
                // The newest sessions end first.
                while slots.len() > want {
                    let slot = slots.pop().expect("more slots than wanted");
                    let _ = slot.stop.send(true);
                    ending.push(slot.task);
                }
                ending.retain(|t| !t.is_finished());
                let now = Instant::now();
                if now >= next_second {
                    while let Ok((pod, r)) = reports.try_recv() {
                        agg.add(pod, r);
                    }
                    let s = agg.second(want, shared.clip.fps, now.duration_since(second_start).as_secs_f64());
                    let _ = seconds.send(Arc::new(s));
                    second_start = now;
                    next_second += Duration::from_secs(1);
                }
            }
            Some((pod, r)) = reports.recv() => agg.add(pod, r),
            _ = &mut stop => break,
        }
    }
    for slot in &slots {
        let _ = slot.stop.send(true);
    }
    ending.extend(slots.into_iter().map(|s| s.task));
    // Each session sends its DELETE (at most 2 s each, all at once).
    let all = futures_util::future::join_all(ending);
    let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
    while let Ok((pod, r)) = reports.try_recv() {
        agg.add(pod, r);
    }
    let _ = done.send(agg.summary(started.elapsed()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_moves_linearly_then_holds() {
        let p = SessionPlan::Ramp { from: 2, to: 12, over: Duration::from_secs(10) };
        assert_eq!(p.at(Duration::ZERO), 2);
        assert_eq!(p.at(Duration::from_secs(5)), 7);
        assert_eq!(p.at(Duration::from_secs(60)), 12);
        assert_eq!(p.peak(), 12);
    }

    #[test]
    fn whip_urls_take_the_targets_query_first() {
        let u: Uri = "http://10.0.0.7:8080".parse().unwrap();
        assert_eq!(session::whip_url(&u, "effects=blur"), "http://10.0.0.7:8080/whip?effects=blur");
        let u: Uri = "http://h:1/whip?effects=color".parse().unwrap();
        assert_eq!(session::whip_url(&u, "effects=blur"), "http://h:1/whip?effects=color");
    }
}
