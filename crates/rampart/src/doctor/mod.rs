//! `rampart doctor --security`: audits a deployment and says, for each finding, how bad it
//! is, what it saw and the command that fixes it. Works on a stopped data directory (the
//! configuration, the files and the store) and, with `--url`, against the running server
//! (TLS versions, the certificate it presents, its response headers).
//!
//! Exit code: 0 when nothing is worse than `info`, 1 for a `warning`, 2 for a `critical`
//! finding (2 is also what any error exits with, so a CI step fails either way).

mod certs;
mod files;
mod live;
mod settings;
mod state;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use rampart_config::Overrides;
use rampart_core::Clock as _;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Run the security checks (the only kind there is; required so that a future
    /// `doctor` with other checks never changes what a CI step runs).
    #[arg(long)]
    security: bool,
    /// Print the report as JSON (for CI).
    #[arg(long)]
    json: bool,
    /// Also check the running server at this address (https://HOST:PORT): the TLS versions
    /// it accepts, the certificate it presents, its security headers.
    #[arg(long)]
    url: Option<String>,
    /// CA certificate (PEM) to trust for --url; default: the data directory's generated
    /// certificate when there is one, then the system's roots.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

/// How bad a finding is. Ordered: the worst one sets the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Info,
    Warning,
    Critical,
}

impl Severity {
    fn exit_code(self) -> u8 {
        match self {
            Severity::Ok | Severity::Info => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// One check's verdict: what it saw (`evidence`) and, unless it passed, what fixes it.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub severity: Severity,
    pub title: String,
    pub evidence: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The findings of one run, in the order the checks made them.
#[derive(Debug, Default)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    pub fn pass(&mut self, check: &'static str, title: impl Into<String>, evidence: Value) {
        self.0.push(Finding { check, severity: Severity::Ok, title: title.into(), evidence, fix: None });
    }

    pub fn flag(
        &mut self,
        check: &'static str,
        severity: Severity,
        title: impl Into<String>,
        evidence: Value,
        fix: impl Into<String>,
    ) {
        self.0.push(Finding { check, severity, title: title.into(), evidence, fix: Some(fix.into()) });
    }

    /// A pass, or a finding of `severity`, by `ok`.
    #[allow(clippy::too_many_arguments)]
    pub fn judge(
        &mut self,
        check: &'static str,
        ok: bool,
        severity: Severity,
        (pass, fail): (&str, &str),
        evidence: Value,
        fix: &str,
    ) {
        if ok {
            self.pass(check, pass, evidence);
        } else {
            self.flag(check, severity, fail, evidence, fix);
        }
    }

    pub fn worst(&self) -> Severity {
        self.0.iter().map(|f| f.severity).max().unwrap_or(Severity::Ok)
    }

    /// A finding for `check`, if any (tests).
    #[cfg(test)]
    pub fn get(&self, check: &str) -> Option<&Finding> {
        self.0.iter().find(|f| f.check == check)
    }
}

#[derive(Serialize)]
struct Report<'a> {
    generated_at: rampart_types::Timestamp,
    data_dir: String,
    url: Option<&'a str>,
    /// Findings per severity.
    summary: BTreeMap<Severity, usize>,
    exit_code: u8,
    findings: &'a [Finding],
}

pub async fn run(flags: Overrides, args: DoctorArgs) -> anyhow::Result<u8> {
    if !args.security {
        anyhow::bail!("say which checks to run: `rampart doctor --security`");
    }
    let mut out = Findings::default();
    let data_dir = match crate::app::load_config(&flags).await {
        Ok((config, _vault)) => {
            settings::check(&config, &process_variables(), &mut out);
            files::check(&config, &mut out);
            certs::check_configured(&config, &mut out);
            state::check(&config, &mut out).await;
            if let Some(url) = &args.url {
                live::check(url, args.ca_cert.as_deref(), &config, &mut out).await;
            }
            config.server.data_dir.display().to_string()
        }
        // An unreadable configuration is itself the finding: the server would not start.
        Err(e) => {
            out.flag(
                "configuration",
                Severity::Critical,
                "the configuration cannot be loaded; the server would refuse to start",
                json!({ "error": format!("{e:#}") }),
                "fix the setting the error names (rampart.toml, RAMPART_* variables or flags)",
            );
            flags.data_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default()
        }
    };
    let worst = out.worst();
    if args.json {
        let mut summary = BTreeMap::new();
        for f in &out.0 {
            *summary.entry(f.severity).or_insert(0) += 1;
        }
        let report = Report {
            generated_at: rampart_core::SystemClock.now(),
            data_dir,
            url: args.url.as_deref(),
            summary,
            exit_code: worst.exit_code(),
            findings: &out.0,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&data_dir, &out);
    }
    Ok(worst.exit_code())
}

/// The `RAMPART_*` variables set for this process (their values stay in the config crate).
fn process_variables() -> Vec<String> {
    rampart_config::Env::from_process().names()
}

fn print_text(data_dir: &str, out: &Findings) {
    let count = |s: Severity| out.0.iter().filter(|f| f.severity == s).count();
    println!(
        "Rampart security doctor: {data_dir}\n{} checks: {} critical, {} warning, {} info, {} ok\n",
        out.0.len(),
        count(Severity::Critical),
        count(Severity::Warning),
        count(Severity::Info),
        count(Severity::Ok)
    );
    let mut sorted: Vec<&Finding> = out.0.iter().collect();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.severity));
    for f in sorted {
        println!("{:<9} {:<24} {}", f.severity.label(), f.check, f.title);
        if let Some(fix) = &f.fix {
            println!("{:<34} fix: {fix}", "");
        }
    }
}
