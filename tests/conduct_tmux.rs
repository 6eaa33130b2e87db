//! End-to-end: the console in a real terminal (tmux) at 100×30, with real replicas.
//! Needs tmux (scripts/setup/test-deps.sh installs it).
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::process::{alive, children, cmdline, kill9, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_rtc-demo");

struct Tmux {
    socket: String,
    dir: PathBuf,
    pids: Vec<i32>,
}

impl Tmux {
    fn start(name: &str, cmd: &str) -> Tmux {
        assert!(
            Command::new("tmux").arg("-V").output().is_ok_and(|o| o.status.success()),
            "tmux is needed for this test (scripts/setup/test-deps.sh installs it)"
        );
        let socket = format!("rtc-conduct-{name}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&socket);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let status = dir.join("status");
        let stty = dir.join("stty");
        let script = format!(
            // The exit status lands last (renamed into place), so once it exists the stty
            // reading is there too: the test waits on the file, never on a fixed sleep.
            "cd {root}; {cmd}; echo $? > {status}.tmp; stty -a > {stty}; mv {status}.tmp {status}; sleep 60",
            root = env!("CARGO_MANIFEST_DIR"),
            status = status.display(),
            stty = stty.display()
        );
        let ok = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "100", "-y", "30"])
            .arg(format!("TERM=xterm-256color sh -c '{}'", script.replace('\'', "'\\''")))
            .env("TERM", "xterm-256color")
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux new-session failed");
        Tmux { socket, dir, pids: Vec::new() }
    }
    fn capture(&self) -> String {
        let o = Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p", "-t", "t"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn keys(&self, keys: &[&str]) {
        Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", "t"]).args(keys).status().unwrap();
    }
    fn display(&self, fmt: &str) -> String {
        let o =
            Command::new("tmux").args(["-L", &self.socket, "display-message", "-p", "-t", "t", fmt]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
    fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let s = self.capture();
            if ok(&s) {
                return s;
            }
            if t0.elapsed() > timeout {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Tmux {
    /// Waits for the pane's command to exit; its exit status.
    fn exit_status(&self) -> String {
        let status = self.dir.join("status");
        wait_until("the console to exit", Duration::from_secs(30), || status.exists());
        std::fs::read_to_string(&status).unwrap_or_default().trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
        for &p in &self.pids {
            kill9(p);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The conductor process under the pane's shell.
fn conductor_pid(t: &Tmux) -> i32 {
    let shell: i32 = t.display("#{pane_pid}").parse().unwrap();
    let t0 = Instant::now();
    loop {
        if let Some(p) = children(shell).into_iter().find(|&p| cmdline(p).contains("conduct")) {
            return p;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no conductor process under the pane");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/conduct/e2e-{name}.toml")).display().to_string()
}

#[test]
fn console_at_100x30_keys_and_clean_quit() {
    let report = std::env::temp_dir().join(format!("rtc-conduct-tmux-report-{}", std::process::id()));
    let cmd = format!("{BIN} conduct --backend local {} --report-dir {}", fixture("emulated"), report.display());
    let mut t = Tmux::start("main", &cmd);
    let conductor = conductor_pid(&t);
    // The first stage starts once the replica is ready; a capture can catch a frame half
    // drawn, so the wait is for everything the screen must show.
    let wanted = [
        "e2e",
        "LOCAL · emulated GPU",
        "SLO p95 < 100 ms",
        "Pods ready",
        "p95 ms SLO 100",
        "RPS off",
        "HPA gpu-media",
        "Notes · warm",
        "Warm-up notes",
        "next: peak",
        "kubectl",
    ];
    t.wait_for("stage 1 and every panel", Duration::from_secs(60), |s| {
        s.contains("Stage 1/3: warm") && wanted.iter().all(|w| s.contains(w))
    });
    let replicas: Vec<i32> = children(conductor).into_iter().filter(|&p| cmdline(p).contains(" serve ")).collect();
    assert!(!replicas.is_empty(), "no replica child process");
    t.pids.extend(replicas.iter().copied());

    t.keys(&["?"]);
    t.wait_for("the help", Duration::from_secs(20), |s| {
        ["Keys (? or Esc closes)", "next stage", "pause / resume the load"].iter().all(|w| s.contains(w))
    });
    t.keys(&["?"]);
    t.wait_for("the help to close", Duration::from_secs(20), |s| !s.contains("Keys (? or Esc closes)"));

    t.keys(&["Space"]);
    t.wait_for("stage 2", Duration::from_secs(20), |s| s.contains("Stage 2/3: peak") && s.contains("next: cool"));

    // load running: the offered rate shows 10 before the pause
    t.wait_for("offered 10 rps", Duration::from_secs(20), |s| s.contains("RPS off 10 "));
    t.keys(&["p"]);
    t.wait_for("the pause", Duration::from_secs(20), |s| s.contains("PAUSED"));
    t.wait_for("offered rate 0", Duration::from_secs(20), |s| s.contains("RPS off 0 "));

    // `q` stops the load at once and the replicas with it; how long that takes on a loaded
    // machine is not asserted (the exit itself, the replicas gone and the terminal are).
    t.keys(&["q"]);
    assert_eq!(t.exit_status(), "0", "exit status");
    for p in &replicas {
        assert!(!alive(*p), "replica {p} still running after quit");
    }
    assert!(!alive(conductor));
    // the terminal is back in cooked mode and on the main screen
    let stty = std::fs::read_to_string(t.dir.join("stty")).unwrap_or_default();
    assert!(
        stty.contains(" icanon") && stty.contains(" echo") && !stty.contains("-icanon"),
        "terminal not restored: {stty}"
    );
    assert_eq!(t.display("#{alternate_on}"), "0", "still on the alternate screen");
    // the report was written on the way out
    assert!(
        report.join("timeline.csv").exists()
            && report.join("summary.json").exists()
            && report.join("timeline.png").exists()
    );
    let _ = std::fs::remove_dir_all(&report);
}

#[test]
fn dead_prometheus_shows_stale_on_screen() {
    let report = std::env::temp_dir().join(format!("rtc-conduct-tmux-prom-{}", std::process::id()));
    // A port nothing listens on: bound, then released.
    let dead = support::free_port();
    let cmd = format!(
        "{BIN} conduct --backend local {} --prometheus http://127.0.0.1:{dead} --report-dir {}",
        fixture("cpu"),
        report.display()
    );
    let mut t = Tmux::start("prom", &cmd);
    let conductor = conductor_pid(&t);
    t.pids.extend(children(conductor));
    // The p95 chart's title says STALE as soon as its series has a gap, which can come a
    // frame before the footer's METRICS STALE: wait for the footer itself.
    let s = t
        .wait_for("METRICS STALE", Duration::from_secs(60), |s| s.contains("METRICS STALE") && s.contains("Stage 1/3"));
    assert!(s.contains("METRICS STALE"), "{s}");
    // still alive and drawing a few seconds later
    std::thread::sleep(Duration::from_secs(3));
    assert!(alive(conductor), "the console died");
    let s2 = t.capture();
    assert!(s2.contains("HPA") && s2.contains("STALE"), "{s2}");
    t.keys(&["q"]);
    assert_eq!(t.exit_status(), "0");
    let _ = std::fs::remove_dir_all(&report);
}

#[test]
fn replay_on_screen_is_labelled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conduct/report");
    let cmd = format!("{BIN} conduct --replay {} --replay-speed 5", dir.display());
    let t = Tmux::start("replay", &cmd);
    // A capture can catch a frame half drawn: wait for every panel, not for the first.
    t.wait_for("the replay's panels", Duration::from_secs(20), |s| {
        ["REPLAY", "Pods ready", "HPA", "Notes"].iter().all(|w| s.contains(w))
    });
    t.keys(&["q"]);
    assert_eq!(t.exit_status(), "0");
}
