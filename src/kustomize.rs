//! A small kustomize renderer for the project's own `manifests/` folders.
//!
//! It supports the three `kustomization.yaml` fields our manifests use, with kustomize's
//! meaning, so that `render(dir)` gives the same objects as `kubectl kustomize dir`
//! (and so `kubectl apply -k dir`); `tests/kustomize_render.rs` checks that on every
//! folder under `manifests/`:
//!
//! - `resources`: files (multi-document YAML, `kind: List` flattened) and folders (each
//!   with its own `kustomization.yaml`, rendered recursively), in the order listed.
//! - `namespace`: set on every namespaced object of this folder's output, replacing any
//!   namespace it had. Cluster-scoped kinds are left alone: the built-in ones (Namespace,
//!   ClusterRole, ...) and Gatekeeper's `ConstraintTemplate` and constraints
//!   (`constraints.gatekeeper.sh/*`). Kustomize does not know that those two CRDs are
//!   cluster-scoped and would set a namespace on them, so our folders that hold them set
//!   no `namespace`.
//! - `images`: `name` / `newName` / `newTag` / `digest`, applied to every container and
//!   init container image of this folder's output whose name (without tag or digest) is
//!   `name` ([`ImageOverride`]); the console's `--image` goes through the same code.
//!
//! Anything else in a kustomization (patches, generators, components, labels, ...) is an
//! error rather than silently ignored, as are objects without `apiVersion`, `kind` or
//! `metadata.name`, two objects with the same identity, and folders that include
//! themselves. Every error names the file and what is wrong.
//!
//! `apiVersion`/`kind` of the kustomization itself are accepted
//! (`kustomize.config.k8s.io/v1beta1`, `Kustomization`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::image_ref::ImageRef;

/// The file names kustomize looks for in a folder, in its order of preference.
pub const KUSTOMIZATION_FILES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// What can go wrong while rendering; each variant names the file (or folder) involved.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{}: no kustomization.yaml (or kustomization.yml, Kustomization) in this folder", dir.display())]
    NoKustomization { dir: PathBuf },
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid YAML: {source}", path.display())]
    Yaml {
        path: PathBuf,
        // Boxed: the parser's error is large, and every Result of this module carries it.
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    #[error("{}: {source}", path.display())]
    Shape {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: field `{field}` is not supported (only `resources`, `namespace` and `images` are)", path.display())]
    UnsupportedField { path: PathBuf, field: String },
    #[error("{}: field `{field}`: {problem}", path.display())]
    BadField { path: PathBuf, field: String, problem: String },
    #[error("{}: document {index}: {problem}", path.display())]
    BadObject { path: PathBuf, index: usize, problem: String },
    #[error("{}: resource `{entry}` does not exist", kustomization.display())]
    MissingResource { kustomization: PathBuf, entry: String },
    #[error("{}: object {id} is already defined (first in {})", second.display(), first.display())]
    Duplicate { id: String, first: PathBuf, second: PathBuf },
    #[error("{}: folder includes itself through `resources`", dir.display())]
    Cycle { dir: PathBuf },
}

/// Renders the kustomize folder `dir` into its objects, in the order the resources list
/// them (folders expanded in place).
pub fn render(dir: &Path) -> Result<Vec<Value>, RenderError> {
    let mut stack = Vec::new();
    let objects = render_dir(dir, &mut stack)?;
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    let mut out = Vec::with_capacity(objects.len());
    for (source, object) in objects {
        let id = identity(&object);
        if let Some(first) = seen.get(&id) {
            return Err(RenderError::Duplicate { id, first: first.clone(), second: source });
        }
        seen.insert(id, source);
        out.push(object);
    }
    Ok(out)
}

/// Whether objects of this apiVersion/kind live outside namespaces.
pub fn is_cluster_scoped(api_version: &str, kind: &str) -> bool {
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    match group {
        "constraints.gatekeeper.sh" => return true,
        "templates.gatekeeper.sh" => return kind == "ConstraintTemplate",
        _ => {}
    }
    matches!(
        kind,
        "Namespace"
            | "Node"
            | "PersistentVolume"
            | "ClusterRole"
            | "ClusterRoleBinding"
            | "CustomResourceDefinition"
            | "StorageClass"
            | "PriorityClass"
            | "IngressClass"
            | "RuntimeClass"
            | "CSIDriver"
            | "CSINode"
            | "VolumeAttachment"
            | "APIService"
            | "MutatingWebhookConfiguration"
            | "ValidatingWebhookConfiguration"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding"
            | "FlowSchema"
            | "PriorityLevelConfiguration"
            | "CertificateSigningRequest"
            | "ClusterTriggerAuthentication"
    )
}

/// `group/kind/namespace/name`, the identity kustomize refuses to see twice.
fn identity(object: &Value) -> String {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let kind = object["kind"].as_str().unwrap_or("");
    let ns = object["metadata"]["namespace"].as_str().unwrap_or("");
    let name = object["metadata"]["name"].as_str().unwrap_or("");
    format!("{group}/{kind}/{ns}/{name}")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Kustomization {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    images: Vec<ImageOverride>,
}

/// One entry of a kustomization's `images` (kustomize `api/types/image.go`, `Image`): the
/// images named `name` (matched without tag and digest, `api/internal/image/image.go`
/// `IsImageMatched`) get `newName` for their name; `newTag` alone drops the old digest,
/// `digest` alone drops the old tag, both give `name:newTag@digest`, neither keeps what the
/// image had (`api/filters/imagetag/updater.go`, `SetImageValue`, kustomize ≥ v4.5.3).
/// `tagSuffix` is not supported.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageOverride {
    pub name: String,
    #[serde(default)]
    pub new_name: Option<String>,
    #[serde(default)]
    pub new_tag: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

impl ImageOverride {
    /// The override that makes every `name` image exactly `image` (one without tag or
    /// digest gets `latest`, as a container runtime reads it).
    pub fn replacing(name: &str, image: &ImageRef) -> Self {
        ImageOverride {
            name: name.to_string(),
            new_name: Some(image.name.clone()),
            new_tag: image.tag.clone().or_else(|| image.digest.is_none().then(|| "latest".to_string())),
            digest: image.digest.clone(),
        }
    }

    /// The image `image` becomes, or None when it is not one of `name`'s.
    pub fn apply_to(&self, image: &str) -> Option<String> {
        let (name, tag, digest) = crate::image_ref::split(image);
        if name != self.name {
            return None;
        }
        let mut out = self.new_name.as_deref().unwrap_or(name).to_string();
        // An override's tag or digest replaces both of the image's; with neither, they stay.
        let (tag, digest) = if self.new_tag.is_some() || self.digest.is_some() {
            (self.new_tag.as_deref(), self.digest.as_deref())
        } else {
            (tag, digest)
        };
        if let Some(t) = tag {
            out.push(':');
            out.push_str(t);
        }
        if let Some(d) = digest {
            out.push('@');
            out.push_str(d);
        }
        Some(out)
    }

    /// Applies the override to every container and init container image in the objects.
    pub fn apply<'a>(&self, objects: impl IntoIterator<Item = &'a mut Value>) {
        for_each_image(objects, |image| {
            if let Some(new) = image.as_str().and_then(|i| self.apply_to(i)) {
                *image = Value::String(new);
            }
        });
    }
}

/// Calls `f` on every `containers[].image` and `initContainers[].image` in the objects (a
/// Deployment's, a Job's, a CronJob's, a bare Pod's), as kustomize's image transformer finds them.
pub fn for_each_image<'a>(objects: impl IntoIterator<Item = &'a mut Value>, mut f: impl FnMut(&mut Value)) {
    fn walk(v: &mut Value, f: &mut dyn FnMut(&mut Value)) {
        match v {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if key == "containers" || key == "initContainers" {
                        for c in child.as_array_mut().into_iter().flatten() {
                            if let Some(image) = c.get_mut("image") {
                                f(image);
                            }
                        }
                    }
                    walk(child, f);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, f)),
            _ => {}
        }
    }
    objects.into_iter().for_each(|obj| walk(obj, &mut f));
}

/// The distinct container images the objects run, sorted.
pub fn images_of(objects: &[Value]) -> Vec<String> {
    let mut copy = objects.to_vec();
    let mut out = std::collections::BTreeSet::new();
    for_each_image(copy.iter_mut(), |i| {
        out.insert(i.as_str().unwrap_or_default().to_string());
    });
    out.into_iter().collect()
}

fn kustomization_file(dir: &Path) -> Result<PathBuf, RenderError> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| RenderError::NoKustomization { dir: dir.to_path_buf() })
}

fn read(path: &Path) -> Result<String, RenderError> {
    std::fs::read_to_string(path).map_err(|source| RenderError::Io { path: path.to_path_buf(), source })
}

fn parse_kustomization(path: &Path) -> Result<Kustomization, RenderError> {
    let text = read(path)?;
    // Look at the keys first, so an unsupported field gets its own clear error.
    let raw: Value = serde_saphyr::from_str(&text)
        .map_err(|source| RenderError::Yaml { path: path.to_path_buf(), source: Box::new(source) })?;
    let Value::Object(map) = &raw else {
        return Err(RenderError::BadField {
            path: path.to_path_buf(),
            field: "(top level)".into(),
            problem: "expected a mapping".into(),
        });
    };
    for key in map.keys().map(String::as_str) {
        if !matches!(key, "apiVersion" | "kind" | "resources" | "namespace" | "images") {
            return Err(RenderError::UnsupportedField { path: path.to_path_buf(), field: key.to_string() });
        }
    }
    let k: Kustomization =
        serde_json::from_value(raw).map_err(|source| RenderError::Shape { path: path.to_path_buf(), source })?;
    if let Some(kind) = &k.kind {
        if kind != "Kustomization" {
            return Err(RenderError::BadField {
                path: path.to_path_buf(),
                field: "kind".into(),
                problem: format!("expected `Kustomization`, found `{kind}`"),
            });
        }
    }
    if let Some(v) = &k.api_version {
        if !v.starts_with("kustomize.config.k8s.io/") {
            return Err(RenderError::BadField {
                path: path.to_path_buf(),
                field: "apiVersion".into(),
                problem: format!("expected `kustomize.config.k8s.io/v1beta1`, found `{v}`"),
            });
        }
    }
    if let Some(ns) = &k.namespace {
        if !is_dns_label(ns) {
            return Err(RenderError::BadField {
                path: path.to_path_buf(),
                field: "namespace".into(),
                problem: format!("`{ns}` is not a valid namespace name (RFC 1123 label)"),
            });
        }
    }
    for (i, image) in k.images.iter().enumerate() {
        let field = format!("images[{i}]");
        let bad = |problem: String| RenderError::BadField { path: path.to_path_buf(), field: field.clone(), problem };
        ImageRef::parse(&image.name).map_err(|e| bad(format!("name: {e}")))?;
        if let Some(n) = &image.new_name {
            ImageRef::parse(n).map_err(|e| bad(format!("newName: {e}")))?;
        }
        // What an image named `name` becomes must be a reference (tag and digest checked).
        let result = image.apply_to(&image.name).unwrap_or_default();
        ImageRef::parse(&result).map_err(|e| bad(e.to_string()))?;
    }
    Ok(k)
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn render_dir(dir: &Path, stack: &mut Vec<PathBuf>) -> Result<Vec<(PathBuf, Value)>, RenderError> {
    let canonical = dir.canonicalize().map_err(|source| RenderError::Io { path: dir.to_path_buf(), source })?;
    if stack.contains(&canonical) {
        return Err(RenderError::Cycle { dir: dir.to_path_buf() });
    }
    let kfile = kustomization_file(dir)?;
    let k = parse_kustomization(&kfile)?;
    stack.push(canonical);
    let mut out = Vec::new();
    for entry in &k.resources {
        let path = dir.join(entry);
        if path.is_dir() {
            out.extend(render_dir(&path, stack)?);
        } else if path.is_file() {
            for object in read_objects(&path)? {
                out.push((path.clone(), object));
            }
        } else {
            return Err(RenderError::MissingResource { kustomization: kfile.clone(), entry: entry.clone() });
        }
    }
    stack.pop();
    for image in &k.images {
        image.apply(out.iter_mut().map(|(_, o)| o));
    }
    if let Some(ns) = &k.namespace {
        for (_, object) in &mut out {
            let api_version = object["apiVersion"].as_str().unwrap_or("").to_string();
            let kind = object["kind"].as_str().unwrap_or("").to_string();
            if !is_cluster_scoped(&api_version, &kind) {
                object["metadata"]["namespace"] = Value::String(ns.clone());
            }
        }
    }
    Ok(out)
}

/// Reads every object of a multi-document YAML file (empty documents skipped,
/// `kind: List` flattened), checking each has apiVersion, kind and metadata.name.
pub fn read_objects(path: &Path) -> Result<Vec<Value>, RenderError> {
    let text = read(path)?;
    let mut out = Vec::new();
    // Empty documents are skipped: `index` counts the documents that hold something.
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .map_err(|source| RenderError::Yaml { path: path.to_path_buf(), source: Box::new(source) })?;
    for (index, json) in docs.into_iter().filter(|d| !d.is_null()).enumerate() {
        if json["kind"] == "List" && json["items"].is_array() {
            for item in json["items"].as_array().into_iter().flatten() {
                check_object(path, index + 1, item)?;
                out.push(item.clone());
            }
        } else {
            check_object(path, index + 1, &json)?;
            out.push(json);
        }
    }
    Ok(out)
}

fn check_object(path: &Path, index: usize, object: &Value) -> Result<(), RenderError> {
    let bad = |problem: &str| RenderError::BadObject { path: path.to_path_buf(), index, problem: problem.to_string() };
    if !object.is_object() {
        return Err(bad("expected a Kubernetes object (a mapping)"));
    }
    for field in ["apiVersion", "kind"] {
        match object.get(field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => return Err(bad(&format!("missing or empty `{field}`"))),
        }
    }
    match object.get("metadata").and_then(|m| m.get("name")) {
        Some(Value::String(s)) if !s.is_empty() => Ok(()),
        _ => Err(bad("missing or empty `metadata.name`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, text: &str) {
        fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
        fs::write(dir.join(name), text).unwrap();
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rtc-kustomize-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn nested_folders_namespace_and_order() {
        let d = tmp("nested");
        write(&d, "a/kustomization.yaml", "resources: [objs.yaml]\n");
        write(
            &d,
            "a/objs.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: rtc}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: other}\n",
        );
        write(
            &d,
            "b/kustomization.yaml",
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: rtc\nresources:\n- ../a\n- ct.yaml\n",
        );
        write(
            &d,
            "b/ct.yaml",
            "apiVersion: templates.gatekeeper.sh/v1\nkind: ConstraintTemplate\nmetadata: {name: t}\n---\napiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sAllowedRepos\nmetadata: {name: r}\n",
        );
        let objs = render(&d.join("b")).unwrap();
        let kinds: Vec<_> = objs.iter().map(|o| o["kind"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["Namespace", "ConfigMap", "ConstraintTemplate", "K8sAllowedRepos"]);
        assert!(objs[0]["metadata"].get("namespace").is_none());
        assert_eq!(objs[1]["metadata"]["namespace"], "rtc");
        assert!(objs[2]["metadata"].get("namespace").is_none());
        assert!(objs[3]["metadata"].get("namespace").is_none());
    }

    #[test]
    fn images_override_as_kustomize_does() {
        let d = tmp("images");
        write(
            &d,
            "app/objs.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      initContainers: [{name: i, image: 'ghcr.io/rtc-demo/rtc-demo:0.1.0'}]\n      containers:\n      - {name: a, image: 'ghcr.io/rtc-demo/rtc-demo:0.1.0-cpu'}\n      - {name: b, image: 'ghcr.io/rtc-demo/rtc-demo-other:1'}\n",
        );
        write(&d, "app/kustomization.yaml", "resources: [objs.yaml]\n");
        write(
            &d,
            "o/kustomization.yaml",
            "resources: [../app]\nimages:\n- name: ghcr.io/rtc-demo/rtc-demo\n  newName: registry.example:5000/me/rtc-demo\n",
        );
        let objs = render(&d.join("o")).unwrap();
        let pod = &objs[0]["spec"]["template"]["spec"];
        // newName alone keeps each image's tag; other repositories are left alone.
        assert_eq!(pod["initContainers"][0]["image"], "registry.example:5000/me/rtc-demo:0.1.0");
        assert_eq!(pod["containers"][0]["image"], "registry.example:5000/me/rtc-demo:0.1.0-cpu");
        assert_eq!(pod["containers"][1]["image"], "ghcr.io/rtc-demo/rtc-demo-other:1");

        let digest = format!("sha256:{}", "0".repeat(64));
        let o = |tag: Option<&str>, dg: Option<&str>| ImageOverride {
            name: "a/b".into(),
            new_name: None,
            new_tag: tag.map(Into::into),
            digest: dg.map(Into::into),
        };
        assert_eq!(o(Some("2"), None).apply_to(&format!("a/b:1@{digest}")).as_deref(), Some("a/b:2"));
        assert_eq!(o(Some("2"), Some(&digest)).apply_to("a/b:1").unwrap(), format!("a/b:2@{digest}"));
        assert_eq!(o(None, Some(&digest)).apply_to("a/b:1").unwrap(), format!("a/b@{digest}"));
        assert_eq!(o(None, None).apply_to("a/b").as_deref(), Some("a/b"));
        assert_eq!(o(Some("2"), None).apply_to("a/bc:1"), None);
        assert_eq!(o(Some("2"), None).apply_to("host:5000/a/b:1"), None);
        let exact = ImageOverride::replacing("a/b", &ImageRef::parse("reg.example/c").unwrap());
        assert_eq!(exact.apply_to("a/b:1").as_deref(), Some("reg.example/c:latest"));

        write(&d, "bad/kustomization.yaml", "resources: []\nimages:\n- name: a/b\n  newTag: '-x'\n");
        let e = render(&d.join("bad")).unwrap_err().to_string();
        assert!(e.contains("field `images[0]`") && e.contains("a tag starts"), "{e}");
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let d = tmp("errors");
        write(&d, "p/kustomization.yaml", "resources: [x.yaml]\npatches: []\n");
        let e = render(&d.join("p")).unwrap_err().to_string();
        assert!(e.contains("kustomization.yaml") && e.contains("`patches`"), "{e}");

        write(&d, "m/kustomization.yaml", "resources: [nope.yaml]\n");
        let e = render(&d.join("m")).unwrap_err().to_string();
        assert!(e.contains("nope.yaml") && e.contains("does not exist"), "{e}");

        write(&d, "n/kustomization.yaml", "resources: [o.yaml]\n");
        write(&d, "n/o.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n");
        let e = render(&d.join("n")).unwrap_err().to_string();
        assert!(e.contains("o.yaml") && e.contains("metadata.name"), "{e}");

        write(&d, "y/kustomization.yaml", "resources: [o.yaml]\n");
        write(&d, "y/o.yaml", "apiVersion: v1\nkind: [\n");
        let e = render(&d.join("y")).unwrap_err().to_string();
        assert!(e.contains("o.yaml") && e.contains("invalid YAML"), "{e}");

        write(&d, "dup/kustomization.yaml", "resources: [o.yaml, o.yaml]\n");
        write(&d, "dup/o.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n");
        let e = render(&d.join("dup")).unwrap_err().to_string();
        assert!(e.contains("already defined") && e.contains("ConfigMap"), "{e}");

        write(&d, "cyc/kustomization.yaml", "resources: [.]\n");
        let e = render(&d.join("cyc")).unwrap_err().to_string();
        assert!(e.contains("includes itself"), "{e}");

        write(&d, "ns/kustomization.yaml", "namespace: Bad_NS\n");
        let e = render(&d.join("ns")).unwrap_err().to_string();
        assert!(e.contains("namespace") && e.contains("Bad_NS"), "{e}");

        let e = render(&d.join("absent")).unwrap_err().to_string();
        assert!(e.contains("absent"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }
}
