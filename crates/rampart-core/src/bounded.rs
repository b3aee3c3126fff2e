//! A sharded map with a hard cap on entries. When a shard is full, a few random entries
//! are sampled and the one that is cheapest to forget is evicted, so memory stays bounded
//! under an address spray and each operation stays O(1).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;

use rampart_types::Timestamp;

/// How an entry tells the map it may be forgotten.
pub trait Evictable {
    /// Higher is better to evict. An entry equivalent to a fresh one (a full token bucket,
    /// an expired failure count) should score highest: forgetting it loses nothing.
    fn eviction_score(&self, now: Timestamp) -> f64;
}

const SHARDS: usize = 16;
const SAMPLE: usize = 8;

struct Shard<K, V> {
    map: HashMap<K, (V, usize)>,
    keys: Vec<K>,
    rng: u64,
}

pub struct BoundedMap<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
    per_shard: usize,
    hasher: RandomState,
}

impl<K: Hash + Eq + Clone, V: Evictable> BoundedMap<K, V> {
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS)
            .map(|i| Mutex::new(Shard { map: HashMap::new(), keys: Vec::new(), rng: 0x9E37_79B9_7F4A_7C15 ^ i as u64 }))
            .collect();
        Self { shards, per_shard, hasher: RandomState::new() }
    }

    /// Runs `f` on the entry for `key`, creating it with `init` (evicting if full).
    pub fn with<R>(&self, key: &K, now: Timestamp, init: impl FnOnce() -> V, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let idx = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut shard = self.shards.get(idx)?.lock().ok()?;
        if !shard.map.contains_key(key) {
            if shard.keys.len() >= self.per_shard {
                shard.evict_one(now);
            }
            let slot = shard.keys.len();
            shard.keys.push(key.clone());
            shard.map.insert(key.clone(), (init(), slot));
        }
        shard.map.get_mut(key).map(|(v, _)| f(v))
    }

    /// Runs `f` on the entry for `key` if present.
    pub fn get_with<R>(&self, key: &K, f: impl FnOnce(&mut V) -> R) -> Option<R> {
        let idx = (self.hasher.hash_one(key) as usize) % SHARDS;
        let mut shard = self.shards.get(idx)?.lock().ok()?;
        shard.map.get_mut(key).map(|(v, _)| f(v))
    }

    pub fn remove(&self, key: &K) {
        let idx = (self.hasher.hash_one(key) as usize) % SHARDS;
        if let Some(mut shard) = self.shards.get(idx).and_then(|s| s.lock().ok()) {
            shard.remove(key);
        }
    }

    pub fn clear(&self) {
        for shard in &self.shards {
            if let Ok(mut s) = shard.lock() {
                s.map.clear();
                s.keys.clear();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().filter_map(|s| s.lock().ok().map(|s| s.keys.len())).sum()
    }
}

impl<K: Hash + Eq + Clone, V: Evictable> Shard<K, V> {
    fn next_rand(&mut self) -> usize {
        // xorshift64: cheap, and eviction needs no cryptographic randomness.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng as usize
    }

    fn evict_one(&mut self, now: Timestamp) {
        let n = self.keys.len();
        if n == 0 {
            return;
        }
        let mut best: Option<(usize, f64)> = None;
        for _ in 0..SAMPLE.min(n) {
            let slot = self.next_rand() % n;
            let score = self.keys.get(slot).and_then(|k| self.map.get(k)).map(|(v, _)| v.eviction_score(now));
            if let Some(score) = score {
                if best.is_none_or(|(_, s)| score > s) {
                    best = Some((slot, score));
                }
            }
        }
        if let Some(key) = best.and_then(|(slot, _)| self.keys.get(slot).cloned()) {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &K) {
        let Some((_, slot)) = self.map.remove(key) else {
            return;
        };
        self.keys.swap_remove(slot);
        if let Some(moved) = self.keys.get(slot).cloned() {
            if let Some(entry) = self.map.get_mut(&moved) {
                entry.1 = slot;
            }
        }
    }
}
