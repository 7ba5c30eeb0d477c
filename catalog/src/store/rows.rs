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

use crate::Result;
use crate::store::AgentRegistration;

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
