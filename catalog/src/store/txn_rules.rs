//! Kafka's transaction coordinator rules, as pure functions shared by every
//! store: who may act on a transactional id, which state transitions are
//! allowed, and what ending a transaction does to each of its partitions
//! (one marker chunk, the last stable offset, the aborted range).
//!
//! Stores load the rows these functions read and write back what they
//! return, inside one store transaction per coordinator call.

use strata_catalog_api::CONTROL_BATCH_BYTES;
use strata_catalog_api::proto::{
    AbortedTransaction, Chunk, ChunkFormat, CommitEvent, PartitionOffsets, TxnMarker, TxnProducer,
};

use crate::store::ProducerIdAndEpoch;
use crate::store::commit_plan::{NewChunk, PartitionKey, PartitionRow};
use crate::store::producer_rules::TransactionalRow;
use crate::{Error, Result};

/// The epoch of the (single, catalog-hosted) transaction coordinator.
pub(crate) const COORDINATOR_EPOCH: i32 = 0;

/// A transactional id's transaction state. Kafka's PrepareCommit and
/// PrepareAbort do not exist here: ending a transaction (markers included)
/// is one store transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnState {
    /// No transaction has run since the producer was initialised.
    Empty,
    /// A transaction is open: partitions or offsets were added.
    Ongoing,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// The name stored in `transactional_ids.state`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
        }
    }

    /// Parses a stored name.
    pub(crate) fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "Empty" => Self::Empty,
            "Ongoing" => Self::Ongoing,
            "CompleteCommit" => Self::CompleteCommit,
            "CompleteAbort" => Self::CompleteAbort,
            other => {
                return Err(Error::Corrupt {
                    what: format!("transaction state {other:?}"),
                });
            }
        })
    }
}

/// A transactional id's row with its transaction state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnRecord {
    pub(crate) row: TransactionalRow,
    pub(crate) timeout_ms: i32,
    pub(crate) state: TxnState,
    /// When the open transaction began (catalog clock), -1 when none.
    pub(crate) started_ms: i64,
}

/// Checks that `producer` is the transactional id's current producer:
/// an unknown id or another producer id is INVALID_PRODUCER_ID_MAPPING,
/// another epoch PRODUCER_FENCED (the agent answers INVALID_PRODUCER_EPOCH
/// to request versions that predate PRODUCER_FENCED).
pub(crate) fn check_caller(
    producer: &TxnProducer,
    record: Option<&TxnRecord>,
) -> Result<TxnRecord> {
    let mapping = || Error::InvalidProducerIdMapping {
        transactional_id: producer.transactional_id.clone(),
        producer_id: producer.producer_id,
    };
    let record = *record.ok_or_else(mapping)?;
    if record.row.producer_id != producer.producer_id {
        return Err(mapping());
    }
    if record.row.producer_epoch != producer.producer_epoch {
        return Err(Error::ProducerFenced {
            transactional_id: producer.transactional_id.clone(),
            producer_id: producer.producer_id,
            epoch: producer.producer_epoch,
        });
    }
    Ok(record)
}

/// A retry of an EndTxn v5 whose answer was lost: the caller is the
/// transactional id's previous producer (id and epoch), the transaction
/// already completed with the same outcome. Returns the current producer,
/// which the retry is answered with (KIP-890 part 2).
pub(crate) fn retried_bumped_end(
    producer: &TxnProducer,
    record: Option<&TxnRecord>,
    commit: bool,
) -> Option<ProducerIdAndEpoch> {
    let record = record?;
    let completed = if commit {
        TxnState::CompleteCommit
    } else {
        TxnState::CompleteAbort
    };
    let previous = record.row.last_producer_id == producer.producer_id
        && record.row.last_producer_epoch == producer.producer_epoch;
    (previous && record.state == completed).then_some(ProducerIdAndEpoch {
        producer_id: record.row.producer_id,
        producer_epoch: record.row.producer_epoch,
    })
}

/// The record once a partition or offsets are added: the transaction is
/// open from now on (if it was not already).
pub(crate) fn begun(record: &TxnRecord, now_ms: i64) -> TxnRecord {
    if record.state == TxnState::Ongoing {
        return *record;
    }
    TxnRecord {
        state: TxnState::Ongoing,
        started_ms: now_ms,
        ..*record
    }
}

/// What an EndTxn does in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndAction {
    /// Write the markers and complete the transaction.
    Complete,
    /// A retry of the EndTxn that completed the last transaction: answer
    /// success again, change nothing.
    Retried,
}

/// Kafka's EndTxn transitions: an open transaction completes; a retry of
/// the same outcome succeeds; anything else is INVALID_TXN_STATE.
pub(crate) fn end_action(
    transactional_id: &str,
    state: TxnState,
    commit: bool,
) -> Result<EndAction> {
    match (state, commit) {
        (TxnState::Ongoing, _) => Ok(EndAction::Complete),
        (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
            Ok(EndAction::Retried)
        }
        _ => Err(Error::InvalidTxnState {
            transactional_id: transactional_id.to_string(),
            state: state.as_str(),
        }),
    }
}

/// The record after the transaction completed.
pub(crate) fn completed(record: &TxnRecord, commit: bool) -> TxnRecord {
    TxnRecord {
        state: if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        },
        started_ms: -1,
        ..*record
    }
}

/// One partition of a transaction being completed, as loaded.
#[derive(Debug, Clone)]
pub(crate) struct MarkerTarget {
    pub(crate) key: PartitionKey,
    pub(crate) row: PartitionRow,
    /// The first offset of this producer's open transaction in the
    /// partition (`current_txn_start_offset`), when it wrote there.
    pub(crate) txn_start_offset: Option<i64>,
    /// The earliest first offset of the other producers' open
    /// transactions in the partition.
    pub(crate) other_open_min: Option<i64>,
}

/// What completing a transaction does to one partition.
#[derive(Debug, Clone)]
pub(crate) struct MarkerWrite {
    pub(crate) key: PartitionKey,
    /// The partition row after the marker.
    pub(crate) row: PartitionRow,
    /// The marker chunk, one offset at the old high watermark.
    pub(crate) chunk: NewChunk,
    /// The aborted range to record (aborts of partitions the producer
    /// wrote to).
    pub(crate) aborted: Option<AbortedTransaction>,
}

/// Appends a marker to one partition: it takes the next offset, closes the
/// producer's transaction there, and moves the last stable offset to the
/// earliest transaction still open (or the new high watermark).
pub(crate) fn write_marker(target: &MarkerTarget, marker: TxnMarker, now_ms: i64) -> MarkerWrite {
    let mut row = target.row;
    let offset = row.next_offset;
    row.next_offset = offset + 1;
    row.last_stable_offset = target.other_open_min.unwrap_or(row.next_offset);
    let running_max_timestamp = row.max_timestamp.max(now_ms);
    if now_ms > row.max_timestamp {
        row.max_timestamp = now_ms;
        row.max_timestamp_offset = offset;
    }
    let aborted = (!marker.commit)
        .then_some(target.txn_start_offset)
        .flatten()
        .map(|first_offset| AbortedTransaction {
            producer_id: marker.producer_id,
            first_offset,
            last_offset: offset,
        });
    let chunk = Chunk {
        topic_id: target.key.0.clone(),
        partition: target.key.1,
        base_offset: offset,
        end_offset: offset + 1,
        object_key: String::new(),
        object_size: 0,
        position: 0,
        length: CONTROL_BATCH_BYTES,
        batch_count: 1,
        max_timestamp: now_ms,
        format: ChunkFormat::Marker.into(),
        marker: Some(marker),
    };
    MarkerWrite {
        key: target.key.clone(),
        row,
        chunk: NewChunk {
            chunk,
            running_max_timestamp,
        },
        aborted,
    }
}

/// The commit-stream event of completed transactions' markers.
pub(crate) fn marker_event(sequence: u64, writes: &[MarkerWrite]) -> CommitEvent {
    CommitEvent {
        sequence,
        chunks: writes.iter().map(|w| w.chunk.chunk.clone()).collect(),
        offsets: writes
            .iter()
            .map(|w| PartitionOffsets {
                topic_id: w.key.0.clone(),
                partition: w.key.1,
                log_start_offset: w.row.log_start_offset,
                high_watermark: w.row.next_offset,
                last_stable_offset: w.row.last_stable_offset,
            })
            .collect(),
        invalidated: Vec::new(),
    }
}

/// Whether a transaction that began at `started_ms` with `timeout_ms` has
/// run out at `now_ms`.
pub(crate) fn expired(record: &TxnRecord, now_ms: i64) -> bool {
    record.state == TxnState::Ongoing
        && record.started_ms >= 0
        && now_ms - record.started_ms > i64::from(record.timeout_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(state: TxnState) -> TxnRecord {
        TxnRecord {
            row: TransactionalRow::first(7, 3),
            timeout_ms: 1_000,
            state,
            started_ms: -1,
        }
    }

    fn producer(id: i64, epoch: i32) -> TxnProducer {
        TxnProducer {
            transactional_id: "t".to_string(),
            producer_id: id,
            producer_epoch: epoch,
        }
    }

    #[test]
    fn callers_are_checked() {
        let r = record(TxnState::Empty);
        assert!(check_caller(&producer(7, 3), Some(&r)).is_ok());
        let code = |e: Error| e.kafka_error_code();
        assert_eq!(
            code(check_caller(&producer(8, 3), Some(&r)).expect_err("other id")),
            Some(crate::error_code::INVALID_PRODUCER_ID_MAPPING)
        );
        assert_eq!(
            code(check_caller(&producer(7, 2), Some(&r)).expect_err("old epoch")),
            Some(crate::error_code::PRODUCER_FENCED)
        );
        assert_eq!(
            code(check_caller(&producer(7, 3), None).expect_err("unknown")),
            Some(crate::error_code::INVALID_PRODUCER_ID_MAPPING)
        );
    }

    #[test]
    fn end_transitions() {
        assert_eq!(
            end_action("t", TxnState::Ongoing, false).expect("open"),
            EndAction::Complete
        );
        assert_eq!(
            end_action("t", TxnState::CompleteCommit, true).expect("retry"),
            EndAction::Retried
        );
        assert!(end_action("t", TxnState::CompleteCommit, false).is_err());
        assert!(end_action("t", TxnState::Empty, true).is_err());
        let open = begun(&record(TxnState::Empty), 50);
        assert_eq!((open.state, open.started_ms), (TxnState::Ongoing, 50));
        assert_eq!(begun(&open, 90).started_ms, 50);
        assert!(!expired(&open, 1_050));
        assert!(expired(&open, 1_051));
        assert_eq!(completed(&open, false).state, TxnState::CompleteAbort);
    }

    #[test]
    fn markers_move_the_last_stable_offset() {
        let row = PartitionRow {
            log_start_offset: 0,
            next_offset: 10,
            last_stable_offset: 4,
            max_timestamp: 100,
            max_timestamp_offset: 2,
        };
        let marker = TxnMarker {
            producer_id: 7,
            producer_epoch: 3,
            coordinator_epoch: 0,
            commit: false,
        };
        let target = MarkerTarget {
            key: (vec![1; 16], 0),
            row,
            txn_start_offset: Some(4),
            other_open_min: Some(6),
        };
        let write = write_marker(&target, marker, 50);
        assert_eq!(write.chunk.chunk.base_offset, 10);
        assert_eq!(write.row.next_offset, 11);
        assert_eq!(write.row.last_stable_offset, 6);
        assert_eq!(write.row.max_timestamp, 100);
        let aborted = write.aborted.expect("an abort of written data");
        assert_eq!((aborted.first_offset, aborted.last_offset), (4, 10));
        let alone = MarkerTarget {
            other_open_min: None,
            txn_start_offset: None,
            ..target
        };
        let write = write_marker(
            &alone,
            TxnMarker {
                commit: true,
                ..marker
            },
            200,
        );
        assert_eq!(write.row.last_stable_offset, 11);
        assert_eq!(write.row.max_timestamp_offset, 10);
        assert!(write.aborted.is_none());
    }
}
