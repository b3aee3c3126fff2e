//! `rampart-bench`: throughput and latency of the real `rampart serve` binary on this
//! machine. A bench, not a test: the figures depend on the hardware, so it reports them
//! (median of several runs) instead of asserting on them.

mod api;
mod argon;
mod cpu;
mod load;
mod machine;
mod report;
mod server;
mod stats;
mod suite;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Parser;

use crate::api::Api;
use crate::load::Window;
use crate::machine::Machine;
use crate::report::{Report, Setup};
use crate::server::Server;
use crate::suite::{Plan, Target};

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
    let env = server::server_env(&parse_env_pairs(&cli.server_env)?);
    let setup_base = Setup {
        seconds: cli.seconds,
        warmup: cli.warmup,
        runs: cli.runs,
        http_version: String::new(),
        server_version: server_version(&bin),
    };
    eprintln!("starting {}", bin.display());
    let server = tokio::task::spawn_blocking(move || Server::start(&bin, &env)).await??;
    let outcome = bench(&server, &plan, cli.runs, setup_base).await;
    // Stop the server before reporting, but report even if stopping fails.
    let stopped = tokio::task::spawn_blocking(move || server.stop()).await?;
    let (report, setup) = outcome?;
    if cli.json {
        println!("{:#}", report.json(&machine, &setup));
    } else {
        print!("{}", report.markdown(&machine, &setup));
    }
    stopped.context("stopping the server")?;
    match report.total_errors() {
        0 => Ok(()),
        n => bail!("{n} requests failed during measurement; the affected figures are not trustworthy"),
    }
}

async fn bench(server: &Server, plan: &Plan, runs: usize, mut setup: Setup) -> anyhow::Result<(Report, Setup)> {
    let api = Api::new(&server.base_url, &server.cert_pem)?;
    setup.http_version = api::negotiated_version(&api.client()?, &api).await?;
    let target = Target::prepare(api, plan.documents, server.pid()).await?;
    let mut report = Report::default();
    for run in 1..=runs {
        report.add_run(suite::run_once(plan, &target, run).await?);
    }
    Ok((report, setup))
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
