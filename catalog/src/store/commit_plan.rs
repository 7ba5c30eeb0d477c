//! The pure part of CommitSegment, shared by every store: checking each
//! batch with the producer rules, assigning offsets, grouping consecutive
//! accepted batches into chunks, tracking the producer state and assembling
//! the response and the commit-stream event.
//!
//! A store supplies the rows a commit reads through [`CommitSource`] and
//! writes back the [`Changes`] it returns; the commit itself only works on
//! copies, so a failed commit changes nothing.

use std::collections::HashMap;

use strata_catalog_api::proto::{
    BatchMeta, BatchResult, Chunk, ChunkFormat, ChunkResult, ChunkWrite, CommitEvent,
    CommitSegmentRequest, CommitSegmentResponse, PartitionOffsets,
};

use crate::error_code;
use crate::producer::{self, BatchIdentity, PartitionProducer, Verdict};
use crate::store::CommitOutcome;
use crate::store::producer_rules::ProducerRow;
use crate::{Error, Result};

/// A partition, by raw topic id bytes and index.
pub(crate) type PartitionKey = (Vec<u8>, u32);

/// A producer's state in one partition, by producer id and partition.
pub(crate) type StateKey = (i64, PartitionKey);

/// A partition's row as the commit updates it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartitionRow {
    pub(crate) log_start_offset: i64,
    pub(crate) next_offset: i64,
    /// The first offset of the earliest open transaction, else
    /// `next_offset`.
    pub(crate) last_stable_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) max_timestamp_offset: i64,
}

/// A chunk to insert, with the partition's greatest timestamp up to it.
#[derive(Debug, Clone)]
pub(crate) struct NewChunk {
    pub(crate) chunk: Chunk,
    pub(crate) running_max_timestamp: i64,
}

/// Where a commit reads the rows it touches (each at most once), and
/// where it hands the chunks it closes.
pub(crate) trait CommitSource {
    /// The partition's row; `None` if it does not exist.
    fn partition(&mut self, key: &PartitionKey) -> Result<Option<PartitionRow>>;

    /// The producer's row, expired or not.
    fn producer(&mut self, producer_id: i64) -> Result<Option<ProducerRow>>;

    /// The producer's state in a partition, expired or not.
    fn partition_state(&mut self, key: &StateKey) -> Result<Option<PartitionProducer>>;

    /// Takes a chunk the commit just closed (to write it, or to check it
    /// fits the database); an `Err` fails the commit.
    fn chunk_closed(&mut self, chunk: &NewChunk) -> Result<()>;

    /// The agent's registration as (epoch, fenced); `None` if the agent
    /// never registered. Read inside the commit's transaction, so a fence
    /// or a newer registration either precedes the commit or follows it.
    fn agent(&mut self, agent_id: &str) -> Result<Option<AgentFence>>;

    /// The transaction a transactional batch of `producer_id` may join in
    /// partition `key`: `None` when no transactional id has this producer
    /// id as its current producer. Read inside the commit's transaction,
    /// so an AddPartitionsToTxn or EndTxn either precedes the commit or
    /// follows it (KIP-890 verification).
    fn txn_membership(
        &mut self,
        producer_id: i64,
        key: &PartitionKey,
    ) -> Result<Option<TxnMembership>>;
}

/// A producer's transaction as seen by a transactional batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnMembership {
    /// The transactional id's current producer epoch.
    pub(crate) producer_epoch: i32,
    /// Whether a transaction is open (state `Ongoing`).
    pub(crate) ongoing: bool,
    /// Whether the open transaction added the partition.
    pub(crate) added: bool,
}

/// KIP-890 part 1: a transactional batch is appended only if its partition
/// is in the producer's open transaction, at the transactional id's
/// current epoch. A stray batch (a partition never added, a transaction
/// already ended, a zombie's epoch) would otherwise open a transaction no
/// marker ever closes, and hold the last stable offset forever.
pub(crate) fn check_txn_membership(membership: Option<TxnMembership>, producer_epoch: i32) -> i16 {
    match membership {
        None => error_code::INVALID_TXN_STATE,
        Some(m) if m.producer_epoch != producer_epoch => error_code::INVALID_PRODUCER_EPOCH,
        Some(m) if m.ongoing && m.added => error_code::NONE,
        Some(_) => error_code::INVALID_TXN_STATE,
    }
}

/// An agent's registration as a commit checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AgentFence {
    /// The agent's current epoch.
    pub(crate) epoch: u64,
    /// Whether that epoch's lease expired.
    pub(crate) fenced: bool,
}

/// Fails with `AgentFenced` unless a fenced commit (`agent_epoch > 0`)
/// comes from the agent's current, unfenced registration. Epoch 0 is the
/// unfenced path of `strata dev`, whose in-process agents cannot be
/// zombies of a separate process.
pub(crate) fn check_agent<S: CommitSource>(
    source: &mut S,
    request: &CommitSegmentRequest,
) -> Result<()> {
    if request.agent_epoch == 0 {
        return Ok(());
    }
    let registration = source.agent(&request.agent_id)?;
    let current = registration.filter(|r| !r.fenced).map(|r| r.epoch);
    if current == Some(request.agent_epoch) {
        return Ok(());
    }
    Err(Error::AgentFenced {
        agent_id: request.agent_id.clone(),
        epoch: request.agent_epoch,
        current,
    })
}

/// Fails with `CommitTooLate` when the segment, named by the agent at
/// `segment_id`'s ULID time, is older than `max_age_ms` at `now_ms`. Called
/// for first commits only (a retry of a landed commit gets its stored
/// answer at any age), inside the commit's transaction: a commit either
/// applies while its object is young, or never. An unparseable id is left
/// to the request checks.
pub(crate) fn check_age(
    request: &CommitSegmentRequest,
    now_ms: i64,
    max_age_ms: i64,
) -> Result<()> {
    let Ok(id) = ulid::Ulid::from_string(&request.segment_id) else {
        return Ok(());
    };
    let created_ms = i64::try_from(id.timestamp_ms()).unwrap_or(i64::MAX);
    let age_ms = now_ms.saturating_sub(created_ms);
    if age_ms > max_age_ms {
        return Err(Error::CommitTooLate {
            segment_id: request.segment_id.clone(),
            age_ms,
            max_age_ms,
        });
    }
    Ok(())
}

/// What a successful commit changed, to be written back by the store.
#[derive(Debug)]
pub(crate) struct Changes {
    /// Every existing partition the commit touched, in first-touch order.
    pub(crate) partitions: Vec<(PartitionKey, PartitionRow)>,
    /// Producer rows whose epoch or activity changed.
    pub(crate) producers: Vec<(i64, ProducerRow)>,
    /// Producer states that changed.
    pub(crate) states: Vec<(StateKey, PartitionProducer)>,
    /// The new chunks, in the order they were closed.
    pub(crate) chunks: Vec<NewChunk>,
}

impl Changes {
    /// The offsets of every touched partition, in first-touch order.
    pub(crate) fn offsets(&self) -> Vec<PartitionOffsets> {
        self.partitions
            .iter()
            .map(|(key, row)| PartitionOffsets {
                topic_id: key.0.clone(),
                partition: key.1,
                log_start_offset: row.log_start_offset,
                high_watermark: row.next_offset,
                last_stable_offset: row.last_stable_offset,
            })
            .collect()
    }
}

/// A commit applied in memory: its per-write results and its changes.
#[derive(Debug)]
pub(crate) struct Applied {
    /// One result per write of the request, offsets filled in.
    pub(crate) results: Vec<ChunkResult>,
    /// What to write back.
    pub(crate) changes: Changes,
}

impl Applied {
    /// The commit's outcome (response and event) under commit-stream
    /// sequence `sequence`, and its changes.
    pub(crate) fn finish(self, sequence: u64) -> (CommitOutcome, Changes) {
        let event = CommitEvent {
            sequence,
            chunks: self
                .changes
                .chunks
                .iter()
                .map(|new| new.chunk.clone())
                .collect(),
            offsets: self.changes.offsets(),
            invalidated: Vec::new(),
        };
        let response = CommitSegmentResponse {
            chunks: self.results,
            sequence,
        };
        let outcome = CommitOutcome {
            response,
            event: Some(event),
        };
        (outcome, self.changes)
    }
}

/// The outcome of a retried commit: the stored response, and no event
/// (it was published the first time).
pub(crate) fn replayed(response: CommitSegmentResponse) -> CommitOutcome {
    CommitOutcome {
        response,
        event: None,
    }
}

/// Checks the agent's epoch, then applies the writes of `request` in
/// order, reading rows from `source`.
/// Producer state last updated before `live_since_ms` counts as expired.
pub(crate) fn apply<S: CommitSource>(
    mut source: S,
    request: &CommitSegmentRequest,
    now_ms: i64,
    live_since_ms: i64,
) -> Result<Applied> {
    check_agent(&mut source, request)?;
    let mut work = CommitWork {
        source,
        request,
        now_ms,
        live_since_ms,
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
    for result in &mut results {
        let key = (result.topic_id.clone(), result.partition);
        if let Some(Some(partition)) = work.partitions.get(&key) {
            result.log_start_offset = partition.log_start_offset;
            result.high_watermark = partition.next_offset;
        }
    }
    Ok(Applied {
        results,
        changes: work.into_changes(),
    })
}

/// A producer's state in one partition, read on first use.
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

/// One commit's view: rows read from the source on first use.
struct CommitWork<'a, S> {
    source: S,
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
    states: HashMap<StateKey, StateSlot>,
    new_chunks: Vec<NewChunk>,
}

impl<S: CommitSource> CommitWork<'_, S> {
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
        if self.partition(&key)?.is_none() {
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
            let (code, base_offset) = match self.check(&key, batch)? {
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

    /// The partition's row, read on first use.
    fn partition(&mut self, key: &PartitionKey) -> Result<Option<PartitionRow>> {
        if let Some(row) = self.partitions.get(key) {
            return Ok(*row);
        }
        let row = self.source.partition(key)?;
        if row.is_some() {
            self.touched.push(key.clone());
        }
        self.partitions.insert(key.clone(), row);
        Ok(row)
    }

    fn partition_mut(&mut self, key: &PartitionKey) -> &mut PartitionRow {
        self.partitions
            .get_mut(key)
            .and_then(Option::as_mut)
            .expect("apply_write reads an existing partition before appending to it")
    }

    /// Applies Kafka's idempotent-producer rules to one batch.
    fn check(&mut self, key: &PartitionKey, batch: &BatchMeta) -> Result<Verdict> {
        if batch.transactional && !batch.control {
            let membership = self.source.txn_membership(batch.producer_id, key)?;
            let code = check_txn_membership(membership, batch.producer_epoch);
            if code != error_code::NONE {
                return Ok(Verdict::Reject(code));
            }
        }
        if !is_idempotent(batch) {
            return Ok(Verdict::Accept);
        }
        let producer_epoch = self.producer(batch.producer_id)?.map(|row| row.epoch);
        let slot = self.state(batch.producer_id, key)?;
        Ok(producer::check(
            producer_epoch,
            slot.state.as_ref(),
            &identity(batch),
        ))
    }

    /// The producer's row, read on first use; `None` if unknown or expired.
    fn producer(&mut self, producer_id: i64) -> Result<Option<ProducerRow>> {
        if let Some(row) = self.producers.get(&producer_id) {
            return Ok(row.map(|(row, _)| row));
        }
        let row = self
            .source
            .producer(producer_id)?
            .filter(|row| row.is_live(self.live_since_ms));
        self.producers
            .insert(producer_id, row.map(|row| (row, false)));
        Ok(row)
    }

    /// The producer's state in the partition, read on first use.
    fn state(&mut self, producer_id: i64, key: &PartitionKey) -> Result<&mut StateSlot> {
        let slot_key = (producer_id, key.clone());
        if !self.states.contains_key(&slot_key) {
            let state = self
                .source
                .partition_state(&slot_key)?
                .filter(|state| state.last_update_ms >= self.live_since_ms);
            self.states.insert(
                slot_key.clone(),
                StateSlot {
                    state,
                    dirty: false,
                },
            );
        }
        Ok(self
            .states
            .get_mut(&slot_key)
            .expect("inserted above when missing"))
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
        // With no transaction open (LSO = HWM), the LSO follows the HWM,
        // unless this batch opens one (see below); an open transaction
        // holds the LSO where it is.
        let stable_before = partition.last_stable_offset == base_offset;
        if stable_before {
            partition.last_stable_offset = end_offset;
        }
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
            let opened = self.record_producer(key, batch, base_offset)?;
            if opened && stable_before {
                self.partition_mut(key).last_stable_offset = base_offset;
            }
        }
        Ok(base_offset)
    }

    /// Updates the producer's state after one of its batches was appended.
    /// Returns whether the batch opened a transaction in the partition.
    fn record_producer(
        &mut self,
        key: &PartitionKey,
        batch: &BatchMeta,
        base_offset: i64,
    ) -> Result<bool> {
        let mut opened = false;
        let now_ms = self.now_ms;
        let idempotent = is_idempotent(batch);
        let slot = self.state(batch.producer_id, key)?;
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
                opened = true;
            }
        }
        if let Some(Some((row, dirty))) = self.producers.get_mut(&batch.producer_id) {
            row.epoch = row.epoch.max(batch.producer_epoch);
            row.last_update_ms = now_ms;
            *dirty = true;
        }
        Ok(opened)
    }

    /// Records a finished run as a new chunk and hands it to the source.
    fn close_run(&mut self, key: &PartitionKey, run: Option<ChunkRun>) -> Result<()> {
        let Some(run) = run else {
            return Ok(());
        };
        let partition = self.partition_mut(key);
        let running_max_timestamp = partition.max_timestamp.max(run.max_timestamp);
        if run.max_timestamp > partition.max_timestamp {
            partition.max_timestamp = run.max_timestamp;
            partition.max_timestamp_offset = run.base_offset;
        }
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
            format: ChunkFormat::Segment.into(),
            marker: None,
        };
        let new = NewChunk {
            chunk,
            running_max_timestamp,
        };
        self.source.chunk_closed(&new)?;
        self.new_chunks.push(new);
        Ok(())
    }

    /// The rows the commit changed.
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
