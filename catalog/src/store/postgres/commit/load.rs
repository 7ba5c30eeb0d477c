//! Loading a run's rows: four set-based queries, pipelined on the writer's
//! connection. Partition rows are locked (`FOR UPDATE`, in key order) until
//! the transaction ends.

use prost::Message;
use strata_catalog_api::proto::{CommitSegmentRequest, CommitSegmentResponse};

use super::super::rows::Transaction;
use super::super::rows::agents;
use super::super::rows::producers::state_from_row;
use super::{PartitionKey, PartitionRow, RunState, partition_index, run_keys};
use crate::store::commit_plan::TxnMembership;
use crate::store::producer_rules::ProducerRow;
use crate::{Error, Result};

/// Loads every row the run's commits may read.
pub(super) async fn load(
    transaction: &Transaction<'_>,
    requests: &[CommitSegmentRequest],
) -> Result<RunState> {
    let keys = run_keys(requests);
    let segment_ids: Vec<&str> = requests
        .iter()
        .map(|request| request.segment_id.as_str())
        .collect();
    let agent_ids: std::collections::BTreeSet<String> = requests
        .iter()
        .filter(|request| request.agent_epoch > 0)
        .map(|request| request.agent_id.clone())
        .collect();
    let (stored, partitions, producers, states, agents, memberships) = futures::try_join!(
        load_stored(transaction, &segment_ids),
        load_partitions(transaction, keys.partitions.into_iter().collect()),
        load_producers(transaction, keys.producers.into_iter().collect()),
        load_states(transaction, keys.states.into_iter().collect()),
        agents::load_fences(transaction, agent_ids.into_iter().collect()),
        load_memberships(transaction, keys.memberships.into_iter().collect()),
    )?;
    Ok(RunState {
        stored,
        partitions,
        producers,
        states,
        agents,
        memberships,
        ..RunState::default()
    })
}

type Stored = std::collections::HashMap<String, CommitSegmentResponse>;

async fn load_stored(transaction: &Transaction<'_>, segment_ids: &[&str]) -> Result<Stored> {
    let statement = transaction
        .prepare_cached("SELECT segment_id, response FROM segments WHERE segment_id = ANY($1)")
        .await?;
    let rows = transaction.query(&statement, &[&segment_ids]).await?;
    rows.iter()
        .map(|row| {
            let segment_id: String = row.try_get(0)?;
            let blob: &[u8] = row.try_get(1)?;
            let response = CommitSegmentResponse::decode(blob).map_err(|e| Error::Corrupt {
                what: format!("stored response of segment {segment_id}: {e}"),
            })?;
            Ok((segment_id, response))
        })
        .collect()
}

async fn load_partitions(
    transaction: &Transaction<'_>,
    keys: Vec<PartitionKey>,
) -> Result<std::collections::HashMap<PartitionKey, PartitionRow>> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let (topic_ids, indexes): (Vec<Vec<u8>>, Vec<i64>) = keys
        .into_iter()
        .map(|(topic_id, partition)| (topic_id, i64::from(partition)))
        .unzip();
    let statement = transaction
        .prepare_cached(
            "SELECT p.topic_id, p.partition, p.log_start_offset, p.next_offset,
                 p.max_timestamp, p.max_timestamp_offset, p.last_stable_offset
             FROM partitions p
             JOIN unnest($1::bytea[], $2::int8[]) AS k (topic_id, partition)
               ON p.topic_id = k.topic_id AND p.partition = k.partition
             ORDER BY p.topic_id, p.partition
             FOR UPDATE OF p",
        )
        .await?;
    let rows = transaction
        .query(&statement, &[&topic_ids, &indexes])
        .await?;
    rows.iter()
        .map(|row| {
            let key = (row.try_get(0)?, partition_index(row.try_get(1)?)?);
            let partition = PartitionRow {
                log_start_offset: row.try_get(2)?,
                next_offset: row.try_get(3)?,
                max_timestamp: row.try_get(4)?,
                max_timestamp_offset: row.try_get(5)?,
                last_stable_offset: row.try_get(6)?,
            };
            Ok((key, partition))
        })
        .collect()
}

async fn load_producers(
    transaction: &Transaction<'_>,
    producer_ids: Vec<i64>,
) -> Result<std::collections::HashMap<i64, ProducerRow>> {
    if producer_ids.is_empty() {
        return Ok(Default::default());
    }
    let statement = transaction
        .prepare_cached(
            "SELECT producer_id, producer_epoch, last_update_ms, transactional_id IS NOT NULL
             FROM producers WHERE producer_id = ANY($1)",
        )
        .await?;
    let rows = transaction.query(&statement, &[&producer_ids]).await?;
    rows.iter()
        .map(|row| {
            let producer = ProducerRow {
                epoch: row.try_get(1)?,
                last_update_ms: row.try_get(2)?,
                transactional: row.try_get(3)?,
            };
            Ok((row.try_get(0)?, producer))
        })
        .collect()
}

type States = std::collections::HashMap<(i64, PartitionKey), crate::producer::PartitionProducer>;

async fn load_states(
    transaction: &Transaction<'_>,
    keys: Vec<(i64, PartitionKey)>,
) -> Result<States> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let mut producer_ids = Vec::with_capacity(keys.len());
    let mut topic_ids = Vec::with_capacity(keys.len());
    let mut indexes = Vec::with_capacity(keys.len());
    for (producer_id, (topic_id, partition)) in keys {
        producer_ids.push(producer_id);
        topic_ids.push(topic_id);
        indexes.push(i64::from(partition));
    }
    let statement = transaction
        .prepare_cached(
            "SELECT s.producer_id, s.topic_id, s.partition, s.producer_epoch, s.last_sequence,
                 s.last_timestamp, s.last_update_ms, s.coordinator_epoch,
                 s.current_txn_start_offset, s.recent_batches
             FROM producer_partitions s
             JOIN unnest($1::int8[], $2::bytea[], $3::int8[]) AS k (producer_id, topic_id, partition)
               ON s.producer_id = k.producer_id AND s.topic_id = k.topic_id
              AND s.partition = k.partition",
        )
        .await?;
    let rows = transaction
        .query(&statement, &[&producer_ids, &topic_ids, &indexes])
        .await?;
    rows.iter()
        .map(|row| {
            let key = (row.try_get(1)?, partition_index(row.try_get(2)?)?);
            Ok(((row.try_get(0)?, key), state_from_row(row, 3)?))
        })
        .collect()
}

type Memberships = std::collections::HashMap<(i64, PartitionKey), TxnMembership>;

/// The open transactions transactional batches may join (KIP-890
/// verification), read in the commit's transaction.
async fn load_memberships(
    transaction: &Transaction<'_>,
    keys: Vec<(i64, PartitionKey)>,
) -> Result<Memberships> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let mut producer_ids = Vec::with_capacity(keys.len());
    let mut topic_ids = Vec::with_capacity(keys.len());
    let mut indexes = Vec::with_capacity(keys.len());
    for (producer_id, (topic_id, partition)) in keys {
        producer_ids.push(producer_id);
        topic_ids.push(topic_id);
        indexes.push(i64::from(partition));
    }
    let statement = transaction
        .prepare_cached(
            "SELECT k.producer_id, k.topic_id, k.partition, t.producer_epoch,
                 t.state = 'Ongoing',
                 EXISTS (SELECT 1 FROM txn_partitions p
                         WHERE p.transactional_id = t.transactional_id
                           AND p.topic_id = k.topic_id AND p.partition = k.partition)
             FROM unnest($1::int8[], $2::bytea[], $3::int8[]) AS k (producer_id, topic_id, partition)
             JOIN producers r ON r.producer_id = k.producer_id
             JOIN transactional_ids t
               ON t.transactional_id = r.transactional_id AND t.producer_id = r.producer_id",
        )
        .await?;
    let rows = transaction
        .query(&statement, &[&producer_ids, &topic_ids, &indexes])
        .await?;
    rows.iter()
        .map(|row| {
            let key = (row.try_get(1)?, partition_index(row.try_get(2)?)?);
            let membership = TxnMembership {
                producer_epoch: row.try_get(3)?,
                ongoing: row.try_get(4)?,
                added: row.try_get(5)?,
            };
            Ok(((row.try_get(0)?, key), membership))
        })
        .collect()
}
