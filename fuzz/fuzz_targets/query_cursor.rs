//! The document list query string (`limit`, `cursor`, `subject_id`, field filters) as the
//! list handler decodes and maps it (`rampart_http::fuzz_list_query`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let Some(p) = rampart_http::fuzz_list_query(query) else { return };
    assert!(p.filters.len() <= 16, "more than 16 filters accepted");
    for (k, _) in &p.filters {
        assert!(!matches!(k.as_str(), "limit" | "cursor" | "subject_id"), "reserved name {k:?} taken as a filter");
    }
});
