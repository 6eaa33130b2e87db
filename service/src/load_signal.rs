//! The load-proportional signal (SPEC §1): how many requests a pod holds and how many of its
//! workers are busy, integrated over time into counters, so `rate()` over any window gives
//! the *average* concurrency and utilisation in it (Little's law: concurrency = arrival rate
//! × time in the pod).
//!
//! Why counters and not a gauge of the current level: a gauge scraped every 5 s sees
//! whatever the level happens to be at that instant, and at 20 ms a request it is mostly
//! 0 or 1; the integral misses nothing between scrapes. Why not latency: p95 stays flat at
//! the service time until a pod saturates and then climbs without bound, so an autoscaler
//! on it acts only after users suffer; concurrency grows in proportion to load from the
//! first request, as CPU utilisation does for the HPA's proportional rule.
use std::sync::Mutex;
use std::time::Instant;

/// ∫ level dt in seconds, kept exactly: each change of the level first books the time spent
/// at the old level.
#[derive(Debug)]
pub struct LevelIntegral {
    state: Mutex<Integral>,
}

#[derive(Debug)]
struct Integral {
    level: u64,
    since: Instant,
    seconds: f64,
}

impl Integral {
    fn advance(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.since).as_secs_f64();
        self.seconds += self.level as f64 * dt;
        self.since = now;
    }
}

impl Default for LevelIntegral {
    fn default() -> Self {
        LevelIntegral { state: Mutex::new(Integral { level: 0, since: Instant::now(), seconds: 0.0 }) }
    }
}

impl LevelIntegral {
    /// The level goes up by one until the guard is dropped (on every exit path, a cancelled
    /// request's too).
    pub fn enter(&self) -> LevelGuard<'_> {
        self.change(Instant::now(), true);
        LevelGuard { integral: self }
    }

    /// Seconds × level up to `now`.
    pub fn seconds_at(&self, now: Instant) -> f64 {
        let mut s = self.lock();
        s.advance(now);
        s.seconds
    }

    /// The level now.
    pub fn level(&self) -> u64 {
        self.lock().level
    }

    fn change(&self, now: Instant, up: bool) {
        let mut s = self.lock();
        s.advance(now);
        s.level = if up { s.level + 1 } else { s.level.saturating_sub(1) };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Integral> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One unit of level held; see [`LevelIntegral::enter`].
#[must_use = "the level drops back when the guard is dropped"]
pub struct LevelGuard<'a> {
    integral: &'a LevelIntegral,
}

impl Drop for LevelGuard<'_> {
    fn drop(&mut self) {
        self.integral.change(Instant::now(), false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_integral_is_level_times_time_between_changes() {
        let i = LevelIntegral::default();
        let t0 = i.lock().since;
        // Two requests for 1 s each, overlapping by 0.5 s: 2 request-seconds over 1.5 s.
        i.change(t0, true);
        i.change(t0 + Duration::from_millis(500), true);
        i.change(t0 + Duration::from_millis(1000), false);
        assert_eq!(i.level(), 1);
        i.change(t0 + Duration::from_millis(1500), false);
        let s = i.seconds_at(t0 + Duration::from_secs(10));
        assert!((s - 2.0).abs() < 1e-9, "{s}");
        assert_eq!(i.level(), 0);
        // The level held now counts up to the reading, not only up to the last change.
        i.change(t0 + Duration::from_secs(10), true);
        let s = i.seconds_at(t0 + Duration::from_secs(13));
        assert!((s - 5.0).abs() < 1e-9, "{s}");
    }

    #[test]
    fn a_guard_holds_one_level_until_dropped() {
        let i = LevelIntegral::default();
        {
            let _a = i.enter();
            let _b = i.enter();
            assert_eq!(i.level(), 2);
        }
        assert_eq!(i.level(), 0);
    }
}
