//! The client: bootstrap, the broker map from Metadata, one pooled
//! connection per broker, and request routing (any broker, a partition's
//! leader, a group's coordinator).

mod group;
mod topic;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{BrokerId, MetadataRequest, TopicName};
use kafka_protocol::protocol::{Request, StrBytes};
use serde::Serialize;
use tracing::debug;

pub use self::group::{GroupDescription, GroupListing, MemberDescription};
pub use self::topic::{OffsetSpec, ProducerRecord};
use crate::connection::{Connection, ConnectionConfig};
use crate::error::{Error, Result};

/// Settings of a [`Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of brokers to learn the cluster from; the first that
    /// answers is used.
    pub bootstrap: Vec<String>,
    /// The client id brokers log and show in group descriptions.
    pub client_id: String,
    /// How long to wait for a TCP connection.
    pub connect_timeout: Duration,
    /// How long to wait for each response.
    pub request_timeout: Duration,
}

impl ClientConfig {
    /// Settings for a comma-separated bootstrap list (`host:port,host:port`).
    pub fn new(bootstrap: &str) -> Self {
        Self {
            bootstrap: bootstrap
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            client_id: "strata-client".to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// A topic-partition pair.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

/// A broker of the cluster, from Metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokerMetadata {
    /// The broker's node id.
    pub node_id: i32,
    /// `host:port` of its Kafka listener.
    pub address: String,
}

/// A topic's partitions, from Metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicMetadata {
    /// The topic's name.
    pub name: String,
    /// Partition index to the leader's node id (-1: no leader).
    pub leaders: BTreeMap<i32, i32>,
}

/// The cluster as one Metadata response describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterMetadata {
    /// Every live broker.
    pub brokers: Vec<BrokerMetadata>,
    /// The controller's node id (-1 when unknown).
    pub controller_id: i32,
    /// The requested topics (all topics when none were named).
    pub topics: Vec<TopicMetadata>,
}

/// A connection pool over a Kafka-compatible cluster.
///
/// Methods take `&mut self`: requests on one client run one at a time. A
/// connection that fails is dropped and reopened by the next request.
#[derive(Debug)]
pub struct Client {
    bootstrap: Vec<String>,
    connection_config: ConnectionConfig,
    /// Node id to `host:port`, from the latest Metadata.
    brokers: BTreeMap<i32, String>,
    controller_id: i32,
    /// Open connections by `host:port`.
    connections: HashMap<String, Connection>,
    /// Group id to its coordinator's `host:port`.
    coordinators: HashMap<String, String>,
}

impl Client {
    /// Connects to the first bootstrap server that answers and loads the
    /// broker list.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        if config.bootstrap.is_empty() {
            return Err(Error::InvalidArgument(
                "no bootstrap server given; pass host:port".to_owned(),
            ));
        }
        let mut client = Self {
            bootstrap: config.bootstrap,
            connection_config: ConnectionConfig {
                client_id: config.client_id,
                connect_timeout: config.connect_timeout,
                request_timeout: config.request_timeout,
            },
            brokers: BTreeMap::new(),
            controller_id: -1,
            connections: HashMap::new(),
            coordinators: HashMap::new(),
        };
        client.metadata(Some(&[])).await?;
        Ok(client)
    }

    /// Fetches metadata for `topics` (`None`: every topic) without creating
    /// topics, and refreshes the broker map. A topic that fails (e.g.
    /// UNKNOWN_TOPIC_OR_PARTITION) fails the call.
    pub async fn metadata(&mut self, topics: Option<&[&str]>) -> Result<ClusterMetadata> {
        let response = self
            .call_any(i16::MAX, |version| metadata_request(version, topics))
            .await?;
        self.brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        self.controller_id = response.controller_id.0;
        let mut metadata = ClusterMetadata {
            brokers: self
                .brokers
                .iter()
                .map(|(&node_id, address)| BrokerMetadata {
                    node_id,
                    address: address.clone(),
                })
                .collect(),
            controller_id: self.controller_id,
            topics: Vec::with_capacity(response.topics.len()),
        };
        for topic in response.topics {
            let name = topic.name.map(|n| n.0.to_string()).unwrap_or_default();
            Error::check(topic.error_code, || format!("topic {name:?}"))?;
            let leaders = topic
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect();
            metadata.topics.push(TopicMetadata { name, leaders });
        }
        Ok(metadata)
    }

    /// The partition indexes of `topic`, in order.
    pub async fn partitions(&mut self, topic: &str) -> Result<Vec<i32>> {
        let metadata = self.metadata(Some(&[topic])).await?;
        Ok(metadata
            .topics
            .into_iter()
            .flat_map(|t| t.leaders.into_keys())
            .collect())
    }

    /// Sends a request to any broker: a known one, else a bootstrap server.
    async fn call_any<R: Request>(
        &mut self,
        cap: i16,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response> {
        let address = self.any_address().await?;
        self.call(&address, cap, build).await
    }

    /// Sends a request to broker `node_id`.
    async fn call_node<R: Request>(
        &mut self,
        node_id: i32,
        cap: i16,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response> {
        let address = self
            .brokers
            .get(&node_id)
            .cloned()
            .ok_or(Error::UnknownBroker { node_id })?;
        self.call(&address, cap, build).await
    }

    /// Sends `build(version)` to `address`, where `version` is the newest
    /// both sides implement (at most `cap`). Builders get the version so
    /// they only set fields that exist in it.
    async fn call<R: Request>(
        &mut self,
        address: &str,
        cap: i16,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response> {
        let connection = self.connection(address).await?;
        let result = match connection.version::<R>(cap) {
            Ok(version) => connection.send(version, &build(version)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &result
            && e.breaks_connection()
        {
            debug!(address, error = %e, "dropping the connection");
            self.connections.remove(address);
        }
        result
    }

    /// The pooled connection to `address`, opened if needed.
    async fn connection(&mut self, address: &str) -> Result<&mut Connection> {
        if !self.connections.contains_key(address) {
            let connection = Connection::open(address, &self.connection_config).await?;
            self.connections.insert(address.to_owned(), connection);
        }
        Ok(self
            .connections
            .get_mut(address)
            .expect("the connection was just inserted"))
    }

    /// An address that answers: an open connection, else the first broker
    /// or bootstrap server that accepts one.
    async fn any_address(&mut self) -> Result<String> {
        if let Some(connection) = self.connections.values().next() {
            return Ok(connection.address().to_owned());
        }
        let candidates: Vec<String> = self
            .brokers
            .values()
            .chain(&self.bootstrap)
            .cloned()
            .collect();
        let mut last = None;
        for address in &candidates {
            match self.connection(address).await {
                Ok(_) => return Ok(address.clone()),
                Err(e) => last = Some(e),
            }
        }
        let last = last.expect("candidates include the non-empty bootstrap list");
        Err(Error::Bootstrap {
            tried: candidates.join(", "),
            last: Box::new(last),
        })
    }

    /// Node ids of every known broker.
    fn broker_ids(&self) -> Vec<i32> {
        self.brokers.keys().copied().collect()
    }
}

/// A Metadata request that never creates topics.
fn metadata_request(version: i16, topics: Option<&[&str]>) -> MetadataRequest {
    let topics = topics.map(|names| {
        names
            .iter()
            .map(|&name| MetadataRequestTopic::default().with_name(Some(topic_name(name))))
            .collect()
    });
    let mut request = MetadataRequest::default().with_topics(topics);
    if version >= 4 {
        request.allow_auto_topic_creation = false;
    }
    request
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// `BrokerId` of a node id, for requests that carry one.
pub(crate) fn broker_id(node_id: i32) -> BrokerId {
    BrokerId(node_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_lists_split_on_commas() {
        let config = ClientConfig::new(" a:1, b:2 ,,");
        assert_eq!(config.bootstrap, ["a:1", "b:2"]);
    }

    #[test]
    fn metadata_requests_fit_old_versions() {
        // Goal: v0-v3 have no allow_auto_topic_creation, so it must stay
        // at its default there or encoding fails.
        use kafka_protocol::protocol::{Encodable, Message};
        for version in 0..=MetadataRequest::VERSIONS.max {
            let request = metadata_request(version, Some(&["t"]));
            let mut buf = bytes::BytesMut::new();
            assert!(request.encode(&mut buf, version).is_ok(), "v{version}");
        }
    }
}
