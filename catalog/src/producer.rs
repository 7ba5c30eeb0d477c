//! Kafka's idempotent-producer rules, as pure functions over one producer's
//! state in one partition. Stores load the state, ask [`check`], and save
//! what [`PartitionProducer::record`] returns, all inside the commit's
//! transaction.

use std::collections::VecDeque;

use crate::error_code;
use crate::{Error, Result};

/// How many recent batches per producer and partition are remembered for
/// duplicate detection: Kafka's `max.in.flight.requests.per.connection`
/// limit for idempotence.
pub(crate) const RECENT_BATCHES_MAX: usize = 5;

/// Epochs at or above this are exhausted: the next bump takes a new
/// producer id (Kafka's `isEpochExhausted`, which keeps one epoch spare for
/// transaction markers).
pub(crate) const EPOCH_EXHAUSTED: i32 = i16::MAX as i32 - 1;

/// One appended batch, remembered so a retry is answered with its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecentBatch {
    pub(crate) first_sequence: i32,
    pub(crate) last_sequence: i32,
    pub(crate) base_offset: i64,
}

/// A producer's state in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartitionProducer {
    pub(crate) epoch: i32,
    pub(crate) last_sequence: i32,
    pub(crate) last_timestamp: i64,
    pub(crate) last_update_ms: i64,
    /// The transaction coordinator's epoch (-1 until transactions exist).
    pub(crate) coordinator_epoch: i32,
    /// The first offset of the producer's open transaction, -1 = none.
    pub(crate) current_txn_start_offset: i64,
    /// Oldest first, at most [`RECENT_BATCHES_MAX`].
    pub(crate) recent: VecDeque<RecentBatch>,
}

/// The producer fields of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchIdentity {
    pub(crate) epoch: i32,
    pub(crate) first_sequence: i32,
    pub(crate) last_sequence: i32,
}

impl BatchIdentity {
    /// The identity of a batch of `offset_count` records starting at
    /// `base_sequence`.
    pub(crate) fn new(epoch: i32, base_sequence: i32, offset_count: u32) -> Self {
        Self {
            epoch,
            first_sequence: base_sequence,
            last_sequence: last_sequence(base_sequence, offset_count),
        }
    }
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Append it.
    Accept,
    /// It was appended before at `base_offset`; append nothing.
    Duplicate { base_offset: i64 },
    /// Reject it with this Kafka error code.
    Reject(i16),
}

/// The sequence of the last record of a batch, wrapping at `i32::MAX` to 0
/// as Kafka's `DefaultRecordBatch.incrementSequence` does.
pub(crate) fn last_sequence(base_sequence: i32, offset_count: u32) -> i32 {
    let modulus = i64::from(i32::MAX) + 1;
    let last = (i64::from(base_sequence) + i64::from(offset_count) - 1).rem_euclid(modulus);
    i32::try_from(last).expect("a value reduced modulo 2^31 fits in i32")
}

/// Whether `next` directly follows `last`, with wraparound.
pub(crate) fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// Checks one batch against the producer's current epoch (`None` when the
/// producer id is unknown or expired) and its state in the partition
/// (`None` when it has not written there, or that state expired).
pub(crate) fn check(
    producer_epoch: Option<i32>,
    state: Option<&PartitionProducer>,
    batch: &BatchIdentity,
) -> Verdict {
    let Some(producer_epoch) = producer_epoch else {
        return Verdict::Reject(error_code::UNKNOWN_PRODUCER_ID);
    };
    if batch.epoch < producer_epoch {
        return Verdict::Reject(error_code::INVALID_PRODUCER_EPOCH);
    }
    let Some(state) = state else {
        return sequence_starts_at_zero(batch);
    };
    if batch.epoch < state.epoch {
        return Verdict::Reject(error_code::INVALID_PRODUCER_EPOCH);
    }
    if batch.epoch > state.epoch {
        // An epoch bump resets the sequence.
        return sequence_starts_at_zero(batch);
    }
    if let Some(original) = state.find_duplicate(batch) {
        return Verdict::Duplicate {
            base_offset: original.base_offset,
        };
    }
    if in_sequence(state.last_sequence, batch.first_sequence) {
        Verdict::Accept
    } else {
        Verdict::Reject(error_code::OUT_OF_ORDER_SEQUENCE_NUMBER)
    }
}

fn sequence_starts_at_zero(batch: &BatchIdentity) -> Verdict {
    if batch.first_sequence == 0 {
        Verdict::Accept
    } else {
        Verdict::Reject(error_code::OUT_OF_ORDER_SEQUENCE_NUMBER)
    }
}

impl PartitionProducer {
    /// The state after appending `batch` at `base_offset`, starting from
    /// `previous` (`None` for a producer new to the partition).
    pub(crate) fn record(
        previous: Option<Self>,
        batch: &BatchIdentity,
        base_offset: i64,
        max_timestamp: i64,
        now_ms: i64,
    ) -> Self {
        let mut state = previous.unwrap_or(Self {
            epoch: batch.epoch,
            last_sequence: -1,
            last_timestamp: -1,
            last_update_ms: now_ms,
            coordinator_epoch: -1,
            current_txn_start_offset: -1,
            recent: VecDeque::with_capacity(RECENT_BATCHES_MAX),
        });
        if batch.epoch != state.epoch {
            state.epoch = batch.epoch;
            state.recent.clear();
        }
        if state.recent.len() == RECENT_BATCHES_MAX {
            state.recent.pop_front();
        }
        state.recent.push_back(RecentBatch {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence,
            base_offset,
        });
        state.last_sequence = batch.last_sequence;
        state.last_timestamp = max_timestamp;
        state.last_update_ms = now_ms;
        state
    }

    fn find_duplicate(&self, batch: &BatchIdentity) -> Option<&RecentBatch> {
        self.recent.iter().find(|recent| {
            recent.first_sequence == batch.first_sequence
                && recent.last_sequence == batch.last_sequence
        })
    }
}

/// Size of one encoded [`RecentBatch`].
const RECENT_BATCH_BYTES: usize = 16;

/// Encodes the recent batches as 16 little-endian bytes each: first
/// sequence (i32), last sequence (i32), base offset (i64).
pub(crate) fn encode_recent(recent: &VecDeque<RecentBatch>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(recent.len() * RECENT_BATCH_BYTES);
    for batch in recent {
        bytes.extend_from_slice(&batch.first_sequence.to_le_bytes());
        bytes.extend_from_slice(&batch.last_sequence.to_le_bytes());
        bytes.extend_from_slice(&batch.base_offset.to_le_bytes());
    }
    bytes
}

/// Decodes what [`encode_recent`] wrote.
pub(crate) fn decode_recent(bytes: &[u8]) -> Result<VecDeque<RecentBatch>> {
    if !bytes.len().is_multiple_of(RECENT_BATCH_BYTES)
        || bytes.len() > RECENT_BATCH_BYTES * RECENT_BATCHES_MAX
    {
        return Err(Error::Corrupt {
            what: format!("recent producer batches of {} bytes", bytes.len()),
        });
    }
    let mut recent = VecDeque::with_capacity(RECENT_BATCHES_MAX);
    for entry in bytes.chunks_exact(RECENT_BATCH_BYTES) {
        let (first, rest) = entry.split_at(4);
        let (last, offset) = rest.split_at(4);
        recent.push_back(RecentBatch {
            first_sequence: i32::from_le_bytes(first.try_into().expect("4 bytes")),
            last_sequence: i32::from_le_bytes(last.try_into().expect("4 bytes")),
            base_offset: i64::from_le_bytes(offset.try_into().expect("8 bytes")),
        });
    }
    Ok(recent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(
        state: Option<PartitionProducer>,
        batch: BatchIdentity,
        offset: i64,
    ) -> PartitionProducer {
        assert_eq!(
            check(Some(batch.epoch), state.as_ref(), &batch),
            Verdict::Accept
        );
        PartitionProducer::record(state, &batch, offset, 0, 0)
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(last_sequence(0, 1), 0);
        assert_eq!(last_sequence(5, 10), 14);
        assert_eq!(last_sequence(i32::MAX, 1), i32::MAX);
        assert_eq!(last_sequence(i32::MAX, 2), 0);
        assert_eq!(last_sequence(i32::MAX - 1, 5), 2);
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(4, 5));
        assert!(!in_sequence(4, 6));
        assert!(!in_sequence(i32::MAX, 1));
    }

    #[test]
    fn new_producer_must_start_at_zero() {
        let batch = BatchIdentity::new(0, 3, 1);
        assert_eq!(
            check(Some(0), None, &batch),
            Verdict::Reject(error_code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        assert_eq!(
            check(None, None, &BatchIdentity::new(0, 0, 1)),
            Verdict::Reject(error_code::UNKNOWN_PRODUCER_ID)
        );
    }

    #[test]
    fn duplicates_gaps_and_epochs() {
        let state = accept(None, BatchIdentity::new(0, 0, 5), 100);
        let state = accept(Some(state), BatchIdentity::new(0, 5, 5), 105);
        assert_eq!(
            check(Some(0), Some(&state), &BatchIdentity::new(0, 0, 5)),
            Verdict::Duplicate { base_offset: 100 }
        );
        assert_eq!(
            check(Some(0), Some(&state), &BatchIdentity::new(0, 11, 1)),
            Verdict::Reject(error_code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        // A bumped epoch must restart at 0; an old epoch is fenced.
        assert_eq!(
            check(Some(0), Some(&state), &BatchIdentity::new(1, 10, 1)),
            Verdict::Reject(error_code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
        let bumped = accept(Some(state), BatchIdentity::new(1, 0, 1), 110);
        assert_eq!(bumped.recent.len(), 1);
        assert_eq!(
            check(Some(1), Some(&bumped), &BatchIdentity::new(0, 10, 1)),
            Verdict::Reject(error_code::INVALID_PRODUCER_EPOCH)
        );
    }

    #[test]
    fn window_holds_five_batches() {
        let mut state = None;
        for i in 0..7 {
            state = Some(accept(
                state,
                BatchIdentity::new(0, i, 1),
                i64::from(i) * 10,
            ));
        }
        let state = state.expect("recorded");
        assert_eq!(state.recent.len(), RECENT_BATCHES_MAX);
        // Batches 2..=6 are remembered; 0 and 1 fell out of the window.
        assert_eq!(
            check(Some(0), Some(&state), &BatchIdentity::new(0, 2, 1)),
            Verdict::Duplicate { base_offset: 20 }
        );
        assert_eq!(
            check(Some(0), Some(&state), &BatchIdentity::new(0, 1, 1)),
            Verdict::Reject(error_code::OUT_OF_ORDER_SEQUENCE_NUMBER)
        );
    }

    #[test]
    fn recent_batches_round_trip() {
        let state = accept(None, BatchIdentity::new(0, 0, 3), 7);
        let state = accept(Some(state), BatchIdentity::new(0, 3, 2), 10);
        let bytes = encode_recent(&state.recent);
        assert_eq!(decode_recent(&bytes).expect("valid"), state.recent);
        assert!(decode_recent(&bytes[1..]).is_err());
    }
}
