//! The agent registry: registrations with globally unique epochs (the
//! `agent_epochs` sequence), fencing, listing.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;

use super::to_u64;
use super::writer::{Transaction, WriteContext};
use crate::Result;
use crate::store::commit_plan::AgentFence;
use crate::store::{AgentRecord, AgentRegistration};

/// Registers an agent under a new epoch (see
/// `CatalogStore::register_agent`).
pub(super) async fn register(
    context: &WriteContext<'_, '_>,
    registration: &AgentRegistration,
) -> Result<AgentRecord> {
    let transaction = context.transaction;
    let statement = transaction
        .prepare_cached(
            "INSERT INTO agents (agent_id, epoch, host, port, zone, registered_ms, fenced)
             VALUES ($1, nextval('agent_epochs'), $2, $3, $4, $5, FALSE)
             ON CONFLICT (agent_id) DO UPDATE SET epoch = excluded.epoch,
                 host = excluded.host, port = excluded.port, zone = excluded.zone,
                 registered_ms = excluded.registered_ms, fenced = FALSE
             RETURNING epoch",
        )
        .await?;
    let row = transaction
        .query_one(
            &statement,
            &[
                &registration.agent_id,
                &registration.host,
                &i64::from(registration.port),
                &registration.zone,
                &context.now_ms,
            ],
        )
        .await?;
    Ok(AgentRecord {
        agent_id: registration.agent_id.clone(),
        epoch: to_u64("agent epoch", row.try_get(0)?)?,
        host: registration.host.clone(),
        port: registration.port,
        zone: registration.zone.clone(),
        registered_ms: context.now_ms,
        fenced: false,
    })
}

/// Fences the agent's registration of `epoch` if it is still current (see
/// `CatalogStore::fence_agent`).
pub(super) async fn fence(
    context: &WriteContext<'_, '_>,
    agent_id: &str,
    epoch: u64,
) -> Result<bool> {
    let Ok(epoch) = i64::try_from(epoch) else {
        return Ok(false);
    };
    let statement = context
        .transaction
        .prepare_cached(
            "UPDATE agents SET fenced = TRUE WHERE agent_id = $1 AND epoch = $2 RETURNING fenced",
        )
        .await?;
    let row = context
        .transaction
        .query_opt(&statement, &[&agent_id, &epoch])
        .await?;
    Ok(row.is_some())
}

/// Every registration, sorted by agent id.
pub(super) async fn list(client: &impl GenericClient) -> Result<Vec<AgentRecord>> {
    let statement = client
        .prepare_cached(
            "SELECT agent_id, epoch, host, port, zone, registered_ms, fenced
             FROM agents ORDER BY agent_id",
        )
        .await?;
    let rows = client.query(&statement, &[]).await?;
    rows.iter()
        .map(|row| {
            let port: i64 = row.try_get(3)?;
            Ok(AgentRecord {
                agent_id: row.try_get(0)?,
                epoch: to_u64("agent epoch", row.try_get(1)?)?,
                host: row.try_get(2)?,
                port: u32::try_from(port).map_err(|_| crate::Error::Corrupt {
                    what: format!("agent port {port}"),
                })?,
                zone: row.try_get(4)?,
                registered_ms: row.try_get(5)?,
                fenced: row.try_get(6)?,
            })
        })
        .collect()
}

/// The registrations of `agent_ids`, for the fencing check of a run of
/// commits; the rows stay share-locked until the transaction ends.
pub(super) async fn load_fences(
    transaction: &Transaction<'_>,
    agent_ids: Vec<String>,
) -> Result<HashMap<String, AgentFence>> {
    if agent_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let statement = transaction
        .prepare_cached(
            "SELECT agent_id, epoch, fenced FROM agents WHERE agent_id = ANY($1)
             ORDER BY agent_id FOR SHARE",
        )
        .await?;
    let rows = transaction.query(&statement, &[&agent_ids]).await?;
    rows.iter()
        .map(|row| {
            let fence = AgentFence {
                epoch: to_u64("agent epoch", row.try_get(1)?)?,
                fenced: row.try_get(2)?,
            };
            Ok((row.try_get(0)?, fence))
        })
        .collect()
}
