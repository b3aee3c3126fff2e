//! Device trust for the login delay (OWASP "device cookies"): a client that completed a
//! login for an account holds a signed device token, and the address it logged in from
//! is remembered for a while. Such clients get a failure budget of their own, so an
//! attacker's failures from elsewhere delay only untrusted clients, never the owner.

use rampart_crypto::random_bytes;
use rampart_types::Timestamp;
use secrecy::SecretString;

use super::Sessions;
use crate::{CoreResult, RequestMeta};

const DEVICE_PREFIX: &str = "rpd_";
/// How long a device token and a remembered address stay trusted.
pub const DEVICE_TRUST_SECS: i64 = 30 * 24 * 3600;

/// A parsed device token: `rpd_<device id>.<issued ms>.<mac>` (hex).
struct DeviceToken {
    id: [u8; 16],
    issued_ms: i64,
    mac: [u8; 32],
}

impl DeviceToken {
    fn parse(s: &str) -> Option<Self> {
        let body = s.strip_prefix(DEVICE_PREFIX)?;
        if body.len() > 160 {
            return None;
        }
        let mut parts = body.split('.');
        let id = hex::decode(parts.next()?).ok()?.try_into().ok()?;
        let issued_ms = i64::from_str_radix(parts.next()?, 16).ok()?;
        let mac = hex::decode(parts.next()?).ok()?.try_into().ok()?;
        parts.next().is_none().then_some(Self { id, issued_ms, mac })
    }

    fn render(&self) -> String {
        format!("{DEVICE_PREFIX}{}.{:x}.{}", hex::encode(self.id), self.issued_ms, hex::encode(self.mac))
    }
}

impl Sessions {
    /// The device id of `token` if it is a live token this server issued for `username`.
    fn trusted_device(&self, username: &str, token: Option<&str>, now: Timestamp) -> Option<[u8; 16]> {
        let t = DeviceToken::parse(token?)?;
        let fresh = t.issued_ms <= now.as_millis() && now.as_millis() - t.issued_ms < DEVICE_TRUST_SECS * 1000;
        let signed = rampart_crypto::ct_eq(self.device_key.sign(username, &t.id, t.issued_ms), t.mac);
        (fresh && signed).then_some(t.id)
    }

    /// The throttle bucket of a login attempt: the device's own, the remembered address's
    /// own, or the account's shared bucket for every untrusted client.
    pub(crate) async fn login_bucket(
        &self,
        username: &str,
        meta: &RequestMeta,
        device: Option<&str>,
    ) -> CoreResult<String> {
        let account = crate::audit::bounded(username);
        let now = self.now();
        if let Some(id) = self.trusted_device(&account, device, now) {
            return Ok(format!("device\0{account}\0{}", hex::encode(id)));
        }
        if let Some(ip) = meta.client_ip() {
            let since = now.minus_seconds(DEVICE_TRUST_SECS);
            if self.security_store.login_address_known(&account, &ip.to_string(), since).await? {
                return Ok(format!("address\0{account}\0{ip}"));
            }
        }
        Ok(format!("account\0{account}"))
    }

    /// After a completed login: remember the address and hand out a device token (the same
    /// device id again when the client already held a valid one).
    pub(crate) async fn trust_client(
        &self,
        username: &str,
        meta: &RequestMeta,
        device: Option<&str>,
    ) -> CoreResult<SecretString> {
        let now = self.now();
        if let Some(ip) = meta.client_ip() {
            let forget = now.minus_seconds(DEVICE_TRUST_SECS);
            self.security_store.remember_login_address(username, &ip.to_string(), now, forget).await?;
        }
        let id = self.trusted_device(username, device, now).unwrap_or_else(random_bytes::<16>);
        let issued_ms = now.as_millis();
        let mac = self.device_key.sign(username, &id, issued_ms);
        Ok(SecretString::from(DeviceToken { id, issued_ms, mac }.render()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_tokens_parse_strictly() {
        let t = DeviceToken { id: [7; 16], issued_ms: 1_700_000_000_000, mac: [9; 32] };
        let s = t.render();
        let back = DeviceToken::parse(&s).unwrap();
        assert_eq!((back.id, back.issued_ms, back.mac), (t.id, t.issued_ms, t.mac));
        for bad in ["", "rpd_", "rps_00.1.00", &format!("{s}.x"), &s.replace('.', "")] {
            assert!(DeviceToken::parse(bad).is_none(), "{bad}");
        }
    }
}
