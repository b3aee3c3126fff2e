//! `rampart-bench`: throughput and latency of the real `rampart serve` binary on this
//! machine. A bench, not a test: the figures depend on the hardware, so it reports them
//! (median of several runs) instead of asserting on them.

mod alerts;
mod api;
mod argon;
mod compare;
mod cpu;
mod http1;
mod load;
mod machine;
mod report;
mod server;
mod spray;
mod stats;
mod suite;
mod suites;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, ValueEnum};

use crate::api::Api;
use crate::load::Window;
use crate::machine::Machine;
use crate::report::{Report, Setup};
use crate::server::Server;
use crate::spray::SprayPlan;
use crate::suite::{Plan, Target};
use crate::suites::Settings;

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
        }
    }

    fn name(self) -> String {
        self.to_possible_value().map_or_else(|| format!("{self:?}"), |v| v.get_name().to_owned())
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
    #[arg(long = "server-env", value_name = "KEY=VALUE")]
    server_env: Vec<String>,
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

impl Cli {
    fn plan(&self) -> anyhow::Result<Plan> {
        let concurrencies =
            self.login_concurrency.iter().chain(&self.read_concurrency).chain([&self.flood_concurrency]);
        if self.runs == 0 || concurrencies.into_iter().any(|&c| c == 0) || self.hash_threads == Some(0) {
            bail!("--runs, concurrencies and --hash-threads must be at least 1");
        }
        Ok(Plan {
            window: Window {
                warmup: seconds("--warmup", self.warmup, 0.0)?,
                measure: seconds("--seconds", self.seconds, 0.1)?,
            },
            hash_threads: self.hash_threads.unwrap_or_else(machine::available_parallelism),
            login_concurrency: self.login_concurrency.clone(),
            read_concurrency: self.read_concurrency.clone(),
            flood_concurrency: self.flood_concurrency,
            probe_interval: Duration::from_millis(self.probe_interval_ms.max(1)),
            documents: self.documents,
        })
    }

    fn settings(&self, plan: &Plan, bin: PathBuf) -> anyhow::Result<Settings> {
        if [self.compare_concurrency, self.alert_reps, self.backup_documents, self.fill_concurrency, self.documents]
            .contains(&0)
        {
            bail!("--compare-concurrency, --alert-reps, --backup-documents, --fill-concurrency and --documents must be at least 1");
        }
        if self.large_doc_kb == 0 || self.backup_doc_kb == 0 || self.large_doc_kb > 512 || self.backup_doc_kb > 512 {
            bail!("--large-doc-kb and --backup-doc-kb must be between 1 and 512 (the server takes bodies up to 1 MiB)");
        }
        Ok(Settings {
            bin,
            extra_env: parse_env_pairs(&self.server_env)?,
            window: plan.window,
            runs: self.runs,
            concurrency: self.compare_concurrency,
            documents: self.documents,
            large_doc_bytes: self.large_doc_kb * 1000,
            alert_reps: self.alert_reps,
            alert_poll: Duration::from_millis(self.alert_poll_ms.max(1)),
            backup_documents: self.backup_documents,
            backup_doc_bytes: self.backup_doc_kb * 1000,
            fill_concurrency: self.fill_concurrency,
            spray: SprayPlan {
                forged: self.spray_forged,
                direct: self.spray_direct,
                connections: self.spray_connections,
                direct_concurrency: self.spray_direct_concurrency,
            },
        })
    }
}

fn seconds(flag: &str, value: f64, min: f64) -> anyhow::Result<Duration> {
    if !(value >= min && value <= 3600.0) {
        bail!("{flag} must be between {min} and 3600");
    }
    Ok(Duration::from_secs_f64(value))
}

fn parse_env_pairs(pairs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| anyhow!("--server-env wants KEY=VALUE, got {pair:?}"))?;
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let plan = cli.plan()?;
    // Before the server starts, so the load average shows other work, not ours.
    let machine = Machine::detect();
    let bin = server::find_binary(cli.rampart_bin.clone())?;
    let settings = cli.settings(&plan, bin.clone())?;
    if cli.suite.contains(&Suite::Spray) {
        // Before any server starts, rather than after the suites before it.
        settings.spray.check()?;
    }
    let setup = Setup {
        seconds: cli.seconds,
        warmup: cli.warmup,
        runs: cli.runs,
        http_version: String::new(),
        server_version: server_version(&bin),
    };
    let mut results = Vec::new();
    // A failing suite ends the invocation, but the suites before it are still reported.
    let mut failure = None;
    for &suite in &cli.suite {
        let measured = match suite {
            Suite::Core => core(&cli, &plan, &bin).await.map(|(done, stop)| {
                failure = failure.take().or(stop);
                done
            }),
            Suite::Audit => suites::audit(&settings).await.map(outcome),
            Suite::Spray => suites::spray(&settings).await.map(outcome),
            Suite::Encryption => suites::encryption(&settings).await.map(outcome),
            Suite::Backup => suites::backup(&settings).await.map(outcome),
            Suite::Breach => suites::breach(&settings).await.map(outcome),
            Suite::Tokens => suites::tokens(&settings).await.map(outcome),
            Suite::Compare => compare::compare(&compare::ComparePlan {
                bin: bin.clone(),
                extra_env: settings.extra_env.clone(),
                window: plan.window,
                runs: cli.runs,
                connections: cli.wrk_connections.max(1),
                documents: cli.documents,
            })
            .await
            .map(|report| (report, "HTTP/1.1 (wrk)".to_owned())),
        };
        match measured {
            Ok((report, http_version)) => results.push((suite, report, Setup { http_version, ..setup.clone() })),
            Err(e) => {
                failure = Some(e.context(format!("suite {}", suite.name())));
                break;
            }
        }
    }
    print_results(&cli, &machine, &results);
    if let Some(e) = failure {
        return Err(e);
    }
    match results.iter().map(|(_, report, _)| report.total_errors()).sum::<u64>() {
        0 => Ok(()),
        n => bail!("{n} requests failed during measurement; the affected figures are not trustworthy"),
    }
}

fn outcome(o: suites::Outcome) -> (Report, String) {
    (o.report, o.http_version)
}

fn print_results(cli: &Cli, machine: &Machine, results: &[(Suite, Report, Setup)]) {
    if cli.json {
        let mut suites: Vec<serde_json::Value> = results
            .iter()
            .map(|(suite, report, setup)| {
                let mut json = report.json(machine, setup);
                json["suite"] = serde_json::json!(suite.name());
                json
            })
            .collect();
        match suites.len() {
            1 => println!("{:#}", suites.remove(0)),
            _ => println!("{:#}", serde_json::json!({ "suites": suites })),
        }
        return;
    }
    let headings = !(results.len() == 1 && results.iter().all(|(suite, _, _)| *suite == Suite::Core));
    for (i, (suite, report, setup)) in results.iter().enumerate() {
        if headings {
            println!("{}## {}\n", if i > 0 { "\n" } else { "" }, suite.title());
        }
        print!("{}", report.markdown(machine, setup));
    }
}

/// The issue 2 suite on one server, as it always ran. A failure to stop the server comes
/// back beside the figures, so they are still reported.
async fn core(cli: &Cli, plan: &Plan, bin: &Path) -> anyhow::Result<((Report, String), Option<anyhow::Error>)> {
    let env = server::server_env(&parse_env_pairs(&cli.server_env)?);
    eprintln!("starting {}", bin.display());
    let bin = bin.to_owned();
    let server = tokio::task::spawn_blocking(move || Server::start(&bin, &env)).await??;
    let outcome = bench(&server, plan, cli.runs).await;
    let stopped = tokio::task::spawn_blocking(move || server.stop()).await?;
    Ok((outcome?, stopped.context("stopping the server").err()))
}

async fn bench(server: &Server, plan: &Plan, runs: usize) -> anyhow::Result<(Report, String)> {
    let api = Api::new(&server.base_url, &server.cert_pem)?;
    let http_version = api::negotiated_version(&api.client()?, &api).await?;
    let target = Target::prepare(api, plan.documents, server.pid()).await?;
    let mut report = Report::default();
    for run in 1..=runs {
        report.add_run(suite::run_once(plan, &target, run).await?);
    }
    Ok((report, http_version))
}

/// `rampart --version`, so the figures name what they measured.
fn server_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "rampart (unknown version)".to_owned())
}
