//! ReplaceChunks (the compactor's swap), DeleteRecords (retention) and the
//! dead objects the garbage collector works from. The rules live in
//! [`crate::store::compaction_rules`]; this file reads and writes the rows.

use deadpool_postgres::GenericClient;
use strata_catalog_api::proto::ReplaceChunksRequest;
use uuid::Uuid;

use super::rows::chunks::bury_unreferenced;
use super::rows::{Transaction, WriteContext};
use super::to_bigint;
use crate::store::compaction_rules::{
    self, IndexedChunk, ReplaceVerdict, RunningMaxRepair, RunningMaxRow,
};
use crate::store::{DeadObject, DeleteRecordsOutcome, ReplaceOutcome};
use crate::{Error, Result};

/// The most dead objects one listing returns.
const LIST_DEAD_OBJECTS_MAX: u32 = 10_000;
/// Chunks read per round trip while repairing running max timestamps.
const REPAIR_PAGE: i64 = 512;

/// A partition's offsets and greatest timestamp, locked for the write.
#[derive(Debug, Clone, Copy)]
struct PartitionRow {
    log_start_offset: i64,
    next_offset: i64,
    max_timestamp_offset: i64,
}

async fn partition(
    transaction: &Transaction<'_>,
    topic_id: Uuid,
    partition: u32,
) -> Result<PartitionRow> {
    let statement = transaction
        .prepare_cached(
            "SELECT log_start_offset, next_offset, max_timestamp_offset
             FROM partitions WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
        )
        .await?;
    let row = transaction
        .query_opt(
            &statement,
            &[&topic_id.as_bytes().as_slice(), &i64::from(partition)],
        )
        .await?
        .ok_or(Error::UnknownPartition {
            topic_id,
            partition,
        })?;
    Ok(PartitionRow {
        log_start_offset: row.try_get(0)?,
        next_offset: row.try_get(1)?,
        max_timestamp_offset: row.try_get(2)?,
    })
}

/// Swaps the expected chunks for the replacement (see
/// `CatalogStore::replace_chunks`).
pub(super) async fn replace_chunks(
    context: &mut WriteContext<'_, '_>,
    request: &ReplaceChunksRequest,
) -> Result<ReplaceOutcome> {
    let transaction = context.transaction;
    let plan = compaction_rules::plan_replace(request)?;
    let id = plan.topic_id.as_bytes().as_slice();
    let index = i64::from(plan.partition);
    let row = partition(transaction, plan.topic_id, plan.partition).await?;
    let statement = transaction
        .prepare_cached(
            "SELECT base_offset, end_offset, object_key, max_timestamp, running_max_timestamp
             FROM chunks WHERE topic_id = $1 AND partition = $2
               AND base_offset >= $3 AND base_offset < $4
             ORDER BY base_offset",
        )
        .await?;
    let actual = transaction
        .query(&statement, &[&id, &index, &plan.from, &plan.to])
        .await?
        .iter()
        .map(|row| {
            Ok(IndexedChunk {
                base_offset: row.try_get(0)?,
                end_offset: row.try_get(1)?,
                object_key: row.try_get(2)?,
                max_timestamp: row.try_get(3)?,
                running_max_timestamp: row.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
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
    let statement = transaction
        .prepare_cached(
            "DELETE FROM chunks WHERE topic_id = $1 AND partition = $2
               AND base_offset >= $3 AND base_offset < $4",
        )
        .await?;
    transaction
        .execute(&statement, &[&id, &index, &plan.from, &plan.to])
        .await?;
    insert_replacement(transaction, &plan, max_timestamp, running_max_timestamp).await?;
    let max_timestamp_offset =
        compaction_rules::max_timestamp_offset_after_swap(&plan, row.max_timestamp_offset);
    if max_timestamp_offset != row.max_timestamp_offset {
        transaction
            .execute(
                "UPDATE partitions SET max_timestamp_offset = $3
                 WHERE topic_id = $1 AND partition = $2",
                &[&id, &index, &max_timestamp_offset],
            )
            .await?;
    }
    bury_unreferenced(transaction, &plan.expected_objects(), context.now_ms).await?;
    let sequence = context.next_sequence();
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

async fn insert_replacement(
    transaction: &Transaction<'_>,
    plan: &compaction_rules::ReplacePlan,
    max_timestamp: i64,
    running_max_timestamp: i64,
) -> Result<()> {
    let chunk = &plan.replacement;
    let format = i16::try_from(chunk.format).map_err(|_| Error::InvalidArgument {
        field: "replacement.format",
        reason: format!("{} does not fit", chunk.format),
    })?;
    let statement = transaction
        .prepare_cached(
            "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key,
                 object_size, position, length, batch_count, max_timestamp, running_max_timestamp,
                 format)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &chunk.topic_id.as_slice(),
                &i64::from(chunk.partition),
                &chunk.base_offset,
                &chunk.end_offset,
                &chunk.object_key,
                &to_bigint("object_size", chunk.object_size)?,
                &to_bigint("position", chunk.position)?,
                &to_bigint("length", chunk.length)?,
                &i64::from(chunk.batch_count),
                &max_timestamp,
                &running_max_timestamp,
                &format,
            ],
        )
        .await?;
    Ok(())
}

/// Moves the log start offset (see `CatalogStore::delete_records`).
pub(super) async fn delete_records(
    context: &mut WriteContext<'_, '_>,
    topic_id: Uuid,
    partition_index: u32,
    offset: i64,
) -> Result<DeleteRecordsOutcome> {
    let transaction = context.transaction;
    let row = partition(transaction, topic_id, partition_index).await?;
    let Some(log_start) =
        compaction_rules::new_log_start(row.log_start_offset, row.next_offset, offset)?
    else {
        return Ok(DeleteRecordsOutcome {
            low_watermark: row.log_start_offset,
            event: None,
        });
    };
    let id = topic_id.as_bytes().as_slice();
    let index = i64::from(partition_index);
    // `end_offset <= log_start` implies `base_offset < log_start`, which
    // bounds the scan by the primary key.
    let statement = transaction
        .prepare_cached(
            "DELETE FROM chunks
             WHERE topic_id = $1 AND partition = $2 AND base_offset < $3 AND end_offset <= $3
             RETURNING object_key",
        )
        .await?;
    let mut objects: Vec<String> = transaction
        .query(&statement, &[&id, &index, &log_start])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    objects.sort_unstable();
    objects.dedup();
    bury_unreferenced(transaction, &objects, context.now_ms).await?;
    repair_running_max(transaction, id, index).await?;
    let (max_timestamp, max_timestamp_offset) = greatest_timestamp(transaction, id, index).await?;
    transaction
        .execute(
            "UPDATE partitions SET log_start_offset = $3, max_timestamp = $4,
                 max_timestamp_offset = $5
             WHERE topic_id = $1 AND partition = $2",
            &[
                &id,
                &index,
                &log_start,
                &max_timestamp,
                &max_timestamp_offset,
            ],
        )
        .await?;
    let sequence = context.next_sequence();
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

/// Recomputes the running max timestamps of the chunks left, from the
/// first one, until they agree with the stored values; reads a page of
/// chunks per round trip.
async fn repair_running_max(transaction: &Transaction<'_>, id: &[u8], index: i64) -> Result<()> {
    let select = transaction
        .prepare_cached(
            "SELECT base_offset, max_timestamp, running_max_timestamp FROM chunks
             WHERE topic_id = $1 AND partition = $2 AND base_offset > $3
             ORDER BY base_offset LIMIT $4",
        )
        .await?;
    let mut repair = RunningMaxRepair::new();
    let mut bases = Vec::new();
    let mut values = Vec::new();
    let mut after = i64::MIN;
    'pages: loop {
        let rows = transaction
            .query(&select, &[&id, &index, &after, &REPAIR_PAGE])
            .await?;
        for row in &rows {
            let row = RunningMaxRow {
                base_offset: row.try_get(0)?,
                max_timestamp: row.try_get(1)?,
                running_max_timestamp: row.try_get(2)?,
            };
            after = row.base_offset;
            match repair.step(&row) {
                Some(running) => {
                    bases.push(row.base_offset);
                    values.push(running);
                }
                None => break 'pages,
            }
        }
        if i64::try_from(rows.len()).unwrap_or(i64::MAX) < REPAIR_PAGE {
            break;
        }
    }
    if bases.is_empty() {
        return Ok(());
    }
    let update = transaction
        .prepare_cached(
            "UPDATE chunks c SET running_max_timestamp = u.running
             FROM unnest($3::int8[], $4::int8[]) AS u (base_offset, running)
             WHERE c.topic_id = $1 AND c.partition = $2 AND c.base_offset = u.base_offset",
        )
        .await?;
    transaction
        .execute(&update, &[&id, &index, &bases, &values])
        .await?;
    Ok(())
}

/// The partition's greatest timestamp and the first chunk holding it,
/// `(-1, -1)` without chunks (see the SQLite store for why both steps use
/// an index).
async fn greatest_timestamp(
    transaction: &Transaction<'_>,
    id: &[u8],
    index: i64,
) -> Result<(i64, i64)> {
    let last = transaction
        .prepare_cached(
            "SELECT running_max_timestamp FROM chunks WHERE topic_id = $1 AND partition = $2
             ORDER BY base_offset DESC LIMIT 1",
        )
        .await?;
    let Some(row) = transaction.query_opt(&last, &[&id, &index]).await? else {
        return Ok((-1, -1));
    };
    let greatest: i64 = row.try_get(0)?;
    let first = transaction
        .prepare_cached(
            "SELECT base_offset FROM chunks
             WHERE topic_id = $1 AND partition = $2 AND running_max_timestamp >= $3
             ORDER BY running_max_timestamp, base_offset LIMIT 1",
        )
        .await?;
    let offset: i64 = transaction
        .query_one(&first, &[&id, &index, &greatest])
        .await?
        .try_get(0)?;
    Ok((greatest, offset))
}

/// Forgets dead objects and their segment records.
pub(super) async fn forget_dead_objects(
    context: &WriteContext<'_, '_>,
    object_keys: &[String],
) -> Result<()> {
    let transaction = context.transaction;
    transaction
        .execute(
            "DELETE FROM dead_objects WHERE object_key = ANY($1)",
            &[&object_keys],
        )
        .await?;
    // No index on segments.object_key: one scan for the whole call.
    transaction
        .execute(
            "DELETE FROM segments WHERE object_key = ANY($1)",
            &[&object_keys],
        )
        .await?;
    Ok(())
}

/// Dead objects, oldest first.
pub(super) async fn list_dead_objects(
    client: &impl GenericClient,
    dead_before_ms: i64,
    limit: u32,
) -> Result<Vec<DeadObject>> {
    let limit = i64::from(limit.clamp(1, LIST_DEAD_OBJECTS_MAX));
    let statement = client
        .prepare_cached(
            "SELECT object_key, dead_since_ms FROM dead_objects WHERE dead_since_ms <= $1
             ORDER BY dead_since_ms, object_key COLLATE \"C\" LIMIT $2",
        )
        .await?;
    client
        .query(&statement, &[&dead_before_ms, &limit])
        .await?
        .iter()
        .map(|row| {
            Ok(DeadObject {
                object_key: row.try_get(0)?,
                dead_since_ms: row.try_get(1)?,
            })
        })
        .collect()
}

/// The keys some chunk references, in the order given.
pub(super) async fn referenced_objects(
    client: &impl GenericClient,
    object_keys: &[String],
) -> Result<Vec<String>> {
    let statement = client
        .prepare_cached(
            "SELECT k FROM unnest($1::text[]) AS k
             WHERE EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = k)
                OR EXISTS (SELECT 1 FROM dead_objects d WHERE d.object_key = k)",
        )
        .await?;
    let found: std::collections::HashSet<String> = client
        .query(&statement, &[&object_keys])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut seen = std::collections::HashSet::new();
    Ok(object_keys
        .iter()
        .filter(|key| found.contains(key.as_str()) && seen.insert(key.as_str()))
        .cloned()
        .collect())
}
