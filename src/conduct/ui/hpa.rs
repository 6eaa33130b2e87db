//! HPA panel: current/desired/min/max, metric vs target, conditions with reasons;
//! highlighted (and labelled "MAX") when pinned at max.
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use super::{alert_style, dim_style, ms, title_style, App};
use crate::conduct::model::{AutoscalerState, MetricState};

/// The panel's lines (view model), also used by the headless output.
pub fn lines(h: Option<&AutoscalerState>, width: u16) -> Vec<Line<'static>> {
    let narrow = width < 40;
    let Some(h) = h else {
        return vec![Line::styled("no autoscaler yet", dim_style())];
    };
    let mut out = Vec::new();
    let mut first = vec![
        Span::styled(format!("replicas {} → desired {}", h.current, h.desired), title_style()),
        Span::styled(
            if narrow { format!(" [{}..{}]", h.min, h.max) } else { format!("  min {} max {}", h.min, h.max) },
            dim_style(),
        ),
    ];
    if h.pinned_at_max() {
        first.push(Span::raw(" "));
        first.push(Span::styled(" MAX ", alert_style()));
    }
    out.push(Line::from(first));
    if h.metrics.is_empty() {
        out.push(Line::styled("no metric", dim_style()));
    }
    for m in &h.metrics {
        out.push(Line::styled(metric_line(m, narrow), Style::default().fg(Color::White)));
    }
    for c in &h.conditions {
        // ✓ = True, ✗ = False; narrow panels drop the "ToScale"/"Scaling" words.
        let kind = if narrow {
            match c.kind.as_str() {
                "AbleToScale" => "Able".to_string(),
                "ScalingActive" => "Active".to_string(),
                "ScalingLimited" => "Limited".to_string(),
                k => k.to_string(),
            }
        } else {
            format!("{}={}", c.kind, if c.status { "True" } else { "False" })
        };
        out.push(Line::from(vec![
            Span::styled(format!("{} ", if c.status { "✓" } else { "✗" }), title_style()),
            Span::styled(format!("{kind} "), Style::default().fg(Color::White)),
            Span::styled(c.reason.clone(), dim_style()),
        ]));
    }
    out
}

/// `p95 187 ms / target 100 ms  ▲ above target`, `utilisation 0.62 / target 0.70  ▼ …`;
/// a metric without a value reads "no data", never 0.
fn metric_line(m: &MetricState, narrow: bool) -> String {
    let verdict = match m.value {
        Some(v) if v > m.target * 1.1 => "▲ above target",
        Some(v) if v < m.target * 0.9 => "▼ below target",
        Some(_) => "= at target",
        None => "? no data",
    };
    // Narrow panels keep the arrow (▲ ▼ = ?) and drop the words.
    let verdict = if narrow { verdict.split(' ').next().unwrap_or(verdict) } else { verdict };
    let number = |v: Option<f64>| v.map_or_else(|| "no data".to_string(), |v| format!("{v:.2}"));
    match m.unit.as_str() {
        "s" => {
            // The guard reads 1.25 × target whenever p95 is over the SLO, not p95 itself
            // (manifests/autoscaling/load-adapter/hpa.yaml); KEDA's s0 is that guard.
            let what = if m.name.contains("guard") || m.name == "s0-prometheus" { "p95 guard" } else { "p95" };
            let value = m.value.map_or("no data".into(), |v| ms(Some(v)));
            format!("{what} {value} / target {}  {verdict}", ms(Some(m.target)))
        }
        _ if m.name.contains("utilization") => {
            format!("utilisation {} / target {:.2}  {verdict}", number(m.value), m.target)
        }
        unit => format!("{} {}{unit} / target {}{unit}  {verdict}", m.name, number(m.value), m.target),
    }
}

pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let h = app.snap.autoscaler.as_ref();
    let pinned = h.is_some_and(|h| h.pinned_at_max());
    let name = h.map(|h| h.name.clone()).unwrap_or_default();
    let mut block = Block::bordered().title(Line::from(vec![Span::styled(format!("HPA {name}"), title_style())]));
    if pinned {
        block = block
            .border_style(Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD))
            .title(Line::from(Span::styled(" PINNED AT MAX ", alert_style())).right_aligned());
    }
    f.render_widget(Paragraph::new(lines(h, area.width.saturating_sub(2))).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{app, render as draw};
    use super::*;

    #[test]
    fn metric_lines_name_the_guard_and_say_no_data() {
        let m =
            |name: &str, value, target, unit: &str| MetricState { name: name.into(), value, target, unit: unit.into() };
        assert_eq!(
            metric_line(&m("rtc_latency_guard", Some(0.125), 0.1, "s"), false),
            "p95 guard 125 ms / target 100 ms  ▲ above target"
        );
        assert_eq!(metric_line(&m("s0-prometheus", None, 0.1, "s"), true), "p95 guard no data / target 100 ms  ?");
        assert_eq!(
            metric_line(&m("rtc_worker_utilization", Some(0.62), 0.7, ""), false),
            "utilisation 0.62 / target 0.70  ▼ below target"
        );
    }

    #[test]
    fn hpa_panel_shows_counts_metric_conditions_and_max() {
        let app = app();
        let s = draw(50, 8, |f| render(&app, f, f.area()));
        assert!(s.contains("HPA gpu-media"), "{s}");
        assert!(s.contains("replicas 5 → desired 5"), "{s}");
        assert!(s.contains("MAX"), "{s}");
        assert!(s.contains("p95 187 ms / target 100 ms"), "{s}");
        assert!(s.contains("utilisation 1.00 / target 0.70"), "{s}");
        assert!(s.contains("✓ AbleToScale=True"), "{s}");
        assert!(s.contains("ScalingLimited=True"), "{s}");
        // at 100×30 the panel is ~35 wide: short names, reasons still whole
        let s = draw(35, 8, |f| render(&app, f, f.area()));
        assert!(s.contains("replicas 5 → desired 5 [2..5]"), "{s}");
        assert!(s.contains("✓ Able ReadyForNewScale"), "{s}");
        assert!(s.contains("✓ Limited TooManyReplicas"), "{s}");
    }

    #[test]
    fn hpa_panel_without_autoscaler() {
        let mut app = app();
        let mut snap = (*app.snap).clone();
        snap.autoscaler = None;
        app.snap = std::sync::Arc::new(snap);
        let s = draw(36, 8, |f| render(&app, f, f.area()));
        assert!(s.contains("no autoscaler yet"), "{s}");
    }
}
