//! Parsing and validating `/process` requests. Everything here runs before any work is
//! done, and every error names the parameter and what is allowed.
use std::collections::HashSet;

use crate::device::RawFormat;
use crate::effects::{ColorGrade, Effect, EffectParams, DEFAULT_SIGMA, EFFECT_NAMES, MAX_SHIFT, MAX_SIGMA};

pub const MIN_SIDE: usize = 16;
pub const MAX_SIDE: usize = 7680;
pub const MAX_PIXELS: usize = 7680 * 4320;
pub const MAX_ITERS: u32 = 50;
pub const MAX_BODY_BYTES: usize = 64 << 20;
pub const DEFAULT_PIXELS: (usize, usize) = (1280, 720);
pub const DEFAULT_EFFECTS: [Effect; 3] = [Effect::Blur, Effect::Translate, Effect::Color];
const KNOWN_PARAMS: &str = "pixels, iters, effects, seed, sigma, dx, dy, format";

/// A rejected parameter: answered as 400 `{error, param, detail}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{param}: {detail}")]
pub struct ParamError {
    pub param: String,
    pub detail: String,
}

fn bad(param: &str, detail: impl Into<String>) -> ParamError {
    ParamError { param: param.to_string(), detail: detail.into() }
}

/// A validated `/process` request.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessRequest {
    pub width: usize,
    pub height: usize,
    pub iters: u32,
    pub effects: Vec<Effect>,
    pub params: EffectParams,
    pub seed: u32,
    /// Set when the body carries a raw frame to process.
    pub format: Option<RawFormat>,
}

impl ProcessRequest {
    pub fn pixels(&self) -> String {
        format!("{}x{}", self.width, self.height)
    }

    /// The exact body size a raw request must have.
    pub fn expected_body_len(&self) -> Option<usize> {
        self.format.map(|f| f.frame_len(self.width, self.height))
    }
}

/// Parse the query string of `/process` (without the leading `?`).
pub fn parse_query(query: &str) -> Result<ProcessRequest, ParamError> {
    let mut seen = HashSet::new();
    let mut req = ProcessRequest {
        width: DEFAULT_PIXELS.0,
        height: DEFAULT_PIXELS.1,
        iters: 1,
        effects: DEFAULT_EFFECTS.to_vec(),
        params: EffectParams::default(),
        seed: 0,
        format: None,
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if !seen.insert(key.to_string()) {
            return Err(bad(&key, "given more than once"));
        }
        let value = value.trim();
        match &*key {
            "pixels" => (req.width, req.height) = parse_pixels(value)?,
            "iters" => req.iters = parse_iters(value)?,
            "effects" => req.effects = parse_effects(value)?,
            "seed" => {
                req.seed =
                    value.parse().map_err(|_| bad("seed", format!("`{value}` is not an integer in 0..=4294967295")))?
            }
            "sigma" => req.params.sigma = parse_float("sigma", value, 0.0, MAX_SIGMA)?,
            "dx" => req.params.dx = parse_float("dx", value, -MAX_SHIFT, MAX_SHIFT)?,
            "dy" => req.params.dy = parse_float("dy", value, -MAX_SHIFT, MAX_SHIFT)?,
            "format" => {
                req.format = Some(match value {
                    "rgba" => RawFormat::Rgba,
                    "i420" => RawFormat::I420,
                    _ => return Err(bad("format", format!("`{value}` is not a frame format; allowed: rgba, i420"))),
                })
            }
            other => return Err(bad(other, format!("unknown parameter; allowed: {KNOWN_PARAMS}"))),
        }
    }
    Ok(req)
}

fn parse_pixels(value: &str) -> Result<(usize, usize), ParamError> {
    let allowed = format!("WxH with W and H in {MIN_SIDE}..={MAX_SIDE} and W*H <= {MAX_PIXELS} (7680x4320)");
    let (w, h) = value
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.parse::<u64>().ok()?, h.parse::<u64>().ok()?)))
        .ok_or_else(|| bad("pixels", format!("`{value}` is not WxH; expected {allowed}")))?;
    let side_ok = |s: u64| (MIN_SIDE as u64..=MAX_SIDE as u64).contains(&s);
    if !side_ok(w) || !side_ok(h) {
        return Err(bad("pixels", format!("{w}x{h} is out of range; expected {allowed}")));
    }
    if w * h > MAX_PIXELS as u64 {
        return Err(bad("pixels", format!("{w}x{h} has {} pixels; expected {allowed}", w * h)));
    }
    Ok((w as usize, h as usize))
}

fn parse_iters(value: &str) -> Result<u32, ParamError> {
    match value.parse::<i64>() {
        Ok(n) if (1..=MAX_ITERS as i64).contains(&n) => Ok(n as u32),
        Ok(n) => Err(bad("iters", format!("{n} is out of range; expected an integer in 1..={MAX_ITERS}"))),
        Err(_) => Err(bad("iters", format!("`{value}` is not an integer; expected an integer in 1..={MAX_ITERS}"))),
    }
}

fn parse_effects(value: &str) -> Result<Vec<Effect>, ParamError> {
    let allowed = EFFECT_NAMES.join(", ");
    let effects = value
        .split(',')
        .map(str::trim)
        .map(|name| {
            name.parse::<Effect>()
                .map_err(|_| bad("effects", format!("unknown effect `{name}`; allowed: {allowed} (comma-separated)")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if effects.len() > 16 {
        return Err(bad("effects", "more than 16 effects in one chain"));
    }
    Ok(effects)
}

fn parse_float(param: &str, value: &str, min: f32, max: f32) -> Result<f32, ParamError> {
    match value.parse::<f32>() {
        Ok(v) if v.is_finite() && (min..=max).contains(&v) => Ok(v),
        _ => Err(bad(param, format!("`{value}` is out of range; expected a number in {min}..={max}"))),
    }
}

/// Defaults shown on `/`, so a user can see what an empty query does.
pub fn defaults_json() -> serde_json::Value {
    let grade = ColorGrade::default();
    serde_json::json!({
        "pixels": format!("{}x{}", DEFAULT_PIXELS.0, DEFAULT_PIXELS.1),
        "iters": 1,
        "effects": DEFAULT_EFFECTS.iter().map(|e| e.name()).collect::<Vec<_>>(),
        "sigma": DEFAULT_SIGMA,
        "dx": EffectParams::default().dx,
        "dy": EffectParams::default().dy,
        "color_matrix": grade.matrix,
        "gamma": grade.gamma,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> ParamError {
        parse_query(q).expect_err(q)
    }

    #[test]
    fn a_full_query_parses() {
        let r =
            parse_query("pixels=64x48&iters=3&effects=blur,bgblur&seed=9&sigma=2.5&dx=1&dy=-2&format=i420").unwrap();
        assert_eq!((r.width, r.height, r.iters, r.seed), (64, 48, 3, 9));
        assert_eq!(r.effects, vec![Effect::Blur, Effect::BgBlur]);
        assert_eq!((r.params.sigma, r.params.dx, r.params.dy), (2.5, 1.0, -2.0));
        assert_eq!(r.expected_body_len(), Some(64 * 48 + 2 * 32 * 24));
    }

    #[test]
    fn an_empty_query_takes_the_defaults() {
        let r = parse_query("").unwrap();
        assert_eq!((r.width, r.height, r.iters), (1280, 720, 1));
        assert_eq!(r.effects, DEFAULT_EFFECTS.to_vec());
        assert_eq!(r.format, None);
    }

    #[test]
    fn every_limit_is_enforced_and_named() {
        for (q, param, says) in [
            ("pixels=abc", "pixels", "not WxH"),
            ("pixels=0x0", "pixels", "out of range"),
            ("pixels=15x16", "pixels", "out of range"),
            ("pixels=100000x100000", "pixels", "out of range"),
            ("pixels=7681x16", "pixels", "out of range"),
            ("pixels=7680x7680", "pixels", "pixels; expected"),
            ("pixels=-5x10", "pixels", "not WxH"),
            ("iters=0", "iters", "1..=50"),
            ("iters=-1", "iters", "1..=50"),
            ("iters=51", "iters", "1..=50"),
            ("iters=abc", "iters", "not an integer"),
            ("effects=sepia", "effects", "unknown effect `sepia`"),
            ("effects=blur,", "effects", "unknown effect ``"),
            ("sigma=-1", "sigma", "0..=20"),
            ("sigma=NaN", "sigma", "0..=20"),
            ("sigma=21", "sigma", "0..=20"),
            ("dx=1e9", "dx", "-1000..=1000"),
            ("seed=-3", "seed", "integer"),
            ("format=png", "format", "rgba, i420"),
            ("colour=red", "colour", "unknown parameter"),
            ("iters=1&iters=2", "iters", "more than once"),
        ] {
            let e = err(q);
            assert_eq!(e.param, param, "{q}");
            assert!(e.detail.contains(says), "{q}: {}", e.detail);
        }
    }

    #[test]
    fn the_largest_allowed_frames_pass() {
        assert!(parse_query("pixels=7680x4320").is_ok());
        assert!(parse_query("pixels=16x16&iters=50&sigma=20&dx=-1000").is_ok());
        assert!(parse_query("pixels=4320x7680").is_ok());
    }
}
