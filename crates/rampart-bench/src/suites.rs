//! The suites driven by the in-process load generator: issue 2's core set, and what read
//! auditing, encryption at rest and breach detection cost, how fast backups are made and
//! checked, and how fast refresh tokens rotate and JWTs are minted.
//!
//! Comparisons that need different server settings start one server per setting and keep
//! them all running; each run measures every variant once, rotating which goes first, so
//! that a burst of other work on the machine hits all variants alike rather than one. Each
//! run also reports the variant's rate relative to its baseline within that run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use rampart_crypto::PasswordHasher;
use reqwest::{Client, StatusCode};
use secrecy::SecretString;
use serde_json::json;

use crate::alerts::{self, Receiver};
use crate::api::{self, send_ok, Session};
use crate::load::{closed_loop, drive, probe_latency, Tally, Window};
use crate::report::{each_run, nproc, percentile_ms, Report, Sample};
use crate::server::{with_servers, Server, Transport::Tls, ADMIN_PASSWORD, ADMIN_USER};
use crate::Cli;

/// A rate figure in requests per second; the first error, if any, goes to stderr.
pub fn rate(key: String, label: String, tally: &Tally) -> Sample {
    tally.warn(&key);
    Sample::new(key, label, "req/s", tally.per_second()).errors(tally.errors)
}

/// `concurrency` closed loops of `GET`s spread over `paths`, with `s`'s token if `auth`.
async fn reads(s: &Session, paths: &[String], auth: bool, concurrency: usize, window: Window) -> anyhow::Result<Tally> {
    let (urls, token) = (paths.iter().map(|p| s.url(p)).collect::<Vec<_>>(), auth.then(|| s.token.clone()));
    closed_loop(s.clients(concurrency)?, window, move |client, n| {
        // Spread the reads over all documents rather than hammering one row.
        let req = client.get(&urls[(n % urls.len() as u64) as usize]);
        send_ok(if let Some(token) = &token { req.bearer_auth(token) } else { req })
    })
    .await
}

async fn logins(s: &Session, concurrency: usize, window: Window) -> anyhow::Result<Tally> {
    let (url, body) = (s.url("/api/v1/auth/login"), json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD}));
    closed_loop(s.clients(concurrency)?, window, move |client, _| send_ok(client.post(&url).json(&body))).await
}

// ----- Issue 2: the core set, on one server -----

pub async fn core(c: &Cli) -> anyhow::Result<Report> {
    with_servers(c, &[("default settings", &[], Tls)], async |servers: &[Server]| {
        let admin = Session::login(&servers[0]).await?;
        let paths = admin.fill("bench", None, c.documents, None).await?;
        each_run(c.runs, servers, async |run| core_run(c, &admin, &paths, run).await).await
    })
    .await
}

async fn core_run(c: &Cli, admin: &Session, paths: &[String], run: usize) -> anyhow::Result<Vec<Sample>> {
    let (window, progress) = (c.window(), |what: String| eprintln!("run {run}: {what}"));
    let mut samples = Vec::new();
    let all = c.hash_threads.unwrap_or_else(nproc);
    for threads in if all > 1 { vec![1, all] } else { vec![1] } {
        progress(format!("Argon2id, {threads} thread(s)"));
        // Hashing blocks for tens of milliseconds at a time: keep it off the async runtime.
        let rate = tokio::task::spawn_blocking(move || hashes_per_second(threads, window)).await??;
        let label = format!("Argon2id hashes (m=19456 KiB, t=2, p=1), {threads} thread(s), no server");
        samples.push(Sample::new(format!("argon2_t{threads}"), label, "hashes/s", rate));
    }
    for &n in &c.login_concurrency {
        progress(format!("logins, {n} concurrent"));
        samples.push(rate(format!("login_c{n}"), format!("Logins, {n} concurrent"), &logins(admin, n, window).await?));
    }
    // Logging in again: the login phases have pushed older sessions of the same user out
    // (the server keeps a bounded number per user).
    let reader = admin.login_with(admin.client()?).await?;
    for &n in &c.read_concurrency {
        progress(format!("document reads, {n} concurrent"));
        let tally = reads(&reader, paths, true, n, window).await?;
        samples.push(rate(format!("read_c{n}"), format!("Document reads (bearer token), {n} concurrent"), &tally));
    }
    for &n in &c.read_concurrency {
        progress(format!("health checks, {n} concurrent"));
        let tally = reads(admin, &["/health".into()], false, n, window).await?;
        samples.push(rate(format!("health_c{n}"), format!("GET /health, {n} concurrent"), &tally));
    }
    progress("GET /health latency, idle server".into());
    samples.extend(latency("health_idle", "idle server", probe(c, admin).await?));
    // The same probe while login loops run as fast as they can. Argon2 then keeps every core
    // busy; if hashing ran on the async runtime, health checks would wait behind it.
    let n = c.flood_concurrency;
    progress(format!("GET /health latency during a login flood ({n} loops)"));
    let (flood, probed) = tokio::join!(logins(admin, n, window), probe(c, admin));
    samples.extend(latency("health_flood", &format!("login flood, {n} loops"), probed?));
    samples.push(rate(format!("login_flood_c{n}"), format!("Logins during the flood, {n} concurrent"), &flood?));
    Ok(samples)
}

/// One client sending `GET /health` every `--probe-interval-ms`, one request at a time.
async fn probe(c: &Cli, s: &Session) -> anyhow::Result<(Vec<Duration>, Tally)> {
    let (url, interval) = (s.url("/health"), Duration::from_millis(c.probe_interval_ms.max(1)));
    Ok(probe_latency(s.client()?, c.window(), interval, |client| send_ok(client.get(&url))).await)
}

fn latency(key: &str, during: &str, (latencies, tally): (Vec<Duration>, Tally)) -> Vec<Sample> {
    tally.warn(key);
    let sample = |p: f64| {
        let label = format!("GET /health p{p} latency, {during}");
        Sample::new(format!("{key}_p{p}_ms"), label, "ms", percentile_ms(&latencies, p)).errors(tally.errors)
    };
    vec![sample(50.0), sample(99.0)]
}

/// Raw Argon2id hashes per second with Rampart's own hasher and parameters, outside the
/// server, `threads` at once: the ceiling that login throughput is compared against.
fn hashes_per_second(threads: usize, window: Window) -> anyhow::Result<f64> {
    let hasher = PasswordHasher::new()?;
    let begin = Instant::now() + window.warmup;
    let end = begin + window.measure;
    let count = |hasher: PasswordHasher| {
        let password = SecretString::from("Bench-Hash-Passw0rd!x".to_owned());
        let mut done = 0u64;
        while Instant::now() < end {
            hasher.hash(&password)?;
            done += u64::from((begin..=end).contains(&Instant::now()));
        }
        anyhow::Ok(done)
    };
    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads).map(|_| scope.spawn(|| count(hasher.clone()))).collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| anyhow!("hashing thread panicked"))?)
            .sum::<anyhow::Result<u64>>()
    })?;
    Ok(counts as f64 / window.measure.as_secs_f64())
}

// ----- Read comparisons: issues 2/5 (audit), 4/5 (encryption), 5/5 (breach) -----

/// Documents to read under one name: key, label, session, paths.
type Target = (String, String, Session, Vec<String>);
/// `(variant, baseline, key, label)`: `variant`'s rate in percent of `baseline`'s.
type Pair = (usize, usize, String, String);

/// A target of small documents on each server of an off/on comparison of `what` (admin
/// sessions inside), and the ratio of on to off.
async fn off_and_on(c: &Cli, servers: &[Server], key: &str, what: &str) -> anyhow::Result<([Target; 2], Pair)> {
    let target = async |server: &Server, state: &str| {
        let s = Session::login(server).await?;
        let paths = s.fill("bench", None, c.documents, None).await?;
        let label = format!("Document reads, {what} {state} (~60 B documents)");
        anyhow::Ok((format!("read_{key}_{state}"), label, s, paths))
    };
    let targets = [target(&servers[0], "off").await?, target(&servers[1], "on").await?];
    Ok((targets, (1, 0, format!("{key}_ratio"), format!("Reads/s with {what} on, relative to off (same run)"))))
}

/// One run of every target, order rotated by `run`, then each pair's ratio.
async fn compare_reads(c: &Cli, targets: &[Target], pairs: &[Pair], run: usize) -> anyhow::Result<Vec<Sample>> {
    let (n, concurrency) = (targets.len(), c.compare_concurrency);
    let mut measured: Vec<Option<(Sample, f64)>> = (0..n).map(|_| None).collect();
    for i in (0..n).map(|k| (k + run - 1) % n) {
        let (key, label, session, paths) = &targets[i];
        eprintln!("run {run}: {label}");
        let tally = reads(session, paths, true, concurrency, c.window()).await?;
        let sample = rate(format!("{key}_c{concurrency}"), format!("{label}, {concurrency} concurrent"), &tally);
        measured[i] = Some((sample, tally.per_second()));
    }
    let rates: Vec<f64> = measured.iter().map(|m| m.as_ref().map_or(f64::NAN, |m| m.1)).collect();
    let ratios = pairs.iter().map(|(variant, baseline, key, label)| {
        let ratio = if rates[*baseline] > 0.0 { rates[*variant] / rates[*baseline] * 100.0 } else { f64::NAN };
        Sample::new(key, label, "%", ratio)
    });
    Ok(measured.into_iter().flatten().map(|m| m.0).chain(ratios).collect())
}

/// Reads/s with `RAMPART_AUDIT_RECORD_READS` off and on, one server each.
pub async fn audit(c: &Cli) -> anyhow::Result<Report> {
    let specs = [
        ("read auditing off", &[("RAMPART_AUDIT_RECORD_READS", "false")][..], Tls),
        ("read auditing on", &[("RAMPART_AUDIT_RECORD_READS", "true")][..], Tls),
    ];
    with_servers(c, &specs, async |servers: &[Server]| {
        let (targets, pair) = off_and_on(c, servers, "audit", "read auditing").await?;
        let pairs = [pair];
        let report = each_run(c.runs, servers, async |run| compare_reads(c, &targets, &pairs, run).await);
        let report = report.await?;
        // The setting took: reads left audit records on one server and none on the other.
        let (off_audited, on_audited) = (reads_audited(&targets[0].2).await?, reads_audited(&targets[1].2).await?);
        if off_audited || !on_audited {
            bail!("read auditing did not take effect: reads audited with it off: {off_audited}, on: {on_audited}");
        }
        Ok(report)
    })
    .await
}

/// Whether any document read left an audit record (`query` events, operation `read`).
async fn reads_audited(s: &Session) -> anyhow::Result<bool> {
    let mut path = "/api/v1/admin/audit?event_type=query&limit=1000".to_owned();
    // Inserts are `query` records too and come first; a few pages pass them.
    for _ in 0..50 {
        let page = s.get(&path).await?;
        let records = page["records"].as_array().ok_or_else(|| anyhow!("audit response has no records"))?;
        if records.iter().any(|r| r["details"]["operation"] == "read") {
            return Ok(true);
        }
        let Some(cursor) = page["next_cursor"].as_str() else { return Ok(false) };
        path = format!("/api/v1/admin/audit?event_type=query&limit=1000&cursor={cursor}");
    }
    Ok(false)
}

/// Reads/s from an encrypted (default) and an unencrypted collection on one server, for
/// small documents and for documents of `--large-doc-kb`.
pub async fn encryption(c: &Cli) -> anyhow::Result<Report> {
    with_servers(c, &[("default settings", &[], Tls)], async |servers: &[Server]| {
        let admin = Session::login(&servers[0]).await?;
        let (kb, large) = (c.large_doc_kb, Some(c.large_doc_kb * 1000));
        let specs = [
            ("sealed_small", None, None, "encrypted collection (~60 B documents)".to_owned()),
            ("plain_small", Some(false), None, "unencrypted collection (~60 B documents)".to_owned()),
            ("sealed_large", None, large, format!("encrypted collection (~{kb} kB documents)")),
            ("plain_large", Some(false), large, format!("unencrypted collection (~{kb} kB documents)")),
        ];
        let mut targets = Vec::new();
        for (name, encrypted, bytes, label) in specs {
            let paths = admin.fill(name, encrypted, c.documents, bytes).await?;
            let (view, want) = (admin.get(&format!("/api/v1/collections/{name}")).await?, encrypted.unwrap_or(true));
            if view["encrypted"].as_bool() != Some(want) {
                bail!("collection {name} reports encrypted={}, expected {want}", view["encrypted"]);
            }
            targets.push((format!("read_{name}"), format!("Document reads, {label}"), admin.clone(), paths));
        }
        let ratio = |size: &str| format!("Reads/s encrypted relative to unencrypted, {size} documents (same run)");
        let pairs = [
            (0, 1, "encryption_ratio_small".into(), ratio("small")),
            (2, 3, "encryption_ratio_large".into(), ratio("large")),
        ];
        each_run(c.runs, servers, async |run| compare_reads(c, &targets, &pairs, run).await).await
    })
    .await
}

/// Reads/s with breach detection off and on (one server each), and on the server with it
/// on, the time from the threshold-crossing failed login to the alert and the webhook.
pub async fn breach(c: &Cli) -> anyhow::Result<Report> {
    let receiver = Receiver::start().await?;
    let on = [
        ("RAMPART_BREACH_DETECTION_ENABLED", "true"),
        // The largest the server accepts: a read flood by one user is exactly what the
        // exfiltration detector looks for, and it would end the bench's session.
        ("RAMPART_DATA_EXFILTRATION_THRESHOLD_MB", "10000000"),
    ];
    let (on, off) = ([&on[..], &receiver.env()].concat(), [("RAMPART_BREACH_DETECTION_ENABLED", "false")]);
    let specs = [("breach detection off", &off[..], Tls), ("breach detection on", &on[..], Tls)];
    with_servers(c, &specs, async |servers: &[Server]| {
        let (targets, pair) = off_and_on(c, servers, "breach", "breach detection").await?;
        let (pairs, on) = ([pair], &targets[1].2);
        // The incident responder polls from its own address, which no attacker uses.
        let responder = on.login_with(on.client_from(alerts::ADMIN_SOURCE.into())?).await?;
        let mut next_attacker = alerts::FIRST_ATTACKER;
        let report = each_run(c.runs, servers, async |run| {
            let mut samples = compare_reads(c, &targets, &pairs, run).await?;
            eprintln!("run {run}: failed-login alert latency, {} repetitions", c.alert_reps);
            let poll = Duration::from_millis(c.alert_poll_ms.max(1));
            samples.extend(alerts::measure(&responder, &receiver, &mut next_attacker, c.alert_reps, poll).await?);
            Ok(samples)
        });
        report.await
    })
    .await
}

// ----- Issue 4/5: backups -----

/// Fills a database with `--backup-documents` documents of `--backup-doc-kb` over
/// `--fill-concurrency` connections, then per run creates an encrypted backup and verifies it.
pub async fn backup(c: &Cli) -> anyhow::Result<Report> {
    with_servers(c, &[("default settings", &[], Tls)], async |servers: &[Server]| {
        let admin = Session::login(&servers[0]).await?;
        admin.create_collection("blobs", None).await?;
        let (count, bytes, fill, mb) = (c.backup_documents, c.backup_doc_kb * 1000, c.fill_concurrency, 1e6);
        eprintln!("inserting {count} documents of ~{bytes} bytes");
        let (started, sent) = (Instant::now(), Arc::new(AtomicU64::new(0)));
        let sessions = (0..fill).map(|_| Ok(Session { client: admin.client()?, ..admin.clone() }));
        let (sessions, sent2) = (sessions.collect::<anyhow::Result<Vec<_>>>()?, Arc::clone(&sent));
        let (_, tally) = drive(sessions, 0..count as u64, None, move |s, i| {
            let doc = api::random_document(i, bytes);
            sent2.fetch_add(doc.to_string().len() as u64, Ordering::Relaxed);
            async move {
                let done = s.insert("blobs", &doc).await.map(drop);
                (s, done)
            }
        })
        .await?;
        if let Some(e) = tally.first_error {
            bail!("{} of {count} inserts failed, first: {e}", tally.errors);
        }
        let fill_secs = started.elapsed().as_secs_f64();
        let db = ["rampart.db", "rampart.db-wal"].map(|f| std::fs::metadata(servers[0].data_dir().join(f)));
        let db_bytes = match db {
            [Ok(db), Ok(wal)] => db.len() + wal.len(),
            [Ok(db), Err(e)] if e.kind() == std::io::ErrorKind::NotFound => db.len(),
            [Err(e), _] | [_, Err(e)] => return Err(e).context("size of the database"),
        };
        let report = each_run(c.runs, servers, async |run| {
            let mut figures = vec![];
            if run == 1 {
                let fill_label =
                    format!("Inserts of ~{} kB documents, {fill} concurrent (once, before run 1)", c.backup_doc_kb);
                figures.push(("backup_fill_docs_s", fill_label, "docs/s", count as f64 / fill_secs, 0));
                let sent = sent.load(Ordering::Relaxed) as f64 / mb;
                figures.push(("backup_data_mb", format!("JSON inserted ({count} documents)"), "MB", sent, 0));
                let db_label = "Database on disk (rampart.db + WAL) after the inserts".into();
                figures.push(("backup_db_mb", db_label, "MB", db_bytes as f64 / mb, 0));
            }
            eprintln!("run {run}: backup create and verify");
            let started = Instant::now();
            let meta = admin.post("/api/v1/admin/backup", &json!({"encrypted": true}), StatusCode::CREATED).await?;
            let (create, id) = (started.elapsed().as_secs_f64(), api::text(&meta, "backup_id")?);
            let size = meta["size_bytes"].as_f64().context("backup response has no size_bytes")? / mb;
            let started = Instant::now();
            let verdict = admin.post(&format!("/api/v1/admin/backups/{id}/verify"), &json!({}), StatusCode::OK).await?;
            let verify = started.elapsed().as_secs_f64();
            // Valid, and the snapshot holds every document inserted.
            let bad = verdict["valid"].as_bool() != Some(true) || verdict["documents"].as_u64() != Some(count as u64);
            if bad {
                eprintln!("warning: backup {id} did not verify with {count} documents: {verdict}");
            }
            let (bad, throughput) = (u64::from(bad), "throughput (backup file size / time)");
            figures.extend([
                ("backup_size_mb", "Encrypted backup file size".into(), "MB", size, 0),
                ("backup_create_s", "Backup create (snapshot, encrypt, fsync, SHA-256)".into(), "s", create, 0),
                ("backup_create_mb_s", format!("Backup create {throughput}"), "MB/s", size / create, 0),
                (
                    "backup_verify_s",
                    "Backup verify (SHA-256, decrypt every chunk, integrity_check)".into(),
                    "s",
                    verify,
                    bad,
                ),
                ("backup_verify_mb_s", format!("Backup verify {throughput}"), "MB/s", size / verify, bad),
            ]);
            Ok(figures
                .into_iter()
                .map(|(key, label, unit, v, errors)| Sample::new(key, label, unit, v).errors(errors))
                .collect())
        });
        report.await
    })
    .await
}

// ----- Issue 3/5: tokens -----

/// Refreshes/s (each a single-use rotation: spend the old pair, store a new one, audit) and
/// EdDSA JWT mints/s (sign, audit), through the server over TLS.
pub async fn tokens(c: &Cli) -> anyhow::Result<Report> {
    with_servers(c, &[("tokens", &[], Tls)], async |servers: &[Server]| {
        let admin = Session::login(&servers[0]).await?;
        let n = c.compare_concurrency;
        let clients = admin.clients(n)?;
        let report = each_run(c.runs, servers, async |run| {
            eprintln!("run {run}: JWT mints and refreshes");
            // A fresh session each run: the refresh pool's logins push older ones out (at
            // most 10 sessions per user).
            let token = admin.login_with(admin.client.clone()).await?.token;
            let url = admin.url("/api/v1/auth/token");
            let mints = closed_loop(clients.clone(), c.window(), move |client: Client, _| {
                let req = client.post(&url).bearer_auth(&token).json(&json!({"audience": "bench"}));
                async move { api::send_json(req, StatusCode::OK).await.map(drop) }
            });
            let mints = mints.await?;
            // A pool of refresh tokens, one per worker in flight: a token is never presented
            // twice (that would be reuse, and revoke its family).
            let mut pool = Vec::with_capacity(n);
            for _ in 0..n {
                pool.push(api::text(&api::login(&admin.client, &admin.base_url).await?, "refresh_token")?);
            }
            let (pool, url) = (Arc::new(Mutex::new(pool)), admin.url("/api/v1/auth/refresh"));
            let refreshes = closed_loop(clients.clone(), c.window(), move |client: Client, _| {
                let (pool, url) = (Arc::clone(&pool), url.clone());
                async move {
                    let token = pool.lock().map_err(|_| anyhow!("pool poisoned"))?.pop().context("pool empty")?;
                    let next = api::send_json(client.post(url).json(&json!({"refresh_token": token})), StatusCode::OK);
                    let fresh = api::text(&next.await?, "refresh_token")?;
                    pool.lock().map_err(|_| anyhow!("pool poisoned"))?.push(fresh);
                    Ok(())
                }
            });
            Ok(vec![
                rate("jwt_mints".into(), format!("JWT mints (EdDSA, audited), {n} concurrent"), &mints),
                rate("refreshes".into(), format!("Refresh-token rotations, {n} concurrent"), &refreshes.await?),
            ])
        });
        report.await
    })
    .await
}
