//! The agent registry: registrations with globally unique epochs
//! (`meta.next_agent_epoch`), fencing, listing.

use rusqlite::{Connection, OptionalExtension, params};

use super::writer::WriteContext;
use crate::store::commit_plan::AgentFence;
use crate::store::{AgentRecord, AgentRegistration};
use crate::{Error, Result};

/// Registers an agent under a new epoch (see
/// `CatalogStore::register_agent`).
pub(super) fn register(
    context: &mut WriteContext<'_>,
    registration: &AgentRegistration,
) -> Result<AgentRecord> {
    let connection = context.connection;
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
            context.now_ms
        ])?;
    Ok(AgentRecord {
        agent_id: registration.agent_id.clone(),
        epoch: to_epoch(epoch)?,
        host: registration.host.clone(),
        port: registration.port,
        zone: registration.zone.clone(),
        registered_ms: context.now_ms,
        fenced: false,
    })
}

/// Fences the agent's registration of `epoch` if it is still current (see
/// `CatalogStore::fence_agent`).
pub(super) fn fence(context: &mut WriteContext<'_>, agent_id: &str, epoch: u64) -> Result<bool> {
    let Ok(epoch) = i64::try_from(epoch) else {
        return Ok(false);
    };
    context
        .connection
        .prepare_cached("UPDATE agents SET fenced = 1 WHERE agent_id = ?1 AND epoch = ?2")?
        .execute(params![agent_id, epoch])?;
    let fenced: Option<bool> = context
        .connection
        .prepare_cached("SELECT fenced FROM agents WHERE agent_id = ?1 AND epoch = ?2")?
        .query_row(params![agent_id, epoch], |row| row.get(0))
        .optional()?;
    Ok(fenced == Some(true))
}

/// Every registration, sorted by agent id.
pub(super) fn list(connection: &Connection) -> Result<Vec<AgentRecord>> {
    let mut statement = connection.prepare_cached(
        "SELECT agent_id, epoch, host, port, zone, registered_ms, fenced
         FROM agents ORDER BY agent_id",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, u32>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, i64>(5)?,
            row.get::<_, bool>(6)?,
        ))
    })?;
    rows.map(|row| {
        let (agent_id, epoch, host, port, zone, registered_ms, fenced) = row?;
        Ok(AgentRecord {
            agent_id,
            epoch: to_epoch(epoch)?,
            host,
            port,
            zone,
            registered_ms,
            fenced,
        })
    })
    .collect()
}

/// The agent's registration, for a commit's fencing check.
pub(super) fn load_fence(connection: &Connection, agent_id: &str) -> Result<Option<AgentFence>> {
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

fn to_epoch(value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Corrupt {
        what: format!("agent epoch {value}"),
    })
}
