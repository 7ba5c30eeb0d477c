//! Conformance of idempotent producers: sequence and epoch rules, the
//! duplicate window, InitProducerId, expiry and exhausted epochs.

use strata_catalog_api::proto::{BatchMeta, InitProducerIdRequest, Topic};

use super::{
    DUPLICATE, FENCED_EPOCH, ManualClock, OK, OUT_OF_ORDER, UNKNOWN_PRODUCER, bump, chunk_write,
    commit, commit_request, create_topic, high_watermark, new_producer, outcomes, plain_batch,
    producer_batch, topic_uuid,
};
use crate::Error;
use crate::error_code::UNKNOWN_PRODUCER_ID;
use crate::store::{CatalogStore, CommitOutcome, ProducerIdAndEpoch};

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
