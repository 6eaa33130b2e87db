//! The local backend with real `rtc-demo serve` children: a killed replica is noticed and
//! replaced; a dead `--prometheus` is marked stale without a crash; replay runs headless.
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::process::{alive, children, kill9, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_rtc-demo");

/// Kills the conductor (and so, through it, its replicas) when the test ends, however it ends.
struct Conductor {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Conductor {
    fn start(args: &[&str]) -> Conductor {
        let mut child = Command::new(BIN)
            .arg("conduct")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Conductor { child, lines, seen: Vec::new() }
    }
    /// `conduct --backend local FIXTURE --headless --report-dir REPORT`.
    fn local_headless(fixture: &Path, report: &Path) -> Conductor {
        Conductor::start(&[
            "--backend",
            "local",
            fixture.to_str().unwrap(),
            "--headless",
            "--report-dir",
            report.to_str().unwrap(),
        ])
    }
    /// Waits for a stdout line matching `ok`.
    fn wait_line(&mut self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if ok(&l) {
                        return l;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("conductor exited while waiting for {what}; output:\n{}", self.seen.join("\n"))
                }
                Err(_) => {}
            }
            if t0.elapsed() > timeout {
                panic!("timed out waiting for {what}; output:\n{}", self.seen.join("\n"));
            }
        }
    }
    fn serve_children(&self) -> Vec<i32> {
        children(self.child.id() as i32)
    }
}

impl Drop for Conductor {
    fn drop(&mut self) {
        let kids = self.serve_children();
        let _ = self.child.kill();
        let _ = self.child.wait();
        kids.into_iter().for_each(kill9);
    }
}

fn ready_count(line: &str) -> Option<u32> {
    let i = line.find("pods ready ")?;
    line[i + 11..].split('/').next()?.parse().ok()
}

#[test]
fn killed_replica_is_replaced() {
    let report = std::env::temp_dir().join(format!("rtc-conduct-kill-{}", std::process::id()));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conduct/e2e-cpu.toml");
    let mut c = Conductor::local_headless(&fixture, &report);
    c.wait_line("a ready replica", Duration::from_secs(60), |l| l.contains("stage 1/3") && ready_count(l) == Some(1));
    let before = c.serve_children();
    assert_eq!(before.len(), 1, "one replica expected, found {before:?}");
    // SIGKILL the replica behind the console's back.
    assert!(Command::new("kill").args(["-9", &before[0].to_string()]).status().unwrap().success());
    // The replacement can be ready within the second, so no per-second line need show 0
    // ready: wait for the new process, then for a line that counts it ready.
    wait_until("a replacement process", Duration::from_secs(30), || {
        let now = c.serve_children();
        !now.is_empty() && now != before
    });
    c.wait_line("the replacement to be ready", Duration::from_secs(30), |l| ready_count(l) == Some(1));
    let after = c.serve_children();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "the replacement is a new process");
    // SIGTERM to the console: it stops, kills its replicas and writes the report.
    let _ = Command::new("kill").args(["-TERM", &c.child.id().to_string()]).status();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = c.child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "console did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "interrupted runs do not count as passed");
    for p in after {
        assert!(!alive(p), "replica {p} outlived the console");
    }
    let summary = std::fs::read_to_string(report.join("summary.json")).unwrap();
    assert!(summary.contains("BackOff") && summary.contains("starting a replacement"), "{summary}");
    let _ = std::fs::remove_dir_all(&report);
}

/// A run whose requests were mostly shed cannot pass `error_rate<2%` (before, shed 503s were
/// left out of error_rate and the summary said `observed 0.00%`, exit 0).
#[test]
fn a_mostly_shed_run_fails_its_verdict() {
    let report = std::env::temp_dir().join(format!("rtc-conduct-shed-{}", std::process::id()));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conduct/e2e-shed.toml");
    let mut c = Conductor::local_headless(&fixture, &report);
    let line = c.wait_line("the error_rate verdict", Duration::from_secs(90), |l| l.contains("error_rate<2%"));
    assert!(line.starts_with('✗'), "{line}");
    let observed: f64 = line
        .split("observed ")
        .nth(1)
        .and_then(|r| r.split('%').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no observed figure: {line}"));
    assert!(observed > 50.0, "two requests in three are shed: {line}");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = c.child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "console did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "a failed threshold exits 1; output:\n{}", c.seen.join("\n"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["passed"], false, "{summary}");
    assert!(
        summary["load"]["status"]["shed_503"].as_u64().unwrap() > summary["load"]["status"]["ok"].as_u64().unwrap()
    );
    // Latency of answers and of all requests are both kept; the instant 503s are in `all` only.
    let load = &summary["load"];
    assert_eq!(load["corrected"]["count"].as_u64().unwrap(), load["status"]["ok"].as_u64().unwrap(), "{summary}");
    let p50 = |k: &str| load[k]["p50_ms"].as_f64().unwrap_or_else(|| panic!("no {k}.p50_ms: {summary}"));
    assert!(p50("all_corrected") < p50("corrected"), "{summary}");
    let _ = std::fs::remove_dir_all(&report);
}

#[test]
fn replay_runs_headless_labelled_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conduct/report");
    let out = Command::new(BIN)
        .args(["conduct", "--replay", dir.to_str().unwrap(), "--headless", "--replay-speed", "200"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("[REPLAY")).collect();
    assert!(lines.len() > 30, "{text}");
    assert!(lines.iter().any(|l| l.contains("stage 3/4")), "{text}");
}

#[test]
fn bad_input_is_refused_clearly() {
    let out = Command::new(BIN).args(["conduct", "--replay", "/nonexistent-report", "--headless"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("timeline.csv: cannot read"));
    // the kube backend without a reachable kubeconfig: exit 2 with a reason, never a panic
    let out = Command::new(BIN)
        .args(["conduct", "--backend", "kube", "--headless"])
        .env("KUBECONFIG", "/nonexistent-kubeconfig")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kube") && !err.contains("panicked"), "{err}");
    let out = Command::new(BIN).args(["conduct", "/nonexistent.toml", "--headless"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nonexistent.toml"));
}

#[test]
fn replicas_die_with_a_sigkilled_console() {
    let report = std::env::temp_dir().join(format!("rtc-conduct-sigkill-{}", std::process::id()));
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conduct/e2e-cpu.toml");
    let mut c = Conductor::local_headless(&fixture, &report);
    c.wait_line("a ready replica", Duration::from_secs(60), |l| ready_count(l) == Some(1));
    let kids = c.serve_children();
    assert!(!kids.is_empty());
    // SIGKILL: no Drop, no hook runs; PR_SET_PDEATHSIG must take the replicas down.
    let _ = c.child.kill();
    let _ = c.child.wait();
    wait_until("the replicas to die with the console", Duration::from_secs(30), || !kids.iter().any(|&p| alive(p)));
    let _ = std::fs::remove_dir_all(&report);
}
