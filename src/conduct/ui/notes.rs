//! Speaker notes for the running stage, with the next stage's name.
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use super::{dim_style, title_style, App};

pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let st = app.stage();
    let next = match &st.next_name {
        Some(n) => format!("next: {n}"),
        None => "last stage".into(),
    };
    let block = Block::bordered()
        .title(Span::styled(format!("Notes · {}", st.name), title_style()))
        .title_bottom(Line::from(Span::styled(next, title_style())).right_aligned());
    let text = if st.notes.trim().is_empty() {
        Line::styled("(no notes for this stage)", dim_style())
    } else {
        Line::styled(st.notes.clone(), Style::default().fg(Color::White))
    };
    f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{app, render as draw};
    use super::*;

    #[test]
    fn notes_panel_shows_notes_and_next_stage() {
        let app = app();
        let s = draw(36, 8, |f| render(&app, f, f.area()));
        assert!(s.contains("Notes · heavy"), "{s}");
        assert!(s.contains("Load triples."), "{s}");
        assert!(s.contains("next: cool-down"), "{s}");
    }
}
