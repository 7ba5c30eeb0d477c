//! Agent settings: plain data, kept apart from the components (catalog
//! client, object store) that are passed to [`crate::Agent::start`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
