//! Streaming authenticated encryption for backups, plus a one-shot record sealer.
//!
//! # Backup stream format (version 1)
//!
//! ```text
//! header := "RAMPART-BACKUP\0"            magic, 15 bytes
//!           version            u8         = 1
//!           alg_len u8, alg    bytes      = "AES-256-GCM-STREAM"
//!           key_id_len u8, key_id         UTF-8, at most 64 bytes, no control characters
//!           chunk_size         u32 BE     plaintext bytes per non-final chunk (64 KiB)
//!           nonce_prefix       [u8; 7]    random per stream
//! chunk  := ct_len u32 BE, ciphertext || tag(16)
//! ```
//!
//! Chunk `i` is sealed with AES-256-GCM under nonce `prefix || i (u32 BE) || last (u8)` and
//! with the whole header as AAD (the STREAM construction of Hoang, Reyhanitabar, Rogaway and
//! Vizár). Binding the index catches reordering, duplication and splicing; binding the
//! `last` flag catches truncation at a chunk boundary; binding the header catches any edit
//! of it. Every non-final chunk carries exactly `chunk_size` plaintext bytes and the final
//! one carries fewer (possibly zero), so the `last` flag is implied by the length prefix and
//! the decryptor never has to guess or look ahead.
//!
//! AES-GCM is not key-committing and the header carries no key check value, so a wrong key
//! is indistinguishable from a damaged first chunk (or a damaged header field that only the
//! AAD covers): any authentication failure of chunk 0 is reported as
//! [`StreamError::WrongKey`], later ones as [`StreamError::Corrupt`].
//!
//! The 56-bit random prefix is the only thing separating two streams under the same key,
//! so after about 2^20 streams per key the chance of a prefix collision (and thus of GCM
//! nonce reuse) reaches roughly 2^-17; rotate backup keys well before that.

use std::io::{self, Read, Write};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

use crate::token::random_bytes;

const MAGIC: &[u8; 15] = b"RAMPART-BACKUP\0";
const FORMAT_VERSION: u8 = 1;
const ALGORITHM: &str = "AES-256-GCM-STREAM";
const MAX_KEY_ID_BYTES: usize = 64;
const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
/// Upper bound on any length read from a stream, so a hostile file cannot make us allocate.
const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
const PREFIX_LEN: usize = 7;
const TAG_LEN: usize = 16;

/// Why a backup stream could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("not a Rampart backup stream: {0}")]
    BadHeader(String),
    #[error("backup is truncated: the final chunk is missing")]
    Truncated,
    #[error("backup chunk {chunk} failed authentication (damaged, reordered or tampered with)")]
    Corrupt { chunk: u64 },
    /// Chunk 0 failed authentication: a wrong key, or (indistinguishably) a damaged first
    /// chunk or header.
    #[error("wrong key for this backup (or its header or first chunk is damaged)")]
    WrongKey,
    #[error("unexpected data after the final chunk of the backup")]
    TrailingData,
    #[error("invalid backup key id: {0}")]
    InvalidKeyId(String),
    #[error("backup too large: more than 2^32 chunks")]
    TooLarge,
    #[error(transparent)]
    Aead(#[from] AeadError),
    #[error("backup I/O failed: {0}")]
    Io(#[from] io::Error),
}

/// ring refused a key or a seal. Neither happens with a 32-byte key and inputs under
/// 64 GiB, but ring's API is fallible and we do not panic.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("AES-256-GCM key setup or sealing failed")]
pub struct AeadError;

/// A sealed record did not authenticate (wrong key, wrong AAD, or damaged).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("ciphertext failed authentication")]
pub struct OpenError;

/// Sizes of one encrypted stream. `ciphertext_bytes` is the whole encrypted stream
/// (header, length prefixes, ciphertexts and tags), so encrypt and decrypt agree on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSummary {
    pub plaintext_bytes: u64,
    pub ciphertext_bytes: u64,
    pub chunks: u64,
}

/// The public, unencrypted (but authenticated) header of a backup stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    pub version: u8,
    pub algorithm: String,
    pub key_id: String,
    pub chunk_size: u32,
    nonce_prefix: [u8; PREFIX_LEN],
}

impl StreamHeader {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 3 + ALGORITHM.len() + MAX_KEY_ID_BYTES + 4 + PREFIX_LEN);
        out.extend_from_slice(MAGIC);
        out.push(self.version);
        // Both strings were validated to be at most 64 bytes, so the u8 prefixes hold.
        out.push(self.algorithm.len() as u8);
        out.extend_from_slice(self.algorithm.as_bytes());
        out.push(self.key_id.len() as u8);
        out.extend_from_slice(self.key_id.as_bytes());
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.nonce_prefix);
        out
    }
}

/// The GCM nonce of one chunk: `prefix(7) || counter(u32 BE) || last(u8)`.
pub fn nonce_for(prefix: [u8; PREFIX_LEN], counter: u32, last: bool) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[..PREFIX_LEN].copy_from_slice(&prefix);
    nonce[PREFIX_LEN..NONCE_LEN - 1].copy_from_slice(&counter.to_be_bytes());
    nonce[NONCE_LEN - 1] = u8::from(last);
    nonce
}

fn aes_key(key: &[u8; 32]) -> Result<LessSafeKey, AeadError> {
    let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| AeadError)?;
    Ok(LessSafeKey::new(unbound))
}

/// The key id ends up on an operator's terminal, so control characters are refused too.
fn validate_key_id(key_id: &str) -> Result<(), String> {
    if key_id.len() > MAX_KEY_ID_BYTES {
        return Err(format!("longer than {MAX_KEY_ID_BYTES} bytes"));
    }
    if key_id.chars().any(char::is_control) {
        return Err("contains control characters".to_owned());
    }
    Ok(())
}

/// Encrypts `input` to `output` in 64 KiB chunks. `on_progress` gets the plaintext bytes
/// consumed so far after each chunk.
pub fn encrypt_stream<R: Read, W: Write>(
    key: &[u8; 32],
    key_id: &str,
    input: R,
    output: W,
    on_progress: impl FnMut(u64),
) -> Result<StreamSummary, StreamError> {
    encrypt_with_chunk_size(key, key_id, DEFAULT_CHUNK_SIZE, input, output, on_progress)
}

fn encrypt_with_chunk_size<R: Read, W: Write>(
    key: &[u8; 32],
    key_id: &str,
    chunk_size: u32,
    mut input: R,
    mut output: W,
    mut on_progress: impl FnMut(u64),
) -> Result<StreamSummary, StreamError> {
    validate_key_id(key_id).map_err(StreamError::InvalidKeyId)?;
    let aead = aes_key(key)?;
    let header = StreamHeader {
        version: FORMAT_VERSION,
        algorithm: ALGORITHM.to_owned(),
        key_id: key_id.to_owned(),
        chunk_size,
        nonce_prefix: random_bytes(),
    };
    let aad = header.encode();
    output.write_all(&aad)?;
    let mut summary = StreamSummary { plaintext_bytes: 0, ciphertext_bytes: aad.len() as u64, chunks: 0 };
    let mut buf = Vec::with_capacity(chunk_size as usize + TAG_LEN);
    loop {
        buf.clear();
        let n = input.by_ref().take(u64::from(chunk_size)).read_to_end(&mut buf)?;
        // A short read from `take` + `read_to_end` only happens at end of input.
        let last = n < chunk_size as usize;
        let counter = u32::try_from(summary.chunks).map_err(|_| StreamError::TooLarge)?;
        let nonce = Nonce::assume_unique_for_key(nonce_for(header.nonce_prefix, counter, last));
        aead.seal_in_place_append_tag(nonce, Aad::from(&aad), &mut buf).map_err(|_| AeadError)?;
        // At most chunk_size + 16 bytes, and chunk_size is a u32 well below u32::MAX - 16.
        output.write_all(&(buf.len() as u32).to_be_bytes())?;
        output.write_all(&buf)?;
        summary.plaintext_bytes += n as u64;
        summary.ciphertext_bytes += 4 + buf.len() as u64;
        summary.chunks += 1;
        on_progress(summary.plaintext_bytes);
        if last {
            break;
        }
    }
    output.flush()?;
    Ok(summary)
}

/// Decrypts a stream made by [`encrypt_stream`]. Each chunk is written only after it
/// authenticates, but a stream can still turn out truncated or corrupt later on: unless
/// this returns `Ok`, the caller must discard everything written to `output` (write to a
/// temporary file and rename it into place on success).
pub fn decrypt_stream<R: Read, W: Write>(
    key: &[u8; 32],
    mut input: R,
    mut output: W,
    mut on_progress: impl FnMut(u64),
) -> Result<StreamSummary, StreamError> {
    let aead = aes_key(key)?;
    let (header, aad) = parse_header(&mut input)?;
    let full_len = header.chunk_size as usize + TAG_LEN;
    let mut summary = StreamSummary { plaintext_bytes: 0, ciphertext_bytes: aad.len() as u64, chunks: 0 };
    let mut buf = Vec::with_capacity(full_len);
    loop {
        let index = summary.chunks;
        let len = read_chunk_len(&mut input, index, full_len)?;
        let last = len < full_len;
        buf.resize(len, 0);
        read_exact_or_truncated(&mut input, &mut buf)?;
        let counter = u32::try_from(index).map_err(|_| StreamError::TooLarge)?;
        let nonce = Nonce::assume_unique_for_key(nonce_for(header.nonce_prefix, counter, last));
        let plain = aead.open_in_place(nonce, Aad::from(&aad), &mut buf).map_err(|_| auth_failure(index))?;
        output.write_all(plain)?;
        summary.plaintext_bytes += plain.len() as u64;
        summary.ciphertext_bytes += 4 + len as u64;
        summary.chunks += 1;
        on_progress(summary.plaintext_bytes);
        if last {
            break;
        }
    }
    ensure_eof(&mut input)?;
    output.flush()?;
    Ok(summary)
}

fn auth_failure(chunk: u64) -> StreamError {
    if chunk == 0 {
        StreamError::WrongKey
    } else {
        StreamError::Corrupt { chunk }
    }
}

/// Reads a chunk's length prefix; lengths outside `TAG_LEN..=full_len` cannot come from
/// the encryptor, and checking them here is what keeps allocation bounded.
fn read_chunk_len<R: Read>(input: &mut R, chunk: u64, full_len: usize) -> Result<usize, StreamError> {
    let mut len = [0u8; 4];
    read_exact_or_truncated(input, &mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if (TAG_LEN..=full_len).contains(&len) {
        Ok(len)
    } else {
        Err(StreamError::Corrupt { chunk })
    }
}

fn read_exact_or_truncated<R: Read>(input: &mut R, buf: &mut [u8]) -> Result<(), StreamError> {
    input.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => StreamError::Truncated,
        _ => StreamError::Io(e),
    })
}

fn ensure_eof<R: Read>(input: &mut R) -> Result<(), StreamError> {
    let mut probe = [0u8; 1];
    loop {
        match input.read(&mut probe) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(StreamError::TrailingData),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StreamError::Io(e)),
        }
    }
}

/// Reads and checks a stream's header without needing the key, so a caller can choose the
/// key by `key_id`. Consumes exactly the header bytes from `input`.
pub fn read_stream_header<R: Read>(mut input: R) -> Result<StreamHeader, StreamError> {
    parse_header(&mut input).map(|(header, _)| header)
}

/// Parses the header and also returns its exact bytes, which are every chunk's AAD.
fn parse_header<R: Read>(input: &mut R) -> Result<(StreamHeader, Vec<u8>), StreamError> {
    let mut raw = Vec::new();
    let mut magic = [0u8; MAGIC.len()];
    // Anything too short to hold the magic is simply not ours.
    read_exact_or_truncated(input, &mut magic).map_err(|e| match e {
        StreamError::Truncated => bad_header("missing magic"),
        other => other,
    })?;
    if &magic != MAGIC {
        return Err(bad_header("bad magic"));
    }
    raw.extend_from_slice(&magic);
    let version = take::<1, _>(input, &mut raw)?[0];
    if version != FORMAT_VERSION {
        return Err(StreamError::BadHeader(format!("unsupported format version {version}")));
    }
    let algorithm = take_string(input, &mut raw)?;
    if algorithm != ALGORITHM {
        return Err(StreamError::BadHeader(format!("unsupported algorithm {algorithm:?}")));
    }
    let key_id = take_string(input, &mut raw)?;
    validate_key_id(&key_id).map_err(|why| StreamError::BadHeader(format!("key id {why}")))?;
    let chunk_size = u32::from_be_bytes(take::<4, _>(input, &mut raw)?);
    if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
        return Err(StreamError::BadHeader(format!("chunk size {chunk_size} out of range")));
    }
    let nonce_prefix = take::<PREFIX_LEN, _>(input, &mut raw)?;
    let header = StreamHeader { version, algorithm, key_id, chunk_size, nonce_prefix };
    Ok((header, raw))
}

fn bad_header(why: &str) -> StreamError {
    StreamError::BadHeader(why.to_owned())
}

/// Reads `N` header bytes, recording them into `raw`.
fn take<const N: usize, R: Read>(input: &mut R, raw: &mut Vec<u8>) -> Result<[u8; N], StreamError> {
    let mut bytes = [0u8; N];
    read_exact_or_truncated(input, &mut bytes)?;
    raw.extend_from_slice(&bytes);
    Ok(bytes)
}

/// Reads a u8-length-prefixed UTF-8 string (at most 255 bytes, so bounded), recording it.
fn take_string<R: Read>(input: &mut R, raw: &mut Vec<u8>) -> Result<String, StreamError> {
    let len = take::<1, _>(input, raw)?[0];
    let mut bytes = vec![0u8; usize::from(len)];
    read_exact_or_truncated(input, &mut bytes)?;
    raw.extend_from_slice(&bytes);
    String::from_utf8(bytes).map_err(|_| bad_header("string is not UTF-8"))
}

/// AES-256-GCM for individual records: `seal` output is `nonce(12) || ciphertext || tag(16)`.
///
/// Nonces are random, so keep a key below about 2^32 seals (NIST SP 800-38D's bound for
/// random 96-bit nonces); derive per-purpose keys rather than sharing one.
pub struct SealingKey(LessSafeKey);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

impl SealingKey {
    /// Fails only if ring rejects a 32-byte AES-256 key, which it does not; ring's API is
    /// fallible and we do not panic.
    pub fn new(key: &[u8; 32]) -> Result<Self, AeadError> {
        aes_key(key).map(Self)
    }

    /// Seals under a fresh random nonce. Fails only for plaintexts over ~64 GiB.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, AeadError> {
        // A fresh nonce from the thread's CSPRNG (ChaCha, seeded and periodically reseeded
        // from the OS): random 96-bit nonces without a system call on every seal.
        let mut nonce = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut nonce);
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[NONCE_LEN..])
            .map_err(|_| AeadError)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        let (nonce, body) = sealed.split_first_chunk::<NONCE_LEN>().ok_or(OpenError)?;
        let mut buf = body.to_vec();
        let len = self
            .0
            .open_in_place(Nonce::assume_unique_for_key(*nonce), Aad::from(aad), &mut buf)
            .map_err(|_| OpenError)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const KEY: [u8; 32] = [7u8; 32];
    const OTHER_KEY: [u8; 32] = [8u8; 32];
    const CHUNK: usize = DEFAULT_CHUNK_SIZE as usize;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect()
    }

    fn encrypt(plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encrypt_stream(&KEY, "backup-2024", plain, &mut out, |_| {}).unwrap();
        out
    }

    /// A small chunk size so exhaustive (every byte / every bit) tests stay fast.
    fn encrypt_small(plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encrypt_with_chunk_size(&KEY, "k1", 16, plain, &mut out, |_| {}).unwrap();
        out
    }

    fn decrypt_with(key: &[u8; 32], stream: &[u8]) -> Result<Vec<u8>, StreamError> {
        let mut out = Vec::new();
        decrypt_stream(key, stream, &mut out, |_| {})?;
        Ok(out)
    }

    fn decrypt(stream: &[u8]) -> Result<Vec<u8>, StreamError> {
        decrypt_with(&KEY, stream)
    }

    fn header_len(stream: &[u8]) -> usize {
        let mut input = stream;
        parse_header(&mut input).unwrap().1.len()
    }

    /// Byte ranges `[start, end)` of each chunk, length prefix included.
    fn chunk_ranges(stream: &[u8]) -> Vec<(usize, usize)> {
        let mut ranges = Vec::new();
        let mut at = header_len(stream);
        while at < stream.len() {
            let len = u32::from_be_bytes(stream[at..at + 4].try_into().unwrap()) as usize;
            ranges.push((at, at + 4 + len));
            at += 4 + len;
        }
        ranges
    }

    fn round_trip(len: usize, expected_chunks: u64) {
        let plain = data(len);
        let mut stream = Vec::new();
        let mut progress = Vec::new();
        let enc = encrypt_stream(&KEY, "k", &plain[..], &mut stream, |n| progress.push(n)).unwrap();
        assert_eq!(enc.plaintext_bytes, len as u64);
        assert_eq!(enc.ciphertext_bytes, stream.len() as u64);
        assert_eq!(enc.chunks, expected_chunks);
        assert_eq!(progress.len() as u64, expected_chunks);
        assert_eq!(progress.last().copied(), Some(len as u64));
        assert!(progress.windows(2).all(|w| w[0] <= w[1]));
        let mut out = Vec::new();
        let mut dec_progress = Vec::new();
        let dec = decrypt_stream(&KEY, &stream[..], &mut out, |n| dec_progress.push(n)).unwrap();
        assert_eq!(out, plain);
        assert_eq!(dec, enc);
        assert_eq!(dec_progress, progress);
    }

    #[test]
    fn round_trip_empty_input_is_one_empty_final_chunk() {
        round_trip(0, 1);
    }

    #[test]
    fn round_trip_one_byte() {
        round_trip(1, 1);
    }

    #[test]
    fn round_trip_exactly_one_chunk_is_followed_by_empty_final_chunk() {
        round_trip(CHUNK, 2);
        round_trip(CHUNK - 1, 1);
    }

    #[test]
    fn round_trip_many_chunks_plus_partial() {
        round_trip(5 * CHUNK + 123, 6);
        round_trip(3 * CHUNK, 4);
    }

    /// A reader that returns at most 7 bytes per call and is interrupted every other call, so a
    /// short read must not be mistaken for end of input.
    struct Dribble<'a> {
        data: &'a [u8],
        interrupt: bool,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.interrupt = !self.interrupt;
            if self.interrupt {
                return Err(io::ErrorKind::Interrupted.into());
            }
            let n = buf.len().min(7).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_reads_and_interrupts_do_not_end_the_stream_early() {
        let plain = data(2 * CHUNK + 10);
        let mut stream = Vec::new();
        let input = Dribble { data: &plain, interrupt: false };
        let enc = encrypt_stream(&KEY, "k", input, &mut stream, |_| {}).unwrap();
        assert_eq!(enc.chunks, 3);
        let mut out = Vec::new();
        let input = Dribble { data: &stream, interrupt: false };
        decrypt_stream(&KEY, input, &mut out, |_| {}).unwrap();
        assert_eq!(out, plain);
    }

    #[test]
    fn truncation_at_every_chunk_boundary_and_mid_chunk_is_detected() {
        let stream = encrypt(&data(4 * CHUNK + 500));
        let ranges = chunk_ranges(&stream);
        assert_eq!(ranges.len(), 5);
        for &(start, end) in &ranges {
            for cut in [start, start + 2, start + 4, (start + end) / 2, end - 1] {
                let err = decrypt(&stream[..cut]).unwrap_err();
                assert!(matches!(err, StreamError::Truncated), "cut at {cut}: {err:?}");
            }
        }
        // Cutting after a full chunk is the classic attack the `last` flag exists for.
        for &(_, end) in &ranges[..ranges.len() - 1] {
            assert!(matches!(decrypt(&stream[..end]), Err(StreamError::Truncated)));
        }
        assert!(decrypt(&stream).is_ok());
    }

    #[test]
    fn truncation_at_every_byte_offset_is_detected() {
        let stream = encrypt_small(&data(50));
        let header = header_len(&stream);
        for cut in 0..stream.len() {
            let err = decrypt(&stream[..cut]).unwrap_err();
            if cut >= MAGIC.len() {
                assert!(matches!(err, StreamError::Truncated), "cut at {cut}: {err:?}");
            } else {
                assert!(matches!(err, StreamError::BadHeader(_)), "cut at {cut}: {err:?}");
            }
        }
        assert!(header > MAGIC.len());
        assert_eq!(decrypt(&stream).unwrap(), data(50));
    }

    #[test]
    fn flipping_any_header_bit_is_detected() {
        let stream = encrypt(&data(100));
        for bit in 0..header_len(&stream) * 8 {
            let mut bad = stream.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decrypt(&bad).is_err(), "header bit {bit} flip went unnoticed");
        }
    }

    #[test]
    fn flipping_a_bit_in_each_chunk_reports_that_chunk() {
        let plain = data(3 * CHUNK + 77);
        let stream = encrypt(&plain);
        for (i, &(start, end)) in chunk_ranges(&stream).iter().enumerate() {
            for at in [start + 4, (start + end) / 2, end - 1] {
                let mut bad = stream.clone();
                bad[at] ^= 0x10;
                let mut out = Vec::new();
                let err = decrypt_stream(&KEY, &bad[..], &mut out, |_| {}).unwrap_err();
                match (i, err) {
                    (0, StreamError::WrongKey) => {}
                    (i, StreamError::Corrupt { chunk }) if i > 0 => assert_eq!(chunk, i as u64),
                    (i, err) => panic!("chunk {i} byte {at}: {err:?}"),
                }
                // Nothing unauthenticated may reach the output.
                assert_eq!(out, plain[..i * CHUNK]);
            }
        }
    }

    #[test]
    fn flipping_any_bit_of_a_small_stream_is_detected() {
        let stream = encrypt_small(&data(50));
        for bit in 0..stream.len() * 8 {
            let mut bad = stream.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decrypt(&bad).is_err(), "bit {bit} flip went unnoticed");
        }
    }

    fn splice(stream: &[u8], order: &[usize]) -> Vec<u8> {
        let ranges = chunk_ranges(stream);
        let mut out = stream[..header_len(stream)].to_vec();
        for &i in order {
            let (start, end) = ranges[i];
            out.extend_from_slice(&stream[start..end]);
        }
        out
    }

    #[test]
    fn swapping_two_chunks_is_detected() {
        let stream = encrypt(&data(4 * CHUNK + 9));
        assert!(decrypt(&splice(&stream, &[0, 1, 2, 3, 4])).is_ok());
        let err = decrypt(&splice(&stream, &[0, 2, 1, 3, 4])).unwrap_err();
        assert!(matches!(err, StreamError::Corrupt { chunk: 1 }), "{err:?}");
        let err = decrypt(&splice(&stream, &[1, 0, 2, 3, 4])).unwrap_err();
        assert!(matches!(err, StreamError::WrongKey), "{err:?}");
        // Final chunk moved forward: its short length marks it final at the wrong index.
        let err = decrypt(&splice(&stream, &[0, 1, 2, 4, 3])).unwrap_err();
        assert!(matches!(err, StreamError::Corrupt { chunk: 3 }), "{err:?}");
    }

    #[test]
    fn duplicating_or_dropping_a_chunk_is_detected() {
        let stream = encrypt(&data(3 * CHUNK + 9));
        let err = decrypt(&splice(&stream, &[0, 1, 1, 2, 3])).unwrap_err();
        assert!(matches!(err, StreamError::Corrupt { chunk: 2 }), "{err:?}");
        let err = decrypt(&splice(&stream, &[0, 2, 3])).unwrap_err();
        assert!(matches!(err, StreamError::Corrupt { chunk: 1 }), "{err:?}");
        let err = decrypt(&splice(&stream, &[0, 1, 3])).unwrap_err();
        assert!(matches!(err, StreamError::Corrupt { chunk: 2 }), "{err:?}");
    }

    #[test]
    fn chunks_from_another_stream_under_the_same_key_are_rejected() {
        let plain = data(2 * CHUNK + 9);
        let a = encrypt(&plain);
        let b = encrypt(&plain);
        let (start, end) = chunk_ranges(&b)[1];
        let mut mixed = splice(&a, &[0]);
        mixed.extend_from_slice(&b[start..end]);
        mixed.extend_from_slice(&a[chunk_ranges(&a)[2].0..]);
        let err = decrypt(&mixed).unwrap_err();
        assert!(matches!(err, StreamError::Corrupt { chunk: 1 }), "{err:?}");
    }

    #[test]
    fn data_after_the_final_chunk_is_rejected() {
        let stream = encrypt(&data(CHUNK + 1));
        let mut one_byte = stream.clone();
        one_byte.push(0);
        assert!(matches!(decrypt(&one_byte), Err(StreamError::TrailingData)));
        let (start, end) = *chunk_ranges(&stream).last().unwrap();
        let mut repeated_final = stream.clone();
        repeated_final.extend_from_slice(&stream[start..end]);
        assert!(matches!(decrypt(&repeated_final), Err(StreamError::TrailingData)));
    }

    #[test]
    fn wrong_key_is_reported_as_wrong_key() {
        for len in [0, 1, 3 * CHUNK] {
            let stream = encrypt(&data(len));
            assert!(matches!(decrypt_with(&OTHER_KEY, &stream), Err(StreamError::WrongKey)));
        }
    }

    #[test]
    fn header_is_readable_without_the_key() {
        let stream = encrypt(&data(10));
        let mut input = &stream[..];
        let header = read_stream_header(&mut input).unwrap();
        assert_eq!(header.version, 1);
        assert_eq!(header.algorithm, "AES-256-GCM-STREAM");
        assert_eq!(header.key_id, "backup-2024");
        assert_eq!(header.chunk_size, 64 * 1024);
        // It consumed exactly the header: what follows is chunk 0's length prefix.
        assert_eq!(input.len(), stream.len() - header_len(&stream));
        assert!(stream.starts_with(b"RAMPART-BACKUP\0\x01\x12AES-256-GCM-STREAM\x0bbackup-2024"));
    }

    fn header_bytes(version: u8, alg: &str, key_id: &[u8], chunk: u32) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.push(version);
        h.push(alg.len() as u8);
        h.extend_from_slice(alg.as_bytes());
        h.push(key_id.len() as u8);
        h.extend_from_slice(key_id);
        h.extend_from_slice(&chunk.to_be_bytes());
        h.extend_from_slice(&[0u8; PREFIX_LEN]);
        h
    }

    #[test]
    fn foreign_or_malformed_headers_are_rejected() {
        let bad = [
            b"SQLite format 3\0 and more bytes".to_vec(),
            b"RAMP".to_vec(),
            Vec::new(),
            header_bytes(2, ALGORITHM, b"k", 65536),
            header_bytes(1, "AES-128-GCM-STREAM", b"k", 65536),
            header_bytes(1, ALGORITHM, &[b'k'; 65], 65536),
            header_bytes(1, ALGORITHM, b"k\x1b[2J", 65536),
            header_bytes(1, ALGORITHM, b"\xff\xfe", 65536),
            header_bytes(1, ALGORITHM, b"k", 0),
            header_bytes(1, ALGORITHM, b"k", MAX_CHUNK_SIZE + 1),
            header_bytes(1, ALGORITHM, b"k", u32::MAX),
        ];
        for bytes in bad {
            let err = read_stream_header(&bytes[..]).unwrap_err();
            assert!(matches!(err, StreamError::BadHeader(_)), "{bytes:?}: {err:?}");
            assert!(matches!(decrypt(&bytes), Err(StreamError::BadHeader(_))));
        }
        assert!(read_stream_header(&header_bytes(1, ALGORITHM, &[b'k'; 64], 16)[..]).is_ok());
    }

    #[test]
    fn absurd_chunk_lengths_are_rejected_before_allocating() {
        let stream = encrypt(&data(10));
        let at = header_len(&stream);
        for len in [u32::MAX, MAX_CHUNK_SIZE + 1, DEFAULT_CHUNK_SIZE + TAG_LEN as u32 + 1, 15] {
            let mut bad = stream.clone();
            bad[at..at + 4].copy_from_slice(&len.to_be_bytes());
            assert!(matches!(decrypt(&bad), Err(StreamError::Corrupt { chunk: 0 })));
        }
    }

    #[test]
    fn invalid_key_ids_are_refused_when_encrypting() {
        for key_id in ["x".repeat(65), "a\nb".to_owned(), "\u{1b}[31m".to_owned()] {
            let err = encrypt_stream(&KEY, &key_id, &b""[..], Vec::new(), |_| {}).unwrap_err();
            assert!(matches!(err, StreamError::InvalidKeyId(_)), "{key_id:?}");
        }
        let max = "é".repeat(32);
        let stream = {
            let mut out = Vec::new();
            encrypt_stream(&KEY, &max, &b"x"[..], &mut out, |_| {}).unwrap();
            out
        };
        assert_eq!(read_stream_header(&stream[..]).unwrap().key_id, max);
    }

    #[test]
    fn nonce_layout_is_prefix_counter_last() {
        let n = nonce_for([1, 2, 3, 4, 5, 6, 7], 0x0A0B_0C0D, true);
        assert_eq!(n, [1, 2, 3, 4, 5, 6, 7, 0x0A, 0x0B, 0x0C, 0x0D, 1]);
        assert_eq!(nonce_for([0; 7], 0, false), [0; 12]);
    }

    #[test]
    fn a_million_counters_give_distinct_nonces() {
        let prefix = [9u8; PREFIX_LEN];
        let mut seen: HashSet<[u8; 12]> = HashSet::with_capacity(2_000_000);
        for counter in 0..1_000_000u32 {
            assert!(seen.insert(nonce_for(prefix, counter, false)));
            assert!(seen.insert(nonce_for(prefix, counter, true)));
        }
        assert_eq!(seen.len(), 2_000_000);
        // The top counter values too, where a wrapping bug would show.
        assert_ne!(nonce_for(prefix, u32::MAX, false), nonce_for(prefix, 0, false));
    }

    #[test]
    fn two_encryptions_of_the_same_data_differ() {
        let plain = data(CHUNK + 5);
        let (a, b) = (encrypt(&plain), encrypt(&plain));
        let prefix = |s: &[u8]| {
            let mut input = s;
            read_stream_header(&mut input).unwrap().nonce_prefix
        };
        assert_ne!(prefix(&a), prefix(&b));
        let (ha, hb) = (header_len(&a), header_len(&b));
        assert_eq!(a.len(), b.len());
        assert_ne!(a[ha..], b[hb..]);
        assert_eq!(decrypt(&a).unwrap(), decrypt(&b).unwrap());
    }

    #[test]
    fn sealing_round_trip() {
        let key = SealingKey::new(&KEY).unwrap();
        for plain in [&b""[..], b"x", &data(1000)[..]] {
            let sealed = key.seal(b"doc:42", plain).unwrap();
            assert_eq!(sealed.len(), NONCE_LEN + plain.len() + TAG_LEN);
            assert_eq!(key.open(b"doc:42", &sealed).unwrap(), plain);
        }
    }

    #[test]
    fn sealing_wrong_aad_or_key_fails() {
        let key = SealingKey::new(&KEY).unwrap();
        let sealed = key.seal(b"doc:42", b"secret").unwrap();
        assert_eq!(key.open(b"doc:43", &sealed), Err(OpenError));
        assert_eq!(key.open(b"", &sealed), Err(OpenError));
        let other = SealingKey::new(&OTHER_KEY).unwrap();
        assert_eq!(other.open(b"doc:42", &sealed), Err(OpenError));
    }

    #[test]
    fn sealing_any_flipped_bit_or_truncation_fails() {
        let key = SealingKey::new(&KEY).unwrap();
        let sealed = key.seal(b"aad", b"hello").unwrap();
        for bit in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(key.open(b"aad", &bad), Err(OpenError), "bit {bit}");
        }
        for cut in 0..sealed.len() {
            assert_eq!(key.open(b"aad", &sealed[..cut]), Err(OpenError), "cut {cut}");
        }
    }

    #[test]
    fn a_million_seals_use_distinct_nonces() {
        let key = SealingKey::new(&KEY).unwrap();
        let mut seen: HashSet<[u8; 12]> = HashSet::with_capacity(1_000_000);
        for _ in 0..1_000_000 {
            let sealed = key.seal(b"", b"").unwrap();
            assert!(seen.insert(sealed[..NONCE_LEN].try_into().unwrap()));
        }
        assert_eq!(seen.len(), 1_000_000);
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let key = SealingKey::new(&[0xAB; 32]).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "SealingKey(<redacted>)");
    }
}
