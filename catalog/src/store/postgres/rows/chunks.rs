//! Chunk rows and the dead objects they leave.

use deadpool_postgres::GenericClient;

use strata_catalog_api::proto::Chunk;

use super::{Transaction, WriteContext};
use crate::store::commit_plan::{PartitionKey, PartitionRow};
use crate::store::compaction_rules::{IndexedChunk, RunningMaxRepair, RunningMaxRow};
use crate::store::postgres::to_bigint;
use crate::store::rows::ChunkRows;
use crate::{Error, Result};

/// Chunks read per round trip while repairing running max timestamps.
const REPAIR_PAGE: i64 = 512;

impl ChunkRows for WriteContext<'_, '_> {
    async fn bury_unreferenced(&mut self, object_keys: &[String]) -> Result<()> {
        bury_unreferenced(self.transaction, object_keys, self.now_ms).await
    }

    /// Locked `FOR UPDATE`.
    async fn partition(&mut self, key: &PartitionKey) -> Result<Option<PartitionRow>> {
        let row = self
            .query_opt(
                "SELECT log_start_offset, next_offset, last_stable_offset, max_timestamp,
                     max_timestamp_offset
                 FROM partitions WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
                &[&key.0, &i64::from(key.1)],
            )
            .await?;
        row.map(|row| {
            Ok(PartitionRow {
                log_start_offset: row.try_get(0)?,
                next_offset: row.try_get(1)?,
                last_stable_offset: row.try_get(2)?,
                max_timestamp: row.try_get(3)?,
                max_timestamp_offset: row.try_get(4)?,
            })
        })
        .transpose()
    }

    async fn update_partition(&mut self, key: &PartitionKey, row: &PartitionRow) -> Result<()> {
        self.execute(
            "UPDATE partitions SET next_offset = $3, last_stable_offset = $4,
                 max_timestamp = $5, max_timestamp_offset = $6
             WHERE topic_id = $1 AND partition = $2",
            &[
                &key.0,
                &i64::from(key.1),
                &row.next_offset,
                &row.last_stable_offset,
                &row.max_timestamp,
                &row.max_timestamp_offset,
            ],
        )
        .await?;
        Ok(())
    }

    async fn insert_chunk(&mut self, chunk: &Chunk, running_max_timestamp: i64) -> Result<()> {
        let format = i16::try_from(chunk.format).map_err(|_| Error::InvalidArgument {
            field: "chunk format",
            reason: format!("{} is not a format", chunk.format),
        })?;
        let marker = chunk.marker;
        self.execute(
            "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key,
                 object_size, position, length, batch_count, max_timestamp,
                 running_max_timestamp, format, marker_producer_id, marker_producer_epoch,
                 marker_coordinator_epoch, marker_commit)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &[
                &chunk.topic_id,
                &i64::from(chunk.partition),
                &chunk.base_offset,
                &chunk.end_offset,
                &chunk.object_key,
                &to_bigint("object_size", chunk.object_size)?,
                &to_bigint("position", chunk.position)?,
                &to_bigint("length", chunk.length)?,
                &i64::from(chunk.batch_count),
                &chunk.max_timestamp,
                &running_max_timestamp,
                &format,
                &marker.map(|m| m.producer_id),
                &marker.map(|m| m.producer_epoch),
                &marker.map(|m| m.coordinator_epoch),
                &marker.map(|m| m.commit),
            ],
        )
        .await?;
        Ok(())
    }

    async fn chunks_in_range(
        &mut self,
        key: &PartitionKey,
        from: i64,
        to: i64,
    ) -> Result<Vec<IndexedChunk>> {
        self.query(
            "SELECT base_offset, end_offset, object_key, max_timestamp, running_max_timestamp
             FROM chunks WHERE topic_id = $1 AND partition = $2
               AND base_offset >= $3 AND base_offset < $4
             ORDER BY base_offset",
            &[&key.0, &i64::from(key.1), &from, &to],
        )
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
        .collect()
    }

    async fn delete_chunks_in_range(
        &mut self,
        key: &PartitionKey,
        from: i64,
        to: i64,
    ) -> Result<()> {
        self.execute(
            "DELETE FROM chunks WHERE topic_id = $1 AND partition = $2
             AND base_offset >= $3 AND base_offset < $4",
            &[&key.0, &i64::from(key.1), &from, &to],
        )
        .await?;
        Ok(())
    }

    async fn set_max_timestamp_offset(&mut self, key: &PartitionKey, offset: i64) -> Result<()> {
        self.execute(
            "UPDATE partitions SET max_timestamp_offset = $3
             WHERE topic_id = $1 AND partition = $2",
            &[&key.0, &i64::from(key.1), &offset],
        )
        .await?;
        Ok(())
    }

    /// In one statement (`DELETE ... RETURNING`).
    async fn delete_chunks_below(
        &mut self,
        key: &PartitionKey,
        log_start: i64,
    ) -> Result<Vec<String>> {
        // `end_offset <= log_start` implies `base_offset < log_start`, which
        // bounds the scan by the primary key.
        let mut objects: Vec<String> = self
            .query(
                "DELETE FROM chunks
                 WHERE topic_id = $1 AND partition = $2 AND base_offset < $3
                   AND end_offset <= $3
                 RETURNING object_key",
                &[&key.0, &i64::from(key.1), &log_start],
            )
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?;
        objects.sort_unstable();
        objects.dedup();
        Ok(objects)
    }

    async fn repair_running_max(&mut self, key: &PartitionKey) -> Result<()> {
        repair_running_max(self.transaction, &key.0, i64::from(key.1)).await
    }

    async fn greatest_timestamp(&mut self, key: &PartitionKey) -> Result<(i64, i64)> {
        greatest_timestamp(self.transaction, &key.0, i64::from(key.1)).await
    }

    async fn set_log_start(
        &mut self,
        key: &PartitionKey,
        log_start: i64,
        max_timestamp: i64,
        max_timestamp_offset: i64,
    ) -> Result<()> {
        self.execute(
            "UPDATE partitions SET log_start_offset = $3, max_timestamp = $4,
                 max_timestamp_offset = $5
             WHERE topic_id = $1 AND partition = $2",
            &[
                &key.0,
                &i64::from(key.1),
                &log_start,
                &max_timestamp,
                &max_timestamp_offset,
            ],
        )
        .await?;
        Ok(())
    }

    async fn forget_dead_objects(&mut self, object_keys: &[String]) -> Result<()> {
        self.execute(
            "DELETE FROM dead_objects WHERE object_key = ANY($1)",
            &[&object_keys],
        )
        .await?;
        // No index on segments.object_key: one scan for the whole call.
        self.execute(
            "DELETE FROM segments WHERE object_key = ANY($1)",
            &[&object_keys],
        )
        .await?;
        Ok(())
    }
}

/// Makes every object of `object_keys` that no chunk references dead
/// since `now_ms` (an object already dead keeps its time), in one
/// statement.
pub(in crate::store::postgres) async fn bury_unreferenced(
    client: &impl GenericClient,
    object_keys: &[String],
    now_ms: i64,
) -> Result<()> {
    if object_keys.is_empty() {
        return Ok(());
    }
    let statement = client
        .prepare_cached(
            "INSERT INTO dead_objects (object_key, dead_since_ms)
             SELECT k, $2 FROM unnest($1::text[]) AS k
             WHERE k <> '' AND NOT EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = k)
             ON CONFLICT (object_key) DO NOTHING",
        )
        .await?;
    client.execute(&statement, &[&object_keys, &now_ms]).await?;
    Ok(())
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
/// `(-1, -1)` without chunks.
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
