//! `rampart keys rotate [--reencrypt]` and `rampart keys change-master`.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use rampart_config::{Config, Overrides};
use rampart_core::MasterKey;

use secrecy::ExposeSecret;

use crate::datadir;

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Show key-encrypting key versions, data key counts and rotation state (JSON; --json
    /// is accepted for symmetry with the listing verbs).
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Make a new key-encrypting key version and re-wrap every data key under it.
    Rotate {
        /// Also give every data key a successor and re-seal all documents (waits for it).
        #[arg(long)]
        reencrypt: bool,
    },
    /// Re-wrap every key under a new master key (base64 of 32 bytes, read from a file).
    ChangeMaster {
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

pub async fn run(flags: Overrides, action: KeysAction) -> anyhow::Result<()> {
    let (config, _vault) = crate::app::load_config(&flags).await?;
    // A running server holds its own copy of the key ring: changing keys under it would
    // let it wrap new keys with the old master. Keys change only on a stopped server.
    datadir::ensure_dir(&config.server.data_dir)?;
    let _lock =
        datadir::lock(&config.server.data_dir).context("a server is using this data directory; stop it first")?;
    let crate::app::App { core, backend: store } = crate::app::App::open(&config).await?;
    match action {
        KeysAction::Show { .. } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&core.keys().keys_view(&core.authorize_local().await?).await?)?
            );
        }
        KeysAction::Rotate { reencrypt } => {
            let view = core.keys().rotate_keys(&core.authorize_local().await?, reencrypt).await?;
            println!("Key-encrypting key is now version {}; every data key is re-wrapped.", view.current_kek_version);
            if reencrypt {
                // This process runs the job if it holds the lease (always, with SQLite);
                // otherwise it shows the progress of the node that does.
                let runner = tokio::spawn({
                    let (core, lease) = (core.clone(), store.lease());
                    async move { core.keys().run_reencrypt(&*lease).await }
                });
                wait_for_reencryption(&*store).await?;
                let _ = runner.await;
                println!("\nEvery document is re-sealed under new data keys; the old keys are destroyed.");
            }
        }
        KeysAction::ChangeMaster { new_key_file } => change_master(&config, &core, &new_key_file).await?,
    }
    let _ = store.close().await;
    Ok(())
}

/// Shows progress of the background job until it finishes.
async fn wait_for_reencryption(store: &dyn rampart_store::Store) -> anyhow::Result<()> {
    let total = rampart_store::DocumentStore::max_document_seq(store).await?.max(1);
    while let Some(cursor) = store.reencrypt_cursor().await? {
        let pct = (cursor.max(0) * 100 / total).min(100);
        let bar = "#".repeat(usize::try_from(pct / 4).unwrap_or(0));
        eprint!("\rre-encrypting [{bar:<25}] {pct:>3}%");
        let _ = std::io::stderr().flush();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprint!("\rre-encrypting [{:<25}] 100%", "#".repeat(25));
    Ok(())
}

/// Crash-safe order: the new key file is written first (as master.key.new), the database
/// switches in one transaction, then the file is renamed into place. A start that finds
/// master.key.new matching the database finishes the rename.
async fn change_master(config: &Config, core: &rampart_core::Core, new_key_file: &PathBuf) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(new_key_file).with_context(|| format!("cannot read {}", new_key_file.display()))?;
    let new = MasterKey::from_base64(&text).context("the new master key must be base64 of exactly 32 bytes")?;
    let from_file = config.secrets.encryption_key.is_none();
    let key_path = config.server.data_dir.join(datadir::KEY_FILE);
    let pending = config.server.data_dir.join(datadir::PENDING_KEY_FILE);
    if from_file {
        if pending.exists() {
            bail!("{} exists from an unfinished change; start the server once to settle it", pending.display());
        }
        datadir::write_private(&pending, format!("{}\n", new.to_base64().expose_secret()).as_bytes())?;
    }
    let n = core.keys().change_master(&new).await?;
    if from_file {
        std::fs::rename(&pending, &key_path).context("cannot move the new key file into place")?;
        println!("Re-wrapped {n} keys; {} now holds the new master key.", key_path.display());
    } else {
        println!("Re-wrapped {n} keys. Set RAMPART_ENCRYPTION_KEY to the new key before the next start.");
    }
    Ok(())
}
