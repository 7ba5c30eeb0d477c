//! The compaction, retention and garbage-collection RPCs through the
//! service over a real SqliteStore: the gRPC round trip of each, the
//! events they publish, their Kafka error codes, and compaction claims on
//! a manual clock.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_catalog::conformance::{ManualClock, chunk_write, commit_request, plain_batch};
use strata_catalog::{CatalogService, GroupOptions, ServiceOptions, SqliteOptions, error_code};
use strata_catalog_api::proto::*;
use strata_catalog_api::{CatalogApi, GrpcCatalog, InProcess};
use tokio_util::sync::CancellationToken;

/// A service whose store and claims run on `clock`.
async fn service(dir: &tempfile::TempDir, clock: Arc<ManualClock>) -> CatalogService {
    let sqlite = SqliteOptions {
        clock: clock.clone(),
        ..SqliteOptions::default()
    };
    let options = ServiceOptions {
        groups: GroupOptions {
            clock,
            ..GroupOptions::default()
        },
        ..ServiceOptions::default()
    };
    CatalogService::open_sqlite(dir.path().join("catalog.db"), sqlite, options)
        .await
        .expect("open the service")
}

async fn topic(catalog: &dyn CatalogApi, name: &str, partitions: u32) -> Topic {
    let response = catalog
        .create_topic(CreateTopicRequest {
            name: name.to_string(),
            partition_count: partitions,
            configs: Vec::new(),
            validate_only: false,
        })
        .await
        .expect("create topic");
    assert_eq!(response.error_code, 0, "{}", response.error_message);
    response.topic.expect("a created topic")
}

async fn next_event(stream: &mut strata_catalog_api::CommitStream) -> CommitEvent {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream is open")
        .expect("not an error")
}

fn object(segment_id: &str) -> String {
    format!("segments/00/{segment_id}.seg")
}

fn chunk_ref(base_offset: i64, end_offset: i64, segment_id: &str) -> ChunkRef {
    ChunkRef {
        base_offset,
        end_offset,
        object_key: object(segment_id),
    }
}

fn replace(t: &Topic, expected: Vec<ChunkRef>, key: &str) -> ReplaceChunksRequest {
    let base_offset = expected.first().map_or(0, |c| c.base_offset);
    let end_offset = expected.last().map_or(0, |c| c.end_offset);
    ReplaceChunksRequest {
        topic_id: t.topic_id.clone(),
        object_created_ms: 0,
        partition: 0,
        expected,
        replacement: Some(Chunk {
            base_offset,
            end_offset,
            object_key: key.to_string(),
            object_size: 512,
            length: 512,
            batch_count: 2,
            max_timestamp: 20,
            format: ChunkFormat::Parquet.into(),
            ..Chunk::default()
        }),
    }
}

/// Goal: every new RPC works over real gRPC, and swaps and deletes reach
/// subscribers as invalidations. Method: serve on an ephemeral port,
/// commit three segments, swap two for a Parquet file, delete records,
/// then walk the garbage collector's calls, checking the codes of bad
/// requests on the way.
#[tokio::test]
async fn compaction_rpcs_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    clock.set(1_000);
    let service = service(&dir, clock.clone()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(strata_catalog::serve(listener, service, shutdown.clone()));
    let catalog = GrpcCatalog::connect_lazy(&format!("http://{address}")).unwrap();
    let t = topic(&catalog, "compaction", 1).await;
    for (segment, timestamp) in [("c1", 10), ("c2", 20), ("c3", 30)] {
        let writes = vec![chunk_write(&t, 0, 0, vec![plain_batch(2, timestamp)])];
        catalog
            .commit_segment(commit_request(segment, writes))
            .await
            .unwrap();
    }
    let mut stream = catalog
        .subscribe_commits(SubscribeCommitsRequest::default())
        .await
        .unwrap();

    clock.set(2_000);
    let request = replace(
        &t,
        vec![chunk_ref(0, 2, "c1"), chunk_ref(2, 4, "c2")],
        "pq/0-3",
    );
    let swapped = catalog.replace_chunks(request.clone()).await.unwrap();
    assert_eq!((swapped.error_code, swapped.conflict), (0, false));
    let event = next_event(&mut stream).await;
    assert_eq!(event.sequence, swapped.sequence);
    assert_eq!(event.invalidated.len(), 1, "agents drop the tail");
    assert!(event.chunks.is_empty());
    let replay = catalog.replace_chunks(request).await.unwrap();
    assert_eq!((replay.conflict, replay.sequence), (false, 0));
    let stale = replace(&t, vec![chunk_ref(0, 2, "c1")], "pq/other");
    assert!(catalog.replace_chunks(stale).await.unwrap().conflict);
    let lookup = catalog
        .lookup_chunks(LookupChunksRequest {
            topic_id: t.topic_id.clone(),
            partition: 0,
            offset: 1,
            max_chunks: 0,
        })
        .await
        .unwrap();
    let first = lookup.chunks.first().expect("chunks");
    assert_eq!(
        (first.object_key.as_str(), first.format),
        ("pq/0-3", i32::from(ChunkFormat::Parquet))
    );
    let mut unknown = replace(&t, vec![chunk_ref(0, 2, "c1")], "pq/x");
    unknown.partition = 3;
    let r = catalog.replace_chunks(unknown).await.unwrap();
    assert_eq!(
        r.error_code,
        i32::from(error_code::UNKNOWN_TOPIC_OR_PARTITION)
    );
    let malformed = replace(&t, Vec::new(), "pq/x");
    let status = catalog.replace_chunks(malformed).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let delete = |offset: i64, topic_id: Vec<u8>| DeleteRecordsRequest {
        topic_id,
        partition: 0,
        offset,
    };
    let code = |r: DeleteRecordsResponse| (r.error_code, r.low_watermark);
    let beyond = catalog
        .delete_records(delete(7, t.topic_id.clone()))
        .await
        .unwrap();
    assert_eq!(
        code(beyond),
        (i32::from(error_code::OFFSET_OUT_OF_RANGE), -1)
    );
    let bad_id = catalog.delete_records(delete(0, vec![1, 2])).await.unwrap();
    assert_eq!(
        code(bad_id).0,
        i32::from(error_code::UNKNOWN_TOPIC_OR_PARTITION)
    );
    clock.set(3_000);
    let moved = catalog
        .delete_records(delete(5, t.topic_id.clone()))
        .await
        .unwrap();
    assert_eq!(code(moved), (0, 5));
    let event = next_event(&mut stream).await;
    assert_eq!(
        event
            .offsets
            .iter()
            .map(|o| (o.log_start_offset, o.high_watermark))
            .collect::<Vec<_>>(),
        [(5, 6)]
    );
    assert_eq!(event.invalidated.len(), 1);
    let again = catalog
        .delete_records(delete(3, t.topic_id.clone()))
        .await
        .unwrap();
    assert_eq!(code(again), (0, 5), "below the log start: unchanged");
    let offsets = catalog
        .get_partition_offsets(GetPartitionOffsetsRequest {
            topic_id: t.topic_id.clone(),
            partition: 0,
        })
        .await
        .unwrap();
    assert_eq!((offsets.log_start_offset, offsets.high_watermark), (5, 6));

    // The garbage collector's view: c1 and c2 died at the swap, the
    // Parquet file at the delete; c3 straddles the log start and lives.
    let list = |dead_before_ms| ListDeadObjectsRequest {
        dead_before_ms,
        limit: 0,
    };
    let listed = catalog.list_dead_objects(list(2_500)).await.unwrap();
    assert_eq!(
        listed
            .objects
            .iter()
            .map(|d| (d.object_key.as_str(), d.dead_since_ms))
            .collect::<Vec<_>>(),
        [
            (object("c1").as_str(), 2_000),
            (object("c2").as_str(), 2_000)
        ]
    );
    let everything = catalog.list_dead_objects(list(i64::MAX)).await.unwrap();
    assert_eq!(everything.objects.len(), 3);
    assert_eq!(everything.objects[2].object_key, "pq/0-3");
    let referenced = catalog
        .referenced_objects(ReferencedObjectsRequest {
            object_keys: vec![object("c1"), object("c3"), "pq/0-3".to_string()],
        })
        .await
        .unwrap();
    // Dead objects stay known until forgotten: the orphan sweep must leave
    // them to the GC's grace period.
    assert_eq!(
        referenced.object_keys,
        [object("c1"), object("c3"), "pq/0-3".to_string()]
    );
    let forget = ForgetDeadObjectsRequest {
        object_keys: vec![object("c1"), object("c2")],
    };
    catalog.forget_dead_objects(forget.clone()).await.unwrap();
    catalog.forget_dead_objects(forget).await.unwrap();
    let left = catalog.list_dead_objects(list(i64::MAX)).await.unwrap();
    assert_eq!(left.objects.len(), 1);
    let too_many = ForgetDeadObjectsRequest {
        object_keys: vec![String::new(); 10_001],
    };
    let status = catalog.forget_dead_objects(too_many).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    drop(stream);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Goal: a compaction claim is exclusive until it expires on the catalog's
/// clock, renewable by its holder, and released only by its holder.
/// Method: two compactors on a manual clock, in process and over gRPC.
#[tokio::test]
async fn compaction_claims_follow_the_catalog_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    clock.set(10_000);
    let catalog = InProcess(service(&dir, clock.clone()).await);
    let claim = |compactor: &str, partition: u32, lease_ms: i64| ClaimCompactionRequest {
        topic_id: vec![7; 16],
        partition,
        compactor_id: compactor.to_string(),
        lease_ms,
    };
    let release = |compactor: &str| ReleaseCompactionRequest {
        topic_id: vec![7; 16],
        partition: 0,
        compactor_id: compactor.to_string(),
    };
    let a = catalog
        .claim_compaction(claim("a", 0, 1_000))
        .await
        .unwrap();
    assert_eq!(
        (a.granted, a.expires_ms, a.holder.as_str()),
        (true, 11_000, "a")
    );
    let b = catalog
        .claim_compaction(claim("b", 0, 1_000))
        .await
        .unwrap();
    assert_eq!(
        (b.granted, b.expires_ms, b.holder.as_str()),
        (false, 11_000, "a")
    );
    let other = catalog
        .claim_compaction(claim("b", 1, 1_000))
        .await
        .unwrap();
    assert!(other.granted, "claims are per partition");
    clock.set(10_500);
    let renewed = catalog
        .claim_compaction(claim("a", 0, 1_000))
        .await
        .unwrap();
    assert_eq!((renewed.granted, renewed.expires_ms), (true, 11_500));
    clock.set(11_499);
    assert!(
        !catalog
            .claim_compaction(claim("b", 0, 1_000))
            .await
            .unwrap()
            .granted
    );
    clock.set(11_500);
    assert!(
        catalog
            .claim_compaction(claim("b", 0, 1_000))
            .await
            .unwrap()
            .granted,
        "an expired claim is free"
    );
    assert!(
        !catalog
            .release_compaction(release("a"))
            .await
            .unwrap()
            .released
    );
    assert!(
        catalog
            .release_compaction(release("b"))
            .await
            .unwrap()
            .released
    );
    assert!(
        catalog
            .claim_compaction(claim("a", 0, 1_000))
            .await
            .unwrap()
            .granted
    );
    for lease_ms in [0, -1, 3_600_001] {
        let status = catalog
            .claim_compaction(claim("a", 0, lease_ms))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::InvalidArgument,
            "lease {lease_ms}"
        );
    }
    let status = catalog
        .claim_compaction(claim("", 0, 1_000))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}
