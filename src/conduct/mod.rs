//! `rtc-demo conduct`: the presenter's console (SPEC §4).
//!
//! - [`settings`]: the flags below, resolved once into the one value a run reads.
//! - [`model`]: immutable snapshots and the [`model::Backend`] trait every backend implements.
//! - [`timeline`]: the per-second samples both live backends record; [`load_driver`]: the
//!   one interface to the load (engine here, or the in-cluster Job).
//! - [`local`]: replicas as `rtc-demo serve` children, scaled by [`hpa`] (HPA v2 algorithm).
//! - [`replay`]: plays a report folder back, labelled REPLAY.
//! - [`ui`] + [`keymap`]: the ratatui screen; [`director`]: the stage machine;
//!   [`report`]: `timeline.csv`, `summary.json`, `timeline.png`; [`run`]: the loops (TUI and
//!   `--headless`) that tie them together over channels.
use std::path::PathBuf;

pub mod backoff;
pub mod capacity;
pub mod director;
pub mod hpa;
pub mod http;
pub mod keymap;
pub mod kube;
pub mod load_driver;
pub mod local;
pub mod model;
pub mod prom;
pub mod replay;
pub mod report;
pub mod run;
pub mod settings;
pub mod stderr_capture;
pub mod story;
pub mod timeline;
pub mod ui;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Replicas as child processes on this machine (no cluster needed).
    Local,
    /// Play back a report folder (needs --replay DIR).
    Replay,
    /// A Kubernetes cluster (kubeconfig, --context, --namespace).
    Kube,
}

#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Keys: space/→ next stage, ← back, p pause/resume load, +/- rate ±10 %, r restart stage, \
b baseline, n notes, k kubectl panel, s write report, ? help, q quit. \
Without --backend: replay when --replay is given, else kube when a kubeconfig with a current context exists, else local. \
Exit status: 0 when the run ends (headless: when every threshold passes), 1 when a threshold fails (headless), \
2 on bad input.")]
pub struct ConductArgs {
    /// Scenario file (default: scenarios/rehearsal.toml when it exists).
    pub scenario: Option<PathBuf>,
    /// Which backend runs the scenario.
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// No TUI: one line per second; the thresholds decide the exit code.
    #[arg(long)]
    pub headless: bool,
    /// Where the report goes (default reports/<UTC time>/).
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Play back a report folder instead of running (labelled REPLAY).
    #[arg(long, value_name = "DIR")]
    pub replay: Option<PathBuf>,
    /// Replay speed: recorded seconds per second.
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub replay_speed: f64,
    /// Prometheus base URL for server-side p95 (else the replicas' /metrics). With the kube
    /// backend, `port-forward` runs `kubectl port-forward svc/prometheus-operated` to the
    /// scenario's `[prometheus] namespace` itself and restarts it whenever it drops.
    #[arg(long, value_name = "URL|port-forward")]
    pub prometheus: Option<String>,
    /// Frames per second of the console.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=30))]
    pub fps: u32,
    /// On exit, remove what was applied (local: the replicas are always stopped).
    #[arg(long)]
    pub teardown: bool,
    /// The HorizontalPodAutoscaler manifest whose settings the local autoscaler uses
    /// (default manifests/autoscaling/load-adapter/hpa.yaml in the working directory, else in
    /// the scenario file's directory or one above it; without one, the SLO's numbers: p95 alone).
    #[arg(long, value_name = "FILE")]
    pub hpa: Option<PathBuf>,
    /// local backend: what the replicas compute on (default: the scenario's [local] device,
    /// emulated). `emulated` models a GPU pod's own capacity, so scale-out adds capacity on any
    /// laptop; `cpu` runs the real effects and needs many more cores than replicas to show it.
    #[arg(long, value_enum, value_name = "DEVICE")]
    pub local_device: Option<crate::scenario::LocalDevice>,
    /// How often the local autoscaler runs (the HPA sync period).
    #[arg(long, default_value = "3s", value_parser = rtc_service::duration::duration_arg, value_name = "DUR")]
    pub sync_period: std::time::Duration,
    /// kube backend: the kubeconfig file (default $KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// kube backend: the kubeconfig context (default: its current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// kube backend: the namespace (default: the scenario's [manifests] namespace).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// kube backend: the image the service Deployment and the load Job run, built and pushed
    /// as README "Build and push the image" says (default: the scenario's [manifests] image,
    /// else the manifests' placeholder, which no registry serves).
    #[arg(long, value_name = "REGISTRY/rtc-demo:TAG", value_parser = crate::image_ref::ImageRef::parse)]
    pub image: Option<crate::image_ref::ImageRef>,
}
