//! `rampart.toml`: the TOML parse into the file layer and the checks `Config::load` makes
//! (`rampart_config::fuzz_parse_config`, no environment, no file access).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = rampart_config::fuzz_parse_config(text);
    }
});
