//! `rtc-demo conduct`'s flags, resolved once into one [`Settings`] value the rest reads (as
//! ripgrep turns its flags into `HiArgs`): which backend with its settings, the scenario
//! (loaded once), the report folder, the frame rate. Errors say which flag or file is wrong
//! and what is allowed.
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::hpa::HpaSpec;
use super::kube::{KubeArgs, KubeTarget};
use super::local::replica::{self, SpawnSpec};
use super::local::LocalConfig;
use super::{BackendKind, ConductArgs};
use crate::scenario::{Scenario, ScenarioError};

pub const DEFAULT_SCENARIO: &str = "scenarios/rehearsal.toml";
pub const DEFAULT_HPA: &str = "manifests/autoscaling/load-adapter/hpa.yaml";

/// The slowest a local replica may take to become ready before the first stage starts anyway.
const LOCAL_BEGIN_WITHIN: Duration = Duration::from_secs(60);
/// A cluster rollout (image pull, kernel compile) takes longer than local replicas.
const KUBE_BEGIN_WITHIN: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("--backend replay needs --replay DIR (a report folder)")]
    ReplayWithoutDir,
    #[error("--replay DIR plays a report back: use it without --backend local")]
    ReplayWithLocal,
    #[error("--prometheus port-forward forwards to a cluster's Prometheus: it needs --backend kube (the local backend takes a URL)")]
    PortForwardLocal,
    #[error("--replay-speed {0}: expected a number > 0")]
    ReplaySpeed(f64),
    #[error("no scenario given and {DEFAULT_SCENARIO} does not exist here (expected: rtc-demo conduct SCENARIO.toml)")]
    NoScenario,
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("{}: {source}", path.display())]
    Hpa { path: PathBuf, source: super::hpa::HpaError },
    #[error(transparent)]
    Local(#[from] super::local::replica::ReplicaError),
    #[error("current directory: {0}")]
    CurrentDir(std::io::Error),
}

/// Everything a `conduct` run needs, decided before anything starts.
pub struct Settings {
    pub backend: BackendSettings,
    /// Where the report goes (None: a replay writes none).
    pub report_dir: Option<PathBuf>,
    pub headless: bool,
    pub fps: u32,
    /// Remove what was applied when the console ends.
    pub teardown: bool,
    /// Unix seconds at the start (names the default report folder).
    pub started_unix: u64,
}

pub enum BackendSettings {
    Local {
        scenario: Box<Scenario>,
        hpa: HpaSpec,
        /// The manifest `hpa` was read from; None: the SLO's numbers (latency only).
        hpa_from: Option<PathBuf>,
        config: Box<LocalConfig>,
        begin_within: Duration,
    },
    Kube {
        /// The scenario is in `args`; the HPA summary comes from its SLO.
        args: Box<KubeArgs>,
        hpa: HpaSpec,
        begin_within: Duration,
    },
    Replay {
        dir: PathBuf,
        speed: f64,
    },
}

impl Settings {
    /// `hpa_reader` parses a local rehearsal's HPA manifest ([`HpaReader::for_this_binary`]
    /// from the command, [`HpaReader::InProcess`] in tests).
    pub fn resolve(args: &ConductArgs, started_unix: u64, hpa_reader: &HpaReader) -> Result<Settings, SettingsError> {
        let kind = backend_kind(args)?;
        if !(args.replay_speed.is_finite() && args.replay_speed > 0.0) {
            return Err(SettingsError::ReplaySpeed(args.replay_speed));
        }
        let report_dir = || args.report_dir.clone().unwrap_or_else(|| default_report_dir(started_unix));
        let (backend, report_dir) = match kind {
            BackendKind::Replay => (
                BackendSettings::Replay { dir: args.replay.clone().unwrap_or_default(), speed: args.replay_speed },
                None,
            ),
            BackendKind::Local => {
                if args.prometheus.as_deref() == Some(super::kube::PORT_FORWARD) {
                    return Err(SettingsError::PortForwardLocal);
                }
                let path = scenario_path(args)?;
                let scenario = Scenario::load(&path)?;
                let hpa_path = match &args.hpa {
                    Some(p) => Some(p.clone()),
                    None => default_hpa(&path),
                };
                let mut hpa = match &hpa_path {
                    Some(p) => load_hpa(hpa_reader, p)?,
                    None => slo_hpa(&scenario),
                };
                if let Some(path) = &hpa_path {
                    rehearsable(&hpa, path)?;
                }
                // This machine's replica range (the scenario's [local] section) bounds the manifest's.
                hpa.min_replicas = scenario.local.replicas_min;
                hpa.max_replicas = scenario.local.replicas_max;
                let dir = report_dir();
                let config = local_config(args, &scenario, &hpa, &dir)?;
                (
                    BackendSettings::Local {
                        scenario: Box::new(scenario),
                        hpa,
                        hpa_from: hpa_path,
                        config: Box::new(config),
                        begin_within: LOCAL_BEGIN_WITHIN,
                    },
                    Some(dir),
                )
            }
            BackendKind::Kube => {
                let path = scenario_path(args)?;
                let scenario = Scenario::load(&path)?;
                let dir = report_dir();
                let run_id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let hpa = slo_hpa(&scenario);
                let scenario_image = scenario.manifests.image.clone();
                let kube = KubeArgs {
                    target: KubeTarget {
                        kubeconfig: args.kubeconfig.clone(),
                        context: args.context.clone(),
                        namespace: args.namespace.clone(),
                    },
                    prometheus: args.prometheus.clone(),
                    scenario,
                    scenario_path: path,
                    root: std::env::current_dir().map_err(SettingsError::CurrentDir)?,
                    run_id,
                    image: args.image.clone().or_else(|| scenario_image.clone()),
                };
                (BackendSettings::Kube { args: Box::new(kube), hpa, begin_within: KUBE_BEGIN_WITHIN }, Some(dir))
            }
        };
        Ok(Settings {
            backend,
            report_dir,
            headless: args.headless,
            fps: args.fps,
            teardown: args.teardown,
            started_unix,
        })
    }
}

/// Without `--backend`: replay when `--replay` is given, else kube when a kubeconfig with a
/// current context exists, else local.
fn backend_kind(args: &ConductArgs) -> Result<BackendKind, SettingsError> {
    match (args.backend, &args.replay) {
        (Some(BackendKind::Replay), None) => Err(SettingsError::ReplayWithoutDir),
        (Some(BackendKind::Local), Some(_)) => Err(SettingsError::ReplayWithLocal),
        (Some(k), _) => Ok(k),
        (None, Some(_)) => Ok(BackendKind::Replay),
        (None, None) => Ok(if super::kube::cluster_configured(args.kubeconfig.as_deref()) {
            BackendKind::Kube
        } else {
            BackendKind::Local
        }),
    }
}

/// The default HPA manifest: [`DEFAULT_HPA`] under the working directory, else under the
/// directory holding the scenario file or one above it (the checkout it came from), so that
/// a rehearsal started from elsewhere autoscales as the manifests do rather than on the
/// SLO's latency alone.
fn default_hpa(scenario: &Path) -> Option<PathBuf> {
    if Path::new(DEFAULT_HPA).exists() {
        return Some(PathBuf::from(DEFAULT_HPA));
    }
    default_hpa_above(scenario)
}

fn default_hpa_above(scenario: &Path) -> Option<PathBuf> {
    let scenario = scenario.canonicalize().ok()?;
    scenario.ancestors().skip(1).map(|dir| dir.join(DEFAULT_HPA)).find(|p| p.exists())
}

fn scenario_path(args: &ConductArgs) -> Result<PathBuf, SettingsError> {
    match &args.scenario {
        Some(p) => Ok(p.clone()),
        None if Path::new(DEFAULT_SCENARIO).exists() => Ok(PathBuf::from(DEFAULT_SCENARIO)),
        None => Err(SettingsError::NoScenario),
    }
}

/// Who parses the HPA manifest of a local rehearsal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HpaReader {
    /// This process (tests; or when the helper cannot be started).
    InProcess,
    /// A short-lived `EXE check --hpa FILE --json` child. The YAML parser and k8s-openapi's
    /// deserializers then run in the child: about 1.4 MB of their code pages would otherwise
    /// stay resident in the console for the whole talk (issue 10; `scripts/conduct-overhead.sh`).
    Helper(PathBuf),
}

impl HpaReader {
    /// The helper is this very binary (the `conduct` command runs only in `rtc-demo`).
    pub fn for_this_binary() -> Self {
        std::env::current_exe().map(HpaReader::Helper).unwrap_or(HpaReader::InProcess)
    }

    pub fn read(&self, path: &Path) -> Result<HpaSpec, super::hpa::HpaError> {
        let HpaReader::Helper(exe) = self else { return HpaSpec::load(path) };
        let out = match std::process::Command::new(exe).arg("check").arg("--hpa").arg(path).arg("--json").output() {
            Ok(out) => out,
            Err(_) => return HpaSpec::load(path),
        };
        if out.status.success() {
            serde_json::from_slice(&out.stdout).map_err(|e| {
                super::hpa::HpaError::Reported(format!("{} check --hpa answered no settings: {e}", exe.display()))
            })
        } else {
            Err(super::hpa::HpaError::Reported(String::from_utf8_lossy(&out.stderr).trim().to_string()))
        }
    }
}

/// Every metric of a rehearsal's HPA must be one the local backend can compute.
fn rehearsable(hpa: &HpaSpec, path: &Path) -> Result<(), SettingsError> {
    use super::local::metrics::LocalSignal;
    match hpa.metrics.iter().enumerate().find(|(_, m)| LocalSignal::for_metric(&m.name).is_none()) {
        Some((i, m)) => Err(SettingsError::Hpa {
            path: path.to_path_buf(),
            source: super::hpa::HpaError::Invalid {
                field: format!("spec.metrics[{i}]"),
                problem: format!(
                    "the local rehearsal cannot compute metric {:?}; it computes {}",
                    m.name,
                    LocalSignal::KNOWN
                ),
            },
        }),
        None => Ok(()),
    }
}

fn load_hpa(reader: &HpaReader, path: &Path) -> Result<HpaSpec, SettingsError> {
    reader.read(path).map_err(|source| SettingsError::Hpa { path: path.to_path_buf(), source })
}

/// `reports/<UTC YYYYmmdd-HHMMSS>`.
pub fn default_report_dir(unix: u64) -> PathBuf {
    PathBuf::from("reports").join(utc_stamp(unix))
}

/// UTC `YYYYmmdd-HHMMSS` for report folder names.
pub fn utc_stamp(unix: u64) -> String {
    let t = jiff::Timestamp::from_second(unix.min(i64::MAX as u64) as i64).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    t.strftime("%Y%m%d-%H%M%S").to_string()
}

/// The HPA settings from the scenario's SLO when no manifest is at hand.
pub fn slo_hpa(sc: &Scenario) -> HpaSpec {
    let mut h = HpaSpec::slo_default();
    h.metrics[0].target = sc.slo.scale_up_above.as_secs_f64();
    h.scale_up.stabilization_window_seconds = sc.slo.scale_up_after.as_secs() as u32;
    h.scale_down.stabilization_window_seconds = sc.slo.scale_down_after.as_secs() as u32;
    h.min_replicas = sc.slo.min_replicas;
    h.max_replicas = sc.slo.max_replicas;
    h
}

fn local_config(
    args: &ConductArgs,
    sc: &Scenario,
    hpa: &HpaSpec,
    report_dir: &Path,
) -> Result<LocalConfig, SettingsError> {
    Ok(LocalConfig {
        spawn: SpawnSpec {
            exe: replica::self_exe().map_err(SettingsError::Local)?,
            device: args.local_device.unwrap_or(sc.local.device),
            serve_args: sc.local.serve_args.clone(),
            log_dir: Some(report_dir.join("logs")),
        },
        port_base: sc.local.port_base,
        hpa: hpa.clone(),
        path_and_query: sc.request.path_and_query(),
        method: sc.request.method.as_hyper(),
        connections: sc.load.connections,
        max_inflight: sc.load.max_inflight,
        timeout: sc.request.timeout,
        prometheus: args.prometheus.clone().or(sc.prometheus.url.clone()).map(|u| (u, sc.prometheus.p95.clone())),
        sync_period: args.sync_period.max(Duration::from_millis(500)),
        namespace: sc.manifests.namespace.clone(),
        deployment: sc.manifests.deployment.clone(),
        overlay: sc.manifests.overlay.clone(),
        webrtc: webrtc_config(sc),
    })
}

/// The WebRTC publishers a scenario of sessions asks for (targets and plan come later).
pub fn webrtc_config(sc: &Scenario) -> Option<crate::load::webrtc::WebRtcConfig> {
    let r = &sc.request;
    (r.kind == crate::scenario::RequestKind::Webrtc).then(|| crate::load::webrtc::WebRtcConfig {
        query: r.query(),
        width: r.pixels.0 as usize,
        height: r.pixels.1 as usize,
        fps: r.fps,
        kbps: r.kbps,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConductArgs,
    }

    fn args(a: &[&str]) -> ConductArgs {
        Cli::parse_from(std::iter::once("conduct").chain(a.iter().copied())).args
    }

    #[test]
    fn stamps_are_utc_dates() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_700_000_000), "20231114-221320");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }

    #[test]
    fn the_default_hpa_is_found_above_a_scenario_run_from_elsewhere() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let found = default_hpa_above(&root.join("scenarios/rehearsal.toml")).expect("the checkout's manifest");
        assert_eq!(found, root.canonicalize().unwrap().join(DEFAULT_HPA));
        let lone = std::env::temp_dir().join(format!("rtc-lone-scenario-{}.toml", std::process::id()));
        std::fs::write(&lone, "name = \"x\"").unwrap();
        assert_eq!(default_hpa_above(&lone), None, "no checkout above a scenario in the temp dir");
        std::fs::remove_file(&lone).unwrap();
    }

    #[test]
    fn resolved_once_with_the_scenario_loaded() {
        let root = env!("CARGO_MANIFEST_DIR");
        let scenario = format!("{root}/scenarios/rehearsal.toml");
        let s = Settings::resolve(&args(&["--backend", "local", &scenario, "--fps", "8"]), 0, &HpaReader::InProcess)
            .unwrap();
        assert_eq!(
            (s.fps, s.headless, s.report_dir.clone()),
            (8, false, Some(PathBuf::from("reports/19700101-000000")))
        );
        match &s.backend {
            BackendSettings::Local { scenario, hpa, config, .. } => {
                assert_eq!(scenario.name, "rehearsal");
                assert_eq!(
                    (hpa.min_replicas, hpa.max_replicas),
                    (scenario.local.replicas_min, scenario.local.replicas_max)
                );
                assert_eq!(config.spawn.device, scenario.local.device);
                assert_eq!(config.spawn.log_dir, Some(PathBuf::from("reports/19700101-000000/logs")));
            }
            _ => panic!("not the local backend"),
        }
        let s = Settings::resolve(&args(&["--replay", "reports/x"]), 0, &HpaReader::InProcess).unwrap();
        assert!(matches!(s.backend, BackendSettings::Replay { .. }) && s.report_dir.is_none());
    }

    #[test]
    fn bad_flags_say_what_is_allowed() {
        let refused = |a: &[&str]| match Settings::resolve(&args(a), 0, &HpaReader::InProcess) {
            Ok(_) => panic!("{a:?} was accepted"),
            Err(e) => e.to_string(),
        };
        let e = refused(&["--backend", "replay"]);
        assert!(e.contains("--replay DIR"), "{e}");
        let e = refused(&["--replay", "x", "--replay-speed", "0"]);
        assert!(e.contains("expected a number > 0"), "{e}");
        let e = refused(&["--backend", "local", "/nonexistent.toml"]);
        assert!(e.contains("nonexistent.toml"), "{e}");
    }
}
