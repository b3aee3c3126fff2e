//! The chunked backup stream reader (`read_stream_header`, `decrypt_stream`) under a fixed
//! key. It must never panic, and it must refuse every change to a genuine stream.
//!
//! Input: first byte even: the rest is a backup file as read from disk. First byte odd:
//! `action u8, position u32 LE, byte u8, repeat u8, plaintext...`: the plaintext (repeated
//! `repeat + 1` times, so streams span several 64 KiB chunks) is encrypted with the fixed
//! key, then changed as `action` says, then read back.
#![no_main]

use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [0x5a; 32];

fn decrypt(bytes: &[u8]) -> (Result<rampart_crypto::StreamSummary, rampart_crypto::StreamError>, Vec<u8>) {
    let mut out = Vec::new();
    let result = rampart_crypto::decrypt_stream(&KEY, bytes, &mut out, |_| {});
    (result, out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 0 {
        let header = rampart_crypto::read_stream_header(rest).map(|h| h.key_id.len());
        let (result, out) = decrypt(rest);
        if header.is_err() {
            assert!(result.is_err(), "decrypted a stream whose header does not parse");
        }
        if let Ok(s) = result {
            assert_eq!(s.plaintext_bytes, out.len() as u64);
            assert_eq!(s.ciphertext_bytes, rest.len() as u64);
        }
        return;
    }
    if rest.len() < 7 {
        return;
    }
    let (action, pos, byte, repeat) =
        (rest[0], u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize, rest[5], rest[6]);
    let plain: Vec<u8> = rest[7..].repeat(usize::from(repeat % 64) + 1);
    let mut stream = Vec::new();
    rampart_crypto::encrypt_stream(&KEY, "fuzz-key", plain.as_slice(), &mut stream, |_| {}).expect("encrypt");
    let at = pos % (stream.len() + 1);
    let changed = match action % 4 {
        0 => false,
        1 if byte != 0 && at < stream.len() => {
            stream[at] ^= byte;
            true
        }
        2 if at < stream.len() => {
            stream.truncate(at);
            true
        }
        3 => {
            stream.insert(at, byte);
            true
        }
        _ => false,
    };
    let (result, out) = decrypt(&stream);
    if changed {
        assert!(result.is_err(), "a changed stream decrypted (action {action}, at {at})");
    } else {
        let s = result.expect("a genuine stream must decrypt");
        assert_eq!(out, plain);
        assert_eq!(s.ciphertext_bytes, stream.len() as u64);
        let header = rampart_crypto::read_stream_header(stream.as_slice()).expect("genuine header");
        assert_eq!(header.key_id, "fuzz-key");
    }
});
