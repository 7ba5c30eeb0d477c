//! DeleteRecords: moves partitions' log start offsets forward. The catalog
//! owns the log start offset; it drops the chunks wholly below it, and the
//! compactor's garbage collection deletes their objects later.

use std::sync::Arc;

use kafka_protocol::messages::DeleteRecordsRequest;
use kafka_protocol::messages::DeleteRecordsResponse;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use strata_catalog_api::proto;
use tracing::warn;

use crate::error_code;
use crate::server::Shared;

/// Answers DeleteRecords, one catalog call per partition.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let info = match shared.topics.get(super::topic_str(&topic.name)).await {
            Ok(info) => info,
            Err(status) => {
                warn!(%status, "catalog unavailable during DeleteRecords");
                None
            }
        };
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let Some(info) = info.as_ref().filter(|i| i.has_partition(p.partition_index)) else {
                partitions.push(result.with_error_code(error_code::UNKNOWN_TOPIC_OR_PARTITION));
                continue;
            };
            let call = proto::DeleteRecordsRequest {
                topic_id: info.id.as_bytes().to_vec(),
                partition: p.partition_index as u32,
                offset: p.offset,
            };
            let result = match shared.catalog.delete_records(call).await {
                Ok(r) => result
                    .with_error_code(r.error_code as i16)
                    .with_low_watermark(r.low_watermark),
                Err(status) => {
                    warn!(%status, "catalog unavailable during DeleteRecords");
                    result.with_error_code(error_code::REQUEST_TIMED_OUT)
                }
            };
            partitions.push(result);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
