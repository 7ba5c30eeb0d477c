//! Consumer group rows: committed offsets, classic records with their
//! members (protocols in a length-prefixed blob), KIP-848 records.

use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

use super::WriteContext;
use crate::store::consumer_group_codec::FORMAT;
use crate::store::rows::GroupRows;
use crate::store::{CommittedOffset, GroupRecord, MemberProtocol};
use crate::{Error, Result};

impl GroupRows for WriteContext<'_> {
    /// SQLite has one writer: nothing to lock.
    async fn partition_exists_for_share(&mut self, topic_id: Uuid, partition: u32) -> Result<bool> {
        let found: Option<i64> = self
            .connection
            .prepare_cached("SELECT 1 FROM partitions WHERE topic_id = ?1 AND partition = ?2")?
            .query_row(params![topic_id.as_bytes(), partition], |row| row.get(0))
            .optional()?;
        Ok(found.is_some())
    }

    async fn put_group_offset(&mut self, group_id: &str, offset: &CommittedOffset) -> Result<()> {
        self.connection
            .prepare_cached(
                "INSERT INTO group_offsets (group_id, topic_id, partition, committed_offset,
                     leader_epoch, metadata, commit_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (group_id, topic_id, partition) DO UPDATE SET
                     committed_offset = excluded.committed_offset,
                     leader_epoch = excluded.leader_epoch,
                     metadata = excluded.metadata,
                     commit_ms = excluded.commit_ms",
            )?
            .execute(params![
                group_id,
                offset.topic_id.as_bytes(),
                offset.partition,
                offset.offset,
                offset.leader_epoch,
                offset.metadata,
                offset.commit_timestamp_ms
            ])?;
        Ok(())
    }

    async fn delete_group_offsets(
        &mut self,
        group_id: &str,
        partitions: &[(Uuid, u32)],
    ) -> Result<()> {
        let mut delete = self.connection.prepare_cached(
            "DELETE FROM group_offsets WHERE group_id = ?1 AND topic_id = ?2 AND partition = ?3",
        )?;
        for (topic_id, partition) in partitions {
            delete.execute(params![group_id, topic_id.as_bytes(), partition])?;
        }
        Ok(())
    }

    async fn delete_all_group_offsets(&mut self, group_id: &str) -> Result<()> {
        self.connection
            .prepare_cached("DELETE FROM group_offsets WHERE group_id = ?1")?
            .execute([group_id])?;
        Ok(())
    }

    async fn delete_classic_group(&mut self, group_id: &str) -> Result<()> {
        for table in ["classic_groups", "classic_group_members"] {
            self.connection
                .prepare_cached(&format!("DELETE FROM {table} WHERE group_id = ?1"))?
                .execute([group_id])?;
        }
        Ok(())
    }

    async fn delete_consumer_group(&mut self, group_id: &str) -> Result<()> {
        self.connection
            .prepare_cached("DELETE FROM consumer_groups WHERE group_id = ?1")?
            .execute([group_id])?;
        Ok(())
    }

    async fn insert_classic_group(&mut self, record: &GroupRecord) -> Result<()> {
        let connection = self.connection;
        connection
            .prepare_cached(
                "INSERT INTO classic_groups (group_id, protocol_type, protocol_name,
                     generation_id, leader_id, saved_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                record.group_id,
                record.protocol_type,
                record.protocol_name,
                record.generation_id,
                record.leader_id,
                self.now_ms
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

    async fn put_consumer_group(&mut self, group_id: &str, blob: &[u8]) -> Result<()> {
        self.connection
            .prepare_cached(
                "INSERT INTO consumer_groups (group_id, format, record, saved_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (group_id) DO UPDATE SET
                     format = excluded.format,
                     record = excluded.record,
                     saved_ms = excluded.saved_ms",
            )?
            .execute(params![group_id, FORMAT, blob, self.now_ms])?;
        Ok(())
    }
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
pub(in crate::store::sqlite) fn decode_protocols(bytes: &[u8]) -> Result<Vec<MemberProtocol>> {
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
