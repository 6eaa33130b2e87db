//! One interface for the load a backend drives, wherever it is generated: [`EngineDriver`]
//! runs the load engine on this machine (the local backend, and the kube backend's
//! `this-machine` load); the kube backend's in-cluster Job implements the same trait
//! (`kube::load_job::JobDriver`). The backend's one owner task calls it and feeds the
//! seconds it yields into its [`Timeline`](super::timeline::Timeline).
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::model::{RatePlan, Totals};
use super::timeline::ClientSecond;
use crate::load::{LoadConfig, LoadEngine, LoadError, LoadHandle, LoadSecond};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the load did not do what it was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriverError {
    #[error("load engine: {0}")]
    Start(LoadError),
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
    Unconfigured(&'static str),
}

pub type DriverResult = Result<(), DriverError>;

/// How long stopping may take: quitting stops the load within a second whatever happens.
pub const STOP_DEADLINE: Duration = Duration::from_millis(800);

pub trait LoadDriver: Send {
    /// A stage starts: `plan` from its beginning, at the scenario's rate (scale 1, unpaused).
    fn start_stage(&mut self, index: usize, plan: RatePlan) -> DriverResult;
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

    /// Where the requests go (the ready replicas, round robin); kept across restarts.
    pub fn set_targets(&mut self, targets: Vec<hyper::Uri>) -> DriverResult {
        if let Some(h) = &self.handle {
            h.set_targets(&targets).map_err(DriverError::Targets)?;
        }
        self.config.targets = targets;
        Ok(())
    }

    /// Starts the engine (idle) so that targets and the first stage find it running.
    pub fn start(&mut self) -> DriverResult {
        self.engine().map(|_| ())
    }
}

impl LoadDriver for EngineDriver {
    fn start_stage(&mut self, _index: usize, plan: RatePlan) -> DriverResult {
        let h = self.engine()?;
        h.set_scale(1.0);
        h.resume();
        h.set_plan(plan).map_err(DriverError::Plan)
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
        Box::pin(async move {
            loop {
                let Some(rx) = self.seconds.as_mut() else { return std::future::pending().await };
                match rx.recv().await {
                    Ok(s) => return ClientSecond::from(&*s),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => self.seconds = None,
                }
            }
        })
    }

    fn stop(&mut self, deadline: Duration) -> BoxFuture<'_, Totals> {
        Box::pin(async move {
            self.seconds = None;
            let h = self.handle.take()?;
            // A slow stop is abandoned (dropping the handle stops the engine too).
            tokio::time::timeout(deadline, h.stop()).await.ok()
        })
    }
}

/// No load can be sent (the configuration lacks a target); every command says why.
pub struct Unconfigured(pub &'static str);

impl LoadDriver for Unconfigured {
    fn start_stage(&mut self, _index: usize, _plan: RatePlan) -> DriverResult {
        Err(DriverError::Unconfigured(self.0))
    }
    fn pause(&mut self) -> DriverResult {
        Err(DriverError::Unconfigured(self.0))
    }
    fn resume(&mut self) -> DriverResult {
        Err(DriverError::Unconfigured(self.0))
    }
    fn scale(&mut self, _factor: f64) -> DriverResult {
        Err(DriverError::Unconfigured(self.0))
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
        d.start_stage(0, RatePlan::Constant { rps: 50.0 }).unwrap();
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
        d.start_stage(1, RatePlan::Constant { rps: 20.0 }).unwrap();
        assert!(eventually(&d, false).await, "a new stage resumes the load");
        let totals = d.stop(STOP_DEADLINE).await.expect("totals");
        assert!(totals.status.ok > 0, "{:?}", totals.status);
        // Stopped: no more seconds, and a second stop has nothing to hand back.
        assert!(tokio::time::timeout(Duration::from_millis(300), d.next_second()).await.is_err());
        assert!(d.stop(STOP_DEADLINE).await.is_none());
    }
}
