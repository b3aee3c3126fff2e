//! Raw Argon2id throughput with Rampart's own hasher and parameters, outside the server:
//! the ceiling that login throughput is compared against.

use std::time::Instant;

use anyhow::anyhow;
use rampart_crypto::PasswordHasher;
use secrecy::SecretString;

use crate::load::Window;

/// Hashes per second over the window's measured span, `threads` hashing at once.
pub fn hashes_per_second(threads: usize, window: Window) -> anyhow::Result<f64> {
    let hasher = PasswordHasher::new()?;
    let begin = Instant::now() + window.warmup;
    let end = begin + window.measure;
    let counts = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let hasher = hasher.clone();
                scope.spawn(move || count_hashes(&hasher, begin, end))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| anyhow!("hashing thread panicked"))?)
            .collect::<anyhow::Result<Vec<u64>>>()
    })?;
    Ok(counts.iter().sum::<u64>() as f64 / window.measure.as_secs_f64())
}

/// Hashes back to back until `end`, counting those that finish in `[begin, end]`.
fn count_hashes(hasher: &PasswordHasher, begin: Instant, end: Instant) -> anyhow::Result<u64> {
    let password = SecretString::from("Bench-Hash-Passw0rd!x".to_owned());
    let mut done = 0;
    while Instant::now() < end {
        hasher.hash(&password)?;
        let now = Instant::now();
        if begin <= now && now <= end {
            done += 1;
        }
    }
    Ok(done)
}
