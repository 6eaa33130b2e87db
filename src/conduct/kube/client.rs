//! Connecting to a cluster: kubeconfig (`$KUBECONFIG` or `~/.kube/config`), `--context`,
//! `--namespace`, and a bounded first contact so an unreachable server fails fast with its
//! address, never a hang.
use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::kubectl::Kubectl;
use super::proxy::{proxy_for, ProxyEnv};

/// How long the first contact with the API server may take before we say it is unreachable.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(6);

/// Where the cluster is and what to call it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeTarget {
    /// `--kubeconfig` (else `$KUBECONFIG`, else `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// `--context` (else the kubeconfig's current context).
    pub context: Option<String>,
    /// `--namespace` (else the scenario's `manifests.namespace`).
    pub namespace: Option<String>,
}

/// A connected client with what the header and the kubectl panel show.
#[derive(Clone)]
pub struct Connected {
    pub client: Client,
    /// The context actually used (named, or the current one).
    pub context: String,
    /// The API server URL of that context.
    pub server: String,
    /// `Some(flag)` when the user named the context; kubectl commands then carry `--context`.
    pub context_flag: Option<String>,
}

impl Connected {
    pub fn kubectl(&self, namespace: &str) -> Kubectl {
        Kubectl::new(self.context_flag.as_deref(), namespace)
    }
}

/// Why we could not talk to the cluster. Every message names the context/server and says what
/// to check, with the kubectl command that shows the same thing.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no kubeconfig: {detail} (set $KUBECONFIG or --kubeconfig, or use --backend local)")]
    NoKubeconfig { detail: String },
    #[error("context {wanted:?} is not in the kubeconfig; contexts there: {}; see `kubectl config get-contexts`", list_or_none(.available))]
    UnknownContext { wanted: String, available: Vec<String> },
    #[error("the kubeconfig has no current context; pass --context (one of: {}); see `kubectl config get-contexts`", list_or_none(.available))]
    NoCurrentContext { available: Vec<String> },
    #[error("context {context:?}: {detail}")]
    BadConfig { context: String, detail: String },
    #[error("cluster unreachable: API server {server} (context {context:?}): {detail}; check with `{kubectl}`")]
    Unreachable { server: String, context: String, detail: String, budget: Duration, kubectl: String },
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// Is a cluster configured on this machine (a kubeconfig with a current context)? Used to pick
/// the backend when `--backend` is not given: cluster configured ⇒ kube, else local.
pub fn cluster_configured(kubeconfig: Option<&std::path::Path>) -> bool {
    read_kubeconfig(kubeconfig)
        .is_ok_and(|k| k.current_context.as_deref().is_some_and(|c| !c.is_empty()) && !k.contexts.is_empty())
}

fn read_kubeconfig(path: Option<&std::path::Path>) -> Result<Kubeconfig, ConnectError> {
    let r = match path {
        Some(p) => Kubeconfig::read_from(p),
        None => Kubeconfig::read(),
    };
    r.map_err(|e| ConnectError::NoKubeconfig { detail: e.to_string() })
}

/// The kubeconfig with the context chosen and what its cluster entry says.
pub struct Resolved {
    pub kubeconfig: Kubeconfig,
    pub context: String,
    pub server: String,
    /// The cluster entry's `proxy-url`, if any.
    pub proxy_url: Option<String>,
}

/// Resolves the context and server without touching the network.
pub fn resolve(target: &KubeTarget) -> Result<Resolved, ConnectError> {
    let kc = read_kubeconfig(target.kubeconfig.as_deref())?;
    let available: Vec<String> = kc.contexts.iter().map(|c| c.name.clone()).collect();
    let context = match &target.context {
        Some(c) if available.iter().any(|a| a == c) => c.clone(),
        Some(c) => return Err(ConnectError::UnknownContext { wanted: c.clone(), available }),
        None => match kc.current_context.clone().filter(|c| !c.is_empty()) {
            Some(c) if available.contains(&c) => c,
            Some(c) => return Err(ConnectError::UnknownContext { wanted: c, available }),
            None => return Err(ConnectError::NoCurrentContext { available }),
        },
    };
    let cluster_name = kc
        .contexts
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let cluster = kc.clusters.iter().find(|c| c.name == cluster_name).and_then(|c| c.cluster.as_ref());
    let proxy_url = cluster.and_then(|c| c.proxy_url.clone());
    let server = cluster.and_then(|c| c.server.clone()).ok_or_else(|| ConnectError::BadConfig {
        context: context.clone(),
        detail: format!("cluster {cluster_name:?} has no server URL in the kubeconfig"),
    })?;
    Ok(Resolved { kubeconfig: kc, context, server, proxy_url })
}

/// Builds a client for the target and checks the API server answers (`/version`) within
/// [`CONNECT_BUDGET`]. The proxy is chosen as kubectl chooses it ([`super::proxy`]).
pub async fn connect(target: &KubeTarget) -> Result<Connected, ConnectError> {
    connect_with(target, &ProxyEnv::from_process()).await
}

async fn connect_with(target: &KubeTarget, proxy_env: &ProxyEnv) -> Result<Connected, ConnectError> {
    let Resolved { kubeconfig: kc, context, server, proxy_url } = resolve(target)?;
    let opts = KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
    let mut config = Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| ConnectError::BadConfig { context: context.clone(), detail: e.to_string() })?;
    config.proxy_url = proxy_for(&config.cluster_url, proxy_url.as_deref(), proxy_env)
        .map_err(|e| ConnectError::BadConfig { context: context.clone(), detail: e.to_string() })?;
    config.connect_timeout = Some(Duration::from_secs(4));
    // No read timeout: watches are long requests (kube-runtime's watcher has its own idle timeout).
    let client = Client::try_from(config)
        .map_err(|e| ConnectError::BadConfig { context: context.clone(), detail: e.to_string() })?;
    let context_flag = target.context.clone();
    let kubectl = Kubectl::new(context_flag.as_deref(), "default").server_version();
    let unreachable = |detail: String| ConnectError::Unreachable {
        server: server.clone(),
        context: context.clone(),
        detail,
        budget: CONNECT_BUDGET,
        kubectl: kubectl.clone(),
    };
    match tokio::time::timeout(CONNECT_BUDGET, client.apiserver_version()).await {
        Err(_) => return Err(unreachable(format!("no answer within {}s", CONNECT_BUDGET.as_secs()))),
        Ok(Err(e)) => return Err(unreachable(super::error_text(&e))),
        Ok(Ok(_)) => {}
    }
    Ok(Connected { client, context, server, context_flag })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KC: &str = r#"apiVersion: v1
kind: Config
current-context: demo
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:1
- name: c2
  cluster: {}
contexts:
- name: demo
  context: {cluster: c1, user: u}
- name: staging
  context: {cluster: c1, user: u}
- name: broken
  context: {cluster: c2, user: u}
users:
- name: u
  user: {token: abc}
"#;

    fn write(s: &str) -> (tempdir::Dir, PathBuf) {
        let d = tempdir::Dir::new();
        let p = d.0.join("config");
        std::fs::write(&p, s).unwrap();
        (d, p)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "rtc-kube-client-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn resolves_current_and_named_contexts() {
        let (_d, p) = write(KC);
        let t = KubeTarget { kubeconfig: Some(p.clone()), ..Default::default() };
        let r = resolve(&t).unwrap();
        assert_eq!((r.context.as_str(), r.server.as_str()), ("demo", "https://127.0.0.1:1"));
        let t = KubeTarget { kubeconfig: Some(p), context: Some("staging".into()), ..Default::default() };
        assert_eq!(resolve(&t).unwrap().context, "staging");
    }

    #[test]
    fn unknown_context_lists_the_ones_that_exist() {
        let (_d, p) = write(KC);
        let t = KubeTarget { kubeconfig: Some(p), context: Some("prod".into()), ..Default::default() };
        let e = resolve(&t).err().unwrap().to_string();
        assert!(e.contains("\"prod\"") && e.contains("demo, staging, broken"), "{e}");
    }

    #[test]
    fn missing_server_and_missing_file_are_clear() {
        let (_d, p) = write(KC);
        let t = KubeTarget { kubeconfig: Some(p), context: Some("broken".into()), ..Default::default() };
        let e = resolve(&t).err().unwrap().to_string();
        assert!(e.contains("broken") && e.contains("no server URL"), "{e}");
        let t = KubeTarget { kubeconfig: Some("/nonexistent/kubeconfig".into()), ..Default::default() };
        let e = resolve(&t).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/kubeconfig") && e.contains("--backend local"), "{e}");
        assert!(!cluster_configured(Some(std::path::Path::new("/nonexistent/kubeconfig"))));
    }

    #[test]
    fn no_current_context() {
        let (_d, p) = write(&KC.replace("current-context: demo\n", ""));
        let t = KubeTarget { kubeconfig: Some(p.clone()), ..Default::default() };
        let e = resolve(&t).err().unwrap().to_string();
        assert!(e.contains("no current context") && e.contains("demo, staging"), "{e}");
        assert!(!cluster_configured(Some(&p)));
    }

    /// An API server stand-in on loopback: answers every request with a real `/version` body
    /// (the shape of `version.Info`, k8s.io/apimachinery/pkg/version/types.go).
    async fn version_server() -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = r#"{"major":"1","minor":"33","gitVersion":"v1.33.2","gitCommit":"x","gitTreeState":"clean","buildDate":"2025-06-17T18:36:53Z","goVersion":"go1.24.4","compiler":"gc","platform":"linux/amd64"}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(body.as_bytes()).await;
                });
            }
        });
        addr
    }

    /// A CONNECT proxy on loopback that tunnels every target to `upstream` (so the API server's
    /// host name needs no DNS: only the proxy can reach it) and records the targets asked for.
    async fn connect_proxy(
        upstream: std::net::SocketAddr,
    ) -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut c, _)) = l.accept().await {
                let seen = s2.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut byte = [0u8; 1];
                    while !got.ends_with(b"\r\n\r\n") {
                        match c.read(&mut byte).await {
                            Ok(1) => got.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&got).to_string();
                    let target =
                        head.strip_prefix("CONNECT ").and_then(|r| r.split(' ').next()).unwrap_or("").to_string();
                    seen.lock().unwrap().push(target);
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else { return };
                    let _ = c.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                    let _ = tokio::io::copy_bidirectional(&mut c, &mut up).await;
                });
            }
        });
        (addr, seen)
    }

    fn kubeconfig_for(server: &str, proxy_url: Option<&str>) -> String {
        let proxy = proxy_url.map(|p| format!("\n    proxy-url: {p}")).unwrap_or_default();
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: demo\nclusters:\n- name: c\n  cluster:\n    server: {server}{proxy}\ncontexts:\n- name: demo\n  context: {{cluster: c, user: u}}\nusers:\n- name: u\n  user: {{token: abc}}\n"
        )
    }

    #[tokio::test]
    async fn reaches_the_api_server_through_the_kubeconfig_proxy_url_and_https_proxy() {
        let api = version_server().await;
        let (proxy, seen) = connect_proxy(api).await;
        // A host only the proxy can resolve: connecting at all proves the tunnel was used.
        let server = "http://api.rtc-demo.invalid:6443";
        let (_d, p) = write(&kubeconfig_for(server, Some(&format!("http://{proxy}"))));
        let t = KubeTarget { kubeconfig: Some(p), ..Default::default() };
        let c = connect_with(&t, &ProxyEnv::default()).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.server, server);
        assert_eq!(seen.lock().unwrap().as_slice(), ["api.rtc-demo.invalid:6443"]);

        // The same through $HTTP_PROXY (the server is http://), as kubectl reads it.
        let (_d, p) = write(&kubeconfig_for(server, None));
        let t = KubeTarget { kubeconfig: Some(p), ..Default::default() };
        let env = ProxyEnv { http_proxy: Some(format!("http://{proxy}")), ..Default::default() };
        connect_with(&t, &env).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(seen.lock().unwrap().len(), 2);

        // NO_PROXY naming the server's domain: a direct connection, which cannot resolve it.
        let env = ProxyEnv { no_proxy: Some("localhost,.invalid".into()), ..env };
        let e = connect_with(&t, &env).await.err().expect("direct connection to an unresolvable host").to_string();
        assert!(e.contains("cluster unreachable") && e.contains(server), "{e}");
        assert_eq!(seen.lock().unwrap().len(), 2, "NO_PROXY kept the proxy out");

        // A socks5 proxy-url builds a client (kube's `socks5` feature is on); nothing listens.
        let (_d, p) = write(&kubeconfig_for(server, Some("socks5://127.0.0.1:1")));
        let t = KubeTarget { kubeconfig: Some(p), ..Default::default() };
        let e = connect_with(&t, &ProxyEnv::default()).await.err().unwrap().to_string();
        assert!(e.contains("cluster unreachable") && !e.contains("disabled feature"), "{e}");
    }
}
