//! Partition sets: conversions to and from the wire and persisted forms,
//! and the set operations reconciliation needs.

use std::collections::BTreeSet;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedPartitions;
use kafka_protocol::messages::consumer_group_heartbeat_response as heartbeat;

use crate::group::assignor::TopicPartitionSet;
use crate::store::TopicPartitionsRecord;

pub(super) fn heartbeat_assignment(partitions: &TopicPartitionSet) -> heartbeat::Assignment {
    let topic_partitions = partitions
        .iter()
        .map(|(&topic_id, partitions)| {
            heartbeat::TopicPartitions::default()
                .with_topic_id(topic_id)
                .with_partitions(partitions.iter().copied().collect())
        })
        .collect();
    heartbeat::Assignment::default().with_topic_partitions(topic_partitions)
}

pub(super) fn to_topic_partition_set(owned: &[OwnedPartitions]) -> TopicPartitionSet {
    let mut set = TopicPartitionSet::new();
    for topic in owned {
        set.entry(topic.topic_id)
            .or_default()
            .extend(topic.partitions.iter().copied());
    }
    set.retain(|_, partitions| !partitions.is_empty());
    set
}

/// A partition set as persisted: topics by id, partitions ascending,
/// empty topics left out.
pub(super) fn to_records(partitions: &TopicPartitionSet) -> Vec<TopicPartitionsRecord> {
    partitions
        .iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .map(|(&topic_id, partitions)| TopicPartitionsRecord {
            topic_id,
            partitions: partitions.iter().copied().collect(),
        })
        .collect()
}

/// The partition set of persisted records (topics listed twice merge).
pub(super) fn from_records(records: &[TopicPartitionsRecord]) -> TopicPartitionSet {
    let mut set = TopicPartitionSet::new();
    for record in records {
        set.entry(record.topic_id)
            .or_default()
            .extend(record.partitions.iter().copied());
    }
    set.retain(|_, partitions| !partitions.is_empty());
    set
}

/// Whether the member still owns any of `partitions`. A member that did not
/// say what it owns is assumed to own everything it was given.
pub(super) fn owns_any(owned: Option<&TopicPartitionSet>, partitions: &TopicPartitionSet) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    partitions.iter().any(|(topic_id, partitions)| {
        owned
            .get(topic_id)
            .is_some_and(|owned| !owned.is_disjoint(partitions))
    })
}

pub(super) fn is_subset(subset: &TopicPartitionSet, superset: &TopicPartitionSet) -> bool {
    subset.iter().all(|(topic_id, partitions)| {
        partitions.is_empty()
            || superset
                .get(topic_id)
                .is_some_and(|superset| partitions.is_subset(superset))
    })
}

pub(super) fn intersection(
    left: &TopicPartitionSet,
    right: &TopicPartitionSet,
) -> TopicPartitionSet {
    left.iter()
        .filter_map(|(topic_id, partitions)| {
            let common: BTreeSet<i32> = partitions
                .intersection(right.get(topic_id)?)
                .copied()
                .collect();
            (!common.is_empty()).then_some((*topic_id, common))
        })
        .collect()
}

pub(super) fn difference(left: &TopicPartitionSet, right: &TopicPartitionSet) -> TopicPartitionSet {
    left.iter()
        .filter_map(|(topic_id, partitions)| {
            let rest: BTreeSet<i32> = match right.get(topic_id) {
                Some(right) => partitions.difference(right).copied().collect(),
                None => partitions.clone(),
            };
            (!rest.is_empty()).then_some((*topic_id, rest))
        })
        .collect()
}
