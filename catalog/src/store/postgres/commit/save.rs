//! Writing a run back: one set-based statement per table, pipelined on the
//! writer's connection.

use std::collections::BTreeSet;

use super::super::rows::Transaction;
use super::super::rows::chunks::bury_unreferenced;
use super::{PartitionKey, RunState};
use crate::Result;
use crate::producer::encode_recent;
use crate::store::postgres::to_bigint;

/// Writes every change of the run.
pub(super) async fn save(
    transaction: &Transaction<'_>,
    state: &RunState,
    now_ms: i64,
) -> Result<()> {
    futures::try_join!(
        insert_chunks(transaction, state),
        update_partitions(transaction, state),
        upsert_states(transaction, state),
        update_producers(transaction, state),
        insert_segments(transaction, state, now_ms),
    )?;
    // After the chunks, so the check sees this run's chunks too.
    bury_unreferenced(transaction, &state.dead_objects, now_ms).await?;
    Ok(())
}

async fn insert_chunks(transaction: &Transaction<'_>, state: &RunState) -> Result<()> {
    if state.chunks.is_empty() {
        return Ok(());
    }
    let count = state.chunks.len();
    let mut columns = ChunkColumns::with_capacity(count);
    for new in &state.chunks {
        let chunk = &new.chunk;
        columns.topic_ids.push(chunk.topic_id.as_slice());
        columns.partitions.push(i64::from(chunk.partition));
        columns.base_offsets.push(chunk.base_offset);
        columns.end_offsets.push(chunk.end_offset);
        columns.object_keys.push(chunk.object_key.as_str());
        columns
            .object_sizes
            .push(to_bigint("object_size", chunk.object_size)?);
        columns
            .positions
            .push(to_bigint("position", chunk.position)?);
        columns.lengths.push(to_bigint("length", chunk.length)?);
        columns.batch_counts.push(i64::from(chunk.batch_count));
        columns.max_timestamps.push(chunk.max_timestamp);
        columns
            .running_max_timestamps
            .push(new.running_max_timestamp);
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key,
                 object_size, position, length, batch_count, max_timestamp, running_max_timestamp)
             SELECT * FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::int8[], $5::text[],
                 $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[], $11::int8[])",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &columns.topic_ids,
                &columns.partitions,
                &columns.base_offsets,
                &columns.end_offsets,
                &columns.object_keys,
                &columns.object_sizes,
                &columns.positions,
                &columns.lengths,
                &columns.batch_counts,
                &columns.max_timestamps,
                &columns.running_max_timestamps,
            ],
        )
        .await?;
    Ok(())
}

/// The chunk rows to insert, column by column.
struct ChunkColumns<'a> {
    topic_ids: Vec<&'a [u8]>,
    partitions: Vec<i64>,
    base_offsets: Vec<i64>,
    end_offsets: Vec<i64>,
    object_keys: Vec<&'a str>,
    object_sizes: Vec<i64>,
    positions: Vec<i64>,
    lengths: Vec<i64>,
    batch_counts: Vec<i64>,
    max_timestamps: Vec<i64>,
    running_max_timestamps: Vec<i64>,
}

impl ChunkColumns<'_> {
    fn with_capacity(count: usize) -> Self {
        Self {
            topic_ids: Vec::with_capacity(count),
            partitions: Vec::with_capacity(count),
            base_offsets: Vec::with_capacity(count),
            end_offsets: Vec::with_capacity(count),
            object_keys: Vec::with_capacity(count),
            object_sizes: Vec::with_capacity(count),
            positions: Vec::with_capacity(count),
            lengths: Vec::with_capacity(count),
            batch_counts: Vec::with_capacity(count),
            max_timestamps: Vec::with_capacity(count),
            running_max_timestamps: Vec::with_capacity(count),
        }
    }
}

async fn update_partitions(transaction: &Transaction<'_>, state: &RunState) -> Result<()> {
    if state.dirty_partitions.is_empty() {
        return Ok(());
    }
    let mut topic_ids = Vec::new();
    let mut indexes = Vec::new();
    let mut next_offsets = Vec::new();
    let mut stable_offsets = Vec::new();
    let mut max_timestamps = Vec::new();
    let mut max_timestamp_offsets = Vec::new();
    for key in &state.dirty_partitions {
        let Some(row) = state.partitions.get(key) else {
            continue;
        };
        topic_ids.push(key.0.as_slice());
        indexes.push(i64::from(key.1));
        next_offsets.push(row.next_offset);
        stable_offsets.push(row.last_stable_offset);
        max_timestamps.push(row.max_timestamp);
        max_timestamp_offsets.push(row.max_timestamp_offset);
    }
    let statement = transaction
        .prepare_cached(
            "UPDATE partitions p SET next_offset = u.next_offset,
                 last_stable_offset = u.last_stable_offset, max_timestamp = u.max_timestamp,
                 max_timestamp_offset = u.max_timestamp_offset
             FROM unnest($1::bytea[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[])
                 AS u (topic_id, partition, next_offset, max_timestamp, max_timestamp_offset,
                     last_stable_offset)
             WHERE p.topic_id = u.topic_id AND p.partition = u.partition",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &topic_ids,
                &indexes,
                &next_offsets,
                &max_timestamps,
                &max_timestamp_offsets,
                &stable_offsets,
            ],
        )
        .await?;
    Ok(())
}

async fn upsert_states(transaction: &Transaction<'_>, state: &RunState) -> Result<()> {
    let keys: &BTreeSet<(i64, PartitionKey)> = &state.dirty_states;
    if keys.is_empty() {
        return Ok(());
    }
    let mut columns = StateColumns::default();
    for key in keys {
        let Some(producer) = state.states.get(key) else {
            continue;
        };
        columns.producer_ids.push(key.0);
        columns.topic_ids.push(key.1.0.as_slice());
        columns.partitions.push(i64::from(key.1.1));
        columns.epochs.push(producer.epoch);
        columns.last_sequences.push(producer.last_sequence);
        columns.last_timestamps.push(producer.last_timestamp);
        columns.last_update_ms.push(producer.last_update_ms);
        columns.coordinator_epochs.push(producer.coordinator_epoch);
        columns
            .txn_start_offsets
            .push(producer.current_txn_start_offset);
        columns.recent.push(encode_recent(&producer.recent));
    }
    let statement = transaction
        .prepare_cached(
            "INSERT INTO producer_partitions (producer_id, topic_id, partition, producer_epoch,
                 last_sequence, last_timestamp, last_update_ms, coordinator_epoch,
                 current_txn_start_offset, recent_batches)
             SELECT * FROM unnest($1::int8[], $2::bytea[], $3::int8[], $4::int4[], $5::int4[],
                 $6::int8[], $7::int8[], $8::int4[], $9::int8[], $10::bytea[])
             ON CONFLICT (producer_id, topic_id, partition) DO UPDATE SET
                 producer_epoch = excluded.producer_epoch,
                 last_sequence = excluded.last_sequence,
                 last_timestamp = excluded.last_timestamp,
                 last_update_ms = excluded.last_update_ms,
                 coordinator_epoch = excluded.coordinator_epoch,
                 current_txn_start_offset = excluded.current_txn_start_offset,
                 recent_batches = excluded.recent_batches",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &columns.producer_ids,
                &columns.topic_ids,
                &columns.partitions,
                &columns.epochs,
                &columns.last_sequences,
                &columns.last_timestamps,
                &columns.last_update_ms,
                &columns.coordinator_epochs,
                &columns.txn_start_offsets,
                &columns.recent,
            ],
        )
        .await?;
    Ok(())
}

/// The producer states to upsert, column by column.
#[derive(Default)]
struct StateColumns<'a> {
    producer_ids: Vec<i64>,
    topic_ids: Vec<&'a [u8]>,
    partitions: Vec<i64>,
    epochs: Vec<i32>,
    last_sequences: Vec<i32>,
    last_timestamps: Vec<i64>,
    last_update_ms: Vec<i64>,
    coordinator_epochs: Vec<i32>,
    txn_start_offsets: Vec<i64>,
    recent: Vec<Vec<u8>>,
}

async fn update_producers(transaction: &Transaction<'_>, state: &RunState) -> Result<()> {
    if state.dirty_producers.is_empty() {
        return Ok(());
    }
    let mut producer_ids = Vec::new();
    let mut epochs = Vec::new();
    let mut last_update_ms = Vec::new();
    for producer_id in &state.dirty_producers {
        let Some(row) = state.producers.get(producer_id) else {
            continue;
        };
        producer_ids.push(*producer_id);
        epochs.push(row.epoch);
        last_update_ms.push(row.last_update_ms);
    }
    let statement = transaction
        .prepare_cached(
            "UPDATE producers p SET producer_epoch = u.producer_epoch,
                 last_update_ms = u.last_update_ms
             FROM unnest($1::int8[], $2::int4[], $3::int8[])
                 AS u (producer_id, producer_epoch, last_update_ms)
             WHERE p.producer_id = u.producer_id",
        )
        .await?;
    transaction
        .execute(&statement, &[&producer_ids, &epochs, &last_update_ms])
        .await?;
    Ok(())
}

async fn insert_segments(
    transaction: &Transaction<'_>,
    state: &RunState,
    now_ms: i64,
) -> Result<()> {
    if state.segments.is_empty() {
        return Ok(());
    }
    let segments = &state.segments;
    let ids: Vec<&str> = segments.iter().map(|s| s.segment_id.as_str()).collect();
    let keys: Vec<&str> = segments.iter().map(|s| s.object_key.as_str()).collect();
    let agents: Vec<&str> = segments.iter().map(|s| s.agent_id.as_str()).collect();
    let sequences: Vec<i64> = segments.iter().map(|s| s.sequence).collect();
    let responses: Vec<&[u8]> = segments.iter().map(|s| s.response.as_slice()).collect();
    let statement = transaction
        .prepare_cached(
            "INSERT INTO segments (segment_id, object_key, agent_id, sequence, committed_ms,
                 response)
             SELECT u.segment_id, u.object_key, u.agent_id, u.sequence, $5, u.response
             FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $6::bytea[])
                 AS u (segment_id, object_key, agent_id, sequence, response)",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[&ids, &keys, &agents, &sequences, &now_ms, &responses],
        )
        .await?;
    Ok(())
}
