//! `ExternalIdentityStore`: users linked to an OpenID Connect (issuer, subject), and the
//! pending logins of the authorization-code flow (shared by every node, so a callback may
//! land on another node than the start).

use async_trait::async_trait;
use rampart_store::{Audit, ExternalIdentity, ExternalIdentityStore, PendingLogin, StoreResult, UserRecord};
use rampart_types::{Timestamp, Username};

use crate::users::insert_user;
use crate::{map_err, parse_col, PostgresStore};

#[async_trait]
impl ExternalIdentityStore for PostgresStore {
    async fn create_pending_login(&self, login: PendingLogin, now: Timestamp, max: usize) -> StoreResult<()> {
        let max = i64::try_from(max).unwrap_or(i64::MAX).max(1);
        self.write(Vec::new(), move |tx| {
            tx.execute("DELETE FROM oidc_pending_logins WHERE expires_at <= $1", &[&now.as_millis()])
                .map_err(map_err)?;
            // Room for the new one: the oldest beyond `max - 1` go (two nodes at the cap
            // at once may each keep one more: the bound is approximate by that much).
            tx.execute(
                "DELETE FROM oidc_pending_logins WHERE state_hash IN (
                     SELECT state_hash FROM oidc_pending_logins ORDER BY created_at DESC, state_hash
                     OFFSET $1)",
                &[&(max - 1)],
            )
            .map_err(map_err)?;
            tx.execute(
                "INSERT INTO oidc_pending_logins
                     (state_hash, binding_hash, nonce, pkce_verifier, mode, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &login.state_hash.as_slice(),
                    &login.binding_hash.as_slice(),
                    &login.nonce,
                    &login.pkce_verifier,
                    &login.mode,
                    &login.created_at.as_millis(),
                    &login.expires_at.as_millis(),
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn take_pending_login(
        &self,
        state_hash: [u8; 32],
        binding_hash: [u8; 32],
    ) -> StoreResult<Option<PendingLogin>> {
        self.write(Vec::new(), move |tx| {
            let row = tx
                .query_opt(
                    "DELETE FROM oidc_pending_logins WHERE state_hash = $1 AND binding_hash = $2
                     RETURNING nonce, pkce_verifier, mode, created_at, expires_at",
                    &[&state_hash.as_slice(), &binding_hash.as_slice()],
                )
                .map_err(map_err)?;
            Ok(row.map(|r| PendingLogin {
                state_hash,
                binding_hash,
                nonce: r.get(0),
                pkce_verifier: r.get(1),
                mode: r.get(2),
                created_at: Timestamp::from_millis(r.get(3)),
                expires_at: Timestamp::from_millis(r.get(4)),
            }))
        })
        .await
    }

    async fn count_pending_logins(&self) -> StoreResult<u64> {
        self.read(|c| {
            let n: i64 = c.query_one("SELECT COUNT(*) FROM oidc_pending_logins", &[]).map_err(map_err)?.get(0);
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn get_external_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<ExternalIdentity>> {
        let (issuer, subject) = (issuer.to_owned(), subject.to_owned());
        self.read(move |c| {
            let row = c
                .query_opt(
                    "SELECT username, created_at FROM external_identities WHERE issuer = $1 AND subject = $2",
                    &[&issuer, &subject],
                )
                .map_err(map_err)?;
            row.map(|r| {
                Ok(ExternalIdentity {
                    issuer: issuer.clone(),
                    subject: subject.clone(),
                    username: parse_col(r.get(0), Username::parse)?,
                    created_at: Timestamp::from_millis(r.get(1)),
                })
            })
            .transpose()
        })
        .await
    }

    async fn create_external_user(
        &self,
        user: UserRecord,
        identity: ExternalIdentity,
        audit: Audit,
    ) -> StoreResult<()> {
        self.write(audit, move |tx| {
            insert_user(tx, &user)?;
            tx.execute(
                "INSERT INTO external_identities (issuer, subject, username, created_at) VALUES ($1, $2, $3, $4)",
                &[&identity.issuer, &identity.subject, &identity.username.as_str(), &identity.created_at.as_millis()],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }
}
