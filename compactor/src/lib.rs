//! Strata's compactor: rewrites old segment chunks per partition as
//! Parquet, enforces retention and deletes objects nothing references.
