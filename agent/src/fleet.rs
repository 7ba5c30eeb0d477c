//! The agent fleet as this agent sees it: its own registration (epoch,
//! node id) and the live agents that Metadata lists as brokers.
//!
//! In production mode ([`AgentConfig::register`]) the agent registers with
//! the catalog, heartbeats every third of its lease (each heartbeat returns
//! the live fleet, so Metadata follows joins and deaths), and registers
//! again when the catalog says it is fenced. Its epoch goes into every
//! commit, so a zombie (an agent paused past its lease) cannot commit. In
//! `strata dev` the fleet is fixed: the configured peers, epoch 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_catalog_api::CatalogApi;
use strata_catalog_api::proto::{AgentHeartbeatRequest, AgentInfo, RegisterAgentRequest};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uuid::Uuid;

use crate::config::AgentConfig;

/// One agent as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The agent's id: stable across its restarts, unlike its node id
    /// (a new epoch per registration), so leaders are spread by it.
    pub(crate) agent_id: String,
    pub(crate) node_id: i32,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Kafka's broker rack.
    pub(crate) zone: Option<String>,
    /// Advertised addresses per listener name; a listener not listed is
    /// served at `host:port`.
    pub(crate) listeners: Arc<[ListenerAddress]>,
}

/// One advertised listener of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerAddress {
    pub(crate) name: String,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Member {
    /// The address clients of `listener` are told for this agent.
    pub(crate) fn address(&self, listener: &str) -> (&str, u16) {
        self.listeners
            .iter()
            .find(|l| l.name == listener)
            .map_or((self.host.as_str(), self.port), |l| {
                (l.host.as_str(), l.port)
            })
    }
}

/// The advertised listeners of `config`.
fn own_listeners(config: &AgentConfig) -> Arc<[ListenerAddress]> {
    config
        .effective_listeners()
        .into_iter()
        .map(|l| ListenerAddress {
            name: l.name,
            host: l.advertise_host,
            port: l.advertise_port,
        })
        .collect()
}

/// A snapshot of the fleet.
#[derive(Debug, Clone)]
pub(crate) struct FleetView {
    /// This agent's node id.
    pub(crate) node_id: i32,
    /// This agent's epoch; 0 while unregistered (and always in dev).
    pub(crate) epoch: u64,
    /// The live agents, sorted by agent id; never empty (this agent is
    /// listed while it is not registered yet).
    pub(crate) members: Arc<Vec<Member>>,
    /// The last time the catalog answered a registration or heartbeat.
    last_contact: Option<Instant>,
    lease: Duration,
}

impl FleetView {
    /// The broker named leader of a partition: a stable hash of topic and
    /// partition over the live agents sorted by agent id (so an agent that
    /// restarts under a new node id keeps its partitions, and agents whose
    /// fleet view is a heartbeat behind still agree). Any agent accepts any
    /// partition; leaders only spread clients over agents.
    pub(crate) fn leader_of(&self, topic: &Uuid, partition: i32) -> i32 {
        pick(&self.members, topic, partition).map_or(self.node_id, |m| m.node_id)
    }

    /// Every live agent, the leader first (replica and ISR lists).
    pub(crate) fn replicas(&self, topic: &Uuid, partition: i32) -> Vec<i32> {
        let leader = self.leader_of(topic, partition);
        std::iter::once(leader)
            .chain(
                self.members
                    .iter()
                    .map(|m| m.node_id)
                    .filter(|&id| id != leader),
            )
            .collect()
    }

    /// For a consumer in `rack` (KIP-392): the agent it should fetch a
    /// partition from instead of this one (in zone `own_zone`), when this
    /// agent is in another zone and a live agent in `rack` exists.
    pub(crate) fn preferred_replica(
        &self,
        own_zone: Option<&str>,
        rack: &str,
        topic: &Uuid,
        partition: i32,
    ) -> Option<i32> {
        if rack.is_empty() || own_zone == Some(rack) {
            return None;
        }
        let local: Vec<Member> = self
            .members
            .iter()
            .filter(|m| m.zone.as_deref() == Some(rack))
            .cloned()
            .collect();
        pick(&local, topic, partition)
            .map(|m| m.node_id)
            .filter(|&id| id != self.node_id)
    }
}

/// A stable choice of one member per partition.
fn pick<'a>(members: &'a [Member], topic: &Uuid, partition: i32) -> Option<&'a Member> {
    if members.is_empty() {
        return None;
    }
    let hash = crc32c::crc32c(topic.as_bytes()) as usize;
    members.get((hash + partition.max(0) as usize) % members.len())
}

/// The fleet: a fixed one (dev) or one kept fresh by registration and
/// heartbeats.
#[derive(Debug)]
pub(crate) struct Fleet {
    view: watch::Sender<FleetView>,
    /// Present in production mode.
    registration: Option<Registration>,
    /// Wakes the heartbeat loop to register again.
    fenced: Notify,
    /// This agent's id and advertised listeners.
    own_id: String,
    own_listeners: Arc<[ListenerAddress]>,
}

#[derive(Debug)]
struct Registration {
    catalog: Arc<dyn CatalogApi>,
    request: RegisterAgentRequest,
}

impl Fleet {
    /// The fleet for `config`: fixed, or to be joined by [`Fleet::run`].
    pub(crate) fn new(config: &AgentConfig, catalog: Arc<dyn CatalogApi>) -> Self {
        let own = own_listeners(config);
        let members = config
            .brokers()
            .into_iter()
            .map(|b| Member {
                // Dev peers have no agent ids; their node ids order them.
                agent_id: format!("{:011}", b.node_id),
                node_id: b.node_id,
                host: b.host,
                port: b.port,
                zone: if b.node_id == config.node_id {
                    config.zone.clone()
                } else {
                    None
                },
                listeners: if b.node_id == config.node_id {
                    own.clone()
                } else {
                    Arc::from([])
                },
            })
            .collect();
        let view = FleetView {
            node_id: config.node_id,
            epoch: 0,
            members: Arc::new(members),
            last_contact: None,
            lease: Duration::ZERO,
        };
        let registration = config.register.then(|| Registration {
            catalog,
            request: RegisterAgentRequest {
                agent_id: config.agent_id.clone(),
                host: config.advertise_host.clone(),
                port: u32::from(config.advertise_port),
                zone: config.zone.clone().unwrap_or_default(),
                listeners: own
                    .iter()
                    .map(|l| strata_catalog_api::proto::ListenerAddress {
                        name: l.name.clone(),
                        host: l.host.clone(),
                        port: u32::from(l.port),
                    })
                    .collect(),
            },
        });
        Self {
            view: watch::Sender::new(view),
            registration,
            fenced: Notify::new(),
            own_id: config.agent_id.clone(),
            own_listeners: own,
        }
    }

    /// The current snapshot.
    pub(crate) fn view(&self) -> FleetView {
        self.view.borrow().clone()
    }

    /// Whether the agent may serve: always in dev; in production once
    /// registered, with the catalog's last answer within one lease.
    pub(crate) fn is_ready(&self) -> bool {
        if self.registration.is_none() {
            return true;
        }
        let view = self.view.borrow();
        view.epoch > 0
            && view
                .last_contact
                .is_some_and(|at| at.elapsed() < view.lease)
    }

    /// The epoch a flush taken now commits under (0 in dev).
    pub(crate) fn epoch(&self) -> u64 {
        self.view.borrow().epoch
    }

    /// An epoch to commit under, waiting up to `timeout` for a
    /// registration in production mode; `None` when there is none in time.
    pub(crate) async fn wait_epoch(&self, timeout: Duration) -> Option<u64> {
        if self.registration.is_none() {
            return Some(0);
        }
        let mut changes = self.view.subscribe();
        let registered = changes.wait_for(|view| view.epoch > 0);
        match tokio::time::timeout(timeout, registered).await {
            Ok(Ok(view)) => Some(view.epoch),
            _ => None,
        }
    }

    /// The catalog refused `epoch` (fenced): forget it and register again.
    pub(crate) fn fenced(&self, epoch: u64) {
        let dropped = self.view.send_if_modified(|view| {
            let current = view.epoch == epoch && epoch > 0;
            if current {
                view.epoch = 0;
            }
            current
        });
        if dropped {
            warn!(
                epoch,
                "this agent was fenced by the catalog; registering again"
            );
            self.fenced.notify_one();
        }
    }

    /// Registers and heartbeats until `stop` (production mode; returns at
    /// once in dev).
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        let Some(registration) = &self.registration else {
            return;
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            let view = self.view();
            let wait = if view.epoch == 0 {
                match registration
                    .catalog
                    .register_agent(registration.request.clone())
                    .await
                {
                    Ok(registered) => {
                        info!(
                            epoch = registered.epoch,
                            node_id = registered.node_id,
                            "registered with the catalog"
                        );
                        let lease = Duration::from_millis(registered.lease_ms.max(3));
                        self.update(
                            0,
                            registered.epoch,
                            registered.node_id,
                            lease,
                            &registered.agents,
                        );
                        backoff = Duration::from_millis(50);
                        lease / 3
                    }
                    Err(status) => {
                        warn!(%status, "registering with the catalog failed; retrying");
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                        backoff
                    }
                }
            } else {
                self.heartbeat(registration, &view).await
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.fenced.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One heartbeat; returns how long to wait before the next.
    async fn heartbeat(&self, registration: &Registration, view: &FleetView) -> Duration {
        let request = AgentHeartbeatRequest {
            agent_id: registration.request.agent_id.clone(),
            epoch: view.epoch,
        };
        match registration.catalog.agent_heartbeat(request).await {
            Ok(answer) => {
                let lease = Duration::from_millis(answer.lease_ms.max(3));
                self.update(view.epoch, view.epoch, view.node_id, lease, &answer.agents);
                lease / 3
            }
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                self.fenced(view.epoch);
                Duration::ZERO
            }
            Err(status) => {
                warn!(%status, "heartbeat to the catalog failed; retrying");
                (view.lease / 6).max(Duration::from_millis(10))
            }
        }
    }

    /// Takes a registration's or heartbeat's answer, made while this
    /// agent's epoch was `expected` (0 for a registration).
    fn update(
        &self,
        expected: u64,
        epoch: u64,
        node_id: i32,
        lease: Duration,
        agents: &[AgentInfo],
    ) {
        let mut members: Vec<Member> = agents
            .iter()
            .filter_map(|agent| {
                Some(Member {
                    agent_id: agent.agent_id.clone(),
                    node_id: agent.node_id,
                    host: agent.host.clone(),
                    port: u16::try_from(agent.port).ok()?,
                    zone: (!agent.zone.is_empty()).then(|| agent.zone.clone()),
                    listeners: if agent.agent_id == self.own_id {
                        self.own_listeners.clone()
                    } else {
                        agent
                            .listeners
                            .iter()
                            .filter_map(|l| {
                                Some(ListenerAddress {
                                    name: l.name.clone(),
                                    host: l.host.clone(),
                                    port: u16::try_from(l.port).ok()?,
                                })
                            })
                            .collect()
                    },
                })
            })
            .collect();
        members.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        self.view.send_modify(|view| {
            // A fence noticed while this call was in flight wins.
            if view.epoch != expected {
                return;
            }
            view.epoch = epoch;
            view.node_id = node_id;
            view.lease = lease;
            view.last_contact = Some(Instant::now());
            if !members.is_empty() {
                view.members = Arc::new(members);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node_id: i32, zone: &str) -> Member {
        Member {
            agent_id: format!("agent-{zone}"),
            node_id,
            host: "h".to_string(),
            port: 1,
            zone: Some(zone.to_string()),
            listeners: Arc::from([]),
        }
    }

    fn view(node_id: i32, members: Vec<Member>) -> FleetView {
        FleetView {
            node_id,
            epoch: 1,
            members: Arc::new(members),
            last_contact: None,
            lease: Duration::ZERO,
        }
    }

    /// Goal: leaders spread over every live agent, deterministically, and
    /// replica lists hold every agent with the leader first.
    #[test]
    fn leaders_spread_over_the_fleet() {
        let fleet = view(1, vec![member(1, "a"), member(5, "b"), member(9, "c")]);
        let topic = Uuid::from_u128(42);
        let leaders: std::collections::BTreeSet<i32> =
            (0..30).map(|p| fleet.leader_of(&topic, p)).collect();
        assert_eq!(leaders.into_iter().collect::<Vec<_>>(), [1, 5, 9]);
        for p in 0..30 {
            let replicas = fleet.replicas(&topic, p);
            assert_eq!(replicas[0], fleet.leader_of(&topic, p));
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [1, 5, 9]);
        }
    }

    /// Goal: an agent that registers again (new node id) keeps leading the
    /// same partitions, so views a heartbeat apart agree on the agent.
    #[test]
    fn leaders_survive_a_new_node_id() {
        let before = view(1, vec![member(1, "a"), member(5, "b"), member(9, "c")]);
        let after = view(1, vec![member(12, "a"), member(5, "b"), member(9, "c")]);
        let topic = Uuid::from_u128(3);
        for p in 0..30 {
            let renamed = |id| if id == 1 { 12 } else { id };
            assert_eq!(
                renamed(before.leader_of(&topic, p)),
                after.leader_of(&topic, p)
            );
        }
    }

    /// Goal: a consumer's rack sends it to an agent of its zone when this
    /// agent is elsewhere, and nowhere when this agent is in its zone, it
    /// has no rack, or its zone has no agent.
    #[test]
    fn preferred_replica_follows_the_rack() {
        let fleet = view(1, vec![member(1, "a"), member(5, "b"), member(9, "c")]);
        let topic = Uuid::from_u128(7);
        assert_eq!(fleet.preferred_replica(Some("a"), "b", &topic, 0), Some(5));
        assert_eq!(fleet.preferred_replica(Some("a"), "c", &topic, 3), Some(9));
        assert_eq!(fleet.preferred_replica(Some("a"), "a", &topic, 0), None);
        assert_eq!(fleet.preferred_replica(Some("a"), "", &topic, 0), None);
        assert_eq!(fleet.preferred_replica(Some("a"), "d", &topic, 0), None);
        assert_eq!(fleet.preferred_replica(None, "b", &topic, 0), Some(5));
    }
}
