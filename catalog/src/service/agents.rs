//! The agent fleet: registrations (in the store) and leases (in memory, on
//! the catalog's clock).
//!
//! An agent registers at start and gets a new epoch, which is also its
//! Kafka node id, and a lease. Heartbeats extend the lease and return the
//! live fleet, so one RPC keeps every agent's Metadata fresh. A lease that
//! runs out is fenced in the store (the agent's commits fail from then on)
//! and the agent drops out of the fleet; it must register again.
//!
//! Leases are not persisted. A catalog that starts adopts every unfenced
//! registration with a fresh lease, and a heartbeat whose epoch matches an
//! unfenced registration re-adopts it, so a catalog restart does not make
//! agents re-register; agents that died meanwhile are fenced one lease
//! later.
//!
//! One async mutex serializes heartbeats, registrations and the reaper,
//! store calls included, so a heartbeat can never revive a lease the
//! reaper is fencing. Heartbeats come every lease/3 per agent, so the lock
//! is not contended.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use strata_catalog_api::proto::{
    AgentHeartbeatRequest, AgentHeartbeatResponse, AgentInfo, ListAgentsRequest,
    ListAgentsResponse, RegisterAgentRequest, RegisterAgentResponse,
};
use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use super::CatalogService;
use crate::store::{AgentRecord, AgentRegistration, Clock, SharedStore};
use crate::{Error, Result};

/// A live agent and when its lease ends.
#[derive(Debug, Clone)]
struct Lease {
    record: AgentRecord,
    expires_ms: i64,
}

/// The live fleet.
#[derive(Debug)]
pub(crate) struct AgentRegistry {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    lease_ms: u64,
    /// Live agents by agent id.
    live: Mutex<BTreeMap<String, Lease>>,
}

impl AgentRegistry {
    /// A registry that adopts the store's unfenced registrations with a
    /// fresh lease each.
    pub(crate) async fn start(
        store: SharedStore,
        clock: Arc<dyn Clock>,
        lease_ms: u64,
    ) -> Result<Arc<Self>> {
        let lease_ms = lease_ms.max(1);
        let now_ms = clock.now_ms();
        let live = store
            .list_agents()
            .await?
            .into_iter()
            .filter(|record| !record.fenced)
            .map(|record| {
                let lease = Lease {
                    record,
                    expires_ms: now_ms.saturating_add(lease_ms as i64),
                };
                (lease.record.agent_id.clone(), lease)
            })
            .collect();
        let registry = Arc::new(Self {
            store,
            clock,
            lease_ms,
            live: Mutex::new(live),
        });
        tokio::spawn(reaper(Arc::downgrade(&registry)));
        Ok(registry)
    }

    /// Registers an agent: a new epoch and a fresh lease.
    pub(crate) async fn register(
        &self,
        request: RegisterAgentRequest,
    ) -> Result<RegisterAgentResponse> {
        check_registration(&request)?;
        let mut live = self.live.lock().await;
        self.reap_locked(&mut live).await?;
        let record = self
            .store
            .register_agent(AgentRegistration {
                agent_id: request.agent_id,
                host: request.host,
                port: request.port,
                zone: request.zone,
                listeners: request.listeners,
            })
            .await?;
        let node_id = node_id(record.epoch)?;
        let epoch = record.epoch;
        tracing::info!(agent_id = %record.agent_id, epoch, zone = %record.zone, "agent registered");
        let lease = Lease {
            expires_ms: self.expiry(),
            record,
        };
        live.insert(lease.record.agent_id.clone(), lease);
        Ok(RegisterAgentResponse {
            epoch,
            node_id,
            lease_ms: self.lease_ms,
            agents: fleet(&live),
        })
    }

    /// Extends the lease of the agent's registration `epoch`; fails with
    /// `AgentFenced` when that registration is not live (expired, replaced,
    /// or unknown) and cannot be re-adopted.
    pub(crate) async fn heartbeat(
        &self,
        agent_id: &str,
        epoch: u64,
    ) -> Result<AgentHeartbeatResponse> {
        let mut live = self.live.lock().await;
        self.reap_locked(&mut live).await?;
        let expires_ms = self.expiry();
        match live.get_mut(agent_id) {
            Some(lease) if lease.record.epoch == epoch => lease.expires_ms = expires_ms,
            _ => {
                let record = self.adoptable(agent_id, epoch).await?;
                tracing::info!(agent_id, epoch, "agent re-adopted");
                live.insert(agent_id.to_string(), Lease { record, expires_ms });
            }
        }
        Ok(AgentHeartbeatResponse {
            lease_ms: self.lease_ms,
            agents: fleet(&live),
        })
    }

    /// The live agents, sorted by node id.
    pub(crate) async fn list(&self) -> Result<Vec<AgentInfo>> {
        let mut live = self.live.lock().await;
        self.reap_locked(&mut live).await?;
        Ok(fleet(&live))
    }

    /// Fences every agent whose lease has run out and drops it from the
    /// fleet. Runs on its own every quarter lease; tests with a manual
    /// clock call it directly.
    pub(crate) async fn reap(&self) -> Result<()> {
        let mut live = self.live.lock().await;
        self.reap_locked(&mut live).await
    }

    async fn reap_locked(&self, live: &mut BTreeMap<String, Lease>) -> Result<()> {
        let now_ms = self.clock.now_ms();
        let expired: Vec<(String, u64)> = live
            .values()
            .filter(|lease| lease.expires_ms <= now_ms)
            .map(|lease| (lease.record.agent_id.clone(), lease.record.epoch))
            .collect();
        for (agent_id, epoch) in expired {
            // Fence first: if the store fails, the lease stays and the next
            // reap tries again (the agent stays listed, never unfenced).
            self.store.fence_agent(&agent_id, epoch).await?;
            live.remove(&agent_id);
            tracing::warn!(agent_id, epoch, "agent lease expired; fenced");
        }
        Ok(())
    }

    /// The agent's registration if `epoch` is its current, unfenced one.
    async fn adoptable(&self, agent_id: &str, epoch: u64) -> Result<AgentRecord> {
        let record = self
            .store
            .list_agents()
            .await?
            .into_iter()
            .find(|record| record.agent_id == agent_id);
        let current = record
            .as_ref()
            .filter(|record| !record.fenced)
            .map(|record| record.epoch);
        match record {
            Some(record) if current == Some(epoch) => Ok(record),
            _ => Err(Error::AgentFenced {
                agent_id: agent_id.to_string(),
                epoch,
                current,
            }),
        }
    }

    fn expiry(&self) -> i64 {
        self.clock
            .now_ms()
            .saturating_add(i64::try_from(self.lease_ms).unwrap_or(i64::MAX))
    }
}

/// Reaps every quarter lease (real time; expiry itself is decided on the
/// catalog's clock) until the registry is dropped.
async fn reaper(registry: Weak<AgentRegistry>) {
    let period = match registry.upgrade() {
        Some(registry) => Duration::from_millis((registry.lease_ms / 4).clamp(10, 1_000)),
        None => return,
    };
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        // Skip a tick while a call holds the lock (it reaps too): waiting
        // would keep the registry alive after its service is dropped, and a
        // dead service must not fence anyone.
        let Ok(mut live) = registry.live.try_lock() else {
            continue;
        };
        if let Err(error) = registry.reap_locked(&mut live).await {
            tracing::warn!(%error, "fencing expired agents failed; retrying");
        }
    }
}

/// Most listeners one agent may register.
const LISTENERS_MAX: usize = 16;

fn check_registration(request: &RegisterAgentRequest) -> Result<()> {
    let invalid = |field, reason: &str| {
        Err(Error::InvalidArgument {
            field,
            reason: reason.to_string(),
        })
    };
    if request.agent_id.is_empty() {
        return invalid("agent_id", "empty");
    }
    if request.host.is_empty() {
        return invalid("host", "empty");
    }
    if request.port == 0 || request.port > u32::from(u16::MAX) {
        return invalid("port", "not a TCP port");
    }
    if request.listeners.len() > LISTENERS_MAX {
        return invalid("listeners", "more than 16");
    }
    for listener in &request.listeners {
        if listener.name.is_empty() || listener.host.is_empty() {
            return invalid("listeners", "a listener without a name or host");
        }
        if listener.port == 0 || listener.port > u32::from(u16::MAX) {
            return invalid("listeners", "a listener port that is not a TCP port");
        }
    }
    Ok(())
}

/// An epoch as a Kafka node id (int32). Epochs grow by one per
/// registration, so this fails only after two billion registrations.
fn node_id(epoch: u64) -> Result<i32> {
    i32::try_from(epoch).map_err(|_| Error::InvalidArgument {
        field: "agent epoch",
        reason: format!("{epoch} no longer fits a Kafka node id"),
    })
}

/// The live agents as the wire shows them, sorted by node id.
fn fleet(live: &BTreeMap<String, Lease>) -> Vec<AgentInfo> {
    let mut agents: Vec<AgentInfo> = live
        .values()
        .filter_map(|lease| {
            let record = &lease.record;
            Some(AgentInfo {
                agent_id: record.agent_id.clone(),
                node_id: node_id(record.epoch).ok()?,
                host: record.host.clone(),
                port: record.port,
                zone: record.zone.clone(),
                epoch: record.epoch,
                listeners: record.listeners.clone(),
            })
        })
        .collect();
    agents.sort_by_key(|agent| agent.node_id);
    agents
}

// ---------- RPCs ----------

#[tracing::instrument(level = "debug", skip_all, fields(agent_id = %request.get_ref().agent_id))]
pub(super) async fn register_agent(
    service: &CatalogService,
    request: Request<RegisterAgentRequest>,
) -> Result<Response<RegisterAgentResponse>, Status> {
    Ok(Response::new(
        service.agents.register(request.into_inner()).await?,
    ))
}

#[tracing::instrument(level = "debug", skip_all, fields(agent_id = %request.get_ref().agent_id, epoch = request.get_ref().epoch))]
pub(super) async fn agent_heartbeat(
    service: &CatalogService,
    request: Request<AgentHeartbeatRequest>,
) -> Result<Response<AgentHeartbeatResponse>, Status> {
    let request = request.into_inner();
    Ok(Response::new(
        service
            .agents
            .heartbeat(&request.agent_id, request.epoch)
            .await?,
    ))
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn list_agents(
    service: &CatalogService,
    _request: Request<ListAgentsRequest>,
) -> Result<Response<ListAgentsResponse>, Status> {
    Ok(Response::new(ListAgentsResponse {
        agents: service.agents.list().await?,
    }))
}
