//! The measurements of issues 2/5, 4/5 and 5/5: what read auditing, encryption at rest and
//! breach detection cost, how fast backups are made and checked, how fast a breach is
//! reported, and whether an address spray can grow the rate limiter's memory.
//!
//! Comparisons that need different server settings start one server per setting and keep
//! them all running; each run measures every variant once, rotating which goes first, so
//! that a burst of other work on the machine hits all variants alike rather than one. Each
//! run also reports the variant's rate relative to its baseline within that run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use crate::alerts::{self, Attackers, Receiver};
use crate::api::{self, Api};
use crate::cpu::CpuSnapshot;
use crate::load::Window;
use crate::report::{Report, Sample};
use crate::server::{self, Server, Transport, ADMIN_PASSWORD, ADMIN_USER};
use crate::spray::{self, SprayPlan};
use crate::suite::{foreign_cpu_sample, rate_sample, read_loop};

/// Everything the suites need from the command line.
pub struct Settings {
    pub bin: PathBuf,
    /// `--server-env`, applied after (over) each suite's own settings.
    pub extra_env: Vec<(String, String)>,
    pub window: Window,
    pub runs: usize,
    /// Closed loops in every read comparison.
    pub concurrency: usize,
    /// Documents per collection in the read comparisons.
    pub documents: usize,
    pub large_doc_bytes: usize,
    pub alert_reps: usize,
    pub alert_poll: Duration,
    pub backup_documents: usize,
    pub backup_doc_bytes: usize,
    pub fill_concurrency: usize,
    pub spray: SprayPlan,
}

/// A suite's figures and what they were measured over.
pub struct Outcome {
    pub report: Report,
    pub http_version: String,
}

impl Settings {
    /// The bench's server environment plus `specific`, with `--server-env` last.
    fn env(&self, specific: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut extra: Vec<(String, String)> =
            specific.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        extra.extend(self.extra_env.iter().cloned());
        server::server_env(&extra)
    }

    async fn start(&self, what: &str, env: Vec<(String, String)>, transport: Transport) -> anyhow::Result<Server> {
        eprintln!("starting {} ({what})", self.bin.display());
        let bin = self.bin.clone();
        tokio::task::spawn_blocking(move || Server::start_with(&bin, &env, transport))
            .await?
            .with_context(|| format!("starting the server ({what})"))
    }
}

/// Stops every server, even if stopping one fails; returns the first failure.
async fn stop_all(servers: Vec<Server>) -> anyhow::Result<()> {
    let mut first_error = None;
    for server in servers {
        let stopped = tokio::task::spawn_blocking(move || server.stop()).await.map_err(anyhow::Error::from);
        if let Err(e) = stopped.and_then(|r| r) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Stops `servers` whatever the measurement's `outcome`; a measurement error wins.
async fn finish<T>(servers: Vec<Server>, outcome: anyhow::Result<T>) -> anyhow::Result<T> {
    let stopped = stop_all(servers).await;
    let value = outcome?;
    stopped.context("stopping the server")?;
    Ok(value)
}

/// An admin session on a server.
struct Admin {
    api: Api,
    client: Client,
    token: String,
}

impl Admin {
    async fn login(server: &Server) -> anyhow::Result<Self> {
        let api = Api::new(&server.base_url, &server.cert_pem)?;
        let client = api.client()?;
        let token = api::login(&client, &api, ADMIN_USER, ADMIN_PASSWORD).await?;
        Ok(Self { api, client, token })
    }

    /// Creates `collection` and fills it with `count` documents of about `bytes` each
    /// (`None`: the small document of the issue 2 read phases); returns their URLs.
    async fn fill(
        &self,
        collection: &str,
        encrypted: Option<bool>,
        count: usize,
        bytes: Option<usize>,
    ) -> anyhow::Result<Vec<String>> {
        api::create_collection(&self.client, &self.api, &self.token, collection, encrypted).await?;
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let doc = match bytes {
                Some(bytes) => api::random_document(i as u64, bytes),
                None => json!({"k": format!("key-{i}"), "n": i, "text": "a small benchmark document"}),
            };
            ids.push(api::insert(&self.client, &self.api, &self.token, collection, &doc).await?);
        }
        Ok(api::document_urls(&self.api, collection, &ids))
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        api::send_json(self.client.get(self.api.url(path)).bearer_auth(&self.token), StatusCode::OK).await
    }

    async fn post_json(&self, path: &str, body: &Value, want: StatusCode) -> anyhow::Result<Value> {
        let req = self.client.post(self.api.url(path)).bearer_auth(&self.token).json(body);
        api::send_json(req, want).await
    }

    /// Whether any document read left an audit record (`query` events, operation `read`).
    async fn reads_audited(&self) -> anyhow::Result<bool> {
        let mut path = "/api/v1/admin/audit?event_type=query&limit=1000".to_owned();
        // Inserts are `query` records too and come first; a few pages pass them.
        for _ in 0..50 {
            let page = self.get_json(&path).await?;
            let records = page["records"].as_array().ok_or_else(|| anyhow!("audit response has no records"))?;
            if records.iter().any(|r| r["details"]["operation"] == "read") {
                return Ok(true);
            }
            let Some(cursor) = page["next_cursor"].as_str() else { return Ok(false) };
            path = format!("/api/v1/admin/audit?event_type=query&limit=1000&cursor={cursor}");
        }
        Ok(false)
    }

    fn target(&self, key: &str, label: String, urls: Vec<String>) -> ReadTarget {
        ReadTarget {
            key: key.to_owned(),
            label,
            api: self.api.clone(),
            token: self.token.clone(),
            urls: Arc::new(urls),
        }
    }
}

/// Documents to read on one server, under one name.
struct ReadTarget {
    key: String,
    label: String,
    api: Api,
    token: String,
    urls: Arc<Vec<String>>,
}

/// `variant`'s rate as a percentage of `baseline`'s, both measured in the same run.
struct Pair {
    variant: usize,
    baseline: usize,
    key: &'static str,
    label: &'static str,
}

/// One run of every target (order rotated by `run`), plus each pair's ratio.
async fn compare_reads(
    s: &Settings,
    targets: &[ReadTarget],
    pairs: &[Pair],
    run: usize,
) -> anyhow::Result<Vec<Sample>> {
    let n = targets.len();
    let mut rates = vec![f64::NAN; n];
    let mut samples: Vec<Option<Sample>> = (0..n).map(|_| None).collect();
    for k in 0..n {
        let i = (k + run - 1) % n;
        let Some(t) = targets.get(i) else { continue };
        eprintln!("run {run}: {}", t.label);
        let tally = read_loop(&t.api, Arc::clone(&t.urls), &t.token, s.concurrency, s.window).await?;
        if let Some(rate) = rates.get_mut(i) {
            *rate = tally.per_second();
        }
        let label = format!("{}, {} concurrent", t.label, s.concurrency);
        if let Some(slot) = samples.get_mut(i) {
            *slot = Some(rate_sample(format!("{}_c{}", t.key, s.concurrency), label, &tally));
        }
    }
    let mut out: Vec<Sample> = samples.into_iter().flatten().collect();
    for p in pairs {
        let ratio = match (rates.get(p.variant), rates.get(p.baseline)) {
            (Some(v), Some(b)) if *b > 0.0 => v / b * 100.0,
            _ => f64::NAN,
        };
        out.push(Sample { key: p.key.to_owned(), label: p.label.to_owned(), unit: "%", value: ratio, errors: 0 });
    }
    Ok(out)
}

async fn negotiated(api: &Api) -> anyhow::Result<String> {
    api::negotiated_version(&api.client()?, api).await
}

/// The issue 2 read document: about 57 bytes of JSON.
const SMALL_DOC: &str = "~60 B documents";

// ----- Issue 2/5: read auditing -----

/// Reads/s with `RAMPART_AUDIT_RECORD_READS` off and on, one server each.
pub async fn audit(s: &Settings) -> anyhow::Result<Outcome> {
    let off = s.start("read auditing off", s.env(&[("RAMPART_AUDIT_RECORD_READS", "false")]), Transport::Tls).await?;
    let on = s.start("read auditing on", s.env(&[("RAMPART_AUDIT_RECORD_READS", "true")]), Transport::Tls).await?;
    let pids = [off.pid(), on.pid()];
    let body = async {
        let (admin_off, admin_on) = (Admin::login(&off).await?, Admin::login(&on).await?);
        let targets = [
            admin_off.target(
                "read_audit_off",
                format!("Document reads, read auditing off ({SMALL_DOC})"),
                admin_off.fill("bench", None, s.documents, None).await?,
            ),
            admin_on.target(
                "read_audit_on",
                format!("Document reads, read auditing on ({SMALL_DOC})"),
                admin_on.fill("bench", None, s.documents, None).await?,
            ),
        ];
        let pairs = [Pair {
            variant: 1,
            baseline: 0,
            key: "audit_ratio",
            label: "Reads/s with read auditing on, relative to off (same run)",
        }];
        let mut report = Report::default();
        for run in 1..=s.runs {
            let cpu = CpuSnapshot::take(&pids);
            let mut samples = compare_reads(s, &targets, &pairs, run).await?;
            samples.push(foreign_cpu_sample(cpu, &pids));
            report.add_run(samples);
        }
        // The setting took: reads left audit records on one server and none on the other.
        let (off_audited, on_audited) = (admin_off.reads_audited().await?, admin_on.reads_audited().await?);
        if off_audited || !on_audited {
            bail!("read auditing did not take effect: reads audited with it off: {off_audited}, on: {on_audited}");
        }
        Ok(Outcome { report, http_version: negotiated(&admin_on.api).await? })
    };
    let outcome = body.await;
    finish(vec![off, on], outcome).await
}

// ----- Issue 4/5: encryption at rest -----

/// Reads/s from an encrypted (default) and an unencrypted collection on one server, for
/// small documents and for documents of `large_doc_bytes`.
pub async fn encryption(s: &Settings) -> anyhow::Result<Outcome> {
    let server = s.start("default settings", s.env(&[]), Transport::Tls).await?;
    let pids = [server.pid()];
    let body = async {
        let admin = Admin::login(&server).await?;
        let kb = s.large_doc_bytes / 1000;
        let large = Some(s.large_doc_bytes);
        let specs = [
            ("sealed_small", None, None, format!("Document reads, encrypted collection ({SMALL_DOC})")),
            ("plain_small", Some(false), None, format!("Document reads, unencrypted collection ({SMALL_DOC})")),
            ("sealed_large", None, large, format!("Document reads, encrypted collection (~{kb} kB documents)")),
            ("plain_large", Some(false), large, format!("Document reads, unencrypted collection (~{kb} kB documents)")),
        ];
        let mut targets = Vec::new();
        for (name, encrypted, bytes, label) in specs {
            let urls = admin.fill(name, encrypted, s.documents, bytes).await?;
            let view = admin.get_json(&format!("/api/v1/collections/{name}")).await?;
            if view["encrypted"].as_bool() != Some(encrypted.unwrap_or(true)) {
                bail!(
                    "collection {name} reports encrypted={}, expected {}",
                    view["encrypted"],
                    encrypted.unwrap_or(true)
                );
            }
            targets.push(admin.target(&format!("read_{name}"), label, urls));
        }
        let pairs = [
            Pair {
                variant: 0,
                baseline: 1,
                key: "encryption_ratio_small",
                label: "Reads/s encrypted relative to unencrypted, small documents (same run)",
            },
            Pair {
                variant: 2,
                baseline: 3,
                key: "encryption_ratio_large",
                label: "Reads/s encrypted relative to unencrypted, large documents (same run)",
            },
        ];
        let mut report = Report::default();
        for run in 1..=s.runs {
            let cpu = CpuSnapshot::take(&pids);
            let mut samples = compare_reads(s, &targets, &pairs, run).await?;
            samples.push(foreign_cpu_sample(cpu, &pids));
            report.add_run(samples);
        }
        Ok(Outcome { report, http_version: negotiated(&admin.api).await? })
    };
    let outcome = body.await;
    finish(vec![server], outcome).await
}

// ----- Issue 4/5: backups -----

const MB: f64 = 1e6;

/// Fills a database with `backup_documents` documents of `backup_doc_bytes`, then per run
/// creates an encrypted backup and verifies it.
pub async fn backup(s: &Settings) -> anyhow::Result<Outcome> {
    let server = s.start("default settings", s.env(&[]), Transport::Tls).await?;
    let pids = [server.pid()];
    let body = async {
        let admin = Admin::login(&server).await?;
        api::create_collection(&admin.client, &admin.api, &admin.token, "blobs", None).await?;
        eprintln!("inserting {} documents of ~{} bytes", s.backup_documents, s.backup_doc_bytes);
        let started = Instant::now();
        let json_bytes = fill_concurrently(&admin, "blobs", s).await?;
        let fill_secs = started.elapsed().as_secs_f64();
        let db_bytes = database_bytes(&server)?;
        let mut report = Report::default();
        for run in 1..=s.runs {
            let cpu = CpuSnapshot::take(&pids);
            let mut samples = Vec::new();
            if run == 1 {
                samples.extend(fill_samples(s, json_bytes, fill_secs, db_bytes));
            }
            eprintln!("run {run}: backup create and verify");
            let started = Instant::now();
            let meta =
                admin.post_json("/api/v1/admin/backup", &json!({"encrypted": true}), StatusCode::CREATED).await?;
            let create_secs = started.elapsed().as_secs_f64();
            let id = meta["backup_id"].as_str().ok_or_else(|| anyhow!("backup response has no backup_id"))?;
            let size = meta["size_bytes"].as_u64().ok_or_else(|| anyhow!("backup response has no size_bytes"))? as f64;
            let started = Instant::now();
            let verdict =
                admin.post_json(&format!("/api/v1/admin/backups/{id}/verify"), &json!({}), StatusCode::OK).await?;
            let verify_secs = started.elapsed().as_secs_f64();
            // Valid, and the snapshot holds every document inserted.
            let complete = verdict["documents"].as_u64() == Some(s.backup_documents as u64);
            let invalid = u64::from(verdict["valid"].as_bool() != Some(true) || !complete);
            if invalid > 0 {
                eprintln!("warning: backup {id} did not verify with {} documents: {verdict}", s.backup_documents);
            }
            let sample = |key: &str, label: &str, unit, value, errors| Sample {
                key: key.to_owned(),
                label: label.to_owned(),
                unit,
                value,
                errors,
            };
            samples.extend([
                sample("backup_size_mb", "Encrypted backup file size", "MB", size / MB, 0),
                sample("backup_create_s", "Backup create (snapshot, encrypt, fsync, SHA-256)", "s", create_secs, 0),
                sample(
                    "backup_create_mb_s",
                    "Backup create throughput (backup file size / time)",
                    "MB/s",
                    size / MB / create_secs,
                    0,
                ),
                sample(
                    "backup_verify_s",
                    "Backup verify (SHA-256, decrypt every chunk, integrity_check)",
                    "s",
                    verify_secs,
                    invalid,
                ),
                sample(
                    "backup_verify_mb_s",
                    "Backup verify throughput (backup file size / time)",
                    "MB/s",
                    size / MB / verify_secs,
                    invalid,
                ),
            ]);
            samples.push(foreign_cpu_sample(cpu, &pids));
            report.add_run(samples);
        }
        Ok(Outcome { report, http_version: negotiated(&admin.api).await? })
    };
    let outcome = body.await;
    finish(vec![server], outcome).await
}

/// Inserts the backup suite's documents over `fill_concurrency` connections; returns the
/// JSON bytes sent.
async fn fill_concurrently(admin: &Admin, collection: &'static str, s: &Settings) -> anyhow::Result<u64> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..s.fill_concurrency {
        let (api, token, next) = (admin.api.clone(), admin.token.clone(), Arc::clone(&next));
        let client = api.client()?;
        let (count, bytes) = (s.backup_documents, s.backup_doc_bytes);
        workers.spawn(async move {
            let mut sent = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return Ok::<_, anyhow::Error>(sent);
                }
                let doc = api::random_document(i as u64, bytes);
                sent += doc.to_string().len() as u64;
                api::insert(&client, &api, &token, collection, &doc).await?;
            }
        });
    }
    let mut total = 0;
    while let Some(worker) = workers.join_next().await {
        total += worker??;
    }
    Ok(total)
}

/// `rampart.db` plus its WAL, as they are on disk now.
fn database_bytes(server: &Server) -> anyhow::Result<u64> {
    let mut total = 0;
    for name in ["rampart.db", "rampart.db-wal"] {
        match std::fs::metadata(server.data_dir().join(name)) {
            Ok(m) => total += m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name.ends_with("-wal") => {}
            Err(e) => return Err(e).with_context(|| format!("size of {name}")),
        }
    }
    Ok(total)
}

fn fill_samples(s: &Settings, json_bytes: u64, secs: f64, db_bytes: u64) -> Vec<Sample> {
    let n = s.backup_documents;
    vec![
        Sample {
            key: "backup_fill_docs_s".to_owned(),
            label: format!(
                "Inserts of ~{} kB documents, {} concurrent (once, before run 1)",
                s.backup_doc_bytes / 1000,
                s.fill_concurrency
            ),
            unit: "docs/s",
            value: n as f64 / secs,
            errors: 0,
        },
        Sample {
            key: "backup_data_mb".to_owned(),
            label: format!("JSON inserted ({n} documents)"),
            unit: "MB",
            value: json_bytes as f64 / MB,
            errors: 0,
        },
        Sample {
            key: "backup_db_mb".to_owned(),
            label: "Database on disk (rampart.db + WAL) after the inserts".to_owned(),
            unit: "MB",
            value: db_bytes as f64 / MB,
            errors: 0,
        },
    ]
}

// ----- Issue 5/5: breach detection -----

/// Reads/s with breach detection off and on (one server each), and on the server with it
/// on, the time from the threshold-crossing failed login to the alert and the webhook.
pub async fn breach(s: &Settings) -> anyhow::Result<Outcome> {
    let mut receiver = Receiver::start().await?;
    let off = s
        .start("breach detection off", s.env(&[("RAMPART_BREACH_DETECTION_ENABLED", "false")]), Transport::Tls)
        .await?;
    let mut on_env = vec![
        ("RAMPART_BREACH_DETECTION_ENABLED", "true"),
        // The largest the server accepts: a read flood by one user is exactly what the
        // exfiltration detector looks for, and it would end the bench's session.
        ("RAMPART_DATA_EXFILTRATION_THRESHOLD_MB", "10000000"),
    ];
    let hook_env = alerts::webhook_env(&receiver.url);
    on_env.extend(hook_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let on = s.start("breach detection on", s.env(&on_env), Transport::Tls).await?;
    let pids = [off.pid(), on.pid()];
    let body = async {
        let (admin_off, admin_on) = (Admin::login(&off).await?, Admin::login(&on).await?);
        let targets = [
            admin_off.target(
                "read_breach_off",
                format!("Document reads, breach detection off ({SMALL_DOC})"),
                admin_off.fill("bench", None, s.documents, None).await?,
            ),
            admin_on.target(
                "read_breach_on",
                format!("Document reads, breach detection on ({SMALL_DOC})"),
                admin_on.fill("bench", None, s.documents, None).await?,
            ),
        ];
        let pairs = [Pair {
            variant: 1,
            baseline: 0,
            key: "breach_ratio",
            label: "Reads/s with breach detection on, relative to off (same run)",
        }];
        // The incident responder polls from its own address, which no attacker uses.
        let responder = admin_on.api.client_from(alerts::ADMIN_SOURCE.into())?;
        let responder_token = api::login(&responder, &admin_on.api, ADMIN_USER, ADMIN_PASSWORD).await?;
        let mut attackers = Attackers::default();
        let mut report = Report::default();
        for run in 1..=s.runs {
            let cpu = CpuSnapshot::take(&pids);
            let mut samples = compare_reads(s, &targets, &pairs, run).await?;
            eprintln!("run {run}: failed-login alert latency, {} repetitions", s.alert_reps);
            samples.extend(
                alerts::measure(
                    &admin_on.api,
                    &responder,
                    &responder_token,
                    &mut receiver,
                    &mut attackers,
                    s.alert_reps,
                    s.alert_poll,
                )
                .await?,
            );
            samples.push(foreign_cpu_sample(cpu, &pids));
            report.add_run(samples);
        }
        Ok(Outcome { report, http_version: negotiated(&admin_on.api).await? })
    };
    let outcome = body.await;
    finish(vec![off, on], outcome).await
}

// ----- Issue 2/5: rate-limiter memory -----

/// One fresh server per run, limiter on, trusting 127.0.0.1 as a proxy.
pub async fn spray(s: &Settings) -> anyhow::Result<Outcome> {
    s.spray.check()?;
    let env = s.env(&[("RAMPART_RATE_LIMIT_ENABLED", "true"), ("RAMPART_TRUSTED_PROXIES", spray::TRUSTED_PROXY)]);
    let mut report = Report::default();
    for run in 1..=s.runs {
        let server = s.start("rate limiting on, plain HTTP", env.clone(), Transport::PlainHttp).await?;
        let pids = [server.pid()];
        let body = async {
            let cpu = CpuSnapshot::take(&pids);
            let mut samples = spray::run_once(&server, &s.spray, run).await?;
            samples.push(foreign_cpu_sample(cpu, &pids));
            Ok(samples)
        };
        let outcome = body.await;
        report.add_run(finish(vec![server], outcome).await?);
    }
    Ok(Outcome { report, http_version: "HTTP/1.1 (plain, --insecure-http)".to_owned() })
}

// ----- Issue 3/5: tokens -----

/// Refreshes/s (each a single-use rotation: spend the old pair, store a new one, audit) and
/// EdDSA JWT mints/s (sign, audit), through the server over TLS.
pub async fn tokens(s: &Settings) -> anyhow::Result<Outcome> {
    let server = s.start("tokens", s.env(&[]), Transport::Tls).await?;
    let pids = [server.pid()];
    let body = async {
        let admin = Admin::login(&server).await?;
        let clients = admin.api.clients(s.concurrency)?;
        let mut report = Report::default();
        for run in 1..=s.runs {
            eprintln!("run {run}: JWT mints and refreshes");
            let cpu = CpuSnapshot::take(&pids);
            // A fresh session each run: the refresh pool's logins push older ones out
            // (at most 10 sessions per user).
            let token = api::login(&admin.client, &admin.api, ADMIN_USER, ADMIN_PASSWORD).await?;
            let api = admin.api.clone();
            let mints = crate::load::closed_loop(clients.clone(), s.window, move |client, _| {
                let req = client
                    .post(api.url("/api/v1/auth/token"))
                    .bearer_auth(token.clone())
                    .json(&json!({"audience": "bench"}));
                async move { api::send_json(req, StatusCode::OK).await.map(|_| ()) }
            })
            .await?;
            // A pool of refresh tokens, one per worker in flight: a token is never presented
            // twice (that would be reuse, and revoke its family).
            let mut pool = Vec::with_capacity(s.concurrency);
            for _ in 0..s.concurrency {
                let login = api::send_json(
                    admin
                        .client
                        .post(admin.api.url("/api/v1/auth/login"))
                        .json(&json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD})),
                    StatusCode::OK,
                )
                .await?;
                pool.push(login["refresh_token"].as_str().ok_or_else(|| anyhow!("no refresh_token"))?.to_owned());
            }
            let pool = Arc::new(std::sync::Mutex::new(pool));
            let api = admin.api.clone();
            let refreshes = crate::load::closed_loop(clients.clone(), s.window, move |client, _| {
                let (pool, url) = (Arc::clone(&pool), api.url("/api/v1/auth/refresh"));
                async move {
                    let token = pool
                        .lock()
                        .map_err(|_| anyhow!("pool poisoned"))?
                        .pop()
                        .ok_or_else(|| anyhow!("pool empty"))?;
                    let next =
                        api::send_json(client.post(url).json(&json!({"refresh_token": token})), StatusCode::OK).await?;
                    let fresh = next["refresh_token"].as_str().ok_or_else(|| anyhow!("no refresh_token"))?.to_owned();
                    pool.lock().map_err(|_| anyhow!("pool poisoned"))?.push(fresh);
                    Ok(())
                }
            })
            .await?;
            report.add_run(vec![
                rate_sample(
                    "jwt_mints".into(),
                    format!("JWT mints (EdDSA, audited), {} concurrent", s.concurrency),
                    &mints,
                ),
                rate_sample(
                    "refreshes".into(),
                    format!("Refresh-token rotations, {} concurrent", s.concurrency),
                    &refreshes,
                ),
                foreign_cpu_sample(cpu, &pids),
            ]);
        }
        Ok(Outcome { report, http_version: negotiated(&admin.api).await? })
    };
    let outcome = body.await;
    finish(vec![server], outcome).await
}
