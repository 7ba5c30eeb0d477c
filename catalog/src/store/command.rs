//! The write commands every store's writer applies, and the queue that
//! carries them from the store's callers to the writer.

use strata_catalog_api::proto::{
    CommitSegmentRequest, InitProducerIdRequest, ReplaceChunksRequest, Topic, TxnProducer,
};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

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
