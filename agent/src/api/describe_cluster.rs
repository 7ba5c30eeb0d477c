//! DescribeCluster: this agent is the cluster's one broker in `strata dev`.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::error_code;
use crate::server::Shared;

/// Answers DescribeCluster.
pub(crate) fn handle(
    shared: &Arc<Shared>,
    _version: i16,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let config = &shared.config;
    // Endpoint type 1 = brokers; 2 = controllers, which Strata does not have.
    if request.endpoint_type > 1 {
        return DescribeClusterResponse::default()
            .with_error_code(error_code::UNSUPPORTED_VERSION)
            .with_error_message(Some(str_bytes("Strata has no controller endpoints")))
            .with_endpoint_type(request.endpoint_type);
    }
    let brokers = config
        .brokers()
        .into_iter()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(str_bytes(&b.host))
                .with_port(i32::from(b.port))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(str_bytes(&config.cluster_id))
        .with_controller_id(BrokerId(config.node_id))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
