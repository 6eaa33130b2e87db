//! The timeline chart image: three stacked panels over the run's time axis: load (offered,
//! achieved, errors + shed), pods (ready, desired, min/max), p95 (server, client-corrected,
//! SLO line). Scale events are marked on every panel (▲ up / ▼ down, with the new size);
//! stage boundaries are drawn and named. Drawn with plotters' bitmap backend; text uses an
//! embedded DejaVu Sans subset, so no system font is needed.
use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use super::{Row, Summary};

static FONT: &[u8] = include_bytes!("DejaVuSans-subset.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, FONT);
    });
}

/// A scale event: (time s, new size, up?).
pub fn scale_events(rows: &[Row]) -> Vec<(f64, u32, bool)> {
    let mut out = Vec::new();
    for r in rows {
        for e in &r.events {
            if e.reason == "SuccessfulRescale" {
                let size = e
                    .message
                    .strip_prefix("New size: ")
                    .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                    .and_then(|s| s.parse().ok());
                if let Some(n) = size {
                    let prev = out.last().map(|x: &(f64, u32, bool)| x.1).unwrap_or(r.sample.pods_total);
                    out.push((e.at_s, n, n >= prev));
                }
            }
        }
    }
    out
}

pub fn draw(path: &Path, rows: &[Row], summary: &Summary) -> Result<(), super::ReportError> {
    register_font();
    draw_inner(path, rows, summary)
        .map_err(|e| super::ReportError::Chart { path: path.to_path_buf(), reason: e.to_string() })
}

fn draw_inner(path: &Path, rows: &[Row], summary: &Summary) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut title = format!(
        "rtc-demo conduct · {} · {} · {:.0} s · SLO p95 < {:.0} ms",
        summary.scenario, summary.backend, summary.duration_s, summary.slo_p95_ms
    );
    if let Some(c) = &summary.capacity {
        title.push_str(&format!(" · {}", c.short()));
    }
    // The bundled font has no middle dot: separate with bars.
    let title = title.replace('·', "|");
    let root = root.titled(&title, ("sans-serif", 26).into_font().color(&BLACK))?;
    let panels = root.split_evenly((3, 1));
    let t_max = rows.last().map(|r| r.sample.t_s).unwrap_or(1.0).max(1.0);
    let t_min = rows.first().map(|r| r.sample.t_s).unwrap_or(0.0).min(t_max - 1.0);
    let events = scale_events(rows);
    // stage boundaries: (t, name)
    let mut stages: Vec<(f64, String)> = Vec::new();
    for r in rows {
        if stages.last().map(|s| &s.1) != Some(&r.stage_name) {
            stages.push((r.sample.t_s, r.stage_name.clone()));
        }
    }
    let label_font = ("sans-serif", 16).into_font();
    let font = |s: u32| ("sans-serif", s).into_font();

    // helpers to mark events and stages on a chart
    macro_rules! marks {
        ($chart:expr, $ymax:expr, $with_labels:expr) => {{
            for (t, name) in &stages {
                $chart.draw_series(DashedLineSeries::new(
                    vec![(*t, 0.0), (*t, $ymax)],
                    4,
                    4,
                    BLACK.mix(0.35).stroke_width(1),
                ))?;
                if $with_labels {
                    $chart.draw_series(std::iter::once(Text::new(
                        format!(" {name}"),
                        (*t, $ymax * 0.97),
                        font(15).color(&BLACK.mix(0.7)),
                    )))?;
                }
            }
            for (t, n, up) in &events {
                let c = if *up { RGBColor(200, 30, 30) } else { RGBColor(30, 90, 200) };
                $chart.draw_series(LineSeries::new(vec![(*t, 0.0), (*t, $ymax)], c.mix(0.6).stroke_width(2)))?;
                $chart.draw_series(std::iter::once(Text::new(
                    format!("{}{n}", if *up { "↑" } else { "↓" }),
                    (*t, $ymax * 0.55),
                    font(16).color(&c),
                )))?;
            }
        }};
    }

    // 1. Load
    let y1 = rows.iter().map(|r| r.sample.offered_rps.max(r.sample.achieved_rps)).fold(10.0, f64::max) * 1.15;
    let mut c1 = ChartBuilder::on(&panels[0])
        .caption(format!("Load ({}) — offered, achieved, errors + shed", summary.load_unit.what()), font(18))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(60)
        .build_cartesian_2d(t_min..t_max, 0.0..y1)?;
    c1.configure_mesh()
        .y_desc(summary.load_unit.rate())
        .label_style(label_font.clone())
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    c1.draw_series(LineSeries::new(rows.iter().map(|r| (r.sample.t_s, r.sample.offered_rps)), BLACK.stroke_width(2)))?
        .label("offered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    c1.draw_series(LineSeries::new(
        rows.iter().map(|r| (r.sample.t_s, r.sample.achieved_rps)),
        RGBColor(0, 140, 60).stroke_width(2),
    ))?
    .label("achieved")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(0, 140, 60).stroke_width(2)));
    c1.draw_series(DashedLineSeries::new(
        rows.iter().map(|r| (r.sample.t_s, (r.sample.errors + r.sample.shed) as f64)),
        6,
        3,
        RGBColor(220, 120, 0).stroke_width(2),
    ))?
    .label("errors + shed (503)")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(220, 120, 0).stroke_width(2)));
    marks!(c1, y1, true);
    c1.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(label_font.clone())
        .draw()?;

    // 2. Pods
    let y2 =
        rows.iter().map(|r| r.sample.pods_total.max(r.sample.desired) as f64).fold(summary.hpa.max as f64, f64::max)
            + 1.0;
    let mut c2 = ChartBuilder::on(&panels[1])
        .caption("Pods — ready, HPA desired, min/max (↑/↓ = scale events with the new size)", font(18))
        .margin(8)
        .x_label_area_size(28)
        .y_label_area_size(60)
        .build_cartesian_2d(t_min..t_max, 0.0..y2)?;
    c2.configure_mesh().y_desc("replicas").label_style(label_font.clone()).light_line_style(WHITE.mix(0.0)).draw()?;
    c2.draw_series(LineSeries::new(
        rows.iter().map(|r| (r.sample.t_s, r.sample.pods_ready as f64)),
        RGBColor(0, 140, 60).stroke_width(3),
    ))?
    .label("ready")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(0, 140, 60).stroke_width(3)));
    c2.draw_series(DashedLineSeries::new(
        rows.iter().map(|r| (r.sample.t_s, r.sample.desired as f64)),
        8,
        4,
        RGBColor(200, 30, 30).stroke_width(2),
    ))?
    .label("desired (HPA)")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(200, 30, 30).stroke_width(2)));
    for (v, name) in [(summary.hpa.min, "min"), (summary.hpa.max, "max")] {
        if v > 0 {
            c2.draw_series(DashedLineSeries::new(
                vec![(t_min, v as f64), (t_max, v as f64)],
                3,
                5,
                BLACK.mix(0.6).stroke_width(1),
            ))?;
            c2.draw_series(std::iter::once(Text::new(format!("{name} {v}"), (t_min, v as f64 + 0.1), font(14))))?;
        }
    }
    marks!(c2, y2, false);
    c2.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(label_font.clone())
        .draw()?;

    // 3. p95
    let slo = summary.slo_p95_ms.max(1.0);
    let y3 = rows
        .iter()
        .flat_map(|r| [r.sample.p95_server_s, r.sample.p95_client_s])
        .flatten()
        .map(|v| v * 1000.0)
        .fold(slo * 1.5, f64::max)
        .min(slo * 20.0)
        * 1.1;
    let mut c3 = ChartBuilder::on(&panels[2])
        .caption(
            format!(
                "p95 latency (ms) — server, client corrected, SLO line | {}",
                summary.talk.headline().replace('·', "|")
            ),
            font(18),
        )
        .margin(8)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(t_min..t_max, 0.0..y3)?;
    c3.configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("ms")
        .label_style(label_font.clone())
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    let seg = |f: fn(&Row) -> Option<f64>| -> Vec<Vec<(f64, f64)>> {
        let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for r in rows {
            match f(r) {
                Some(v) => out.last_mut().unwrap().push((r.sample.t_s, (v * 1000.0).min(y3))),
                None => out.push(Vec::new()),
            }
        }
        out.retain(|s| !s.is_empty());
        out
    };
    let blue = RGBColor(20, 80, 200);
    let purple = RGBColor(140, 40, 160);
    for (i, s) in seg(|r| r.sample.p95_server_s).into_iter().enumerate() {
        let ser = c3.draw_series(LineSeries::new(s, blue.stroke_width(2)))?;
        if i == 0 {
            ser.label("server p95")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
        }
    }
    for (i, s) in seg(|r| r.sample.p95_client_s).into_iter().enumerate() {
        let ser = c3.draw_series(DashedLineSeries::new(s, 5, 3, purple.stroke_width(2)))?;
        if i == 0 {
            ser.label("client p95 (corrected)")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], purple.stroke_width(2)));
        }
    }
    c3.draw_series(LineSeries::new(vec![(t_min, slo), (t_max, slo)], RED.stroke_width(2)))?
        .label(format!("SLO {slo:.0} ms"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    marks!(c3, y3, false);
    c3.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(label_font)
        .draw()?;
    root.present()?;
    Ok(())
}
