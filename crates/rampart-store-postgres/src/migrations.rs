//! Forward-only schema migrations, run under an advisory lock so that nodes starting
//! together migrate once: the first takes the lock and migrates, the others wait for it and
//! then find nothing left to do.

use postgres::Client;
use rampart_store::StoreResult;

use crate::map_err;

/// Held (session-level) while migrating; any constant shared by every node.
const MIGRATION_LOCK: i64 = 0x7261_6d70_6172_7401;

/// Each entry runs in its own transaction; `schema_migrations` records how many have run.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE roles (
    name        TEXT COLLATE "C" PRIMARY KEY,
    description TEXT NOT NULL,
    permissions TEXT NOT NULL,
    collections TEXT,
    builtin     BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    username      TEXT COLLATE "C" PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT COLLATE "C" NOT NULL REFERENCES roles(name),
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    mfa_enabled   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    mfa_secret    BYTEA,
    mfa_pending   BYTEA,
    mfa_last_step BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE sessions (
    id           TEXT PRIMARY KEY,
    token_hash   BYTEA NOT NULL UNIQUE,
    username     TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ip_address   TEXT,
    user_agent   TEXT,
    family_id    TEXT,
    assurance    BIGINT NOT NULL DEFAULT 1,
    -- Insertion order among sessions created in the same millisecond.
    ordinal      BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX sessions_by_user ON sessions(username, created_at);
CREATE INDEX sessions_by_family ON sessions(family_id) WHERE family_id IS NOT NULL;

-- The text keys of the tables below compare and sort bytewise (COLLATE "C"), whatever the
-- database's collation: listing order and `after` paging must not depend on the server.
CREATE TABLE collections (
    name           TEXT COLLATE "C" PRIMARY KEY,
    indexes        TEXT NOT NULL,
    pii_fields     TEXT NOT NULL,
    retention_days BIGINT,
    encrypted      BOOLEAN NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE documents (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection TEXT COLLATE "C" NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
    id         TEXT COLLATE "C" NOT NULL,
    version    BIGINT NOT NULL,
    subject_id TEXT COLLATE "C",
    body       BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (collection, id)
);
CREATE INDEX documents_by_subject ON documents(subject_id, collection, seq) WHERE subject_id IS NOT NULL;

-- Seqs come from a sequence when a row is inserted, but transactions commit in any order:
-- a scan by seq (`documents_after`, which re-encryption and restores page with) could pass
-- a seq whose row commits later. Every insert therefore holds this lock shared from
-- before its seq is drawn (a statement trigger fires before any row is formed) until it
-- commits, and a scan takes it exclusively: it waits for the inserts in flight, and any
-- insert after it draws a higher seq than every row it saw.
CREATE FUNCTION rampart_document_seq_gate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtext('rampart:document-seqs'));
    RETURN NULL;
END $$;
CREATE TRIGGER documents_seq_gate BEFORE INSERT ON documents
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_document_seq_gate();

CREATE TABLE doc_index (
    collection TEXT COLLATE "C" NOT NULL,
    field      TEXT COLLATE "C" NOT NULL,
    token      BYTEA NOT NULL,
    doc_seq    BIGINT NOT NULL REFERENCES documents(seq) ON DELETE CASCADE,
    PRIMARY KEY (collection, field, token, doc_seq)
);
CREATE INDEX doc_index_by_doc ON doc_index(doc_seq);

-- One chain per node: each node appends only to its own, so nodes never wait on each
-- other's audit head.
CREATE TABLE audit_log (
    node       TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    timestamp  BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    "user"     TEXT,
    ip_address TEXT,
    success    BOOLEAN NOT NULL,
    details    TEXT NOT NULL,
    request_id TEXT,
    prev_hash  BYTEA NOT NULL,
    hash       BYTEA NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE INDEX audit_by_type ON audit_log(node, event_type, seq);
CREATE INDEX audit_by_user ON audit_log(node, "user", seq);
CREATE INDEX audit_by_time ON audit_log(timestamp);

CREATE TABLE data_keys (
    key_id      TEXT COLLATE "C" PRIMARY KEY,
    kind        TEXT COLLATE "C" NOT NULL,
    owner       TEXT COLLATE "C" NOT NULL,
    kek_version BIGINT NOT NULL,
    wrapped     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    successor   TEXT COLLATE "C"
);
CREATE UNIQUE INDEX data_keys_current ON data_keys(kind, owner) WHERE successor IS NULL;
CREATE INDEX data_keys_by_owner ON data_keys(kind, owner);

CREATE TABLE kek_versions (
    version    BIGINT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE erasure_ledger (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_hash TEXT COLLATE "C" NOT NULL,
    erased_at    BIGINT NOT NULL
);

CREATE TABLE alerts (
    id              TEXT PRIMARY KEY,
    severity        TEXT NOT NULL,
    breach_type     TEXT NOT NULL,
    dedup_key       TEXT NOT NULL,
    details         TEXT NOT NULL,
    first_seen      BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    count           BIGINT NOT NULL,
    status          TEXT NOT NULL,
    acknowledged_by TEXT
);
CREATE INDEX alerts_by_key ON alerts(dedup_key, last_seen) WHERE status <> 'resolved';
CREATE INDEX alerts_by_status ON alerts(status, last_seen);

CREATE TABLE ip_blocks (
    cidr       TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);

CREATE TABLE webhook_outbox (
    event_id        TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at    BIGINT,
    last_error      TEXT,
    PRIMARY KEY (event_id, endpoint)
);
CREATE INDEX outbox_due ON webhook_outbox(next_attempt_at) WHERE delivered_at IS NULL;

CREATE TABLE login_networks (
    username   TEXT NOT NULL,
    network    TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (username, network)
);

CREATE TABLE recovery_codes (
    username  TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    code_hash BYTEA NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (username, code_hash)
);

CREATE TABLE mfa_challenges (
    token_hash BYTEA PRIMARY KEY,
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    attempts   BIGINT NOT NULL DEFAULT 0,
    used       BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX mfa_challenges_by_user ON mfa_challenges(username);
CREATE INDEX mfa_challenges_by_expiry ON mfa_challenges(expires_at);

CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    family_id  TEXT NOT NULL,
    session_id TEXT NOT NULL,
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE,
    assurance  BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX refresh_by_family ON refresh_tokens(family_id);
-- Ending a session or all of a user's ends their refresh tokens: found by these.
CREATE INDEX refresh_by_session ON refresh_tokens(session_id);
CREATE INDEX refresh_by_user ON refresh_tokens(username);

CREATE TABLE jwt_keys (
    kid        TEXT PRIMARY KEY,
    sealed     BYTEA NOT NULL,
    public_key BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
-- At most one current signing key, whatever the nodes do.
CREATE UNIQUE INDEX jwt_keys_one_current ON jwt_keys((retired_at IS NULL)) WHERE retired_at IS NULL;

CREATE TABLE login_addresses (
    username   TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    address    TEXT NOT NULL,
    last_login BIGINT NOT NULL,
    PRIMARY KEY (username, address)
);

-- Cache invalidation: every committed change of a cached table, whichever process or node
-- made it, is announced on `rampart_invalidation` (payload: topic bits, delivered at
-- commit) and collected in `rampart.topics` for the committing node itself. A quiet write
-- (the idle-timer touch of a session) announces nothing; session inserts stale nothing.
CREATE FUNCTION rampart_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('rampart.quiet', true) = 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('rampart.topics',
        (COALESCE(NULLIF(current_setting('rampart.topics', true), ''), '0')::int | TG_ARGV[0]::int)::text, true);
    PERFORM pg_notify('rampart_invalidation',
        TG_ARGV[0] || COALESCE(':' || NULLIF(current_setting('rampart.node', true), ''), ''));
    RETURN NULL;
END $$;
CREATE TRIGGER users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_changed('1');
CREATE TRIGGER roles_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_changed('1');
CREATE TRIGGER sessions_changed AFTER UPDATE OR DELETE OR TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_changed('1');
CREATE TRIGGER collections_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON collections
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_changed('6');
CREATE TRIGGER documents_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON documents
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_changed('4');
"#,
    r#"
-- Address blocks reach every node's in-memory block list through the same announcements.
CREATE TRIGGER ip_blocks_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ip_blocks
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_changed('8');
"#,
    r#"
-- The login delay shared by every node (`ThrottleStore`): one row per bucket, named by a
-- keyed hash of account and client trust (never a user name); `holds` lists the attempts
-- in flight, 16 bytes each (id, reserved at). Rows quiet for a day are deleted by the
-- session sweep. No trigger: nothing is cached from it.
CREATE TABLE login_delays (
    bucket          BYTEA PRIMARY KEY CHECK (octet_length(bucket) = 32),
    failures        BIGINT NOT NULL,
    last_ms         BIGINT NOT NULL,
    next_allowed_ms BIGINT NOT NULL,
    holds           BYTEA NOT NULL
);
CREATE INDEX login_delays_by_last ON login_delays(last_ms);
"#,
    r#"
-- Data keys destroyed (erasure), retired (re-encryption), given successors or re-wrapped,
-- and new key-encrypting key versions, stale every node's unwrapped keys. A new key stales
-- nothing.
CREATE TRIGGER data_keys_changed AFTER UPDATE OR DELETE OR TRUNCATE ON data_keys
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_changed('16');
CREATE TRIGGER kek_versions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON kek_versions
    FOR EACH STATEMENT EXECUTE FUNCTION rampart_changed('16');
"#,
    r#"
-- Data-subject rights (`PrivacyStore`): subjects are known by a keyed hash only; erasure
-- deletes a subject's rows from every table here but `privacy_requests`.
CREATE TABLE privacy_verifications (
    token_hash   BYTEA PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    subject_hash TEXT COLLATE "C" NOT NULL,
    issued_by    TEXT NOT NULL,
    issued_at    BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    spent_at     BIGINT
);
CREATE INDEX privacy_verifications_by_subject ON privacy_verifications(subject_hash);
CREATE TABLE consents (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consent_id   TEXT NOT NULL UNIQUE,
    subject_hash TEXT COLLATE "C" NOT NULL,
    purpose      TEXT NOT NULL,
    granted      BOOLEAN NOT NULL,
    given_at     BIGINT NOT NULL,
    recorded_at  BIGINT NOT NULL,
    recorded_by  TEXT NOT NULL
);
CREATE INDEX consents_by_subject ON consents(subject_hash, seq);
CREATE TABLE opt_outs (
    seq                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    opt_out_id          TEXT NOT NULL UNIQUE,
    subject_hash        TEXT COLLATE "C" NOT NULL,
    opt_out_type        TEXT NOT NULL,
    effective_date      TEXT COLLATE "C" NOT NULL,
    confirmation_number TEXT NOT NULL UNIQUE,
    created_at          BIGINT NOT NULL,
    created_by          TEXT NOT NULL
);
CREATE INDEX opt_outs_by_subject ON opt_outs(subject_hash, seq);
CREATE TABLE privacy_requests (
    request_id      TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    subject_hash    TEXT COLLATE "C" NOT NULL,
    requested_by    TEXT NOT NULL,
    requested_at    BIGINT NOT NULL,
    records_deleted BIGINT NOT NULL,
    providers       TEXT NOT NULL
);
"#,
    r#"
-- Legal holds (retention): a subject hold names the plain subject id, so a deleting
-- transaction matches `documents.subject_id` against it in SQL. Released holds stay.
-- No trigger: nothing is cached from it.
CREATE TABLE legal_holds (
    id          TEXT COLLATE "C" PRIMARY KEY,
    scope       TEXT NOT NULL CHECK (scope IN ('subject', 'collection')),
    target      TEXT COLLATE "C" NOT NULL,
    reason      TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    released_at BIGINT,
    released_by TEXT
);
CREATE INDEX legal_holds_active ON legal_holds(scope, target) WHERE released_at IS NULL;
CREATE INDEX documents_by_created ON documents(collection, created_at);
"#,
    r#"
-- OpenID Connect (`ExternalIdentityStore`): local users linked to (issuer, subject), and
-- logins sent to the provider and not yet back (state and binding kept hashed). No trigger:
-- nothing is cached from them.
CREATE TABLE external_identities (
    issuer     TEXT COLLATE "C" NOT NULL,
    subject    TEXT COLLATE "C" NOT NULL,
    username   TEXT NOT NULL UNIQUE REFERENCES users(username) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE TABLE oidc_pending_logins (
    state_hash    BYTEA PRIMARY KEY CHECK (octet_length(state_hash) = 32),
    binding_hash  BYTEA NOT NULL CHECK (octet_length(binding_hash) = 32),
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    mode          TEXT NOT NULL CHECK (mode IN ('cookie', 'token')),
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX oidc_pending_logins_by_created ON oidc_pending_logins(created_at);
"#,
    r#"
-- Which identity provider checks an account's logins (issue 13): local, ldap or oidc.
ALTER TABLE users ADD COLUMN auth_source TEXT NOT NULL DEFAULT 'local'
    CHECK (auth_source IN ('local', 'ldap', 'oidc'));
"#,
];

/// Runs the migrations that have not run yet.
pub(crate) fn run(client: &mut Client) -> StoreResult<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).map_err(map_err)?;
    let result = migrate(client);
    // Released however migrating ended; a lost connection releases it too.
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).map_err(map_err);
    result.and(unlocked.map(|_| ()))
}

fn migrate(client: &mut Client) -> StoreResult<()> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        .map_err(map_err)?;
    let done: i64 =
        client.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).map_err(map_err)?.get(0);
    if usize::try_from(done).unwrap_or(usize::MAX) > MIGRATIONS.len() {
        return Err(crate::internal(std::io::Error::other(
            "the database schema is newer than this binary: upgrade Rampart before starting it",
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(done).unwrap_or(0)) {
        let mut tx = client.transaction().map_err(map_err)?;
        tx.batch_execute(sql).map_err(map_err)?;
        let version = i64::try_from(i + 1).unwrap_or(i64::MAX);
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version]).map_err(map_err)?;
        tx.commit().map_err(map_err)?;
    }
    Ok(())
}
