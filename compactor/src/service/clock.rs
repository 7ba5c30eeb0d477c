//! The compactor's clock and ids: the workspace's one `Clock` and
//! `IdGen`, injected so tests can move time by hand.
//!
//! Ages (`strata.compaction.age.ms`, `retention.ms`) and grace periods are
//! measured on the clock. It should agree with the catalog's clock:
//! dead-object times are the catalog's, and the GC compares them with it.

pub use strata_catalog_api::clock::{Clock, IdGen, SystemClock, SystemIds};
