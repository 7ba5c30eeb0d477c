//! Agent rows: registrations with globally unique epochs
//! (`meta.next_agent_epoch`).

use rusqlite::{Connection, OptionalExtension, params};

use super::WriteContext;
use crate::store::AgentRegistration;
use crate::store::commit_plan::AgentFence;
use crate::store::rows::AgentRows;
use crate::{Error, Result};

impl AgentRows for WriteContext<'_> {
    async fn register_agent(&mut self, registration: &AgentRegistration) -> Result<i64> {
        let connection = self.connection;
        let epoch: i64 = connection
            .prepare_cached("SELECT value FROM meta WHERE key = 'next_agent_epoch'")?
            .query_row([], |row| row.get(0))?;
        connection
            .prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'next_agent_epoch'")?
            .execute([epoch + 1])?;
        connection
            .prepare_cached(
                "INSERT INTO agents (agent_id, epoch, host, port, zone, registered_ms, fenced)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
                 ON CONFLICT (agent_id) DO UPDATE SET epoch = excluded.epoch,
                     host = excluded.host, port = excluded.port, zone = excluded.zone,
                     registered_ms = excluded.registered_ms, fenced = 0",
            )?
            .execute(params![
                registration.agent_id,
                epoch,
                registration.host,
                registration.port,
                registration.zone,
                self.now_ms
            ])?;
        connection
            .prepare_cached("DELETE FROM agent_listeners WHERE agent_id = ?1")?
            .execute([&registration.agent_id])?;
        for (position, listener) in registration.listeners.iter().enumerate() {
            connection
                .prepare_cached(
                    "INSERT INTO agent_listeners (agent_id, position, name, host, port)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    registration.agent_id,
                    position as i64,
                    listener.name,
                    listener.host,
                    listener.port
                ])?;
        }
        Ok(epoch)
    }

    async fn fence_agent(&mut self, agent_id: &str, epoch: i64) -> Result<bool> {
        self.connection
            .prepare_cached("UPDATE agents SET fenced = 1 WHERE agent_id = ?1 AND epoch = ?2")?
            .execute(params![agent_id, epoch])?;
        let fenced: Option<bool> = self
            .connection
            .prepare_cached("SELECT fenced FROM agents WHERE agent_id = ?1 AND epoch = ?2")?
            .query_row(params![agent_id, epoch], |row| row.get(0))
            .optional()?;
        Ok(fenced == Some(true))
    }
}

/// The agent's registration, for a commit's fencing check.
pub(in crate::store::sqlite) fn load_fence(
    connection: &Connection,
    agent_id: &str,
) -> Result<Option<AgentFence>> {
    let row: Option<(i64, bool)> = connection
        .prepare_cached("SELECT epoch, fenced FROM agents WHERE agent_id = ?1")?
        .query_row([agent_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(epoch, fenced)| {
        Ok(AgentFence {
            epoch: to_epoch(epoch)?,
            fenced,
        })
    })
    .transpose()
}

/// A stored agent epoch, or `Corrupt`.
pub(in crate::store::sqlite) fn to_epoch(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Corrupt {
        what: format!("agent epoch {value}"),
    })
}
