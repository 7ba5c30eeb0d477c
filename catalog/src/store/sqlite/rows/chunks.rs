//! Chunk rows and the dead objects they leave.

use rusqlite::{Connection, OptionalExtension, params};
use strata_catalog_api::proto::Chunk;

use super::WriteContext;
use crate::store::commit_plan::{PartitionKey, PartitionRow};
use crate::store::compaction_rules::{IndexedChunk, RunningMaxRepair, RunningMaxRow};
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

    async fn chunks_in_range(
        &mut self,
        key: &PartitionKey,
        from: i64,
        to: i64,
    ) -> Result<Vec<IndexedChunk>> {
        Ok(self
            .connection
            .prepare_cached(
                "SELECT base_offset, end_offset, object_key, max_timestamp, running_max_timestamp
                 FROM chunks WHERE topic_id = ?1 AND partition = ?2
                   AND base_offset >= ?3 AND base_offset < ?4
                 ORDER BY base_offset",
            )?
            .query_map(params![key.0, key.1, from, to], |row| {
                Ok(IndexedChunk {
                    base_offset: row.get(0)?,
                    end_offset: row.get(1)?,
                    object_key: row.get(2)?,
                    max_timestamp: row.get(3)?,
                    running_max_timestamp: row.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?)
    }

    async fn delete_chunks_in_range(
        &mut self,
        key: &PartitionKey,
        from: i64,
        to: i64,
    ) -> Result<()> {
        self.connection
            .prepare_cached(
                "DELETE FROM chunks WHERE topic_id = ?1 AND partition = ?2
                   AND base_offset >= ?3 AND base_offset < ?4",
            )?
            .execute(params![key.0, key.1, from, to])?;
        Ok(())
    }

    async fn set_max_timestamp_offset(&mut self, key: &PartitionKey, offset: i64) -> Result<()> {
        self.connection
            .prepare_cached(
                "UPDATE partitions SET max_timestamp_offset = ?3
                 WHERE topic_id = ?1 AND partition = ?2",
            )?
            .execute(params![key.0, key.1, offset])?;
        Ok(())
    }

    async fn delete_chunks_below(
        &mut self,
        key: &PartitionKey,
        log_start: i64,
    ) -> Result<Vec<String>> {
        // `end_offset <= log_start` implies `base_offset < log_start`, which
        // bounds the scan by the primary key.
        let objects = self
            .connection
            .prepare_cached(
                "SELECT DISTINCT object_key FROM chunks
                 WHERE topic_id = ?1 AND partition = ?2 AND base_offset < ?3
                   AND end_offset <= ?3",
            )?
            .query_map(params![key.0, key.1, log_start], |row| {
                row.get::<_, String>(0)
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        self.connection
            .prepare_cached(
                "DELETE FROM chunks
                 WHERE topic_id = ?1 AND partition = ?2 AND base_offset < ?3
                   AND end_offset <= ?3",
            )?
            .execute(params![key.0, key.1, log_start])?;
        Ok(objects)
    }

    async fn repair_running_max(&mut self, key: &PartitionKey) -> Result<()> {
        repair_running_max(self.connection, &key.0, key.1)
    }

    async fn greatest_timestamp(&mut self, key: &PartitionKey) -> Result<(i64, i64)> {
        greatest_timestamp(self.connection, &key.0, key.1)
    }

    async fn set_log_start(
        &mut self,
        key: &PartitionKey,
        log_start: i64,
        max_timestamp: i64,
        max_timestamp_offset: i64,
    ) -> Result<()> {
        self.connection
            .prepare_cached(
                "UPDATE partitions SET log_start_offset = ?3, max_timestamp = ?4,
                     max_timestamp_offset = ?5
                 WHERE topic_id = ?1 AND partition = ?2",
            )?
            .execute(params![
                key.0,
                key.1,
                log_start,
                max_timestamp,
                max_timestamp_offset
            ])?;
        Ok(())
    }

    async fn forget_dead_objects(&mut self, object_keys: &[String]) -> Result<()> {
        let keys = serde_json::to_string(object_keys).map_err(|e| Error::InvalidArgument {
            field: "object_keys",
            reason: e.to_string(),
        })?;
        self.connection
            .prepare_cached(
                "DELETE FROM dead_objects WHERE object_key IN (SELECT value FROM json_each(?1))",
            )?
            .execute([&keys])?;
        // No index on segments.object_key: one scan for the whole call.
        self.connection
            .prepare_cached(
                "DELETE FROM segments WHERE object_key IN (SELECT value FROM json_each(?1))",
            )?
            .execute([&keys])?;
        Ok(())
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
