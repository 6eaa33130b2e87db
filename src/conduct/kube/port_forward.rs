//! `--prometheus port-forward`: the console runs `kubectl port-forward` to Prometheus itself
//! and starts it again whenever it ends — a laptop that slept, an API server that restarted,
//! a Prometheus pod rescheduled — so the server-side charts come back on their own mid-talk
//! instead of staying stale until someone notices a dead terminal tab.
//!
//! kubectl announces a working forward with `Forwarding from 127.0.0.1:PORT -> PORT`
//! (k8s.io/client-go tools/portforward/portforward.go, `getListener`); the local
//! port is chosen once, so the URL the Prometheus poller uses never changes across restarts.
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::conduct::backoff::Backoff;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How long the first forward may take to announce itself.
pub const FIRST_FORWARD_BUDGET: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    #[error("cannot find a free local port: {0}")]
    NoPort(std::io::Error),
    #[error("`{command}` did not forward within {} s: {detail}", FIRST_FORWARD_BUDGET.as_secs())]
    NotForwarding { command: String, detail: String },
}

/// A supervised `kubectl port-forward`; dropping it stops the forward.
pub struct PortForward {
    pub url: String,
    /// Why the forward is down (until kubectl announces it again), or None while it forwards.
    down: watch::Receiver<Option<String>>,
    task: JoinHandle<()>,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        // The child is `kill_on_drop`: aborting the task that owns it ends kubectl.
        self.task.abort();
    }
}

impl PortForward {
    /// Starts `program args… LOCAL:remote_port` (`kubectl [--context C] -n NS port-forward
    /// svc/NAME`), waits for its first "Forwarding from" line, then keeps it running.
    pub async fn start(program: &str, args: &[String], remote_port: u16) -> Result<PortForward, PortForwardError> {
        let local = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(PortForwardError::NoPort)?
            .port();
        let mut argv = args.to_vec();
        argv.push(format!("{local}:{remote_port}"));
        let command = std::iter::once(program.to_string()).chain(argv.iter().cloned()).collect::<Vec<_>>().join(" ");
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        let (down_tx, down) = watch::channel(None);
        let task = tokio::spawn(supervise(program.to_string(), argv, ready_tx, down_tx));
        let pf = PortForward { url: format!("http://127.0.0.1:{local}"), down, task };
        match tokio::time::timeout(FIRST_FORWARD_BUDGET, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(pf),
            Ok(Ok(Err(detail))) => Err(PortForwardError::NotForwarding { command, detail }),
            Ok(Err(_)) => Err(PortForwardError::NotForwarding { command, detail: "the supervisor ended".into() }),
            Err(_) => Err(PortForwardError::NotForwarding { command, detail: "no \"Forwarding from\" line".into() }),
        }
    }

    /// Why the forward is down right now ("ended (exit status: 1: …); starting it again in
    /// 2 s"), for the console's status line; None while it forwards.
    pub fn down(&self) -> Option<String> {
        self.down.borrow().clone()
    }
}

/// Runs the forward again each time it ends, after 1, 2, 4 … 10 s (back to 1 s after a run
/// of a minute or more). Its lines go to stderr, which the TUI sends to console-stderr.log,
/// and why it is down to `down`, which the status line shows.
async fn supervise(
    program: String,
    argv: Vec<String>,
    ready: oneshot::Sender<Result<(), String>>,
    down: watch::Sender<Option<String>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let child = Command::new(&program)
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(format!("cannot run {program}: {e}")));
                    return;
                }
                let wait = backoff.failed();
                let why = format!("cannot run {program} port-forward: {e}; trying again in {} s", wait.as_secs());
                eprintln!("rtc-demo conduct: {why}");
                down.send_replace(Some(why));
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let mut lines = child.stdout.take().map(|o| BufReader::new(o).lines());
        let mut stderr = child.stderr.take();
        let mut err_text = String::new();
        let status = loop {
            tokio::select! {
                // Once stdout has ended only the exit is awaited (never a ready branch in a loop).
                line = async { match lines.as_mut() { Some(l) => l.next_line().await, None => std::future::pending().await } } => match line {
                    Ok(Some(l)) if l.starts_with("Forwarding from") => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(Ok(()));
                        }
                        down.send_replace(None);
                    }
                    Ok(Some(_)) => {}
                    _ => lines = None,
                },
                status = child.wait() => break status,
            }
        };
        if let Some(mut e) = stderr.take() {
            let _ = e.read_to_string(&mut err_text).await;
        }
        let why = match status {
            Ok(s) => format!(
                "{s}{}",
                if err_text.trim().is_empty() { String::new() } else { format!(": {}", err_text.trim()) }
            ),
            Err(e) => e.to_string(),
        };
        if let Some(r) = ready.take() {
            let _ = r.send(Err(format!("ended before forwarding ({why})")));
            return;
        }
        // A forward that held a minute counts as healed: its end starts the schedule over.
        if started.elapsed() >= Duration::from_secs(60) {
            backoff.succeeded();
        }
        let wait = backoff.failed();
        let why = format!("ended ({why}); starting it again in {} s", wait.as_secs());
        eprintln!("rtc-demo conduct: Prometheus port-forward {why}");
        down.send_replace(Some(why));
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in for kubectl (no API server can run here): it announces the forward in
    /// kubectl's words, serves HTTP on the local port for a second, then ends as a dropped
    /// forward does. Every start is counted in a file.
    const STAND_IN: &str = r#"#!/bin/sh
echo start >> STARTS_FILE
for last; do :; done
port="${last%%:*}"
echo "Forwarding from 127.0.0.1:$port -> ${last##*:}"
exec python3 -c '
import http.server, socketserver, sys, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
socketserver.TCPServer.allow_reuse_address = True
s = socketserver.TCPServer(("127.0.0.1", int(sys.argv[1])), H)
threading.Timer(1.0, s.shutdown).start()
s.serve_forever()
' "$port"
"#;

    async fn get(url: &str) -> bool {
        let Ok(mut s) = tokio::net::TcpStream::connect(url.trim_start_matches("http://")).await else { return false };
        use tokio::io::AsyncWriteExt;
        let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf).await;
        buf.starts_with("HTTP/1.0 200")
    }

    #[tokio::test]
    async fn a_dropped_forward_is_started_again_on_the_same_port() {
        let dir = std::env::temp_dir().join(format!("rtc-pf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubectl = dir.join("kubectl");
        let starts = dir.join("starts");
        std::fs::write(&kubectl, STAND_IN.replace("STARTS_FILE", starts.to_str().unwrap())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&kubectl, std::fs::Permissions::from_mode(0o755)).unwrap();
        let args: Vec<String> =
            ["-n", "monitoring", "port-forward", "svc/prometheus-operated"].map(String::from).to_vec();
        let pf = PortForward::start(kubectl.to_str().unwrap(), &args, 9090).await.unwrap_or_else(|e| panic!("{e}"));
        let mut up = false;
        for _ in 0..20 {
            up = get(&pf.url).await;
            if up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "the first forward answers at {}", pf.url);
        // It ends after a second; the supervisor starts it again after 1 s, same URL.
        let deadline = Instant::now() + Duration::from_secs(15);
        let count = || std::fs::read_to_string(&starts).unwrap_or_default().lines().count();
        assert_eq!(pf.down(), None, "forwarding");
        let mut told = None;
        while count() < 2 && Instant::now() < deadline {
            told = told.or(pf.down());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(count() >= 2, "started again");
        let told = told.expect("the drop was told to the console while the forward was down");
        assert!(told.starts_with("ended (exit status: 0)") && told.ends_with("starting it again in 1 s"), "{told}");
        let mut again = false;
        while !again && Instant::now() < deadline {
            again = get(&pf.url).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(again, "answers again at the same URL {}", pf.url);
        assert_eq!(pf.down(), None, "forwarding again");
        drop(pf);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_forward_that_never_starts_says_why() {
        let args = vec![
            "-c".to_string(),
            "echo 'error: services \"prometheus-operated\" not found' >&2; exit 1".to_string(),
            "--".to_string(),
        ];
        let e = PortForward::start("sh", &args, 9090).await.err().expect("fails").to_string();
        assert!(e.contains("ended before forwarding") && e.contains("not found"), "{e}");
    }
}
