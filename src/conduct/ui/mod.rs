//! The console screen: `App` state, `update(event)` and `view(&App, &mut Frame)`.
//! One module per panel, each pairing its view model with its rendering.
//!
//! Layout at 100×30 (the smallest supported): header 4 rows, charts 11, panels 14, footer 1.
//! Larger terminals give the charts and panels more room. Nothing is said by colour alone:
//! every series is named in its title with its current value, conditions say True/False,
//! pinned-at-max says "MAX", stale data says "STALE".
use std::sync::Arc;

use crossterm::event::KeyEvent;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::keymap::{self, Action};
use super::model::{ClusterSnapshot, LoadUnit, StageView};

pub mod charts;
pub mod events;
pub mod header;
pub mod help;
pub mod hpa;
pub mod kubectl;
pub mod notes;
pub mod pods;

/// High-contrast styles shared by the panels.
pub(crate) fn title_style() -> Style {
    Style::default().fg(Color::White).add_modifier(Modifier::BOLD)
}
pub(crate) fn alert_style() -> Style {
    Style::default().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD)
}
pub(crate) fn dim_style() -> Style {
    Style::default().fg(Color::Gray)
}

pub use super::model::Verdict;

/// What the console knows; changed only through [`App::update`].
#[derive(Debug, Clone)]
pub struct App {
    pub scenario: String,
    pub slo_s: f64,
    pub snap: Arc<ClusterSnapshot>,
    /// The director's stage (a backend's own `snap.stage` wins, e.g. a replay).
    pub stage: StageView,
    pub show_help: bool,
    pub show_notes: bool,
    pub show_kubectl: bool,
    /// A transient message for the footer ("report written to ...").
    pub flash: Option<String>,
    /// The final verdicts, shown when the run is over.
    pub summary: Option<Vec<Verdict>>,
    pub quit: bool,
    /// One pod's measured capacity, short (`one pod 41 req/s · 19.6 ms a frame (GPU)`).
    pub capacity: Option<String>,
    /// What the load's rate counts (the load chart's title says it).
    pub load_unit: LoadUnit,
}

#[derive(Debug, Clone)]
pub enum UiEvent {
    Key(KeyEvent),
    Snapshot(Arc<ClusterSnapshot>),
    Stage(StageView),
    Flash(String),
    Summary(Vec<Verdict>),
}

impl App {
    pub fn new(scenario: impl Into<String>, slo_s: f64) -> Self {
        App {
            scenario: scenario.into(),
            slo_s,
            snap: Arc::new(ClusterSnapshot::default()),
            stage: StageView::default(),
            show_help: false,
            show_notes: true,
            show_kubectl: true,
            flash: None,
            summary: None,
            quit: false,
            capacity: None,
            load_unit: LoadUnit::Requests,
        }
    }

    pub fn stage(&self) -> &StageView {
        self.snap.stage.as_ref().unwrap_or(&self.stage)
    }

    /// Applies an event; returns the action the director must carry out, if any.
    pub fn update(&mut self, ev: UiEvent) -> Option<Action> {
        match ev {
            UiEvent::Snapshot(s) => {
                self.snap = s;
                None
            }
            UiEvent::Stage(s) => {
                self.stage = s;
                None
            }
            UiEvent::Flash(m) => {
                self.flash = Some(m);
                None
            }
            UiEvent::Summary(v) => {
                self.summary = Some(v);
                None
            }
            UiEvent::Key(k) => {
                let a = keymap::action_for(&k)?;
                match a {
                    Action::ToggleHelp => {
                        self.show_help = !self.show_help;
                        None
                    }
                    Action::ToggleNotes => {
                        self.show_notes = !self.show_notes;
                        None
                    }
                    Action::ToggleKubectl => {
                        self.show_kubectl = !self.show_kubectl;
                        None
                    }
                    Action::Quit => {
                        self.quit = true;
                        Some(Action::Quit)
                    }
                    other => Some(other),
                }
            }
        }
    }
}

/// Draws the whole screen.
pub fn view(app: &App, f: &mut Frame) {
    let area = f.area();
    let panels_h = if area.height >= 40 { (area.height - 5) / 2 } else { area.height.saturating_sub(16).max(6) };
    let [head, charts_a, panels_a, foot] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Min(6),
        Constraint::Length(panels_h),
        Constraint::Length(1),
    ])
    .areas(area);
    header::render(app, f, head);
    charts::render(app, f, charts_a);
    render_panels(app, f, panels_a);
    render_footer(app, f, foot);
    if app.show_help {
        help::render(f, area);
    }
}

fn render_panels(app: &App, f: &mut Frame, area: Rect) {
    let right = app.show_notes || app.show_kubectl;
    let cols: Vec<Constraint> = if right {
        vec![Constraint::Percentage(35), Constraint::Percentage(30), Constraint::Percentage(35)]
    } else {
        vec![Constraint::Percentage(45), Constraint::Percentage(55)]
    };
    let c = Layout::horizontal(cols).split(area);
    let hpa_h = 8.min(c[0].height);
    let [hpa_a, ev_a] = Layout::vertical([Constraint::Length(hpa_h), Constraint::Min(0)]).areas(c[0]);
    hpa::render(app, f, hpa_a);
    events::render(app, f, ev_a);
    pods::render(app, f, c[1]);
    if right {
        let r = c[2];
        match (app.show_notes, app.show_kubectl) {
            (true, true) => {
                let kh = (r.height / 2).max(4).min(r.height);
                let [n, k] = Layout::vertical([Constraint::Min(0), Constraint::Length(kh)]).areas(r);
                notes::render(app, f, n);
                kubectl::render(app, f, k);
            }
            (true, false) => notes::render(app, f, r),
            _ => kubectl::render(app, f, r),
        }
    }
}

/// How much of the reason metrics are stale fits in the footer beside the keys.
const STALE_REASON_CHARS: usize = 40;

fn render_footer(app: &App, f: &mut Frame, area: Rect) {
    let mut spans = Vec::new();
    if let Some(s) = &app.summary {
        let ok = s.iter().all(|v| v.ok);
        spans.push(Span::styled(if ok { " ✓ THRESHOLDS PASSED " } else { " ✗ THRESHOLD FAILED " }, alert_style()));
        spans.push(Span::raw(" "));
    }
    if app.snap.staleness.metrics_stale {
        spans.push(Span::styled(" METRICS STALE ", alert_style()));
        // Why, in short: a dropped port-forward, Prometheus refusing a query, no Prometheus.
        if let Some(why) = &app.snap.staleness.metrics_error {
            let short: String = why.chars().take(STALE_REASON_CHARS).collect();
            let more = if why.chars().count() > STALE_REASON_CHARS { "…" } else { "" };
            spans.push(Span::styled(format!(" {short}{more}"), alert_style()));
        }
        spans.push(Span::raw(" "));
    }
    if let Some(m) = app.flash.as_ref().or(app.snap.status.as_ref()) {
        spans.push(Span::styled(m.clone(), title_style()));
        spans.push(Span::raw("  "));
    }
    for a in
        [Action::ToggleHelp, Action::NextStage, Action::TogglePause, Action::RateUp, Action::RateDown, Action::Quit]
    {
        let help = match a {
            Action::ToggleHelp => "help",
            Action::NextStage => "next",
            Action::TogglePause => "pause",
            Action::RateUp => "rate+",
            Action::RateDown => "rate-",
            _ => "quit",
        };
        spans.push(Span::styled(if a == Action::ToggleHelp { "?" } else { keymap::label_of(a) }, title_style()));
        spans.push(Span::styled(format!(" {help}  "), dim_style()));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// `m:ss` for seconds.
pub fn mmss(s: f64) -> String {
    let s = if s.is_finite() { s.max(0.0) as u64 } else { 0 };
    format!("{}:{:02}", s / 60, s % 60)
}

/// A latency in seconds as "123 ms" (or "—" when unknown).
pub fn ms(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{:.0} ms", x * 1000.0),
        _ => "—".into(),
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::conduct::model::*;

    /// A fixed snapshot: 5 pods (4 ready), HPA pinned at max 5, p95 above the SLO, 2 minutes of series.
    pub fn snapshot() -> ClusterSnapshot {
        let series = (0..120)
            .map(|i| {
                let t = i as f64;
                Sample {
                    t_s: t,
                    pods_ready: 2 + (i / 40) as u32,
                    pods_total: 2 + (i / 30) as u32,
                    desired: 2 + (i / 25) as u32,
                    p95_server_s: Some(0.04 + t / 800.0),
                    p95_client_s: Some(0.05 + t / 700.0),
                    p95_client_uncorrected_s: Some(0.05),
                    offered_rps: 10.0 + t / 4.0,
                    achieved_rps: 10.0 + t / 5.0,
                    errors: (i % 50 == 0) as u64,
                    shed: (i / 60) as u64,
                    dropped: 0,
                    gpu_util: None,
                    stage: (i / 60) as usize,
                }
            })
            .collect();
        ClusterSnapshot {
            at_s: 119.0,
            backend: BackendLabel::default(),
            pods: (1..=5)
                .map(|i| PodInfo {
                    name: format!("serve-{i}"),
                    phase: if i == 5 { "Pending".into() } else { "Running".into() },
                    ready: i != 5,
                    node: "localhost".into(),
                    age_s: 130 - i * 10,
                    restarts: (i == 2) as u32,
                    problem: None,
                    sessions: None,
                    p95_s: None,
                })
                .collect(),
            autoscaler: Some(AutoscalerState {
                name: "gpu-media".into(),
                current: 5,
                desired: 5,
                min: 2,
                max: 5,
                metrics: vec![
                    MetricState {
                        name: "rtc_worker_utilization".into(),
                        value: Some(1.0),
                        target: 0.7,
                        unit: String::new(),
                    },
                    MetricState {
                        name: "app_request_latency_p95_seconds".into(),
                        value: Some(0.187),
                        target: 0.1,
                        unit: "s".into(),
                    },
                ],
                conditions: vec![
                    ConditionInfo {
                        kind: "AbleToScale".into(),
                        status: true,
                        reason: "ReadyForNewScale".into(),
                        message: String::new(),
                    },
                    ConditionInfo {
                        kind: "ScalingActive".into(),
                        status: true,
                        reason: "ValidMetricFound".into(),
                        message: String::new(),
                    },
                    ConditionInfo {
                        kind: "ScalingLimited".into(),
                        status: true,
                        reason: "TooManyReplicas".into(),
                        message: String::new(),
                    },
                ],
            }),
            events: vec![
                EventInfo {
                    at_s: 31.0,
                    kind: "Normal".into(),
                    reason: "SuccessfulRescale".into(),
                    object: "hpa/gpu-media".into(),
                    message: "New size: 3; reason: p95 above target".into(),
                },
                EventInfo {
                    at_s: 62.0,
                    kind: "Normal".into(),
                    reason: "SuccessfulRescale".into(),
                    object: "hpa/gpu-media".into(),
                    message: "New size: 5; reason: p95 above target".into(),
                },
                EventInfo {
                    at_s: 70.0,
                    kind: "Warning".into(),
                    reason: "BackOff".into(),
                    object: "pod/serve-2".into(),
                    message: "replica exited; replaced".into(),
                },
            ],
            series,
            staleness: Staleness { metrics_source: "replica /metrics".into(), ..Default::default() },
            kubectl: vec![
                "kubectl -n rtc get hpa gpu-media -w".into(),
                "kubectl -n rtc get pods -l app.kubernetes.io/name=gpu-media".into(),
            ],
            status: None,
            stage: None,
            done: false,
        }
    }

    pub fn app() -> App {
        let mut a = App::new("rehearsal", 0.1);
        a.snap = Arc::new(snapshot());
        a.stage = StageView {
            index: 1,
            count: 4,
            name: "heavy".into(),
            elapsed_s: 27.0,
            duration_s: 60.0,
            manual: false,
            notes: "Load triples. Watch p95 cross the SLO line, then the HPA add pods.".into(),
            next_name: Some("cool-down".into()),
            load_desc: "60 rps".into(),
            paused: false,
            finished: false,
        };
        a
    }

    /// Renders with `draw` into a w×h TestBackend and returns the screen as lines of text.
    pub fn render(w: u16, h: u16, draw: impl FnOnce(&mut Frame)) -> String {
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
        t.draw(draw).unwrap();
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..h {
            for x in 0..w {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use crossterm::event::{KeyCode, KeyModifiers};

    #[test]
    fn whole_screen_at_100x30_has_every_panel() {
        let app = app();
        let s = render(100, 30, |f| view(&app, f));
        for want in [
            "rehearsal",
            "LOCAL",
            "Stage 2/4",
            "heavy",
            "Pods",
            "p95",
            "RPS",
            "HPA",
            "Events",
            "serve-1",
            "Notes",
            "next: cool-down",
            "kubectl",
            "quit",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
    }

    #[test]
    fn larger_terminal_and_tiny_terminal_do_not_panic() {
        let app = app();
        let s = render(180, 50, |f| view(&app, f));
        assert!(s.contains("HPA"));
        let _ = render(20, 5, |f| view(&app, f));
        let _ = render(1, 1, |f| view(&app, f));
        let empty = App::new("x", 0.1);
        let _ = render(100, 30, |f| view(&empty, f));
    }

    #[test]
    fn keys_toggle_panels_and_return_actions() {
        let mut app = app();
        let k = |c| UiEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        assert_eq!(app.update(k('?')), None);
        assert!(app.show_help);
        let s = render(100, 30, |f| view(&app, f));
        assert!(s.contains("Keys") && s.contains("next stage"), "{s}");
        assert_eq!(app.update(k('n')), None);
        assert!(!app.show_notes);
        assert_eq!(app.update(k(' ')), Some(Action::NextStage));
        assert_eq!(app.update(k('p')), Some(Action::TogglePause));
        assert_eq!(app.update(k('q')), Some(Action::Quit));
        assert!(app.quit);
    }

    #[test]
    fn stale_metrics_and_summary_show_in_words() {
        let mut app = app();
        let mut s = (*app.snap).clone();
        s.staleness.metrics_stale = true;
        app.update(UiEvent::Snapshot(Arc::new(s)));
        app.update(UiEvent::Summary(vec![Verdict { text: "p95 < 100ms".into(), ok: false }]));
        let out = render(100, 30, |f| view(&app, f));
        assert!(out.contains("STALE"), "{out}");
        assert!(out.contains("✗ THRESHOLD FAILED"), "{out}");
    }

    #[test]
    fn stale_metrics_say_why_in_the_footer() {
        let mut app = app();
        let mut s = (*app.snap).clone();
        s.staleness.metrics_stale = true;
        s.staleness.metrics_error = Some(
            "Prometheus port-forward ended (exit status: 1: error: lost connection to pod); starting it again in 2 s"
                .into(),
        );
        app.update(UiEvent::Snapshot(Arc::new(s)));
        let out = render(120, 30, |f| view(&app, f));
        assert!(out.contains("METRICS STALE  Prometheus port-forward ended (exit stat…"), "{out}");
    }
}
