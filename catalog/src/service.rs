//! [`CatalogService`]: the gRPC `Catalog` service over any [`CatalogStore`].
//!
//! The service validates requests (Kafka's rules for names, partition
//! counts and configs), turns the store's domain errors into Kafka error
//! codes inside responses, and runs the commit stream. Store failures
//! become gRPC statuses (UNAVAILABLE = retry).

mod agents;
mod catalog_metrics;
mod claims;
mod commit_stream;
mod compaction;
mod faults;
mod groups;
mod ha;
mod log;
mod producers;
mod rpc_metrics;
mod scram;
mod topics;
mod transactions;
mod txn_admin;

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use strata_catalog_api::CommitStream;
use strata_catalog_api::proto::catalog_server::{Catalog, CatalogServer};
use strata_catalog_api::proto::*;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use self::agents::AgentRegistry;
pub use self::catalog_metrics::CatalogMetrics;
use self::claims::CompactionClaims;
use self::commit_stream::CommitStreamHub;
pub use self::faults::{CommitFaultCounts, CommitFaultPlan, CommitFaults};
pub use self::ha::{ACTIVE_CATALOG_HEADER, HaCatalog, HaOptions, HaRouter};
pub use self::rpc_metrics::RpcMetrics;
use self::rpc_metrics::RpcMetricsLayer;
pub use self::topics::validate_topic_name;
use self::transactions::{TxnActivity, transaction_reaper};
use crate::group::{GroupCoordinator, GroupOptions};
use crate::store::CatalogStore;
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::{Error, Result};

/// The largest gRPC message, matching `GrpcCatalog`.
const MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Settings of a [`CatalogService`].
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Recent commit events kept for subscribers catching up.
    pub commit_stream_buffer: usize,
    /// Events a live subscriber may fall behind before it is cut off
    /// (DATA_LOSS) and must resync.
    pub subscriber_queue: usize,
    /// How long commit events wait behind a missing sequence (a write
    /// whose outcome the catalog did not learn) before it is declared lost
    /// and subscribers resync.
    pub commit_gap_timeout_ms: u64,
    /// The process's catalog metrics (shared by the services a standby
    /// builds each time it takes over).
    pub metrics: Arc<CatalogMetrics>,
    /// The group coordinator's settings. Its clock is the catalog's clock,
    /// which agent leases run on too.
    pub groups: GroupOptions,
    /// An agent that does not heartbeat for this long is fenced and drops
    /// out of the fleet (Metadata).
    pub agent_lease_ms: u64,
    /// FOR TESTS ONLY: faults of the commit path (`--fault-injection`).
    pub commit_faults: Option<CommitFaults>,
    /// Accept commits with agent epoch 0, which skip fencing: only for a
    /// catalog whose agents run in the same process (`strata dev`, tests).
    /// `strata catalog` turns this off, so every commit it accepts is
    /// fenced by a registration.
    pub unfenced_commits: bool,
    /// The store's `max_commit_age_ms`, told to compactors
    /// (ReferencedObjects) so their orphan sweep waits twice it.
    pub max_commit_age_ms: i64,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            commit_stream_buffer: 16_384,
            subscriber_queue: 4_096,
            commit_gap_timeout_ms: 2_000,
            metrics: Arc::default(),
            groups: GroupOptions::default(),
            agent_lease_ms: 10_000,
            commit_faults: None,
            unfenced_commits: true,
            max_commit_age_ms: crate::store::MAX_COMMIT_AGE_MS_DEFAULT,
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
    /// See [`ServiceOptions::unfenced_commits`].
    unfenced_commits: bool,
    /// See [`ServiceOptions::max_commit_age_ms`].
    max_commit_age_ms: i64,
    /// The catalog's clock (transaction durations for the admin APIs).
    clock: Arc<dyn crate::store::Clock>,
}

impl CatalogService {
    /// A service over `store`; the commit stream continues after the
    /// store's last sequence, and the group coordinator starts with the
    /// store's persisted groups. Compaction claims run on the catalog's
    /// clock, `options.groups.clock`.
    pub async fn new(store: Arc<dyn CatalogStore>, options: ServiceOptions) -> Result<Self> {
        let last_sequence = store.last_commit_sequence().await?;
        let hub = CommitStreamHub::with_gap_timeout(
            last_sequence,
            options.commit_stream_buffer,
            options.subscriber_queue,
            std::time::Duration::from_millis(options.commit_gap_timeout_ms),
            Arc::clone(&options.metrics),
        );
        let claims = CompactionClaims::new(Arc::clone(&options.groups.clock));
        let agents = AgentRegistry::start(
            Arc::clone(&store),
            Arc::clone(&options.groups.clock),
            options.agent_lease_ms,
        )
        .await?;
        let commit_faults = options.commit_faults;
        let unfenced_commits = options.unfenced_commits;
        let max_commit_age_ms = options.max_commit_age_ms;
        let clock = Arc::clone(&options.groups.clock);
        let groups = GroupCoordinator::start(Arc::clone(&store), options.groups).await?;
        let hub = Arc::new(hub);
        let txn_activity = Arc::new(TxnActivity::new());
        tokio::spawn(commit_stream::gap_watchdog(Arc::downgrade(&hub)));
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
            unfenced_commits,
            max_commit_age_ms,
            clock,
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
    let metrics = service.rpc_metrics();
    serve_router(listener, service.into_server(), metrics, shutdown).await
}

/// Like [`serve`], for a catalog with high availability: calls go to the
/// active service while `catalog` holds the lease, and are answered
/// UNAVAILABLE (naming the active catalog) while it stands by. The lease
/// loop is [`HaCatalog::run`], run by the caller.
#[tracing::instrument(level = "info", skip_all, fields(address = ?listener.local_addr().ok()))]
pub async fn serve_ha(
    listener: tokio::net::TcpListener,
    catalog: HaCatalog,
    shutdown: CancellationToken,
) -> Result<()> {
    let metrics = catalog.rpc_metrics();
    serve_router(listener, catalog.router(), metrics, shutdown).await
}

async fn serve_router<S>(
    listener: tokio::net::TcpListener,
    router: S,
    rpc_metrics: Arc<RpcMetrics>,
    shutdown: CancellationToken,
) -> Result<()>
where
    S: tower_service::Service<
            tonic::codegen::http::Request<tonic::body::Body>,
            Response = tonic::codegen::http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + tonic::server::NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let incoming = TcpListenerStream::new(listener).map(|connection| {
        connection.inspect(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "could not set TCP_NODELAY");
            }
        })
    });
    let metrics = RpcMetricsLayer(rpc_metrics);
    // PINGs find agents whose connection went silent (paused, partitioned)
    // and close it, so neither their streams nor a shutdown wait on them.
    let server = tonic::transport::Server::builder()
        .tcp_keepalive(Some(strata_catalog_api::KEEPALIVE_INTERVAL))
        .http2_keepalive_interval(Some(strata_catalog_api::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(strata_catalog_api::KEEPALIVE_TIMEOUT))
        .layer(metrics)
        .add_service(router)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(Error::Transport),
        () = shutdown.cancelled() => {}
    }
    // Calls in flight get a grace period; streams (commit subscriptions)
    // and silent connections do not end by themselves.
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result.map_err(Error::Transport),
        Err(_) => {
            tracing::warn!(
                grace = ?SHUTDOWN_GRACE,
                "connections still open after the shutdown grace period; closing them"
            );
            Ok(())
        }
    }
}

/// How long a stopping catalog waits for the calls in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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

/// A topic id from the wire; `None` when it is not 16 bytes.
fn topic_id(bytes: &[u8]) -> Option<Uuid> {
    Uuid::from_slice(bytes).ok()
}

impl CatalogService {
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
}

#[tonic::async_trait]
impl Catalog for CatalogService {
    async fn create_topic(
        &self,
        request: Request<CreateTopicRequest>,
    ) -> Result<Response<CreateTopicResponse>, Status> {
        topics::create_topic(self, request).await
    }

    async fn delete_topic(
        &self,
        request: Request<DeleteTopicRequest>,
    ) -> Result<Response<DeleteTopicResponse>, Status> {
        topics::delete_topic(self, request).await
    }

    async fn create_partitions(
        &self,
        request: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        topics::create_partitions(self, request).await
    }

    async fn list_topics(
        &self,
        request: Request<ListTopicsRequest>,
    ) -> Result<Response<ListTopicsResponse>, Status> {
        topics::list_topics(self, request).await
    }

    async fn alter_topic_configs(
        &self,
        request: Request<AlterTopicConfigsRequest>,
    ) -> Result<Response<AlterTopicConfigsResponse>, Status> {
        topics::alter_topic_configs(self, request).await
    }

    async fn commit_segment(
        &self,
        request: Request<CommitSegmentRequest>,
    ) -> Result<Response<CommitSegmentResponse>, Status> {
        log::commit_segment(self, request).await
    }

    async fn lookup_chunks(
        &self,
        request: Request<LookupChunksRequest>,
    ) -> Result<Response<LookupChunksResponse>, Status> {
        log::lookup_chunks(self, request).await
    }

    async fn get_partition_offsets(
        &self,
        request: Request<GetPartitionOffsetsRequest>,
    ) -> Result<Response<GetPartitionOffsetsResponse>, Status> {
        log::get_partition_offsets(self, request).await
    }

    async fn find_chunk_by_timestamp(
        &self,
        request: Request<FindChunkByTimestampRequest>,
    ) -> Result<Response<FindChunkByTimestampResponse>, Status> {
        log::find_chunk_by_timestamp(self, request).await
    }

    type SubscribeCommitsStream = CommitStream;

    async fn subscribe_commits(
        &self,
        request: Request<SubscribeCommitsRequest>,
    ) -> Result<Response<Self::SubscribeCommitsStream>, Status> {
        log::subscribe_commits(self, request).await
    }

    async fn init_producer_id(
        &self,
        request: Request<InitProducerIdRequest>,
    ) -> Result<Response<InitProducerIdResponse>, Status> {
        producers::init_producer_id(self, request).await
    }

    async fn add_partitions_to_txn(
        &self,
        request: Request<AddPartitionsToTxnRequest>,
    ) -> Result<Response<AddPartitionsToTxnResponse>, Status> {
        transactions::add_partitions_to_txn(self, request).await
    }

    async fn add_offsets_to_txn(
        &self,
        request: Request<AddOffsetsToTxnRequest>,
    ) -> Result<Response<AddOffsetsToTxnResponse>, Status> {
        transactions::add_offsets_to_txn(self, request).await
    }

    async fn txn_offset_commit(
        &self,
        request: Request<TxnOffsetCommitRequest>,
    ) -> Result<Response<TxnOffsetCommitResponse>, Status> {
        transactions::txn_offset_commit(self, request).await
    }

    async fn end_txn(
        &self,
        request: Request<EndTxnRequest>,
    ) -> Result<Response<EndTxnResponse>, Status> {
        transactions::end_txn(self, request).await
    }

    async fn list_aborted_transactions(
        &self,
        request: Request<ListAbortedTransactionsRequest>,
    ) -> Result<Response<ListAbortedTransactionsResponse>, Status> {
        transactions::list_aborted_transactions(self, request).await
    }

    async fn describe_producers(
        &self,
        request: Request<DescribeProducersRequest>,
    ) -> Result<Response<DescribeProducersResponse>, Status> {
        producers::describe_producers(self, request).await
    }

    async fn group_call(
        &self,
        request: Request<GroupCallRequest>,
    ) -> Result<Response<GroupCallResponse>, Status> {
        groups::group_call(self, request).await
    }

    async fn replace_chunks(
        &self,
        request: Request<ReplaceChunksRequest>,
    ) -> Result<Response<ReplaceChunksResponse>, Status> {
        compaction::replace_chunks(self, request).await
    }

    async fn delete_records(
        &self,
        request: Request<DeleteRecordsRequest>,
    ) -> Result<Response<DeleteRecordsResponse>, Status> {
        compaction::delete_records(self, request).await
    }

    async fn list_dead_objects(
        &self,
        request: Request<ListDeadObjectsRequest>,
    ) -> Result<Response<ListDeadObjectsResponse>, Status> {
        compaction::list_dead_objects(self, request).await
    }

    async fn forget_dead_objects(
        &self,
        request: Request<ForgetDeadObjectsRequest>,
    ) -> Result<Response<ForgetDeadObjectsResponse>, Status> {
        compaction::forget_dead_objects(self, request).await
    }

    async fn referenced_objects(
        &self,
        request: Request<ReferencedObjectsRequest>,
    ) -> Result<Response<ReferencedObjectsResponse>, Status> {
        compaction::referenced_objects(self, request).await
    }

    async fn claim_compaction(
        &self,
        request: Request<ClaimCompactionRequest>,
    ) -> Result<Response<ClaimCompactionResponse>, Status> {
        compaction::claim_compaction(self, request).await
    }

    async fn release_compaction(
        &self,
        request: Request<ReleaseCompactionRequest>,
    ) -> Result<Response<ReleaseCompactionResponse>, Status> {
        compaction::release_compaction(self, request).await
    }

    async fn register_agent(
        &self,
        request: Request<RegisterAgentRequest>,
    ) -> Result<Response<RegisterAgentResponse>, Status> {
        agents::register_agent(self, request).await
    }

    async fn agent_heartbeat(
        &self,
        request: Request<AgentHeartbeatRequest>,
    ) -> Result<Response<AgentHeartbeatResponse>, Status> {
        agents::agent_heartbeat(self, request).await
    }

    async fn list_agents(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        agents::list_agents(self, request).await
    }

    async fn list_transactions(
        &self,
        request: Request<ListTransactionsRequest>,
    ) -> Result<Response<ListTransactionsResponse>, Status> {
        txn_admin::list_transactions(self, request).await
    }

    async fn describe_transaction(
        &self,
        request: Request<DescribeTransactionRequest>,
    ) -> Result<Response<DescribeTransactionResponse>, Status> {
        txn_admin::describe_transaction(self, request).await
    }

    async fn abort_transaction(
        &self,
        request: Request<AbortTransactionRequest>,
    ) -> Result<Response<AbortTransactionResponse>, Status> {
        txn_admin::abort_transaction(self, request).await
    }

    async fn write_txn_markers(
        &self,
        request: Request<WriteTxnMarkersRequest>,
    ) -> Result<Response<WriteTxnMarkersResponse>, Status> {
        txn_admin::write_txn_markers(self, request).await
    }

    async fn describe_scram_credentials(
        &self,
        request: Request<DescribeScramCredentialsRequest>,
    ) -> Result<Response<DescribeScramCredentialsResponse>, Status> {
        scram::describe(self, request).await
    }

    async fn alter_scram_credentials(
        &self,
        request: Request<AlterScramCredentialsRequest>,
    ) -> Result<Response<AlterScramCredentialsResponse>, Status> {
        scram::alter(self, request).await
    }

    async fn get_scram_credential(
        &self,
        request: Request<GetScramCredentialRequest>,
    ) -> Result<Response<GetScramCredentialResponse>, Status> {
        scram::get(self, request).await
    }
}

fn unknown_partition(topic_id: &[u8], partition: u32) -> Error {
    tracing::debug!(topic_id_bytes = topic_id.len(), "topic id is not 16 bytes");
    Error::UnknownPartition {
        topic_id: Uuid::nil(),
        partition,
    }
}
