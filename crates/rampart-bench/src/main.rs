//! `rampart-bench`: throughput and latency of the real `rampart serve` binary on this
//! machine. A bench, not a test: the figures depend on the hardware, so it reports them
//! (median of several runs) instead of asserting on them.

mod alerts;
mod api;
mod compare;
mod export;
mod http1;
mod identity;
mod load;
mod nodes;
mod report;
mod server;
mod spray;
mod suites;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

use crate::load::Window;
use crate::report::Report;

/// A set of measurements; several may run in one invocation, in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Suite {
    /// Issue 2: Argon2id, logins, reads, /health, latency under a login flood
    Core,
    /// Issue 2/5: document reads with read auditing off and on (two servers)
    Audit,
    /// Issue 2/5: rate-limiter memory under an address spray (plain HTTP, fresh server per run)
    Spray,
    /// Issue 4/5: document reads from encrypted and unencrypted collections (one server)
    Encryption,
    /// Issue 4/5: encrypted backup create and verify throughput
    Backup,
    /// Issue 5/5: reads with breach detection off and on; failed-login alert and webhook latency
    Breach,
    /// Issue 3/5: refresh-token rotations/s and JWT mints/s
    Tokens,
    /// Issue 10: wrk against Rampart, nginx and PocketBase side by side (needs wrk, nginx, pocketbase)
    Compare,
    /// Issue 11: one node on SQLite vs one on PostgreSQL vs two on PostgreSQL behind nginx (wrk)
    Nodes,
    /// Issue 12: data-subject exports (JSON, CSV, XML) vs paging the same records; server memory
    Export,
    /// Issue 13: logins/s through a real slapd (LDAP) and a real oidc-provider (OIDC) vs local
    Identity,
}

impl Suite {
    fn title(self) -> &'static str {
        match self {
            Suite::Core => "core: logins, reads, health checks",
            Suite::Audit => "audit: read auditing off vs on",
            Suite::Spray => "spray: rate-limiter memory under an address spray",
            Suite::Encryption => "encryption: encrypted vs unencrypted collections",
            Suite::Backup => "backup: encrypted backup create and verify",
            Suite::Breach => "breach: detection cost and alert latency",
            Suite::Tokens => "tokens: refresh rotations and JWT mints",
            Suite::Compare => "compare: Rampart beside nginx and PocketBase (wrk)",
            Suite::Nodes => "nodes: SQLite vs PostgreSQL vs two nodes behind nginx (wrk)",
            Suite::Export => "export: data-subject exports stream (time and server memory)",
            Suite::Identity => "identity: local vs LDAP vs OIDC logins",
        }
    }

    fn name(self) -> String {
        format!("{self:?}").to_lowercase()
    }
}

#[derive(Parser, Debug)]
#[command(name = "rampart-bench", about = "Measure a real `rampart serve` on this machine")]
struct Cli {
    /// Server binary [default: <target-dir>/release/rampart, target dir from
    /// CARGO_TARGET_DIR, /work/cache/target or ./target, first that has it]
    #[arg(long)]
    rampart_bin: Option<PathBuf>,
    /// Measured seconds per phase
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Warm-up seconds before each phase's measurement (connections, steady state)
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Times to repeat the whole set; the median of each figure is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print JSON instead of a Markdown table
    #[arg(long)]
    json: bool,
    /// Concurrent login loops, one phase per value
    #[arg(long, value_delimiter = ',', default_values_t = [8, 32])]
    login_concurrency: Vec<usize>,
    /// Concurrent document-read and health-check loops, one phase per value
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64])]
    read_concurrency: Vec<usize>,
    /// Login loops running while /health latency is probed
    #[arg(long, default_value_t = 32)]
    flood_concurrency: usize,
    /// Milliseconds between /health latency probes
    #[arg(long, default_value_t = 5)]
    probe_interval_ms: u64,
    /// Threads for the multi-threaded Argon2id figure [default: available parallelism]
    #[arg(long)]
    hash_threads: Option<usize>,
    /// Documents created for the read phases
    #[arg(long, default_value_t = 100)]
    documents: usize,
    /// Extra environment for the server, KEY=VALUE (repeatable)
    #[arg(long = "server-env", value_name = "KEY=VALUE", value_parser = env_pair)]
    server_env: Vec<(String, String)>,
    /// Which measurements to run, comma-separated
    #[arg(long, value_enum, value_delimiter = ',', default_value = "core")]
    suite: Vec<Suite>,
    /// Concurrent read loops in the audit, encryption and breach comparisons
    #[arg(long, default_value_t = 16)]
    compare_concurrency: usize,
    /// Connections wrk holds open in the compare suite
    #[arg(long, default_value_t = 32)]
    wrk_connections: usize,
    /// Size of the large documents in the encryption comparison, in kB
    #[arg(long, default_value_t = 20)]
    large_doc_kb: usize,
    /// Threshold-crossing repetitions per run in the breach suite (one attacker address each)
    #[arg(long, default_value_t = 5)]
    alert_reps: usize,
    /// Milliseconds between polls of the alerts API
    #[arg(long, default_value_t = 2)]
    alert_poll_ms: u64,
    /// Documents inserted before the backup runs
    #[arg(long, default_value_t = 1500)]
    backup_documents: usize,
    /// Size of each backup-suite document, in kB
    #[arg(long, default_value_t = 20)]
    backup_doc_kb: usize,
    /// Documents of the one subject the export suite exports
    #[arg(long, default_value_t = 20_000)]
    export_documents: usize,
    /// Size of each export-suite document, in kB
    #[arg(long, default_value_t = 2)]
    export_doc_kb: usize,
    /// Concurrent inserts while filling the backup database
    #[arg(long, default_value_t = 4)]
    fill_concurrency: usize,
    /// Distinct forged X-Forwarded-For addresses in the spray (one request each)
    #[arg(long, default_value_t = 1_000_000)]
    spray_forged: u64,
    /// Distinct bound source addresses in 127.1.0.0/16.. in the spray (one connection each)
    #[arg(long, default_value_t = 20_000)]
    spray_direct: u64,
    /// Keep-alive connections from the trusted proxy carrying the forged requests
    #[arg(long, default_value_t = 8)]
    spray_connections: usize,
    /// One-shot connections from distinct addresses open at once
    #[arg(long, default_value_t = 8)]
    spray_direct_concurrency: usize,
}

fn env_pair(pair: &str) -> Result<(String, String), String> {
    let (k, v) = pair.split_once('=').ok_or_else(|| format!("--server-env wants KEY=VALUE, got {pair:?}"))?;
    Ok((k.to_owned(), v.to_owned()))
}

impl Cli {
    /// Refuses values that cannot be measured, before any server starts; resolves the binary.
    fn check(&mut self) -> anyhow::Result<()> {
        let counts = [self.runs, self.flood_concurrency, self.compare_concurrency, self.alert_reps, self.documents];
        let counts = counts.into_iter().chain([self.backup_documents, self.fill_concurrency, self.export_documents]);
        let mut counts =
            counts.chain(self.hash_threads).chain(self.login_concurrency.iter().chain(&self.read_concurrency).copied());
        if counts.any(|n| n == 0) {
            bail!("--runs, --documents, --hash-threads, concurrencies, --alert-reps and --backup-documents must be at least 1");
        }
        if !(0.0..=3600.0).contains(&self.warmup) || !(0.1..=3600.0).contains(&self.seconds) {
            bail!("--warmup must be between 0 and 3600, --seconds between 0.1 and 3600");
        }
        if ![self.large_doc_kb, self.backup_doc_kb, self.export_doc_kb].iter().all(|kb| (1..=512).contains(kb)) {
            bail!("--large-doc-kb and --backup-doc-kb must be between 1 and 512 (the server takes bodies up to 1 MiB)");
        }
        if self.suite.contains(&Suite::Spray) {
            spray::check(self)?;
        }
        self.rampart_bin = Some(server::find_binary(self.rampart_bin.as_deref())?);
        Ok(())
    }

    fn window(&self) -> Window {
        Window { warmup: Duration::from_secs_f64(self.warmup), measure: Duration::from_secs_f64(self.seconds) }
    }

    fn bin(&self) -> &Path {
        self.rampart_bin.as_deref().unwrap_or(Path::new("rampart"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    // The error chain on one line each; `anyhow`'s Debug output would add a backtrace
    // whenever RUST_BACKTRACE is set, burying the message.
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(mut cli: Cli) -> anyhow::Result<()> {
    // Before any server starts, so the load average shows other work, not ours.
    let machine = report::machine();
    cli.check()?;
    let version = server_version(cli.bin());
    let mut results = Vec::new();
    // A failing suite ends the invocation, but the suites before it are still reported.
    let mut failure = None;
    for &suite in &cli.suite {
        let measured = match suite {
            Suite::Core => suites::core(&cli).await,
            Suite::Audit => suites::audit(&cli).await,
            Suite::Spray => spray::spray(&cli).await,
            Suite::Encryption => suites::encryption(&cli).await,
            Suite::Backup => suites::backup(&cli).await,
            Suite::Breach => suites::breach(&cli).await,
            Suite::Tokens => suites::tokens(&cli).await,
            Suite::Export => export::export_suite(&cli).await,
            Suite::Compare => compare::compare(&cli).await,
            Suite::Nodes => nodes::nodes(&cli).await,
            Suite::Identity => identity::identity(&cli).await,
        };
        let context = || format!("suite {}", suite.name());
        match measured {
            Ok(mut report) => {
                failure = failure.or(report.stop_error.take().map(|e| e.context(context())));
                results.push((suite, report));
            }
            Err(e) => {
                failure = Some(e.context(context()));
                break;
            }
        }
    }
    print_results(&cli, &machine, &version, &results);
    if let Some(e) = failure {
        return Err(e);
    }
    match results.iter().map(|(_, report)| report.total_errors()).sum::<u64>() {
        0 => Ok(()),
        n => bail!("{n} requests failed during measurement; the affected figures are not trustworthy"),
    }
}

fn print_results(cli: &Cli, machine: &Value, version: &str, results: &[(Suite, Report)]) {
    if cli.json {
        let setup = |r: &Report| {
            json!({"seconds": cli.seconds, "warmup_seconds": cli.warmup, "runs": cli.runs,
                   "http_version": r.transport, "server_version": version})
        };
        let json = |(suite, r): &(Suite, Report)| json!({"machine": machine, "setup": setup(r), "figures": r.json(), "suite": suite.name()});
        let mut suites: Vec<Value> = results.iter().map(json).collect();
        match suites.len() {
            1 => println!("{:#}", suites.remove(0)),
            _ => println!("{:#}", json!({ "suites": suites })),
        }
        return;
    }
    let fact = |key: &str| machine[key].as_str().unwrap_or("unknown").to_owned();
    let headings = !(results.len() == 1 && results.iter().all(|(suite, _)| *suite == Suite::Core));
    for (i, (suite, report)) in results.iter().enumerate() {
        if headings {
            println!("{}## {}\n", if i > 0 { "\n" } else { "" }, suite.title());
        }
        let [cpu, kernel, memory, load] = ["cpu_model", "kernel", "memory", "load_average_1min"].map(fact);
        println!(
            "Machine: {} CPUs ({cpu}), kernel {kernel}, {memory} RAM, load average {load} at start",
            machine["nproc"]
        );
        println!(
            "Run: {version}; {} runs x {} s measured after {} s warm-up; {} to the server; client and server share the machine.\n",
            cli.runs, cli.seconds, cli.warmup, report.transport
        );
        print!("{}", report.markdown());
    }
}

/// `rampart --version`, so the figures name what they measured.
fn server_version(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output().ok();
    let version = out.and_then(|out| String::from_utf8(out.stdout).ok()).map(|v| v.trim().to_owned());
    version.filter(|v| !v.is_empty()).unwrap_or_else(|| "rampart (unknown version)".to_owned())
}
