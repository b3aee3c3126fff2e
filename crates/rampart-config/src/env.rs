use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use secrecy::SecretString;

use crate::{invalid, ConfigError};

/// A snapshot of `RAMPART_*` variables. Only `from_process` touches the real environment.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: show names only.
        f.debug_list().entries(self.vars.keys()).finish()
    }
}

impl Env {
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars().filter(|(k, _)| k.starts_with("RAMPART_")))
    }

    pub fn empty() -> Self {
        Self::default()
    }

    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        Self { vars: pairs.into_iter().collect() }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.vars.get(name).filter(|v| !v.is_empty()).cloned()
    }

    pub(crate) fn parse_num<T: FromStr>(&self, name: &str) -> Result<Option<T>, ConfigError> {
        self.get(name).map(|v| v.trim().parse().map_err(|_| invalid(name, "expected a number"))).transpose()
    }

    pub(crate) fn parse_bool(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        self.get(name)
            .map(|v| match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(invalid(name, "expected true or false")),
            })
            .transpose()
    }

    /// `NAME` or `NAME_FILE` (the file's content, trailing newline trimmed); both is an error.
    pub fn secret(&self, name: &str) -> Result<Option<SecretString>, ConfigError> {
        let file_var = format!("{name}_FILE");
        match (self.get(name), self.get(&file_var)) {
            (Some(_), Some(_)) => Err(invalid(name, format!("set {name} or {file_var}, not both"))),
            (Some(v), None) => Ok(Some(SecretString::from(v))),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| invalid(&file_var, format!("cannot read {path}: {}", e.kind())))?;
                Ok(Some(SecretString::from(text.trim_end_matches(['\n', '\r']).to_owned())))
            }
            (None, None) => Ok(None),
        }
    }

    /// Adds `KEY=VALUE` lines from a secrets file underneath the real environment.
    pub(crate) fn with_secrets_file(&self, path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::ReadFile { path: path.to_owned(), reason: e.kind().to_string() })?;
        let mut vars = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(ConfigError::ParseFile {
                    path: path.to_owned(),
                    reason: format!("line {} is not KEY=VALUE", n + 1),
                });
            };
            vars.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        vars.extend(self.vars.clone());
        Ok(Self { vars })
    }
}
