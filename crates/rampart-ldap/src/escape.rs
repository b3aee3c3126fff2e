//! Escaping of values put into LDAP strings: RFC 4515 for search filters, RFC 4514 for DN
//! attribute values. A login name only ever reaches the directory through `filter_value`.

use std::fmt::Write;

/// A value for an RFC 4515 filter assertion: `*`, `(`, `)`, `\` and NUL (the characters the
/// RFC requires escaping), and every other control character, become `\XX`. Anything else,
/// UTF-8 included, stays as it is.
pub fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '*' | '(' | ')' | '\\') || c.is_ascii_control() {
            let _ = write!(out, "\\{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// An RFC 4514 attribute value for a DN: `"`, `+`, `,`, `;`, `<`, `=`, `>`, `\`, NUL and
/// other control characters become `\XX`, as do a leading space or `#` and a trailing space.
pub fn dn_value(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, '"' | '+' | ',' | ';' | '<' | '=' | '>' | '\\') || c.is_ascii_control();
        let edge = (i == 0 && matches!(c, ' ' | '#')) || (i == last && c == ' ');
        if special || edge {
            let _ = write!(out, "\\{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// `template` with each `(placeholder, value)` replaced by the filter-escaped value. The
/// template is scanned once, so a value that contains a placeholder is not expanded again.
pub fn fill_filter(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    'scan: while !rest.is_empty() {
        for (name, value) in values {
            if let Some(after) = rest.strip_prefix(name) {
                out.push_str(&filter_value(value));
                rest = after;
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Undoes `\XX` escapes; `None` when a `\` is not followed by two hex digits.
    fn unescape(s: &str) -> Option<String> {
        let mut bytes = Vec::new();
        let mut it = s.bytes();
        while let Some(b) = it.next() {
            if b == b'\\' {
                let hex = [it.next()?, it.next()?];
                bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            } else {
                bytes.push(b);
            }
        }
        String::from_utf8(bytes).ok()
    }

    fn samples() -> Vec<String> {
        let mut out: Vec<String> = (0u32..0x80).filter_map(char::from_u32).map(|c| format!("a{c}b")).collect();
        out.extend(
            [
                "*)(uid=*))(|(uid=*",
                "*",
                "admin)(|(objectClass=*)",
                "\\2a",
                "a\0b",
                " #lead",
                "trail ",
                "cn=x,dc=y",
                "ünïcødé ☃",
                "",
                "{username}",
                "(&)",
            ]
            .map(str::to_owned),
        );
        out
    }

    #[test]
    fn filter_values_carry_no_filter_syntax_and_round_trip() {
        for s in samples() {
            let e = filter_value(&s);
            assert!(!e.contains(['*', '(', ')', '\0']), "{s:?} -> {e:?}");
            assert!(!e.chars().any(|c| c.is_ascii_control()), "{s:?} -> {e:?}");
            // Every backslash left starts an escape: the value cannot end an assertion early.
            assert_eq!(unescape(&e).as_deref(), Some(s.as_str()), "{s:?} -> {e:?}");
        }
        assert_eq!(filter_value("*)(uid=*))(|(uid=*"), "\\2a\\29\\28uid=\\2a\\29\\29\\28|\\28uid=\\2a");
        assert_eq!(filter_value("alice"), "alice");
    }

    #[test]
    fn dn_values_escape_every_rfc4514_special_and_round_trip() {
        for s in samples() {
            let e = dn_value(&s);
            assert!(!e.contains(['"', '+', ',', ';', '<', '=', '>', '\0']), "{s:?} -> {e:?}");
            assert!(!e.starts_with([' ', '#']) && !e.ends_with(' '), "{s:?} -> {e:?}");
            assert_eq!(unescape(&e).as_deref(), Some(s.as_str()), "{s:?} -> {e:?}");
        }
        assert_eq!(dn_value("a,b=c"), "a\\2cb\\3dc");
        assert_eq!(dn_value(" x "), "\\20x\\20");
    }

    #[test]
    fn templates_are_filled_once_with_escaped_values() {
        let f = fill_filter("(&(objectClass=inetOrgPerson)(uid={username}))", &[("{username}", "*)(uid=*")]);
        assert_eq!(f, "(&(objectClass=inetOrgPerson)(uid=\\2a\\29\\28uid=\\2a))");
        // A value naming another placeholder is not expanded a second time.
        let g = fill_filter("(|(member={dn})(memberUid={username}))", &[("{dn}", "{username}"), ("{username}", "bob")]);
        assert_eq!(g, "(|(member={username})(memberUid=bob))");
        let dn = fill_filter("(member={dn})", &[("{dn}", "uid=a\\2cb,ou=people,dc=x")]);
        assert_eq!(dn, "(member=uid=a\\5c2cb,ou=people,dc=x)");
    }
}
