//! KIP-848 consumer group records: one JSON document per group in
//! `consumer_groups`, tagged with its format version.
//!
//! The stored format is byte for byte the SQLite store's (the same JSON in
//! the same `format` version), so records move between the stores
//! unchanged. The codec below is a copy of the SQLite store's, kept private
//! while that store is being extended; it should move to a shared module of
//! `store/` once both stores are settled. Any change to the stored format
//! bumps [`FORMAT`] in both and teaches [`decode`] the old one.

use deadpool_postgres::GenericClient;

use super::groups::delete_classic_record;
use super::rows::{Transaction, WriteContext};
use crate::Result;
use crate::store::ConsumerGroupRecord;
use crate::store::consumer_group_codec::{FORMAT, decode, encode};

/// Replaces the group's record, of either protocol (a group id belongs to
/// one protocol at a time); offsets are kept.
pub(super) async fn save(
    context: &WriteContext<'_, '_>,
    record: &ConsumerGroupRecord,
) -> Result<()> {
    let transaction = context.transaction;
    let blob = encode(record)?;
    delete_classic_record(transaction, &record.group_id).await?;
    let statement = transaction
        .prepare_cached(
            "INSERT INTO consumer_groups (group_id, format, record, saved_ms)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (group_id) DO UPDATE SET
                 format = excluded.format,
                 record = excluded.record,
                 saved_ms = excluded.saved_ms",
        )
        .await?;
    transaction
        .execute(
            &statement,
            &[&record.group_id, &FORMAT, &blob, &context.now_ms],
        )
        .await?;
    Ok(())
}

/// Deletes the group's consumer-group record, if any.
pub(super) async fn delete(transaction: &Transaction<'_>, group_id: &str) -> Result<()> {
    transaction
        .execute(
            "DELETE FROM consumer_groups WHERE group_id = $1",
            &[&group_id],
        )
        .await?;
    Ok(())
}

/// Every record, sorted by group id (byte order).
pub(super) async fn load(client: &impl GenericClient) -> Result<Vec<ConsumerGroupRecord>> {
    let rows = client
        .query(
            "SELECT group_id, format, record FROM consumer_groups ORDER BY group_id COLLATE \"C\"",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let blob: &[u8] = row.try_get(2)?;
            decode(row.try_get(0)?, row.try_get(1)?, blob)
        })
        .collect()
}
