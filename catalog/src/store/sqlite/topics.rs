//! Topic rows: create, delete, grow, configure, list.

use rusqlite::{Connection, OptionalExtension, Row, params};
use strata_catalog_api::proto::Topic;
use uuid::Uuid;

use super::compaction;
use super::rows::WriteContext;
use crate::store::topic_rules::{
    self, TOPIC_COLUMNS, TOPIC_DATA_TABLES, config_entries, decode_configs, encode_configs,
    parse_topic_id,
};
use crate::store::{ConfigChange, DeletedTopic, NewTopic, TopicRef};
use crate::{Error, Result};

/// Creates a topic and its empty partitions.
pub(super) fn create(context: &mut WriteContext<'_>, topic: NewTopic) -> Result<Topic> {
    let connection = context.connection;
    if by_name(connection, &topic.name)?.is_some() {
        return Err(Error::TopicAlreadyExists { name: topic.name });
    }
    let configs = encode_configs(&topic.configs)?;
    connection
        .prepare_cached(
            "INSERT INTO topics (topic_id, name, partition_count, configs, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            topic.topic_id.as_bytes(),
            topic.name,
            topic.partition_count,
            configs,
            context.now_ms
        ])?;
    insert_partitions(connection, topic.topic_id, 0, topic.partition_count)?;
    Ok(topic_rules::created(topic, context.now_ms))
}

fn insert_partitions(connection: &Connection, topic_id: Uuid, from: u32, to: u32) -> Result<()> {
    let mut insert = connection.prepare_cached(
        "INSERT INTO partitions (topic_id, partition, log_start_offset, next_offset,
             last_stable_offset, max_timestamp, max_timestamp_offset)
         VALUES (?1, ?2, 0, 0, 0, -1, -1)",
    )?;
    for partition in from..to {
        insert.execute(params![topic_id.as_bytes(), partition])?;
    }
    Ok(())
}

/// Deletes a topic with its partitions, chunks and producer state, and
/// takes a commit-stream sequence for the event invalidating its partitions.
pub(super) fn delete(context: &mut WriteContext<'_>, topic: &TopicRef) -> Result<DeletedTopic> {
    let connection = context.connection;
    let found = match topic {
        TopicRef::Name(name) => {
            by_name(connection, name)?.ok_or_else(|| Error::UnknownTopic { name: name.clone() })?
        }
        TopicRef::Id(topic_id) => by_id(connection, *topic_id)?.ok_or(Error::UnknownTopicId {
            topic_id: *topic_id,
        })?,
    };
    let id = found.topic_id.as_slice();
    connection
        .prepare_cached("UPDATE topics SET deleted = 1, deleted_ms = ?2 WHERE topic_id = ?1")?
        .execute(params![id, context.now_ms])?;
    let objects = connection
        .prepare_cached("SELECT DISTINCT object_key FROM chunks WHERE topic_id = ?1")?
        .query_map([id], |row| row.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for table in TOPIC_DATA_TABLES {
        connection
            .prepare_cached(&format!("DELETE FROM {table} WHERE topic_id = ?1"))?
            .execute([id])?;
    }
    compaction::bury_unreferenced(connection, &objects, context.now_ms)?;
    Ok(topic_rules::deleted(
        found,
        context.counters.next_sequence(),
    ))
}

/// Raises a topic's partition count.
pub(super) fn create_partitions(
    context: &mut WriteContext<'_>,
    name: &str,
    new_count: u32,
) -> Result<Topic> {
    let connection = context.connection;
    let mut topic = by_name(connection, name)?.ok_or_else(|| Error::UnknownTopic {
        name: name.to_string(),
    })?;
    topic_rules::check_growth(&topic, new_count)?;
    let topic_id = parse_topic_id(&topic.topic_id)?;
    insert_partitions(connection, topic_id, topic.partition_count, new_count)?;
    connection
        .prepare_cached("UPDATE topics SET partition_count = ?2 WHERE topic_id = ?1")?
        .execute(params![topic.topic_id, new_count])?;
    topic.partition_count = new_count;
    Ok(topic)
}

/// Applies a config change to a topic.
pub(super) fn alter_configs(
    context: &mut WriteContext<'_>,
    name: &str,
    change: ConfigChange,
) -> Result<Topic> {
    let connection = context.connection;
    let mut topic = by_name(connection, name)?.ok_or_else(|| Error::UnknownTopic {
        name: name.to_string(),
    })?;
    let configs = topic_rules::merged_configs(&mut topic, change);
    connection
        .prepare_cached("UPDATE topics SET configs = ?2 WHERE topic_id = ?1")?
        .execute(params![topic.topic_id, encode_configs(&configs)?])?;
    topic.configs = config_entries(configs);
    Ok(topic)
}

/// The live topics named in `names` (all when empty), sorted by name.
pub(super) fn list(connection: &Connection, names: &[String]) -> Result<Vec<Topic>> {
    if names.is_empty() {
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {TOPIC_COLUMNS} FROM topics WHERE deleted = 0 ORDER BY name"
        ))?;
        let rows = statement.query_map([], topic_from_row)?;
        return rows.map(|row| row?).collect();
    }
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        if let Some(topic) = by_name(connection, name)? {
            topics.push(topic);
        }
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    topics.dedup_by(|a, b| a.name == b.name);
    Ok(topics)
}

/// The live topic named `name`.
pub(super) fn by_name(connection: &Connection, name: &str) -> Result<Option<Topic>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {TOPIC_COLUMNS} FROM topics WHERE name = ?1 AND deleted = 0"
    ))?;
    statement
        .query_row([name], topic_from_row)
        .optional()?
        .transpose()
}

/// The live topic with id `topic_id`.
fn by_id(connection: &Connection, topic_id: Uuid) -> Result<Option<Topic>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {TOPIC_COLUMNS} FROM topics WHERE topic_id = ?1 AND deleted = 0"
    ))?;
    statement
        .query_row([topic_id.as_bytes()], topic_from_row)
        .optional()?
        .transpose()
}

/// Decodes a topic row; the outer result is SQLite's, the inner one ours.
fn topic_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Topic>> {
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
