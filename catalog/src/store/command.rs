//! The write commands every store's writer applies (each runs its
//! operation of [`crate::store::ops`]), the queue that carries them from
//! the store's callers to the writer, and the `CatalogStore` impl every
//! store shares over that queue ([`impl_catalog_store!`]).

use strata_catalog_api::proto::{
    AbortedTransaction, AlterScramCredentialsRequest, AlterScramResult, Chunk,
    CommitSegmentRequest, InitProducerIdRequest, ProducerState, ReplaceChunksRequest,
    ScramCredential, Topic, TxnProducer,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::store::ops;
use crate::store::rows::StoreRows;
use crate::store::{
    AgentRecord, AgentRegistration, ChunkLookup, CommitOutcome, CommittedOffset, ConfigChange,
    ConsumerGroupRecord, DeadObject, DeleteRecordsOutcome, DeletedTopic, ExpiredAborts,
    GroupRecord, InitProducerOutcome, LeaseClaim, LeaseFence, LeaseStatus, NewTopic,
    PartitionOffsets, ReplaceOutcome, TopicRef, TxnDescription, TxnOutcome, TxnRequest, TxnSummary,
};
use crate::{Error, Result};

/// How often a writer deletes expired producer state (lookups ignore
/// expired state anyway; the sweep only reclaims space).
pub(crate) const SWEEP_INTERVAL_MS: i64 = 60_000;

/// Where a command's answer goes.
pub(crate) type Reply<T> = oneshot::Sender<Result<T>>;

/// One write operation and its reply channel.
#[derive(Debug)]
pub(crate) enum Command {
    CreateTopic(NewTopic, Reply<Topic>),
    DeleteTopic(TopicRef, Reply<DeletedTopic>),
    CreatePartitions(String, u32, Reply<Topic>),
    AlterConfigs(String, ConfigChange, Reply<Topic>),
    CommitSegment(CommitSegmentRequest, Reply<CommitOutcome>),
    InitProducerId(InitProducerIdRequest, Reply<InitProducerOutcome>),
    Transaction(TxnProducer, TxnRequest, Reply<TxnOutcome>),
    AbortExpiredTransactions(Reply<ExpiredAborts>),
    CommitOffsets(String, Vec<CommittedOffset>, Reply<()>),
    DeleteOffsets(String, Vec<(Uuid, u32)>, Reply<()>),
    SaveGroup(GroupRecord, Reply<()>),
    SaveConsumerGroup(ConsumerGroupRecord, Reply<()>),
    DeleteGroup(String, Reply<()>),
    ReplaceChunks(ReplaceChunksRequest, Reply<ReplaceOutcome>),
    DeleteRecords(Uuid, u32, i64, Reply<DeleteRecordsOutcome>),
    ForgetDeadObjects(Vec<String>, Reply<()>),
    // ---------- agents ----------
    RegisterAgent(AgentRegistration, Reply<AgentRecord>),
    FenceAgent(String, u64, Reply<bool>),
    // ---------- catalog lease ----------
    ClaimLease(LeaseClaim, Reply<LeaseStatus>),
    // ---------- SCRAM credentials ----------
    AlterScram(AlterScramCredentialsRequest, Reply<Vec<AlterScramResult>>),
}

impl Command {
    /// Runs the command's operation over `rows` (inside the writer's
    /// transaction and the command's savepoint); the answer waits for the
    /// commit. The one dispatch from a command to its operation.
    pub(crate) async fn apply<R: StoreRows>(self, rows: &mut R) -> Box<dyn Answer> {
        // Every write but a lease claim is fenced by the lease term (a
        // catalog that lost the lease must not write).
        if !self.is_lease()
            && let Err(error) = rows.check_term()
        {
            tracing::warn!(%error, "a write of a catalog without the lease was refused");
            let error = std::sync::Arc::new(error);
            self.fail(|| match error.as_ref() {
                Error::NotActive { held, current } => Error::NotActive {
                    held: *held,
                    current: *current,
                },
                other => Error::Task(other.to_string()),
            });
            return Box::new(Refused);
        }
        match self {
            Command::CreateTopic(topic, reply) => {
                answered(reply, ops::topics::create(rows, topic).await)
            }
            Command::DeleteTopic(topic, reply) => {
                answered(reply, ops::topics::delete(rows, &topic).await)
            }
            Command::CreatePartitions(name, count, reply) => answered(
                reply,
                ops::topics::create_partitions(rows, &name, count).await,
            ),
            Command::AlterConfigs(name, change, reply) => {
                answered(reply, ops::topics::alter_configs(rows, &name, change).await)
            }
            Command::CommitSegment(request, reply) => {
                answered(reply, rows.commit_segment(&request).await)
            }
            Command::InitProducerId(request, reply) => answered(
                reply,
                ops::producers::init_producer_id(rows, &request).await,
            ),
            Command::Transaction(producer, request, reply) => answered(
                reply,
                ops::transactions::apply(rows, &producer, &request).await,
            ),
            Command::AbortExpiredTransactions(reply) => {
                answered(reply, ops::transactions::abort_expired(rows).await)
            }
            Command::CommitOffsets(group_id, offsets, reply) => answered(
                reply,
                ops::groups::commit_offsets(rows, &group_id, &offsets).await,
            ),
            Command::DeleteOffsets(group_id, partitions, reply) => answered(
                reply,
                ops::groups::delete_offsets(rows, &group_id, &partitions).await,
            ),
            Command::SaveGroup(record, reply) => {
                answered(reply, ops::groups::save_group(rows, &record).await)
            }
            Command::SaveConsumerGroup(record, reply) => {
                answered(reply, ops::groups::save_consumer_group(rows, &record).await)
            }
            Command::DeleteGroup(group_id, reply) => {
                answered(reply, ops::groups::delete_group(rows, &group_id).await)
            }
            Command::ReplaceChunks(request, reply) => {
                answered(reply, ops::compaction::replace_chunks(rows, &request).await)
            }
            Command::DeleteRecords(topic_id, partition, offset, reply) => answered(
                reply,
                ops::compaction::delete_records(rows, topic_id, partition, offset).await,
            ),
            Command::ForgetDeadObjects(keys, reply) => answered(
                reply,
                ops::compaction::forget_dead_objects(rows, &keys).await,
            ),
            // ---------- agents ----------
            Command::RegisterAgent(registration, reply) => {
                answered(reply, ops::agents::register(rows, &registration).await)
            }
            Command::AlterScram(change, reply) => {
                answered(reply, ops::scram::alter(rows, &change).await)
            }
            Command::FenceAgent(agent_id, epoch, reply) => {
                answered(reply, ops::agents::fence(rows, &agent_id, epoch).await)
            }
            Command::ClaimLease(claim, reply) => {
                answered(reply, ops::lease::claim(rows, &claim).await)
            }
        }
    }

    /// Whether the command is a lease claim (the one write not fenced by
    /// the lease term).
    pub(crate) fn is_lease(&self) -> bool {
        matches!(self, Command::ClaimLease(..))
    }

    /// Answers the command with `error()` without running it.
    pub(crate) fn fail(self, error: impl Fn() -> Error) {
        // Callers that went away need no answer.
        match self {
            Self::CreateTopic(_, reply)
            | Self::CreatePartitions(_, _, reply)
            | Self::AlterConfigs(_, _, reply) => drop(reply.send(Err(error()))),
            Self::DeleteTopic(_, reply) => drop(reply.send(Err(error()))),
            Self::CommitSegment(_, reply) => drop(reply.send(Err(error()))),
            Self::InitProducerId(_, reply) => drop(reply.send(Err(error()))),
            Self::Transaction(_, _, reply) => drop(reply.send(Err(error()))),
            Self::AbortExpiredTransactions(reply) => drop(reply.send(Err(error()))),
            Self::CommitOffsets(_, _, reply)
            | Self::DeleteOffsets(_, _, reply)
            | Self::SaveGroup(_, reply)
            | Self::SaveConsumerGroup(_, reply)
            | Self::DeleteGroup(_, reply)
            | Self::ForgetDeadObjects(_, reply) => drop(reply.send(Err(error()))),
            Self::ReplaceChunks(_, reply) => drop(reply.send(Err(error()))),
            Self::DeleteRecords(_, _, _, reply) => drop(reply.send(Err(error()))),
            // ---------- agents ----------
            Self::RegisterAgent(_, reply) => drop(reply.send(Err(error()))),
            Self::FenceAgent(_, _, reply) => drop(reply.send(Err(error()))),
            Self::ClaimLease(_, reply) => drop(reply.send(Err(error()))),
            Self::AlterScram(_, reply) => drop(reply.send(Err(error()))),
        }
    }
}

/// A command's result, waiting for the writer's transaction to commit.
pub(crate) trait Answer: Send {
    /// Whether the command failed (its savepoint is rolled back).
    fn failed(&self) -> bool;

    /// Sends the result; a success becomes `batch_failure()` if the
    /// transaction it was part of did not commit.
    fn send(self: Box<Self>, batch_failure: Option<&dyn Fn() -> Error>);
}

struct Answered<T> {
    reply: Reply<T>,
    result: Result<T>,
}

impl<T: Send> Answer for Answered<T> {
    fn failed(&self) -> bool {
        self.result.is_err()
    }

    fn send(self: Box<Self>, batch_failure: Option<&dyn Fn() -> Error>) {
        let result = match batch_failure {
            Some(failure) if self.result.is_ok() => Err(failure()),
            _ => self.result,
        };
        // The caller may have gone away; the write stands regardless.
        let _ = self.reply.send(result);
    }
}

/// `result`, to send over `reply` once the transaction commits.
pub(crate) fn answered<T: Send + 'static>(reply: Reply<T>, result: Result<T>) -> Box<dyn Answer> {
    Box::new(Answered { reply, result })
}

/// The answer of a command refused before it ran (already answered).
struct Refused;

impl Answer for Refused {
    fn failed(&self) -> bool {
        true
    }

    fn send(self: Box<Self>, _: Option<&dyn Fn() -> Error>) {}
}

/// The sending end of a writer's bounded command queue, and the lease
/// term the writer fences writes with.
#[derive(Debug)]
pub(crate) struct CommandQueue(Option<mpsc::Sender<Command>>, LeaseFence);

impl CommandQueue {
    /// A queue sending to `sender`, whose writer checks `fence`.
    pub(crate) fn new(sender: mpsc::Sender<Command>, fence: LeaseFence) -> Self {
        Self(Some(sender), fence)
    }

    /// Queues a lease claim; on success the writer fences every later
    /// write with the term held (or refuses them all when the lease was
    /// not had).
    pub(crate) async fn claim_lease(&self, claim: LeaseClaim) -> Result<LeaseStatus> {
        let status = self
            .write(|reply| Command::ClaimLease(claim, reply))
            .await?;
        let term = match &status.lease {
            Some(lease) if status.held => lease.term,
            _ => LeaseFence::NOT_HELD,
        };
        self.1.set(term);
        Ok(status)
    }

    /// Sends a command to the writer and waits for its answer; `Closed`
    /// once the queue or the writer is gone.
    pub(crate) async fn write<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let commands = self.0.as_ref().ok_or(Error::Closed)?;
        commands
            .send(command(reply))
            .await
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Closes the queue: the writer applies what is queued and stops.
    pub(crate) fn close(&mut self) {
        drop(self.0.take());
    }
}

/// The reads a store serves itself, outside its writer (read connections,
/// pool): the read half of [`CatalogStore`](crate::store::CatalogStore),
/// each method as documented there. [`impl_catalog_store!`] forwards to
/// them.
pub(crate) trait StoreReads {
    async fn list_topics(&self, names: &[String]) -> Result<Vec<Topic>>;

    async fn lookup_chunks(
        &self,
        topic_id: Uuid,
        partition: u32,
        offset: i64,
        max_chunks: u32,
    ) -> Result<ChunkLookup>;

    async fn partition_offsets(&self, topic_id: Uuid, partition: u32) -> Result<PartitionOffsets>;

    async fn find_chunk_by_timestamp(
        &self,
        topic_id: Uuid,
        partition: u32,
        timestamp: i64,
    ) -> Result<Option<Chunk>>;

    async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition: u32,
        from_offset: i64,
        to_offset: i64,
    ) -> Result<Vec<AbortedTransaction>>;

    async fn list_transactions(&self, limit: u32) -> Result<Vec<TxnSummary>>;

    async fn describe_transaction(&self, transactional_id: &str) -> Result<Option<TxnDescription>>;

    async fn describe_producers(
        &self,
        topic_id: Uuid,
        partition: u32,
    ) -> Result<Vec<ProducerState>>;

    async fn last_commit_sequence(&self) -> Result<u64>;

    async fn fetch_offsets(&self, group_id: &str) -> Result<Vec<CommittedOffset>>;

    async fn load_groups(&self) -> Result<Vec<GroupRecord>>;

    async fn load_consumer_groups(&self) -> Result<Vec<ConsumerGroupRecord>>;

    async fn list_dead_objects(&self, dead_before_ms: i64, limit: u32) -> Result<Vec<DeadObject>>;

    async fn referenced_objects(&self, object_keys: Vec<String>) -> Result<Vec<String>>;

    async fn list_agents(&self) -> Result<Vec<AgentRecord>>;

    async fn scram_credentials(&self, users: Vec<String>) -> Result<Vec<ScramCredential>>;
}

/// Implements [`CatalogStore`](crate::store::CatalogStore) for a store with
/// a `commands: CommandQueue` field and [`StoreReads`]: every write queues
/// its [`Command`] for the store's writer, every read goes to
/// [`StoreReads`]. The one place a new write operation is wired to the
/// trait.
macro_rules! impl_catalog_store {
    ($store:ty) => {
        const _: () = {
            use strata_catalog_api::proto::{
                AbortedTransaction, Chunk, CommitSegmentRequest, InitProducerIdRequest,
                ProducerState, ReplaceChunksRequest, Topic, TxnProducer,
            };
            use uuid::Uuid;

            use $crate::Result;
            use $crate::store::command::{Command, StoreReads};
            use $crate::store::{
                AgentRecord, AgentRegistration, ChunkLookup, CommitOutcome, CommittedOffset,
                ConfigChange, ConsumerGroupRecord, DeadObject, DeleteRecordsOutcome, DeletedTopic,
                ExpiredAborts, GroupRecord, InitProducerOutcome, NewTopic, PartitionOffsets,
                ReplaceOutcome, TopicRef, TxnOutcome, TxnRequest,
            };

            #[async_trait::async_trait]
            impl $crate::store::CatalogStore for $store {
                #[tracing::instrument(level = "debug", skip_all, fields(topic = %topic.name))]
                async fn create_topic(&self, topic: NewTopic) -> Result<Topic> {
                    self.commands
                        .write(|reply| Command::CreateTopic(topic, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip_all)]
                async fn delete_topic(&self, topic: TopicRef) -> Result<DeletedTopic> {
                    self.commands
                        .write(|reply| Command::DeleteTopic(topic, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn create_partitions(&self, name: &str, new_count: u32) -> Result<Topic> {
                    let name = name.to_string();
                    self.commands
                        .write(|reply| Command::CreatePartitions(name, new_count, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip(self, change))]
                async fn alter_topic_configs(
                    &self,
                    name: &str,
                    change: ConfigChange,
                ) -> Result<Topic> {
                    let name = name.to_string();
                    self.commands
                        .write(|reply| Command::AlterConfigs(name, change, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip_all, fields(segment_id = %request.segment_id))]
                async fn commit_segment(
                    &self,
                    request: CommitSegmentRequest,
                ) -> Result<CommitOutcome> {
                    self.commands
                        .write(|reply| Command::CommitSegment(request, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip_all, fields(producer_id = request.producer_id))]
                async fn init_producer_id(
                    &self,
                    request: InitProducerIdRequest,
                ) -> Result<InitProducerOutcome> {
                    self.commands
                        .write(|reply| Command::InitProducerId(request, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip_all, fields(producer_id = producer.producer_id))]
                async fn transaction(
                    &self,
                    producer: TxnProducer,
                    request: TxnRequest,
                ) -> Result<TxnOutcome> {
                    self.commands
                        .write(|reply| Command::Transaction(producer, request, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn abort_expired_transactions(&self) -> Result<ExpiredAborts> {
                    self.commands.write(Command::AbortExpiredTransactions).await
                }

                #[tracing::instrument(level = "debug", skip(self, offsets), fields(partitions = offsets.len()))]
                async fn commit_offsets(
                    &self,
                    group_id: &str,
                    offsets: Vec<CommittedOffset>,
                ) -> Result<()> {
                    let group_id = group_id.to_string();
                    self.commands
                        .write(|reply| Command::CommitOffsets(group_id, offsets, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip(self, partitions))]
                async fn delete_offsets(
                    &self,
                    group_id: &str,
                    partitions: Vec<(Uuid, u32)>,
                ) -> Result<()> {
                    let group_id = group_id.to_string();
                    self.commands
                        .write(|reply| Command::DeleteOffsets(group_id, partitions, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip_all, fields(group_id = %record.group_id))]
                async fn save_group(&self, record: GroupRecord) -> Result<()> {
                    self.commands
                        .write(|reply| Command::SaveGroup(record, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip_all, fields(group_id = %record.group_id))]
                async fn save_consumer_group(&self, record: ConsumerGroupRecord) -> Result<()> {
                    self.commands
                        .write(|reply| Command::SaveConsumerGroup(record, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn delete_group(&self, group_id: &str) -> Result<()> {
                    let group_id = group_id.to_string();
                    self.commands
                        .write(|reply| Command::DeleteGroup(group_id, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip_all, fields(partition = request.partition))]
                async fn replace_chunks(
                    &self,
                    request: ReplaceChunksRequest,
                ) -> Result<ReplaceOutcome> {
                    self.commands
                        .write(|reply| Command::ReplaceChunks(request, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn delete_records(
                    &self,
                    topic_id: Uuid,
                    partition: u32,
                    offset: i64,
                ) -> Result<DeleteRecordsOutcome> {
                    self.commands
                        .write(|reply| Command::DeleteRecords(topic_id, partition, offset, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip_all, fields(objects = object_keys.len()))]
                async fn forget_dead_objects(&self, object_keys: Vec<String>) -> Result<()> {
                    self.commands
                        .write(|reply| Command::ForgetDeadObjects(object_keys, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip_all, fields(agent_id = %registration.agent_id))]
                async fn register_agent(
                    &self,
                    registration: AgentRegistration,
                ) -> Result<AgentRecord> {
                    self.commands
                        .write(|reply| Command::RegisterAgent(registration, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn fence_agent(&self, agent_id: &str, epoch: u64) -> Result<bool> {
                    let agent_id = agent_id.to_string();
                    self.commands
                        .write(|reply| Command::FenceAgent(agent_id, epoch, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip_all)]
                async fn list_topics(&self, names: &[String]) -> Result<Vec<Topic>> {
                    <$store as StoreReads>::list_topics(self, names).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn lookup_chunks(
                    &self,
                    topic_id: Uuid,
                    partition: u32,
                    offset: i64,
                    max_chunks: u32,
                ) -> Result<ChunkLookup> {
                    <$store as StoreReads>::lookup_chunks(
                        self, topic_id, partition, offset, max_chunks,
                    )
                    .await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn partition_offsets(
                    &self,
                    topic_id: Uuid,
                    partition: u32,
                ) -> Result<PartitionOffsets> {
                    <$store as StoreReads>::partition_offsets(self, topic_id, partition).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn find_chunk_by_timestamp(
                    &self,
                    topic_id: Uuid,
                    partition: u32,
                    timestamp: i64,
                ) -> Result<Option<Chunk>> {
                    <$store as StoreReads>::find_chunk_by_timestamp(
                        self, topic_id, partition, timestamp,
                    )
                    .await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn list_transactions(
                    &self,
                    limit: u32,
                ) -> Result<Vec<$crate::store::TxnSummary>> {
                    <$store as StoreReads>::list_transactions(self, limit).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn describe_transaction(
                    &self,
                    transactional_id: &str,
                ) -> Result<Option<$crate::store::TxnDescription>> {
                    <$store as StoreReads>::describe_transaction(self, transactional_id).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn aborted_transactions(
                    &self,
                    topic_id: Uuid,
                    partition: u32,
                    from_offset: i64,
                    to_offset: i64,
                ) -> Result<Vec<AbortedTransaction>> {
                    <$store as StoreReads>::aborted_transactions(
                        self,
                        topic_id,
                        partition,
                        from_offset,
                        to_offset,
                    )
                    .await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn describe_producers(
                    &self,
                    topic_id: Uuid,
                    partition: u32,
                ) -> Result<Vec<ProducerState>> {
                    <$store as StoreReads>::describe_producers(self, topic_id, partition).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn last_commit_sequence(&self) -> Result<u64> {
                    <$store as StoreReads>::last_commit_sequence(self).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn fetch_offsets(&self, group_id: &str) -> Result<Vec<CommittedOffset>> {
                    <$store as StoreReads>::fetch_offsets(self, group_id).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn load_groups(&self) -> Result<Vec<GroupRecord>> {
                    <$store as StoreReads>::load_groups(self).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn load_consumer_groups(&self) -> Result<Vec<ConsumerGroupRecord>> {
                    <$store as StoreReads>::load_consumer_groups(self).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn list_dead_objects(
                    &self,
                    dead_before_ms: i64,
                    limit: u32,
                ) -> Result<Vec<DeadObject>> {
                    <$store as StoreReads>::list_dead_objects(self, dead_before_ms, limit).await
                }

                #[tracing::instrument(level = "debug", skip_all, fields(objects = object_keys.len()))]
                async fn referenced_objects(
                    &self,
                    object_keys: Vec<String>,
                ) -> Result<Vec<String>> {
                    <$store as StoreReads>::referenced_objects(self, object_keys).await
                }

                #[tracing::instrument(level = "debug", skip(self))]
                async fn list_agents(&self) -> Result<Vec<AgentRecord>> {
                    <$store as StoreReads>::list_agents(self).await
                }

                #[tracing::instrument(level = "debug", skip_all, fields(holder = %claim.holder, release = claim.release))]
                async fn claim_lease(
                    &self,
                    claim: $crate::store::LeaseClaim,
                ) -> Result<$crate::store::LeaseStatus> {
                    self.commands.claim_lease(claim).await
                }

                #[tracing::instrument(level = "debug", skip_all)]
                async fn alter_scram_credentials(
                    &self,
                    change: AlterScramCredentialsRequest,
                ) -> Result<Vec<AlterScramResult>> {
                    self.commands
                        .write(|reply| Command::AlterScram(change, reply))
                        .await
                }

                #[tracing::instrument(level = "debug", skip_all, fields(users = users.len()))]
                async fn scram_credentials(
                    &self,
                    users: Vec<String>,
                ) -> Result<Vec<ScramCredential>> {
                    <$store as StoreReads>::scram_credentials(self, users).await
                }
            }
        };
    };
}
pub(crate) use impl_catalog_store;
