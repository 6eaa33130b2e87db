//! A `/process` body, copied once from hyper's frames into the frame the device works on (a
//! pooled one, or page-locked memory the CUDA device lends), within a deadline: a client that announces a frame and sends it at a byte a second
//! gets 408 when the deadline passes, and its memory reservation goes back to the budget.
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body is longer than the buffer for it")]
    Long,
    #[error("the body ended after {got} bytes")]
    Short { got: u64 },
    #[error("reading the body failed after {after} bytes: {detail}")]
    Broken { after: u64, detail: String },
    #[error("{after} bytes of the body arrived within the {} s body deadline (--body-timeout)", limit.as_secs_f64())]
    Deadline { after: u64, limit: Duration },
}

pub struct FrameBody {
    body: axum::body::Body,
    deadline: Instant,
    limit: Duration,
    read: u64,
    /// The client waits for `100 Continue` before sending: hyper sends it when the body is
    /// first read, so a refusal that never reads it is answered without a byte of the body.
    waits_for_continue: bool,
}

impl FrameBody {
    /// `body` must arrive whole within `limit` of now; `waits_for_continue`: the request
    /// said `Expect: 100-continue`.
    pub fn new(body: axum::body::Body, limit: Duration, waits_for_continue: bool) -> Self {
        FrameBody { body, deadline: Instant::now() + limit, limit, read: 0, waits_for_continue }
    }

    /// Fill `frame` with the body, which must be exactly as long (`&mut []`: no body at all).
    pub async fn read_exact_into(&mut self, frame: &mut [u8]) -> Result<(), BodyError> {
        let mut filled = 0usize;
        // One timer for the whole body, registered with tokio's timer wheel once rather than
        // once per chunk (a 720p frame arrives in about ten).
        let expires = tokio::time::sleep_until(self.deadline);
        tokio::pin!(expires);
        loop {
            let next = tokio::select! {
                biased;
                next = self.body.frame() => next,
                () = &mut expires => return Err(BodyError::Deadline { after: self.read, limit: self.limit }),
            };
            match next {
                None if filled == frame.len() => return Ok(()),
                None => return Err(BodyError::Short { got: filled as u64 }),
                Some(Err(e)) => {
                    return Err(BodyError::Broken { after: self.read, detail: chain(&e) });
                }
                Some(Ok(f)) => {
                    // Trailers carry nothing /process uses.
                    let Ok(data) = f.into_data() else { continue };
                    self.read += data.len() as u64;
                    let end = filled + data.len();
                    if end > frame.len() {
                        return Err(BodyError::Long);
                    }
                    frame[filled..end].copy_from_slice(&data);
                    filled = end;
                }
            }
        }
    }

    /// Read what is left and throw it away, for at most `limit` (and never past the body's
    /// deadline), so that a client still sending reads the answer rather than a reset.
    pub async fn discard(&mut self, limit: Duration) {
        if self.waits_for_continue {
            return;
        }
        let until = self.deadline.min(Instant::now() + limit);
        let _ = tokio::time::timeout_at(until, async { while let Some(Ok(_)) = self.body.frame().await {} }).await;
    }
}

/// An error and its sources, `: `-joined (hyper says what was malformed in a source).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
