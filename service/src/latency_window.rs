//! p95 over a sliding time window that empties when traffic stops.
//!
//! The old demo's rolling gauge kept its last value forever once requests stopped, so
//! the autoscaler never saw the load go away. Here latencies land in one-second slots;
//! slots older than the window are ignored, and an empty window reads 0.
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Latencies are kept in microseconds between 1 µs and 10 minutes, 2 significant digits.
const MAX_MICROS: u64 = 600_000_000;

pub struct LatencyWindow {
    origin: Instant,
    slots: Vec<Slot>,
}

struct Slot {
    /// Which second since `origin` this slot holds; `u64::MAX` when never used.
    second: u64,
    histogram: Histogram<u32>,
}

impl LatencyWindow {
    /// `window` is rounded up to whole seconds (at least one).
    pub fn new(window: Duration) -> Self {
        let n = window.as_secs_f64().ceil().max(1.0) as usize;
        let slots = (0..n)
            .map(|_| Slot {
                second: u64::MAX,
                histogram: Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("static bounds are valid"),
            })
            .collect();
        LatencyWindow { origin: Instant::now(), slots }
    }

    fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs()
    }

    pub fn record(&mut self, latency: Duration, now: Instant) {
        let second = self.second(now);
        let n = self.slots.len() as u64;
        let slot = &mut self.slots[(second % n) as usize];
        if slot.second != second {
            slot.histogram.reset();
            slot.second = second;
        }
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        slot.histogram.saturating_record(micros);
    }

    /// The `q` quantile (0..=1) over the last window, in seconds; 0 when it holds nothing.
    pub fn quantile(&self, q: f64, now: Instant) -> f64 {
        let current = self.second(now);
        let n = self.slots.len() as u64;
        let live = self.slots.iter().filter(|s| s.second != u64::MAX && current.saturating_sub(s.second) < n);
        let mut merged: Option<Histogram<u32>> = None;
        for slot in live {
            match &mut merged {
                None => merged = Some(slot.histogram.clone()),
                Some(m) => m.add(&slot.histogram).expect("same bounds"),
            }
        }
        match merged {
            Some(m) if !m.is_empty() => m.value_at_quantile(q) as f64 / 1e6,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_reflects_the_window_and_decays_to_zero() {
        let mut w = LatencyWindow::new(Duration::from_secs(3));
        let t0 = w.origin;
        assert_eq!(w.quantile(0.95, t0), 0.0);
        for i in 0..100 {
            w.record(Duration::from_millis(if i < 95 { 10 } else { 200 }), t0);
        }
        let p95 = w.quantile(0.95, t0);
        assert!((0.0099..0.0102).contains(&p95), "{p95}");
        assert!(w.quantile(0.99, t0) > 0.19);
        // Still inside the window two seconds later, gone after three.
        assert!(w.quantile(0.95, t0 + Duration::from_secs(2)) > 0.0);
        assert_eq!(w.quantile(0.95, t0 + Duration::from_secs(3)), 0.0);
    }

    #[test]
    fn a_reused_slot_forgets_its_old_second() {
        let mut w = LatencyWindow::new(Duration::from_secs(2));
        let t0 = w.origin;
        w.record(Duration::from_millis(500), t0);
        w.record(Duration::from_millis(5), t0 + Duration::from_secs(2));
        let p = w.quantile(1.0, t0 + Duration::from_secs(2));
        assert!(p < 0.01, "the 500 ms sample left the window: {p}");
    }
}
