//! Every store write operation, written once over the row traits of
//! [`crate::store::rows`]; the backends supply the rows.

pub(crate) mod agents;
pub(crate) mod compaction;
pub(crate) mod producers;
pub(crate) mod topics;
pub(crate) mod transactions;
