//! Producer rows: ids and epochs, per-partition state, InitProducerId.
//!
//! New producer ids come from the `producer_ids` sequence, so catalogs
//! sharing a database never hand out the same id; ids taken by a rolled
//! back transaction are skipped, never reused.

use deadpool_postgres::GenericClient;
use strata_catalog_api::proto::{InitProducerIdRequest, ProducerState};
use tokio_postgres::Row;
use uuid::Uuid;

use super::rows::WriteContext;
use super::transactions;
use crate::Result;
use crate::producer::{PartitionProducer, decode_recent};
use crate::store::producer_rules::{
    self, IdempotentInit, ProducerRow, TransactionalRow, producer_changed,
};
use crate::store::txn_rules::TxnState;
use crate::store::{InitProducerOutcome, ProducerIdAndEpoch};

/// Decodes a producer's partition state from `row`, whose columns from
/// `first` on are: epoch, last sequence, last timestamp, last update,
/// coordinator epoch, transaction start offset, recent batches.
pub(super) fn state_from_row(row: &Row, first: usize) -> Result<PartitionProducer> {
    let recent: &[u8] = row.try_get(first + 6)?;
    Ok(PartitionProducer {
        epoch: row.try_get(first)?,
        last_sequence: row.try_get(first + 1)?,
        last_timestamp: row.try_get(first + 2)?,
        last_update_ms: row.try_get(first + 3)?,
        coordinator_epoch: row.try_get(first + 4)?,
        current_txn_start_offset: row.try_get(first + 5)?,
        recent: decode_recent(recent)?,
    })
}

/// The producer row of `producer_id`, expired or not.
async fn load(context: &WriteContext<'_, '_>, producer_id: i64) -> Result<Option<ProducerRow>> {
    let transaction = context.transaction;
    let statement = transaction
        .prepare_cached(
            "SELECT producer_epoch, last_update_ms, transactional_id IS NOT NULL
             FROM producers WHERE producer_id = $1",
        )
        .await?;
    let row = transaction.query_opt(&statement, &[&producer_id]).await?;
    row.map(|row| {
        Ok(ProducerRow {
            epoch: row.try_get(0)?,
            last_update_ms: row.try_get(1)?,
            transactional: row.try_get(2)?,
        })
    })
    .transpose()
}

/// Writes a producer row (insert or replace).
async fn store(
    context: &WriteContext<'_, '_>,
    producer_id: i64,
    row: &ProducerRow,
    transactional_id: Option<&str>,
) -> Result<()> {
    let transaction = context.transaction;
    let statement = transaction
        .prepare_cached(
            "INSERT INTO producers (producer_id, producer_epoch, transactional_id, last_update_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (producer_id) DO UPDATE SET producer_epoch = excluded.producer_epoch,
                 transactional_id = excluded.transactional_id,
                 last_update_ms = excluded.last_update_ms",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &producer_id,
                &row.epoch,
                &transactional_id,
                &row.last_update_ms,
            ],
        )
        .await?;
    Ok(())
}

/// Takes a new producer id from the database sequence.
async fn allocate_producer_id(context: &WriteContext<'_, '_>) -> Result<i64> {
    let transaction = context.transaction;
    let statement = transaction
        .prepare_cached("SELECT nextval('producer_ids')")
        .await?;
    Ok(transaction.query_one(&statement, &[]).await?.try_get(0)?)
}

/// The unexpired producer states of a partition, by producer id.
pub(super) async fn describe(
    client: &impl GenericClient,
    topic_id: Uuid,
    partition: u32,
    live_since_ms: i64,
) -> Result<Vec<ProducerState>> {
    let statement = client
        .prepare_cached(
            "SELECT producer_id, producer_epoch, last_sequence, last_timestamp, coordinator_epoch,
                 current_txn_start_offset
             FROM producer_partitions
             WHERE topic_id = $1 AND partition = $2 AND last_update_ms >= $3
             ORDER BY producer_id",
        )
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &topic_id.as_bytes().as_slice(),
                &i64::from(partition),
                &live_since_ms,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ProducerState {
                producer_id: row.try_get(0)?,
                producer_epoch: row.try_get(1)?,
                last_sequence: row.try_get(2)?,
                last_timestamp: row.try_get(3)?,
                coordinator_epoch: row.try_get(4)?,
                current_txn_start_offset: row.try_get(5)?,
            })
        })
        .collect()
}

/// Hands out a producer id and epoch (see `CatalogStore::init_producer_id`).
pub(super) async fn init_producer_id(
    context: &mut WriteContext<'_, '_>,
    request: &InitProducerIdRequest,
) -> Result<InitProducerOutcome> {
    if request.transactional_id.is_empty() {
        let granted = init_idempotent(context, request).await?;
        return Ok(InitProducerOutcome {
            granted,
            event: None,
        });
    }
    init_transactional(context, request).await
}

/// Bumps a transactional producer's epoch to fence it (its transaction
/// timed out); returns the new row, already stored.
pub(super) async fn bump_for_abort(
    context: &WriteContext<'_, '_>,
    transactional_id: &str,
    current: &TransactionalRow,
) -> Result<TransactionalRow> {
    let next = producer_rules::fenced_by_abort(current);
    let producer = ProducerRow {
        epoch: next.producer_epoch,
        last_update_ms: context.now_ms,
        transactional: true,
    };
    store(context, next.producer_id, &producer, Some(transactional_id)).await?;
    context
        .transaction
        .execute(
            "UPDATE transactional_ids SET producer_epoch = $2, last_producer_id = $3,
                 last_producer_epoch = $4
             WHERE transactional_id = $1",
            &[
                &transactional_id,
                &next.producer_epoch,
                &next.last_producer_id,
                &next.last_producer_epoch,
            ],
        )
        .await?;
    Ok(next)
}

async fn new_producer(
    context: &WriteContext<'_, '_>,
    transactional_id: Option<&str>,
) -> Result<ProducerIdAndEpoch> {
    let producer_id = allocate_producer_id(context).await?;
    let row = ProducerRow {
        epoch: 0,
        last_update_ms: context.now_ms,
        transactional: transactional_id.is_some(),
    };
    store(context, producer_id, &row, transactional_id).await?;
    Ok(ProducerIdAndEpoch {
        producer_id,
        producer_epoch: 0,
    })
}

async fn init_idempotent(
    context: &WriteContext<'_, '_>,
    request: &InitProducerIdRequest,
) -> Result<ProducerIdAndEpoch> {
    if request.producer_id < 0 {
        return new_producer(context, None).await;
    }
    let live_since_ms = context.now_ms - context.options.producer_id_expiration_ms;
    let stored = load(context, request.producer_id).await?;
    match producer_rules::idempotent_init(request, stored, context.now_ms, live_since_ms)? {
        IdempotentInit::NewProducer => new_producer(context, None).await,
        IdempotentInit::Bump(bumped) => {
            store(context, request.producer_id, &bumped, None).await?;
            Ok(ProducerIdAndEpoch {
                producer_id: request.producer_id,
                producer_epoch: bumped.epoch,
            })
        }
    }
}

async fn init_transactional(
    context: &mut WriteContext<'_, '_>,
    request: &InitProducerIdRequest,
) -> Result<InitProducerOutcome> {
    let transactional_id = request.transactional_id.as_str();
    let timeout_ms = request.transaction_timeout_ms;
    let Some(record) = transactions::load_record(context, transactional_id).await? else {
        let fresh = new_producer(context, Some(transactional_id)).await?;
        let row = TransactionalRow::first(fresh.producer_id, fresh.producer_epoch);
        store_transactional(context, transactional_id, &row, timeout_ms).await?;
        return Ok(InitProducerOutcome {
            granted: fresh,
            event: None,
        });
    };
    let current = record.row;
    let next = match producer_rules::next_transactional(request, &current)? {
        Some(next) => next,
        None => current.rotated(allocate_producer_id(context).await?),
    };
    // A new instance aborts its predecessor's open transaction, with
    // markers of the new epoch (the old producer id when it rotated).
    let event = if record.state == TxnState::Ongoing {
        let marker = producer_rules::abort_marker_producer(&current, &next);
        let writes =
            transactions::abort_open(context, transactional_id, marker.0, marker.1).await?;
        Some(transactions::event(context, &writes))
    } else {
        None
    };
    if producer_changed(&current, &next) {
        let producer = ProducerRow {
            epoch: next.producer_epoch,
            last_update_ms: context.now_ms,
            transactional: true,
        };
        store(context, next.producer_id, &producer, Some(transactional_id)).await?;
    }
    store_transactional(context, transactional_id, &next, timeout_ms).await?;
    Ok(InitProducerOutcome {
        granted: ProducerIdAndEpoch {
            producer_id: next.producer_id,
            producer_epoch: next.producer_epoch,
        },
        event,
    })
}

async fn store_transactional(
    context: &WriteContext<'_, '_>,
    transactional_id: &str,
    row: &TransactionalRow,
    transaction_timeout_ms: i32,
) -> Result<()> {
    let transaction = context.transaction;
    let statement = transaction
        .prepare_cached(
            "INSERT INTO transactional_ids (transactional_id, producer_id, producer_epoch,
                 last_producer_id, last_producer_epoch, transaction_timeout_ms, state,
                 last_update_ms, txn_started_ms)
             VALUES ($1, $2, $3, $4, $5, $6, 'Empty', $7, -1)
             ON CONFLICT (transactional_id) DO UPDATE SET
                 producer_id = excluded.producer_id,
                 producer_epoch = excluded.producer_epoch,
                 last_producer_id = excluded.last_producer_id,
                 last_producer_epoch = excluded.last_producer_epoch,
                 transaction_timeout_ms = excluded.transaction_timeout_ms,
                 state = excluded.state,
                 last_update_ms = excluded.last_update_ms,
                 txn_started_ms = excluded.txn_started_ms",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[
                &transactional_id,
                &row.producer_id,
                &row.producer_epoch,
                &row.last_producer_id,
                &row.last_producer_epoch,
                &transaction_timeout_ms,
                &context.now_ms,
            ],
        )
        .await?;
    Ok(())
}

/// Deletes producer state untouched since `live_since_ms`: per-partition
/// states, and idempotent (non-transactional) producer ids.
pub(super) async fn sweep_expired(
    transaction: &super::rows::Transaction<'_>,
    live_since_ms: i64,
) -> Result<u64> {
    let states = transaction
        .execute(
            "DELETE FROM producer_partitions WHERE last_update_ms < $1",
            &[&live_since_ms],
        )
        .await?;
    let producers = transaction
        .execute(
            "DELETE FROM producers WHERE last_update_ms < $1 AND transactional_id IS NULL",
            &[&live_since_ms],
        )
        .await?;
    Ok(states + producers)
}
