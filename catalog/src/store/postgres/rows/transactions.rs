//! The transaction coordinator's rows: open transactions' partitions and
//! held offsets, what their markers touch.

use strata_catalog_api::proto::AbortedTransaction;
use uuid::Uuid;

use super::WriteContext;
use crate::Result;
use crate::store::CommittedOffset;
use crate::store::commit_plan::PartitionKey;
use crate::store::postgres::to_u32;
use crate::store::rows::TxnRows;

impl TxnRows for WriteContext<'_, '_> {
    async fn partition_exists(&mut self, topic_id: Uuid, partition: u32) -> Result<bool> {
        let found = self
            .query_opt(
                "SELECT 1 FROM partitions WHERE topic_id = $1 AND partition = $2",
                &[&topic_id.as_bytes().as_slice(), &i64::from(partition)],
            )
            .await?;
        Ok(found.is_some())
    }

    async fn add_txn_partition(
        &mut self,
        transactional_id: &str,
        topic_id: Uuid,
        partition: u32,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO txn_partitions (transactional_id, topic_id, partition)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[
                &transactional_id,
                &topic_id.as_bytes().as_slice(),
                &i64::from(partition),
            ],
        )
        .await?;
        Ok(())
    }

    async fn put_txn_offset(
        &mut self,
        transactional_id: &str,
        group_id: &str,
        offset: &CommittedOffset,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO txn_offsets (transactional_id, group_id, topic_id, partition,
                 committed_offset, leader_epoch, metadata)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (transactional_id, group_id, topic_id, partition) DO UPDATE SET
                 committed_offset = excluded.committed_offset,
                 leader_epoch = excluded.leader_epoch,
                 metadata = excluded.metadata",
            &[
                &transactional_id,
                &group_id,
                &offset.topic_id.as_bytes().as_slice(),
                &i64::from(offset.partition),
                &offset.offset,
                &offset.leader_epoch,
                &offset.metadata,
            ],
        )
        .await?;
        Ok(())
    }

    async fn txn_partitions(&mut self, transactional_id: &str) -> Result<Vec<PartitionKey>> {
        let rows = self
            .query(
                "SELECT topic_id, partition FROM txn_partitions WHERE transactional_id = $1
                 ORDER BY topic_id, partition",
                &[&transactional_id],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let partition: i64 = row.try_get(1)?;
                Ok((row.try_get(0)?, to_u32("partition index", partition)?))
            })
            .collect()
    }

    async fn txn_start_offset(
        &mut self,
        producer_id: i64,
        key: &PartitionKey,
    ) -> Result<Option<i64>> {
        Ok(self
            .query_opt(
                "SELECT current_txn_start_offset FROM producer_partitions
                 WHERE producer_id = $1 AND topic_id = $2 AND partition = $3",
                &[&producer_id, &key.0, &i64::from(key.1)],
            )
            .await?
            .map(|row| row.try_get::<_, i64>(0))
            .transpose()?)
    }

    async fn other_open_min(
        &mut self,
        key: &PartitionKey,
        producer_id: i64,
    ) -> Result<Option<i64>> {
        Ok(self
            .query_one(
                "SELECT MIN(current_txn_start_offset) FROM producer_partitions
                 WHERE topic_id = $1 AND partition = $2 AND producer_id <> $3
                   AND current_txn_start_offset >= 0",
                &[&key.0, &i64::from(key.1), &producer_id],
            )
            .await?
            .try_get(0)?)
    }

    async fn clear_txn_start(&mut self, producer_id: i64, key: &PartitionKey) -> Result<()> {
        self.execute(
            "UPDATE producer_partitions SET current_txn_start_offset = -1
             WHERE producer_id = $1 AND topic_id = $2 AND partition = $3",
            &[&producer_id, &key.0, &i64::from(key.1)],
        )
        .await?;
        Ok(())
    }

    async fn insert_aborted(
        &mut self,
        key: &PartitionKey,
        aborted: &AbortedTransaction,
    ) -> Result<()> {
        self.execute(
            "INSERT INTO aborted_txns (topic_id, partition, last_offset, producer_id,
                 first_offset)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (topic_id, partition, last_offset) DO NOTHING",
            &[
                &key.0,
                &i64::from(key.1),
                &aborted.last_offset,
                &aborted.producer_id,
                &aborted.first_offset,
            ],
        )
        .await?;
        Ok(())
    }

    async fn apply_txn_offsets(&mut self, transactional_id: &str) -> Result<()> {
        self.execute(
            "INSERT INTO group_offsets (group_id, topic_id, partition, committed_offset,
                 leader_epoch, metadata, commit_ms)
             SELECT o.group_id, o.topic_id, o.partition, o.committed_offset, o.leader_epoch,
                 o.metadata, $2
             FROM txn_offsets o
             JOIN partitions p ON p.topic_id = o.topic_id AND p.partition = o.partition
             WHERE o.transactional_id = $1
             ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET
                 committed_offset = excluded.committed_offset,
                 leader_epoch = excluded.leader_epoch,
                 metadata = excluded.metadata,
                 commit_ms = excluded.commit_ms",
            &[&transactional_id, &self.now_ms],
        )
        .await?;
        Ok(())
    }

    async fn forget_txn(&mut self, transactional_id: &str) -> Result<()> {
        for table in ["txn_offsets", "txn_partitions"] {
            self.execute(
                &format!("DELETE FROM {table} WHERE transactional_id = $1"),
                &[&transactional_id],
            )
            .await?;
        }
        Ok(())
    }

    async fn expired_transactions(&mut self, limit: u32) -> Result<Vec<String>> {
        let rows = self
            .query(
                "SELECT transactional_id FROM transactional_ids
                 WHERE state = 'Ongoing' AND txn_started_ms + transaction_timeout_ms < $1
                 ORDER BY txn_started_ms LIMIT $2",
                &[&self.now_ms, &i64::from(limit)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    async fn transactional_id_of(&mut self, producer_id: i64) -> Result<Option<String>> {
        let row = self
            .query_opt(
                "SELECT transactional_id FROM producers WHERE producer_id = $1",
                &[&producer_id],
            )
            .await?;
        Ok(row
            .map(|row| row.try_get::<_, Option<String>>(0))
            .transpose()?
            .flatten())
    }
}
