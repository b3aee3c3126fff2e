//! `rampart retention plan`: a dry run of the retention job. Per collection and rule: the
//! period, the cutoff, how many documents have expired, how many of those a legal hold
//! keeps, and the oldest expired one. Changes nothing (works beside a running server).

use clap::Subcommand;
use rampart_config::Overrides;

use crate::table;

#[derive(Subcommand, Debug)]
pub enum RetentionAction {
    /// Show what has expired under the retention rules and what the job would delete.
    Plan {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(flags: Overrides, action: RetentionAction) -> anyhow::Result<()> {
    let (config, _vault) = crate::app::load_config(&flags).await?;
    let crate::app::App { core, backend: store } = crate::app::App::open(&config).await?;
    let RetentionAction::Plan { json } = action;
    let result = async {
        let plan = core.retention().plan_as(&core.authorize_local().await?).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
            return Ok(());
        }
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        let rows: Vec<Vec<String>> = plan
            .collections
            .iter()
            .map(|r| {
                vec![
                    r.collection.clone(),
                    r.source.to_owned(),
                    r.applies_to.to_owned(),
                    or_dash(r.days.map(|d| d.to_string())),
                    or_dash(r.cutoff.map(|t| t.to_string())),
                    r.expired.to_string(),
                    r.held.to_string(),
                    or_dash(r.oldest_expired_created_at.map(|t| t.to_string())),
                ]
            })
            .collect();
        table::print(
            &["collection", "rule", "applies to", "days", "cutoff", "expired", "held", "oldest expired"],
            &rows,
        );
        let state = match (plan.enabled, plan.auto_delete_expired) {
            (true, true) => "the retention job deletes expired documents that no legal hold keeps",
            (true, false) => "auto_delete_expired is off: nothing is deleted automatically",
            (false, _) => "[retention] enabled is off: nothing is deleted automatically",
        };
        println!("\n{} document(s) deletable now; {state}.", plan.total_deletable());
        anyhow::Ok(())
    }
    .await;
    store.close().await.ok();
    result
}
