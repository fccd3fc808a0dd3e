//! The accounting of one data kind of an hour: every record read is exported, filtered,
//! a duplicate or invalid, and nothing else.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounting {
    pub read: u64,
    pub exported: u64,
    pub filtered: u64,
    pub duplicates: u64,
    pub invalid: u64,
}

impl Accounting {
    pub fn balances(&self) -> bool {
        self.read == self.exported + self.filtered + self.duplicates + self.invalid
    }

    pub fn add(&mut self, other: &Accounting) {
        self.read += other.read;
        self.exported += other.exported;
        self.filtered += other.filtered;
        self.duplicates += other.duplicates;
        self.invalid += other.invalid;
    }
}
