//! Resolved sessions kept in memory, so an authenticated request costs no store round trip.
//! Entries are stamped with the `Auth` generation read *before* the store read that filled
//! them; the store bumps it after every committed change to sessions, users or roles, so a
//! logout, revocation, disable or role change is seen by the very next request (on every
//! node, once the feed is shared). Expiry is still checked on every hit.

use std::collections::HashMap;
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

struct Entry {
    generation: u64,
    session: ResolvedSession,
}

pub(crate) struct SessionCache {
    feed: Arc<dyn CacheInvalidation>,
    entries: RwLock<HashMap<[u8; 32], Entry>>,
    capacity: usize,
}

impl SessionCache {
    pub fn new(feed: Arc<dyn CacheInvalidation>, capacity: usize) -> Self {
        Self { feed, entries: RwLock::new(HashMap::new()), capacity }
    }

    /// The stamp for an entry about to be read from the store.
    pub fn stamp(&self) -> u64 {
        self.feed.generation(Topic::Auth)
    }

    pub fn get(&self, token_hash: &[u8; 32]) -> Option<ResolvedSession> {
        let current = self.stamp();
        let entries = self.entries.read().ok()?;
        entries.get(token_hash).filter(|e| e.generation == current).map(|e| e.session.clone())
    }

    pub fn put(&self, token_hash: [u8; 32], stamp: u64, session: ResolvedSession) {
        let Ok(mut entries) = self.entries.write() else { return };
        if entries.len() >= self.capacity && !entries.contains_key(&token_hash) {
            let current = self.stamp();
            entries.retain(|_, e| e.generation == current);
            if entries.len() >= self.capacity {
                // Only live sessions get here, so this is rare: drop any one of them (it is
                // read again from the store on its next request).
                if let Some(victim) = entries.keys().next().copied() {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(token_hash, Entry { generation: stamp, session });
    }

    /// The idle timer was written through a quiet store write: keep the entry in step.
    pub fn touched(&self, token_hash: &[u8; 32], at: Timestamp) {
        if let Ok(mut entries) = self.entries.write() {
            if let Some(e) = entries.get_mut(token_hash) {
                e.session.last_seen_at = e.session.last_seen_at.max(at);
            }
        }
    }

    pub fn forget(&self, token_hash: &[u8; 32]) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(token_hash);
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
        let cache = SessionCache::new(feed.clone(), 10);
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
        let cache = SessionCache::new(feed, 8);
        for i in 0..100u8 {
            cache.put([i; 32], cache.stamp(), session("s"));
        }
        assert!(cache.len() <= 8);
        cache.touched(&[99; 32], Timestamp::from_millis(5_000));
        assert_eq!(cache.get(&[99; 32]).unwrap().last_seen_at, Timestamp::from_millis(5_000));
        cache.forget(&[99; 32]);
        assert!(cache.get(&[99; 32]).is_none());
    }
}
