//! Topic rules shared by every store: config encoding and merging,
//! partition growth, and the rows and events a topic change produces.

use std::collections::BTreeMap;

use strata_catalog_api::proto::{CommitEvent, PartitionRef, Topic, TopicConfigEntry};
use uuid::Uuid;

use crate::store::{ConfigChange, DeletedTopic, NewTopic};
use crate::{Error, Result};

/// The columns a topic row is read from, in [`Topic`] field order.
pub(crate) const TOPIC_COLUMNS: &str = "topic_id, name, partition_count, configs, created_ms";

/// The tables whose rows of a topic go when the topic is deleted.
pub(crate) const TOPIC_DATA_TABLES: [&str; 7] = [
    "partitions",
    "chunks",
    "producer_partitions",
    "group_offsets",
    "txn_partitions",
    "txn_offsets",
    "aborted_txns",
];

/// The topic as created from `topic` at `now_ms`.
pub(crate) fn created(topic: NewTopic, now_ms: i64) -> Topic {
    Topic {
        topic_id: topic.topic_id.as_bytes().to_vec(),
        name: topic.name,
        partition_count: topic.partition_count,
        configs: config_entries(topic.configs),
        created_ms: now_ms,
    }
}

/// `found`, deleted under commit-stream sequence `sequence`: the event
/// invalidates every one of its partitions.
pub(crate) fn deleted(found: Topic, sequence: u64) -> DeletedTopic {
    let event = CommitEvent {
        sequence,
        chunks: Vec::new(),
        offsets: Vec::new(),
        invalidated: (0..found.partition_count)
            .map(|partition| PartitionRef {
                topic_id: found.topic_id.clone(),
                partition,
            })
            .collect(),
    };
    DeletedTopic {
        topic: found,
        event,
    }
}

/// Fails with `InvalidPartitions` unless `new_count` raises the topic's
/// partition count.
pub(crate) fn check_growth(topic: &Topic, new_count: u32) -> Result<()> {
    if new_count <= topic.partition_count {
        return Err(Error::InvalidPartitions {
            current: topic.partition_count,
            requested: new_count,
        });
    }
    Ok(())
}

/// The topic's configs after `change`; takes the current entries out of
/// `topic`.
pub(crate) fn merged_configs(topic: &mut Topic, change: ConfigChange) -> BTreeMap<String, String> {
    let mut configs: BTreeMap<String, String> = if change.replace_all {
        BTreeMap::new()
    } else {
        topic
            .configs
            .drain(..)
            .map(|entry| (entry.name, entry.value))
            .collect()
    };
    for key in &change.delete {
        configs.remove(key);
    }
    configs.extend(change.set);
    configs
}

/// Configs as stored (JSON).
pub(crate) fn encode_configs(configs: &BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(configs).map_err(|e| Error::Corrupt {
        what: format!("encoding topic configs: {e}"),
    })
}

/// Stored configs; `Corrupt` if they do not decode.
pub(crate) fn decode_configs(json: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt {
        what: format!("topic configs {json:?}: {e}"),
    })
}

/// Configs as the entries of a [`Topic`], sorted by name.
pub(crate) fn config_entries(configs: BTreeMap<String, String>) -> Vec<TopicConfigEntry> {
    configs
        .into_iter()
        .map(|(name, value)| TopicConfigEntry { name, value })
        .collect()
}

/// Parses a stored 16-byte topic id.
pub(crate) fn parse_topic_id(bytes: &[u8]) -> Result<Uuid> {
    Uuid::from_slice(bytes).map_err(|_| Error::Corrupt {
        what: format!("topic id of {} bytes", bytes.len()),
    })
}
