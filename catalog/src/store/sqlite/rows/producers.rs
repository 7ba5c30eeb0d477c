//! Producer rows: ids and epochs, per-partition state, transactional ids.

use rusqlite::{Connection, OptionalExtension, params};

use super::WriteContext;
use crate::Result;
use crate::producer::{PartitionProducer, decode_recent, encode_recent};
use crate::store::producer_rules::{ProducerRow, TransactionalRow};
use crate::store::rows::ProducerRows;
use crate::store::txn_rules::{TxnRecord, TxnState};

impl ProducerRows for WriteContext<'_> {
    async fn allocate_producer_id(&mut self) -> Result<i64> {
        Ok(self.counters.allocate_producer_id())
    }

    async fn producer(&mut self, producer_id: i64) -> Result<Option<ProducerRow>> {
        load(self.connection, producer_id)
    }

    async fn put_producer(
        &mut self,
        producer_id: i64,
        row: &ProducerRow,
        transactional_id: Option<&str>,
    ) -> Result<()> {
        self.connection
            .prepare_cached(
                "INSERT INTO producers (producer_id, producer_epoch, transactional_id,
                     last_update_ms)
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

    async fn transactional(&mut self, transactional_id: &str) -> Result<Option<TxnRecord>> {
        load_record(self.connection, transactional_id)
    }

    async fn put_transactional(
        &mut self,
        transactional_id: &str,
        row: &TransactionalRow,
        transaction_timeout_ms: i32,
    ) -> Result<()> {
        self.connection
            .prepare_cached(
                "INSERT OR REPLACE INTO transactional_ids (transactional_id, producer_id,
                     producer_epoch, last_producer_id, last_producer_epoch,
                     transaction_timeout_ms, state, last_update_ms, txn_started_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'Empty', ?7, -1)",
            )?
            .execute(params![
                transactional_id,
                row.producer_id,
                row.producer_epoch,
                row.last_producer_id,
                row.last_producer_epoch,
                transaction_timeout_ms,
                self.now_ms
            ])?;
        Ok(())
    }

    async fn set_transactional_producer(
        &mut self,
        transactional_id: &str,
        row: &TransactionalRow,
    ) -> Result<()> {
        self.connection
            .prepare_cached(
                "UPDATE transactional_ids SET producer_epoch = ?2, last_producer_id = ?3,
                     last_producer_epoch = ?4
                 WHERE transactional_id = ?1",
            )?
            .execute(params![
                transactional_id,
                row.producer_epoch,
                row.last_producer_id,
                row.last_producer_epoch
            ])?;
        Ok(())
    }

    async fn delete_expired_producers(&mut self, live_since_ms: i64) -> Result<u64> {
        let states = self
            .connection
            .prepare_cached("DELETE FROM producer_partitions WHERE last_update_ms < ?1")?
            .execute([live_since_ms])?;
        let producers = self
            .connection
            .prepare_cached(
                "DELETE FROM producers WHERE last_update_ms < ?1 AND transactional_id IS NULL",
            )?
            .execute([live_since_ms])?;
        Ok(u64::try_from(states + producers).unwrap_or(u64::MAX))
    }

    async fn set_txn_state(&mut self, transactional_id: &str, record: &TxnRecord) -> Result<()> {
        self.connection
            .prepare_cached(
                "UPDATE transactional_ids SET state = ?2, txn_started_ms = ?3,
                     last_update_ms = ?4
                 WHERE transactional_id = ?1",
            )?
            .execute(params![
                transactional_id,
                record.state.as_str(),
                record.started_ms,
                self.now_ms
            ])?;
        Ok(())
    }
}

/// The producer row of `producer_id`, expired or not.
pub(in crate::store::sqlite) fn load(
    connection: &Connection,
    producer_id: i64,
) -> Result<Option<ProducerRow>> {
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

/// The transactional id's record, with its transaction state.
fn load_record(connection: &Connection, tid: &str) -> Result<Option<TxnRecord>> {
    let row = connection
        .prepare_cached(
            "SELECT producer_id, producer_epoch, last_producer_id, last_producer_epoch,
                 transaction_timeout_ms, state, txn_started_ms
             FROM transactional_ids WHERE transactional_id = ?1",
        )?
        .query_row([tid], |row| {
            Ok((
                TransactionalRow {
                    producer_id: row.get(0)?,
                    producer_epoch: row.get(1)?,
                    last_producer_id: row.get(2)?,
                    last_producer_epoch: row.get(3)?,
                },
                row.get::<_, i32>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, i64>(6)?,
            ))
        })
        .optional()?;
    row.map(|(row, timeout_ms, state, started_ms)| {
        Ok(TxnRecord {
            row,
            timeout_ms,
            state: TxnState::parse(&state)?,
            started_ms,
        })
    })
    .transpose()
}

/// Updates a producer's epoch and last activity after a commit.
pub(in crate::store::sqlite) fn touch(
    connection: &Connection,
    producer_id: i64,
    row: &ProducerRow,
) -> Result<()> {
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
pub(in crate::store::sqlite) fn load_partition_state(
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
pub(in crate::store::sqlite) fn save_partition_state(
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
