//! Topic and partition rows.

use strata_catalog_api::proto::Topic;
use tokio_postgres::Row;
use uuid::Uuid;

use super::WriteContext;
use crate::Result;
use crate::store::NewTopic;
use crate::store::postgres::to_u32;
use crate::store::rows::TopicRows;
use crate::store::topic_rules::{TOPIC_COLUMNS, config_entries, decode_configs};

impl TopicRows for WriteContext<'_, '_> {
    async fn topic_by_name(&mut self, name: &str) -> Result<Option<Topic>> {
        let row = self
            .query_opt(
                &format!("SELECT {TOPIC_COLUMNS} FROM topics WHERE name = $1 AND NOT deleted"),
                &[&name],
            )
            .await?;
        row.as_ref().map(topic_from_row).transpose()
    }

    async fn topic_by_id(&mut self, topic_id: Uuid) -> Result<Option<Topic>> {
        let row = self
            .query_opt(
                &format!("SELECT {TOPIC_COLUMNS} FROM topics WHERE topic_id = $1 AND NOT deleted"),
                &[&topic_id.as_bytes().as_slice()],
            )
            .await?;
        row.as_ref().map(topic_from_row).transpose()
    }

    async fn insert_topic(&mut self, topic: &NewTopic, configs: &str) -> Result<()> {
        self.execute(
            "INSERT INTO topics (topic_id, name, partition_count, configs, created_ms)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &topic.topic_id.as_bytes().as_slice(),
                &topic.name,
                &i64::from(topic.partition_count),
                &configs,
                &self.now_ms,
            ],
        )
        .await?;
        Ok(())
    }

    /// In one statement.
    async fn insert_partitions(&mut self, topic_id: Uuid, from: u32, to: u32) -> Result<()> {
        self.execute(
            "INSERT INTO partitions (topic_id, partition, log_start_offset, next_offset,
                 last_stable_offset, max_timestamp, max_timestamp_offset)
             SELECT $1, p, 0, 0, 0, -1, -1
             FROM generate_series($2::int8, $3::int8 - 1) AS p",
            &[
                &topic_id.as_bytes().as_slice(),
                &i64::from(from),
                &i64::from(to),
            ],
        )
        .await?;
        Ok(())
    }

    async fn mark_topic_deleted(&mut self, topic_id: &[u8]) -> Result<()> {
        self.execute(
            "UPDATE topics SET deleted = TRUE, deleted_ms = $2 WHERE topic_id = $1",
            &[&topic_id, &self.now_ms],
        )
        .await?;
        Ok(())
    }

    async fn topic_object_keys(&mut self, topic_id: &[u8]) -> Result<Vec<String>> {
        Ok(self
            .query(
                "SELECT DISTINCT object_key FROM chunks WHERE topic_id = $1",
                &[&topic_id],
            )
            .await?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    async fn delete_topic_rows(&mut self, table: &str, topic_id: &[u8]) -> Result<()> {
        self.execute(
            &format!("DELETE FROM {table} WHERE topic_id = $1"),
            &[&topic_id],
        )
        .await?;
        Ok(())
    }

    async fn set_partition_count(&mut self, topic_id: &[u8], count: u32) -> Result<()> {
        self.execute(
            "UPDATE topics SET partition_count = $2 WHERE topic_id = $1",
            &[&topic_id, &i64::from(count)],
        )
        .await?;
        Ok(())
    }

    async fn set_topic_configs(&mut self, topic_id: &[u8], configs: &str) -> Result<()> {
        self.execute(
            "UPDATE topics SET configs = $2 WHERE topic_id = $1",
            &[&topic_id, &configs],
        )
        .await?;
        Ok(())
    }
}

/// Decodes a topic row.
pub(in crate::store::postgres) fn topic_from_row(row: &Row) -> Result<Topic> {
    let configs: &str = row.try_get(3)?;
    Ok(Topic {
        topic_id: row.try_get(0)?,
        name: row.try_get(1)?,
        partition_count: to_u32("partition count", row.try_get(2)?)?,
        configs: config_entries(decode_configs(configs)?),
        created_ms: row.try_get(4)?,
    })
}
