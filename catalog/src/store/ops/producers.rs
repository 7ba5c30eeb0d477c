//! InitProducerId: producer ids and epochs, idempotent and transactional.
//! The state transitions live in [`crate::store::producer_rules`].

use strata_catalog_api::proto::InitProducerIdRequest;

use super::transactions;
use crate::Result;
use crate::store::producer_rules::{
    self, IdempotentInit, ProducerRow, TransactionalRow, producer_changed,
};
use crate::store::rows::{ProducerRows, TxnRows};
use crate::store::txn_rules::TxnState;
use crate::store::{InitProducerOutcome, ProducerIdAndEpoch};

/// Hands out a producer id and epoch (see `CatalogStore::init_producer_id`).
pub(crate) async fn init_producer_id<R: TxnRows>(
    rows: &mut R,
    request: &InitProducerIdRequest,
) -> Result<InitProducerOutcome> {
    if request.transactional_id.is_empty() {
        let granted = init_idempotent(rows, request).await?;
        return Ok(InitProducerOutcome {
            granted,
            event: None,
        });
    }
    init_transactional(rows, request).await
}

async fn new_producer<R: ProducerRows>(
    rows: &mut R,
    transactional_id: Option<&str>,
) -> Result<ProducerIdAndEpoch> {
    let producer_id = rows.allocate_producer_id().await?;
    let row = ProducerRow {
        epoch: 0,
        last_update_ms: rows.now_ms(),
        transactional: transactional_id.is_some(),
    };
    rows.put_producer(producer_id, &row, transactional_id)
        .await?;
    Ok(ProducerIdAndEpoch {
        producer_id,
        producer_epoch: 0,
    })
}

async fn init_idempotent<R: ProducerRows>(
    rows: &mut R,
    request: &InitProducerIdRequest,
) -> Result<ProducerIdAndEpoch> {
    if request.producer_id < 0 {
        return new_producer(rows, None).await;
    }
    let now_ms = rows.now_ms();
    let live_since_ms = now_ms - rows.producer_id_expiration_ms();
    let stored = rows.producer(request.producer_id).await?;
    match producer_rules::idempotent_init(request, stored, now_ms, live_since_ms)? {
        IdempotentInit::NewProducer => new_producer(rows, None).await,
        IdempotentInit::Bump(bumped) => {
            rows.put_producer(request.producer_id, &bumped, None)
                .await?;
            Ok(ProducerIdAndEpoch {
                producer_id: request.producer_id,
                producer_epoch: bumped.epoch,
            })
        }
    }
}

async fn init_transactional<R: TxnRows>(
    rows: &mut R,
    request: &InitProducerIdRequest,
) -> Result<InitProducerOutcome> {
    let transactional_id = request.transactional_id.as_str();
    let timeout_ms = request.transaction_timeout_ms;
    let Some(record) = rows.transactional(transactional_id).await? else {
        let fresh = new_producer(rows, Some(transactional_id)).await?;
        let row = TransactionalRow::first(fresh.producer_id, fresh.producer_epoch);
        rows.put_transactional(transactional_id, &row, timeout_ms)
            .await?;
        return Ok(InitProducerOutcome {
            granted: fresh,
            event: None,
        });
    };
    let current = record.row;
    let next = match producer_rules::next_transactional(request, &current)? {
        Some(next) => next,
        None => current.rotated(rows.allocate_producer_id().await?),
    };
    // A new instance aborts its predecessor's open transaction, with
    // markers of the new epoch (the old producer id when it rotated).
    let event = if record.state == TxnState::Ongoing {
        let marker = producer_rules::abort_marker_producer(&current, &next);
        let writes = transactions::abort_open(rows, transactional_id, marker.0, marker.1).await?;
        Some(transactions::event(rows, &writes))
    } else {
        None
    };
    if producer_changed(&current, &next) {
        transactions::put_transactional_producer(rows, transactional_id, &next).await?;
    }
    rows.put_transactional(transactional_id, &next, timeout_ms)
        .await?;
    Ok(InitProducerOutcome {
        granted: ProducerIdAndEpoch {
            producer_id: next.producer_id,
            producer_epoch: next.producer_epoch,
        },
        event,
    })
}

/// Deletes expired producer state (the writers' periodic sweep: lookups
/// ignore expired state anyway, the sweep only reclaims space); the number
/// of rows deleted.
pub(crate) async fn sweep_expired<R: ProducerRows>(rows: &mut R) -> Result<u64> {
    let live_since_ms = rows.now_ms() - rows.producer_id_expiration_ms();
    rows.delete_expired_producers(live_since_ms).await
}
