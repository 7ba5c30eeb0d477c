//! ReplaceChunks (the compactor's swap), DeleteRecords (retention) and the
//! dead objects the garbage collector works from. The rules live in
//! [`crate::store::compaction_rules`]; this file reads and writes the rows.

use rusqlite::{Connection, OptionalExtension, params};
use strata_catalog_api::proto::ReplaceChunksRequest;
use uuid::Uuid;

use super::rows::WriteContext;
use super::rows::chunks::{bury_unreferenced, insert_chunk};
use crate::store::compaction_rules::{
    self, IndexedChunk, ReplaceVerdict, RunningMaxRepair, RunningMaxRow,
};
use crate::store::{DeadObject, DeleteRecordsOutcome, ReplaceOutcome};
use crate::{Error, Result};

/// The most dead objects one listing returns.
const LIST_DEAD_OBJECTS_MAX: u32 = 10_000;

/// A partition's offsets and greatest timestamp.
#[derive(Debug, Clone, Copy)]
struct PartitionRow {
    log_start_offset: i64,
    next_offset: i64,
    max_timestamp_offset: i64,
}

fn partition(connection: &Connection, topic_id: Uuid, partition: u32) -> Result<PartitionRow> {
    connection
        .prepare_cached(
            "SELECT log_start_offset, next_offset, max_timestamp_offset
             FROM partitions WHERE topic_id = ?1 AND partition = ?2",
        )?
        .query_row(params![topic_id.as_bytes(), partition], |row| {
            Ok(PartitionRow {
                log_start_offset: row.get(0)?,
                next_offset: row.get(1)?,
                max_timestamp_offset: row.get(2)?,
            })
        })
        .optional()?
        .ok_or(Error::UnknownPartition {
            topic_id,
            partition,
        })
}

/// Swaps the expected chunks for the replacement (see
/// `CatalogStore::replace_chunks`).
pub(super) fn replace_chunks(
    context: &mut WriteContext<'_>,
    request: &ReplaceChunksRequest,
) -> Result<ReplaceOutcome> {
    let connection = context.connection;
    let plan = compaction_rules::plan_replace(request)?;
    let id = plan.topic_id.as_bytes();
    let row = partition(connection, plan.topic_id, plan.partition)?;
    let actual = connection
        .prepare_cached(
            "SELECT base_offset, end_offset, object_key, max_timestamp, running_max_timestamp
             FROM chunks WHERE topic_id = ?1 AND partition = ?2
               AND base_offset >= ?3 AND base_offset < ?4
             ORDER BY base_offset",
        )?
        .query_map(params![id, plan.partition, plan.from, plan.to], |row| {
            Ok(IndexedChunk {
                base_offset: row.get(0)?,
                end_offset: row.get(1)?,
                object_key: row.get(2)?,
                max_timestamp: row.get(3)?,
                running_max_timestamp: row.get(4)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
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
    connection
        .prepare_cached(
            "DELETE FROM chunks WHERE topic_id = ?1 AND partition = ?2
               AND base_offset >= ?3 AND base_offset < ?4",
        )?
        .execute(params![id, plan.partition, plan.from, plan.to])?;
    let mut replacement = plan.replacement.clone();
    replacement.max_timestamp = max_timestamp;
    insert_chunk(connection, &replacement, running_max_timestamp)?;
    let max_timestamp_offset =
        compaction_rules::max_timestamp_offset_after_swap(&plan, row.max_timestamp_offset);
    if max_timestamp_offset != row.max_timestamp_offset {
        connection
            .prepare_cached(
                "UPDATE partitions SET max_timestamp_offset = ?3
                 WHERE topic_id = ?1 AND partition = ?2",
            )?
            .execute(params![id, plan.partition, max_timestamp_offset])?;
    }
    bury_unreferenced(connection, &plan.expected_objects(), context.now_ms)?;
    let sequence = context.counters.next_sequence();
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
pub(super) fn delete_records(
    context: &mut WriteContext<'_>,
    topic_id: Uuid,
    partition_index: u32,
    offset: i64,
) -> Result<DeleteRecordsOutcome> {
    let connection = context.connection;
    let row = partition(connection, topic_id, partition_index)?;
    let Some(log_start) =
        compaction_rules::new_log_start(row.log_start_offset, row.next_offset, offset)?
    else {
        return Ok(DeleteRecordsOutcome {
            low_watermark: row.log_start_offset,
            event: None,
        });
    };
    let id = topic_id.as_bytes();
    // `end_offset <= log_start` implies `base_offset < log_start`, which
    // bounds the scan by the primary key.
    let objects = connection
        .prepare_cached(
            "SELECT DISTINCT object_key FROM chunks
             WHERE topic_id = ?1 AND partition = ?2 AND base_offset < ?3 AND end_offset <= ?3",
        )?
        .query_map(params![id, partition_index, log_start], |row| {
            row.get::<_, String>(0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    connection
        .prepare_cached(
            "DELETE FROM chunks
             WHERE topic_id = ?1 AND partition = ?2 AND base_offset < ?3 AND end_offset <= ?3",
        )?
        .execute(params![id, partition_index, log_start])?;
    bury_unreferenced(connection, &objects, context.now_ms)?;
    repair_running_max(connection, id, partition_index)?;
    let (max_timestamp, max_timestamp_offset) =
        greatest_timestamp(connection, id, partition_index)?;
    connection
        .prepare_cached(
            "UPDATE partitions SET log_start_offset = ?3, max_timestamp = ?4,
                 max_timestamp_offset = ?5
             WHERE topic_id = ?1 AND partition = ?2",
        )?
        .execute(params![
            id,
            partition_index,
            log_start,
            max_timestamp,
            max_timestamp_offset
        ])?;
    let sequence = context.counters.next_sequence();
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
/// first one, until they agree with the stored values.
fn repair_running_max(connection: &Connection, id: &[u8], partition: u32) -> Result<()> {
    let mut repairs = Vec::new();
    {
        let mut statement = connection.prepare_cached(
            "SELECT base_offset, max_timestamp, running_max_timestamp FROM chunks
             WHERE topic_id = ?1 AND partition = ?2 ORDER BY base_offset",
        )?;
        let mut rows = statement.query(params![id, partition])?;
        let mut repair = RunningMaxRepair::new();
        while let Some(row) = rows.next()? {
            let row = RunningMaxRow {
                base_offset: row.get(0)?,
                max_timestamp: row.get(1)?,
                running_max_timestamp: row.get(2)?,
            };
            match repair.step(&row) {
                Some(running) => repairs.push((row.base_offset, running)),
                None => break,
            }
        }
    }
    let mut update = connection.prepare_cached(
        "UPDATE chunks SET running_max_timestamp = ?4
         WHERE topic_id = ?1 AND partition = ?2 AND base_offset = ?3",
    )?;
    for (base_offset, running) in repairs {
        update.execute(params![id, partition, base_offset, running])?;
    }
    Ok(())
}

/// The partition's greatest timestamp and the first chunk holding it,
/// `(-1, -1)` without chunks. Both steps use an index: the last chunk's
/// running max is the greatest timestamp, and the first chunk whose
/// running max reaches it is the first holding it.
fn greatest_timestamp(connection: &Connection, id: &[u8], partition: u32) -> Result<(i64, i64)> {
    let greatest: Option<i64> = connection
        .prepare_cached(
            "SELECT running_max_timestamp FROM chunks WHERE topic_id = ?1 AND partition = ?2
             ORDER BY base_offset DESC LIMIT 1",
        )?
        .query_row(params![id, partition], |row| row.get(0))
        .optional()?;
    let Some(greatest) = greatest else {
        return Ok((-1, -1));
    };
    let offset: i64 = connection
        .prepare_cached(
            "SELECT base_offset FROM chunks
             WHERE topic_id = ?1 AND partition = ?2 AND running_max_timestamp >= ?3
             ORDER BY running_max_timestamp, base_offset LIMIT 1",
        )?
        .query_row(params![id, partition, greatest], |row| row.get(0))?;
    Ok((greatest, offset))
}

/// Forgets dead objects and their segment records.
pub(super) fn forget_dead_objects(
    context: &mut WriteContext<'_>,
    object_keys: &[String],
) -> Result<()> {
    let connection = context.connection;
    let keys = serde_json::to_string(object_keys).map_err(|e| Error::InvalidArgument {
        field: "object_keys",
        reason: e.to_string(),
    })?;
    connection
        .prepare_cached(
            "DELETE FROM dead_objects WHERE object_key IN (SELECT value FROM json_each(?1))",
        )?
        .execute([&keys])?;
    // No index on segments.object_key: one scan for the whole call.
    connection
        .prepare_cached(
            "DELETE FROM segments WHERE object_key IN (SELECT value FROM json_each(?1))",
        )?
        .execute([&keys])?;
    Ok(())
}

/// Dead objects, oldest first.
pub(super) fn list_dead_objects(
    connection: &Connection,
    dead_before_ms: i64,
    limit: u32,
) -> Result<Vec<DeadObject>> {
    let limit = limit.clamp(1, LIST_DEAD_OBJECTS_MAX);
    Ok(connection
        .prepare_cached(
            "SELECT object_key, dead_since_ms FROM dead_objects WHERE dead_since_ms <= ?1
             ORDER BY dead_since_ms, object_key LIMIT ?2",
        )?
        .query_map(params![dead_before_ms, limit], |row| {
            Ok(DeadObject {
                object_key: row.get(0)?,
                dead_since_ms: row.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The keys the catalog still knows (referenced by a chunk, or dead and
/// awaiting the GC's grace period), in the order given.
pub(super) fn referenced_objects(
    connection: &Connection,
    object_keys: &[String],
) -> Result<Vec<String>> {
    let mut statement = connection.prepare_cached(
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM chunks WHERE object_key = ?1)
            OR EXISTS (SELECT 1 FROM dead_objects WHERE object_key = ?1)",
    )?;
    let mut seen = std::collections::HashSet::new();
    let mut referenced = Vec::new();
    for key in object_keys {
        if seen.insert(key.as_str()) && statement.exists([key])? {
            referenced.push(key.clone());
        }
    }
    Ok(referenced)
}
