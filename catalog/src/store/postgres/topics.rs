//! Topic rows: create, delete, grow, configure, list.

use deadpool_postgres::GenericClient;
use strata_catalog_api::proto::Topic;
use tokio_postgres::Row;
use uuid::Uuid;

use super::rows::WriteContext;
use super::{compaction, to_u32};
use crate::store::topic_rules::{
    self, TOPIC_COLUMNS, TOPIC_DATA_TABLES, config_entries, decode_configs, encode_configs,
    parse_topic_id,
};
use crate::store::{ConfigChange, DeletedTopic, NewTopic, TopicRef};
use crate::{Error, Result};

/// Creates a topic and its empty partitions.
pub(super) async fn create(context: &WriteContext<'_, '_>, topic: NewTopic) -> Result<Topic> {
    let transaction = context.transaction;
    if by_name(transaction, &topic.name).await?.is_some() {
        return Err(Error::TopicAlreadyExists { name: topic.name });
    }
    let configs = encode_configs(&topic.configs)?;
    let statement = transaction
        .prepare_cached(
            "INSERT INTO topics (topic_id, name, partition_count, configs, created_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &topic.topic_id.as_bytes().as_slice(),
                &topic.name,
                &i64::from(topic.partition_count),
                &configs,
                &context.now_ms,
            ],
        )
        .await?;
    insert_partitions(context, topic.topic_id, 0, topic.partition_count).await?;
    Ok(topic_rules::created(topic, context.now_ms))
}

/// Inserts empty partitions `from..to` in one statement.
async fn insert_partitions(
    context: &WriteContext<'_, '_>,
    topic_id: Uuid,
    from: u32,
    to: u32,
) -> Result<()> {
    let transaction = context.transaction;
    let statement = transaction
        .prepare_cached(
            "INSERT INTO partitions (topic_id, partition, log_start_offset, next_offset,
                 last_stable_offset, max_timestamp, max_timestamp_offset)
             SELECT $1, p, 0, 0, 0, -1, -1 FROM generate_series($2::int8, $3::int8 - 1) AS p",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &topic_id.as_bytes().as_slice(),
                &i64::from(from),
                &i64::from(to),
            ],
        )
        .await?;
    Ok(())
}

/// Deletes a topic with its partitions, chunks and producer state, and
/// takes a commit-stream sequence for the event invalidating its partitions.
pub(super) async fn delete(
    context: &mut WriteContext<'_, '_>,
    topic: &TopicRef,
) -> Result<DeletedTopic> {
    let transaction = context.transaction;
    let found = match topic {
        TopicRef::Name(name) => by_name(transaction, name)
            .await?
            .ok_or_else(|| Error::UnknownTopic { name: name.clone() })?,
        TopicRef::Id(topic_id) => {
            by_id(transaction, *topic_id)
                .await?
                .ok_or(Error::UnknownTopicId {
                    topic_id: *topic_id,
                })?
        }
    };
    let id = found.topic_id.as_slice();
    transaction
        .execute(
            "UPDATE topics SET deleted = TRUE, deleted_ms = $2 WHERE topic_id = $1",
            &[&id, &context.now_ms],
        )
        .await?;
    let statement = transaction
        .prepare_cached("SELECT DISTINCT object_key FROM chunks WHERE topic_id = $1")
        .await?;
    let objects: Vec<String> = transaction
        .query(&statement, &[&id])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    for table in TOPIC_DATA_TABLES {
        let statement = transaction
            .prepare_cached(&format!("DELETE FROM {table} WHERE topic_id = $1"))
            .await?;
        transaction.execute(&statement, &[&id]).await?;
    }
    compaction::bury_unreferenced(transaction, &objects, context.now_ms).await?;
    Ok(topic_rules::deleted(found, context.next_sequence()))
}

/// Raises a topic's partition count.
pub(super) async fn create_partitions(
    context: &WriteContext<'_, '_>,
    name: &str,
    new_count: u32,
) -> Result<Topic> {
    let transaction = context.transaction;
    let mut topic = by_name(transaction, name)
        .await?
        .ok_or_else(|| Error::UnknownTopic {
            name: name.to_string(),
        })?;
    topic_rules::check_growth(&topic, new_count)?;
    let topic_id = parse_topic_id(&topic.topic_id)?;
    insert_partitions(context, topic_id, topic.partition_count, new_count).await?;
    transaction
        .execute(
            "UPDATE topics SET partition_count = $2 WHERE topic_id = $1",
            &[&topic.topic_id, &i64::from(new_count)],
        )
        .await?;
    topic.partition_count = new_count;
    Ok(topic)
}

/// Applies a config change to a topic.
pub(super) async fn alter_configs(
    context: &WriteContext<'_, '_>,
    name: &str,
    change: ConfigChange,
) -> Result<Topic> {
    let transaction = context.transaction;
    let mut topic = by_name(transaction, name)
        .await?
        .ok_or_else(|| Error::UnknownTopic {
            name: name.to_string(),
        })?;
    let configs = topic_rules::merged_configs(&mut topic, change);
    transaction
        .execute(
            "UPDATE topics SET configs = $2 WHERE topic_id = $1",
            &[&topic.topic_id, &encode_configs(&configs)?],
        )
        .await?;
    topic.configs = config_entries(configs);
    Ok(topic)
}

/// The live topics named in `names` (all when empty), sorted by name;
/// unknown names are left out.
pub(super) async fn list(client: &impl GenericClient, names: &[String]) -> Result<Vec<Topic>> {
    let rows = if names.is_empty() {
        let statement = client
            .prepare_cached(&format!(
                "SELECT {TOPIC_COLUMNS} FROM topics WHERE NOT deleted ORDER BY name COLLATE \"C\""
            ))
            .await?;
        client.query(&statement, &[]).await?
    } else {
        let statement = client
            .prepare_cached(&format!(
                "SELECT {TOPIC_COLUMNS} FROM topics WHERE NOT deleted AND name = ANY($1)
                 ORDER BY name COLLATE \"C\""
            ))
            .await?;
        client.query(&statement, &[&names]).await?
    };
    rows.iter().map(topic_from_row).collect()
}

/// The live topic named `name`.
async fn by_name(client: &impl GenericClient, name: &str) -> Result<Option<Topic>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {TOPIC_COLUMNS} FROM topics WHERE name = $1 AND NOT deleted"
        ))
        .await?;
    let row = client.query_opt(&statement, &[&name]).await?;
    row.as_ref().map(topic_from_row).transpose()
}

/// The live topic with id `topic_id`.
async fn by_id(client: &impl GenericClient, topic_id: Uuid) -> Result<Option<Topic>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {TOPIC_COLUMNS} FROM topics WHERE topic_id = $1 AND NOT deleted"
        ))
        .await?;
    let row = client
        .query_opt(&statement, &[&topic_id.as_bytes().as_slice()])
        .await?;
    row.as_ref().map(topic_from_row).transpose()
}

fn topic_from_row(row: &Row) -> Result<Topic> {
    let configs: &str = row.try_get(3)?;
    Ok(Topic {
        topic_id: row.try_get(0)?,
        name: row.try_get(1)?,
        partition_count: to_u32("partition count", row.try_get(2)?)?,
        configs: config_entries(decode_configs(configs)?),
        created_ms: row.try_get(4)?,
    })
}
