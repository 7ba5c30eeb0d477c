//! [`PostgresStore`]: the catalog in a PostgreSQL database, for
//! deployments with a separate catalog process (`strata catalog --store
//! postgres://...`).
//!
//! Writes go to one writer task over a bounded channel; the task applies
//! every queued command (up to a bound) in ONE transaction (group commit).
//! Consecutive segment commits are applied together: their rows are loaded
//! with a few set-based queries (partitions `SELECT ... FOR UPDATE`), the
//! offsets and producer checks run in memory with the same pure rules as
//! every store ([`crate::producer`]), and the results are written back with
//! a few set-based statements, so a batch costs a handful of round trips
//! however many commits it holds. Other commands run one by one, each in its
//! own savepoint, so one failure does not fail its neighbours.
//!
//! Every write transaction first locks the `commit_sequence` row, so
//! writers of several processes sharing one database serialize: the commit
//! sequence stays gap-free and monotonic, and offsets are never assigned
//! twice. Producer ids come from a database sequence, unique across
//! processes and restarts.
//!
//! Reads use the pool directly, in read-only transactions where a read needs
//! several statements to agree.
//!
//! Connections use TLS as the URL's `sslmode` asks (`disable`, `prefer`,
//! `require`, `verify-ca`, `verify-full`, with `sslrootcert`; see `tls`).

mod commit;
mod reads;
mod rows;
mod schema;
mod tls;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
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

/// Settings of a [`PostgresStore`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
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
    /// The most connections open at once (the writer's included).
    pub pool_size: usize,
    /// How long a call waits for a pooled connection, and a new connection
    /// for the server, before failing with a retryable error.
    pub connect_timeout_ms: u64,
    /// PostgreSQL ends a transaction left idle this long
    /// (`idle_in_transaction_session_timeout`), so a catalog paused
    /// mid-transaction (SIGSTOP, a VM freeze) cannot hold the writers'
    /// lock and block a standby's takeover; 0 leaves the server's setting.
    /// Keep it below the catalog lease.
    pub idle_in_transaction_timeout_ms: u64,
    /// The clock for creation times and expiry.
    pub clock: Arc<dyn Clock>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            producer_id_expiration_ms: 86_400_000,
            max_commit_age_ms: crate::store::MAX_COMMIT_AGE_MS_DEFAULT,
            group_commit_max: 256,
            queue_capacity: 4096,
            pool_size: 8,
            connect_timeout_ms: 5_000,
            idle_in_transaction_timeout_ms: 5_000,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The catalog store on PostgreSQL.
#[derive(Debug)]
pub struct PostgresStore {
    commands: CommandQueue,
    writer: Option<tokio::task::JoinHandle<()>>,
    pool: Pool,
    options: PostgresOptions,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`,
    /// or any libpq-style connection string), applies schema migrations
    /// and starts the writer task. Must be called inside a tokio runtime.
    ///
    /// Fails with `InvalidArgument` for a malformed URL, a retryable error
    /// when the server cannot be reached, `SchemaTooNew` when the database
    /// was migrated by a newer build.
    #[tracing::instrument(level = "info", skip_all)]
    pub async fn open(url: &str, options: PostgresOptions) -> Result<Self> {
        let (config, tls) = tls::parse(url)?;
        Self::open_with(config, tls, options).await
    }

    /// Like [`open`](Self::open), with an already parsed connection
    /// config (its connect timeout and application name are filled in
    /// when unset).
    pub async fn open_config(
        config: tokio_postgres::Config,
        options: PostgresOptions,
    ) -> Result<Self> {
        Self::open_with(config, tls::unverified(), options).await
    }

    async fn open_with(
        config: tokio_postgres::Config,
        tls: tokio_postgres_rustls::MakeRustlsConnect,
        options: PostgresOptions,
    ) -> Result<Self> {
        let pool = connect_pool(config, tls, &options)?;
        let mut client = get(&pool).await?;
        schema::migrate(&mut client).await?;
        drop(client);
        let (sender, receiver) = mpsc::channel(options.queue_capacity.max(1));
        let fence = LeaseFence::default();
        let writer = tokio::spawn(writer::run(
            pool.clone(),
            receiver,
            options.clone(),
            fence.clone(),
        ));
        tracing::info!(
            schema_version = schema::newest_version(),
            "postgres catalog store open"
        );
        Ok(Self {
            commands: CommandQueue::new(sender, fence),
            writer: Some(writer),
            pool,
            options,
        })
    }

    /// Stops accepting writes, waits for the writer to apply the commands
    /// already queued, and closes the pool. Dropping the store does the
    /// same without waiting.
    pub async fn close(mut self) {
        self.commands.close();
        if let Some(writer) = self.writer.take()
            && writer.await.is_err()
        {
            tracing::error!("the postgres catalog writer task panicked");
        }
        self.pool.close();
    }
}

impl Drop for PostgresStore {
    /// Closes the queue; the writer task applies what is queued and stops.
    fn drop(&mut self) {
        self.commands.close();
    }
}

/// Builds the connection pool (connections open lazily).
fn connect_pool(
    mut config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    options: &PostgresOptions,
) -> Result<Pool> {
    let timeout = Duration::from_millis(options.connect_timeout_ms.max(1));
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("strata-catalog");
    }
    if options.idle_in_transaction_timeout_ms > 0 && config.get_options().is_none() {
        config.options(format!(
            "-c idle_in_transaction_session_timeout={}",
            options.idle_in_transaction_timeout_ms
        ));
    }
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size.max(2))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .build()
        .map_err(|e| Error::InvalidArgument {
            field: "postgres pool",
            reason: e.to_string(),
        })
}

/// A pooled connection, or a retryable error.
async fn get(pool: &Pool) -> Result<deadpool_postgres::Object> {
    pool.get().await.map_err(pool_error)
}

/// Maps a pool failure: the server's own errors keep their SQLSTATE,
/// timeouts and a closed pool are retryable.
fn pool_error(error: deadpool_postgres::PoolError) -> Error {
    match error {
        deadpool_postgres::PoolError::Backend(error) => Error::from(error),
        other => Error::PostgresUnavailable {
            reason: other.to_string(),
        },
    }
}

/// A `u64` as a `BIGINT`, or `InvalidArgument` if it does not fit.
fn to_bigint(field: &'static str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::InvalidArgument {
        field,
        reason: format!("{value} does not fit in a signed 64-bit integer"),
    })
}

/// A stored `BIGINT` as a `u32`, or `Corrupt`.
fn to_u32(what: &str, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::Corrupt {
        what: format!("{what} {value}"),
    })
}

/// A stored `BIGINT` as a `u64`, or `Corrupt`.
fn to_u64(what: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| Error::Corrupt {
        what: format!("{what} {value}"),
    })
}

impl StoreReads for PostgresStore {
    async fn list_topics(&self, names: &[String]) -> Result<Vec<Topic>> {
        reads::list_topics(&get(&self.pool).await?, names).await
    }

    async fn lookup_chunks(
        &self,
        topic_id: Uuid,
        partition: u32,
        offset: i64,
        max_chunks: u32,
    ) -> Result<ChunkLookup> {
        let mut client = get(&self.pool).await?;
        reads::lookup_chunks(&mut client, topic_id, partition, offset, max_chunks).await
    }

    async fn partition_offsets(&self, topic_id: Uuid, partition: u32) -> Result<PartitionOffsets> {
        let mut client = get(&self.pool).await?;
        reads::partition_offsets(&mut client, topic_id, partition).await
    }

    async fn find_chunk_by_timestamp(
        &self,
        topic_id: Uuid,
        partition: u32,
        timestamp: i64,
    ) -> Result<Option<Chunk>> {
        let mut client = get(&self.pool).await?;
        reads::find_chunk_by_timestamp(&mut client, topic_id, partition, timestamp).await
    }

    async fn list_transactions(&self, limit: u32) -> Result<Vec<TxnSummary>> {
        reads::list_transactions(&get(&self.pool).await?, limit).await
    }

    async fn describe_transaction(&self, transactional_id: &str) -> Result<Option<TxnDescription>> {
        reads::describe_transaction(&get(&self.pool).await?, transactional_id).await
    }

    async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition: u32,
        from_offset: i64,
        to_offset: i64,
    ) -> Result<Vec<AbortedTransaction>> {
        let client = get(&self.pool).await?;
        reads::aborted_transactions(&client, topic_id, partition, from_offset, to_offset).await
    }

    async fn describe_producers(
        &self,
        topic_id: Uuid,
        partition: u32,
    ) -> Result<Vec<ProducerState>> {
        let live_since_ms = self.options.clock.now_ms() - self.options.producer_id_expiration_ms;
        let client = get(&self.pool).await?;
        reads::describe_producers(&client, topic_id, partition, live_since_ms).await
    }

    async fn last_commit_sequence(&self) -> Result<u64> {
        reads::last_commit_sequence(&get(&self.pool).await?).await
    }

    async fn fetch_offsets(&self, group_id: &str) -> Result<Vec<CommittedOffset>> {
        reads::fetch_offsets(&get(&self.pool).await?, group_id).await
    }

    async fn load_groups(&self) -> Result<Vec<GroupRecord>> {
        let mut client = get(&self.pool).await?;
        reads::load_groups(&mut client).await
    }

    async fn load_consumer_groups(&self) -> Result<Vec<ConsumerGroupRecord>> {
        reads::load_consumer_groups(&get(&self.pool).await?).await
    }

    async fn list_dead_objects(&self, dead_before_ms: i64, limit: u32) -> Result<Vec<DeadObject>> {
        reads::list_dead_objects(&get(&self.pool).await?, dead_before_ms, limit).await
    }

    async fn referenced_objects(&self, object_keys: Vec<String>) -> Result<Vec<String>> {
        reads::referenced_objects(&get(&self.pool).await?, &object_keys).await
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>> {
        reads::list_agents(&get(&self.pool).await?).await
    }

    async fn scram_credentials(&self, users: Vec<String>) -> Result<Vec<ScramCredential>> {
        rows::scram::credentials(&get(&self.pool).await?, &users).await
    }
}

impl_catalog_store!(PostgresStore);
