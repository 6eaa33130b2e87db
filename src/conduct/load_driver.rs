//! One interface for the load a backend drives, wherever it is generated: [`EngineDriver`]
//! runs the load engine on this machine (the local backend, and the kube backend's
//! `this-machine` load), [`WebRtcDriver`] the WebRTC sessions engine the same way (a
//! scenario whose `[request] kind = "webrtc"`); the kube backend's in-cluster Job implements the same trait
//! (`kube::load_job::JobDriver`). The backend's one owner task calls it and feeds the
//! seconds it yields into its [`Timeline`](super::timeline::Timeline).
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::model::{LoadTotals, RatePlan, SessionPlan, StagePlan, Totals};
use super::timeline::ClientSecond;
use crate::load::webrtc::{Clip, WebRtcConfig, WebRtcHandle, WebRtcLoad, WebRtcSecond};
use crate::load::{LoadConfig, LoadEngine, LoadError, LoadHandle, LoadSecond};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the load did not do what it was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriverError {
    #[error("load engine: {0}")]
    Start(LoadError),
    #[error("WebRTC load: {0}")]
    WebRtcStart(String),
    #[error("load plan: {0}")]
    Plan(LoadError),
    #[error("load targets: {0}")]
    Targets(LoadError),
    #[error(
        "rate ×{factor:.2} is not available with in-cluster load: the Job runs the stage's plan (r restarts the stage)"
    )]
    ScaleUnsupported { factor: f64 },
    /// The configuration gives the load nowhere to go (the message says what to set).
    #[error("{0}")]
    Unconfigured(String),
    /// A stage asks for another kind of load than this driver sends.
    #[error("{0}")]
    WrongKind(&'static str),
}

pub type DriverResult = Result<(), DriverError>;

/// How long stopping may take: quitting stops the load within a second whatever happens.
pub const STOP_DEADLINE: Duration = Duration::from_millis(800);

pub trait LoadDriver: Send {
    /// A stage starts: `plan` from its beginning, at the scenario's rate (scale 1, unpaused).
    fn start_stage(&mut self, index: usize, plan: StagePlan) -> DriverResult;
    /// Where the load goes (the ready replicas), for the drivers that choose; kept across restarts.
    fn set_targets(&mut self, _targets: Vec<hyper::Uri>) -> DriverResult {
        Ok(())
    }
    /// Starts the load idle, for the drivers that need it before the first stage.
    fn start(&mut self) -> DriverResult {
        Ok(())
    }
    fn pause(&mut self) -> DriverResult;
    fn resume(&mut self) -> DriverResult;
    /// Multiplies the offered rate (`+`/`-`).
    fn scale(&mut self, factor: f64) -> DriverResult;
    fn is_paused(&self) -> bool;
    /// The next measured second; never resolves while no load runs.
    fn next_second(&mut self) -> BoxFuture<'_, ClientSecond>;
    /// Stops the load (within `deadline`) and hands back the run's totals, if measured here.
    fn stop(&mut self, deadline: Duration) -> BoxFuture<'_, Totals>;
}

/// The load engine on this machine, started idle on first use.
pub struct EngineDriver {
    config: LoadConfig,
    handle: Option<LoadHandle>,
    seconds: Option<broadcast::Receiver<Arc<LoadSecond>>>,
}

impl EngineDriver {
    /// `config`'s plan is ignored: the engine starts idle and each stage sets its plan.
    pub fn new(config: LoadConfig) -> Self {
        EngineDriver { config, handle: None, seconds: None }
    }

    fn engine(&mut self) -> Result<&LoadHandle, DriverError> {
        if self.handle.is_none() {
            let cfg = LoadConfig { plan: RatePlan::Constant { rps: 0.0 }, ..self.config.clone() };
            let h = LoadEngine::start(cfg).map_err(DriverError::Start)?;
            self.seconds = Some(h.subscribe());
            self.handle = Some(h);
        }
        Ok(self.handle.as_ref().expect("started above"))
    }
}

impl LoadDriver for EngineDriver {
    fn start_stage(&mut self, _index: usize, plan: StagePlan) -> DriverResult {
        let plan = match plan {
            StagePlan::Idle => RatePlan::Constant { rps: 0.0 },
            StagePlan::Requests(p) => p,
            StagePlan::Sessions(_) => {
                return Err(DriverError::WrongKind(
                    "this stage ramps WebRTC sessions, but the scenario's [request] sends HTTP requests",
                ))
            }
        };
        let h = self.engine()?;
        h.set_scale(1.0);
        h.resume();
        h.set_plan(plan).map_err(DriverError::Plan)
    }

    /// Starts the engine (idle) so that targets and the first stage find it running.
    fn start(&mut self) -> DriverResult {
        self.engine().map(|_| ())
    }

    /// Where the requests go (the ready replicas, round robin).
    fn set_targets(&mut self, targets: Vec<hyper::Uri>) -> DriverResult {
        if let Some(h) = &self.handle {
            h.set_targets(&targets).map_err(DriverError::Targets)?;
        }
        self.config.targets = targets;
        Ok(())
    }

    fn pause(&mut self) -> DriverResult {
        if let Some(h) = &self.handle {
            h.pause();
        }
        Ok(())
    }

    fn resume(&mut self) -> DriverResult {
        if let Some(h) = &self.handle {
            h.resume();
        }
        Ok(())
    }

    fn scale(&mut self, factor: f64) -> DriverResult {
        if let Some(h) = &self.handle {
            h.scale(factor);
        }
        Ok(())
    }

    fn is_paused(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| h.is_paused())
    }

    fn next_second(&mut self) -> BoxFuture<'_, ClientSecond> {
        Box::pin(next_client_second(&mut self.seconds))
    }

    fn stop(&mut self, deadline: Duration) -> BoxFuture<'_, Totals> {
        Box::pin(async move {
            self.seconds = None;
            let h = self.handle.take()?;
            // A slow stop is abandoned (dropping the handle stops the engine too).
            tokio::time::timeout(deadline, h.stop()).await.ok().map(|s| LoadTotals::Requests(Box::new(s)))
        })
    }
}

/// The WebRTC sessions engine on this machine: each stage's sessions plan, new sessions (and
/// re-dials) to the ready replicas in turn, sessions already up staying where they are.
/// Pausing ends every session (no load, as a paused request rate offers none); `+`/`-`
/// scale the session count.
pub struct WebRtcDriver {
    config: WebRtcConfig,
    clip: Arc<Clip>,
    handle: Option<WebRtcHandle>,
    seconds: Option<broadcast::Receiver<Arc<WebRtcSecond>>>,
    plan: SessionPlan,
    scale: f64,
    paused: bool,
}

impl WebRtcDriver {
    /// Encodes the publishers' clip now (the engine starts with the first stage, with no
    /// session until a stage asks for some); `config`'s plan is ignored.
    pub fn new(config: WebRtcConfig) -> Result<Self, DriverError> {
        let clip = WebRtcLoad::clip(&config).map_err(|e| DriverError::WebRtcStart(e.to_string()))?;
        Ok(WebRtcDriver {
            config,
            clip: Arc::new(clip),
            handle: None,
            seconds: None,
            plan: SessionPlan::Constant { sessions: 0 },
            scale: 1.0,
            paused: false,
        })
    }

    /// The plan as it runs now: nothing while paused, the sessions scaled by `+`/`-`.
    fn apply(&mut self) {
        if self.handle.is_none() {
            let cfg = WebRtcConfig { plan: SessionPlan::Constant { sessions: 0 }, ..self.config.clone() };
            let h = WebRtcLoad::start_with_clip(cfg, self.clip.clone());
            self.seconds = Some(h.subscribe());
            self.handle = Some(h);
        }
        let scaled = |n: usize| ((n as f64) * self.scale).round() as usize;
        let plan = match self.plan {
            _ if self.paused => SessionPlan::Constant { sessions: 0 },
            SessionPlan::Constant { sessions } => SessionPlan::Constant { sessions: scaled(sessions) },
            SessionPlan::Ramp { from, to, over } => SessionPlan::Ramp { from: scaled(from), to: scaled(to), over },
        };
        if let Some(h) = &self.handle {
            h.set_plan(plan);
        }
    }
}

impl LoadDriver for WebRtcDriver {
    fn start_stage(&mut self, _index: usize, plan: StagePlan) -> DriverResult {
        self.plan = match plan {
            StagePlan::Idle => SessionPlan::Constant { sessions: 0 },
            StagePlan::Sessions(p) => p,
            StagePlan::Requests(_) => {
                return Err(DriverError::WrongKind(
                    "this stage offers HTTP requests, but the scenario's [request] is kind = \"webrtc\"",
                ))
            }
        };
        (self.scale, self.paused) = (1.0, false);
        self.apply();
        Ok(())
    }

    fn set_targets(&mut self, targets: Vec<hyper::Uri>) -> DriverResult {
        if let Some(h) = &self.handle {
            h.set_targets(&targets);
        }
        self.config.targets = targets;
        Ok(())
    }

    fn pause(&mut self) -> DriverResult {
        self.paused = true;
        self.apply();
        Ok(())
    }

    fn resume(&mut self) -> DriverResult {
        self.paused = false;
        self.apply();
        Ok(())
    }

    fn scale(&mut self, factor: f64) -> DriverResult {
        self.scale *= factor;
        self.apply();
        Ok(())
    }

    fn is_paused(&self) -> bool {
        self.paused
    }

    fn next_second(&mut self) -> BoxFuture<'_, ClientSecond> {
        Box::pin(next_client_second(&mut self.seconds))
    }

    fn stop(&mut self, deadline: Duration) -> BoxFuture<'_, Totals> {
        Box::pin(async move {
            self.seconds = None;
            let h = self.handle.take()?;
            tokio::time::timeout(deadline, h.stop()).await.ok().map(|s| LoadTotals::Sessions(Box::new(s)))
        })
    }
}

/// The next second an engine publishes, as the console's figures; never resolves once the
/// engine has stopped (or was never started).
async fn next_client_second<T: Send + Sync>(seconds: &mut Option<broadcast::Receiver<Arc<T>>>) -> ClientSecond
where
    for<'a> ClientSecond: From<&'a T>,
{
    loop {
        let Some(rx) = seconds.as_mut() else { return std::future::pending().await };
        match rx.recv().await {
            Ok(s) => return ClientSecond::from(&*s),
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => *seconds = None,
        }
    }
}

/// No load can be sent (the configuration lacks a target); every command says why.
pub struct Unconfigured(pub String);

impl Unconfigured {
    pub fn new(why: impl Into<String>) -> Self {
        Unconfigured(why.into())
    }
}

impl LoadDriver for Unconfigured {
    fn start_stage(&mut self, _index: usize, _plan: StagePlan) -> DriverResult {
        Err(DriverError::Unconfigured(self.0.clone()))
    }
    fn pause(&mut self) -> DriverResult {
        Err(DriverError::Unconfigured(self.0.clone()))
    }
    fn resume(&mut self) -> DriverResult {
        Err(DriverError::Unconfigured(self.0.clone()))
    }
    fn scale(&mut self, _factor: f64) -> DriverResult {
        Err(DriverError::Unconfigured(self.0.clone()))
    }
    fn is_paused(&self) -> bool {
        false
    }
    fn next_second(&mut self) -> BoxFuture<'_, ClientSecond> {
        Box::pin(std::future::pending())
    }
    fn stop(&mut self, _deadline: Duration) -> BoxFuture<'_, Totals> {
        Box::pin(async { None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::testserver::{self, TestServerOptions};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn drives_stages_and_yields_seconds_then_totals() {
        let srv = testserver::spawn("127.0.0.1:0".parse().unwrap(), TestServerOptions::default()).await.unwrap();
        let mut d = EngineDriver::new(LoadConfig { connections: 2, ..Default::default() });
        d.start().unwrap();
        d.set_targets(vec![srv.url("/").parse().unwrap()]).unwrap();
        d.start_stage(0, StagePlan::Requests(RatePlan::Constant { rps: 50.0 })).unwrap();
        let s = tokio::time::timeout(Duration::from_secs(3), d.next_second()).await.expect("a second");
        assert_eq!(s.offered_rps, 50.0);
        // The engine takes commands asynchronously: wait for it to show them.
        async fn eventually(d: &EngineDriver, paused: bool) -> bool {
            for _ in 0..100 {
                if d.is_paused() == paused {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            false
        }
        d.pause().unwrap();
        assert!(eventually(&d, true).await, "paused");
        d.start_stage(1, StagePlan::Requests(RatePlan::Constant { rps: 20.0 })).unwrap();
        assert!(eventually(&d, false).await, "a new stage resumes the load");
        let Some(LoadTotals::Requests(totals)) = d.stop(STOP_DEADLINE).await else { panic!("request totals") };
        assert!(totals.status.ok > 0, "{:?}", totals.status);
        // Stopped: no more seconds, and a second stop has nothing to hand back.
        assert!(tokio::time::timeout(Duration::from_millis(300), d.next_second()).await.is_err());
        assert!(d.stop(STOP_DEADLINE).await.is_none());
    }
}
