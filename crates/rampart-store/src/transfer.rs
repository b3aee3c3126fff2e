//! Moving a deployment from one backend to another (`rampart migrate`): every table's rows in
//! a neutral form, copied as they are. Documents stay sealed, keys stay wrapped and the
//! audit chain keeps its hashes: nothing is decrypted or re-signed on the way.

/// One stored value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

/// Consecutive rows of one table, with the source's column names.
#[derive(Debug, Clone)]
pub struct Rows {
    pub table: &'static str,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// Every table a deployment consists of, referenced tables before the ones that refer to
/// them (the order a copy inserts in).
pub const TRANSFER_TABLES: &[&str] = &[
    "meta",
    "kek_versions",
    "data_keys",
    "roles",
    "users",
    "external_identities",
    "oidc_pending_logins",
    "sessions",
    "refresh_tokens",
    "mfa_challenges",
    "recovery_codes",
    "jwt_keys",
    "login_addresses",
    "login_networks",
    "collections",
    "documents",
    "doc_index",
    "erasure_ledger",
    "privacy_verifications",
    "consents",
    "opt_outs",
    "privacy_requests",
    "legal_holds",
    "alerts",
    "ip_blocks",
    "webhook_outbox",
    "audit_log",
];

/// The meta key of the SQLite deployment's one audit head; PostgreSQL keeps one head per
/// node under `audit_head:<node>`.
pub const SINGLE_NODE_AUDIT_HEAD: &str = "audit_head";

/// A re-encryption in progress (its cursor in meta): finish it before moving.
pub const REENCRYPT_CURSOR_KEY: &str = "reencrypt_cursor";
