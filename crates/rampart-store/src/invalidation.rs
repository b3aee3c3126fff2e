//! The `CacheInvalidation` port: how a committed change reaches every cache that may hold
//! what it changed. The store publishes (it alone sees every commit, whichever code path
//! made it); caches read a generation per topic and stamp their entries with it, so an entry
//! read before a change can never be served after it.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a cache may hold, and so what a change can make stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Sessions, users and roles: whatever decides who a bearer token is and what it may do.
    Auth = 0,
    /// Collection settings (encryption, indexed fields, retention).
    Collections = 1,
    /// Stored documents (any insert, change, deletion, erasure or re-sealing).
    Documents = 2,
    /// Address blocks (added, lifted or expired early by an operator).
    Blocks = 3,
    /// Data keys destroyed, retired, re-wrapped or given successors, and key-encrypting key
    /// versions: whatever makes an unwrapped key in memory stale. New keys are not changes.
    Keys = 4,
}

impl Topic {
    pub const ALL: [Topic; 5] = [Topic::Auth, Topic::Collections, Topic::Documents, Topic::Blocks, Topic::Keys];

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of topics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Topics(u8);

impl Topics {
    pub const NONE: Topics = Topics(0);
    pub const EVERYTHING: Topics = Topics((1 << Topic::ALL.len()) - 1);

    pub const fn of(topic: Topic) -> Self {
        Topics(topic.bit())
    }

    pub const fn and(self, topic: Topic) -> Self {
        Topics(self.0 | topic.bit())
    }

    pub const fn contains(self, topic: Topic) -> bool {
        self.0 & topic.bit() != 0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// For lock-free accumulation in an `AtomicU8`.
    pub const fn bits(self) -> u8 {
        self.0
    }

    pub const fn from_bits(bits: u8) -> Self {
        Topics(bits)
    }
}

/// Delivers invalidations to the caches of every node. A backend calls `invalidate` after
/// a commit (never before: a cache refilled between the bump and the commit would hold the
/// old state under the new generation); caches compare `generation` with their stamp.
pub trait CacheInvalidation: Send + Sync {
    fn invalidate(&self, topics: Topics);
    /// Increases (at least) on every invalidation of `topic`.
    fn generation(&self, topic: Topic) -> u64;
}

/// One process: a counter per topic.
#[derive(Debug, Default)]
pub struct LocalInvalidation {
    generations: [AtomicU64; Topic::ALL.len()],
}

impl CacheInvalidation for LocalInvalidation {
    fn invalidate(&self, topics: Topics) {
        for topic in Topic::ALL {
            if topics.contains(topic) {
                // SeqCst: a reader that loads the generation before its own store read must
                // see this bump if it could have read the pre-commit state.
                self.generations[topic as usize].fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn generation(&self, topic: Topic) -> u64 {
        self.generations[topic as usize].load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_topics_move() {
        let local = LocalInvalidation::default();
        local.invalidate(Topics::of(Topic::Collections));
        assert_eq!(local.generation(Topic::Auth), 0);
        assert_eq!(local.generation(Topic::Collections), 1);
        local.invalidate(Topics::EVERYTHING);
        assert_eq!((local.generation(Topic::Auth), local.generation(Topic::Collections)), (1, 2));
        assert!(Topics::NONE.is_empty() && !Topics::of(Topic::Auth).is_empty());
        assert!(Topic::ALL.iter().all(|t| Topics::EVERYTHING.contains(*t)));
    }
}
