//! The conformance suite against `PostgresStore`, each test on a fresh,
//! uniquely named database of the server at `STRATA_TEST_PG_URL` (start
//! one with `scripts/pg.sh start`; `scripts/pg.sh url` prints the URL).
//! Without the variable the tests print a skip notice and pass, except
//! under `CI=true`, where they fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use strata_catalog::conformance::{chunk_write, commit_request, create_topic, plain_batch};
use strata_catalog::{CatalogStore, PostgresOptions, PostgresStore, conformance};
use strata_catalog_api::proto::InitProducerIdRequest;
use tokio_postgres::NoTls;

/// A database created for one test, dropped when the test passes.
struct TestDatabase {
    admin_url: String,
    name: String,
    config: tokio_postgres::Config,
}

impl TestDatabase {
    /// Creates `strata_test_<test>_<pid>_<n>`; `None` when the tests are
    /// skipped.
    async fn create(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var("STRATA_TEST_PG_URL") else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "STRATA_TEST_PG_URL is not set: run `scripts/pg.sh start` and export \
                 STRATA_TEST_PG_URL=$(scripts/pg.sh url)"
            );
            eprintln!(
                "skipping {test}: STRATA_TEST_PG_URL is not set (run scripts/pg.sh start, \
                 then export STRATA_TEST_PG_URL=$(scripts/pg.sh url))"
            );
            return None;
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "strata_test_{test}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin(
            &admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await;
        admin(&admin_url, &format!("CREATE DATABASE {name}")).await;
        let mut config: tokio_postgres::Config = admin_url.parse().expect("a valid URL");
        config.dbname(&name);
        Some(Self {
            admin_url,
            name,
            config,
        })
    }

    async fn open(&self) -> PostgresStore {
        self.open_with(PostgresOptions::default()).await
    }

    async fn open_with(&self, options: PostgresOptions) -> PostgresStore {
        PostgresStore::open_config(self.config.clone(), options)
            .await
            .expect("open the store")
    }

    async fn shared(&self) -> Arc<dyn CatalogStore> {
        Arc::new(self.open().await)
    }

    /// Drops the database (call at the end of a passing test).
    async fn drop_database(self) {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        admin(&self.admin_url, &statement).await;
    }
}

/// Runs one statement on the admin database.
async fn admin(url: &str, statement: &str) {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e} (is scripts/pg.sh start running?)"));
    let driver = tokio::spawn(connection);
    client
        .batch_execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    drop(client);
    let _ = driver.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_suite() {
    let Some(database) = TestDatabase::create("suite").await else {
        return;
    };
    let store = database.open().await;
    conformance::run_all(&store).await;
    store.close().await;
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_commits() {
    let Some(database) = TestDatabase::create("concurrent").await else {
        return;
    };
    let store = database.shared().await;
    conformance::concurrent_commits_are_contiguous(store, 32, 50).await;
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_persistence() {
    let Some(database) = TestDatabase::create("restart").await else {
        return;
    };
    conformance::restart_persistence(|| database.shared()).await;
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_group_restart_persistence() {
    let Some(database) = TestDatabase::create("group_restart").await else {
        return;
    };
    conformance::group_restart_persistence(|| database.shared()).await;
    database.drop_database().await;
}

/// Goal: two catalogs sharing one database (two processes) never assign
/// an offset, a commit sequence or a producer id twice. Method: two stores
/// on the same database, 16 committers each, plus producer ids from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_stores_share_one_database() {
    let Some(database) = TestDatabase::create("two_stores").await else {
        return;
    };
    let (first, second) = tokio::join!(database.open(), database.open());
    let stores: [Arc<dyn CatalogStore>; 2] = [Arc::new(first), Arc::new(second)];
    let topic = create_topic(stores[0].as_ref(), "shared", 2).await;
    let mut tasks = Vec::new();
    for task in 0..32_u32 {
        let store = Arc::clone(&stores[(task % 2) as usize]);
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for index in 0..20 {
                let write = chunk_write(&topic, index % 2, 0, vec![plain_batch(3, 0)]);
                let request = commit_request(&format!("shared-{task}-{index}"), vec![write]);
                let response = store.commit_segment(request).await.unwrap().response;
                let batch = response.chunks[0].batches[0];
                assert_eq!(batch.error_code, 0);
                seen.push((response.sequence, index % 2, batch.base_offset));
            }
            let init = InitProducerIdRequest {
                producer_id: -1,
                producer_epoch: -1,
                ..Default::default()
            };
            let producer = store
                .init_producer_id(init)
                .await
                .unwrap()
                .granted
                .producer_id;
            (seen, producer)
        }));
    }
    let mut sequences = Vec::new();
    let mut offsets = [Vec::new(), Vec::new()];
    let mut producers = Vec::new();
    for task in tasks {
        let (seen, producer) = task.await.unwrap();
        producers.push(producer);
        for (sequence, partition, offset) in seen {
            sequences.push(sequence);
            offsets[partition as usize].push(offset);
        }
    }
    sequences.sort_unstable();
    let expected: Vec<u64> = (1..=640).collect();
    assert_eq!(sequences, expected, "gap-free, unique sequences");
    for mut partition in offsets {
        partition.sort_unstable();
        let expected: Vec<i64> = (0..320).map(|i| i * 3).collect();
        assert_eq!(partition, expected, "unique, contiguous offsets");
    }
    producers.sort_unstable();
    producers.dedup();
    assert_eq!(producers.len(), 32, "unique producer ids");
    drop(stores);
    database.drop_database().await;
}

/// Goal: migrations are safe when several catalogs start at once.
/// Method: open four stores on a fresh database concurrently, then use one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_migrations() {
    let Some(database) = TestDatabase::create("migrations").await else {
        return;
    };
    let stores = futures::future::join_all((0..4).map(|_| database.open())).await;
    let topic = create_topic(&stores[3], "migrated", 1).await;
    assert_eq!(
        stores[0].list_topics(&[]).await.unwrap(),
        vec![topic],
        "one schema, shared"
    );
    drop(stores);
    database.drop_database().await;
}

/// Goal: OffsetCommit throughput on PostgreSQL (group commit); asserts a
/// low bar (1,000/s) so slow machines do not flake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_offset_commit_throughput() {
    let Some(database) = TestDatabase::create("offset_throughput").await else {
        return;
    };
    let store = database.shared().await;
    conformance::offset_commit_throughput(Arc::clone(&store), "postgres ", 1_000.0).await;
    drop(store);
    database.drop_database().await;
}

/// Goal: producer state expires after `producer_id_expiration_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_producer_state_expires() {
    let Some(database) = TestDatabase::create("expiry").await else {
        return;
    };
    let clock = Arc::new(conformance::ManualClock::default());
    let options = PostgresOptions {
        producer_id_expiration_ms: 1_000,
        clock: clock.clone(),
        ..PostgresOptions::default()
    };
    let store = database.open_with(options).await;
    conformance::producer_state_expires(&store, &clock).await;
    store.close().await;
    database.drop_database().await;
}

/// Goal: an exhausted epoch rotates to a new producer id (KIP-360).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_exhausted_epoch_takes_a_new_id() {
    let Some(database) = TestDatabase::create("exhausted").await else {
        return;
    };
    let store = database.open().await;
    conformance::exhausted_epoch_takes_a_new_id(&store).await;
    store.close().await;
    database.drop_database().await;
}

/// Goal: a lost connection gives retryable errors, and the store recovers
/// by itself. Method: terminate every server connection of the test
/// database, then commit with retries; every error must be retryable and
/// a retry must succeed, with offsets continuing where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_recovers_from_lost_connections() {
    let Some(database) = TestDatabase::create("reconnect").await else {
        return;
    };
    let store = database.open().await;
    let topic = create_topic(&store, "reconnect", 1).await;
    let write = || chunk_write(&topic, 0, 0, vec![plain_batch(2, 0)]);
    let first = store
        .commit_segment(commit_request("before", vec![write()]))
        .await
        .unwrap();
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        database.name
    );
    admin(&database.admin_url, &terminate).await;
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        match store
            .commit_segment(commit_request("after", vec![write()]))
            .await
        {
            Ok(outcome) => break outcome,
            Err(error) => {
                eprintln!("attempt {attempts} after the termination: {error}");
                assert!(error.is_retryable(), "not retryable: {error:?}");
                assert!(attempts < 5, "no recovery after {attempts} attempts");
            }
        }
    };
    assert_eq!(outcome.response.sequence, first.response.sequence + 1);
    assert_eq!(outcome.response.chunks[0].batches[0].base_offset, 2);
    let offsets = loop {
        match store
            .partition_offsets(conformance::topic_uuid(&topic), 0)
            .await
        {
            Ok(offsets) => break offsets,
            Err(error) => assert!(error.is_retryable(), "not retryable: {error:?}"),
        }
    };
    assert_eq!(offsets.high_watermark, 4);
    store.close().await;
    database.drop_database().await;
}

/// Goal: a database migrated by a newer build is refused, not damaged.
/// Method: record schema version 99, then open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_a_newer_schema() {
    let Some(database) = TestDatabase::create("newer_schema").await else {
        return;
    };
    database.open().await.close().await;
    let (client, connection) = database.config.connect(NoTls).await.unwrap();
    let driver = tokio::spawn(connection);
    client
        .batch_execute("INSERT INTO schema_version (version) VALUES (99)")
        .await
        .unwrap();
    drop(client);
    let _ = driver.await;
    let opened = PostgresStore::open_config(database.config.clone(), PostgresOptions::default())
        .await
        .map(|_| ());
    assert!(
        matches!(
            opened,
            Err(strata_catalog::Error::SchemaTooNew { found: 99, .. })
        ),
        "{opened:?}"
    );
    database.drop_database().await;
}

/// Goal: transactions past their timeout are aborted on the store's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_transaction_timeout_aborts() {
    let Some(database) = TestDatabase::create("txn_timeout").await else {
        return;
    };
    let clock = Arc::new(conformance::ManualClock::default());
    let options = PostgresOptions {
        clock: clock.clone(),
        ..PostgresOptions::default()
    };
    let store = database.open_with(options).await;
    conformance::transaction_timeout_aborts(&store, &clock).await;
    store.close().await;
    database.drop_database().await;
}

/// Goal: two catalogs on one PostgreSQL database: one holds the lease, the
/// other takes over after expiry, and the old one's writes are fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_lease_fencing() {
    let Some(database) = TestDatabase::create("lease").await else {
        return;
    };
    let clock = Arc::new(conformance::ManualClock::default());
    let options = PostgresOptions {
        clock: clock.clone(),
        ..PostgresOptions::default()
    };
    let a = database.open_with(options.clone()).await;
    let b = database.open_with(options).await;
    conformance::lease_fencing(&a, &b, &clock).await;
    a.close().await;
    b.close().await;
    database.drop_database().await;
}

/// Goal: objects older than `max_commit_age_ms` are neither committed nor
/// swapped in (issue #11 item 10: the orphan sweep never races a commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_objects_past_the_max_commit_age_are_refused() {
    let Some(database) = TestDatabase::create("commit_age").await else {
        return;
    };
    let clock = Arc::new(conformance::ManualClock::default());
    let options = PostgresOptions {
        max_commit_age_ms: 1_000,
        clock: clock.clone(),
        ..PostgresOptions::default()
    };
    let store = database.open_with(options).await;
    conformance::objects_past_the_max_commit_age_are_refused(&store, &clock).await;
    store.close().await;
    database.drop_database().await;
}
