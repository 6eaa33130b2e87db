//! What `rtc-demo conduct --backend kube` does before the screen starts: load the scenario,
//! connect (bounded: an unreachable server fails within 10 s naming it; an unknown
//! `--context` lists the contexts that exist), run preflight and print its checklist, start
//! the backend and ask it to apply. `conduct::run` builds its session from [`Prepared`].
use std::path::{Path, PathBuf};

use super::preflight::{self, Check};
use super::{configure, KubeArgs, KubeBackend, KubeTarget};
use crate::conduct::model::{Backend, BackendCommand};
use crate::scenario::Scenario;

/// The kube flags of `rtc-demo conduct`.
#[derive(Debug, Clone, Default)]
pub struct KubeFlags {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: Option<String>,
    pub prometheus: Option<String>,
    pub teardown: bool,
}

pub struct Prepared {
    pub backend: KubeBackend,
    pub scenario: Scenario,
    pub checks: Vec<Check>,
}

/// Connects, runs preflight (printing each line to stderr), starts the backend and sends
/// `Apply`. Errors say what failed and how to see it with kubectl.
pub async fn prepare(scenario_path: &Path, flags: &KubeFlags, run_id: &str) -> Result<Prepared, String> {
    let scenario = Scenario::load(scenario_path).map_err(|e| e.to_string())?;
    let root = std::env::current_dir().map_err(|e| format!("current directory: {e}"))?;
    let args = KubeArgs {
        target: KubeTarget {
            kubeconfig: flags.kubeconfig.clone(),
            context: flags.context.clone(),
            namespace: flags.namespace.clone(),
        },
        prometheus: flags.prometheus.clone(),
        scenario: scenario.clone(),
        scenario_path: scenario_path.to_path_buf(),
        root,
        run_id: run_id.to_string(),
        load_image: None,
    };
    let cfg = configure(args).await?;
    eprintln!(
        "rtc-demo conduct: cluster {} (context {}), namespace {}; preflight:",
        cfg.connected.server, cfg.connected.context, cfg.namespace
    );
    let checks = super::preflight(&cfg, flags.teardown).await?;
    for c in &checks {
        eprintln!("  {}", c.line());
    }
    if !preflight::passed(&checks) {
        let n = checks.iter().filter(|c| c.verdict == preflight::Verdict::Fail).count();
        return Err(format!(
            "preflight: {n} check(s) failed on {} (see above); nothing was applied",
            cfg.connected.server
        ));
    }
    let backend = super::start_backend(cfg)?;
    backend.command(BackendCommand::Apply)?;
    Ok(Prepared { backend, scenario, checks })
}
