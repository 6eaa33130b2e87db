//! The capacity probe on a cluster: one ready pod of the Deployment, reached through
//! `kubectl port-forward pod/NAME` (the Service would spread the probe over every pod and
//! measure the Deployment, not a pod), once the rollout has a ready pod and before the
//! first stage.
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::kubectl::Kubectl;
use super::port_forward::{PortForward, PortForwardError};
use super::KubeConfig;
use crate::conduct::capacity::{Capacity, CapacityError, CapacityProbe};
use crate::conduct::model::ClusterSnapshot;
use crate::scenario::Scenario;

/// The service container's port when the Deployment names none.
const DEFAULT_PORT: u16 = 8080;

/// Where the probe goes: which kubectl, namespace and container port.
#[derive(Debug, Clone)]
pub struct PodProbeTarget {
    pub kubectl: Kubectl,
    pub namespace: String,
    pub deployment: String,
    /// The service container's port (the Deployment's first `containerPort`).
    pub port: u16,
}

impl PodProbeTarget {
    pub fn of(cfg: &KubeConfig) -> Self {
        let deployment = cfg.scenario.manifests.deployment.clone();
        PodProbeTarget {
            kubectl: cfg.kubectl(),
            namespace: cfg.namespace.clone(),
            port: container_port(&cfg.objects, &deployment).unwrap_or(DEFAULT_PORT),
            deployment,
        }
    }
}

/// The first `containerPort` of the Deployment's first container.
pub fn container_port(objects: &[Value], deployment: &str) -> Option<u16> {
    let dep = objects.iter().find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == deployment)?;
    let port = dep.pointer("/spec/template/spec/containers/0/ports/0/containerPort")?.as_u64()?;
    u16::try_from(port).ok()
}

#[derive(Debug, thiserror::Error)]
pub enum PodCapacityError {
    #[error(
        "capacity probe: no pod of deployment/{deployment} was ready within {secs} s to measure (see `{kubectl}`)"
    )]
    NoReadyPod { deployment: String, secs: u64, kubectl: String },
    #[error("capacity probe: {0}")]
    PortForward(#[from] PortForwardError),
    #[error(transparent)]
    Probe(#[from] CapacityError),
}

/// Waits (up to `within`) for a ready pod in the backend's snapshots, forwards to it with
/// `program` (kubectl, or a stand-in in tests) and measures it.
pub async fn measure(
    target: &PodProbeTarget,
    program: &str,
    mut snaps: watch::Receiver<Arc<ClusterSnapshot>>,
    within: Duration,
    scenario: &Scenario,
    progress: &mut (dyn FnMut(String) + Send),
) -> Result<Capacity, PodCapacityError> {
    progress(format!("capacity: waiting for a ready pod of deployment/{} to measure …", target.deployment));
    let deadline = Instant::now() + within;
    let pod = loop {
        if let Some(p) = snaps.borrow().pods.iter().find(|p| p.ready && p.phase == "Running") {
            break p.name.clone();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || tokio::time::timeout(left, snaps.changed()).await.is_ok_and(|r| r.is_err()) {
            return Err(PodCapacityError::NoReadyPod {
                deployment: target.deployment.clone(),
                secs: within.as_secs(),
                kubectl: format!("{} get pods", target.kubectl.ns()),
            });
        }
    };
    let args = target.kubectl.port_forward_args(&target.namespace, &format!("pod/{pod}"));
    let forward = PortForward::start(program, &args, target.port).await?;
    let probe = CapacityProbe {
        base: forward.url.clone(),
        request: scenario.request.clone(),
        slo: scenario.slo.p95,
        measured_on: format!("pod {pod} via kubectl port-forward"),
    };
    let measured = probe.measure(progress).await?;
    drop(forward);
    Ok(measured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_is_the_deployments_container_port() {
        let objs = vec![
            serde_json::json!({"kind": "Service", "metadata": {"name": "gpu-media"}}),
            serde_json::json!({"kind": "Deployment", "metadata": {"name": "gpu-media"},
                "spec": {"template": {"spec": {"containers": [{"ports": [{"containerPort": 9000}]}]}}}}),
        ];
        assert_eq!(container_port(&objs, "gpu-media"), Some(9000));
        assert_eq!(container_port(&objs, "other"), None);
    }
}
