//! A light async client for Kafka-compatible brokers (Strata, Apache Kafka),
//! written for administration: consumer groups, offsets, topics, and a
//! simple producer for tests and tools. It is what the `strata group` CLI
//! commands use.
//!
//! Messages are encoded and decoded by the `kafka-protocol` crate. Each
//! connection starts with ApiVersions and then uses, per API, the newest
//! version both sides implement. The client learns brokers from Metadata,
//! sends partition requests to the partition's leader and group requests to
//! the group's coordinator (FindCoordinator).
//!
//! Every failure is an [`Error`] whose message says what to do; Kafka error
//! codes arrive as [`Error::Kafka`], named as in Kafka's documentation (see
//! [`error_name`]), and [`Error::kind`] tells callers whether to retry.
//!
//! # Example
//!
//! ```no_run
//! use std::collections::BTreeMap;
//! use strata_client::{Client, ClientConfig, OffsetSpec, TopicPartition};
//!
//! # async fn example() -> strata_client::Result<()> {
//! let mut client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//! let group = client.describe_group("billing").await?;
//! if group.is_inactive() {
//!     let partition = TopicPartition::new("orders", 0);
//!     let earliest = client
//!         .list_offsets(&[partition.clone()], OffsetSpec::Earliest)
//!         .await?;
//!     let offset = earliest[&partition].unwrap_or(0);
//!     client
//!         .commit_offsets("billing", &BTreeMap::from([(partition, offset)]))
//!         .await?;
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod connection;
mod error;
mod kafka_client;

pub use crate::error::{Error, ErrorKind, Result, error_name};
pub use crate::kafka_client::{
    BrokerMetadata, Client, ClientConfig, ClusterMetadata, GroupDescription, GroupListing,
    MemberDescription, OffsetSpec, ProducerRecord, TopicMetadata, TopicPartition,
};
