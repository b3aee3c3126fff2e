//! `rampart rotate-secrets`: replaces every secret Rampart generated — the JWT signing key
//! (the old one keeps verifying through its overlap), the breach webhook's signing secret
//! (both signatures sent until the overlap ends), the bootstrap admin password, and the
//! master key (every key re-wrapped in one transaction) — without stopping the server.
//!
//! Where it runs: with the server stopped, in this process; with it running (the data
//! directory is locked), the CLI leaves a request file in the data directory and the server
//! does the work and answers with a result file (`watch`), so the keys in its memory change
//! with the store's. Only secrets Rampart wrote itself are rotated (`master.key`, the
//! `.secrets` file); one held in the environment or Vault is reported as skipped, with why.
//!
//! Crash safety: a secret with state in the database goes through a pending file written
//! first (`master.key.new`, `<secrets>.pending`) and renamed into place after the database
//! switched; whatever is found at the next start is settled by asking the database which
//! value it holds (`settle_pending_secrets`, `datadir::settle_pending_key`).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rampart_config::{Config, DatabaseUrl, Env, Overrides, PreviousSecret, SecretName, SecretSource, SecretsFile};
use rampart_core::{Core, EventType, MasterKey, RequestMeta};
use rampart_crypto::{random_bytes, random_password};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::{App, Backend};
use crate::datadir::{self, KEY_FILE, PENDING_KEY_FILE};
use crate::webhooks::LiveEndpoints;

const REQUEST_FILE: &str = "rotate-secrets.request";
/// How long the replaced webhook secret keeps signing beside the new one.
const WEBHOOK_OVERLAP_SECS: i64 = 7 * 86_400;
/// How often a running server looks for a request.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Secret {
    Jwt,
    Webhook,
    Admin,
    MasterKey,
}

impl Secret {
    const ALL: [Secret; 4] = [Secret::Jwt, Secret::Webhook, Secret::Admin, Secret::MasterKey];
}

#[derive(Args, Debug)]
pub struct RotateArgs {
    /// Rotate only these (comma-separated); default: all.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Secret>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// How long to wait for a running server to carry out the request.
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Request {
    id: String,
    secrets: Vec<Secret>,
}

/// What happened to each secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    secret: Secret,
    /// `rotated`, `skipped` or `failed`.
    status: String,
    detail: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Report {
    /// `server` (the running server did it) or `cli` (the server was stopped).
    ran_in: String,
    outcomes: Vec<Outcome>,
}

fn outcome(secret: Secret, status: &str, detail: impl Into<String>) -> Outcome {
    Outcome { secret, status: status.to_owned(), detail: detail.into() }
}

pub async fn run(flags: Overrides, args: RotateArgs) -> anyhow::Result<u8> {
    let (config, _vault) = crate::app::load_config(&flags).await?;
    let secrets = if args.only.is_empty() { Secret::ALL.to_vec() } else { args.only.clone() };
    let data = &config.server.data_dir;
    if !Backend::exists(&config.server.database) {
        bail!("no Rampart database in {}: nothing to rotate yet", data.display());
    }
    let report = match datadir::lock(data) {
        Ok(_lock) => {
            let app = App::open(&config).await?;
            let report = rotate(&config, &app.core, None, &secrets, "cli").await;
            let _ = app.backend.close().await;
            report
        }
        Err(_) => ask_the_server(data, secrets, Duration::from_secs(args.wait_secs)).await?,
    };
    print(&report, args.json)?;
    Ok(u8::from(report.outcomes.iter().any(|o| o.status == "failed")))
}

fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = report
        .outcomes
        .iter()
        .map(|o| vec![format!("{:?}", o.secret).to_lowercase(), o.status.clone(), o.detail.clone()])
        .collect();
    crate::table::print(&["secret", "status", "detail"], &rows);
    println!("(carried out by the {})", if report.ran_in == "server" { "running server" } else { "CLI" });
    Ok(())
}

/// Leaves a request for the running server and waits for its answer.
async fn ask_the_server(data: &Path, secrets: Vec<Secret>, wait: Duration) -> anyhow::Result<Report> {
    let id = hex::encode(random_bytes::<8>());
    let result = data.join(format!("rotate-secrets.{id}.result"));
    let request = serde_json::to_vec(&Request { id, secrets })?;
    write_atomically(&data.join(REQUEST_FILE), &request)?;
    let deadline = tokio::time::Instant::now() + wait;
    while tokio::time::Instant::now() < deadline {
        if let Ok(bytes) = tokio::fs::read(&result).await {
            let _ = tokio::fs::remove_file(&result).await;
            return serde_json::from_slice(&bytes).context("the server's answer is not a report");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = std::fs::remove_file(data.join(REQUEST_FILE));
    bail!("the running server did not answer within {}s (is it a Rampart version with rotate-secrets?)", wait.as_secs())
}

/// A running server's side: carries out requests found in the data directory.
pub async fn watch(config: Config, core: Core, endpoints: LiveEndpoints, mut stop: tokio::sync::watch::Receiver<bool>) {
    let path = config.server.data_dir.join(REQUEST_FILE);
    loop {
        if let Ok(bytes) = tokio::fs::read(&path).await {
            let _ = tokio::fs::remove_file(&path).await;
            match serde_json::from_slice::<Request>(&bytes) {
                Ok(req) if req.id.bytes().all(|b| b.is_ascii_hexdigit()) && req.id.len() == 16 => {
                    let report = rotate(&config, &core, Some(&endpoints), &req.secrets, "server").await;
                    let answer = config.server.data_dir.join(format!("rotate-secrets.{}.result", req.id));
                    if let Err(e) = serde_json::to_vec(&report)
                        .map_err(anyhow::Error::from)
                        .and_then(|b| write_atomically(&answer, &b))
                    {
                        tracing::warn!(error = %e, "cannot answer a rotate-secrets request");
                    }
                }
                _ => tracing::warn!("ignored a malformed rotate-secrets request"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Rotates `secrets` in a fixed order; a failure stops the ones after it (each is reported).
pub async fn rotate(
    config: &Config,
    core: &Core,
    live: Option<&LiveEndpoints>,
    secrets: &[Secret],
    ran_in: &str,
) -> Report {
    let mut outcomes = Vec::new();
    let mut failed = false;
    for secret in Secret::ALL.into_iter().filter(|s| secrets.contains(s)) {
        if failed {
            outcomes.push(outcome(secret, "skipped", "an earlier rotation failed"));
            continue;
        }
        let result = match secret {
            Secret::Jwt => jwt(core).await,
            Secret::Webhook => webhook(config, core, live).await,
            Secret::Admin => admin(config, core).await,
            Secret::MasterKey => master_key(config, core).await,
        };
        outcomes.push(result.unwrap_or_else(|e| {
            failed = true;
            tracing::error!(secret = ?secret, error = %format!("{e:#}"), "rotate-secrets failed");
            outcome(secret, "failed", format!("{e:#}"))
        }));
    }
    Report { ran_in: ran_in.to_owned(), outcomes }
}

async fn jwt(core: &Core) -> anyhow::Result<Outcome> {
    let kid = core.tokens().rotate_signing_key(&core.authorize_local().await?).await?;
    Ok(outcome(Secret::Jwt, "rotated", format!("new signing key {kid}; the previous one keeps verifying")))
}

/// Where a secret's value comes from, if Rampart may replace it: the `.secrets` file, and
/// only when the environment does not override it.
fn in_secrets_file(config: &Config, name: &SecretName) -> Option<(PathBuf, SecretString)> {
    let env = Env::from_process();
    let var = name.env_var();
    if config.sources.vault || env.get(var).is_some() || env.get(&format!("{var}_FILE")).is_some() {
        return None;
    }
    let path = config.sources.secrets_file.clone()?;
    let value = SecretsFile::read(&path).ok()?.get(name).ok()??;
    Some((path, value))
}

fn not_ours(secret: Secret, name: &SecretName) -> Outcome {
    outcome(
        secret,
        "skipped",
        format!(
            "{} is not in a .secrets file Rampart wrote (it comes from the environment, a _FILE or Vault): \
             replace it there",
            name.env_var()
        ),
    )
}

async fn webhook(config: &Config, core: &Core, live: Option<&LiveEndpoints>) -> anyhow::Result<Outcome> {
    let name = SecretName::BreachWebhookSecret;
    let Some((path, old)) = in_secrets_file(config, &name) else { return Ok(not_ours(Secret::Webhook, &name)) };
    let new = hex::encode(random_bytes::<32>());
    let until = core.clock().now().as_unix_seconds() + WEBHOOK_OVERLAP_SECS;
    let edits = [
        ("RAMPART_BREACH_WEBHOOK_SECRET", Some(new.clone())),
        ("RAMPART_BREACH_WEBHOOK_SECRET_PREVIOUS", Some(old.expose_secret().to_owned())),
        ("RAMPART_BREACH_WEBHOOK_SECRET_PREVIOUS_UNTIL", Some(until.to_string())),
    ];
    // No database state: the file is replaced at once (atomically), then this server's
    // deliveries switch.
    write_atomically(&path, edit_lines(&std::fs::read_to_string(&path)?, &edits).as_bytes())?;
    if let (Some(live), Some(url)) = (live, Env::from_process().get("RAMPART_BREACH_WEBHOOK_URL")) {
        let mut endpoints = live.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for e in endpoints.webhooks.iter_mut().filter(|e| e.url == url) {
            e.previous = Some(PreviousSecret { secret: e.secret.clone(), until_unix: until });
            e.secret = SecretString::from(new.clone());
        }
    }
    let access = core.authorize_local::<rampart_types::perm::KeysRotate>().await?;
    let details = json!({ "secret": "breach_webhook", "previous_signs_until": until });
    let meta = RequestMeta::local("rotate-secrets");
    core.events()
        .record_event(EventType::ConfigChange, Some(access.who().username.as_str()), &meta, true, details)
        .await?;
    Ok(outcome(
        Secret::Webhook,
        "rotated",
        format!("deliveries carry both signatures until {until} (unix); update the receiver"),
    ))
}

async fn admin(config: &Config, core: &Core) -> anyhow::Result<Outcome> {
    let name = SecretName::AdminPassword;
    let Some((path, old)) = in_secrets_file(config, &name) else { return Ok(not_ours(Secret::Admin, &name)) };
    let username = config.secrets.admin_username.clone().unwrap_or_else(|| "admin".to_owned());
    let new = SecretString::from(random_password(24));
    let text = std::fs::read_to_string(&path)?;
    let pending = pending_path(&path);
    write_atomically(
        &pending,
        edit_lines(&text, &[("RAMPART_ADMIN_PASSWORD", Some(new.expose_secret().to_owned()))]).as_bytes(),
    )?;
    let changed = core.users().rotate_bootstrap_password(&core.authorize_local().await?, &username, old, new).await?;
    std::fs::rename(&pending, &path).context("cannot move the new .secrets into place")?;
    Ok(outcome(
        Secret::Admin,
        "rotated",
        if changed {
            format!(
                "'{username}' still used the bootstrap password: it is replaced (sessions ended); the new one is in {}",
                path.display()
            )
        } else {
            format!(
                "'{username}' has chosen a password of its own (kept); the bootstrap value in {} is replaced",
                path.display()
            )
        },
    ))
}

async fn master_key(config: &Config, core: &Core) -> anyhow::Result<Outcome> {
    if matches!(config.server.database, DatabaseUrl::Postgres(_)) {
        return Ok(outcome(
            Secret::MasterKey,
            "skipped",
            "on PostgreSQL every node holds the master key: stop the nodes, run `rampart keys change-master`, \
             and give every node the new key",
        ));
    }
    let new = MasterKey::generate();
    let encoded = new.to_base64();
    // Where the key lives decides the pending file: `master.key.new` beside the key file, or
    // the whole `.secrets` file with the new key, as `<secrets>.pending`.
    let (pending, target, contents) = if config.secrets.encryption_key.is_none() {
        let data = &config.server.data_dir;
        (data.join(PENDING_KEY_FILE), data.join(KEY_FILE), format!("{}\n", encoded.expose_secret()))
    } else {
        let name = SecretName::EncryptionKey;
        let Some((path, _)) = in_secrets_file(config, &name) else { return Ok(not_ours(Secret::MasterKey, &name)) };
        let text = std::fs::read_to_string(&path)?;
        let edited = edit_lines(&text, &[("RAMPART_ENCRYPTION_KEY", Some(encoded.expose_secret().to_owned()))]);
        (pending_path(&path), path, edited)
    };
    if pending.exists() {
        bail!("{} exists from an unfinished change; start the server once to settle it", pending.display());
    }
    // Backups made until now keep their keys wrapped under the old master: it is kept
    // (0600) beside the new one for restoring them, to be moved offline by the operator.
    let retired = target.with_file_name(format!("master.key.retired-{}", core.clock().now().as_unix_seconds()));
    write_atomically(&retired, format!("{}\n", core.keys().master_base64().expose_secret()).as_bytes())?;
    write_atomically(&pending, contents.as_bytes())?;
    let n = core.keys().change_master_live(&core.authorize_local().await?, new).await?;
    std::fs::rename(&pending, &target).context("cannot move the new master key into place")?;
    Ok(outcome(
        Secret::MasterKey,
        "rotated",
        format!(
            "{n} keys re-wrapped; {} holds the new master key. Backups made before now restore with the old one, \
             kept in {} (`backup restore --key-file`): move it offline",
            target.display(),
            retired.display()
        ),
    ))
}

/// `<file>.pending`, beside it (one file system, so the rename is atomic).
fn pending_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".pending");
    path.with_file_name(name)
}

/// `text` with each `KEY=` line set to its new value (appended when missing; removed for
/// `None`); comments and other lines kept in place.
fn edit_lines(text: &str, edits: &[(&str, Option<String>)]) -> String {
    let mut out = String::with_capacity(text.len() + 256);
    let mut done = vec![false; edits.len()];
    for line in text.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match edits.iter().position(|(k, _)| Some(*k) == key) {
            Some(i) => {
                done[i] = true;
                if let Some(v) = &edits[i].1 {
                    out.push_str(&format!("{}={v}\n", edits[i].0));
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    for ((k, v), done) in edits.iter().zip(done) {
        if let (Some(v), false) = (v, done) {
            out.push_str(&format!("{k}={v}\n"));
        }
    }
    out
}

/// Writes `path` through a temporary file (0600, synced) renamed over it.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(dir) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// At open, before the core checks the master key: finishes or abandons a `.secrets` change
/// that a crash left as `<secrets>.pending`. The database decides: the pending file is kept
/// when the database already holds its master key, or its admin password opens the admin
/// account; otherwise it is dropped. Returns the master key to open with.
pub(crate) async fn settle_pending_secrets(
    config: &Config,
    store: &dyn rampart_store::Store,
    key: MasterKey,
) -> anyhow::Result<MasterKey> {
    let Some(path) = &config.sources.secrets_file else { return Ok(key) };
    let pending = pending_path(path);
    if !pending.exists() {
        return Ok(key);
    }
    let (now, next) = (SecretsFile::read(path)?, SecretsFile::read(&pending)?);
    let value = |f: &SecretsFile, n: &SecretName| f.get(n).ok().flatten().map(|s| s.expose_secret().to_owned());
    let differs = |n: &SecretName| value(&now, n) != value(&next, n);
    if differs(&SecretName::EncryptionKey) {
        let kcv = store.get_meta("master_key_check_value").await?;
        let new = value(&next, &SecretName::EncryptionKey).and_then(|v| MasterKey::from_base64(&v).ok());
        if let (Some(new), Some(kcv)) = (new, kcv) {
            if new.verify_check_value(&kcv).is_ok() {
                std::fs::rename(&pending, path)?;
                tracing::info!("finished an interrupted master key rotation");
                return Ok(new);
            }
        }
    } else if differs(&SecretName::AdminPassword) {
        let username = config.secrets.admin_username.clone().unwrap_or_else(|| "admin".to_owned());
        let user = match rampart_types::Username::parse(&username) {
            Ok(u) => store.get_user(&u).await?,
            Err(_) => None,
        };
        let candidate = value(&next, &SecretName::AdminPassword);
        if let (Some(user), Some(candidate)) = (user, candidate) {
            let opens = tokio::task::spawn_blocking(move || {
                let hasher = rampart_crypto::PasswordHasher::new().ok()?;
                let stored = rampart_crypto::StoredPasswordHash::from_stored(user.password_hash);
                Some(hasher.verify(&SecretString::from(candidate), Some(&stored)).matches)
            })
            .await?;
            if opens == Some(true) {
                std::fs::rename(&pending, path)?;
                tracing::info!("finished an interrupted admin password rotation");
                return Ok(key);
            }
        }
    }
    std::fs::remove_file(&pending)?;
    tracing::warn!("abandoned an interrupted secret rotation that never reached the database");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_edited_in_place_and_comments_kept() {
        let text = "# made by init\nRAMPART_A=1\nRAMPART_B=2\n";
        let out =
            edit_lines(text, &[("RAMPART_B", Some("x".into())), ("RAMPART_C", Some("y".into())), ("RAMPART_A", None)]);
        assert_eq!(out, "# made by init\nRAMPART_B=x\nRAMPART_C=y\n");
    }

    #[test]
    fn the_pending_file_sits_beside_its_target() {
        assert_eq!(pending_path(Path::new("/etc/rampart/.secrets")), Path::new("/etc/rampart/.secrets.pending"));
    }
}
