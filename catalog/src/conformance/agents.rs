//! Conformance of the agent registry and the fencing of commits by agent
//! epoch.

use strata_catalog_api::proto::CommitSegmentRequest;

use super::{chunk_write, commit, commit_request, create_topic, high_watermark, plain_batch};
use crate::Error;
use crate::store::{AgentRecord, AgentRegistration, CatalogStore, CommitOutcome};

/// Registers `agent_id` (zone `zone`, port 9092).
pub async fn register(store: &dyn CatalogStore, agent_id: &str, zone: &str) -> AgentRecord {
    store
        .register_agent(AgentRegistration {
            agent_id: agent_id.to_string(),
            host: format!("{agent_id}.example"),
            port: 9092,
            zone: zone.to_string(),
            listeners: vec![
                strata_catalog_api::proto::ListenerAddress {
                    name: "INTERNAL".to_string(),
                    host: format!("{agent_id}.example"),
                    port: 9092,
                },
                strata_catalog_api::proto::ListenerAddress {
                    name: "EXTERNAL".to_string(),
                    host: format!("{agent_id}-{zone}.public.example"),
                    port: 19092,
                },
            ],
        })
        .await
        .unwrap_or_else(|e| panic!("registering {agent_id}: {e}"))
}

async fn agent(store: &dyn CatalogStore, agent_id: &str) -> Option<AgentRecord> {
    store
        .list_agents()
        .await
        .expect("list agents")
        .into_iter()
        .find(|record| record.agent_id == agent_id)
}

/// Goal: every registration gets a new epoch, greater than every earlier
/// one of any agent; a fence applies only to the current epoch and is
/// idempotent; the listing shows each agent's latest registration.
/// Method: register two agents, re-register one, fence stale and current
/// epochs, list after each step.
pub async fn agent_registry(store: &dyn CatalogStore) {
    let a1 = register(store, "conformance-registry-a", "a").await;
    let b = register(store, "conformance-registry-b", "b").await;
    let a2 = register(store, "conformance-registry-a", "c").await;
    assert!(
        a1.epoch > 0,
        "epoch 0 means unfenced and is never handed out"
    );
    assert!(
        b.epoch > a1.epoch && a2.epoch > b.epoch,
        "epochs increase globally"
    );
    assert!(!a2.fenced && a2.zone == "c" && a2.port == 9092);
    let listed: Vec<AgentRecord> = store
        .list_agents()
        .await
        .expect("list agents")
        .into_iter()
        .filter(|record| record.agent_id.starts_with("conformance-registry-"))
        .collect();
    assert_eq!(
        listed,
        vec![a2.clone(), b.clone()],
        "latest registrations, by id"
    );

    assert!(
        !store
            .fence_agent(&a2.agent_id, a1.epoch)
            .await
            .expect("fence"),
        "a stale epoch fences nothing"
    );
    assert_eq!(agent(store, &a2.agent_id).await, Some(a2.clone()));
    assert!(
        store
            .fence_agent(&a2.agent_id, a2.epoch)
            .await
            .expect("fence")
    );
    assert!(
        store
            .fence_agent(&a2.agent_id, a2.epoch)
            .await
            .expect("fence again"),
        "fencing is idempotent"
    );
    let fenced = agent(store, &a2.agent_id).await.expect("still listed");
    assert!(fenced.fenced && fenced.epoch == a2.epoch);
    assert!(
        !store
            .fence_agent("conformance-registry-none", 1)
            .await
            .expect("fence")
    );
    let a3 = register(store, &a2.agent_id, "a").await;
    assert!(
        a3.epoch > a2.epoch && !a3.fenced,
        "registering again unfences"
    );
    assert_eq!(agent(store, &b.agent_id).await, Some(b), "others untouched");
}

fn is_agent_fenced(result: &Result<CommitOutcome, Error>) -> bool {
    matches!(result, Err(Error::AgentFenced { .. }))
}

/// Goal: a commit with `agent_epoch > 0` succeeds only from the agent's
/// current, unfenced registration, checked in the commit's transaction;
/// a rejected commit leaves no trace; a retry of an already committed
/// segment still gets its stored answer; epoch 0 stays unfenced.
/// Method: commit under each kind of epoch and check results and the high
/// watermark.
pub async fn commit_fencing(store: &dyn CatalogStore) {
    let topic = create_topic(store, "conformance.fencing", 1).await;
    let agent_id = "conformance-fencing";
    let request = |segment_id: &str, epoch: u64| CommitSegmentRequest {
        agent_id: agent_id.to_string(),
        agent_epoch: epoch,
        ..commit_request(
            segment_id,
            vec![chunk_write(&topic, 0, 0, vec![plain_batch(1, 1)])],
        )
    };
    let unknown = store.commit_segment(request("fencing-unknown", 7)).await;
    assert!(
        is_agent_fenced(&unknown),
        "an unregistered agent: {unknown:?}"
    );

    let first = register(store, agent_id, "a").await;
    let committed = commit(store, request("fencing-1", first.epoch)).await;
    assert_eq!(committed.chunks[0].batches[0].base_offset, 0);
    let wrong = store
        .commit_segment(request("fencing-wrong", first.epoch + 1_000))
        .await;
    assert!(
        is_agent_fenced(&wrong),
        "an epoch never handed out: {wrong:?}"
    );
    commit(store, request("fencing-dev", 0)).await;
    assert_eq!(
        high_watermark(store, &topic, 0).await,
        2,
        "epoch 0 is unfenced"
    );

    assert!(
        store
            .fence_agent(agent_id, first.epoch)
            .await
            .expect("fence")
    );
    let zombie = store
        .commit_segment(request("fencing-zombie", first.epoch))
        .await;
    assert!(is_agent_fenced(&zombie), "a fenced agent: {zombie:?}");
    if let Err(error) = &zombie {
        assert_eq!(error.kind(), crate::ErrorKind::Fenced);
    }
    assert_eq!(high_watermark(store, &topic, 0).await, 2, "no trace of it");
    let retry = commit(store, request("fencing-1", first.epoch)).await;
    assert_eq!(
        retry, committed,
        "a retry of a committed segment is answered first"
    );

    let second = register(store, agent_id, "a").await;
    let stale = store
        .commit_segment(request("fencing-stale", first.epoch))
        .await;
    assert!(
        is_agent_fenced(&stale),
        "the old epoch after re-registering: {stale:?}"
    );
    let fresh = commit(store, request("fencing-2", second.epoch)).await;
    assert_eq!(fresh.chunks[0].batches[0].base_offset, 2);
    assert_eq!(high_watermark(store, &topic, 0).await, 3);
}
