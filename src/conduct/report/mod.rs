//! The report folder (SPEC §4): `timeline.csv` (one row per second), `summary.json`, and
//! `timeline.png` (load, pods, p95 with the SLO line, scale events marked), written at the end
//! of a run and on the `s` key. [`read`] loads a report back for `--replay`.
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::Verdict;
use super::model::{ClusterSnapshot, EventInfo, Sample};

pub mod chart;

/// One recorded second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub sample: Sample,
    pub stage_name: String,
    pub events: Vec<EventInfo>,
}

/// Collects the run second by second from the snapshots (whatever the backend).
#[derive(Debug, Default, Clone)]
pub struct Recorder {
    pub rows: Vec<Row>,
    seen: HashSet<(u64, String, String)>,
    pub all_events: Vec<EventInfo>,
}

impl Recorder {
    /// Records the snapshot's newest second (once) and any event not seen before.
    pub fn observe(&mut self, snap: &ClusterSnapshot, stage_name: impl Fn(usize) -> String) {
        let mut fresh = Vec::new();
        for e in &snap.events {
            let key = (e.at_s.to_bits(), e.reason.clone(), e.message.clone());
            if self.seen.insert(key) {
                fresh.push(e.clone());
            }
        }
        self.all_events.extend(fresh.iter().cloned());
        let Some(last) = snap.series.last() else {
            if let Some(r) = self.rows.last_mut() {
                r.events.extend(fresh);
            }
            return;
        };
        if self.rows.last().is_some_and(|r| r.sample.t_s >= last.t_s) {
            if let Some(r) = self.rows.last_mut() {
                r.events.extend(fresh);
            }
            return;
        }
        self.rows.push(Row { sample: last.clone(), stage_name: stage_name(last.stage), events: fresh });
    }
}

/// What `summary.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Summary {
    pub scenario: String,
    pub backend: String,
    /// Unix seconds at the start of the run.
    pub started_unix_s: u64,
    pub duration_s: f64,
    pub slo_p95_ms: f64,
    pub hpa: HpaSummary,
    /// One pod's capacity as measured before the stages (None: not measured, or an older report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::conduct::capacity::Capacity>,
    pub stages: Vec<StageSummary>,
    /// The load engine's cumulative summary (as `rtc-demo load --json` writes it).
    pub load: Option<serde_json::Value>,
    /// What the load's rate counts (requests, or WebRTC frames); older reports: requests.
    #[serde(default)]
    pub load_unit: crate::conduct::model::LoadUnit,
    pub thresholds: Vec<VerdictJson>,
    pub expectations: Vec<VerdictJson>,
    /// All thresholds passed (the exit code follows this).
    pub passed: bool,
    pub max_ready: u32,
    /// The talk's figures (over the SLO → scale-up → SLO restored), from the recorded seconds.
    #[serde(default)]
    pub talk: super::story::TalkFigures,
    pub scale_events: usize,
    pub events: Vec<EventInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct HpaSummary {
    pub name: String,
    pub min: u32,
    pub max: u32,
    pub metric: String,
    pub target: f64,
    pub scale_up_window_s: u32,
    pub scale_down_window_s: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct StageSummary {
    pub name: String,
    pub duration_s: f64,
    pub manual: bool,
    pub notes: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct VerdictJson {
    pub text: String,
    pub ok: bool,
}

impl From<&Verdict> for VerdictJson {
    fn from(v: &Verdict) -> Self {
        VerdictJson { text: v.text.clone(), ok: v.ok }
    }
}

pub const CSV_HEADER: &str = "t_s,stage,stage_name,offered_rps,achieved_rps,p95_client_ms,p95_client_uncorrected_ms,p95_server_ms,pods_ready,pods_total,desired,errors,shed,dropped,gpu_util,events";

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\"").replace('\n', " "))
    } else {
        s.to_string()
    }
}

fn opt_ms(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}", x * 1000.0)).unwrap_or_default()
}

pub fn timeline_csv(rows: &[Row]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let s = &r.sample;
        let events: Vec<String> = r.events.iter().map(|e| format!("{}: {}", e.reason, e.message)).collect();
        let _ = writeln!(
            out,
            "{},{},{},{:.2},{:.2},{},{},{},{},{},{},{},{},{},{},{}",
            s.t_s,
            s.stage,
            csv_field(&r.stage_name),
            s.offered_rps,
            s.achieved_rps,
            opt_ms(s.p95_client_s),
            opt_ms(s.p95_client_uncorrected_s),
            opt_ms(s.p95_server_s),
            s.pods_ready,
            s.pods_total,
            s.desired,
            s.errors,
            s.shed,
            s.dropped,
            s.gpu_util.map(|g| format!("{g:.1}")).unwrap_or_default(),
            csv_field(&events.join(" | "))
        );
    }
    out
}

/// Splits one CSV line (quotes with doubled quotes inside).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut q = false;
    let mut it = line.chars().peekable();
    while let Some(c) = it.next() {
        match (c, q) {
            ('"', true) if it.peek() == Some(&'"') => {
                cur.push('"');
                it.next();
            }
            ('"', _) => q = !q,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// What can go wrong reading or writing a report; each names the file (and line) and what
/// was expected.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: cannot read: {source} (expected a report folder written by rtc-demo conduct)", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {problem}", file.display())]
    Timeline { file: PathBuf, line: usize, problem: String },
    #[error("{}:{}:{}: {source}", path.display(), source.line(), source.column())]
    Summary { path: PathBuf, source: serde_json::Error },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: cannot draw the chart: {reason}", path.display())]
    Chart { path: PathBuf, reason: String },
}

/// Parses `timeline.csv`; errors name the line and column.
pub fn parse_timeline(text: &str, file: &Path) -> Result<Vec<Row>, ReportError> {
    let at = |line: usize, problem: String| ReportError::Timeline { file: file.to_path_buf(), line, problem };
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| at(1, format!("empty file (expected the header {CSV_HEADER})")))?;
    let cols = split_csv(header);
    let idx = |name: &str| cols.iter().position(|c| c == name);
    let need = ["t_s", "offered_rps", "achieved_rps", "pods_ready", "desired"];
    for n in need {
        if idx(n).is_none() {
            return Err(at(1, format!("missing column {n} (expected the header {CSV_HEADER})")));
        }
    }
    let mut rows = Vec::new();
    for (ln, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f = split_csv(line);
        let get = |n: &str| idx(n).and_then(|i| f.get(i)).map(|s| s.trim()).unwrap_or("");
        let num = |n: &str| -> Result<f64, ReportError> {
            let v = get(n);
            if v.is_empty() {
                return Ok(0.0);
            }
            v.parse::<f64>().map_err(|_| at(ln + 2, format!("column {n}: {v:?} is not a number")))
        };
        let opt = |n: &str| -> Result<Option<f64>, ReportError> {
            if get(n).is_empty() {
                Ok(None)
            } else {
                num(n).map(Some)
            }
        };
        let sample = Sample {
            t_s: num("t_s")?,
            stage: num("stage")? as usize,
            offered_rps: num("offered_rps")?,
            achieved_rps: num("achieved_rps")?,
            p95_client_s: opt("p95_client_ms")?.map(|v| v / 1000.0),
            p95_client_uncorrected_s: opt("p95_client_uncorrected_ms")?.map(|v| v / 1000.0),
            p95_server_s: opt("p95_server_ms")?.map(|v| v / 1000.0),
            pods_ready: num("pods_ready")? as u32,
            pods_total: num("pods_total")? as u32,
            desired: num("desired")? as u32,
            errors: num("errors")? as u64,
            shed: num("shed")? as u64,
            dropped: num("dropped")? as u64,
            gpu_util: opt("gpu_util")?,
        };
        rows.push(Row { sample, stage_name: get("stage_name").to_string(), events: Vec::new() });
    }
    Ok(rows)
}

/// A report read back from its folder.
#[derive(Debug, Clone)]
pub struct Report {
    pub dir: PathBuf,
    pub rows: Vec<Row>,
    pub summary: Summary,
}

pub fn read(dir: &Path) -> Result<Report, ReportError> {
    let tl = dir.join("timeline.csv");
    let text = std::fs::read_to_string(&tl).map_err(|source| ReportError::Read { path: tl.clone(), source })?;
    let mut rows = parse_timeline(&text, &tl)?;
    let sp = dir.join("summary.json");
    let t = std::fs::read_to_string(&sp).map_err(|source| ReportError::Read { path: sp.clone(), source })?;
    let summary: Summary = serde_json::from_str(&t).map_err(|source| ReportError::Summary { path: sp, source })?;
    // Put the events back on their seconds.
    for e in &summary.events {
        let i = rows.iter().position(|r| r.sample.t_s >= e.at_s.floor()).unwrap_or(rows.len().saturating_sub(1));
        if let Some(r) = rows.get_mut(i) {
            r.events.push(e.clone());
        }
    }
    Ok(Report { dir: dir.to_path_buf(), rows, summary })
}

/// Writes the three files into `dir` (created if needed). Returns the chart's path.
pub fn write(dir: &Path, rows: &[Row], summary: &Summary) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Write { path: dir.to_path_buf(), source })?;
    let w = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(|source| ReportError::Write { path, source })
    };
    w("timeline.csv", timeline_csv(rows))?;
    // A Summary is plain data: serialising it cannot fail.
    w("summary.json", serde_json::to_string_pretty(summary).unwrap_or_default() + "\n")?;
    let png = dir.join("timeline.png");
    chart::draw(&png, rows, summary)?;
    Ok(png)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conduct::ui::fixtures;

    fn rows() -> Vec<Row> {
        let snap = fixtures::snapshot();
        let mut rec = Recorder::default();
        for i in 1..=snap.series.len() {
            let mut s = snap.clone();
            s.series.truncate(i);
            s.events.retain(|e| e.at_s <= i as f64);
            rec.observe(&s, |k| ["idle", "heavy"][k.min(1)].to_string());
        }
        rec.rows
    }

    #[test]
    fn recorder_takes_each_second_and_event_once() {
        let r = rows();
        assert_eq!(r.len(), 120);
        let evs: usize = r.iter().map(|x| x.events.len()).sum();
        assert_eq!(evs, 3);
        assert_eq!(r[61].stage_name, "heavy");
    }

    #[test]
    fn csv_round_trips() {
        let r = rows();
        let text = timeline_csv(&r);
        assert!(text.starts_with(CSV_HEADER));
        assert!(text.contains("SuccessfulRescale: New size: 3"));
        let back = parse_timeline(&text, Path::new("t.csv")).unwrap();
        assert_eq!(back.len(), r.len());
        assert_eq!(back[100].sample.pods_ready, r[100].sample.pods_ready);
        assert!((back[100].sample.p95_server_s.unwrap() - r[100].sample.p95_server_s.unwrap()).abs() < 1e-4);
        assert_eq!(split_csv("a,\"b,\"\"c\"\"\",d"), vec!["a", "b,\"c\"", "d"]);
    }

    #[test]
    fn bad_timeline_says_where() {
        let e = parse_timeline("t_s,offered_rps\n", Path::new("x.csv")).unwrap_err().to_string();
        assert!(e.contains("x.csv:1: missing column achieved_rps"), "{e}");
        let t = format!("{CSV_HEADER}\n1,0,idle,abc,1,,,,1,1,1,0,0,0,,\n");
        let e = parse_timeline(&t, Path::new("x.csv")).unwrap_err().to_string();
        assert!(e.contains("x.csv:2: column offered_rps"), "{e}");
    }

    #[test]
    fn writes_and_reads_a_report_folder() {
        let dir = std::env::temp_dir().join(format!("rtc-report-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let r = rows();
        let summary = Summary {
            scenario: "rehearsal".into(),
            backend: "LOCAL".into(),
            slo_p95_ms: 100.0,
            hpa: HpaSummary { min: 2, max: 5, ..Default::default() },
            capacity: Some(crate::conduct::capacity::Capacity {
                device: "emulated".into(),
                device_name: "emulated GPU (20.0 ms per frame, 1 frame per stream)".into(),
                measured_on: "replica serve-capacity on loopback".into(),
                workers: 1,
                pixels: (1280, 720),
                iters: 1,
                sized_to_ms: None,
                sizing_note: None,
                service_ms: 20.4,
                compute_ms: 20.0,
                pod_rps: 48.9,
                p95_busy_ms: 41.0,
                concurrency: 2,
                slo_ms: 100.0,
            }),
            events: fixtures::snapshot().events,
            ..Default::default()
        };
        let png = write(&dir, &r, &summary).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let back = read(&dir).unwrap();
        assert_eq!(back.rows.len(), 120);
        assert_eq!(back.summary.scenario, "rehearsal");
        assert_eq!(back.summary.capacity, summary.capacity, "the measured capacity is in summary.json");
        assert_eq!(back.rows.iter().map(|r| r.events.len()).sum::<usize>(), 3);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(read(Path::new("/nonexistent-report")).unwrap_err().to_string().contains("cannot read"));
    }

    #[test]
    fn chart_from_a_recorded_rehearsal() {
        // The fixture is a real local rehearsal (1 → 4 replicas under load, 4 → 2 after).
        let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conduct/report");
        let rep = read(&fx).unwrap();
        let ev = chart::scale_events(&rep.rows);
        assert!(ev.iter().any(|e| e.2) && ev.iter().any(|e| !e.2), "an up and a down scale event: {ev:?}");
        let out = std::env::var_os("RTC_CONDUCT_CHART_OUT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join(format!("rtc-chart-{}", std::process::id())));
        let png = write(&out, &rep.rows, &rep.summary).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 20_000, "a chart with content, not a blank image");
        if std::env::var_os("RTC_CONDUCT_CHART_OUT").is_none() {
            let _ = std::fs::remove_dir_all(&out);
        }
    }
}
