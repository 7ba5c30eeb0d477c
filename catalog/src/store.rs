//! The [`CatalogStore`] trait: the catalog's persistence, one method per
//! domain operation, and the small domain types it speaks.
//!
//! Requests and results reuse the protobuf types where they fit (a
//! [`CommitSegmentRequest`] is stored as the agent sent it); the service in
//! front of a store validates inputs and turns [`Error`](crate::Error)s into
//! Kafka error codes.

mod command;
mod commit_plan;
mod compaction_rules;
mod consumer_group_codec;
mod lease_rules;
mod migrations;
mod ops;
pub(crate) mod postgres;
mod producer_rules;
mod rows;
pub(crate) mod sqlite;
mod topic_rules;
mod txn_rules;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use strata_catalog_api::proto::{
    AbortedTransaction, AlterScramCredentialsRequest, AlterScramResult, Chunk, CommitEvent,
    CommitSegmentRequest, CommitSegmentResponse, InitProducerIdRequest, ListenerAddress,
    ProducerState, ReplaceChunksRequest, ScramCredential, Topic, TxnProducer,
};
use uuid::Uuid;

use crate::Result;

/// The catalog's clock (topic creation times, producer-state expiry,
/// leases): the workspace's one `Clock`, injected so tests control time.
pub use strata_catalog_api::clock::{Clock, SystemClock};

/// Default of the stores' `max_commit_age_ms`: 5 minutes, ten default
/// produce timeouts. An object's first commit (or swap) must apply within
/// this of its creation; the orphan sweep waits twice this.
pub const MAX_COMMIT_AGE_MS_DEFAULT: i64 = 300_000;
/// The catalog lease: which catalog is active, under which term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogLease {
    /// The holder's id (unique per catalog process start).
    pub holder: String,
    /// Where the holder serves gRPC (`http://host:port`), so standbys can
    /// name the active catalog in their answers.
    pub address: String,
    /// The term: 1 for the first holder, one more at every change of
    /// holder. Every writing transaction checks it (the fencing token).
    pub term: u64,
    /// When the lease runs out (the catalog clock, ms); another catalog
    /// may take it from then on.
    pub expires_ms: i64,
}

/// A catalog's claim on the lease (see [`CatalogStore::claim_lease`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseClaim {
    /// The claimant's id.
    pub holder: String,
    /// The claimant's gRPC address.
    pub address: String,
    /// How long the lease lasts from now.
    pub lease_ms: i64,
    /// Give the lease up (a clean shutdown) instead of taking or renewing
    /// it: it expires now, so a standby takes over at once.
    pub release: bool,
}

/// The result of a [`CatalogStore::claim_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    /// Whether the claimant holds the lease now (and the store writes
    /// under its term).
    pub held: bool,
    /// The lease as stored after the call; `None` if nobody ever held it.
    pub lease: Option<CatalogLease>,
}

/// The term a store writes under: every writing transaction checks it
/// against the lease in the database. Shared by a store and its writer.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeaseFence(Arc<AtomicU64>);

impl LeaseFence {
    /// No lease in use: writes are not fenced (`strata dev`, tests). A
    /// store that ever claims the lease is fenced from then on.
    pub(crate) const UNFENCED: u64 = 0;
    /// The store claimed the lease and does not hold it: every write fails.
    pub(crate) const NOT_HELD: u64 = u64::MAX;

    /// The term writes must match ([`Self::UNFENCED`], [`Self::NOT_HELD`]
    /// or a term).
    pub(crate) fn term(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    pub(crate) fn set(&self, term: u64) {
        self.0.store(term, Ordering::Release);
    }
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// The new topic's id, chosen by the caller (a random UUID).
    pub topic_id: Uuid,
    /// The topic name, already validated.
    pub name: String,
    /// At least 1.
    pub partition_count: u32,
    /// The explicitly set configs, already validated.
    pub configs: BTreeMap<String, String>,
}

/// Names a topic by name or by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicRef {
    /// By name.
    Name(String),
    /// By id.
    Id(Uuid),
}

/// A change to a topic's explicit configs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigChange {
    /// Keys to set (replacing any current value).
    pub set: BTreeMap<String, String>,
    /// Keys to remove (back to the default).
    pub delete: Vec<String>,
    /// Drop every current key first, so the configs become exactly `set`.
    pub replace_all: bool,
}

/// The result of deleting a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct DeletedTopic {
    /// The topic as it was.
    pub topic: Topic,
    /// The commit-stream event that invalidates its partitions.
    pub event: CommitEvent,
}

/// The result of a [`CatalogStore::commit_segment`].
#[derive(Debug, Clone, PartialEq)]
pub struct CommitOutcome {
    /// The answer for the agent.
    pub response: CommitSegmentResponse,
    /// The event to publish on the commit stream; `None` when the commit
    /// was a retry of a segment already committed (its event was published
    /// the first time).
    pub event: Option<CommitEvent>,
}

/// The result of a [`CatalogStore::replace_chunks`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReplaceOutcome {
    /// The partition's chunks in the range were not the expected ones;
    /// nothing changed.
    pub conflict: bool,
    /// The swap's commit-stream sequence; 0 for a conflict or a replay of
    /// a swap already applied.
    pub sequence: u64,
    /// The event to publish (the partition invalidated); `None` for a
    /// conflict or a replay.
    pub event: Option<CommitEvent>,
}

/// The result of a [`CatalogStore::delete_records`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteRecordsOutcome {
    /// The log start offset after the call.
    pub low_watermark: i64,
    /// The event to publish (new offsets, partition invalidated); `None`
    /// when the log start did not move.
    pub event: Option<CommitEvent>,
}

/// An object no chunk references any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadObject {
    /// The object's key.
    pub object_key: String,
    /// When its last chunk went (the catalog's clock).
    pub dead_since_ms: i64,
}

/// A partition's offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionOffsets {
    /// The first offset still readable.
    pub log_start_offset: i64,
    /// The next offset to be assigned.
    pub high_watermark: i64,
    /// The first offset of the earliest open transaction, else the high
    /// watermark.
    pub last_stable_offset: i64,
    /// The greatest max timestamp of any chunk, -1 when empty.
    pub max_timestamp: i64,
    /// The first chunk holding `max_timestamp`.
    pub max_timestamp_chunk: Option<Chunk>,
}

/// The chunks of a partition from some offset on.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkLookup {
    /// In offset order, starting with the chunk that holds the requested
    /// offset (or the first after it).
    pub chunks: Vec<Chunk>,
    /// The partition's log start offset.
    pub log_start_offset: i64,
    /// The partition's high watermark.
    pub high_watermark: i64,
}

/// A producer id and epoch handed out by [`CatalogStore::init_producer_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdAndEpoch {
    /// The producer id.
    pub producer_id: i64,
    /// The epoch.
    pub producer_epoch: i32,
}

/// The result of a [`CatalogStore::init_producer_id`].
#[derive(Debug, Clone, PartialEq)]
pub struct InitProducerOutcome {
    /// The producer id and epoch handed out.
    pub granted: ProducerIdAndEpoch,
    /// The markers of the transaction the call aborted (a new instance of
    /// a transactional producer aborts its predecessor's open
    /// transaction), to publish.
    pub event: Option<CommitEvent>,
}

/// A transaction coordinator call (see [`CatalogStore::transaction`]).
#[derive(Debug, Clone, PartialEq)]
pub enum TxnRequest {
    /// AddPartitionsToTxn: the partitions join the transaction (opening
    /// it).
    AddPartitions(Vec<(Uuid, u32)>),
    /// AddPartitionsToTxn v4+ `verify_only` (KIP-890): adds nothing; per
    /// partition NONE if the open transaction holds it, else
    /// INVALID_TXN_STATE.
    VerifyPartitions(Vec<(Uuid, u32)>),
    /// AddOffsetsToTxn: the group's offsets will be part of the
    /// transaction (opening it).
    AddOffsets {
        /// The consumer group.
        group_id: String,
    },
    /// TxnOffsetCommit: offsets held until the transaction ends.
    CommitOffsets {
        /// The consumer group.
        group_id: String,
        /// The offsets (`commit_timestamp_ms` is ignored: the commit's
        /// time is when the transaction commits).
        offsets: Vec<CommittedOffset>,
        /// TxnOffsetCommit v5 (KIP-890 part 2): the group joins the
        /// transaction implicitly, opening it if needed.
        implicit_add: bool,
    },
    /// EndTxn: commit or abort.
    End {
        /// Commit when true, abort when false.
        commit: bool,
        /// EndTxn v5 (KIP-890 part 2): bump the producer's epoch as the
        /// transaction ends; a retry at the previous epoch is answered
        /// with the current producer.
        bump_epoch: bool,
    },
    /// An operator's abort of the transactional id's open transaction
    /// (`strata txn abort`): no caller check (only the transactional id
    /// of the producer is read); markers to every partition, epoch bumped.
    AdminAbort,
    /// Kafka's WriteTxnMarkers for the producer id and epoch of the call
    /// (its transactional id is ignored): the producer's open transaction
    /// ends with `commit`, its markers also go to each listed partition
    /// where the producer still has an open transaction (a hanging one).
    WriteMarkers {
        /// COMMIT markers when true, ABORT when false.
        commit: bool,
        /// The partitions to write markers to.
        partitions: Vec<(Uuid, u32)>,
    },
}

/// The result of a [`CatalogStore::transaction`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TxnOutcome {
    /// For AddPartitions and CommitOffsets, one Kafka error code per
    /// partition in request order; empty otherwise.
    pub partition_codes: Vec<i16>,
    /// The markers written (EndTxn), to publish.
    pub event: Option<CommitEvent>,
    /// After an epoch bump (EndTxn v5, an admin abort): the producer id
    /// and epoch the transactional id has now.
    pub producer: Option<ProducerIdAndEpoch>,
}

/// A transactional id and the partitions of its open transaction
/// (DescribeTransactions).
pub type TxnDescription = (TxnSummary, Vec<(Uuid, u32)>);

/// A transactional id as the transaction admin APIs show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnSummary {
    /// The transactional id.
    pub transactional_id: String,
    /// Its current producer id.
    pub producer_id: i64,
    /// Its current producer epoch.
    pub producer_epoch: i32,
    /// Kafka's state name (`Empty`, `Ongoing`, `CompleteCommit`,
    /// `CompleteAbort`).
    pub state: String,
    /// The producer's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// When the open transaction began (catalog clock), -1 when none.
    pub started_ms: i64,
}

/// The result of a [`CatalogStore::abort_expired_transactions`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExpiredAborts {
    /// The transactional ids whose transactions were aborted.
    pub transactional_ids: Vec<String>,
    /// Their markers, to publish (`None` when nothing expired).
    pub event: Option<CommitEvent>,
}

/// A consumer group's committed offset for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The topic's id (offsets follow the topic's id, not its name, so a
    /// recreated topic starts without offsets).
    pub topic_id: Uuid,
    /// The partition.
    pub partition: u32,
    /// The committed offset (the next record the group will read).
    pub offset: i64,
    /// The leader epoch of the committed record, -1 when unknown.
    pub leader_epoch: i32,
    /// The client's metadata string.
    pub metadata: String,
    /// When the catalog accepted the commit (its clock).
    pub commit_timestamp_ms: i64,
}

/// One protocol a classic-group member supports, with its metadata (for
/// consumers, the subscription).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberProtocol {
    /// The protocol name (for consumers, the assignor: `range`,
    /// `cooperative-sticky`, ...).
    pub name: String,
    /// Opaque to the catalog.
    pub metadata: Vec<u8>,
}

/// A member of a classic group as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupMemberRecord {
    /// The member id the coordinator handed out.
    pub member_id: String,
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
    /// The client id of its last JoinGroup.
    pub client_id: String,
    /// The client address of its last JoinGroup.
    pub client_host: String,
    /// Its session timeout.
    pub session_timeout_ms: i32,
    /// Its rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// The protocols it supports, most preferred first.
    pub protocols: Vec<MemberProtocol>,
    /// Its assignment in the record's generation (opaque).
    pub assignment: Vec<u8>,
}

/// A classic consumer group as persisted: saved when a generation
/// completes and when the group empties, loaded when the catalog starts.
/// Timers are not persisted; they restart with the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupRecord {
    /// The group id.
    pub group_id: String,
    /// The protocol type (`consumer`, `connect`, ...), empty when unknown.
    pub protocol_type: String,
    /// The selected protocol, empty when the group has no members.
    pub protocol_name: String,
    /// The generation.
    pub generation_id: i32,
    /// The leader's member id, empty when the group has no members.
    pub leader_id: String,
    /// The members of the generation.
    pub members: Vec<GroupMemberRecord>,
}

/// The partitions of one topic, in a KIP-848 consumer group record.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPartitionsRecord {
    /// The topic's id.
    pub topic_id: Uuid,
    /// Partition indexes, ascending, without duplicates.
    pub partitions: Vec<i32>,
}

/// Where a KIP-848 member is on its way to its target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsumerMemberState {
    /// At the assignment epoch with all of its target partitions.
    #[default]
    Stable,
    /// Must revoke its `pending_revocation` before it may advance.
    UnrevokedPartitions,
    /// At the assignment epoch, waiting for other members to release some
    /// of its target partitions.
    UnreleasedPartitions,
}

/// A member of a KIP-848 consumer group as persisted. Its session and
/// revocation timers are not persisted: they restart with the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerMemberRecord {
    /// The member id (client-generated from ConsumerGroupHeartbeat v1 on).
    pub member_id: String,
    /// The static member's `group.instance.id`.
    pub instance_id: Option<String>,
    /// The member's rack.
    pub rack_id: Option<String>,
    /// Its rebalance timeout, -1 when never sent.
    pub rebalance_timeout_ms: i32,
    /// The topic names it subscribes to, sorted.
    pub subscribed_topic_names: Vec<String>,
    /// The server-side assignor it asked for (`uniform`, `range`).
    pub server_assignor: Option<String>,
    /// Its current member epoch.
    pub member_epoch: i32,
    /// The epoch before `member_epoch` (a heartbeat whose response was lost
    /// may still carry it).
    pub previous_member_epoch: i32,
    /// Its reconciliation state.
    pub state: ConsumerMemberState,
    /// The partitions it may use now, by topic id ascending.
    pub assigned: Vec<TopicPartitionsRecord>,
    /// The partitions it must give up and still holds.
    pub pending_revocation: Vec<TopicPartitionsRecord>,
    /// Its target assignment for the group's assignment epoch.
    pub target: Vec<TopicPartitionsRecord>,
    /// A static member that left with epoch -2 and may come back.
    pub static_left: bool,
}

/// A subscribed topic as a KIP-848 group last saw it (a change of it bumps
/// the group epoch).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribedTopicRecord {
    /// The topic name.
    pub name: String,
    /// The topic's id.
    pub topic_id: Uuid,
    /// Its partition count.
    pub partition_count: u32,
}

/// A KIP-848 consumer group as persisted: saved whenever its group epoch,
/// membership, or a member's epoch, assignment or subscription changes,
/// loaded when the catalog starts. A group id has at most one record, of
/// one protocol: saving a consumer-group record replaces a classic
/// [`GroupRecord`] of the same id and vice versa.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerGroupRecord {
    /// The group id.
    pub group_id: String,
    /// The group epoch.
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// The assignor that computed the target (`uniform`, `range`).
    pub assignor: String,
    /// The subscribed topics that existed, sorted by name.
    pub subscribed_topics: Vec<SubscribedTopicRecord>,
    /// The members, sorted by member id; empty for an empty group.
    pub members: Vec<ConsumerMemberRecord>,
}

// ---------- agents ----------

/// An agent asking to join the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRegistration {
    /// The agent's id (stable across its restarts).
    pub agent_id: String,
    /// The host Kafka clients are told to connect to.
    pub host: String,
    /// The port Kafka clients are told to connect to.
    pub port: u32,
    /// Its availability zone, empty for none.
    pub zone: String,
    /// Its advertised address per listener, in configured order.
    pub listeners: Vec<ListenerAddress>,
}

/// An agent's registration as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// The agent's id.
    pub agent_id: String,
    /// The epoch of its latest registration: unique across every agent and
    /// every registration, and increasing.
    pub epoch: u64,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u32,
    /// Availability zone, empty for none.
    pub zone: String,
    /// When it registered (catalog clock).
    pub registered_ms: i64,
    /// Set once its lease expired: its commits fail until it registers
    /// again.
    pub fenced: bool,
    /// Advertised address per listener, in configured order.
    pub listeners: Vec<ListenerAddress>,
}

/// The catalog's persistence.
///
/// Every mutation is atomic (all of it happens or none of it), and either
/// idempotent or fenced, so a retried or zombie call cannot corrupt the
/// catalog. Reads observe every mutation that returned before they started.
/// Domain failures (unknown topic, fenced producer) are `Err`s with a
/// [`kafka_error_code`](crate::Error::kafka_error_code); per-batch outcomes
/// of a commit are data in its response.
#[async_trait::async_trait]
pub trait CatalogStore: Debug + Send + Sync + 'static {
    /// Creates a topic with empty partitions `0..partition_count`.
    ///
    /// Atomic. Fails with `TopicAlreadyExists` if a live topic has the name
    /// (so a retry after success fails too: check with `list_topics`).
    async fn create_topic(&self, topic: NewTopic) -> Result<Topic>;

    /// Deletes a topic and its partitions, chunks and producer state.
    ///
    /// Atomic; takes the next commit-stream sequence for the returned
    /// event. Fails with `UnknownTopic`/`UnknownTopicId` if it does not
    /// exist (so a retry after success fails that way).
    async fn delete_topic(&self, topic: TopicRef) -> Result<DeletedTopic>;

    /// Raises a topic's partition count, adding empty partitions.
    ///
    /// Atomic. Fails with `InvalidPartitions` unless `new_count` is greater
    /// than the current count (so a retry after success fails that way).
    async fn create_partitions(&self, name: &str, new_count: u32) -> Result<Topic>;

    /// The live topics named in `names` (all when empty), sorted by name;
    /// unknown names are left out.
    async fn list_topics(&self, names: &[String]) -> Result<Vec<Topic>>;

    /// Applies `change` to a topic's explicit configs. Atomic and
    /// idempotent (applying it twice gives the same configs).
    async fn alter_topic_configs(&self, name: &str, change: ConfigChange) -> Result<Topic>;

    /// Commits a segment: assigns offsets to its accepted batches and
    /// records the chunks, producer states and partition offsets.
    ///
    /// One atomic step for the whole segment, with every producer check in
    /// it. Idempotent by `segment_id`: a retry returns the response stored
    /// the first time (same offsets, same sequence) and appends nothing.
    /// Batches are checked in request order; rejected batches get a Kafka
    /// error code in the response and take no offsets. A commit that gets a
    /// response (retries excepted) takes the next commit-stream sequence.
    async fn commit_segment(&self, request: CommitSegmentRequest) -> Result<CommitOutcome>;

    /// Up to `max_chunks` chunks of a partition holding offsets >= `offset`,
    /// in offset order. Fails with `UnknownPartition` if it does not exist.
    async fn lookup_chunks(
        &self,
        topic_id: Uuid,
        partition: u32,
        offset: i64,
        max_chunks: u32,
    ) -> Result<ChunkLookup>;

    /// A partition's offsets. Fails with `UnknownPartition` if it does not
    /// exist.
    async fn partition_offsets(&self, topic_id: Uuid, partition: u32) -> Result<PartitionOffsets>;

    /// The first chunk (by offset) whose max timestamp is >= `timestamp`.
    async fn find_chunk_by_timestamp(
        &self,
        topic_id: Uuid,
        partition: u32,
        timestamp: i64,
    ) -> Result<Option<Chunk>>;

    /// Hands out a producer id and epoch (Kafka's InitProducerId).
    ///
    /// Atomic. `producer_id == -1`: a new id (unique across restarts) with
    /// epoch 0, or for a transactional id its current id with the epoch
    /// bumped. An existing id with its current epoch: the epoch bumped
    /// (KIP-360), or a new id when the epoch is exhausted. A stale epoch
    /// fails with `InvalidProducerEpoch`, or `ProducerFenced` for a
    /// transactional id. A transactional id with an open transaction has
    /// it aborted first, in the same atomic step (ABORT markers carrying
    /// the new epoch, in the returned event).
    async fn init_producer_id(&self, request: InitProducerIdRequest)
    -> Result<InitProducerOutcome>;

    /// A transaction coordinator call of `producer` (Kafka's
    /// AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn).
    ///
    /// Atomic. The caller must be the transactional id's current producer
    /// (`InvalidProducerIdMapping` for an unknown id or another producer
    /// id, `ProducerFenced` for another epoch). AddPartitions with an
    /// unknown partition changes nothing and answers its code per
    /// partition. CommitOffsets needs an open transaction
    /// (`InvalidTxnState`). End with an open transaction appends one
    /// marker chunk per partition of the transaction (taking the next
    /// offset; the last stable offset moves to the earliest transaction
    /// still open), records aborted ranges (aborts), applies the pending
    /// offsets to the groups (commits) or drops them (aborts), and takes
    /// the next commit-stream sequence for the event; repeating the same
    /// End succeeds without changes (a retry), anything else is
    /// `InvalidTxnState`.
    async fn transaction(&self, producer: TxnProducer, request: TxnRequest) -> Result<TxnOutcome>;

    /// Aborts every open transaction older than its timeout (on the
    /// store's clock) with the producer's epoch bumped, so the timed-out
    /// producer is fenced: one atomic step, one event for all markers.
    async fn abort_expired_transactions(&self) -> Result<ExpiredAborts>;

    /// Up to `limit` transactional ids, by id (ListTransactions).
    async fn list_transactions(&self, limit: u32) -> Result<Vec<TxnSummary>>;

    /// One transactional id and the partitions of its open transaction
    /// (DescribeTransactions); `None` if unknown.
    async fn describe_transaction(&self, transactional_id: &str) -> Result<Option<TxnDescription>>;

    /// The aborted transactions of a partition whose ABORT marker is at or
    /// after `from_offset` and whose first offset is before `to_offset`,
    /// by first offset (Fetch with READ_COMMITTED).
    async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition: u32,
        from_offset: i64,
        to_offset: i64,
    ) -> Result<Vec<AbortedTransaction>>;

    /// The live (unexpired) producer states of a partition, by producer id.
    async fn describe_producers(
        &self,
        topic_id: Uuid,
        partition: u32,
    ) -> Result<Vec<ProducerState>>;

    /// The sequence of the last commit-stream event (0 when none), for a
    /// service starting its stream.
    async fn last_commit_sequence(&self) -> Result<u64>;

    /// Stores a consumer group's committed offsets, replacing the earlier
    /// offsets of the same partitions (OffsetCommit).
    ///
    /// Atomic: all of `offsets` or none. Fails with `UnknownPartition` if a
    /// partition (or its topic) does not exist, for example because the
    /// topic was deleted after the caller checked it. Idempotent.
    async fn commit_offsets(&self, group_id: &str, offsets: Vec<CommittedOffset>) -> Result<()>;

    /// A group's committed offsets on live topics, sorted by topic id then
    /// partition; empty for an unknown group. Offsets of a deleted topic
    /// are never returned.
    async fn fetch_offsets(&self, group_id: &str) -> Result<Vec<CommittedOffset>>;

    /// Removes a group's committed offsets of `partitions` (OffsetDelete).
    /// Atomic and idempotent; unknown partitions are ignored.
    async fn delete_offsets(&self, group_id: &str, partitions: Vec<(Uuid, u32)>) -> Result<()>;

    /// Saves a classic group's record, replacing any earlier record of the
    /// group (classic with its members, or KIP-848). Atomic and idempotent.
    async fn save_group(&self, record: GroupRecord) -> Result<()>;

    /// Saves a KIP-848 consumer group's record, replacing any earlier
    /// record of the group (KIP-848, or classic with its members). Offsets
    /// are untouched. Atomic and idempotent.
    async fn save_consumer_group(&self, record: ConsumerGroupRecord) -> Result<()>;

    /// Deletes a group: its record (of either protocol) and all its
    /// committed offsets, in one atomic step (DeleteGroups). Idempotent:
    /// deleting an unknown group succeeds.
    async fn delete_group(&self, group_id: &str) -> Result<()>;

    /// Every saved classic group record (members in the order saved), plus
    /// an empty record (generation 0, no members, empty protocol type) for
    /// each group that has committed offsets but no record of either
    /// protocol; sorted by group id.
    async fn load_groups(&self) -> Result<Vec<GroupRecord>>;

    /// Every saved KIP-848 consumer group record, exactly as saved; sorted
    /// by group id. Fails with `Corrupt` if a record does not decode (for
    /// example one written by a newer build in an unknown format).
    async fn load_consumer_groups(&self) -> Result<Vec<ConsumerGroupRecord>>;

    /// Swaps a contiguous run of a partition's chunks for one chunk (the
    /// compactor's atomic swap; see `Catalog.ReplaceChunks` in the proto).
    ///
    /// Atomic compare-and-swap: the chunks whose base offset lies in the
    /// expected range must be exactly the expected ones, else the outcome
    /// is a conflict and nothing changes. On success the replacement keeps
    /// the replaced chunks' greatest max timestamp (and their running max,
    /// so timestamp lookups are unchanged), objects left without a chunk
    /// become dead at the clock's now, and the swap takes the next
    /// commit-stream sequence for an event invalidating the partition.
    /// Idempotent: a replay after success finds exactly the replacement in
    /// the range and answers success without a new sequence or event.
    /// Fails with `InvalidArgument` for a malformed request (empty or
    /// non-contiguous expected chunks, a replacement not spanning them) and
    /// `UnknownPartition` if the partition does not exist.
    async fn replace_chunks(&self, request: ReplaceChunksRequest) -> Result<ReplaceOutcome>;

    /// Moves a partition's log start offset to `offset` (-1 = the high
    /// watermark): Kafka's DeleteRecords and retention.
    ///
    /// Atomic. At or below the current log start it changes nothing and
    /// answers the current log start (idempotent). Otherwise it drops the
    /// chunks with end offset <= `offset` (a chunk straddling it stays),
    /// makes objects left without a chunk dead, keeps timestamp lookups
    /// exact over the chunks left, and takes the next commit-stream
    /// sequence for an event with the new offsets that invalidates the
    /// partition. Fails with `OffsetOutOfRange` above the high watermark
    /// (or below -1), `UnknownPartition` if the partition does not exist.
    async fn delete_records(
        &self,
        topic_id: Uuid,
        partition: u32,
        offset: i64,
    ) -> Result<DeleteRecordsOutcome>;

    /// Up to `limit` dead objects whose `dead_since_ms <= dead_before_ms`,
    /// oldest first.
    async fn list_dead_objects(&self, dead_before_ms: i64, limit: u32) -> Result<Vec<DeadObject>>;

    /// Forgets dead objects (after the GC deleted them): removes them from
    /// the dead objects and drops the segment commit records of those
    /// objects. Atomic and idempotent; unknown keys are ignored.
    async fn forget_dead_objects(&self, object_keys: Vec<String>) -> Result<()>;

    /// The keys among `object_keys` the catalog still knows, in the order
    /// given (duplicates kept once): referenced by some chunk, or dead and
    /// awaiting the GC's grace period. The orphan sweep deletes old objects
    /// that are neither: a dead object must wait out its own grace period,
    /// however old the object itself is.
    async fn referenced_objects(&self, object_keys: Vec<String>) -> Result<Vec<String>>;
    // ---------- agents ----------

    /// Registers an agent: a new epoch, greater than every epoch handed out
    /// before (to any agent), replacing the agent's earlier registration,
    /// unfenced. The new epoch fences every earlier one: commits carrying
    /// an older epoch of this agent fail from now on (`AgentFenced`).
    /// Atomic; not idempotent (a retry gives yet another epoch, which is
    /// harmless: only the latest is used).
    async fn register_agent(&self, registration: AgentRegistration) -> Result<AgentRecord>;

    /// Fences an agent's registration of `epoch` (its lease expired), so
    /// its commits fail until it registers again. Only if `epoch` is still
    /// the agent's current epoch: a fence racing a newer registration
    /// changes nothing. Returns whether the registration of `epoch` is now
    /// fenced (true again for a repeated fence: idempotent).
    async fn fence_agent(&self, agent_id: &str, epoch: u64) -> Result<bool>;

    /// Every registered agent, fenced or not, sorted by agent id.
    async fn list_agents(&self) -> Result<Vec<AgentRecord>>;

    // ---------- catalog lease (high availability) ----------

    /// Takes, renews or releases the catalog lease, in one transaction
    /// serialized with every writing transaction of every process on the
    /// database. The claimant gets the lease if nobody holds it, if it
    /// holds it already (renewal: same term, new expiry) or if the
    /// holder's lease ran out on the catalog clock (takeover: term + 1).
    /// From a successful claim on, every write of this store checks,
    /// inside its transaction, that the database's term is still the
    /// claimed one, and fails with `NotActive` (changing nothing) when
    /// another catalog took over; after a claim that did not get the
    /// lease, every write fails. A release expires the claimant's lease
    /// now (and fences this store).
    async fn claim_lease(&self, claim: LeaseClaim) -> Result<LeaseStatus>;
    // ---------- SCRAM credentials ----------

    /// Applies SCRAM credential deletions and upsertions (already checked
    /// by the service: known mechanisms, iterations in range, no user's
    /// mechanism named twice). Per user, all of its changes or none: a
    /// user with a deletion of a credential that does not exist gets
    /// RESOURCE_NOT_FOUND and none of its changes. One result per user,
    /// in first-mention order. Atomic; idempotent for upsertions.
    async fn alter_scram_credentials(
        &self,
        change: AlterScramCredentialsRequest,
    ) -> Result<Vec<AlterScramResult>>;

    /// The stored credentials of `users` (every user when empty), sorted
    /// by user and mechanism.
    async fn scram_credentials(&self, users: Vec<String>) -> Result<Vec<ScramCredential>>;
}

/// A shared store.
pub type SharedStore = Arc<dyn CatalogStore>;
