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
use crate::conduct::model::{RatePlan, StagePlan, Totals};
use crate::conduct::timeline::ClientSecond;

pub struct JobDriver {
    client: kube::Client,
    /// Everything the Job needs but the stage (read once: the scenario's text).
    spec: LoadJobSpec,
    template_dir: PathBuf,
    stage_names: Vec<String>,
    /// How long a stage's load pod may take to run (`[load] pod_start_timeout`).
    start_timeout: Duration,
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
        start_timeout: Duration,
        tell: Tell,
    ) -> Self {
        let (lines_tx, lines_rx) = mpsc::unbounded_channel();
        JobDriver {
            client,
            spec,
            template_dir,
            stage_names,
            start_timeout,
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
        let start_timeout = self.start_timeout;
        self.log_task = Some(tokio::spawn(async move {
            if let Err(e) = run_load_job(client, &ns, &objects, start_timeout, &tell, &lines).await {
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
    fn start_stage(&mut self, index: usize, plan: StagePlan) -> DriverResult {
        self.stage = self.stage_names.get(index).cloned();
        self.paused = false;
        // Past the last stage (the director's "finished" plan) or a 0 rps stage: no Job.
        let idle = match plan {
            StagePlan::Idle => true,
            StagePlan::Requests(RatePlan::Constant { rps }) => rps <= 0.0,
            _ => false,
        };
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

/// How long the old load Job (and, with foreground deletion, its pods) may take to go.
pub const JOB_DELETE_BUDGET: Duration = Duration::from_secs(30);

/// Deletes the load Job with foreground propagation and waits until it is gone: the Job
/// object then outlives its pods, so once it is gone no pod of the old stage is left to be
/// mistaken for the new one. Kubernetes keeps an object deleted in the foreground (with the
/// `foregroundDeletion` finalizer) until its dependents are deleted ("Foreground cascading
/// deletion", kubernetes.io/docs/concepts/architecture/garbage-collection/).
pub async fn delete_job(client: &kube::Client, ns: &str) -> Result<(), KubeError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let what = || format!("deleting Job {}", load_job::JOB_NAME);
    match jobs.delete(load_job::JOB_NAME, &DeleteParams::foreground()).await {
        Ok(_) => {}
        // Kubernetes answers 404 NotFound for a Job that is already gone (API conventions).
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(KubeError::api(what(), &e)),
    }
    let since = Instant::now();
    while since.elapsed() < JOB_DELETE_BUDGET {
        match jobs.get_opt(load_job::JOB_NAME).await {
            Ok(None) => return Ok(()),
            Ok(Some(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => return Err(KubeError::api(what(), &e)),
        }
    }
    Err(KubeError::JobNotDeleted { name: load_job::JOB_NAME, budget: JOB_DELETE_BUDGET })
}

/// Replaces the load Job with `objects` (ConfigMap, Job, …), waits for the new Job's pod to
/// run and follows its log, sending each per-second line to `lines`.
async fn run_load_job(
    client: kube::Client,
    ns: &str,
    objects: &[Value],
    start_timeout: Duration,
    tell: &Tell,
    lines: &mpsc::UnboundedSender<LoadLine>,
) -> Result<(), KubeError> {
    tell.status(None, Some(format!("in-cluster load: replacing Job {}", load_job::JOB_NAME)));
    delete_job(&client, ns).await?;
    let mut applier = apply::Applier::new(client.clone());
    applier.apply_all(objects, |_, _, _| {}).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let job = jobs.get(load_job::JOB_NAME).await.map_err(|e| KubeError::api("reading the load Job back", &e))?;
    let uid = job.metadata.uid.unwrap_or_default();
    tell.event("Normal", "LoadStarted", &format!("job/{}", load_job::JOB_NAME), "in-cluster load Job created".into());
    let pods: Api<Pod> = Api::namespaced(client, ns);
    let name = wait_for_pod(&pods, &uid, start_timeout, tell).await?;
    follow_log(&pods, &name, tell, lines).await
}

/// The pod the Job with `uid` controls (its controller owner reference, which the Job
/// controller sets on every pod it creates) that is not being deleted.
pub fn pod_of_job<'a>(pods: &'a [Pod], job_uid: &str) -> Option<&'a Pod> {
    pods.iter().find(|p| {
        p.metadata.deletion_timestamp.is_none()
            && p.metadata
                .owner_references
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|o| o.kind == "Job" && o.uid == job_uid && o.controller == Some(true))
    })
}

/// What a pod still waiting to run is waiting for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PodWait {
    /// It may still start: the wait goes on.
    Pending(String),
    /// It cannot start without a fix (a bad image, a missing Secret): the wait ends now.
    CannotStart(String),
}

/// Why a pod is not running yet, in the words `kubectl get pod` uses (its first container's
/// waiting reason, else the scheduling condition, else the phase).
fn pending_reason(p: &Pod) -> PodWait {
    let status = p.status.as_ref();
    let waiting = status
        .and_then(|s| s.container_statuses.as_deref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref());
    if let Some(w) = waiting {
        let reason = w.reason.clone().unwrap_or_default();
        let message = w.message.clone().unwrap_or_default();
        // Reasons the kubelet reports for a container that cannot start without a fix.
        let fatal = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"];
        let text = if message.is_empty() { reason.clone() } else { format!("{reason}: {message}") };
        return if fatal.contains(&reason.as_str()) { PodWait::CannotStart(text) } else { PodWait::Pending(text) };
    }
    let unscheduled = status
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled" && c.status == "False"));
    if let Some(c) = unscheduled {
        return PodWait::Pending(format!(
            "{}: {}",
            c.reason.as_deref().unwrap_or("Unschedulable"),
            c.message.as_deref().unwrap_or("")
        ));
    }
    PodWait::Pending(status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Pending".into()))
}

/// Waits until the Job's pod runs (or has already finished), saying on the status line what
/// it is waiting for; fails at once on a pod that cannot start, and after `timeout`.
async fn wait_for_pod(pods: &Api<Pod>, job_uid: &str, timeout: Duration, tell: &Tell) -> Result<String, KubeError> {
    let lp = ListParams::default().labels(&format!("job-name={}", load_job::JOB_NAME));
    let since = Instant::now();
    let mut last = String::from("no pod yet");
    while since.elapsed() < timeout {
        let list = pods.list(&lp).await.map_err(|e| KubeError::api("listing the load pod", &e))?;
        if let Some(p) = pod_of_job(&list.items, job_uid) {
            let name = p.metadata.name.clone().unwrap_or_default();
            if let Some("Running" | "Succeeded" | "Failed") = p.status.as_ref().and_then(|s| s.phase.as_deref()) {
                return Ok(name);
            }
            last = match pending_reason(p) {
                PodWait::Pending(why) => format!("pod {name}: {why}"),
                PodWait::CannotStart(why) => return Err(KubeError::LoadPodCannotStart { pod: name, why }),
            };
        }
        tell.status(
            None,
            Some(format!(
                "in-cluster load: waiting for the load pod ({last}), {} s of {} s",
                since.elapsed().as_secs(),
                timeout.as_secs()
            )),
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(KubeError::LoadPodNotStarted { timeout, last })
}

/// How often an ended log is reopened while its pod still runs, before giving up.
const LOG_REOPENS: u32 = 5;

/// How long the log may stay silent before the stream is taken for dead. The load pod writes a
/// line every second, so a stream that brings nothing for this long is half-open (the API
/// server or the kubelet went away without closing it, a NAT forgot it) and would otherwise
/// freeze the load figures for the rest of the stage.
pub const LOG_SILENCE: Duration = Duration::from_secs(5);

/// Follows the pod's log; when the stream ends or goes silent for [`LOG_SILENCE`] while the
/// pod still runs (an API server or kubelet connection cut or half-open), reopens it and skips
/// the seconds already sent.
async fn follow_log(
    pods: &Api<Pod>,
    name: &str,
    tell: &Tell,
    lines: &mpsc::UnboundedSender<LoadLine>,
) -> Result<(), KubeError> {
    tell.status(None, Some(format!("in-cluster load: following pod {name}")));
    let mut last_second: Option<u64> = None;
    let mut reopens = 0;
    loop {
        let opened =
            tokio::time::timeout(LOG_SILENCE, pods.log_stream(name, &LogParams { follow: true, ..Default::default() }))
                .await;
        let mut fresh = false;
        let mut silent = false;
        let logs = match opened {
            Ok(logs) => Some(logs.map_err(|e| KubeError::api("reading the load pod's log", &e))?),
            Err(_) => {
                silent = true;
                None
            }
        };
        if let Some(mut log) = logs.map(|l| l.lines()) {
            loop {
                let line = match tokio::time::timeout(LOG_SILENCE, log.next()).await {
                    Ok(Some(Ok(line))) => line,
                    Ok(Some(Err(_)) | None) => break,
                    Err(_) => {
                        silent = true;
                        break;
                    }
                };
                let Some(l) = load_job::parse_line(&line) else { continue };
                if last_second.is_some_and(|s| l.second <= s) {
                    continue;
                }
                last_second = Some(l.second);
                fresh = true;
                if lines.send(l).is_err() {
                    return Ok(());
                }
            }
        }
        let pod = pods.get_opt(name).await.map_err(|e| KubeError::api("reading the load pod", &e))?;
        let running = pod.as_ref().is_some_and(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        });
        if !running {
            return Ok(());
        }
        reopens = if fresh { 1 } else { reopens + 1 };
        if reopens > LOG_REOPENS {
            return Err(KubeError::Api {
                what: format!("following pod {name}'s log"),
                detail: format!("the log ended or went silent {LOG_REOPENS} times in a row while the pod kept running"),
            });
        }
        let why = if silent { format!("brought nothing for {} s", LOG_SILENCE.as_secs()) } else { "ended".to_string() };
        tell.status(None, Some(format!("in-cluster load: pod {name}'s log {why} while it runs; following again")));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    /// A load pod as the Job controller creates it: a controller owner reference to its Job
    /// (kubernetes pkg/controller/job/job_controller.go, metav1.NewControllerRef).
    fn load_pod(name: &str, job_uid: &str) -> serde_json::Value {
        serde_json::json!({
            "metadata": {"name": name, "labels": {"job-name": "rtc-demo-load"},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "rtc-demo-load",
                    "uid": job_uid, "controller": true, "blockOwnerDeletion": true}]},
            "status": {"phase": "Pending"}
        })
    }

    #[test]
    fn the_new_jobs_pod_is_picked_not_a_terminating_or_foreign_one() {
        let mut old = load_pod("old", "uid-new");
        old["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z".into();
        let pods = vec![pod(old), pod(load_pod("previous-job", "uid-old")), pod(load_pod("fresh", "uid-new"))];
        assert_eq!(pod_of_job(&pods, "uid-new").and_then(|p| p.metadata.name.as_deref()), Some("fresh"));
        assert!(pod_of_job(&pods[..2], "uid-new").is_none());
    }

    #[test]
    fn pending_reasons_say_why_and_which_are_fatal() {
        let mut p = load_pod("p", "u");
        assert_eq!(pending_reason(&pod(p.clone())), PodWait::Pending("Pending".to_string()));
        // kubelet's waiting reasons, as `kubectl get pod` shows them.
        p["status"]["containerStatuses"] = serde_json::json!([{"name": "load", "image": "x", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]);
        assert_eq!(pending_reason(&pod(p.clone())), PodWait::Pending("ContainerCreating".to_string()));
        p["status"]["containerStatuses"][0]["state"]["waiting"] = serde_json::json!({"reason": "ImagePullBackOff",
            "message": "Back-off pulling image \"ghcr.io/rtc-demo/rtc-demo:nope\""});
        let PodWait::CannotStart(e) = pending_reason(&pod(p.clone())) else { panic!("ImagePullBackOff is fatal") };
        assert!(e.starts_with("ImagePullBackOff: Back-off pulling image"), "{e}");
        // The scheduler's condition (kube-scheduler's FailedScheduling wording).
        let mut q = load_pod("q", "u");
        q["status"]["conditions"] = serde_json::json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient cpu."}]);
        assert_eq!(
            pending_reason(&pod(q)),
            PodWait::Pending("Unschedulable: 0/3 nodes are available: 3 Insufficient cpu.".to_string())
        );
    }
}
