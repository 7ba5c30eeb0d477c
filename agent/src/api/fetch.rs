//! Fetch: read committed batches from the partition index and the block
//! cache; long-poll at the end of the log until a commit arrives.
//!
//! Follower fetching (KIP-392): a consumer that names its rack (v11+) and
//! reaches an agent of another zone while a live agent of its zone exists
//! gets that agent as `preferred_read_replica` (no records) and moves
//! there, so its reads stay in its zone.

use super::fetch_memory::FetchGrant;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use strata_catalog_api::proto::{Chunk, ListAbortedTransactionsRequest};
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

/// Answers a fetch, waiting up to `max_wait_ms` for `min_bytes`. The
/// grant holds the response's bytes in the agent's fetch memory budget
/// until the response is written.
#[instrument(level = "debug", skip_all)]
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    version: i16,
    request: FetchRequest,
) -> (FetchResponse, FetchGrant) {
    let mut changes = shared.index.changes();
    let wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + wait;
    let (targets, mut topics) = resolve(shared, version, &request).await;
    let (targets, redirected) = split_by_zone(shared, version, &request, targets);
    let min_bytes = request.min_bytes.max(0) as usize;
    let read_committed = request.isolation_level == READ_COMMITTED;
    let fetch_max_bytes = shared.config.limits.fetch_max_bytes;
    let max_bytes = capped_max_bytes(request.max_bytes, fetch_max_bytes);
    if request.max_bytes <= 0 || request.max_bytes as usize > fetch_max_bytes {
        add(&shared.metrics.fetch_max_bytes_capped, 1);
    }
    loop {
        // Mark the commit counter seen before reading, so a commit that
        // lands during the read wakes the wait below.
        changes.borrow_and_update();
        // Memory is held only while reading and until the answer is sent:
        // a fetch waiting for data holds none.
        let mut grant = shared
            .fetch_memory
            .reserve(max_bytes, &shared.metrics)
            .await;
        let (partitions, total, any_error) =
            read_all(shared, &targets, grant.bytes(), read_committed).await;
        // A consumer sent elsewhere must learn it at once.
        let done = total >= min_bytes
            || any_error
            || !redirected.is_empty()
            || tokio::time::Instant::now() >= deadline;
        if done {
            let redirects = redirected.iter().map(|(target, node_id)| {
                let data = empty(target.partition, error_code::NONE)
                    .with_preferred_read_replica(kafka_protocol::messages::BrokerId(*node_id));
                (target, data)
            });
            for (target, mut data) in targets.iter().zip(partitions).chain(redirects) {
                if version < 5 {
                    data.log_start_offset = -1;
                }
                topics[target.topic_index].partitions.push(data);
            }
            add(&shared.metrics.fetch_redirects, redirected.len() as u64);
            add(&shared.metrics.fetch_requests, 1);
            add(&shared.metrics.fetch_bytes, total as u64);
            grant.keep(total);
            let response = FetchResponse::default()
                .with_session_id(0)
                .with_responses(topics);
            return (response, grant);
        }
        drop(grant);
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
                partition_max_bytes: (p.partition_max_bytes.max(0) as usize)
                    .min(shared.config.limits.fetch_max_bytes),
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

/// The bytes a fetch may return: the request's `max_bytes`, never above
/// the agent's `fetch_max_bytes` (Kafka's `fetch.max.bytes`); 0 or less,
/// which older clients send to mean "no limit", is the agent's limit.
fn capped_max_bytes(requested: i32, fetch_max_bytes: usize) -> usize {
    match usize::try_from(requested) {
        Ok(requested) if requested > 0 => requested.min(fetch_max_bytes),
        _ => fetch_max_bytes,
    }
}

/// Splits the targets into those this agent serves and those a consumer
/// in another zone should read from an agent of its own zone (with that
/// agent's node id).
fn split_by_zone(
    shared: &Arc<Shared>,
    version: i16,
    request: &FetchRequest,
    targets: Vec<Target>,
) -> (Vec<Target>, Vec<(Target, i32)>) {
    let rack: &str = &request.rack_id;
    if version < 11 || rack.is_empty() {
        return (targets, Vec::new());
    }
    let fleet = shared.fleet.view();
    let own_zone = shared.config.zone.as_deref();
    let mut served = Vec::with_capacity(targets.len());
    let mut redirected = Vec::new();
    for target in targets {
        let preferred = target.topic_id.and_then(|topic_id| {
            fleet.preferred_replica(own_zone, rack, &topic_id, target.partition)
        });
        match preferred {
            Some(node_id) => redirected.push((target, node_id)),
            None => served.push(target),
        }
    }
    (served, redirected)
}

/// Reads every target; returns their answers, the bytes read, and whether
/// any partition answered an error.
async fn read_all(
    shared: &Arc<Shared>,
    targets: &[Target],
    max_bytes: usize,
    read_committed: bool,
) -> (Vec<PartitionData>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut out: Vec<PartitionData> = Vec::with_capacity(targets.len());
    let mut seen = HashMap::with_capacity(targets.len());
    for target in targets {
        // A partition named twice is read once: the repeat gets the same
        // answer without its records, so duplicates cannot multiply the
        // bytes read and copied.
        let key = (target.topic_id, target.topic_index, target.partition);
        if let Some(&at) = seen.get(&key) {
            let first: &PartitionData = &out[at];
            let repeat = first.clone().with_records(Some(bytes::Bytes::new()));
            out.push(repeat);
            continue;
        }
        seen.insert(key, out.len());
        let budget = target
            .partition_max_bytes
            .min(max_bytes.saturating_sub(total));
        let data = read_partition(shared, target, budget, total == 0, read_committed).await;
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
/// With `read_committed`, only below the last stable offset, listing the
/// aborted transactions the records returned overlap.
async fn read_partition(
    shared: &Arc<Shared>,
    target: &Target,
    budget: usize,
    first: bool,
    read_committed: bool,
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
    let last_stable = offsets
        .last_stable
        .clamp(offsets.log_start, offsets.high_watermark);
    let mut data = empty(target.partition, error_code::NONE)
        .with_high_watermark(offsets.high_watermark)
        .with_last_stable_offset(last_stable)
        .with_log_start_offset(offsets.log_start);
    if target.fetch_offset < offsets.log_start || target.fetch_offset > offsets.high_watermark {
        data.error_code = error_code::OFFSET_OUT_OF_RANGE;
        return data;
    }
    let end = if read_committed {
        last_stable
    } else {
        offsets.high_watermark
    };
    if target.fetch_offset >= end || budget == 0 && !first {
        return data;
    }
    let range = ReadRange {
        from: target.fetch_offset,
        end,
        budget,
        first,
    };
    match read_records(shared, topic_id, partition, &range).await {
        Ok(read) => {
            if read_committed && read.transactional {
                match aborted(shared, topic_id, partition, target.fetch_offset, read.next).await {
                    Ok(list) => data.aborted_transactions = Some(list),
                    Err(code) => {
                        data.error_code = code;
                        return data;
                    }
                }
            }
            data.records = Some(read.bytes.freeze());
        }
        Err(code) => data.error_code = code,
    }
    data
}

/// The isolation level that reads only below the last stable offset.
const READ_COMMITTED: i8 = 1;

/// What a partition read covers.
struct ReadRange {
    from: i64,
    /// Offsets at or past this are not read (the high watermark, or the
    /// last stable offset for READ_COMMITTED).
    end: i64,
    budget: usize,
    first: bool,
}

/// The records read from a partition.
struct Records {
    bytes: BytesMut,
    /// One past the last offset returned.
    next: i64,
    /// Whether a transactional data batch (not a marker) was returned.
    transactional: bool,
}

/// The aborted transactions overlapping `[from, to)`, for a READ_COMMITTED
/// client to drop their records.
async fn aborted(
    shared: &Arc<Shared>,
    topic_id: Uuid,
    partition: u32,
    from: i64,
    to: i64,
) -> Result<Vec<AbortedTransaction>, i16> {
    let request = ListAbortedTransactionsRequest {
        topic_id: topic_id.as_bytes().to_vec(),
        partition,
        from_offset: from,
        to_offset: to,
    };
    match shared.catalog.list_aborted_transactions(request).await {
        Ok(r) if r.error_code == 0 => Ok(r
            .transactions
            .into_iter()
            .map(|t| {
                AbortedTransaction::default()
                    .with_producer_id(ProducerId(t.producer_id))
                    .with_first_offset(t.first_offset)
            })
            .collect()),
        Ok(r) => Err(r.error_code as i16),
        Err(status) => {
            warn!(%status, "catalog unavailable while listing aborted transactions");
            Err(error_code::NOT_LEADER_OR_FOLLOWER)
        }
    }
}

async fn read_records(
    shared: &Arc<Shared>,
    topic_id: Uuid,
    partition: u32,
    range: &ReadRange,
) -> Result<Records, i16> {
    let ReadRange {
        from: fetch_offset,
        end,
        budget,
        first,
    } = *range;
    let mut chunks = lookup(shared, topic_id, partition, fetch_offset, false).await?;
    let mut out = BytesMut::new();
    let mut transactional = false;
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
        let (wanted, full) = fit(read.batches, next, end, out.len(), budget, first);
        transactional |= wanted
            .iter()
            .any(|b| b.header.is_transactional() && !b.header.is_control());
        let before = out.len();
        reader::patched(&read.bytes, &wanted, &mut out);
        let served = match read.tier {
            Tier::Segment | Tier::Marker => &shared.chunks.segment_served,
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
        if next >= end {
            break;
        }
        index += 1;
    }
    Ok(Records {
        bytes: out,
        next,
        transactional,
    })
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

/// The batches to send, ending at `next` or later and starting before
/// `end`, that fit in `budget` after `used` bytes (with `first`, the first
/// batch of the response fits whatever its size: KIP-74); and whether the
/// read must stop (a batch did not fit, or `end` was reached).
fn fit(
    batches: Vec<BatchRef>,
    next: i64,
    end: i64,
    mut used: usize,
    budget: usize,
    first: bool,
) -> (Vec<BatchRef>, bool) {
    let mut wanted = Vec::new();
    for batch in batches {
        if batch.end_offset() <= next {
            continue;
        }
        if batch.base_offset >= end {
            return (wanted, true);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: no request max_bytes, unlimited (0, -1) or huge, gets past
    /// the agent's fetch_max_bytes.
    #[test]
    fn max_bytes_is_capped_by_the_agent() {
        let cap = 57_671_680;
        assert_eq!(capped_max_bytes(0, cap), cap);
        assert_eq!(capped_max_bytes(-1, cap), cap);
        assert_eq!(capped_max_bytes(i32::MIN, cap), cap);
        assert_eq!(capped_max_bytes(i32::MAX, cap), cap);
        assert_eq!(capped_max_bytes(1024, cap), 1024);
    }
}
