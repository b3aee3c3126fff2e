//! One complete set of measurements against a running server.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;

use crate::api::{self, Api};
use crate::argon;
use crate::cpu::CpuSnapshot;
use crate::load::{self, Tally, Window};
use crate::report::Sample;
use crate::server::{ADMIN_PASSWORD, ADMIN_USER};
use crate::stats::percentile_ms;

const COLLECTION: &str = "bench";

/// What to measure and how hard to push.
pub struct Plan {
    pub window: Window,
    pub hash_threads: usize,
    pub login_concurrency: Vec<usize>,
    /// Used for both document reads and bare health checks, so the two compare directly.
    pub read_concurrency: Vec<usize>,
    pub flood_concurrency: usize,
    pub probe_interval: Duration,
    pub documents: usize,
}

/// The server plus the data the read phases use, set up once for all runs.
pub struct Target {
    api: Api,
    doc_urls: Arc<Vec<String>>,
    server_pid: u32,
}

impl Target {
    pub async fn prepare(api: Api, documents: usize, server_pid: u32) -> anyhow::Result<Self> {
        if documents == 0 {
            bail!("--documents must be at least 1");
        }
        let client = api.client()?;
        let token = api::login(&client, &api, ADMIN_USER, ADMIN_PASSWORD).await?;
        let ids = api::create_fixture(&client, &api, &token, COLLECTION, documents).await?;
        let doc_urls = api::document_urls(&api, COLLECTION, &ids);
        Ok(Self { api, doc_urls: Arc::new(doc_urls), server_pid })
    }
}

pub async fn run_once(plan: &Plan, target: &Target, run: usize) -> anyhow::Result<Vec<Sample>> {
    let cpu_start = CpuSnapshot::take(&[target.server_pid]);
    let mut samples = measure(plan, target, run).await?;
    samples.push(foreign_cpu_sample(cpu_start, &[target.server_pid]));
    Ok(samples)
}

/// The noise figure: CPU other processes took since `start` (taken with the same pids).
pub fn foreign_cpu_sample(start: Option<CpuSnapshot>, server_pids: &[u32]) -> Sample {
    let foreign = start.zip(CpuSnapshot::take(server_pids));
    Sample {
        key: "foreign_cpu_pct".to_owned(),
        label: "CPU taken by other processes during the run (noise; lower is better)".to_owned(),
        unit: "% of machine",
        value: foreign.and_then(|(start, end)| end.foreign_percent_since(&start)).unwrap_or(f64::NAN),
        errors: 0,
    }
}

async fn measure(plan: &Plan, target: &Target, run: usize) -> anyhow::Result<Vec<Sample>> {
    let progress = |what: &str| eprintln!("run {run}: {what}");
    let mut samples = Vec::new();
    for threads in hash_thread_counts(plan.hash_threads) {
        progress(&format!("Argon2id, {threads} thread(s)"));
        samples.push(hash_sample(threads, plan.window).await?);
    }
    for &c in &plan.login_concurrency {
        progress(&format!("logins, {c} concurrent"));
        let tally = logins(&target.api, c, plan.window).await?;
        samples.push(rate_sample(format!("login_c{c}"), format!("Logins, {c} concurrent"), &tally));
    }
    // Logging in again: the login phases have pushed older sessions of the same user out
    // (the server keeps a bounded number per user).
    let token = api::login(&target.api.client()?, &target.api, ADMIN_USER, ADMIN_PASSWORD).await?;
    for &c in &plan.read_concurrency {
        progress(&format!("document reads, {c} concurrent"));
        let tally = reads(target, &token, c, plan.window).await?;
        samples.push(rate_sample(
            format!("read_c{c}"),
            format!("Document reads (bearer token), {c} concurrent"),
            &tally,
        ));
    }
    for &c in &plan.read_concurrency {
        progress(&format!("health checks, {c} concurrent"));
        let tally = health_checks(&target.api, c, plan.window).await?;
        samples.push(rate_sample(format!("health_c{c}"), format!("GET /health, {c} concurrent"), &tally));
    }
    progress("GET /health latency, idle server");
    samples.extend(idle_latency(plan, &target.api).await?);
    progress(&format!("GET /health latency during a login flood ({} loops)", plan.flood_concurrency));
    samples.extend(flood_latency(plan, &target.api).await?);
    Ok(samples)
}

/// One thread, and all cores when there is more than one.
fn hash_thread_counts(all: usize) -> Vec<usize> {
    if all > 1 {
        vec![1, all]
    } else {
        vec![1]
    }
}

async fn hash_sample(threads: usize, window: Window) -> anyhow::Result<Sample> {
    // Hashing blocks for tens of milliseconds at a time: keep it off the async runtime.
    let rate = tokio::task::spawn_blocking(move || argon::hashes_per_second(threads, window))
        .await
        .context("hashing task")??;
    Ok(Sample {
        key: format!("argon2_t{threads}"),
        label: format!("Argon2id hashes (m=19456 KiB, t=2, p=1), {threads} thread(s), no server"),
        unit: "hashes/s",
        value: rate,
        errors: 0,
    })
}

async fn logins(api: &Api, concurrency: usize, window: Window) -> anyhow::Result<Tally> {
    let url = api.url("/api/v1/auth/login");
    let body = Arc::new(json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD}));
    load::closed_loop(api.clients(concurrency)?, window, move |client, _| api::send_ok(client.post(&url).json(&*body)))
        .await
}

async fn reads(target: &Target, token: &str, concurrency: usize, window: Window) -> anyhow::Result<Tally> {
    read_loop(&target.api, Arc::clone(&target.doc_urls), token, concurrency, window).await
}

/// `concurrency` closed loops of authorized `GET`s spread over `urls`.
pub async fn read_loop(
    api: &Api,
    urls: Arc<Vec<String>>,
    token: &str,
    concurrency: usize,
    window: Window,
) -> anyhow::Result<Tally> {
    if urls.is_empty() {
        bail!("no documents to read");
    }
    let token = token.to_owned();
    load::closed_loop(api.clients(concurrency)?, window, move |client, n| {
        // Spread the reads over all documents rather than hammering one row.
        let url = &urls[(n % urls.len() as u64) as usize];
        api::send_ok(client.get(url).bearer_auth(&token))
    })
    .await
}

async fn health_checks(api: &Api, concurrency: usize, window: Window) -> anyhow::Result<Tally> {
    let url = api.url("/health");
    load::closed_loop(api.clients(concurrency)?, window, move |client, _| api::send_ok(client.get(&url))).await
}

/// One paced `GET /health` probe; the baseline for the flood figures.
async fn idle_latency(plan: &Plan, api: &Api) -> anyhow::Result<Vec<Sample>> {
    let (latencies, tally) = probe_health(plan, api).await?;
    Ok(latency_samples("health_idle", "idle server", &latencies, &tally))
}

/// The same probe while `flood_concurrency` loops log in as fast as they can. Argon2 then
/// keeps every core busy; if hashing ran on the async runtime, health checks would wait
/// behind it and p99 would grow to many hash durations.
async fn flood_latency(plan: &Plan, api: &Api) -> anyhow::Result<Vec<Sample>> {
    let flood = logins(api, plan.flood_concurrency, plan.window);
    let (flood, probe) = tokio::join!(flood, probe_health(plan, api));
    let (flood, (latencies, tally)) = (flood?, probe?);
    let c = plan.flood_concurrency;
    let label = format!("login flood, {c} loops");
    let mut samples = latency_samples("health_flood", &label, &latencies, &tally);
    samples.push(rate_sample(format!("login_flood_c{c}"), format!("Logins during the flood, {c} concurrent"), &flood));
    Ok(samples)
}

async fn probe_health(plan: &Plan, api: &Api) -> anyhow::Result<(Vec<Duration>, Tally)> {
    let url = api.url("/health");
    let probe =
        load::probe_latency(api.client()?, plan.window, plan.probe_interval, |client| api::send_ok(client.get(&url)));
    Ok(probe.await)
}

fn latency_samples(key: &str, during: &str, latencies: &[Duration], tally: &Tally) -> Vec<Sample> {
    warn_on_errors(key, tally);
    [50.0, 99.0]
        .into_iter()
        .map(|p| Sample {
            key: format!("{key}_p{p}_ms"),
            label: format!("GET /health p{p} latency, {during}"),
            unit: "ms",
            value: percentile_ms(latencies, p),
            errors: tally.errors,
        })
        .collect()
}

pub fn rate_sample(key: String, label: String, tally: &Tally) -> Sample {
    warn_on_errors(&key, tally);
    Sample { key, label, unit: "req/s", value: tally.per_second(), errors: tally.errors }
}

pub fn warn_on_errors(key: &str, tally: &Tally) {
    if let Some(e) = &tally.first_error {
        eprintln!("warning: {key}: {} failed requests, first: {e}", tally.errors);
    }
}
