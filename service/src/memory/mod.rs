//! The service's memory budget. Admission counts bytes as well as requests: a request is let
//! in only when the memory it will need (its frame, the device's working buffers) fits in
//! what the requests in flight left of the budget, so a burst of large, legal frames is
//! answered 503 instead of getting the pod killed by the kernel at its memory limit.
//!
//! The budget (see [`limit`]) is split three ways:
//! - [`BASE_RESERVE`] for the process itself: code, the async runtime, the threads'
//!   stacks, connection buffers;
//! - an eighth for the [`BufferPool`] of idle frame buffers kept for reuse;
//! - the rest for the reservations of requests in flight.
//!
//! Every frame-sized buffer a request uses is allocated within its reservation, and idle ones
//! are within the pool's bound, so the three parts never add up to more than the budget.
pub mod limit;
mod pool;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use limit::{parse_size, BudgetChoice, BudgetSource};
pub use pool::BufferPool;

/// What the process needs besides frames (idle, it is resident at about 8 MiB).
pub const BASE_RESERVE: u64 = 32 << 20;
/// The smallest budget the service starts with.
pub const MIN_BUDGET: u64 = 96 << 20;
/// Idle buffers are given back to the system after this long without requests.
pub const POOL_IDLE: Duration = Duration::from_secs(5);

/// Why a request was not given memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The request needs more than the whole share for requests: it can never be served here.
    TooLarge { need: usize, limit: usize },
    /// Not now: requests in flight hold the rest; retry shortly.
    Busy { need: usize, free: usize },
}

pub struct MemoryBudget {
    choice: BudgetChoice,
    for_requests: usize,
    reserved: AtomicUsize,
    pool: Arc<BufferPool>,
}

impl MemoryBudget {
    pub fn new(choice: BudgetChoice) -> Result<Arc<Self>, String> {
        if choice.bytes < MIN_BUDGET {
            return Err(format!(
                "a memory budget of {} MiB is below the minimum of {} MiB ({}); raise --memory-budget or the pod's memory limit",
                choice.bytes >> 20,
                MIN_BUDGET >> 20,
                choice
            ));
        }
        let pool_cap = choice.bytes / 8;
        let for_requests = (choice.bytes - BASE_RESERVE - pool_cap) as usize;
        Ok(Arc::new(MemoryBudget {
            choice,
            for_requests,
            reserved: AtomicUsize::new(0),
            pool: Arc::new(BufferPool::new(pool_cap as usize)),
        }))
    }

    /// Reserve `need` bytes for one request, until the [`Reservation`] is dropped.
    pub fn try_reserve(self: &Arc<Self>, need: usize) -> Result<Reservation, Refusal> {
        if need > self.for_requests {
            return Err(Refusal::TooLarge { need, limit: self.for_requests });
        }
        let mut current = self.reserved.load(Ordering::Relaxed);
        loop {
            if current + need > self.for_requests {
                return Err(Refusal::Busy { need, free: self.for_requests - current });
            }
            match self.reserved.compare_exchange_weak(current, current + need, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Ok(Reservation { budget: self.clone(), bytes: need }),
                Err(now) => current = now,
            }
        }
    }

    pub fn choice(&self) -> &BudgetChoice {
        &self.choice
    }

    /// The share of the budget that requests in flight may hold together.
    pub fn for_requests(&self) -> usize {
        self.for_requests
    }

    /// Bytes reserved by requests in flight now.
    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Relaxed)
    }

    pub fn pool(&self) -> &Arc<BufferPool> {
        &self.pool
    }

    /// What `/` shows.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "budget_bytes": self.choice.bytes,
            "source": self.choice.to_string(),
            "base_bytes": BASE_RESERVE,
            "pool_bytes": self.pool.cap(),
            "for_requests_bytes": self.for_requests,
            "reserved_bytes": self.reserved(),
        })
    }

    /// Gives idle buffers back to the system, once a second, for the life of the service.
    pub async fn release_idle_buffers(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if self.pool.release_if_idle(POOL_IDLE) > 0 {
                return_freed_memory_to_the_system();
            }
        }
    }
}

/// Held by a request while it may use memory; dropping it gives the bytes back.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryBudget({}, {} reserved)", self.choice, self.reserved())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// glibc keeps freed small and medium blocks in its arenas (one per thread that allocated);
/// after a burst that is resident memory the service no longer uses. `malloc_trim` hands the
/// free pages back.
fn return_freed_memory_to_the_system() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(bytes: u64) -> Arc<MemoryBudget> {
        MemoryBudget::new(BudgetChoice { bytes, source: BudgetSource::Flag }).unwrap()
    }

    #[test]
    fn the_parts_add_up_to_the_budget() {
        let b = budget(1 << 30);
        assert_eq!(b.for_requests() as u64 + b.pool().cap() as u64 + BASE_RESERVE, 1 << 30);
        assert_eq!(b.pool().cap(), 128 << 20);
    }

    #[test]
    fn reservations_are_refused_past_the_budget_and_returned_on_drop() {
        let b = budget(1 << 30);
        let frame = 128 << 20; // a 4000x4000 RGBA frame and its scratch
        let held: Vec<_> = (0..6).map(|_| b.try_reserve(frame).expect("six fit in 864 MiB")).collect();
        assert_eq!(b.reserved(), 6 * frame);
        assert_eq!(
            b.try_reserve(frame).unwrap_err(),
            Refusal::Busy { need: frame, free: b.for_requests() - 6 * frame }
        );
        drop(held);
        assert_eq!(b.reserved(), 0);
        assert!(b.try_reserve(frame).is_ok());
        assert_eq!(
            b.try_reserve(b.for_requests() + 1).unwrap_err(),
            Refusal::TooLarge { need: b.for_requests() + 1, limit: b.for_requests() }
        );
    }

    #[test]
    fn a_budget_below_the_minimum_is_an_error_that_says_so() {
        let e = MemoryBudget::new(BudgetChoice { bytes: 10 << 20, source: BudgetSource::Flag }).unwrap_err();
        assert!(e.contains("10 MiB is below the minimum of 96 MiB"), "{e}");
    }
}
