//! Catalog high availability over real gRPC and a real SQLite file shared
//! by two catalogs: one serves, the other stands by and names it; a client
//! given both addresses follows the active one; a clean shutdown hands the
//! lease over at once. (The PostgreSQL version with kill -9, SIGSTOP and
//! real Kafka clients is tests/python/test_catalog_ha.py.)

use std::sync::Arc;
use std::time::Duration;

use strata_catalog::conformance::{chunk_write, commit_request, plain_batch};
use strata_catalog::{
    ACTIVE_CATALOG_HEADER, HaCatalog, HaOptions, ServiceOptions, SqliteOptions, SqliteStore,
};
use strata_catalog_api::proto::*;
use strata_catalog_api::{CatalogApi, GrpcCatalog};
use tokio_util::sync::CancellationToken;

struct Running {
    catalog: HaCatalog,
    address: String,
    lease: CancellationToken,
    server: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start(path: &std::path::Path, name: &str) -> Running {
    let store = SqliteStore::open(path, SqliteOptions::default()).expect("open the store");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let address = format!("http://{}", listener.local_addr().expect("bound"));
    let options = ServiceOptions {
        unfenced_commits: true,
        ..ServiceOptions::default()
    };
    let catalog = HaCatalog::new(
        Arc::new(store),
        options,
        HaOptions {
            holder: name.to_string(),
            address: address.clone(),
            lease_ms: 600,
            renew_interval_ms: 100,
        },
    );
    let lease = CancellationToken::new();
    let server = CancellationToken::new();
    let tasks = vec![
        tokio::spawn(catalog.clone().run(lease.clone())),
        tokio::spawn({
            let catalog = catalog.clone();
            let server = server.clone();
            async move {
                strata_catalog::serve_ha(listener, catalog, server)
                    .await
                    .expect("serve");
            }
        }),
    ];
    Running {
        catalog,
        address,
        lease,
        server,
        tasks,
    }
}

async fn wait_active(catalog: &HaCatalog) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !catalog.metrics().is_active() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("active within 5 s");
}

async fn stop(running: Running) {
    running.lease.cancel();
    running.server.cancel();
    for task in running.tasks {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stops")
            .expect("no panic");
    }
}

/// Goal: one active catalog per database, a standby that answers every
/// call UNAVAILABLE naming it, a client that follows the active one, and a
/// handover on clean shutdown that keeps every committed offset. Method:
/// two HaCatalogs on one SQLite file behind real gRPC; a GrpcCatalog given
/// the standby's address first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_names_the_active_catalog_and_takes_over_on_release() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let a = start(&path, "a").await;
    wait_active(&a.catalog).await;
    let b = start(&path, "b").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.catalog.metrics().is_active(), "two active catalogs");

    // The standby refuses, naming the active catalog.
    let standby = GrpcCatalog::connect_lazy(&b.address).unwrap();
    let refused = standby
        .list_topics(ListTopicsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert_eq!(
        refused.metadata().get(ACTIVE_CATALOG_HEADER).unwrap(),
        a.address.as_str()
    );
    assert!(
        refused.message().contains("standby"),
        "{}",
        refused.message()
    );

    // A client with both addresses, the standby's first, reaches `a`.
    let both = GrpcCatalog::connect_lazy(&format!("{},{}", b.address, a.address)).unwrap();
    let created = both
        .create_topic(CreateTopicRequest {
            name: "ha".to_string(),
            partition_count: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(created.error_code, 0, "{}", created.error_message);
    let topic = created.topic.unwrap();
    let commit =
        |id: &str| commit_request(id, vec![chunk_write(&topic, 0, 0, vec![plain_batch(2, 1)])]);
    let first = both.commit_segment(commit("ha-1")).await.unwrap();
    assert_eq!(first.chunks[0].high_watermark, 2);

    // `a` shuts down cleanly: `b` takes over within a few renew intervals
    // (not a lease), and the client follows with every offset kept.
    let handover = std::time::Instant::now();
    a.lease.cancel();
    wait_active(&b.catalog).await;
    assert!(
        handover.elapsed() < Duration::from_millis(500),
        "the released lease was taken after {:?} (the lease is 600 ms)",
        handover.elapsed()
    );
    stop(a).await;
    let second = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match both.commit_segment(commit("ha-2")).await {
                Ok(response) => return response,
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::Unavailable, "{status}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
    .await
    .expect("the client follows the new active catalog");
    assert_eq!(second.chunks[0].high_watermark, 4);
    assert_eq!(b.catalog.metrics().takeovers(), 1);
    stop(b).await;
}
