//! ReplaceChunks (the compactor's swap), DeleteRecords (retention) and
//! forgetting the dead objects the garbage collector deleted. The rules
//! live in [`crate::store::compaction_rules`].

use strata_catalog_api::proto::ReplaceChunksRequest;
use uuid::Uuid;

use crate::store::commit_plan::{PartitionKey, PartitionRow};
use crate::store::compaction_rules::{self, ReplaceVerdict};
use crate::store::rows::ChunkRows;
use crate::store::{DeleteRecordsOutcome, ReplaceOutcome};
use crate::{Error, Result};

/// The partition's row (locked where the backend locks), or
/// `UnknownPartition`.
async fn partition<R: ChunkRows>(
    rows: &mut R,
    topic_id: Uuid,
    partition: u32,
) -> Result<(PartitionKey, PartitionRow)> {
    let key = (topic_id.as_bytes().to_vec(), partition);
    let row = rows.partition(&key).await?.ok_or(Error::UnknownPartition {
        topic_id,
        partition,
    })?;
    Ok((key, row))
}

/// Swaps the expected chunks for the replacement (see
/// `CatalogStore::replace_chunks`).
pub(crate) async fn replace_chunks<R: ChunkRows>(
    rows: &mut R,
    request: &ReplaceChunksRequest,
) -> Result<ReplaceOutcome> {
    let plan = compaction_rules::plan_replace(request)?;
    if compaction_rules::too_old(request, rows.now_ms(), rows.max_commit_age_ms()) {
        // The orphan sweep may already have judged the file unknown: the
        // compactor deletes it and redoes the work.
        return Ok(ReplaceOutcome {
            conflict: true,
            sequence: 0,
            event: None,
        });
    }
    let (key, row) = partition(rows, plan.topic_id, plan.partition).await?;
    let actual = rows.chunks_in_range(&key, plan.from, plan.to).await?;
    let (max_timestamp, running_max_timestamp) = match compaction_rules::judge(&plan, &actual) {
        ReplaceVerdict::Swap {
            max_timestamp,
            running_max_timestamp,
        } => (max_timestamp, running_max_timestamp),
        verdict => {
            return Ok(ReplaceOutcome {
                conflict: verdict == ReplaceVerdict::Conflict,
                sequence: 0,
                event: None,
            });
        }
    };
    rows.delete_chunks_in_range(&key, plan.from, plan.to)
        .await?;
    let mut replacement = plan.replacement.clone();
    replacement.max_timestamp = max_timestamp;
    rows.insert_chunk(&replacement, running_max_timestamp)
        .await?;
    let max_timestamp_offset =
        compaction_rules::max_timestamp_offset_after_swap(&plan, row.max_timestamp_offset);
    if max_timestamp_offset != row.max_timestamp_offset {
        rows.set_max_timestamp_offset(&key, max_timestamp_offset)
            .await?;
    }
    rows.bury_unreferenced(&plan.expected_objects()).await?;
    let sequence = rows.next_sequence();
    Ok(ReplaceOutcome {
        conflict: false,
        sequence,
        event: Some(compaction_rules::invalidation_event(
            sequence,
            plan.topic_id,
            plan.partition,
            row.log_start_offset,
            row.next_offset,
        )),
    })
}

/// Moves the log start offset (see `CatalogStore::delete_records`).
pub(crate) async fn delete_records<R: ChunkRows>(
    rows: &mut R,
    topic_id: Uuid,
    partition_index: u32,
    offset: i64,
) -> Result<DeleteRecordsOutcome> {
    let (key, row) = partition(rows, topic_id, partition_index).await?;
    let Some(log_start) =
        compaction_rules::new_log_start(row.log_start_offset, row.next_offset, offset)?
    else {
        return Ok(DeleteRecordsOutcome {
            low_watermark: row.log_start_offset,
            event: None,
        });
    };
    let objects = rows.delete_chunks_below(&key, log_start).await?;
    rows.bury_unreferenced(&objects).await?;
    rows.repair_running_max(&key).await?;
    let (max_timestamp, max_timestamp_offset) = rows.greatest_timestamp(&key).await?;
    rows.set_log_start(&key, log_start, max_timestamp, max_timestamp_offset)
        .await?;
    let sequence = rows.next_sequence();
    Ok(DeleteRecordsOutcome {
        low_watermark: log_start,
        event: Some(compaction_rules::invalidation_event(
            sequence,
            topic_id,
            partition_index,
            log_start,
            row.next_offset,
        )),
    })
}

/// Forgets dead objects and their segment records (see
/// `CatalogStore::forget_dead_objects`).
pub(crate) async fn forget_dead_objects<R: ChunkRows>(
    rows: &mut R,
    object_keys: &[String],
) -> Result<()> {
    rows.forget_dead_objects(object_keys).await
}
