//! Load generation: closed-loop workers and a paced latency probe, both measured over the
//! same window.

use std::future::Future;
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

/// The window's absolute bounds, fixed once when a phase starts.
#[derive(Debug, Clone, Copy)]
struct Span {
    begin: Instant,
    end: Instant,
}

impl Window {
    fn starting_now(self) -> Span {
        let begin = Instant::now() + self.warmup;
        Span { begin, end: begin + self.measure }
    }
}

impl Span {
    fn contains(&self, t: Instant) -> bool {
        self.begin <= t && t <= self.end
    }
}

/// Completed and failed operations inside the measured span.
#[derive(Debug, Default, Clone)]
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
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs one worker per client, each issuing `op` back to back until the window ends.
/// `op` gets the worker's client and a sequence number shared by all workers (to spread
/// reads over documents).
pub async fn closed_loop<F, Fut>(clients: Vec<Client>, window: Window, op: F) -> anyhow::Result<Tally>
where
    F: Fn(Client, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let seq = Arc::new(AtomicU64::new(0));
    let span = window.starting_now();
    let mut workers = tokio::task::JoinSet::new();
    for client in clients {
        let (op, seq) = (Arc::clone(&op), Arc::clone(&seq));
        workers.spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < span.end {
                let result = op(client.clone(), seq.fetch_add(1, Ordering::Relaxed)).await;
                if span.contains(Instant::now()) {
                    tally.record(result);
                }
            }
            tally
        });
    }
    let mut total = Tally { seconds: window.measure.as_secs_f64(), ..Tally::default() };
    while let Some(worker) = workers.join_next().await {
        total.merge(worker?);
    }
    Ok(total)
}

/// Latencies of requests made by `op` one at a time, one every `interval`, on one client.
/// Pacing keeps the probe itself a light load, like one ordinary client; a slow response
/// delays the next probe rather than piling up requests.
pub async fn probe_latency<F, Fut>(client: Client, window: Window, interval: Duration, op: F) -> (Vec<Duration>, Tally)
where
    F: Fn(Client) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let span = window.starting_now();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut latencies = Vec::new();
    let mut tally = Tally { seconds: window.measure.as_secs_f64(), ..Tally::default() };
    while Instant::now() < span.end {
        ticks.tick().await;
        let sent = Instant::now();
        let result = op(client.clone()).await;
        let done = Instant::now();
        if span.contains(sent) && span.contains(done) {
            if result.is_ok() {
                latencies.push(done - sent);
            }
            tally.record(result);
        }
    }
    (latencies, tally)
}
