//! Consumer groups: committed offsets and classic group records (KIP-848
//! records are in `consumer_groups.rs`).

use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use super::consumer_groups;
use super::rows::WriteContext;
use crate::store::topic_rules::parse_topic_id;
use crate::store::{CommittedOffset, GroupMemberRecord, GroupRecord, MemberProtocol};
use crate::{Error, Result};

/// Stores offsets after checking that every partition exists.
pub(super) fn commit_offsets(
    context: &mut WriteContext<'_>,
    group_id: &str,
    offsets: &[CommittedOffset],
) -> Result<()> {
    let connection = context.connection;
    let mut exists = connection
        .prepare_cached("SELECT 1 FROM partitions WHERE topic_id = ?1 AND partition = ?2")?;
    let mut upsert = connection.prepare_cached(
        "INSERT INTO group_offsets (group_id, topic_id, partition, committed_offset,
             leader_epoch, metadata, commit_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET
             committed_offset = excluded.committed_offset,
             leader_epoch = excluded.leader_epoch,
             metadata = excluded.metadata,
             commit_ms = excluded.commit_ms",
    )?;
    for offset in offsets {
        let id = offset.topic_id.as_bytes();
        let found: Option<i64> = exists
            .query_row(params![id, offset.partition], |row| row.get(0))
            .optional()?;
        if found.is_none() {
            return Err(Error::UnknownPartition {
                topic_id: offset.topic_id,
                partition: offset.partition,
            });
        }
        upsert.execute(params![
            group_id,
            id,
            offset.partition,
            offset.offset,
            offset.leader_epoch,
            offset.metadata,
            offset.commit_timestamp_ms
        ])?;
    }
    Ok(())
}

/// The group's offsets on live partitions.
pub(super) fn fetch_offsets(
    connection: &Connection,
    group_id: &str,
) -> Result<Vec<CommittedOffset>> {
    // The join with `partitions` drops offsets of deleted topics even if a
    // commit raced with the deletion.
    let mut statement = connection.prepare_cached(
        "SELECT o.topic_id, o.partition, o.committed_offset, o.leader_epoch, o.metadata,
             o.commit_ms
         FROM group_offsets o
         JOIN partitions p ON p.topic_id = o.topic_id AND p.partition = o.partition
         WHERE o.group_id = ?1
         ORDER BY o.topic_id, o.partition",
    )?;
    let rows = statement.query_map([group_id], |row| {
        Ok((
            row.get::<_, Vec<u8>>(0)?,
            CommittedOffset {
                topic_id: Uuid::nil(),
                partition: row.get(1)?,
                offset: row.get(2)?,
                leader_epoch: row.get(3)?,
                metadata: row.get(4)?,
                commit_timestamp_ms: row.get(5)?,
            },
        ))
    })?;
    rows.map(|row| {
        let (id, offset) = row?;
        Ok(CommittedOffset {
            topic_id: parse_topic_id(&id)?,
            ..offset
        })
    })
    .collect()
}

/// Removes the group's offsets of `partitions`.
pub(super) fn delete_offsets(
    context: &mut WriteContext<'_>,
    group_id: &str,
    partitions: &[(Uuid, u32)],
) -> Result<()> {
    let mut delete = context.connection.prepare_cached(
        "DELETE FROM group_offsets WHERE group_id = ?1 AND topic_id = ?2 AND partition = ?3",
    )?;
    for (topic_id, partition) in partitions {
        delete.execute(params![group_id, topic_id.as_bytes(), partition])?;
    }
    Ok(())
}

/// Replaces a group's record (of either protocol: a group id belongs to
/// one protocol at a time) with a classic record and its members.
pub(super) fn save_group(context: &mut WriteContext<'_>, record: &GroupRecord) -> Result<()> {
    let connection = context.connection;
    delete_classic_record(connection, &record.group_id)?;
    consumer_groups::delete(connection, &record.group_id)?;
    connection
        .prepare_cached(
            "INSERT INTO classic_groups (group_id, protocol_type, protocol_name, generation_id,
                 leader_id, saved_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            record.group_id,
            record.protocol_type,
            record.protocol_name,
            record.generation_id,
            record.leader_id,
            context.now_ms
        ])?;
    let mut insert = connection.prepare_cached(
        "INSERT INTO classic_group_members (group_id, position, member_id, instance_id,
             client_id, client_host, session_timeout_ms, rebalance_timeout_ms, protocols,
             assignment)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for (position, member) in record.members.iter().enumerate() {
        insert.execute(params![
            record.group_id,
            i64::try_from(position).unwrap_or(i64::MAX),
            member.member_id,
            member.instance_id,
            member.client_id,
            member.client_host,
            member.session_timeout_ms,
            member.rebalance_timeout_ms,
            encode_protocols(&member.protocols),
            member.assignment
        ])?;
    }
    Ok(())
}

/// Deletes a group's classic record and members, if any.
pub(super) fn delete_classic_record(connection: &Connection, group_id: &str) -> Result<()> {
    for table in ["classic_groups", "classic_group_members"] {
        connection
            .prepare_cached(&format!("DELETE FROM {table} WHERE group_id = ?1"))?
            .execute([group_id])?;
    }
    Ok(())
}

/// Deletes a group's record (of either protocol), members and offsets.
pub(super) fn delete_group(context: &mut WriteContext<'_>, group_id: &str) -> Result<()> {
    delete_classic_record(context.connection, group_id)?;
    consumer_groups::delete(context.connection, group_id)?;
    context
        .connection
        .prepare_cached("DELETE FROM group_offsets WHERE group_id = ?1")?
        .execute([group_id])?;
    Ok(())
}

/// Every classic group record, plus empty records for groups with only
/// offsets (no record of either protocol).
pub(super) fn load_groups(connection: &Connection) -> Result<Vec<GroupRecord>> {
    // One read transaction, so records and members agree.
    let transaction = connection.unchecked_transaction()?;
    let mut records = Vec::new();
    {
        let mut statement = transaction.prepare_cached(
            "SELECT group_id, protocol_type, protocol_name, generation_id, leader_id
             FROM classic_groups",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(GroupRecord {
                group_id: row.get(0)?,
                protocol_type: row.get(1)?,
                protocol_name: row.get(2)?,
                generation_id: row.get(3)?,
                leader_id: row.get(4)?,
                members: Vec::new(),
            })
        })?;
        for row in rows {
            records.push(row?);
        }
    }
    for record in &mut records {
        record.members = load_members(&transaction, &record.group_id)?;
    }
    let mut statement = transaction.prepare_cached(
        "SELECT DISTINCT group_id FROM group_offsets
         WHERE group_id NOT IN (SELECT group_id FROM classic_groups)
             AND group_id NOT IN (SELECT group_id FROM consumer_groups)",
    )?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
    for group_id in rows {
        records.push(GroupRecord {
            group_id: group_id?,
            ..GroupRecord::default()
        });
    }
    records.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(records)
}

fn load_members(connection: &Connection, group_id: &str) -> Result<Vec<GroupMemberRecord>> {
    let mut statement = connection.prepare_cached(
        "SELECT member_id, instance_id, client_id, client_host, session_timeout_ms,
             rebalance_timeout_ms, protocols, assignment
         FROM classic_group_members WHERE group_id = ?1 ORDER BY position",
    )?;
    let rows = statement.query_map([group_id], |row| {
        Ok((
            GroupMemberRecord {
                member_id: row.get(0)?,
                instance_id: row.get(1)?,
                client_id: row.get(2)?,
                client_host: row.get(3)?,
                session_timeout_ms: row.get(4)?,
                rebalance_timeout_ms: row.get(5)?,
                protocols: Vec::new(),
                assignment: row.get(7)?,
            },
            row.get::<_, Vec<u8>>(6)?,
        ))
    })?;
    rows.map(|row| {
        let (member, protocols) = row?;
        Ok(GroupMemberRecord {
            protocols: decode_protocols(&protocols)?,
            ..member
        })
    })
    .collect()
}

/// Encodes protocols as `count, (name length, name, metadata length,
/// metadata)*`, every length a big-endian u32.
fn encode_protocols(protocols: &[MemberProtocol]) -> Vec<u8> {
    let mut bytes = Vec::new();
    let length = |bytes: &mut Vec<u8>, n: usize| {
        bytes.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
    };
    length(&mut bytes, protocols.len());
    for protocol in protocols {
        length(&mut bytes, protocol.name.len());
        bytes.extend_from_slice(protocol.name.as_bytes());
        length(&mut bytes, protocol.metadata.len());
        bytes.extend_from_slice(&protocol.metadata);
    }
    bytes
}

/// Decodes [`encode_protocols`]'s format.
fn decode_protocols(bytes: &[u8]) -> Result<Vec<MemberProtocol>> {
    let mut reader = Reader { bytes };
    let count = reader.length()?;
    let mut protocols = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let name_length = reader.length()?;
        let name = String::from_utf8(reader.take(name_length)?.to_vec()).map_err(|_| corrupt())?;
        let metadata_length = reader.length()?;
        let metadata = reader.take(metadata_length)?.to_vec();
        protocols.push(MemberProtocol { name, metadata });
    }
    Ok(protocols)
}

fn corrupt() -> Error {
    Error::Corrupt {
        what: "classic group member protocols".to_string(),
    }
}

/// Reads length-prefixed fields off a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(corrupt());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn length(&mut self) -> Result<usize> {
        let raw: [u8; 4] = self.take(4)?.try_into().map_err(|_| corrupt())?;
        usize::try_from(u32::from_be_bytes(raw)).map_err(|_| corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_round_trip_and_truncation_is_corrupt() {
        let protocols = vec![
            MemberProtocol {
                name: "range".to_string(),
                metadata: vec![1, 2, 3],
            },
            MemberProtocol {
                name: "cooperative-sticky".to_string(),
                metadata: Vec::new(),
            },
        ];
        let bytes = encode_protocols(&protocols);
        assert_eq!(decode_protocols(&bytes).unwrap(), protocols);
        for cut in 0..bytes.len() {
            assert!(decode_protocols(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
