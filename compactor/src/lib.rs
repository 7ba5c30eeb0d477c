//! Strata's compactor: rewrites old segment chunks per partition as
//! Parquet, enforces retention and deletes objects nothing references.
//!
//! The service ([`Compactor`], run by `strata compactor` and `strata dev`)
//! plans work from the catalog, claims partitions, enforces retention,
//! swaps Parquet files in and collects garbage; see its module docs. The
//! file format it writes (schema, writer, reader) is the `strata-parquet`
//! crate, which the agent reads with on the fetch path.
#![warn(missing_docs)]

mod service;

pub use service::{
    Clock, Compactor, CompactorConfig, CompactorMetrics, IdGen, PassReport, PipelineStep,
    ServiceError, SystemClock, SystemIds,
};
