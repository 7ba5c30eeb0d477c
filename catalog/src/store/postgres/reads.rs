//! Reads of the chunk index, partition offsets and the commit sequence.
//!
//! Reads that take several statements run in one read-only REPEATABLE READ
//! transaction, so the chunks and the offsets they return agree.

use deadpool_postgres::{GenericClient, Object};
use strata_catalog_api::proto::{AbortedTransaction, Chunk, ProducerState, Topic, TxnMarker};
use tokio_postgres::{IsolationLevel, Row};
use uuid::Uuid;

use super::rows::topics::topic_from_row;
use super::{to_u32, to_u64};
use crate::store::commit_plan::PartitionRow;
use crate::store::consumer_group_codec::decode;
use crate::store::topic_rules::{TOPIC_COLUMNS, parse_topic_id};
use crate::store::{
    AgentRecord, ChunkLookup, CommittedOffset, ConsumerGroupRecord, DeadObject, GroupMemberRecord,
    GroupRecord, MemberProtocol, PartitionOffsets, TxnDescription, TxnSummary,
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
async fn partition(
    client: &impl GenericClient,
    topic_id: Uuid,
    partition: u32,
) -> Result<PartitionRow> {
    let statement = client
        .prepare_cached(
            "SELECT log_start_offset, next_offset, max_timestamp, max_timestamp_offset,
                 last_stable_offset
             FROM partitions WHERE topic_id = $1 AND partition = $2",
        )
        .await?;
    let row = client
        .query_opt(
            &statement,
            &[&topic_id.as_bytes().as_slice(), &i64::from(partition)],
        )
        .await?
        .ok_or(Error::UnknownPartition {
            topic_id,
            partition,
        })?;
    Ok(PartitionRow {
        log_start_offset: row.try_get(0)?,
        next_offset: row.try_get(1)?,
        max_timestamp: row.try_get(2)?,
        max_timestamp_offset: row.try_get(3)?,
        last_stable_offset: row.try_get(4)?,
    })
}

/// Starts a read-only snapshot transaction.
async fn snapshot(client: &mut Object) -> Result<deadpool_postgres::Transaction<'_>> {
    Ok(client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// Chunks holding offsets >= `offset`, starting with the one containing it.
pub(super) async fn lookup_chunks(
    client: &mut Object,
    topic_id: Uuid,
    partition_index: u32,
    offset: i64,
    max_chunks: u32,
) -> Result<ChunkLookup> {
    let transaction = snapshot(client).await?;
    let row = partition(&transaction, topic_id, partition_index).await?;
    let offset = offset.max(row.log_start_offset);
    // The chunk containing `offset` is the last one starting at or before
    // it; both bounds use the primary key.
    let statement = transaction
        .prepare_cached(&format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks
             WHERE topic_id = $1 AND partition = $2
               AND base_offset >= COALESCE(
                   (SELECT MAX(base_offset) FROM chunks
                    WHERE topic_id = $1 AND partition = $2 AND base_offset <= $3), $3)
               AND end_offset > $3
             ORDER BY base_offset LIMIT $4"
        ))
        .await?;
    let limit = i64::from(max_chunks.clamp(1, LOOKUP_CHUNKS_MAX));
    let rows = transaction
        .query(
            &statement,
            &[
                &topic_id.as_bytes().as_slice(),
                &i64::from(partition_index),
                &offset,
                &limit,
            ],
        )
        .await?;
    let chunks = rows.iter().map(chunk_from_row).collect::<Result<_>>()?;
    transaction.commit().await?;
    Ok(ChunkLookup {
        chunks,
        log_start_offset: row.log_start_offset,
        high_watermark: row.next_offset,
    })
}

/// A partition's offsets and the chunk holding its greatest timestamp.
pub(super) async fn partition_offsets(
    client: &mut Object,
    topic_id: Uuid,
    partition_index: u32,
) -> Result<PartitionOffsets> {
    let transaction = snapshot(client).await?;
    let row = partition(&transaction, topic_id, partition_index).await?;
    let max_timestamp_chunk = if row.max_timestamp_offset >= 0 {
        let statement = transaction
            .prepare_cached(&format!(
                "SELECT {CHUNK_COLUMNS} FROM chunks
                 WHERE topic_id = $1 AND partition = $2 AND base_offset = $3"
            ))
            .await?;
        transaction
            .query_opt(
                &statement,
                &[
                    &topic_id.as_bytes().as_slice(),
                    &i64::from(partition_index),
                    &row.max_timestamp_offset,
                ],
            )
            .await?
            .as_ref()
            .map(chunk_from_row)
            .transpose()?
    } else {
        None
    };
    transaction.commit().await?;
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
pub(super) async fn find_chunk_by_timestamp(
    client: &mut Object,
    topic_id: Uuid,
    partition_index: u32,
    timestamp: i64,
) -> Result<Option<Chunk>> {
    let transaction = snapshot(client).await?;
    let row = partition(&transaction, topic_id, partition_index).await?;
    let statement = transaction
        .prepare_cached(&format!(
            "SELECT {CHUNK_COLUMNS} FROM chunks
             WHERE topic_id = $1 AND partition = $2 AND running_max_timestamp >= $3
               AND end_offset > $4
             ORDER BY running_max_timestamp, base_offset LIMIT 1"
        ))
        .await?;
    let chunk = transaction
        .query_opt(
            &statement,
            &[
                &topic_id.as_bytes().as_slice(),
                &i64::from(partition_index),
                &timestamp,
                &row.log_start_offset,
            ],
        )
        .await?
        .as_ref()
        .map(chunk_from_row)
        .transpose()?;
    transaction.commit().await?;
    Ok(chunk)
}

/// The last commit-stream sequence handed out.
pub(super) async fn last_commit_sequence(client: &impl GenericClient) -> Result<u64> {
    let statement = client
        .prepare_cached("SELECT value FROM meta WHERE key = 'commit_sequence'")
        .await?;
    let sequence: i64 = client.query_one(&statement, &[]).await?.try_get(0)?;
    to_u64("commit sequence", sequence)
}

fn chunk_from_row(row: &Row) -> Result<Chunk> {
    Ok(Chunk {
        topic_id: row.try_get(0)?,
        partition: to_u32("partition index", row.try_get(1)?)?,
        base_offset: row.try_get(2)?,
        end_offset: row.try_get(3)?,
        object_key: row.try_get(4)?,
        object_size: to_u64("object size", row.try_get(5)?)?,
        position: to_u64("chunk position", row.try_get(6)?)?,
        length: to_u64("chunk length", row.try_get(7)?)?,
        batch_count: to_u32("batch count", row.try_get(8)?)?,
        max_timestamp: row.try_get(9)?,
        format: i32::from(row.try_get::<_, i16>(10)?),
        marker: match row.try_get::<_, Option<i64>>(11)? {
            Some(producer_id) => Some(TxnMarker {
                producer_id,
                producer_epoch: row.try_get(12)?,
                coordinator_epoch: row.try_get(13)?,
                commit: row.try_get(14)?,
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

fn txn_summary(row: &Row) -> Result<TxnSummary> {
    Ok(TxnSummary {
        transactional_id: row.try_get(0)?,
        producer_id: row.try_get(1)?,
        producer_epoch: row.try_get(2)?,
        state: row.try_get(3)?,
        timeout_ms: row.try_get(4)?,
        started_ms: row.try_get(5)?,
    })
}

/// Up to `limit` transactional ids, by id.
pub(super) async fn list_transactions(
    client: &impl GenericClient,
    limit: u32,
) -> Result<Vec<TxnSummary>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {TXN_SUMMARY_COLUMNS} FROM transactional_ids ORDER BY transactional_id \
             LIMIT $1"
        ))
        .await?;
    let rows = client.query(&statement, &[&i64::from(limit)]).await?;
    rows.iter().map(txn_summary).collect()
}

/// One transactional id and its open transaction's partitions.
pub(super) async fn describe_transaction(
    client: &impl GenericClient,
    transactional_id: &str,
) -> Result<Option<TxnDescription>> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {TXN_SUMMARY_COLUMNS} FROM transactional_ids WHERE transactional_id = $1"
        ))
        .await?;
    let Some(row) = client.query_opt(&statement, &[&transactional_id]).await? else {
        return Ok(None);
    };
    let summary = txn_summary(&row)?;
    let statement = client
        .prepare_cached(
            "SELECT topic_id, partition FROM txn_partitions WHERE transactional_id = $1
             ORDER BY topic_id, partition",
        )
        .await?;
    let partitions = client
        .query(&statement, &[&transactional_id])
        .await?
        .iter()
        .map(|row| {
            let id: Vec<u8> = row.try_get(0)?;
            Ok((parse_topic_id(&id)?, to_u32("partition", row.try_get(1)?)?))
        })
        .collect::<Result<_>>()?;
    Ok(Some((summary, partitions)))
}

pub(super) async fn aborted_transactions(
    client: &impl GenericClient,
    topic_id: Uuid,
    partition: u32,
    from_offset: i64,
    to_offset: i64,
) -> Result<Vec<AbortedTransaction>> {
    let statement = client
        .prepare_cached(
            "SELECT producer_id, first_offset, last_offset FROM aborted_txns
             WHERE topic_id = $1 AND partition = $2 AND last_offset >= $3 AND first_offset < $4
             ORDER BY first_offset",
        )
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &topic_id.as_bytes().as_slice(),
                &i64::from(partition),
                &from_offset,
                &to_offset,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AbortedTransaction {
                producer_id: row.try_get(0)?,
                first_offset: row.try_get(1)?,
                last_offset: row.try_get(2)?,
            })
        })
        .collect()
}

/// Every registration, sorted by agent id.
pub(super) async fn list_agents(client: &impl GenericClient) -> Result<Vec<AgentRecord>> {
    let statement = client
        .prepare_cached(
            "SELECT agent_id, epoch, host, port, zone, registered_ms, fenced
             FROM agents ORDER BY agent_id",
        )
        .await?;
    let rows = client.query(&statement, &[]).await?;
    let mut listeners = agent_listeners(client).await?;
    rows.iter()
        .map(|row| {
            let port: i64 = row.try_get(3)?;
            let agent_id: String = row.try_get(0)?;
            Ok(AgentRecord {
                listeners: listeners.remove(&agent_id).unwrap_or_default(),
                agent_id,
                epoch: to_u64("agent epoch", row.try_get(1)?)?,
                host: row.try_get(2)?,
                port: u32::try_from(port).map_err(|_| Error::Corrupt {
                    what: format!("agent port {port}"),
                })?,
                zone: row.try_get(4)?,
                registered_ms: row.try_get(5)?,
                fenced: row.try_get(6)?,
            })
        })
        .collect()
}

/// Every agent's listeners, in configured order.
async fn agent_listeners(
    client: &impl GenericClient,
) -> Result<std::collections::HashMap<String, Vec<strata_catalog_api::proto::ListenerAddress>>> {
    let statement = client
        .prepare_cached(
            "SELECT agent_id, name, host, port FROM agent_listeners ORDER BY agent_id, position",
        )
        .await?;
    let mut out: std::collections::HashMap<_, Vec<_>> = std::collections::HashMap::new();
    for row in client.query(&statement, &[]).await? {
        let port: i64 = row.try_get(3)?;
        out.entry(row.try_get::<_, String>(0)?).or_default().push(
            strata_catalog_api::proto::ListenerAddress {
                name: row.try_get(1)?,
                host: row.try_get(2)?,
                port: u32::try_from(port).map_err(|_| Error::Corrupt {
                    what: format!("listener port {port}"),
                })?,
            },
        );
    }
    Ok(out)
}

/// The live topics named in `names` (all when empty), sorted by name;
/// unknown names are left out.
pub(super) async fn list_topics(
    client: &impl GenericClient,
    names: &[String],
) -> Result<Vec<Topic>> {
    let rows = if names.is_empty() {
        let statement = client
            .prepare_cached(&format!(
                "SELECT {TOPIC_COLUMNS} FROM topics WHERE NOT deleted ORDER BY name COLLATE \"C\""
            ))
            .await?;
        client.query(&statement, &[]).await?
    } else {
        let statement = client
            .prepare_cached(&format!(
                "SELECT {TOPIC_COLUMNS} FROM topics WHERE NOT deleted AND name = ANY($1)
                 ORDER BY name COLLATE \"C\""
            ))
            .await?;
        client.query(&statement, &[&names]).await?
    };
    rows.iter().map(topic_from_row).collect()
}

/// The unexpired producer states of a partition, by producer id.
pub(super) async fn describe_producers(
    client: &impl GenericClient,
    topic_id: Uuid,
    partition: u32,
    live_since_ms: i64,
) -> Result<Vec<ProducerState>> {
    let statement = client
        .prepare_cached(
            "SELECT producer_id, producer_epoch, last_sequence, last_timestamp, coordinator_epoch,
                 current_txn_start_offset
             FROM producer_partitions
             WHERE topic_id = $1 AND partition = $2 AND last_update_ms >= $3
             ORDER BY producer_id",
        )
        .await?;
    let rows = client
        .query(
            &statement,
            &[
                &topic_id.as_bytes().as_slice(),
                &i64::from(partition),
                &live_since_ms,
            ],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(ProducerState {
                producer_id: row.try_get(0)?,
                producer_epoch: row.try_get(1)?,
                last_sequence: row.try_get(2)?,
                last_timestamp: row.try_get(3)?,
                coordinator_epoch: row.try_get(4)?,
                current_txn_start_offset: row.try_get(5)?,
            })
        })
        .collect()
}

/// Dead objects, oldest first.
pub(super) async fn list_dead_objects(
    client: &impl GenericClient,
    dead_before_ms: i64,
    limit: u32,
) -> Result<Vec<DeadObject>> {
    let limit = i64::from(limit.clamp(1, LIST_DEAD_OBJECTS_MAX));
    let statement = client
        .prepare_cached(
            "SELECT object_key, dead_since_ms FROM dead_objects WHERE dead_since_ms <= $1
             ORDER BY dead_since_ms, object_key COLLATE \"C\" LIMIT $2",
        )
        .await?;
    client
        .query(&statement, &[&dead_before_ms, &limit])
        .await?
        .iter()
        .map(|row| {
            Ok(DeadObject {
                object_key: row.try_get(0)?,
                dead_since_ms: row.try_get(1)?,
            })
        })
        .collect()
}

/// The keys some chunk references, in the order given.
pub(super) async fn referenced_objects(
    client: &impl GenericClient,
    object_keys: &[String],
) -> Result<Vec<String>> {
    let statement = client
        .prepare_cached(
            "SELECT k FROM unnest($1::text[]) AS k
             WHERE EXISTS (SELECT 1 FROM chunks c WHERE c.object_key = k)
                OR EXISTS (SELECT 1 FROM dead_objects d WHERE d.object_key = k)",
        )
        .await?;
    let found: std::collections::HashSet<String> = client
        .query(&statement, &[&object_keys])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut seen = std::collections::HashSet::new();
    Ok(object_keys
        .iter()
        .filter(|key| found.contains(key.as_str()) && seen.insert(key.as_str()))
        .cloned()
        .collect())
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

/// Every record, sorted by group id (byte order).
pub(super) async fn load_consumer_groups(
    client: &impl GenericClient,
) -> Result<Vec<ConsumerGroupRecord>> {
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
