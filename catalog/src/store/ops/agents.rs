//! The agent registry: registrations with globally unique epochs, fencing.

use crate::store::rows::AgentRows;
use crate::store::{AgentRecord, AgentRegistration};
use crate::{Error, Result};

/// Registers an agent under a new epoch (see
/// `CatalogStore::register_agent`).
pub(crate) async fn register<R: AgentRows>(
    rows: &mut R,
    registration: &AgentRegistration,
) -> Result<AgentRecord> {
    let epoch = rows.register_agent(registration).await?;
    Ok(AgentRecord {
        agent_id: registration.agent_id.clone(),
        epoch: u64::try_from(epoch).map_err(|_| Error::Corrupt {
            what: format!("agent epoch {epoch}"),
        })?,
        host: registration.host.clone(),
        port: registration.port,
        zone: registration.zone.clone(),
        registered_ms: rows.now_ms(),
        fenced: false,
        listeners: registration.listeners.clone(),
    })
}

/// Fences the agent's registration of `epoch` if it is still current (see
/// `CatalogStore::fence_agent`).
pub(crate) async fn fence<R: AgentRows>(rows: &mut R, agent_id: &str, epoch: u64) -> Result<bool> {
    let Ok(epoch) = i64::try_from(epoch) else {
        return Ok(false);
    };
    rows.fence_agent(agent_id, epoch).await
}
