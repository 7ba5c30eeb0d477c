//! InitProducerId and DescribeProducers, answered by the catalog, which
//! owns producer ids, epochs and sequences.

use std::sync::Arc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId,
};
use strata_catalog_api::proto;
use tracing::warn;

use super::str_bytes;
use crate::error_code;
use crate::server::Shared;

/// Answers InitProducerId.
pub(crate) async fn init_producer_id(
    shared: &Arc<Shared>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let call = proto::InitProducerIdRequest {
        transactional_id: request
            .transactional_id
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        transaction_timeout_ms: request.transaction_timeout_ms,
        producer_id: request.producer_id.0,
        producer_epoch: i32::from(request.producer_epoch),
    };
    match shared.catalog.init_producer_id(call).await {
        Ok(r) => InitProducerIdResponse::default()
            .with_error_code(r.error_code as i16)
            .with_producer_id(ProducerId(r.producer_id))
            .with_producer_epoch(r.producer_epoch as i16),
        Err(status) => {
            warn!(%status, "catalog unavailable during InitProducerId");
            InitProducerIdResponse::default()
                .with_error_code(error_code::COORDINATOR_NOT_AVAILABLE)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        }
    }
}

/// Answers DescribeProducers.
pub(crate) async fn describe(
    shared: &Arc<Shared>,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let info = shared
            .topics
            .get(super::topic_str(&topic.name))
            .await
            .ok()
            .flatten();
        let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
        for index in topic.partition_indexes {
            let mut response = PartitionResponse::default().with_partition_index(index);
            match info.as_ref().filter(|i| i.has_partition(index)) {
                None => response.error_code = error_code::UNKNOWN_TOPIC_OR_PARTITION,
                Some(info) => {
                    let call = proto::DescribeProducersRequest {
                        topic_id: info.id.as_bytes().to_vec(),
                        partition: index as u32,
                    };
                    match shared.catalog.describe_producers(call).await {
                        Ok(r) => {
                            response.error_code = r.error_code as i16;
                            response.active_producers =
                                r.producers.into_iter().map(producer_state).collect();
                        }
                        Err(status) => {
                            response.error_code = error_code::REQUEST_TIMED_OUT;
                            response.error_message = Some(str_bytes(status.message()));
                        }
                    }
                }
            }
            partitions.push(response);
        }
        topics.push(
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DescribeProducersResponse::default().with_topics(topics)
}

fn producer_state(p: proto::ProducerState) -> ProducerState {
    ProducerState::default()
        .with_producer_id(ProducerId(p.producer_id))
        .with_producer_epoch(p.producer_epoch)
        .with_last_sequence(p.last_sequence)
        .with_last_timestamp(p.last_timestamp)
        .with_coordinator_epoch(p.coordinator_epoch)
        .with_current_txn_start_offset(p.current_txn_start_offset)
}
