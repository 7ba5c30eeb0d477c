//! The conformance suite against `SqliteStore` on a temporary directory.

use std::sync::Arc;

use strata_catalog::{CatalogStore, SqliteOptions, SqliteStore, conformance};

fn open(path: &std::path::Path) -> Arc<dyn CatalogStore> {
    Arc::new(SqliteStore::open(path, SqliteOptions::default()).expect("open the store"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("catalog.db"));
    conformance::run_all(store.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("catalog.db"));
    conformance::concurrent_commits_are_contiguous(store, 32, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restart_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    conformance::restart_persistence(|| {
        let path = path.clone();
        async move { open(&path) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_group_restart_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    conformance::group_restart_persistence(|| {
        let path = path.clone();
        async move { open(&path) }
    })
    .await;
}

/// Goal: OffsetCommit throughput on SQLite reaches the target (5,000
/// commits/s) thanks to group commit. Method: 64 concurrent committers,
/// 8,000 single-partition commits; the bar asserted is lower (2,000/s) so
/// slow CI machines do not flake, and the rate is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_offset_commit_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("catalog.db"));
    let topic = conformance::create_topic(store.as_ref(), "throughput", 64).await;
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..64u32)
        .map(|worker| {
            let store = Arc::clone(&store);
            let topic = topic.clone();
            tokio::spawn(async move {
                for offset in 0..125 {
                    let commit = conformance::committed(&topic, worker, offset, "");
                    store
                        .commit_offsets(&format!("group-{}", worker % 8), vec![commit])
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rate = 8_000.0 / started.elapsed().as_secs_f64();
    eprintln!("offset commits per second: {rate:.0}");
    assert!(rate > 2_000.0, "{rate:.0} commits/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_with_fsync_passes_the_suite() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions {
        fsync: true,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(dir.path().join("catalog.db"), options).unwrap();
    conformance::commit_sequence_is_contiguous(&store).await;
    conformance::retried_commit_is_idempotent(&store).await;
}

/// A clock the test moves by hand.
#[derive(Debug, Default)]
struct ManualClock(std::sync::atomic::AtomicI64);

impl strata_catalog::Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Goal: producer state expires after `producer_id_expiration_ms`.
/// Method: a manual clock; produce, move past the expiration, produce again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_state_expires() {
    use std::sync::atomic::Ordering;
    use strata_catalog::conformance::{chunk_write, commit_request, create_topic, producer_batch};
    use strata_catalog_api::proto::InitProducerIdRequest;

    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let options = SqliteOptions {
        producer_id_expiration_ms: 1_000,
        clock: clock.clone(),
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open(dir.path().join("catalog.db"), options).unwrap();
    let topic = create_topic(&store, "expiry", 1).await;
    let init = InitProducerIdRequest {
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    let producer = store.init_producer_id(init).await.unwrap();
    let commit = |segment: &str, sequence| {
        let batch = producer_batch(producer, sequence, 1);
        commit_request(segment, vec![chunk_write(&topic, 0, 0, vec![batch])])
    };
    let code =
        |outcome: strata_catalog::CommitOutcome| outcome.response.chunks[0].batches[0].error_code;
    assert_eq!(
        code(store.commit_segment(commit("e1", 0)).await.unwrap()),
        0
    );
    clock.0.store(900, Ordering::SeqCst);
    assert_eq!(
        code(store.commit_segment(commit("e2", 1)).await.unwrap()),
        0,
        "still live"
    );
    let id = strata_catalog::conformance::topic_uuid(&topic);
    assert_eq!(store.describe_producers(id, 0).await.unwrap().len(), 1);
    clock.0.store(2_000, Ordering::SeqCst);
    let expired = code(store.commit_segment(commit("e3", 2)).await.unwrap());
    assert_eq!(
        expired,
        i32::from(strata_catalog::error_code::UNKNOWN_PRODUCER_ID)
    );
    assert!(store.describe_producers(id, 0).await.unwrap().is_empty());
    let again = InitProducerIdRequest {
        producer_id: producer.producer_id,
        producer_epoch: 0,
        ..Default::default()
    };
    let fresh = store.init_producer_id(again).await.unwrap();
    assert_ne!(
        fresh.producer_id, producer.producer_id,
        "an expired id is replaced"
    );
}

/// Goal: an exhausted epoch rotates to a new producer id (KIP-360).
/// Method: bump one producer until its epoch is exhausted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_epoch_takes_a_new_id() {
    use strata_catalog_api::proto::InitProducerIdRequest;

    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("catalog.db"), SqliteOptions::default()).unwrap();
    let init = InitProducerIdRequest {
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    let first = store.init_producer_id(init).await.unwrap();
    let mut current = first;
    while current.producer_id == first.producer_id {
        let bump = InitProducerIdRequest {
            producer_id: current.producer_id,
            producer_epoch: current.producer_epoch,
            ..Default::default()
        };
        current = store.init_producer_id(bump).await.unwrap();
    }
    assert_eq!(current.producer_epoch, 0);
    assert!(current.producer_id != first.producer_id);
}
