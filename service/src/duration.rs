//! Human durations as used in flags and scenario files: `500ms`, `90s`, `2m`, `1m30s`, `1.5s`, `1h`.
use std::time::Duration;

/// What a duration string may look like, quoted in every error.
pub const DURATION_FORMS: &str = "a duration such as 500ms, 90s, 2m, 1m30s or 1.5s (units: ms, s, m, h)";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a duration: expected {DURATION_FORMS}")]
pub struct DurationError {
    pub input: String,
}

pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError { input: input.to_string() };
    let s = input.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += value * seconds_per_unit;
    }
    if !total.is_finite() || total > 366.0 * 86400.0 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Renders a duration the way `parse_duration` reads it back (`1m30s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// clap value parser for duration flags.
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn rejects_nonsense_with_the_expected_form() {
        for bad in ["", "10", "10 parsecs", "s", "-5s", "1..2s", "5d", "1e400s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.to_string().contains("expected a duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["250ms", "5s", "2m", "1m30s"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
