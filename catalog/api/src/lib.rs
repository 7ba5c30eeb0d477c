//! The Strata catalog's API, shared by the catalog (server side) and the
//! agents and compactor (client side).
//!
//! The wire API is the gRPC service in `proto/strata/catalog/v1/catalog.proto`.
//! [`CatalogApi`] is the same API as a Rust trait with two implementations:
//! [`GrpcCatalog`], a tonic client for a catalog in another process, and
//! [`InProcess`], which calls a service object in this process (used by
//! `strata dev`) through exactly the methods the gRPC server exposes, so both
//! paths run the same code.
//!
//! Kafka-visible errors travel as Kafka error codes inside responses; a
//! [`tonic::Status`] means the call itself failed (retry on `Unavailable`).

pub mod proto {
    //! Generated protobuf and gRPC types.
    #![allow(missing_docs, unreachable_pub, clippy::allow_attributes)]
    tonic::include_proto!("strata.catalog.v1");
}

pub mod clock;
pub mod error_code;
mod failover;
pub mod topic_config;

use futures::StreamExt;
use futures::stream::BoxStream;
use proto::catalog_client::CatalogClient;
use proto::catalog_server::Catalog;
use proto::*;
use tonic::{Request, Status};

pub use self::failover::{ACTIVE_CATALOG_HEADER, CATALOG_ROLE_HEADER};
use self::failover::{AfterFailure, Endpoint, Endpoints};

/// The Kafka group APIs the catalog's group coordinator serves over
/// `Catalog.GroupCall`, as (API key, lowest version, highest version).
/// Agents advertise exactly these in ApiVersions; the coordinator refuses
/// anything else.
pub const GROUP_API_VERSIONS: &[(i16, i16, i16)] = &[
    (8, 2, 9),  // OffsetCommit
    (9, 1, 9),  // OffsetFetch
    (11, 0, 9), // JoinGroup
    (12, 0, 4), // Heartbeat
    (13, 0, 5), // LeaveGroup
    (14, 0, 5), // SyncGroup
    (15, 0, 5), // DescribeGroups
    (16, 0, 5), // ListGroups
    (42, 0, 2), // DeleteGroups
    (47, 0, 0), // OffsetDelete
    (68, 0, 1), // ConsumerGroupHeartbeat
    (69, 0, 1), // ConsumerGroupDescribe
];

/// A stream of commit events.
pub type CommitStream = BoxStream<'static, Result<CommitEvent, Status>>;

/// The catalog API as seen by agents and compactors.
///
/// Every method mirrors one RPC of the `Catalog` gRPC service; see the
/// `.proto` file for the contract of each.
#[async_trait::async_trait]
pub trait CatalogApi: std::fmt::Debug + Send + Sync + 'static {
    /// See `Catalog.CreateTopic`.
    async fn create_topic(&self, r: CreateTopicRequest) -> Result<CreateTopicResponse, Status>;
    /// See `Catalog.DeleteTopic`.
    async fn delete_topic(&self, r: DeleteTopicRequest) -> Result<DeleteTopicResponse, Status>;
    /// See `Catalog.CreatePartitions`.
    async fn create_partitions(
        &self,
        r: CreatePartitionsRequest,
    ) -> Result<CreatePartitionsResponse, Status>;
    /// See `Catalog.ListTopics`.
    async fn list_topics(&self, r: ListTopicsRequest) -> Result<ListTopicsResponse, Status>;
    /// See `Catalog.AlterTopicConfigs`.
    async fn alter_topic_configs(
        &self,
        r: AlterTopicConfigsRequest,
    ) -> Result<AlterTopicConfigsResponse, Status>;
    /// See `Catalog.CommitSegment`.
    async fn commit_segment(
        &self,
        r: CommitSegmentRequest,
    ) -> Result<CommitSegmentResponse, Status>;
    /// See `Catalog.LookupChunks`.
    async fn lookup_chunks(&self, r: LookupChunksRequest) -> Result<LookupChunksResponse, Status>;
    /// See `Catalog.GetPartitionOffsets`.
    async fn get_partition_offsets(
        &self,
        r: GetPartitionOffsetsRequest,
    ) -> Result<GetPartitionOffsetsResponse, Status>;
    /// See `Catalog.FindChunkByTimestamp`.
    async fn find_chunk_by_timestamp(
        &self,
        r: FindChunkByTimestampRequest,
    ) -> Result<FindChunkByTimestampResponse, Status>;
    /// See `Catalog.SubscribeCommits`.
    async fn subscribe_commits(&self, r: SubscribeCommitsRequest) -> Result<CommitStream, Status>;
    /// See `Catalog.InitProducerId`.
    async fn init_producer_id(
        &self,
        r: InitProducerIdRequest,
    ) -> Result<InitProducerIdResponse, Status>;
    /// See `Catalog.DescribeProducers`.
    async fn describe_producers(
        &self,
        r: DescribeProducersRequest,
    ) -> Result<DescribeProducersResponse, Status>;
    /// See `Catalog.AddPartitionsToTxn`.
    async fn add_partitions_to_txn(
        &self,
        r: AddPartitionsToTxnRequest,
    ) -> Result<AddPartitionsToTxnResponse, Status>;
    /// See `Catalog.AddOffsetsToTxn`.
    async fn add_offsets_to_txn(
        &self,
        r: AddOffsetsToTxnRequest,
    ) -> Result<AddOffsetsToTxnResponse, Status>;
    /// See `Catalog.TxnOffsetCommit`.
    async fn txn_offset_commit(
        &self,
        r: TxnOffsetCommitRequest,
    ) -> Result<TxnOffsetCommitResponse, Status>;
    /// See `Catalog.EndTxn`.
    async fn end_txn(&self, r: EndTxnRequest) -> Result<EndTxnResponse, Status>;
    /// See `Catalog.ListAbortedTransactions`.
    async fn list_aborted_transactions(
        &self,
        r: ListAbortedTransactionsRequest,
    ) -> Result<ListAbortedTransactionsResponse, Status>;
    /// See `Catalog.GroupCall`.
    async fn group_call(&self, r: GroupCallRequest) -> Result<GroupCallResponse, Status>;
    /// See `Catalog.ReplaceChunks`.
    async fn replace_chunks(
        &self,
        r: ReplaceChunksRequest,
    ) -> Result<ReplaceChunksResponse, Status>;
    /// See `Catalog.DeleteRecords`.
    async fn delete_records(
        &self,
        r: DeleteRecordsRequest,
    ) -> Result<DeleteRecordsResponse, Status>;
    /// See `Catalog.ListDeadObjects`.
    async fn list_dead_objects(
        &self,
        r: ListDeadObjectsRequest,
    ) -> Result<ListDeadObjectsResponse, Status>;
    /// See `Catalog.ForgetDeadObjects`.
    async fn forget_dead_objects(
        &self,
        r: ForgetDeadObjectsRequest,
    ) -> Result<ForgetDeadObjectsResponse, Status>;
    /// See `Catalog.ReferencedObjects`.
    async fn referenced_objects(
        &self,
        r: ReferencedObjectsRequest,
    ) -> Result<ReferencedObjectsResponse, Status>;
    /// See `Catalog.ClaimCompaction`.
    async fn claim_compaction(
        &self,
        r: ClaimCompactionRequest,
    ) -> Result<ClaimCompactionResponse, Status>;
    /// See `Catalog.ReleaseCompaction`.
    async fn release_compaction(
        &self,
        r: ReleaseCompactionRequest,
    ) -> Result<ReleaseCompactionResponse, Status>;

    // ---------- agents ----------
    /// See `Catalog.RegisterAgent`.
    async fn register_agent(
        &self,
        r: RegisterAgentRequest,
    ) -> Result<RegisterAgentResponse, Status>;
    /// See `Catalog.AgentHeartbeat`.
    async fn agent_heartbeat(
        &self,
        r: AgentHeartbeatRequest,
    ) -> Result<AgentHeartbeatResponse, Status>;
    /// See `Catalog.ListAgents`.
    async fn list_agents(&self, r: ListAgentsRequest) -> Result<ListAgentsResponse, Status>;
    /// See `Catalog.ListTransactions`.
    async fn list_transactions(
        &self,
        r: ListTransactionsRequest,
    ) -> Result<ListTransactionsResponse, Status>;
    /// See `Catalog.DescribeTransaction`.
    async fn describe_transaction(
        &self,
        r: DescribeTransactionRequest,
    ) -> Result<DescribeTransactionResponse, Status>;
    /// See `Catalog.AbortTransaction`.
    async fn abort_transaction(
        &self,
        r: AbortTransactionRequest,
    ) -> Result<AbortTransactionResponse, Status>;
    /// See `Catalog.WriteTxnMarkers`.
    async fn write_txn_markers(
        &self,
        r: WriteTxnMarkersRequest,
    ) -> Result<WriteTxnMarkersResponse, Status>;
    /// See `Catalog.DescribeScramCredentials`.
    async fn describe_scram_credentials(
        &self,
        r: DescribeScramCredentialsRequest,
    ) -> Result<DescribeScramCredentialsResponse, Status>;
    /// See `Catalog.AlterScramCredentials`.
    async fn alter_scram_credentials(
        &self,
        r: AlterScramCredentialsRequest,
    ) -> Result<AlterScramCredentialsResponse, Status>;
    /// See `Catalog.GetScramCredential`.
    async fn get_scram_credential(
        &self,
        r: GetScramCredentialRequest,
    ) -> Result<GetScramCredentialResponse, Status>;
}

/// The size of the control batch a reader synthesizes for a transaction
/// marker chunk (CHUNK_FORMAT_MARKER): a 61-byte v2 batch header and one
/// 17-byte record (4-byte key, 6-byte value). Marker chunks carry it as
/// their `length`, so fetch budgets count markers like any batch.
pub const CONTROL_BATCH_BYTES: u64 = 78;

/// Calls a catalog service object in this process through the generated
/// server trait, the same entry points the gRPC server uses.
#[derive(Debug, Clone)]
pub struct InProcess<S>(pub S);

/// A catalog in another process, reached over gRPC; with several
/// addresses (catalogs sharing one database, one active), the one that
/// answers as the active catalog.
///
/// Calls go to one address at a time. A standby's answer (UNAVAILABLE,
/// marked [`CATALOG_ROLE_HEADER`]) sends the call on at once to the active
/// catalog it names, or to the next address; a catalog that cannot be
/// reached fails the call (the caller retries, as after any UNAVAILABLE)
/// and the next call goes to the next address.
///
/// Every wait is bounded. A black-holed connection (the catalog paused, a
/// network partition that drops packets, a proxy that stopped forwarding)
/// is found by HTTP/2 PINGs within [`KEEPALIVE_INTERVAL`] +
/// [`KEEPALIVE_TIMEOUT`] and closed, which fails every call and stream on
/// it at once (the commit stream resubscribes, calls are retried by their
/// callers on a new connection); TCP keepalive backs that up. Each unary
/// call also carries a deadline ([`CALL_TIMEOUT`], or [`GROUP_CALL_TIMEOUT`]
/// for group calls, which may wait out a rebalance) that the client enforces
/// and sends to the server as `grpc-timeout`.
#[derive(Debug, Clone)]
pub struct GrpcCatalog {
    endpoints: Endpoints<CatalogClient<tonic::transport::Channel>>,
}

/// How long opening a connection to the catalog may take.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// HTTP/2 PING interval on the catalog connection, idle or not.
pub const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
/// A PING unanswered this long closes the connection.
pub const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Deadline of a unary call other than a group call.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Deadline of a group call: above Kafka's largest default rebalance wait
/// (`max.poll.interval.ms`, 300 s), which a JoinGroup may sit through.
pub const GROUP_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(330);

impl GrpcCatalog {
    /// Connects lazily to `endpoints`: one address (e.g.
    /// `http://127.0.0.1:9093`) or several separated by commas (the
    /// catalogs of one database: `http://a:9093,http://b:9093`). The first
    /// call opens a connection, and a lost connection is reopened.
    pub fn connect_lazy(endpoints: &str) -> Result<Self, tonic::transport::Error> {
        let mut list = Vec::new();
        for address in endpoints
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            let channel = tonic::transport::Endpoint::from_shared(address.to_string())?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .tcp_keepalive(Some(KEEPALIVE_INTERVAL))
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true)
                .connect_lazy();
            list.push(Endpoint {
                address: address.to_string(),
                client: CatalogClient::new(channel)
                    .max_decoding_message_size(64 * 1024 * 1024)
                    .max_encoding_message_size(64 * 1024 * 1024),
            });
        }
        if list.is_empty() {
            // An empty address fails the way tonic fails any bad URI.
            tonic::transport::Endpoint::from_shared(String::new())?;
        }
        Ok(Self {
            endpoints: Endpoints::new(list),
        })
    }
}

/// The deadline of a unary call of `method` (see [`GrpcCatalog`]).
fn call_timeout(method: &str) -> std::time::Duration {
    if method == "group_call" {
        GROUP_CALL_TIMEOUT
    } else {
        CALL_TIMEOUT
    }
}

/// Runs `call` within `timeout`, as DEADLINE_EXCEEDED when it runs out.
async fn within<T>(
    timeout: std::time::Duration,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(timeout, call).await {
        Ok(response) => Ok(response?.into_inner()),
        Err(_) => Err(Status::deadline_exceeded(format!(
            "the catalog did not answer within {timeout:?}"
        ))),
    }
}

/// Implements one unary method for both adapters.
macro_rules! unary {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        #[async_trait::async_trait]
        impl<S: Catalog + std::fmt::Debug> CatalogApi for InProcess<S> {
            $(
                async fn $method(&self, r: $req) -> Result<$resp, Status> {
                    Ok(Catalog::$method(&self.0, Request::new(r)).await?.into_inner())
                }
            )*
            async fn subscribe_commits(
                &self,
                r: SubscribeCommitsRequest,
            ) -> Result<CommitStream, Status> {
                let stream = Catalog::subscribe_commits(&self.0, Request::new(r))
                    .await?
                    .into_inner();
                Ok(stream.boxed())
            }
        }

        #[async_trait::async_trait]
        impl CatalogApi for GrpcCatalog {
            $(
                async fn $method(&self, r: $req) -> Result<$resp, Status> {
                    let timeout = call_timeout(stringify!($method));
                    // Each address at most once: a standby's answer moves
                    // the call on, anything else ends it.
                    let mut tries = self.endpoints.len();
                    loop {
                        tries -= 1;
                        let (index, endpoint) = self.endpoints.pick();
                        let mut request = Request::new(r.clone());
                        request.set_timeout(timeout);
                        let result = within(timeout, endpoint.client.clone().$method(request)).await;
                        match result {
                            Err(status) => {
                                let after = self.endpoints.failed(index, &status);
                                if after == AfterFailure::Return || tries == 0 {
                                    return Err(status);
                                }
                            }
                            ok => return ok,
                        }
                    }
                }
            )*
            async fn subscribe_commits(
                &self,
                r: SubscribeCommitsRequest,
            ) -> Result<CommitStream, Status> {
                let mut tries = self.endpoints.len();
                loop {
                    tries -= 1;
                    let (index, endpoint) = self.endpoints.pick();
                    match endpoint.client.clone().subscribe_commits(r.clone()).await {
                        Ok(stream) => return Ok(stream.into_inner().boxed()),
                        Err(status) => {
                            let after = self.endpoints.failed(index, &status);
                            if after == AfterFailure::Return || tries == 0 {
                                return Err(status);
                            }
                        }
                    }
                }
            }
        }
    };
}

unary! {
    create_topic(CreateTopicRequest) -> CreateTopicResponse;
    delete_topic(DeleteTopicRequest) -> DeleteTopicResponse;
    create_partitions(CreatePartitionsRequest) -> CreatePartitionsResponse;
    list_topics(ListTopicsRequest) -> ListTopicsResponse;
    alter_topic_configs(AlterTopicConfigsRequest) -> AlterTopicConfigsResponse;
    commit_segment(CommitSegmentRequest) -> CommitSegmentResponse;
    lookup_chunks(LookupChunksRequest) -> LookupChunksResponse;
    get_partition_offsets(GetPartitionOffsetsRequest) -> GetPartitionOffsetsResponse;
    find_chunk_by_timestamp(FindChunkByTimestampRequest) -> FindChunkByTimestampResponse;
    init_producer_id(InitProducerIdRequest) -> InitProducerIdResponse;
    describe_producers(DescribeProducersRequest) -> DescribeProducersResponse;
    add_partitions_to_txn(AddPartitionsToTxnRequest) -> AddPartitionsToTxnResponse;
    add_offsets_to_txn(AddOffsetsToTxnRequest) -> AddOffsetsToTxnResponse;
    txn_offset_commit(TxnOffsetCommitRequest) -> TxnOffsetCommitResponse;
    end_txn(EndTxnRequest) -> EndTxnResponse;
    list_aborted_transactions(ListAbortedTransactionsRequest) -> ListAbortedTransactionsResponse;
    group_call(GroupCallRequest) -> GroupCallResponse;
    replace_chunks(ReplaceChunksRequest) -> ReplaceChunksResponse;
    delete_records(DeleteRecordsRequest) -> DeleteRecordsResponse;
    list_dead_objects(ListDeadObjectsRequest) -> ListDeadObjectsResponse;
    forget_dead_objects(ForgetDeadObjectsRequest) -> ForgetDeadObjectsResponse;
    referenced_objects(ReferencedObjectsRequest) -> ReferencedObjectsResponse;
    claim_compaction(ClaimCompactionRequest) -> ClaimCompactionResponse;
    release_compaction(ReleaseCompactionRequest) -> ReleaseCompactionResponse;
    // agents
    register_agent(RegisterAgentRequest) -> RegisterAgentResponse;
    agent_heartbeat(AgentHeartbeatRequest) -> AgentHeartbeatResponse;
    list_agents(ListAgentsRequest) -> ListAgentsResponse;
    // transaction admin
    list_transactions(ListTransactionsRequest) -> ListTransactionsResponse;
    describe_transaction(DescribeTransactionRequest) -> DescribeTransactionResponse;
    abort_transaction(AbortTransactionRequest) -> AbortTransactionResponse;
    write_txn_markers(WriteTxnMarkersRequest) -> WriteTxnMarkersResponse;
    // SCRAM credentials
    describe_scram_credentials(DescribeScramCredentialsRequest) -> DescribeScramCredentialsResponse;
    alter_scram_credentials(AlterScramCredentialsRequest) -> AlterScramCredentialsResponse;
    get_scram_credential(GetScramCredentialRequest) -> GetScramCredentialResponse;
}
