//! Garbage collection: deleting the objects the catalog lists as dead, and
//! the orphan sweep of objects the catalog does not know at all.

use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use strata_catalog_api::proto::{
    ForgetDeadObjectsRequest, ListDeadObjectsRequest, ReferencedObjectsRequest,
};
use tracing::{info, warn};

use super::{Compactor, CompactorMetrics, DELETE_CONCURRENCY, KEYS_PER_CALL, ServiceError};

impl Compactor {
    /// Deletes the objects dead for longer than the GC grace period, then
    /// forgets them in the catalog. Returns how many were deleted.
    pub async fn collect_garbage(&self) -> Result<u64, ServiceError> {
        let mut deleted_total = 0;
        loop {
            let dead_before_ms = self.clock.now_ms().saturating_sub(self.config.gc_grace_ms);
            let dead = self
                .catalog
                .list_dead_objects(ListDeadObjectsRequest {
                    dead_before_ms,
                    limit: KEYS_PER_CALL as u32,
                })
                .await?
                .objects;
            if dead.is_empty() {
                return Ok(deleted_total);
            }
            let listed = dead.len();
            let keys: Vec<String> = dead.into_iter().map(|object| object.object_key).collect();
            let (deleted, failed) = self.delete_all(&keys).await;
            if !deleted.is_empty() {
                let count = deleted.len() as u64;
                self.catalog
                    .forget_dead_objects(ForgetDeadObjectsRequest {
                        object_keys: deleted,
                    })
                    .await?;
                CompactorMetrics::add(&self.metrics.gc_deleted, count);
                deleted_total += count;
            }
            // Failed deletions are listed again first: stop until next pass.
            if failed > 0 || listed < KEYS_PER_CALL {
                return Ok(deleted_total);
            }
        }
    }

    /// Deletes objects under `segments/` and `parquet/` older than the
    /// orphan grace period that the catalog does not know (neither
    /// referenced nor dead). Returns how many were deleted.
    ///
    /// Never an object younger than twice the catalog's max commit age,
    /// whatever the grace: its commit (or swap) may still be in flight, and
    /// the catalog refuses it only once the object is older than that age.
    /// Twice leaves room for the clocks of agent, catalog and compactor to
    /// disagree by up to one max commit age.
    pub async fn sweep_orphans(&self) -> Result<u64, ServiceError> {
        let now_ms = self.clock.now_ms();
        let cutoff_ms = now_ms.saturating_sub(self.config.orphan_grace_ms);
        let mut deleted = 0;
        for prefix in ["segments", "parquet"] {
            let prefix = Path::from(prefix);
            let mut listing = self.store.list(Some(&prefix));
            let mut batch = Vec::new();
            loop {
                let next = listing.next().await.transpose()?;
                if let Some(meta) = &next
                    && meta.last_modified.timestamp_millis() <= cutoff_ms
                {
                    batch.push((
                        meta.location.to_string(),
                        meta.last_modified.timestamp_millis(),
                    ));
                }
                if batch.len() >= KEYS_PER_CALL || (next.is_none() && !batch.is_empty()) {
                    deleted += self
                        .delete_unknown(std::mem::take(&mut batch), now_ms)
                        .await?;
                }
                if next.is_none() {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Deletes those of `objects` (key, last modified in ms) the catalog
    /// does not know and that are older than twice its max commit age at
    /// `now_ms`.
    pub(super) async fn delete_unknown(
        &self,
        objects: Vec<(String, i64)>,
        now_ms: i64,
    ) -> Result<u64, ServiceError> {
        let answer = self
            .catalog
            .referenced_objects(ReferencedObjectsRequest {
                object_keys: objects.iter().map(|(key, _)| key.clone()).collect(),
            })
            .await?;
        let known: std::collections::HashSet<String> = answer.object_keys.into_iter().collect();
        let max_age_ms = i64::try_from(answer.max_commit_age_ms).unwrap_or(i64::MAX);
        let committable_since_ms = now_ms.saturating_sub(max_age_ms.saturating_mul(2));
        let mut young = 0u64;
        let orphans: Vec<String> = objects
            .into_iter()
            .filter(|(key, _)| !known.contains(key))
            .filter(|(_, modified_ms)| {
                let old_enough = *modified_ms <= committable_since_ms;
                young += u64::from(!old_enough);
                old_enough
            })
            .map(|(key, _)| key)
            .collect();
        if young > 0 {
            // Not an error: the next sweep looks again.
            info!(
                young,
                max_commit_age_ms = max_age_ms,
                "unknown objects younger than twice the catalog's max commit age are left for a later sweep"
            );
            CompactorMetrics::add(&self.metrics.orphans_too_young, young);
        }
        if orphans.is_empty() {
            return Ok(0);
        }
        let (deleted, _failed) = self.delete_all(&orphans).await;
        for key in &deleted {
            info!(object = %key, "deleted an orphan object");
        }
        let count = deleted.len() as u64;
        CompactorMetrics::add(&self.metrics.orphans_deleted, count);
        Ok(count)
    }

    /// Deletes `keys` (a missing object counts as deleted); returns the
    /// deleted keys and the number of failures.
    pub(super) async fn delete_all(&self, keys: &[String]) -> (Vec<String>, usize) {
        let results: Vec<(String, Result<(), object_store::Error>)> =
            futures::stream::iter(keys.iter().cloned())
                .map(|key| async move {
                    let result = match self.store.delete(&Path::from(key.as_str())).await {
                        Err(object_store::Error::NotFound { .. }) => Ok(()),
                        other => other,
                    };
                    (key, result)
                })
                .buffer_unordered(DELETE_CONCURRENCY)
                .collect()
                .await;
        let mut deleted = Vec::with_capacity(results.len());
        let mut failed = 0;
        for (key, result) in results {
            match result {
                Ok(()) => {
                    info!(object = %key, "deleted a dead object");
                    deleted.push(key);
                }
                Err(e) => {
                    warn!(object = %key, error = %e, "cannot delete an object; retrying later");
                    CompactorMetrics::add(&self.metrics.errors, 1);
                    failed += 1;
                }
            }
        }
        (deleted, failed)
    }
}
