//! [`CatalogService`]: the gRPC `Catalog` service over any [`CatalogStore`].
//!
//! The service validates requests (Kafka's rules for names, partition
//! counts and configs), turns the store's domain errors into Kafka error
//! codes inside responses, and runs the commit stream. Store failures
//! become gRPC statuses (UNAVAILABLE = retry).

mod agents;
mod claims;
mod commit_stream;
mod faults;
mod rpc_metrics;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use strata_catalog_api::CommitStream;
use strata_catalog_api::proto::catalog_server::{Catalog, CatalogServer};
use strata_catalog_api::proto::*;
use strata_catalog_api::topic_config;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use self::agents::AgentRegistry;
use self::claims::CompactionClaims;
use self::commit_stream::CommitStreamHub;
pub use self::faults::{CommitFaultCounts, CommitFaultPlan, CommitFaults};
pub use self::rpc_metrics::RpcMetrics;
use self::rpc_metrics::RpcMetricsLayer;
use crate::group::{GroupCoordinator, GroupOptions};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{
    CatalogStore, CommittedOffset, ConfigChange, NewTopic, TopicRef, TxnOutcome, TxnRequest,
};
use crate::{Error, Result, error_code};

/// The longest topic name Kafka allows.
const TOPIC_NAME_LENGTH_MAX: usize = 249;
/// A sanity bound on partitions per topic, so one request cannot stall the
/// writer creating billions of rows.
const PARTITIONS_MAX: u32 = 100_000;
/// Kafka's default `transaction.max.timeout.ms`.
const TRANSACTION_TIMEOUT_MAX_MS: i32 = 900_000;
/// Chunks returned by LookupChunks when the request asks for 0.
const LOOKUP_CHUNKS_DEFAULT: u32 = 1_000;
/// The largest gRPC message, matching `GrpcCatalog`.
const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Dead objects listed when the request asks for 0.
const LIST_DEAD_OBJECTS_DEFAULT: u32 = 1_000;
/// The most object keys one ForgetDeadObjects or ReferencedObjects names.
const OBJECT_KEYS_MAX: usize = 10_000;

/// Settings of a [`CatalogService`].
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Recent commit events kept for subscribers catching up.
    pub commit_stream_buffer: usize,
    /// Events a live subscriber may fall behind before it is cut off
    /// (DATA_LOSS) and must resync.
    pub subscriber_queue: usize,
    /// The group coordinator's settings. Its clock is the catalog's clock,
    /// which agent leases run on too.
    pub groups: GroupOptions,
    /// An agent that does not heartbeat for this long is fenced and drops
    /// out of the fleet (Metadata).
    pub agent_lease_ms: u64,
    /// FOR TESTS ONLY: faults of the commit path (`--fault-injection`).
    pub commit_faults: Option<CommitFaults>,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            commit_stream_buffer: 16_384,
            subscriber_queue: 4_096,
            groups: GroupOptions::default(),
            agent_lease_ms: 10_000,
            commit_faults: None,
        }
    }
}

/// The catalog's gRPC service. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct CatalogService {
    store: Arc<dyn CatalogStore>,
    hub: Arc<CommitStreamHub>,
    groups: GroupCoordinator,
    claims: Arc<CompactionClaims>,
    agents: Arc<AgentRegistry>,
    rpc_metrics: Arc<RpcMetrics>,
    /// When a transaction API last ran: the reaper sweeps only while a
    /// transaction could still be open (see `transaction_reaper`).
    txn_activity: Arc<TxnActivity>,
    /// Test-only commit faults; `None` in production.
    commit_faults: Option<CommitFaults>,
}

impl CatalogService {
    /// A service over `store`; the commit stream continues after the
    /// store's last sequence, and the group coordinator starts with the
    /// store's persisted groups. Compaction claims run on the catalog's
    /// clock, `options.groups.clock`.
    pub async fn new(store: Arc<dyn CatalogStore>, options: ServiceOptions) -> Result<Self> {
        let last_sequence = store.last_commit_sequence().await?;
        let hub = CommitStreamHub::new(
            last_sequence,
            options.commit_stream_buffer,
            options.subscriber_queue,
        );
        let claims = CompactionClaims::new(Arc::clone(&options.groups.clock));
        let agents = AgentRegistry::start(
            Arc::clone(&store),
            Arc::clone(&options.groups.clock),
            options.agent_lease_ms,
        )
        .await?;
        let commit_faults = options.commit_faults;
        let groups = GroupCoordinator::start(Arc::clone(&store), options.groups).await?;
        let hub = Arc::new(hub);
        let txn_activity = Arc::new(TxnActivity::new());
        tokio::spawn(transaction_reaper(
            Arc::downgrade(&hub),
            Arc::clone(&store),
            Arc::clone(&txn_activity),
        ));
        Ok(Self {
            store,
            hub,
            groups,
            claims: Arc::new(claims),
            agents,
            rpc_metrics: Arc::default(),
            txn_activity,
            commit_faults,
        })
    }

    /// Counts and latencies of the RPCs [`serve`] answered, for `/metrics`.
    pub fn rpc_metrics(&self) -> Arc<RpcMetrics> {
        Arc::clone(&self.rpc_metrics)
    }

    /// The group coordinator behind `GroupCall`.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    /// Fences every agent whose lease has run out now (the service also
    /// does this on its own every quarter lease); for tests with a manual
    /// clock.
    pub async fn reap_agents(&self) -> Result<()> {
        self.agents.reap().await
    }

    /// Opens a [`SqliteStore`] at `path` and serves it.
    pub async fn open_sqlite(
        path: impl AsRef<Path>,
        sqlite: SqliteOptions,
        options: ServiceOptions,
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(path, sqlite))
            .await
            .map_err(|e| Error::Task(e.to_string()))??;
        Self::new(Arc::new(store), options).await
    }

    /// The store behind this service.
    pub fn store(&self) -> &Arc<dyn CatalogStore> {
        &self.store
    }

    /// The tonic server for this service, with message limits matching
    /// `GrpcCatalog`.
    pub fn into_server(self) -> CatalogServer<Self> {
        CatalogServer::new(self)
            .max_decoding_message_size(MESSAGE_BYTES_MAX)
            .max_encoding_message_size(MESSAGE_BYTES_MAX)
    }
}

/// Runs the catalog's gRPC server on `listener` until `shutdown` fires,
/// then finishes the requests in flight.
#[tracing::instrument(level = "info", skip_all, fields(address = ?listener.local_addr().ok()))]
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: CatalogService,
    shutdown: CancellationToken,
) -> Result<()> {
    let incoming = TcpListenerStream::new(listener).map(|connection| {
        connection.inspect(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "could not set TCP_NODELAY");
            }
        })
    });
    let metrics = RpcMetricsLayer(service.rpc_metrics());
    tonic::transport::Server::builder()
        .layer(metrics)
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .map_err(Error::Transport)
}

/// Checks a topic name against Kafka's rules: 1 to 249 characters of
/// `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "the name is empty"
    } else if name == "." || name == ".." {
        "the name cannot be '.' or '..'"
    } else if name.len() > TOPIC_NAME_LENGTH_MAX {
        "the name is longer than 249 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "the name may contain only ASCII alphanumerics, '.', '_' and '-'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidTopicName {
        name: name.to_string(),
        reason,
    })
}

/// One result per partition of `partitions`, the code of each by index.
fn partition_results(
    partitions: &[TxnPartition],
    code: impl Fn(usize) -> i16,
) -> Vec<TxnPartitionResult> {
    partitions
        .iter()
        .enumerate()
        .map(|(i, p)| TxnPartitionResult {
            topic_id: p.topic_id.clone(),
            partition: p.partition,
            error_code: i32::from(code(i)),
        })
        .collect()
}

/// How often the service looks for transactions past their timeout.
const TRANSACTION_TIMEOUT_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// When the transaction APIs last ran, in milliseconds since the service
/// started (which counts as activity: transactions persisted by an earlier
/// run may still be open).
#[derive(Debug)]
struct TxnActivity {
    started: tokio::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl TxnActivity {
    fn new() -> Self {
        Self {
            started: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A transaction may have begun or changed.
    fn touch(&self) {
        self.last_ms
            .fetch_max(self.now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a transaction could still be open and unexpired: none can
    /// outlive the longest timeout a producer may ask for after the last
    /// call of a transaction API.
    fn may_have_open_transactions(&self) -> bool {
        let quiet = u64::try_from(TRANSACTION_TIMEOUT_MAX_MS).unwrap_or(u64::MAX)
            + 2 * u64::try_from(TRANSACTION_TIMEOUT_CHECK.as_millis()).unwrap_or(0);
        self.now_ms()
            <= self
                .last_ms
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_add(quiet)
    }
}

/// Aborts timed-out transactions every [`TRANSACTION_TIMEOUT_CHECK`] until
/// the service is dropped. A sweep is a write to the store, so it runs only
/// while a transaction could be open: an idle catalog's writer (and its
/// commit latency) is left alone.
async fn transaction_reaper(
    service: std::sync::Weak<CommitStreamHub>,
    store: Arc<dyn CatalogStore>,
    activity: Arc<TxnActivity>,
) {
    let mut ticks = tokio::time::interval(TRANSACTION_TIMEOUT_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(hub) = service.upgrade() else {
            return;
        };
        if !activity.may_have_open_transactions() {
            continue;
        }
        let aborted = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                let aborts = store.abort_expired_transactions().await?;
                if let Some(event) = aborts.event {
                    hub.publish(event);
                }
                Ok::<_, Error>(aborts.transactional_ids)
            }
        })
        .await;
        match aborted {
            Ok(Ok(ids)) if !ids.is_empty() => {
                tracing::info!(?ids, "aborted transactions past their timeout");
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot abort timed-out transactions"),
            Err(error) => tracing::warn!(%error, "transaction reaper task failed"),
        }
    }
}

/// Splits a store result into a value, a Kafka error (code and message) for
/// the response, or a gRPC status for failures that are not Kafka errors.
fn kafka<T>(result: Result<T>) -> Result<Result<T, (i32, String)>, Status> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(error) => match error.kafka_error_code() {
            Some(code) => Ok(Err((i32::from(code), error.to_string()))),
            None => Err(error.into()),
        },
    }
}

fn validate_configs(entries: &[TopicConfigEntry]) -> Result<BTreeMap<String, String>> {
    let mut configs = BTreeMap::new();
    for entry in entries {
        topic_config::validate(&entry.name, &entry.value).map_err(|reason| {
            Error::InvalidConfig {
                name: entry.name.clone(),
                reason,
            }
        })?;
        if configs
            .insert(entry.name.clone(), entry.value.clone())
            .is_some()
        {
            return Err(Error::InvalidConfig {
                name: entry.name.clone(),
                reason: "set more than once".to_string(),
            });
        }
    }
    Ok(configs)
}

fn validate_partition_count(current: u32, requested: u32) -> Result<()> {
    if requested == 0 || requested <= current || requested > PARTITIONS_MAX {
        return Err(Error::InvalidPartitions { current, requested });
    }
    Ok(())
}

/// A topic id from the wire; `None` when it is not 16 bytes.
fn topic_id(bytes: &[u8]) -> Option<Uuid> {
    Uuid::from_slice(bytes).ok()
}

impl CatalogService {
    async fn topic_exists(&self, name: &str) -> Result<Option<Topic>> {
        let mut topics = self.store.list_topics(&[name.to_string()]).await?;
        Ok(topics.pop())
    }

    async fn create_topic_checked(&self, request: CreateTopicRequest) -> Result<Topic> {
        validate_topic_name(&request.name)?;
        validate_partition_count(0, request.partition_count)?;
        let configs = validate_configs(&request.configs)?;
        let topic = NewTopic {
            topic_id: Uuid::new_v4(),
            name: request.name,
            partition_count: request.partition_count,
            configs,
        };
        if !request.validate_only {
            let created = self.store.create_topic(topic).await;
            self.groups.invalidate_topics();
            return created;
        }
        if self.topic_exists(&topic.name).await?.is_some() {
            return Err(Error::TopicAlreadyExists { name: topic.name });
        }
        Ok(Topic {
            topic_id: Vec::new(),
            name: topic.name,
            partition_count: topic.partition_count,
            configs: request.configs,
            created_ms: 0,
        })
    }

    async fn create_partitions_checked(&self, request: CreatePartitionsRequest) -> Result<()> {
        let current =
            self.topic_exists(&request.name)
                .await?
                .ok_or_else(|| Error::UnknownTopic {
                    name: request.name.clone(),
                })?;
        validate_partition_count(current.partition_count, request.new_partition_count)?;
        if !request.validate_only {
            let grown = self
                .store
                .create_partitions(&request.name, request.new_partition_count)
                .await;
            self.groups.invalidate_topics();
            grown?;
        }
        Ok(())
    }

    async fn alter_configs_checked(&self, request: AlterTopicConfigsRequest) -> Result<()> {
        let set = validate_configs(&request.set)?;
        if let Some(name) = request
            .delete
            .iter()
            .find(|n| topic_config::find(n).is_none())
        {
            return Err(Error::InvalidConfig {
                name: name.clone(),
                reason: "unknown topic config".to_string(),
            });
        }
        if request.validate_only {
            self.topic_exists(&request.name)
                .await?
                .ok_or_else(|| Error::UnknownTopic {
                    name: request.name.clone(),
                })?;
            return Ok(());
        }
        let change = ConfigChange {
            set,
            delete: request.delete,
            replace_all: request.replace_all,
        };
        self.store
            .alter_topic_configs(&request.name, change)
            .await?;
        Ok(())
    }

    /// Runs a store write that yields a commit event in its own task, so
    /// the event is published even if the caller goes away mid-call (a
    /// missing event would stall the stream until the gap is declared).
    async fn write_and_publish<T: Send + 'static>(
        &self,
        write: impl Future<Output = Result<(T, Option<CommitEvent>)>> + Send + 'static,
    ) -> Result<T> {
        let hub = Arc::clone(&self.hub);
        tokio::spawn(async move {
            let (value, event) = write.await?;
            if let Some(event) = event {
                hub.publish(event);
            }
            Ok(value)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))?
    }

    fn check_commit(request: &CommitSegmentRequest) -> Result<()> {
        if request.segment_id.is_empty() {
            return Err(Error::InvalidArgument {
                field: "segment_id",
                reason: "empty".to_string(),
            });
        }
        let empty_batch = request
            .chunks
            .iter()
            .flat_map(|chunk| &chunk.batches)
            .any(|batch| batch.offset_count == 0);
        if empty_batch {
            return Err(Error::InvalidArgument {
                field: "offset_count",
                reason: "a batch spans at least one offset".to_string(),
            });
        }
        Ok(())
    }

    /// Runs a transaction coordinator call and publishes its markers.
    async fn txn_call(
        &self,
        producer: Option<TxnProducer>,
        request: TxnRequest,
    ) -> Result<TxnOutcome> {
        self.txn_activity.touch();
        let producer = producer.ok_or(Error::InvalidArgument {
            field: "producer",
            reason: "missing".to_string(),
        })?;
        let store = Arc::clone(&self.store);
        self.write_and_publish(async move {
            let outcome = store.transaction(producer, request).await?;
            let event = outcome.event.clone();
            Ok((outcome, event))
        })
        .await
    }

    /// Aborts every transaction older than its timeout now (the service
    /// also does this on its own every second); for tests with a manual
    /// clock. Returns the transactional ids aborted.
    pub async fn abort_expired_transactions(&self) -> Result<Vec<String>> {
        let store = Arc::clone(&self.store);
        self.write_and_publish(async move {
            let aborts = store.abort_expired_transactions().await?;
            Ok((aborts.transactional_ids, aborts.event))
        })
        .await
    }

    fn check_init_producer(request: &InitProducerIdRequest) -> Option<i16> {
        let fresh = request.producer_id == -1 && request.producer_epoch == -1;
        let existing =
            request.producer_id >= 0 && (0..=i32::from(i16::MAX)).contains(&request.producer_epoch);
        if !fresh && !existing {
            return Some(error_code::INVALID_REQUEST);
        }
        let timeout = request.transaction_timeout_ms;
        if !request.transactional_id.is_empty()
            && !(1..=TRANSACTION_TIMEOUT_MAX_MS).contains(&timeout)
        {
            return Some(error_code::INVALID_TRANSACTION_TIMEOUT);
        }
        None
    }
}

#[tonic::async_trait]
impl Catalog for CatalogService {
    #[tracing::instrument(level = "debug", skip_all, fields(topic = %request.get_ref().name))]
    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        let response = match kafka(self.create_topic_checked(request.into_inner()).await)? {
            Ok(topic) => CreateTopicResponse {
                topic: Some(topic),
                ..Default::default()
            },
            Err((error_code, error_message)) => CreateTopicResponse {
                error_code,
                error_message,
                topic: None,
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(topic = %request.get_ref().name))]
    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        let request = request.into_inner();
        let topic = if request.topic_id.is_empty() {
            TopicRef::Name(request.name)
        } else {
            match topic_id(&request.topic_id) {
                Some(id) => TopicRef::Id(id),
                None => {
                    return Ok(Response::new(DeleteTopicResponse {
                        error_code: i32::from(error_code::UNKNOWN_TOPIC_ID),
                        ..Default::default()
                    }));
                }
            }
        };
        let store = Arc::clone(&self.store);
        let deleted = self
            .write_and_publish(async move {
                let deleted = store.delete_topic(topic).await?;
                Ok((deleted.topic, Some(deleted.event)))
            })
            .await;
        self.groups.invalidate_topics();
        let response = match kafka(deleted)? {
            Ok(topic) => DeleteTopicResponse {
                error_code: 0,
                topic_id: topic.topic_id,
                name: topic.name,
            },
            Err((error_code, _)) => DeleteTopicResponse {
                error_code,
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(topic = %request.get_ref().name))]
    async fn create_partitions(
        &self,
        request: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        let result = kafka(self.create_partitions_checked(request.into_inner()).await)?;
        let (error_code, error_message) = result.err().unwrap_or_default();
        Ok(Response::new(CreatePartitionsResponse {
            error_code,
            error_message,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        let topics = self.store.list_topics(&request.into_inner().names).await?;
        Ok(Response::new(ListTopicsResponse { topics }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(topic = %request.get_ref().name))]
    async fn alter_topic_configs(
        &self,
        request: Request<AlterTopicConfigsRequest>,
    ) -> Result<Response<AlterTopicConfigsResponse>, Status> {
        let result = kafka(self.alter_configs_checked(request.into_inner()).await)?;
        let (error_code, error_message) = result.err().unwrap_or_default();
        Ok(Response::new(AlterTopicConfigsResponse {
            error_code,
            error_message,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(segment_id = %request.get_ref().segment_id))]
    async fn commit_segment(
        &self,
        request: Request<CommitSegmentRequest>,
    ) -> Result<Response<CommitSegmentResponse>, Status> {
        let request = request.into_inner();
        Self::check_commit(&request)?;
        let store = Arc::clone(&self.store);
        let fault = self
            .commit_faults
            .as_ref()
            .map(CommitFaults::next)
            .unwrap_or_default();
        // The write runs in a task of its own (`write_and_publish`), so a
        // late commit lands even after its caller stopped waiting.
        let response = self
            .write_and_publish(async move {
                if let Some(delay) = fault.late_apply {
                    tracing::warn!(?delay, "fault injection: holding a commit, then applying it");
                    tokio::time::sleep(delay).await;
                }
                let outcome = store.commit_segment(request).await?;
                Ok((outcome.response, outcome.event))
            })
            .await?;
        if fault.lose_reply {
            tracing::warn!("fault injection: the commit applied; its reply is lost");
            return Err(Status::unavailable(
                "fault injection: the commit was applied but its reply is lost",
            ));
        }
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition, offset = request.get_ref().offset))]
    async fn lookup_chunks(
        &self,
        request: Request<LookupChunksRequest>,
    ) -> Result<Response<LookupChunksResponse>, Status> {
        let request = request.into_inner();
        let max_chunks = match request.max_chunks {
            0 => LOOKUP_CHUNKS_DEFAULT,
            n => n,
        };
        let result = match topic_id(&request.topic_id) {
            Some(id) => {
                self.store
                    .lookup_chunks(id, request.partition, request.offset, max_chunks)
                    .await
            }
            None => Err(unknown_partition(&request.topic_id, request.partition)),
        };
        let response = match kafka(result)? {
            Ok(lookup) => LookupChunksResponse {
                error_code: 0,
                chunks: lookup.chunks,
                log_start_offset: lookup.log_start_offset,
                high_watermark: lookup.high_watermark,
            },
            Err((error_code, _)) => LookupChunksResponse {
                error_code,
                chunks: Vec::new(),
                log_start_offset: -1,
                high_watermark: -1,
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition))]
    async fn get_partition_offsets(
        &self,
        request: Request<GetPartitionOffsetsRequest>,
    ) -> Result<Response<GetPartitionOffsetsResponse>, Status> {
        let request = request.into_inner();
        let result = match topic_id(&request.topic_id) {
            Some(id) => self.store.partition_offsets(id, request.partition).await,
            None => Err(unknown_partition(&request.topic_id, request.partition)),
        };
        let response = match kafka(result)? {
            Ok(offsets) => GetPartitionOffsetsResponse {
                error_code: 0,
                log_start_offset: offsets.log_start_offset,
                high_watermark: offsets.high_watermark,
                max_timestamp: offsets.max_timestamp,
                max_timestamp_chunk: offsets.max_timestamp_chunk,
                last_stable_offset: offsets.last_stable_offset,
            },
            Err((error_code, _)) => GetPartitionOffsetsResponse {
                error_code,
                log_start_offset: -1,
                high_watermark: -1,
                max_timestamp: -1,
                max_timestamp_chunk: None,
                last_stable_offset: -1,
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition, timestamp = request.get_ref().timestamp))]
    async fn find_chunk_by_timestamp(
        &self,
        request: Request<FindChunkByTimestampRequest>,
    ) -> Result<Response<FindChunkByTimestampResponse>, Status> {
        let request = request.into_inner();
        let result = match topic_id(&request.topic_id) {
            Some(id) => {
                self.store
                    .find_chunk_by_timestamp(id, request.partition, request.timestamp)
                    .await
            }
            None => Err(unknown_partition(&request.topic_id, request.partition)),
        };
        let response = match kafka(result)? {
            Ok(chunk) => FindChunkByTimestampResponse {
                error_code: 0,
                chunk,
            },
            Err((error_code, _)) => FindChunkByTimestampResponse {
                error_code,
                chunk: None,
            },
        };
        Ok(Response::new(response))
    }

    type SubscribeCommitsStream = CommitStream;

    #[tracing::instrument(level = "debug", skip_all, fields(after_sequence = request.get_ref().after_sequence))]
    async fn subscribe_commits(
        &self,
        request: Request<SubscribeCommitsRequest>,
    ) -> Result<Response<Self::SubscribeCommitsStream>, Status> {
        let stream = self.hub.subscribe(request.into_inner().after_sequence)?;
        Ok(Response::new(stream))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(producer_id = request.get_ref().producer_id))]
    async fn init_producer_id(
        &self,
        request: Request<InitProducerIdRequest>,
    ) -> Result<Response<InitProducerIdResponse>, Status> {
        let request = request.into_inner();
        let failed = |error_code: i16| InitProducerIdResponse {
            error_code: i32::from(error_code),
            producer_id: -1,
            producer_epoch: -1,
        };
        if let Some(code) = Self::check_init_producer(&request) {
            return Ok(Response::new(failed(code)));
        }
        let store = Arc::clone(&self.store);
        let outcome = self
            .write_and_publish(async move {
                let outcome = store.init_producer_id(request).await?;
                Ok((outcome.granted, outcome.event))
            })
            .await;
        let response = match kafka(outcome)? {
            Ok(granted) => InitProducerIdResponse {
                error_code: 0,
                producer_id: granted.producer_id,
                producer_epoch: granted.producer_epoch,
            },
            Err((error_code, _)) => InitProducerIdResponse {
                error_code,
                ..failed(0)
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn add_partitions_to_txn(
        &self,
        request: Request<AddPartitionsToTxnRequest>,
    ) -> Result<Response<AddPartitionsToTxnResponse>, Status> {
        let request = request.into_inner();
        let refs = request.partitions.clone();
        let partitions = refs
            .iter()
            .map(|p| Some((topic_id(&p.topic_id)?, p.partition)))
            .collect::<Option<Vec<_>>>();
        let Some(partitions) = partitions else {
            return Ok(Response::new(AddPartitionsToTxnResponse {
                error_code: 0,
                partitions: partition_results(&refs, |_| error_code::UNKNOWN_TOPIC_OR_PARTITION),
            }));
        };
        let outcome = self
            .txn_call(request.producer, TxnRequest::AddPartitions(partitions))
            .await;
        let response = match kafka(outcome)? {
            Ok(outcome) => AddPartitionsToTxnResponse {
                error_code: 0,
                partitions: partition_results(&refs, |i| outcome.partition_codes[i]),
            },
            Err((error_code, _)) => AddPartitionsToTxnResponse {
                error_code,
                partitions: Vec::new(),
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn add_offsets_to_txn(
        &self,
        request: Request<AddOffsetsToTxnRequest>,
    ) -> Result<Response<AddOffsetsToTxnResponse>, Status> {
        let request = request.into_inner();
        let call = TxnRequest::AddOffsets {
            group_id: request.group_id,
        };
        let outcome = self.txn_call(request.producer, call).await;
        let error_code = match kafka(outcome)? {
            Ok(_) => 0,
            Err((error_code, _)) => error_code,
        };
        Ok(Response::new(AddOffsetsToTxnResponse { error_code }))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn txn_offset_commit(
        &self,
        request: Request<TxnOffsetCommitRequest>,
    ) -> Result<Response<TxnOffsetCommitResponse>, Status> {
        let request = request.into_inner();
        let refs: Vec<TxnPartition> = request
            .offsets
            .iter()
            .map(|o| TxnPartition {
                topic_id: o.topic_id.clone(),
                partition: o.partition,
            })
            .collect();
        let offsets = request
            .offsets
            .iter()
            .map(|o| {
                Some(CommittedOffset {
                    topic_id: topic_id(&o.topic_id)?,
                    partition: o.partition,
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp_ms: -1,
                })
            })
            .collect::<Option<Vec<_>>>();
        let Some(offsets) = offsets else {
            return Ok(Response::new(TxnOffsetCommitResponse {
                error_code: 0,
                partitions: partition_results(&refs, |_| error_code::UNKNOWN_TOPIC_OR_PARTITION),
            }));
        };
        let call = TxnRequest::CommitOffsets {
            group_id: request.group_id,
            offsets,
        };
        let outcome = self.txn_call(request.producer, call).await;
        let response = match kafka(outcome)? {
            Ok(outcome) => TxnOffsetCommitResponse {
                error_code: 0,
                partitions: partition_results(&refs, |i| outcome.partition_codes[i]),
            },
            Err((error_code, _)) => TxnOffsetCommitResponse {
                error_code,
                partitions: Vec::new(),
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(commit = request.get_ref().commit))]
    async fn end_txn(
        &self,
        request: Request<EndTxnRequest>,
    ) -> Result<Response<EndTxnResponse>, Status> {
        let request = request.into_inner();
        let call = TxnRequest::End {
            commit: request.commit,
        };
        let outcome = self.txn_call(request.producer, call).await;
        let error_code = match kafka(outcome)? {
            Ok(_) => 0,
            Err((error_code, _)) => error_code,
        };
        Ok(Response::new(EndTxnResponse { error_code }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition))]
    async fn list_aborted_transactions(
        &self,
        request: Request<ListAbortedTransactionsRequest>,
    ) -> Result<Response<ListAbortedTransactionsResponse>, Status> {
        let request = request.into_inner();
        let result = match topic_id(&request.topic_id) {
            Some(id) => {
                self.store
                    .aborted_transactions(
                        id,
                        request.partition,
                        request.from_offset,
                        request.to_offset,
                    )
                    .await
            }
            None => Err(unknown_partition(&request.topic_id, request.partition)),
        };
        let response = match kafka(result)? {
            Ok(transactions) => ListAbortedTransactionsResponse {
                error_code: 0,
                transactions,
            },
            Err((error_code, _)) => ListAbortedTransactionsResponse {
                error_code,
                transactions: Vec::new(),
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition))]
    async fn describe_producers(
        &self,
        request: Request<DescribeProducersRequest>,
    ) -> Result<Response<DescribeProducersResponse>, Status> {
        let request = request.into_inner();
        let result = match topic_id(&request.topic_id) {
            Some(id) => {
                self.describe_partition_producers(id, request.partition)
                    .await
            }
            None => Err(unknown_partition(&request.topic_id, request.partition)),
        };
        let response = match kafka(result)? {
            Ok(producers) => DescribeProducersResponse {
                error_code: 0,
                producers,
            },
            Err((error_code, _)) => DescribeProducersResponse {
                error_code,
                producers: Vec::new(),
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(api_key = request.get_ref().api_key, api_version = request.get_ref().api_version))]
    async fn group_call(
        &self,
        request: Request<GroupCallRequest>,
    ) -> Result<Response<GroupCallResponse>, Status> {
        let request = request.into_inner();
        let (Ok(api_key), Ok(api_version)) = (
            i16::try_from(request.api_key),
            i16::try_from(request.api_version),
        ) else {
            return Err(Status::invalid_argument(
                "api_key and api_version are 16-bit",
            ));
        };
        let body = self
            .groups
            .call(
                api_key,
                api_version,
                &request.body,
                &request.client_id,
                &request.client_host,
            )
            .await?;
        Ok(Response::new(GroupCallResponse { body }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition))]
    async fn replace_chunks(
        &self,
        request: Request<ReplaceChunksRequest>,
    ) -> Result<Response<ReplaceChunksResponse>, Status> {
        let request = request.into_inner();
        let store = Arc::clone(&self.store);
        let outcome = self
            .write_and_publish(async move {
                let outcome = store.replace_chunks(request).await?;
                let event = outcome.event.clone();
                Ok((outcome, event))
            })
            .await;
        let response = match kafka(outcome)? {
            Ok(outcome) => {
                if outcome.conflict {
                    tracing::debug!("compaction swap conflict");
                }
                ReplaceChunksResponse {
                    error_code: 0,
                    conflict: outcome.conflict,
                    sequence: outcome.sequence,
                }
            }
            Err((error_code, _)) => ReplaceChunksResponse {
                error_code,
                conflict: false,
                sequence: 0,
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition, offset = request.get_ref().offset))]
    async fn delete_records(
        &self,
        request: Request<DeleteRecordsRequest>,
    ) -> Result<Response<DeleteRecordsResponse>, Status> {
        let request = request.into_inner();
        let result = match topic_id(&request.topic_id) {
            Some(id) => {
                let store = Arc::clone(&self.store);
                self.write_and_publish(async move {
                    let outcome = store
                        .delete_records(id, request.partition, request.offset)
                        .await?;
                    Ok((outcome.low_watermark, outcome.event))
                })
                .await
            }
            None => Err(unknown_partition(&request.topic_id, request.partition)),
        };
        let response = match kafka(result)? {
            Ok(low_watermark) => DeleteRecordsResponse {
                error_code: 0,
                low_watermark,
            },
            Err((error_code, _)) => DeleteRecordsResponse {
                error_code,
                low_watermark: -1,
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(dead_before_ms = request.get_ref().dead_before_ms))]
    async fn list_dead_objects(
        &self,
        request: Request<ListDeadObjectsRequest>,
    ) -> Result<Response<ListDeadObjectsResponse>, Status> {
        let request = request.into_inner();
        let limit = match request.limit {
            0 => LIST_DEAD_OBJECTS_DEFAULT,
            n => n,
        };
        let objects = self
            .store
            .list_dead_objects(request.dead_before_ms, limit)
            .await?
            .into_iter()
            .map(|dead| DeadObject {
                object_key: dead.object_key,
                dead_since_ms: dead.dead_since_ms,
            })
            .collect();
        Ok(Response::new(ListDeadObjectsResponse { objects }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(objects = request.get_ref().object_keys.len()))]
    async fn forget_dead_objects(
        &self,
        request: Request<ForgetDeadObjectsRequest>,
    ) -> Result<Response<ForgetDeadObjectsResponse>, Status> {
        let keys = checked_keys(request.into_inner().object_keys)?;
        if !keys.is_empty() {
            self.store.forget_dead_objects(keys).await?;
        }
        Ok(Response::new(ForgetDeadObjectsResponse {}))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(objects = request.get_ref().object_keys.len()))]
    async fn referenced_objects(
        &self,
        request: Request<ReferencedObjectsRequest>,
    ) -> Result<Response<ReferencedObjectsResponse>, Status> {
        let keys = checked_keys(request.into_inner().object_keys)?;
        let object_keys = if keys.is_empty() {
            Vec::new()
        } else {
            self.store.referenced_objects(keys).await?
        };
        Ok(Response::new(ReferencedObjectsResponse { object_keys }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition, compactor = %request.get_ref().compactor_id))]
    async fn claim_compaction(
        &self,
        request: Request<ClaimCompactionRequest>,
    ) -> Result<Response<ClaimCompactionResponse>, Status> {
        let request = request.into_inner();
        if request.compactor_id.is_empty() {
            return Err(Status::invalid_argument("compactor_id is empty"));
        }
        if !(1..=claims::LEASE_MAX_MS).contains(&request.lease_ms) {
            return Err(Status::invalid_argument(
                "lease_ms must be between 1 ms and 1 hour",
            ));
        }
        let answer = self.claims.claim(
            (request.topic_id, request.partition),
            &request.compactor_id,
            request.lease_ms,
        );
        Ok(Response::new(ClaimCompactionResponse {
            granted: answer.granted,
            expires_ms: answer.expires_ms,
            holder: answer.holder,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition, compactor = %request.get_ref().compactor_id))]
    async fn release_compaction(
        &self,
        request: Request<ReleaseCompactionRequest>,
    ) -> Result<Response<ReleaseCompactionResponse>, Status> {
        let request = request.into_inner();
        let released = self.claims.release(
            &(request.topic_id, request.partition),
            &request.compactor_id,
        );
        Ok(Response::new(ReleaseCompactionResponse { released }))
    }
    // ---------- agents ----------

    #[tracing::instrument(level = "debug", skip_all, fields(agent_id = %request.get_ref().agent_id))]
    async fn register_agent(
        &self,
        request: Request<RegisterAgentRequest>,
    ) -> Result<Response<RegisterAgentResponse>, Status> {
        Ok(Response::new(
            self.agents.register(request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(agent_id = %request.get_ref().agent_id, epoch = request.get_ref().epoch))]
    async fn agent_heartbeat(
        &self,
        request: Request<AgentHeartbeatRequest>,
    ) -> Result<Response<AgentHeartbeatResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(
            self.agents
                .heartbeat(&request.agent_id, request.epoch)
                .await?,
        ))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_agents(
        &self,
        _request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        Ok(Response::new(ListAgentsResponse {
            agents: self.agents.list().await?,
        }))
    }
}

/// Object keys of a GC request: at most [`OBJECT_KEYS_MAX`].
fn checked_keys(keys: Vec<String>) -> Result<Vec<String>, Status> {
    if keys.len() > OBJECT_KEYS_MAX {
        return Err(Status::invalid_argument(format!(
            "{} object keys; at most {OBJECT_KEYS_MAX} per call",
            keys.len()
        )));
    }
    Ok(keys)
}

impl CatalogService {
    async fn describe_partition_producers(
        &self,
        topic_id: Uuid,
        partition: u32,
    ) -> Result<Vec<ProducerState>> {
        // Unknown partitions answer UNKNOWN_TOPIC_OR_PARTITION, not an
        // empty list.
        self.store.partition_offsets(topic_id, partition).await?;
        self.store.describe_producers(topic_id, partition).await
    }
}

fn unknown_partition(topic_id: &[u8], partition: u32) -> Error {
    tracing::debug!(topic_id_bytes = topic_id.len(), "topic id is not 16 bytes");
    Error::UnknownPartition {
        topic_id: Uuid::nil(),
        partition,
    }
}

#[cfg(test)]
mod txn_activity_tests {
    use super::*;

    /// Goal: the reaper stops writing to the store once no transaction can
    /// be open, and starts again with the next transaction call. Method:
    /// tokio's paused clock across the longest transaction timeout.
    #[tokio::test(start_paused = true)]
    async fn sweeps_only_while_a_transaction_could_be_open() {
        let activity = TxnActivity::new();
        assert!(activity.may_have_open_transactions(), "after a start");
        let longest = std::time::Duration::from_millis(
            u64::try_from(TRANSACTION_TIMEOUT_MAX_MS).expect("positive"),
        );
        tokio::time::advance(longest).await;
        assert!(activity.may_have_open_transactions(), "within the timeout");
        tokio::time::advance(TRANSACTION_TIMEOUT_CHECK * 3).await;
        assert!(!activity.may_have_open_transactions(), "quiet");
        activity.touch();
        assert!(activity.may_have_open_transactions(), "a transaction call");
    }
}
