//! The transaction coordinator: AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn, and the timeout sweep. The rules live in
//! [`crate::store::txn_rules`].

use strata_catalog_api::proto::{CommitEvent, TxnMarker, TxnProducer};
use uuid::Uuid;

use crate::error_code;
use crate::store::commit_plan::PartitionKey;
use crate::store::producer_rules::{self, ProducerRow, TransactionalRow};
use crate::store::rows::{ProducerRows, TxnRows};
use crate::store::txn_rules::{
    self, COORDINATOR_EPOCH, EndAction, MarkerTarget, MarkerWrite, TxnRecord, TxnState,
};
use crate::store::{CommittedOffset, ExpiredAborts, TxnOutcome, TxnRequest};
use crate::{Error, Result};

/// Open transactions aborted per timeout sweep, so one sweep stays short.
const EXPIRED_PER_SWEEP_MAX: u32 = 100;

/// Runs one coordinator call (see `CatalogStore::transaction`).
pub(crate) async fn apply<R: TxnRows>(
    rows: &mut R,
    producer: &TxnProducer,
    request: &TxnRequest,
) -> Result<TxnOutcome> {
    let tid = producer.transactional_id.as_str();
    let loaded = rows.transactional(tid).await?;
    let record = txn_rules::check_caller(producer, loaded.as_ref())?;
    match request {
        TxnRequest::AddPartitions(partitions) => {
            let codes = partition_codes(rows, partitions.iter().copied()).await?;
            if codes.iter().all(|code| *code == error_code::NONE) {
                for (topic_id, partition) in partitions {
                    rows.add_txn_partition(tid, *topic_id, *partition).await?;
                }
                let begun = txn_rules::begun(&record, rows.now_ms());
                rows.set_txn_state(tid, &begun).await?;
            }
            Ok(TxnOutcome {
                partition_codes: codes,
                event: None,
            })
        }
        TxnRequest::AddOffsets { .. } => {
            let begun = txn_rules::begun(&record, rows.now_ms());
            rows.set_txn_state(tid, &begun).await?;
            Ok(TxnOutcome::default())
        }
        TxnRequest::CommitOffsets { group_id, offsets } => {
            commit_offsets(rows, tid, &record, group_id, offsets).await
        }
        TxnRequest::End { commit } => match txn_rules::end_action(tid, record.state, *commit)? {
            EndAction::Retried => Ok(TxnOutcome::default()),
            EndAction::Complete => {
                let marker = marker(record.row.producer_id, record.row.producer_epoch, *commit);
                let writes = complete(rows, tid, marker).await?;
                rows.set_txn_state(tid, &txn_rules::completed(&record, *commit))
                    .await?;
                Ok(TxnOutcome {
                    partition_codes: Vec::new(),
                    event: Some(event(rows, &writes)),
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
async fn commit_offsets<R: TxnRows>(
    rows: &mut R,
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
    let codes = partition_codes(rows, offsets.iter().map(|o| (o.topic_id, o.partition))).await?;
    for (offset, code) in offsets.iter().zip(&codes) {
        if *code == error_code::NONE {
            rows.put_txn_offset(tid, group_id, offset).await?;
        }
    }
    Ok(TxnOutcome {
        partition_codes: codes,
        event: None,
    })
}

/// NONE or UNKNOWN_TOPIC_OR_PARTITION per partition.
async fn partition_codes<R: TxnRows>(
    rows: &mut R,
    partitions: impl Iterator<Item = (Uuid, u32)>,
) -> Result<Vec<i16>> {
    let mut codes = Vec::new();
    for (topic_id, partition) in partitions {
        codes.push(if rows.partition_exists(topic_id, partition).await? {
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
async fn complete<R: TxnRows>(
    rows: &mut R,
    tid: &str,
    marker: TxnMarker,
) -> Result<Vec<MarkerWrite>> {
    let keys = rows.txn_partitions(tid).await?;
    let mut writes = Vec::with_capacity(keys.len());
    for key in keys {
        let Some(target) = marker_target(rows, key, marker.producer_id).await? else {
            continue;
        };
        let write = txn_rules::write_marker(&target, marker, rows.now_ms());
        rows.insert_chunk(&write.chunk.chunk, write.chunk.running_max_timestamp)
            .await?;
        rows.update_partition(&write.key, &write.row).await?;
        if target.txn_start_offset.is_some() {
            rows.clear_txn_start(marker.producer_id, &target.key)
                .await?;
        }
        if let Some(aborted) = &write.aborted {
            rows.insert_aborted(&target.key, aborted).await?;
        }
        writes.push(write);
    }
    if marker.commit {
        rows.apply_txn_offsets(tid).await?;
    }
    rows.forget_txn(tid).await?;
    Ok(writes)
}

/// What a marker needs of one partition; `None` if it no longer exists.
async fn marker_target<R: TxnRows>(
    rows: &mut R,
    key: PartitionKey,
    producer_id: i64,
) -> Result<Option<MarkerTarget>> {
    let Some(row) = rows.partition(&key).await? else {
        return Ok(None);
    };
    let txn_start_offset = rows
        .txn_start_offset(producer_id, &key)
        .await?
        .filter(|offset| *offset >= 0);
    let other_open_min = rows.other_open_min(&key, producer_id).await?;
    Ok(Some(MarkerTarget {
        key,
        row,
        txn_start_offset,
        other_open_min,
    }))
}

/// Aborts the open transaction of `tid` with markers of `producer_id` at
/// `producer_epoch` (InitProducerId of a new instance, or a timeout).
/// Returns the markers; the caller saves the record and takes the event's
/// sequence.
pub(super) async fn abort_open<R: TxnRows>(
    rows: &mut R,
    tid: &str,
    producer_id: i64,
    producer_epoch: i32,
) -> Result<Vec<MarkerWrite>> {
    complete(rows, tid, marker(producer_id, producer_epoch, false)).await
}

/// The event of markers under the next sequence.
pub(super) fn event<R: TxnRows>(rows: &mut R, writes: &[MarkerWrite]) -> CommitEvent {
    txn_rules::marker_event(rows.next_sequence(), writes)
}

/// Saves the producer row of a transactional id at `row`'s id and epoch.
pub(super) async fn put_transactional_producer<R: ProducerRows>(
    rows: &mut R,
    transactional_id: &str,
    row: &TransactionalRow,
) -> Result<()> {
    let producer = ProducerRow {
        epoch: row.producer_epoch,
        last_update_ms: rows.now_ms(),
        transactional: true,
    };
    rows.put_producer(row.producer_id, &producer, Some(transactional_id))
        .await
}

/// Bumps a transactional producer's epoch to fence it (its transaction
/// timed out); returns the new row, already stored.
async fn bump_for_abort<R: ProducerRows>(
    rows: &mut R,
    transactional_id: &str,
    current: &TransactionalRow,
) -> Result<TransactionalRow> {
    let next = producer_rules::fenced_by_abort(current);
    put_transactional_producer(rows, transactional_id, &next).await?;
    rows.set_transactional_producer(transactional_id, &next)
        .await?;
    Ok(next)
}

/// Aborts open transactions older than their timeout, bumping each
/// producer's epoch so the timed-out producer is fenced (see
/// `CatalogStore::abort_expired_transactions`).
pub(crate) async fn abort_expired<R: TxnRows>(rows: &mut R) -> Result<ExpiredAborts> {
    let candidates = rows.expired_transactions(EXPIRED_PER_SWEEP_MAX).await?;
    let mut aborted = Vec::new();
    let mut writes = Vec::new();
    for tid in candidates {
        let Some(record) = rows.transactional(&tid).await? else {
            continue;
        };
        if !txn_rules::expired(&record, rows.now_ms()) {
            continue;
        }
        let bumped = bump_for_abort(rows, &tid, &record.row).await?;
        writes.extend(abort_open(rows, &tid, bumped.producer_id, bumped.producer_epoch).await?);
        let record = TxnRecord {
            row: bumped,
            ..txn_rules::completed(&record, false)
        };
        rows.set_txn_state(&tid, &record).await?;
        aborted.push(tid);
    }
    if aborted.is_empty() {
        return Ok(ExpiredAborts::default());
    }
    Ok(ExpiredAborts {
        transactional_ids: aborted,
        event: Some(event(rows, &writes)),
    })
}
