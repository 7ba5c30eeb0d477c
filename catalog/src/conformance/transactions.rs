//! Conformance tests of the transaction coordinator: markers, the last
//! stable offset, aborted ranges, state transitions, fencing, pending
//! offsets and timeouts.

use strata_catalog_api::proto::{
    AbortedTransaction, BatchMeta, ChunkFormat, CommitEvent, InitProducerIdRequest, Topic,
    TxnProducer,
};

use super::{ManualClock, chunk_write, commit_request, create_topic, plain_batch, topic_uuid};
use crate::Error;
use crate::store::{CatalogStore, CommittedOffset, TxnOutcome, TxnRequest};

async fn init(
    store: &dyn CatalogStore,
    tid: &str,
    timeout_ms: i32,
) -> (TxnProducer, Option<CommitEvent>) {
    let outcome = store
        .init_producer_id(InitProducerIdRequest {
            transactional_id: tid.to_string(),
            transaction_timeout_ms: timeout_ms,
            producer_id: -1,
            producer_epoch: -1,
        })
        .await
        .expect("InitProducerId");
    let producer = TxnProducer {
        transactional_id: tid.to_string(),
        producer_id: outcome.granted.producer_id,
        producer_epoch: outcome.granted.producer_epoch,
    };
    (producer, outcome.event)
}

async fn call(
    store: &dyn CatalogStore,
    producer: &TxnProducer,
    request: TxnRequest,
) -> Result<TxnOutcome, Error> {
    store.transaction(producer.clone(), request).await
}

async fn add(store: &dyn CatalogStore, producer: &TxnProducer, topic: &Topic, partitions: &[u32]) {
    let id = topic_uuid(topic);
    let request = TxnRequest::AddPartitions(partitions.iter().map(|p| (id, *p)).collect());
    let outcome = call(store, producer, request).await.expect("AddPartitions");
    assert!(
        outcome.partition_codes.iter().all(|c| *c == 0),
        "{outcome:?}"
    );
}

async fn end(store: &dyn CatalogStore, producer: &TxnProducer, commit: bool) -> CommitEvent {
    call(
        store,
        producer,
        TxnRequest::End {
            commit,
            bump_epoch: false,
        },
    )
    .await
    .expect("EndTxn")
    .event
    .expect("EndTxn of an open transaction publishes markers")
}

/// A transactional batch of `producer` with `count` records.
fn txn_batch(producer: &TxnProducer, base_sequence: i32, count: u32) -> BatchMeta {
    BatchMeta {
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        base_sequence,
        transactional: true,
        ..plain_batch(count, 1_000)
    }
}

async fn append(
    store: &dyn CatalogStore,
    segment: &str,
    topic: &Topic,
    partition: u32,
    batch: BatchMeta,
) -> i64 {
    let request = commit_request(segment, vec![chunk_write(topic, partition, 0, vec![batch])]);
    let outcome = store.commit_segment(request).await.expect("commit");
    let result = &outcome.response.chunks[0].batches[0];
    assert_eq!(result.error_code, 0, "{result:?}");
    result.base_offset
}

/// (high watermark, last stable offset)
async fn offsets(store: &dyn CatalogStore, topic: &Topic, partition: u32) -> (i64, i64) {
    let o = store
        .partition_offsets(topic_uuid(topic), partition)
        .await
        .expect("offsets");
    (o.high_watermark, o.last_stable_offset)
}

/// Goal: EndTxn appends one marker chunk per partition of the transaction,
/// the LSO holds at the first transactional batch while the transaction is
/// open and moves past the marker when it ends, aborts record their range,
/// and EndTxn follows Kafka's state machine (a retry succeeds, the
/// opposite outcome or no transaction is INVALID_TXN_STATE).
pub async fn transaction_markers_and_last_stable_offset(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance-txn-markers", 2).await;
    let (producer, event) = init(store, "conformance-markers", 60_000).await;
    assert!(event.is_none());
    append(store, "txn-m-0", &topic, 0, plain_batch(1, 1_000)).await;
    add(store, &producer, &topic, &[0, 1]).await;
    assert_eq!(
        append(store, "txn-m-1", &topic, 0, txn_batch(&producer, 0, 2)).await,
        1
    );
    assert_eq!(
        offsets(store, &topic, 0).await,
        (3, 1),
        "LSO holds at the open transaction"
    );
    append(store, "txn-m-2", &topic, 0, plain_batch(1, 1_000)).await;
    assert_eq!(offsets(store, &topic, 0).await, (4, 1));
    assert_eq!(offsets(store, &topic, 1).await, (0, 0));

    let event = end(store, &producer, true).await;
    assert_eq!(event.chunks.len(), 2, "one marker per partition: {event:?}");
    let marker = &event.chunks[0];
    assert_eq!(
        (marker.partition, marker.base_offset, marker.end_offset),
        (0, 4, 5)
    );
    assert_eq!(marker.format, ChunkFormat::Marker as i32);
    assert!(marker.object_key.is_empty());
    let fields = marker.marker.expect("marker fields");
    assert!(fields.commit);
    assert_eq!(fields.producer_id, producer.producer_id);
    assert_eq!(offsets(store, &topic, 0).await, (5, 5));
    assert_eq!(offsets(store, &topic, 1).await, (1, 1));
    let lsos: Vec<i64> = event.offsets.iter().map(|o| o.last_stable_offset).collect();
    assert_eq!(lsos, vec![5, 1]);
    let stored = store
        .lookup_chunks(topic_uuid(&topic), 0, 4, 10)
        .await
        .expect("lookup");
    assert_eq!(
        stored.chunks,
        vec![marker.clone()],
        "markers are stored as sent"
    );

    // A retried commit succeeds without markers; an abort now is invalid.
    let retried = call(
        store,
        &producer,
        TxnRequest::End {
            commit: true,
            bump_epoch: false,
        },
    )
    .await;
    assert_eq!(retried.expect("retry").event, None);
    let opposite = call(
        store,
        &producer,
        TxnRequest::End {
            commit: false,
            bump_epoch: false,
        },
    )
    .await;
    assert!(
        matches!(opposite, Err(Error::InvalidTxnState { .. })),
        "{opposite:?}"
    );

    // An aborted transaction records its range in the partitions it wrote.
    add(store, &producer, &topic, &[0, 1]).await;
    assert_eq!(
        append(store, "txn-m-3", &topic, 0, txn_batch(&producer, 2, 3)).await,
        5
    );
    let event = end(store, &producer, false).await;
    assert!(!event.chunks[0].marker.expect("marker").commit);
    let id = topic_uuid(&topic);
    let aborted = store
        .aborted_transactions(id, 0, 0, 100)
        .await
        .expect("aborted");
    let expected = AbortedTransaction {
        producer_id: producer.producer_id,
        first_offset: 5,
        last_offset: 8,
    };
    assert_eq!(aborted, vec![expected]);
    assert!(
        store
            .aborted_transactions(id, 0, 9, 100)
            .await
            .expect("after")
            .is_empty()
    );
    assert!(
        store
            .aborted_transactions(id, 0, 0, 5)
            .await
            .expect("before")
            .is_empty()
    );
    assert!(
        store
            .aborted_transactions(id, 1, 0, 100)
            .await
            .expect("p1")
            .is_empty()
    );
    assert_eq!(offsets(store, &topic, 0).await, (9, 9));
    let none_open = call(
        store,
        &producer,
        TxnRequest::End {
            commit: true,
            bump_epoch: false,
        },
    )
    .await;
    assert!(
        matches!(none_open, Err(Error::InvalidTxnState { .. })),
        "{none_open:?}"
    );
}

/// Goal: two producers' transactions in one partition keep the LSO at the
/// earliest still open; a stale epoch is fenced, another producer id is
/// not mapped; a new instance aborts its predecessor's open transaction.
pub async fn transaction_fencing_and_interleaving(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance-txn-fencing", 1).await;
    let (first, _) = init(store, "conformance-fence-a", 60_000).await;
    let (other, _) = init(store, "conformance-fence-b", 60_000).await;
    add(store, &first, &topic, &[0]).await;
    add(store, &other, &topic, &[0]).await;
    append(store, "txn-f-0", &topic, 0, txn_batch(&first, 0, 1)).await;
    append(store, "txn-f-1", &topic, 0, txn_batch(&other, 0, 1)).await;
    assert_eq!(offsets(store, &topic, 0).await, (2, 0));
    end(store, &other, true).await;
    assert_eq!(
        offsets(store, &topic, 0).await,
        (3, 0),
        "the first is still open"
    );

    let wrong_id = TxnProducer {
        producer_id: other.producer_id,
        ..first.clone()
    };
    let unmapped = call(
        store,
        &wrong_id,
        TxnRequest::End {
            commit: true,
            bump_epoch: false,
        },
    )
    .await;
    assert!(
        matches!(unmapped, Err(Error::InvalidProducerIdMapping { .. })),
        "{unmapped:?}"
    );

    // A new instance of the first aborts its open transaction.
    let (second, event) = init(store, "conformance-fence-a", 60_000).await;
    assert_eq!(second.producer_epoch, first.producer_epoch + 1);
    let event = event.expect("the open transaction is aborted");
    let marker = event.chunks[0].marker.expect("marker");
    assert!(!marker.commit);
    assert_eq!(marker.producer_epoch, second.producer_epoch);
    assert_eq!(offsets(store, &topic, 0).await, (4, 4));
    let id = topic_uuid(&topic);
    let aborted = store
        .aborted_transactions(id, 0, 0, 10)
        .await
        .expect("aborted");
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].first_offset, aborted[0].last_offset), (0, 3));
    let zombie = call(store, &first, TxnRequest::AddPartitions(vec![(id, 0)])).await;
    assert!(
        matches!(zombie, Err(Error::ProducerFenced { .. })),
        "{zombie:?}"
    );
    // The zombie's data is fenced by the bumped epoch too.
    let request = commit_request(
        "txn-f-2",
        vec![chunk_write(&topic, 0, 0, vec![txn_batch(&first, 1, 1)])],
    );
    let outcome = store.commit_segment(request).await.expect("commit");
    assert_ne!(outcome.response.chunks[0].batches[0].error_code, 0);
    // Unknown partitions are refused one by one and add nothing.
    let unknown = call(
        store,
        &second,
        TxnRequest::AddPartitions(vec![(id, 0), (id, 7)]),
    )
    .await
    .expect("AddPartitions");
    assert_eq!(unknown.partition_codes, vec![0, 3]);
    let nothing = call(
        store,
        &second,
        TxnRequest::End {
            commit: true,
            bump_epoch: false,
        },
    )
    .await;
    assert!(
        matches!(nothing, Err(Error::InvalidTxnState { .. })),
        "{nothing:?}"
    );
}

/// Goal: TxnOffsetCommit's offsets reach the group only when the
/// transaction commits, and vanish when it aborts.
pub async fn transactional_offsets(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance-txn-offsets", 1).await;
    let id = topic_uuid(&topic);
    let (producer, _) = init(store, "conformance-offsets", 60_000).await;
    let offset = |value: i64| CommittedOffset {
        topic_id: id,
        partition: 0,
        offset: value,
        leader_epoch: -1,
        metadata: "m".to_string(),
        commit_timestamp_ms: -1,
    };
    let group = "conformance-txn-group".to_string();
    let commit_offsets = |value: i64| TxnRequest::CommitOffsets {
        group_id: group.clone(),
        offsets: vec![offset(value)],
        implicit_add: false,
    };
    let early = call(store, &producer, commit_offsets(5)).await;
    assert!(
        matches!(early, Err(Error::InvalidTxnState { .. })),
        "{early:?}"
    );
    let add_offsets = TxnRequest::AddOffsets {
        group_id: group.clone(),
    };
    call(store, &producer, add_offsets.clone())
        .await
        .expect("AddOffsets");
    call(store, &producer, commit_offsets(5))
        .await
        .expect("TxnOffsetCommit");
    assert!(
        store.fetch_offsets(&group).await.expect("fetch").is_empty(),
        "pending"
    );
    end(store, &producer, true).await;
    let committed = store.fetch_offsets(&group).await.expect("fetch");
    assert_eq!(
        committed.iter().map(|o| o.offset).collect::<Vec<_>>(),
        vec![5]
    );

    call(store, &producer, add_offsets)
        .await
        .expect("AddOffsets");
    call(store, &producer, commit_offsets(9))
        .await
        .expect("TxnOffsetCommit");
    end(store, &producer, false).await;
    let committed = store.fetch_offsets(&group).await.expect("fetch");
    assert_eq!(
        committed.iter().map(|o| o.offset).collect::<Vec<_>>(),
        vec![5],
        "aborted"
    );
}

/// Goal: a transaction older than its timeout is aborted by
/// `abort_expired_transactions` (markers, range, LSO) with the producer's
/// epoch bumped, so the timed-out producer is fenced. The store's clock
/// must be `clock`.
pub async fn transaction_timeout_aborts(store: &dyn CatalogStore, clock: &ManualClock) {
    clock.set(1_000_000);
    let topic = create_topic(store, "conformance-txn-timeout", 1).await;
    let (producer, _) = init(store, "conformance-timeout", 100).await;
    add(store, &producer, &topic, &[0]).await;
    append(store, "txn-t-0", &topic, 0, txn_batch(&producer, 0, 2)).await;
    clock.set(1_000_100);
    let early = store.abort_expired_transactions().await.expect("sweep");
    assert!(
        early.transactional_ids.is_empty() && early.event.is_none(),
        "{early:?}"
    );
    clock.set(1_000_101);
    let aborts = store.abort_expired_transactions().await.expect("sweep");
    assert_eq!(
        aborts.transactional_ids,
        vec!["conformance-timeout".to_string()]
    );
    let event = aborts.event.expect("markers");
    let marker = event.chunks[0].marker.expect("marker");
    assert!(!marker.commit);
    assert_eq!(marker.producer_epoch, producer.producer_epoch + 1);
    assert_eq!(offsets(store, &topic, 0).await, (3, 3));
    let aborted = store
        .aborted_transactions(topic_uuid(&topic), 0, 0, 10)
        .await
        .expect("aborted");
    assert_eq!(aborted.len(), 1);
    let late = call(
        store,
        &producer,
        TxnRequest::End {
            commit: true,
            bump_epoch: false,
        },
    )
    .await;
    assert!(
        matches!(late, Err(Error::ProducerFenced { .. })),
        "{late:?}"
    );
    let again = store.abort_expired_transactions().await.expect("sweep");
    assert!(again.transactional_ids.is_empty());
    // The fenced producer's next instance starts cleanly.
    let (next, event) = init(store, "conformance-timeout", 100).await;
    assert!(event.is_none());
    assert_eq!(next.producer_epoch, producer.producer_epoch + 2);
}

/// The error code of a lone batch's commit.
async fn append_code(
    store: &dyn CatalogStore,
    segment: &str,
    topic: &Topic,
    partition: u32,
    batch: BatchMeta,
) -> i32 {
    let request = commit_request(segment, vec![chunk_write(topic, partition, 0, vec![batch])]);
    let outcome = store.commit_segment(request).await.expect("commit");
    outcome.response.chunks[0].batches[0].error_code
}

/// Goal: KIP-890 verification inside the offset-assigning commit: a
/// transactional batch is appended only to a partition of its producer's
/// open transaction at the current epoch. A partition never added, a
/// transaction already ended, another epoch or a producer without a
/// transactional id are refused, and a refused batch opens no transaction
/// (the LSO follows the high watermark).
pub async fn transactional_batches_are_verified(store: &dyn CatalogStore) {
    use crate::error_code::{INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE};
    let topic = create_topic(store, "conformance-txn-verify", 2).await;
    let (producer, _) = init(store, "conformance-verify", 60_000).await;
    let never_begun = append_code(store, "txn-v-0", &topic, 0, txn_batch(&producer, 0, 1)).await;
    assert_eq!(never_begun, i32::from(INVALID_TXN_STATE));
    add(store, &producer, &topic, &[0]).await;
    let not_added = append_code(store, "txn-v-1", &topic, 1, txn_batch(&producer, 0, 1)).await;
    assert_eq!(not_added, i32::from(INVALID_TXN_STATE));
    assert_eq!(offsets(store, &topic, 1).await, (0, 0));
    append(store, "txn-v-2", &topic, 1, plain_batch(1, 1_000)).await;
    assert_eq!(
        offsets(store, &topic, 1).await,
        (1, 1),
        "no refused batch holds the LSO"
    );
    let other_epoch = TxnProducer {
        producer_epoch: producer.producer_epoch + 1,
        ..producer.clone()
    };
    let code = append_code(store, "txn-v-3", &topic, 0, txn_batch(&other_epoch, 0, 1)).await;
    assert_eq!(code, i32::from(INVALID_PRODUCER_EPOCH));
    assert_eq!(
        append(store, "txn-v-4", &topic, 0, txn_batch(&producer, 0, 1)).await,
        0
    );
    end(store, &producer, true).await;
    assert_eq!(offsets(store, &topic, 0).await, (2, 2));
    let late = append_code(store, "txn-v-5", &topic, 0, txn_batch(&producer, 1, 1)).await;
    assert_eq!(late, i32::from(INVALID_TXN_STATE), "the transaction ended");
    assert_eq!(offsets(store, &topic, 0).await, (2, 2));
    // An idempotent producer (no transactional id) cannot write
    // transactional batches at all.
    let idempotent = store
        .init_producer_id(InitProducerIdRequest {
            transactional_id: String::new(),
            transaction_timeout_ms: 0,
            producer_id: -1,
            producer_epoch: -1,
        })
        .await
        .expect("InitProducerId")
        .granted;
    let stray = TxnProducer {
        transactional_id: String::new(),
        producer_id: idempotent.producer_id,
        producer_epoch: idempotent.producer_epoch,
    };
    let code = append_code(store, "txn-v-6", &topic, 1, txn_batch(&stray, 0, 1)).await;
    assert_eq!(code, i32::from(INVALID_TXN_STATE));
    assert_eq!(offsets(store, &topic, 1).await, (1, 1));
}

/// Goal: KIP-890 part 2 and the admin paths. EndTxn with `bump_epoch`
/// answers the next epoch and fences the ended transaction's epoch (a
/// delayed batch at the old epoch is refused), a retry of it at the old
/// epoch gets the same answer; `VerifyPartitions` adds nothing; an
/// operator's abort ends an open transaction whose producer is gone and
/// fences it; WriteTxnMarkers ends the producer's open transaction.
pub async fn transaction_epoch_bumps_and_admin_aborts(store: &dyn CatalogStore) {
    use crate::error_code::{INVALID_PRODUCER_EPOCH, INVALID_TXN_STATE};
    let topic = create_topic(store, "conformance-txn-bump", 2).await;
    let id = topic_uuid(&topic);
    let (producer, _) = init(store, "conformance-bump", 60_000).await;
    add(store, &producer, &topic, &[0]).await;
    let verified = call(
        store,
        &producer,
        TxnRequest::VerifyPartitions(vec![(id, 0), (id, 1)]),
    )
    .await
    .expect("verify");
    assert_eq!(
        verified.partition_codes,
        vec![0, INVALID_TXN_STATE],
        "verify adds nothing"
    );
    append(store, "txn-b-0", &topic, 0, txn_batch(&producer, 0, 1)).await;
    let end_bumped = TxnRequest::End {
        commit: true,
        bump_epoch: true,
    };
    let ended = call(store, &producer, end_bumped.clone())
        .await
        .expect("EndTxn v5");
    let next = ended.producer.expect("the next producer");
    assert_eq!(next.producer_id, producer.producer_id);
    assert_eq!(next.producer_epoch, producer.producer_epoch + 1);
    let marker = ended.event.expect("markers").chunks[0]
        .marker
        .expect("marker");
    assert_eq!(marker.producer_epoch, next.producer_epoch);
    let retried = call(store, &producer, end_bumped)
        .await
        .expect("a retry at the old epoch");
    assert_eq!(retried.producer, Some(next));
    let delayed = append_code(store, "txn-b-1", &topic, 0, txn_batch(&producer, 1, 1)).await;
    assert_eq!(delayed, i32::from(INVALID_PRODUCER_EPOCH));
    assert_eq!(offsets(store, &topic, 0).await, (2, 2));

    // The next transaction runs at the new epoch.
    let producer = TxnProducer {
        producer_epoch: next.producer_epoch,
        ..producer
    };
    add(store, &producer, &topic, &[0, 1]).await;
    append(store, "txn-b-2", &topic, 1, txn_batch(&producer, 0, 1)).await;
    assert_eq!(offsets(store, &topic, 1).await, (1, 0));
    let listed = store.list_transactions(100).await.expect("list");
    let mine = listed
        .iter()
        .find(|s| s.transactional_id == "conformance-bump")
        .expect("listed");
    assert_eq!(mine.state, "Ongoing");
    let (summary, partitions) = store
        .describe_transaction("conformance-bump")
        .await
        .expect("describe")
        .expect("known");
    assert_eq!(summary.producer_epoch, producer.producer_epoch);
    assert_eq!(partitions, vec![(id, 0), (id, 1)]);
    assert!(
        store
            .describe_transaction("conformance-unknown")
            .await
            .expect("describe")
            .is_none()
    );

    // The producer is gone: an operator aborts.
    let admin = TxnProducer {
        transactional_id: "conformance-bump".to_string(),
        producer_id: -1,
        producer_epoch: -1,
    };
    let aborted = call(store, &admin, TxnRequest::AdminAbort)
        .await
        .expect("admin abort");
    assert_eq!(aborted.event.expect("markers").chunks.len(), 2);
    assert_eq!(offsets(store, &topic, 1).await, (2, 2));
    let again = call(store, &admin, TxnRequest::AdminAbort).await;
    assert!(
        matches!(again, Err(Error::InvalidTxnState { .. })),
        "{again:?}"
    );
    let fenced = call(store, &producer, TxnRequest::AddPartitions(vec![(id, 0)])).await;
    assert!(
        matches!(fenced, Err(Error::ProducerFenced { .. })),
        "{fenced:?}"
    );
    let unknown = TxnProducer {
        transactional_id: "conformance-unknown".to_string(),
        ..admin
    };
    let unknown = call(store, &unknown, TxnRequest::AdminAbort).await;
    assert!(
        matches!(unknown, Err(Error::TransactionalIdNotFound { .. })),
        "{unknown:?}"
    );

    // WriteTxnMarkers (kafka-transactions.sh abort) names the producer.
    let current = aborted.producer.expect("bumped");
    let producer = TxnProducer {
        producer_epoch: current.producer_epoch,
        ..producer
    };
    add(store, &producer, &topic, &[1]).await;
    append(store, "txn-b-3", &topic, 1, txn_batch(&producer, 0, 1)).await;
    assert_eq!(offsets(store, &topic, 1).await, (3, 2));
    let by_producer = TxnProducer {
        transactional_id: String::new(),
        ..producer.clone()
    };
    let written = call(
        store,
        &by_producer,
        TxnRequest::WriteMarkers {
            commit: false,
            partitions: vec![(id, 1)],
        },
    )
    .await
    .expect("WriteTxnMarkers");
    assert_eq!(written.partition_codes, vec![0]);
    assert_eq!(offsets(store, &topic, 1).await, (4, 4));
    let aborted = store
        .aborted_transactions(id, 1, 0, 10)
        .await
        .expect("aborted");
    assert_eq!(aborted.len(), 2);
}
