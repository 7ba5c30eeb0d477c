//! CommitSegment: offsets, chunks and producer checks in one transaction.
//! The rules live in [`crate::store::commit_plan`]; this file reads the
//! rows they need and writes back what they change.

use prost::Message;
use rusqlite::{Connection, OptionalExtension, params};
use strata_catalog_api::proto::{CommitSegmentRequest, CommitSegmentResponse};

use super::rows::WriteContext;
use super::rows::agents;
use super::rows::chunks::{self, bury_unreferenced, insert_chunk, save_partition};
use super::rows::producers;
use crate::producer::PartitionProducer;
use crate::store::CommitOutcome;
use crate::store::commit_plan::{
    self, AgentFence, Changes, CommitSource, NewChunk, PartitionKey, PartitionRow, StateKey,
    TxnMembership,
};
use crate::store::producer_rules::ProducerRow;
use crate::store::rows::SegmentRows;
use crate::{Error, Result};

impl SegmentRows for WriteContext<'_> {
    async fn commit_segment(&mut self, request: &CommitSegmentRequest) -> Result<CommitOutcome> {
        commit_segment(self, request)
    }
}

/// Commits a segment (see `CatalogStore::commit_segment`).
fn commit_segment(
    context: &mut WriteContext<'_>,
    request: &CommitSegmentRequest,
) -> Result<CommitOutcome> {
    let connection = context.connection;
    if let Some(response) = stored_response(connection, &request.segment_id)? {
        return Ok(commit_plan::replayed(response));
    }
    commit_plan::check_age(request, context.now_ms, context.options.max_commit_age_ms)?;
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
        chunks::partition(self, key)
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

    fn txn_membership(
        &mut self,
        producer_id: i64,
        key: &PartitionKey,
    ) -> Result<Option<TxnMembership>> {
        Ok(self
            .prepare_cached(
                "SELECT t.producer_epoch, t.state = 'Ongoing',
                     EXISTS (SELECT 1 FROM txn_partitions p
                             WHERE p.transactional_id = t.transactional_id
                               AND p.topic_id = ?2 AND p.partition = ?3)
                 FROM producers r
                 JOIN transactional_ids t
                   ON t.transactional_id = r.transactional_id AND t.producer_id = r.producer_id
                 WHERE r.producer_id = ?1",
            )?
            .query_row(params![producer_id, key.0, key.1], |row| {
                Ok(TxnMembership {
                    producer_epoch: row.get(0)?,
                    ongoing: row.get(1)?,
                    added: row.get(2)?,
                })
            })
            .optional()?)
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
