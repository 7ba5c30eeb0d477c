//! The transaction coordinator's rows: open transactions' partitions and
//! held offsets, what their markers touch.

use rusqlite::{OptionalExtension, params};
use strata_catalog_api::proto::AbortedTransaction;
use uuid::Uuid;

use super::WriteContext;
use crate::Result;
use crate::store::CommittedOffset;
use crate::store::commit_plan::PartitionKey;
use crate::store::rows::TxnRows;

impl TxnRows for WriteContext<'_> {
    async fn partition_exists(&mut self, topic_id: Uuid, partition: u32) -> Result<bool> {
        let found: Option<i64> = self
            .connection
            .prepare_cached("SELECT 1 FROM partitions WHERE topic_id = ?1 AND partition = ?2")?
            .query_row(params![topic_id.as_bytes(), partition], |row| row.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    async fn add_txn_partition(
        &mut self,
        transactional_id: &str,
        topic_id: Uuid,
        partition: u32,
    ) -> Result<()> {
        self.connection
            .prepare_cached(
                "INSERT OR IGNORE INTO txn_partitions (transactional_id, topic_id, partition)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![transactional_id, topic_id.as_bytes(), partition])?;
        Ok(())
    }

    async fn put_txn_offset(
        &mut self,
        transactional_id: &str,
        group_id: &str,
        offset: &CommittedOffset,
    ) -> Result<()> {
        self.connection
            .prepare_cached(
                "INSERT OR REPLACE INTO txn_offsets (transactional_id, group_id, topic_id,
                     partition, committed_offset, leader_epoch, metadata)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                transactional_id,
                group_id,
                offset.topic_id.as_bytes(),
                offset.partition,
                offset.offset,
                offset.leader_epoch,
                offset.metadata
            ])?;
        Ok(())
    }

    async fn txn_partitions(&mut self, transactional_id: &str) -> Result<Vec<PartitionKey>> {
        Ok(self
            .connection
            .prepare_cached(
                "SELECT topic_id, partition FROM txn_partitions WHERE transactional_id = ?1
                 ORDER BY topic_id, partition",
            )?
            .query_map([transactional_id], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?)
    }

    async fn txn_start_offset(
        &mut self,
        producer_id: i64,
        key: &PartitionKey,
    ) -> Result<Option<i64>> {
        Ok(self
            .connection
            .prepare_cached(
                "SELECT current_txn_start_offset FROM producer_partitions
                 WHERE producer_id = ?1 AND topic_id = ?2 AND partition = ?3",
            )?
            .query_row(params![producer_id, key.0, key.1], |row| row.get(0))
            .optional()?)
    }

    async fn other_open_min(
        &mut self,
        key: &PartitionKey,
        producer_id: i64,
    ) -> Result<Option<i64>> {
        Ok(self
            .connection
            .prepare_cached(
                "SELECT MIN(current_txn_start_offset) FROM producer_partitions
                 WHERE topic_id = ?1 AND partition = ?2 AND producer_id <> ?3
                   AND current_txn_start_offset >= 0",
            )?
            .query_row(params![key.0, key.1, producer_id], |row| row.get(0))?)
    }

    async fn clear_txn_start(&mut self, producer_id: i64, key: &PartitionKey) -> Result<()> {
        self.connection
            .prepare_cached(
                "UPDATE producer_partitions SET current_txn_start_offset = -1
                 WHERE producer_id = ?1 AND topic_id = ?2 AND partition = ?3",
            )?
            .execute(params![producer_id, key.0, key.1])?;
        Ok(())
    }

    async fn insert_aborted(
        &mut self,
        key: &PartitionKey,
        aborted: &AbortedTransaction,
    ) -> Result<()> {
        self.connection
            .prepare_cached(
                "INSERT OR REPLACE INTO aborted_txns (topic_id, partition, last_offset,
                     producer_id, first_offset)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                key.0,
                key.1,
                aborted.last_offset,
                aborted.producer_id,
                aborted.first_offset
            ])?;
        Ok(())
    }

    async fn apply_txn_offsets(&mut self, transactional_id: &str) -> Result<()> {
        self.connection
            .prepare_cached(
                "INSERT OR REPLACE INTO group_offsets (group_id, topic_id, partition,
                     committed_offset, leader_epoch, metadata, commit_ms)
                 SELECT o.group_id, o.topic_id, o.partition, o.committed_offset, o.leader_epoch,
                     o.metadata, ?2
                 FROM txn_offsets o
                 JOIN partitions p ON p.topic_id = o.topic_id AND p.partition = o.partition
                 WHERE o.transactional_id = ?1",
            )?
            .execute(params![transactional_id, self.now_ms])?;
        Ok(())
    }

    async fn forget_txn(&mut self, transactional_id: &str) -> Result<()> {
        for table in ["txn_offsets", "txn_partitions"] {
            self.connection
                .prepare_cached(&format!("DELETE FROM {table} WHERE transactional_id = ?1"))?
                .execute([transactional_id])?;
        }
        Ok(())
    }

    async fn expired_transactions(&mut self, limit: u32) -> Result<Vec<String>> {
        Ok(self
            .connection
            .prepare_cached(
                "SELECT transactional_id FROM transactional_ids
                 WHERE state = 'Ongoing' AND txn_started_ms + transaction_timeout_ms < ?1
                 ORDER BY txn_started_ms LIMIT ?2",
            )?
            .query_map(params![self.now_ms, limit], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?)
    }

    async fn transactional_id_of(&mut self, producer_id: i64) -> Result<Option<String>> {
        Ok(self
            .connection
            .prepare_cached("SELECT transactional_id FROM producers WHERE producer_id = ?1")?
            .query_row([producer_id], |row| row.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }
}
