/// A refused password, naming the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PolicyViolation {
    /// Stable machine-readable rule name: `min_length`, `max_length`, `uppercase`, ...
    pub rule: &'static str,
    pub message: &'static str,
}

pub const MIN_CHARS: usize = 12;
pub const MAX_BYTES: usize = 1024;
/// zxcvbn score (0-4) a password must reach.
const MIN_STRENGTH: u8 = 3;
/// zxcvbn's matching is superlinear in length; its authors advise estimating on a prefix.
const ESTIMATE_PREFIX_CHARS: usize = 100;

fn violation(rule: &'static str, message: &'static str) -> PolicyViolation {
    PolicyViolation { rule, message }
}

/// Checks SPEC section 4's policy. Order is cheapest first so huge inputs stop early.
pub fn check_password_policy(password: &str, username: &str) -> Result<(), PolicyViolation> {
    if password.len() > MAX_BYTES {
        return Err(violation("max_length", "password must be at most 1024 bytes"));
    }
    if password.chars().count() < MIN_CHARS {
        return Err(violation("min_length", "password must be at least 12 characters"));
    }
    if !password.chars().any(char::is_uppercase) {
        return Err(violation("uppercase", "password must contain an upper-case letter"));
    }
    if !password.chars().any(char::is_lowercase) {
        return Err(violation("lowercase", "password must contain a lower-case letter"));
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        return Err(violation("digit", "password must contain a digit"));
    }
    if !password.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace()) {
        return Err(violation("symbol", "password must contain a symbol"));
    }
    if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
        return Err(violation("contains_username", "password must not contain the username"));
    }
    let prefix: String = password.chars().take(ESTIMATE_PREFIX_CHARS).collect();
    let score: u8 = zxcvbn::zxcvbn(&prefix, &[username, "rampart"]).score().into();
    if score < MIN_STRENGTH {
        return Err(violation("too_common", "password is too easy to guess (common password or pattern)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pw: &str, user: &str) -> Option<&'static str> {
        check_password_policy(pw, user).err().map(|v| v.rule)
    }

    #[test]
    fn each_rule_is_enforced_and_named() {
        assert_eq!(rule("Sh0rt!", "bob"), Some("min_length"));
        assert_eq!(rule(&format!("Aa1!{}", "x".repeat(1021)), "bob"), Some("max_length"));
        assert_eq!(rule("all-lower-case-42!", "bob"), Some("uppercase"));
        assert_eq!(rule("ALL-UPPER-CASE-42!", "bob"), Some("lowercase"));
        assert_eq!(rule("No-Digits-Here-At-All!", "bob"), Some("digit"));
        assert_eq!(rule("NoSymbolsHere4242x", "bob"), Some("symbol"));
        assert_eq!(rule("Xy9!margaretlowell#Q", "margaretlowell"), Some("contains_username"));
        assert_eq!(rule("Password123!", "bob"), Some("too_common"));
        assert_eq!(rule("Qwerty123456!", "bob"), Some("too_common"));
        assert_eq!(rule("Tr0ub4dor&3-staple-Vivid", "bob"), None);
    }

    #[test]
    fn exactly_1024_bytes_is_allowed_length_wise() {
        let pw = format!("Aa1!{}", "kq7Zp!x".repeat(146));
        let pw: String = pw.chars().take(1024).collect();
        assert_eq!(pw.len(), 1024);
        assert_ne!(rule(&pw, "bob"), Some("max_length"));
    }
}
