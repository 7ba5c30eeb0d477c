//! The transaction coordinator's writes: the state of each transactional
//! id, the open transactions' partitions and pending offsets, and the
//! markers that end them. The rules live in
//! [`crate::store::txn_rules`]; this file reads and writes the rows.

use rusqlite::{Connection, OptionalExtension, params};
use strata_catalog_api::proto::{CommitEvent, TxnMarker, TxnProducer};
use uuid::Uuid;

use super::commit::{insert_chunk, update_partition};
use super::producers;
use super::rows::WriteContext;
use crate::error_code;
use crate::store::commit_plan::{PartitionKey, PartitionRow};
use crate::store::producer_rules::TransactionalRow;
use crate::store::txn_rules::{
    self, COORDINATOR_EPOCH, EndAction, MarkerTarget, MarkerWrite, TxnRecord, TxnState,
};
use crate::store::{CommittedOffset, ExpiredAborts, TxnOutcome, TxnRequest};
use crate::{Error, Result};

/// Open transactions aborted per timeout sweep, so one sweep stays short.
const EXPIRED_PER_SWEEP_MAX: u32 = 100;

/// Runs one coordinator call (see `CatalogStore::transaction`).
pub(super) fn apply(
    context: &mut WriteContext<'_>,
    producer: &TxnProducer,
    request: &TxnRequest,
) -> Result<TxnOutcome> {
    let connection = context.connection;
    let tid = producer.transactional_id.as_str();
    let record = txn_rules::check_caller(producer, load_record(connection, tid)?.as_ref())?;
    match request {
        TxnRequest::AddPartitions(partitions) => {
            let codes = partition_codes(connection, partitions.iter().copied())?;
            if codes.iter().all(|code| *code == error_code::NONE) {
                let mut insert = connection.prepare_cached(
                    "INSERT OR IGNORE INTO txn_partitions (transactional_id, topic_id, partition)
                     VALUES (?1, ?2, ?3)",
                )?;
                for (topic_id, partition) in partitions {
                    insert.execute(params![tid, topic_id.as_bytes(), partition])?;
                }
                save_record(context, tid, &txn_rules::begun(&record, context.now_ms))?;
            }
            Ok(TxnOutcome {
                partition_codes: codes,
                event: None,
            })
        }
        TxnRequest::AddOffsets { .. } => {
            save_record(context, tid, &txn_rules::begun(&record, context.now_ms))?;
            Ok(TxnOutcome::default())
        }
        TxnRequest::CommitOffsets { group_id, offsets } => {
            commit_offsets(context, tid, &record, group_id, offsets)
        }
        TxnRequest::End { commit } => match txn_rules::end_action(tid, record.state, *commit)? {
            EndAction::Retried => Ok(TxnOutcome::default()),
            EndAction::Complete => {
                let marker = marker(record.row.producer_id, record.row.producer_epoch, *commit);
                let writes = complete(context, tid, marker)?;
                save_record(context, tid, &txn_rules::completed(&record, *commit))?;
                let sequence = context.counters.next_sequence();
                Ok(TxnOutcome {
                    partition_codes: Vec::new(),
                    event: Some(txn_rules::marker_event(sequence, &writes)),
                })
            }
        },
    }
}

fn marker(producer_id: i64, producer_epoch: i32, commit: bool) -> TxnMarker {
    TxnMarker {
        producer_id,
        producer_epoch,
        coordinator_epoch: COORDINATOR_EPOCH,
        commit,
    }
}

/// Holds TxnOffsetCommit's offsets until the transaction ends.
fn commit_offsets(
    context: &WriteContext<'_>,
    tid: &str,
    record: &TxnRecord,
    group_id: &str,
    offsets: &[CommittedOffset],
) -> Result<TxnOutcome> {
    if record.state != TxnState::Ongoing {
        return Err(Error::InvalidTxnState {
            transactional_id: tid.to_string(),
            state: record.state.as_str(),
        });
    }
    let connection = context.connection;
    let codes = partition_codes(
        connection,
        offsets.iter().map(|o| (o.topic_id, o.partition)),
    )?;
    let mut upsert = connection.prepare_cached(
        "INSERT OR REPLACE INTO txn_offsets (transactional_id, group_id, topic_id, partition,
             committed_offset, leader_epoch, metadata)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (offset, code) in offsets.iter().zip(&codes) {
        if *code == error_code::NONE {
            upsert.execute(params![
                tid,
                group_id,
                offset.topic_id.as_bytes(),
                offset.partition,
                offset.offset,
                offset.leader_epoch,
                offset.metadata
            ])?;
        }
    }
    Ok(TxnOutcome {
        partition_codes: codes,
        event: None,
    })
}

/// NONE or UNKNOWN_TOPIC_OR_PARTITION per partition.
fn partition_codes(
    connection: &Connection,
    partitions: impl Iterator<Item = (Uuid, u32)>,
) -> Result<Vec<i16>> {
    let mut exists = connection
        .prepare_cached("SELECT 1 FROM partitions WHERE topic_id = ?1 AND partition = ?2")?;
    partitions
        .map(|(topic_id, partition)| {
            let found: Option<i64> = exists
                .query_row(params![topic_id.as_bytes(), partition], |row| row.get(0))
                .optional()?;
            Ok(if found.is_some() {
                error_code::NONE
            } else {
                error_code::UNKNOWN_TOPIC_OR_PARTITION
            })
        })
        .collect()
}

/// Ends the open transaction of `tid`: one marker per partition, aborted
/// ranges, pending offsets applied (commit) or dropped; the transaction's
/// partitions and offsets are forgotten.
fn complete(context: &WriteContext<'_>, tid: &str, marker: TxnMarker) -> Result<Vec<MarkerWrite>> {
    let connection = context.connection;
    let keys: Vec<PartitionKey> = connection
        .prepare_cached(
            "SELECT topic_id, partition FROM txn_partitions WHERE transactional_id = ?1
             ORDER BY topic_id, partition",
        )?
        .query_map([tid], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut writes = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(target) = marker_target(connection, &key, marker.producer_id)? else {
            continue;
        };
        let write = txn_rules::write_marker(&target, marker, context.now_ms);
        insert_chunk(
            connection,
            &write.chunk.chunk,
            write.chunk.running_max_timestamp,
        )?;
        update_partition(connection, &write.key, &write.row)?;
        if target.txn_start_offset.is_some() {
            connection
                .prepare_cached(
                    "UPDATE producer_partitions SET current_txn_start_offset = -1
                     WHERE producer_id = ?1 AND topic_id = ?2 AND partition = ?3",
                )?
                .execute(params![marker.producer_id, key.0, key.1])?;
        }
        if let Some(aborted) = &write.aborted {
            connection
                .prepare_cached(
                    "INSERT OR REPLACE INTO aborted_txns (topic_id, partition, last_offset,
                         producer_id, first_offset)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![
                    key.0,
                    key.1,
                    aborted.last_offset,
                    aborted.producer_id,
                    aborted.first_offset
                ])?;
        }
        writes.push(write);
    }
    if marker.commit {
        // Offsets of partitions deleted meanwhile are left out.
        connection
            .prepare_cached(
                "INSERT OR REPLACE INTO group_offsets (group_id, topic_id, partition,
                     committed_offset, leader_epoch, metadata, commit_ms)
                 SELECT o.group_id, o.topic_id, o.partition, o.committed_offset, o.leader_epoch,
                     o.metadata, ?2
                 FROM txn_offsets o
                 JOIN partitions p ON p.topic_id = o.topic_id AND p.partition = o.partition
                 WHERE o.transactional_id = ?1",
            )?
            .execute(params![tid, context.now_ms])?;
    }
    for table in ["txn_offsets", "txn_partitions"] {
        connection
            .prepare_cached(&format!("DELETE FROM {table} WHERE transactional_id = ?1"))?
            .execute([tid])?;
    }
    Ok(writes)
}

/// What a marker needs of one partition; `None` if it no longer exists.
fn marker_target(
    connection: &Connection,
    key: &PartitionKey,
    producer_id: i64,
) -> Result<Option<MarkerTarget>> {
    let row = connection
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
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let txn_start_offset = producers::load_partition_state(connection, producer_id, key)?
        .map(|state| state.current_txn_start_offset)
        .filter(|offset| *offset >= 0);
    let other_open_min: Option<i64> = connection
        .prepare_cached(
            "SELECT MIN(current_txn_start_offset) FROM producer_partitions
             WHERE topic_id = ?1 AND partition = ?2 AND producer_id <> ?3
               AND current_txn_start_offset >= 0",
        )?
        .query_row(params![key.0, key.1, producer_id], |row| row.get(0))?;
    Ok(Some(MarkerTarget {
        key: key.clone(),
        row,
        txn_start_offset,
        other_open_min,
    }))
}

/// The transactional id's record, with its transaction state.
pub(super) fn load_record(connection: &Connection, tid: &str) -> Result<Option<TxnRecord>> {
    let row = connection
        .prepare_cached(
            "SELECT producer_id, producer_epoch, last_producer_id, last_producer_epoch,
                 transaction_timeout_ms, state, txn_started_ms
             FROM transactional_ids WHERE transactional_id = ?1",
        )?
        .query_row([tid], |row| {
            Ok((
                TransactionalRow {
                    producer_id: row.get(0)?,
                    producer_epoch: row.get(1)?,
                    last_producer_id: row.get(2)?,
                    last_producer_epoch: row.get(3)?,
                },
                row.get::<_, i32>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, i64>(6)?,
            ))
        })
        .optional()?;
    row.map(|(row, timeout_ms, state, started_ms)| {
        Ok(TxnRecord {
            row,
            timeout_ms,
            state: TxnState::parse(&state)?,
            started_ms,
        })
    })
    .transpose()
}

/// Writes the transaction state of a transactional id (its producer is
/// written by InitProducerId).
fn save_record(context: &WriteContext<'_>, tid: &str, record: &TxnRecord) -> Result<()> {
    context
        .connection
        .prepare_cached(
            "UPDATE transactional_ids SET state = ?2, txn_started_ms = ?3, last_update_ms = ?4
             WHERE transactional_id = ?1",
        )?
        .execute(params![
            tid,
            record.state.as_str(),
            record.started_ms,
            context.now_ms
        ])?;
    Ok(())
}

/// Aborts the open transaction of `tid` with markers of `producer_id` at
/// `producer_epoch` (InitProducerId of a new instance, or a timeout).
/// Returns the markers; the caller saves the record and takes the event's
/// sequence.
pub(super) fn abort_open(
    context: &WriteContext<'_>,
    tid: &str,
    producer_id: i64,
    producer_epoch: i32,
) -> Result<Vec<MarkerWrite>> {
    complete(context, tid, marker(producer_id, producer_epoch, false))
}

/// The event of markers under the next sequence.
pub(super) fn event(context: &mut WriteContext<'_>, writes: &[MarkerWrite]) -> CommitEvent {
    txn_rules::marker_event(context.counters.next_sequence(), writes)
}

/// Aborts open transactions older than their timeout, bumping each
/// producer's epoch so the timed-out producer is fenced.
pub(super) fn abort_expired(context: &mut WriteContext<'_>) -> Result<ExpiredAborts> {
    let connection = context.connection;
    let candidates: Vec<String> = connection
        .prepare_cached(
            "SELECT transactional_id FROM transactional_ids
             WHERE state = 'Ongoing' AND txn_started_ms + transaction_timeout_ms < ?1
             ORDER BY txn_started_ms LIMIT ?2",
        )?
        .query_map(params![context.now_ms, EXPIRED_PER_SWEEP_MAX], |row| {
            row.get(0)
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut aborted = Vec::new();
    let mut writes = Vec::new();
    for tid in candidates {
        let Some(record) = load_record(connection, &tid)? else {
            continue;
        };
        if !txn_rules::expired(&record, context.now_ms) {
            continue;
        }
        let bumped = producers::bump_for_abort(context, &tid, &record.row)?;
        writes.extend(abort_open(
            context,
            &tid,
            bumped.producer_id,
            bumped.producer_epoch,
        )?);
        let record = TxnRecord {
            row: bumped,
            ..txn_rules::completed(&record, false)
        };
        save_record(context, &tid, &record)?;
        aborted.push(tid);
    }
    if aborted.is_empty() {
        return Ok(ExpiredAborts::default());
    }
    Ok(ExpiredAborts {
        transactional_ids: aborted,
        event: Some(event(context, &writes)),
    })
}
