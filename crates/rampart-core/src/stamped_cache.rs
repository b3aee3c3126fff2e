//! Store reads kept in memory, stamped with the generation of their `Topic` read *before*
//! the store read that filled them. The store bumps the generation after every committed
//! change the topic covers (on every node, once the feed is shared), so an entry read
//! before a change is never served after it: a logout, disable or role change is seen by
//! the very next request, and so is a document write or erasure.
//!
//! Two uses: resolved sessions (`Topic::Auth`; expiry is still checked on every hit) and
//! sealed document records (`Topic::Documents`; still opened with the key ring on every
//! hit, so crypto-shredding holds even for a record in memory).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock};

use rampart_store::{Assurance, CacheInvalidation, Topic};
use rampart_types::{RoleName, Timestamp, Username};

/// What `authenticate` needs of a session and its user.
#[derive(Debug, Clone)]
pub(crate) struct ResolvedSession {
    pub session_id: rampart_types::SessionId,
    pub username: Username,
    pub role: RoleName,
    pub assurance: Assurance,
    pub expires_at: Timestamp,
    pub last_seen_at: Timestamp,
}

struct Entry<V> {
    generation: u64,
    value: V,
}

pub(crate) struct StampedCache<K, V> {
    feed: Arc<dyn CacheInvalidation>,
    topic: Topic,
    entries: RwLock<HashMap<K, Entry<V>>>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> StampedCache<K, V> {
    pub fn new(feed: Arc<dyn CacheInvalidation>, topic: Topic, capacity: usize) -> Self {
        Self { feed, topic, entries: RwLock::new(HashMap::new()), capacity }
    }

    /// The stamp for an entry about to be read from the store.
    pub fn stamp(&self) -> u64 {
        self.feed.generation(self.topic)
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let current = self.stamp();
        let entries = self.entries.read().ok()?;
        entries.get(key).filter(|e| e.generation == current).map(|e| e.value.clone())
    }

    pub fn put(&self, key: K, stamp: u64, value: V) {
        let Ok(mut entries) = self.entries.write() else { return };
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            let current = self.stamp();
            entries.retain(|_, e| e.generation == current);
            if entries.len() >= self.capacity {
                // Only live entries get here, so this is rare: drop any one of them (it is
                // read again from the store when next asked for).
                if let Some(victim) = entries.keys().next().cloned() {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(key, Entry { generation: stamp, value });
    }

    /// Keeps an entry in step with a change the cache's owner made through a quiet store
    /// write (one that stales nothing, such as the session idle timer).
    pub fn update(&self, key: &K, change: impl FnOnce(&mut V)) {
        if let Ok(mut entries) = self.entries.write() {
            if let Some(e) = entries.get_mut(key) {
                change(&mut e.value);
            }
        }
    }

    pub fn forget(&self, key: &K) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.read().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rampart_store::{LocalInvalidation, Topics};

    fn session(id: &str) -> ResolvedSession {
        ResolvedSession {
            session_id: rampart_types::SessionId::from_stored(id.into()),
            username: Username::parse("alice").unwrap(),
            role: RoleName::parse("viewer").unwrap(),
            assurance: Assurance::Password,
            expires_at: Timestamp::from_millis(10_000),
            last_seen_at: Timestamp::from_millis(1_000),
        }
    }

    #[test]
    fn an_entry_filled_before_a_change_is_never_served_after_it() {
        let feed = Arc::new(LocalInvalidation::default());
        let cache = StampedCache::new(feed.clone(), Topic::Auth, 10);
        let stamp = cache.stamp();
        // A revocation commits while the store read is in flight...
        feed.invalidate(Topics::of(Topic::Auth));
        // ...and the read's (possibly old) answer lands after it.
        cache.put([1; 32], stamp, session("s1"));
        assert!(cache.get(&[1; 32]).is_none());
        let stamp = cache.stamp();
        cache.put([1; 32], stamp, session("s1"));
        assert_eq!(cache.get(&[1; 32]).unwrap().session_id.as_str(), "s1");
        feed.invalidate(Topics::of(Topic::Collections));
        assert!(cache.get(&[1; 32]).is_some(), "other topics leave sessions alone");
        feed.invalidate(Topics::of(Topic::Auth));
        assert!(cache.get(&[1; 32]).is_none());
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let feed = Arc::new(LocalInvalidation::default());
        let cache = StampedCache::new(feed, Topic::Auth, 8);
        for i in 0..100u8 {
            cache.put([i; 32], cache.stamp(), session("s"));
        }
        assert!(cache.len() <= 8);
        cache.update(&[99; 32], |s: &mut ResolvedSession| s.last_seen_at = Timestamp::from_millis(5_000));
        assert_eq!(cache.get(&[99; 32]).unwrap().last_seen_at, Timestamp::from_millis(5_000));
        cache.forget(&[99; 32]);
        assert!(cache.get(&[99; 32]).is_none());
    }
}
