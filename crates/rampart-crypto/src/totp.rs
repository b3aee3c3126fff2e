//! TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps) so every authenticator app works, and
//! single-use recovery codes stored as SHA-256 hashes.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha1::Sha1;
use sha2::{Digest, Sha256};

pub const STEP_SECS: i64 = 30;
const DIGITS: u32 = 6;
const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A shared TOTP secret (160 bits, as RFC 4226 recommends).
pub struct TotpSecret(SecretBox<[u8; 20]>);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buf = (buf << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(B32[((buf >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(B32[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

impl TotpSecret {
    pub fn generate() -> Self {
        Self(SecretBox::new(Box::new(crate::random_bytes::<20>())))
    }

    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        <[u8; 20]>::try_from(b).ok().map(|a| Self(SecretBox::new(Box::new(a))))
    }

    pub fn bytes(&self) -> &[u8; 20] {
        self.0.expose_secret()
    }

    /// The secret as authenticator apps take it (base32, no padding).
    pub fn base32(&self) -> String {
        base32(self.0.expose_secret())
    }

    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> String {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period=30",
            enc(issuer),
            enc(account),
            self.base32(),
            enc(issuer)
        )
    }

    /// The code for time step `step` (RFC 4226 dynamic truncation).
    pub fn code_at(&self, step: i64) -> String {
        #[allow(clippy::expect_used)] // HMAC takes keys of any length
        let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(self.0.expose_secret()).expect("HMAC takes any key length");
        mac.update(&step.to_be_bytes());
        let h = mac.finalize().into_bytes();
        let offset = usize::from(h[19] & 0x0f);
        let bin = (u32::from(h[offset] & 0x7f) << 24)
            | (u32::from(h[offset + 1]) << 16)
            | (u32::from(h[offset + 2]) << 8)
            | u32::from(h[offset + 3]);
        format!("{:06}", bin % 10u32.pow(DIGITS))
    }

    /// The time step `code` is valid for at `unix_secs`, allowing one step of clock skew.
    pub fn matching_step(&self, code: &str, unix_secs: i64) -> Option<i64> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let now = unix_secs.div_euclid(STEP_SECS);
        [now, now - 1, now + 1].into_iter().find(|s| {
            let expect = self.code_at(*s);
            crate::ct_eq(expect, code)
        })
    }
}

/// An SVG QR code of `text` (an otpauth:// URI) as a `data:` URI for an `<img>`.
pub fn qr_svg_data_uri(text: &str) -> Option<String> {
    use base64::Engine as _;
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let svg = code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build();
    Some(format!("data:image/svg+xml;base64,{}", base64::engine::general_purpose::STANDARD.encode(svg)))
}

/// Ten fresh recovery codes (16 base32 characters, 80 bits each) and their hashes.
pub fn recovery_codes() -> Vec<(String, [u8; 32])> {
    (0..10)
        .map(|_| {
            let code = base32(&crate::random_bytes::<10>());
            let pretty = format!("{}-{}-{}-{}", &code[0..4], &code[4..8], &code[8..12], &code[12..16]);
            let hash = recovery_code_hash(&pretty);
            (pretty, hash)
        })
        .collect()
}

/// Hash of a recovery code as typed (case, spaces and dashes do not matter).
pub fn recovery_code_hash(code: &str) -> [u8; 32] {
    let norm: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect();
    Sha256::digest(format!("rampart-recovery\0{norm}").as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_test_vectors() {
        // RFC 6238 appendix B, SHA-1 secret "12345678901234567890", 8-digit codes truncated to 6.
        let s = TotpSecret::from_bytes(b"12345678901234567890").expect("secret");
        for (t, code8) in
            [(59, "94287082"), (1_111_111_109, "07081804"), (1_234_567_890, "89005924"), (2_000_000_000, "69279037")]
        {
            assert_eq!(s.code_at(t / 30), code8[2..], "t={t}");
        }
    }

    #[test]
    fn skew_of_one_step_only() {
        let s = TotpSecret::generate();
        let now = 1_800_000_000;
        let step = now / 30;
        assert_eq!(s.matching_step(&s.code_at(step), now), Some(step));
        assert_eq!(s.matching_step(&s.code_at(step - 1), now), Some(step - 1));
        assert_eq!(s.matching_step(&s.code_at(step - 2), now), None);
        assert_eq!(s.matching_step("abcdef", now), None);
    }

    #[test]
    fn base32_and_uri() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let s = TotpSecret::from_bytes(&[0u8; 20]).expect("secret");
        assert!(s.otpauth_uri("Rampart", "a@b").starts_with("otpauth://totp/Rampart:a%40b?secret=AAAA"));
        let codes = recovery_codes();
        assert_eq!(codes.len(), 10);
        assert_eq!(recovery_code_hash(&codes[0].0.to_lowercase().replace('-', " ")), codes[0].1);
    }
}
