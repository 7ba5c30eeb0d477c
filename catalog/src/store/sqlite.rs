//! [`SqliteStore`]: the catalog in one embedded SQLite file (WAL mode).
//!
//! Writes go to one dedicated writer thread over a bounded channel; the
//! thread applies every queued command (up to a bound) in ONE transaction
//! (group commit), each command in its own savepoint so one failure does
//! not fail its neighbours, and answers each over a oneshot after the
//! commit. Reads use a small pool of read-only connections on tokio's
//! blocking pool; WAL lets them run beside the writer.

mod commit;
mod reads;
mod rows;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags};
use strata_catalog_api::proto::{
    AbortedTransaction, AlterScramCredentialsRequest, AlterScramResult, Chunk, ProducerState,
    ScramCredential, Topic,
};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::store::command::{CommandQueue, StoreReads, impl_catalog_store};
use crate::store::{
    AgentRecord, ChunkLookup, Clock, CommittedOffset, ConsumerGroupRecord, DeadObject, GroupRecord,
    LeaseFence, PartitionOffsets, SystemClock, TxnDescription, TxnSummary,
};
use crate::{Error, Result};

/// Settings of a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// `synchronous=FULL` (survives power loss) instead of `NORMAL`
    /// (survives a process crash).
    pub fsync: bool,
    /// Producer state untouched for this long is forgotten (Kafka's
    /// `producer.id.expiration.ms`).
    pub producer_id_expiration_ms: i64,
    /// The oldest a segment or Parquet file may be when its first commit or
    /// swap applies; later ones are refused, so the orphan sweep (which
    /// waits twice this) never deletes an object whose commit still lands.
    pub max_commit_age_ms: i64,
    /// The most commands applied in one transaction.
    pub group_commit_max: usize,
    /// Capacity of the writer's command queue.
    pub queue_capacity: usize,
    /// Read connections kept open.
    pub read_connections: usize,
    /// The clock for creation times and expiry.
    pub clock: Arc<dyn Clock>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            fsync: false,
            producer_id_expiration_ms: 86_400_000,
            max_commit_age_ms: crate::store::MAX_COMMIT_AGE_MS_DEFAULT,
            group_commit_max: 256,
            queue_capacity: 4096,
            read_connections: 2,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The catalog store on an embedded SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    commands: CommandQueue,
    writer: Option<JoinHandle<()>>,
    readers: Arc<ReaderPool>,
    checkpointer: Option<Checkpointer>,
}

/// Checkpoints the WAL from a thread of its own (PASSIVE: never blocks the
/// writer or readers), so the writer thread never pays for a checkpoint
/// inside a commit: SQLite's automatic checkpoint would run it on the
/// committing connection and stall every produce waiting on that commit.
#[derive(Debug)]
struct Checkpointer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: JoinHandle<()>,
}

/// How often the checkpointer runs.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Checkpointer {
    fn start(path: &Path, fsync: bool) -> Result<Self> {
        let connection = Connection::open(path)?;
        schema::configure(&connection, fsync)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("catalog-sqlite-checkpoint".to_string())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    if let Err(error) =
                        connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(%error, "WAL checkpoint failed; retrying");
                    }
                }
            })
            .map_err(|e| Error::Task(format!("spawning the checkpoint thread: {e}")))?;
        Ok(Self { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if self.thread.join().is_err() {
            tracing::error!("the catalog checkpoint thread panicked");
        }
    }
}

/// Read-only connections, reused across calls.
#[derive(Debug)]
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    idle_max: usize,
    options: SqliteOptions,
}

impl SqliteStore {
    /// Opens (creating if needed) the catalog at `path`, applies schema
    /// migrations and starts the writer thread.
    #[tracing::instrument(level = "info", skip(options), fields(path = %path.as_ref().display()))]
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut connection = Connection::open(&path)?;
        schema::configure(&connection, options.fsync)?;
        schema::migrate(&mut connection)?;
        // Checkpoints happen on the checkpointer's connection, not inside
        // the writer's commits.
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Checkpointer::start(&path, options.fsync)?;
        let (sender, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let writer_options = options.clone();
        let fence = LeaseFence::default();
        let writer_fence = fence.clone();
        let writer = std::thread::Builder::new()
            .name("catalog-sqlite-writer".to_string())
            .spawn(move || writer::run(connection, receiver, writer_options, writer_fence))
            .map_err(|e| Error::Task(format!("spawning the writer thread: {e}")))?;
        let readers = Arc::new(ReaderPool {
            path,
            idle: Mutex::new(Vec::new()),
            idle_max: options.read_connections.max(1),
            options,
        });
        Ok(Self {
            commands: CommandQueue::new(sender, fence),
            writer: Some(writer),
            readers,
            checkpointer: Some(checkpointer),
        })
    }

    /// Runs `read` on a pooled read connection on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Connection, &SqliteOptions) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let connection = readers.take()?;
            let result = read(&connection, &readers.options);
            readers.give_back(connection);
            result
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }
}

impl ReaderPool {
    fn take(&self) -> Result<Connection> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match idle {
            Some(connection) => Ok(connection),
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let connection = Connection::open_with_flags(&self.path, flags)?;
                connection.busy_timeout(std::time::Duration::from_secs(5))?;
                connection.set_prepared_statement_cache_capacity(64);
                Ok(connection)
            }
        }
    }

    fn give_back(&self, connection: Connection) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.idle_max {
            idle.push(connection);
        }
    }
}

impl Drop for SqliteStore {
    /// Closes the queue and waits for the writer to finish the commands
    /// already queued, so a reopened store sees all of them.
    fn drop(&mut self) {
        self.commands.close();
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("the catalog writer thread panicked");
        }
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
    }
}

impl StoreReads for SqliteStore {
    async fn list_topics(&self, names: &[String]) -> Result<Vec<Topic>> {
        let names = names.to_vec();
        self.read(move |connection, _| reads::list_topics(connection, &names))
            .await
    }

    async fn lookup_chunks(
        &self,
        topic_id: Uuid,
        partition: u32,
        offset: i64,
        max_chunks: u32,
    ) -> Result<ChunkLookup> {
        self.read(move |connection, _| {
            reads::lookup_chunks(connection, topic_id, partition, offset, max_chunks)
        })
        .await
    }

    async fn partition_offsets(&self, topic_id: Uuid, partition: u32) -> Result<PartitionOffsets> {
        self.read(move |connection, _| reads::partition_offsets(connection, topic_id, partition))
            .await
    }

    async fn find_chunk_by_timestamp(
        &self,
        topic_id: Uuid,
        partition: u32,
        timestamp: i64,
    ) -> Result<Option<Chunk>> {
        self.read(move |connection, _| {
            reads::find_chunk_by_timestamp(connection, topic_id, partition, timestamp)
        })
        .await
    }

    async fn list_transactions(&self, limit: u32) -> Result<Vec<TxnSummary>> {
        self.read(move |connection, _| reads::list_transactions(connection, limit))
            .await
    }

    async fn describe_transaction(&self, transactional_id: &str) -> Result<Option<TxnDescription>> {
        let transactional_id = transactional_id.to_string();
        self.read(move |connection, _| reads::describe_transaction(connection, &transactional_id))
            .await
    }

    async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition: u32,
        from_offset: i64,
        to_offset: i64,
    ) -> Result<Vec<AbortedTransaction>> {
        self.read(move |connection, _| {
            reads::aborted_transactions(connection, topic_id, partition, from_offset, to_offset)
        })
        .await
    }

    async fn describe_producers(
        &self,
        topic_id: Uuid,
        partition: u32,
    ) -> Result<Vec<ProducerState>> {
        self.read(move |connection, options| {
            let live_since_ms = options.clock.now_ms() - options.producer_id_expiration_ms;
            reads::describe_producers(connection, topic_id, partition, live_since_ms)
        })
        .await
    }

    async fn last_commit_sequence(&self) -> Result<u64> {
        self.read(|connection, _| reads::last_commit_sequence(connection))
            .await
    }

    async fn fetch_offsets(&self, group_id: &str) -> Result<Vec<CommittedOffset>> {
        let group_id = group_id.to_string();
        self.read(move |connection, _| reads::fetch_offsets(connection, &group_id))
            .await
    }

    async fn load_groups(&self) -> Result<Vec<GroupRecord>> {
        self.read(|connection, _| reads::load_groups(connection))
            .await
    }

    async fn load_consumer_groups(&self) -> Result<Vec<ConsumerGroupRecord>> {
        self.read(|connection, _| reads::load_consumer_groups(connection))
            .await
    }

    async fn list_dead_objects(&self, dead_before_ms: i64, limit: u32) -> Result<Vec<DeadObject>> {
        self.read(move |connection, _| reads::list_dead_objects(connection, dead_before_ms, limit))
            .await
    }

    async fn referenced_objects(&self, object_keys: Vec<String>) -> Result<Vec<String>> {
        self.read(move |connection, _| reads::referenced_objects(connection, &object_keys))
            .await
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>> {
        self.read(|connection, _| reads::list_agents(connection))
            .await
    }

    async fn scram_credentials(&self, users: Vec<String>) -> Result<Vec<ScramCredential>> {
        self.read(move |connection, _| rows::scram::credentials(connection, &users))
            .await
    }
}

impl_catalog_store!(SqliteStore);
