//! The transaction coordinator's writes, as SQLite's `transactions.rs`:
//! the state of each transactional id, the open transactions' partitions
//! and pending offsets, and the markers that end them. The rules live in
//! [`crate::store::txn_rules`].

use strata_catalog_api::proto::{Chunk, CommitEvent, TxnMarker, TxnProducer};
use uuid::Uuid;

use super::producers;
use super::rows::WriteContext;
use super::to_bigint;
use crate::error_code;
use crate::store::commit_plan::{PartitionKey, PartitionRow};
use crate::store::producer_rules::TransactionalRow;
use crate::store::txn_rules::{
    self, COORDINATOR_EPOCH, EndAction, MarkerTarget, MarkerWrite, TxnRecord, TxnState,
};
use crate::store::{CommittedOffset, ExpiredAborts, TxnOutcome, TxnRequest};
use crate::{Error, Result};

/// Open transactions aborted per timeout sweep, so one sweep stays short.
const EXPIRED_PER_SWEEP_MAX: i64 = 100;

/// Runs one coordinator call (see `CatalogStore::transaction`).
pub(super) async fn apply(
    context: &mut WriteContext<'_, '_>,
    producer: &TxnProducer,
    request: &TxnRequest,
) -> Result<TxnOutcome> {
    let tid = producer.transactional_id.as_str();
    let loaded = load_record(context, tid).await?;
    let record = txn_rules::check_caller(producer, loaded.as_ref())?;
    match request {
        TxnRequest::AddPartitions(partitions) => {
            let codes = partition_codes(context, partitions.iter().copied()).await?;
            if codes.iter().all(|code| *code == error_code::NONE) {
                for (topic_id, partition) in partitions {
                    context
                        .transaction
                        .execute(
                            "INSERT INTO txn_partitions (transactional_id, topic_id, partition)
                             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                            &[
                                &tid,
                                &topic_id.as_bytes().as_slice(),
                                &i64::from(*partition),
                            ],
                        )
                        .await?;
                }
                save_record(context, tid, &txn_rules::begun(&record, context.now_ms)).await?;
            }
            Ok(TxnOutcome {
                partition_codes: codes,
                event: None,
            })
        }
        TxnRequest::AddOffsets { .. } => {
            save_record(context, tid, &txn_rules::begun(&record, context.now_ms)).await?;
            Ok(TxnOutcome::default())
        }
        TxnRequest::CommitOffsets { group_id, offsets } => {
            commit_offsets(context, tid, &record, group_id, offsets).await
        }
        TxnRequest::End { commit } => match txn_rules::end_action(tid, record.state, *commit)? {
            EndAction::Retried => Ok(TxnOutcome::default()),
            EndAction::Complete => {
                let marker = marker(record.row.producer_id, record.row.producer_epoch, *commit);
                let writes = complete(context, tid, marker).await?;
                save_record(context, tid, &txn_rules::completed(&record, *commit)).await?;
                Ok(TxnOutcome {
                    partition_codes: Vec::new(),
                    event: Some(event(context, &writes)),
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
async fn commit_offsets(
    context: &WriteContext<'_, '_>,
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
    let codes = partition_codes(context, offsets.iter().map(|o| (o.topic_id, o.partition))).await?;
    let statement = context
        .transaction
        .prepare_cached(
            "INSERT INTO txn_offsets (transactional_id, group_id, topic_id, partition,
                 committed_offset, leader_epoch, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (transactional_id, group_id, topic_id, partition) DO UPDATE SET
                 committed_offset = excluded.committed_offset,
                 leader_epoch = excluded.leader_epoch,
                 metadata = excluded.metadata",
        )
        .await?;
    for (offset, code) in offsets.iter().zip(&codes) {
        if *code == error_code::NONE {
            context
                .transaction
                .execute(
                    &statement,
                    &[
                        &tid,
                        &group_id,
                        &offset.topic_id.as_bytes().as_slice(),
                        &i64::from(offset.partition),
                        &offset.offset,
                        &offset.leader_epoch,
                        &offset.metadata,
                    ],
                )
                .await?;
        }
    }
    Ok(TxnOutcome {
        partition_codes: codes,
        event: None,
    })
}

/// NONE or UNKNOWN_TOPIC_OR_PARTITION per partition.
async fn partition_codes(
    context: &WriteContext<'_, '_>,
    partitions: impl Iterator<Item = (Uuid, u32)>,
) -> Result<Vec<i16>> {
    let statement = context
        .transaction
        .prepare_cached("SELECT 1 FROM partitions WHERE topic_id = $1 AND partition = $2")
        .await?;
    let mut codes = Vec::new();
    for (topic_id, partition) in partitions {
        let found = context
            .transaction
            .query_opt(
                &statement,
                &[&topic_id.as_bytes().as_slice(), &i64::from(partition)],
            )
            .await?;
        codes.push(if found.is_some() {
            error_code::NONE
        } else {
            error_code::UNKNOWN_TOPIC_OR_PARTITION
        });
    }
    Ok(codes)
}

/// Ends the open transaction of `tid`: one marker per partition, aborted
/// ranges, pending offsets applied (commit) or dropped; the transaction's
/// partitions and offsets are forgotten.
async fn complete(
    context: &WriteContext<'_, '_>,
    tid: &str,
    marker: TxnMarker,
) -> Result<Vec<MarkerWrite>> {
    let transaction = context.transaction;
    let rows = transaction
        .query(
            "SELECT topic_id, partition FROM txn_partitions WHERE transactional_id = $1
             ORDER BY topic_id, partition",
            &[&tid],
        )
        .await?;
    let mut writes = Vec::with_capacity(rows.len());
    for row in rows {
        let partition: i64 = row.try_get(1)?;
        let key: PartitionKey = (
            row.try_get(0)?,
            super::to_u32("partition index", partition)?,
        );
        let Some(target) = marker_target(context, &key, marker.producer_id).await? else {
            continue;
        };
        let write = txn_rules::write_marker(&target, marker, context.now_ms);
        insert_marker(
            context,
            &write.chunk.chunk,
            write.chunk.running_max_timestamp,
        )
        .await?;
        update_partition(context, &write.key, &write.row).await?;
        if target.txn_start_offset.is_some() {
            transaction
                .execute(
                    "UPDATE producer_partitions SET current_txn_start_offset = -1
                     WHERE producer_id = $1 AND topic_id = $2 AND partition = $3",
                    &[&marker.producer_id, &key.0, &partition],
                )
                .await?;
        }
        if let Some(aborted) = &write.aborted {
            transaction
                .execute(
                    "INSERT INTO aborted_txns (topic_id, partition, last_offset, producer_id,
                         first_offset)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (topic_id, partition, last_offset) DO NOTHING",
                    &[
                        &key.0,
                        &partition,
                        &aborted.last_offset,
                        &aborted.producer_id,
                        &aborted.first_offset,
                    ],
                )
                .await?;
        }
        writes.push(write);
    }
    if marker.commit {
        // Offsets of partitions deleted meanwhile are left out.
        transaction
            .execute(
                "INSERT INTO group_offsets (group_id, topic_id, partition, committed_offset,
                     leader_epoch, metadata, commit_ms)
                 SELECT o.group_id, o.topic_id, o.partition, o.committed_offset, o.leader_epoch,
                     o.metadata, $2
                 FROM txn_offsets o
                 JOIN partitions p ON p.topic_id = o.topic_id AND p.partition = o.partition
                 WHERE o.transactional_id = $1
                 ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET
                     committed_offset = excluded.committed_offset,
                     leader_epoch = excluded.leader_epoch,
                     metadata = excluded.metadata,
                     commit_ms = excluded.commit_ms",
                &[&tid, &context.now_ms],
            )
            .await?;
    }
    for table in ["txn_offsets", "txn_partitions"] {
        transaction
            .execute(
                &format!("DELETE FROM {table} WHERE transactional_id = $1"),
                &[&tid],
            )
            .await?;
    }
    Ok(writes)
}

async fn insert_marker(
    context: &WriteContext<'_, '_>,
    chunk: &Chunk,
    running_max_timestamp: i64,
) -> Result<()> {
    let marker = chunk.marker.unwrap_or_default();
    let format = i16::try_from(chunk.format).map_err(|_| Error::InvalidArgument {
        field: "chunk format",
        reason: format!("{} is not a format", chunk.format),
    })?;
    context
        .transaction
        .execute(
            "INSERT INTO chunks (topic_id, partition, base_offset, end_offset, object_key,
                 object_size, position, length, batch_count, max_timestamp, running_max_timestamp,
                 format, marker_producer_id, marker_producer_epoch, marker_coordinator_epoch,
                 marker_commit)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &[
                &chunk.topic_id,
                &i64::from(chunk.partition),
                &chunk.base_offset,
                &chunk.end_offset,
                &chunk.object_key,
                &to_bigint("object_size", chunk.object_size)?,
                &to_bigint("position", chunk.position)?,
                &to_bigint("length", chunk.length)?,
                &i64::from(chunk.batch_count),
                &chunk.max_timestamp,
                &running_max_timestamp,
                &format,
                &marker.producer_id,
                &marker.producer_epoch,
                &marker.coordinator_epoch,
                &marker.commit,
            ],
        )
        .await?;
    Ok(())
}

async fn update_partition(
    context: &WriteContext<'_, '_>,
    key: &PartitionKey,
    row: &PartitionRow,
) -> Result<()> {
    context
        .transaction
        .execute(
            "UPDATE partitions SET next_offset = $3, last_stable_offset = $4, max_timestamp = $5,
                 max_timestamp_offset = $6
             WHERE topic_id = $1 AND partition = $2",
            &[
                &key.0,
                &i64::from(key.1),
                &row.next_offset,
                &row.last_stable_offset,
                &row.max_timestamp,
                &row.max_timestamp_offset,
            ],
        )
        .await?;
    Ok(())
}

/// What a marker needs of one partition; `None` if it no longer exists.
async fn marker_target(
    context: &WriteContext<'_, '_>,
    key: &PartitionKey,
    producer_id: i64,
) -> Result<Option<MarkerTarget>> {
    let transaction = context.transaction;
    let partition = i64::from(key.1);
    let row = transaction
        .query_opt(
            "SELECT log_start_offset, next_offset, last_stable_offset, max_timestamp,
                 max_timestamp_offset
             FROM partitions WHERE topic_id = $1 AND partition = $2 FOR UPDATE",
            &[&key.0, &partition],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let row = PartitionRow {
        log_start_offset: row.try_get(0)?,
        next_offset: row.try_get(1)?,
        last_stable_offset: row.try_get(2)?,
        max_timestamp: row.try_get(3)?,
        max_timestamp_offset: row.try_get(4)?,
    };
    let txn_start_offset = transaction
        .query_opt(
            "SELECT current_txn_start_offset FROM producer_partitions
             WHERE producer_id = $1 AND topic_id = $2 AND partition = $3",
            &[&producer_id, &key.0, &partition],
        )
        .await?
        .map(|row| row.try_get::<_, i64>(0))
        .transpose()?
        .filter(|offset| *offset >= 0);
    let other_open_min: Option<i64> = transaction
        .query_one(
            "SELECT MIN(current_txn_start_offset) FROM producer_partitions
             WHERE topic_id = $1 AND partition = $2 AND producer_id <> $3
               AND current_txn_start_offset >= 0",
            &[&key.0, &partition, &producer_id],
        )
        .await?
        .try_get(0)?;
    Ok(Some(MarkerTarget {
        key: key.clone(),
        row,
        txn_start_offset,
        other_open_min,
    }))
}

/// The transactional id's record, with its transaction state.
pub(super) async fn load_record(
    context: &WriteContext<'_, '_>,
    tid: &str,
) -> Result<Option<TxnRecord>> {
    let row = context
        .transaction
        .query_opt(
            "SELECT producer_id, producer_epoch, last_producer_id, last_producer_epoch,
                 transaction_timeout_ms, state, txn_started_ms
             FROM transactional_ids WHERE transactional_id = $1 FOR UPDATE",
            &[&tid],
        )
        .await?;
    row.map(|row| {
        let state: String = row.try_get(5)?;
        Ok(TxnRecord {
            row: TransactionalRow {
                producer_id: row.try_get(0)?,
                producer_epoch: row.try_get(1)?,
                last_producer_id: row.try_get(2)?,
                last_producer_epoch: row.try_get(3)?,
            },
            timeout_ms: row.try_get(4)?,
            state: TxnState::parse(&state)?,
            started_ms: row.try_get(6)?,
        })
    })
    .transpose()
}

/// Writes the transaction state of a transactional id.
async fn save_record(context: &WriteContext<'_, '_>, tid: &str, record: &TxnRecord) -> Result<()> {
    context
        .transaction
        .execute(
            "UPDATE transactional_ids SET state = $2, txn_started_ms = $3, last_update_ms = $4
             WHERE transactional_id = $1",
            &[
                &tid,
                &record.state.as_str(),
                &record.started_ms,
                &context.now_ms,
            ],
        )
        .await?;
    Ok(())
}

/// Aborts the open transaction of `tid` with markers of `producer_id` at
/// `producer_epoch`. Returns the markers; the caller saves the record and
/// takes the event's sequence.
pub(super) async fn abort_open(
    context: &WriteContext<'_, '_>,
    tid: &str,
    producer_id: i64,
    producer_epoch: i32,
) -> Result<Vec<MarkerWrite>> {
    complete(context, tid, marker(producer_id, producer_epoch, false)).await
}

/// The event of markers under the next sequence.
pub(super) fn event(context: &mut WriteContext<'_, '_>, writes: &[MarkerWrite]) -> CommitEvent {
    txn_rules::marker_event(context.next_sequence(), writes)
}

/// Aborts open transactions older than their timeout, bumping each
/// producer's epoch so the timed-out producer is fenced.
pub(super) async fn abort_expired(context: &mut WriteContext<'_, '_>) -> Result<ExpiredAborts> {
    let candidates = context
        .transaction
        .query(
            "SELECT transactional_id FROM transactional_ids
             WHERE state = 'Ongoing' AND txn_started_ms + transaction_timeout_ms < $1
             ORDER BY txn_started_ms LIMIT $2",
            &[&context.now_ms, &EXPIRED_PER_SWEEP_MAX],
        )
        .await?;
    let mut aborted = Vec::new();
    let mut writes = Vec::new();
    for row in candidates {
        let tid: String = row.try_get(0)?;
        let Some(record) = load_record(context, &tid).await? else {
            continue;
        };
        if !txn_rules::expired(&record, context.now_ms) {
            continue;
        }
        let bumped = producers::bump_for_abort(context, &tid, &record.row).await?;
        writes.extend(abort_open(context, &tid, bumped.producer_id, bumped.producer_epoch).await?);
        let record = TxnRecord {
            row: bumped,
            ..txn_rules::completed(&record, false)
        };
        save_record(context, &tid, &record).await?;
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
