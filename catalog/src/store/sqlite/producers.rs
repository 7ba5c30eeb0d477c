//! Producer rows: ids and epochs, per-partition state, InitProducerId.

use rusqlite::{Connection, OptionalExtension, params};
use strata_catalog_api::proto::{InitProducerIdRequest, ProducerState};
use uuid::Uuid;

use super::writer::WriteContext;
use crate::producer::{EPOCH_EXHAUSTED, PartitionProducer, decode_recent, encode_recent};
use crate::store::ProducerIdAndEpoch;
use crate::{Error, Result};

/// A producer id's current epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ProducerRow {
    pub(super) epoch: i32,
    pub(super) last_update_ms: i64,
    /// Transactional producers live as long as their transactional id, so
    /// they do not expire with `producer.id.expiration.ms`.
    pub(super) transactional: bool,
}

impl ProducerRow {
    /// Whether the producer id is still known, given that state last
    /// updated before `live_since_ms` has expired.
    pub(super) fn is_live(&self, live_since_ms: i64) -> bool {
        self.transactional || self.last_update_ms >= live_since_ms
    }
}

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
) -> Result<ProducerIdAndEpoch> {
    if request.transactional_id.is_empty() {
        init_idempotent(context, request)
    } else {
        init_transactional(context, request)
    }
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
    let current = load(context.connection, request.producer_id)?
        .filter(|row| !row.transactional && row.is_live(live_since_ms));
    match current {
        // Unknown or expired: a producer recovering from UNKNOWN_PRODUCER_ID
        // gets a fresh id, as Kafka does.
        None => new_producer(context, None),
        Some(row) if row.epoch == request.producer_epoch => {
            if row.epoch >= EPOCH_EXHAUSTED {
                return new_producer(context, None);
            }
            let bumped = ProducerRow {
                epoch: row.epoch + 1,
                last_update_ms: context.now_ms,
                transactional: false,
            };
            // Sequences restart at 0 with the new epoch: the commit checks
            // enforce that, so the per-partition states stay as they are.
            store(context.connection, request.producer_id, &bumped, None)?;
            Ok(ProducerIdAndEpoch {
                producer_id: request.producer_id,
                producer_epoch: bumped.epoch,
            })
        }
        Some(row) => Err(Error::InvalidProducerEpoch {
            producer_id: request.producer_id,
            epoch: request.producer_epoch,
            current: row.epoch,
        }),
    }
}

/// A transactional id's producer, as stored.
#[derive(Debug, Clone, Copy)]
struct TransactionalRow {
    producer_id: i64,
    producer_epoch: i32,
    last_producer_id: i64,
    last_producer_epoch: i32,
}

fn init_transactional(
    context: &mut WriteContext<'_>,
    request: &InitProducerIdRequest,
) -> Result<ProducerIdAndEpoch> {
    let transactional_id = request.transactional_id.as_str();
    let Some(current) = load_transactional(context.connection, transactional_id)? else {
        let fresh = new_producer(context, Some(transactional_id))?;
        let row = TransactionalRow {
            producer_id: fresh.producer_id,
            producer_epoch: fresh.producer_epoch,
            last_producer_id: -1,
            last_producer_epoch: -1,
        };
        store_transactional(
            context,
            transactional_id,
            &row,
            request.transaction_timeout_ms,
        )?;
        return Ok(fresh);
    };
    let next = next_transactional(context, request, &current)?;
    if next.producer_id != current.producer_id || next.producer_epoch != current.producer_epoch {
        let producer = ProducerRow {
            epoch: next.producer_epoch,
            last_update_ms: context.now_ms,
            transactional: true,
        };
        store(
            context.connection,
            next.producer_id,
            &producer,
            Some(transactional_id),
        )?;
    }
    store_transactional(
        context,
        transactional_id,
        &next,
        request.transaction_timeout_ms,
    )?;
    Ok(ProducerIdAndEpoch {
        producer_id: next.producer_id,
        producer_epoch: next.producer_epoch,
    })
}

/// Kafka's `prepareInitProducerIdTransit` without the transaction states:
/// fence a caller that is not the current producer, answer a retried bump
/// with the same epoch, rotate the id when the epoch is exhausted.
fn next_transactional(
    context: &mut WriteContext<'_>,
    request: &InitProducerIdRequest,
    current: &TransactionalRow,
) -> Result<TransactionalRow> {
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
            return Ok(*current);
        }
        if id != current.producer_id {
            return Err(fenced());
        }
        if epoch != current.producer_epoch {
            // A retry of a bump whose answer was lost: the same answer.
            return if epoch == current.last_producer_epoch {
                Ok(*current)
            } else {
                Err(fenced())
            };
        }
    }
    if current.producer_epoch >= EPOCH_EXHAUSTED {
        return Ok(TransactionalRow {
            producer_id: context.counters.allocate_producer_id(),
            producer_epoch: 0,
            last_producer_id: current.producer_id,
            last_producer_epoch: current.producer_epoch,
        });
    }
    Ok(TransactionalRow {
        producer_id: current.producer_id,
        producer_epoch: current.producer_epoch + 1,
        last_producer_id: current.producer_id,
        last_producer_epoch: current.producer_epoch,
    })
}

fn load_transactional(
    connection: &Connection,
    transactional_id: &str,
) -> Result<Option<TransactionalRow>> {
    Ok(connection
        .prepare_cached(
            "SELECT producer_id, producer_epoch, last_producer_id, last_producer_epoch
             FROM transactional_ids WHERE transactional_id = ?1",
        )?
        .query_row([transactional_id], |row| {
            Ok(TransactionalRow {
                producer_id: row.get(0)?,
                producer_epoch: row.get(1)?,
                last_producer_id: row.get(2)?,
                last_producer_epoch: row.get(3)?,
            })
        })
        .optional()?)
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
                 last_producer_id, last_producer_epoch, transaction_timeout_ms, state, last_update_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Empty', ?7)",
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
