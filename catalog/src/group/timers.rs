//! A deadline queue: one deadline per key, the earliest found in O(log n).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// Deadlines (clock milliseconds) by key. Setting a key's deadline again
/// replaces the old one, so the queue never holds stale entries and stays
/// as large as the number of live timers.
#[derive(Debug)]
pub(crate) struct Timers<K> {
    by_deadline: BTreeSet<(i64, K)>,
    by_key: HashMap<K, i64>,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Self {
            by_deadline: BTreeSet::new(),
            by_key: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Clone> Timers<K> {
    /// Sets (or moves) `key`'s deadline.
    pub(crate) fn set(&mut self, key: K, deadline_ms: i64) {
        if let Some(old) = self.by_key.insert(key.clone(), deadline_ms) {
            self.by_deadline.remove(&(old, key.clone()));
        }
        self.by_deadline.insert((deadline_ms, key));
    }

    /// Removes `key`'s deadline, if any.
    pub(crate) fn cancel(&mut self, key: &K) {
        if let Some(old) = self.by_key.remove(key) {
            self.by_deadline.remove(&(old, key.clone()));
        }
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline_ms(&self) -> Option<i64> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns the earliest key whose deadline is <= `now_ms`.
    pub(crate) fn pop_expired(&mut self, now_ms: i64) -> Option<K> {
        let (deadline, _) = self.by_deadline.first()?;
        if *deadline > now_ms {
            return None;
        }
        let (_, key) = self.by_deadline.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }

    /// How many timers are set.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_replace_and_pop_in_order() {
        let mut timers = Timers::default();
        timers.set("a", 30);
        timers.set("b", 10);
        timers.set("a", 5);
        timers.set("c", 20);
        timers.cancel(&"c");
        assert_eq!(timers.len(), 2);
        assert_eq!(timers.next_deadline_ms(), Some(5));
        assert_eq!(timers.pop_expired(4), None);
        assert_eq!(timers.pop_expired(100), Some("a"));
        assert_eq!(timers.pop_expired(100), Some("b"));
        assert_eq!(timers.pop_expired(100), None);
        assert_eq!(timers.next_deadline_ms(), None);
    }
}
