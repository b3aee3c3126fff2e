//! `rampart user ...`: user administration on the local data directory, acting as the
//! local administrator (whoever can read the data directory already owns the server).

use std::io::Read as _;

use anyhow::{bail, Context};
use clap::Subcommand;
use rampart_config::Overrides;
use rampart_core::NewUser;
use rampart_crypto::random_password;
use secrecy::{ExposeSecret, SecretString};

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
}

pub async fn run(flags: Overrides, action: UserAction) -> anyhow::Result<()> {
    let (config, _vault) = crate::app::load_config(&flags).await?;
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
    };
    store.close().await.context("closing the database")?;
    result
}

fn describe(e: rampart_core::CoreError) -> anyhow::Error {
    match e {
        rampart_core::CoreError::PasswordPolicy(v) => {
            anyhow::anyhow!("{} (rule: {})", v.message, v.rule)
        }
        e => anyhow::Error::new(e),
    }
}
