//! Consumer group rows: committed offsets, classic records with their
//! members (protocols as two parallel arrays), KIP-848 records.

use uuid::Uuid;

use super::WriteContext;
use crate::store::consumer_group_codec::FORMAT;
use crate::store::rows::GroupRows;
use crate::store::{CommittedOffset, GroupRecord};
use crate::{Error, Result};

impl GroupRows for WriteContext<'_, '_> {
    /// Locked `FOR SHARE`: a topic deletion waits for the commit.
    async fn partition_exists_for_share(&mut self, topic_id: Uuid, partition: u32) -> Result<bool> {
        let found = self
            .query_opt(
                "SELECT 1 FROM partitions WHERE topic_id = $1 AND partition = $2 FOR SHARE",
                &[&topic_id.as_bytes().as_slice(), &i64::from(partition)],
            )
            .await?;
        Ok(found.is_some())
    }

    async fn put_group_offset(&mut self, group_id: &str, offset: &CommittedOffset) -> Result<()> {
        self.execute(
            "INSERT INTO group_offsets (group_id, topic_id, partition, committed_offset,
                 leader_epoch, metadata, commit_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET
                 committed_offset = excluded.committed_offset,
                 leader_epoch = excluded.leader_epoch,
                 metadata = excluded.metadata,
                 commit_ms = excluded.commit_ms",
            &[
                &group_id,
                &offset.topic_id.as_bytes().as_slice(),
                &i64::from(offset.partition),
                &offset.offset,
                &offset.leader_epoch,
                &offset.metadata,
                &offset.commit_timestamp_ms,
            ],
        )
        .await?;
        Ok(())
    }

    /// In one statement.
    async fn delete_group_offsets(
        &mut self,
        group_id: &str,
        partitions: &[(Uuid, u32)],
    ) -> Result<()> {
        let (topic_ids, indexes): (Vec<&[u8]>, Vec<i64>) = partitions
            .iter()
            .map(|(topic_id, partition)| (topic_id.as_bytes().as_slice(), i64::from(*partition)))
            .unzip();
        self.execute(
            "DELETE FROM group_offsets o
             USING unnest($2::bytea[], $3::int8[]) AS k (topic_id, partition)
             WHERE o.group_id = $1 AND o.topic_id = k.topic_id
               AND o.partition = k.partition",
            &[&group_id, &topic_ids, &indexes],
        )
        .await?;
        Ok(())
    }

    async fn delete_all_group_offsets(&mut self, group_id: &str) -> Result<()> {
        self.execute(
            "DELETE FROM group_offsets WHERE group_id = $1",
            &[&group_id],
        )
        .await?;
        Ok(())
    }

    async fn delete_classic_group(&mut self, group_id: &str) -> Result<()> {
        self.execute(
            "DELETE FROM classic_groups WHERE group_id = $1",
            &[&group_id],
        )
        .await?;
        self.execute(
            "DELETE FROM classic_group_members WHERE group_id = $1",
            &[&group_id],
        )
        .await?;
        Ok(())
    }

    async fn delete_consumer_group(&mut self, group_id: &str) -> Result<()> {
        self.execute(
            "DELETE FROM consumer_groups WHERE group_id = $1",
            &[&group_id],
        )
        .await?;
        Ok(())
    }

    async fn insert_classic_group(&mut self, record: &GroupRecord) -> Result<()> {
        let transaction = self.transaction;
        self.execute(
            "INSERT INTO classic_groups (group_id, protocol_type, protocol_name,
                 generation_id, leader_id, saved_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &record.group_id,
                &record.protocol_type,
                &record.protocol_name,
                &record.generation_id,
                &record.leader_id,
                &self.now_ms,
            ],
        )
        .await?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO classic_group_members (group_id, position, member_id, instance_id,
                     client_id, client_host, session_timeout_ms, rebalance_timeout_ms,
                     protocol_names, protocol_metadata, assignment)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .await?;
        for (position, member) in record.members.iter().enumerate() {
            let position = i32::try_from(position).map_err(|_| Error::InvalidArgument {
                field: "members",
                reason: "too many members".to_string(),
            })?;
            let names: Vec<&str> = member.protocols.iter().map(|p| p.name.as_str()).collect();
            let metadata: Vec<&[u8]> = member
                .protocols
                .iter()
                .map(|p| p.metadata.as_slice())
                .collect();
            transaction
                .execute(
                    &insert,
                    &[
                        &record.group_id,
                        &position,
                        &member.member_id,
                        &member.instance_id,
                        &member.client_id,
                        &member.client_host,
                        &member.session_timeout_ms,
                        &member.rebalance_timeout_ms,
                        &names,
                        &metadata,
                        &member.assignment,
                    ],
                )
                .await?;
        }
        Ok(())
    }

    async fn put_consumer_group(&mut self, group_id: &str, blob: &[u8]) -> Result<()> {
        self.execute(
            "INSERT INTO consumer_groups (group_id, format, record, saved_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (group_id) DO UPDATE SET
                 format = excluded.format,
                 record = excluded.record,
                 saved_ms = excluded.saved_ms",
            &[&group_id, &FORMAT, &blob, &self.now_ms],
        )
        .await?;
        Ok(())
    }
}
