//! `rampart migrate --to postgres://...`: copies a stopped SQLite deployment into an empty
//! PostgreSQL database as it is stored (documents stay sealed, keys wrapped, the audit
//! chain keeps its hashes and becomes the chain of this node, `server.node_id`), then
//! checks every table's count and verifies the chain on PostgreSQL.

use anyhow::{bail, Context};
use rampart_config::{DatabaseUrl, Overrides};
use rampart_store::transfer::TRANSFER_TABLES;
use rampart_store_postgres::transfer::PgImport;
use rampart_store_postgres::{PostgresOptions, PostgresStore};

use crate::app::{App, Backend};
use crate::datadir;
use crate::progress::Progress;

/// Rows per transaction on the target.
const BATCH: usize = 500;

pub async fn run(flags: Overrides, to: String, json: bool) -> anyhow::Result<()> {
    let (config, _vault) = crate::app::load_config(&flags).await?;
    if !matches!(config.server.database, DatabaseUrl::Sqlite { .. }) {
        bail!("migrate copies a SQLite deployment; the configured database_url is not SQLite");
    }
    if !Backend::exists(&config.server.database) {
        bail!("no Rampart database in {}", config.server.data_dir.display());
    }
    let to = if to == "-" { read_url_from_stdin()? } else { to };
    let target = match DatabaseUrl::parse(to.trim()) {
        Ok(url @ DatabaseUrl::Postgres(_)) => url,
        _ => bail!("--to must be a postgres:// URL (or - to read it from standard input)"),
    };
    let DatabaseUrl::Postgres(target_url) = &target else { bail!("--to must be a postgres:// URL") };
    let _lock =
        datadir::lock(&config.server.data_dir).context("a server is using this data directory; stop it first")?;

    // The source must be sound before anything is copied: the right master key (checked
    // by opening it) and an audit chain that verifies.
    let source = App::open(&config).await?;
    let checked = source.core.audit().verify_audit().await?;
    if !checked.valid {
        bail!("the source's audit chain does not verify ({}); nothing was copied", checked.reason.unwrap_or_default());
    }
    let Backend::Sqlite(sqlite) = &source.backend else { bail!("the configured database is not SQLite") };

    let node = config.server.node_id.clone();
    let tables = rampart_store_postgres::transfer::existing_tables(target_url.expose())
        .await
        .context("cannot connect to the target")?;
    if tables > 0 {
        bail!("the target database is not empty ({tables} tables): migrate copies only into an empty database");
    }
    let schema = PostgresOptions { node: node.clone(), ..PostgresOptions::default() };
    let created = PostgresStore::open(target_url.expose(), schema).await.context("cannot open the target database")?;
    rampart_store::MetaStore::close(&created).await.ok();
    drop(created);
    let import = PgImport::connect(target_url.expose(), &node).await.context("cannot connect to the target")?;
    if let Some(table) = import.first_non_empty_table().await? {
        bail!("the target database is not empty ({table} has rows): migrate copies only into an empty database");
    }

    let progress = Progress::stderr();
    let mut copied = serde_json::Map::new();
    for table in TRANSFER_TABLES {
        let total = sqlite.count_rows(table).await?;
        let task = progress.counted(table, total, false);
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let export = tokio::spawn({
            let sqlite = sqlite.clone();
            async move { sqlite.export_table(table, BATCH, tx).await }
        });
        let mut done = 0u64;
        while let Some(rows) = rx.recv().await {
            done += rows.rows.len() as u64;
            import.insert(rows).await.with_context(|| format!("copying {table}"))?;
            task.set(done);
        }
        export.await.context("the reader stopped")??;
        task.finish(&format!("copied {done} rows"));
        copied.insert((*table).to_owned(), done.into());
    }
    import.finish().await?;

    let mut mismatches = Vec::new();
    for table in TRANSFER_TABLES {
        let (from, into) = (sqlite.count_rows(table).await?, import.count_rows(table).await?);
        if from != into {
            mismatches.push(format!("{table}: {from} in SQLite, {into} in PostgreSQL"));
        }
    }
    drop(import);
    source.backend.close().await.ok();
    if !mismatches.is_empty() {
        bail!("the copy is incomplete: {}", mismatches.join("; "));
    }

    // Open the copy as a node would and verify its chain there.
    let key = datadir::master_key(&config)?;
    let copy = App::open_with(&config, &target, key).await.context("cannot open the copy")?;
    let verified = copy.core.audit().verify_audit().await?;
    copy.backend.close().await.ok();
    if !verified.valid || verified.records != checked.records {
        bail!(
            "the copied audit chain does not verify on PostgreSQL ({} of {} records; {})",
            verified.records,
            checked.records,
            verified.reason.unwrap_or_default()
        );
    }
    if json {
        return crate::table::json(&serde_json::json!({
            "tables": copied,
            "counts_match": true,
            "audit_records": verified.records,
            "audit_valid": verified.valid,
            "node_id": node,
        }));
    }
    println!(
        "Copied {} tables to PostgreSQL; every count matches and the audit chain verifies ({} records, \
         now node '{node}''s chain).\nStart the nodes with RAMPART_DATABASE_URL set to the target and the same \
         master key; this data directory's rampart.db is left as it was.",
        TRANSFER_TABLES.len(),
        verified.records
    );
    Ok(())
}

fn read_url_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("cannot read the URL from standard input")?;
    Ok(line)
}
