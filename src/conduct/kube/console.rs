//! What `rtc-demo conduct --backend kube` does before the screen starts: load the scenario,
//! connect (bounded: an unreachable server fails within 10 s naming it; an unknown
//! `--context` lists the contexts that exist), run preflight and print its checklist, start
//! the backend and ask it to apply (preflight runs once: the first Apply uses its result).
use super::pod_capacity::PodProbeTarget;
use super::preflight;
use super::{configure, KubeArgs, KubeBackend, KubeError};
use crate::conduct::model::{Backend, BackendCommand};

/// Connects, runs preflight (printing each line to stderr), starts the backend with that
/// preflight's result and sends `Apply` (which applies without asking again). Errors say
/// what failed and how to see it with kubectl.
/// Also returns where the capacity probe goes (one pod of the Deployment).
pub async fn prepare(args: KubeArgs, teardown: bool) -> Result<(KubeBackend, PodProbeTarget), KubeError> {
    let cfg = configure(args).await?;
    eprintln!(
        "rtc-demo conduct: cluster {} (context {}), namespace {}; preflight:",
        cfg.connected.server, cfg.connected.context, cfg.namespace
    );
    let checks = super::preflight(&cfg, teardown).await;
    for c in &checks {
        eprintln!("  {}", c.line());
    }
    if !preflight::passed(&checks) {
        let n = checks.iter().filter(|c| c.verdict == preflight::Verdict::Fail).count();
        return Err(KubeError::Preflight { failed: n, server: cfg.connected.server.clone() });
    }
    let target = PodProbeTarget::of(&cfg);
    let backend = super::start_backend_checked(cfg, checks)?;
    backend.command(BackendCommand::Apply)?;
    Ok((backend, target))
}
