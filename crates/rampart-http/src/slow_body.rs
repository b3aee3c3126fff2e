//! A minimum data rate for request bodies: a client that trickles its body (one byte every
//! few seconds) would otherwise hold a connection, a task and a body buffer for the whole
//! request timeout. Each chunk must arrive within the idle timeout, and after a short grace
//! the average rate must stay above the minimum; otherwise the body read fails with
//! `BodyTooSlow`, which the JSON extractor answers with 408.

use std::future::Future as _;
use std::pin::Pin;
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

pub(crate) struct RateGuard {
    inner: Body,
    rate: BodyRate,
    started: Instant,
    received: u64,
    idle: Pin<Box<Sleep>>,
}

impl RateGuard {
    pub(crate) fn wrap(inner: Body, rate: BodyRate) -> Body {
        let now = Instant::now();
        Body::new(Self {
            inner,
            rate,
            started: now,
            received: 0,
            idle: Box::pin(tokio::time::sleep_until(now + rate.idle)),
        })
    }

    fn too_slow(&self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.started);
        elapsed > self.rate.grace && self.received < self.rate.min_bytes_per_sec.saturating_mul(elapsed.as_secs())
    }
}

impl HttpBody for RateGuard {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let now = Instant::now();
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                if this.too_slow(now) {
                    return Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow))));
                }
                this.idle.as_mut().reset(now + this.rate.idle);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => match this.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTooSlow)))),
                Poll::Pending => Poll::Pending,
            },
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body-read error came from this guard.
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
