//! Speaker notes for the running stage, with the next stage's name.
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span, Text};
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
        Text::from(Line::styled("(no notes for this stage)", dim_style()))
    } else {
        let style = Style::default().fg(Color::White);
        Text::from(paragraphs(&st.notes).into_iter().map(|p| Line::styled(p, style)).collect::<Vec<_>>())
    };
    f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }).block(block), area);
}

/// Notes as written in a TOML multi-line string, reflowed for the panel: a line break inside
/// a paragraph is a space (the panel wraps to its own width), a blank line starts a new
/// paragraph, and a line starting with `-` or `*` keeps its own line (a list item).
pub fn paragraphs(notes: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for line in notes.lines().map(str::trim) {
        if line.is_empty() {
            if open {
                out.push(String::new());
            }
            open = false;
        } else if open && !line.starts_with(['-', '*']) {
            let last = out.last_mut().expect("an open paragraph has a line");
            last.push(' ');
            last.push_str(line);
        } else {
            out.push(line.to_string());
            open = true;
        }
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out
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

    #[test]
    fn line_breaks_inside_a_paragraph_keep_words_apart() {
        let notes = "Watch the scaling\nevents panel: more\nreplicas.\n\nPractise the line\n- first item\n- second";
        assert_eq!(
            paragraphs(notes),
            ["Watch the scaling events panel: more replicas.", "", "Practise the line", "- first item", "- second"]
        );
        let mut app = app();
        app.stage.notes = "one scaling\nevents two".into();
        let s = draw(60, 6, |f| render(&app, f, f.area()));
        assert!(s.contains("one scaling events two"), "{s}");
    }
}
