//! Ties backend, director, UI/headless printer and report together. The backend publishes
//! snapshots on a watch channel, key presses arrive from crossterm's event stream, and the
//! loop here aggregates them at a fixed frame rate. Errors leave here as `anyhow` with
//! their context, for the command to print.
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use tokio::signal::unix::{signal, SignalKind};

use super::capacity::Capacity;
use super::director::{Director, StageDef};
use super::hpa::HpaSpec;
use super::keymap::Action;
use super::local::LocalBackend;
use super::model::*;
use super::replay::ReplayBackend;
use super::report::{self, Recorder, Summary};
use super::settings::{BackendSettings, HpaReader, Settings, DEFAULT_HPA};
use super::story::TalkFigures;
use super::timeline::unix_now;
use super::ui::{self, App, UiEvent, Verdict};
use super::ConductArgs;
use crate::load::Threshold;
use crate::scenario::{RequestKind, Scenario};

/// Everything a run needs besides the backend.
struct Session {
    backend: Box<dyn Backend>,
    director: Option<Director>,
    recorder: Recorder,
    report_dir: Option<PathBuf>,
    scenario: String,
    slo_s: f64,
    thresholds: Vec<Threshold>,
    stages: Vec<report::StageSummary>,
    hpa: report::HpaSummary,
    started_unix: u64,
    started: Instant,
    min_ready: u32,
    begin_deadline: Instant,
    snap: Arc<ClusterSnapshot>,
    last_printed: f64,
    /// `--teardown`: remove what was applied when the console ends.
    teardown: bool,
    /// One pod's capacity as measured before the stages.
    capacity: Option<Capacity>,
    /// What the load's rate counts.
    unit: LoadUnit,
}

/// What a session runs: a scenario's stages under the director, or a recorded run.
enum Plan<'a> {
    /// The first replicas must be ready within `begin_within` (else the first stage starts anyway).
    Scenario {
        /// In measured units ([`Scenario::in_measured_units`]) when it has pod rates.
        scenario: &'a Scenario,
        hpa: &'a HpaSpec,
        begin_within: Duration,
        capacity: Option<Capacity>,
    },
    Replay(&'a Summary),
}

impl Session {
    /// The one way a session is made, whatever the backend.
    fn new(backend: Box<dyn Backend>, plan: Plan<'_>, settings: &Settings) -> anyhow::Result<Session> {
        let now = Instant::now();
        let mut s = Session {
            snap: backend.subscribe().borrow().clone(),
            backend,
            director: None,
            recorder: Recorder::default(),
            report_dir: settings.report_dir.clone(),
            scenario: String::new(),
            slo_s: 0.1,
            thresholds: Vec::new(),
            stages: Vec::new(),
            hpa: report::HpaSummary::default(),
            started_unix: settings.started_unix,
            started: now,
            min_ready: 0,
            begin_deadline: now,
            last_printed: -1.0,
            teardown: settings.teardown,
            capacity: None,
            unit: LoadUnit::Requests,
        };
        match plan {
            Plan::Scenario { scenario: sc, hpa, begin_within, capacity } => {
                let mut director = Director::new(StageDef::from_scenario(sc)?, settings.headless);
                s.capacity = capacity;
                director.slo_s = sc.slo.p95.as_secs_f64();
                s.director = Some(director);
                s.scenario = sc.name.clone();
                s.unit = LoadUnit::of(sc);
                s.slo_s = sc.slo.p95.as_secs_f64();
                s.thresholds = sc.thresholds.clone();
                s.stages = sc
                    .stages
                    .iter()
                    .map(|st| report::StageSummary {
                        name: st.name.clone(),
                        duration_s: st.duration.as_secs_f64(),
                        manual: st.advance == crate::scenario::Advance::Manual,
                        notes: st.notes.trim().into(),
                    })
                    .collect();
                s.hpa = report::HpaSummary {
                    name: hpa.name.clone(),
                    min: hpa.min_replicas,
                    max: hpa.max_replicas,
                    metric: hpa.metric_names(),
                    // The replay's HPA panel shows the recorded p95 against this target.
                    target: hpa.metrics.iter().find(|m| m.name.contains("latency")).unwrap_or(&hpa.metrics[0]).target,
                    scale_up_window_s: hpa.scale_up.stabilization_window_seconds,
                    scale_down_window_s: hpa.scale_down.stabilization_window_seconds,
                };
                s.min_ready = hpa.min_replicas;
                s.begin_deadline = now + begin_within;
            }
            Plan::Replay(summary) => {
                s.scenario = format!("{} (replay)", summary.scenario);
                s.slo_s = summary.slo_p95_ms / 1000.0;
                s.stages = summary.stages.clone();
                s.hpa = summary.hpa.clone();
                s.capacity = summary.capacity.clone();
                s.unit = summary.load_unit;
            }
        }
        Ok(s)
    }

    fn send(&self, cmds: Vec<BackendCommand>) {
        for c in cmds {
            if let Err(e) = self.backend.command(c) {
                eprintln!("rtc-demo conduct: {e}");
            }
        }
    }

    /// Takes the newest snapshot; begins the first stage once the replicas are ready.
    fn observe(&mut self, snap: Arc<ClusterSnapshot>) {
        self.snap = snap;
        if self.director.is_some() {
            let names: Vec<String> = self.stages.iter().map(|s| s.name.clone()).collect();
            self.recorder.observe(&self.snap, |i| names.get(i).cloned().unwrap_or_default());
        }
        let now = Instant::now();
        let ready = self.snap.pods.iter().filter(|p| p.ready).count() as u32;
        let begin = match &self.director {
            Some(d) if !d.begun() => ready >= self.min_ready || now >= self.begin_deadline,
            _ => false,
        };
        if begin {
            let cmds = self.director.as_mut().map(|d| d.begin(now, &self.snap)).unwrap_or_default();
            self.send(cmds);
        }
    }

    fn tick(&mut self) {
        let now = Instant::now();
        let cmds = match self.director.as_mut() {
            Some(d) => d.tick(now, &self.snap),
            None => Vec::new(),
        };
        self.send(cmds);
    }

    fn act(&mut self, a: Action) {
        let now = Instant::now();
        match self.director.as_mut() {
            Some(d) => {
                let cmds = d.act(a, now, &self.snap);
                self.send(cmds);
            }
            None => {
                // replay: p pauses playback, space/←/r/b seek by stage
                let cur = self.snap.stage.as_ref().map(|s| s.index).unwrap_or(0);
                let paused = self.snap.stage.as_ref().is_some_and(|s| s.paused);
                let cmd = match a {
                    Action::TogglePause => Some(if paused { BackendCommand::Resume } else { BackendCommand::Pause }),
                    Action::NextStage => Some(BackendCommand::StartStage { index: cur + 1, plan: StagePlan::Idle }),
                    Action::PrevStage => {
                        Some(BackendCommand::StartStage { index: cur.saturating_sub(1), plan: StagePlan::Idle })
                    }
                    Action::RestartStage => Some(BackendCommand::StartStage { index: cur, plan: StagePlan::Idle }),
                    Action::Baseline => Some(BackendCommand::StartStage { index: 0, plan: StagePlan::Idle }),
                    _ => None,
                };
                if let Some(c) = cmd {
                    let _ = self.backend.command(c);
                }
            }
        }
    }

    fn stage_view(&self) -> StageView {
        match (&self.snap.stage, &self.director) {
            (Some(s), _) => s.clone(),
            (None, Some(d)) => d.view(Instant::now()),
            _ => StageView::default(),
        }
    }

    fn finished(&self) -> bool {
        match &self.director {
            Some(d) => d.finished,
            None => self.snap.done,
        }
    }

    /// The one-line-per-second headless output: one line for every second not printed yet.
    fn headless_lines(&mut self) -> Vec<String> {
        let view = self.stage_view();
        let newest = self.snap.series.last().map(|s| s.t_s).unwrap_or(-1.0);
        let fresh: Vec<Sample> = self.snap.series.iter().filter(|s| s.t_s > self.last_printed).cloned().collect();
        let mut out = Vec::new();
        for s in fresh {
            self.last_printed = s.t_s;
            let latest = s.t_s >= newest;
            let (idx, name) = if latest || self.director.is_some() {
                (view.index, view.name.clone())
            } else {
                (s.stage, self.stages.get(s.stage).map(|x| x.name.clone()).unwrap_or_default())
            };
            let timing = if latest {
                format!("{:>5.0}/{:<4.0}s", view.elapsed_s, view.duration_s)
            } else {
                format!("{:>11}", "")
            };
            out.push(self.line(&s, idx, view.count.max(self.stages.len()), &name, &timing));
        }
        out
    }

    fn line(&self, s: &Sample, idx: usize, count: usize, name: &str, timing: &str) -> String {
        // A missing reading is said, never drawn as a number.
        let ms = |v: Option<f64>| v.map(|x| format!("{:>5.0}ms", x * 1000.0)).unwrap_or_else(|| "no data".into());
        let stale = if self.snap.staleness.metrics_stale { " STALE" } else { "" };
        let label = self.snap.backend.text();
        format!(
            "[{label} {:>4.0}s] stage {}/{} {:<10} {timing} | offered {:>6.1} achieved {:>6.1} {} | p95 server {}{stale} client {} | pods ready {}/{} desired {} | err {} shed {} dropped {}",
            s.t_s,
            idx + 1,
            count.max(1),
            name,
            s.offered_rps,
            s.achieved_rps,
            self.unit.rate(),
            ms(s.p95_server_s),
            ms(s.p95_client_s),
            s.pods_ready,
            s.pods_total,
            s.desired,
            s.errors,
            s.shed,
            s.dropped
        )
    }

    fn summary(&self, totals: &Totals, thresholds: &[Verdict], expectations: &[Verdict]) -> Summary {
        let rows = &self.recorder.rows;
        Summary {
            scenario: self.scenario.clone(),
            backend: self.snap.backend.text(),
            started_unix_s: self.started_unix,
            duration_s: self.started.elapsed().as_secs_f64().round(),
            slo_p95_ms: self.slo_s * 1000.0,
            hpa: self.hpa.clone(),
            capacity: self.capacity.clone(),
            stages: self.stages.clone(),
            load: totals.as_ref().and_then(|t| serde_json::to_value(t).ok()),
            load_unit: self.unit,
            thresholds: thresholds.iter().map(Into::into).collect(),
            expectations: expectations.iter().map(Into::into).collect(),
            talk: self.talk(),
            passed: thresholds.iter().all(|v| v.ok),
            max_ready: rows.iter().map(|r| r.sample.pods_ready).max().unwrap_or(0),
            scale_events: self.recorder.all_events.iter().filter(|e| e.reason == "SuccessfulRescale").count(),
            events: self.recorder.all_events.clone(),
        }
    }

    fn stage_names(&self) -> Vec<String> {
        self.stages.iter().map(|s| s.name.clone()).collect()
    }

    fn talk(&self) -> TalkFigures {
        TalkFigures::from_samples(self.recorder.rows.iter().map(|r| &r.sample), self.slo_s)
    }

    fn verdicts(&self, totals: &Totals) -> Vec<Verdict> {
        self.thresholds
            .iter()
            .map(|t| {
                let r = match totals {
                    Some(LoadTotals::Requests(s)) => t.evaluate(s),
                    Some(LoadTotals::Sessions(s)) => t.evaluate_webrtc(s),
                    None => return Verdict { text: format!("✗ {} (no load was measured)", t.source), ok: false },
                };
                Verdict { text: r.to_string(), ok: r.passed }
            })
            .collect()
    }

    fn write_report(&self, totals: &Totals) -> Option<Result<PathBuf, report::ReportError>> {
        let dir = self.report_dir.as_ref()?;
        let th = self.verdicts(totals);
        let ex = self.director.as_ref().map(|d| d.verdicts.clone()).unwrap_or_default();
        Some(report::write(dir, &self.recorder.rows, &self.summary(totals, &th, &ex)).map(|_| dir.clone()))
    }
}

/// Requests, failures and both latency views (or sessions, frames and the frame round trip),
/// as the summary prints them.
fn load_figures(t: &LoadTotals) -> String {
    let t = match t {
        LoadTotals::Requests(t) => t,
        LoadTotals::Sessions(s) => {
            let c = &s.counts;
            return format!(
                "WebRTC offers {}: refused {}, failed {} · sessions {} connected, {} failed ({:.2}%) · frames sent {}, back {}, lost {} ({:.2}%) · frame round trip p95 {:.1} ms",
                c.offers,
                c.refused,
                c.offer_failed,
                c.connected,
                c.failed,
                s.session_fail * 100.0,
                c.frames_sent,
                c.frames_back,
                c.frames_lost,
                s.frame_loss * 100.0,
                s.frame.p95_ms
            );
        }
    };
    let st = &t.status;
    format!(
        "requests {}: failed {} ({:.2}%, every request without a 2xx answer), shed {}, timeouts {} · p95 of 2xx {:.1} ms, of all {:.1} ms",
        st.total(),
        st.failed(),
        t.error_rate() * 100.0,
        st.shed_503,
        st.timeouts,
        t.corrected.p95_ms,
        t.all_corrected.p95_ms
    )
}

/// Prints a line to stdout; a closed stdout (a pipe whose reader left) is not an error.
fn out(line: &str) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{line}");
    let _ = o.flush();
}

/// `rtc-demo conduct`: flags resolved once, then the session on the backend they name.
pub fn main(args: ConductArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::resolve(&args, unix_now() as u64, &HpaReader::for_this_binary())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let r = rt.block_on(run(settings));
    rt.shutdown_timeout(Duration::from_millis(300));
    r
}

async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    let mut progress = |line: String| eprintln!("rtc-demo conduct: {line}");
    let session = match &settings.backend {
        BackendSettings::Replay { dir, speed } => {
            let rep = report::read(dir)?;
            let summary = rep.summary.clone();
            let backend = Box::new(ReplayBackend::start(rep, *speed));
            Session::new(backend, Plan::Replay(&summary), &settings)?
        }
        BackendSettings::Local { scenario, hpa, hpa_from, config, begin_within } => {
            progress(match hpa_from {
                Some(path) => format!("autoscaler: {} ({})", path.display(), hpa.metric_names()),
                None => format!(
                    "autoscaler: no HPA manifest (looked for {DEFAULT_HPA} here and above the scenario file): scaling on the SLO's p95 alone, the latency-only autoscaler; --hpa FILE names one"
                ),
            });
            // Measured before any replica of the rehearsal starts (CPU replicas share the cores).
            let capacity = if scenario.request.kind == RequestKind::Webrtc {
                // Its stages are sessions, which a replica refuses past --max-sessions: no rate
                // to size, and the probe's bodiless POST is no WHIP offer.
                progress("capacity: not measured (a WebRTC scenario's stages are sessions, not rates)".into());
                None
            } else {
                let measured = super::local::measure_capacity(&config.spawn, scenario, &mut progress).await;
                settle_capacity(scenario, measured)?
            };
            let scenario = in_measured_units(scenario, capacity.as_ref());
            let mut config = (**config).clone();
            config.path_and_query = scenario.request.path_and_query();
            let backend = Box::new(LocalBackend::start(config));
            backend.command(BackendCommand::Apply).map_err(anyhow::Error::msg)?;
            let plan = Plan::Scenario { scenario: &scenario, hpa, begin_within: *begin_within, capacity };
            Session::new(backend, plan, &settings)?
        }
        BackendSettings::Kube { args, hpa, begin_within } => {
            // Connect (bounded), preflight (printed), start the backend and apply; then one
            // ready pod is measured before the first stage.
            let (backend, target) =
                super::kube::console::prepare((**args).clone(), settings.teardown).await.map_err(anyhow::Error::msg)?;
            let measured = super::kube::pod_capacity::measure(
                &target,
                &super::kube::kubectl::Kubectl::program(),
                backend.subscribe(),
                *begin_within,
                &args.scenario,
                &mut progress,
            )
            .await;
            let capacity = settle_capacity(&args.scenario, measured)?;
            if let Some(c) = &capacity {
                backend
                    .command(BackendCommand::Measured {
                        pod_rps: c.pod_rps,
                        iters: if args.scenario.request.service_time.is_some() {
                            c.iters
                        } else {
                            args.scenario.request.iters
                        },
                    })
                    .map_err(anyhow::Error::msg)?;
            }
            let scenario = in_measured_units(&args.scenario, capacity.as_ref());
            let plan = Plan::Scenario { scenario: &scenario, hpa, begin_within: *begin_within, capacity };
            Session::new(Box::new(backend), plan, &settings)?
        }
    };
    if settings.headless {
        headless(session).await
    } else {
        tui(session, settings.fps).await
    }
}

/// The probe's outcome for this scenario: a scenario in pods or sized to a service time
/// cannot run without it; one in requests/s runs on, saying why there is no figure.
fn settle_capacity<E: std::fmt::Display>(
    scenario: &Scenario,
    measured: Result<Capacity, E>,
) -> anyhow::Result<Option<Capacity>> {
    match measured {
        Ok(c) => {
            eprintln!("rtc-demo conduct: ✓ capacity: {}", c.line());
            eprintln!("rtc-demo conduct:   {}", c.detail());
            Ok(Some(c))
        }
        Err(e) if scenario.needs_capacity() => Err(anyhow::anyhow!(
            "{e}\n(scenario `{}` writes its rates in pods of capacity or its request as a service time, so it cannot run unmeasured)",
            scenario.name
        )),
        Err(e) => {
            let why = match scenario.request.kind {
                RequestKind::Http => "the scenario's rates are in requests/s",
                RequestKind::Webrtc => "the scenario's stages are sessions",
            };
            eprintln!("rtc-demo conduct: ! {e} ({why}: the run goes on without the figure)");
            Ok(None)
        }
    }
}

/// The scenario with its pod rates and sized iterations resolved by the measured capacity.
fn in_measured_units(scenario: &Scenario, capacity: Option<&Capacity>) -> Scenario {
    match capacity {
        Some(c) => scenario.in_measured_units(Some(c.pod_rps), scenario.request.service_time.map(|_| c.iters)),
        None => scenario.clone(),
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        let s = |k| signal(k).context("cannot install signal handlers");
        Ok(Signals {
            term: s(SignalKind::terminate())?,
            int: s(SignalKind::interrupt())?,
            hup: s(SignalKind::hangup())?,
        })
    }
    async fn any(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
            _ = self.hup.recv() => {},
        }
    }
}

async fn finish(mut s: Session, teardown: bool) -> (Session, Totals, Vec<Verdict>) {
    let _ = s.backend.command(BackendCommand::Stop);
    let totals = s.backend.shutdown(teardown).await;
    let mut v = s.verdicts(&totals);
    if let Some(d) = &s.director {
        v.extend(d.verdicts.iter().cloned().map(|mut x| {
            x.text = format!("{} {} (expectation, not a threshold)", if x.ok { "✓" } else { "✗" }, x.text);
            x
        }));
    }
    (s, totals, v)
}

async fn headless(mut s: Session) -> anyhow::Result<ExitCode> {
    let mut rx = s.backend.subscribe();
    let mut sig = Signals::new()?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut interrupted = false;
    if s.director.is_some() {
        out(&format!(
            "rtc-demo conduct: scenario {} on the {} backend; starting replicas …",
            s.scenario,
            s.snap.backend.text()
        ));
        if let Some(c) = &s.capacity {
            out(&format!("capacity: {}", c.line()));
        }
    }
    let mut open = true;
    loop {
        tokio::select! {
            r = rx.changed(), if open => {
                if r.is_err() {
                    open = false;
                    continue;
                }
                let snap = rx.borrow_and_update().clone();
                s.observe(snap);
                for line in s.headless_lines() {
                    out(&line);
                }
                if s.finished() {
                    break;
                }
            }
            _ = tick.tick() => {
                s.tick();
                if s.finished() {
                    break;
                }
            }
            _ = sig.any() => { interrupted = true; break; }
        }
    }
    let teardown = s.teardown;
    let (s, totals, verdicts) = finish(s, teardown).await;
    let threshold_ok = s.verdicts(&totals).iter().all(|v| v.ok);
    out(&format!("── summary: {} ──", s.scenario));
    if let Some(c) = &s.capacity {
        out(&format!("capacity: {}", c.line()));
    }
    if let Some(t) = &totals {
        out(&load_figures(t));
    }
    let talk = s.talk();
    out(&talk.headline());
    out(&talk.step_line(&s.stage_names()));
    out(&talk.within_slo_line(&s.stage_names()));
    for line in talk.stage_lines(&s.stage_names()) {
        out(&format!("  {line}"));
    }
    for v in &verdicts {
        out(&v.text);
    }
    if let Some(r) = s.write_report(&totals) {
        match r {
            Ok(dir) => out(&format!("report: {}/ (timeline.csv, summary.json, timeline.png)", dir.display())),
            Err(e) => eprintln!("rtc-demo conduct: report: {e}"),
        }
    }
    if interrupted {
        return Ok(ExitCode::from(130));
    }
    Ok(if threshold_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Restores the terminal when dropped (every exit path of the TUI loop).
struct TerminalGuard;
impl Drop for TerminalGuard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

async fn tui(mut s: Session, fps: u32) -> anyhow::Result<ExitCode> {
    let mut terminal = ratatui::try_init().context("cannot set up the terminal (use --headless without one)")?;
    let guard = TerminalGuard;
    // Until the terminal is restored (at the end, after the guard), stderr goes to a file.
    let capture_path = match &s.report_dir {
        Some(d) if std::fs::create_dir_all(d).is_ok() => d.join("console-stderr.log"),
        _ => std::env::temp_dir().join(format!("rtc-demo-console-stderr-{}.log", std::process::id())),
    };
    let capture = super::stderr_capture::StderrCapture::to_file(&capture_path);
    let mut keys = crossterm::event::EventStream::new();
    let mut app = App::new(s.scenario.clone(), s.slo_s);
    app.capacity = s.capacity.as_ref().map(Capacity::short);
    app.load_unit = s.unit;
    let mut rx = s.backend.subscribe();
    let mut sig = Signals::new()?;
    let mut frame = tokio::time::interval(Duration::from_secs_f64(1.0 / fps as f64));
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ended = false;
    let mut flash_until: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = frame.tick() => {
                if rx.has_changed().unwrap_or(false) {
                    let snap = rx.borrow_and_update().clone();
                    s.observe(snap.clone());
                    app.update(UiEvent::Snapshot(snap));
                }
                s.tick();
                app.update(UiEvent::Stage(s.stage_view()));
                if s.finished() && !ended && s.director.is_some() {
                    ended = true;
                    let _ = s.backend.command(BackendCommand::Pause);
                    let v: Vec<Verdict> = s.director.as_ref().map(|d| d.verdicts.clone()).unwrap_or_default();
                    let within = s.talk().within_slo_line(&s.stage_names());
                    let msg = match s.write_report(&None) {
                        Some(Ok(d)) => format!("run over ({within}): report in {}/ — q to quit", d.display()),
                        Some(Err(e)) => format!("report failed: {e}"),
                        None => "run over — q to quit".into(),
                    };
                    app.update(UiEvent::Summary(v));
                    app.update(UiEvent::Flash(msg));
                }
                if flash_until.is_some_and(|t| Instant::now() > t) {
                    app.flash = None;
                    flash_until = None;
                }
                if let Err(e) = terminal.draw(|f| ui::view(&app, f)) {
                    drop(guard);
                    return Err(anyhow::Error::new(e).context("cannot draw"));
                }
            }
            ev = keys.next() => {
                let k = match ev {
                    Some(Ok(crossterm::event::Event::Key(k))) => k,
                    Some(Ok(_)) => continue,
                    // The terminal is gone: quit as `q` would.
                    Some(Err(_)) | None => break,
                };
                if let Some(a) = app.update(UiEvent::Key(k)) {
                    match a {
                        Action::Quit => break,
                        Action::SaveReport => {
                            let msg = match s.write_report(&None) {
                                Some(Ok(d)) => format!("report written to {}/", d.display()),
                                Some(Err(e)) => format!("report failed: {e}"),
                                None => "a replay writes no report".into(),
                            };
                            app.update(UiEvent::Flash(msg));
                            flash_until = Some(Instant::now() + Duration::from_secs(5));
                        }
                        other => s.act(other),
                    }
                }
                // draw at once so keys feel immediate
                let _ = terminal.draw(|f| ui::view(&app, f));
            }
            _ = sig.any() => break,
        }
    }
    // Quit: load stops and replicas die first, then the terminal comes back, then the report.
    let teardown = s.teardown;
    let (s, totals, _) = finish(s, teardown).await;
    drop(keys);
    drop(guard);
    drop(capture);
    if let Some(r) = s.write_report(&totals) {
        match r {
            Ok(dir) => out(&format!("report: {}/", dir.display())),
            Err(e) => eprintln!("rtc-demo conduct: report: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
