//! Child processes as Linux's /proc shows them.
use std::time::{Duration, Instant};

/// A process's state letter and parent pid (`/proc/PID/stat`), or None once it is gone.
fn stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces: the fields start after the last `)`.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Running (not exited, not a zombie waiting to be reaped).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// Live processes whose parent is `ppid`.
pub fn children(ppid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|&pid| stat(pid).is_some_and(|(state, parent)| parent == ppid && state != 'Z'))
        .collect()
}

/// The command line, arguments joined by spaces.
pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// SIGKILL, ignoring a process already gone.
pub fn kill9(pid: i32) {
    let _ =
        std::process::Command::new("kill").args(["-9", &pid.to_string()]).stderr(std::process::Stdio::null()).status();
}

/// Polls `done` every 20 ms until it holds; panics naming `what` after `limit` (a deadline
/// generous enough for a loaded machine: the tests wait on events, never assert a duration).
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
