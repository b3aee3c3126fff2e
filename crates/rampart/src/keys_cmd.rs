//! `rampart keys rotate [--reencrypt]` and `rampart keys change-master`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use rampart_config::{Config, Overrides};
use rampart_core::MasterKey;

use secrecy::ExposeSecret;

use crate::datadir;
use crate::progress::Progress;

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Show key-encrypting key versions, data key counts and rotation state (--json: the
    /// shape of GET /api/v1/admin/keys).
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Make a new key-encrypting key version and re-wrap every data key under it.
    Rotate {
        /// Also give every data key a successor and re-seal all documents (waits for it,
        /// with progress on stderr).
        #[arg(long)]
        reencrypt: bool,
        /// Print the key state afterwards as JSON (the shape of POST /api/v1/admin/keys/rotate).
        #[arg(long)]
        json: bool,
    },
    /// Re-wrap every key under a new master key (base64 of 32 bytes, read from a file).
    ChangeMaster {
        #[arg(long)]
        new_key_file: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
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
        KeysAction::Show { json } => {
            let view = core.keys().keys_view(&core.authorize_local().await?).await?;
            if json {
                crate::table::json(&view)?;
            } else {
                print_view(&view);
            }
        }
        KeysAction::Rotate { reencrypt, json } => {
            let view = core.keys().rotate_keys(&core.authorize_local().await?, reencrypt).await?;
            let announce = |line: &str| if json { eprintln!("{line}") } else { println!("{line}") };
            announce(&format!(
                "Key-encrypting key is now version {}; every data key is re-wrapped.",
                view.current_kek_version
            ));
            if reencrypt {
                // This process runs the job if it holds the lease (always, with SQLite);
                // otherwise it shows the progress of the node that does.
                let runner = tokio::spawn({
                    let (core, lease) = (core.clone(), store.lease());
                    async move { core.keys().run_reencrypt(&*lease).await }
                });
                wait_for_reencryption(&*store).await?;
                let _ = runner.await;
                announce("Every document is re-sealed under new data keys; the old keys are destroyed.");
            }
            if json {
                crate::table::json(&core.keys().keys_view(&core.authorize_local().await?).await?)?;
            }
        }
        KeysAction::ChangeMaster { new_key_file, json } => change_master(&config, &core, &new_key_file, json).await?,
    }
    let _ = store.close().await;
    Ok(())
}

/// Shows the progress of the background job (its committed cursor against the highest
/// document sequence) until it finishes.
async fn wait_for_reencryption(store: &dyn rampart_store::Store) -> anyhow::Result<()> {
    let total = rampart_store::DocumentStore::max_document_seq(store).await?.max(1);
    let task = Progress::stderr().counted("re-encrypting", u64::try_from(total).unwrap_or(0), false);
    while let Some(cursor) = store.reencrypt_cursor().await? {
        task.set(u64::try_from(cursor).unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    task.finish("every document re-sealed");
    Ok(())
}

/// The human form of `keys show`.
fn print_view(view: &rampart_core::rotation::KeysView) {
    println!("key-encrypting key: version {}", view.current_kek_version);
    let rows: Vec<Vec<String>> = view
        .kek_versions
        .iter()
        .map(|v| vec![v.version.to_string(), v.created_at.to_string(), if v.current { "yes" } else { "" }.to_owned()])
        .collect();
    crate::table::print(&["version", "created", "current"], &rows);
    let counts: Vec<String> = view
        .data_keys
        .as_object()
        .map(|m| m.iter().map(|(kind, n)| format!("{n} {kind}")).collect())
        .unwrap_or_default();
    println!("data keys: {}", if counts.is_empty() { "none".to_owned() } else { counts.join(", ") });
    println!("rotation: every {} days; next due {}", view.rotation_days, view.next_rotation_due);
    match view.reencryption.as_ref().and_then(|r| r.get("last_document_seq")) {
        Some(seq) => println!("re-encryption: running (at document {seq})"),
        None => println!("re-encryption: not running"),
    }
}

/// Crash-safe order: the new key file is written first (as master.key.new), the database
/// switches in one transaction, then the file is renamed into place. A start that finds
/// master.key.new matching the database finishes the rename.
async fn change_master(
    config: &Config,
    core: &rampart_core::Core,
    new_key_file: &PathBuf,
    json: bool,
) -> anyhow::Result<()> {
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
    }
    if json {
        let key_file = from_file.then(|| key_path.display().to_string());
        return crate::table::json(&serde_json::json!({ "rewrapped_keys": n, "key_file": key_file }));
    }
    if from_file {
        println!("Re-wrapped {n} keys; {} now holds the new master key.", key_path.display());
    } else {
        println!("Re-wrapped {n} keys. Set RAMPART_ENCRYPTION_KEY to the new key before the next start.");
    }
    Ok(())
}
