//! Reads of the chunk index and partition offsets.

use rusqlite::{Connection, OptionalExtension, Row, params};
use strata_catalog_api::proto::{AbortedTransaction, Chunk, ProducerState, Topic, TxnMarker};
use uuid::Uuid;

use super::rows::agents::to_epoch;
use super::rows::chunks;
use super::rows::groups::decode_protocols;
use super::rows::topics::{by_name, topic_from_row};
use crate::store::commit_plan::PartitionRow;
use crate::store::consumer_group_codec::decode;
use crate::store::topic_rules::TOPIC_COLUMNS;
use crate::store::topic_rules::parse_topic_id;
use crate::store::{
    AgentRecord, ChunkLookup, CommittedOffset, ConsumerGroupRecord, DeadObject, GroupMemberRecord,
    GroupRecord, PartitionOffsets, TxnDescription, TxnSummary,
};
use crate::{Error, Result};

/// The most dead objects one listing returns.
const LIST_DEAD_OBJECTS_MAX: u32 = 10_000;

/// The most chunks one lookup returns.
const LOOKUP_CHUNKS_MAX: u32 = 10_000;

const CHUNK_COLUMNS: &str = "topic_id, partition, base_offset, end_offset, object_key, object_size,
    position, length, batch_count, max_timestamp, format, marker_producer_id, marker_producer_epoch,
    marker_coordinator_epoch, marker_commit";

/// The partition's row; `UnknownPartition` if it does not exist.
fn partition(connection: &Connection, topic_id: Uuid, partition: u32) -> Result<PartitionRow> {
    chunks::partition(connection, &(topic_id.as_bytes().to_vec(), partition))?.ok_or(
        Error::UnknownPartition {
            topic_id,
            partition,
        },
    )
}

/// Chunks holding offsets >= `offset`, starting with the one containing it.
pub(super) fn lookup_chunks(
    connection: &Connection,
    topic_id: Uuid,
    partition_index: u32,
    offset: i64,
    max_chunks: u32,
) -> Result<ChunkLookup> {
    // One read transaction, so the chunks and the offsets agree.
    let transaction = connection.unchecked_transaction()?;
    let row = partition(&transaction, topic_id, partition_index)?;
    let offset = offset.max(row.log_start_offset);
    // The chunk containing `offset` is the last one starting at or before
    // it; both bounds use the primary key.
    let mut statement = transaction.prepare_cached(&format!(
        "SELECT {CHUNK_COLUMNS} FROM chunks
         WHERE topic_id = ?1 AND partition = ?2
           AND base_offset >= COALESCE(
               (SELECT MAX(base_offset) FROM chunks
                WHERE topic_id = ?1 AND partition = ?2 AND base_offset <= ?3), ?3)
           AND end_offset > ?3
         ORDER BY base_offset LIMIT ?4"
    ))?;
    let limit = max_chunks.clamp(1, LOOKUP_CHUNKS_MAX);
    let chunks = statement
        .query_map(
            params![topic_id.as_bytes(), partition_index, offset, limit],
            chunk_from_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    drop(statement);
    transaction.finish()?;
    Ok(ChunkLookup {
        chunks,
        log_start_offset: row.log_start_offset,
        high_watermark: row.next_offset,
    })
}

/// A partition's offsets and the chunk holding its greatest timestamp.
pub(super) fn partition_offsets(
    connection: &Connection,
    topic_id: Uuid,
    partition_index: u32,
) -> Result<PartitionOffsets> {
    let transaction = connection.unchecked_transaction()?;
    let row = partition(&transaction, topic_id, partition_index)?;
    let max_timestamp_chunk = if row.max_timestamp_offset >= 0 {
        transaction
            .prepare_cached(&format!(
                "SELECT {CHUNK_COLUMNS} FROM chunks
                 WHERE topic_id = ?1 AND partition = ?2 AND base_offset = ?3"
            ))?
            .query_row(
                params![
                    topic_id.as_bytes(),
                    partition_index,
                    row.max_timestamp_offset
                ],
                chunk_from_row,
            )
            .optional()?
    } else {
        None
    };
    transaction.finish()?;
    Ok(PartitionOffsets {
        log_start_offset: row.log_start_offset,
        high_watermark: row.next_offset,
        last_stable_offset: row.last_stable_offset,
        max_timestamp: row.max_timestamp,
        max_timestamp_chunk,
    })
}

/// The first chunk by offset whose max timestamp is >= `timestamp`.
///
/// `running_max_timestamp` (the greatest timestamp up to and including a
/// chunk) never decreases with the offset, and the first chunk where it
/// reaches `timestamp` is the first chunk whose own max does, so an index
/// range scan finds it.
pub(super) fn find_chunk_by_timestamp(
    connection: &Connection,
    topic_id: Uuid,
    partition_index: u32,
    timestamp: i64,
) -> Result<Option<Chunk>> {
    let transaction = connection.unchecked_transaction()?;
    let row = partition(&transaction, topic_id, partition_index)?;
    let chunk = transaction
        .prepare_cached(&format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks
             WHERE topic_id = ?1 AND partition = ?2 AND running_max_timestamp >= ?3
               AND end_offset > ?4
             ORDER BY running_max_timestamp, base_offset LIMIT 1"
        ))?
        .query_row(
            params![
                topic_id.as_bytes(),
                partition_index,
                timestamp,
                row.log_start_offset
            ],
            chunk_from_row,
        )
        .optional()?;
    transaction.finish()?;
    Ok(chunk)
}

/// The last commit-stream sequence handed out.
pub(super) fn last_commit_sequence(connection: &Connection) -> Result<u64> {
    let sequence: i64 = connection
        .prepare_cached("SELECT value FROM meta WHERE key = 'commit_sequence'")?
        .query_row([], |row| row.get(0))?;
    u64::try_from(sequence).map_err(|_| Error::Corrupt {
        what: format!("commit sequence {sequence}"),
    })
}

fn chunk_from_row(row: &Row<'_>) -> rusqlite::Result<Chunk> {
    Ok(Chunk {
        topic_id: row.get(0)?,
        partition: row.get(1)?,
        base_offset: row.get(2)?,
        end_offset: row.get(3)?,
        object_key: row.get(4)?,
        object_size: row.get(5)?,
        position: row.get(6)?,
        length: row.get(7)?,
        batch_count: row.get(8)?,
        max_timestamp: row.get(9)?,
        format: row.get(10)?,
        marker: match row.get::<_, Option<i64>>(11)? {
            Some(producer_id) => Some(TxnMarker {
                producer_id,
                producer_epoch: row.get(12)?,
                coordinator_epoch: row.get(13)?,
                commit: row.get(14)?,
            }),
            None => None,
        },
    })
}

/// The aborted transactions of a partition whose marker is at or after
/// `from_offset` and whose first offset is before `to_offset`, by first
/// offset.
const TXN_SUMMARY_COLUMNS: &str = "transactional_id, producer_id, producer_epoch, state,
    transaction_timeout_ms, txn_started_ms";

fn txn_summary(row: &Row<'_>) -> rusqlite::Result<TxnSummary> {
    Ok(TxnSummary {
        transactional_id: row.get(0)?,
        producer_id: row.get(1)?,
        producer_epoch: row.get(2)?,
        state: row.get(3)?,
        timeout_ms: row.get(4)?,
        started_ms: row.get(5)?,
    })
}

/// Up to `limit` transactional ids, by id.
pub(super) fn list_transactions(connection: &Connection, limit: u32) -> Result<Vec<TxnSummary>> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {TXN_SUMMARY_COLUMNS} FROM transactional_ids ORDER BY transactional_id LIMIT ?1"
    ))?;
    let rows = statement.query_map([limit], txn_summary)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// One transactional id and its open transaction's partitions.
pub(super) fn describe_transaction(
    connection: &Connection,
    transactional_id: &str,
) -> Result<Option<TxnDescription>> {
    let summary = connection
        .prepare_cached(&format!(
            "SELECT {TXN_SUMMARY_COLUMNS} FROM transactional_ids WHERE transactional_id = ?1"
        ))?
        .query_row([transactional_id], txn_summary)
        .optional()?;
    let Some(summary) = summary else {
        return Ok(None);
    };
    let mut statement = connection.prepare_cached(
        "SELECT topic_id, partition FROM txn_partitions WHERE transactional_id = ?1
         ORDER BY topic_id, partition",
    )?;
    let partitions = statement
        .query_map([transactional_id], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, u32>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(|(id, partition)| Ok((parse_topic_id(&id)?, partition)))
        .collect::<Result<_>>()?;
    Ok(Some((summary, partitions)))
}

pub(super) fn aborted_transactions(
    connection: &Connection,
    topic_id: Uuid,
    partition: u32,
    from_offset: i64,
    to_offset: i64,
) -> Result<Vec<AbortedTransaction>> {
    let mut statement = connection.prepare_cached(
        "SELECT producer_id, first_offset, last_offset FROM aborted_txns
         WHERE topic_id = ?1 AND partition = ?2 AND last_offset >= ?3 AND first_offset < ?4
         ORDER BY first_offset",
    )?;
    let rows = statement.query_map(
        params![topic_id.as_bytes(), partition, from_offset, to_offset],
        |row| {
            Ok(AbortedTransaction {
                producer_id: row.get(0)?,
                first_offset: row.get(1)?,
                last_offset: row.get(2)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Every registration, sorted by agent id.
pub(super) fn list_agents(connection: &Connection) -> Result<Vec<AgentRecord>> {
    let mut statement = connection.prepare_cached(
        "SELECT agent_id, epoch, host, port, zone, registered_ms, fenced
         FROM agents ORDER BY agent_id",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, u32>(3)?,
            row.get::<_, String>(4)?,
            row.get::<_, i64>(5)?,
            row.get::<_, bool>(6)?,
        ))
    })?;
    let mut listeners = agent_listeners(connection)?;
    rows.map(|row| {
        let (agent_id, epoch, host, port, zone, registered_ms, fenced) = row?;
        Ok(AgentRecord {
            listeners: listeners.remove(&agent_id).unwrap_or_default(),
            agent_id,
            epoch: to_epoch(epoch)?,
            host,
            port,
            zone,
            registered_ms,
            fenced,
        })
    })
    .collect()
}

/// Every agent's listeners, in configured order.
fn agent_listeners(
    connection: &Connection,
) -> Result<std::collections::HashMap<String, Vec<strata_catalog_api::proto::ListenerAddress>>> {
    let mut statement = connection.prepare_cached(
        "SELECT agent_id, name, host, port FROM agent_listeners ORDER BY agent_id, position",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            strata_catalog_api::proto::ListenerAddress {
                name: row.get(1)?,
                host: row.get(2)?,
                port: row.get(3)?,
            },
        ))
    })?;
    let mut out: std::collections::HashMap<_, Vec<_>> = std::collections::HashMap::new();
    for row in rows {
        let (agent_id, listener) = row?;
        out.entry(agent_id).or_default().push(listener);
    }
    Ok(out)
}

/// The live topics named in `names` (all when empty), sorted by name.
pub(super) fn list_topics(connection: &Connection, names: &[String]) -> Result<Vec<Topic>> {
    if names.is_empty() {
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {TOPIC_COLUMNS} FROM topics WHERE deleted = 0 ORDER BY name"
        ))?;
        let rows = statement.query_map([], topic_from_row)?;
        return rows.map(|row| row?).collect();
    }
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        if let Some(topic) = by_name(connection, name)? {
            topics.push(topic);
        }
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    topics.dedup_by(|a, b| a.name == b.name);
    Ok(topics)
}

/// The unexpired producer states of a partition, by producer id.
pub(super) fn describe_producers(
    connection: &Connection,
    topic_id: Uuid,
    partition: u32,
    live_since_ms: i64,
) -> Result<Vec<ProducerState>> {
    let mut statement = connection.prepare_cached(
        "SELECT producer_id, producer_epoch, last_sequence, last_timestamp, coordinator_epoch,
             current_txn_start_offset
         FROM producer_partitions
         WHERE topic_id = ?1 AND partition = ?2 AND last_update_ms >= ?3
         ORDER BY producer_id",
    )?;
    let rows = statement.query_map(
        params![topic_id.as_bytes(), partition, live_since_ms],
        |row| {
            Ok(ProducerState {
                producer_id: row.get(0)?,
                producer_epoch: row.get(1)?,
                last_sequence: row.get(2)?,
                last_timestamp: row.get(3)?,
                coordinator_epoch: row.get(4)?,
                current_txn_start_offset: row.get(5)?,
            })
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Dead objects, oldest first.
pub(super) fn list_dead_objects(
    connection: &Connection,
    dead_before_ms: i64,
    limit: u32,
) -> Result<Vec<DeadObject>> {
    let limit = limit.clamp(1, LIST_DEAD_OBJECTS_MAX);
    Ok(connection
        .prepare_cached(
            "SELECT object_key, dead_since_ms FROM dead_objects WHERE dead_since_ms <= ?1
             ORDER BY dead_since_ms, object_key LIMIT ?2",
        )?
        .query_map(params![dead_before_ms, limit], |row| {
            Ok(DeadObject {
                object_key: row.get(0)?,
                dead_since_ms: row.get(1)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?)
}

/// The keys the catalog still knows (referenced by a chunk, or dead and
/// awaiting the GC's grace period), in the order given.
pub(super) fn referenced_objects(
    connection: &Connection,
    object_keys: &[String],
) -> Result<Vec<String>> {
    let mut statement = connection.prepare_cached(
        "SELECT 1 WHERE EXISTS (SELECT 1 FROM chunks WHERE object_key = ?1)
            OR EXISTS (SELECT 1 FROM dead_objects WHERE object_key = ?1)",
    )?;
    let mut seen = std::collections::HashSet::new();
    let mut referenced = Vec::new();
    for key in object_keys {
        if seen.insert(key.as_str()) && statement.exists([key])? {
            referenced.push(key.clone());
        }
    }
    Ok(referenced)
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

/// Every record, sorted by group id.
pub(super) fn load_consumer_groups(connection: &Connection) -> Result<Vec<ConsumerGroupRecord>> {
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
