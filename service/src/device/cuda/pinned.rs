//! Page-locked host frames the CUDA device lends to request bodies ([`Device::lend_frame`]):
//! the body is copied from hyper's buffer straight into one, the upload DMA reads the frame
//! from it, the download DMA writes the result back into it, and the answer is sent from it.
//! Without them the body lands in ordinary memory and is staged through a worker's pinned
//! buffer both ways: two CPU copies more per frame.
//!
//! Page-locked memory cannot be swapped, takes milliseconds to allocate, and freeing it can
//! wait for the whole device, so a bounded set is kept and reused, never freed while the
//! service runs: when every one is lent, or none fits, a body goes to ordinary memory and is
//! staged. Thumbnails are not lent (their staging copy costs microseconds).
//! The frames are plain page-locked memory, not write-combined: the CPU reads them too (hyper
//! sends the answer from them), and reading write-combined memory is uncached.
//!
//! [`Device::lend_frame`]: crate::device::Device::lend_frame
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaContext, DriverError, PinnedHostSlice};

/// Bodies smaller than this go to ordinary memory.
pub(crate) const LEND_MIN_BYTES: usize = 64 << 10;

/// The frames one device lends: at most `max` in existence, lent or idle.
pub(crate) struct PinnedFrames {
    ctx: Arc<CudaContext>,
    max: usize,
    state: Mutex<LendState>,
}

#[derive(Default)]
struct LendState {
    idle: Vec<PinnedHostSlice<u8>>,
    lent: usize,
}

impl PinnedFrames {
    pub(crate) fn new(ctx: Arc<CudaContext>, max: usize) -> Arc<Self> {
        Arc::new(PinnedFrames { ctx, max, state: Mutex::new(LendState::default()) })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LendState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A frame of exactly `len` bytes (contents unspecified), or `None` for a small body, when
    /// all are lent or none fits, or when page-locked memory cannot be had now (the caller
    /// uses ordinary memory).
    pub(crate) fn lend(self: &Arc<Self>, len: usize) -> Option<PinnedFrame> {
        if len < LEND_MIN_BYTES {
            return None;
        }
        // A kept frame is reused when it is at most a quarter larger, as the buffer pool does,
        // so a 720p body never holds a 4K frame's page-locked memory.
        let fits = |m: &PinnedHostSlice<u8>| (len..=len + len / 4).contains(&m.len());
        let reused = {
            let mut state = self.state();
            if let Some(i) = state.idle.iter().position(fits) {
                let mem = state.idle.swap_remove(i);
                state.lent += 1;
                Some(mem)
            } else if state.lent + state.idle.len() < self.max {
                state.lent += 1;
                None
            } else {
                return None;
            }
        };
        let mem = match reused {
            Some(mem) => Ok(mem),
            // SAFETY: the contents are unspecified until the body is read into them, and
            // `PinnedFrame` exposes exactly `len` bytes of it, which the caller fills.
            None => unsafe { self.ctx.alloc_pinned_with_flags::<u8>(len.max(1), 0) },
        };
        match mem.and_then(|mem| PinnedFrame::new(mem, len, self.clone())) {
            Ok(frame) => Some(frame),
            Err(e) => {
                self.state().lent -= 1;
                tracing::warn!(error = %e, bytes = len, "no page-locked frame to lend; this body is staged");
                None
            }
        }
    }

    fn give_back(&self, mem: PinnedHostSlice<u8>) {
        let mut state = self.state();
        state.lent -= 1;
        state.idle.push(mem);
    }

    /// (lent, idle) frames now.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let state = self.state();
        (state.lent, state.idle.len())
    }
}

/// One lent frame: `len` bytes of page-locked memory, back to its device when dropped.
pub struct PinnedFrame {
    mem: Option<PinnedHostSlice<u8>>,
    ptr: *mut u8,
    len: usize,
    home: Arc<PinnedFrames>,
}

// SAFETY: `ptr` points into `mem`, which this value owns and which is `Send` itself; the
// bytes are reached only through `&self` / `&mut self`, so moving the frame to another thread
// moves the only access to them.
unsafe impl Send for PinnedFrame {}

impl PinnedFrame {
    fn new(mut mem: PinnedHostSlice<u8>, len: usize, home: Arc<PinnedFrames>) -> Result<Self, DriverError> {
        // Waits on the allocation's event, which our raw copies never record: the pointer
        // is taken once here, so reading the frame later cannot fail.
        let ptr = mem.as_mut_ptr()?;
        Ok(PinnedFrame { mem: Some(mem), ptr, len, home })
    }
}

impl std::ops::Deref for PinnedFrame {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `mem.len() >= len` bytes for as long as `mem` is owned
        // here, which is until drop; a DMA into it is always waited for before the job that
        // started it returns, so no copy is in flight while the CPU reads.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for PinnedFrame {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for `deref`, and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for PinnedFrame {
    fn drop(&mut self) {
        if let Some(mem) = self.mem.take() {
            self.home.give_back(mem);
        }
    }
}
