//! The kubectl commands equivalent to what the console does or shows (the fallback).
use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};
use ratatui::Frame;

use super::{dim_style, title_style, App};

pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let lines: Vec<Line> = app
        .snap
        .kubectl
        .iter()
        .map(|c| {
            Line::from(vec![
                Span::styled("$ ", dim_style()),
                Span::styled(c.clone(), Style::default().fg(Color::White)),
            ])
        })
        .collect();
    // Wrapped, never cut: a truncated command is no fallback.
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(Span::styled("kubectl equivalent", title_style()))),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{app, render as draw};
    use super::*;

    #[test]
    fn kubectl_panel_lists_commands() {
        let app = app();
        let s = draw(60, 4, |f| render(&app, f, f.area()));
        assert!(s.contains("kubectl equivalent"), "{s}");
        assert!(s.contains("$ kubectl -n rtc get hpa gpu-media -w"), "{s}");
    }
}
