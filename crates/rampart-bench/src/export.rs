//! Issue 12: a data-subject export streams. One subject owns every document of a large
//! collection; each run exports it in JSON, CSV and XML while the server's resident memory
//! is sampled, and pages through the same records with the documents API as the reference.
//! The figures that matter are ratios within a run: export time over paging time, and the
//! server's memory growth over the size of the export.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::StatusCode;
use serde_json::json;

use crate::api::{self, Session};
use crate::load::drive;
use crate::report::{rss_kib, Report, Sample};
use crate::server::{Server, Transport::Tls};
use crate::Cli;

const SUBJECT: &str = "bench-subject-1";
const MB: f64 = 1e6;

/// Runs `work` while sampling `pid`'s resident memory every 10 ms; returns its result, the
/// seconds it took and the highest growth over the memory before it, in MB.
async fn sampled<T>(
    pid: u32,
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(T, f64, f64)> {
    let before = rss_kib(pid)?;
    let (peak, done) = (Arc::new(AtomicU64::new(before)), Arc::new(AtomicBool::new(false)));
    let sampler = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(now) = rss_kib(pid) {
                    peak.fetch_max(now, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = Instant::now();
    let out = work.await;
    let secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.await.ok();
    let growth = peak.load(Ordering::Relaxed).saturating_sub(before) as f64 * 1024.0 / MB;
    Ok((out?, secs, growth))
}

/// Bytes of every page of the subject's documents through the documents API.
async fn page_through(s: &Session) -> anyhow::Result<u64> {
    let (mut bytes, mut cursor) = (0u64, String::new());
    loop {
        let path = format!("/api/v1/collections/records/documents?subject_id={SUBJECT}&limit=1000{cursor}");
        let res = s.client.get(s.url(&path)).bearer_auth(&s.token).send().await?;
        if res.status() != StatusCode::OK {
            bail!("listing answered {}", res.status());
        }
        let body = res.bytes().await?;
        bytes += body.len() as u64;
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return Ok(bytes),
        }
    }
}

/// Streams one export, counting bytes as they arrive (never holding the body).
async fn export(s: &Session, format: &str) -> anyhow::Result<u64> {
    let issued = s.post("/api/v1/gdpr/verification", &json!({"subject_id": SUBJECT}), StatusCode::CREATED).await?;
    let token = api::text(&issued, "verification_token")?;
    let path = format!("/api/v1/gdpr/export?subject_id={SUBJECT}&format={format}");
    let mut res = s.client.get(s.url(&path)).bearer_auth(&s.token).header("x-verification-token", token).send().await?;
    if res.status() != StatusCode::OK {
        bail!("export answered {}", res.status());
    }
    let mut bytes = 0u64;
    while let Some(chunk) = res.chunk().await? {
        bytes += chunk.len() as u64;
    }
    Ok(bytes)
}

/// Restarts the server, logs in again and measures `work` from the fresh process's memory:
/// an allocator keeps what an earlier operation freed, so only a clean start shows what one
/// operation needs.
async fn fresh<T>(
    server: &mut Server,
    work: impl AsyncFnOnce(&Session) -> anyhow::Result<T>,
) -> anyhow::Result<(T, f64, f64)> {
    server.restart()?;
    let s = Session::login(server).await?;
    let pid = server.pid();
    sampled(pid, work(&s)).await
}

async fn measure(c: &Cli, server: &mut Server) -> anyhow::Result<Report> {
    let admin = Session::login(server).await?;
    admin.create_collection("records", None).await?;
    let (count, bytes) = (c.export_documents, c.export_doc_kb * 1000);
    eprintln!("inserting {count} documents of ~{bytes} bytes for one subject");
    let sessions = (0..c.fill_concurrency).map(|_| Ok(Session { client: admin.client()?, ..admin.clone() }));
    let sessions = sessions.collect::<anyhow::Result<Vec<_>>>()?;
    let (_, tally) = drive(sessions, 0..count as u64, None, move |s, i| async move {
        let body = json!({"data": api::random_document(i, bytes), "subject_id": SUBJECT});
        let done = s.post("/api/v1/collections/records/documents", &body, StatusCode::CREATED).await.map(drop);
        (s, done)
    })
    .await?;
    if let Some(e) = tally.first_error {
        bail!("{} of {count} inserts failed, first: {e}", tally.errors);
    }
    let mut report = Report::default();
    for run in 1..=c.runs {
        eprintln!("run {run}: paging through the documents API, then each export, each on a fresh server process");
        let (listed, list_secs, list_growth) =
            fresh(server, async |s| page_through(s).await).await.context("paging")?;
        let mut figures = vec![
            Sample::new(
                "list_mb",
                format!("Paging the {count} records (documents API, 1000 a page): bytes"),
                "MB",
                listed as f64 / MB,
            ),
            Sample::new("list_mb_s", "Paging throughput", "MB/s", listed as f64 / MB / list_secs),
            Sample::new(
                "list_rss_growth_mb",
                "Server memory growth while paging (from a fresh process)",
                "MB",
                list_growth,
            ),
        ];
        for format in ["json", "csv", "xml"] {
            let (size, secs, growth) =
                fresh(server, async |s| export(s, format).await).await.with_context(|| format!("{format} export"))?;
            let mb = size as f64 / MB;
            figures.extend([
                Sample::new(format!("export_{format}_mb"), format!("{format} export size"), "MB", mb),
                Sample::new(format!("export_{format}_mb_s"), format!("{format} export throughput"), "MB/s", mb / secs),
                Sample::new(
                    format!("export_{format}_vs_paging"),
                    format!("{format} export time ÷ paging time (same records, same run)"),
                    "×",
                    secs / list_secs,
                ),
                Sample::new(
                    format!("export_{format}_rss_growth_mb"),
                    format!("Server memory growth during the {format} export (from a fresh process)"),
                    "MB",
                    growth,
                ),
                Sample::new(
                    format!("export_{format}_rss_vs_paging"),
                    format!("{format} export memory growth ÷ paging memory growth"),
                    "×",
                    growth / list_growth.max(0.001),
                ),
            ]);
        }
        report.add_run(figures);
    }
    let version = api::http_version(server).await?;
    Ok(report.over(version))
}

pub async fn export_suite(c: &Cli) -> anyhow::Result<Report> {
    let mut server = Server::start(c, "default settings", &[], Tls)?;
    let outcome = measure(c, &mut server).await;
    let stopped = server.stop();
    let mut report = outcome?;
    report.stop_error = stopped.err().map(|e| e.context("stopping the server"));
    Ok(report)
}
