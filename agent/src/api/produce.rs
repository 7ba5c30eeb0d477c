//! Produce: validate batches, append them to the flush buffer, answer once
//! the flush holding them is durable and committed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use strata_catalog_api::proto::BatchMeta;
use strata_segment::{Limits, ValidatedBatch};
use tokio::sync::{Semaphore, oneshot};
use tracing::warn;

use super::str_bytes;
use crate::error_code;
use crate::metrics::add;
use crate::server::Shared;
use crate::topics::TopicInfo;
use crate::writer::{Append, AppendResult};

type Response = Pin<Box<dyn Future<Output = Option<ResponseKind>> + Send>>;

/// One partition of the request: answered now, or waiting on its flush.
enum Outcome {
    Done(AppendResult),
    Waiting(oneshot::Receiver<AppendResult>),
}

struct PartitionSlot {
    index: i32,
    outcome: Outcome,
    log_append_time: i64,
}

struct TopicSlot {
    name: kafka_protocol::messages::TopicName,
    topic_id: uuid::Uuid,
    partitions: Vec<PartitionSlot>,
}

/// Validates and appends every partition's batches (in arrival order), then
/// returns the future that answers the request.
pub(crate) async fn start(shared: &Arc<Shared>, version: i16, request: ProduceRequest) -> Response {
    add(&shared.metrics.produce_requests, 1);
    let acks = request.acks;
    // KIP-890 part 2: Produce v12+ comes from clients that no longer send
    // AddPartitionsToTxn; their transactional batches add their partition
    // to the transaction on the way in, as Kafka's partition leader does.
    let implicit_txn = (version >= PRODUCE_IMPLICIT_ADD_VERSION)
        .then(|| request.transactional_id.as_ref().map(|t| t.to_string()))
        .flatten()
        .filter(|t| !t.is_empty());
    let timeout =
        Duration::from_millis(request.timeout_ms.max(0) as u64).min(shared.config.produce_timeout);
    let mut slots = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let resolved = if version >= 13 {
            shared.topics.get_by_id(topic.topic_id).await
        } else {
            shared.topics.get(super::topic_str(&topic.name)).await
        };
        let mut missing = if version >= 13 {
            error_code::UNKNOWN_TOPIC_ID
        } else {
            error_code::UNKNOWN_TOPIC_OR_PARTITION
        };
        let info = match resolved {
            Ok(info) => info,
            Err(status) => {
                // Retriable: the client tries again once the catalog is back.
                warn!(%status, "catalog unavailable while resolving a produce topic");
                missing = error_code::KAFKA_STORAGE_ERROR;
                None
            }
        };
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let index = data.index;
            let (outcome, log_append_time) = match &info {
                None => (Outcome::Done(AppendResult::error_with(missing)), -1),
                Some(info) if !acks_valid(acks) => {
                    let _ = info;
                    (
                        Outcome::Done(AppendResult::error_with(error_code::INVALID_REQUIRED_ACKS)),
                        -1,
                    )
                }
                Some(info) => append_partition(shared, info, data, implicit_txn.as_deref()).await,
            };
            partitions.push(PartitionSlot {
                index,
                outcome,
                log_append_time,
            });
        }
        slots.push(TopicSlot {
            name: topic.name,
            topic_id: topic.topic_id,
            partitions,
        });
    }
    if acks == 0 {
        // Kafka sends no response at all for acks=0.
        return Box::pin(async { None });
    }
    Box::pin(async move {
        Some(ResponseKind::Produce(
            respond(slots, timeout, version).await,
        ))
    })
}

fn acks_valid(acks: i16) -> bool {
    matches!(acks, -1..=1)
}

/// The first Produce version whose transactional batches add their
/// partition to the transaction (KIP-890 part 2).
const PRODUCE_IMPLICIT_ADD_VERSION: i16 = 12;

/// Adds the partition of a transactional batch to its producer's
/// transaction (Produce v12+); the Kafka code to answer the produce with
/// when that fails.
async fn add_implicitly(
    shared: &Arc<Shared>,
    transactional_id: &str,
    info: &TopicInfo,
    partition: i32,
    batch: &BatchMeta,
) -> Result<(), i16> {
    let producer = strata_catalog_api::proto::TxnProducer {
        transactional_id: transactional_id.to_string(),
        producer_id: batch.producer_id,
        producer_epoch: batch.producer_epoch,
    };
    let call = strata_catalog_api::proto::AddPartitionsToTxnRequest {
        producer: Some(producer),
        partitions: vec![strata_catalog_api::proto::TxnPartition {
            topic_id: info.id.as_bytes().to_vec(),
            partition: partition as u32,
        }],
        verify_only: false,
    };
    let code = match shared.catalog.add_partitions_to_txn(call).await {
        Ok(r) if r.error_code != 0 => r.error_code as i16,
        Ok(r) => r.partitions.first().map_or(0, |p| p.error_code as i16),
        Err(status) => {
            warn!(%status, "catalog unavailable while adding a produce partition to its transaction");
            error_code::KAFKA_STORAGE_ERROR
        }
    };
    match code {
        error_code::NONE => Ok(()),
        error_code::PRODUCER_FENCED => Err(error_code::INVALID_PRODUCER_EPOCH),
        code => Err(code),
    }
}

/// Validates one partition's records and appends them.
async fn append_partition(
    shared: &Arc<Shared>,
    info: &TopicInfo,
    data: PartitionProduceData,
    implicit_txn: Option<&str>,
) -> (Outcome, i64) {
    if !info.has_partition(data.index) {
        return (
            Outcome::Done(AppendResult::error_with(
                error_code::UNKNOWN_TOPIC_OR_PARTITION,
            )),
            -1,
        );
    }
    let Some(records) = data.records else {
        return (
            Outcome::Done(AppendResult::error_with(error_code::INVALID_RECORD)),
            -1,
        );
    };
    // Sizes first, before any decompression or reservation: one batch
    // above the topic's max.message.bytes (message.max.bytes when unset),
    // never above what the produce buffer can hold at all.
    let buffer_bytes_max = shared.config.buffer_bytes_max;
    if records.len() > buffer_bytes_max {
        add(&shared.metrics.produce_too_large, 1);
        return (
            Outcome::Done(AppendResult::error_with(error_code::RECORD_LIST_TOO_LARGE)),
            -1,
        );
    }
    let max_message_bytes = info
        .max_message_bytes(shared.config.limits.message_max_bytes)
        .min(buffer_bytes_max);
    let limits = Limits {
        max_message_bytes,
        decompress: Some(strata_segment::decompress),
        require_keys: info.compacted(),
        ..Limits::default()
    };
    let batches = match validate(records, limits, &shared.validations).await {
        Ok(batches) => batches,
        Err(code) => {
            if code == error_code::MESSAGE_TOO_LARGE {
                add(&shared.metrics.produce_too_large, 1);
            }
            return (Outcome::Done(AppendResult::error_with(code)), -1);
        }
    };
    let log_append_time = if info.log_append_time() {
        shared.clock.now_ms()
    } else {
        -1
    };
    let batches: Vec<(Bytes, BatchMeta)> = batches
        .into_iter()
        .map(|b| stamp(b, log_append_time))
        .collect();
    if let (Some(transactional_id), Some((_, first))) = (implicit_txn, batches.first())
        && first.transactional
        && let Err(code) = add_implicitly(shared, transactional_id, info, data.index, first).await
    {
        return (Outcome::Done(AppendResult::error_with(code)), -1);
    }
    add(&shared.metrics.produce_batches, batches.len() as u64);
    add(
        &shared.metrics.produce_bytes,
        batches.iter().map(|(b, _)| b.len() as u64).sum(),
    );
    let append = Append {
        topic_id: info.id,
        partition: data.index as u32,
        batches,
    };
    // Waiting for room in the buffer is bounded like the rest of the
    // produce (and given up when the connection goes).
    let deadline = tokio::time::Instant::now() + shared.config.produce_timeout;
    (
        Outcome::Waiting(shared.writer.append(append, deadline).await),
        log_append_time,
    )
}

/// Records at least this large are validated on the blocking pool, not on
/// the reactor thread serving the connection: validating a compressed batch
/// decompresses it (up to `DECOMPRESSED_BYTES_MAX`), which would stall
/// every other connection on that thread meanwhile.
const VALIDATE_INLINE_BYTES_MAX: usize = 64 * 1024;

/// Validations running on the blocking pool at once, per agent: a flood of
/// large compressed produces queues here instead of taking every thread.
pub(crate) fn validations_max() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Splits and validates a partition's records (see
/// `strata_segment::split_and_validate`); large ones off the reactor, at
/// most `slots`' permits at once. Errors are Kafka error codes.
async fn validate(
    records: Bytes,
    limits: Limits,
    slots: &Arc<Semaphore>,
) -> Result<Vec<ValidatedBatch>, i16> {
    if records.len() < VALIDATE_INLINE_BYTES_MAX || !first_batch_compressed(&records) {
        return strata_segment::split_and_validate(&records, &limits)
            .map_err(|e| e.kafka_error_code());
    }
    let Ok(_slot) = slots.clone().acquire_owned().await else {
        return Err(error_code::UNKNOWN_SERVER_ERROR);
    };
    let validated = tokio::task::spawn_blocking(move || {
        strata_segment::split_and_validate(&records, &limits).map_err(|e| e.kafka_error_code())
    })
    .await;
    // A panic in the validator is our bug, not the client's.
    validated.unwrap_or(Err(error_code::UNKNOWN_SERVER_ERROR))
}

/// Whether the first batch of `records` names a codec (attributes bits
/// 0-2, at byte 22 of a v2 batch). Only decompression makes a validation
/// slow enough to move off the reactor: an uncompressed batch costs a CRC
/// and a walk over its records, less than the hop to the blocking pool
/// (measured: moving every batch of 64 KiB or more cost ~10 % of produce
/// throughput with 1 KiB records). Kafka clients send one batch per
/// partition; a later compressed batch in the same records is still
/// bounded by the decompressor's cap.
fn first_batch_compressed(records: &[u8]) -> bool {
    records
        .get(22)
        .is_some_and(|attributes| attributes & 0x07 != 0)
}

/// The batch bytes to store and their metadata for the catalog; under
/// LogAppendTime the batch's timestamp type and max timestamp are set and
/// its CRC recomputed (DESIGN.md, "Batch headers").
fn stamp(batch: ValidatedBatch, log_append_time: i64) -> (Bytes, BatchMeta) {
    let batch = if log_append_time >= 0 {
        batch.with_log_append_time(log_append_time)
    } else {
        batch
    };
    let header = *batch.header();
    let bytes = batch.into_bytes();
    let meta = BatchMeta {
        offset_count: header.offset_count() as u32,
        producer_id: header.producer_id,
        producer_epoch: i32::from(header.producer_epoch),
        base_sequence: header.base_sequence,
        max_timestamp: header.max_timestamp,
        base_timestamp: header.base_timestamp,
        transactional: header.is_transactional(),
        control: header.is_control(),
        length: bytes.len() as u32,
    };
    (bytes, meta)
}

async fn respond(slots: Vec<TopicSlot>, timeout: Duration, version: i16) -> ProduceResponse {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut responses = Vec::with_capacity(slots.len());
    for topic in slots {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for slot in topic.partitions {
            let result = match slot.outcome {
                Outcome::Done(result) => result,
                Outcome::Waiting(rx) => match tokio::time::timeout_at(deadline, rx).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_)) => AppendResult::error_with(error_code::KAFKA_STORAGE_ERROR),
                    Err(_) => AppendResult::error_with(error_code::REQUEST_TIMED_OUT),
                },
            };
            let mut response = PartitionProduceResponse::default()
                .with_index(slot.index)
                .with_error_code(result.error_code)
                .with_base_offset(result.base_offset)
                .with_log_start_offset(if version >= 5 {
                    result.log_start_offset
                } else {
                    -1
                })
                .with_log_append_time_ms(if result.error_code == 0 {
                    slot.log_append_time
                } else {
                    -1
                });
            if result.error_code != 0 && version >= 8 {
                response.error_message = Some(str_bytes(error_message(result.error_code)));
            }
            partitions.push(response);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions),
        );
    }
    ProduceResponse::default().with_responses(responses)
}

fn error_message(code: i16) -> &'static str {
    match code {
        error_code::CORRUPT_MESSAGE => "record batch failed validation (CRC or size)",
        error_code::MESSAGE_TOO_LARGE => {
            "record batch larger than the topic's max.message.bytes (or the broker's message.max.bytes)"
        }
        error_code::RECORD_LIST_TOO_LARGE => {
            "the partition's records are larger than the agent's produce buffer"
        }
        error_code::INVALID_RECORD => {
            "invalid record batch: Strata accepts magic v2 batches of well-framed records, and on a compacted topic (cleanup.policy=compact) every record needs a key"
        }
        error_code::KAFKA_STORAGE_ERROR => {
            "the write could not be made durable (object store or catalog unavailable); retry"
        }
        error_code::REQUEST_TIMED_OUT => {
            "the write was not durable within the request timeout; retry"
        }
        error_code::INVALID_TXN_STATE => {
            "the transactional batch's partition is not part of its open transaction"
        }
        _ => "produce failed",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use strata_segment::Compression;
    use strata_segment::testing::build_raw_batch;

    use super::*;

    /// A decompressor as slow as a large decompression bomb.
    fn slow_decompress(
        _: Compression,
        _: &[u8],
        limit: usize,
    ) -> Result<Vec<u8>, strata_segment::DecompressError> {
        std::thread::sleep(Duration::from_millis(300));
        Err(strata_segment::DecompressError::TooLarge { limit })
    }

    /// Goal: validating a large compressed batch (decompression included)
    /// does not run on the reactor thread, so other connections on it go
    /// on. Method: a single-threaded runtime, a ticker task, and a 128 KiB
    /// "gzip" batch whose decompression takes 300 ms; the ticker must tick
    /// meanwhile (inline, it could not run at all).
    #[tokio::test(flavor = "current_thread")]
    async fn large_validations_leave_the_reactor_free() {
        let header = strata_segment::BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes: 1,
            last_offset_delta: 0,
            base_timestamp: 1_700_000_000_000,
            max_timestamp: 1_700_000_000_000,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            records_count: 1,
        };
        let records = build_raw_batch(&header, &vec![7u8; 128 * 1024]);
        let limits = Limits {
            max_message_bytes: 1 << 20,
            decompress: Some(slow_decompress),
            ..Limits::default()
        };
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                let mut interval = tokio::time::interval(Duration::from_millis(10));
                loop {
                    interval.tick().await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let slots = Arc::new(Semaphore::new(1));
        let result = validate(records, limits, &slots).await;
        ticker.abort();
        assert!(result.is_err(), "the batch's body does not decompress");
        let ticked = ticks.load(Ordering::Relaxed);
        assert!(ticked >= 3, "the reactor was blocked: {ticked} ticks");
    }
}
