//! `rtc-demo load --webrtc` (or a scenario with `[request] kind = "webrtc"`): the WebRTC
//! engine's run, with the same live lines, summary, `--json` and threshold exit codes as
//! the HTTP run.
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::LoadArgs;
use crate::load::webrtc::{self, SessionPlan, WebRtcConfig, WebRtcLoad, WebRtcSecond, WebRtcSummary};
use crate::load::{Threshold, ThresholdResult};
use crate::scenario::{RequestKind, Scenario};
use rtc_service::duration::format_duration;

/// Whether these flags ask for a WebRTC run: `--webrtc`, or a scenario of sessions.
pub(super) fn wanted(args: &LoadArgs) -> anyhow::Result<bool> {
    if args.webrtc {
        return Ok(true);
    }
    let scenario_webrtc = match &args.scenario {
        Some(p) => Scenario::load(p)?.request.kind == RequestKind::Webrtc,
        None => false,
    };
    if !scenario_webrtc {
        let given = [
            ("--sessions", args.sessions.is_some()),
            ("--size", args.size.is_some()),
            ("--fps", args.fps.is_some()),
            ("--kbps", args.kbps.is_some()),
            ("--frame-timeout", args.frame_timeout.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
            anyhow::bail!("{flag} applies to WebRTC sessions (expected --webrtc with it, or a scenario with `[request] kind = \"webrtc\"`)");
        }
    }
    Ok(scenario_webrtc)
}

/// `N` or `FROM..TO` sessions.
pub(super) fn sessions_arg(s: &str) -> Result<SessionPlan, String> {
    let count = |t: &str| -> Result<usize, String> {
        match t.trim().parse::<usize>() {
            Ok(n) if n <= SessionPlan::MAX_SESSIONS => Ok(n),
            _ => Err(format!(
                "`{s}` is not a session count (expected N or FROM..TO, whole numbers in 0..={})",
                SessionPlan::MAX_SESSIONS
            )),
        }
    };
    match s.split_once("..") {
        // The ramp's length is the run's duration, set once the flags are resolved.
        Some((a, b)) => Ok(SessionPlan::Ramp { from: count(a)?, to: count(b)?, over: Duration::ZERO }),
        None => Ok(SessionPlan::Constant { sessions: count(s)? }),
    }
}

/// `WxH`.
pub(super) fn size_arg(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{s}` is not a video size (expected WxH, e.g. 640x360, each side 16..=3840)");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (usize, usize) = (w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?);
    if !(16..=3840).contains(&w) || !(16..=2160).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

struct Phase {
    name: String,
    plan: SessionPlan,
    duration: Duration,
}

struct Setup {
    config: WebRtcConfig,
    phases: Vec<Phase>,
    thresholds: Vec<Threshold>,
    label: String,
}

fn setup(args: &LoadArgs) -> anyhow::Result<Setup> {
    let scenario = args.scenario.as_ref().map(Scenario::load).transpose()?;
    let mut urls = args.urls.clone();
    let mut config = WebRtcConfig::default();
    let mut phases = Vec::new();
    let mut thresholds = Vec::new();
    let label;
    if let Some(s) = &scenario {
        if s.request.kind != RequestKind::Webrtc {
            anyhow::bail!(
                "--webrtc with scenario `{}`, whose [request] is HTTP (expected `kind = \"webrtc\"` in its [request])",
                s.name
            );
        }
        if urls.is_empty() {
            urls.extend(s.load.url.clone());
        }
        let r = &s.request;
        config.width = r.pixels.0 as usize;
        config.height = r.pixels.1 as usize;
        config.fps = r.fps;
        config.kbps = r.kbps;
        config.query = r.query();
        urls = urls.iter().map(|u| r.url_for(u)).collect();
        let stages: Vec<&crate::scenario::Stage> = match &args.stage {
            Some(name) => vec![s.stage(name)?],
            None => s.stages.iter().collect(),
        };
        for st in stages {
            let plan = st.session_plan().ok_or_else(|| anyhow::anyhow!("stage `{}` has no sessions", st.name))?;
            phases.push(Phase { name: st.name.clone(), plan, duration: st.duration });
        }
        thresholds.extend(s.thresholds.iter().cloned());
        label = format!("scenario {} (WebRTC sessions)", s.name);
    } else {
        let duration = args.duration.unwrap_or(Duration::from_secs(10));
        let plan = match args.sessions.unwrap_or(SessionPlan::Constant { sessions: 1 }) {
            SessionPlan::Ramp { from, to, .. } => SessionPlan::Ramp { from, to, over: duration },
            p => p,
        };
        label = match plan {
            SessionPlan::Constant { sessions } => format!("{sessions} WebRTC session(s)"),
            SessionPlan::Ramp { from, to, .. } => {
                format!("WebRTC sessions {from} -> {to} over {}", format_duration(duration))
            }
        };
        phases.push(Phase { name: "run".into(), plan, duration });
    }
    if urls.is_empty() {
        anyhow::bail!("no target URL (expected the service's base URL, http://HOST:PORT, or its WHIP URL http://HOST:PORT/whip?effects=blur,color)");
    }
    for u in &urls {
        let uri: Uri = u.parse().map_err(|e| {
            anyhow::anyhow!("`{u}` is not a URL: {e} (expected http://HOST:PORT or http://HOST:PORT/whip?QUERY)")
        })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            anyhow::bail!("`{u}` is not an http:// URL with a host (expected http://HOST:PORT)");
        }
        config.targets.push(uri);
    }
    if let Some((w, h)) = args.size {
        (config.width, config.height) = (w, h);
    }
    config.fps = args.fps.unwrap_or(config.fps);
    config.kbps = args.kbps.unwrap_or(config.kbps);
    config.frame_timeout = args.frame_timeout.unwrap_or(config.frame_timeout);
    if config.frame_timeout.is_zero() {
        anyhow::bail!("--frame-timeout must be positive (expected a duration such as 1s)");
    }
    config.token = args.token.clone();
    thresholds.extend(args.thresholds.iter().cloned());
    if let Some(t) = thresholds.iter().find(|t| !t.metric.is_webrtc()) {
        anyhow::bail!("threshold `{t}` judges HTTP requests (expected frame_p95<100ms, frame_loss<1%, session_fail<1% or offer_fail<5% for WebRTC sessions)");
    }
    config.plan = phases[0].plan;
    let label = format!("{label}, {}x{} at {} fps", config.width, config.height, config.fps);
    Ok(Setup { config, phases, thresholds, label })
}

#[derive(Serialize)]
struct JsonReport<'a> {
    run: &'a str,
    targets: Vec<String>,
    frame_label: &'static str,
    clip_kbps: f64,
    summary: &'a WebRtcSummary,
    seconds: Vec<&'a WebRtcSecond>,
    thresholds: &'a [ThresholdResult],
    passed: bool,
}

pub(super) fn main(args: LoadArgs) -> ExitCode {
    let setup = match setup(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("rtc-demo load: {}", crate::errors::chain(e.as_ref()));
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rtc-demo load: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(run(args, setup))
}

async fn run(args: LoadArgs, setup: Setup) -> ExitCode {
    let Setup { config, phases, thresholds, label } = setup;
    let targets: Vec<String> = config.targets.iter().map(|t| t.to_string()).collect();
    let handle = match WebRtcLoad::start(config).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("rtc-demo load: {e}");
            return ExitCode::from(2);
        }
    };
    let clip_kbps = handle.clip().kbps();
    let mut rx = handle.subscribe();
    let mut series: Vec<Arc<WebRtcSecond>> = Vec::new();
    let print = |s: &WebRtcSecond| {
        if !args.quiet {
            eprintln!("{}", webrtc::second_line(s));
        }
    };
    if !args.quiet {
        eprintln!("rtc-demo load: {label}, VP8 clip {clip_kbps:.0} kbit/s, {} target(s)", targets.len());
    }
    let stop_signal = super::stop_signal();
    tokio::pin!(stop_signal);
    let mut interrupted = None;
    'phases: for (i, phase) in phases.iter().enumerate() {
        if i > 0 {
            handle.set_plan(phase.plan);
        }
        if phases.len() > 1 && !args.quiet {
            eprintln!("-- stage {}/{}: {} ({})", i + 1, phases.len(), phase.name, describe(&phase.plan));
        }
        let end = tokio::time::Instant::now() + phase.duration;
        loop {
            tokio::select! {
                s = rx.recv() => match s {
                    Ok(snap) => { print(&snap); series.push(snap); }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break 'phases,
                },
                _ = tokio::time::sleep_until(end) => break,
                code = &mut stop_signal => { interrupted = Some(code); break 'phases; }
            }
        }
    }
    let summary = handle.stop().await;
    while let Ok(snap) = rx.try_recv() {
        print(&snap);
        series.push(snap);
    }
    let results: Vec<ThresholdResult> = thresholds.iter().map(|t| t.evaluate_webrtc(&summary)).collect();
    let passed = results.iter().all(|r| r.passed);
    let human = webrtc::human_summary(&label, targets.len(), &summary, &results);
    let report = JsonReport {
        run: &label,
        targets,
        frame_label: webrtc::FRAME_LABEL,
        clip_kbps,
        summary: &summary,
        seconds: series.iter().map(|s| s.as_ref()).collect(),
        thresholds: &results,
        passed,
    };
    super::print_outcome(&human, args.json.then_some(&report), interrupted, passed)
}

fn describe(p: &SessionPlan) -> String {
    match *p {
        SessionPlan::Constant { sessions } => format!("{sessions} sessions"),
        SessionPlan::Ramp { from, to, over } => format!("sessions {from} -> {to} over {}", format_duration(over)),
    }
}
