//! Compaction claims: a lease per partition so that two compactors do not
//! rewrite the same chunks. Advisory only (ReplaceChunks' compare-and-swap
//! keeps the index right whatever happens), so they live in memory on the
//! catalog's clock and a catalog restart simply frees them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::store::Clock;

/// The longest lease a compactor may ask for.
pub(crate) const LEASE_MAX_MS: i64 = 3_600_000;

/// A partition, by raw topic id bytes and index.
type Key = (Vec<u8>, u32);

#[derive(Debug, Clone)]
struct Claim {
    compactor_id: String,
    expires_ms: i64,
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClaimAnswer {
    pub(crate) granted: bool,
    /// When the holder's claim expires.
    pub(crate) expires_ms: i64,
    /// The holder.
    pub(crate) holder: String,
}

/// Every live claim.
#[derive(Debug)]
pub(crate) struct CompactionClaims {
    clock: Arc<dyn Clock>,
    claims: Mutex<HashMap<Key, Claim>>,
}

impl CompactionClaims {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            claims: Mutex::new(HashMap::new()),
        }
    }

    /// Grants the claim if the partition is unclaimed, its claim expired,
    /// or `compactor_id` holds it (the lease restarts).
    pub(crate) fn claim(&self, key: Key, compactor_id: &str, lease_ms: i64) -> ClaimAnswer {
        let now_ms = self.clock.now_ms();
        let mut claims = self
            .claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Expired claims are garbage; dropping them here bounds the map by
        // the partitions under compaction.
        claims.retain(|_, claim| claim.expires_ms > now_ms);
        if let Some(held) = claims.get(&key)
            && held.compactor_id != compactor_id
        {
            return ClaimAnswer {
                granted: false,
                expires_ms: held.expires_ms,
                holder: held.compactor_id.clone(),
            };
        }
        let expires_ms = now_ms.saturating_add(lease_ms);
        claims.insert(
            key,
            Claim {
                compactor_id: compactor_id.to_string(),
                expires_ms,
            },
        );
        ClaimAnswer {
            granted: true,
            expires_ms,
            holder: compactor_id.to_string(),
        }
    }

    /// Releases `compactor_id`'s live claim; true if it held one.
    pub(crate) fn release(&self, key: &Key, compactor_id: &str) -> bool {
        let now_ms = self.clock.now_ms();
        let mut claims = self
            .claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let held = claims
            .get(key)
            .is_some_and(|c| c.compactor_id == compactor_id && c.expires_ms > now_ms);
        if held {
            claims.remove(key);
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::ManualClock;

    #[test]
    fn claims_expire_renew_and_release() {
        let clock = Arc::new(ManualClock::default());
        let claims = CompactionClaims::new(clock.clone());
        let key = (vec![1; 16], 0);
        let a = claims.claim(key.clone(), "a", 100);
        assert_eq!((a.granted, a.expires_ms), (true, 100));
        let b = claims.claim(key.clone(), "b", 100);
        assert_eq!(
            (b.granted, b.expires_ms, b.holder.as_str()),
            (false, 100, "a")
        );
        clock.set(50);
        assert_eq!(claims.claim(key.clone(), "a", 100).expires_ms, 150);
        assert!(!claims.release(&key, "b"), "b holds nothing");
        clock.set(150);
        assert!(claims.claim(key.clone(), "b", 10).granted, "expired");
        assert!(!claims.release(&key, "a"));
        assert!(claims.release(&key, "b"));
        assert!(claims.claim(key, "a", 10).granted, "released");
    }
}
