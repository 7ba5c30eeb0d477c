//! CommitSegment: offsets, chunks and producer checks in one transaction.

use std::collections::HashMap;

use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use strata_catalog_api::proto::{
    BatchMeta, BatchResult, Chunk, ChunkResult, ChunkWrite, CommitEvent, CommitSegmentRequest,
    CommitSegmentResponse, PartitionOffsets,
};

use super::producers::{self, ProducerRow};
use super::writer::WriteContext;
use crate::error_code;
use crate::producer::{self, BatchIdentity, PartitionProducer, Verdict};
use crate::store::CommitOutcome;
use crate::{Error, Result};

/// A partition, by raw topic id bytes and index.
type PartitionKey = (Vec<u8>, u32);

/// Commits a segment (see `CatalogStore::commit_segment`).
pub(super) fn commit_segment(
    context: &mut WriteContext<'_>,
    request: &CommitSegmentRequest,
) -> Result<CommitOutcome> {
    let connection = context.connection;
    if let Some(response) = stored_response(connection, &request.segment_id)? {
        return Ok(CommitOutcome {
            response,
            event: None,
        });
    }
    let mut work = CommitWork {
        connection,
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
    let offsets = work.save()?;
    for result in &mut results {
        let key = (result.topic_id.clone(), result.partition);
        if let Some(Some(partition)) = work.partitions.get(&key) {
            result.log_start_offset = partition.log_start_offset;
            result.high_watermark = partition.next_offset;
        }
    }
    let sequence = context.counters.next_sequence();
    let response = CommitSegmentResponse {
        chunks: results,
        sequence,
    };
    store_response(context, request, &response)?;
    let event = CommitEvent {
        sequence,
        chunks: work.new_chunks,
        offsets,
        invalidated: Vec::new(),
    };
    Ok(CommitOutcome {
        response,
        event: Some(event),
    })
}

fn stored_response(
    connection: &Connection,
    segment_id: &str,
) -> Result<Option<CommitSegmentResponse>> {
    let blob: Option<Vec<u8>> = connection
        .prepare_cached("SELECT response FROM segments WHERE segment_id = ?1")?
        .query_row([segment_id], |row| row.get(0))
        .optional()?;
    blob.map(|blob| {
        CommitSegmentResponse::decode(blob.as_slice()).map_err(|e| Error::Corrupt {
            what: format!("stored response of segment {segment_id}: {e}"),
        })
    })
    .transpose()
}

fn store_response(
    context: &WriteContext<'_>,
    request: &CommitSegmentRequest,
    response: &CommitSegmentResponse,
) -> Result<()> {
    let sequence = i64::try_from(response.sequence).map_err(|_| Error::Corrupt {
        what: format!("commit sequence {}", response.sequence),
    })?;
    context
        .connection
        .prepare_cached(
            "INSERT INTO segments (segment_id, object_key, agent_id, sequence, committed_ms, response)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            request.segment_id,
            request.object_key,
            request.agent_id,
            sequence,
            context.now_ms,
            response.encode_to_vec()
        ])?;
    Ok(())
}

/// A partition's row as the commit updates it.
#[derive(Debug, Clone, Copy)]
struct PartitionRow {
    log_start_offset: i64,
    next_offset: i64,
    max_timestamp: i64,
    max_timestamp_offset: i64,
}

/// A producer's state in one partition, loaded once per commit.
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

/// The state of one commit: rows loaded once, written back at the end.
struct CommitWork<'a> {
    connection: &'a Connection,
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
    new_chunks: Vec<Chunk>,
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
            let outcome = match self.check(&key, batch)? {
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
                error_code: i32::from(outcome.0),
                base_offset: outcome.1,
            });
            position = position
                .checked_add(u64::from(batch.length))
                .ok_or_else(|| overflow("position"))?;
        }
        self.close_run(&key, run.take())?;
        Ok(result)
    }

    /// The partition's row, loaded on first use.
    fn partition(&mut self, key: &PartitionKey) -> Result<Option<PartitionRow>> {
        if let Some(row) = self.partitions.get(key) {
            return Ok(*row);
        }
        let row = self
            .connection
            .prepare_cached(
                "SELECT log_start_offset, next_offset, max_timestamp, max_timestamp_offset
                 FROM partitions WHERE topic_id = ?1 AND partition = ?2",
            )?
            .query_row(params![key.0, key.1], |row| {
                Ok(PartitionRow {
                    log_start_offset: row.get(0)?,
                    next_offset: row.get(1)?,
                    max_timestamp: row.get(2)?,
                    max_timestamp_offset: row.get(3)?,
                })
            })
            .optional()?;
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
            .expect("apply_write loads an existing partition before appending to it")
    }

    /// Applies Kafka's idempotent-producer rules to one batch.
    fn check(&mut self, key: &PartitionKey, batch: &BatchMeta) -> Result<Verdict> {
        if !is_idempotent(batch) {
            return Ok(Verdict::Accept);
        }
        let producer_epoch = self.producer(batch.producer_id)?.map(|row| row.epoch);
        let identity = identity(batch);
        let slot = self.state(batch.producer_id, key)?;
        Ok(producer::check(
            producer_epoch,
            slot.state.as_ref(),
            &identity,
        ))
    }

    /// The producer's row, loaded on first use; `None` if unknown or expired.
    fn producer(&mut self, producer_id: i64) -> Result<Option<ProducerRow>> {
        if let Some(row) = self.producers.get(&producer_id) {
            return Ok(row.map(|(row, _)| row));
        }
        let row = producers::load(self.connection, producer_id)?
            .filter(|row| row.is_live(self.live_since_ms));
        self.producers
            .insert(producer_id, row.map(|row| (row, false)));
        Ok(row)
    }

    /// The producer's state in the partition, loaded on first use.
    fn state(&mut self, producer_id: i64, key: &PartitionKey) -> Result<&mut StateSlot> {
        let slot_key = (producer_id, key.clone());
        if !self.states.contains_key(&slot_key) {
            let state = producers::load_partition_state(self.connection, producer_id, key)?
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
            self.record_producer(key, batch, base_offset)?;
        }
        Ok(base_offset)
    }

    /// Updates the producer's state after one of its batches was appended.
    fn record_producer(
        &mut self,
        key: &PartitionKey,
        batch: &BatchMeta,
        base_offset: i64,
    ) -> Result<()> {
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
            }
        }
        if let Some(Some((row, dirty))) = self.producers.get_mut(&batch.producer_id) {
            row.epoch = row.epoch.max(batch.producer_epoch);
            row.last_update_ms = now_ms;
            *dirty = true;
        }
        Ok(())
    }

    /// Records a finished run as a chunk row.
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
        };
        insert_chunk(self.connection, &chunk, running_max_timestamp)?;
        self.new_chunks.push(chunk);
        Ok(())
    }

    /// Writes back partitions and producer state; returns the offsets of
    /// every touched partition, in first-touch order.
    fn save(&self) -> Result<Vec<PartitionOffsets>> {
        let mut update = self.connection.prepare_cached(
            "UPDATE partitions SET next_offset = ?3, last_stable_offset = ?3,
                 max_timestamp = ?4, max_timestamp_offset = ?5
             WHERE topic_id = ?1 AND partition = ?2",
        )?;
        let mut offsets = Vec::with_capacity(self.touched.len());
        for key in &self.touched {
            let Some(Some(row)) = self.partitions.get(key) else {
                continue;
            };
            update.execute(params![
                key.0,
                key.1,
                row.next_offset,
                row.max_timestamp,
                row.max_timestamp_offset
            ])?;
            offsets.push(PartitionOffsets {
                topic_id: key.0.clone(),
                partition: key.1,
                log_start_offset: row.log_start_offset,
                high_watermark: row.next_offset,
            });
        }
        for ((producer_id, key), slot) in &self.states {
            if let (true, Some(state)) = (slot.dirty, &slot.state) {
                producers::save_partition_state(self.connection, *producer_id, key, state)?;
            }
        }
        for (producer_id, row) in &self.producers {
            if let Some((row, true)) = row {
                producers::touch(self.connection, *producer_id, row)?;
            }
        }
        Ok(offsets)
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

fn insert_chunk(connection: &Connection, chunk: &Chunk, running_max_timestamp: i64) -> Result<()> {
    let to_sql = |value: u64| {
        i64::try_from(value).map_err(|_| Error::InvalidArgument {
            field: "chunk",
            reason: format!("{value} does not fit in a signed 64-bit integer"),
        })
    };
    connection
        .prepare_cached(
            "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key,
                 object_size, position, length, batch_count, max_timestamp, running_max_timestamp)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            chunk.topic_id,
            chunk.partition,
            chunk.base_offset,
            chunk.end_offset,
            chunk.object_key,
            to_sql(chunk.object_size)?,
            to_sql(chunk.position)?,
            to_sql(chunk.length)?,
            chunk.batch_count,
            chunk.max_timestamp,
            running_max_timestamp
        ])?;
    Ok(())
}
