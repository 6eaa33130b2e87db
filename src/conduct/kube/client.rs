//! Connecting to a cluster: kubeconfig (`$KUBECONFIG` or `~/.kube/config`), `--context`,
//! `--namespace`, and a bounded first contact so an unreachable server fails fast with its
//! address, never a hang.
use std::path::PathBuf;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::kubectl::Kubectl;

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

/// Resolves the context and server without touching the network.
pub fn resolve(target: &KubeTarget) -> Result<(Kubeconfig, String, String), ConnectError> {
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
    let server = kc
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone())
        .ok_or_else(|| ConnectError::BadConfig {
            context: context.clone(),
            detail: format!("cluster {cluster_name:?} has no server URL in the kubeconfig"),
        })?;
    Ok((kc, context, server))
}

/// Builds a client for the target and checks the API server answers (`/version`) within
/// [`CONNECT_BUDGET`].
pub async fn connect(target: &KubeTarget) -> Result<Connected, ConnectError> {
    let (kc, context, server) = resolve(target)?;
    let opts = KubeConfigOptions { context: Some(context.clone()), ..Default::default() };
    let mut config = Config::from_custom_kubeconfig(kc, &opts)
        .await
        .map_err(|e| ConnectError::BadConfig { context: context.clone(), detail: e.to_string() })?;
    config.connect_timeout = Some(Duration::from_secs(4));
    // No read timeout: watches are long requests (kube-runtime's watcher has its own idle timeout).
    let client = Client::try_from(config)
        .map_err(|e| ConnectError::BadConfig { context: context.clone(), detail: e.to_string() })?;
    let context_flag = target.context.clone();
    let kubectl = Kubectl::new(context_flag.as_deref(), "default").cluster_info();
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
        let (_, ctx, server) = resolve(&t).unwrap();
        assert_eq!((ctx.as_str(), server.as_str()), ("demo", "https://127.0.0.1:1"));
        let t = KubeTarget { kubeconfig: Some(p), context: Some("staging".into()), ..Default::default() };
        assert_eq!(resolve(&t).unwrap().1, "staging");
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
}
