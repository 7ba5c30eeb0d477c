//! Chunk rows and the dead objects they leave.

use deadpool_postgres::GenericClient;

use strata_catalog_api::proto::Chunk;

use super::WriteContext;
use crate::store::commit_plan::{PartitionKey, PartitionRow};
use crate::store::postgres::to_bigint;
use crate::store::rows::ChunkRows;
use crate::{Error, Result};

impl ChunkRows for WriteContext<'_, '_> {
    async fn bury_unreferenced(&mut self, object_keys: &[String]) -> Result<()> {
        bury_unreferenced(self.transaction, object_keys, self.now_ms).await
    }

    /// Locked `FOR UPDATE`.
    async fn partition(&mut self, key: &PartitionKey) -> Result<Option<PartitionRow>> {
        let row = self
            .transaction
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
        self.transaction
            .execute(
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
        let statement = self
            .transaction
            .prepare_cached(
                "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key,
                     object_size, position, length, batch_count, max_timestamp,
                     running_max_timestamp, format, marker_producer_id, marker_producer_epoch,
                     marker_coordinator_epoch, marker_commit)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            )
            .await?;
        let marker = chunk.marker;
        self.transaction
            .execute(
                &statement,
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
