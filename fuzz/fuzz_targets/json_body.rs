//! Request bodies: the nesting limit, the duplicate-key-refusing parser, the SQL-injection
//! scan and typed parsing (`rampart_http::fuzz_parse_body`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(value) = rampart_http::fuzz_parse_body(data) else { return };
    assert!(depth(&value) <= 32, "accepted a body nested deeper than the limit");
    // Stricter than serde_json, never looser or different: it reads the same value.
    let plain: Value = serde_json::from_slice(data).expect("accepted a body serde_json refuses");
    assert_eq!(plain, value, "read a different value than serde_json");
    // What was accepted is accepted again after re-encoding, unchanged.
    let again = serde_json::to_vec(&value).expect("re-encode");
    assert_eq!(rampart_http::fuzz_parse_body(&again), Some(value), "re-encoded body not read back");
});
