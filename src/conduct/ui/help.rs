//! The `?` overlay, drawn from the keymap table.
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Clear, Row, Table};
use ratatui::Frame;

use super::title_style;
use crate::conduct::keymap::KEYMAP;

pub fn render(f: &mut Frame, area: Rect) {
    let h = (KEYMAP.len() as u16 + 3).min(area.height);
    let w = 72.min(area.width);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    let rows: Vec<Row> = KEYMAP
        .iter()
        .map(|b| {
            Row::new(vec![
                Span::styled(b.label, title_style()),
                Span::styled(b.help, Style::default().fg(Color::White)),
            ])
        })
        .collect();
    f.render_widget(Clear, r);
    f.render_widget(
        Table::new(rows, [Constraint::Length(8), Constraint::Min(10)])
            .header(Row::new(["KEY", "ACTION"]).style(Style::default().fg(Color::Gray).add_modifier(Modifier::BOLD)))
            .block(Block::bordered().title(Span::styled("Keys (? or Esc closes)", title_style())))
            .style(Style::default().bg(Color::Black)),
        r,
    );
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::render as draw;
    use super::*;

    #[test]
    fn help_lists_every_binding() {
        let s = draw(100, 30, |f| render(f, f.area()));
        for b in KEYMAP {
            assert!(s.contains(b.label), "{} missing:\n{s}", b.label);
            assert!(s.contains(&b.help[..b.help.len().min(20)]), "{} missing:\n{s}", b.help);
        }
    }
}
