//! Where the memory budget comes from: `--memory-budget`, else the container's cgroup limit
//! (v2 `memory.max`, v1 `memory.limit_in_bytes`) minus a headroom, else a share of the
//! machine's memory. Read once at start-up; the choice and its reason are logged and shown
//! on `/`.
use std::fmt;
use std::path::{Path, PathBuf};

const MIB: u64 = 1 << 20;
/// Kept free below a cgroup limit: the kernel charges the pod's socket buffers and page cache
/// to the same limit, and the allocator holds some memory it has not given back yet.
pub const HEADROOM_SHARE: f64 = 0.10;
pub const MIN_HEADROOM: u64 = 64 * MIB;
/// Without a cgroup limit the service takes this share of the machine's memory.
pub const MACHINE_SHARE: f64 = 0.5;

/// Where the budget came from, for the log and `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetSource {
    /// `--memory-budget` / `RTC_MEMORY_BUDGET`.
    Flag,
    /// A cgroup memory limit (`file` holds `limit` bytes); the budget leaves the headroom.
    Cgroup { file: PathBuf, limit: u64 },
    /// No cgroup limit: a share of `MemTotal`.
    Machine { total: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetChoice {
    pub bytes: u64,
    pub source: BudgetSource,
}

impl fmt::Display for BudgetChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: u64| b / MIB;
        match &self.source {
            BudgetSource::Flag => write!(f, "{} MiB from --memory-budget", mib(self.bytes)),
            BudgetSource::Cgroup { file, limit } => write!(
                f,
                "{} MiB: the cgroup limit of {} MiB ({}) minus {} MiB headroom",
                mib(self.bytes),
                mib(*limit),
                file.display(),
                mib(limit - self.bytes)
            ),
            BudgetSource::Machine { total } => write!(
                f,
                "{} MiB: no cgroup memory limit, so {:.0} % of the machine's {} MiB",
                mib(self.bytes),
                MACHINE_SHARE * 100.0,
                mib(*total)
            ),
        }
    }
}

/// The budget for this process: the flag when given, else what the system says.
pub fn resolve(flag: Option<u64>) -> BudgetChoice {
    if let Some(bytes) = flag {
        return BudgetChoice { bytes, source: BudgetSource::Flag };
    }
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    from_system(Path::new("/sys/fs/cgroup"), &proc_cgroup, &meminfo)
}

/// The budget from a cgroup file system mounted at `root`, this process's `/proc/self/cgroup`
/// and `/proc/meminfo`. Separate from [`resolve`] so fixtures can stand in for the system.
pub fn from_system(root: &Path, proc_cgroup: &str, meminfo: &str) -> BudgetChoice {
    let total = mem_total(meminfo).unwrap_or(4096 * MIB);
    match cgroup_limit(root, proc_cgroup) {
        // A limit above the machine's memory (v1 writes 2^63 rounded to a page for "none")
        // limits nothing.
        Some((file, limit)) if limit < total => {
            BudgetChoice { bytes: budget_under(limit), source: BudgetSource::Cgroup { file, limit } }
        }
        _ => BudgetChoice { bytes: (total as f64 * MACHINE_SHARE) as u64, source: BudgetSource::Machine { total } },
    }
}

/// The budget under a memory limit of `limit` bytes: the limit less the headroom.
pub fn budget_under(limit: u64) -> u64 {
    let headroom = ((limit as f64 * HEADROOM_SHARE) as u64).max(MIN_HEADROOM).min(limit / 2);
    limit - headroom
}

fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The tightest memory limit on this process's cgroup and its ancestors: v2 first (the
/// `0::` line), then v1's memory controller.
fn cgroup_limit(root: &Path, proc_cgroup: &str) -> Option<(PathBuf, u64)> {
    let mut v2 = None;
    let mut v1 = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_string());
        }
    }
    let v2_limit = v2.and_then(|p| tightest(root, &p, "memory.max"));
    v2_limit.or_else(|| v1.and_then(|p| tightest(&root.join("memory"), &p, "memory.limit_in_bytes")))
}

/// Walk from `base/path` up to `base`, reading `file` in each directory; the smallest
/// numeric value wins (`max` means none). In a container with its own cgroup namespace the
/// path is `/` and the limit sits in `base` itself.
fn tightest(base: &Path, path: &str, file: &str) -> Option<(PathBuf, u64)> {
    let mut dir = base.join(path.trim_start_matches('/'));
    let mut best: Option<(PathBuf, u64)> = None;
    loop {
        let candidate = dir.join(file);
        if let Some(limit) = std::fs::read_to_string(&candidate).ok().and_then(|s| s.trim().parse::<u64>().ok()) {
            if best.as_ref().is_none_or(|(_, b)| limit < *b) {
                best = Some((candidate, limit));
            }
        }
        if dir == base || !dir.pop() || !dir.starts_with(base) {
            return best;
        }
    }
}

/// A size in bytes: a number with an optional unit. Binary units (`Ki` … `Ei`, with or
/// without a trailing `B`) are powers of 1024, as Kubernetes writes memory limits; `k`/`K`,
/// `M` … `E` (optionally with `B`) are powers of 1000.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let expected = "expected bytes with an optional unit, e.g. 1GiB, 512Mi, 800M or 1073741824";
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a size; {expected}"))?;
    // Kubernetes' suffixes, with an optional trailing `B` (and `K` for `k`, as people write it).
    let written = unit.trim();
    let unit = written.strip_suffix('B').unwrap_or(written);
    let unit = if unit == "K" { "k" } else { unit };
    let bytes = match crate::quantity::scale(unit) {
        Some(scale @ crate::quantity::Scale::Multiply(_)) => scale.apply(value),
        _ => return Err(format!("`{written}` in `{text}` is not a unit; {expected}")),
    };
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("`{text}` is too large; {expected}"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cgroup").join(name)
    }

    const MEMINFO: &str = "MemTotal:       16384000 kB\nMemFree:         1000000 kB\n";

    #[test]
    fn a_cgroup_v2_limit_gives_the_budget_less_the_headroom() {
        // A pod's container under cgroup v2 with its own cgroup namespace: `0::/`, and
        // memory.max holding the container's 1 GiB limit.
        let choice = from_system(&fixture("v2-pod"), "0::/\n", MEMINFO);
        assert_eq!(choice.source, BudgetSource::Cgroup { file: fixture("v2-pod/memory.max"), limit: 1 << 30 });
        assert_eq!(choice.bytes, (1u64 << 30) - 107_374_182, "1 GiB minus 10 %");
        assert!(choice.to_string().contains("cgroup limit of 1024 MiB"), "{choice}");
    }

    #[test]
    fn the_tightest_ancestor_wins_and_max_means_no_limit() {
        // Nested: the pod slice limits 768 MiB, the container's own file says `max`.
        let choice = from_system(&fixture("v2-nested"), "0::/pod/container\n", MEMINFO);
        assert_eq!(choice.source, BudgetSource::Cgroup { file: fixture("v2-nested/pod/memory.max"), limit: 768 << 20 });
        assert_eq!(choice.bytes, (768u64 << 20) - (76.8 * 1048576.0) as u64);
        // `max` everywhere: a share of the machine.
        let choice = from_system(&fixture("v2-nested"), "0::/unlimited\n", MEMINFO);
        assert_eq!(choice.source, BudgetSource::Machine { total: 16_384_000 * 1024 });
        assert_eq!(choice.bytes, 16_384_000 * 512);
    }

    #[test]
    fn cgroup_v1_is_read_and_its_no_limit_value_ignored() {
        let lines = "4:memory:/kubepods/pod1\n0::/\n";
        let choice = from_system(&fixture("v1"), lines, MEMINFO);
        assert_eq!(
            choice.source,
            BudgetSource::Cgroup { file: fixture("v1/memory/kubepods/pod1/memory.limit_in_bytes"), limit: 512 << 20 }
        );
        assert_eq!(choice.bytes, (512 << 20) - MIN_HEADROOM, "the headroom is at least 64 MiB");
        let choice = from_system(&fixture("v1"), "4:memory:/unlimited\n", MEMINFO);
        assert!(matches!(choice.source, BudgetSource::Machine { .. }), "{choice}");
    }

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        for (text, bytes) in [
            ("1073741824", 1 << 30),
            ("1GiB", 1 << 30),
            ("1Gi", 1 << 30),
            ("512Mi", 512 << 20),
            ("1.5GiB", 3 << 29),
            ("800M", 800_000_000),
            ("64 MiB", 64 << 20),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for bad in ["", "GiB", "1 parsec", "-1Gi", "1e400"] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.contains("e.g. 1GiB"), "{bad}: {e}");
        }
    }
}
