//! Request bodies: a minimum data rate, and draining what a refusal left unread.
//!
//! A client that trickles its body (one byte every few seconds) would otherwise hold a
//! connection, a task and a body buffer for the whole request timeout. Each chunk must
//! arrive within the idle timeout, and after a short grace the average rate must stay above
//! the minimum; otherwise the body read fails with `BodyTooSlow`, which the JSON extractor
//! answers with 408.
//!
//! A request answered without reading its whole body (a refusal: 413, 415, 403) hands the
//! rest to the context layer, which drains it before the response leaves: over HTTP/2 a
//! dropped body resets the stream, and clients then lose the status.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, Copy)]
pub struct BodyRate {
    /// Longest wait for the next chunk.
    pub idle: Duration,
    /// Time before the average rate is enforced.
    pub grace: Duration,
    pub min_bytes_per_sec: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("request body arrived too slowly")]
pub struct BodyTooSlow;

/// Where an unfinished body goes when its request is dropped.
pub(crate) type Leftover = Arc<Mutex<Option<Body>>>;

pub(crate) struct RateGuard {
    inner: Option<Body>,
    rate: BodyRate,
    started: Instant,
    received: u64,
    idle: Pin<Box<Sleep>>,
    leftover: Leftover,
    failed: bool,
}

impl RateGuard {
    pub(crate) fn wrap(inner: Body, rate: BodyRate, leftover: Leftover) -> Body {
        let now = Instant::now();
        Body::new(Self {
            inner: Some(inner),
            rate,
            started: now,
            received: 0,
            idle: Box::pin(tokio::time::sleep_until(now + rate.idle)),
            leftover,
            failed: false,
        })
    }

    fn too_slow(&self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.started);
        elapsed > self.rate.grace && self.received < self.rate.min_bytes_per_sec.saturating_mul(elapsed.as_secs())
    }

    fn fail(&mut self) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.failed = true;
        Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow))))
    }
}

impl HttpBody for RateGuard {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let now = Instant::now();
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                if this.too_slow(now) {
                    return this.fail();
                }
                this.idle.as_mut().reset(now + this.rate.idle);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => this.fail(),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for RateGuard {
    fn drop(&mut self) {
        // A slow body is not worth draining: cutting it off is the point.
        if let Some(inner) = self.inner.take().filter(|b| !self.failed && !b.is_end_stream()) {
            if let Ok(mut slot) = self.leftover.lock() {
                *slot = Some(inner);
            }
        }
    }
}

/// Reads and discards what is left of a refused request's body, within bounds (bytes and
/// time); past them the stream is simply reset.
pub(crate) async fn drain(leftover: &Leftover, max_bytes: usize, within: Duration) {
    let body = leftover.lock().ok().and_then(|mut s| s.take());
    let Some(body) = body else { return };
    let limited = http_body_util::Limited::new(body, max_bytes);
    let _ = tokio::time::timeout(within, http_body_util::BodyExt::collect(limited)).await;
}

/// Whether a body-read error came from the rate guard.
pub(crate) fn is_too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTooSlow>() {
            return true;
        }
        cur = err.source();
    }
    false
}
