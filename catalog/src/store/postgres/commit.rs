//! CommitSegment, set-wise: a run of consecutive commits of one batch is
//! loaded with a few queries, applied in memory in request order with the
//! shared producer rules, and written back with a few statements.
//!
//! Each commit works on its own copy of the rows it touches and merges
//! them into the run's state only when it succeeds, so a failed commit
//! leaves no trace (the same guarantee a savepoint per commit gives).

use std::collections::{BTreeSet, HashMap};

use prost::Message;
use strata_catalog_api::proto::{
    BatchMeta, BatchResult, Chunk, ChunkResult, ChunkWrite, CommitEvent, CommitSegmentRequest,
    CommitSegmentResponse, PartitionOffsets,
};

use super::producers::ProducerRow;
use super::writer::WriteContext;
use super::{to_bigint, to_u32};
use crate::error_code;
use crate::producer::{self, BatchIdentity, PartitionProducer, Verdict};
use crate::store::CommitOutcome;
use crate::{Error, Result};

mod load;
mod save;

/// A partition, by raw topic id bytes and index.
pub(super) type PartitionKey = (Vec<u8>, u32);

/// A partition's row as the commit updates it.
#[derive(Debug, Clone, Copy)]
pub(super) struct PartitionRow {
    pub(super) log_start_offset: i64,
    pub(super) next_offset: i64,
    pub(super) max_timestamp: i64,
    pub(super) max_timestamp_offset: i64,
}

/// A chunk to insert, with the partition's greatest timestamp up to it.
#[derive(Debug, Clone)]
pub(super) struct NewChunk {
    pub(super) chunk: Chunk,
    pub(super) running_max_timestamp: i64,
}

/// A segment row to insert.
#[derive(Debug, Clone)]
pub(super) struct SegmentRow {
    pub(super) segment_id: String,
    pub(super) object_key: String,
    pub(super) agent_id: String,
    pub(super) sequence: i64,
    pub(super) response: Vec<u8>,
}

/// The rows of a run: loaded once, changed by each successful commit,
/// written back at the end. Absent keys do not exist in the database.
#[derive(Debug, Default)]
pub(super) struct RunState {
    /// Responses of segments already committed, by segment id.
    pub(super) stored: HashMap<String, CommitSegmentResponse>,
    pub(super) partitions: HashMap<PartitionKey, PartitionRow>,
    /// Raw rows, expired or not.
    pub(super) producers: HashMap<i64, ProducerRow>,
    /// Raw states, expired or not.
    pub(super) states: HashMap<(i64, PartitionKey), PartitionProducer>,
    pub(super) dirty_partitions: BTreeSet<PartitionKey>,
    pub(super) dirty_producers: BTreeSet<i64>,
    pub(super) dirty_states: BTreeSet<(i64, PartitionKey)>,
    pub(super) chunks: Vec<NewChunk>,
    pub(super) segments: Vec<SegmentRow>,
}

/// Applies `requests` in order; returns one outcome per request. An `Err`
/// of the whole run means the database failed (the caller rolls back).
pub(super) async fn apply_run(
    context: &mut WriteContext<'_, '_>,
    requests: &[CommitSegmentRequest],
) -> Result<Vec<Result<CommitOutcome>>> {
    let mut state = load::load(context.transaction, requests).await?;
    let outcomes = requests
        .iter()
        .map(|request| apply_one(context, &mut state, request))
        .collect();
    save::save(context.transaction, &state, context.now_ms).await?;
    Ok(outcomes)
}

/// Commits one segment against the run's state (see
/// `CatalogStore::commit_segment`).
fn apply_one(
    context: &mut WriteContext<'_, '_>,
    state: &mut RunState,
    request: &CommitSegmentRequest,
) -> Result<CommitOutcome> {
    if let Some(response) = state.stored.get(&request.segment_id) {
        return Ok(CommitOutcome {
            response: response.clone(),
            event: None,
        });
    }
    let mut work = CommitWork {
        base: state,
        request,
        now_ms: context.now_ms,
        live_since_ms: context.now_ms - context.options.producer_id_expiration_ms,
        partitions: HashMap::new(),
        touched: Vec::new(),
        producers: HashMap::new(),
        states: HashMap::new(),
        new_chunks: Vec::new(),
    };
    let mut results = Vec::with_capacity(request.chunks.len());
    for write in &request.chunks {
        results.push(work.apply_write(write)?);
    }
    let offsets = work.offsets();
    for result in &mut results {
        let key = (result.topic_id.clone(), result.partition);
        if let Some(Some(partition)) = work.partitions.get(&key) {
            result.log_start_offset = partition.log_start_offset;
            result.high_watermark = partition.next_offset;
        }
    }
    let sequence = context.sequence + 1;
    let response = CommitSegmentResponse {
        chunks: results,
        sequence,
    };
    let segment = SegmentRow {
        segment_id: request.segment_id.clone(),
        object_key: request.object_key.clone(),
        agent_id: request.agent_id.clone(),
        sequence: to_bigint("commit sequence", sequence)?,
        response: response.encode_to_vec(),
    };
    let changes = work.into_changes();
    context.sequence = sequence;
    let event = CommitEvent {
        sequence,
        chunks: changes.chunks.iter().map(|new| new.chunk.clone()).collect(),
        offsets,
        invalidated: Vec::new(),
    };
    state.merge(changes, segment, response.clone());
    Ok(CommitOutcome {
        response,
        event: Some(event),
    })
}

/// What a successful commit changed.
#[derive(Debug)]
struct Changes {
    partitions: Vec<(PartitionKey, PartitionRow)>,
    producers: Vec<(i64, ProducerRow)>,
    states: Vec<((i64, PartitionKey), PartitionProducer)>,
    chunks: Vec<NewChunk>,
}

impl RunState {
    fn merge(&mut self, changes: Changes, segment: SegmentRow, response: CommitSegmentResponse) {
        for (key, row) in changes.partitions {
            self.dirty_partitions.insert(key.clone());
            self.partitions.insert(key, row);
        }
        for (producer_id, row) in changes.producers {
            self.dirty_producers.insert(producer_id);
            self.producers.insert(producer_id, row);
        }
        for (key, state) in changes.states {
            self.dirty_states.insert(key.clone());
            self.states.insert(key, state);
        }
        self.chunks.extend(changes.chunks);
        self.stored.insert(segment.segment_id.clone(), response);
        self.segments.push(segment);
    }
}

/// A producer's state in one partition, copied on first use.
#[derive(Debug)]
struct StateSlot {
    state: Option<PartitionProducer>,
    dirty: bool,
}

/// A run of consecutive accepted batches of one write: one chunk.
#[derive(Debug, Clone, Copy)]
struct ChunkRun {
    base_offset: i64,
    end_offset: i64,
    position: u64,
    length: u64,
    batch_count: u32,
    max_timestamp: i64,
}

/// One commit's view: rows copied from the run on first use.
struct CommitWork<'a> {
    base: &'a RunState,
    request: &'a CommitSegmentRequest,
    now_ms: i64,
    /// Producer state last updated before this is expired.
    live_since_ms: i64,
    /// `None` for partitions that do not exist.
    partitions: HashMap<PartitionKey, Option<PartitionRow>>,
    /// Existing partitions in first-touch order.
    touched: Vec<PartitionKey>,
    /// `None` for unknown or expired producer ids; `.1` = dirty.
    producers: HashMap<i64, Option<(ProducerRow, bool)>>,
    states: HashMap<(i64, PartitionKey), StateSlot>,
    new_chunks: Vec<NewChunk>,
}

impl CommitWork<'_> {
    /// Checks and appends the batches of one write, in order.
    fn apply_write(&mut self, write: &ChunkWrite) -> Result<ChunkResult> {
        let key = (write.topic_id.clone(), write.partition);
        let mut result = ChunkResult {
            topic_id: write.topic_id.clone(),
            partition: write.partition,
            batches: Vec::with_capacity(write.batches.len()),
            log_start_offset: -1,
            high_watermark: -1,
        };
        if self.partition(&key).is_none() {
            let unknown = BatchResult {
                error_code: i32::from(error_code::UNKNOWN_TOPIC_OR_PARTITION),
                base_offset: -1,
            };
            result.batches.resize(write.batches.len(), unknown);
            return Ok(result);
        }
        let mut run = None;
        let mut position = write.position;
        for batch in &write.batches {
            let (code, base_offset) = match self.check(&key, batch) {
                Verdict::Accept => (
                    error_code::NONE,
                    self.append(&key, batch, &mut run, position)?,
                ),
                Verdict::Duplicate { base_offset } => {
                    self.close_run(&key, run.take())?;
                    (error_code::DUPLICATE_SEQUENCE_NUMBER, base_offset)
                }
                Verdict::Reject(code) => {
                    self.close_run(&key, run.take())?;
                    (code, -1)
                }
            };
            result.batches.push(BatchResult {
                error_code: i32::from(code),
                base_offset,
            });
            position = position
                .checked_add(u64::from(batch.length))
                .ok_or_else(|| overflow("position"))?;
        }
        self.close_run(&key, run.take())?;
        Ok(result)
    }

    /// The partition's row, copied on first use.
    fn partition(&mut self, key: &PartitionKey) -> Option<PartitionRow> {
        if let Some(row) = self.partitions.get(key) {
            return *row;
        }
        let row = self.base.partitions.get(key).copied();
        if row.is_some() {
            self.touched.push(key.clone());
        }
        self.partitions.insert(key.clone(), row);
        row
    }

    fn partition_mut(&mut self, key: &PartitionKey) -> &mut PartitionRow {
        self.partitions
            .get_mut(key)
            .and_then(Option::as_mut)
            .expect("apply_write copies an existing partition before appending to it")
    }

    /// Applies Kafka's idempotent-producer rules to one batch.
    fn check(&mut self, key: &PartitionKey, batch: &BatchMeta) -> Verdict {
        if !is_idempotent(batch) {
            return Verdict::Accept;
        }
        let producer_epoch = self.producer(batch.producer_id).map(|row| row.epoch);
        let slot = self.state(batch.producer_id, key);
        producer::check(producer_epoch, slot.state.as_ref(), &identity(batch))
    }

    /// The producer's row, copied on first use; `None` if unknown or expired.
    fn producer(&mut self, producer_id: i64) -> Option<ProducerRow> {
        if let Some(row) = self.producers.get(&producer_id) {
            return row.map(|(row, _)| row);
        }
        let row = self
            .base
            .producers
            .get(&producer_id)
            .copied()
            .filter(|row| row.is_live(self.live_since_ms));
        self.producers
            .insert(producer_id, row.map(|row| (row, false)));
        row
    }

    /// The producer's state in the partition, copied on first use.
    fn state(&mut self, producer_id: i64, key: &PartitionKey) -> &mut StateSlot {
        let live_since_ms = self.live_since_ms;
        let base = self.base;
        self.states
            .entry((producer_id, key.clone()))
            .or_insert_with_key(|slot_key| StateSlot {
                state: base
                    .states
                    .get(slot_key)
                    .filter(|state| state.last_update_ms >= live_since_ms)
                    .cloned(),
                dirty: false,
            })
    }

    /// Assigns offsets to an accepted batch, extends the current run and
    /// records the producer's new state. Returns the batch's base offset.
    fn append(
        &mut self,
        key: &PartitionKey,
        batch: &BatchMeta,
        run: &mut Option<ChunkRun>,
        position: u64,
    ) -> Result<i64> {
        let partition = self.partition_mut(key);
        let base_offset = partition.next_offset;
        let end_offset = base_offset
            .checked_add(i64::from(batch.offset_count))
            .ok_or_else(|| overflow("offset"))?;
        partition.next_offset = end_offset;
        match run {
            Some(run) => {
                run.end_offset = end_offset;
                run.length = run.length.saturating_add(u64::from(batch.length));
                run.batch_count += 1;
                run.max_timestamp = run.max_timestamp.max(batch.max_timestamp);
            }
            None => {
                *run = Some(ChunkRun {
                    base_offset,
                    end_offset,
                    position,
                    length: u64::from(batch.length),
                    batch_count: 1,
                    max_timestamp: batch.max_timestamp,
                });
            }
        }
        if batch.producer_id >= 0 {
            self.record_producer(key, batch, base_offset);
        }
        Ok(base_offset)
    }

    /// Updates the producer's state after one of its batches was appended.
    fn record_producer(&mut self, key: &PartitionKey, batch: &BatchMeta, base_offset: i64) {
        let now_ms = self.now_ms;
        let idempotent = is_idempotent(batch);
        let slot = self.state(batch.producer_id, key);
        if idempotent {
            let previous = slot.state.take();
            slot.state = Some(PartitionProducer::record(
                previous,
                &identity(batch),
                base_offset,
                batch.max_timestamp,
                now_ms,
            ));
            slot.dirty = true;
        }
        if let Some(state) = slot.state.as_mut() {
            // Basic transaction bookkeeping: the first transactional batch
            // opens a transaction, a control batch (marker) closes it.
            if batch.control {
                state.current_txn_start_offset = -1;
                slot.dirty = true;
            } else if batch.transactional && state.current_txn_start_offset < 0 {
                state.current_txn_start_offset = base_offset;
                slot.dirty = true;
            }
        }
        if let Some(Some((row, dirty))) = self.producers.get_mut(&batch.producer_id) {
            row.epoch = row.epoch.max(batch.producer_epoch);
            row.last_update_ms = now_ms;
            *dirty = true;
        }
    }

    /// Records a finished run as a new chunk. Fails if a field does not fit
    /// in the database's signed 64-bit columns.
    fn close_run(&mut self, key: &PartitionKey, run: Option<ChunkRun>) -> Result<()> {
        let Some(run) = run else {
            return Ok(());
        };
        let chunk = Chunk {
            topic_id: key.0.clone(),
            partition: key.1,
            base_offset: run.base_offset,
            end_offset: run.end_offset,
            object_key: self.request.object_key.clone(),
            object_size: self.request.object_size,
            position: run.position,
            length: run.length,
            batch_count: run.batch_count,
            max_timestamp: run.max_timestamp,
        };
        for (field, value) in [
            ("object_size", chunk.object_size),
            ("position", chunk.position),
            ("length", chunk.length),
        ] {
            to_bigint(field, value)?;
        }
        let partition = self.partition_mut(key);
        let running_max_timestamp = partition.max_timestamp.max(run.max_timestamp);
        if run.max_timestamp > partition.max_timestamp {
            partition.max_timestamp = run.max_timestamp;
            partition.max_timestamp_offset = run.base_offset;
        }
        self.new_chunks.push(NewChunk {
            chunk,
            running_max_timestamp,
        });
        Ok(())
    }

    /// The offsets of every touched partition, in first-touch order.
    fn offsets(&self) -> Vec<PartitionOffsets> {
        self.touched
            .iter()
            .filter_map(|key| {
                let row = self.partitions.get(key).copied().flatten()?;
                Some(PartitionOffsets {
                    topic_id: key.0.clone(),
                    partition: key.1,
                    log_start_offset: row.log_start_offset,
                    high_watermark: row.next_offset,
                })
            })
            .collect()
    }

    fn into_changes(self) -> Changes {
        let partitions = self
            .touched
            .iter()
            .filter_map(|key| Some((key.clone(), self.partitions.get(key).copied().flatten()?)))
            .collect();
        let producers = self
            .producers
            .into_iter()
            .filter_map(|(id, row)| match row {
                Some((row, true)) => Some((id, row)),
                _ => None,
            })
            .collect();
        let states = self
            .states
            .into_iter()
            .filter_map(|(key, slot)| match slot {
                StateSlot {
                    state: Some(state),
                    dirty: true,
                } => Some((key, state)),
                _ => None,
            })
            .collect();
        Changes {
            partitions,
            producers,
            states,
            chunks: self.new_chunks,
        }
    }
}

fn overflow(field: &'static str) -> Error {
    Error::InvalidArgument {
        field,
        reason: "overflows a 64-bit integer".to_string(),
    }
}

fn is_idempotent(batch: &BatchMeta) -> bool {
    batch.producer_id >= 0 && batch.base_sequence >= 0
}

fn identity(batch: &BatchMeta) -> BatchIdentity {
    BatchIdentity::new(
        batch.producer_epoch,
        batch.base_sequence,
        batch.offset_count,
    )
}

/// The partitions, producer ids and producer states a run may touch.
fn run_keys(
    requests: &[CommitSegmentRequest],
) -> (
    BTreeSet<PartitionKey>,
    BTreeSet<i64>,
    BTreeSet<(i64, PartitionKey)>,
) {
    let mut partitions = BTreeSet::new();
    let mut producers = BTreeSet::new();
    let mut states = BTreeSet::new();
    for write in requests.iter().flat_map(|request| &request.chunks) {
        let key = (write.topic_id.clone(), write.partition);
        for batch in write.batches.iter().filter(|batch| batch.producer_id >= 0) {
            producers.insert(batch.producer_id);
            states.insert((batch.producer_id, key.clone()));
        }
        partitions.insert(key);
    }
    (partitions, producers, states)
}

/// A stored partition index as a `u32`.
fn partition_index(value: i64) -> Result<u32> {
    to_u32("partition index", value)
}
