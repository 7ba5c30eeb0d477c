//! Chunk rows and the dead objects they leave.

use rusqlite::{Connection, OptionalExtension, params};
use strata_catalog_api::proto::Chunk;

use super::WriteContext;
use crate::store::commit_plan::{PartitionKey, PartitionRow};
use crate::store::rows::ChunkRows;
use crate::{Error, Result};

impl ChunkRows for WriteContext<'_> {
    async fn bury_unreferenced(&mut self, object_keys: &[String]) -> Result<()> {
        bury_unreferenced(self.connection, object_keys, self.now_ms)
    }

    async fn partition(&mut self, key: &PartitionKey) -> Result<Option<PartitionRow>> {
        partition(self.connection, key)
    }

    async fn update_partition(&mut self, key: &PartitionKey, row: &PartitionRow) -> Result<()> {
        update_partition(self.connection, key, row)
    }

    async fn insert_chunk(&mut self, chunk: &Chunk, running_max_timestamp: i64) -> Result<()> {
        insert_chunk(self.connection, chunk, running_max_timestamp)
    }
}

/// Makes every object of `object_keys` that no chunk references dead
/// since `now_ms` (an object already dead keeps its time).
pub(in crate::store::sqlite) fn bury_unreferenced(
    connection: &Connection,
    object_keys: &[String],
    now_ms: i64,
) -> Result<()> {
    let mut insert = connection.prepare_cached(
        "INSERT OR IGNORE INTO dead_objects (object_key, dead_since_ms)
         SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE object_key = ?1)",
    )?;
    // Marker chunks have no object.
    for key in object_keys.iter().filter(|key| !key.is_empty()) {
        insert.execute(params![key, now_ms])?;
    }
    Ok(())
}

/// A partition's row.
pub(in crate::store::sqlite) fn partition(
    connection: &Connection,
    key: &PartitionKey,
) -> Result<Option<PartitionRow>> {
    Ok(connection
        .prepare_cached(
            "SELECT log_start_offset, next_offset, last_stable_offset, max_timestamp,
                 max_timestamp_offset
             FROM partitions WHERE topic_id = ?1 AND partition = ?2",
        )?
        .query_row(params![key.0, key.1], |row| {
            Ok(PartitionRow {
                log_start_offset: row.get(0)?,
                next_offset: row.get(1)?,
                last_stable_offset: row.get(2)?,
                max_timestamp: row.get(3)?,
                max_timestamp_offset: row.get(4)?,
            })
        })
        .optional()?)
}

/// Runs a prepared partition update (see [`update_partition`]) for one
/// row.
pub(in crate::store::sqlite) fn save_partition(
    update: &mut rusqlite::CachedStatement<'_>,
    key: &PartitionKey,
    row: &PartitionRow,
) -> Result<()> {
    update.execute(params![
        key.0,
        key.1,
        row.next_offset,
        row.last_stable_offset,
        row.max_timestamp,
        row.max_timestamp_offset
    ])?;
    Ok(())
}

/// Writes back one partition row (offsets, last stable offset, max
/// timestamp).
pub(in crate::store::sqlite) fn update_partition(
    connection: &Connection,
    key: &PartitionKey,
    row: &PartitionRow,
) -> Result<()> {
    let mut update = connection.prepare_cached(
        "UPDATE partitions SET next_offset = ?3, last_stable_offset = ?4,
             max_timestamp = ?5, max_timestamp_offset = ?6
         WHERE topic_id = ?1 AND partition = ?2",
    )?;
    save_partition(&mut update, key, row)
}

/// Inserts a chunk row (any format).
pub(in crate::store::sqlite) fn insert_chunk(
    connection: &Connection,
    chunk: &Chunk,
    running_max_timestamp: i64,
) -> Result<()> {
    let to_sql = |value: u64| {
        i64::try_from(value).map_err(|_| Error::InvalidArgument {
            field: "chunk",
            reason: format!("{value} does not fit in a signed 64-bit integer"),
        })
    };
    connection
        .prepare_cached(
            "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key,
                 object_size, position, length, batch_count, max_timestamp, running_max_timestamp,
                 format, marker_producer_id, marker_producer_epoch, marker_coordinator_epoch,
                 marker_commit)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?
        .execute(params![
            chunk.topic_id,
            chunk.partition,
            chunk.base_offset,
            chunk.end_offset,
            chunk.object_key,
            to_sql(chunk.object_size)?,
            to_sql(chunk.position)?,
            to_sql(chunk.length)?,
            chunk.batch_count,
            chunk.max_timestamp,
            running_max_timestamp,
            chunk.format,
            chunk.marker.map(|m| m.producer_id),
            chunk.marker.map(|m| m.producer_epoch),
            chunk.marker.map(|m| m.coordinator_epoch),
            chunk.marker.map(|m| m.commit),
        ])?;
    Ok(())
}
