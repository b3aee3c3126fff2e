//! `rampart compliance verify-report`: checks a signed SOC 2 evidence report offline.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use rampart_config::Overrides;
use rampart_core::compliance::{report_keys_from_jwks, verify_report, ReportKey};
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub enum ComplianceAction {
    /// Verify a report from `GET /api/v1/admin/compliance/soc2-report` offline: the
    /// Ed25519 signature must cover the report exactly (canonical JSON) and come from a
    /// trusted report key. Without --jwks the key is derived from this deployment's own key
    /// store (the data directory or database of the configuration; no server needed); with
    /// --jwks, only the `report-…` keys of that file (as fetched from
    /// /.well-known/jwks.json) are trusted. A key carried inside the report is never used.
    /// Exit status: 0 valid, 1 invalid (changed, unknown key, malformed), 2 other errors.
    VerifyReport {
        /// The report file (the endpoint's JSON response).
        file: PathBuf,
        /// A JWKS file holding the trusted report key.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Exit status of `verify-report` for a report that does not verify.
pub const INVALID: u8 = 1;

async fn local_key(flags: Overrides) -> anyhow::Result<ReportKey> {
    let (config, _vault) = crate::app::load_config(&flags).await?;
    let crate::app::App { core, backend } = crate::app::App::open(&config).await?;
    let (kid, public_key) = core.compliance().report_key();
    backend.close().await.ok();
    Ok(ReportKey { kid, public_key })
}

pub async fn run(flags: Overrides, action: ComplianceAction) -> anyhow::Result<u8> {
    let ComplianceAction::VerifyReport { file, jwks, json } = action;
    let text = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let trusted = match &jwks {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let set: Value =
                serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))?;
            let keys = report_keys_from_jwks(&set);
            anyhow::ensure!(!keys.is_empty(), "{} holds no report signing key (kid report-…)", path.display());
            keys
        }
        None => vec![local_key(flags).await?],
    };
    let verdict = serde_json::from_slice::<Value>(&text)
        .map_err(|_| "malformed report: not JSON".to_owned())
        .and_then(|envelope| verify_report(&envelope, &trusted).map(|kid| (kid, envelope)).map_err(|e| e.to_string()));
    match verdict {
        Ok((kid, envelope)) => {
            let r = &envelope["report"];
            if json {
                let out = json!({
                    "valid": true,
                    "kid": kid,
                    "report_id": r["report_id"],
                    "generated_at": r["generated_at"],
                    "period": r["period"],
                    "node_id": r["node_id"],
                });
                println!("{out}");
            } else {
                println!(
                    "valid: report {} of {} ({} days from {}) signed by {kid}",
                    r["report_id"].as_str().unwrap_or("?"),
                    r["generated_at"].as_str().unwrap_or("?"),
                    r["period"]["days"],
                    r["period"]["from"].as_str().unwrap_or("?"),
                );
            }
            Ok(0)
        }
        Err(reason) => {
            if json {
                println!("{}", json!({ "valid": false, "error": reason }));
            } else {
                eprintln!("INVALID: {reason}");
            }
            Ok(INVALID)
        }
    }
}
