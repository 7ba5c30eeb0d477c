//! Conformance of compaction swaps, DeleteRecords and dead objects.

use strata_catalog_api::proto::{
    Chunk, ChunkFormat, ChunkRef, CommitSegmentRequest, PartitionRef, ReplaceChunksRequest, Topic,
};
use uuid::Uuid;

use super::{
    chunk_write, commit, commit_request, create_topic, new_producer, plain_batch, producer_batch,
    topic_uuid,
};
use crate::Error;
use crate::store::{CatalogStore, DeadObject};

/// The object key `commit_request` gives segment `segment_id`.
fn object(segment_id: &str) -> String {
    format!("segments/00/{segment_id}.seg")
}

/// Commits one batch of `count` records with `max_timestamp` to each of
/// `partitions` in segment `segment_id`.
async fn commit_batches(
    store: &dyn CatalogStore,
    topic: &Topic,
    segment_id: &str,
    partitions: &[u32],
    count: u32,
    max_timestamp: i64,
) {
    let writes = partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let position = u64::try_from(i).expect("few partitions") * 10_000;
            chunk_write(topic, *p, position, vec![plain_batch(count, max_timestamp)])
        })
        .collect();
    commit(store, commit_request(segment_id, writes)).await;
}

/// A swap of `expected` (base, end, segment id) for Parquet file `key`.
fn swap(
    topic: &Topic,
    partition: u32,
    expected: &[(i64, i64, &str)],
    key: &str,
) -> ReplaceChunksRequest {
    let base = expected.first().map_or(0, |e| e.0);
    let end = expected.last().map_or(0, |e| e.1);
    ReplaceChunksRequest {
        topic_id: topic.topic_id.clone(),
        object_created_ms: 0,
        partition,
        expected: expected
            .iter()
            .map(|(b, e, segment)| ChunkRef {
                base_offset: *b,
                end_offset: *e,
                object_key: object(segment),
            })
            .collect(),
        replacement: Some(Chunk {
            base_offset: base,
            end_offset: end,
            object_key: key.to_string(),
            object_size: 4_096,
            position: 0,
            length: 4_096,
            batch_count: u32::try_from(expected.len()).expect("few chunks"),
            max_timestamp: -1,
            format: ChunkFormat::Parquet.into(),
            ..Chunk::default()
        }),
    }
}

async fn dead(store: &dyn CatalogStore) -> Vec<DeadObject> {
    store
        .list_dead_objects(i64::MAX, 10_000)
        .await
        .expect("list dead objects")
}

async fn is_dead(store: &dyn CatalogStore, key: &str) -> bool {
    dead(store).await.iter().any(|d| d.object_key == key)
}

fn spans(chunks: &[Chunk]) -> Vec<(i64, i64, String)> {
    chunks
        .iter()
        .map(|c| (c.base_offset, c.end_offset, c.object_key.clone()))
        .collect()
}

/// Goal: ReplaceChunks swaps a contiguous run of chunks for one Parquet
/// chunk atomically, keeps offsets and timestamp lookups, makes objects
/// left without chunks dead, answers a replay with success, and refuses
/// (as a conflict, changing nothing) a swap whose expected chunks are not
/// the ones in the index. Method: four segments on partition 0 (the first
/// shared with partition 1), swap the first three, then look up, replay,
/// and try conflicting swaps.
pub async fn replace_chunks_swaps_atomically(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.swap", 2).await;
    let id = topic_uuid(&topic);
    commit_batches(store, &topic, "swap-1", &[0, 1], 2, 100).await;
    commit_batches(store, &topic, "swap-2", &[0], 3, 300).await;
    commit_batches(store, &topic, "swap-3", &[0], 1, 200).await;
    commit_batches(store, &topic, "swap-4", &[0], 2, 250).await;
    let request = swap(
        &topic,
        0,
        &[(0, 2, "swap-1"), (2, 5, "swap-2"), (5, 6, "swap-3")],
        "parquet/swap/0/0-5.parquet",
    );
    let before = store.last_commit_sequence().await.expect("sequence");
    let outcome = store
        .replace_chunks(request.clone())
        .await
        .expect("replace chunks");
    assert!(!outcome.conflict, "the expected chunks are in the index");
    assert_eq!(
        outcome.sequence,
        before + 1,
        "a swap takes the next sequence"
    );
    let event = outcome.event.expect("a swap publishes an event");
    assert_eq!(event.sequence, outcome.sequence);
    assert_eq!(
        event.invalidated,
        [PartitionRef {
            topic_id: topic.topic_id.clone(),
            partition: 0
        }]
    );
    assert_eq!(
        event
            .offsets
            .iter()
            .map(|o| (o.log_start_offset, o.high_watermark))
            .collect::<Vec<_>>(),
        [(0, 8)],
        "offsets do not change"
    );

    let lookup = store.lookup_chunks(id, 0, 3, 10).await.expect("lookup");
    assert_eq!(
        spans(&lookup.chunks),
        [
            (0, 6, "parquet/swap/0/0-5.parquet".to_string()),
            (6, 8, object("swap-4"))
        ],
        "readers find the Parquet chunk"
    );
    assert_eq!((lookup.log_start_offset, lookup.high_watermark), (0, 8));
    let parquet = &lookup.chunks[0];
    assert_eq!(parquet.format, i32::from(ChunkFormat::Parquet));
    assert_eq!(parquet.max_timestamp, 300, "the replaced chunks' greatest");
    assert_eq!((parquet.position, parquet.length), (0, 4_096));
    assert_eq!(lookup.chunks[1].format, i32::from(ChunkFormat::Segment));
    for (timestamp, expected) in [(0, Some(0)), (250, Some(0)), (300, Some(0)), (301, None)] {
        let found = store
            .find_chunk_by_timestamp(id, 0, timestamp)
            .await
            .expect("find by timestamp");
        assert_eq!(
            found.map(|c| c.base_offset),
            expected,
            "timestamp {timestamp}"
        );
    }
    let offsets = store.partition_offsets(id, 0).await.expect("offsets");
    assert_eq!(offsets.max_timestamp, 300);
    assert_eq!(
        offsets.max_timestamp_chunk.map(|c| c.object_key),
        Some("parquet/swap/0/0-5.parquet".to_string()),
        "the max timestamp chunk is the replacement"
    );

    assert!(is_dead(store, &object("swap-2")).await);
    assert!(is_dead(store, &object("swap-3")).await);
    assert!(
        !is_dead(store, &object("swap-1")).await,
        "partition 1 still reads swap-1"
    );
    assert!(!is_dead(store, &object("swap-4")).await);
    let referenced = store
        .referenced_objects(vec![
            object("swap-2"),
            "parquet/swap/0/0-5.parquet".to_string(),
            object("swap-1"),
            "nope".to_string(),
            object("swap-1"),
        ])
        .await
        .expect("referenced objects");
    assert_eq!(
        referenced,
        [
            object("swap-2"),
            "parquet/swap/0/0-5.parquet".to_string(),
            object("swap-1")
        ],
        "referenced or dead (awaiting the GC) objects are known"
    );

    // A replay after success answers success and changes nothing.
    let replay = store.replace_chunks(request).await.expect("replay");
    assert_eq!(
        (replay.conflict, replay.sequence, replay.event),
        (false, 0, None)
    );
    assert_eq!(
        store.last_commit_sequence().await.expect("sequence"),
        outcome.sequence
    );

    // Another compactor that read the old chunks loses.
    let stale = swap(
        &topic,
        0,
        &[(0, 2, "swap-1"), (2, 5, "swap-2")],
        "parquet/other",
    );
    let lost = store.replace_chunks(stale).await.expect("stale swap");
    assert!(lost.conflict && lost.event.is_none());
    let wrong_key = swap(&topic, 0, &[(6, 8, "swap-3")], "parquet/wrong");
    assert!(
        store
            .replace_chunks(wrong_key)
            .await
            .expect("swap")
            .conflict
    );
    let after = store.lookup_chunks(id, 0, 0, 10).await.expect("lookup");
    assert_eq!(
        spans(&after.chunks),
        spans(&lookup.chunks),
        "conflicts change nothing"
    );
    assert_eq!(
        store
            .referenced_objects(vec!["parquet/other".to_string()])
            .await
            .expect("referenced"),
        Vec::<String>::new()
    );

    // Commits go on after the swap, with timestamps still exact.
    commit_batches(store, &topic, "swap-5", &[0], 1, 50).await;
    let found = store
        .find_chunk_by_timestamp(id, 0, 260)
        .await
        .expect("find");
    assert_eq!(found.map(|c| c.base_offset), Some(0));
    let lookup = store.lookup_chunks(id, 0, 8, 10).await.expect("lookup");
    assert_eq!(spans(&lookup.chunks), [(8, 9, object("swap-5"))]);

    // Malformed requests and unknown partitions are errors, not conflicts.
    let gap = swap(&topic, 0, &[(0, 6, "x"), (7, 8, "y")], "p");
    assert!(matches!(
        store.replace_chunks(gap).await,
        Err(Error::InvalidArgument { .. })
    ));
    let unknown = swap(&topic, 7, &[(0, 1, "x")], "p");
    assert!(matches!(
        store.replace_chunks(unknown).await,
        Err(Error::UnknownPartition { .. })
    ));
}

/// Goal: a swap races retention safely. Method: retention drops the first
/// of three chunks a compactor read; its swap then conflicts.
pub async fn replace_conflicts_with_retention(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.swap-retention", 1).await;
    let id = topic_uuid(&topic);
    for (segment, timestamp) in [("race-1", 10), ("race-2", 20), ("race-3", 30)] {
        commit_batches(store, &topic, segment, &[0], 5, timestamp).await;
    }
    store
        .delete_records(id, 0, 5)
        .await
        .expect("delete records");
    let request = swap(
        &topic,
        0,
        &[(0, 5, "race-1"), (5, 10, "race-2"), (10, 15, "race-3")],
        "parquet/race",
    );
    let outcome = store.replace_chunks(request).await.expect("swap");
    assert!(outcome.conflict, "retention removed an expected chunk");
    let lookup = store.lookup_chunks(id, 0, 0, 10).await.expect("lookup");
    assert_eq!(
        spans(&lookup.chunks),
        [(5, 10, object("race-2")), (10, 15, object("race-3"))]
    );
}

/// Goal: DeleteRecords moves the log start offset as Kafka does and every
/// read respects it. Method: three chunks (the first holding the greatest
/// timestamp); out-of-range and unknown requests, a delete inside the
/// second chunk (which straddles and stays), repeats below the log start,
/// then a delete of everything (-1).
pub async fn delete_records_moves_log_start(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.delete-records", 2).await;
    let id = topic_uuid(&topic);
    commit_batches(store, &topic, "retain-1", &[0], 3, 500).await;
    commit_batches(store, &topic, "retain-2", &[0], 3, 100).await;
    commit_batches(store, &topic, "retain-3", &[0, 1], 4, 200).await;
    for offset in [11, -2] {
        let refused = store.delete_records(id, 0, offset).await;
        assert!(
            matches!(refused, Err(Error::OffsetOutOfRange { .. })),
            "offset {offset}: {refused:?}"
        );
    }
    let unknown = store.delete_records(id, 9, 0).await;
    assert!(
        matches!(unknown, Err(Error::UnknownPartition { .. })),
        "{unknown:?}"
    );
    let unknown_topic = store.delete_records(Uuid::new_v4(), 0, 0).await;
    assert!(matches!(unknown_topic, Err(Error::UnknownPartition { .. })));

    let before = store.last_commit_sequence().await.expect("sequence");
    let outcome = store
        .delete_records(id, 0, 4)
        .await
        .expect("delete records");
    assert_eq!(outcome.low_watermark, 4);
    let event = outcome.event.expect("a moved log start publishes an event");
    assert_eq!(event.sequence, before + 1);
    assert_eq!(
        event
            .offsets
            .iter()
            .map(|o| (o.partition, o.log_start_offset, o.high_watermark))
            .collect::<Vec<_>>(),
        [(0, 4, 10)]
    );
    assert_eq!(event.invalidated.len(), 1);

    let lookup = store.lookup_chunks(id, 0, 0, 10).await.expect("lookup");
    assert_eq!(
        spans(&lookup.chunks),
        [(3, 6, object("retain-2")), (6, 10, object("retain-3"))],
        "the straddling chunk stays; lookups start at the log start"
    );
    assert_eq!((lookup.log_start_offset, lookup.high_watermark), (4, 10));
    let offsets = store.partition_offsets(id, 0).await.expect("offsets");
    assert_eq!((offsets.log_start_offset, offsets.high_watermark), (4, 10));
    assert_eq!(
        offsets.max_timestamp, 200,
        "the deleted chunk's 500 is gone"
    );
    assert_eq!(offsets.max_timestamp_chunk.map(|c| c.base_offset), Some(6));
    for (timestamp, expected) in [(50, Some(3)), (150, Some(6)), (200, Some(6)), (201, None)] {
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
    assert!(is_dead(store, &object("retain-1")).await);
    assert!(!is_dead(store, &object("retain-2")).await);

    for offset in [2, 4] {
        let again = store.delete_records(id, 0, offset).await.expect("again");
        assert_eq!(
            (again.low_watermark, again.event),
            (4, None),
            "offset {offset}"
        );
    }
    assert_eq!(
        store.last_commit_sequence().await.expect("sequence"),
        before + 1
    );

    let all = store.delete_records(id, 0, -1).await.expect("delete all");
    assert_eq!(all.low_watermark, 10);
    let lookup = store.lookup_chunks(id, 0, 0, 10).await.expect("lookup");
    assert!(lookup.chunks.is_empty());
    assert_eq!((lookup.log_start_offset, lookup.high_watermark), (10, 10));
    let offsets = store.partition_offsets(id, 0).await.expect("offsets");
    assert_eq!(
        (offsets.max_timestamp, offsets.max_timestamp_chunk),
        (-1, None)
    );
    assert_eq!(
        store.find_chunk_by_timestamp(id, 0, 0).await.expect("find"),
        None
    );
    assert!(is_dead(store, &object("retain-2")).await);
    assert!(
        !is_dead(store, &object("retain-3")).await,
        "partition 1 still reads retain-3"
    );
    assert_eq!(
        store
            .partition_offsets(id, 1)
            .await
            .expect("offsets")
            .log_start_offset,
        0,
        "other partitions keep their log"
    );

    // The log goes on from the high watermark.
    commit_batches(store, &topic, "retain-4", &[0], 2, 30).await;
    let lookup = store.lookup_chunks(id, 0, 0, 10).await.expect("lookup");
    assert_eq!(spans(&lookup.chunks), [(10, 12, object("retain-4"))]);
    let found = store
        .find_chunk_by_timestamp(id, 0, 30)
        .await
        .expect("find");
    assert_eq!(found.map(|c| c.base_offset), Some(10));
}

/// Goal: objects that lose their last chunk any other way are dead too,
/// dead objects list by time with a limit, and forgetting them is
/// idempotent and drops their commit records. Method: delete a topic
/// (one of its objects shared with another topic), commit segments whose
/// batches are all rejected, then list and forget.
pub async fn dead_objects_lifecycle(store: &dyn CatalogStore) {
    let doomed = create_topic(store, "conformance.dead-doomed", 2).await;
    let kept = create_topic(store, "conformance.dead-kept", 1).await;
    commit_batches(store, &doomed, "dead-1", &[0, 1], 1, 1).await;
    commit_batches(store, &doomed, "dead-2", &[0], 1, 1).await;
    let shared = commit_request(
        "dead-shared",
        vec![
            chunk_write(&doomed, 1, 0, vec![plain_batch(1, 1)]),
            chunk_write(&kept, 0, 100, vec![plain_batch(1, 1)]),
        ],
    );
    commit(store, shared).await;
    store
        .delete_topic(crate::store::TopicRef::Name(doomed.name.clone()))
        .await
        .expect("delete topic");
    assert!(is_dead(store, &object("dead-1")).await);
    assert!(is_dead(store, &object("dead-2")).await);
    assert!(
        !is_dead(store, &object("dead-shared")).await,
        "still read by the other topic"
    );

    // A commit whose batches are all rejected references nothing.
    let unknown = commit_request(
        "dead-unknown",
        vec![chunk_write(&kept, 5, 0, vec![plain_batch(1, 1)])],
    );
    commit(store, unknown).await;
    assert!(is_dead(store, &object("dead-unknown")).await);
    let producer = new_producer(store).await;
    let batch = || chunk_write(&kept, 0, 0, vec![producer_batch(producer, 0, 1)]);
    commit(store, commit_request("dead-first", vec![batch()])).await;
    let duplicate: CommitSegmentRequest = commit_request("dead-duplicate", vec![batch()]);
    let first = commit(store, duplicate.clone()).await;
    assert!(is_dead(store, &object("dead-duplicate")).await);
    assert!(!is_dead(store, &object("dead-first")).await);
    assert_eq!(
        commit(store, duplicate.clone()).await.sequence,
        first.sequence,
        "a retry is answered from the commit record"
    );

    // Listing: by time, oldest first, with a limit.
    let all = dead(store).await;
    let times: Vec<i64> = all.iter().map(|d| d.dead_since_ms).collect();
    assert!(times.is_sorted(), "oldest first: {times:?}");
    let since = all
        .iter()
        .find(|d| d.object_key == object("dead-1"))
        .expect("dead-1 is dead")
        .dead_since_ms;
    let listed = |before: i64| async move {
        store
            .list_dead_objects(before, 10_000)
            .await
            .expect("list")
            .into_iter()
            .any(|d| d.object_key == object("dead-1"))
    };
    assert!(listed(since).await, "dead at or before");
    assert!(!listed(since - 1).await, "dead after");
    assert_eq!(
        store
            .list_dead_objects(i64::MAX, 1)
            .await
            .expect("list")
            .len(),
        1
    );

    // Forgetting: idempotent, and the commit record goes with the object.
    let forget = vec![
        object("dead-1"),
        object("dead-duplicate"),
        "never-dead".to_string(),
    ];
    store
        .forget_dead_objects(forget.clone())
        .await
        .expect("forget");
    store
        .forget_dead_objects(forget)
        .await
        .expect("forget again");
    assert!(!is_dead(store, &object("dead-1")).await);
    assert!(!is_dead(store, &object("dead-duplicate")).await);
    assert!(
        is_dead(store, &object("dead-2")).await,
        "only the named ones go"
    );
    let reapplied = commit(store, duplicate).await;
    assert!(
        reapplied.sequence > first.sequence,
        "without its commit record the segment is applied anew"
    );
}

/// Goal: no object is committed or swapped in once it is older than the
/// store's `max_commit_age_ms` (1,000 here), so an orphan sweep that waits
/// twice that never deletes an object whose commit still lands; a retry of
/// a commit that landed still gets its stored answer at any age. Method:
/// segment ids are ULIDs of chosen times on the store's manual clock.
pub async fn objects_past_the_max_commit_age_are_refused(
    store: &dyn CatalogStore,
    clock: &super::ManualClock,
) {
    let topic = create_topic(store, "conformance.commit-age", 1).await;
    let ulid = |ms: u64| ulid::Ulid::from_parts(ms, 7).to_string();
    clock.set(10_000);
    let young = ulid(9_500);
    let write = || vec![chunk_write(&topic, 0, 0, vec![plain_batch(5, 1)])];
    let landed = commit(store, commit_request(&young, write())).await;
    let old = ulid(8_999);
    match store.commit_segment(commit_request(&old, write())).await {
        Err(Error::CommitTooLate {
            age_ms, max_age_ms, ..
        }) => assert_eq!((age_ms, max_age_ms), (1_001, 1_000)),
        other => panic!("an object 1,001 ms old must be refused: {other:?}"),
    }
    clock.set(1_000_000);
    let replayed = commit(store, commit_request(&young, write())).await;
    assert_eq!(replayed, landed, "a landed commit is answered at any age");

    let id = topic_uuid(&topic);
    let mut request = swap(&topic, 0, &[(0, 5, &young)], "parquet/commit-age");
    request.object_created_ms = 1_000_000 - 1_001;
    let outcome = store.replace_chunks(request.clone()).await.expect("swap");
    assert!(
        outcome.conflict,
        "a file older than the max commit age is not swapped in"
    );
    let lookup = store.lookup_chunks(id, 0, 0, 10).await.expect("lookup");
    assert_eq!(spans(&lookup.chunks), [(0, 5, object(&young))]);
    request.object_created_ms = 1_000_000 - 1_000;
    let outcome = store.replace_chunks(request).await.expect("swap");
    assert!(
        !outcome.conflict,
        "a file within the max commit age is swapped in"
    );
}
