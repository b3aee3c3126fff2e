//! Refresh-token families and JWT signing keys. A rotation locks the family's user row and
//! then the token's row (`FOR UPDATE`), so of two rotations of one token, on one node or
//! two, the second waits for the first to commit and then finds the token spent.

use async_trait::async_trait;
use postgres::Transaction;
use rampart_store::{
    Assurance, Audit, JwtKeyRecord, RefreshOutcome, RefreshRecord, SessionRecord, StoreResult, TokenStore,
};
use rampart_types::{FamilyId, SigningKeyId, Timestamp, Username};

use crate::{lock_user, map_err, must_exist, parse_col, PostgresStore};

/// How soon after its use a spent refresh token counts as the client racing itself (the
/// second use loses, nothing is revoked) rather than as a replay.
const CONCURRENT_USE_GRACE_MS: i64 = 5_000;

fn insert_refresh(tx: &mut Transaction<'_>, r: &RefreshRecord) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, family_id, session_id, username, created_at, expires_at, assurance)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &r.token_hash.as_slice(),
            &r.family_id.as_str(),
            &r.session_id.as_str(),
            &r.username.as_str(),
            &r.created_at.as_millis(),
            &r.expires_at.as_millis(),
            &r.assurance.as_i64(),
        ],
    )
    .map_err(must_exist)?;
    Ok(())
}

/// A refresh token's row as a rotation needs it.
struct Spent {
    family: String,
    session: String,
    username: Username,
    expires_at: i64,
    used_at: Option<i64>,
    revoked: bool,
    assurance: Assurance,
}

/// The token's row, locked; `None` when unknown. The user's row is locked first (the order
/// every change to sessions and refresh tokens follows), so the token's user is read once
/// before: a token never changes user.
fn lock_token(tx: &mut Transaction<'_>, old: &[u8]) -> StoreResult<Option<Spent>> {
    let Some(owner) =
        tx.query_opt("SELECT username FROM refresh_tokens WHERE token_hash = $1", &[&old]).map_err(map_err)?
    else {
        return Ok(None);
    };
    let owner: String = owner.get(0);
    if !lock_user(tx, &owner)? {
        // The user was deleted meanwhile, and the token with it.
        return Ok(None);
    }
    let row = tx
        .query_opt(
            "SELECT family_id, session_id, username, expires_at, used_at, revoked, assurance
             FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE",
            &[&old],
        )
        .map_err(map_err)?;
    row.map(|r| {
        Ok(Spent {
            family: r.get(0),
            session: r.get(1),
            username: parse_col(r.get(2), Username::parse)?,
            expires_at: r.get(3),
            used_at: r.get(4),
            revoked: r.get(5),
            assurance: Assurance::from_i64(r.get(6)),
        })
    })
    .transpose()
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn create_session_with_refresh(
        &self,
        s: SessionRecord,
        r: RefreshRecord,
        max_per_user: u32,
        audit: Audit,
    ) -> StoreResult<()> {
        self.write(audit, move |tx| {
            crate::sessions::insert_session(tx, &s, Some(r.family_id.as_str()), max_per_user)?;
            insert_refresh(tx, &r)
        })
        .await
    }

    async fn jwt_keys(&self) -> StoreResult<Vec<JwtKeyRecord>> {
        self.read(|c| {
            let rows = c
                .query(
                    r#"SELECT kid, sealed, public_key, created_at, retired_at FROM jwt_keys
                       ORDER BY created_at, kid COLLATE "C""#,
                    &[],
                )
                .map_err(map_err)?;
            Ok(rows
                .iter()
                .map(|r| JwtKeyRecord {
                    kid: SigningKeyId::from_stored(r.get(0)),
                    sealed: r.get(1),
                    public_key: r.get(2),
                    created_at: Timestamp::from_millis(r.get(3)),
                    retired_at: r.get::<_, Option<i64>>(4).map(Timestamp::from_millis),
                })
                .collect())
        })
        .await
    }

    async fn add_jwt_key(&self, key: JwtKeyRecord, now: Timestamp, audit: Audit) -> StoreResult<()> {
        self.write(audit, move |tx| {
            // Key additions on every node run one after another: each retires the key the
            // previous one added, so one key is current (the schema's unique index holds it).
            tx.execute("SELECT pg_advisory_xact_lock(hashtext('rampart:jwt_keys'))", &[]).map_err(map_err)?;
            tx.execute("UPDATE jwt_keys SET retired_at = $1 WHERE retired_at IS NULL", &[&now.as_millis()])
                .map_err(map_err)?;
            tx.execute(
                "INSERT INTO jwt_keys (kid, sealed, public_key, created_at) VALUES ($1, $2, $3, $4)",
                &[&key.kid.as_str(), &key.sealed, &key.public_key, &key.created_at.as_millis()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn rotate_refresh(
        &self,
        old: [u8; 32],
        new: RefreshRecord,
        session: SessionRecord,
        now: Timestamp,
        max_per_user: u32,
        audit: Audit,
    ) -> StoreResult<RefreshOutcome> {
        self.write(audit, move |tx| {
            let Some(spent) = lock_token(tx, old.as_slice())? else {
                return Ok(RefreshOutcome::Invalid);
            };
            let Spent { family, session: old_session, username, expires_at, used_at, revoked, assurance } = spent;
            // The same token presented twice within moments is a client racing itself (two
            // tabs, a retry): the second loses, nothing is revoked. Later, it is a replay.
            if used_at.is_some_and(|t| now.as_millis() - t < CONCURRENT_USE_GRACE_MS) && !revoked {
                return Ok(RefreshOutcome::Invalid);
            }
            if revoked && used_at.is_none() {
                // Ended by logout or revocation, never spent: refuse, nothing to escalate.
                return Ok(RefreshOutcome::Invalid);
            }
            if used_at.is_some() {
                // A spent token came back: someone holds a stolen copy. End the family.
                tx.execute("UPDATE refresh_tokens SET revoked = TRUE WHERE family_id = $1", &[&family])
                    .map_err(map_err)?;
                tx.execute("DELETE FROM sessions WHERE family_id = $1", &[&family]).map_err(map_err)?;
                return Ok(RefreshOutcome::Reused { username, family_id: FamilyId::from_stored(family) });
            }
            if expires_at <= now.as_millis() {
                return Ok(RefreshOutcome::Invalid);
            }
            tx.execute(
                "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1",
                &[&old.as_slice(), &now.as_millis()],
            )
            .map_err(map_err)?;
            tx.execute("DELETE FROM sessions WHERE id = $1", &[&old_session]).map_err(map_err)?;
            // The new pair belongs to the family's user, keeps the assurance of the login
            // that started the family, and the family keeps its absolute lifetime: rotation
            // never extends or upgrades it.
            let session = SessionRecord { username: username.clone(), assurance, ..session };
            crate::sessions::insert_session(tx, &session, Some(&family), max_per_user)?;
            let new = RefreshRecord {
                family_id: FamilyId::from_stored(family.clone()),
                username: username.clone(),
                expires_at: Timestamp::from_millis(expires_at),
                assurance,
                ..new
            };
            insert_refresh(tx, &new)?;
            Ok(RefreshOutcome::Rotated { username, family_id: FamilyId::from_stored(family), assurance })
        })
        .await
    }
}
