//! The wire formats of a data-subject export (GDPR art. 20): JSON, CSV and XML, written a
//! page at a time. Values are the subject's own data and may be hostile to whatever opens
//! the file: CSV cells that a spreadsheet would run as a formula are defused, XML text is
//! escaped and characters XML cannot carry are replaced. Each format ends with the record
//! count, so a cut-off download is visible.

use rampart_core::{ExportHeader, ExportRecord};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExportFormat {
    Json,
    Csv,
    Xml,
}

impl ExportFormat {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Self::Json),
            "csv" => Some(Self::Csv),
            "xml" => Some(Self::Xml),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Xml => "xml",
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Csv => "text/csv; charset=utf-8",
            Self::Xml => "application/xml; charset=utf-8",
        }
    }

    /// Everything before the first record.
    pub(crate) fn start(self, h: &ExportHeader) -> String {
        match self {
            Self::Json => {
                let head = json!({ "export_id": h.export_id, "subject_id": h.subject_id, "generated_at": h.generated_at,
                    "format_version": 1 });
                // The object without its closing brace, then the records array opens.
                let mut s = head.to_string();
                s.pop();
                s.push_str(",\"records\":[");
                s
            }
            Self::Csv => {
                let mut s = String::new();
                csv_row(
                    &mut s,
                    &["section", "collection", "document_id", "version", "created_at", "updated_at", "field", "value"],
                );
                let at = h.generated_at.to_rfc3339();
                csv_row(&mut s, &["export", "", &h.export_id, "1", &at, "", "subject_id", h.subject_id.as_str()]);
                s
            }
            Self::Xml => {
                let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<export");
                attr(&mut s, "export_id", &h.export_id);
                attr(&mut s, "subject_id", h.subject_id.as_str());
                attr(&mut s, "generated_at", &h.generated_at.to_rfc3339());
                attr(&mut s, "format_version", "1");
                s.push_str(">\n<records>\n");
                s
            }
        }
    }

    /// A page of records; `written` is how many came before it.
    pub(crate) fn records(self, written: u64, page: &[ExportRecord]) -> String {
        let mut s = String::new();
        for (i, r) in page.iter().enumerate() {
            match self {
                Self::Json => {
                    if written > 0 || i > 0 {
                        s.push(',');
                    }
                    s.push_str(&json!(r).to_string());
                }
                Self::Csv => {
                    let (version, created, updated) =
                        (r.version.to_string(), r.created_at.to_rfc3339(), r.updated_at.to_rfc3339());
                    for (path, leaf) in leaves(&r.data) {
                        let value = leaf.text();
                        csv_row(
                            &mut s,
                            &[
                                "record",
                                r.collection.as_str(),
                                r.id.as_str(),
                                &version,
                                &created,
                                &updated,
                                &path,
                                &value,
                            ],
                        );
                    }
                }
                Self::Xml => {
                    s.push_str("<record");
                    attr(&mut s, "collection", r.collection.as_str());
                    attr(&mut s, "id", r.id.as_str());
                    attr(&mut s, "version", &r.version.to_string());
                    attr(&mut s, "created_at", &r.created_at.to_rfc3339());
                    attr(&mut s, "updated_at", &r.updated_at.to_rfc3339());
                    s.push_str(">\n");
                    for (path, leaf) in leaves(&r.data) {
                        s.push_str("  <field");
                        attr(&mut s, "path", &path);
                        attr(&mut s, "type", leaf.type_name());
                        s.push('>');
                        xml_escape(&mut s, &leaf.text());
                        s.push_str("</field>\n");
                    }
                    s.push_str("</record>\n");
                }
            }
        }
        s
    }

    /// Consent, opt-outs and the record count, after the last record.
    pub(crate) fn end(self, h: &ExportHeader, count: u64) -> String {
        match self {
            Self::Json => {
                let tail = json!({ "record_count": count, "consent": h.consent, "do_not_sell": h.do_not_sell,
                    "opt_outs": h.opt_outs });
                // `],` then the tail object's members and its closing brace.
                let tail = tail.to_string();
                format!("],{}", tail.get(1..).unwrap_or("}"))
            }
            Self::Csv => {
                let mut s = String::new();
                for c in &h.consent {
                    let state = if c.granted { "granted" } else { "withdrawn" };
                    let (given, recorded) = (c.timestamp.to_rfc3339(), c.recorded_at.to_rfc3339());
                    csv_row(&mut s, &["consent", "", &c.consent_id, "", &given, &recorded, &c.purpose, state]);
                }
                for o in &h.opt_outs {
                    let at = o.created_at.to_rfc3339();
                    let value = format!("{} from {} ({})", o.status, o.effective_date, o.confirmation_number);
                    csv_row(&mut s, &["opt_out", "", &o.opt_out_id, "", &at, "", &o.opt_out_type, &value]);
                }
                csv_row(
                    &mut s,
                    &["ccpa", "", "", "", "", "", "do_not_sell", if h.do_not_sell { "true" } else { "false" }],
                );
                csv_row(&mut s, &["end", "", "", "", "", "", "record_count", &count.to_string()]);
                s
            }
            Self::Xml => {
                let mut s = String::from("</records>\n<consents>\n");
                for c in &h.consent {
                    s.push_str("  <consent");
                    attr(&mut s, "consent_id", &c.consent_id);
                    attr(&mut s, "purpose", &c.purpose);
                    attr(&mut s, "granted", if c.granted { "true" } else { "false" });
                    attr(&mut s, "timestamp", &c.timestamp.to_rfc3339());
                    attr(&mut s, "recorded_at", &c.recorded_at.to_rfc3339());
                    s.push_str("/>\n");
                }
                s.push_str("</consents>\n<ccpa");
                attr(&mut s, "do_not_sell", if h.do_not_sell { "true" } else { "false" });
                s.push_str(">\n");
                for o in &h.opt_outs {
                    s.push_str("  <opt_out");
                    attr(&mut s, "opt_out_id", &o.opt_out_id);
                    attr(&mut s, "type", &o.opt_out_type);
                    attr(&mut s, "status", &o.status);
                    attr(&mut s, "effective_date", &o.effective_date);
                    attr(&mut s, "confirmation_number", &o.confirmation_number);
                    s.push_str("/>\n");
                }
                s.push_str("</ccpa>\n<record_count>");
                s.push_str(&count.to_string());
                s.push_str("</record_count>\n</export>\n");
                s
            }
        }
    }
}

/// A scalar of a document, at its JSON Pointer (RFC 6901) path.
enum Leaf<'a> {
    Scalar(&'a Value),
    /// An empty object or array (it has no leaves of its own).
    Empty(&'static str),
}

impl Leaf<'_> {
    fn text(&self) -> String {
        match self {
            Leaf::Scalar(Value::String(s)) => s.clone(),
            Leaf::Scalar(v) => v.to_string(),
            Leaf::Empty(s) => (*s).to_owned(),
        }
    }
    fn type_name(&self) -> &'static str {
        match self {
            Leaf::Scalar(Value::String(_)) => "string",
            Leaf::Scalar(Value::Number(_)) => "number",
            Leaf::Scalar(Value::Bool(_)) => "boolean",
            Leaf::Scalar(Value::Null) => "null",
            Leaf::Empty("{}") => "object",
            _ => "array",
        }
    }
}

fn leaves(v: &Value) -> Vec<(String, Leaf<'_>)> {
    fn walk<'a>(path: &mut String, v: &'a Value, out: &mut Vec<(String, Leaf<'a>)>) {
        let len = path.len();
        match v {
            Value::Object(o) if !o.is_empty() => {
                for (k, child) in o {
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    walk(path, child, out);
                    path.truncate(len);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for (i, child) in a.iter().enumerate() {
                    path.push('/');
                    path.push_str(&i.to_string());
                    walk(path, child, out);
                    path.truncate(len);
                }
            }
            Value::Object(_) => out.push((path.clone(), Leaf::Empty("{}"))),
            Value::Array(_) => out.push((path.clone(), Leaf::Empty("[]"))),
            scalar => out.push((path.clone(), Leaf::Scalar(scalar))),
        }
    }
    let mut out = Vec::new();
    walk(&mut String::new(), v, &mut out);
    out
}

/// A text cell a spreadsheet would evaluate (`=`, `+`, `-`, `@`, or a tab or carriage
/// return, also after leading blanks) gets a leading `'` so it stays text (OWASP CSV
/// injection).
fn defuse(s: &str) -> String {
    let first = s.trim_start_matches([' ', '\u{a0}']).chars().next();
    let risky = matches!(
        first,
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\n' | '\u{ff1d}' | '\u{ff0b}' | '\u{ff0d}' | '\u{ff20}')
    );
    if risky {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

/// One RFC 4180 row, every cell quoted and defused: any cell may hold client text (a subject
/// id, a document id, a field name), so none is trusted to be formula-free.
fn csv_row(out: &mut String, cells: &[&str]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(&defuse(c).replace('"', "\"\""));
        out.push('"');
    }
    out.push_str("\r\n");
}

/// Escapes text for XML content or a quoted attribute. Whitespace controls become
/// character references (attribute normalisation would eat them); characters XML 1.0
/// cannot carry at all become U+FFFD.
fn xml_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}' => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
}

fn attr(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    xml_escape(out, value);
    out.push('"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn csv_cells_that_would_run_as_formulas_stay_text() {
        for hostile in ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "  =1", "\u{ff1d}1+1"] {
            let d = defuse(hostile);
            assert!(d.starts_with('\''), "{hostile:?} -> {d:?}");
        }
        for fine in ["hello", "a=b", "1-2", ""] {
            assert_eq!(defuse(fine), fine);
        }
        let mut row = String::new();
        csv_row(&mut row, &["a\"b", "c,d", "e\r\nf", "=1+1", "-3"]);
        assert_eq!(row, "\"a\"\"b\",\"c,d\",\"e\r\nf\",\"'=1+1\",\"'-3\"\r\n", "every cell, numbers too");
    }

    #[test]
    fn xml_text_is_escaped_and_unrepresentable_characters_replaced() {
        let mut s = String::new();
        xml_escape(&mut s, "<a href=\"x\">&amp;</a>'\u{0}\u{1b}\n]]>");
        assert_eq!(s, "&lt;a href=&quot;x&quot;&gt;&amp;amp;&lt;/a&gt;&apos;\u{FFFD}\u{FFFD}&#xA;]]&gt;");
    }

    #[test]
    fn leaves_are_named_by_unambiguous_json_pointers() {
        let v = json!({"a": {"b/c": 1, "d~e": [true, null]}, "f": {}, "g": []});
        let got: Vec<(String, String)> = leaves(&v).into_iter().map(|(p, l)| (p, l.text())).collect();
        let want = [("/a/b~1c", "1"), ("/a/d~0e/0", "true"), ("/a/d~0e/1", "null"), ("/f", "{}"), ("/g", "[]")];
        assert_eq!(got, want.map(|(a, b)| (a.to_owned(), b.to_owned())));
    }
}
