//! The agent fleet in the service: registration, leases on the catalog's
//! clock (a manual clock here), the reaper's fencing, and re-adoption after
//! a catalog restart. Over a real SqliteStore through the in-process API
//! (the same generated server trait gRPC uses).

use std::sync::Arc;

use strata_catalog::conformance::{ManualClock, chunk_write, commit_request, plain_batch};
use strata_catalog::{CatalogService, GroupOptions, ServiceOptions, SqliteOptions};
use strata_catalog_api::proto::*;
use strata_catalog_api::{CatalogApi, InProcess};

const LEASE_MS: u64 = 1_000;

async fn open(dir: &tempfile::TempDir, clock: &Arc<ManualClock>) -> InProcess<CatalogService> {
    let options = ServiceOptions {
        agent_lease_ms: LEASE_MS,
        groups: GroupOptions {
            clock: clock.clone(),
            ..GroupOptions::default()
        },
        ..ServiceOptions::default()
    };
    let sqlite = SqliteOptions {
        clock: clock.clone(),
        ..SqliteOptions::default()
    };
    InProcess(
        CatalogService::open_sqlite(dir.path().join("catalog.db"), sqlite, options)
            .await
            .expect("open the service"),
    )
}

async fn register(catalog: &dyn CatalogApi, agent_id: &str, zone: &str) -> RegisterAgentResponse {
    catalog
        .register_agent(RegisterAgentRequest {
            agent_id: agent_id.to_string(),
            host: "127.0.0.1".to_string(),
            port: 9092,
            zone: zone.to_string(),
            listeners: Vec::new(),
        })
        .await
        .expect("register")
}

async fn live(catalog: &dyn CatalogApi) -> Vec<(String, String)> {
    catalog
        .list_agents(ListAgentsRequest {})
        .await
        .expect("list agents")
        .agents
        .into_iter()
        .map(|agent| (agent.agent_id, agent.zone))
        .collect()
}

fn pair(agent_id: &str, zone: &str) -> (String, String) {
    (agent_id.to_string(), zone.to_string())
}

async fn heartbeat(
    catalog: &dyn CatalogApi,
    agent_id: &str,
    epoch: u64,
) -> Result<AgentHeartbeatResponse, tonic::Status> {
    catalog
        .agent_heartbeat(AgentHeartbeatRequest {
            agent_id: agent_id.to_string(),
            epoch,
        })
        .await
}

/// A one-record commit to partition 0 of `topic` under `epoch`.
fn commit(topic: &Topic, segment_id: &str, agent_id: &str, epoch: u64) -> CommitSegmentRequest {
    CommitSegmentRequest {
        agent_id: agent_id.to_string(),
        agent_epoch: epoch,
        ..commit_request(
            segment_id,
            vec![chunk_write(topic, 0, 0, vec![plain_batch(1, 1)])],
        )
    }
}

async fn topic(catalog: &dyn CatalogApi, name: &str) -> Topic {
    catalog
        .create_topic(CreateTopicRequest {
            name: name.to_string(),
            partition_count: 1,
            configs: Vec::new(),
            validate_only: false,
        })
        .await
        .expect("create topic")
        .topic
        .expect("created")
}

/// Goal: registered agents are listed (by node id, with zones and node id
/// = epoch), and a heartbeat returns the same fleet.
/// Method: register three agents, list, heartbeat one.
#[tokio::test]
async fn registered_agents_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let catalog = open(&dir, &clock).await;
    let a = register(&catalog, "a", "zone-a").await;
    let b = register(&catalog, "b", "zone-b").await;
    let c = register(&catalog, "c", "zone-c").await;
    assert_eq!(a.lease_ms, LEASE_MS);
    assert_eq!(i64::from(a.node_id), a.epoch as i64, "node id = epoch");
    assert!(a.node_id < b.node_id && b.node_id < c.node_id);
    assert_eq!(c.agents.len(), 3, "registration returns the fleet");
    let expected = vec![
        pair("a", "zone-a"),
        pair("b", "zone-b"),
        pair("c", "zone-c"),
    ];
    assert_eq!(live(&catalog).await, expected);
    let fleet = heartbeat(&catalog, "b", b.epoch).await.expect("heartbeat");
    let zones: Vec<_> = fleet.agents.iter().map(|a| a.zone.as_str()).collect();
    assert_eq!(zones, ["zone-a", "zone-b", "zone-c"]);
    assert_eq!(fleet.agents[1].node_id, b.node_id);
    assert_eq!(fleet.agents[1].port, 9092);
}

/// Goal: a lease runs out after `agent_lease_ms` without a heartbeat: the
/// agent drops out, is fenced (heartbeats and commits fail with
/// FAILED_PRECONDITION), and registering again brings it back under a new
/// epoch; heartbeats keep a lease alive.
/// Method: advance the manual clock past one agent's lease while another
/// heartbeats, then reap.
#[tokio::test]
async fn expired_lease_fences_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let catalog = open(&dir, &clock).await;
    let topic = topic(&catalog, "fleet").await;
    let a = register(&catalog, "a", "1").await;
    let b = register(&catalog, "b", "2").await;
    catalog
        .commit_segment(commit(&topic, "s1", "a", a.epoch))
        .await
        .expect("a live agent commits");

    clock.set(600);
    heartbeat(&catalog, "b", b.epoch)
        .await
        .expect("b heartbeats");
    clock.set(999);
    catalog.0.reap_agents().await.expect("reap");
    assert_eq!(live(&catalog).await.len(), 2, "a's lease has 1 ms left");
    clock.set(1_000);
    catalog.0.reap_agents().await.expect("reap");
    assert_eq!(live(&catalog).await, vec![pair("b", "2")]);

    let status = heartbeat(&catalog, "a", a.epoch).await.expect_err("fenced");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let status = catalog
        .commit_segment(commit(&topic, "s2", "a", a.epoch))
        .await
        .expect_err("a zombie cannot commit");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status}");
    let retry = catalog
        .commit_segment(commit(&topic, "s1", "a", a.epoch))
        .await
        .expect("a retry of a committed segment still gets its answer");
    assert_eq!(retry.chunks[0].batches[0].base_offset, 0);

    let again = register(&catalog, "a", "1").await;
    assert!(again.epoch > b.epoch);
    let committed = catalog
        .commit_segment(commit(&topic, "s3", "a", again.epoch))
        .await
        .expect("re-registered");
    assert_eq!(committed.chunks[0].batches[0].base_offset, 1);
    assert_eq!(live(&catalog).await.len(), 2);
}

/// Goal: a heartbeat arriving after its lease ran out is refused even
/// before the reaper ran (a paused agent cannot slip back in).
/// Method: advance past the lease and heartbeat without reaping.
#[tokio::test]
async fn late_heartbeat_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let catalog = open(&dir, &clock).await;
    let a = register(&catalog, "a", "").await;
    clock.set(5_000);
    let status = heartbeat(&catalog, "a", a.epoch).await.expect_err("late");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(live(&catalog).await.is_empty());
}

/// Goal: a catalog restart causes no churn: registrations are adopted
/// with a fresh lease, a heartbeat with the current epoch keeps the agent
/// (same epoch), a stale epoch is refused, and an agent that never comes
/// back is fenced one lease after the restart.
/// Method: register two agents, reopen the service on the same file,
/// heartbeat one, advance the clock, reap.
#[tokio::test]
async fn catalog_restart_readopts_agents() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let (a, b) = {
        let catalog = open(&dir, &clock).await;
        let a = register(&catalog, "a", "1").await;
        let b = register(&catalog, "b", "2").await;
        (a, b)
    };
    clock.set(10_000);
    let catalog = open(&dir, &clock).await;
    assert_eq!(live(&catalog).await.len(), 2, "adopted at start");
    let fleet = heartbeat(&catalog, "a", a.epoch).await.expect("re-adopted");
    assert_eq!(fleet.agents[0].epoch, a.epoch, "no new epoch");
    let status = heartbeat(&catalog, "b", b.epoch + 100)
        .await
        .expect_err("not b's epoch");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);

    clock.set(10_600);
    heartbeat(&catalog, "a", a.epoch)
        .await
        .expect("a heartbeats");
    clock.set(11_000);
    catalog.0.reap_agents().await.expect("reap");
    assert_eq!(
        live(&catalog).await,
        vec![pair("a", "1")],
        "b never came back"
    );
    let status = heartbeat(&catalog, "b", b.epoch).await.expect_err("fenced");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
}

/// Goal: malformed registrations are refused as caller bugs.
/// Method: one request per rule.
#[tokio::test]
async fn bad_registrations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::default());
    let catalog = open(&dir, &clock).await;
    let good = RegisterAgentRequest {
        agent_id: "a".to_string(),
        host: "h".to_string(),
        port: 1,
        zone: String::new(),
        listeners: Vec::new(),
    };
    for bad in [
        RegisterAgentRequest {
            agent_id: String::new(),
            ..good.clone()
        },
        RegisterAgentRequest {
            host: String::new(),
            ..good.clone()
        },
        RegisterAgentRequest {
            port: 0,
            ..good.clone()
        },
        RegisterAgentRequest {
            port: 70_000,
            ..good.clone()
        },
        RegisterAgentRequest {
            listeners: vec![strata_catalog_api::proto::ListenerAddress {
                name: "EXTERNAL".to_string(),
                host: "h".to_string(),
                port: 0,
            }],
            ..good.clone()
        },
    ] {
        let status = catalog.register_agent(bad).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
    catalog.register_agent(good).await.expect("accepted");
}
