//! Cryptographic building blocks: password hashing and policy, session tokens, the master
//! key and its derived purpose keys, blind indexes. No I/O and no clock.

mod keys;
mod password;
mod policy;
mod token;

pub use keys::{AuditMacKey, BlindIndexKey, KeyError, MasterKey, PurposeKey};
pub use password::{PasswordHashError, PasswordHasher, PasswordVerification, StoredPasswordHash};
pub use policy::{check_password_policy, PolicyViolation, MAX_BYTES as MAX_PASSWORD_BYTES};
pub use token::{random_bytes, random_password, SessionToken, TokenHash};
