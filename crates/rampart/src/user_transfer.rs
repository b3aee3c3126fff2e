//! The file formats of `rampart user import` and `rampart user export`: CSV (a header row,
//! RFC 4180 quoting) or JSON (`{"users": [..]}` or a bare array).
//!
//! Import columns: `username`, `password_hash` (Argon2 PHC, bcrypt or PBKDF2-SHA256),
//! optional `role` (else `--role`) and `disabled`; `mfa_enabled` and `created_at`, which
//! export writes, are accepted and ignored (second factors are never exported, so imported
//! users enrol again). Any other column is refused: a `password` column would mean
//! plaintext passwords sit in a file somewhere, and the operator should know that we
//! refused it rather than guessed. Errors name the row and the field, never a hash.

use std::collections::HashSet;
use std::io::Write;

use anyhow::{bail, Context};
use rampart_core::ExportedUser;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    /// `--format`, else the file's extension, else its first character.
    pub fn detect(given: Option<Format>, path: &std::path::Path, text: &str) -> Format {
        if let Some(f) = given {
            return f;
        }
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Format::Csv,
            Some("json") => Format::Json,
            _ if text.trim_start().starts_with(['[', '{']) => Format::Json,
            _ => Format::Csv,
        }
    }
}

/// One user read from an import file, before the server checks it. `row` is the CSV line
/// or the JSON array index (1-based), for messages.
#[derive(Debug)]
pub struct ImportRow {
    pub row: usize,
    pub username: String,
    pub role: Option<String>,
    pub password_hash: String,
    pub disabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonUser {
    username: String,
    password_hash: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    disabled: bool,
    #[serde(default, rename = "mfa_enabled")]
    _mfa_enabled: Option<bool>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonFile {
    Wrapped { users: Vec<serde_json::Value> },
    Bare(Vec<serde_json::Value>),
}

pub fn parse(format: Format, text: &str) -> anyhow::Result<Vec<ImportRow>> {
    let rows = match format {
        Format::Json => parse_json(text)?,
        Format::Csv => parse_csv(text)?,
    };
    let mut seen = HashSet::new();
    for r in &rows {
        if !seen.insert(r.username.as_str()) {
            bail!("row {}: username '{}' appears more than once in the file", r.row, r.username);
        }
    }
    Ok(rows)
}

fn parse_json(text: &str) -> anyhow::Result<Vec<ImportRow>> {
    let file: JsonFile = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("not a JSON user list (line {}, column {})", e.line(), e.column()))?;
    let (JsonFile::Wrapped { users } | JsonFile::Bare(users)) = file;
    users
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            // The serde message names the field, never its value.
            let user: JsonUser = serde_json::from_value(value).map_err(|e| anyhow::anyhow!("user {}: {e}", i + 1))?;
            Ok(ImportRow {
                row: i + 1,
                username: user.username,
                role: user.role,
                password_hash: user.password_hash,
                disabled: user.disabled,
            })
        })
        .collect()
}

const CSV_COLUMNS: [&str; 6] = ["username", "password_hash", "role", "disabled", "mfa_enabled", "created_at"];

fn parse_csv(text: &str) -> anyhow::Result<Vec<ImportRow>> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
    let headers: Vec<String> =
        reader.headers().context("reading the CSV header row")?.iter().map(|h| h.trim().to_owned()).collect();
    for h in &headers {
        if !CSV_COLUMNS.contains(&h.as_str()) {
            bail!("unknown CSV column '{h}' (accepted: {})", CSV_COLUMNS.join(", "));
        }
    }
    let column = |name: &str| headers.iter().position(|h| h == name);
    let (Some(user_col), Some(hash_col)) = (column("username"), column("password_hash")) else {
        bail!("the CSV header must name the columns username and password_hash");
    };
    let (role_col, disabled_col) = (column("role"), column("disabled"));
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            match e.kind() {
                csv::ErrorKind::UnequalLengths { expected_len, len, .. } => anyhow::anyhow!(
                    "CSV line {line}: {len} fields where the header has {expected_len} (quote fields that contain commas)"
                ),
                _ => anyhow::anyhow!("CSV line {line}: malformed row"),
            }
        })?;
        let line = record.position().map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX));
        let cell = |i: usize| record.get(i).map(undefuse).unwrap_or_default();
        let disabled = match disabled_col.map(cell).as_deref() {
            None | Some("") | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(_) => bail!("CSV line {line}: disabled must be true or false"),
        };
        let role = role_col.map(cell).filter(|r| !r.is_empty());
        rows.push(ImportRow { row: line, username: cell(user_col), role, password_hash: cell(hash_col), disabled });
    }
    Ok(rows)
}

/// Export writes `'` before a cell a spreadsheet would run as a formula; no accepted
/// username, role or hash starts with `'`, so reading it back drops exactly that mark.
fn undefuse(cell: &str) -> String {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest.to_owned(),
        _ => cell.to_owned(),
    }
}

fn defuse(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

/// Writes users as they arrive, so an export of any size needs one page in memory.
pub struct ExportWriter<W: Write> {
    format: Format,
    out: W,
    written: u64,
    include_hashes: bool,
}

impl<W: Write> ExportWriter<W> {
    pub fn start(format: Format, mut out: W, include_hashes: bool) -> anyhow::Result<Self> {
        match format {
            Format::Json => out.write_all(b"{\"users\": [")?,
            Format::Csv => {
                let mut header = vec!["username", "role", "disabled", "mfa_enabled", "created_at"];
                if include_hashes {
                    header.insert(1, "password_hash");
                }
                writeln!(out, "{}", header.join(","))?;
            }
        }
        Ok(Self { format, out, written: 0, include_hashes })
    }

    pub fn write(&mut self, user: &ExportedUser) -> anyhow::Result<()> {
        let v = &user.view;
        let hash = user.password_hash.as_ref().map(|h| h.as_str());
        match self.format {
            Format::Json => {
                let mut obj = serde_json::json!({
                    "username": v.username.as_str(), "role": v.role.as_str(), "disabled": v.disabled,
                    "mfa_enabled": v.mfa_enabled, "created_at": v.created_at,
                });
                if let (Some(hash), Some(map)) = (hash, obj.as_object_mut()) {
                    map.insert("password_hash".into(), hash.into());
                }
                let sep = if self.written == 0 { "\n  " } else { ",\n  " };
                write!(self.out, "{sep}{obj}")?;
            }
            Format::Csv => {
                let mut cells = vec![
                    defuse(v.username.as_str()),
                    defuse(v.role.as_str()),
                    v.disabled.to_string(),
                    v.mfa_enabled.to_string(),
                    v.created_at.to_string(),
                ];
                if self.include_hashes {
                    cells.insert(1, defuse(hash.unwrap_or_default()));
                }
                let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
                w.write_record(&cells)?;
                self.out.write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("{}", e.error()))?)?;
            }
        }
        self.written += 1;
        Ok(())
    }

    /// Users written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn finish(mut self) -> anyhow::Result<u64> {
        if self.format == Format::Json {
            self.out.write_all(if self.written == 0 { b"]}\n" } else { b"\n]}\n" })?;
        }
        self.out.flush()?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_defused_cells_and_optional_columns() {
        let text = "username,password_hash,role,disabled\n\
                    alice,$2b$04$abc,admin,false\n\
                    \"'-bob\",\"pbkdf2_sha256$100000$salt$x==\",,true\n";
        let rows = parse(Format::Csv, text).expect("parsed");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].username.as_str(), rows[0].role.as_deref(), rows[0].disabled),
            ("alice", Some("admin"), false)
        );
        assert_eq!((rows[1].username.as_str(), rows[1].role.as_deref(), rows[1].disabled), ("-bob", None, true));
        assert_eq!(rows[1].password_hash, "pbkdf2_sha256$100000$salt$x==");
        assert_eq!(rows[1].row, 3);
    }

    #[test]
    fn plaintext_password_columns_and_fields_are_refused() {
        let err = parse(Format::Csv, "username,password\nalice,hunter2\n").expect_err("refused");
        assert!(err.to_string().contains("unknown CSV column 'password'"), "{err}");
        assert!(!err.to_string().contains("hunter2"));
        let err =
            parse(Format::Json, r#"[{"username":"a","password_hash":"x","password":"hunter2"}]"#).expect_err("refused");
        assert!(err.to_string().contains("password"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn duplicate_names_in_one_file_are_refused() {
        let err = parse(
            Format::Json,
            r#"{"users":[{"username":"a","password_hash":"x"},{"username":"a","password_hash":"y"}]}"#,
        )
        .expect_err("refused");
        assert!(err.to_string().contains("more than once"), "{err}");
    }

    #[test]
    fn formats_are_detected_by_flag_extension_then_content() {
        let p = std::path::Path::new;
        assert_eq!(Format::detect(Some(Format::Csv), p("u.json"), "[]"), Format::Csv);
        assert_eq!(Format::detect(None, p("u.JSON"), "x"), Format::Json);
        assert_eq!(Format::detect(None, p("users"), "  [{}]"), Format::Json);
        assert_eq!(Format::detect(None, p("users"), "username,password_hash"), Format::Csv);
    }

    #[test]
    fn defusing_round_trips() {
        for cell in ["-bob", "@x", "=1+1", "plain", "'quoted"] {
            assert_eq!(undefuse(&defuse(cell)), cell);
        }
    }
}
