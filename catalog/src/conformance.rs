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

mod agents;
mod commits;
mod compaction;
mod groups;
mod lease;
mod producers;
mod scram;
mod topics;
mod transactions;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use strata_catalog_api::proto::{
    BatchMeta, ChunkResult, ChunkWrite, CommitSegmentRequest, CommitSegmentResponse,
    InitProducerIdRequest, Topic,
};
use uuid::Uuid;

pub use self::agents::{agent_registry, commit_fencing, register};
pub use self::commits::{
    commit_sequence_is_contiguous, concurrent_commits_are_contiguous,
    failed_commit_leaves_no_trace, lookup_by_offset_and_timestamp, offsets_are_contiguous,
    restart_persistence, retried_commit_is_idempotent,
};
pub use self::compaction::{
    dead_objects_lifecycle, delete_records_moves_log_start,
    objects_past_the_max_commit_age_are_refused, replace_chunks_swaps_atomically,
    replace_conflicts_with_retention,
};
pub use self::groups::{
    committed, consumer_group_record, consumer_group_records, group_offsets, group_record,
    group_records, group_restart_persistence, offset_commit_throughput,
};
pub use self::lease::lease_fencing;
pub use self::producers::{
    duplicate_window_holds_five_batches, exhausted_epoch_takes_a_new_id, idempotent_producer_rules,
    init_producer_id_rules, producer_batches_in_one_commit, producer_state_expires,
    sequence_wraps_around, transactional_init_producer_id,
};
pub use self::scram::scram_credentials;
pub use self::topics::topic_crud;
pub use self::transactions::{
    transaction_epoch_bumps_and_admin_aborts, transaction_fencing_and_interleaving,
    transaction_markers_and_last_stable_offset, transaction_timeout_aborts,
    transactional_batches_are_verified, transactional_offsets,
};
use crate::Error;
use crate::error_code::{
    DUPLICATE_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, OUT_OF_ORDER_SEQUENCE_NUMBER,
    UNKNOWN_PRODUCER_ID, UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::store::{CatalogStore, Clock, NewTopic, ProducerIdAndEpoch};

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
    transactional_batches_are_verified(store).await;
    transaction_epoch_bumps_and_admin_aborts(store).await;
    scram_credentials(store).await;
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
