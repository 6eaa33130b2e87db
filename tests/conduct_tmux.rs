//! End-to-end: the console in a real terminal (tmux) at 100×30, with real replicas.
//! Needs tmux (scripts/setup/test-deps.sh installs it).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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
            "cd {root}; {cmd}; echo $? > {status}.tmp; mv {status}.tmp {status}; stty -a > {stty}; sleep 60",
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

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
        for &p in &self.pids {
            unsafe_kill(p);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn unsafe_kill(pid: i32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).stderr(std::process::Stdio::null()).status();
}

/// Pids whose parent is `ppid` (from /proc).
fn children(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let after = &stat[stat.rfind(')').unwrap_or(0) + 1..];
        let f: Vec<&str> = after.split_whitespace().collect();
        if f.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(ppid) {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s[s.rfind(')').unwrap_or(0) + 1..].trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
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

fn fixture(port: u16) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/conduct/e2e-{port}.toml")).display().to_string()
}

#[test]
fn console_at_100x30_keys_and_clean_quit() {
    let report = std::env::temp_dir().join(format!("rtc-conduct-tmux-report-{}", std::process::id()));
    let cmd = format!("{BIN} conduct --backend local {} --report-dir {}", fixture(28110), report.display());
    let mut t = Tmux::start("main", &cmd);
    let conductor = conductor_pid(&t);
    // The first stage starts once the replica is ready.
    let s = t.wait_for("stage 1 to start", Duration::from_secs(60), |s| s.contains("Stage 1/3: warm"));
    for want in [
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
    ] {
        assert!(s.contains(want), "{want:?} not on screen:\n{s}");
    }
    let replicas: Vec<i32> = children(conductor).into_iter().filter(|&p| cmdline(p).contains(" serve ")).collect();
    assert!(!replicas.is_empty(), "no replica child process");
    t.pids.extend(replicas.iter().copied());

    t.keys(&["?"]);
    let s = t.wait_for("the help", Duration::from_secs(5), |s| s.contains("Keys (? or Esc closes)"));
    assert!(s.contains("next stage") && s.contains("pause / resume the load"), "{s}");
    t.keys(&["?"]);
    t.wait_for("the help to close", Duration::from_secs(5), |s| !s.contains("Keys (? or Esc closes)"));

    t.keys(&["Space"]);
    t.wait_for("stage 2", Duration::from_secs(5), |s| s.contains("Stage 2/3: peak") && s.contains("next: cool"));

    // load running: the offered rate shows 10 before the pause
    t.wait_for("offered 10 rps", Duration::from_secs(10), |s| s.contains("RPS off 10 "));
    t.keys(&["p"]);
    t.wait_for("the pause", Duration::from_secs(5), |s| s.contains("PAUSED"));
    t.wait_for("offered rate 0", Duration::from_secs(10), |s| s.contains("RPS off 0 "));

    let status = t.dir.join("status");
    let t0 = Instant::now();
    t.keys(&["q"]);
    while !status.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = t0.elapsed();
    let code = std::fs::read_to_string(&status).unwrap_or_default();
    assert_eq!(code.trim(), "0", "exit status");
    assert!(took < Duration::from_secs(1), "q took {took:?} to exit (must be under 1 s)");
    for p in &replicas {
        assert!(!alive(*p), "replica {p} still running after quit");
    }
    assert!(!alive(conductor));
    // the terminal is back in cooked mode and on the main screen
    std::thread::sleep(Duration::from_millis(300));
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
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cmd = format!(
        "{BIN} conduct --backend local {} --prometheus http://127.0.0.1:{dead} --report-dir {}",
        fixture(28130),
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
    let status = t.dir.join("status");
    t.keys(&["q"]);
    let t0 = Instant::now();
    while !status.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&status).unwrap_or_default().trim(), "0");
    let _ = std::fs::remove_dir_all(&report);
}

#[test]
fn replay_on_screen_is_labelled() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conduct/report");
    let cmd = format!("{BIN} conduct --replay {} --replay-speed 5", dir.display());
    let t = Tmux::start("replay", &cmd);
    let s = t.wait_for("REPLAY", Duration::from_secs(20), |s| s.contains("REPLAY") && s.contains("Pods ready"));
    assert!(s.contains("HPA") && s.contains("Notes"), "{s}");
    let status = t.dir.join("status");
    t.keys(&["q"]);
    let t0 = Instant::now();
    while !status.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&status).unwrap_or_default().trim(), "0");
}
