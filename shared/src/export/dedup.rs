//! Within-hour de-duplication on (`device_id`, `$insert_id`).
//!
//! Keys are kept as 64-bit SipHash fingerprints (8 bytes each, so 5 M events cost ~80 MiB
//! instead of ~400 MiB for the strings). Two different keys collide with probability
//! about n²/2⁶⁵ — for 5 M events in one hour, under one in a million; such an event would
//! be counted as a duplicate in the manifest, never silently dropped.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// The fingerprints are already uniformly distributed; hashing them again is wasted work.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 fingerprints are hashed")
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The 64-bit fingerprint of a (`device_id`, `$insert_id`) key: std's SipHash-1-3 with
/// fixed zero keys, deterministic across runs, hosts and threads.
pub fn fingerprint(device_id: &[u8], insert_id: &[u8]) -> u64 {
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    h.write(device_id);
    h.write_u8(0xff);
    h.write(insert_id);
    h.finish()
}

#[derive(Default)]
pub struct Deduplicator {
    seen: HashSet<u64, BuildHasherDefault<PassThrough>>,
}

impl Deduplicator {
    pub fn new() -> Self {
        Self::default()
    }

    /// True the first time a key is seen, false for every later duplicate.
    pub fn first_time(&mut self, device_id: &[u8], insert_id: &[u8]) -> bool {
        self.first_time_fingerprint(fingerprint(device_id, insert_id))
    }

    /// [`Self::first_time`] for a key already fingerprinted (by a normalising thread).
    pub fn first_time_fingerprint(&mut self, key: u64) -> bool {
        self.seen.insert(key)
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_only_repeats() {
        let mut d = Deduplicator::new();
        assert!(d.first_time(b"\"dev-1\"", b"\"a\""));
        assert!(!d.first_time(b"\"dev-1\"", b"\"a\""));
        assert!(d.first_time(b"\"dev-2\"", b"\"a\""));
        assert!(d.first_time(b"\"dev-1\"", b"\"b\""));
        // the separator keeps (ab, c) and (a, bc) apart
        assert!(d.first_time(b"ab", b"c"));
        assert!(d.first_time(b"a", b"bc"));
        assert_eq!(d.len(), 5);
    }
}
