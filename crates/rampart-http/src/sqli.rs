//! SQL-injection attempts in input, classified by libinjection (a maintained detector, via
//! its Rust port), reported to breach detection. Detection only: nothing Rampart does
//! concatenates input into SQL, so the request itself is answered as usual.

use serde_json::Value;

/// Longest single value inspected; attackers' payloads are short, and this keeps the cost
/// per request bounded.
const MAX_INSPECTED: usize = 4096;
/// Most JSON string values inspected per body.
const MAX_VALUES: usize = 256;

/// The libinjection fingerprint of `input` if it looks like SQL injection.
pub(crate) fn check(input: &str) -> Option<String> {
    if input.len() < 2 || input.len() > MAX_INSPECTED || cannot_carry_sql(input) {
        return None;
    }
    let r = libinjectionrs::detect_sqli(input.as_bytes());
    r.is_injection().then(|| r.fingerprint.map(|f| f.to_string()).unwrap_or_default())
}

/// A bare word (letters, digits, `_`) or a UUID, the shapes of collection names and
/// document ids: no quote, space, operator or comment marker, so no SQL can hide in it, and
/// the tokenizer's cost is skipped on the hot read path.
fn cannot_carry_sql(input: &str) -> bool {
    let bytes = input.as_bytes();
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let uuid = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    uuid || bytes.iter().all(word)
}

/// The first suspicious string value in a JSON document, with its location.
pub(crate) fn check_json(v: &Value) -> Option<(String, String)> {
    let mut stack = vec![("$".to_owned(), v)];
    let mut seen = 0;
    while let Some((path, v)) = stack.pop() {
        match v {
            Value::String(s) => {
                seen += 1;
                if let Some(fp) = check(s) {
                    return Some((path, fp));
                }
                if seen >= MAX_VALUES {
                    return None;
                }
            }
            Value::Array(items) => stack.extend(items.iter().enumerate().map(|(i, x)| (format!("{path}[{i}]"), x))),
            Value::Object(map) => stack.extend(map.iter().map(|(k, x)| (format!("{path}.{k}"), x))),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_injections_are_flagged_and_ordinary_text_is_not() {
        for bad in ["' OR '1'='1' --", "1 UNION SELECT password FROM users", "1; DROP TABLE users--"] {
            assert!(check(bad).is_some(), "{bad}");
        }
        for ok in ["alice@example.com", "O'Brien", "hello world", "2026-01-01", "Main St. 5"] {
            assert!(check(ok).is_none(), "{ok}");
        }
        let doc = serde_json::json!({"a": {"b": ["fine", "x' OR 1=1 --"]}});
        assert_eq!(check_json(&doc).map(|(p, _)| p), Some("$.a.b[1]".to_owned()));
    }

    #[test]
    fn words_and_uuids_are_not_scanned_but_anything_with_sql_syntax_is() {
        for plain in ["bench", "orders_2026", "5c606b59-6999-4558-8565-0229dc0b7e50", "UNION"] {
            assert!(cannot_carry_sql(plain), "{plain}");
        }
        for suspicious in ["1 OR 1=1", "x'--", "5c606b59-6999-4558-8565-0229dc0b7e5'", "a-b", "1;DROP"] {
            assert!(!cannot_carry_sql(suspicious), "{suspicious}");
        }
        // A value of UUID length with SQL in it is still inspected and flagged.
        assert!(check("1' OR '1'='1' -- 0123456789abcd").is_some());
    }
}
