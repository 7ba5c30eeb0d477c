//! Agent rows: registrations with globally unique epochs (the
//! `agent_epochs` sequence).

use std::collections::HashMap;

use super::{Transaction, WriteContext};
use crate::Result;
use crate::store::AgentRegistration;
use crate::store::commit_plan::AgentFence;
use crate::store::postgres::to_u64;
use crate::store::rows::AgentRows;

impl AgentRows for WriteContext<'_, '_> {
    async fn register_agent(&mut self, registration: &AgentRegistration) -> Result<i64> {
        let row = self
            .query_one(
                "INSERT INTO agents (agent_id, epoch, host, port, zone, registered_ms, fenced)
                 VALUES ($1, nextval('agent_epochs'), $2, $3, $4, $5, FALSE)
                 ON CONFLICT (agent_id) DO UPDATE SET epoch = excluded.epoch,
                     host = excluded.host, port = excluded.port, zone = excluded.zone,
                     registered_ms = excluded.registered_ms, fenced = FALSE
                 RETURNING epoch",
                &[
                    &registration.agent_id,
                    &registration.host,
                    &i64::from(registration.port),
                    &registration.zone,
                    &self.now_ms,
                ],
            )
            .await?;
        self.execute(
            "DELETE FROM agent_listeners WHERE agent_id = $1",
            &[&registration.agent_id],
        )
        .await?;
        for (position, listener) in registration.listeners.iter().enumerate() {
            self.execute(
                "INSERT INTO agent_listeners (agent_id, position, name, host, port)
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &registration.agent_id,
                    &(position as i32),
                    &listener.name,
                    &listener.host,
                    &i64::from(listener.port),
                ],
            )
            .await?;
        }
        Ok(row.try_get(0)?)
    }

    async fn fence_agent(&mut self, agent_id: &str, epoch: i64) -> Result<bool> {
        let row = self
            .query_opt(
                "UPDATE agents SET fenced = TRUE WHERE agent_id = $1 AND epoch = $2
                 RETURNING fenced",
                &[&agent_id, &epoch],
            )
            .await?;
        Ok(row.is_some())
    }
}

/// The registrations of `agent_ids`, for the fencing check of a run of
/// commits; the rows stay share-locked until the transaction ends.
pub(in crate::store::postgres) async fn load_fences(
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
