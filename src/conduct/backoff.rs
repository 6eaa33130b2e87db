//! The console's one retry schedule, for every loop that retries something remote (the
//! Prometheus poller, the kube watchers, the ScaledObject reader, the port-forward): 1 s
//! after the first failure, doubling to 10 s, back to the start after a success. A 403 or a
//! dead port-forward never spins, and a healed source is read again within seconds.
use std::time::Duration;

const FIRST: Duration = Duration::from_secs(1);
const LONGEST: Duration = Duration::from_secs(10);

/// Failures in a row, and the wait they call for.
#[derive(Debug, Default, Clone, Copy)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Counts a failure; the wait before the next try.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.wait()
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The wait the failures so far call for (none after a success).
    pub fn wait(&self) -> Duration {
        match self.failures {
            0 => Duration::ZERO,
            n => FIRST.saturating_mul(1 << (n - 1).min(4)).min(LONGEST),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_ten_seconds_and_starts_over_after_a_success() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..7).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10, 10]);
        assert_eq!(b.failures(), 7);
        b.succeeded();
        assert_eq!((b.wait(), b.failed()), (Duration::ZERO, FIRST));
    }
}
