//! The Strata catalog: topics and configs, the per-partition index of
//! segment chunks, high watermarks, and producer ids and sequences.
//!
//! Agents write record batches to object storage and then *commit* each
//! segment here; the catalog assigns every accepted batch its offsets in one
//! atomic step (with Kafka's idempotent-producer checks in the same step),
//! and pushes each commit to subscribed agents over the commit stream.
//! Its [`GroupCoordinator`] serves Kafka's consumer-group APIs (forwarded
//! by agents) and keeps committed offsets.
//!
//! - [`CatalogStore`] is the persistence trait, with [`SqliteStore`] (one
//!   embedded SQLite file, group commit on a writer thread) as its first
//!   implementation. Every store must pass the `conformance` suite (behind
//!   the `conformance` feature, for tests).
//! - [`CatalogService`] implements the gRPC service over any store:
//!   validation, Kafka error codes, and the commit stream. Run it with
//!   [`serve`], or call it in process through
//!   [`strata_catalog_api::InProcess`].
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use strata_catalog::{CatalogService, ServiceOptions, SqliteOptions, serve};
//! use strata_catalog_api::{CatalogApi, InProcess};
//! use tokio_util::sync::CancellationToken;
//!
//! let service = CatalogService::open_sqlite(
//!     "catalog.db",
//!     SqliteOptions::default(),
//!     ServiceOptions::default(),
//! )
//! .await?;
//! // In process (`strata dev`):
//! let catalog: &dyn CatalogApi = &InProcess(service.clone());
//! // Or over gRPC:
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9093").await?;
//! serve(listener, service, CancellationToken::new()).await?;
//! # let _ = catalog;
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs, unreachable_pub)]

#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
pub mod error_code;
mod group;
mod producer;
mod service;
mod store;

pub use error::{Error, ErrorKind, Result};
pub use group::{GroupCoordinator, GroupError, GroupOptions};
pub use service::{
    ACTIVE_CATALOG_HEADER, CatalogMetrics, CatalogService, CommitFaultCounts, CommitFaultPlan,
    CommitFaults, HaCatalog, HaOptions, HaRouter, RpcMetrics, ServiceOptions, serve, serve_ha,
    validate_topic_name,
};
pub use store::postgres::{PostgresOptions, PostgresStore};
pub use store::sqlite::{SqliteOptions, SqliteStore};
pub use store::{
    AgentRecord, AgentRegistration, CatalogLease, CatalogStore, ChunkLookup, Clock, CommitOutcome,
    CommittedOffset, ConfigChange, ConsumerGroupRecord, ConsumerMemberRecord, ConsumerMemberState,
    DeadObject, DeleteRecordsOutcome, DeletedTopic, ExpiredAborts, GroupMemberRecord, GroupRecord,
    InitProducerOutcome, LeaseClaim, LeaseStatus, MAX_COMMIT_AGE_MS_DEFAULT, MemberProtocol,
    NewTopic, PartitionOffsets, ProducerIdAndEpoch, ReplaceOutcome, SharedStore,
    SubscribedTopicRecord, SystemClock, TopicPartitionsRecord, TopicRef, TxnDescription,
    TxnOutcome, TxnRequest, TxnSummary,
};
pub use strata_catalog_api::topic_config;
