//! Agent settings: plain data, kept apart from the components (catalog
//! client, object store) that are passed to [`crate::Agent::start`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::security::{ListenerConfig, SecurityConfig, SecurityProtocol};

/// Settings of one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Kafka listener address.
    pub listen: SocketAddr,
    /// Every agent of the cluster clients should know of (this one
    /// included), as Metadata lists them. Empty = only this agent.
    pub peers: Vec<BrokerAddress>,
    /// Host and port clients are told to connect to (Metadata).
    pub advertise_host: String,
    /// See [`AgentConfig::advertise_host`].
    pub advertise_port: u16,
    /// The broker id this agent reports in Metadata.
    pub node_id: i32,
    /// The id this agent commits under (fencing key in production mode).
    pub agent_id: String,
    /// Production mode: register with the catalog, heartbeat, list the
    /// live fleet in Metadata and commit under the registration's epoch
    /// (node ids then come from the catalog, not `node_id`). Off in
    /// `strata dev`, whose in-process agents are a fixed fleet.
    pub register: bool,
    /// Availability zone (Kafka's `broker.rack`); consumers with a
    /// matching `client.rack` are sent to agents of their zone.
    pub zone: Option<String>,
    /// The cluster id reported to clients.
    pub cluster_id: String,
    /// Flush the produce buffer once its oldest batch is this old.
    pub flush_interval: Duration,
    /// Also flush as soon as no flush is in flight, instead of waiting for
    /// `flush_interval`: the lowest latency at low load, at the price of
    /// more (smaller) objects. On for `strata dev`; in production, where
    /// every object is a paid PUT, leave it off.
    pub flush_eager: bool,
    /// Flush the produce buffer once it holds this many bytes.
    pub flush_bytes: usize,
    /// Bytes buffered or in flight to the object store before produce
    /// requests wait (back-pressure).
    pub buffer_bytes_max: usize,
    /// Flushes uploading at once (their commits stay in flush order).
    pub uploads_in_flight_max: usize,
    /// Kafka's `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// Kafka's `num.partitions`: partitions of an auto-created topic or of a
    /// CreateTopics request with -1.
    pub default_partitions: u32,
    /// Kafka's `socket.request.max.bytes`: larger frames close the connection.
    pub request_bytes_max: usize,
    /// Prefix of every object key this agent writes.
    pub object_prefix: String,
    /// Block cache settings.
    pub cache: crate::cache::CacheConfig,
    /// How long a produce may wait for its flush to become durable before it
    /// is answered with REQUEST_TIMED_OUT.
    pub produce_timeout: Duration,
    /// Hard limits on what one client may ask of the agent.
    pub limits: Limits,
    /// The listeners (Kafka's `listeners` / `advertised.listeners`). Empty:
    /// one PLAINTEXT listener named `PLAINTEXT` on `listen`, advertised as
    /// `advertise_host:advertise_port`.
    pub listeners: Vec<ListenerConfig>,
    /// TLS, SASL and principal settings of the listeners.
    pub security: SecurityConfig,
}

/// Hard limits on what clients may ask of an agent (Kafka's broker
/// settings of the same names), so that no client, careless or hostile,
/// can wedge it or make it allocate without bound.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Kafka's `message.max.bytes`: the largest record batch of a topic
    /// without its own `max.message.bytes`. No topic's `max.message.bytes`
    /// raises the limit above `buffer_bytes_max`, which one batch could
    /// never fit in.
    pub message_max_bytes: usize,
    /// Kafka's `fetch.max.bytes`: the most record bytes one Fetch response
    /// carries, whatever the request's `max_bytes` (including 0 or less).
    pub fetch_max_bytes: usize,
    /// The most Fetch response bytes in memory at once, over every
    /// connection: a fetch reads with what is free of it (at least 1 MiB,
    /// waiting for that) and holds what its response needs until the
    /// client has read it.
    pub fetch_memory_bytes_max: usize,
    /// A response the client has not read whole this long after writing
    /// began closes the connection (and frees its memory).
    pub response_write_timeout: Duration,
    /// Kafka's `max.connections`: client connections open at once; a new
    /// connection over the limit is closed at once.
    pub max_connections: usize,
    /// Kafka's `max.connections.per.ip`: the same, per client address.
    pub max_connections_per_ip: usize,
    /// Kafka's `connections.max.idle.ms`: a connection with no request
    /// (and no response pending) for this long is closed.
    pub connections_max_idle: Duration,
    /// A request frame whose bytes have not all arrived this long after its
    /// first byte is dropped with its connection (slow-loris).
    pub request_read_timeout: Duration,
    /// The most partitions one topic may have (CreateTopics and
    /// CreatePartitions beyond it get INVALID_PARTITIONS).
    pub max_partitions_per_topic: u32,
    /// The most partitions of all topics together (requests beyond it get
    /// POLICY_VIOLATION).
    pub max_partitions: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            message_max_bytes: 1_048_588,
            fetch_max_bytes: 55 * 1024 * 1024,
            fetch_memory_bytes_max: 256 * 1024 * 1024,
            response_write_timeout: Duration::from_millis(30_000),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            connections_max_idle: Duration::from_millis(600_000),
            request_read_timeout: Duration::from_millis(30_000),
            max_partitions_per_topic: 10_000,
            max_partitions: 100_000,
        }
    }
}

impl AgentConfig {
    /// Settings for `strata dev`: a local agent on `listen`, caching under
    /// `data_dir`.
    pub fn dev(listen: SocketAddr, data_dir: Option<PathBuf>) -> Self {
        Self {
            listen,
            advertise_host: listen.ip().to_string(),
            advertise_port: listen.port(),
            node_id: 0,
            peers: Vec::new(),
            agent_id: "dev-agent-0".to_string(),
            register: false,
            zone: None,
            cluster_id: "strata-dev".to_string(),
            flush_interval: Duration::from_millis(5),
            flush_eager: true,
            flush_bytes: 4 * 1024 * 1024,
            buffer_bytes_max: 64 * 1024 * 1024,
            uploads_in_flight_max: 4,
            auto_create_topics: true,
            default_partitions: 1,
            request_bytes_max: 100 * 1024 * 1024,
            object_prefix: String::new(),
            cache: crate::cache::CacheConfig {
                memory_bytes: 256 * 1024 * 1024,
                disk_bytes: 1024 * 1024 * 1024,
                disk_dir: data_dir.map(|d| d.join("cache")),
                block_bytes: 1024 * 1024,
            },
            produce_timeout: Duration::from_secs(30),
            limits: Limits::default(),
            listeners: Vec::new(),
            security: SecurityConfig::default(),
        }
    }
}

/// One agent as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    /// Broker id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
}

impl AgentConfig {
    /// The listeners in effect: `listeners`, or one PLAINTEXT listener on
    /// `listen`. The first one is the agent's primary address (the one it
    /// registers with the catalog and `strata dev` peers know).
    pub fn effective_listeners(&self) -> Vec<ListenerConfig> {
        if !self.listeners.is_empty() {
            return self.listeners.clone();
        }
        vec![ListenerConfig {
            name: "PLAINTEXT".to_string(),
            protocol: SecurityProtocol::Plaintext,
            bind: self.listen,
            advertise_host: self.advertise_host.clone(),
            advertise_port: self.advertise_port,
        }]
    }

    /// The brokers clients are told about: the peers, or this agent alone.
    pub fn brokers(&self) -> Vec<BrokerAddress> {
        if self.peers.is_empty() {
            vec![BrokerAddress {
                node_id: self.node_id,
                host: self.advertise_host.clone(),
                port: self.advertise_port,
            }]
        } else {
            self.peers.clone()
        }
    }
}
