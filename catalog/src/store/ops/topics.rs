//! Topics: create, delete, grow, configure.

use strata_catalog_api::proto::Topic;

use crate::store::rows::{ChunkRows, TopicRows};
use crate::store::topic_rules::{
    self, TOPIC_DATA_TABLES, config_entries, encode_configs, parse_topic_id,
};
use crate::store::{ConfigChange, DeletedTopic, NewTopic, TopicRef};
use crate::{Error, Result};

/// Creates a topic and its empty partitions (see
/// `CatalogStore::create_topic`).
pub(crate) async fn create<R: TopicRows>(rows: &mut R, topic: NewTopic) -> Result<Topic> {
    if rows.topic_by_name(&topic.name).await?.is_some() {
        return Err(Error::TopicAlreadyExists { name: topic.name });
    }
    let configs = encode_configs(&topic.configs)?;
    rows.insert_topic(&topic, &configs).await?;
    rows.insert_partitions(topic.topic_id, 0, topic.partition_count)
        .await?;
    Ok(topic_rules::created(topic, rows.now_ms()))
}

/// Deletes a topic with its partitions, chunks and producer state, and
/// takes a commit-stream sequence for the event invalidating its partitions
/// (see `CatalogStore::delete_topic`).
pub(crate) async fn delete<R: TopicRows + ChunkRows>(
    rows: &mut R,
    topic: &TopicRef,
) -> Result<DeletedTopic> {
    let found = match topic {
        TopicRef::Name(name) => rows
            .topic_by_name(name)
            .await?
            .ok_or_else(|| Error::UnknownTopic { name: name.clone() })?,
        TopicRef::Id(topic_id) => {
            rows.topic_by_id(*topic_id)
                .await?
                .ok_or(Error::UnknownTopicId {
                    topic_id: *topic_id,
                })?
        }
    };
    let id = found.topic_id.as_slice();
    rows.mark_topic_deleted(id).await?;
    let objects = rows.topic_object_keys(id).await?;
    for table in TOPIC_DATA_TABLES {
        rows.delete_topic_rows(table, id).await?;
    }
    rows.bury_unreferenced(&objects).await?;
    let sequence = rows.next_sequence();
    Ok(topic_rules::deleted(found, sequence))
}

/// Raises a topic's partition count (see `CatalogStore::create_partitions`).
pub(crate) async fn create_partitions<R: TopicRows>(
    rows: &mut R,
    name: &str,
    new_count: u32,
) -> Result<Topic> {
    let mut topic = named(rows, name).await?;
    topic_rules::check_growth(&topic, new_count)?;
    let topic_id = parse_topic_id(&topic.topic_id)?;
    rows.insert_partitions(topic_id, topic.partition_count, new_count)
        .await?;
    rows.set_partition_count(&topic.topic_id, new_count).await?;
    topic.partition_count = new_count;
    Ok(topic)
}

/// Applies a config change to a topic (see
/// `CatalogStore::alter_topic_configs`).
pub(crate) async fn alter_configs<R: TopicRows>(
    rows: &mut R,
    name: &str,
    change: ConfigChange,
) -> Result<Topic> {
    let mut topic = named(rows, name).await?;
    let configs = topic_rules::merged_configs(&mut topic, change);
    rows.set_topic_configs(&topic.topic_id, &encode_configs(&configs)?)
        .await?;
    topic.configs = config_entries(configs);
    Ok(topic)
}

/// The live topic named `name`, or `UnknownTopic`.
async fn named<R: TopicRows>(rows: &mut R, name: &str) -> Result<Topic> {
    rows.topic_by_name(name)
        .await?
        .ok_or_else(|| Error::UnknownTopic {
            name: name.to_string(),
        })
}
