use rampart_store::StoreResult;
use rusqlite::Connection;

use crate::map_err;

/// Forward-only migrations; `user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    permissions TEXT NOT NULL,      -- JSON array of permission names
    collections TEXT,               -- JSON array, NULL = all collections
    builtin     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL REFERENCES roles(name),
    disabled      INTEGER NOT NULL DEFAULT 0,
    mfa_enabled   INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    token_hash   BLOB NOT NULL UNIQUE,
    username     TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    ip_address   TEXT,
    user_agent   TEXT
) STRICT;
CREATE INDEX sessions_by_user ON sessions(username, created_at);

CREATE TABLE collections (
    name           TEXT PRIMARY KEY,
    indexes        TEXT NOT NULL,
    pii_fields     TEXT NOT NULL,
    retention_days INTEGER,
    encrypted      INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE documents (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
    id         TEXT NOT NULL,
    version    INTEGER NOT NULL,
    subject_id TEXT,
    body       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (collection, id)
) STRICT;
CREATE INDEX documents_by_subject ON documents(subject_id, collection, seq) WHERE subject_id IS NOT NULL;

CREATE TABLE doc_index (
    collection TEXT NOT NULL,
    field      TEXT NOT NULL,
    token      BLOB NOT NULL,
    doc_seq    INTEGER NOT NULL REFERENCES documents(seq) ON DELETE CASCADE,
    PRIMARY KEY (collection, field, token, doc_seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX doc_index_by_doc ON doc_index(doc_seq);
"#,
    r#"
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    timestamp  INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    user       TEXT,
    ip_address TEXT,
    success    INTEGER NOT NULL,
    details    TEXT NOT NULL,
    request_id TEXT,
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL
) STRICT;
CREATE INDEX audit_by_type ON audit_log(event_type, seq);
CREATE INDEX audit_by_user ON audit_log(user, seq);
CREATE INDEX audit_by_time ON audit_log(timestamp);
"#,
    r#"
CREATE TABLE data_keys (
    key_id      TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    owner       TEXT NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped     BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    successor   TEXT
) STRICT;
CREATE UNIQUE INDEX data_keys_current ON data_keys(kind, owner) WHERE successor IS NULL;
CREATE INDEX data_keys_by_owner ON data_keys(kind, owner);

CREATE TABLE kek_versions (
    version    INTEGER PRIMARY KEY,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE erasure_ledger (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    subject_hash TEXT NOT NULL,
    erased_at    INTEGER NOT NULL
) STRICT;
"#,
    r#"
CREATE TABLE alerts (
    id              TEXT PRIMARY KEY,
    severity        TEXT NOT NULL,
    breach_type     TEXT NOT NULL,
    dedup_key       TEXT NOT NULL,
    details         TEXT NOT NULL,
    first_seen      INTEGER NOT NULL,
    last_seen       INTEGER NOT NULL,
    count           INTEGER NOT NULL,
    status          TEXT NOT NULL,
    acknowledged_by TEXT
) STRICT;
CREATE INDEX alerts_by_key ON alerts(dedup_key, last_seen);
CREATE INDEX alerts_by_status ON alerts(status, last_seen);

CREATE TABLE ip_blocks (
    cidr       TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
) STRICT;

CREATE TABLE webhook_outbox (
    event_id        TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    delivered_at    INTEGER,
    last_error      TEXT,
    PRIMARY KEY (event_id, endpoint)
) STRICT;
CREATE INDEX outbox_due ON webhook_outbox(next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE login_networks (
    username   TEXT NOT NULL,
    network    TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    PRIMARY KEY (username, network)
) STRICT;
"#,
    r#"
ALTER TABLE users ADD COLUMN mfa_secret BLOB;
ALTER TABLE users ADD COLUMN mfa_pending BLOB;
ALTER TABLE users ADD COLUMN mfa_last_step INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN family_id TEXT;
CREATE INDEX sessions_by_family ON sessions(family_id) WHERE family_id IS NOT NULL;

CREATE TABLE recovery_codes (
    username  TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    code_hash BLOB NOT NULL,
    used_at   INTEGER,
    PRIMARY KEY (username, code_hash)
) STRICT;

CREATE TABLE mfa_challenges (
    token_hash BLOB PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    used       INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    family_id  TEXT NOT NULL,
    session_id TEXT NOT NULL,
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked    INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX refresh_by_family ON refresh_tokens(family_id);
"#,
    r#"
CREATE TABLE jwt_keys (
    kid        TEXT PRIMARY KEY,
    sealed     BLOB NOT NULL,
    public_key BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    retired_at INTEGER
) STRICT;
"#,
    // Sessions carry the assurance they were opened with; sessions from before this
    // migration read as password-only (the weaker level).
    r#"
ALTER TABLE sessions ADD COLUMN assurance INTEGER NOT NULL DEFAULT 1;
ALTER TABLE refresh_tokens ADD COLUMN assurance INTEGER NOT NULL DEFAULT 1;
"#,
    // Addresses each user completed a login from (device trust for the login delay).
    r#"
CREATE TABLE login_addresses (
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    address    TEXT NOT NULL,
    last_login INTEGER NOT NULL,
    PRIMARY KEY (username, address)
) STRICT;
"#,
    // The login delay's buckets under a keyed hash (`ThrottleStore`); `holds` lists the
    // attempts in flight, 16 bytes each. A SQLite deployment keeps its delay in memory and
    // leaves this table empty; it is here for every backend to hold every store trait.
    r#"
CREATE TABLE login_delays (
    bucket          BLOB PRIMARY KEY CHECK (length(bucket) = 32),
    failures        INTEGER NOT NULL,
    last_ms         INTEGER NOT NULL,
    next_allowed_ms INTEGER NOT NULL,
    holds           BLOB NOT NULL
) STRICT;
CREATE INDEX login_delays_by_last ON login_delays(last_ms);
"#,
    // Data-subject rights (`PrivacyStore`): subjects are known by a keyed hash only;
    // erasure deletes a subject's rows from every table here but `privacy_requests`.
    r#"
CREATE TABLE privacy_verifications (
    token_hash   BLOB PRIMARY KEY CHECK (length(token_hash) = 32),
    subject_hash TEXT NOT NULL,
    issued_by    TEXT NOT NULL,
    issued_at    INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    spent_at     INTEGER
) STRICT;
CREATE INDEX privacy_verifications_by_subject ON privacy_verifications(subject_hash);
CREATE TABLE consents (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    consent_id   TEXT NOT NULL UNIQUE,
    subject_hash TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    granted      INTEGER NOT NULL,
    given_at     INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL,
    recorded_by  TEXT NOT NULL
) STRICT;
CREATE INDEX consents_by_subject ON consents(subject_hash, seq);
CREATE TABLE opt_outs (
    seq                 INTEGER PRIMARY KEY AUTOINCREMENT,
    opt_out_id          TEXT NOT NULL UNIQUE,
    subject_hash        TEXT NOT NULL,
    opt_out_type        TEXT NOT NULL,
    effective_date      TEXT NOT NULL,
    confirmation_number TEXT NOT NULL UNIQUE,
    created_at          INTEGER NOT NULL,
    created_by          TEXT NOT NULL
) STRICT;
CREATE INDEX opt_outs_by_subject ON opt_outs(subject_hash, seq);
CREATE TABLE privacy_requests (
    request_id      TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    subject_hash    TEXT NOT NULL,
    requested_by    TEXT NOT NULL,
    requested_at    INTEGER NOT NULL,
    records_deleted INTEGER NOT NULL,
    providers       TEXT NOT NULL
) STRICT;
"#,
    // Legal holds (retention): a subject hold names the plain subject id, so a deleting
    // transaction matches `documents.subject_id` against it in SQL. Released holds stay.
    r#"
CREATE TABLE legal_holds (
    id          TEXT PRIMARY KEY,
    scope       TEXT NOT NULL CHECK (scope IN ('subject', 'collection')),
    target      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    released_at INTEGER,
    released_by TEXT
) STRICT;
CREATE INDEX legal_holds_active ON legal_holds(scope, target) WHERE released_at IS NULL;
CREATE INDEX documents_by_created ON documents(collection, created_at);
"#,
    // OpenID Connect (`ExternalIdentityStore`): local users linked to (issuer, subject),
    // and logins sent to the provider and not yet back (state and binding kept hashed).
    r#"
CREATE TABLE external_identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    username   TEXT NOT NULL UNIQUE REFERENCES users(username) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
) STRICT;
CREATE TABLE oidc_pending_logins (
    state_hash    BLOB PRIMARY KEY CHECK (length(state_hash) = 32),
    binding_hash  BLOB NOT NULL CHECK (length(binding_hash) = 32),
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    mode          TEXT NOT NULL CHECK (mode IN ('cookie', 'token')),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX oidc_pending_logins_by_created ON oidc_pending_logins(created_at);
"#,
    // Which identity provider checks an account's logins (issue 13): local, ldap or oidc.
    r#"
ALTER TABLE users ADD COLUMN auth_source TEXT NOT NULL DEFAULT 'local'
    CHECK (auth_source IN ('local', 'ldap', 'oidc'));
"#,
];

pub(crate) fn run(conn: &mut Connection) -> StoreResult<()> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(map_err)?;
    let done = usize::try_from(done).unwrap_or(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction().map_err(map_err)?;
        tx.execute_batch(sql).map_err(map_err)?;
        tx.pragma_update(None, "user_version", i + 1).map_err(map_err)?;
        tx.commit().map_err(map_err)?;
    }
    Ok(())
}
