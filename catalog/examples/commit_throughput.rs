//! Group-commit throughput of SqliteStore, or of PostgresStore when
//! `PG_URL` is set: a measurement, not a test. Run with
//! `cargo run -p strata-catalog --release --example commit_throughput`
//! (`CHUNKS=1` for one chunk per commit; `PG_URL=$(scripts/pg.sh url)` for
//! PostgreSQL, measured on a fresh database that is dropped afterwards).
//! Results go to BENCHMARKS.md.
#![expect(clippy::unwrap_used, reason = "a benchmark program")]

use std::sync::Arc;
use std::time::Instant;

use strata_catalog::conformance::{
    chunk_write, commit_request, create_topic, plain_batch, producer_batch,
};
use strata_catalog::{
    CatalogStore, PostgresOptions, PostgresStore, ProducerIdAndEpoch, SqliteOptions, SqliteStore,
};
use strata_catalog_api::proto::InitProducerIdRequest;

/// Goal: measure commits per second with many agents committing at once.
/// Method: 64 tasks, each an "agent" with its own idempotent producer,
/// commit segments of 8 partitions x 1 batch; report commits/s.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let pg_url = std::env::var("PG_URL").ok();
    let store: Arc<dyn CatalogStore> = match &pg_url {
        Some(url) => Arc::new(open_postgres(url).await),
        None => Arc::new(
            SqliteStore::open(dir.path().join("catalog.db"), SqliteOptions::default()).unwrap(),
        ),
    };
    let topic = create_topic(store.as_ref(), "throughput", 64).await;
    let (tasks, commits_per_task) = (64_u32, 400_u32);
    let chunks_per_commit: u32 = std::env::var("CHUNKS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let started = Instant::now();
    let mut handles = Vec::new();
    for task in 0..tasks {
        let store = Arc::clone(&store);
        let topic = topic.clone();
        handles.push(tokio::spawn(async move {
            let granted = store
                .init_producer_id(InitProducerIdRequest {
                    producer_id: -1,
                    producer_epoch: -1,
                    ..Default::default()
                })
                .await
                .unwrap()
                .granted;
            let producer = ProducerIdAndEpoch {
                producer_epoch: 0,
                ..granted
            };
            for index in 0..commits_per_task {
                let writes = (0..chunks_per_commit)
                    .map(|p| {
                        let partition = (task + p * 8) % 64;
                        let batches = if p == 0 {
                            vec![producer_batch(
                                producer,
                                i32::try_from(index).unwrap() * 10,
                                10,
                            )]
                        } else {
                            vec![plain_batch(10, 1)]
                        };
                        chunk_write(&topic, partition, u64::from(p) * 4096, batches)
                    })
                    .collect();
                let request = commit_request(&format!("t{task}-{index}"), writes);
                let response = store.commit_segment(request).await.unwrap().response;
                assert_eq!(response.chunks[0].batches[0].error_code, 0);
            }
        }));
    }
    for handle in handles {
        handle.await.unwrap();
    }
    let elapsed = started.elapsed();
    let commits = f64::from(tasks * commits_per_task);
    let kind = if pg_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    eprintln!(
        "{kind}: {commits} commits ({chunks_per_commit} chunks each) in {elapsed:?}: {:.0} commits/s",
        commits / elapsed.as_secs_f64()
    );
    drop(store);
    if let Some(url) = &pg_url {
        admin(
            url,
            &format!("DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"),
        )
        .await;
    }
}

/// The database the PostgreSQL measurement creates and drops.
const BENCH_DATABASE: &str = "strata_commit_throughput";

/// A PostgresStore on a fresh database of the server at `url`.
async fn open_postgres(url: &str) -> PostgresStore {
    admin(
        url,
        &format!("DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)"),
    )
    .await;
    admin(url, &format!("CREATE DATABASE {BENCH_DATABASE}")).await;
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.dbname(BENCH_DATABASE);
    PostgresStore::open_config(config, PostgresOptions::default())
        .await
        .unwrap()
}

/// Runs one statement on the database at `url`.
async fn admin(url: &str, statement: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    client.batch_execute(statement).await.unwrap();
    drop(client);
    driver.await.unwrap().unwrap();
}
