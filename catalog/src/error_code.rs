//! The Kafka error codes the catalog returns inside responses: the
//! workspace's one table, `strata_catalog_api::error_code`.

pub use strata_catalog_api::error_code::*;
