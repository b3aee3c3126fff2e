//! `rampart gdpr export-ledger`: the erasure ledger, for restores elsewhere.

use anyhow::Context;
use clap::Subcommand;
use rampart_config::Overrides;

use crate::ledger::LedgerFile;

#[derive(Subcommand, Debug)]
pub enum GdprAction {
    /// Write the erasure ledger (keyed hashes of erased subjects, never their ids) to
    /// --out or stdout. Give it to `backup restore --erasure-ledger` when restoring a copy
    /// elsewhere, so erased subjects stay erased.
    ExportLedger {
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// With --out, print the summary as JSON (without --out the ledger itself is the
        /// JSON on stdout).
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(flags: Overrides, action: GdprAction) -> anyhow::Result<()> {
    let (config, _vault) = crate::app::load_config(&flags).await?;
    let crate::app::App { core, backend: store } = crate::app::App::open(&config).await?;
    let GdprAction::ExportLedger { out, json } = action;
    let file = LedgerFile::new(core.privacy().erasure_hashes().await?, core.clock().now());
    match out {
        Some(path) => {
            file.write(&path).with_context(|| format!("cannot write {}", path.display()))?;
            if json {
                crate::table::json(&serde_json::json!({
                    "format": file.format, "exported_at": file.exported_at,
                    "entries": file.entries.len(), "out": path.display().to_string(),
                }))?;
            } else {
                eprintln!("{} erased subject(s) written to {}", file.entries.len(), path.display());
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&file)?),
    }
    store.close().await.ok();
    Ok(())
}
