//! The service layer over a real SqliteStore: validation codes, the commit
//! stream (catch-up, resync errors), concurrency, and the gRPC server.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use strata_catalog::conformance::{chunk_write, commit_request, plain_batch, producer_batch};
use strata_catalog::{
    CatalogService, ProducerIdAndEpoch, ServiceOptions, SqliteOptions, error_code,
};
use strata_catalog_api::proto::*;
use strata_catalog_api::{CatalogApi, GrpcCatalog, InProcess};
use tokio_util::sync::CancellationToken;

async fn service(dir: &tempfile::TempDir, options: ServiceOptions) -> CatalogService {
    CatalogService::open_sqlite(
        dir.path().join("catalog.db"),
        SqliteOptions::default(),
        options,
    )
    .await
    .expect("open the service")
}

fn create(name: &str, partition_count: u32, configs: &[(&str, &str)]) -> CreateTopicRequest {
    CreateTopicRequest {
        name: name.to_string(),
        partition_count,
        configs: configs
            .iter()
            .map(|(name, value)| TopicConfigEntry {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
        validate_only: false,
    }
}

async fn topic(catalog: &dyn CatalogApi, name: &str, partitions: u32) -> Topic {
    let response = catalog
        .create_topic(create(name, partitions, &[]))
        .await
        .expect("create topic");
    assert_eq!(response.error_code, 0, "{}", response.error_message);
    response.topic.expect("a created topic")
}

/// Goal: every invalid admin request gets the Kafka error code a broker
/// would return. Method: one request per rule through the in-process API.
#[tokio::test]
async fn topic_requests_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = InProcess(service(&dir, ServiceOptions::default()).await);
    let code = |r: CreateTopicResponse| i16::try_from(r.error_code).unwrap();
    let long_name = "x".repeat(250);
    for bad in ["", ".", "..", "a/b", "ü", long_name.as_str()] {
        let r = catalog.create_topic(create(bad, 1, &[])).await.unwrap();
        assert_eq!(code(r), error_code::INVALID_TOPIC_EXCEPTION, "{bad:?}");
    }
    let r = catalog.create_topic(create("ok", 0, &[])).await.unwrap();
    assert_eq!(code(r), error_code::INVALID_PARTITIONS);
    for configs in [
        [("retention.ms", "soon")],
        [("no.such", "1")],
        [("cleanup.policy", "x")],
    ] {
        let r = catalog
            .create_topic(create("ok", 1, &configs))
            .await
            .unwrap();
        assert_eq!(code(r), error_code::INVALID_CONFIG, "{configs:?}");
    }
    let validate_only = CreateTopicRequest {
        validate_only: true,
        ..create("ok", 1, &[("retention.ms", "1")])
    };
    assert_eq!(code(catalog.create_topic(validate_only).await.unwrap()), 0);
    assert!(
        catalog
            .list_topics(ListTopicsRequest::default())
            .await
            .unwrap()
            .topics
            .is_empty()
    );
    let created = topic(&catalog, "ok.topic-1_x", 2).await;
    assert_eq!(created.topic_id.len(), 16);
    let r = catalog
        .create_topic(create("ok.topic-1_x", 1, &[]))
        .await
        .unwrap();
    assert_eq!(code(r), error_code::TOPIC_ALREADY_EXISTS);

    let grow = |n| CreatePartitionsRequest {
        name: "ok.topic-1_x".to_string(),
        new_partition_count: n,
        validate_only: false,
    };
    let r = catalog.create_partitions(grow(2)).await.unwrap();
    assert_eq!(r.error_code, i32::from(error_code::INVALID_PARTITIONS));
    assert_eq!(
        catalog.create_partitions(grow(3)).await.unwrap().error_code,
        0
    );
    let unknown = CreatePartitionsRequest {
        name: "nope".to_string(),
        ..grow(3)
    };
    let r = catalog.create_partitions(unknown).await.unwrap();
    assert_eq!(
        r.error_code,
        i32::from(error_code::UNKNOWN_TOPIC_OR_PARTITION)
    );

    let alter = |set: &[(&str, &str)], delete: &[&str]| AlterTopicConfigsRequest {
        name: "ok.topic-1_x".to_string(),
        set: set
            .iter()
            .map(|(n, v)| TopicConfigEntry {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        delete: delete.iter().map(|s| s.to_string()).collect(),
        replace_all: false,
        validate_only: false,
    };
    let r = catalog
        .alter_topic_configs(alter(&[("compression.type", "brotli")], &[]))
        .await
        .unwrap();
    assert_eq!(r.error_code, i32::from(error_code::INVALID_CONFIG));
    let r = catalog
        .alter_topic_configs(alter(&[], &["no.such"]))
        .await
        .unwrap();
    assert_eq!(r.error_code, i32::from(error_code::INVALID_CONFIG));
    let r = catalog
        .alter_topic_configs(alter(&[("compression.type", "zstd")], &[]))
        .await
        .unwrap();
    assert_eq!(r.error_code, 0);
    let listed = catalog
        .list_topics(ListTopicsRequest::default())
        .await
        .unwrap()
        .topics;
    assert_eq!(listed[0].configs[0].value, "zstd");
}

/// Goal: reads and producer calls answer Kafka codes for bad input.
/// Method: unknown partitions, malformed ids and bad InitProducerId fields.
#[tokio::test]
async fn reads_and_producers_answer_kafka_codes() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = InProcess(service(&dir, ServiceOptions::default()).await);
    let t = topic(&catalog, "reads", 1).await;
    let lookup = |topic_id: Vec<u8>, partition| LookupChunksRequest {
        topic_id,
        partition,
        offset: 0,
        max_chunks: 0,
    };
    let unknown = i32::from(error_code::UNKNOWN_TOPIC_OR_PARTITION);
    assert_eq!(
        catalog
            .lookup_chunks(lookup(t.topic_id.clone(), 1))
            .await
            .unwrap()
            .error_code,
        unknown
    );
    assert_eq!(
        catalog
            .lookup_chunks(lookup(vec![1, 2], 0))
            .await
            .unwrap()
            .error_code,
        unknown
    );
    let ok = catalog
        .lookup_chunks(lookup(t.topic_id.clone(), 0))
        .await
        .unwrap();
    assert_eq!((ok.error_code, ok.high_watermark), (0, 0));
    let describe = DescribeProducersRequest {
        topic_id: t.topic_id.clone(),
        partition: 7,
    };
    assert_eq!(
        catalog
            .describe_producers(describe)
            .await
            .unwrap()
            .error_code,
        unknown
    );

    let init = |producer_id, producer_epoch| InitProducerIdRequest {
        transactional_id: String::new(),
        transaction_timeout_ms: 0,
        producer_id,
        producer_epoch,
    };
    let bad = catalog.init_producer_id(init(5, -1)).await.unwrap();
    assert_eq!(bad.error_code, i32::from(error_code::INVALID_REQUEST));
    let fresh = catalog.init_producer_id(init(-1, -1)).await.unwrap();
    assert_eq!((fresh.error_code, fresh.producer_epoch), (0, 0));
    let bumped = catalog
        .init_producer_id(init(fresh.producer_id, 0))
        .await
        .unwrap();
    assert_eq!(bumped.producer_epoch, 1);
    let stale = catalog
        .init_producer_id(init(fresh.producer_id, 0))
        .await
        .unwrap();
    assert_eq!(
        stale.error_code,
        i32::from(error_code::INVALID_PRODUCER_EPOCH)
    );
    let no_timeout = InitProducerIdRequest {
        transactional_id: "t".to_string(),
        ..init(-1, -1)
    };
    let r = catalog.init_producer_id(no_timeout).await.unwrap();
    assert_eq!(
        r.error_code,
        i32::from(error_code::INVALID_TRANSACTION_TIMEOUT)
    );

    let empty_id = commit_request("", vec![]);
    let status = catalog.commit_segment(empty_id).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

async fn next_event(stream: &mut strata_catalog_api::CommitStream) -> CommitEvent {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an event within 5 s")
        .expect("the stream is open")
        .expect("not an error")
}

/// Goal: the commit stream carries every commit in order, catches a
/// subscriber up from `after_sequence`, carries invalidations, and tells a
/// subscriber that asks for pruned history to resync. Method: commit,
/// subscribe at several points, delete a topic.
#[tokio::test]
async fn commit_stream_catches_up_and_reports_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions {
        commit_stream_buffer: 4,
        subscriber_queue: 64,
        ..ServiceOptions::default()
    };
    let catalog = InProcess(service(&dir, options).await);
    let t = topic(&catalog, "stream", 2).await;
    let mut live = catalog
        .subscribe_commits(SubscribeCommitsRequest::default())
        .await
        .unwrap();
    let mut sequences = Vec::new();
    for index in 0..6 {
        let writes = vec![chunk_write(&t, index % 2, 0, vec![plain_batch(2, 10)])];
        let response = catalog
            .commit_segment(commit_request(&format!("s{index}"), writes))
            .await
            .unwrap();
        sequences.push(response.sequence);
    }
    for &sequence in &sequences {
        let event = next_event(&mut live).await;
        assert_eq!(event.sequence, sequence);
        assert_eq!(event.chunks.len(), 1);
        assert_eq!(event.offsets.len(), 1);
    }
    assert_eq!(
        sequences.windows(2).filter(|w| w[1] != w[0] + 1).count(),
        0,
        "contiguous"
    );

    // Catch up from the 4th commit: events 5 and 6 come from the buffer.
    let after = SubscribeCommitsRequest {
        after_sequence: sequences[3],
    };
    let mut catch_up = catalog.subscribe_commits(after).await.unwrap();
    assert_eq!(next_event(&mut catch_up).await.sequence, sequences[4]);
    let event = next_event(&mut catch_up).await;
    assert_eq!(event.sequence, sequences[5]);
    assert_eq!(event.offsets[0].high_watermark, 6);

    // The buffer holds 4 events: asking for older ones must resync.
    let too_old = SubscribeCommitsRequest {
        after_sequence: sequences[0],
    };
    let status = catalog.subscribe_commits(too_old).await.err().unwrap();
    assert_eq!(status.code(), tonic::Code::OutOfRange);
    let future = SubscribeCommitsRequest {
        after_sequence: sequences[5] + 100,
    };
    assert_eq!(
        catalog
            .subscribe_commits(future)
            .await
            .err()
            .unwrap()
            .code(),
        tonic::Code::OutOfRange
    );

    // A retried commit publishes nothing; a deletion invalidates.
    let writes = vec![chunk_write(&t, 0, 0, vec![plain_batch(2, 10)])];
    catalog
        .commit_segment(commit_request("s0", writes))
        .await
        .unwrap();
    let delete = DeleteTopicRequest {
        name: "stream".to_string(),
        topic_id: Vec::new(),
    };
    let deleted = catalog.delete_topic(delete).await.unwrap();
    assert_eq!(
        (deleted.error_code, deleted.topic_id),
        (0, t.topic_id.clone())
    );
    for stream in [&mut live, &mut catch_up] {
        let event = next_event(stream).await;
        assert_eq!(
            event.sequence,
            sequences[5] + 1,
            "the retry took no sequence"
        );
        assert_eq!(event.invalidated.len(), 2);
    }
}

/// Goal: a subscriber that falls behind is cut off with DATA_LOSS instead
/// of silently missing commits. Method: a tiny subscriber queue.
#[tokio::test]
async fn a_lagging_subscriber_must_resync() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions {
        commit_stream_buffer: 16,
        subscriber_queue: 2,
        ..ServiceOptions::default()
    };
    let catalog = InProcess(service(&dir, options).await);
    let t = topic(&catalog, "lag", 1).await;
    let mut slow = catalog
        .subscribe_commits(SubscribeCommitsRequest::default())
        .await
        .unwrap();
    for index in 0..5 {
        let writes = vec![chunk_write(&t, 0, 0, vec![plain_batch(1, 0)])];
        catalog
            .commit_segment(commit_request(&format!("lag{index}"), writes))
            .await
            .unwrap();
    }
    let status = slow.next().await.unwrap().unwrap_err();
    assert_eq!(status.code(), tonic::Code::DataLoss);
    assert!(slow.next().await.is_none());
}

/// Goal: concurrent commits through the service give unique contiguous
/// offsets and a contiguous stream. Method: 16 tasks x 40 commits with
/// idempotent producers, one producer per task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_through_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(InProcess(service(&dir, ServiceOptions::default()).await));
    let t = topic(catalog.as_ref(), "concurrent", 2).await;
    let mut stream = catalog
        .subscribe_commits(SubscribeCommitsRequest::default())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let catalog = Arc::clone(&catalog);
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let init = InitProducerIdRequest {
                producer_id: -1,
                producer_epoch: -1,
                ..Default::default()
            };
            let granted = catalog.init_producer_id(init).await.unwrap();
            let producer = ProducerIdAndEpoch {
                producer_id: granted.producer_id,
                producer_epoch: 0,
            };
            let mut offsets = Vec::new();
            for index in 0..40 {
                let batch = producer_batch(producer, index * 2, 2);
                let writes = vec![chunk_write(&t, 0, 0, vec![batch])];
                let segment = format!("{}-{index}", producer.producer_id);
                let response = catalog
                    .commit_segment(commit_request(&segment, writes))
                    .await
                    .unwrap();
                assert_eq!(response.chunks[0].batches[0].error_code, 0);
                offsets.push(response.chunks[0].batches[0].base_offset);
            }
            offsets
        }));
    }
    let mut offsets = Vec::new();
    for task in tasks {
        offsets.extend(task.await.unwrap());
    }
    offsets.sort_unstable();
    assert_eq!(offsets, (0..640).map(|i| i * 2).collect::<Vec<i64>>());
    let mut last = 0;
    for _ in 0..640 {
        let event = next_event(&mut stream).await;
        assert!(last == 0 || event.sequence == last + 1, "contiguous stream");
        last = event.sequence;
    }
}

/// Goal: the same service works over real gRPC. Method: serve on an
/// ephemeral port, talk through GrpcCatalog, shut down.
#[tokio::test]
async fn serves_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let service = service(&dir, ServiceOptions::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(strata_catalog::serve(listener, service, shutdown.clone()));
    let catalog = GrpcCatalog::connect_lazy(&format!("http://{address}")).unwrap();
    let t = topic(&catalog, "grpc", 1).await;
    let mut stream = catalog
        .subscribe_commits(SubscribeCommitsRequest::default())
        .await
        .unwrap();
    let writes = vec![chunk_write(&t, 0, 0, vec![plain_batch(3, 5)])];
    let response = catalog
        .commit_segment(commit_request("g1", writes))
        .await
        .unwrap();
    assert_eq!(response.chunks[0].high_watermark, 3);
    assert_eq!(next_event(&mut stream).await.sequence, response.sequence);
    drop(stream);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Goal (issue #11 item 11): a catalog serving agents of other processes
/// (`unfenced_commits: false`, as `strata catalog` runs) refuses a commit
/// without a registration epoch, which would skip fencing, and changes
/// nothing; the embedded default still takes them (`strata dev`).
/// Method: the same epoch-0 commit against both settings.
#[tokio::test]
async fn a_fenced_catalog_refuses_commits_without_an_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let options = ServiceOptions {
        unfenced_commits: false,
        ..ServiceOptions::default()
    };
    let catalog = InProcess(service(&dir, options).await);
    let t = topic(&catalog, "fenced", 1).await;
    let writes = vec![chunk_write(&t, 0, 0, vec![plain_batch(2, 10)])];
    let refused = catalog
        .commit_segment(commit_request("unfenced", writes.clone()))
        .await
        .expect_err("an epoch-0 commit is refused");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    let offsets = catalog
        .get_partition_offsets(GetPartitionOffsetsRequest {
            topic_id: t.topic_id.clone(),
            partition: 0,
        })
        .await
        .unwrap();
    assert_eq!(offsets.high_watermark, 0, "nothing was written");

    let embedded_dir = tempfile::tempdir().unwrap();
    let embedded = InProcess(service(&embedded_dir, ServiceOptions::default()).await);
    let t = topic(&embedded, "embedded", 1).await;
    let writes = vec![chunk_write(&t, 0, 0, vec![plain_batch(2, 10)])];
    embedded
        .commit_segment(commit_request("unfenced", writes))
        .await
        .expect("the embedded default takes epoch-0 commits");
}

/// Goal (issue #11, item 3): a commit whose outcome the catalog does not
/// learn (stored, but its commit-stream event never published, as when
/// PostgreSQL's COMMIT lands while the connection breaks) must not stall
/// the commit stream: the later commits reach subscribers as a gap (resync)
/// within the gap timeout, not after 4,096 more commits, and a subscriber
/// that resyncs sees them. Method: the unknown-outcome commit fault, then
/// one ordinary commit, with a live subscriber and a 200 ms gap timeout.
#[tokio::test]
async fn a_commit_of_unknown_outcome_does_not_stall_the_commit_stream() {
    let dir = tempfile::tempdir().unwrap();
    let faults = strata_catalog::CommitFaults::new();
    let options = ServiceOptions {
        commit_faults: Some(faults.clone()),
        commit_gap_timeout_ms: 200,
        ..ServiceOptions::default()
    };
    let catalog = InProcess(service(&dir, options).await);
    let t = topic(&catalog, "unknown-outcome", 1).await;
    let mut live = catalog
        .subscribe_commits(SubscribeCommitsRequest::default())
        .await
        .unwrap();
    faults.set(strata_catalog::CommitFaultPlan {
        unknown_outcome_count: 1,
        ..Default::default()
    });
    let writes = || vec![chunk_write(&t, 0, 0, vec![plain_batch(1, 10)])];
    let lost = catalog.commit_segment(commit_request("u1", writes())).await;
    assert_eq!(lost.err().unwrap().code(), tonic::Code::Unavailable);
    let after = catalog
        .commit_segment(commit_request("u2", writes()))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let gap = tokio::time::timeout(Duration::from_secs(5), live.next())
        .await
        .expect("the stream must move within the gap timeout, not wait for 4,096 commits")
        .expect("the stream is open");
    assert_eq!(gap.unwrap_err().code(), tonic::Code::DataLoss);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The resync: the offsets come from the store, and the stream goes on
    // from the commit after the hole.
    let resumed = SubscribeCommitsRequest {
        after_sequence: after.sequence - 1,
    };
    let mut stream = catalog.subscribe_commits(resumed).await.unwrap();
    let event = next_event(&mut stream).await;
    assert_eq!(event.sequence, after.sequence);
    assert_eq!(
        event.offsets[0].high_watermark, 2,
        "both commits are stored"
    );
    assert_eq!(faults.counts().unknown_outcomes, 1);
}
