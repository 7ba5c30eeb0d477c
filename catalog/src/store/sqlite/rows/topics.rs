//! Topic and partition rows.

use rusqlite::{Connection, OptionalExtension, Row, params};
use strata_catalog_api::proto::Topic;
use uuid::Uuid;

use super::WriteContext;
use crate::Result;
use crate::store::NewTopic;
use crate::store::rows::TopicRows;
use crate::store::topic_rules::{TOPIC_COLUMNS, config_entries, decode_configs};

impl TopicRows for WriteContext<'_> {
    async fn topic_by_name(&mut self, name: &str) -> Result<Option<Topic>> {
        by_name(self.connection, name)
    }

    async fn topic_by_id(&mut self, topic_id: Uuid) -> Result<Option<Topic>> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {TOPIC_COLUMNS} FROM topics WHERE topic_id = ?1 AND deleted = 0"
        ))?;
        statement
            .query_row([topic_id.as_bytes()], topic_from_row)
            .optional()?
            .transpose()
    }

    async fn insert_topic(&mut self, topic: &NewTopic, configs: &str) -> Result<()> {
        self.connection
            .prepare_cached(
                "INSERT INTO topics (topic_id, name, partition_count, configs, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                topic.topic_id.as_bytes(),
                topic.name,
                topic.partition_count,
                configs,
                self.now_ms
            ])?;
        Ok(())
    }

    async fn insert_partitions(&mut self, topic_id: Uuid, from: u32, to: u32) -> Result<()> {
        let mut insert = self.connection.prepare_cached(
            "INSERT INTO partitions (topic_id, partition, log_start_offset, next_offset,
                 last_stable_offset, max_timestamp, max_timestamp_offset)
             VALUES (?1, ?2, 0, 0, 0, -1, -1)",
        )?;
        for partition in from..to {
            insert.execute(params![topic_id.as_bytes(), partition])?;
        }
        Ok(())
    }

    async fn mark_topic_deleted(&mut self, topic_id: &[u8]) -> Result<()> {
        self.connection
            .prepare_cached("UPDATE topics SET deleted = 1, deleted_ms = ?2 WHERE topic_id = ?1")?
            .execute(params![topic_id, self.now_ms])?;
        Ok(())
    }

    async fn topic_object_keys(&mut self, topic_id: &[u8]) -> Result<Vec<String>> {
        Ok(self
            .connection
            .prepare_cached("SELECT DISTINCT object_key FROM chunks WHERE topic_id = ?1")?
            .query_map([topic_id], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?)
    }

    async fn delete_topic_rows(&mut self, table: &str, topic_id: &[u8]) -> Result<()> {
        self.connection
            .prepare_cached(&format!("DELETE FROM {table} WHERE topic_id = ?1"))?
            .execute([topic_id])?;
        Ok(())
    }

    async fn set_partition_count(&mut self, topic_id: &[u8], count: u32) -> Result<()> {
        self.connection
            .prepare_cached("UPDATE topics SET partition_count = ?2 WHERE topic_id = ?1")?
            .execute(params![topic_id, count])?;
        Ok(())
    }

    async fn set_topic_configs(&mut self, topic_id: &[u8], configs: &str) -> Result<()> {
        self.connection
            .prepare_cached("UPDATE topics SET configs = ?2 WHERE topic_id = ?1")?
            .execute(params![topic_id, configs])?;
        Ok(())
    }
}

/// The live topic named `name`.
pub(in crate::store::sqlite) fn by_name(
    connection: &Connection,
    name: &str,
) -> Result<Option<Topic>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {TOPIC_COLUMNS} FROM topics WHERE name = ?1 AND deleted = 0"
    ))?;
    statement
        .query_row([name], topic_from_row)
        .optional()?
        .transpose()
}

/// Decodes a topic row; the outer result is SQLite's, the inner one ours.
pub(in crate::store::sqlite) fn topic_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Topic>> {
    let configs: String = row.get(3)?;
    let topic = Topic {
        topic_id: row.get(0)?,
        name: row.get(1)?,
        partition_count: row.get(2)?,
        configs: Vec::new(),
        created_ms: row.get(4)?,
    };
    Ok(decode_configs(&configs).map(|configs| Topic {
        configs: config_entries(configs),
        ..topic
    }))
}
