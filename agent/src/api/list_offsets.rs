//! ListOffsets: earliest, latest, by timestamp and max timestamp.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use strata_catalog_api::proto::{Chunk, FindChunkByTimestampRequest, GetPartitionOffsetsRequest};
use tracing::warn;
use uuid::Uuid;

use crate::error_code;
use crate::reader;
use crate::server::Shared;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const EARLIEST_PENDING_UPLOAD: i64 = -5;

/// Answers ListOffsets.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let info = shared
            .topics
            .get(super::topic_str(&topic.name))
            .await
            .unwrap_or_else(|status| {
                warn!(%status, "catalog unavailable during ListOffsets");
                None
            });
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let response = match info.as_ref().filter(|i| i.has_partition(p.partition_index)) {
                None => Err(error_code::UNKNOWN_TOPIC_OR_PARTITION),
                Some(info) => lookup(shared, info.id, p.partition_index as u32, p.timestamp).await,
            };
            let (code, offset, timestamp) = match response {
                Ok((offset, timestamp)) => (error_code::NONE, offset, timestamp),
                Err(code) => (code, -1, -1),
            };
            partitions.push(
                ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    .with_leader_epoch(if code == 0 && version >= 4 { 0 } else { -1 }),
            );
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

/// (offset, timestamp) for one partition; timestamp -1 where Kafka gives none.
async fn lookup(
    shared: &Arc<Shared>,
    topic: Uuid,
    partition: u32,
    timestamp: i64,
) -> Result<(i64, i64), i16> {
    let request = GetPartitionOffsetsRequest {
        topic_id: topic.as_bytes().to_vec(),
        partition,
    };
    let offsets = shared
        .catalog
        .get_partition_offsets(request)
        .await
        .map_err(|status| {
            warn!(%status, "catalog unavailable during ListOffsets");
            error_code::NOT_LEADER_OR_FOLLOWER
        })?;
    if offsets.error_code != 0 {
        return Err(offsets.error_code as i16);
    }
    match timestamp {
        LATEST => Ok((offsets.high_watermark, -1)),
        EARLIEST | EARLIEST_LOCAL | EARLIEST_PENDING_UPLOAD => Ok((offsets.log_start_offset, -1)),
        MAX_TIMESTAMP => match offsets.max_timestamp_chunk {
            Some(chunk) if offsets.max_timestamp >= 0 => {
                Ok(
                    first_at_or_after(shared, &chunk, offsets.max_timestamp, true)
                        .await?
                        .unwrap_or((-1, -1)),
                )
            }
            _ => Ok((-1, -1)),
        },
        ts if ts >= 0 => {
            let request = FindChunkByTimestampRequest {
                topic_id: topic.as_bytes().to_vec(),
                partition,
                timestamp: ts,
            };
            let found = shared
                .catalog
                .find_chunk_by_timestamp(request)
                .await
                .map_err(|status| {
                    warn!(%status, "catalog unavailable during ListOffsets");
                    error_code::NOT_LEADER_OR_FOLLOWER
                })?;
            match found.chunk {
                Some(chunk) => Ok(first_at_or_after(shared, &chunk, ts, false)
                    .await?
                    .unwrap_or((-1, -1))),
                None => Ok((-1, -1)),
            }
        }
        _ => Err(error_code::INVALID_REQUEST),
    }
}

/// In `chunk`, the first record whose timestamp is >= `ts` (or, with
/// `exact`, == `ts`): its (offset, timestamp).
async fn first_at_or_after(
    shared: &Arc<Shared>,
    chunk: &Chunk,
    ts: i64,
    exact: bool,
) -> Result<Option<(i64, i64)>, i16> {
    let bytes = reader::read_chunk(&shared.cache, chunk)
        .await
        .map_err(|e| {
            warn!(error = %e, "cannot read chunk for ListOffsets");
            error_code::KAFKA_STORAGE_ERROR
        })?;
    for batch in reader::batches(chunk, &bytes) {
        if batch.header.max_timestamp < ts {
            continue;
        }
        if batch.header.timestamp_type_log_append() {
            // Every record of the batch carries the batch's max timestamp.
            return Ok(Some((batch.base_offset, batch.header.max_timestamp)));
        }
        let mut raw = bytes::BytesMut::new();
        reader::patched(&bytes, std::slice::from_ref(&batch), &mut raw);
        let mut raw: Bytes = raw.freeze();
        let Ok(set) = RecordBatchDecoder::decode(&mut raw) else {
            warn!("cannot decode a stored batch for ListOffsets");
            return Err(error_code::CORRUPT_MESSAGE);
        };
        let hit = set.records.iter().find(|r| {
            if exact {
                r.timestamp == ts
            } else {
                r.timestamp >= ts
            }
        });
        if let Some(record) = hit {
            return Ok(Some((record.offset, record.timestamp)));
        }
    }
    Ok(None)
}
