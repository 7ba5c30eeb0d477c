//! The row-level reads and writes every store operation is written over.
//!
//! Each store operation (`ops/*.rs`) exists once, as an `async fn` generic
//! over these traits; each backend implements them over its open write
//! transaction with its own SQL and driver (`sqlite/rows/*.rs`,
//! `postgres/rows/*.rs`). The traits are grouped by domain, each extending
//! [`Rows`] (the transaction's clock, sequence and settings), so an
//! operation names what it touches.
//!
//! The methods are plain `async fn`s (no `async_trait`): operations are
//! generic, so every call is statically dispatched and no future is boxed.
//! PostgreSQL's futures wait on the server; SQLite's are always ready (its
//! driver is synchronous) and its writer thread polls an operation once
//! (`sqlite::writer::ready`).

use strata_catalog_api::proto::Topic;
use uuid::Uuid;

use crate::Result;
use crate::store::{AgentRegistration, NewTopic};

/// The open write transaction: its clock, commit-stream sequence and
/// settings.
pub(crate) trait Rows {
    /// The transaction's time (the catalog clock, read once per batch).
    fn now_ms(&self) -> i64;

    /// Kafka's `producer.id.expiration.ms`.
    fn producer_id_expiration_ms(&self) -> i64;

    /// Takes the next commit-stream sequence (persisted at commit, given
    /// back if the operation fails).
    fn next_sequence(&mut self) -> u64;
}

/// The agent registry.
pub(crate) trait AgentRows: Rows {
    /// Stores `registration` unfenced under a new epoch, greater than every
    /// epoch handed out before, replacing the agent's earlier registration;
    /// returns the epoch as stored.
    async fn register_agent(&mut self, registration: &AgentRegistration) -> Result<i64>;

    /// Fences the agent's registration of `epoch` if it is still current;
    /// returns whether a registration of `epoch` exists (now fenced).
    async fn fence_agent(&mut self, agent_id: &str, epoch: i64) -> Result<bool>;
}

/// Topics and their partitions.
pub(crate) trait TopicRows: Rows {
    /// The live topic named `name`.
    async fn topic_by_name(&mut self, name: &str) -> Result<Option<Topic>>;

    /// The live topic with id `topic_id`.
    async fn topic_by_id(&mut self, topic_id: Uuid) -> Result<Option<Topic>>;

    /// Inserts a topic row (no partitions) with its encoded `configs`,
    /// created now.
    async fn insert_topic(&mut self, topic: &NewTopic, configs: &str) -> Result<()>;

    /// Inserts empty partitions `from..to` of a topic.
    async fn insert_partitions(&mut self, topic_id: Uuid, from: u32, to: u32) -> Result<()>;

    /// Marks a topic deleted (now); its name becomes free.
    async fn mark_topic_deleted(&mut self, topic_id: &[u8]) -> Result<()>;

    /// The distinct objects the topic's chunks point into.
    async fn topic_object_keys(&mut self, topic_id: &[u8]) -> Result<Vec<String>>;

    /// Deletes the topic's rows of `table` (one of
    /// [`TOPIC_DATA_TABLES`](crate::store::topic_rules::TOPIC_DATA_TABLES)).
    async fn delete_topic_rows(&mut self, table: &str, topic_id: &[u8]) -> Result<()>;

    /// Sets a topic's partition count.
    async fn set_partition_count(&mut self, topic_id: &[u8], count: u32) -> Result<()>;

    /// Sets a topic's encoded explicit configs.
    async fn set_topic_configs(&mut self, topic_id: &[u8], configs: &str) -> Result<()>;
}

/// Chunks and the objects they point into.
pub(crate) trait ChunkRows: Rows {
    /// Makes every object of `object_keys` that no chunk references dead
    /// since now (an object already dead keeps its time; marker chunks'
    /// empty keys are skipped).
    async fn bury_unreferenced(&mut self, object_keys: &[String]) -> Result<()>;
}
