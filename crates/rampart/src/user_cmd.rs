//! `rampart user ...`: user administration on the local data directory, acting as the
//! local administrator (whoever can read the data directory already owns the server).

use std::io::Read as _;

use anyhow::{bail, Context};
use clap::Subcommand;
use rampart_config::Overrides;
use rampart_core::{ImportedUser, NewUser};
use rampart_crypto::random_password;
use secrecy::{ExposeSecret, SecretString};

use crate::progress::Progress;
use crate::user_transfer::{self, ExportWriter, Format, ImportRow};

#[derive(Subcommand, Debug)]
pub enum UserAction {
    /// Create a user. The password is read from stdin with --password-stdin, otherwise a
    /// strong one is generated and printed once.
    Add {
        username: String,
        #[arg(long, default_value = "viewer")]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Change a user's role (ends their sessions).
    SetRole { username: String, role: String },
    /// Disable a user (ends their sessions).
    Disable { username: String },
    /// Re-enable a disabled user.
    Enable { username: String },
    /// Create users from another system's export, keeping their password hashes (Argon2,
    /// bcrypt, PBKDF2-SHA256): each is checked at the user's next login and replaced there
    /// by an Argon2id hash. CSV (header: username,password_hash[,role][,disabled]) or JSON
    /// ({"users": [{"username", "password_hash", "role"?, "disabled"?}]}). Every row is checked
    /// before any is created; users that already exist are skipped, so a re-run is safe.
    Import {
        file: std::path::PathBuf,
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Role for rows that name none.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Check the file and report what would happen; create nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write every user (name, role, state, creation time) as JSON or CSV. Never second-factor
    /// secrets or recovery codes; password hashes only with --include-hashes (audited).
    Export {
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
        /// Include password hashes (to move users to another Rampart); the file is 0600.
        #[arg(long)]
        include_hashes: bool,
        /// Write here (created 0600, never overwritten) instead of standard output.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
}

pub async fn run(flags: Overrides, action: UserAction) -> anyhow::Result<()> {
    let (config, _vault) = crate::app::load_config(&flags).await?;
    // The file is read and checked before the data directory is opened.
    let import = match &action {
        UserAction::Import { file, format, .. } => Some(read_import(file, *format)?),
        _ => None,
    };
    let crate::app::App { core, backend: store } = crate::app::App::open(&config).await?;
    let result = match action {
        UserAction::Add { username, role, password_stdin } => {
            let (password, generated) = if password_stdin {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).context("reading the password from stdin")?;
                let text = text.trim_end_matches(['\n', '\r']).to_owned();
                if text.is_empty() {
                    bail!("no password on stdin");
                }
                (SecretString::from(text), false)
            } else {
                (SecretString::from(random_password(20)), true)
            };
            let user = core
                .users()
                .create_user(&core.authorize_local().await?, NewUser { username, password: password.clone(), role })
                .await
                .map_err(describe)?;
            println!("Created user '{}' with role '{}'.", user.username, user.role);
            if generated {
                println!("Password (shown once): {}", password.expose_secret());
            }
            Ok(())
        }
        UserAction::List { json } => {
            let mut after: Option<String> = None;
            let mut users = Vec::new();
            loop {
                let page = core
                    .users()
                    .list_users(&core.authorize_local().await?, after.as_deref(), 500)
                    .await
                    .map_err(describe)?;
                let full = page.len() == 500;
                after = page.last().map(|u| u.username.to_string());
                users.extend(page);
                if !full {
                    break;
                }
            }
            if json {
                let list: Vec<serde_json::Value> = users
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "username": u.username.as_str(), "role": u.role.as_str(), "disabled": u.disabled,
                            "mfa_enabled": u.mfa_enabled, "created_at": u.created_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "users": list }))?);
            } else {
                let rows: Vec<Vec<String>> = users
                    .iter()
                    .map(|u| {
                        vec![
                            u.username.to_string(),
                            u.role.to_string(),
                            u.disabled.to_string(),
                            u.mfa_enabled.to_string(),
                            u.created_at.to_string(),
                        ]
                    })
                    .collect();
                crate::table::print(&["username", "role", "disabled", "mfa", "created"], &rows);
            }
            Ok(())
        }
        UserAction::SetRole { username, role } => {
            let u = core
                .users()
                .update_user(&core.authorize_local().await?, &username, Some(role), None)
                .await
                .map_err(describe)?;
            println!("User '{}' now has role '{}'; their sessions have ended.", u.username, u.role);
            Ok(())
        }
        UserAction::Disable { username } => {
            core.users()
                .update_user(&core.authorize_local().await?, &username, None, Some(true))
                .await
                .map_err(describe)?;
            println!("User '{username}' is disabled; their sessions have ended.");
            Ok(())
        }
        UserAction::Enable { username } => {
            core.users()
                .update_user(&core.authorize_local().await?, &username, None, Some(false))
                .await
                .map_err(describe)?;
            println!("User '{username}' is enabled.");
            Ok(())
        }
        UserAction::Import { role, dry_run, json, .. } => {
            import_users(&core, import.unwrap_or_default(), &role, dry_run, json).await
        }
        UserAction::Export { format, include_hashes, output } => {
            let total = store.count_users().await?;
            export_users(&core, format, include_hashes, output.as_deref(), total).await
        }
    };
    store.close().await.context("closing the database")?;
    result
}

fn read_import(file: &std::path::Path, format: Option<Format>) -> anyhow::Result<Vec<ImportRow>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let format = Format::detect(format, file, &text);
    user_transfer::parse(format, &text).with_context(|| format!("{} is not a valid user import file", file.display()))
}

/// Every row is checked first (name and hash format and cost); nothing is created unless all
/// pass. Rows the server then refuses (an unknown role) are reported and fail the command.
async fn import_users(
    core: &rampart_core::Core,
    rows: Vec<ImportRow>,
    default_role: &str,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<()> {
    let problems: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let name = rampart_types::Username::parse(&r.username).err().map(|e| format!("username {e}"));
            let hash = rampart_crypto::classify_imported_hash(&r.password_hash).err().map(|e| e.to_string());
            name.or(hash).map(|p| format!("row {}: {p}", r.row))
        })
        .collect();
    if !problems.is_empty() {
        for p in problems.iter().take(50) {
            eprintln!("{p}");
        }
        bail!("{} of {} rows cannot be imported; nothing was imported", problems.len(), rows.len());
    }
    let access = core.authorize_local().await?;
    let read_access = core.authorize_local().await?;
    let task = Progress::stderr().counted(if dry_run { "checking" } else { "importing" }, rows.len() as u64, false);
    let (mut imported, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let mut schemes = std::collections::BTreeMap::<&'static str, u64>::new();
    for (i, r) in rows.into_iter().enumerate() {
        task.set(i as u64);
        let row = r.row;
        let username = r.username.clone();
        if dry_run {
            let existing = core.users().get_user(&read_access, &username).await;
            if existing.is_ok() {
                skipped.push(username);
            } else {
                imported.push(username);
            }
            continue;
        }
        let user = ImportedUser {
            username: r.username,
            role: r.role.unwrap_or_else(|| default_role.to_owned()),
            password_hash: r.password_hash,
            disabled: r.disabled,
        };
        match core.users().import_user(&access, user).await {
            Ok((view, scheme)) => {
                *schemes.entry(scheme.as_str()).or_default() += 1;
                imported.push(view.username.to_string());
            }
            Err(rampart_core::CoreError::AlreadyExists(_)) => skipped.push(username),
            Err(e) => failed.push(format!("row {row} ({username}): {}", describe(e))),
        }
    }
    task.finish(&format!("{} new, {} existing, {} refused", imported.len(), skipped.len(), failed.len()));
    if json {
        let out = serde_json::json!({
            "dry_run": dry_run, "imported": imported.len(), "skipped_existing": skipped,
            "failed": failed, "hash_schemes": schemes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let verb = if dry_run { "Would import" } else { "Imported" };
        let by_scheme: Vec<String> = schemes.iter().map(|(k, v)| format!("{v} {k}")).collect();
        println!(
            "{verb} {} users{}.",
            imported.len(),
            if by_scheme.is_empty() { String::new() } else { format!(" ({})", by_scheme.join(", ")) }
        );
        if !skipped.is_empty() {
            println!("Skipped {} that already exist: {}", skipped.len(), skipped.join(", "));
        }
        if !dry_run && !imported.is_empty() {
            println!("Their passwords are checked against the imported hashes at their next login and upgraded to Argon2id there.");
        }
        for f in &failed {
            eprintln!("{f}");
        }
    }
    if !failed.is_empty() {
        bail!("{} rows were refused", failed.len());
    }
    Ok(())
}

async fn export_users(
    core: &rampart_core::Core,
    format: Format,
    include_hashes: bool,
    output: Option<&std::path::Path>,
    total: u64,
) -> anyhow::Result<()> {
    let access = core.authorize_local().await?;
    let task = Progress::stderr().counted("exporting", total, false);
    let out: Box<dyn std::io::Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(create_private(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut writer = ExportWriter::start(format, out, include_hashes)?;
    let mut after: Option<String> = None;
    loop {
        let page = core.users().export_page(&access, after.as_deref(), 500, include_hashes).await.map_err(describe)?;
        let Some(last) = page.last() else { break };
        after = Some(last.view.username.to_string());
        for user in &page {
            writer.write(user)?;
        }
        task.set(writer.written());
    }
    let count = writer.finish()?;
    task.finish(&format!("{count} users"));
    core.users().record_export(&access, count, include_hashes).await.map_err(describe)?;
    if include_hashes {
        eprintln!("Exported {count} users WITH password hashes: keep the file as secret as the database.");
    }
    Ok(())
}

/// A new file readable by its owner only; an existing file is never overwritten.
fn create_private(path: &std::path::Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {} (an existing file is never overwritten)", path.display()))
}

fn describe(e: rampart_core::CoreError) -> anyhow::Error {
    match e {
        rampart_core::CoreError::PasswordPolicy(v) => {
            anyhow::anyhow!("{} (rule: {})", v.message, v.rule)
        }
        e => anyhow::Error::new(e),
    }
}
