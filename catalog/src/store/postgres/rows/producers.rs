//! Producer rows: ids and epochs, per-partition state, transactional ids.
//!
//! New producer ids come from the `producer_ids` sequence, so catalogs
//! sharing a database never hand out the same id; ids taken by a rolled
//! back transaction are skipped, never reused.

use tokio_postgres::Row;

use super::WriteContext;
use crate::Result;
use crate::producer::{PartitionProducer, decode_recent};
use crate::store::producer_rules::{ProducerRow, TransactionalRow};
use crate::store::rows::ProducerRows;
use crate::store::txn_rules::{TxnRecord, TxnState};

impl ProducerRows for WriteContext<'_, '_> {
    async fn allocate_producer_id(&mut self) -> Result<i64> {
        Ok(self
            .query_one("SELECT nextval('producer_ids')", &[])
            .await?
            .try_get(0)?)
    }

    async fn producer(&mut self, producer_id: i64) -> Result<Option<ProducerRow>> {
        let row = self
            .query_opt(
                "SELECT producer_epoch, last_update_ms, transactional_id IS NOT NULL
                 FROM producers WHERE producer_id = $1",
                &[&producer_id],
            )
            .await?;
        row.map(|row| {
            Ok(ProducerRow {
                epoch: row.try_get(0)?,
                last_update_ms: row.try_get(1)?,
                transactional: row.try_get(2)?,
            })
        })
        .transpose()
    }

    async fn put_producer(
        &mut self,
        producer_id: i64,
        row: &ProducerRow,
        transactional_id: Option<&str>,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO producers (producer_id, producer_epoch, transactional_id,
                 last_update_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (producer_id) DO UPDATE SET
                 producer_epoch = excluded.producer_epoch,
                 transactional_id = excluded.transactional_id,
                 last_update_ms = excluded.last_update_ms",
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

    /// Locked `FOR UPDATE`.
    async fn transactional(&mut self, transactional_id: &str) -> Result<Option<TxnRecord>> {
        let row = self
            .query_opt(
                "SELECT producer_id, producer_epoch, last_producer_id, last_producer_epoch,
                     transaction_timeout_ms, state, txn_started_ms
                 FROM transactional_ids WHERE transactional_id = $1 FOR UPDATE",
                &[&transactional_id],
            )
            .await?;
        row.map(|row| {
            let state: String = row.try_get(5)?;
            Ok(TxnRecord {
                row: TransactionalRow {
                    producer_id: row.try_get(0)?,
                    producer_epoch: row.try_get(1)?,
                    last_producer_id: row.try_get(2)?,
                    last_producer_epoch: row.try_get(3)?,
                },
                timeout_ms: row.try_get(4)?,
                state: TxnState::parse(&state)?,
                started_ms: row.try_get(6)?,
            })
        })
        .transpose()
    }

    async fn put_transactional(
        &mut self,
        transactional_id: &str,
        row: &TransactionalRow,
        transaction_timeout_ms: i32,
    ) -> Result<()> {
        self.execute(
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
            &[
                &transactional_id,
                &row.producer_id,
                &row.producer_epoch,
                &row.last_producer_id,
                &row.last_producer_epoch,
                &transaction_timeout_ms,
                &self.now_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn set_transactional_producer(
        &mut self,
        transactional_id: &str,
        row: &TransactionalRow,
    ) -> Result<()> {
        self.execute(
            "UPDATE transactional_ids SET producer_epoch = $2, last_producer_id = $3,
                 last_producer_epoch = $4
             WHERE transactional_id = $1",
            &[
                &transactional_id,
                &row.producer_epoch,
                &row.last_producer_id,
                &row.last_producer_epoch,
            ],
        )
        .await?;
        Ok(())
    }

    async fn delete_expired_producers(&mut self, live_since_ms: i64) -> Result<u64> {
        let states = self
            .execute(
                "DELETE FROM producer_partitions WHERE last_update_ms < $1",
                &[&live_since_ms],
            )
            .await?;
        let producers = self
            .execute(
                "DELETE FROM producers WHERE last_update_ms < $1 AND transactional_id IS NULL",
                &[&live_since_ms],
            )
            .await?;
        Ok(states + producers)
    }

    async fn set_txn_state(&mut self, transactional_id: &str, record: &TxnRecord) -> Result<()> {
        self.execute(
            "UPDATE transactional_ids SET state = $2, txn_started_ms = $3,
                 last_update_ms = $4
             WHERE transactional_id = $1",
            &[
                &transactional_id,
                &record.state.as_str(),
                &record.started_ms,
                &self.now_ms,
            ],
        )
        .await?;
        Ok(())
    }
}

/// Decodes a producer's partition state from `row`, whose columns from
/// `first` on are: epoch, last sequence, last timestamp, last update,
/// coordinator epoch, transaction start offset, recent batches.
pub(in crate::store::postgres) fn state_from_row(
    row: &Row,
    first: usize,
) -> Result<PartitionProducer> {
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
