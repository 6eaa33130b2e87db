//! The `replay` backend: plays a report folder back through the same UI, labelled REPLAY.
//! `StartStage { index }` seeks to that stage's first second; pause/resume pause playback.
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::model::*;
use super::report::Report;

enum Msg {
    Cmd(BackendCommand),
    Stop,
}

pub struct ReplayBackend {
    snap: watch::Receiver<Arc<ClusterSnapshot>>,
    tx: mpsc::UnboundedSender<Msg>,
}

impl ReplayBackend {
    /// `speed`: recorded seconds per wall second (1 = real time).
    pub fn start(report: Report, speed: f64) -> Self {
        let (snap_tx, snap) =
            watch::channel(Arc::new(ClusterSnapshot { backend: BackendLabel::Replay, ..Default::default() }));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let speed = if speed.is_finite() && speed > 0.0 { speed.min(1000.0) } else { 1.0 };
        tokio::spawn(async move {
            let mut i = 0usize;
            let mut paused = false;
            let step = Duration::from_secs_f64(1.0 / speed);
            let mut tick = tokio::time::interval(step);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if report.rows.is_empty() {
                            let _ = snap_tx.send(Arc::new(ClusterSnapshot { backend: BackendLabel::Replay, done: true, status: Some("empty report".into()), ..Default::default() }));
                            continue;
                        }
                        let _ = snap_tx.send(Arc::new(frame(&report, i.min(report.rows.len() - 1), paused)));
                        if !paused && i < report.rows.len() {
                            i += 1;
                        }
                    }
                    m = rx.recv() => match m {
                        Some(Msg::Cmd(BackendCommand::Pause)) => paused = true,
                        Some(Msg::Cmd(BackendCommand::Resume)) => paused = false,
                        Some(Msg::Cmd(BackendCommand::StartStage { index, .. })) => {
                            if let Some(p) = report.rows.iter().position(|r| r.sample.stage >= index) {
                                i = p;
                            }
                        }
                        Some(Msg::Cmd(_)) => {}
                        Some(Msg::Stop) | None => return,
                    }
                }
            }
        });
        ReplayBackend { snap, tx }
    }
}

/// The snapshot at recorded row `i`.
pub fn frame(report: &Report, i: usize, paused: bool) -> ClusterSnapshot {
    let rows = &report.rows[..=i];
    let row = &rows[i];
    let s = &row.sample;
    let start = rows.len().saturating_sub(SERIES_SECONDS);
    let series: Vec<Sample> = rows[start..].iter().map(|r| r.sample.clone()).collect();
    let events: Vec<EventInfo> = rows.iter().flat_map(|r| r.events.iter().cloned()).collect();
    let pods = (1..=s.pods_total)
        .map(|k| PodInfo {
            name: format!("replica-{k}"),
            phase: if k <= s.pods_ready { "Running".into() } else { "Pending".into() },
            ready: k <= s.pods_ready,
            node: "(recorded)".into(),
            age_s: 0,
            restarts: 0,
            problem: None,
            sessions: None,
            p95_s: None,
        })
        .collect();
    let h = &report.summary.hpa;
    let autoscaler = Some(AutoscalerState {
        name: h.name.clone(),
        current: s.pods_total,
        desired: s.desired,
        min: h.min,
        max: h.max,
        // The recording keeps p95 per second; the other metrics' values were not recorded.
        metrics: vec![MetricState {
            name: "p95 (recorded)".into(),
            value: s.p95_server_s,
            target: h.target,
            unit: "s".into(),
        }],
        conditions: vec![ConditionInfo {
            kind: "Recorded".into(),
            status: true,
            reason: "Replay".into(),
            message: String::new(),
        }],
    });
    let stages = &report.summary.stages;
    let stage_start = rows.iter().position(|r| r.sample.stage == s.stage).map(|p| rows[p].sample.t_s).unwrap_or(s.t_s);
    let st = stages.get(s.stage);
    let stage = StageView {
        index: s.stage,
        count: stages.len().max(s.stage + 1),
        name: if row.stage_name.is_empty() {
            st.map(|x| x.name.clone()).unwrap_or_default()
        } else {
            row.stage_name.clone()
        },
        elapsed_s: s.t_s - stage_start,
        duration_s: st.map(|x| x.duration_s).unwrap_or(0.0),
        manual: st.is_some_and(|x| x.manual),
        notes: st.map(|x| x.notes.clone()).unwrap_or_default(),
        next_name: stages.get(s.stage + 1).map(|x| x.name.clone()),
        load_desc: format!("recorded {:.0} rps", s.offered_rps),
        paused,
        finished: i + 1 >= report.rows.len(),
    };
    ClusterSnapshot {
        at_s: s.t_s,
        backend: BackendLabel::Replay,
        pods,
        autoscaler,
        events,
        series,
        staleness: Staleness { metrics_source: format!("report {}", report.dir.display()), ..Default::default() },
        kubectl: vec![
            format!("rtc-demo conduct --replay {}", report.dir.display()),
            format!("xdg-open {}/timeline.png", report.dir.display()),
        ],
        status: None,
        stage: Some(stage),
        done: i + 1 >= report.rows.len(),
    }
}

impl Backend for ReplayBackend {
    fn subscribe(&self) -> watch::Receiver<Arc<ClusterSnapshot>> {
        self.snap.clone()
    }
    fn command(&self, cmd: BackendCommand) -> Result<(), BackendGone> {
        self.tx.send(Msg::Cmd(cmd)).map_err(|_| BackendGone("replay"))
    }
    fn shutdown(
        &mut self,
        _teardown: bool,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Totals> + Send + '_>> {
        let _ = self.tx.send(Msg::Stop);
        Box::pin(async { None })
    }
}
