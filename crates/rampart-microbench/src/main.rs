//! In-process micro-benchmarks of the security machinery, timed with `std::time::Instant`.
//!
//! Every figure is the median of several runs; the runs are printed as they finish and the
//! medians end up in a Markdown table. Run with `cargo run --release -p rampart-microbench`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use rampart_core::{Core, CoreSettings, PasswordPool, RateLimiter, SystemClock};
use rampart_crypto::{AuditMacKey, DataKey, MasterKey, PasswordHasher, SealingKey};
use rampart_store::{AuditChainer, AuditEvent, AuditStore, MetaStore};
use rampart_store_sqlite::SqliteStore;
use rampart_types::Timestamp;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

/// Runs per figure (the median is reported).
const RUNS: usize = 5;
/// Runs of the audit benchmarks, which sync to disk and are slower.
const AUDIT_RUNS: usize = 3;

/// Distinct addresses in the spray, and the server's default `max_tracked_clients`.
const SPRAY: u32 = 1_000_000;
const MAX_KEYS: usize = 100_000;
/// The server's default `requests_per_minute`.
const PER_MINUTE: u32 = 1000;
/// The spray is timed in these segments: before the cap, just after it, long after it.
const SEGMENTS: [(u32, u32); 3] = [(0, 100_000), (100_000, 500_000), (500_000, SPRAY)];

/// Bytes sealed or opened per run and size.
const AEAD_BYTES_PER_RUN: usize = 64 * 1024 * 1024;
const AEAD_SIZES: [usize; 2] = [1024, 64 * 1024];

/// Audit events per run, the batch size of (b), and the writers of (c).
const AUDIT_N: usize = 2000;
const AUDIT_BATCH: usize = 64;
const AUDIT_TASKS: usize = 16;

const TOKENS_PER_RUN: usize = 200_000;

struct Row {
    benchmark: String,
    unit: &'static str,
    runs: Vec<f64>,
}

impl Row {
    fn median(&self) -> f64 {
        median(&self.runs)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn add(&mut self, benchmark: impl Into<String>, unit: &'static str, runs: Vec<f64>) {
        let row = Row { benchmark: benchmark.into(), unit, runs };
        let runs: Vec<String> = row.runs.iter().map(|r| fmt_num(*r)).collect();
        println!(
            "  {:<58} median {:>10} {:<12} runs [{}]",
            row.benchmark,
            fmt_num(row.median()),
            row.unit,
            runs.join(", ")
        );
        self.rows.push(row);
    }

    fn markdown(&self) -> String {
        let mut out = String::from("| Benchmark | Median | Unit | Runs |\n|---|---:|---|---|\n");
        for r in &self.rows {
            let runs: Vec<String> = r.runs.iter().map(|x| fmt_num(*x)).collect();
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.benchmark,
                fmt_num(r.median()),
                r.unit,
                runs.join(", ")
            ));
        }
        out
    }
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> Result<i64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow!("no VmRSS line"))?;
    let kib = line.split_whitespace().nth(1).ok_or_else(|| anyhow!("malformed VmRSS line"))?;
    Ok(kib.parse()?)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|k| k.trim().to_owned()).unwrap_or_default();
    format!("{cpus} CPUs, {model}, Linux {kernel}")
}

// ---------------------------------------------------------------------------------------
// 1. Rate limiter under an address spray

fn spray_ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000u32.wrapping_add(i)))
}

struct SprayRun {
    ns_per_decision: [f64; 3],
    rss_growth_kib: [i64; 3],
    tracked: usize,
}

fn spray_run() -> Result<SprayRun> {
    let limiter: RateLimiter<IpAddr> = RateLimiter::new(PER_MINUTE, MAX_KEYS, Arc::new(SystemClock));
    let mut ns = [0.0; 3];
    let mut growth = [0; 3];
    for (k, &(from, to)) in SEGMENTS.iter().enumerate() {
        let before = rss_kib()?;
        let t = Instant::now();
        for i in from..to {
            black_box(limiter.check(&spray_ip(i)));
        }
        ns[k] = t.elapsed().as_nanos() as f64 / f64::from(to - from);
        growth[k] = rss_kib()? - before;
    }
    Ok(SprayRun { ns_per_decision: ns, rss_growth_kib: growth, tracked: limiter.tracked_keys() })
}

fn hot_key_run() -> f64 {
    let limiter: RateLimiter<IpAddr> = RateLimiter::new(PER_MINUTE, MAX_KEYS, Arc::new(SystemClock));
    let key = spray_ip(1);
    let t = Instant::now();
    for _ in 0..SPRAY {
        black_box(limiter.check(black_box(&key)));
    }
    t.elapsed().as_nanos() as f64 / f64::from(SPRAY)
}

fn bench_limiter(report: &mut Report) -> Result<()> {
    println!("1. Rate limiter: {SPRAY} distinct IPv4 addresses, max_keys = {MAX_KEYS}, {PER_MINUTE}/min");
    let mut ns: [Vec<f64>; 3] = Default::default();
    let mut rss: [Vec<f64>; 3] = Default::default();
    let mut tracked = Vec::new();
    for run in 0..RUNS {
        let r = spray_run()?;
        println!(
            "    run {run}: ns/decision {:.1} / {:.1} / {:.1}; RSS growth KiB {} / {} / {}; tracked {}",
            r.ns_per_decision[0],
            r.ns_per_decision[1],
            r.ns_per_decision[2],
            r.rss_growth_kib[0],
            r.rss_growth_kib[1],
            r.rss_growth_kib[2],
            r.tracked
        );
        if r.tracked > MAX_KEYS + 16 {
            bail!("limiter tracks {} keys, more than the cap {} + 16", r.tracked, MAX_KEYS);
        }
        for k in 0..3 {
            ns[k].push(r.ns_per_decision[k]);
            rss[k].push(r.rss_growth_kib[k] as f64 / 1024.0);
        }
        tracked.push(r.tracked as f64);
    }
    let [ns0, ns1, ns2] = ns;
    let [rss0, rss1, rss2] = rss;
    report.add("Limiter spray: decisions 0–100k (filling to the cap)", "ns/decision", ns0);
    report.add("Limiter spray: decisions 100k–500k (evicting)", "ns/decision", ns1);
    report.add("Limiter spray: decisions 500k–1M (evicting)", "ns/decision", ns2);
    report.add(format!("Limiter spray: tracked_keys() after 1M (cap {MAX_KEYS})"), "keys", tracked);
    report.add("Limiter spray: RSS growth during 0–100k", "MiB", rss0.clone());
    report.add("Limiter spray: RSS growth during 100k–500k", "MiB", rss1.clone());
    report.add("Limiter spray: RSS growth during 500k–1M", "MiB", rss2.clone());
    let total: Vec<f64> = rss0.iter().zip(&rss1).zip(&rss2).map(|((a, b), c)| a + b + c).collect();
    report.add("Limiter spray: RSS growth over all 1M decisions", "MiB", total);
    let hot: Vec<f64> = (0..RUNS).map(|_| hot_key_run()).collect();
    report.add("Limiter: single hot key (1M checks)", "ns/decision", hot);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 2. Seal/open throughput

fn mb_per_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn bench_aead(report: &mut Report) -> Result<()> {
    println!("2. AES-256-GCM: SealingKey (random nonce, allocating) vs raw ring LessSafeKey (fixed nonce, in place)");
    let key_bytes: [u8; 32] = rampart_crypto::random_bytes();
    let key = SealingKey::new(&key_bytes)?;
    let raw = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key_bytes).map_err(|_| anyhow!("ring key"))?);
    let aad = b"orders/0123456789abcdef";
    let nonce = || Nonce::assume_unique_for_key([0u8; 12]);
    // What a seal pays on top of the raw cipher for its fresh random nonce (OsRng).
    const NONCES: u32 = 200_000;
    let nonce_ns = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..NONCES {
                black_box(rampart_crypto::random_bytes::<12>());
            }
            t.elapsed().as_nanos() as f64 / f64::from(NONCES)
        })
        .collect();
    report.add("random_bytes::<12>() (the per-seal nonce, OsRng)", "ns/call", nonce_ns);
    for size in AEAD_SIZES {
        let iters = AEAD_BYTES_PER_RUN / size;
        let bytes = iters * size;
        let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let sealed = key.seal(aad, &plaintext)?;
        if key.open(aad, &sealed)? != plaintext {
            bail!("seal/open round trip failed");
        }
        let mut raw_sealed = plaintext.clone();
        raw.seal_in_place_append_tag(nonce(), Aad::from(aad), &mut raw_sealed).map_err(|_| anyhow!("ring seal"))?;

        let (mut seal, mut open, mut raw_seal, mut raw_open) = (vec![], vec![], vec![], vec![]);
        for _ in 0..RUNS {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(key.seal(aad, black_box(&plaintext))?);
            }
            seal.push(mb_per_s(bytes, t.elapsed().as_secs_f64()));

            let t = Instant::now();
            for _ in 0..iters {
                black_box(key.open(aad, black_box(&sealed))?);
            }
            open.push(mb_per_s(bytes, t.elapsed().as_secs_f64()));

            let mut buf = Vec::with_capacity(size + 16);
            buf.extend_from_slice(&plaintext);
            let t = Instant::now();
            for _ in 0..iters {
                buf.truncate(size);
                raw.seal_in_place_append_tag(nonce(), Aad::from(aad), &mut buf).map_err(|_| anyhow!("ring seal"))?;
                black_box(&buf);
            }
            raw_seal.push(mb_per_s(bytes, t.elapsed().as_secs_f64()));

            let mut buf = Vec::with_capacity(size + 16);
            let t = Instant::now();
            for _ in 0..iters {
                buf.clear();
                buf.extend_from_slice(&raw_sealed);
                let pt = raw.open_in_place(nonce(), Aad::from(aad), &mut buf).map_err(|_| anyhow!("ring open"))?;
                black_box(pt);
            }
            raw_open.push(mb_per_s(bytes, t.elapsed().as_secs_f64()));
        }
        let label = if size >= 1024 * 1024 { format!("{} MiB", size >> 20) } else { format!("{} KiB", size >> 10) };
        report.add(format!("SealingKey::seal, {label}"), "MB/s", seal);
        report.add(format!("SealingKey::open, {label}"), "MB/s", open);
        report.add(format!("ring seal_in_place_append_tag (raw), {label}"), "MB/s", raw_seal);
        report.add(format!("ring open_in_place (raw, + copy into buffer), {label}"), "MB/s", raw_open);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 3. Audit append: group commit vs one sync per event

struct MacChainer(AuditMacKey);

impl AuditChainer for MacChainer {
    fn chain(&self, prev_hash: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
        self.0.chain(prev_hash, canonical)
    }
    fn head_mac(&self, seq: i64, hash: &[u8; 32]) -> [u8; 32] {
        self.0.head_mac(seq, hash)
    }
    fn head_is_signed(&self, seq: i64, hash: &[u8; 32], mac: &[u8; 32]) -> bool {
        self.0.head_is_signed(seq, hash, mac)
    }
}

fn audit_event(i: usize) -> AuditEvent {
    AuditEvent {
        timestamp: Timestamp::from_millis(1_764_000_000_000 + i as i64),
        event_type: "permission_denied".into(),
        user: Some(format!("user{}", i % 50)),
        ip_address: Some(format!("10.0.{}.{}", (i / 256) % 256, i % 256)),
        success: false,
        details: serde_json::json!({ "collection": "orders", "action": "read", "n": i }),
        request_id: Some(format!("req-{i:08}")),
    }
}

fn fresh_store() -> Result<(tempfile::TempDir, SqliteStore)> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path())?;
    store.set_audit_chainer(Arc::new(MacChainer(DataKey::generate().audit_key())));
    Ok((dir, store))
}

async fn check_count(store: &SqliteStore, expected: usize) -> Result<()> {
    let records = store.read_audit(0, expected + 10).await?;
    if records.len() != expected {
        bail!("audit log holds {} records, expected {expected}", records.len());
    }
    Ok(())
}

async fn audit_one_per_call() -> Result<f64> {
    let (_dir, store) = fresh_store()?;
    let events: Vec<AuditEvent> = (0..AUDIT_N).map(audit_event).collect();
    let t = Instant::now();
    for e in events {
        store.append_audit(vec![e]).await?;
    }
    let rate = AUDIT_N as f64 / t.elapsed().as_secs_f64();
    check_count(&store, AUDIT_N).await?;
    store.close().await?;
    Ok(rate)
}

async fn audit_batched() -> Result<f64> {
    let (_dir, store) = fresh_store()?;
    let mut events = (0..AUDIT_N).map(audit_event).collect::<Vec<_>>().into_iter();
    let t = Instant::now();
    loop {
        let batch: Vec<AuditEvent> = events.by_ref().take(AUDIT_BATCH).collect();
        if batch.is_empty() {
            break;
        }
        store.append_audit(batch).await?;
    }
    let rate = AUDIT_N as f64 / t.elapsed().as_secs_f64();
    check_count(&store, AUDIT_N).await?;
    store.close().await?;
    Ok(rate)
}

/// Through `Core::record`, i.e. the group-commit writer, from concurrent tasks.
async fn audit_core_concurrent() -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path())?;
    let config = rampart_config::Config::for_data_dir(dir.path())?;
    let pool = PasswordPool::new(PasswordHasher::new()?, 1, 4);
    let ports = rampart_core::CorePorts {
        store: Arc::new(store.clone()),
        clock: Arc::new(SystemClock),
        master: Arc::new(MasterKey::generate()),
        passwords: pool,
        notifier: Arc::new(rampart_core::NoNotifier),
        identity: None,
        ldap: None,
        login_delay: rampart_core::ThrottleBackend::Memory,
        oidc: None,
    };
    let (core, _bootstrap) =
        Core::open(ports, CoreSettings::from_config(&config), (Some("admin".into()), None)).await?;
    let before = store.read_audit(0, 1000).await?.len();
    let per_task = AUDIT_N / AUDIT_TASKS;
    let work: Vec<Vec<AuditEvent>> =
        (0..AUDIT_TASKS).map(|w| (0..per_task).map(|i| audit_event(w * per_task + i)).collect()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    let t = Instant::now();
    for events in work {
        let core = core.clone();
        tasks.spawn(async move {
            for e in events {
                core.events().record(vec![e]).await?;
            }
            Ok::<(), rampart_core::CoreError>(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let total = per_task * AUDIT_TASKS;
    let rate = total as f64 / t.elapsed().as_secs_f64();
    check_count(&store, before + total).await?;
    drop(core);
    store.close().await?;
    Ok(rate)
}

async fn bench_audit(report: &mut Report) -> Result<()> {
    println!("3. Audit append (SQLite WAL, synchronous=FULL, HMAC chain), {AUDIT_N} events per run");
    let (mut single, mut batched, mut concurrent) = (vec![], vec![], vec![]);
    for run in 0..AUDIT_RUNS {
        let a = audit_one_per_call().await?;
        let b = audit_batched().await?;
        let c = audit_core_concurrent().await?;
        println!("    run {run}: one per call {a:.0} ev/s; batches of {AUDIT_BATCH} {b:.0} ev/s; {AUDIT_TASKS} tasks via Core::record {c:.0} ev/s");
        single.push(a);
        batched.push(b);
        concurrent.push(c);
    }
    let ratio_b: Vec<f64> = batched.iter().zip(&single).map(|(b, a)| b / a).collect();
    let ratio_c: Vec<f64> = concurrent.iter().zip(&single).map(|(c, a)| c / a).collect();
    report.add("Audit (a): append_audit one event per call (1 fsync each)", "events/s", single);
    report.add(format!("Audit (b): append_audit in batches of {AUDIT_BATCH}"), "events/s", batched);
    report.add("Audit (b)/(a) ratio", "×", ratio_b);
    report.add(
        format!("Audit (c): {AUDIT_TASKS} tasks × Core::record(1 event) (group-commit writer)"),
        "events/s",
        concurrent,
    );
    report.add("Audit (c)/(a) ratio", "×", ratio_c);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 4. Blind index tokens

fn bench_blind_index(report: &mut Report) {
    println!("4. Blind index: HMAC-SHA256 token per (collection, field, value)");
    let key = DataKey::generate().blind_index_key();
    let values: Vec<String> = (0..1024).map(|i| format!("customer{i:04}@example.com")).collect();
    let runs = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for i in 0..TOKENS_PER_RUN {
                black_box(key.token("customers", "email", black_box(&values[i % values.len()])));
            }
            t.elapsed().as_nanos() as f64 / TOKENS_PER_RUN as f64
        })
        .collect();
    report.add("BlindIndexKey::token (~25-byte value)", "ns/token", runs);
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    println!("rampart-microbench on {}", machine());
    println!("medians of {RUNS} runs ({AUDIT_RUNS} for audit); MB = 10^6 bytes\n");
    let mut report = Report { rows: Vec::new() };
    // The CPU-bound parts run on a blocking thread so they do not stall a runtime worker.
    report = tokio::task::spawn_blocking(move || -> Result<Report> {
        bench_limiter(&mut report)?;
        bench_aead(&mut report)?;
        Ok(report)
    })
    .await??;
    bench_audit(&mut report).await?;
    report = tokio::task::spawn_blocking(move || {
        bench_blind_index(&mut report);
        report
    })
    .await?;
    println!("\n{}", report.markdown());
    Ok(())
}
