//! InitProducerId's state transitions, shared by every store: the stores
//! load and write the rows, these functions decide what the rows become.

use strata_catalog_api::proto::InitProducerIdRequest;

use crate::producer::EPOCH_EXHAUSTED;
use crate::{Error, Result};

/// A producer id's current epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerRow {
    pub(crate) epoch: i32,
    pub(crate) last_update_ms: i64,
    /// Transactional producers live as long as their transactional id, so
    /// they do not expire with `producer.id.expiration.ms`.
    pub(crate) transactional: bool,
}

impl ProducerRow {
    /// Whether the producer id is still known, given that state last
    /// updated before `live_since_ms` has expired.
    pub(crate) fn is_live(&self, live_since_ms: i64) -> bool {
        self.transactional || self.last_update_ms >= live_since_ms
    }
}

/// What an idempotent (non-transactional) InitProducerId does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdempotentInit {
    /// Hand out a fresh producer id at epoch 0.
    NewProducer,
    /// Keep the id and store this row (the epoch bumped by one).
    Bump(ProducerRow),
}

/// Decides an idempotent InitProducerId for `request` (whose
/// `producer_id` is >= 0), given the producer's stored row. Fails with
/// `InvalidProducerEpoch` when the caller's epoch is not the current one.
pub(crate) fn idempotent_init(
    request: &InitProducerIdRequest,
    stored: Option<ProducerRow>,
    now_ms: i64,
    live_since_ms: i64,
) -> Result<IdempotentInit> {
    let current = stored.filter(|row| !row.transactional && row.is_live(live_since_ms));
    match current {
        // Unknown or expired: a producer recovering from UNKNOWN_PRODUCER_ID
        // gets a fresh id, as Kafka does.
        None => Ok(IdempotentInit::NewProducer),
        Some(row) if row.epoch == request.producer_epoch => {
            if row.epoch >= EPOCH_EXHAUSTED {
                return Ok(IdempotentInit::NewProducer);
            }
            // Sequences restart at 0 with the new epoch: the commit checks
            // enforce that, so the per-partition states stay as they are.
            Ok(IdempotentInit::Bump(ProducerRow {
                epoch: row.epoch + 1,
                last_update_ms: now_ms,
                transactional: false,
            }))
        }
        Some(row) => Err(Error::InvalidProducerEpoch {
            producer_id: request.producer_id,
            epoch: request.producer_epoch,
            current: row.epoch,
        }),
    }
}

/// A transactional id's producer, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TransactionalRow {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i32,
    pub(crate) last_producer_id: i64,
    pub(crate) last_producer_epoch: i32,
}

impl TransactionalRow {
    /// The row of a transactional id seen for the first time, whose
    /// producer is `producer_id` at `producer_epoch`.
    pub(crate) fn first(producer_id: i64, producer_epoch: i32) -> Self {
        Self {
            producer_id,
            producer_epoch,
            last_producer_id: -1,
            last_producer_epoch: -1,
        }
    }

    /// The row after rotating an exhausted epoch to `new_producer_id`.
    pub(crate) fn rotated(&self, new_producer_id: i64) -> Self {
        Self {
            producer_id: new_producer_id,
            producer_epoch: 0,
            last_producer_id: self.producer_id,
            last_producer_epoch: self.producer_epoch,
        }
    }
}

/// Kafka's `prepareInitProducerIdTransit` without the transaction states:
/// fence a caller that is not the current producer, answer a retried bump
/// with the same epoch, bump the epoch otherwise. `Ok(None)` means the
/// epoch is exhausted: the caller allocates a new id and stores
/// [`TransactionalRow::rotated`].
pub(crate) fn next_transactional(
    request: &InitProducerIdRequest,
    current: &TransactionalRow,
) -> Result<Option<TransactionalRow>> {
    let expected =
        (request.producer_id >= 0).then_some((request.producer_id, request.producer_epoch));
    let fenced = || Error::ProducerFenced {
        transactional_id: request.transactional_id.clone(),
        producer_id: request.producer_id,
        epoch: request.producer_epoch,
    };
    if let Some((id, epoch)) = expected {
        let retried_rotation = id == current.last_producer_id && epoch >= EPOCH_EXHAUSTED;
        if retried_rotation {
            return Ok(Some(*current));
        }
        if id != current.producer_id {
            return Err(fenced());
        }
        if epoch != current.producer_epoch {
            // A retry of a bump whose answer was lost: the same answer.
            return if epoch == current.last_producer_epoch {
                Ok(Some(*current))
            } else {
                Err(fenced())
            };
        }
    }
    if current.producer_epoch >= EPOCH_EXHAUSTED {
        return Ok(None);
    }
    Ok(Some(TransactionalRow {
        producer_id: current.producer_id,
        producer_epoch: current.producer_epoch + 1,
        last_producer_id: current.producer_id,
        last_producer_epoch: current.producer_epoch,
    }))
}

/// The row after a transaction timeout aborted the producer's transaction:
/// the epoch bumped (kept at the last usable epoch when exhausted, where
/// the marker still fences by id), so the timed-out producer's next call
/// is fenced.
pub(crate) fn fenced_by_abort(current: &TransactionalRow) -> TransactionalRow {
    TransactionalRow {
        producer_id: current.producer_id,
        producer_epoch: (current.producer_epoch + 1).min(EPOCH_EXHAUSTED),
        last_producer_id: current.producer_id,
        last_producer_epoch: current.producer_epoch,
    }
}

/// The producer id and epoch of the ABORT markers written when a new
/// instance (InitProducerId going from `current` to `next`) finds its
/// predecessor's transaction open: the new epoch, or when the id rotated
/// the old id at its last epoch.
pub(crate) fn abort_marker_producer(
    current: &TransactionalRow,
    next: &TransactionalRow,
) -> (i64, i32) {
    if next.producer_id == current.producer_id {
        (next.producer_id, next.producer_epoch)
    } else {
        (current.producer_id, current.producer_epoch)
    }
}

/// Whether moving from `current` to `next` changes the producer (its id
/// or epoch), so the producer row must be written.
pub(crate) fn producer_changed(current: &TransactionalRow, next: &TransactionalRow) -> bool {
    next.producer_id != current.producer_id || next.producer_epoch != current.producer_epoch
}
