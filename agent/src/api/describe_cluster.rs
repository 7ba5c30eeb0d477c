//! DescribeCluster: the live agents (the fixed fleet in `strata dev`).

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::error_code;
use crate::security::RequestContext;
use crate::server::Shared;

/// Answers DescribeCluster.
pub(crate) fn handle(
    shared: &Arc<Shared>,
    context: &RequestContext,
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
    let fleet = shared.fleet.view();
    let brokers = fleet
        .members
        .iter()
        .map(|b| {
            let (host, port) = b.address(&context.listener);
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(str_bytes(host))
                .with_port(i32::from(port))
                .with_rack(b.zone.as_deref().map(str_bytes))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(1)
        .with_cluster_id(str_bytes(&config.cluster_id))
        .with_controller_id(BrokerId(fleet.node_id))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(i32::MIN)
}
