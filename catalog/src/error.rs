//! The catalog's error type.

use std::sync::Arc;

use tonic::Status;

use crate::error_code;

/// A catalog result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller should do about an [`Error`]: the coarse, stable tier of
/// the catalog's errors (messages are not API; kinds are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Try again later: the store is busy, restarting or shutting down.
    Retryable,
    /// The caller has been fenced by a newer producer or agent.
    Fenced,
    /// The request is invalid or refers to something that does not exist;
    /// retrying the same request gives the same answer.
    Invalid,
    /// Persisted data is inconsistent or unreadable.
    Data,
    /// A bug or an unexpected failure of the store.
    Internal,
}

/// Everything that can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A topic with this name already exists.
    #[error("topic {name:?} already exists")]
    TopicAlreadyExists {
        /// The topic name.
        name: String,
    },
    /// No topic has this name.
    #[error("unknown topic {name:?}")]
    UnknownTopic {
        /// The topic name.
        name: String,
    },
    /// No topic has this id.
    #[error("unknown topic id {topic_id}")]
    UnknownTopicId {
        /// The topic id.
        topic_id: uuid::Uuid,
    },
    /// The topic exists but the partition does not.
    #[error("unknown partition {partition} of topic {topic_id}")]
    UnknownPartition {
        /// The topic id.
        topic_id: uuid::Uuid,
        /// The partition.
        partition: u32,
    },
    /// An offset outside a partition's log (DeleteRecords beyond the high
    /// watermark).
    #[error("offset {requested} is out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: i64,
        /// The partition's log start offset.
        log_start: i64,
        /// The partition's high watermark.
        high_watermark: i64,
    },
    /// A topic name breaks Kafka's naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A partition count is not allowed (zero, or not an increase).
    #[error("invalid partition count {requested} (current {current})")]
    InvalidPartitions {
        /// The topic's current count (0 for a new topic).
        current: u32,
        /// The requested count.
        requested: u32,
    },
    /// A topic config is unknown or has an invalid value.
    #[error("invalid config {name:?}: {reason}")]
    InvalidConfig {
        /// The config name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The producer epoch is older than the current one (KIP-360 bump
    /// with a stale epoch).
    #[error("producer {producer_id} epoch {epoch} is not the current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer id.
        producer_id: i64,
        /// The epoch the caller sent.
        epoch: i32,
        /// The catalog's current epoch.
        current: i32,
    },
    /// A transactional producer has been replaced by a newer instance.
    #[error(
        "producer {producer_id} epoch {epoch} is fenced for transactional id {transactional_id:?}"
    )]
    ProducerFenced {
        /// The transactional id.
        transactional_id: String,
        /// The producer id the caller sent.
        producer_id: i64,
        /// The epoch the caller sent.
        epoch: i32,
    },
    /// A transactional id is unknown, or its current producer is another
    /// producer id (Kafka's INVALID_PRODUCER_ID_MAPPING).
    #[error("producer {producer_id} is not the producer of transactional id {transactional_id:?}")]
    InvalidProducerIdMapping {
        /// The transactional id.
        transactional_id: String,
        /// The producer id the caller sent.
        producer_id: i64,
    },
    /// The transaction coordinator call is not allowed in the
    /// transaction's state (Kafka's INVALID_TXN_STATE).
    #[error("transactional id {transactional_id:?} is in state {state}")]
    InvalidTxnState {
        /// The transactional id.
        transactional_id: String,
        /// Its state.
        state: &'static str,
    },
    /// No producer ever initialised this transactional id (Kafka's
    /// TRANSACTIONAL_ID_NOT_FOUND): check the id (`strata txn list`).
    #[error(
        "transactional id {transactional_id:?} is unknown: `strata txn list` shows the known ones"
    )]
    TransactionalIdNotFound {
        /// The transactional id.
        transactional_id: String,
    },
    /// A commit came from an agent registration that is no longer current:
    /// fenced after its lease expired, replaced by a newer registration,
    /// or never made. The agent must register again.
    #[error("agent {agent_id:?} epoch {epoch} is fenced (current epoch {current:?})")]
    AgentFenced {
        /// The agent id the caller sent.
        agent_id: String,
        /// The epoch the caller sent.
        epoch: u64,
        /// The agent's current unfenced epoch, `None` when it has none.
        current: Option<u64>,
    },
    /// A first commit of a segment arrived later than the catalog's
    /// `max_commit_age_ms` after the agent named it. Nothing was committed;
    /// the object is left to the orphan sweep.
    #[error(
        "segment {segment_id} is {age_ms} ms old, past the catalog's max commit age of \
         {max_age_ms} ms: not committed (the agent took too long between writing the object \
         and committing it; check object-store and catalog latency, or raise \
         --max-commit-age-ms and keep the compactor's orphan grace above twice it)"
    )]
    CommitTooLate {
        /// The segment's ULID.
        segment_id: String,
        /// Its age when the commit was applied.
        age_ms: i64,
        /// The catalog's bound.
        max_age_ms: i64,
    },
    /// The request is malformed: a bug in the caller.
    #[error("invalid argument {field}: {reason}")]
    InvalidArgument {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The database file was written by a newer Strata.
    #[error("catalog schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// The version in the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A persisted value could not be decoded.
    #[error("corrupt catalog data: {what}")]
    Corrupt {
        /// What was being decoded.
        what: String,
    },
    /// The SQLite store failed. Shared because one failed group commit
    /// fails every command in it.
    #[error("sqlite: {0}")]
    Sqlite(#[from] Arc<rusqlite::Error>),
    /// The PostgreSQL store failed. Shared because one failed group commit
    /// fails every command in it. Retryable when the connection was lost
    /// or the server asked for a retry (serialization failure, deadlock,
    /// shutdown, too many connections).
    #[error("postgres: {0}")]
    Postgres(#[source] Arc<tokio_postgres::Error>),
    /// No PostgreSQL connection could be had in time (the pool timed out
    /// or the server is unreachable). Retryable.
    #[error("postgres unavailable: {reason}")]
    PostgresUnavailable {
        /// Why no connection could be had.
        reason: String,
    },
    /// This catalog does not hold the lease in the database (another
    /// catalog took over, or it never held it): it must not write, and
    /// steps down. Retryable: the caller retries on the active catalog.
    #[error(
        "this catalog {} and the lease in the database is at term {current}: another \
         catalog is active; retry there (agents rotate through their --catalog addresses)",
        held_term(*held)
    )]
    NotActive {
        /// The term this catalog wrote under (`u64::MAX`: it holds none).
        held: u64,
        /// The term in the database.
        current: u64,
    },
    /// The store's writer has stopped (shutdown or a crash of its thread).
    #[error("the catalog store is closed")]
    Closed,
    /// The gRPC server failed.
    #[error("catalog gRPC server: {0}")]
    Transport(#[source] tonic::transport::Error),
    /// A blocking task failed to run to completion.
    #[error("a catalog task was cancelled or panicked: {0}")]
    Task(String),
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sqlite(Arc::new(error))
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Postgres(Arc::new(error))
    }
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::TopicAlreadyExists { .. }
            | Self::UnknownTopic { .. }
            | Self::UnknownTopicId { .. }
            | Self::UnknownPartition { .. }
            | Self::OffsetOutOfRange { .. }
            | Self::InvalidTopicName { .. }
            | Self::InvalidPartitions { .. }
            | Self::InvalidConfig { .. }
            | Self::InvalidTxnState { .. }
            | Self::CommitTooLate { .. }
            | Self::TransactionalIdNotFound { .. }
            | Self::InvalidArgument { .. } => ErrorKind::Invalid,
            Self::InvalidProducerEpoch { .. }
            | Self::ProducerFenced { .. }
            | Self::InvalidProducerIdMapping { .. }
            | Self::AgentFenced { .. } => ErrorKind::Fenced,
            Self::Sqlite(e) if is_busy(e) => ErrorKind::Retryable,
            Self::Postgres(e) if is_transient_postgres(e) => ErrorKind::Retryable,
            Self::Closed | Self::PostgresUnavailable { .. } | Self::NotActive { .. } => {
                ErrorKind::Retryable
            }
            Self::SchemaTooNew { .. } | Self::Corrupt { .. } => ErrorKind::Data,
            Self::Sqlite(_) | Self::Postgres(_) | Self::Task(_) | Self::Transport(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// Whether the same call may succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retryable
    }

    /// The Kafka error code a client should see for this error, when it is
    /// a Kafka-visible condition rather than a failure of the catalog.
    pub fn kafka_error_code(&self) -> Option<i16> {
        Some(match self {
            Self::TopicAlreadyExists { .. } => error_code::TOPIC_ALREADY_EXISTS,
            Self::UnknownTopic { .. } | Self::UnknownPartition { .. } => {
                error_code::UNKNOWN_TOPIC_OR_PARTITION
            }
            Self::UnknownTopicId { .. } => error_code::UNKNOWN_TOPIC_ID,
            Self::OffsetOutOfRange { .. } => error_code::OFFSET_OUT_OF_RANGE,
            Self::InvalidTopicName { .. } => error_code::INVALID_TOPIC_EXCEPTION,
            Self::InvalidPartitions { .. } => error_code::INVALID_PARTITIONS,
            Self::InvalidConfig { .. } => error_code::INVALID_CONFIG,
            Self::InvalidProducerEpoch { .. } => error_code::INVALID_PRODUCER_EPOCH,
            Self::ProducerFenced { .. } => error_code::PRODUCER_FENCED,
            Self::InvalidProducerIdMapping { .. } => error_code::INVALID_PRODUCER_ID_MAPPING,
            Self::InvalidTxnState { .. } => error_code::INVALID_TXN_STATE,
            Self::TransactionalIdNotFound { .. } => error_code::TRANSACTIONAL_ID_NOT_FOUND,
            _ => return None,
        })
    }
}

/// How a `NotActive` error names the term a catalog wrote under.
fn held_term(held: u64) -> String {
    if held == u64::MAX {
        "does not hold the lease".to_string()
    } else {
        format!("wrote under lease term {held}")
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// Whether a PostgreSQL error may go away on retry: the connection broke,
/// or the server reported a connection exception (class 08), a
/// serialization failure or deadlock (class 40), an operator intervention
/// such as a shutdown (class 57) or too many connections (53300).
fn is_transient_postgres(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("40")
                || code.starts_with("57")
                || code == "53300"
        }
        // No SQLSTATE: an I/O or protocol failure of the connection.
        None => std::error::Error::source(error)
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some()),
    }
}

impl From<Error> for Status {
    /// Maps an error that is not a Kafka error code to a gRPC status, as the
    /// `.proto` prescribes: UNAVAILABLE = retry, INVALID_ARGUMENT = caller
    /// bug, FAILED_PRECONDITION = fenced.
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error.kind() {
            ErrorKind::Retryable => Status::unavailable(message),
            ErrorKind::Invalid => Status::invalid_argument(message),
            ErrorKind::Fenced => Status::failed_precondition(message),
            ErrorKind::Data => Status::data_loss(message),
            ErrorKind::Internal => Status::internal(message),
        }
    }
}
