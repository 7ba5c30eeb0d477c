//! The write commands every store's writer applies (each runs its
//! operation of [`crate::store::ops`]), and the queue that carries them
//! from the store's callers to the writer.

use strata_catalog_api::proto::{
    CommitSegmentRequest, InitProducerIdRequest, ReplaceChunksRequest, Topic, TxnProducer,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::store::ops;
use crate::store::rows::StoreRows;
use crate::store::{
    AgentRecord, AgentRegistration, CommitOutcome, CommittedOffset, ConfigChange,
    ConsumerGroupRecord, DeleteRecordsOutcome, DeletedTopic, ExpiredAborts, GroupRecord,
    InitProducerOutcome, NewTopic, ReplaceOutcome, TopicRef, TxnOutcome, TxnRequest,
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
}

impl Command {
    /// Runs the command's operation over `rows` (inside the writer's
    /// transaction and the command's savepoint); the answer waits for the
    /// commit. The one dispatch from a command to its operation.
    pub(crate) async fn apply<R: StoreRows>(self, rows: &mut R) -> Box<dyn Answer> {
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
            Command::FenceAgent(agent_id, epoch, reply) => {
                answered(reply, ops::agents::fence(rows, &agent_id, epoch).await)
            }
        }
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

/// The sending end of a writer's bounded command queue.
#[derive(Debug)]
pub(crate) struct CommandQueue(Option<mpsc::Sender<Command>>);

impl CommandQueue {
    /// A queue sending to `sender`.
    pub(crate) fn new(sender: mpsc::Sender<Command>) -> Self {
        Self(Some(sender))
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
