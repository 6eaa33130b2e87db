//! Pods: name, phase, ready, node, age, restarts.
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Cell, Row, Table};
use ratatui::Frame;

use super::{dim_style, title_style, App};

fn age(s: u64) -> String {
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else {
        format!("{}h", s / 3600)
    }
}

pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let pods = &app.snap.pods;
    let ready = pods.iter().filter(|p| p.ready).count();
    let wide = area.width >= 44;
    let rows: Vec<Row> = pods
        .iter()
        .map(|p| {
            let st = if p.ready { Style::default().fg(Color::White) } else { Style::default().fg(Color::Yellow) };
            // ✓/✗ is readiness (no colour needed), then the phase
            let mut cells = vec![
                Cell::from(p.name.clone()),
                Cell::from(format!("{} {}", if p.ready { "✓" } else { "✗" }, p.phase)),
                Cell::from(p.restarts.to_string()),
                Cell::from(age(p.age_s)),
            ];
            if wide {
                cells.push(Cell::from(p.node.clone()));
            }
            Row::new(cells).style(st)
        })
        .collect();
    let mut widths = vec![Constraint::Min(8), Constraint::Length(10), Constraint::Length(3), Constraint::Length(4)];
    let mut header = vec!["NAME", "STATUS", "RST", "AGE"];
    if wide {
        widths.push(Constraint::Min(6));
        header.push("NODE");
    }
    let t = Table::new(rows, widths)
        .header(Row::new(header).style(Style::default().fg(Color::Gray).add_modifier(Modifier::BOLD)))
        .column_spacing(1)
        .block(Block::bordered().title(Span::styled(format!("Pods {ready}/{} ready", pods.len()), title_style())));
    if pods.is_empty() {
        f.render_widget(
            ratatui::widgets::Paragraph::new(Span::styled("no pods yet", dim_style()))
                .block(Block::bordered().title(Span::styled("Pods", title_style()))),
            area,
        );
    } else {
        f.render_widget(t, area);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{app, render as draw};
    use super::*;

    #[test]
    fn pods_table_shows_every_column() {
        let app = app();
        let s = draw(50, 8, |f| render(&app, f, f.area()));
        assert!(s.contains("Pods 4/5 ready"), "{s}");
        assert!(s.contains("NAME") && s.contains("STATUS") && s.contains("NODE"), "{s}");
        assert!(s.contains("serve-1") && s.contains("✓ Running") && s.contains("localhost"), "{s}");
        assert!(s.contains("✗ Pending"), "{s}");
        // narrow: no node column, still readable
        let s = draw(30, 8, |f| render(&app, f, f.area()));
        assert!(s.contains("serve-1") && s.contains("✓ Running") && !s.contains("NODE"), "{s}");
    }
}
