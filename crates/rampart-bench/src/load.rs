//! The in-process load generator, shared by every suite but `compare` (which drives its
//! servers with wrk): workers issuing operations back to back, and a paced latency probe.

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Client;

/// A warm-up, then the measured span. Only operations that complete inside the measured
/// span count: connections (TLS handshakes) are set up during the warm-up, and a closed
/// loop is in steady state by then, so completions per second in the span is unbiased.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub warmup: Duration,
    pub measure: Duration,
}

impl Window {
    /// The window's absolute bounds, fixed when a phase starts.
    fn span(self) -> (Instant, Instant) {
        let begin = Instant::now() + self.warmup;
        (begin, begin + self.measure)
    }
}

/// Completed and failed operations, and over how many seconds.
#[derive(Default)]
pub struct Tally {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
}

impl Tally {
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ops as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn record(&mut self, result: anyhow::Result<()>) {
        match result {
            Ok(()) => self.ops += 1,
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.ops += other.ops;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
    }

    /// Prints the first error, if any, under `what`.
    pub fn warn(&self, what: &str) {
        if let Some(e) = &self.first_error {
            eprintln!("warning: {what}: {} failed requests, first: {e}", self.errors);
        }
    }
}

/// One task per worker state, each running `op(state, i)` back to back with `i` taken in
/// turn from `items` (shared by all workers, to spread work over documents or addresses),
/// until `items` or the window, if any, runs out. With a window only results that complete
/// inside its measured span count. Returns the states for further use.
pub async fn drive<S, F, Fut>(
    states: Vec<S>,
    items: Range<u64>,
    window: Option<Window>,
    op: F,
) -> anyhow::Result<(Vec<S>, Tally)>
where
    S: Send + 'static,
    F: Fn(S, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (S, anyhow::Result<()>)> + Send + 'static,
{
    let (op, next, span) = (Arc::new(op), Arc::new(AtomicU64::new(items.start)), window.map(Window::span));
    let mut workers = tokio::task::JoinSet::new();
    for mut state in states {
        let (op, next) = (Arc::clone(&op), Arc::clone(&next));
        workers.spawn(async move {
            let mut tally = Tally::default();
            while span.is_none_or(|(_, end)| Instant::now() < end) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.end {
                    break;
                }
                let (back, result) = op(state, i).await;
                state = back;
                if span.is_none_or(|(begin, end)| (begin..=end).contains(&Instant::now())) {
                    tally.record(result);
                }
            }
            (state, tally)
        });
    }
    let (mut total, mut states) =
        (Tally { seconds: window.map_or(0.0, |w| w.measure.as_secs_f64()), ..Tally::default() }, vec![]);
    while let Some(worker) = workers.join_next().await {
        let (state, tally) = worker?;
        states.push(state);
        total.merge(tally);
    }
    Ok((states, total))
}

/// `clients.len()` closed loops of `op(client, i)` over the window.
pub async fn closed_loop<F, Fut>(clients: Vec<Client>, window: Window, op: F) -> anyhow::Result<Tally>
where
    F: Fn(Client, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let run = move |client: Client, i| {
        let done = op(client.clone(), i);
        async move { (client, done.await) }
    };
    Ok(drive(clients, 0..u64::MAX, Some(window), run).await?.1)
}

/// Latencies of requests made by `op` one at a time, one every `interval`, on one client.
/// Pacing keeps the probe itself a light load, like one ordinary client; a slow response
/// delays the next probe rather than piling up requests.
pub async fn probe_latency<F, Fut>(client: Client, window: Window, interval: Duration, op: F) -> (Vec<Duration>, Tally)
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let (begin, end) = window.span();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut latencies, mut tally) = (Vec::new(), Tally { seconds: window.measure.as_secs_f64(), ..Tally::default() });
    while Instant::now() < end {
        ticks.tick().await;
        let sent = Instant::now();
        let result = op(client.clone()).await;
        let done = Instant::now();
        if begin <= sent && done <= end {
            if result.is_ok() {
                latencies.push(done - sent);
            }
            tally.record(result);
        }
    }
    (latencies, tally)
}
