//! The agent-wide budget of Fetch response bytes in memory.
//!
//! Each fetch may return up to `fetch_max_bytes` (55 MiB), and a response
//! stays in memory until the client has read all of it. Without a shared
//! bound, many consumers asking for large responses and reading them
//! slowly hold that much each: 64 such connections took an agent to 2.7 GiB
//! of RSS. A fetch reserves its byte budget here before reading, keeps
//! what its response holds until the response is written, and gives back
//! the rest at once.
//!
//! A fetch never waits for its whole budget: it takes what is free (down
//! to [`MIN_GRANT_BYTES`], for which it waits) and returns fewer bytes, as
//! a broker may. A grant of the minimum still returns at least one whole
//! batch (KIP-74), so a batch larger than the grant may exceed the budget
//! by at most one batch per fetch in flight.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{Metrics, add};

/// Permits count KiB, so the budget fits a semaphore's `u32` acquisitions.
const UNIT: usize = 1024;

/// The least a fetch reads with: it waits for this much to be free.
pub(crate) const MIN_GRANT_BYTES: usize = 1 << 20;

/// The shared budget.
#[derive(Debug, Clone)]
pub(crate) struct FetchMemory {
    permits: Arc<Semaphore>,
}

/// Bytes a fetch may hold, returned to the budget when dropped.
#[derive(Debug)]
pub(crate) struct FetchGrant {
    permit: OwnedSemaphorePermit,
}

impl FetchMemory {
    /// A budget of `bytes` (at least [`MIN_GRANT_BYTES`]).
    pub(crate) fn new(bytes: usize) -> Self {
        let units = bytes.max(MIN_GRANT_BYTES) / UNIT;
        Self {
            permits: Arc::new(Semaphore::new(units.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Up to `wanted` bytes: all of it when free, else what is free, else
    /// (waiting) the minimum. Counted in `metrics` when less than wanted.
    pub(crate) async fn reserve(&self, wanted: usize, metrics: &Metrics) -> FetchGrant {
        let wanted = wanted.div_ceil(UNIT).clamp(1, u32::MAX as usize);
        let least = wanted.min(MIN_GRANT_BYTES / UNIT);
        let free = self.permits.available_permits();
        let take = free.min(wanted);
        if take >= least {
            let take = u32::try_from(take).unwrap_or(u32::MAX);
            if let Ok(permit) = Arc::clone(&self.permits).try_acquire_many_owned(take) {
                if (take as usize) < wanted {
                    add(&metrics.fetch_memory_reduced, 1);
                }
                return FetchGrant { permit };
            }
        }
        add(&metrics.fetch_memory_waits, 1);
        let least = u32::try_from(least).unwrap_or(u32::MAX);
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(least)
            .await
            .expect("the fetch memory semaphore is never closed");
        FetchGrant { permit }
    }
}

impl FetchGrant {
    /// The bytes granted.
    pub(crate) fn bytes(&self) -> usize {
        self.permit.num_permits() * UNIT
    }

    /// Gives back all but what `used` bytes need.
    pub(crate) fn keep(&mut self, used: usize) {
        let keep = used.div_ceil(UNIT).max(1);
        let spare = self.permit.num_permits().saturating_sub(keep);
        if spare > 0 {
            drop(self.permit.split(spare));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grants_shrink_to_what_is_free_and_come_back_when_dropped() {
        let metrics = Metrics::default();
        let memory = FetchMemory::new(8 << 20);
        let mut first = memory.reserve(5 << 20, &metrics).await;
        assert_eq!(first.bytes(), 5 << 20);
        let second = memory.reserve(5 << 20, &metrics).await;
        assert_eq!(second.bytes(), 3 << 20, "what is free, not more");
        first.keep(10_000);
        assert_eq!(first.bytes(), 10 * 1024);
        drop(second);
        let third = memory.reserve(usize::MAX, &metrics).await;
        assert_eq!(third.bytes(), (8 << 20) - 10 * 1024);
    }

    #[tokio::test]
    async fn a_fetch_waits_for_the_minimum_when_the_budget_is_spent() {
        let metrics = Metrics::default();
        let memory = FetchMemory::new(2 << 20);
        let all = memory.reserve(2 << 20, &metrics).await;
        let waiting = {
            let memory = memory.clone();
            tokio::spawn(async move {
                let metrics = Metrics::default();
                memory.reserve(4 << 20, &metrics).await.bytes()
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "nothing is free");
        drop(all);
        assert_eq!(waiting.await.unwrap(), MIN_GRANT_BYTES);
    }
}
