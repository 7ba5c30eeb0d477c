//! CommitSegment, set-wise: a run of consecutive commits of one batch is
//! loaded with a few queries, applied in memory in request order with the
//! shared commit rules ([`crate::store::commit_plan`]), and written back
//! with a few statements.
//!
//! Each commit works on its own copy of the rows it touches and merges
//! them into the run's state only when it succeeds, so a failed commit
//! leaves no trace (the same guarantee a savepoint per commit gives).

use std::collections::{BTreeSet, HashMap};

use prost::Message;
use strata_catalog_api::proto::{CommitSegmentRequest, CommitSegmentResponse};

use super::rows::WriteContext;
use super::{to_bigint, to_u32};
use crate::Result;
use crate::producer::PartitionProducer;
use crate::store::CommitOutcome;
use crate::store::commit_plan::{self, AgentFence, Changes, CommitSource, StateKey, TxnMembership};
pub(super) use crate::store::commit_plan::{NewChunk, PartitionKey, PartitionRow};
use crate::store::producer_rules::ProducerRow;
use crate::store::rows::SegmentRows;

mod load;
mod save;

/// A segment row to insert.
#[derive(Debug, Clone)]
pub(super) struct SegmentRow {
    pub(super) segment_id: String,
    pub(super) object_key: String,
    pub(super) agent_id: String,
    pub(super) sequence: i64,
    pub(super) response: Vec<u8>,
}

/// The rows of a run: loaded once, changed by each successful commit,
/// written back at the end. Absent keys do not exist in the database.
#[derive(Debug, Default)]
pub(super) struct RunState {
    /// Responses of segments already committed, by segment id.
    pub(super) stored: HashMap<String, CommitSegmentResponse>,
    pub(super) partitions: HashMap<PartitionKey, PartitionRow>,
    /// Raw rows, expired or not.
    pub(super) producers: HashMap<i64, ProducerRow>,
    /// Raw states, expired or not.
    pub(super) states: HashMap<(i64, PartitionKey), PartitionProducer>,
    pub(super) dirty_partitions: BTreeSet<PartitionKey>,
    pub(super) dirty_producers: BTreeSet<i64>,
    pub(super) dirty_states: BTreeSet<(i64, PartitionKey)>,
    pub(super) chunks: Vec<NewChunk>,
    pub(super) segments: Vec<SegmentRow>,
    /// Objects of commits whose batches were all rejected.
    pub(super) dead_objects: Vec<String>,
    /// Registrations of the agents of fenced commits, by agent id.
    pub(super) agents: HashMap<String, AgentFence>,
    /// The transactions transactional batches may join, by producer id
    /// and partition; absent when the producer has no transactional id.
    pub(super) memberships: HashMap<(i64, PartitionKey), TxnMembership>,
}

/// A lone commit is a run of one (the writer applies runs of consecutive
/// commits with [`apply_run`] directly).
impl SegmentRows for WriteContext<'_, '_> {
    async fn commit_segment(&mut self, request: &CommitSegmentRequest) -> Result<CommitOutcome> {
        let mut outcomes = apply_run(self, std::slice::from_ref(request)).await?;
        outcomes.pop().expect("a run answers each of its commits")
    }
}

/// Applies `requests` in order; returns one outcome per request. An `Err`
/// of the whole run means the database failed (the caller rolls back).
pub(super) async fn apply_run(
    context: &mut WriteContext<'_, '_>,
    requests: &[CommitSegmentRequest],
) -> Result<Vec<Result<CommitOutcome>>> {
    let mut state = load::load(context.transaction, requests).await?;
    let outcomes = requests
        .iter()
        .map(|request| apply_one(context, &mut state, request))
        .collect();
    save::save(context.transaction, &state, context.now_ms).await?;
    Ok(outcomes)
}

/// Commits one segment against the run's state (see
/// `CatalogStore::commit_segment`).
fn apply_one(
    context: &mut WriteContext<'_, '_>,
    state: &mut RunState,
    request: &CommitSegmentRequest,
) -> Result<CommitOutcome> {
    if let Some(response) = state.stored.get(&request.segment_id) {
        return Ok(commit_plan::replayed(response.clone()));
    }
    commit_plan::check_age(request, context.now_ms, context.options.max_commit_age_ms)?;
    let live_since_ms = context.now_ms - context.options.producer_id_expiration_ms;
    let applied = commit_plan::apply(&*state, request, context.now_ms, live_since_ms)?;
    let sequence = context.sequence + 1;
    let stored_sequence = to_bigint("commit sequence", sequence)?;
    let (outcome, changes) = applied.finish(sequence);
    let segment = SegmentRow {
        segment_id: request.segment_id.clone(),
        object_key: request.object_key.clone(),
        agent_id: request.agent_id.clone(),
        sequence: stored_sequence,
        response: outcome.response.encode_to_vec(),
    };
    context.sequence = sequence;
    if changes.chunks.is_empty() && !request.object_key.is_empty() {
        // No chunk will ever point into the object: the GC may delete it.
        state.dead_objects.push(request.object_key.clone());
    }
    state.merge(changes, segment, outcome.response.clone());
    Ok(outcome)
}

impl RunState {
    fn merge(&mut self, changes: Changes, segment: SegmentRow, response: CommitSegmentResponse) {
        for (key, row) in changes.partitions {
            self.dirty_partitions.insert(key.clone());
            self.partitions.insert(key, row);
        }
        for (producer_id, row) in changes.producers {
            self.dirty_producers.insert(producer_id);
            self.producers.insert(producer_id, row);
        }
        for (key, state) in changes.states {
            self.dirty_states.insert(key.clone());
            self.states.insert(key, state);
        }
        self.chunks.extend(changes.chunks);
        self.stored.insert(segment.segment_id.clone(), response);
        self.segments.push(segment);
    }
}

/// A commit reads copies of the run's rows; closed chunks are only checked
/// to fit the database's signed 64-bit columns (the run inserts them).
impl CommitSource for &RunState {
    fn partition(&mut self, key: &PartitionKey) -> Result<Option<PartitionRow>> {
        Ok(self.partitions.get(key).copied())
    }

    fn producer(&mut self, producer_id: i64) -> Result<Option<ProducerRow>> {
        Ok(self.producers.get(&producer_id).copied())
    }

    fn partition_state(&mut self, key: &StateKey) -> Result<Option<PartitionProducer>> {
        Ok(self.states.get(key).cloned())
    }

    fn chunk_closed(&mut self, new: &NewChunk) -> Result<()> {
        let chunk = &new.chunk;
        for (field, value) in [
            ("object_size", chunk.object_size),
            ("position", chunk.position),
            ("length", chunk.length),
        ] {
            to_bigint(field, value)?;
        }
        Ok(())
    }

    fn agent(&mut self, agent_id: &str) -> Result<Option<AgentFence>> {
        Ok(self.agents.get(agent_id).copied())
    }

    fn txn_membership(
        &mut self,
        producer_id: i64,
        key: &PartitionKey,
    ) -> Result<Option<TxnMembership>> {
        Ok(self.memberships.get(&(producer_id, key.clone())).copied())
    }
}

/// The keys of the rows a run may read.
#[derive(Debug, Default)]
struct RunKeys {
    partitions: BTreeSet<PartitionKey>,
    producers: BTreeSet<i64>,
    states: BTreeSet<(i64, PartitionKey)>,
    /// (producer, partition) of transactional data batches.
    memberships: BTreeSet<(i64, PartitionKey)>,
}

/// The partitions, producer ids, producer states and transaction
/// memberships a run may read.
fn run_keys(requests: &[CommitSegmentRequest]) -> RunKeys {
    let mut keys = RunKeys::default();
    for write in requests.iter().flat_map(|request| &request.chunks) {
        let key = (write.topic_id.clone(), write.partition);
        for batch in write.batches.iter().filter(|batch| batch.producer_id >= 0) {
            keys.producers.insert(batch.producer_id);
            keys.states.insert((batch.producer_id, key.clone()));
            if batch.transactional && !batch.control {
                keys.memberships.insert((batch.producer_id, key.clone()));
            }
        }
        keys.partitions.insert(key);
    }
    keys
}

/// A stored partition index as a `u32`.
fn partition_index(value: i64) -> Result<u32> {
    to_u32("partition index", value)
}
