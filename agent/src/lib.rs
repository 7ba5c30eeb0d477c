//! The Strata agent: a stateless Kafka-protocol front end over object
//! storage.
//!
//! An agent accepts Kafka requests on its listener, validates produced record
//! batches, buffers the batches of every partition and writes them as ONE
//! segment object per flush ([`strata_segment`]), then makes ONE catalog
//! commit per flush that assigns offsets. Fetches map offsets to chunks
//! through an in-memory tail of each partition's index (fed by the catalog's
//! commit stream) and read byte ranges through a foyer block cache.
//!
//! ```no_run
//! # async fn example(catalog: std::sync::Arc<dyn strata_catalog_api::CatalogApi>,
//! #                  store: std::sync::Arc<dyn object_store::ObjectStore>) -> Result<(), Box<dyn std::error::Error>> {
//! use strata_agent::{Agent, AgentConfig};
//! let config = AgentConfig::dev("127.0.0.1:9092".parse()?, None);
//! let agent = Agent::start(config, catalog, store).await?;
//! agent.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod api;
pub mod cache;
mod config;
mod connection;
mod error;
mod error_code;
mod fault_store;
mod fleet;
pub mod frame;
mod index;
mod metrics;
mod parquet_tier;
mod reader;
mod reserving_alloc;
pub mod security;
mod server;
mod synced_local_store;
mod topics;
mod writer;

pub use config::{AgentConfig, BrokerAddress, Limits};
pub use error::{Error, Result};
pub use fault_store::{
    FaultControl, FaultCounts, FaultInjectingStore, FaultOp, FaultPlan, FaultRule, InjectedFault,
};
pub use reserving_alloc::{HUGE_BYTES, ReservingAllocator, limit_malloc_arenas};
pub use security::{
    ListenerConfig, Principal, PrincipalMapping, SaslMechanism, SecurityConfig, SecurityProtocol,
    TlsSettings,
};
pub use server::{Agent, Components};
pub use synced_local_store::SyncedLocalStore;

/// Tests run under the same allocator as the binary, so decoder tests see
/// hostile frames exactly as production does.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: ReservingAllocator = ReservingAllocator;
