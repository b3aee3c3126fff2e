//! The erasure ledger outside the database: keyed hashes of erased subjects, with the
//! time the copy was taken. Written beside every backup, kept current beside the backups
//! at every erasure, and exported by `rampart gdpr export-ledger`; a restore needs one at
//! least as new as the backup, so an erasure is never silently undone.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context};
use rampart_types::Timestamp;
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "rampart-erasure-ledger/1";
/// The rolling copy in the backup directory, rewritten at every erasure.
pub const CURRENT_FILE: &str = "erasure-ledger.json";
/// The append-only copy earlier versions kept (still read, never trusted as current).
pub const LEGACY_FILE: &str = "erasure-ledger.txt";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LedgerFile {
    pub format: String,
    pub exported_at: String,
    pub entries: BTreeSet<String>,
}

impl LedgerFile {
    pub fn new(entries: impl IntoIterator<Item = String>, at: Timestamp) -> Self {
        Self { format: FORMAT.to_owned(), exported_at: at.to_rfc3339(), entries: entries.into_iter().collect() }
    }

    pub fn exported_at(&self) -> Option<Timestamp> {
        Timestamp::parse_rfc3339(&self.exported_at)
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file: Self = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not an erasure ledger (rampart gdpr export-ledger)", path.display()))?;
        if file.format != FORMAT || file.exported_at().is_none() {
            bail!("{} is not an erasure ledger in format {FORMAT}", path.display());
        }
        Ok(file)
    }

    /// Written to a temp file, synced, then renamed: a reader never sees half a ledger.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// Every entry of the ledger copies in `dir` (current and legacy), trusted or not: applying
/// more erasures than needed is always safe.
pub fn entries_in(dir: &Path) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = std::fs::read_to_string(dir.join(LEGACY_FILE))
        .map(|t| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    if let Ok(current) = LedgerFile::read(&dir.join(CURRENT_FILE)) {
        out.extend(current.entries);
    }
    out
}
