//! The row-level reads and writes every store operation is written over.
//!
//! Each store operation (`ops/*.rs`) exists once, as an `async fn` generic
//! over these traits; each backend implements them over its open write
//! transaction with its own SQL and driver (`sqlite/rows/*.rs`,
//! `postgres/rows/*.rs`). The traits are grouped by domain, each extending
//! [`Rows`] (the transaction's clock, sequence and settings), so an
//! operation names what it touches.
//!
//! The methods are plain `async fn`s (no `async_trait`): operations are
//! generic, so every call is statically dispatched and no future is boxed.
//! PostgreSQL's futures wait on the server; SQLite's are always ready (its
//! driver is synchronous) and its writer thread polls an operation once
//! (`sqlite::writer::ready`).

use strata_catalog_api::proto::{
    AbortedTransaction, Chunk, CommitSegmentRequest, ScramCredential, Topic,
};
use uuid::Uuid;

use crate::Result;
use crate::store::commit_plan::{PartitionKey, PartitionRow};
use crate::store::compaction_rules::IndexedChunk;
use crate::store::producer_rules::{ProducerRow, TransactionalRow};
use crate::store::txn_rules::TxnRecord;
use crate::store::{
    AgentRegistration, CatalogLease, CommitOutcome, CommittedOffset, GroupRecord, NewTopic,
};

/// The open write transaction: its clock, commit-stream sequence and
/// settings.
pub(crate) trait Rows {
    /// The transaction's time (the catalog clock, read once per batch).
    fn now_ms(&self) -> i64;

    /// Kafka's `producer.id.expiration.ms`.
    fn producer_id_expiration_ms(&self) -> i64;

    /// The oldest an object may be when its first commit or swap applies
    /// (see `commit_plan::check_age`).
    fn max_commit_age_ms(&self) -> i64;

    /// Takes the next commit-stream sequence (persisted at commit, given
    /// back if the operation fails).
    fn next_sequence(&mut self) -> u64;
}

/// CommitSegment, by each backend's own commit machinery (the hot path:
/// SQLite plans a commit over its rows directly, PostgreSQL set-wise over
/// runs of commits).
pub(crate) trait SegmentRows: Rows {
    /// Commits one segment (see `CatalogStore::commit_segment`).
    async fn commit_segment(&mut self, request: &CommitSegmentRequest) -> Result<CommitOutcome>;
}

/// The agent registry.
pub(crate) trait AgentRows: Rows {
    /// Stores `registration` unfenced under a new epoch, greater than every
    /// epoch handed out before, replacing the agent's earlier registration;
    /// returns the epoch as stored.
    async fn register_agent(&mut self, registration: &AgentRegistration) -> Result<i64>;

    /// Fences the agent's registration of `epoch` if it is still current;
    /// returns whether a registration of `epoch` exists (now fenced).
    async fn fence_agent(&mut self, agent_id: &str, epoch: i64) -> Result<bool>;
}

/// SCRAM credentials.
pub(crate) trait ScramRows: Rows {
    /// Whether `user` has a credential of `mechanism`.
    async fn scram_exists(&mut self, user: &str, mechanism: i32) -> Result<bool>;

    /// Deletes `user`'s credential of `mechanism` (nothing if absent).
    async fn delete_scram(&mut self, user: &str, mechanism: i32) -> Result<()>;

    /// Inserts or replaces a credential.
    async fn upsert_scram(&mut self, credential: &ScramCredential) -> Result<()>;
}

/// Topics and their partitions.
pub(crate) trait TopicRows: Rows {
    /// The live topic named `name`.
    async fn topic_by_name(&mut self, name: &str) -> Result<Option<Topic>>;

    /// The live topic with id `topic_id`.
    async fn topic_by_id(&mut self, topic_id: Uuid) -> Result<Option<Topic>>;

    /// Inserts a topic row (no partitions) with its encoded `configs`,
    /// created now.
    async fn insert_topic(&mut self, topic: &NewTopic, configs: &str) -> Result<()>;

    /// Inserts empty partitions `from..to` of a topic.
    async fn insert_partitions(&mut self, topic_id: Uuid, from: u32, to: u32) -> Result<()>;

    /// Marks a topic deleted (now); its name becomes free.
    async fn mark_topic_deleted(&mut self, topic_id: &[u8]) -> Result<()>;

    /// The distinct objects the topic's chunks point into.
    async fn topic_object_keys(&mut self, topic_id: &[u8]) -> Result<Vec<String>>;

    /// Deletes the topic's rows of `table` (one of
    /// [`TOPIC_DATA_TABLES`](crate::store::topic_rules::TOPIC_DATA_TABLES)).
    async fn delete_topic_rows(&mut self, table: &str, topic_id: &[u8]) -> Result<()>;

    /// Sets a topic's partition count.
    async fn set_partition_count(&mut self, topic_id: &[u8], count: u32) -> Result<()>;

    /// Sets a topic's encoded explicit configs.
    async fn set_topic_configs(&mut self, topic_id: &[u8], configs: &str) -> Result<()>;
}

/// Chunks and the objects they point into.
pub(crate) trait ChunkRows: Rows {
    /// Makes every object of `object_keys` that no chunk references dead
    /// since now (an object already dead keeps its time; marker chunks'
    /// empty keys are skipped).
    async fn bury_unreferenced(&mut self, object_keys: &[String]) -> Result<()>;

    /// A partition's row, locked for the rest of the transaction where the
    /// backend has row locks; `None` if it does not exist.
    async fn partition(&mut self, key: &PartitionKey) -> Result<Option<PartitionRow>>;

    /// Writes back a partition's offsets, last stable offset and greatest
    /// timestamp (not its log start offset).
    async fn update_partition(&mut self, key: &PartitionKey, row: &PartitionRow) -> Result<()>;

    /// Inserts a chunk row (any format, markers included).
    async fn insert_chunk(&mut self, chunk: &Chunk, running_max_timestamp: i64) -> Result<()>;

    /// The partition's chunks whose base offset is in `from..to`, in
    /// offset order.
    async fn chunks_in_range(
        &mut self,
        key: &PartitionKey,
        from: i64,
        to: i64,
    ) -> Result<Vec<IndexedChunk>>;

    /// Deletes the partition's chunks whose base offset is in `from..to`.
    async fn delete_chunks_in_range(
        &mut self,
        key: &PartitionKey,
        from: i64,
        to: i64,
    ) -> Result<()>;

    /// Sets the partition's `max_timestamp_offset`.
    async fn set_max_timestamp_offset(&mut self, key: &PartitionKey, offset: i64) -> Result<()>;

    /// Deletes the partition's chunks with `end_offset <= log_start`;
    /// returns the distinct objects they pointed into.
    async fn delete_chunks_below(
        &mut self,
        key: &PartitionKey,
        log_start: i64,
    ) -> Result<Vec<String>>;

    /// Recomputes the running max timestamps of the partition's chunks
    /// from the first one (with [`RunningMaxRepair`]), until they agree
    /// with the stored values.
    ///
    /// [`RunningMaxRepair`]: crate::store::compaction_rules::RunningMaxRepair
    async fn repair_running_max(&mut self, key: &PartitionKey) -> Result<()>;

    /// The partition's greatest timestamp and the first chunk holding it,
    /// `(-1, -1)` without chunks. Both steps use an index: the last
    /// chunk's running max is the greatest timestamp, and the first chunk
    /// whose running max reaches it is the first holding it.
    async fn greatest_timestamp(&mut self, key: &PartitionKey) -> Result<(i64, i64)>;

    /// Sets the partition's log start offset and greatest timestamp.
    async fn set_log_start(
        &mut self,
        key: &PartitionKey,
        log_start: i64,
        max_timestamp: i64,
        max_timestamp_offset: i64,
    ) -> Result<()>;

    /// Removes `object_keys` from the dead objects, and the segment commit
    /// records of those objects.
    async fn forget_dead_objects(&mut self, object_keys: &[String]) -> Result<()>;
}

/// Producer ids, epochs and transactional ids.
pub(crate) trait ProducerRows: Rows {
    /// Takes a new producer id, unique across restarts.
    async fn allocate_producer_id(&mut self) -> Result<i64>;

    /// The producer row of `producer_id`, expired or not.
    async fn producer(&mut self, producer_id: i64) -> Result<Option<ProducerRow>>;

    /// Writes a producer row (insert or replace).
    async fn put_producer(
        &mut self,
        producer_id: i64,
        row: &ProducerRow,
        transactional_id: Option<&str>,
    ) -> Result<()>;

    /// The transactional id's record with its transaction state, locked
    /// for the rest of the transaction where the backend has row locks.
    async fn transactional(&mut self, transactional_id: &str) -> Result<Option<TxnRecord>>;

    /// Writes a transactional id's record (insert or replace) at `row`,
    /// with no transaction open, updated now.
    async fn put_transactional(
        &mut self,
        transactional_id: &str,
        row: &TransactionalRow,
        transaction_timeout_ms: i32,
    ) -> Result<()>;

    /// Moves an existing transactional id to `row`'s producer epoch and
    /// last producer.
    async fn set_transactional_producer(
        &mut self,
        transactional_id: &str,
        row: &TransactionalRow,
    ) -> Result<()>;

    /// Writes an existing transactional id's transaction state (its
    /// producer is written by InitProducerId), updated now.
    async fn set_txn_state(&mut self, transactional_id: &str, record: &TxnRecord) -> Result<()>;

    /// Deletes producer state untouched since `live_since_ms`: per-partition
    /// states, and idempotent (non-transactional) producer ids; the number
    /// of rows deleted.
    async fn delete_expired_producers(&mut self, live_since_ms: i64) -> Result<u64>;
}

/// The transaction coordinator's rows: the open transactions' partitions
/// and pending offsets, and what their markers touch.
pub(crate) trait TxnRows: ProducerRows + ChunkRows {
    /// Whether the partition exists.
    async fn partition_exists(&mut self, topic_id: Uuid, partition: u32) -> Result<bool>;

    /// Adds a partition to the open transaction of `transactional_id`
    /// (idempotent).
    async fn add_txn_partition(
        &mut self,
        transactional_id: &str,
        topic_id: Uuid,
        partition: u32,
    ) -> Result<()>;

    /// Holds an offset for the group until the transaction ends (replacing
    /// one held for the same partition).
    async fn put_txn_offset(
        &mut self,
        transactional_id: &str,
        group_id: &str,
        offset: &CommittedOffset,
    ) -> Result<()>;

    /// The partitions of the open transaction, by topic id then partition.
    async fn txn_partitions(&mut self, transactional_id: &str) -> Result<Vec<PartitionKey>>;

    /// The first offset of `producer_id`'s open transaction in the
    /// partition (`current_txn_start_offset`, -1 when none), if the
    /// producer has state there.
    async fn txn_start_offset(
        &mut self,
        producer_id: i64,
        key: &PartitionKey,
    ) -> Result<Option<i64>>;

    /// The earliest first offset of the other producers' open
    /// transactions in the partition.
    async fn other_open_min(&mut self, key: &PartitionKey, producer_id: i64)
    -> Result<Option<i64>>;

    /// Marks `producer_id`'s transaction in the partition closed.
    async fn clear_txn_start(&mut self, producer_id: i64, key: &PartitionKey) -> Result<()>;

    /// Records an aborted range of the partition (idempotent).
    async fn insert_aborted(
        &mut self,
        key: &PartitionKey,
        aborted: &AbortedTransaction,
    ) -> Result<()>;

    /// Applies the transaction's held offsets to their groups, committed
    /// now (offsets of partitions deleted meanwhile are left out).
    async fn apply_txn_offsets(&mut self, transactional_id: &str) -> Result<()>;

    /// Forgets the transaction's partitions and held offsets.
    async fn forget_txn(&mut self, transactional_id: &str) -> Result<()>;

    /// Up to `limit` transactional ids whose open transaction is older than
    /// its timeout now, oldest first.
    async fn expired_transactions(&mut self, limit: u32) -> Result<Vec<String>>;

    /// The transactional id whose producer row is `producer_id`, if any
    /// (WriteTxnMarkers names a producer, not a transactional id).
    async fn transactional_id_of(&mut self, producer_id: i64) -> Result<Option<String>>;
}

/// Consumer groups: committed offsets and group records of either
/// protocol (a group id has at most one record).
pub(crate) trait GroupRows: Rows {
    /// Whether the partition exists, share-locked against deletion for the
    /// rest of the transaction where the backend has row locks.
    async fn partition_exists_for_share(&mut self, topic_id: Uuid, partition: u32) -> Result<bool>;

    /// Stores a group's committed offset, replacing the partition's earlier
    /// one.
    async fn put_group_offset(&mut self, group_id: &str, offset: &CommittedOffset) -> Result<()>;

    /// Deletes the group's offsets of `partitions` (unknown ones ignored).
    async fn delete_group_offsets(
        &mut self,
        group_id: &str,
        partitions: &[(Uuid, u32)],
    ) -> Result<()>;

    /// Deletes all of the group's offsets.
    async fn delete_all_group_offsets(&mut self, group_id: &str) -> Result<()>;

    /// Deletes the group's classic record and members, if any.
    async fn delete_classic_group(&mut self, group_id: &str) -> Result<()>;

    /// Deletes the group's KIP-848 record, if any.
    async fn delete_consumer_group(&mut self, group_id: &str) -> Result<()>;

    /// Inserts a classic record with its members in order, saved now (the
    /// group has no record).
    async fn insert_classic_group(&mut self, record: &GroupRecord) -> Result<()>;

    /// Stores the group's KIP-848 record, encoded in the stored format
    /// [`FORMAT`](crate::store::consumer_group_codec::FORMAT), saved now
    /// (insert or replace).
    async fn put_consumer_group(&mut self, group_id: &str, blob: &[u8]) -> Result<()>;
}

/// Every row trait: what a backend's write transaction implements.
pub(crate) trait StoreRows:
    SegmentRows + AgentRows + TopicRows + TxnRows + GroupRows + LeaseRows + ScramRows
{
}

impl<R: SegmentRows + AgentRows + TopicRows + TxnRows + GroupRows + LeaseRows + ScramRows> StoreRows
    for R
{
}

/// The catalog lease (one row) and the writer's fencing check.
pub(crate) trait LeaseRows: Rows {
    /// The lease, if anyone ever held it.
    async fn read_lease(&mut self) -> Result<Option<CatalogLease>>;

    /// Stores the lease (inserting the row the first time); later writes
    /// of the same transaction are checked against its term.
    async fn write_lease(&mut self, lease: &CatalogLease) -> Result<()>;

    /// Fails with `NotActive` when this store is fenced by a term that is
    /// not the database's (read once when the transaction began, under the
    /// lock that serializes writers).
    fn check_term(&self) -> Result<()>;
}
