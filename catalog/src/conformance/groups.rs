//! Conformance of consumer groups: committed offsets, classic and KIP-848
//! group records, their persistence and the offset-commit rate.

use std::future::Future;
use std::sync::Arc;

use strata_catalog_api::proto::Topic;

use super::{create_topic, topic_uuid};
use crate::Error;
use crate::store::{
    CatalogStore, CommittedOffset, ConsumerGroupRecord, ConsumerMemberRecord, ConsumerMemberState,
    GroupMemberRecord, GroupRecord, MemberProtocol, SubscribedTopicRecord, TopicPartitionsRecord,
    TopicRef,
};

/// A committed offset of `partition` of `topic`.
pub fn committed(topic: &Topic, partition: u32, offset: i64, metadata: &str) -> CommittedOffset {
    CommittedOffset {
        topic_id: topic_uuid(topic),
        partition,
        offset,
        leader_epoch: 7,
        metadata: metadata.to_string(),
        commit_timestamp_ms: 1_000,
    }
}

/// A classic group record with two members.
pub fn group_record(group_id: &str, generation_id: i32) -> GroupRecord {
    let member = |id: &str, instance: Option<&str>| GroupMemberRecord {
        member_id: id.to_string(),
        instance_id: instance.map(str::to_string),
        client_id: "client".to_string(),
        client_host: "/10.0.0.1".to_string(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocols: vec![
            MemberProtocol {
                name: "range".to_string(),
                metadata: vec![0, 1, 2],
            },
            MemberProtocol {
                name: "cooperative-sticky".to_string(),
                metadata: Vec::new(),
            },
        ],
        assignment: id.as_bytes().to_vec(),
    };
    GroupRecord {
        group_id: group_id.to_string(),
        protocol_type: "consumer".to_string(),
        protocol_name: "range".to_string(),
        generation_id,
        leader_id: "m-2".to_string(),
        members: vec![member("m-2", None), member("m-1", Some("static-1"))],
    }
}

async fn fetch(store: &dyn CatalogStore, group_id: &str) -> Vec<CommittedOffset> {
    store
        .fetch_offsets(group_id)
        .await
        .unwrap_or_else(|e| panic!("fetching offsets of {group_id}: {e}"))
}

/// Offsets: commits replace earlier offsets per partition, are atomic
/// (an unknown partition fails the whole commit), are deleted per
/// partition, and disappear with their topic.
pub async fn group_offsets(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.offsets", 3).await;
    let group = "conformance-offsets";
    assert!(
        fetch(store, group).await.is_empty(),
        "unknown group: no offsets"
    );
    store
        .commit_offsets(
            group,
            vec![committed(&topic, 0, 10, "a"), committed(&topic, 2, 5, "")],
        )
        .await
        .expect("commit");
    store
        .commit_offsets(group, vec![committed(&topic, 0, 12, "b")])
        .await
        .expect("commit again");
    let offsets = fetch(store, group).await;
    assert_eq!(
        offsets,
        [committed(&topic, 0, 12, "b"), committed(&topic, 2, 5, "")]
    );
    let failed = store
        .commit_offsets(
            group,
            vec![committed(&topic, 1, 99, ""), committed(&topic, 3, 1, "")],
        )
        .await;
    assert!(
        matches!(failed, Err(Error::UnknownPartition { partition: 3, .. })),
        "{failed:?}"
    );
    assert_eq!(
        fetch(store, group).await,
        offsets,
        "a failed commit leaves no trace"
    );
    assert!(
        fetch(store, "conformance-other").await.is_empty(),
        "groups are separate"
    );
    store
        .delete_offsets(
            group,
            vec![(topic_uuid(&topic), 2), (topic_uuid(&topic), 1)],
        )
        .await
        .expect("delete offsets");
    assert_eq!(fetch(store, group).await, [committed(&topic, 0, 12, "b")]);
    store
        .delete_topic(TopicRef::Name(topic.name.clone()))
        .await
        .expect("delete topic");
    assert!(
        fetch(store, group).await.is_empty(),
        "offsets go with their topic"
    );
    let recreated = create_topic(store, "conformance.offsets", 3).await;
    assert!(
        fetch(store, group).await.is_empty(),
        "a recreated topic starts without offsets"
    );
    let gone = store
        .commit_offsets(group, vec![committed(&topic, 0, 1, "")])
        .await;
    assert!(gone.is_err(), "commits to a deleted topic's id fail");
    store
        .commit_offsets(group, vec![committed(&recreated, 0, 1, "")])
        .await
        .expect("commit to the new topic");
}

/// Group records: saved records load back exactly (members in order),
/// a save replaces the previous record, groups with only offsets load as
/// empty records, and deleting a group removes its record and offsets.
pub async fn group_records(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.groups", 1).await;
    let record = group_record("conformance-group", 3);
    store.save_group(record.clone()).await.expect("save");
    let mut newer = group_record("conformance-group", 4);
    newer.members.truncate(1);
    store.save_group(newer.clone()).await.expect("save again");
    store
        .commit_offsets(
            "conformance-offsets-only",
            vec![committed(&topic, 0, 3, "")],
        )
        .await
        .expect("commit");
    store
        .commit_offsets("conformance-group", vec![committed(&topic, 0, 4, "")])
        .await
        .expect("commit");
    let loaded = store.load_groups().await.expect("load");
    let find = |id: &str| loaded.iter().find(|r| r.group_id == id).cloned();
    assert_eq!(
        find("conformance-group"),
        Some(newer),
        "the newest record wins"
    );
    assert_eq!(
        find("conformance-offsets-only"),
        Some(GroupRecord {
            group_id: "conformance-offsets-only".to_string(),
            ..GroupRecord::default()
        })
    );
    let ids: Vec<&str> = loaded.iter().map(|r| r.group_id.as_str()).collect();
    assert!(ids.is_sorted(), "sorted by group id: {ids:?}");
    store
        .delete_group("conformance-group")
        .await
        .expect("delete");
    store
        .delete_group("conformance-group")
        .await
        .expect("delete is idempotent");
    assert!(fetch(store, "conformance-group").await.is_empty());
    let loaded = store.load_groups().await.expect("load");
    assert!(loaded.iter().all(|r| r.group_id != "conformance-group"));
    store
        .delete_group("conformance-offsets-only")
        .await
        .expect("delete");
}

/// A KIP-848 consumer group record with a stable member and a static
/// member in the middle of revoking, on `topic`.
pub fn consumer_group_record(
    group_id: &str,
    group_epoch: i32,
    topic: &Topic,
) -> ConsumerGroupRecord {
    let topic_id = topic_uuid(topic);
    let partitions = |partitions: &[i32]| {
        vec![TopicPartitionsRecord {
            topic_id,
            partitions: partitions.to_vec(),
        }]
    };
    ConsumerGroupRecord {
        group_id: group_id.to_string(),
        group_epoch,
        assignment_epoch: group_epoch,
        assignor: "uniform".to_string(),
        subscribed_topics: vec![SubscribedTopicRecord {
            name: topic.name.clone(),
            topic_id,
            partition_count: topic.partition_count,
        }],
        members: vec![
            ConsumerMemberRecord {
                member_id: "kip848-a".to_string(),
                rebalance_timeout_ms: 30_000,
                subscribed_topic_names: vec![topic.name.clone()],
                member_epoch: group_epoch,
                previous_member_epoch: group_epoch - 1,
                assigned: partitions(&[0]),
                target: partitions(&[0, 1]),
                state: ConsumerMemberState::UnreleasedPartitions,
                ..ConsumerMemberRecord::default()
            },
            ConsumerMemberRecord {
                member_id: "kip848-b".to_string(),
                instance_id: Some("static-b".to_string()),
                rack_id: Some("rack-1".to_string()),
                rebalance_timeout_ms: -1,
                subscribed_topic_names: vec![topic.name.clone()],
                server_assignor: Some("uniform".to_string()),
                member_epoch: group_epoch - 1,
                previous_member_epoch: group_epoch - 2,
                state: ConsumerMemberState::UnrevokedPartitions,
                assigned: partitions(&[2]),
                pending_revocation: partitions(&[1]),
                target: partitions(&[2]),
                static_left: true,
            },
        ],
    }
}

fn find_consumer(records: &[ConsumerGroupRecord], group_id: &str) -> Option<ConsumerGroupRecord> {
    records.iter().find(|r| r.group_id == group_id).cloned()
}

async fn load_consumer(store: &dyn CatalogStore) -> Vec<ConsumerGroupRecord> {
    store
        .load_consumer_groups()
        .await
        .expect("load consumer groups")
}

/// KIP-848 records: a saved record loads back exactly, a save replaces the
/// previous record, an emptied group is kept, a group id has one record of
/// one protocol (a consumer-group save replaces a classic record and vice
/// versa, and a group with a consumer record and offsets gets no empty
/// classic record), saving leaves offsets alone, and deleting a group
/// removes its record and offsets.
pub async fn consumer_group_records(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.consumer-groups", 3).await;
    let group = "conformance-kip848";
    let record = consumer_group_record(group, 5, &topic);
    store
        .save_consumer_group(record.clone())
        .await
        .expect("save");
    assert_eq!(
        find_consumer(&load_consumer(store).await, group),
        Some(record.clone()),
        "the record loads back exactly"
    );
    store
        .commit_offsets(group, vec![committed(&topic, 0, 9, "")])
        .await
        .expect("commit");
    let mut newer = consumer_group_record(group, 6, &topic);
    newer.members.clear();
    store
        .save_consumer_group(newer.clone())
        .await
        .expect("save an emptied group");
    let loaded = load_consumer(store).await;
    assert_eq!(
        find_consumer(&loaded, group),
        Some(newer.clone()),
        "the newest record wins"
    );
    let ids: Vec<&str> = loaded.iter().map(|r| r.group_id.as_str()).collect();
    assert!(ids.is_sorted(), "sorted by group id: {ids:?}");
    assert_eq!(
        fetch(store, group).await,
        [committed(&topic, 0, 9, "")],
        "saving keeps the offsets"
    );
    let classic = store.load_groups().await.expect("load");
    assert!(
        classic.iter().all(|r| r.group_id != group),
        "a consumer group with offsets is not a classic group"
    );

    // One record per group id, of the protocol saved last.
    store
        .save_group(group_record(group, 2))
        .await
        .expect("save classic");
    assert_eq!(find_consumer(&load_consumer(store).await, group), None);
    assert_eq!(
        store
            .load_groups()
            .await
            .expect("load")
            .iter()
            .find(|r| r.group_id == group),
        Some(&group_record(group, 2))
    );
    store
        .save_consumer_group(record.clone())
        .await
        .expect("save again");
    assert!(
        store
            .load_groups()
            .await
            .expect("load")
            .iter()
            .all(|r| r.group_id != group),
        "the classic record is replaced"
    );
    assert_eq!(
        find_consumer(&load_consumer(store).await, group),
        Some(record)
    );

    store.delete_group(group).await.expect("delete");
    assert_eq!(find_consumer(&load_consumer(store).await, group), None);
    assert!(fetch(store, group).await.is_empty(), "offsets go too");
    assert!(
        store
            .load_groups()
            .await
            .expect("load")
            .iter()
            .all(|r| r.group_id != group)
    );
    store
        .delete_group(group)
        .await
        .expect("delete is idempotent");
}

/// Offsets and group records (classic and KIP-848) survive reopening the
/// store. `open` must open the same store each time.
pub async fn group_restart_persistence<F, Fut>(mut open: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn CatalogStore>>,
{
    let store = open().await;
    let topic = create_topic(store.as_ref(), "conformance.group-restart", 2).await;
    let record = group_record("conformance-restart-group", 9);
    store.save_group(record.clone()).await.expect("save");
    let offsets = vec![
        committed(&topic, 0, 40, "meta"),
        committed(&topic, 1, 41, ""),
    ];
    store
        .commit_offsets("conformance-restart-group", offsets.clone())
        .await
        .expect("commit");
    let consumer = consumer_group_record("conformance-restart-kip848", 3, &topic);
    store
        .save_consumer_group(consumer.clone())
        .await
        .expect("save a consumer group");
    drop(store);

    let store = open().await;
    let loaded = store.load_groups().await.expect("load");
    assert!(loaded.contains(&record), "the record survives");
    assert_eq!(
        find_consumer(&load_consumer(store.as_ref()).await, &consumer.group_id),
        Some(consumer),
        "the consumer group record survives"
    );
    assert_eq!(
        fetch(store.as_ref(), "conformance-restart-group").await,
        offsets
    );
}

/// Goal: OffsetCommit throughput reaches `min_rate` commits/s (group
/// commit). Method: 64 concurrent committers, 8,000 single-partition
/// commits; logs the rate, labelled with `label`.
pub async fn offset_commit_throughput(store: Arc<dyn CatalogStore>, label: &str, min_rate: f64) {
    let topic = create_topic(store.as_ref(), "throughput", 64).await;
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..64u32)
        .map(|worker| {
            let store = Arc::clone(&store);
            let topic = topic.clone();
            tokio::spawn(async move {
                for offset in 0..125 {
                    let commit = committed(&topic, worker, offset, "");
                    store
                        .commit_offsets(&format!("group-{}", worker % 8), vec![commit])
                        .await
                        .expect("commit offsets");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a committer task");
    }
    let rate = 8_000.0 / started.elapsed().as_secs_f64();
    eprintln!("{label}offset commits per second: {rate:.0}");
    assert!(rate > min_rate, "{rate:.0} commits/s");
}
