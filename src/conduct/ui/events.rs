//! Scaling events with times (newest at the bottom).
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use super::{alert_style, dim_style, mmss, title_style, App};

pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let rows = area.height.saturating_sub(2) as usize;
    let ev = &app.snap.events;
    let start = ev.len().saturating_sub(rows);
    let lines: Vec<Line> = ev[start..]
        .iter()
        .map(|e| {
            let warn = e.kind == "Warning";
            Line::from(vec![
                Span::styled(format!("{:>5} ", mmss(e.at_s)), dim_style()),
                if warn { Span::styled("⚠ ", alert_style()) } else { Span::raw("") },
                Span::styled(
                    format!("{} ", e.reason),
                    if warn { title_style() } else { Style::default().fg(Color::Cyan) },
                ),
                Span::styled(e.message.clone(), Style::default().fg(Color::White)),
            ])
        })
        .collect();
    let lines = if lines.is_empty() { vec![Line::styled("no events yet", dim_style())] } else { lines };
    f.render_widget(Paragraph::new(lines).block(Block::bordered().title(Span::styled("Events", title_style()))), area);
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{app, render as draw};
    use super::*;

    #[test]
    fn events_panel_lists_newest_with_times() {
        let app = app();
        let s = draw(60, 5, |f| render(&app, f, f.area()));
        // 3 rows inside: all three events
        assert!(s.contains("0:31 SuccessfulRescale New size: 3"), "{s}");
        assert!(s.contains("1:10 ⚠ BackOff"), "{s}");
        let s = draw(60, 3, |f| render(&app, f, f.area()));
        assert!(s.contains("BackOff") && !s.contains("New size: 3"), "only the newest fits: {s}");
    }
}
