//! Open connections per client address: one address (one account's slow bodies, say)
//! cannot hold every connection slot. Entries exist only for open connections, so the map
//! is bounded by the total connection limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
    max: usize,
}

/// One open connection of an address; released on drop.
pub struct Slot {
    owner: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { open: Mutex::new(HashMap::new()), max })
    }

    /// A slot for `ip`, or `None` when it already holds the maximum.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let ip = rampart_core::client_key(ip);
        let mut open = self.open.lock().ok()?;
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Slot { owner: Arc::clone(self), ip })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.owner.open.lock() {
            if let Some(n) = open.get_mut(&self.ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    open.remove(&self.ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_its_share_and_slots_come_back() {
        let limit = PerAddress::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let first = limit.acquire(a);
        let second = limit.acquire(a);
        assert!(first.is_some() && second.is_some());
        assert!(limit.acquire(a).is_none(), "a third is refused");
        assert!(limit.acquire(b).is_some(), "other addresses are unaffected");
        drop(first);
        assert!(limit.acquire(a).is_some(), "a closed connection frees its slot");
    }
}
