//! Producer RPCs: InitProducerId and DescribeProducers.

use std::sync::Arc;

use strata_catalog_api::proto::{
    DescribeProducersRequest, DescribeProducersResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerState,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::transactions::TRANSACTION_TIMEOUT_MAX_MS;
use super::{CatalogService, kafka, topic_id, unknown_partition};
use crate::{Result, error_code};

impl CatalogService {
    fn check_init_producer(request: &InitProducerIdRequest) -> Option<i16> {
        let fresh = request.producer_id == -1 && request.producer_epoch == -1;
        let existing =
            request.producer_id >= 0 && (0..=i32::from(i16::MAX)).contains(&request.producer_epoch);
        if !fresh && !existing {
            return Some(error_code::INVALID_REQUEST);
        }
        let timeout = request.transaction_timeout_ms;
        if !request.transactional_id.is_empty()
            && !(1..=TRANSACTION_TIMEOUT_MAX_MS).contains(&timeout)
        {
            return Some(error_code::INVALID_TRANSACTION_TIMEOUT);
        }
        None
    }

    async fn describe_partition_producers(
        &self,
        topic_id: Uuid,
        partition: u32,
    ) -> Result<Vec<ProducerState>> {
        // Unknown partitions answer UNKNOWN_TOPIC_OR_PARTITION, not an
        // empty list.
        self.store.partition_offsets(topic_id, partition).await?;
        self.store.describe_producers(topic_id, partition).await
    }
}

#[tracing::instrument(level = "debug", skip_all, fields(producer_id = request.get_ref().producer_id))]
pub(super) async fn init_producer_id(
    service: &CatalogService,
    request: Request<InitProducerIdRequest>,
) -> Result<Response<InitProducerIdResponse>, Status> {
    let request = request.into_inner();
    let failed = |error_code: i16| InitProducerIdResponse {
        error_code: i32::from(error_code),
        producer_id: -1,
        producer_epoch: -1,
    };
    if let Some(code) = CatalogService::check_init_producer(&request) {
        return Ok(Response::new(failed(code)));
    }
    let store = Arc::clone(&service.store);
    let outcome = service
        .write_and_publish(async move {
            let outcome = store.init_producer_id(request).await?;
            Ok((outcome.granted, outcome.event))
        })
        .await;
    let response = match kafka(outcome)? {
        Ok(granted) => InitProducerIdResponse {
            error_code: 0,
            producer_id: granted.producer_id,
            producer_epoch: granted.producer_epoch,
        },
        Err((error_code, _)) => InitProducerIdResponse {
            error_code,
            ..failed(0)
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition))]
pub(super) async fn describe_producers(
    service: &CatalogService,
    request: Request<DescribeProducersRequest>,
) -> Result<Response<DescribeProducersResponse>, Status> {
    let request = request.into_inner();
    let result = match topic_id(&request.topic_id) {
        Some(id) => {
            service
                .describe_partition_producers(id, request.partition)
                .await
        }
        None => Err(unknown_partition(&request.topic_id, request.partition)),
    };
    let response = match kafka(result)? {
        Ok(producers) => DescribeProducersResponse {
            error_code: 0,
            producers,
        },
        Err((error_code, _)) => DescribeProducersResponse {
            error_code,
            producers: Vec::new(),
        },
    };
    Ok(Response::new(response))
}
