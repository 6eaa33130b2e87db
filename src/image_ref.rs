//! Container image references: parsed and checked with the grammar container runtimes use
//! (distribution/reference, `reference.go` and `regexp.go`), and set on rendered objects
//! the way kustomize's `images` override does (`kustomize::ImageOverride`).
//!
//! ```text
//! reference       := name [ ":" tag ] [ "@" digest ]
//! name            := [ domain "/" ] path-component [ "/" path-component ]*
//! domain          := domain-component [ "." domain-component ]* [ ":" port ]
//! path-component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag             := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest          := algorithm ":" hex{32,}     (algorithm: [A-Za-z][A-Za-z0-9]* joined by + . _ -)
//! ```
//! The first component is the registry when it holds a `.` or a `:`, or is `localhost`
//! (distribution's `splitDockerDomain`); the path after it is at most 255 characters
//! (`RepositoryNameTotalLengthMax`).

use std::fmt;

/// The image every manifest and the load Job name until the presenter sets their own: a
/// repository nobody can pull (README "Build and push the image").
pub const PLACEHOLDER_NAME: &str = "ghcr.io/rtc-demo/rtc-demo";

/// What the grammar allows, said in every error.
const ALLOWED: &str = "expected [REGISTRY[:PORT]/]PATH[:TAG][@ALGORITHM:HEX], e.g. \
registry.example.com:5000/team/rtc-demo:0.2.0: lowercase path components of a-z 0-9 \
joined by . _ __ or -, a tag of up to 128 characters A-Z a-z 0-9 _ . - (not starting \
with . or -), a digest such as sha256: and at least 32 hex digits";

/// An image reference split into its parts (as distribution/reference gives them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry and path, without tag or digest (`registry.example.com/team/rtc-demo`).
    pub name: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Why a reference is not one; `at` is the 1-based character where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image reference {input:?}: {problem} (at character {at}); {ALLOWED}")]
pub struct ImageRefError {
    pub input: String,
    pub at: usize,
    pub problem: String,
}

impl ImageRef {
    pub fn parse(input: &str) -> Result<ImageRef, ImageRefError> {
        let fail =
            |at: usize, problem: &str| ImageRefError { input: input.into(), at: at + 1, problem: problem.into() };
        if input.is_empty() {
            return Err(fail(0, "empty"));
        }
        if let Some(i) = input.find(|c: char| c.is_whitespace()) {
            return Err(fail(i, "contains whitespace"));
        }
        let (name, tag, digest) = split(input);
        if let Some(d) = digest {
            let at = input.len() - d.len();
            check_digest(d).map_err(|(i, p)| fail(at + i, p))?;
        }
        if let Some(t) = tag {
            check_tag(t).map_err(|(j, p)| fail(name.len() + 1 + j, p))?;
        }
        if name.is_empty() {
            return Err(fail(0, "no repository name"));
        }
        let mut offset = 0;
        let mut components = name.split('/').peekable();
        let first = components.peek().copied().unwrap_or("");
        let has_domain = name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
        if has_domain {
            check_domain(first).map_err(|(i, p)| fail(i, p))?;
            offset = first.len() + 1;
            components.next();
        }
        if name.len() - offset > 255 {
            return Err(fail(offset + 255, "repository path longer than 255 characters"));
        }
        for c in components {
            check_path_component(c).map_err(|(i, p)| fail(offset + i, p))?;
            offset += c.len() + 1;
        }
        Ok(ImageRef { name: name.to_string(), tag: tag.map(str::to_string), digest: digest.map(str::to_string) })
    }

    /// Whether this is the placeholder no registry serves.
    pub fn is_placeholder(&self) -> bool {
        self.name == PLACEHOLDER_NAME
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// A reference split as written, unchecked: name, tag (after the `:` that follows the last
/// `/`; one before it is the registry's port) and digest (after `@`), without their
/// separators (as kustomize's `api/internal/image/image.go` `Split` does). The one splitter:
/// `ImageRef::parse` checks what it returns, and kustomize's
/// image override matches names with it.
pub fn split(input: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (input, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].find(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..]), digest),
        None => (rest, None, digest),
    }
}

type Problem = (usize, &'static str);

fn check_domain(d: &str) -> Result<(), Problem> {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let mut at = 0;
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err((at, "invalid registry host (labels of A-Z a-z 0-9 and inner -, joined by .)"));
        }
        at += label.len() + 1;
    }
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err((host.len() + 1, "the registry port must be digits"));
        }
    }
    Ok(())
}

fn check_path_component(c: &str) -> Result<(), Problem> {
    if c.is_empty() {
        return Err((0, "empty path component (// or a trailing /)"));
    }
    let b = c.as_bytes();
    if let Some(i) = b.iter().position(|x| x.is_ascii_uppercase()) {
        return Err((i, "repository name must be lowercase"));
    }
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if !alnum(b[0]) {
        return Err((0, "a path component starts with a-z or 0-9"));
    }
    if !alnum(b[b.len() - 1]) {
        return Err((b.len() - 1, "a path component ends with a-z or 0-9"));
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or a run of `-`, between alphanumerics.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1
                }
            }
            _ => return Err((i, "character not allowed in a repository name")),
        }
        if !b.get(i).copied().is_some_and(alnum) {
            return Err((start, "separators (. _ __ -) stand alone between a-z 0-9"));
        }
    }
    Ok(())
}

fn check_tag(t: &str) -> Result<(), Problem> {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    match t.as_bytes() {
        [] => Err((0, "empty tag after :")),
        [first, ..] if !word(*first) => Err((0, "a tag starts with A-Z a-z 0-9 or _")),
        b if b.len() > 128 => Err((128, "tag longer than 128 characters")),
        b => match b.iter().position(|&x| !(word(x) || x == b'.' || x == b'-')) {
            Some(i) => Err((i, "character not allowed in a tag")),
            None => Ok(()),
        },
    }
}

fn check_digest(d: &str) -> Result<(), Problem> {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return Err((0, "a digest is ALGORITHM:HEX (e.g. sha256:…)"));
    };
    let components_ok = algorithm.split(['+', '.', '_', '-']).all(|c| {
        c.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) && c.bytes().all(|x| x.is_ascii_alphanumeric())
    });
    if !components_ok {
        return Err((0, "invalid digest algorithm"));
    }
    if hex.len() < 32 || !hex.bytes().all(|x| x.is_ascii_hexdigit()) {
        return Err((algorithm.len() + 1, "a digest's value is at least 32 hex digits"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_as_registries_take_them() {
        let r = ImageRef::parse("registry.example.com:5000/team/rtc-demo:0.2.0-cpu").unwrap();
        assert_eq!(r.name, "registry.example.com:5000/team/rtc-demo");
        assert_eq!(r.tag.as_deref(), Some("0.2.0-cpu"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("localhost:5000/rtc-demo@{d}")).unwrap();
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some(d.as_str())));
        for ok in
            ["rtc-demo", "docker.io/library/rtc_demo:v1", "a/b__c/d--e.f:T_1.x", "ghcr.io/rtc-demo/rtc-demo:0.1.0"]
        {
            assert_eq!(ImageRef::parse(ok).unwrap().to_string(), ok);
        }
        assert!(ImageRef::parse(PLACEHOLDER_NAME).unwrap().is_placeholder());
    }

    #[test]
    fn malformed_references_say_what_and_where() {
        for (bad, at, problem) in [
            ("", 1, "empty"),
            ("Registry.example/Team/app", 18, "lowercase"),
            ("ghcr.io/team/app:", 18, "empty tag"),
            ("ghcr.io/team/app:-x", 18, "a tag starts"),
            ("ghcr.io//app", 9, "empty path component"),
            ("ghcr.io/team/app@sha256:abc", 25, "32 hex"),
            ("ghcr.io:80a/app", 9, "port"),
            ("team/app..x:1", 9, "separators"),
            ("team/app name", 9, "whitespace"),
        ] {
            let e = ImageRef::parse(bad).unwrap_err();
            assert_eq!(e.at, at, "{bad}: {e}");
            assert!(e.problem.contains(problem), "{bad}: {e}");
            assert!(e.to_string().contains("expected [REGISTRY[:PORT]/]PATH[:TAG]"), "{e}");
        }
        assert!(ImageRef::parse(&format!("a:{}", "t".repeat(129))).is_err());
        assert!(ImageRef::parse(&format!("reg.example/{}", "p".repeat(255))).is_ok());
        assert!(ImageRef::parse(&format!("reg.example/{}", "p".repeat(256))).unwrap_err().problem.contains("255"));
    }
}
