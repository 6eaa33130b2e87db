//! The in-cluster load behind the [`LoadDriver`] interface: each stage (re)creates the load
//! Job for that stage and follows its pod's log; the per-second lines come back as the
//! driver's seconds. Status and events go to the backend's owner task as [`KubeEvent`]s.
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, LogParams};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::load_job::{self, LoadJobSpec, LoadLine};
use super::{apply, KubeError, KubeEvent, Tell};
use crate::conduct::load_driver::{BoxFuture, DriverError, DriverResult, LoadDriver};
use crate::conduct::model::{RatePlan, Totals};
use crate::conduct::timeline::ClientSecond;

pub struct JobDriver {
    client: kube::Client,
    /// Everything the Job needs but the stage (read once: the scenario's text).
    spec: LoadJobSpec,
    template_dir: PathBuf,
    stage_names: Vec<String>,
    tell: Tell,
    lines_tx: mpsc::UnboundedSender<LoadLine>,
    lines_rx: mpsc::UnboundedReceiver<LoadLine>,
    log_task: Option<JoinHandle<()>>,
    stage: Option<String>,
    paused: bool,
}

impl JobDriver {
    pub fn new(
        client: kube::Client,
        spec: LoadJobSpec,
        template_dir: PathBuf,
        stage_names: Vec<String>,
        tell: Tell,
    ) -> Self {
        let (lines_tx, lines_rx) = mpsc::unbounded_channel();
        JobDriver {
            client,
            spec,
            template_dir,
            stage_names,
            tell,
            lines_tx,
            lines_rx,
            log_task: None,
            stage: None,
            paused: false,
        }
    }

    /// (Re)creates the load Job for the current stage and follows its pod's log.
    fn start_job(&mut self) {
        if let Some(t) = self.log_task.take() {
            t.abort();
        }
        let spec = LoadJobSpec { stage: self.stage.clone(), ..self.spec.clone() };
        let objects = match load_job::render(&self.template_dir, &spec) {
            Ok(objs) => objs,
            Err(e) => {
                self.tell.status(None, Some(format!("in-cluster load: {e}")));
                return;
            }
        };
        // Written to disk so the kubectl panel's `apply -f` names a real file.
        let file = std::env::temp_dir().join(format!("rtc-demo-load-{}.yaml", sanitize(&self.spec.run_id)));
        let written = std::fs::write(&file, load_job::to_yaml(&objects)).is_ok();
        self.tell.send(KubeEvent::LoadFile(written.then(|| file.display().to_string())));
        let (client, ns, tell, lines) =
            (self.client.clone(), self.spec.namespace.clone(), self.tell.clone(), self.lines_tx.clone());
        self.log_task = Some(tokio::spawn(async move {
            if let Err(e) = run_load_job(client, &ns, &objects, &tell, &lines).await {
                tell.status(None, Some(format!("in-cluster load: {e}")));
            }
        }));
    }

    fn stop_job(&mut self, why: &str) {
        if let Some(t) = self.log_task.take() {
            t.abort();
        }
        let (client, ns, tell) = (self.client.clone(), self.spec.namespace.clone(), self.tell.clone());
        let why = why.to_string();
        tokio::spawn(async move {
            let msg = match delete_job(&client, &ns).await {
                Ok(()) => format!("load {why}: Job {} deleted", load_job::JOB_NAME),
                Err(e) => format!("load {why}, but deleting Job {}: {e}", load_job::JOB_NAME),
            };
            tell.status(None, Some(msg));
        });
    }
}

impl LoadDriver for JobDriver {
    fn start_stage(&mut self, index: usize, plan: RatePlan) -> DriverResult {
        self.stage = self.stage_names.get(index).cloned();
        self.paused = false;
        // Past the last stage (the director's "finished" plan) or a 0 rps stage: no Job.
        let idle = matches!(plan, RatePlan::Constant { rps } if rps <= 0.0);
        if self.stage.is_none() || idle {
            self.stop_job("idle");
        } else {
            self.start_job();
        }
        Ok(())
    }

    fn pause(&mut self) -> DriverResult {
        self.paused = true;
        self.stop_job("paused");
        Ok(())
    }

    fn resume(&mut self) -> DriverResult {
        self.paused = false;
        self.start_job();
        Ok(())
    }

    fn scale(&mut self, factor: f64) -> DriverResult {
        Err(DriverError::ScaleUnsupported { factor })
    }

    fn is_paused(&self) -> bool {
        self.paused
    }

    fn next_second(&mut self) -> BoxFuture<'_, ClientSecond> {
        Box::pin(async move {
            // The driver holds a sender itself: the channel never closes.
            let line = self.lines_rx.recv().await.expect("the driver keeps a sender");
            line.figures
        })
    }

    fn stop(&mut self, deadline: Duration) -> BoxFuture<'_, Totals> {
        Box::pin(async move {
            if let Some(t) = self.log_task.take() {
                t.abort();
            }
            let _ = tokio::time::timeout(deadline, delete_job(&self.client, &self.spec.namespace)).await;
            // The load pod keeps its own totals in its log; none are measured here.
            None
        })
    }
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect()
}

/// Deletes the load Job (its pods with it) and waits until it is gone (at most 20 s).
pub async fn delete_job(client: &kube::Client, ns: &str) -> Result<(), KubeError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let what = || format!("deleting Job {}", load_job::JOB_NAME);
    match jobs.delete(load_job::JOB_NAME, &DeleteParams::background()).await {
        Ok(_) => {}
        // Kubernetes answers 404 NotFound for a Job that is already gone (API conventions).
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(KubeError::api(what(), &e)),
    }
    for _ in 0..40 {
        match jobs.get_opt(load_job::JOB_NAME).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => return Err(KubeError::api(what(), &e)),
        }
    }
    Err(KubeError::JobNotDeleted { name: load_job::JOB_NAME })
}

/// Replaces the load Job with `objects` (ConfigMap, Job, …), waits for its pod to run and
/// follows its log, sending each per-second line to `lines`.
async fn run_load_job(
    client: kube::Client,
    ns: &str,
    objects: &[Value],
    tell: &Tell,
    lines: &mpsc::UnboundedSender<LoadLine>,
) -> Result<(), KubeError> {
    delete_job(&client, ns).await?;
    let mut applier = apply::Applier::new(client.clone());
    applier.apply_all(objects, |_, _, _| {}).await?;
    tell.event("Normal", "LoadStarted", &format!("job/{}", load_job::JOB_NAME), "in-cluster load Job created".into());
    let pods: Api<Pod> = Api::namespaced(client, ns);
    let lp = ListParams::default().labels(&format!("job-name={}", load_job::JOB_NAME));
    let mut pod_name = None;
    let waiting_since = Instant::now();
    while waiting_since.elapsed() < Duration::from_secs(60) {
        let list = pods.list(&lp).await.map_err(|e| KubeError::api("listing the load pod", &e))?;
        if let Some(p) = list.items.iter().find(|p| {
            matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Running") | Some("Succeeded") | Some("Failed")
            )
        }) {
            pod_name = p.metadata.name.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let name = pod_name.ok_or(KubeError::LoadPodNotStarted)?;
    let logs = pods
        .log_stream(&name, &LogParams { follow: true, ..Default::default() })
        .await
        .map_err(|e| KubeError::api("reading the load pod's log", &e))?;
    let mut log = logs.lines();
    while let Some(line) = log.next().await {
        let line = line.map_err(|e| KubeError::Api { what: "load pod log".into(), detail: e.to_string() })?;
        if let Some(l) = load_job::parse_line(&line) {
            if lines.send(l).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}
