//! Connecting to a cluster that is not there (SPEC §4 robustness; issue 7, done-when 3).
//! Only loopback is used: a closed port (connection refused) and a listener that accepts and
//! never answers (a black hole). The library tests pin `kube::connect`; the binary tests run
//! `rtc-demo conduct SCENARIO --backend kube` end to end.
mod support;

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rtc_demo::conduct::kube::{connect, KubeTarget};
use support::free_port;

struct TmpDir(PathBuf);
impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn kubeconfig(server: &str) -> (TmpDir, PathBuf) {
    let dir = std::env::temp_dir().join(format!("rtc-kubecli-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("config");
    let mut f = std::fs::File::create(&p).unwrap();
    write!(
        f,
        "apiVersion: v1\nkind: Config\ncurrent-context: demo\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: demo\n  context: {{cluster: c, user: u, namespace: rtc}}\n- name: staging\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user: {{token: t}}\n"
    )
    .unwrap();
    (TmpDir(dir), p)
}

#[tokio::test]
async fn connect_to_a_closed_port_fails_fast_naming_the_server() {
    let port = free_port();
    let server = format!("https://127.0.0.1:{port}");
    let (_d, p) = kubeconfig(&server);
    let t0 = Instant::now();
    let e =
        connect(&KubeTarget { kubeconfig: Some(p), ..Default::default() }).await.err().expect("must fail").to_string();
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    assert!(e.contains(&server) && e.contains("unreachable") && e.contains("kubectl version"), "{e}");
}

#[tokio::test]
async fn connect_to_a_black_hole_times_out_within_ten_seconds() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap(); // accepts (backlog), never answers
    let server = format!("https://{}", l.local_addr().unwrap());
    let (_d, p) = kubeconfig(&server);
    let t0 = Instant::now();
    let e = connect(&KubeTarget { kubeconfig: Some(p), context: Some("staging".into()), ..Default::default() })
        .await
        .err()
        .expect("must fail")
        .to_string();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(e.contains(&server) && e.contains("staging") && e.contains("kubectl --context staging version"), "{e}");
    drop(l);
}

#[tokio::test]
async fn an_unknown_context_lists_the_ones_that_exist() {
    let (_d, p) = kubeconfig("https://127.0.0.1:1");
    let e = connect(&KubeTarget { kubeconfig: Some(p), context: Some("prod".into()), ..Default::default() })
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("\"prod\"") && e.contains("demo, staging") && e.contains("kubectl config get-contexts"), "{e}");
}

/// `rtc-demo conduct` with the kube backend: exits non-zero within 10 s naming the server.
/// Needs `conduct::main` to wire `--backend kube` to `conduct::kube::connect`.
#[test]
fn conduct_with_an_unreachable_cluster_exits_within_ten_seconds() {
    let port = free_port();
    let server = format!("https://127.0.0.1:{port}");
    let (_d, p) = kubeconfig(&server);
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/keynote.toml");
    let t0 = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
        .args(["conduct", scenario, "--backend", "kube", "--headless"])
        .env("KUBECONFIG", &p)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit 0; stderr: {err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "stderr does not name the server: {err}");
}

#[test]
fn conduct_with_an_unknown_context_lists_the_contexts() {
    let (_d, p) = kubeconfig("https://127.0.0.1:1");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/keynote.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_rtc-demo"))
        .args(["conduct", scenario, "--backend", "kube", "--headless", "--context", "prod"])
        .env("KUBECONFIG", &p)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit 0; stderr: {err}");
    assert!(err.contains("prod") && err.contains("demo") && err.contains("staging"), "{err}");
}
