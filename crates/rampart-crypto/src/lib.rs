//! Cryptographic building blocks: password hashing and policy, session tokens, the master
//! key and its derived purpose keys, blind indexes. No I/O and no clock.

mod hierarchy;
mod jwt;
mod keys;
mod legacy;
mod password;
mod policy;
mod report;
mod stream;
mod token;
mod totp;

pub use hierarchy::{DataKey, Kek};
pub use jwt::{generate_jwt_key, jwk_x, JwtKeyError, JwtSigner};
pub use keys::{
    verify_webhook_signature, webhook_signature, webhook_signatures, AuditMacKey, BlindIndexKey, DeviceKey, KeyError,
    MasterKey, PurposeKey,
};
pub use legacy::{classify_imported_hash, HashScheme, ImportHashError};
pub use password::{PasswordHashError, PasswordHasher, PasswordVerification, StoredPasswordHash};
pub use policy::{
    check_password_policy, PolicyViolation, MAX_BYTES as MAX_PASSWORD_BYTES, MIN_CHARS as MIN_PASSWORD_CHARS,
};
pub use report::{
    canonical_json, jwk_public_key, report_digest, report_kid, verify_report_signature, ReportKeyError, ReportSigner,
    REPORT_KID_PREFIX, REPORT_SIGNING_CONTEXT,
};
pub use stream::{
    decrypt_stream, encrypt_stream, nonce_for, read_stream_header, AeadError, OpenError, SealingKey, StreamError,
    StreamHeader, StreamSummary,
};
/// The one constant-time comparison for secrets and MACs (lengths may differ; a length
/// mismatch is not secret).
pub fn ct_eq(a: impl AsRef<[u8]>, b: impl AsRef<[u8]>) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_ref(), b.as_ref()).into()
}

pub use token::{new_id, random_bytes, random_id, random_password, SessionToken, TokenHash};
pub use totp::{qr_svg_data_uri, recovery_code_hash, recovery_codes, TotpSecret, STEP_SECS as TOTP_STEP_SECS};
