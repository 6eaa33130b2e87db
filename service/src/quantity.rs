//! Kubernetes quantity suffixes (apimachinery `pkg/api/resource/suffix.go`): the one table
//! both the console (HPA targets, GPU counts) and the service (`--memory-budget`, cgroup
//! limits) read.

/// What a suffix does to the number before it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    /// `n`, `u`, `m`: a fraction. Dividing keeps `700m` exactly 0.7 (700 × 0.001 is not).
    Divide(f64),
    /// No suffix, decimal `k` … `E`, binary `Ki` … `Ei`.
    Multiply(f64),
}

/// The scale of a quantity suffix, or None when Kubernetes has no such suffix.
pub fn scale(suffix: &str) -> Option<Scale> {
    let binary = |p: i32| Scale::Multiply(1024f64.powi(p));
    Some(match suffix {
        "n" => Scale::Divide(1e9),
        "u" => Scale::Divide(1e6),
        "m" => Scale::Divide(1e3),
        "" => Scale::Multiply(1.0),
        "k" => Scale::Multiply(1e3),
        "M" => Scale::Multiply(1e6),
        "G" => Scale::Multiply(1e9),
        "T" => Scale::Multiply(1e12),
        "P" => Scale::Multiply(1e15),
        "E" => Scale::Multiply(1e18),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        _ => return None,
    })
}

impl Scale {
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Scale::Divide(d) => x / d,
            Scale::Multiply(m) => x * m,
        }
    }
}
