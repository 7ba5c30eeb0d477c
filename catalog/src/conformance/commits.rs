//! Conformance of segment commits and the index: contiguous offsets,
//! atomic and idempotent commits, lookups by offset and timestamp, the
//! commit sequence, concurrent commits and restarts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use strata_catalog_api::proto::{CommitSegmentResponse, Topic};
use uuid::Uuid;

use super::{
    DUPLICATE, OK, UNKNOWN_PARTITION, chunk_write, commit, commit_request, create_topic,
    high_watermark, new_producer, outcomes, plain_batch, producer_batch, topic_uuid,
};
use crate::Error;
use crate::store::{CatalogStore, ProducerIdAndEpoch};

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
