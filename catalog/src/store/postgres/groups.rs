//! Consumer groups: committed offsets and classic group records (KIP-848
//! records are in `consumer_groups.rs`).

use deadpool_postgres::{GenericClient, Object};
use tokio_postgres::IsolationLevel;
use uuid::Uuid;

use super::consumer_groups;
use super::rows::{Transaction, WriteContext};
use super::to_u32;
use crate::store::topic_rules::parse_topic_id;
use crate::store::{CommittedOffset, GroupMemberRecord, GroupRecord, MemberProtocol};
use crate::{Error, Result};

/// Stores offsets after checking that every partition exists (all or none:
/// the unit's savepoint rolls back a partial commit).
pub(super) async fn commit_offsets(
    context: &WriteContext<'_, '_>,
    group_id: &str,
    offsets: &[CommittedOffset],
) -> Result<()> {
    let transaction = context.transaction;
    let (exists, upsert) = futures::try_join!(
        transaction.prepare_cached(
            "SELECT 1 FROM partitions WHERE topic_id = $1 AND partition = $2 FOR SHARE"
        ),
        transaction.prepare_cached(
            "INSERT INTO group_offsets (group_id, topic_id, partition, committed_offset,
                 leader_epoch, metadata, commit_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET
                 committed_offset = excluded.committed_offset,
                 leader_epoch = excluded.leader_epoch,
                 metadata = excluded.metadata,
                 commit_ms = excluded.commit_ms",
        ),
    )?;
    for offset in offsets {
        let id = offset.topic_id.as_bytes().as_slice();
        let partition = i64::from(offset.partition);
        if transaction
            .query_opt(&exists, &[&id, &partition])
            .await?
            .is_none()
        {
            return Err(Error::UnknownPartition {
                topic_id: offset.topic_id,
                partition: offset.partition,
            });
        }
        transaction
            .execute(
                &upsert,
                &[
                    &group_id,
                    &id,
                    &partition,
                    &offset.offset,
                    &offset.leader_epoch,
                    &offset.metadata,
                    &offset.commit_timestamp_ms,
                ],
            )
            .await?;
    }
    Ok(())
}

/// The group's offsets on live partitions, by topic id then partition.
pub(super) async fn fetch_offsets(
    client: &impl GenericClient,
    group_id: &str,
) -> Result<Vec<CommittedOffset>> {
    // The join with `partitions` drops offsets of deleted topics even if a
    // commit raced with the deletion.
    let statement = client
        .prepare_cached(
            "SELECT o.topic_id, o.partition, o.committed_offset, o.leader_epoch, o.metadata,
                 o.commit_ms
             FROM group_offsets o
             JOIN partitions p ON p.topic_id = o.topic_id AND p.partition = o.partition
             WHERE o.group_id = $1
             ORDER BY o.topic_id, o.partition",
        )
        .await?;
    let rows = client.query(&statement, &[&group_id]).await?;
    rows.iter()
        .map(|row| {
            let topic_id: &[u8] = row.try_get(0)?;
            Ok(CommittedOffset {
                topic_id: parse_topic_id(topic_id)?,
                partition: to_u32("partition index", row.try_get(1)?)?,
                offset: row.try_get(2)?,
                leader_epoch: row.try_get(3)?,
                metadata: row.try_get(4)?,
                commit_timestamp_ms: row.try_get(5)?,
            })
        })
        .collect()
}

/// Removes the group's offsets of `partitions`.
pub(super) async fn delete_offsets(
    context: &WriteContext<'_, '_>,
    group_id: &str,
    partitions: &[(Uuid, u32)],
) -> Result<()> {
    let (topic_ids, indexes): (Vec<&[u8]>, Vec<i64>) = partitions
        .iter()
        .map(|(topic_id, partition)| (topic_id.as_bytes().as_slice(), i64::from(*partition)))
        .unzip();
    let transaction = context.transaction;
    let statement = transaction
        .prepare_cached(
            "DELETE FROM group_offsets o
             USING unnest($2::bytea[], $3::int8[]) AS k (topic_id, partition)
             WHERE o.group_id = $1 AND o.topic_id = k.topic_id AND o.partition = k.partition",
        )
        .await?;
    transaction
        .execute(&statement, &[&group_id, &topic_ids, &indexes])
        .await?;
    Ok(())
}

/// Replaces a group's record (of either protocol: a group id belongs to
/// one protocol at a time) with a classic record and its members.
pub(super) async fn save_group(context: &WriteContext<'_, '_>, record: &GroupRecord) -> Result<()> {
    let transaction = context.transaction;
    delete_classic_record(transaction, &record.group_id).await?;
    consumer_groups::delete(transaction, &record.group_id).await?;
    transaction
        .execute(
            "INSERT INTO classic_groups (group_id, protocol_type, protocol_name, generation_id,
                 leader_id, saved_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &record.group_id,
                &record.protocol_type,
                &record.protocol_name,
                &record.generation_id,
                &record.leader_id,
                &context.now_ms,
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

/// Deletes a group's classic record and members, if any.
pub(super) async fn delete_classic_record(
    transaction: &Transaction<'_>,
    group_id: &str,
) -> Result<()> {
    transaction
        .execute(
            "DELETE FROM classic_groups WHERE group_id = $1",
            &[&group_id],
        )
        .await?;
    transaction
        .execute(
            "DELETE FROM classic_group_members WHERE group_id = $1",
            &[&group_id],
        )
        .await?;
    Ok(())
}

/// Deletes a group's record (of either protocol), members and offsets.
pub(super) async fn delete_group(context: &WriteContext<'_, '_>, group_id: &str) -> Result<()> {
    let transaction = context.transaction;
    delete_classic_record(transaction, group_id).await?;
    consumer_groups::delete(transaction, group_id).await?;
    transaction
        .execute(
            "DELETE FROM group_offsets WHERE group_id = $1",
            &[&group_id],
        )
        .await?;
    Ok(())
}

/// Every classic group record, plus empty records for groups with only
/// offsets (no record of either protocol), sorted by group id.
pub(super) async fn load_groups(client: &mut Object) -> Result<Vec<GroupRecord>> {
    // One snapshot, so records and members agree.
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let rows = transaction
        .query(
            "SELECT group_id, protocol_type, protocol_name, generation_id, leader_id
             FROM classic_groups",
            &[],
        )
        .await?;
    let mut records = Vec::with_capacity(rows.len());
    for row in &rows {
        let group_id: String = row.try_get(0)?;
        let members = load_members(&transaction, &group_id).await?;
        records.push(GroupRecord {
            group_id,
            protocol_type: row.try_get(1)?,
            protocol_name: row.try_get(2)?,
            generation_id: row.try_get(3)?,
            leader_id: row.try_get(4)?,
            members,
        });
    }
    let orphans = transaction
        .query(
            "SELECT DISTINCT group_id FROM group_offsets
             WHERE group_id NOT IN (SELECT group_id FROM classic_groups)
               AND group_id NOT IN (SELECT group_id FROM consumer_groups)",
            &[],
        )
        .await?;
    for row in &orphans {
        records.push(GroupRecord {
            group_id: row.try_get(0)?,
            ..GroupRecord::default()
        });
    }
    transaction.commit().await?;
    records.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(records)
}

async fn load_members(
    client: &impl GenericClient,
    group_id: &str,
) -> Result<Vec<GroupMemberRecord>> {
    let statement = client
        .prepare_cached(
            "SELECT member_id, instance_id, client_id, client_host, session_timeout_ms,
                 rebalance_timeout_ms, protocol_names, protocol_metadata, assignment
             FROM classic_group_members WHERE group_id = $1 ORDER BY position",
        )
        .await?;
    let rows = client.query(&statement, &[&group_id]).await?;
    rows.iter()
        .map(|row| {
            let names: Vec<String> = row.try_get(6)?;
            let metadata: Vec<Vec<u8>> = row.try_get(7)?;
            if names.len() != metadata.len() {
                return Err(Error::Corrupt {
                    what: format!("protocols of a member of group {group_id}"),
                });
            }
            Ok(GroupMemberRecord {
                member_id: row.try_get(0)?,
                instance_id: row.try_get(1)?,
                client_id: row.try_get(2)?,
                client_host: row.try_get(3)?,
                session_timeout_ms: row.try_get(4)?,
                rebalance_timeout_ms: row.try_get(5)?,
                protocols: names
                    .into_iter()
                    .zip(metadata)
                    .map(|(name, metadata)| MemberProtocol { name, metadata })
                    .collect(),
                assignment: row.try_get(8)?,
            })
        })
        .collect()
}
