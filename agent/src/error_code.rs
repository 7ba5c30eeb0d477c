//! Kafka error codes the agent answers with: the workspace's one table,
//! `strata_catalog_api::error_code`.

pub(crate) use strata_catalog_api::error_code::*;
