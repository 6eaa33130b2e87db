//! Which proxy the API server is reached through, decided the way kubectl decides it, so a
//! laptop where kubectl works behind a corporate proxy works here too.
//!
//! kubectl (client-go) takes the kubeconfig cluster's `proxy-url` when it is set
//! (`tools/clientcmd/client_config.go`, `ClientConfig`: `clientConfig.Proxy = http.ProxyURL(u)`),
//! else `http.ProxyFromEnvironment` (`transport/cache.go`, `buildHTTPTransport`), which is
//! golang.org/x/net's `http/httpproxy`: `HTTPS_PROXY` for https servers, `HTTP_PROXY` for http
//! ones, upper case before lower case, never for `localhost` or a loopback address, and not for
//! hosts `NO_PROXY` names. kube-client 5 reads `HTTPS_PROXY` for every server and ignores
//! `NO_PROXY` and loopback (`kube-client/src/config/file_loader.rs`, `ConfigLoader::proxy_url`),
//! so the console decides here and hands kube-client the result.
use std::net::IpAddr;

use http::Uri;

/// The proxy variables of the environment (read once; tests build their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    pub https_proxy: Option<String>,
    pub http_proxy: Option<String>,
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    /// `HTTPS_PROXY`/`https_proxy`, `HTTP_PROXY`/`http_proxy`, `NO_PROXY`/`no_proxy`: the upper
    /// case name first, empty values skipped (httpproxy's `FromEnvironment` / `getEnvAny`).
    pub fn from_process() -> Self {
        let any = |names: [&str; 2]| names.iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()));
        ProxyEnv {
            https_proxy: any(["HTTPS_PROXY", "https_proxy"]),
            http_proxy: any(["HTTP_PROXY", "http_proxy"]),
            no_proxy: any(["NO_PROXY", "no_proxy"]),
        }
    }
}

/// Where the proxy decision came from, for the error that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxySource {
    Kubeconfig,
    Env(&'static str),
}

impl std::fmt::Display for ProxySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxySource::Kubeconfig => f.write_str("the kubeconfig's proxy-url"),
            ProxySource::Env(v) => write!(f, "${v}"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{source_name} = {value:?}: {problem} (allowed: http://, https:// or socks5:// with a host, e.g. http://proxy.corp:3128)")]
pub struct ProxyError {
    pub source_name: ProxySource,
    pub value: String,
    pub problem: String,
}

/// The proxy for `server` (the API server URL), or `None` to connect directly.
pub fn proxy_for(server: &Uri, kubeconfig_proxy: Option<&str>, env: &ProxyEnv) -> Result<Option<Uri>, ProxyError> {
    if let Some(p) = kubeconfig_proxy.filter(|p| !p.is_empty()) {
        // client-go's parseProxyURL: the scheme must be given and be one of the three.
        let err = |problem: &str| ProxyError {
            source_name: ProxySource::Kubeconfig,
            value: p.to_string(),
            problem: problem.into(),
        };
        let uri: Uri = p.parse().map_err(|_| err("not a URL"))?;
        return match uri.scheme_str() {
            Some("http" | "https" | "socks5") if uri.host().is_some() => Ok(Some(uri)),
            Some("http" | "https" | "socks5") => Err(err("no host")),
            _ => Err(err("unsupported scheme")),
        };
    }
    let https = server.scheme_str() == Some("https");
    let (var, value) =
        if https { ("HTTPS_PROXY", env.https_proxy.as_deref()) } else { ("HTTP_PROXY", env.http_proxy.as_deref()) };
    let Some(value) = value else { return Ok(None) };
    let Some(host) = server.host() else { return Ok(None) };
    let port = server.port_u16().unwrap_or(if https { 443 } else { 80 });
    if !use_proxy(host, port, env.no_proxy.as_deref().unwrap_or("")) {
        return Ok(None);
    }
    let err =
        |problem: &str| ProxyError { source_name: ProxySource::Env(var), value: value.into(), problem: problem.into() };
    // httpproxy's parseProxy: a bare `host[:port]` means http://.
    let parsed = match value.parse::<Uri>() {
        Ok(u) if u.scheme().is_some() && u.host().is_some() => u,
        _ => format!("http://{value}").parse::<Uri>().map_err(|_| err("not a URL"))?,
    };
    match parsed.scheme_str() {
        Some("http" | "https" | "socks5") => Ok(Some(parsed)),
        _ => Err(err("unsupported scheme")),
    }
}

/// httpproxy's `useProxy` with its `NO_PROXY` matchers (`config.init`): `*` matches all; IP
/// addresses and CIDR ranges match IP hosts; `foo.com` matches it and its subdomains,
/// `.foo.com` and `*.foo.com` subdomains only; any entry may carry `:port`.
fn use_proxy(host: &str, port: u16, no_proxy: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    if host == "localhost" {
        return false;
    }
    let ip: Option<IpAddr> = host.parse().ok();
    if ip.is_some_and(|ip| ip.is_loopback()) {
        return false;
    }
    let port = port.to_string();
    for entry in no_proxy.split(',') {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            continue;
        }
        if entry == "*" {
            return false;
        }
        if let Some((net, bits)) = entry.split_once('/') {
            if let (Some(ip), Ok(net), Ok(bits)) = (ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
                if in_cidr(ip, net, bits) {
                    return false;
                }
            }
            continue;
        }
        let (ehost, eport) = split_host_port(&entry);
        if ehost.is_empty() {
            continue;
        }
        let port_ok = eport.is_none_or(|p| p == port);
        if let Ok(eip) = ehost.parse::<IpAddr>() {
            if ip == Some(eip) && port_ok {
                return false;
            }
            continue;
        }
        if ip.is_some() {
            continue; // domain entries never match an IP host
        }
        let ehost = ehost.strip_prefix('*').unwrap_or(ehost);
        // `.foo.com` matches subdomains only; `foo.com` matches itself as well.
        let subdomain_match = if ehost.starts_with('.') {
            host.ends_with(ehost)
        } else {
            host == ehost || host.ends_with(&format!(".{ehost}"))
        };
        if subdomain_match && port_ok {
            return false;
        }
    }
    true
}

/// `host:port`, `[v6]:port` or a bare host (a bare IPv6 address has no port).
fn split_host_port(entry: &str) -> (&str, Option<&str>) {
    if let Some(rest) = entry.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (entry, None),
        };
    }
    match entry.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => (h, Some(p)),
        _ => (entry, None),
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, b, len) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32u8),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128u8),
        _ => return false,
    };
    if bits > len {
        return false;
    }
    let shift = (len - bits) as u32;
    if shift >= 128 {
        return true;
    }
    (a >> shift) == (b >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(https: Option<&str>, http: Option<&str>, no: Option<&str>) -> ProxyEnv {
        ProxyEnv {
            https_proxy: https.map(String::from),
            http_proxy: http.map(String::from),
            no_proxy: no.map(String::from),
        }
    }

    fn choose(server: &str, kc: Option<&str>, e: &ProxyEnv) -> Option<String> {
        proxy_for(&server.parse().unwrap(), kc, e).unwrap().map(|u| u.to_string())
    }

    #[test]
    fn the_kubeconfig_proxy_url_wins_even_for_loopback() {
        // client-go: http.ProxyURL(u) proxies every request, whatever the host.
        let e = env(Some("http://env:1"), None, Some("*"));
        assert_eq!(
            choose("https://127.0.0.1:6443", Some("socks5://corp:1080"), &e).as_deref(),
            Some("socks5://corp:1080/")
        );
        let err = proxy_for(&"https://a:1".parse().unwrap(), Some("ftp://corp:21"), &e).unwrap_err().to_string();
        assert!(err.contains("proxy-url") && err.contains("ftp://corp:21") && err.contains("socks5://"), "{err}");
    }

    #[test]
    fn the_environment_follows_the_servers_scheme() {
        let e = env(Some("http://secure:3128"), Some("http://plain:3128"), None);
        assert_eq!(choose("https://api.corp:6443", None, &e).as_deref(), Some("http://secure:3128/"));
        assert_eq!(choose("http://api.corp:8080", None, &e).as_deref(), Some("http://plain:3128/"));
        assert_eq!(choose("https://api.corp", None, &env(None, Some("http://plain:1"), None)), None);
        // A bare host:port means http:// (httpproxy's parseProxy).
        assert_eq!(
            choose("https://api.corp", None, &env(Some("proxy.corp:3128"), None, None)).as_deref(),
            Some("http://proxy.corp:3128/")
        );
        let err = proxy_for(&"https://api.corp".parse().unwrap(), None, &env(Some("gopher://x:1"), None, None));
        assert!(err.unwrap_err().to_string().contains("$HTTPS_PROXY"));
    }

    #[test]
    fn loopback_and_localhost_are_never_proxied_from_the_environment() {
        let e = env(Some("http://p:1"), Some("http://p:1"), None);
        for s in ["https://127.0.0.1:6443", "https://localhost:6443", "https://[::1]:6443", "http://127.0.0.5"] {
            assert_eq!(choose(s, None, &e), None, "{s}");
        }
    }

    #[test]
    fn no_proxy_entries_match_as_httpproxy_does() {
        let p = Some("http://p:1");
        let cases: &[(&str, &str, bool)] = &[
            ("https://api.corp.example:6443", "*", false),
            ("https://api.corp.example:6443", "corp.example", false),
            ("https://corp.example:6443", "corp.example", false),
            ("https://corp.example:6443", ".corp.example", true),
            ("https://api.corp.example:6443", ".corp.example", false),
            ("https://api.corp.example:6443", "*.corp.example", false),
            ("https://notcorp.example:6443", "corp.example", true),
            ("https://api.corp.example:6443", "corp.example:443", true),
            ("https://api.corp.example:6443", "corp.example:6443", false),
            ("https://API.Corp.Example:6443", " other.io , CORP.example ", false),
            ("https://10.1.2.3:6443", "10.0.0.0/8", false),
            ("https://11.1.2.3:6443", "10.0.0.0/8", true),
            ("https://10.1.2.3:6443", "10.1.2.3", false),
            ("https://10.1.2.3:6443", "10.1.2.3:443", true),
            ("https://10.1.2.3:6443", "1.2.3", true),
            ("https://[fd00::5]:6443", "fd00::/8", false),
            ("https://[fd00::5]:6443", "[fd00::5]:6443", false),
            ("https://api.corp.example:6443", "", true),
        ];
        for (server, no, proxied) in cases {
            let got = choose(server, None, &env(p, None, Some(no)));
            assert_eq!(got.is_some(), *proxied, "{server} with NO_PROXY={no:?}");
        }
    }
}
