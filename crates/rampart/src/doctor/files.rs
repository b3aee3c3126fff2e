//! File permissions and owners: the data directory, the key and secret files, the TLS key,
//! the database, logs and backups. Nothing is changed; each finding says the `chmod`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rampart_config::{Config, DatabaseUrl};
use serde_json::json;

use super::{Findings, Severity};
use crate::datadir::KEY_FILE;

/// What a path must not allow: the mode bits that must be clear.
struct Rule {
    check: &'static str,
    what: &'static str,
    path: PathBuf,
    /// Bits that must be 0 (0o077: nobody but the owner; 0o022: nobody else may write).
    forbidden: u32,
    wanted: &'static str,
    severity: Severity,
}

pub fn check(config: &Config, out: &mut Findings) {
    let data = &config.server.data_dir;
    let Ok(dir_meta) = std::fs::metadata(data) else {
        out.flag(
            "data_dir",
            Severity::Info,
            "no data directory yet: the first `rampart serve` creates it (0700)",
            json!({ "data_dir": data }),
            "rampart serve",
        );
        return;
    };
    let owner = dir_meta.uid();
    let mut rules = vec![
        rule("data_dir_permissions", "the data directory", data.clone(), 0o077, "700", Severity::Critical),
        rule("master_key_permissions", "the master key file", data.join(KEY_FILE), 0o077, "600", Severity::Critical),
        rule("tls_key_permissions", "the TLS private key", tls_key(config), 0o077, "600", Severity::Critical),
        rule(
            "log_dir_permissions",
            "the log directory",
            config.server.log_dir.clone(),
            0o077,
            "700",
            Severity::Warning,
        ),
        rule(
            "backup_dir_permissions",
            "the backup directory",
            config.backup.dir.clone(),
            0o077,
            "700",
            Severity::Warning,
        ),
    ];
    if let DatabaseUrl::Sqlite { dir } = &config.server.database {
        let db = dir.join(DatabaseUrl::SQLITE_FILE);
        rules.push(rule("database_permissions", "the database file", db, 0o077, "600", Severity::Warning));
    }
    if let Some(secrets) = &config.sources.secrets_file {
        rules.push(rule(
            "secrets_file_permissions",
            "the .secrets file",
            secrets.clone(),
            0o077,
            "600",
            Severity::Critical,
        ));
    }
    if let Some(file) = &config.sources.config_file {
        rules.push(rule("config_file_permissions", "the config file", file.clone(), 0o022, "644", Severity::Critical));
    }
    for r in rules {
        judge(&r, owner, out);
    }
    let retired: Vec<PathBuf> = std::fs::read_dir(data)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("master.key.retired-")))
        .collect();
    if !retired.is_empty() {
        out.flag(
            "retired_master_keys",
            Severity::Warning,
            "master keys retired by rotate-secrets lie beside the data: with a copy of the directory they open old backups",
            json!({ "files": retired }),
            "move them to offline storage (they are needed only to restore backups made before the rotation)",
        );
    }
    if config.secrets.encryption_key.is_none() && data.join(KEY_FILE).exists() {
        out.flag(
            "master_key_location",
            Severity::Info,
            "the master key file sits in the data directory it protects: a copy of the directory is readable",
            json!({ "path": data.join(KEY_FILE) }),
            "move it off the data volume and point RAMPART_ENCRYPTION_KEY_FILE at it (or keep it in Vault)",
        );
    }
}

fn rule(
    check: &'static str,
    what: &'static str,
    path: PathBuf,
    forbidden: u32,
    wanted: &'static str,
    severity: Severity,
) -> Rule {
    Rule { check, what, path, forbidden, wanted, severity }
}

fn tls_key(config: &Config) -> PathBuf {
    config.tls.key.clone().unwrap_or_else(|| config.server.data_dir.join("tls").join("key.pem"))
}

fn judge(r: &Rule, owner: u32, out: &mut Findings) {
    let Ok(meta) = std::fs::symlink_metadata(&r.path) else { return };
    let mode = meta.permissions().mode() & 0o777;
    let evidence = json!({
        "path": r.path,
        "mode": format!("{mode:o}"),
        "owner_uid": meta.uid(),
        "data_dir_owner_uid": owner,
    });
    if meta.file_type().is_symlink() {
        out.flag(
            r.check,
            Severity::Warning,
            format!("{} is a symbolic link; its target's permissions decide who reads it", r.what),
            evidence,
            format!("replace {} with the file itself", r.path.display()),
        );
        return;
    }
    if mode & r.forbidden != 0 {
        out.flag(
            r.check,
            r.severity,
            format!("{} is open to other users (mode {mode:o})", r.what),
            evidence,
            format!("chmod {} {}", r.wanted, quoted(&r.path)),
        );
    } else if meta.uid() != owner {
        out.flag(
            r.check,
            Severity::Warning,
            format!("{} belongs to another user than the data directory", r.what),
            evidence,
            format!("chown {owner} {}", quoted(&r.path)),
        );
    } else {
        out.pass(r.check, format!("{} is private (mode {mode:o})", r.what), evidence);
    }
}

fn quoted(p: &Path) -> String {
    let s = p.display().to_string();
    if s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn open_key_and_directory_modes_are_critical_and_name_the_chmod() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(data.join(KEY_FILE), "k").unwrap();
        fs::set_permissions(data.join(KEY_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        let config = Config::for_data_dir(&data).unwrap();
        let mut out = Findings::default();
        check(&config, &mut out);
        let dir = out.get("data_dir_permissions").unwrap();
        assert_eq!(dir.severity, Severity::Critical);
        assert_eq!(dir.fix.as_deref(), Some(format!("chmod 700 {}", data.display()).as_str()));
        assert_eq!(out.get("master_key_permissions").unwrap().severity, Severity::Critical);

        fs::set_permissions(&data, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(data.join(KEY_FILE), fs::Permissions::from_mode(0o600)).unwrap();
        let mut out = Findings::default();
        check(&config, &mut out);
        assert_eq!(out.get("data_dir_permissions").unwrap().severity, Severity::Ok);
        assert_eq!(out.get("master_key_permissions").unwrap().severity, Severity::Ok);
        assert!(out.get("retired_master_keys").is_none());
        fs::write(data.join("master.key.retired-1700000000"), "old").unwrap();
        let mut out = Findings::default();
        check(&config, &mut out);
        assert_eq!(out.get("retired_master_keys").unwrap().severity, Severity::Warning);
    }

    #[test]
    fn paths_with_spaces_are_quoted_for_the_shell() {
        assert_eq!(quoted(Path::new("/srv/rampart data/x")), "'/srv/rampart data/x'");
        assert_eq!(quoted(Path::new("/srv/it's")), r"'/srv/it'\''s'");
        assert_eq!(quoted(Path::new("/srv/ok-1.pem")), "/srv/ok-1.pem");
    }
}
