//! ListOffsets: earliest, latest, by timestamp and max timestamp.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use strata_catalog_api::proto::{Chunk, FindChunkByTimestampRequest, GetPartitionOffsetsRequest};
use tracing::warn;
use uuid::Uuid;

use crate::error_code;
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
                Some(info) => {
                    let target = Target {
                        topic: info.id,
                        partition: p.partition_index as u32,
                        timestamp: p.timestamp,
                        read_committed: request.isolation_level == READ_COMMITTED,
                    };
                    lookup(shared, &target).await
                }
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

/// Bytes asked of a Parquet chunk per read while scanning it (a segment
/// chunk is read whole).
const SCAN_BYTES: usize = 1024 * 1024;

/// Chunks looked up per step when a scan goes on past one chunk.
const CHUNKS_PER_STEP: usize = 32;

/// The isolation level whose LATEST is the last stable offset.
const READ_COMMITTED: i8 = 1;

/// One partition's question.
struct Target {
    topic: Uuid,
    partition: u32,
    timestamp: i64,
    /// LATEST answers the last stable offset.
    read_committed: bool,
}

/// (offset, timestamp) for one partition; timestamp -1 where Kafka gives none.
/// Never an offset below the log start: a chunk straddling it (after
/// DeleteRecords) still holds records below it, which are skipped.
async fn lookup(shared: &Arc<Shared>, target: &Target) -> Result<(i64, i64), i16> {
    let Target {
        topic,
        partition,
        timestamp,
        read_committed,
    } = *target;
    let request = GetPartitionOffsetsRequest {
        topic_id: topic.as_bytes().to_vec(),
        partition,
    };
    let offsets = shared
        .catalog
        .get_partition_offsets(request)
        .await
        .map_err(unavailable)?;
    if offsets.error_code != 0 {
        return Err(offsets.error_code as i16);
    }
    let log_start = offsets.log_start_offset;
    let partition = Partition {
        topic,
        partition,
        log_start,
    };
    match timestamp {
        LATEST if read_committed => Ok((
            offsets
                .last_stable_offset
                .clamp(log_start, offsets.high_watermark),
            -1,
        )),
        LATEST => Ok((offsets.high_watermark, -1)),
        EARLIEST | EARLIEST_LOCAL | EARLIEST_PENDING_UPLOAD => Ok((log_start, -1)),
        MAX_TIMESTAMP => match offsets.max_timestamp_chunk {
            Some(chunk) if offsets.max_timestamp >= 0 => {
                let ts = offsets.max_timestamp;
                let hit = match first_at_or_after(shared, &chunk, log_start, ts, true).await? {
                    Some(hit) => Some(hit),
                    // The greatest timestamp lies below the log start.
                    None => max_timestamp_from_log_start(shared, &partition).await?,
                };
                Ok(hit.unwrap_or((-1, -1)))
            }
            _ => Ok((-1, -1)),
        },
        ts if ts >= 0 => {
            let request = FindChunkByTimestampRequest {
                topic_id: topic.as_bytes().to_vec(),
                partition: partition.partition,
                timestamp: ts,
            };
            let found = shared
                .catalog
                .find_chunk_by_timestamp(request)
                .await
                .map_err(unavailable)?;
            match found.chunk {
                Some(chunk) => Ok(first_from_chunk(shared, &partition, chunk, ts)
                    .await?
                    .unwrap_or((-1, -1))),
                None => Ok((-1, -1)),
            }
        }
        _ => Err(error_code::INVALID_REQUEST),
    }
}

fn unavailable(status: tonic::Status) -> i16 {
    warn!(%status, "catalog unavailable during ListOffsets");
    error_code::NOT_LEADER_OR_FOLLOWER
}

/// The partition a lookup is about.
struct Partition {
    topic: Uuid,
    partition: u32,
    log_start: i64,
}

/// The first record at or after the log start with a timestamp >= `ts`,
/// from `chunk` (the first whose max timestamp reaches `ts`) on. Only when
/// the hits of `chunk` all lie below the log start does the search go on
/// to the chunks after it.
async fn first_from_chunk(
    shared: &Arc<Shared>,
    partition: &Partition,
    mut chunk: Chunk,
    ts: i64,
) -> Result<Option<(i64, i64)>, i16> {
    loop {
        if chunk.max_timestamp >= ts
            && let Some(hit) =
                first_at_or_after(shared, &chunk, partition.log_start, ts, false).await?
        {
            return Ok(Some(hit));
        }
        let next = chunks_after(shared, partition, chunk.end_offset).await?;
        let Some(following) = next.into_iter().find(|c| c.max_timestamp >= ts) else {
            return Ok(None);
        };
        chunk = following;
    }
}

/// Chunks from `offset` on (a few at a time).
async fn chunks_after(
    shared: &Arc<Shared>,
    partition: &Partition,
    offset: i64,
) -> Result<Vec<Chunk>, i16> {
    match shared
        .index
        .chunks_from(
            partition.topic,
            partition.partition,
            offset,
            CHUNKS_PER_STEP,
            false,
        )
        .await
    {
        Ok(Ok(chunks)) => Ok(chunks),
        Ok(Err(code)) if code == error_code::OFFSET_OUT_OF_RANGE => Ok(Vec::new()),
        Ok(Err(code)) => Err(code),
        Err(status) => Err(unavailable(status)),
    }
}

/// MAX_TIMESTAMP when the record holding the partition's greatest
/// timestamp lies below the log start: the greatest timestamp of the
/// records from the log start on (the straddling chunk is read; the others
/// are known from their max timestamps), and the first record holding it.
async fn max_timestamp_from_log_start(
    shared: &Arc<Shared>,
    partition: &Partition,
) -> Result<Option<(i64, i64)>, i16> {
    let mut best: Option<(i64, Chunk)> = None;
    let mut next = partition.log_start;
    loop {
        let chunks = chunks_after(shared, partition, next).await?;
        if chunks.is_empty() {
            break;
        }
        for chunk in chunks {
            let ts = if chunk.base_offset < partition.log_start {
                let mut max = -1;
                visit_records(shared, &chunk, partition.log_start, i64::MIN, |_, ts| {
                    max = max.max(ts);
                    false
                })
                .await?;
                max
            } else {
                chunk.max_timestamp
            };
            if ts >= 0 && best.as_ref().is_none_or(|(b, _)| ts > *b) {
                best = Some((ts, chunk.clone()));
            }
            next = next.max(chunk.end_offset);
        }
    }
    match best {
        Some((ts, chunk)) => first_at_or_after(shared, &chunk, partition.log_start, ts, true).await,
        None => Ok(None),
    }
}

/// In `chunk`, from offset `from` on, the first record whose timestamp is
/// >= `ts` (or, with `exact`, == `ts`): its (offset, timestamp).
async fn first_at_or_after(
    shared: &Arc<Shared>,
    chunk: &Chunk,
    from: i64,
    ts: i64,
    exact: bool,
) -> Result<Option<(i64, i64)>, i16> {
    let mut hit = None;
    visit_records(shared, chunk, from, ts, |offset, timestamp| {
        let found = if exact {
            timestamp == ts
        } else {
            timestamp >= ts
        };
        if found {
            hit = Some((offset, timestamp));
        }
        found
    })
    .await?;
    Ok(hit)
}

/// Calls `visit(offset, timestamp)` for the records of `chunk` at offsets
/// `from` and after, in order, until it returns true. Reads either tier
/// through the same reader as Fetch. For a LogAppendTime batch every
/// record's timestamp is the batch's max timestamp. Batches whose max
/// timestamp is below `min_timestamp` are skipped undecoded.
async fn visit_records(
    shared: &Arc<Shared>,
    chunk: &Chunk,
    from: i64,
    min_timestamp: i64,
    mut visit: impl FnMut(i64, i64) -> bool,
) -> Result<(), i16> {
    let mut next = from.max(chunk.base_offset);
    while next < chunk.end_offset {
        let read = shared
            .chunks
            .read(chunk, next, SCAN_BYTES)
            .await
            .map_err(|e| {
                warn!(error = %e, object = %chunk.object_key, "cannot read chunk for ListOffsets");
                error_code::KAFKA_STORAGE_ERROR
            })?;
        let Some(last) = read.batches.last() else {
            break;
        };
        let end = last.end_offset();
        for batch in read
            .batches
            .iter()
            .filter(|b| b.header.max_timestamp >= min_timestamp)
        {
            let corrupt = |error: &dyn std::fmt::Display| {
                warn!(%error, "cannot decode a stored batch for ListOffsets");
                error_code::CORRUPT_MESSAGE
            };
            let body =
                strata_segment::batch_body(&read.bytes.slice(batch.range.clone()), &batch.header)
                    .map_err(|error| corrupt(&error))?;
            let log_append = batch.header.timestamp_type_log_append();
            for record in strata_segment::records(&body) {
                let record = record.map_err(|error| corrupt(&error))?;
                let offset = batch.base_offset.wrapping_add(record.offset_delta.into());
                if offset < next {
                    continue;
                }
                let timestamp = if log_append {
                    batch.header.max_timestamp
                } else {
                    batch
                        .header
                        .base_timestamp
                        .wrapping_add(record.timestamp_delta)
                };
                if visit(offset, timestamp) {
                    return Ok(());
                }
            }
        }
        next = end;
    }
    Ok(())
}
