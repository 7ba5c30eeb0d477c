//! Every store write operation, written once over the row traits of
//! [`crate::store::rows`], one file per domain; the backends supply the
//! rows, and [`Command::apply`](crate::store::command::Command::apply) runs
//! an operation inside a backend's write transaction.

pub(crate) mod agents;
pub(crate) mod compaction;
pub(crate) mod groups;
pub(crate) mod lease;
pub(crate) mod producers;
pub(crate) mod scram;
pub(crate) mod topics;
pub(crate) mod transactions;
