//! Frame-sized buffers kept for reuse: the request body is read into one, the effects swap
//! between it and a scratch one, and the answer is sent from it. Bounded by bytes, and
//! emptied when the service has been idle for a while, so the resident size falls back after
//! a burst of large frames.
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct BufferPool {
    cap: usize,
    state: Mutex<PoolState>,
}

struct PoolState {
    free: Vec<Vec<u8>>,
    bytes: usize,
    last_used: Instant,
}

impl BufferPool {
    /// A pool that holds at most `cap` bytes of idle buffers.
    pub fn new(cap: usize) -> Self {
        BufferPool { cap, state: Mutex::new(PoolState { free: Vec::new(), bytes: 0, last_used: Instant::now() }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A buffer of exactly `len` bytes whose contents are unspecified (an earlier frame's, or
    /// zeros). A kept buffer is reused when its capacity is at most a quarter above `len`, so
    /// a small request never pins a large buffer.
    pub fn take(&self, len: usize) -> Vec<u8> {
        let reused = {
            let mut state = self.state();
            state.last_used = Instant::now();
            let fits = |b: &Vec<u8>| (len..=len + len / 4).contains(&b.capacity());
            let best = state.free.iter().enumerate().filter(|(_, b)| fits(b)).min_by_key(|(_, b)| b.capacity());
            best.map(|(i, _)| i).map(|i| {
                let buf = state.free.swap_remove(i);
                state.bytes -= buf.capacity();
                buf
            })
        };
        match reused {
            Some(mut buf) => {
                buf.resize(len, 0);
                buf
            }
            // Zeroed by the allocator (fresh pages from the kernel): no pass over the memory.
            None => vec![0; len],
        }
    }

    /// Keep `buf` for a later request if it fits in the bound, making room by dropping the
    /// oldest kept buffers; a buffer larger than the whole bound is freed at once.
    pub fn give(&self, buf: Vec<u8>) {
        let size = buf.capacity();
        if size == 0 || size > self.cap {
            return;
        }
        let mut dropped = Vec::new();
        {
            let mut state = self.state();
            state.last_used = Instant::now();
            while state.bytes + size > self.cap && !state.free.is_empty() {
                let old = state.free.remove(0);
                state.bytes -= old.capacity();
                dropped.push(old);
            }
            state.bytes += size;
            state.free.push(buf);
        }
        drop(dropped); // freed outside the lock
    }

    /// Free every kept buffer when nothing was taken or given for `idle`; the bytes freed.
    pub fn release_if_idle(&self, idle: Duration) -> usize {
        let freed = {
            let mut state = self.state();
            if state.free.is_empty() || state.last_used.elapsed() < idle {
                return 0;
            }
            state.bytes = 0;
            std::mem::take(&mut state.free)
        };
        freed.iter().map(Vec::capacity).sum()
    }

    /// Bytes held in idle buffers now.
    pub fn held(&self) -> usize {
        self.state().bytes
    }

    /// The most bytes this pool holds.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_within_a_quarter_of_their_size() {
        let pool = BufferPool::new(1000);
        let mut a = pool.take(100);
        assert_eq!(a.len(), 100);
        a[0] = 7;
        let ptr = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.held(), 100);
        let bigger = pool.take(200);
        assert!(bigger.as_ptr() != ptr, "too small: a new buffer");
        let b = pool.take(90);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 90), "within a quarter: reused");
        assert_eq!(pool.held(), 0);
        pool.give(b);
        let small = pool.take(50);
        assert!(small.as_ptr() != ptr, "far too large for 50 bytes: not pinned by a small request");
    }

    #[test]
    fn the_bound_is_kept_by_dropping_the_oldest() {
        let pool = BufferPool::new(250);
        for len in [100, 110, 120] {
            pool.give(vec![0; len]);
        }
        assert_eq!(pool.held(), 230, "the 100-byte buffer, the oldest, made room");
        pool.give(vec![0; 300]);
        assert_eq!(pool.held(), 230, "larger than the whole bound: not kept");
    }

    #[test]
    fn an_idle_pool_lets_everything_go() {
        let pool = BufferPool::new(1000);
        pool.give(vec![0; 100]);
        assert_eq!(pool.release_if_idle(Duration::from_secs(60)), 0, "not idle yet");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(pool.release_if_idle(Duration::from_millis(10)), 100);
        assert_eq!(pool.held(), 0);
    }
}
