//! Producer rows: ids and epochs, per-partition state, InitProducerId.

use rusqlite::{Connection, OptionalExtension, params};
use strata_catalog_api::proto::{InitProducerIdRequest, ProducerState};
use uuid::Uuid;

use super::rows::WriteContext;
use super::transactions;
use crate::Result;
use crate::producer::{PartitionProducer, decode_recent, encode_recent};
use crate::store::producer_rules::{
    self, IdempotentInit, ProducerRow, TransactionalRow, producer_changed,
};
use crate::store::txn_rules::TxnState;
use crate::store::{InitProducerOutcome, ProducerIdAndEpoch};

/// The producer row of `producer_id`, expired or not.
pub(super) fn load(connection: &Connection, producer_id: i64) -> Result<Option<ProducerRow>> {
    Ok(connection
        .prepare_cached(
            "SELECT producer_epoch, last_update_ms, transactional_id IS NOT NULL
             FROM producers WHERE producer_id = ?1",
        )?
        .query_row([producer_id], |row| {
            Ok(ProducerRow {
                epoch: row.get(0)?,
                last_update_ms: row.get(1)?,
                transactional: row.get(2)?,
            })
        })
        .optional()?)
}

/// Writes a producer row (insert or replace).
fn store(
    connection: &Connection,
    producer_id: i64,
    row: &ProducerRow,
    transactional_id: Option<&str>,
) -> Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO producers (producer_id, producer_epoch, transactional_id, last_update_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (producer_id) DO UPDATE SET producer_epoch = ?2,
                 transactional_id = ?3, last_update_ms = ?4",
        )?
        .execute(params![
            producer_id,
            row.epoch,
            transactional_id,
            row.last_update_ms
        ])?;
    Ok(())
}

/// Saves the producer row of a transactional id at `row`'s id and epoch.
fn store_transactional_producer(
    context: &WriteContext<'_>,
    transactional_id: &str,
    row: &TransactionalRow,
) -> Result<()> {
    let producer = ProducerRow {
        epoch: row.producer_epoch,
        last_update_ms: context.now_ms,
        transactional: true,
    };
    store(
        context.connection,
        row.producer_id,
        &producer,
        Some(transactional_id),
    )
}

/// Updates a producer's epoch and last activity after a commit.
pub(super) fn touch(connection: &Connection, producer_id: i64, row: &ProducerRow) -> Result<()> {
    connection
        .prepare_cached(
            "UPDATE producers SET producer_epoch = ?2, last_update_ms = ?3 WHERE producer_id = ?1",
        )?
        .execute(params![producer_id, row.epoch, row.last_update_ms])?;
    Ok(())
}

const STATE_COLUMNS: &str = "producer_epoch, last_sequence, last_timestamp, last_update_ms,
    coordinator_epoch, current_txn_start_offset, recent_batches";

/// A producer's state in one partition, expired or not.
pub(super) fn load_partition_state(
    connection: &Connection,
    producer_id: i64,
    (topic_id, partition): &(Vec<u8>, u32),
) -> Result<Option<PartitionProducer>> {
    let row = connection
        .prepare_cached(&format!(
            "SELECT {STATE_COLUMNS} FROM producer_partitions
             WHERE producer_id = ?1 AND topic_id = ?2 AND partition = ?3"
        ))?
        .query_row(params![producer_id, topic_id, partition], |row| {
            let state = PartitionProducer {
                epoch: row.get(0)?,
                last_sequence: row.get(1)?,
                last_timestamp: row.get(2)?,
                last_update_ms: row.get(3)?,
                coordinator_epoch: row.get(4)?,
                current_txn_start_offset: row.get(5)?,
                recent: Default::default(),
            };
            Ok((state, row.get::<_, Vec<u8>>(6)?))
        })
        .optional()?;
    row.map(|(state, recent)| {
        Ok(PartitionProducer {
            recent: decode_recent(&recent)?,
            ..state
        })
    })
    .transpose()
}

/// Writes a producer's state in one partition.
pub(super) fn save_partition_state(
    connection: &Connection,
    producer_id: i64,
    (topic_id, partition): &(Vec<u8>, u32),
    state: &PartitionProducer,
) -> Result<()> {
    connection
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO producer_partitions (producer_id, topic_id, partition, {STATE_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?
        .execute(params![
            producer_id,
            topic_id,
            partition,
            state.epoch,
            state.last_sequence,
            state.last_timestamp,
            state.last_update_ms,
            state.coordinator_epoch,
            state.current_txn_start_offset,
            encode_recent(&state.recent)
        ])?;
    Ok(())
}

/// The unexpired producer states of a partition, by producer id.
pub(super) fn describe(
    connection: &Connection,
    topic_id: Uuid,
    partition: u32,
    live_since_ms: i64,
) -> Result<Vec<ProducerState>> {
    let mut statement = connection.prepare_cached(
        "SELECT producer_id, producer_epoch, last_sequence, last_timestamp, coordinator_epoch,
             current_txn_start_offset
         FROM producer_partitions
         WHERE topic_id = ?1 AND partition = ?2 AND last_update_ms >= ?3
         ORDER BY producer_id",
    )?;
    let rows = statement.query_map(
        params![topic_id.as_bytes(), partition, live_since_ms],
        |row| {
            Ok(ProducerState {
                producer_id: row.get(0)?,
                producer_epoch: row.get(1)?,
                last_sequence: row.get(2)?,
                last_timestamp: row.get(3)?,
                coordinator_epoch: row.get(4)?,
                current_txn_start_offset: row.get(5)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Hands out a producer id and epoch (see `CatalogStore::init_producer_id`).
pub(super) fn init_producer_id(
    context: &mut WriteContext<'_>,
    request: &InitProducerIdRequest,
) -> Result<InitProducerOutcome> {
    if request.transactional_id.is_empty() {
        let granted = init_idempotent(context, request)?;
        return Ok(InitProducerOutcome {
            granted,
            event: None,
        });
    }
    init_transactional(context, request)
}

/// Bumps a transactional producer's epoch to fence it (its transaction
/// timed out); returns the new row, already stored.
pub(super) fn bump_for_abort(
    context: &mut WriteContext<'_>,
    transactional_id: &str,
    current: &TransactionalRow,
) -> Result<TransactionalRow> {
    let next = producer_rules::fenced_by_abort(current);
    store_transactional_producer(context, transactional_id, &next)?;
    context
        .connection
        .prepare_cached(
            "UPDATE transactional_ids SET producer_epoch = ?2, last_producer_id = ?3,
                 last_producer_epoch = ?4
             WHERE transactional_id = ?1",
        )?
        .execute(params![
            transactional_id,
            next.producer_epoch,
            next.last_producer_id,
            next.last_producer_epoch
        ])?;
    Ok(next)
}

fn new_producer(
    context: &mut WriteContext<'_>,
    transactional_id: Option<&str>,
) -> Result<ProducerIdAndEpoch> {
    let producer_id = context.counters.allocate_producer_id();
    let row = ProducerRow {
        epoch: 0,
        last_update_ms: context.now_ms,
        transactional: transactional_id.is_some(),
    };
    store(context.connection, producer_id, &row, transactional_id)?;
    Ok(ProducerIdAndEpoch {
        producer_id,
        producer_epoch: 0,
    })
}

fn init_idempotent(
    context: &mut WriteContext<'_>,
    request: &InitProducerIdRequest,
) -> Result<ProducerIdAndEpoch> {
    if request.producer_id < 0 {
        return new_producer(context, None);
    }
    let live_since_ms = context.now_ms - context.options.producer_id_expiration_ms;
    let stored = load(context.connection, request.producer_id)?;
    match producer_rules::idempotent_init(request, stored, context.now_ms, live_since_ms)? {
        IdempotentInit::NewProducer => new_producer(context, None),
        IdempotentInit::Bump(bumped) => {
            store(context.connection, request.producer_id, &bumped, None)?;
            Ok(ProducerIdAndEpoch {
                producer_id: request.producer_id,
                producer_epoch: bumped.epoch,
            })
        }
    }
}

fn init_transactional(
    context: &mut WriteContext<'_>,
    request: &InitProducerIdRequest,
) -> Result<InitProducerOutcome> {
    let transactional_id = request.transactional_id.as_str();
    let Some(record) = transactions::load_record(context.connection, transactional_id)? else {
        let fresh = new_producer(context, Some(transactional_id))?;
        let row = TransactionalRow::first(fresh.producer_id, fresh.producer_epoch);
        store_transactional(
            context,
            transactional_id,
            &row,
            request.transaction_timeout_ms,
        )?;
        return Ok(InitProducerOutcome {
            granted: fresh,
            event: None,
        });
    };
    let current = record.row;
    let next = match producer_rules::next_transactional(request, &current)? {
        Some(next) => next,
        None => current.rotated(context.counters.allocate_producer_id()),
    };
    // A new instance aborts its predecessor's open transaction, with
    // markers of the new epoch (the old producer id when it rotated).
    let event = if record.state == TxnState::Ongoing {
        let marker = producer_rules::abort_marker_producer(&current, &next);
        let writes = transactions::abort_open(context, transactional_id, marker.0, marker.1)?;
        Some(transactions::event(context, &writes))
    } else {
        None
    };
    if producer_changed(&current, &next) {
        store_transactional_producer(context, transactional_id, &next)?;
    }
    store_transactional(
        context,
        transactional_id,
        &next,
        request.transaction_timeout_ms,
    )?;
    Ok(InitProducerOutcome {
        granted: ProducerIdAndEpoch {
            producer_id: next.producer_id,
            producer_epoch: next.producer_epoch,
        },
        event,
    })
}

fn store_transactional(
    context: &WriteContext<'_>,
    transactional_id: &str,
    row: &TransactionalRow,
    transaction_timeout_ms: i32,
) -> Result<()> {
    context
        .connection
        .prepare_cached(
            "INSERT OR REPLACE INTO transactional_ids (transactional_id, producer_id, producer_epoch,
                 last_producer_id, last_producer_epoch, transaction_timeout_ms, state, last_update_ms,
                 txn_started_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Empty', ?7, -1)",
        )?
        .execute(params![
            transactional_id,
            row.producer_id,
            row.producer_epoch,
            row.last_producer_id,
            row.last_producer_epoch,
            transaction_timeout_ms,
            context.now_ms
        ])?;
    Ok(())
}

/// Deletes producer state untouched since `live_since_ms`: per-partition
/// states, and idempotent (non-transactional) producer ids.
pub(super) fn sweep_expired(connection: &Connection, live_since_ms: i64) -> Result<usize> {
    let states = connection
        .prepare_cached("DELETE FROM producer_partitions WHERE last_update_ms < ?1")?
        .execute([live_since_ms])?;
    let producers = connection
        .prepare_cached(
            "DELETE FROM producers WHERE last_update_ms < ?1 AND transactional_id IS NULL",
        )?
        .execute([live_since_ms])?;
    Ok(states + producers)
}
