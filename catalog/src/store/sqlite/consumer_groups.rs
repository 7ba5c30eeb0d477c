//! KIP-848 consumer group records: one JSON blob per group in
//! `consumer_groups`, tagged with its format version.
//!
//! A group's record is rewritten whole on every change, so it is kept
//! compact: one row per group (not per member), partition sets as
//! `{"topic id": [partitions]}` maps, topic ids in their 32-hex-digit form,
//! absent optional fields left out. The serde types below are the stored
//! format; the domain types in `store.rs` stay free of serde. Any change
//! to the stored format bumps [`FORMAT`] and teaches [`decode`] the old
//! one.

use rusqlite::{Connection, params};

use super::rows::WriteContext;
use crate::Result;
use crate::store::ConsumerGroupRecord;
use crate::store::consumer_group_codec::{FORMAT, decode, encode};

/// Replaces the group's record, of either protocol (a group id belongs to
/// one protocol at a time); offsets are kept.
pub(super) fn save(context: &mut WriteContext<'_>, record: &ConsumerGroupRecord) -> Result<()> {
    let connection = context.connection;
    let blob = encode(record)?;
    super::groups::delete_classic_record(connection, &record.group_id)?;
    connection
        .prepare_cached(
            "INSERT INTO consumer_groups (group_id, format, record, saved_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (group_id) DO UPDATE SET
                 format = excluded.format,
                 record = excluded.record,
                 saved_ms = excluded.saved_ms",
        )?
        .execute(params![record.group_id, FORMAT, blob, context.now_ms])?;
    Ok(())
}

/// Deletes the group's consumer-group record, if any.
pub(super) fn delete(connection: &Connection, group_id: &str) -> Result<()> {
    connection
        .prepare_cached("DELETE FROM consumer_groups WHERE group_id = ?1")?
        .execute([group_id])?;
    Ok(())
}

/// Every record, sorted by group id.
pub(super) fn load(connection: &Connection) -> Result<Vec<ConsumerGroupRecord>> {
    let mut statement = connection
        .prepare_cached("SELECT group_id, format, record FROM consumer_groups ORDER BY group_id")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    rows.map(|row| {
        let (group_id, format, blob) = row?;
        decode(group_id, format, &blob)
    })
    .collect()
}
