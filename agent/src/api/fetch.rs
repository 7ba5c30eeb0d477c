//! Fetch: read committed batches from the partition index and the block
//! cache; long-poll at the end of the log until a commit arrives.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use strata_catalog_api::proto::Chunk;
use tracing::{instrument, warn};
use uuid::Uuid;

use crate::error_code;
use crate::metrics::add;
use crate::reader::{self, BatchRef, Tier};
use crate::server::Shared;

/// Chunks looked up per partition read; a read stops earlier once it has
/// `partition_max_bytes`.
const CHUNKS_PER_READ: usize = 32;

/// The longest a fetch may wait, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

struct Target {
    topic_index: usize,
    topic_id: Option<Uuid>,
    /// The error for a partition whose topic or partition is unknown.
    missing_code: i16,
    partition: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
}

/// Answers a fetch, waiting up to `max_wait_ms` for `min_bytes`.
#[instrument(level = "debug", skip_all)]
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: FetchRequest,
) -> FetchResponse {
    let mut changes = shared.index.changes();
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    let (targets, mut topics) = resolve(shared, version, &request).await;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes <= 0 {
        usize::MAX
    } else {
        request.max_bytes as usize
    };
    loop {
        // Mark the commit counter seen before reading, so a commit that
        // lands during the read wakes the wait below.
        changes.borrow_and_update();
        let (partitions, total, any_error) = read_all(shared, &targets, max_bytes).await;
        let done = total >= min_bytes || any_error || tokio::time::Instant::now() >= deadline;
        if done {
            for (target, mut data) in targets.iter().zip(partitions) {
                if version < 5 {
                    data.log_start_offset = -1;
                }
                topics[target.topic_index].partitions.push(data);
            }
            add(&shared.metrics.fetch_requests, 1);
            add(&shared.metrics.fetch_bytes, total as u64);
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(topics);
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            // Deadline reached: one last read happens on the next pass.
            continue;
        }
    }
}

/// The request's partitions and the empty topic entries of the response.
async fn resolve(
    shared: &Arc<Shared>,
    version: i16,
    request: &FetchRequest,
) -> (Vec<Target>, Vec<FetchableTopicResponse>) {
    let mut targets = Vec::new();
    let mut topics = Vec::with_capacity(request.topics.len());
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let info = if version >= 13 {
            shared.topics.get_by_id(topic.topic_id).await
        } else {
            shared.topics.get(super::topic_str(&topic.topic)).await
        };
        let info = info.unwrap_or_else(|status| {
            warn!(%status, "catalog unavailable while resolving a fetch topic");
            None
        });
        for p in &topic.partitions {
            let topic_id = info
                .as_ref()
                .filter(|i| i.has_partition(p.partition))
                .map(|i| i.id);
            let missing_code = if version >= 13 && info.is_none() {
                error_code::UNKNOWN_TOPIC_ID
            } else {
                error_code::UNKNOWN_TOPIC_OR_PARTITION
            };
            targets.push(Target {
                topic_index,
                topic_id,
                missing_code,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
            });
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id),
        );
    }
    (targets, topics)
}

/// Reads every target; returns their answers, the bytes read, and whether
/// any partition answered an error.
async fn read_all(
    shared: &Arc<Shared>,
    targets: &[Target],
    max_bytes: usize,
) -> (Vec<PartitionData>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut out = Vec::with_capacity(targets.len());
    for target in targets {
        let budget = target
            .partition_max_bytes
            .min(max_bytes.saturating_sub(total));
        let data = read_partition(shared, target, budget, total == 0).await;
        total += data.records.as_ref().map_or(0, |r| r.len());
        any_error |= data.error_code != error_code::NONE;
        out.push(data);
    }
    (out, total, any_error)
}

fn empty(partition: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(partition)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
        .with_aborted_transactions(Some(Vec::new()))
        .with_records(Some(bytes::Bytes::new()))
}

/// Reads one partition from `fetch_offset` up to `budget` bytes; with
/// `first`, at least one whole batch even when it is larger (KIP-74).
async fn read_partition(
    shared: &Arc<Shared>,
    target: &Target,
    budget: usize,
    first: bool,
) -> PartitionData {
    let Some(topic_id) = target.topic_id else {
        return empty(target.partition, target.missing_code);
    };
    let partition = target.partition as u32;
    let mut offsets = match shared.index.offsets(topic_id, partition, false).await {
        Ok(Ok(o)) => o,
        Ok(Err(code)) => return empty(target.partition, code),
        Err(status) => {
            warn!(%status, "catalog unavailable during fetch");
            return empty(target.partition, error_code::NOT_LEADER_OR_FOLLOWER);
        }
    };
    if target.fetch_offset > offsets.high_watermark {
        // Another agent may have committed past what this agent has seen:
        // ask the catalog before calling the offset out of range.
        if let Ok(Ok(fresh)) = shared.index.offsets(topic_id, partition, true).await {
            offsets = fresh;
        }
    }
    let mut data = empty(target.partition, error_code::NONE)
        .with_high_watermark(offsets.high_watermark)
        .with_last_stable_offset(offsets.high_watermark)
        .with_log_start_offset(offsets.log_start);
    if target.fetch_offset < offsets.log_start || target.fetch_offset > offsets.high_watermark {
        data.error_code = error_code::OFFSET_OUT_OF_RANGE;
        return data;
    }
    if target.fetch_offset == offsets.high_watermark || budget == 0 && !first {
        return data;
    }
    match read_records(
        shared,
        topic_id,
        partition,
        target.fetch_offset,
        budget,
        first,
    )
    .await
    {
        Ok(records) => data.records = Some(records.freeze()),
        Err(code) => data.error_code = code,
    }
    data
}

async fn read_records(
    shared: &Arc<Shared>,
    topic_id: Uuid,
    partition: u32,
    fetch_offset: i64,
    budget: usize,
    first: bool,
) -> Result<BytesMut, i16> {
    let mut chunks = lookup(shared, topic_id, partition, fetch_offset, false).await?;
    let mut out = BytesMut::new();
    let mut next = fetch_offset;
    let mut looked_up_again = false;
    let mut index = 0;
    while let Some(chunk) = chunks.get(index) {
        let remaining = budget.saturating_sub(out.len());
        let read = match shared
            .chunks
            .read(chunk, next.max(chunk.base_offset), remaining)
            .await
        {
            Ok(read) => read,
            // The object was deleted after the GC grace period: this chunk
            // list is older than any swap or retention the catalog has
            // published since. Ask the catalog once for the chunks now in
            // the index, and carry on from the same offset.
            Err(e) if e.is_not_found() && !looked_up_again => {
                warn!(object = %chunk.object_key, "chunk object gone; looking the chunks up again");
                shared.chunks.forget(chunk);
                looked_up_again = true;
                chunks = lookup(shared, topic_id, partition, next, true).await?;
                index = 0;
                continue;
            }
            Err(e) => {
                warn!(error = %e, object = %chunk.object_key, "cannot read chunk");
                return Err(error_code::KAFKA_STORAGE_ERROR);
            }
        };
        let (wanted, full) = fit(read.batches, next, out.len(), budget, first);
        let before = out.len();
        reader::patched(&read.bytes, &wanted, &mut out);
        let served = match read.tier {
            Tier::Segment => &shared.chunks.segment_served,
            Tier::Parquet => &shared.chunks.parquet_served,
        };
        served.add(out.len() - before, wanted.len());
        if let Some(last) = wanted.last() {
            next = last.end_offset();
        }
        // A Parquet read stops at the budget, so a chunk that still holds
        // offsets after what was taken from it is where the fetch ends.
        if full || out.len() >= budget || !wanted.is_empty() && next < chunk.end_offset {
            break;
        }
        next = next.max(chunk.end_offset);
        index += 1;
    }
    Ok(out)
}

/// The chunks from `offset` on: from the index tail (or the catalog when
/// the tail does not hold `offset`), or with `fresh` from the catalog.
async fn lookup(
    shared: &Arc<Shared>,
    topic_id: Uuid,
    partition: u32,
    offset: i64,
    fresh: bool,
) -> Result<Vec<Chunk>, i16> {
    match shared
        .index
        .chunks_from(topic_id, partition, offset, CHUNKS_PER_READ, fresh)
        .await
    {
        Ok(Ok(chunks)) => Ok(chunks),
        Ok(Err(code)) => Err(code),
        Err(status) => {
            warn!(%status, "catalog unavailable during fetch");
            Err(error_code::NOT_LEADER_OR_FOLLOWER)
        }
    }
}

/// The batches to send, ending at `next` or later, that fit in `budget`
/// after `used` bytes (with `first`, the first batch of the response fits
/// whatever its size: KIP-74); and whether one did not fit.
fn fit(
    batches: Vec<BatchRef>,
    next: i64,
    mut used: usize,
    budget: usize,
    first: bool,
) -> (Vec<BatchRef>, bool) {
    let mut wanted = Vec::new();
    for batch in batches {
        if batch.end_offset() <= next {
            continue;
        }
        let size = batch.range.len();
        let must = first && used == 0;
        if !must && used + size > budget {
            return (wanted, true);
        }
        used += size;
        wanted.push(batch);
    }
    (wanted, false)
}
