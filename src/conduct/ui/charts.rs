//! Charts over the last minutes: pods (ready/total/desired with min/max lines), p95 (server
//! and client-corrected, with the SLO line), RPS (offered/achieved, errors, shed), GPU
//! utilisation when any sample carries it. Each title names its series with current values.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType};
use ratatui::Frame;

use super::{alert_style, title_style, App};
use crate::conduct::model::{LoadUnit, Sample};

/// The series of one chart, ready to draw (the view model).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub marker: Marker,
    pub color: Color,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChartModel {
    pub title: Vec<(String, bool)>,
    pub series: Vec<Series>,
    pub x: [f64; 2],
    pub y: [f64; 2],
    pub y_unit: &'static str,
}

fn line(x: [f64; 2], y: f64) -> Vec<(f64, f64)> {
    // Dotted horizontal reference line (a point every few seconds).
    let step = ((x[1] - x[0]) / 30.0).max(1.0);
    let mut v = Vec::new();
    let mut t = x[0];
    while t <= x[1] {
        v.push((t, y));
        t += step;
    }
    v
}

fn window(samples: &[Sample], width: u16) -> (Vec<&Sample>, [f64; 2]) {
    let span: f64 = if width < 40 { 180.0 } else { 300.0 };
    let end = samples.last().map(|s| s.t_s).unwrap_or(0.0).max(span.min(60.0));
    let start = end - span;
    (samples.iter().filter(|s| s.t_s >= start).collect(), [start.max(0.0), end])
}

pub fn pods_model(app: &App, width: u16) -> ChartModel {
    let (w, x) = window(&app.snap.series, width);
    let hpa = app.snap.autoscaler.as_ref();
    let (min, max) = hpa.map(|h| (h.min as f64, h.max as f64)).unwrap_or((0.0, 0.0));
    let peak = w.iter().map(|s| s.pods_total.max(s.desired) as f64).fold(max, f64::max);
    let last = w.last();
    let mut series = vec![
        Series {
            name: "ready".into(),
            points: w.iter().map(|s| (s.t_s, s.pods_ready as f64)).collect(),
            marker: Marker::Braille,
            color: Color::Green,
        },
        Series {
            name: "total".into(),
            points: w.iter().map(|s| (s.t_s, s.pods_total as f64)).collect(),
            marker: Marker::Dot,
            color: Color::White,
        },
        Series {
            name: "desired".into(),
            points: w.iter().map(|s| (s.t_s, s.desired as f64)).collect(),
            marker: Marker::Braille,
            color: Color::Yellow,
        },
    ];
    if max > 0.0 {
        series.push(Series {
            name: format!("max {max:.0}"),
            points: line(x, max),
            marker: Marker::Dot,
            color: Color::Red,
        });
        series.push(Series {
            name: format!("min {min:.0}"),
            points: line(x, min),
            marker: Marker::Dot,
            color: Color::Blue,
        });
    }
    let mut title = Vec::new();
    if hpa.is_some_and(|h| h.pinned_at_max()) {
        title.push((" MAX ".into(), true));
    }
    title.push((
        format!(
            "Pods ready {}/{} desired {} ({min:.0}..{max:.0})",
            last.map(|s| s.pods_ready).unwrap_or(0),
            last.map(|s| s.pods_total).unwrap_or(0),
            last.map(|s| s.desired).unwrap_or(0)
        ),
        false,
    ));
    ChartModel { title, series, x, y: [0.0, (peak + 1.0).max(2.0)], y_unit: "" }
}

pub fn latency_model(app: &App, width: u16) -> ChartModel {
    let (w, x) = window(&app.snap.series, width);
    let slo_ms = app.slo_s * 1000.0;
    let srv: Vec<(f64, f64)> = w.iter().filter_map(|s| s.p95_server_s.map(|v| (s.t_s, v * 1000.0))).collect();
    let cli: Vec<(f64, f64)> = w.iter().filter_map(|s| s.p95_client_s.map(|v| (s.t_s, v * 1000.0))).collect();
    let peak = srv.iter().chain(cli.iter()).map(|p| p.1).fold(slo_ms * 1.5, f64::max);
    let last = w.last();
    let f = |v: Option<f64>| v.map(|x| format!("{:.0}", x * 1000.0)).unwrap_or_else(|| "—".into());
    let mut title = Vec::new();
    if app.snap.staleness.metrics_stale {
        title.push((" STALE ".into(), true));
    }
    title.push((
        format!(
            "p95 ms SLO {slo_ms:.0} srv {} cli {}",
            f(last.and_then(|s| s.p95_server_s)),
            f(last.and_then(|s| s.p95_client_s))
        ),
        false,
    ));
    ChartModel {
        title,
        series: vec![
            Series { name: "server".into(), points: srv, marker: Marker::Braille, color: Color::Cyan },
            Series { name: "client".into(), points: cli, marker: Marker::Dot, color: Color::Magenta },
            Series {
                name: format!("SLO {slo_ms:.0}"),
                points: line(x, slo_ms),
                marker: Marker::Dot,
                color: Color::Red,
            },
        ],
        x,
        y: [0.0, (peak * 1.1).min(60_000.0)],
        y_unit: "ms",
    }
}

pub fn rps_model(app: &App, width: u16) -> ChartModel {
    let (w, x) = window(&app.snap.series, width);
    let peak = w.iter().map(|s| s.offered_rps.max(s.achieved_rps)).fold(10.0, f64::max);
    let last = w.last();
    ChartModel {
        title: vec![(
            format!(
                "{} off {:.0} got {:.0} err {} shed {}",
                match app.load_unit {
                    LoadUnit::Requests => "RPS",
                    LoadUnit::Frames => "Frames/s",
                },
                last.map(|s| s.offered_rps).unwrap_or(0.0),
                last.map(|s| s.achieved_rps).unwrap_or(0.0),
                last.map(|s| s.errors).unwrap_or(0),
                last.map(|s| s.shed).unwrap_or(0)
            ),
            false,
        )],
        series: vec![
            Series {
                name: "offered".into(),
                points: w.iter().map(|s| (s.t_s, s.offered_rps)).collect(),
                marker: Marker::Dot,
                color: Color::White,
            },
            Series {
                name: "achieved".into(),
                points: w.iter().map(|s| (s.t_s, s.achieved_rps)).collect(),
                marker: Marker::Braille,
                color: Color::Green,
            },
            Series {
                name: "errors".into(),
                points: w.iter().filter(|s| s.errors > 0).map(|s| (s.t_s, s.errors as f64)).collect(),
                marker: Marker::Block,
                color: Color::Red,
            },
            Series {
                name: "shed".into(),
                points: w.iter().filter(|s| s.shed > 0).map(|s| (s.t_s, s.shed as f64)).collect(),
                marker: Marker::HalfBlock,
                color: Color::Yellow,
            },
        ],
        x,
        y: [0.0, peak * 1.15],
        y_unit: "",
    }
}

pub fn gpu_model(app: &App, width: u16) -> Option<ChartModel> {
    let (w, x) = window(&app.snap.series, width);
    if !w.iter().any(|s| s.gpu_util.is_some()) {
        return None;
    }
    let last = w.iter().rev().find_map(|s| s.gpu_util);
    Some(ChartModel {
        title: vec![(format!("GPU util % {}", last.map(|v| format!("{v:.0}")).unwrap_or("—".into())), false)],
        series: vec![Series {
            name: "util".into(),
            points: w.iter().filter_map(|s| s.gpu_util.map(|v| (s.t_s, v))).collect(),
            marker: Marker::Braille,
            color: Color::Green,
        }],
        x,
        y: [0.0, 100.0],
        y_unit: "%",
    })
}

fn draw(f: &mut Frame, area: Rect, m: &ChartModel) {
    let title: Vec<Span> = m
        .title
        .iter()
        .map(|(t, alert)| Span::styled(t.clone(), if *alert { alert_style() } else { title_style() }))
        .collect();
    let datasets: Vec<Dataset> = m
        .series
        .iter()
        .map(|s| {
            Dataset::default()
                .name(s.name.clone())
                .marker(s.marker)
                .graph_type(if matches!(s.marker, Marker::Braille) { GraphType::Line } else { GraphType::Scatter })
                .style(Style::default().fg(s.color))
                .data(&s.points)
        })
        .collect();
    let ylab = |v: f64| format!("{v:.0}{}", m.y_unit);
    let span_s = m.x[1] - m.x[0];
    let chart = Chart::new(datasets)
        .block(Block::bordered().title(Line::from(title)))
        .x_axis(
            Axis::default()
                .bounds(m.x)
                .labels([format!("-{:.0}m", span_s / 60.0), "now".to_string()])
                .style(Style::default().fg(Color::Gray)),
        )
        .y_axis(
            Axis::default()
                .bounds(m.y)
                .labels([ylab(m.y[0]), ylab(m.y[1])])
                .style(Style::default().fg(Color::Gray).add_modifier(Modifier::BOLD)),
        )
        .hidden_legend_constraints((Constraint::Ratio(1, 4), Constraint::Ratio(3, 4)));
    f.render_widget(chart, area);
}

pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let gpu = gpu_model(app, area.width / 4);
    let n = if gpu.is_some() { 4 } else { 3 };
    let cols = Layout::horizontal(vec![Constraint::Ratio(1, n); n as usize]).split(area);
    let w = cols[0].width;
    draw(f, cols[0], &pods_model(app, w));
    draw(f, cols[1], &latency_model(app, w));
    draw(f, cols[2], &rps_model(app, w));
    if let Some(g) = gpu {
        draw(f, cols[3], &g);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{app, render as draw};
    use super::*;

    #[test]
    fn charts_name_series_with_values() {
        let app = app();
        let s = draw(100, 11, |f| render(&app, f, f.area()));
        assert!(s.contains("MAX Pods ready 4/5 desired 6"), "{s}");
        assert!(s.contains("MAX"), "pinned at max is said in words: {s}");
        assert!(s.contains("p95 ms SLO 100 srv 189 cli 220"), "{s}");
        assert!(s.contains("RPS off 40 got 34 err 0 shed 1"), "{s}");
        assert!(s.contains("now"));
        // WebRTC sessions: the same chart counts frames asked for and processed back.
        let mut frames = app.clone();
        frames.load_unit = LoadUnit::Frames;
        let f = draw(100, 11, |fr| render(&frames, fr, fr.area()));
        assert!(f.contains("Frames/s off 40 got 34") && !f.contains("RPS"), "{f}");
        // braille line points were drawn
        assert!(s.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)), "{s}");
    }

    #[test]
    fn models_follow_the_snapshot() {
        let app = app();
        let p = pods_model(&app, 33);
        assert_eq!(
            p.series.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["ready", "total", "desired", "max 5", "min 2"]
        );
        let l = latency_model(&app, 33);
        assert!(l.y[1] >= 150.0);
        assert!(l.series[2].points.iter().all(|p| p.1 == 100.0));
        let r = rps_model(&app, 33);
        assert_eq!(r.series[0].points.len(), 120);
        assert!(gpu_model(&app, 33).is_none());
    }

    #[test]
    fn gpu_chart_appears_when_present() {
        let mut app = app();
        let mut snap = (*app.snap).clone();
        for s in snap.series.iter_mut() {
            s.gpu_util = Some(55.0);
        }
        app.snap = std::sync::Arc::new(snap);
        let s = draw(140, 11, |f| render(&app, f, f.area()));
        assert!(s.contains("GPU util % 55"), "{s}");
    }
}
