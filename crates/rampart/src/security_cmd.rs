//! `rampart security blocks|unblock`: the operator's way back in when an address (their
//! own, say) is blocked. Works on the data directory of a running server: the server
//! reloads its block list every few seconds.

use anyhow::Context;
use clap::Subcommand;
use rampart_config::Overrides;

use crate::table;

#[derive(Subcommand, Debug)]
pub enum SecurityAction {
    /// List the active address blocks.
    Blocks {
        #[arg(long)]
        json: bool,
    },
    /// Lift the block on an address or CIDR block (audited).
    Unblock { address: String },
}

pub async fn run(flags: Overrides, action: SecurityAction) -> anyhow::Result<()> {
    let (config, _vault) = crate::app::load_config(&flags).await?;
    let crate::app::App { core, backend: store } = crate::app::App::open(&config).await?;
    let result = match action {
        SecurityAction::Blocks { json } => {
            let blocks = core.detection().list_blocks(&core.authorize_local().await?).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "blocked_ips": blocks }))?);
            } else {
                let rows: Vec<Vec<String>> = blocks
                    .iter()
                    .map(|b| {
                        vec![b.ip_address.clone(), b.expires_at.to_string(), b.created_by.clone(), b.reason.clone()]
                    })
                    .collect();
                table::print(&["address", "until", "by", "reason"], &rows);
            }
            Ok(())
        }
        SecurityAction::Unblock { address } => {
            core.detection()
                .unblock_ip(&core.authorize_local().await?, &address)
                .await
                .with_context(|| format!("cannot unblock {address}"))?;
            println!("{address} is unblocked; a running server applies it within a few seconds.");
            Ok(())
        }
    };
    store.close().await.ok();
    result
}
