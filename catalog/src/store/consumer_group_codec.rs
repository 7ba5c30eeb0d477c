//! The stored form of KIP-848 consumer group records, shared by every
//! store so a record moves between them unchanged: one JSON document per
//! group, tagged with its format version.
//!
//! A group's record is rewritten whole on every change, so it is kept
//! compact: one document per group (not per member), partition sets as
//! `{"topic id": [partitions]}` maps, topic ids in their 32-hex-digit form,
//! absent optional fields left out. The serde types below are the stored
//! format; the domain types in `store.rs` stay free of serde. Any change
//! to the stored format bumps [`FORMAT`] and teaches [`decode`] the old
//! one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::{
    ConsumerGroupRecord, ConsumerMemberRecord, ConsumerMemberState, SubscribedTopicRecord,
    TopicPartitionsRecord,
};
use crate::{Error, Result};

/// The format version written by this build. Version 1: JSON of
/// [`StoredGroup`].
pub(crate) const FORMAT: i64 = 1;

/// The stored form of a [`ConsumerGroupRecord`] (its id is the row key).
#[derive(Debug, Serialize, Deserialize)]
struct StoredGroup {
    group_epoch: i32,
    assignment_epoch: i32,
    assignor: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    topics: Vec<StoredTopic>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    members: Vec<StoredMember>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredTopic {
    name: String,
    id: String,
    partitions: u32,
}

/// Partitions by topic id (32 hex digits).
type StoredPartitions = BTreeMap<String, Vec<i32>>;

#[derive(Debug, Serialize, Deserialize)]
struct StoredMember {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rack_id: Option<String>,
    rebalance_timeout_ms: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    topics: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    assignor: Option<String>,
    epoch: i32,
    previous_epoch: i32,
    state: StoredState,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    assigned: StoredPartitions,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    revoking: StoredPartitions,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    target: StoredPartitions,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    static_left: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredState {
    Stable,
    UnrevokedPartitions,
    UnreleasedPartitions,
}

pub(crate) fn encode(record: &ConsumerGroupRecord) -> Result<Vec<u8>> {
    let stored = StoredGroup {
        group_epoch: record.group_epoch,
        assignment_epoch: record.assignment_epoch,
        assignor: record.assignor.clone(),
        topics: record
            .subscribed_topics
            .iter()
            .map(|topic| StoredTopic {
                name: topic.name.clone(),
                id: topic.topic_id.simple().to_string(),
                partitions: topic.partition_count,
            })
            .collect(),
        members: record.members.iter().map(encode_member).collect(),
    };
    serde_json::to_vec(&stored).map_err(|error| Error::Corrupt {
        what: format!(
            "consumer group {} (encoding its record: {error})",
            record.group_id
        ),
    })
}

fn encode_member(member: &ConsumerMemberRecord) -> StoredMember {
    StoredMember {
        id: member.member_id.clone(),
        instance_id: member.instance_id.clone(),
        rack_id: member.rack_id.clone(),
        rebalance_timeout_ms: member.rebalance_timeout_ms,
        topics: member.subscribed_topic_names.clone(),
        assignor: member.server_assignor.clone(),
        epoch: member.member_epoch,
        previous_epoch: member.previous_member_epoch,
        state: match member.state {
            ConsumerMemberState::Stable => StoredState::Stable,
            ConsumerMemberState::UnrevokedPartitions => StoredState::UnrevokedPartitions,
            ConsumerMemberState::UnreleasedPartitions => StoredState::UnreleasedPartitions,
        },
        assigned: encode_partitions(&member.assigned),
        revoking: encode_partitions(&member.pending_revocation),
        target: encode_partitions(&member.target),
        static_left: member.static_left,
    }
}

/// Topics listed twice are merged; empty topics are left out.
fn encode_partitions(partitions: &[TopicPartitionsRecord]) -> StoredPartitions {
    let mut stored = StoredPartitions::new();
    for topic in partitions
        .iter()
        .filter(|topic| !topic.partitions.is_empty())
    {
        stored
            .entry(topic.topic_id.simple().to_string())
            .or_default()
            .extend_from_slice(&topic.partitions);
    }
    stored
}

pub(crate) fn decode(group_id: String, format: i64, blob: &[u8]) -> Result<ConsumerGroupRecord> {
    let corrupt = |reason: String| Error::Corrupt {
        what: format!("consumer group {group_id} ({reason})"),
    };
    if format != FORMAT {
        return Err(corrupt(format!(
            "record format {format}; this build reads format {FORMAT}"
        )));
    }
    let stored: StoredGroup =
        serde_json::from_slice(blob).map_err(|error| corrupt(error.to_string()))?;
    let parse_id = |id: &str| {
        Uuid::try_parse(id).map_err(|error| corrupt(format!("topic id {id:?}: {error}")))
    };
    let decode_partitions = |stored: StoredPartitions| -> Result<Vec<TopicPartitionsRecord>> {
        stored
            .into_iter()
            .map(|(topic_id, partitions)| {
                Ok(TopicPartitionsRecord {
                    topic_id: parse_id(&topic_id)?,
                    partitions,
                })
            })
            .collect()
    };
    let subscribed_topics = stored
        .topics
        .into_iter()
        .map(|topic| {
            Ok(SubscribedTopicRecord {
                topic_id: parse_id(&topic.id)?,
                name: topic.name,
                partition_count: topic.partitions,
            })
        })
        .collect::<Result<_>>()?;
    let members = stored
        .members
        .into_iter()
        .map(|member| {
            Ok(ConsumerMemberRecord {
                member_id: member.id,
                instance_id: member.instance_id,
                rack_id: member.rack_id,
                rebalance_timeout_ms: member.rebalance_timeout_ms,
                subscribed_topic_names: member.topics,
                server_assignor: member.assignor,
                member_epoch: member.epoch,
                previous_member_epoch: member.previous_epoch,
                state: match member.state {
                    StoredState::Stable => ConsumerMemberState::Stable,
                    StoredState::UnrevokedPartitions => ConsumerMemberState::UnrevokedPartitions,
                    StoredState::UnreleasedPartitions => ConsumerMemberState::UnreleasedPartitions,
                },
                assigned: decode_partitions(member.assigned)?,
                pending_revocation: decode_partitions(member.revoking)?,
                target: decode_partitions(member.target)?,
                static_left: member.static_left,
            })
        })
        .collect::<Result<_>>()?;
    Ok(ConsumerGroupRecord {
        group_id,
        group_epoch: stored.group_epoch,
        assignment_epoch: stored.assignment_epoch,
        assignor: stored.assignor,
        subscribed_topics,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ConsumerGroupRecord {
        let topic = Uuid::from_u128(0xabcdef);
        let partitions = |partitions: &[i32]| {
            vec![TopicPartitionsRecord {
                topic_id: topic,
                partitions: partitions.to_vec(),
            }]
        };
        ConsumerGroupRecord {
            group_id: "g".to_string(),
            group_epoch: 7,
            assignment_epoch: 7,
            assignor: "range".to_string(),
            subscribed_topics: vec![SubscribedTopicRecord {
                name: "orders".to_string(),
                topic_id: topic,
                partition_count: 4,
            }],
            members: vec![
                ConsumerMemberRecord {
                    member_id: "a".to_string(),
                    instance_id: Some("host-a".to_string()),
                    rack_id: Some("r1".to_string()),
                    rebalance_timeout_ms: 30_000,
                    subscribed_topic_names: vec!["orders".to_string()],
                    server_assignor: Some("range".to_string()),
                    member_epoch: 7,
                    previous_member_epoch: 6,
                    state: ConsumerMemberState::UnrevokedPartitions,
                    assigned: partitions(&[0, 1]),
                    pending_revocation: partitions(&[2]),
                    target: partitions(&[0, 1]),
                    static_left: true,
                },
                ConsumerMemberRecord {
                    member_id: "b".to_string(),
                    rebalance_timeout_ms: -1,
                    state: ConsumerMemberState::UnreleasedPartitions,
                    target: partitions(&[2, 3]),
                    ..ConsumerMemberRecord::default()
                },
            ],
        }
    }

    #[test]
    fn records_round_trip() {
        let record = record();
        let blob = encode(&record).unwrap();
        assert_eq!(decode("g".to_string(), FORMAT, &blob).unwrap(), record);
        let empty = ConsumerGroupRecord {
            group_id: "e".to_string(),
            ..ConsumerGroupRecord::default()
        };
        let blob = encode(&empty).unwrap();
        assert_eq!(decode("e".to_string(), FORMAT, &blob).unwrap(), empty);
    }

    #[test]
    fn unknown_formats_and_garbage_are_corrupt() {
        let blob = encode(&record()).unwrap();
        let newer = decode("g".to_string(), FORMAT + 1, &blob);
        assert!(matches!(newer, Err(Error::Corrupt { .. })), "{newer:?}");
        for cut in [0, 1, blob.len() / 2, blob.len() - 1] {
            let truncated = decode("g".to_string(), FORMAT, &blob[..cut]);
            assert!(matches!(truncated, Err(Error::Corrupt { .. })), "cut {cut}");
        }
        let bad_id = br#"{"group_epoch":1,"assignment_epoch":1,"assignor":"uniform",
            "topics":[{"name":"t","id":"nope","partitions":1}]}"#;
        assert!(decode("g".to_string(), FORMAT, bad_id).is_err());
    }
}
