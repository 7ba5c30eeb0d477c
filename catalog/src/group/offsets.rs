//! OffsetCommit, OffsetFetch and OffsetDelete: the actor checks the group,
//! the store holds the offsets.
//!
//! The actor only validates (generation, member, fencing); the write runs
//! on the caller's task, so many commits share one store transaction
//! (group commit) and the actor is never blocked on the store. Offsets are
//! stored by topic id: a deleted topic's offsets go with it, and a topic
//! recreated under the same name starts without offsets.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::actor::Command;
use super::classic::{CommitIdentity, str_bytes};
use super::{GroupCoordinator, GroupError, TopicsView, code};
use crate::Error;
use crate::store::CommittedOffset;

/// The view of the topics, fresh when some of `names` are unknown to the
/// cached one (a topic created behind the service's back).
pub(super) async fn view_for<'a>(
    coordinator: &GroupCoordinator,
    mut names: impl Iterator<Item = &'a str>,
) -> Result<Arc<TopicsView>, GroupError> {
    let topics = &coordinator.inner.topics;
    let view = topics.get().await?;
    if names.all(|name| view.by_name.contains_key(name)) {
        return Ok(view);
    }
    Ok(topics
        .fresh(coordinator.options().topics_refresh_ms)
        .await?)
}

/// The code for a failed offset write.
fn store_error_code(error: &Error) -> i16 {
    match error {
        Error::UnknownPartition { .. } | Error::UnknownTopicId { .. } => {
            code::UNKNOWN_TOPIC_OR_PARTITION
        }
        error => {
            tracing::warn!(%error, "offset store operation failed");
            code::COORDINATOR_NOT_AVAILABLE
        }
    }
}

/// Handles an OffsetCommit (v2-v9).
pub(super) async fn commit(
    coordinator: &GroupCoordinator,
    request: OffsetCommitRequest,
    version: i16,
) -> Result<OffsetCommitResponse, GroupError> {
    let view = view_for(
        coordinator,
        request.topics.iter().map(|t| t.name.0.as_str()),
    )
    .await?;
    let metadata_max = coordinator.options().offset_metadata_max_bytes;
    let now_ms = coordinator.now_ms();
    // Per partition: its code, and its offset when it may be committed.
    let mut codes: Vec<Vec<(i32, i16)>> = Vec::with_capacity(request.topics.len());
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let mut topic_codes = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let metadata = partition
                .committed_metadata
                .as_ref()
                .map_or("", |m| m.as_str());
            let error_code = match view.partition(topic.name.0.as_str(), partition.partition_index)
            {
                None => code::UNKNOWN_TOPIC_OR_PARTITION,
                Some(_) if metadata.len() > metadata_max => code::OFFSET_METADATA_TOO_LARGE,
                Some((topic_id, index)) => {
                    offsets.push(CommittedOffset {
                        topic_id,
                        partition: index,
                        offset: partition.committed_offset,
                        leader_epoch: if version >= 6 {
                            partition.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: metadata.to_string(),
                        commit_timestamp_ms: now_ms,
                    });
                    code::NONE
                }
            };
            topic_codes.push((partition.partition_index, error_code));
        }
        codes.push(topic_codes);
    }
    if !offsets.is_empty() {
        let group_code = write_offsets(coordinator, &request, offsets).await?;
        fill_unset(&mut codes, group_code);
    }
    let topics = request
        .topics
        .into_iter()
        .zip(codes)
        .map(|(topic, codes)| {
            let partitions = codes
                .into_iter()
                .map(|(index, error_code)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    Ok(OffsetCommitResponse::default().with_topics(topics))
}

/// Checks the group with the actor, then writes the offsets: the code of
/// every committable partition.
async fn write_offsets(
    coordinator: &GroupCoordinator,
    request: &OffsetCommitRequest,
    offsets: Vec<CommittedOffset>,
) -> Result<i16, GroupError> {
    let commit = CommitIdentity {
        group_id: request.group_id.0.as_str().to_string(),
        generation_id: request.generation_id_or_member_epoch,
        member_id: request.member_id.as_str().to_string(),
        instance_id: request
            .group_instance_id
            .as_ref()
            .map(|i| i.as_str().to_string()),
    };
    let group_id = commit.group_id.clone();
    let group_code = coordinator
        .ask(|reply| Command::ValidateCommit { commit, reply })
        .await?;
    if group_code != code::NONE {
        return Ok(group_code);
    }
    Ok(
        match coordinator.store().commit_offsets(&group_id, offsets).await {
            Ok(()) => code::NONE,
            Err(error) => store_error_code(&error),
        },
    )
}

/// A group's offsets as fetched: an error, or offsets by topic name.
struct Fetched {
    error_code: i16,
    topics: Vec<(TopicName, Vec<FetchedPartition>)>,
}

struct FetchedPartition {
    index: i32,
    offset: i64,
    leader_epoch: i32,
    metadata: String,
}

impl FetchedPartition {
    fn none(index: i32) -> Self {
        Self {
            index,
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
        }
    }
}

/// Reads one group's offsets: of `requested` topics and partitions (-1
/// where none is committed), or all of them (`None`).
async fn fetch_group(
    coordinator: &GroupCoordinator,
    group_id: &str,
    requested: Option<Vec<(TopicName, Vec<i32>)>>,
) -> Result<Fetched, GroupError> {
    let names = requested.iter().flatten().map(|(name, _)| name.0.as_str());
    let view = view_for(coordinator, names).await?;
    let committed = match coordinator.store().fetch_offsets(group_id).await {
        Ok(committed) => committed,
        Err(error) => {
            return Ok(Fetched {
                error_code: store_error_code(&error),
                topics: Vec::new(),
            });
        }
    };
    let found = |offset: &CommittedOffset, index: i32| FetchedPartition {
        index,
        offset: offset.offset,
        leader_epoch: offset.leader_epoch,
        metadata: offset.metadata.clone(),
    };
    let topics = match requested {
        Some(requested) => {
            let by_partition: HashMap<(Uuid, u32), &CommittedOffset> = committed
                .iter()
                .map(|o| ((o.topic_id, o.partition), o))
                .collect();
            requested
                .into_iter()
                .map(|(name, partitions)| {
                    let topic_id = view.by_name.get(name.0.as_str()).map(|(id, _)| *id);
                    let partitions = partitions
                        .into_iter()
                        .map(|index| {
                            let key = topic_id.zip(u32::try_from(index).ok());
                            match key.and_then(|key| by_partition.get(&key)) {
                                Some(offset) => found(offset, index),
                                None => FetchedPartition::none(index),
                            }
                        })
                        .collect();
                    (name, partitions)
                })
                .collect()
        }
        None => {
            let mut by_name: BTreeMap<&str, Vec<FetchedPartition>> = BTreeMap::new();
            for offset in &committed {
                let Some((name, _)) = view.by_id.get(&offset.topic_id) else {
                    continue;
                };
                let index = i32::try_from(offset.partition).unwrap_or(i32::MAX);
                by_name.entry(name).or_default().push(found(offset, index));
            }
            by_name
                .into_iter()
                .map(|(name, partitions)| (TopicName(str_bytes(name)), partitions))
                .collect()
        }
    };
    Ok(Fetched {
        error_code: code::NONE,
        topics,
    })
}

/// Handles an OffsetFetch (v1-v9; several groups from v8).
pub(super) async fn fetch(
    coordinator: &GroupCoordinator,
    request: OffsetFetchRequest,
    version: i16,
) -> Result<OffsetFetchResponse, GroupError> {
    if version >= 8 {
        let mut groups = Vec::with_capacity(request.groups.len());
        for group in request.groups {
            let requested = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name, t.partition_indexes))
                    .collect()
            });
            let fetched = fetch_group(coordinator, group.group_id.0.as_str(), requested).await?;
            groups.push(group_response(group.group_id, fetched));
        }
        return Ok(OffsetFetchResponse::default().with_groups(groups));
    }
    let requested = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let fetched = fetch_group(coordinator, request.group_id.0.as_str(), requested).await?;
    Ok(single_group_response(fetched, version))
}

fn group_response(
    group_id: kafka_protocol::messages::GroupId,
    fetched: Fetched,
) -> OffsetFetchResponseGroup {
    let topics = fetched
        .topics
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|p| {
                    OffsetFetchResponsePartitions::default()
                        .with_partition_index(p.index)
                        .with_committed_offset(p.offset)
                        .with_committed_leader_epoch(p.leader_epoch)
                        .with_metadata(Some(StrBytes::from_string(p.metadata)))
                })
                .collect();
            OffsetFetchResponseTopics::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponseGroup::default()
        .with_group_id(group_id)
        .with_error_code(fetched.error_code)
        .with_topics(topics)
}

/// The v1-v7 response. v1 has no top-level error: a group error goes to
/// every partition.
fn single_group_response(fetched: Fetched, version: i16) -> OffsetFetchResponse {
    let partition_code = if version < 2 {
        fetched.error_code
    } else {
        code::NONE
    };
    let topics = fetched
        .topics
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|p| {
                    let partition = OffsetFetchResponsePartition::default()
                        .with_partition_index(p.index)
                        .with_committed_offset(p.offset)
                        .with_metadata(Some(StrBytes::from_string(p.metadata)))
                        .with_error_code(partition_code);
                    if version >= 5 {
                        partition.with_committed_leader_epoch(p.leader_epoch)
                    } else {
                        partition
                    }
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response.with_error_code(fetched.error_code)
    } else {
        response
    }
}

/// Handles an OffsetDelete (v0): offsets of topics the group's members
/// are subscribed to stay (GROUP_SUBSCRIBED_TO_TOPIC).
pub(super) async fn delete(
    coordinator: &GroupCoordinator,
    request: OffsetDeleteRequest,
) -> Result<OffsetDeleteResponse, GroupError> {
    let group_id = request.group_id.0.as_str().to_string();
    let checked = coordinator
        .ask(|reply| Command::OffsetDeleteCheck {
            group_id: group_id.clone(),
            reply,
        })
        .await?;
    let subscriptions = match checked {
        Ok(subscriptions) => subscriptions,
        Err(error_code) => return Ok(OffsetDeleteResponse::default().with_error_code(error_code)),
    };
    let view = view_for(
        coordinator,
        request.topics.iter().map(|t| t.name.0.as_str()),
    )
    .await?;
    let mut codes: Vec<Vec<(i32, i16)>> = Vec::with_capacity(request.topics.len());
    let mut doomed = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let topic_codes = topic
            .partitions
            .iter()
            .map(|p| {
                let index = p.partition_index;
                let error_code = match view.partition(name, index) {
                    None => code::UNKNOWN_TOPIC_OR_PARTITION,
                    Some(_) if subscriptions.contains(name) => code::GROUP_SUBSCRIBED_TO_TOPIC,
                    Some(partition) => {
                        doomed.push(partition);
                        code::NONE
                    }
                };
                (index, error_code)
            })
            .collect();
        codes.push(topic_codes);
    }
    if !doomed.is_empty()
        && let Err(error) = coordinator.store().delete_offsets(&group_id, doomed).await
    {
        fill_unset(&mut codes, store_error_code(&error));
    }
    let topics = request
        .topics
        .into_iter()
        .zip(codes)
        .map(|(topic, codes)| {
            let partitions = codes
                .into_iter()
                .map(|(index, error_code)| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    Ok(OffsetDeleteResponse::default().with_topics(topics))
}

/// Gives every partition still answered NONE the outcome of the shared
/// write (`outcome`, NONE on success).
fn fill_unset(codes: &mut [Vec<(i32, i16)>], outcome: i16) {
    for (_, error_code) in codes.iter_mut().flatten() {
        if *error_code == code::NONE {
            *error_code = outcome;
        }
    }
}
