//! CommitSegment: offsets, chunks and producer checks in one transaction.
//! The rules live in [`crate::store::commit_plan`]; this file reads the
//! rows they need and writes back what they change.

use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use strata_catalog_api::proto::{Chunk, CommitSegmentRequest, CommitSegmentResponse};

use super::producers;
use super::rows::WriteContext;
use super::rows::agents;
use super::rows::chunks::bury_unreferenced;
use crate::producer::PartitionProducer;
use crate::store::CommitOutcome;
use crate::store::commit_plan::{
    self, AgentFence, Changes, CommitSource, NewChunk, PartitionKey, PartitionRow, StateKey,
};
use crate::store::producer_rules::ProducerRow;
use crate::{Error, Result};

/// Commits a segment (see `CatalogStore::commit_segment`).
pub(super) fn commit_segment(
    context: &mut WriteContext<'_>,
    request: &CommitSegmentRequest,
) -> Result<CommitOutcome> {
    let connection = context.connection;
    if let Some(response) = stored_response(connection, &request.segment_id)? {
        return Ok(commit_plan::replayed(response));
    }
    let live_since_ms = context.now_ms - context.options.producer_id_expiration_ms;
    let applied = commit_plan::apply(connection, request, context.now_ms, live_since_ms)?;
    save(connection, &applied.changes)?;
    if applied.changes.chunks.is_empty() && !request.object_key.is_empty() {
        // Every batch was rejected: no chunk will ever point into the
        // object, so the GC may delete it.
        bury_unreferenced(
            connection,
            std::slice::from_ref(&request.object_key),
            context.now_ms,
        )?;
    }
    let (outcome, _) = applied.finish(context.counters.next_sequence());
    store_response(context, request, &outcome.response)?;
    Ok(outcome)
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

/// Rows are read from the open transaction; closed chunks are inserted
/// right away.
impl CommitSource for &Connection {
    fn partition(&mut self, key: &PartitionKey) -> Result<Option<PartitionRow>> {
        Ok(self
            .prepare_cached(
                "SELECT log_start_offset, next_offset, last_stable_offset, max_timestamp,
                     max_timestamp_offset
                 FROM partitions WHERE topic_id = ?1 AND partition = ?2",
            )?
            .query_row(params![key.0, key.1], |row| {
                Ok(PartitionRow {
                    log_start_offset: row.get(0)?,
                    next_offset: row.get(1)?,
                    last_stable_offset: row.get(2)?,
                    max_timestamp: row.get(3)?,
                    max_timestamp_offset: row.get(4)?,
                })
            })
            .optional()?)
    }

    fn producer(&mut self, producer_id: i64) -> Result<Option<ProducerRow>> {
        producers::load(self, producer_id)
    }

    fn partition_state(&mut self, key: &StateKey) -> Result<Option<PartitionProducer>> {
        producers::load_partition_state(self, key.0, &key.1)
    }

    fn chunk_closed(&mut self, new: &NewChunk) -> Result<()> {
        insert_chunk(self, &new.chunk, new.running_max_timestamp)
    }

    fn agent(&mut self, agent_id: &str) -> Result<Option<AgentFence>> {
        agents::load_fence(self, agent_id)
    }
}

/// Writes back partitions and producer state.
fn save(connection: &Connection, changes: &Changes) -> Result<()> {
    let mut update = connection.prepare_cached(
        "UPDATE partitions SET next_offset = ?3, last_stable_offset = ?4,
             max_timestamp = ?5, max_timestamp_offset = ?6
         WHERE topic_id = ?1 AND partition = ?2",
    )?;
    for (key, row) in &changes.partitions {
        save_partition(&mut update, key, row)?;
    }
    for ((producer_id, key), state) in &changes.states {
        producers::save_partition_state(connection, *producer_id, key, state)?;
    }
    for (producer_id, row) in &changes.producers {
        producers::touch(connection, *producer_id, row)?;
    }
    Ok(())
}

/// Runs the partition update prepared by [`save`] for one row.
fn save_partition(
    update: &mut rusqlite::CachedStatement<'_>,
    key: &PartitionKey,
    row: &PartitionRow,
) -> Result<()> {
    update.execute(params![
        key.0,
        key.1,
        row.next_offset,
        row.last_stable_offset,
        row.max_timestamp,
        row.max_timestamp_offset
    ])?;
    Ok(())
}

/// Writes back one partition row (offsets, last stable offset, max
/// timestamp).
pub(super) fn update_partition(
    connection: &Connection,
    key: &PartitionKey,
    row: &PartitionRow,
) -> Result<()> {
    let mut update = connection.prepare_cached(
        "UPDATE partitions SET next_offset = ?3, last_stable_offset = ?4,
             max_timestamp = ?5, max_timestamp_offset = ?6
         WHERE topic_id = ?1 AND partition = ?2",
    )?;
    save_partition(&mut update, key, row)
}

/// Inserts a chunk row (any format).
pub(super) fn insert_chunk(
    connection: &Connection,
    chunk: &Chunk,
    running_max_timestamp: i64,
) -> Result<()> {
    let to_sql = |value: u64| {
        i64::try_from(value).map_err(|_| Error::InvalidArgument {
            field: "chunk",
            reason: format!("{value} does not fit in a signed 64-bit integer"),
        })
    };
    connection
        .prepare_cached(
            "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key,
                 object_size, position, length, batch_count, max_timestamp, running_max_timestamp,
                 format, marker_producer_id, marker_producer_epoch, marker_coordinator_epoch,
                 marker_commit)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
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
            running_max_timestamp,
            chunk.format,
            chunk.marker.map(|m| m.producer_id),
            chunk.marker.map(|m| m.producer_epoch),
            chunk.marker.map(|m| m.coordinator_epoch),
            chunk.marker.map(|m| m.commit),
        ])?;
    Ok(())
}
