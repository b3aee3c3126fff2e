//! audit.log lines: `parse_record_line`, `AuditCheckpoint::parse_line`, `ChainVerifier`
//! (both the database and the mirror flavour) over every record parsed, and `scan_mirror`
//! over the lines as audit.log would hold them.
//!
//! The first byte picks how records reach the verifiers, the rest is the text, one line each:
//! - 0: as parsed (their MACs are unforgeable, so this mostly tests refusal);
//! - 1: re-signed: the harness computes each record's MAC (and links a zero `prev_hash` to
//!   the previous record), so sequence, gap and repair logic is reached with valid MACs;
//! - 2: an honest chain of the parsed events (seq 1, 2, ...), which must verify.
//! In modes 1 and 2 `scan_mirror` reads the records as written back by `record_json` (and
//! checkpoints re-signed), so it too sees valid MACs.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rampart_core::audit::{parse_record_line, record_json, ChainVerifier};
use rampart_core::audit_anchor::scan_mirror;
use rampart_core::{AuditCheckpoint, AuditMirror, AuditRecord};
use rampart_crypto::AuditMacKey;

/// A random key per process: there is no public constructor from fixed bytes, and modes
/// 1 and 2 compute every MAC they need, so inputs reproduce under any key.
fn key() -> &'static AuditMacKey {
    static KEY: OnceLock<AuditMacKey> = OnceLock::new();
    KEY.get_or_init(|| rampart_crypto::DataKey::generate().audit_key())
}

/// audit.log held in memory.
struct Lines(Vec<String>);

impl AuditMirror for Lines {
    fn lines(&self) -> std::io::Result<Box<dyn Iterator<Item = std::io::Result<String>> + Send>> {
        Ok(Box::new(self.0.clone().into_iter().map(Ok)))
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let key = key();
    let mut db = ChainVerifier::new(key);
    let mut mirror = ChainVerifier::for_mirror(key);
    let (mut db_ok, mut mirror_ok) = (true, true);
    let mut prev = [0u8; 32];
    let mut count = 0i64;
    let mut log = Vec::new();
    // Whether every record reads back exactly from its `record_json` line (a timestamp
    // outside the years 0000-9999 in UTC, say, does not).
    let mut exact = true;
    for line in text.lines() {
        if let Some(mut r) = parse_record_line(line) {
            // What a record parsed from is what it writes back: its line parses again.
            let written = record_json(&r).to_string();
            let back = parse_record_line(&written);
            assert!(back.is_some(), "record_json output does not parse: {written}");
            exact &= back.as_ref() == Some(&r);
            match mode % 3 {
                0 => {}
                1 => {
                    if r.prev_hash == [0u8; 32] {
                        r.prev_hash = prev;
                    }
                    r.hash = key.chain(&r.prev_hash, &AuditRecord::canonical(r.seq, &r.event));
                }
                _ => {
                    count += 1;
                    r.seq = count;
                    r.prev_hash = prev;
                    r.hash = key.chain(&r.prev_hash, &AuditRecord::canonical(r.seq, &r.event));
                }
            }
            prev = r.hash;
            log.push(if mode % 3 == 0 { line.to_owned() } else { record_json(&r).to_string() });
            if db_ok {
                db_ok = db.push(&r).is_ok();
            }
            if mirror_ok {
                mirror_ok = mirror.push(&r).is_ok();
            }
            let _ = (db.last_seq(), db.repairs().len());
        } else if let Some(cp) = AuditCheckpoint::parse_line(line) {
            let _ = cp.verifies(key);
            let again = AuditCheckpoint::parse_line(&cp.to_json().to_string());
            assert!(again.is_some(), "checkpoint to_json output does not parse");
            let signed = AuditCheckpoint::sign(key, cp.seq, cp.hash, cp.at);
            assert!(signed.verifies(key), "a checkpoint signed with the key does not verify");
            log.push(if mode % 3 == 0 { line.to_owned() } else { signed.to_json().to_string() });
        } else if mode % 3 != 2 {
            log.push(line.to_owned());
        }
    }
    let scan = scan_mirror(key, &Lines(log)).expect("in-memory lines cannot fail");
    if mode % 3 == 2 && exact {
        assert!(scan.verdict.valid, "an honest audit.log did not verify: {:?}", scan.verdict);
    }
    if mode % 3 == 2 {
        assert!(db_ok && mirror_ok, "an honest chain did not verify");
    }
    let _ = mirror.finish_unanchored();
    if db_ok {
        let last = db.last_seq();
        let head = (last > 0).then(|| (last, prev, key.head_mac(last, &prev)));
        let verdict = db.finish(head);
        if mode % 3 == 2 {
            assert!(verdict.valid, "an honest chain with its head did not verify: {verdict:?}");
        }
    }
});
