//! `rtc-demo serve` child processes: spawning on loopback ports, graceful (SIGTERM) and hard
//! (SIGKILL) stops, and a process-wide registry so that every exit path (Drop, panic hook,
//! signals) can kill them all. On Linux each child also gets `PR_SET_PDEATHSIG(SIGKILL)`, so
//! it dies even when the console is killed with SIGKILL.
use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static PIDS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn pids() -> std::sync::MutexGuard<'static, BTreeSet<i32>> {
    PIDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// On a panic anywhere, the replicas die first (once per process; the local backend calls it).
pub fn kill_children_on_panic() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            kill_all_children();
            prev(info);
        }));
    });
}

/// SIGKILLs every child still registered (safe to call from a panic hook or twice).
pub fn kill_all_children() {
    let list: Vec<i32> = pids().iter().copied().collect();
    for pid in list {
        // SAFETY: kill(2) with a pid we spawned; harmless if it already exited.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// Is this loopback port free to listen on right now?
pub fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A free ephemeral loopback port.
pub fn ephemeral_port() -> Option<u16> {
    TcpListener::bind(("127.0.0.1", 0)).ok().and_then(|l| l.local_addr().ok()).map(|a| a.port())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Started, `/readyz` not yet 200.
    Pending,
    Running,
    /// SIGTERM sent (scale-down); draining.
    Terminating,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Terminating => "Terminating",
        }
    }
}

/// One replica: a child process and what the console knows about it.
pub struct Replica {
    pub slot: u32,
    pub name: String,
    pub port: u16,
    pub child: Child,
    pub pid: i32,
    pub created: Instant,
    pub phase: Phase,
    pub ready: bool,
    pub restarts: u32,
    pub terminating_since: Option<Instant>,
    /// Last cumulative count of answers, `/process` requests or processed WebRTC frames (for
    /// per-interval weights).
    pub last_requests: Option<f64>,
    pub p95_s: Option<f64>,
    pub weight: f64,
    pub scrape_error: Option<String>,
    /// Worker utilisation over the autoscaler's window.
    pub utilization: super::metrics::UtilizationWindow,
    /// WebRTC sessions pinned to it, at the last scrape.
    pub sessions: Option<u32>,
}

impl Replica {
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Everything needed to start a replica.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub exe: PathBuf,
    /// What the replicas compute on (`serve --device`).
    pub device: crate::scenario::LocalDevice,
    /// Flags for every replica (from the scenario), before the console's own.
    pub serve_args: Vec<String>,
    pub log_dir: Option<PathBuf>,
}

/// The replicas' p95 window unless the scenario's `serve_args` set one: short, so the
/// rehearsal reacts (and recovers) within seconds.
pub const DEFAULT_P95_WINDOW: &str = "10s";

impl SpawnSpec {
    /// The window the replicas' p95 covers; the autoscaler's load signal uses the same one,
    /// so both of its metrics look back equally far.
    pub fn p95_window(&self) -> Duration {
        let given = self.serve_args.iter().enumerate().find_map(|(i, a)| match a.strip_prefix("--p95-window") {
            Some("") => self.serve_args.get(i + 1).cloned(),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        });
        given
            .and_then(|v| rtc_service::duration::parse_duration(&v).ok())
            .unwrap_or_else(|| rtc_service::duration::parse_duration(DEFAULT_P95_WINDOW).expect("a valid duration"))
    }

    pub fn spawn(&self, slot: u32, port: u16, restarts: u32) -> Result<Replica, ReplicaError> {
        self.start(format!("serve-{slot}"), slot, port, restarts)
    }

    /// The replica the capacity probe measures before the stages: configured as every
    /// other, outside the autoscaler's slots, logging to `serve-capacity.log`.
    pub fn spawn_for_capacity(&self, port: u16) -> Result<Replica, ReplicaError> {
        self.start("serve-capacity".into(), u32::MAX, port, 0)
    }

    fn start(&self, name: String, slot: u32, port: u16, restarts: u32) -> Result<Replica, ReplicaError> {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("serve").arg("--listen").arg(format!("127.0.0.1:{port}"));
        let has = |flag: &str| self.serve_args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
        cmd.args(&self.serve_args);
        cmd.args(["--device", self.device.serve_flag()]);
        if !has("--p95-window") {
            cmd.args(["--p95-window", DEFAULT_P95_WINDOW]);
        }
        if !has("--drain-delay") {
            cmd.args(["--drain-delay", "1s"]);
        }
        if !has("--shutdown-timeout") {
            cmd.args(["--shutdown-timeout", "5s"]);
        }
        cmd.env("RTC_LOG_FORMAT", "json").stdin(Stdio::null());
        match &self.log_dir {
            Some(d) => {
                let _ = std::fs::create_dir_all(d);
                let path = d.join(format!("{name}.log"));
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| ReplicaError::Log { path: path.clone(), reason: e.to_string() })?;
                let f2 = f.try_clone().map_err(|e| ReplicaError::Log { path: path.clone(), reason: e.to_string() })?;
                cmd.stdout(f).stderr(f2);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        set_parent_death_signal(&mut cmd);
        let child = cmd.spawn().map_err(|e| ReplicaError::Spawn { exe: self.exe.clone(), reason: e.to_string() })?;
        let pid = child.id() as i32;
        pids().insert(pid);
        Ok(Replica {
            slot,
            name,
            port,
            child,
            pid,
            created: Instant::now(),
            phase: Phase::Pending,
            ready: false,
            restarts,
            terminating_since: None,
            last_requests: None,
            p95_s: None,
            weight: 0.0,
            scrape_error: None,
            utilization: Default::default(),
            sessions: None,
        })
    }
}

#[cfg(target_os = "linux")]
fn set_parent_death_signal(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl and getppid are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        let parent = libc::getpid();
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            // The parent may already have died between fork and prctl.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_cmd: &mut Command) {}

/// SIGTERM: the service turns not-ready, drains, exits.
pub fn terminate(r: &mut Replica) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(r.pid, libc::SIGTERM);
    }
    r.phase = Phase::Terminating;
    r.ready = false;
    r.terminating_since = Some(Instant::now());
}

/// SIGKILL and reap.
pub fn kill(r: &mut Replica) {
    let _ = r.child.kill();
    let _ = r.child.wait();
    pids().remove(&r.pid);
}

/// Has it exited? Reaps it and unregisters it if so; returns a description of how.
pub fn exited(r: &mut Replica) -> Option<String> {
    match r.child.try_wait() {
        Ok(Some(status)) => {
            pids().remove(&r.pid);
            use std::os::unix::process::ExitStatusExt;
            Some(match (status.code(), status.signal()) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(s)) => format!("signal {s}"),
                _ => "unknown status".into(),
            })
        }
        Ok(None) => None,
        Err(e) => Some(format!("wait failed: {e}")),
    }
}

/// The `rtc-demo` binary to run replicas with: this executable.
pub fn self_exe() -> Result<PathBuf, ReplicaError> {
    std::env::current_exe().map_err(|e| ReplicaError::NoExe(e.to_string()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    #[error("cannot find the rtc-demo executable to start replicas: {0}")]
    NoExe(String),
    #[error("{}: cannot open the replica's log: {reason}", path.display())]
    Log { path: PathBuf, reason: String },
    #[error("cannot start {} serve: {reason}", exe.display())]
    Spawn { exe: PathBuf, reason: String },
}
