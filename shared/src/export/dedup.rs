//! Within-hour de-duplication on (`device_id`, `$insert_id`).
//!
//! Keys are kept as 64-bit SipHash fingerprints. Two different keys share one with
//! probability about n²/2⁶⁵: 3·10⁻⁸ for a 1 M-event hour, 7·10⁻⁷ at 5 M, 10⁻⁵ at 20 M.
//! We accept that: such an event is counted as a duplicate in the manifest (never silently
//! lost from the accounting), and exactness would cost the strings (~60 bytes an event).
//!
//! The set stores each fingerprint in 6 bytes: the top 16 bits choose one of 65,536 small
//! open-addressing tables, which keep the other 48. Each table grows on its own by a
//! quarter at 85 % load, so the whole set stays between 7 and 9 bytes an event (plus
//! 1.5 MiB of table headers) and never reallocates more than one small table at a time:
//! no doubling, no moment where an old and a new copy of the set coexist.

use std::hash::Hasher;

const SHARD_BITS: u32 = 16;
const REMAINDER_BITS: u32 = 64 - SHARD_BITS;
const REMAINDER_MASK: u64 = (1 << REMAINDER_BITS) - 1;

/// One table: 48-bit remainders, little-endian, 0 marks an empty slot (the remainder 0
/// itself is kept in `zero`).
#[derive(Default)]
struct Shard {
    slots: Box<[[u8; 6]]>,
    len: u32,
    zero: bool,
}

fn remainder(slot: &[u8; 6]) -> u64 {
    let mut b = [0u8; 8];
    b[..6].copy_from_slice(slot);
    u64::from_le_bytes(b)
}

impl Shard {
    /// Where linear probing for `r` starts: the remainder (already uniform) scaled onto
    /// the table, which needs no power-of-two size.
    fn home(r: u64, capacity: usize) -> usize {
        ((r as u128 * capacity as u128) >> REMAINDER_BITS) as usize
    }

    fn insert(&mut self, r: u64) -> bool {
        if r == 0 {
            return !std::mem::replace(&mut self.zero, true);
        }
        if (self.len as usize + 1) * 20 > self.slots.len() * 17 {
            self.grow();
        }
        let cap = self.slots.len();
        let mut i = Self::home(r, cap);
        loop {
            let held = remainder(&self.slots[i]);
            if held == 0 {
                self.slots[i].copy_from_slice(&r.to_le_bytes()[..6]);
                self.len += 1;
                return true;
            }
            if held == r {
                return false;
            }
            i = if i + 1 == cap { 0 } else { i + 1 };
        }
    }

    fn grow(&mut self) {
        let cap = (self.slots.len() + self.slots.len() / 4).max(8);
        let old = std::mem::replace(&mut self.slots, vec![[0u8; 6]; cap].into_boxed_slice());
        self.len = 0;
        for slot in old.iter() {
            let r = remainder(slot);
            if r != 0 {
                self.insert(r);
            }
        }
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
    /// Empty until the first key (an hour without keys costs nothing).
    shards: Vec<Shard>,
    len: usize,
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
        if self.shards.is_empty() {
            self.shards.resize_with(1 << SHARD_BITS, Shard::default);
        }
        let new = self.shards[(key >> REMAINDER_BITS) as usize].insert(key & REMAINDER_MASK);
        self.len += usize::from(new);
        new
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the set holds (its tables and their headers).
    pub fn heap_bytes(&self) -> usize {
        self.shards.capacity() * size_of::<Shard>() + self.shards.iter().map(|s| s.slots.len() * 6).sum::<usize>()
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

    #[test]
    fn keeps_every_fingerprint_exactly_in_under_ten_bytes_each() {
        // Fingerprints that differ only in the shard bits, only in the low bits, and 0.
        let mut d = Deduplicator::new();
        let edge = [0u64, 1, 1 << 48, (1 << 48) | 1, u64::MAX, u64::MAX - 1, REMAINDER_MASK];
        for k in edge {
            assert!(d.first_time_fingerprint(k), "{k:#x}");
        }
        for k in edge {
            assert!(!d.first_time_fingerprint(k), "{k:#x} again");
        }
        let mut d = Deduplicator::new();
        let n = 2_000_000u64;
        let key = |i: u64| fingerprint(format!("\"d{}\"", i % 1000).as_bytes(), format!("\"{i}\"").as_bytes());
        for i in 0..n {
            assert!(d.first_time_fingerprint(key(i)), "key {i} is new");
        }
        for i in (0..n).step_by(7) {
            assert!(!d.first_time_fingerprint(key(i)), "key {i} is a repeat");
        }
        assert_eq!(d.len() as u64, n);
        let per_event = d.heap_bytes() as f64 / n as f64;
        assert!(per_event <= 10.0, "{per_event:.2} bytes an event");
    }
}
