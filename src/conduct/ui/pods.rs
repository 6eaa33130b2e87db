//! Pods: name, status (phase, or why it does not start), ready, node, age, restarts, and
//! while any pod carries WebRTC sessions, how many each holds and its own p95 (a session
//! stays on the pod that answered its offer, so a new pod fills with new sessions, fast,
//! while the old stay loaded, slow);
//! under them, for a pod that does not start, the kubelet's reason and message, what to do,
//! and the kubectl command that shows the same.
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::{dim_style, title_style, App};
use crate::conduct::model::PodInfo;

fn age(s: u64) -> String {
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else {
        format!("{}h", s / 3600)
    }
}

/// The STATUS column as kubectl's: the waiting reason when a pod is stuck, else the phase.
fn status(p: &PodInfo) -> String {
    let what = p.problem.as_ref().map_or(p.phase.as_str(), |x| x.reason.as_str());
    format!("{} {what}", if p.ready { "✓" } else { "✗" })
}

/// Why the first stuck pod does not start, what to do, and the kubectl command that shows it.
fn problem_lines(pods: &[PodInfo]) -> Vec<Line<'static>> {
    let mut stuck = pods.iter().filter_map(|p| Some((p, p.problem.as_ref()?)));
    let Some((pod, x)) = stuck.next() else { return Vec::new() };
    let more = stuck.count();
    let bad = Style::default().fg(Color::Red);
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("✗ {} {}: ", pod.name, x.reason), bad.add_modifier(Modifier::BOLD)),
        Span::styled(if x.message.is_empty() { "(no message)".to_string() } else { x.message.clone() }, bad),
    ])];
    if let Some(h) = &x.hint {
        lines.push(Line::from(Span::styled(format!("→ {h}"), Style::default().fg(Color::Yellow))));
    }
    if !x.kubectl.is_empty() {
        lines.push(Line::from(Span::styled(format!("$ {}", x.kubectl), dim_style())));
    }
    if more > 0 {
        lines.push(Line::from(Span::styled(format!("(+{more} more pods not starting)"), dim_style())));
    }
    lines
}

pub fn render(app: &App, f: &mut Frame, area: Rect) {
    let pods = &app.snap.pods;
    if pods.is_empty() {
        f.render_widget(
            Paragraph::new(Span::styled("no pods yet", dim_style()))
                .block(Block::bordered().title(Span::styled("Pods", title_style()))),
            area,
        );
        return;
    }
    let ready = pods.iter().filter(|p| p.ready).count();
    let block = Block::bordered().title(Span::styled(format!("Pods {ready}/{} ready", pods.len()), title_style()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let wide = inner.width >= 42;
    let sessions = pods.iter().any(|p| p.sessions.is_some_and(|n| n > 0));
    let status_w = pods.iter().map(|p| status(p).chars().count()).max().unwrap_or(0).max(10) as u16;
    let rows: Vec<Row> = pods
        .iter()
        .map(|p| {
            let st = if p.ready { Style::default().fg(Color::White) } else { Style::default().fg(Color::Yellow) };
            // ✓/✗ is readiness (no colour needed), then the phase or why it is stuck
            let mut cells = vec![Cell::from(p.name.clone()), Cell::from(status(p))];
            if sessions {
                cells.push(Cell::from(p.sessions.map_or("?".to_string(), |n| n.to_string())));
                cells.push(Cell::from(p.p95_s.map_or("?".to_string(), |s| format!("{:.0}ms", s * 1000.0))));
            }
            cells.extend([Cell::from(p.restarts.to_string()), Cell::from(age(p.age_s))]);
            if wide {
                cells.push(Cell::from(p.node.clone()));
            }
            Row::new(cells).style(st)
        })
        .collect();
    let mut widths = vec![Constraint::Min(8), Constraint::Length(status_w)];
    let mut header = vec!["NAME", "STATUS"];
    if sessions {
        widths.extend([Constraint::Length(4), Constraint::Length(6)]);
        header.extend(["SESS", "P95"]);
    }
    widths.extend([Constraint::Length(3), Constraint::Length(4)]);
    header.extend(["RST", "AGE"]);
    if wide {
        widths.push(Constraint::Min(6));
        header.push("NODE");
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(Style::default().fg(Color::Gray).add_modifier(Modifier::BOLD)))
        .column_spacing(1);
    let lines = problem_lines(pods);
    // Rows the wrapped lines take (word wrapping can need one more than the characters say).
    let w = inner.width.max(1) as usize;
    let wrapped: usize = lines.iter().map(|l| l.width().div_ceil(w).max(1) + usize::from(l.width() > w)).sum();
    // At least the header and one pod stay visible above the why-lines.
    let why_h = (wrapped as u16).min(inner.height.saturating_sub(2));
    let why = Paragraph::new(lines).wrap(Wrap { trim: true });
    let [table_a, why_a] = Layout::vertical([Constraint::Min(0), Constraint::Length(why_h)]).areas(inner);
    f.render_widget(table, table_a);
    f.render_widget(why, why_a);
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{app, render as draw};
    use super::*;
    use crate::conduct::model::PodProblem;

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

    #[test]
    fn sessions_per_pod_show_while_any_pod_holds_one() {
        let mut app = app();
        let s = draw(50, 8, |f| render(&app, f, f.area()));
        assert!(!s.contains("SESS"), "no WebRTC sessions, no column: {s}");
        let mut snap = (*app.snap).clone();
        // Two old pods full of sessions, a new one taking the new sessions, one not scraped.
        for (pod, n) in snap.pods.iter_mut().zip([Some(4), Some(4), Some(1), Some(0), None]) {
            pod.sessions = n;
            pod.p95_s = n.map(|n| if n == 4 { 0.231 } else { 0.04 });
        }
        app.snap = std::sync::Arc::new(snap);
        let s = draw(50, 8, |f| render(&app, f, f.area()));
        assert!(s.contains("SESS"), "{s}");
        let row = |name: &str| s.lines().find(|l| l.contains(name)).unwrap_or_default().to_string();
        // The cell after the STATUS column's phase.
        let sess = |name: &str| {
            let r = row(name);
            let cells: Vec<&str> = r.split_whitespace().collect();
            cells.iter().position(|c| *c == "Running").map(|i| cells[i + 1].to_string()).unwrap_or_default()
        };
        assert_eq!(sess("serve-1"), "4", "{s}");
        assert_eq!(sess("serve-3"), "1", "{s}");
        assert_eq!(sess("serve-4"), "0", "{s}");
        assert!(row("serve-1").contains("231ms") && row("serve-3").contains("40ms"), "each pod's p95: {s}");
        assert!(row("serve-5").contains('?'), "unknown is not zero: {s}");
    }

    #[test]
    fn a_pod_that_does_not_start_shows_why_and_the_kubectl_to_see_it() {
        let mut app = app();
        let mut snap = (*app.snap).clone();
        snap.pods[4].problem = Some(PodProblem {
            container: "gpu-media".into(),
            reason: "CrashLoopBackOff".into(),
            message: "back-off 1m20s restarting failed container=gpu-media; last exit: Error (exit code 255): exec \
/usr/local/bin/rtc-demo: exec format error"
                .into(),
            hint: Some("built for another CPU architecture: docker buildx build --platform linux/amd64".into()),
            kubectl: "kubectl -n rtc logs serve-5 -c gpu-media --previous".into(),
        });
        app.snap = std::sync::Arc::new(snap);
        let s = draw(60, 20, |f| render(&app, f, f.area()));
        assert!(s.contains("✗ CrashLoopBackOff"), "the STATUS column, as kubectl's: {s}");
        assert!(s.contains("✗ serve-5 CrashLoopBackOff:") && s.contains("exec format error"), "{s}");
        assert!(s.contains("--platform linux/amd64"), "{s}");
        assert!(s.contains("$ kubectl -n rtc logs serve-5 -c gpu-media"), "{s}");
        assert!(s.contains("serve-1"), "the pods stay listed above: {s}");
    }
}
