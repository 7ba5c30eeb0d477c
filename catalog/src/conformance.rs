//! The conformance suite every [`CatalogStore`] must pass.
//!
//! Each function is one test: it takes a store, exercises one contract of
//! the trait, and panics (with a message naming the broken rule) when the
//! store breaks it. Every test uses its own topics, so all of them can run
//! on one store; [`run_all`] does that. [`restart_persistence`] takes a
//! factory, since it must reopen the store.
//!
//! ```no_run
//! # async fn example() {
//! use strata_catalog::{SqliteOptions, SqliteStore, conformance};
//! let store = SqliteStore::open("/tmp/catalog.db", SqliteOptions::default()).unwrap();
//! conformance::run_all(&store).await;
//! # }
//! ```

mod compaction;
mod transactions;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use strata_catalog_api::proto::{
    BatchMeta, ChunkResult, ChunkWrite, CommitSegmentRequest, CommitSegmentResponse,
    InitProducerIdRequest, Topic,
};
use uuid::Uuid;

pub use self::compaction::{
    dead_objects_lifecycle, delete_records_moves_log_start, replace_chunks_swaps_atomically,
    replace_conflicts_with_retention,
};
pub use self::transactions::{
    transaction_fencing_and_interleaving, transaction_markers_and_last_stable_offset,
    transaction_timeout_aborts, transactional_offsets,
};
use crate::Error;
use crate::error_code::{
    DUPLICATE_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, OUT_OF_ORDER_SEQUENCE_NUMBER,
    UNKNOWN_PRODUCER_ID, UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::store::{
    AgentRecord, AgentRegistration, CatalogStore, Clock, CommitOutcome, CommittedOffset,
    ConfigChange, ConsumerGroupRecord, ConsumerMemberRecord, ConsumerMemberState,
    GroupMemberRecord, GroupRecord, MemberProtocol, NewTopic, ProducerIdAndEpoch,
    SubscribedTopicRecord, TopicPartitionsRecord, TopicRef,
};

/// Runs every single-store test of the suite on `store`.
pub async fn run_all(store: &dyn CatalogStore) {
    topic_crud(store).await;
    offsets_are_contiguous(store).await;
    failed_commit_leaves_no_trace(store).await;
    retried_commit_is_idempotent(store).await;
    idempotent_producer_rules(store).await;
    producer_batches_in_one_commit(store).await;
    duplicate_window_holds_five_batches(store).await;
    sequence_wraps_around(store).await;
    lookup_by_offset_and_timestamp(store).await;
    init_producer_id_rules(store).await;
    transactional_init_producer_id(store).await;
    commit_sequence_is_contiguous(store).await;
    group_offsets(store).await;
    group_records(store).await;
    consumer_group_records(store).await;
    replace_chunks_swaps_atomically(store).await;
    replace_conflicts_with_retention(store).await;
    delete_records_moves_log_start(store).await;
    dead_objects_lifecycle(store).await;
    agent_registry(store).await;
    commit_fencing(store).await;
    transaction_markers_and_last_stable_offset(store).await;
    transaction_fencing_and_interleaving(store).await;
    transactional_offsets(store).await;
}

// ---------- helpers ----------

/// A batch of `offset_count` records, without producer fields.
pub fn plain_batch(offset_count: u32, max_timestamp: i64) -> BatchMeta {
    BatchMeta {
        offset_count,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        max_timestamp,
        base_timestamp: max_timestamp,
        transactional: false,
        control: false,
        length: offset_count.saturating_mul(100),
    }
}

/// A batch of an idempotent producer.
pub fn producer_batch(
    producer: ProducerIdAndEpoch,
    base_sequence: i32,
    offset_count: u32,
) -> BatchMeta {
    BatchMeta {
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        base_sequence,
        ..plain_batch(offset_count, 1_000)
    }
}

/// A write of `batches` to one partition, starting at byte `position`.
pub fn chunk_write(
    topic: &Topic,
    partition: u32,
    position: u64,
    batches: Vec<BatchMeta>,
) -> ChunkWrite {
    ChunkWrite {
        topic_id: topic.topic_id.clone(),
        partition,
        position,
        batches,
    }
}

/// A commit request for segment `segment_id`.
pub fn commit_request(segment_id: &str, chunks: Vec<ChunkWrite>) -> CommitSegmentRequest {
    CommitSegmentRequest {
        segment_id: segment_id.to_string(),
        object_key: format!("segments/00/{segment_id}.seg"),
        object_size: 1 << 20,
        agent_id: "conformance".to_string(),
        agent_epoch: 0,
        chunks,
    }
}

/// Creates a topic with a random id and no configs.
pub async fn create_topic(store: &dyn CatalogStore, name: &str, partition_count: u32) -> Topic {
    store
        .create_topic(NewTopic {
            topic_id: Uuid::new_v4(),
            name: name.to_string(),
            partition_count,
            configs: BTreeMap::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("creating topic {name}: {e}"))
}

/// The id of a topic returned by the store.
pub fn topic_uuid(topic: &Topic) -> Uuid {
    Uuid::from_slice(&topic.topic_id).expect("a store returns 16-byte topic ids")
}

async fn commit(store: &dyn CatalogStore, request: CommitSegmentRequest) -> CommitSegmentResponse {
    let segment_id = request.segment_id.clone();
    store
        .commit_segment(request)
        .await
        .unwrap_or_else(|e| panic!("committing {segment_id}: {e}"))
        .response
}

/// `(error_code, base_offset)` of every batch of a chunk result.
fn outcomes(result: &ChunkResult) -> Vec<(i32, i64)> {
    result
        .batches
        .iter()
        .map(|b| (b.error_code, b.base_offset))
        .collect()
}

async fn high_watermark(store: &dyn CatalogStore, topic: &Topic, partition: u32) -> i64 {
    store
        .partition_offsets(topic_uuid(topic), partition)
        .await
        .expect("the partition exists")
        .high_watermark
}

async fn new_producer(store: &dyn CatalogStore) -> ProducerIdAndEpoch {
    store
        .init_producer_id(InitProducerIdRequest {
            transactional_id: String::new(),
            transaction_timeout_ms: 0,
            producer_id: -1,
            producer_epoch: -1,
        })
        .await
        .map(|outcome| outcome.granted)
        .expect("allocating a producer id")
}

async fn bump(
    store: &dyn CatalogStore,
    producer: ProducerIdAndEpoch,
) -> Result<ProducerIdAndEpoch, Error> {
    store
        .init_producer_id(InitProducerIdRequest {
            transactional_id: String::new(),
            transaction_timeout_ms: 0,
            producer_id: producer.producer_id,
            producer_epoch: producer.producer_epoch,
        })
        .await
        .map(|outcome| outcome.granted)
}

const OK: i32 = 0;
const DUPLICATE: i32 = DUPLICATE_SEQUENCE_NUMBER as i32;
const OUT_OF_ORDER: i32 = OUT_OF_ORDER_SEQUENCE_NUMBER as i32;
const FENCED_EPOCH: i32 = INVALID_PRODUCER_EPOCH as i32;
const UNKNOWN_PRODUCER: i32 = UNKNOWN_PRODUCER_ID as i32;
const UNKNOWN_PARTITION: i32 = UNKNOWN_TOPIC_OR_PARTITION as i32;

// ---------- topics ----------

/// Create, list, configure, grow and delete topics.
pub async fn topic_crud(store: &dyn CatalogStore) {
    let name = "conformance.crud";
    let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
    let new = NewTopic {
        topic_id: Uuid::new_v4(),
        name: name.to_string(),
        partition_count: 3,
        configs,
    };
    let topic = store.create_topic(new.clone()).await.expect("create");
    assert_eq!((topic.name.as_str(), topic.partition_count), (name, 3));
    assert_eq!(topic_uuid(&topic), new.topic_id);
    assert_eq!(topic.configs.len(), 1);
    let again = store
        .create_topic(NewTopic {
            topic_id: Uuid::new_v4(),
            ..new
        })
        .await;
    assert!(
        matches!(again, Err(Error::TopicAlreadyExists { .. })),
        "duplicate name: {again:?}"
    );

    let listed = store.list_topics(&[name.to_string()]).await.expect("list");
    assert_eq!(listed, vec![topic.clone()]);
    let all = store.list_topics(&[]).await.expect("list all");
    assert!(all.iter().any(|t| t.name == name));
    assert!(
        store
            .list_topics(&["conformance.none".to_string()])
            .await
            .expect("list")
            .is_empty()
    );

    topic_configs(store, name).await;
    topic_partitions(store, &topic).await;
    topic_deletion(store, &topic).await;
}

async fn topic_configs(store: &dyn CatalogStore, name: &str) {
    let change = ConfigChange {
        set: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        delete: vec!["retention.ms".to_string()],
        replace_all: false,
    };
    let altered = store
        .alter_topic_configs(name, change.clone())
        .await
        .expect("alter");
    let configs: Vec<_> = altered
        .configs
        .iter()
        .map(|c| (c.name.as_str(), c.value.as_str()))
        .collect();
    assert_eq!(configs, [("cleanup.policy", "compact")]);
    // Idempotent.
    let again = store
        .alter_topic_configs(name, change)
        .await
        .expect("alter again");
    assert_eq!(again.configs, altered.configs);
    let replace = ConfigChange {
        set: BTreeMap::from([("segment.ms".to_string(), "1".to_string())]),
        delete: Vec::new(),
        replace_all: true,
    };
    let replaced = store
        .alter_topic_configs(name, replace)
        .await
        .expect("replace");
    let configs: Vec<_> = replaced
        .configs
        .iter()
        .map(|c| (c.name.as_str(), c.value.as_str()))
        .collect();
    assert_eq!(configs, [("segment.ms", "1")]);
    let listed = store.list_topics(&[name.to_string()]).await.expect("list");
    assert_eq!(listed[0].configs, replaced.configs, "configs persist");
    let unknown = store
        .alter_topic_configs("conformance.none", ConfigChange::default())
        .await;
    assert!(matches!(unknown, Err(Error::UnknownTopic { .. })));
}

async fn topic_partitions(store: &dyn CatalogStore, topic: &Topic) {
    let name = topic.name.as_str();
    let same = store.create_partitions(name, 3).await;
    assert!(
        matches!(
            same,
            Err(Error::InvalidPartitions {
                current: 3,
                requested: 3
            })
        ),
        "{same:?}"
    );
    let grown = store.create_partitions(name, 5).await.expect("grow");
    assert_eq!(grown.partition_count, 5);
    let offsets = store
        .partition_offsets(topic_uuid(topic), 4)
        .await
        .expect("new partition");
    assert_eq!(
        (
            offsets.log_start_offset,
            offsets.high_watermark,
            offsets.max_timestamp
        ),
        (0, 0, -1)
    );
    let missing = store.partition_offsets(topic_uuid(topic), 5).await;
    assert!(
        matches!(missing, Err(Error::UnknownPartition { .. })),
        "{missing:?}"
    );
    let unknown = store.create_partitions("conformance.none", 2).await;
    assert!(matches!(unknown, Err(Error::UnknownTopic { .. })));
}

async fn topic_deletion(store: &dyn CatalogStore, topic: &Topic) {
    let name = topic.name.as_str();
    let deleted = store
        .delete_topic(TopicRef::Name(name.to_string()))
        .await
        .expect("delete");
    assert_eq!(deleted.topic.topic_id, topic.topic_id);
    assert_eq!(
        deleted.event.invalidated.len(),
        5,
        "every partition is invalidated"
    );
    assert!(deleted.event.sequence > 0);
    assert!(
        store
            .list_topics(&[name.to_string()])
            .await
            .expect("list")
            .is_empty()
    );
    assert!(store.partition_offsets(topic_uuid(topic), 0).await.is_err());
    let again = store.delete_topic(TopicRef::Name(name.to_string())).await;
    assert!(matches!(again, Err(Error::UnknownTopic { .. })));
    let by_id = store.delete_topic(TopicRef::Id(topic_uuid(topic))).await;
    assert!(matches!(by_id, Err(Error::UnknownTopicId { .. })));
    // The name is free again, with a new id.
    let recreated = create_topic(store, name, 1).await;
    assert_ne!(recreated.topic_id, topic.topic_id);
    let deleted = store
        .delete_topic(TopicRef::Id(topic_uuid(&recreated)))
        .await
        .expect("by id");
    assert_eq!(deleted.topic.name, name);
}

// ---------- offsets ----------

/// Offsets start at 0 and are contiguous per partition, across many
/// partitions of several topics in one commit; unknown partitions get
/// UNKNOWN_TOPIC_OR_PARTITION without affecting the rest.
pub async fn offsets_are_contiguous(store: &dyn CatalogStore) {
    let a = create_topic(store, "conformance.offsets-a", 8).await;
    let b = create_topic(store, "conformance.offsets-b", 4).await;
    let mut expected_next: HashMap<(Vec<u8>, u32), i64> = HashMap::new();
    for round in 0..3_u32 {
        let mut writes = Vec::new();
        for (topic, partitions) in [(&a, 8), (&b, 4)] {
            for partition in 0..partitions {
                let batches = (0..=(partition + round) % 3)
                    .map(|i| plain_batch(i + 1, 10))
                    .collect();
                writes.push(chunk_write(
                    topic,
                    partition,
                    4096 * u64::from(partition),
                    batches,
                ));
            }
        }
        writes.push(chunk_write(&a, 99, 0, vec![plain_batch(1, 0)]));
        let response = commit(
            store,
            commit_request(&format!("conformance-offsets-{round}"), writes.clone()),
        )
        .await;
        assert_eq!(
            response.chunks.len(),
            writes.len(),
            "one result per write, in order"
        );
        for (write, result) in writes.iter().zip(&response.chunks) {
            assert_eq!(
                (&result.topic_id, result.partition),
                (&write.topic_id, write.partition)
            );
            if write.partition == 99 {
                assert!(
                    outcomes(result)
                        .iter()
                        .all(|&(code, _)| code == UNKNOWN_PARTITION)
                );
                continue;
            }
            let next = expected_next
                .entry((write.topic_id.clone(), write.partition))
                .or_insert(0);
            for (batch, (code, base_offset)) in write.batches.iter().zip(outcomes(result)) {
                assert_eq!((code, base_offset), (OK, *next), "contiguous offsets");
                *next += i64::from(batch.offset_count);
            }
            assert_eq!(result.high_watermark, *next);
        }
    }
    for ((topic_id, partition), next) in expected_next {
        let id = Uuid::from_slice(&topic_id).expect("16 bytes");
        let offsets = store
            .partition_offsets(id, partition)
            .await
            .expect("offsets");
        assert_eq!(offsets.high_watermark, next);
        let lookup = store
            .lookup_chunks(id, partition, 0, 100)
            .await
            .expect("lookup");
        assert_eq!(lookup.chunks.len(), 3, "one chunk per write");
        for pair in lookup.chunks.windows(2) {
            assert_eq!(
                pair[0].end_offset, pair[1].base_offset,
                "chunks tile the log"
            );
        }
        assert_eq!(lookup.chunks[0].position, 4096 * u64::from(partition));
    }
}

/// A commit that fails leaves nothing behind; one that succeeds is whole.
pub async fn failed_commit_leaves_no_trace(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.atomic", 2).await;
    let writes = vec![
        chunk_write(&topic, 0, 0, vec![plain_batch(5, 1)]),
        // A position no signed 64-bit column can hold: a store may reject it.
        chunk_write(&topic, 1, u64::MAX - 10, vec![plain_batch(5, 1)]),
    ];
    match store
        .commit_segment(commit_request("conformance-atomic", writes))
        .await
    {
        Err(_) => {
            assert_eq!(
                high_watermark(store, &topic, 0).await,
                0,
                "partition 0 rolled back"
            );
            assert_eq!(high_watermark(store, &topic, 1).await, 0);
            let retry = vec![chunk_write(&topic, 0, 0, vec![plain_batch(5, 1)])];
            let response = commit(store, commit_request("conformance-atomic", retry)).await;
            assert_eq!(
                outcomes(&response.chunks[0]),
                [(OK, 0)],
                "the failed id was not recorded"
            );
        }
        Ok(outcome) => {
            assert_eq!(outcome.response.chunks.len(), 2);
            assert_eq!(high_watermark(store, &topic, 0).await, 5);
            assert_eq!(high_watermark(store, &topic, 1).await, 5);
        }
    }
}

/// A retried commit returns the first response and appends nothing.
pub async fn retried_commit_is_idempotent(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.retry", 2).await;
    let writes = vec![
        chunk_write(&topic, 0, 0, vec![plain_batch(3, 5), plain_batch(2, 6)]),
        chunk_write(&topic, 1, 500, vec![plain_batch(4, 7)]),
    ];
    let first = store
        .commit_segment(commit_request("conformance-retry", writes.clone()))
        .await
        .expect("first commit");
    assert!(first.event.is_some(), "a first commit has an event");
    let retry = store
        .commit_segment(commit_request("conformance-retry", writes))
        .await
        .expect("retry");
    assert_eq!(
        retry.response, first.response,
        "same offsets, same sequence"
    );
    assert!(retry.event.is_none(), "a retry publishes nothing");
    // Even a retry with different content gets the original answer.
    let other = vec![chunk_write(&topic, 0, 0, vec![plain_batch(9, 5)])];
    let odd = commit(store, commit_request("conformance-retry", other)).await;
    assert_eq!(odd, first.response);
    assert_eq!(high_watermark(store, &topic, 0).await, 5);
    assert_eq!(high_watermark(store, &topic, 1).await, 4);
    let id = topic_uuid(&topic);
    assert_eq!(
        store
            .lookup_chunks(id, 0, 0, 10)
            .await
            .expect("lookup")
            .chunks
            .len(),
        1
    );
}

// ---------- producers ----------

/// Commits one batch to one partition; returns its (error code, offset).
async fn produce_one(
    store: &dyn CatalogStore,
    topic: &Topic,
    segment_id: &str,
    partition: u32,
    batch: BatchMeta,
) -> (i32, i64) {
    let write = chunk_write(topic, partition, 0, vec![batch]);
    let response = commit(store, commit_request(segment_id, vec![write])).await;
    outcomes(&response.chunks[0])[0]
}

/// Duplicates get the original offset; gaps get 45; a new partition
/// starts at sequence 0; then the epoch rules of [`producer_epoch_rules`].
pub async fn idempotent_producer_rules(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.idempotent", 2).await;
    let producer = new_producer(store).await;
    let batch = |sequence, count| producer_batch(producer, sequence, count);
    let r = produce_one(store, &topic, "conformance-idem-1", 0, batch(0, 5)).await;
    assert_eq!(r, (OK, 0));
    let r = produce_one(store, &topic, "conformance-idem-2", 0, batch(5, 5)).await;
    assert_eq!(r, (OK, 5));
    let r = produce_one(store, &topic, "conformance-idem-3", 0, batch(0, 5)).await;
    assert_eq!(r, (DUPLICATE, 0), "a duplicate gets its original offset");
    let hw = high_watermark(store, &topic, 0).await;
    assert_eq!(hw, 10, "a duplicate appends nothing");
    let r = produce_one(store, &topic, "conformance-idem-4", 0, batch(11, 1)).await;
    assert_eq!(r.0, OUT_OF_ORDER, "a gap");
    let r = produce_one(store, &topic, "conformance-idem-5", 1, batch(5, 1)).await;
    assert_eq!(r.0, OUT_OF_ORDER, "a new partition starts at sequence 0");
    producer_epoch_rules(store, &topic, producer).await;
}

/// After an epoch bump the old epoch gets 47 and the new one must start at
/// sequence 0; unknown producers get 59; batches without a producer are
/// always accepted. Continues [`idempotent_producer_rules`] (offset 10).
async fn producer_epoch_rules(
    store: &dyn CatalogStore,
    topic: &Topic,
    producer: ProducerIdAndEpoch,
) {
    let bumped = bump(store, producer).await.expect("bump");
    assert_eq!(
        bumped,
        ProducerIdAndEpoch {
            producer_epoch: 1,
            ..producer
        }
    );
    let old = producer_batch(producer, 10, 1);
    let r = produce_one(store, topic, "conformance-idem-6", 0, old).await;
    assert_eq!(r.0, FENCED_EPOCH, "the old epoch is fenced");
    let r = produce_one(
        store,
        topic,
        "conformance-idem-7",
        0,
        producer_batch(bumped, 10, 1),
    )
    .await;
    assert_eq!(r.0, OUT_OF_ORDER, "a new epoch starts at sequence 0");
    let r = produce_one(
        store,
        topic,
        "conformance-idem-8",
        0,
        producer_batch(bumped, 0, 2),
    )
    .await;
    assert_eq!(r, (OK, 10));
    let stranger = ProducerIdAndEpoch {
        producer_id: i64::from(i32::MAX),
        producer_epoch: 0,
    };
    let r = produce_one(
        store,
        topic,
        "conformance-idem-9",
        0,
        producer_batch(stranger, 0, 1),
    )
    .await;
    assert_eq!(r.0, UNKNOWN_PRODUCER, "never allocated");
    let r = produce_one(store, topic, "conformance-idem-10", 0, plain_batch(1, 0)).await;
    assert_eq!(
        r,
        (OK, 12),
        "batches without a producer are always accepted"
    );

    let states = store
        .describe_producers(topic_uuid(topic), 0)
        .await
        .expect("describe");
    assert_eq!(states.len(), 1);
    let state = &states[0];
    let described = (state.producer_id, state.producer_epoch, state.last_sequence);
    assert_eq!(described, (producer.producer_id, 1, 1));
    assert_eq!(state.current_txn_start_offset, -1);
}

/// Batches of one producer in one commit are checked in order, and a
/// rejected batch splits the write into separate chunks.
pub async fn producer_batches_in_one_commit(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.in-order", 1).await;
    let producer = new_producer(store).await;
    let batches = vec![
        producer_batch(producer, 0, 2),
        producer_batch(producer, 2, 3),
        producer_batch(producer, 2, 3),
        producer_batch(producer, 9, 1),
        producer_batch(producer, 5, 1),
    ];
    let request = commit_request(
        "conformance-in-order",
        vec![chunk_write(&topic, 0, 1000, batches)],
    );
    let response = commit(store, request).await;
    assert_eq!(
        outcomes(&response.chunks[0]),
        [
            (OK, 0),
            (OK, 2),
            (DUPLICATE, 2),
            (OUT_OF_ORDER, -1),
            (OK, 5)
        ]
    );
    let lookup = store
        .lookup_chunks(topic_uuid(&topic), 0, 0, 10)
        .await
        .expect("lookup");
    let chunks: Vec<_> = lookup
        .chunks
        .iter()
        .map(|c| {
            (
                c.base_offset,
                c.end_offset,
                c.position,
                c.length,
                c.batch_count,
            )
        })
        .collect();
    // Lengths are 100 bytes per record: 200 + 300, then 300 + 100 skipped.
    assert_eq!(chunks, [(0, 5, 1000, 500, 2), (5, 6, 1900, 100, 1)]);
}

/// The last five batches are remembered; older retries are out of order.
pub async fn duplicate_window_holds_five_batches(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.window", 1).await;
    let producer = new_producer(store).await;
    for sequence in 0..7 {
        let batch = producer_batch(producer, sequence, 1);
        let request = commit_request(
            &format!("conformance-window-{sequence}"),
            vec![chunk_write(&topic, 0, 0, vec![batch])],
        );
        commit(store, request).await;
    }
    let retries = (0..7)
        .map(|sequence| producer_batch(producer, sequence, 1))
        .collect();
    let request = commit_request(
        "conformance-window-retry",
        vec![chunk_write(&topic, 0, 0, retries)],
    );
    let response = commit(store, request).await;
    assert_eq!(
        outcomes(&response.chunks[0]),
        [
            (OUT_OF_ORDER, -1),
            (OUT_OF_ORDER, -1),
            (DUPLICATE, 2),
            (DUPLICATE, 3),
            (DUPLICATE, 4),
            (DUPLICATE, 5),
            (DUPLICATE, 6),
        ]
    );
}

/// Sequences wrap from `i32::MAX` to 0.
pub async fn sequence_wraps_around(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.wrap", 1).await;
    let producer = new_producer(store).await;
    let huge = 1_u32 << 31;
    let batches = vec![
        producer_batch(producer, 0, huge),
        producer_batch(producer, 0, 1),
    ];
    let request = commit_request("conformance-wrap", vec![chunk_write(&topic, 0, 0, batches)]);
    let response = commit(store, request).await;
    assert_eq!(
        outcomes(&response.chunks[0]),
        [(OK, 0), (OK, i64::from(huge))]
    );
}

/// InitProducerId: fresh ids are unique; a matching epoch is bumped; a
/// stale epoch is rejected; an unknown id gets a fresh one.
pub async fn init_producer_id_rules(store: &dyn CatalogStore) {
    let first = new_producer(store).await;
    let second = new_producer(store).await;
    assert_ne!(first.producer_id, second.producer_id);
    assert_eq!((first.producer_epoch, second.producer_epoch), (0, 0));
    let bumped = bump(store, first).await.expect("bump");
    assert_eq!(
        bumped,
        ProducerIdAndEpoch {
            producer_epoch: 1,
            ..first
        }
    );
    let stale = bump(store, first).await;
    assert!(
        matches!(stale, Err(Error::InvalidProducerEpoch { current: 1, .. })),
        "{stale:?}"
    );
    let unknown = ProducerIdAndEpoch {
        producer_id: i64::from(i32::MAX) + 7,
        producer_epoch: 3,
    };
    let fresh = bump(store, unknown)
        .await
        .expect("unknown ids get a new id");
    assert_eq!(fresh.producer_epoch, 0);
    assert!(
        ![first.producer_id, second.producer_id, unknown.producer_id].contains(&fresh.producer_id)
    );
}

/// InitProducerId with a transactional id keeps one id per transactional
/// id and bumps its epoch on every init, fencing older instances.
pub async fn transactional_init_producer_id(store: &dyn CatalogStore) {
    let init = |producer_id: i64, producer_epoch: i32| InitProducerIdRequest {
        transactional_id: "conformance-txn".to_string(),
        transaction_timeout_ms: 60_000,
        producer_id,
        producer_epoch,
    };
    let first = store
        .init_producer_id(init(-1, -1))
        .await
        .map(|outcome| outcome.granted)
        .expect("first init");
    assert_eq!(first.producer_epoch, 0);
    let second = store
        .init_producer_id(init(-1, -1))
        .await
        .map(|outcome| outcome.granted)
        .expect("second init");
    assert_eq!(
        second,
        ProducerIdAndEpoch {
            producer_epoch: 1,
            ..first
        }
    );
    let third = store
        .init_producer_id(init(first.producer_id, 1))
        .await
        .map(|outcome| outcome.granted)
        .expect("KIP-360 bump");
    assert_eq!(third.producer_epoch, 2);
    // A retry of that bump (answer lost) gets the same answer.
    let retried = store
        .init_producer_id(init(first.producer_id, 1))
        .await
        .map(|outcome| outcome.granted)
        .expect("retry");
    assert_eq!(retried, third);
    let zombie = store
        .init_producer_id(init(first.producer_id, 0))
        .await
        .map(|outcome| outcome.granted);
    assert!(
        matches!(zombie, Err(Error::ProducerFenced { .. })),
        "{zombie:?}"
    );
    let other = store
        .init_producer_id(init(first.producer_id + 1_000_000, 2))
        .await
        .map(|outcome| outcome.granted);
    assert!(
        matches!(other, Err(Error::ProducerFenced { .. })),
        "{other:?}"
    );
}

// ---------- the index ----------

/// Chunks are found by offset and by timestamp; offsets report the chunk
/// holding the greatest timestamp.
pub async fn lookup_by_offset_and_timestamp(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.lookup", 1).await;
    let id = topic_uuid(&topic);
    for (index, max_timestamp) in [100, 300, 200, 400, 400].into_iter().enumerate() {
        let write = chunk_write(&topic, 0, 0, vec![plain_batch(10, max_timestamp)]);
        commit(
            store,
            commit_request(&format!("conformance-lookup-{index}"), vec![write]),
        )
        .await;
    }
    let bases = |chunks: &[strata_catalog_api::proto::Chunk]| -> Vec<i64> {
        chunks.iter().map(|c| c.base_offset).collect()
    };
    let lookup = store.lookup_chunks(id, 0, 0, 2).await.expect("lookup");
    assert_eq!(bases(&lookup.chunks), [0, 10]);
    assert_eq!((lookup.log_start_offset, lookup.high_watermark), (0, 50));
    let lookup = store.lookup_chunks(id, 0, 15, 10).await.expect("lookup");
    assert_eq!(
        bases(&lookup.chunks),
        [10, 20, 30, 40],
        "starts with the chunk holding 15"
    );
    assert_eq!(
        bases(
            &store
                .lookup_chunks(id, 0, 49, 10)
                .await
                .expect("lookup")
                .chunks
        ),
        [40]
    );
    assert!(
        store
            .lookup_chunks(id, 0, 50, 10)
            .await
            .expect("lookup")
            .chunks
            .is_empty()
    );
    let missing = store.lookup_chunks(id, 1, 0, 10).await;
    assert!(
        matches!(missing, Err(Error::UnknownPartition { .. })),
        "{missing:?}"
    );

    for (timestamp, expected) in [
        (50, Some(0)),
        (150, Some(10)),
        (300, Some(10)),
        (350, Some(30)),
        (401, None),
    ] {
        let found = store
            .find_chunk_by_timestamp(id, 0, timestamp)
            .await
            .expect("find");
        assert_eq!(
            found.map(|c| c.base_offset),
            expected,
            "timestamp {timestamp}"
        );
    }
    let offsets = store.partition_offsets(id, 0).await.expect("offsets");
    assert_eq!(offsets.max_timestamp, 400);
    assert_eq!(
        offsets.max_timestamp_chunk.map(|c| c.base_offset),
        Some(30),
        "the first chunk holding it"
    );
}

/// Every commit takes the next sequence; `last_commit_sequence` tracks it.
pub async fn commit_sequence_is_contiguous(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.sequence", 1).await;
    let mut previous = store.last_commit_sequence().await.expect("last sequence");
    for index in 0..5 {
        let write = chunk_write(&topic, 0, 0, vec![plain_batch(1, 0)]);
        let response = commit(
            store,
            commit_request(&format!("conformance-sequence-{index}"), vec![write]),
        )
        .await;
        assert_eq!(response.sequence, previous + 1);
        previous = response.sequence;
    }
    assert_eq!(
        store.last_commit_sequence().await.expect("last sequence"),
        previous
    );
}

// ---------- concurrency and restarts ----------

/// Many concurrent commits: every partition's offsets are unique and
/// contiguous, and sequences are unique.
pub async fn concurrent_commits_are_contiguous(
    store: Arc<dyn CatalogStore>,
    tasks: usize,
    commits_per_task: usize,
) {
    let topic = create_topic(store.as_ref(), "conformance.concurrent", 4).await;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = Arc::clone(&store);
        let topic = topic.clone();
        handles.push(tokio::spawn(async move {
            let mut results = Vec::new();
            for index in 0..commits_per_task {
                let first = u32::try_from((task + index) % 4).expect("small");
                let writes = vec![
                    chunk_write(&topic, first, 0, vec![plain_batch(3, 0)]),
                    chunk_write(
                        &topic,
                        (first + 1) % 4,
                        0,
                        vec![plain_batch(2, 0), plain_batch(1, 0)],
                    ),
                ];
                let request =
                    commit_request(&format!("conformance-concurrent-{task}-{index}"), writes);
                results.push(commit(store.as_ref(), request).await);
            }
            results
        }));
    }
    let mut sequences = Vec::new();
    let mut offsets: HashMap<u32, Vec<(i64, i64)>> = HashMap::new();
    for handle in handles {
        for response in handle.await.expect("task") {
            sequences.push(response.sequence);
            for chunk in &response.chunks {
                for (batch, size) in chunk.batches.iter().zip(if chunk.batches.len() == 1 {
                    vec![3]
                } else {
                    vec![2, 1]
                }) {
                    assert_eq!(batch.error_code, OK);
                    offsets
                        .entry(chunk.partition)
                        .or_default()
                        .push((batch.base_offset, size));
                }
            }
        }
    }
    sequences.sort_unstable();
    sequences.dedup();
    assert_eq!(
        sequences.len(),
        tasks * commits_per_task,
        "unique sequences"
    );
    for (partition, mut ranges) in offsets {
        ranges.sort_unstable();
        let mut next = 0;
        for (base, size) in ranges {
            assert_eq!(
                base, next,
                "partition {partition}: contiguous, unique offsets"
            );
            next += size;
        }
        assert_eq!(
            high_watermark(store.as_ref(), &topic, partition).await,
            next
        );
    }
}

/// Everything survives reopening the store: topics, offsets, stored commit
/// responses, producer windows, id allocation and the commit sequence.
/// `open` must open the same store each time; the suite drops each store
/// before opening the next.
pub async fn restart_persistence<F, Fut>(mut open: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Arc<dyn CatalogStore>>,
{
    let store = open().await;
    let topic = create_topic(store.as_ref(), "conformance.restart", 2).await;
    let producer = new_producer(store.as_ref()).await;
    let first_write = vec![chunk_write(
        &topic,
        0,
        0,
        vec![producer_batch(producer, 0, 4)],
    )];
    let first = commit(
        store.as_ref(),
        commit_request("conformance-restart-1", first_write.clone()),
    )
    .await;
    let second_write = vec![chunk_write(&topic, 1, 64, vec![plain_batch(2, 77)])];
    commit(
        store.as_ref(),
        commit_request("conformance-restart-2", second_write),
    )
    .await;
    let sequence = store.last_commit_sequence().await.expect("sequence");
    drop(store);

    let store = open().await;
    check_after_restart(store.as_ref(), &topic, producer, &first, sequence).await;
}

/// The second half of [`restart_persistence`], on the reopened store.
async fn check_after_restart(
    store: &dyn CatalogStore,
    topic: &Topic,
    producer: ProducerIdAndEpoch,
    first: &CommitSegmentResponse,
    sequence: u64,
) {
    let first_write = vec![chunk_write(
        topic,
        0,
        0,
        vec![producer_batch(producer, 0, 4)],
    )];
    let listed = store
        .list_topics(&["conformance.restart".to_string()])
        .await
        .expect("list");
    assert_eq!(listed, vec![topic.clone()], "the topic survives");
    assert_eq!(
        store.last_commit_sequence().await.expect("sequence"),
        sequence
    );
    assert_eq!(high_watermark(store, topic, 0).await, 4);
    assert_eq!(high_watermark(store, topic, 1).await, 2);
    let retry = commit(store, commit_request("conformance-restart-1", first_write)).await;
    assert_eq!(&retry, first, "the stored response survives");
    let duplicate = vec![chunk_write(
        topic,
        0,
        0,
        vec![producer_batch(producer, 0, 4)],
    )];
    let response = commit(store, commit_request("conformance-restart-3", duplicate)).await;
    assert_eq!(
        outcomes(&response.chunks[0]),
        [(DUPLICATE, 0)],
        "the producer window survives"
    );
    assert_eq!(response.sequence, sequence + 1, "sequences continue");
    let next = vec![chunk_write(
        topic,
        0,
        0,
        vec![producer_batch(producer, 4, 1)],
    )];
    let response = commit(store, commit_request("conformance-restart-4", next)).await;
    assert_eq!(outcomes(&response.chunks[0]), [(OK, 4)]);
    let another = new_producer(store).await;
    assert_ne!(
        another.producer_id, producer.producer_id,
        "ids stay unique across restarts"
    );
    let chunk = store
        .find_chunk_by_timestamp(topic_uuid(topic), 1, 70)
        .await
        .expect("find")
        .expect("a chunk");
    assert_eq!(
        (chunk.base_offset, chunk.position, chunk.max_timestamp),
        (0, 64, 77)
    );
}

// ---------- consumer groups ----------

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

/// A clock a test moves by hand, starting at 0.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// Moves the clock to `now_ms`.
    pub fn set(&self, now_ms: i64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Goal: producer state expires after `producer_id_expiration_ms`.
/// Method: produce, move `clock` past the expiration, produce again.
/// `store` must run on `clock` (at 0) with an expiration of 1,000 ms.
pub async fn producer_state_expires(store: &dyn CatalogStore, clock: &ManualClock) {
    let topic = create_topic(store, "expiry", 1).await;
    let producer = new_producer(store).await;
    let commit = |segment: &str, sequence| {
        let batch = producer_batch(producer, sequence, 1);
        commit_request(segment, vec![chunk_write(&topic, 0, 0, vec![batch])])
    };
    let code = |outcome: CommitOutcome| outcome.response.chunks[0].batches[0].error_code;
    assert_eq!(
        code(
            store
                .commit_segment(commit("e1", 0))
                .await
                .expect("commit a segment")
        ),
        0
    );
    clock.set(900);
    let live = code(
        store
            .commit_segment(commit("e2", 1))
            .await
            .expect("commit a segment"),
    );
    assert_eq!(live, 0, "still live");
    let id = topic_uuid(&topic);
    assert_eq!(
        store
            .describe_producers(id, 0)
            .await
            .expect("describe producers")
            .len(),
        1
    );
    clock.set(2_000);
    let expired = code(
        store
            .commit_segment(commit("e3", 2))
            .await
            .expect("commit a segment"),
    );
    assert_eq!(expired, i32::from(UNKNOWN_PRODUCER_ID));
    assert!(
        store
            .describe_producers(id, 0)
            .await
            .expect("describe producers")
            .is_empty()
    );
    // The producer is at epoch 0: a bump of an expired id.
    let fresh = bump(store, producer).await.expect("init producer id again");
    assert_ne!(
        fresh.producer_id, producer.producer_id,
        "an expired id is replaced"
    );
}

/// Goal: an exhausted epoch rotates to a new producer id (KIP-360).
/// Method: bump one producer until its epoch is exhausted.
pub async fn exhausted_epoch_takes_a_new_id(store: &dyn CatalogStore) {
    let first = new_producer(store).await;
    let mut current = first;
    while current.producer_id == first.producer_id {
        current = bump(store, current).await.expect("bump the epoch");
    }
    assert_eq!(current.producer_epoch, 0);
    assert_ne!(current.producer_id, first.producer_id);
}

// ---------- agents ----------

/// Registers `agent_id` (zone `zone`, port 9092).
pub async fn register(store: &dyn CatalogStore, agent_id: &str, zone: &str) -> AgentRecord {
    store
        .register_agent(AgentRegistration {
            agent_id: agent_id.to_string(),
            host: format!("{agent_id}.example"),
            port: 9092,
            zone: zone.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("registering {agent_id}: {e}"))
}

async fn agent(store: &dyn CatalogStore, agent_id: &str) -> Option<AgentRecord> {
    store
        .list_agents()
        .await
        .expect("list agents")
        .into_iter()
        .find(|record| record.agent_id == agent_id)
}

/// Goal: every registration gets a new epoch, greater than every earlier
/// one of any agent; a fence applies only to the current epoch and is
/// idempotent; the listing shows each agent's latest registration.
/// Method: register two agents, re-register one, fence stale and current
/// epochs, list after each step.
pub async fn agent_registry(store: &dyn CatalogStore) {
    let a1 = register(store, "conformance-registry-a", "a").await;
    let b = register(store, "conformance-registry-b", "b").await;
    let a2 = register(store, "conformance-registry-a", "c").await;
    assert!(
        a1.epoch > 0,
        "epoch 0 means unfenced and is never handed out"
    );
    assert!(
        b.epoch > a1.epoch && a2.epoch > b.epoch,
        "epochs increase globally"
    );
    assert!(!a2.fenced && a2.zone == "c" && a2.port == 9092);
    let listed: Vec<AgentRecord> = store
        .list_agents()
        .await
        .expect("list agents")
        .into_iter()
        .filter(|record| record.agent_id.starts_with("conformance-registry-"))
        .collect();
    assert_eq!(
        listed,
        vec![a2.clone(), b.clone()],
        "latest registrations, by id"
    );

    assert!(
        !store
            .fence_agent(&a2.agent_id, a1.epoch)
            .await
            .expect("fence"),
        "a stale epoch fences nothing"
    );
    assert_eq!(agent(store, &a2.agent_id).await, Some(a2.clone()));
    assert!(
        store
            .fence_agent(&a2.agent_id, a2.epoch)
            .await
            .expect("fence")
    );
    assert!(
        store
            .fence_agent(&a2.agent_id, a2.epoch)
            .await
            .expect("fence again"),
        "fencing is idempotent"
    );
    let fenced = agent(store, &a2.agent_id).await.expect("still listed");
    assert!(fenced.fenced && fenced.epoch == a2.epoch);
    assert!(
        !store
            .fence_agent("conformance-registry-none", 1)
            .await
            .expect("fence")
    );
    let a3 = register(store, &a2.agent_id, "a").await;
    assert!(
        a3.epoch > a2.epoch && !a3.fenced,
        "registering again unfences"
    );
    assert_eq!(agent(store, &b.agent_id).await, Some(b), "others untouched");
}

fn is_agent_fenced(result: &Result<CommitOutcome, Error>) -> bool {
    matches!(result, Err(Error::AgentFenced { .. }))
}

/// Goal: a commit with `agent_epoch > 0` succeeds only from the agent's
/// current, unfenced registration, checked in the commit's transaction;
/// a rejected commit leaves no trace; a retry of an already committed
/// segment still gets its stored answer; epoch 0 stays unfenced.
/// Method: commit under each kind of epoch and check results and the high
/// watermark.
pub async fn commit_fencing(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.fencing", 1).await;
    let agent_id = "conformance-fencing";
    let request = |segment_id: &str, epoch: u64| CommitSegmentRequest {
        agent_id: agent_id.to_string(),
        agent_epoch: epoch,
        ..commit_request(
            segment_id,
            vec![chunk_write(&topic, 0, 0, vec![plain_batch(1, 1)])],
        )
    };
    let unknown = store.commit_segment(request("fencing-unknown", 7)).await;
    assert!(
        is_agent_fenced(&unknown),
        "an unregistered agent: {unknown:?}"
    );

    let first = register(store, agent_id, "a").await;
    let committed = commit(store, request("fencing-1", first.epoch)).await;
    assert_eq!(committed.chunks[0].batches[0].base_offset, 0);
    let wrong = store
        .commit_segment(request("fencing-wrong", first.epoch + 1_000))
        .await;
    assert!(
        is_agent_fenced(&wrong),
        "an epoch never handed out: {wrong:?}"
    );
    commit(store, request("fencing-dev", 0)).await;
    assert_eq!(
        high_watermark(store, &topic, 0).await,
        2,
        "epoch 0 is unfenced"
    );

    assert!(
        store
            .fence_agent(agent_id, first.epoch)
            .await
            .expect("fence")
    );
    let zombie = store
        .commit_segment(request("fencing-zombie", first.epoch))
        .await;
    assert!(is_agent_fenced(&zombie), "a fenced agent: {zombie:?}");
    if let Err(error) = &zombie {
        assert_eq!(error.kind(), crate::ErrorKind::Fenced);
    }
    assert_eq!(high_watermark(store, &topic, 0).await, 2, "no trace of it");
    let retry = commit(store, request("fencing-1", first.epoch)).await;
    assert_eq!(
        retry, committed,
        "a retry of a committed segment is answered first"
    );

    let second = register(store, agent_id, "a").await;
    let stale = store
        .commit_segment(request("fencing-stale", first.epoch))
        .await;
    assert!(
        is_agent_fenced(&stale),
        "the old epoch after re-registering: {stale:?}"
    );
    let fresh = commit(store, request("fencing-2", second.epoch)).await;
    assert_eq!(fresh.chunks[0].batches[0].base_offset, 2);
    assert_eq!(high_watermark(store, &topic, 0).await, 3);
}
