//! Header: scenario, backend, SLO; stage k/n with a progress bar; a large elapsed timer.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph};
use ratatui::Frame;

use super::{alert_style, dim_style, mmss, title_style, App};
use crate::conduct::model::BackendLabel;
use crate::conduct::story::TalkFigures;

/// 3-row glyphs for the large timer (digits and ':').
fn glyph(c: char) -> [&'static str; 3] {
    match c {
        '0' => ["█▀█", "█ █", "█▄█"],
        '1' => [" ▀█", "  █", "  █"],
        '2' => ["▀▀█", "█▀▀", "█▄▄"],
        '3' => ["▀▀█", " ▀█", "▄▄█"],
        '4' => ["█ █", "▀▀█", "  █"],
        '5' => ["█▀▀", "▀▀█", "▄▄█"],
        '6' => ["█▀▀", "█▀█", "█▄█"],
        '7' => ["▀▀█", "  █", "  █"],
        '8' => ["█▀█", "█▀█", "█▄█"],
        '9' => ["█▀█", "▀▀█", "▄▄█"],
        ':' => [" ", "▪", "▪"],
        _ => ["   ", "   ", "   "],
    }
}

/// The large timer text: 3 lines for `m:ss`.
pub fn big_text(s: &str) -> [String; 3] {
    let mut rows = [String::new(), String::new(), String::new()];
    for c in s.chars() {
        let g = glyph(c);
        for (r, row) in rows.iter_mut().enumerate() {
            row.push_str(g[r]);
            row.push(' ');
        }
    }
    rows
}

pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let st = app.stage();
    let timer = mmss(st.elapsed_s);
    let big = big_text(&timer);
    let big_w = (big[0].chars().count() as u16 + 1).min(area.width / 3);
    let [left, right] = Layout::horizontal([Constraint::Min(0), Constraint::Length(big_w.max(12))]).areas(area);

    let backend = match &app.snap.backend {
        BackendLabel::Replay => Span::styled(" REPLAY ", alert_style()),
        b => Span::styled(
            format!(" {} ", b.text()),
            Style::default().fg(Color::Black).bg(Color::White).add_modifier(Modifier::BOLD),
        ),
    };
    let line0 = Line::from(vec![
        Span::styled("rtc-demo conduct ", dim_style()),
        Span::styled(app.scenario.clone(), title_style()),
        Span::raw("  "),
        backend,
        Span::raw("  "),
        Span::styled(format!("SLO p95 < {:.0} ms", app.slo_s * 1000.0), title_style()),
        Span::raw("  "),
        Span::styled(app.capacity.clone().unwrap_or_default(), dim_style()),
    ]);
    let mut stage_spans = vec![
        Span::styled(format!("Stage {}/{}: ", st.index + 1, st.count.max(1)), title_style()),
        Span::styled(st.name.clone(), Style::default().fg(Color::Yellow).add_modifier(Modifier::BOLD)),
        Span::styled(format!("  [{}]  ", if st.manual { "manual" } else { "auto" }), dim_style()),
        Span::styled(format!("load {}", st.load_desc), title_style()),
    ];
    if st.paused {
        stage_spans.push(Span::raw("  "));
        stage_spans.push(Span::styled(" ⏸ PAUSED ", alert_style()));
    }
    if st.finished {
        stage_spans.push(Span::raw("  "));
        stage_spans.push(Span::styled(" FINISHED ", alert_style()));
    }
    let [l0, l1, l2, l3] = Layout::vertical([Constraint::Length(1); 4]).areas(left);
    f.render_widget(Paragraph::new(line0), l0);
    f.render_widget(Paragraph::new(Line::from(stage_spans)), l1);
    let ratio = if st.duration_s > 0.0 { (st.elapsed_s / st.duration_s).clamp(0.0, 1.0) } else { 0.0 };
    let remaining = (st.duration_s - st.elapsed_s).max(0.0);
    let label = if st.manual && st.elapsed_s >= st.duration_s {
        format!("{} elapsed · waiting for space", mmss(st.elapsed_s))
    } else {
        format!("{} / {} · {} left", mmss(st.elapsed_s), mmss(st.duration_s), mmss(remaining))
    };
    f.render_widget(
        Gauge::default()
            .gauge_style(Style::default().fg(Color::Cyan).bg(Color::DarkGray).add_modifier(Modifier::BOLD))
            .ratio(ratio)
            .label(Span::styled(label, Style::default().fg(Color::White).add_modifier(Modifier::BOLD))),
        l2,
    );
    let next = match &st.next_name {
        Some(n) => format!("next: {n}"),
        None => "last stage".into(),
    };
    // The talk's figures, live: over the SLO → scale-up → SLO restored.
    let talk = TalkFigures::from_samples(&app.snap.series, app.slo_s).headline();
    let l3_line =
        Line::from(vec![Span::styled(next, dim_style()), Span::raw("  ·  "), Span::styled(talk, title_style())]);
    f.render_widget(Paragraph::new(l3_line), l3);
    let lines: Vec<Line> = big.iter().map(|r| Line::styled(r.clone(), title_style())).collect();
    let mut lines = lines;
    lines.push(Line::styled("stage time", dim_style()));
    f.render_widget(Paragraph::new(lines), right);
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{app, render as draw};
    use super::*;

    #[test]
    fn header_shows_scenario_stage_backend_timer() {
        let mut app = app();
        app.capacity = Some("one pod 49 req/s · 20.4 ms a frame (emulated)".into());
        let s = draw(140, 4, |f| render(&app, f, f.area()));
        assert!(s.contains("one pod 49 req/s · 20.4 ms a frame (emulated)"), "the measured capacity: {s}");
        assert!(s.contains("rehearsal"), "{s}");
        assert!(s.contains("LOCAL"));
        assert!(s.contains("SLO p95 < 100 ms"));
        assert!(s.contains("Stage 2/4: heavy"));
        assert!(s.contains("0:27 / 1:00"));
        assert!(s.contains("next: cool-down"));
        assert!(s.contains("p95 over the SLO at 49 s · scale-up 1 s later"), "the talk's figures: {s}");
        // the large timer: "0:27" drawn with block glyphs
        assert!(s.contains("█▀█"), "{s}");
    }

    #[test]
    fn header_labels_replay_and_pause() {
        let mut app = app();
        let mut snap = (*app.snap).clone();
        snap.backend = BackendLabel::Replay;
        app.snap = std::sync::Arc::new(snap);
        app.stage.paused = true;
        let s = draw(100, 4, |f| render(&app, f, f.area()));
        assert!(s.contains("REPLAY") && s.contains("PAUSED"), "{s}");
    }

    #[test]
    fn big_digits_are_three_rows() {
        let b = big_text("1:05");
        assert_eq!(b.len(), 3);
        assert!(b[0].starts_with(" ▀█"));
    }
}
