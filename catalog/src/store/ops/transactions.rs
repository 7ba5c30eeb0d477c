//! The transaction coordinator: AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn, and the timeout sweep. The rules live in
//! [`crate::store::txn_rules`].

use strata_catalog_api::proto::{CommitEvent, TxnMarker, TxnProducer};
use uuid::Uuid;

use crate::error_code;
use crate::producer::EPOCH_EXHAUSTED;
use crate::store::commit_plan::PartitionKey;
use crate::store::producer_rules::{self, ProducerRow, TransactionalRow};
use crate::store::rows::{ProducerRows, TxnRows};
use crate::store::txn_rules::{
    self, COORDINATOR_EPOCH, EndAction, MarkerTarget, MarkerWrite, TxnRecord, TxnState,
};
use crate::store::{CommittedOffset, ExpiredAborts, ProducerIdAndEpoch, TxnOutcome, TxnRequest};
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
    match request {
        TxnRequest::AdminAbort => return admin_abort(rows, tid).await,
        TxnRequest::WriteMarkers { commit, partitions } => {
            return write_markers(rows, producer, *commit, partitions).await;
        }
        _ => {}
    }
    let loaded = rows.transactional(tid).await?;
    if let TxnRequest::End {
        commit,
        bump_epoch: true,
    } = request
        && let Some(current) = txn_rules::retried_bumped_end(producer, loaded.as_ref(), *commit)
    {
        return Ok(TxnOutcome {
            producer: Some(current),
            ..TxnOutcome::default()
        });
    }
    let record = txn_rules::check_caller(producer, loaded.as_ref())?;
    match request {
        TxnRequest::AdminAbort | TxnRequest::WriteMarkers { .. } => {
            unreachable!("answered above")
        }
        TxnRequest::VerifyPartitions(partitions) => verify(rows, tid, &record, partitions).await,
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
                ..TxnOutcome::default()
            })
        }
        TxnRequest::AddOffsets { .. } => {
            let begun = txn_rules::begun(&record, rows.now_ms());
            rows.set_txn_state(tid, &begun).await?;
            Ok(TxnOutcome::default())
        }
        TxnRequest::CommitOffsets {
            group_id,
            offsets,
            implicit_add,
        } => {
            let record = if *implicit_add {
                let begun = txn_rules::begun(&record, rows.now_ms());
                rows.set_txn_state(tid, &begun).await?;
                begun
            } else {
                record
            };
            commit_offsets(rows, tid, &record, group_id, offsets).await
        }
        TxnRequest::End { commit, bump_epoch } => {
            match txn_rules::end_action(tid, record.state, *commit)? {
                EndAction::Retried => Ok(TxnOutcome {
                    producer: bump_epoch.then_some(ProducerIdAndEpoch {
                        producer_id: record.row.producer_id,
                        producer_epoch: record.row.producer_epoch,
                    }),
                    ..TxnOutcome::default()
                }),
                EndAction::Complete => end(rows, tid, &record, *commit, *bump_epoch).await,
            }
        }
    }
}

/// Completes the open transaction (EndTxn); with `bump_epoch` (EndTxn v5,
/// KIP-890 part 2) the producer's epoch is bumped first and the markers
/// carry the new epoch, so no request of the ended transaction (a delayed
/// produce at the old epoch) is accepted afterwards.
async fn end<R: TxnRows>(
    rows: &mut R,
    tid: &str,
    record: &TxnRecord,
    commit: bool,
    bump_epoch: bool,
) -> Result<TxnOutcome> {
    let row = if bump_epoch {
        bump_for_end(rows, tid, &record.row).await?
    } else {
        record.row
    };
    let marker_epoch = if row.producer_id == record.row.producer_id {
        row.producer_epoch
    } else {
        record.row.producer_epoch
    };
    let marker = marker(record.row.producer_id, marker_epoch, commit);
    let writes = complete(rows, tid, marker).await?;
    let completed = TxnRecord {
        row,
        ..txn_rules::completed(record, commit)
    };
    rows.set_txn_state(tid, &completed).await?;
    Ok(TxnOutcome {
        partition_codes: Vec::new(),
        event: Some(event(rows, &writes)),
        producer: bump_epoch.then_some(ProducerIdAndEpoch {
            producer_id: row.producer_id,
            producer_epoch: row.producer_epoch,
        }),
    })
}

/// The producer for the next transaction after EndTxn v5: the next epoch,
/// or a new producer id at epoch 0 when the epochs are exhausted (as
/// InitProducerId rotates); stored.
async fn bump_for_end<R: TxnRows>(
    rows: &mut R,
    tid: &str,
    current: &TransactionalRow,
) -> Result<TransactionalRow> {
    let next = if current.producer_epoch + 1 >= EPOCH_EXHAUSTED {
        current.rotated(rows.allocate_producer_id().await?)
    } else {
        producer_rules::fenced_by_abort(current)
    };
    put_transactional_producer(rows, tid, &next).await?;
    rows.set_transactional_producer(tid, &next).await?;
    Ok(next)
}

/// AddPartitionsToTxn `verify_only`: NONE per partition the open
/// transaction holds, INVALID_TXN_STATE otherwise (UNKNOWN_TOPIC_OR_PARTITION
/// for partitions that do not exist).
async fn verify<R: TxnRows>(
    rows: &mut R,
    tid: &str,
    record: &TxnRecord,
    partitions: &[(Uuid, u32)],
) -> Result<TxnOutcome> {
    let held = if record.state == TxnState::Ongoing {
        rows.txn_partitions(tid).await?
    } else {
        Vec::new()
    };
    let mut codes = partition_codes(rows, partitions.iter().copied()).await?;
    for ((topic_id, partition), code) in partitions.iter().zip(codes.iter_mut()) {
        let key = (topic_id.as_bytes().to_vec(), *partition);
        if *code == error_code::NONE && !held.contains(&key) {
            *code = error_code::INVALID_TXN_STATE;
        }
    }
    Ok(TxnOutcome {
        partition_codes: codes,
        ..TxnOutcome::default()
    })
}

/// `strata txn abort`: aborts the transactional id's open transaction as
/// the timeout reaper would (epoch bumped, which fences the producer if it
/// is still alive; markers to every partition of the transaction).
async fn admin_abort<R: TxnRows>(rows: &mut R, tid: &str) -> Result<TxnOutcome> {
    let Some(record) = rows.transactional(tid).await? else {
        return Err(Error::TransactionalIdNotFound {
            transactional_id: tid.to_string(),
        });
    };
    if record.state != TxnState::Ongoing {
        return Err(Error::InvalidTxnState {
            transactional_id: tid.to_string(),
            state: record.state.as_str(),
        });
    }
    let (bumped, writes) = abort_fencing(rows, tid, &record).await?;
    Ok(TxnOutcome {
        partition_codes: Vec::new(),
        event: Some(event(rows, &writes)),
        producer: Some(ProducerIdAndEpoch {
            producer_id: bumped.producer_id,
            producer_epoch: bumped.producer_epoch,
        }),
    })
}

/// Aborts an open transaction with the producer's epoch bumped (timeout,
/// operator): returns the new producer row and the markers; the record is
/// saved as CompleteAbort.
async fn abort_fencing<R: TxnRows>(
    rows: &mut R,
    tid: &str,
    record: &TxnRecord,
) -> Result<(TransactionalRow, Vec<MarkerWrite>)> {
    let bumped = bump_for_abort(rows, tid, &record.row).await?;
    let writes = abort_open(rows, tid, bumped.producer_id, bumped.producer_epoch).await?;
    let completed = TxnRecord {
        row: bumped,
        ..txn_rules::completed(record, false)
    };
    rows.set_txn_state(tid, &completed).await?;
    Ok((bumped, writes))
}

/// Kafka's WriteTxnMarkers (`kafka-transactions.sh abort`): the producer's
/// open transaction (if any, and if `commit` is false: an abort) ends with
/// its epoch bumped, and each listed partition where the producer still
/// has an open transaction that no transactional id holds (a hanging
/// transaction) gets a marker of its own. One code per listed partition.
async fn write_markers<R: TxnRows>(
    rows: &mut R,
    producer: &TxnProducer,
    commit: bool,
    partitions: &[(Uuid, u32)],
) -> Result<TxnOutcome> {
    let mut writes = Vec::new();
    let mut codes = partition_codes(rows, partitions.iter().copied()).await?;
    if let Some(tid) = rows.transactional_id_of(producer.producer_id).await?
        && let Some(record) = rows.transactional(&tid).await?
        && record.row.producer_id == producer.producer_id
        && record.state == TxnState::Ongoing
    {
        if producer.producer_epoch < record.row.producer_epoch {
            codes.fill(error_code::INVALID_PRODUCER_EPOCH);
            return Ok(TxnOutcome {
                partition_codes: codes,
                ..TxnOutcome::default()
            });
        }
        if commit {
            let marker = marker(record.row.producer_id, record.row.producer_epoch, true);
            writes = complete(rows, &tid, marker).await?;
            rows.set_txn_state(&tid, &txn_rules::completed(&record, true))
                .await?;
        } else {
            writes = abort_fencing(rows, &tid, &record).await?.1;
        }
    }
    let marker = marker(producer.producer_id, producer.producer_epoch, commit);
    let written: Vec<PartitionKey> = writes.iter().map(|w| w.key.clone()).collect();
    for ((topic_id, partition), code) in partitions.iter().zip(&codes) {
        let key = (topic_id.as_bytes().to_vec(), *partition);
        if *code != error_code::NONE || written.contains(&key) {
            continue;
        }
        let Some(target) = marker_target(rows, key, producer.producer_id).await? else {
            continue;
        };
        if target.txn_start_offset.is_some() {
            writes.push(write_one_marker(rows, &target, marker).await?);
        }
    }
    let event = (!writes.is_empty()).then(|| event(rows, &writes));
    Ok(TxnOutcome {
        partition_codes: codes,
        event,
        producer: None,
    })
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
        ..TxnOutcome::default()
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
        writes.push(write_one_marker(rows, &target, marker).await?);
    }
    if marker.commit {
        rows.apply_txn_offsets(tid).await?;
    }
    rows.forget_txn(tid).await?;
    Ok(writes)
}

/// Appends one marker to a partition and records what it closes.
async fn write_one_marker<R: TxnRows>(
    rows: &mut R,
    target: &MarkerTarget,
    marker: TxnMarker,
) -> Result<MarkerWrite> {
    let write = txn_rules::write_marker(target, marker, rows.now_ms());
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
    Ok(write)
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
        writes.extend(abort_fencing(rows, &tid, &record).await?.1);
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
