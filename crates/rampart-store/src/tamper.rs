//! What tamper tests do to a database behind the store's back, named once for every backend
//! (each backend's `tamper` module applies them). Compiled only with the `tamper` feature,
//! which only dev-dependencies enable.

/// Ways to edit the audit table behind the chain's back.
#[derive(Debug, Clone)]
pub enum AuditEdit {
    /// New details for one record.
    ChangeDetails(i64),
    /// A new client address for one record.
    ChangeIp(i64, String),
    Remove(i64),
    /// Two records trade places.
    Swap(i64, i64),
    /// A copy of the record before `seq`, as user `mallory`, inserted at `seq` (later
    /// records move up).
    InsertAt(i64),
    /// Every record from `seq` on is deleted.
    TruncateFrom(i64),
    /// The user is changed and the hash replaced by the previous one.
    Forge(i64),
    /// The signed head is deleted.
    RemoveHead,
}
