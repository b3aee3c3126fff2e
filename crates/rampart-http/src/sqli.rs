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
    if input.len() < 2 || input.len() > MAX_INSPECTED {
        return None;
    }
    let r = libinjectionrs::detect_sqli(input.as_bytes());
    r.is_injection().then(|| r.fingerprint.map(|f| f.to_string()).unwrap_or_default())
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
}
