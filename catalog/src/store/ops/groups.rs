//! Consumer groups: committed offsets, and the group records of either
//! protocol (classic, KIP-848); a group id has at most one record.

use uuid::Uuid;

use crate::store::consumer_group_codec::encode;
use crate::store::rows::GroupRows;
use crate::store::{CommittedOffset, ConsumerGroupRecord, GroupRecord};
use crate::{Error, Result};

/// Stores offsets after checking that every partition exists (see
/// `CatalogStore::commit_offsets`; all or none: the command's savepoint
/// rolls back a partial commit).
pub(crate) async fn commit_offsets<R: GroupRows>(
    rows: &mut R,
    group_id: &str,
    offsets: &[CommittedOffset],
) -> Result<()> {
    for offset in offsets {
        if !rows
            .partition_exists_for_share(offset.topic_id, offset.partition)
            .await?
        {
            return Err(Error::UnknownPartition {
                topic_id: offset.topic_id,
                partition: offset.partition,
            });
        }
        rows.put_group_offset(group_id, offset).await?;
    }
    Ok(())
}

/// Removes the group's offsets of `partitions` (see
/// `CatalogStore::delete_offsets`).
pub(crate) async fn delete_offsets<R: GroupRows>(
    rows: &mut R,
    group_id: &str,
    partitions: &[(Uuid, u32)],
) -> Result<()> {
    rows.delete_group_offsets(group_id, partitions).await
}

/// Replaces a group's record, of either protocol, with a classic record and
/// its members (see `CatalogStore::save_group`).
pub(crate) async fn save_group<R: GroupRows>(rows: &mut R, record: &GroupRecord) -> Result<()> {
    rows.delete_classic_group(&record.group_id).await?;
    rows.delete_consumer_group(&record.group_id).await?;
    rows.insert_classic_group(record).await
}

/// Replaces a group's record, of either protocol, with a KIP-848 record;
/// offsets are kept (see `CatalogStore::save_consumer_group`).
pub(crate) async fn save_consumer_group<R: GroupRows>(
    rows: &mut R,
    record: &ConsumerGroupRecord,
) -> Result<()> {
    let blob = encode(record)?;
    rows.delete_classic_group(&record.group_id).await?;
    rows.put_consumer_group(&record.group_id, &blob).await
}

/// Deletes a group's record (of either protocol), members and offsets (see
/// `CatalogStore::delete_group`).
pub(crate) async fn delete_group<R: GroupRows>(rows: &mut R, group_id: &str) -> Result<()> {
    rows.delete_classic_group(group_id).await?;
    rows.delete_consumer_group(group_id).await?;
    rows.delete_all_group_offsets(group_id).await
}
