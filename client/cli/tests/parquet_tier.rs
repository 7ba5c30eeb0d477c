//! Goal: a Kafka consumer cannot tell the Parquet tier from the segment
//! tier, retention's log start holds for every lookup, and a read holding a
//! stale chunk list survives the swap's objects being deleted.
//!
//! Method: a real in-process catalog (SQLite in a temp dir), a local object
//! store and two real agents on TCP ports, spoken to with raw Kafka frames
//! (the `kafka-protocol` crate encodes requests and decodes record
//! batches). Records (every codec, headers, null keys and values) are
//! produced through agent A and captured with fetches from every offset and
//! timestamp lookups. Then the first chunks are compacted into one Parquet
//! file with `strata_parquet::write_file` (chunk bytes read from the
//! store), PUT, and swapped in with ReplaceChunks; the same fetches and
//! lookups must give the same answers. Agent B follows the commit stream
//! through a catalog wrapper that hides `invalidated`, so its index keeps
//! the replaced segment chunks; with those objects deleted, its fetch must
//! look the chunks up again instead of failing.

#![expect(clippy::unwrap_used, reason = "test code panics on failures")]

mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_agent::{Agent, AgentConfig};
use strata_catalog::{CatalogService, ServiceOptions, SqliteOptions};
use strata_catalog_api::proto as pb;
use strata_catalog_api::{CatalogApi, CommitStream, InProcess};
use strata_parquet::{PartitionInfo, WriteOptions, write_file};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Status;

const TOPIC: &str = "audit";
const BASE_TS: i64 = 1_700_000_000_000;
/// Produce requests; each becomes one chunk (one flush). A produce holds
/// one batch per partition, so a chunk here is one batch.
const CHUNKS: usize = 10;
const BATCHES_PER_CHUNK: usize = 1;
const RECORDS_PER_BATCH: usize = 3;
const RECORDS: i64 = (CHUNKS * BATCHES_PER_CHUNK * RECORDS_PER_BATCH) as i64;
/// Chunks compacted into the Parquet file; the rest stay segments.
const COMPACTED_CHUNKS: usize = 6;
/// Offset holding the partition's greatest timestamp (below the log start
/// set later, so MAX_TIMESTAMP must look past it).
const MAX_TS_OFFSET: i64 = 2;
/// The log start DeleteRecords moves to: inside a batch of the Parquet chunk.
const LOG_START: i64 = 7;

/// A record as a consumer sees it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
}

fn timestamp_of(offset: i64) -> i64 {
    if offset == MAX_TS_OFFSET {
        BASE_TS + 10_000_000
    } else {
        BASE_TS + offset * 1000
    }
}

/// A catalog that can hide `invalidated` from the commit stream, as if the
/// agent's index were very stale.
#[derive(Debug)]
struct HidingCatalog {
    inner: Arc<dyn CatalogApi>,
    hide_invalidations: Arc<AtomicBool>,
}

macro_rules! forward {
    ($($method:ident($req:ty) -> $resp:ty;)*) => {
        #[async_trait::async_trait]
        impl CatalogApi for HidingCatalog {
            $(
                async fn $method(&self, r: $req) -> Result<$resp, Status> {
                    self.inner.$method(r).await
                }
            )*
            async fn subscribe_commits(&self, r: pb::SubscribeCommitsRequest) -> Result<CommitStream, Status> {
                let hide = self.hide_invalidations.clone();
                let stream = self.inner.subscribe_commits(r).await?;
                Ok(stream
                    .map(move |event| {
                        event.map(|mut e| {
                            if hide.load(Ordering::SeqCst) {
                                e.invalidated.clear();
                            }
                            e
                        })
                    })
                    .boxed())
            }
        }
    };
}

forward! {
    create_topic(pb::CreateTopicRequest) -> pb::CreateTopicResponse;
    delete_topic(pb::DeleteTopicRequest) -> pb::DeleteTopicResponse;
    create_partitions(pb::CreatePartitionsRequest) -> pb::CreatePartitionsResponse;
    list_topics(pb::ListTopicsRequest) -> pb::ListTopicsResponse;
    alter_topic_configs(pb::AlterTopicConfigsRequest) -> pb::AlterTopicConfigsResponse;
    commit_segment(pb::CommitSegmentRequest) -> pb::CommitSegmentResponse;
    lookup_chunks(pb::LookupChunksRequest) -> pb::LookupChunksResponse;
    get_partition_offsets(pb::GetPartitionOffsetsRequest) -> pb::GetPartitionOffsetsResponse;
    find_chunk_by_timestamp(pb::FindChunkByTimestampRequest) -> pb::FindChunkByTimestampResponse;
    init_producer_id(pb::InitProducerIdRequest) -> pb::InitProducerIdResponse;
    describe_producers(pb::DescribeProducersRequest) -> pb::DescribeProducersResponse;
    add_partitions_to_txn(pb::AddPartitionsToTxnRequest) -> pb::AddPartitionsToTxnResponse;
    add_offsets_to_txn(pb::AddOffsetsToTxnRequest) -> pb::AddOffsetsToTxnResponse;
    txn_offset_commit(pb::TxnOffsetCommitRequest) -> pb::TxnOffsetCommitResponse;
    end_txn(pb::EndTxnRequest) -> pb::EndTxnResponse;
    list_aborted_transactions(pb::ListAbortedTransactionsRequest) -> pb::ListAbortedTransactionsResponse;
    group_call(pb::GroupCallRequest) -> pb::GroupCallResponse;
    replace_chunks(pb::ReplaceChunksRequest) -> pb::ReplaceChunksResponse;
    delete_records(pb::DeleteRecordsRequest) -> pb::DeleteRecordsResponse;
    list_dead_objects(pb::ListDeadObjectsRequest) -> pb::ListDeadObjectsResponse;
    forget_dead_objects(pb::ForgetDeadObjectsRequest) -> pb::ForgetDeadObjectsResponse;
    referenced_objects(pb::ReferencedObjectsRequest) -> pb::ReferencedObjectsResponse;
    claim_compaction(pb::ClaimCompactionRequest) -> pb::ClaimCompactionResponse;
    release_compaction(pb::ReleaseCompactionRequest) -> pb::ReleaseCompactionResponse;
    register_agent(pb::RegisterAgentRequest) -> pb::RegisterAgentResponse;
    agent_heartbeat(pb::AgentHeartbeatRequest) -> pb::AgentHeartbeatResponse;
    list_agents(pb::ListAgentsRequest) -> pb::ListAgentsResponse;
    list_transactions(pb::ListTransactionsRequest) -> pb::ListTransactionsResponse;
    describe_transaction(pb::DescribeTransactionRequest) -> pb::DescribeTransactionResponse;
    abort_transaction(pb::AbortTransactionRequest) -> pb::AbortTransactionResponse;
    write_txn_markers(pb::WriteTxnMarkersRequest) -> pb::WriteTxnMarkersResponse;
    describe_scram_credentials(pb::DescribeScramCredentialsRequest) -> pb::DescribeScramCredentialsResponse;
    alter_scram_credentials(pb::AlterScramCredentialsRequest) -> pb::AlterScramCredentialsResponse;
    get_scram_credential(pb::GetScramCredentialRequest) -> pb::GetScramCredentialResponse;
}

/// One Kafka connection speaking raw frames.
struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    async fn open(address: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(address).await.unwrap(),
            correlation: 0,
        }
    }

    async fn call(&mut self, key: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
        self.correlation += 1;
        let frame = wire::request_frame(
            key,
            version,
            self.correlation,
            "parquet-tier-test",
            &request,
        );
        self.stream.write_all(&frame).await.unwrap();
        let size = self.stream.read_i32().await.unwrap();
        let mut response = vec![0u8; size as usize];
        self.stream.read_exact(&mut response).await.unwrap();
        let (correlation, response) = wire::decode_response(key, version, response);
        assert_eq!(correlation, self.correlation);
        response
    }

    async fn create_topic(&mut self) {
        let topic = create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_num_partitions(1)
            .with_replication_factor(1);
        let request = CreateTopicsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(5000);
        let ResponseKind::CreateTopics(r) =
            self.call(ApiKey::CreateTopics, 7, request.into()).await
        else {
            panic!("not a create topics response")
        };
        assert_eq!(r.topics[0].error_code, 0);
    }

    async fn produce(&mut self, batches: Bytes) -> i64 {
        let partition = produce_request::PartitionProduceData::default()
            .with_index(0)
            .with_records(Some(batches));
        let topic = produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partition_data(vec![partition]);
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![topic]);
        let ResponseKind::Produce(r) = self.call(ApiKey::Produce, 9, request.into()).await else {
            panic!("not a produce response")
        };
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(p.error_code, 0, "{:?}", p.error_message);
        p.base_offset
    }

    /// One fetch of partition 0; returns (error code, log start, records).
    async fn fetch(&mut self, offset: i64, partition_max_bytes: i32) -> (i16, i64, Vec<Seen>) {
        let partition = fetch_request::FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(partition_max_bytes);
        let topic = fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![partition]);
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(64 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![topic]);
        let ResponseKind::Fetch(r) = self.call(ApiKey::Fetch, 12, request.into()).await else {
            panic!("not a fetch response")
        };
        let p = &r.responses[0].partitions[0];
        let mut records = p.records.clone().unwrap_or_default();
        let mut seen = Vec::new();
        while records.has_remaining() {
            for record in RecordBatchDecoder::decode(&mut records).unwrap().records {
                seen.push(Seen {
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: record.key,
                    value: record.value,
                    headers: record
                        .headers
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                });
            }
        }
        (p.error_code, p.log_start_offset, seen)
    }

    /// ListOffsets of partition 0 for `timestamp` (or -1/-2/-3).
    async fn list_offset(&mut self, timestamp: i64) -> (i16, i64, i64) {
        let partition = list_offsets_request::ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(timestamp);
        let topic = list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![partition]);
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![topic]);
        let ResponseKind::ListOffsets(r) = self.call(ApiKey::ListOffsets, 7, request.into()).await
        else {
            panic!("not a list offsets response")
        };
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    }

    async fn delete_records(&mut self, offset: i64) -> (i16, i64) {
        let partition = delete_records_request::DeleteRecordsPartition::default()
            .with_partition_index(0)
            .with_offset(offset);
        let topic = delete_records_request::DeleteRecordsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![partition]);
        let request = DeleteRecordsRequest::default()
            .with_topics(vec![topic])
            .with_timeout_ms(10_000);
        let ResponseKind::DeleteRecords(r) =
            self.call(ApiKey::DeleteRecords, 2, request.into()).await
        else {
            panic!("not a delete records response")
        };
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.low_watermark)
    }

    /// Everything from `offset` to the end, `partition_max_bytes` per fetch.
    async fn read_all(&mut self, mut offset: i64, partition_max_bytes: i32) -> Vec<Seen> {
        let mut out = Vec::new();
        while offset < RECORDS {
            let (code, _, records) = self.fetch(offset, partition_max_bytes).await;
            assert_eq!(code, 0, "fetch at {offset}");
            let records: Vec<Seen> = records.into_iter().filter(|r| r.offset >= offset).collect();
            offset = records.last().expect("a fetch returns a batch").offset + 1;
            out.extend(records);
        }
        out
    }
}

/// The produce request of chunk `chunk`: its batches, each in another codec.
fn chunk_batches(chunk: usize) -> Bytes {
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut out = BytesMut::new();
    for batch in 0..BATCHES_PER_CHUNK {
        let first = ((chunk * BATCHES_PER_CHUNK + batch) * RECORDS_PER_BATCH) as i64;
        let records: Vec<Record> = (0..RECORDS_PER_BATCH as i64)
            .map(|i| {
                let offset = first + i;
                let mut headers = IndexMap::new();
                headers.insert(
                    StrBytes::from_string(format!("h{}", offset % 3)),
                    Some(Bytes::from(format!("header of {offset}"))),
                );
                if offset % 4 == 0 {
                    headers.insert(StrBytes::from_static_str("null"), None);
                }
                Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i,
                    // The encoder starts a new batch where offset minus
                    // sequence changes; the batch's base sequence stays -1.
                    sequence: i as i32 - 1,
                    timestamp: timestamp_of(offset),
                    key: (offset % 5 != 0).then(|| Bytes::from(format!("key-{offset}"))),
                    value: (offset % 4 != 1)
                        .then(|| Bytes::from(format!("value {offset} ").repeat(20))),
                    headers,
                }
            })
            .collect();
        let options = RecordEncodeOptions {
            version: 2,
            compression: codecs[(chunk * BATCHES_PER_CHUNK + batch) % codecs.len()],
        };
        RecordBatchEncoder::encode(&mut out, &records, &options).unwrap();
    }
    out.freeze()
}

struct Env {
    _dir: tempfile::TempDir,
    catalog: Arc<dyn CatalogApi>,
    store: Arc<dyn ObjectStore>,
    a: Agent,
    b: Agent,
    hide_invalidations: Arc<AtomicBool>,
}

async fn start() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).unwrap();
    let service = CatalogService::open_sqlite(
        dir.path().join("catalog.db"),
        SqliteOptions::default(),
        ServiceOptions::default(),
    )
    .await
    .unwrap();
    let catalog: Arc<dyn CatalogApi> = Arc::new(InProcess(service));
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(&objects).unwrap());
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = Agent::start(
        AgentConfig::dev(listen, None),
        catalog.clone(),
        store.clone(),
    )
    .await
    .unwrap();
    let hide_invalidations = Arc::new(AtomicBool::new(false));
    let hiding: Arc<dyn CatalogApi> = Arc::new(HidingCatalog {
        inner: catalog.clone(),
        hide_invalidations: hide_invalidations.clone(),
    });
    let mut config = AgentConfig::dev(listen, None);
    config.agent_id = "reader-agent".into();
    config.node_id = 1;
    let b = Agent::start(config, hiding, store.clone()).await.unwrap();
    Env {
        _dir: dir,
        catalog,
        store,
        a,
        b,
        hide_invalidations,
    }
}

/// Every answer a consumer can observe, for comparison before and after
/// compaction: fetches from every offset (one batch, and everything), a
/// small-budget stream, and timestamp lookups.
async fn observe(conn: &mut Conn) -> Vec<String> {
    let mut out = Vec::new();
    for offset in 0..RECORDS {
        out.push(format!("{:?}", conn.fetch(offset, 1).await));
        out.push(format!("{:?}", conn.fetch(offset, 1 << 20).await));
    }
    out.push(format!("{:?}", conn.read_all(0, 300).await));
    for timestamp in lookup_timestamps() {
        out.push(format!(
            "{timestamp}: {:?}",
            conn.list_offset(timestamp).await
        ));
    }
    out
}

fn lookup_timestamps() -> Vec<i64> {
    let mut out = vec![-1, -2, -3, 0];
    for offset in 0..=RECORDS {
        out.push(BASE_TS + offset * 1000 - 1);
        out.push(BASE_TS + offset * 1000);
    }
    out.push(timestamp_of(MAX_TS_OFFSET));
    out.push(timestamp_of(MAX_TS_OFFSET) + 1);
    out
}

/// Kafka's answer to a timestamp lookup over `records` (the log from its
/// log start): the first record with a timestamp at or after `timestamp`.
fn expected_lookup(records: &[Seen], timestamp: i64) -> (i64, i64) {
    records
        .iter()
        .find(|r| r.timestamp >= timestamp)
        .map_or((-1, -1), |r| (r.offset, r.timestamp))
}

/// Builds the Parquet file from the first chunks, PUTs it and swaps it in.
async fn compact(env: &Env, topic_id: &[u8]) -> Vec<pb::Chunk> {
    let lookup = env
        .catalog
        .lookup_chunks(pb::LookupChunksRequest {
            topic_id: topic_id.to_vec(),
            partition: 0,
            offset: 0,
            max_chunks: 100,
        })
        .await
        .unwrap();
    assert_eq!(lookup.chunks.len(), CHUNKS, "one chunk per produce");
    let replaced = lookup.chunks[..COMPACTED_CHUNKS].to_vec();
    let mut inputs = Vec::new();
    for chunk in &replaced {
        let path = Path::from(chunk.object_key.as_str());
        let bytes = env
            .store
            .get_range(&path, chunk.position..chunk.position + chunk.length)
            .await
            .unwrap();
        inputs.push((chunk.base_offset, bytes));
    }
    let info = PartitionInfo {
        topic: TOPIC.into(),
        topic_id: topic_id.try_into().unwrap(),
        partition: 0,
    };
    // Small row groups and pages: fetches pick row groups and pages.
    let options = WriteOptions {
        row_group_bytes: 1024,
        data_page_bytes: 512,
        ..WriteOptions::default()
    };
    let (file, summary) = write_file(info, &inputs, options).unwrap();
    let last = replaced.last().unwrap();
    assert_eq!(summary.last_offset + 1, last.end_offset);
    let key = format!("parquet/{TOPIC}/0/0-{}.parquet", summary.last_offset);
    let size = file.len() as u64;
    env.store
        .put(&Path::from(key.as_str()), PutPayload::from(file))
        .await
        .unwrap();
    let swap = env
        .catalog
        .replace_chunks(pb::ReplaceChunksRequest {
            topic_id: topic_id.to_vec(),
            object_created_ms: 0,
            partition: 0,
            expected: replaced
                .iter()
                .map(|c| pb::ChunkRef {
                    base_offset: c.base_offset,
                    end_offset: c.end_offset,
                    object_key: c.object_key.clone(),
                })
                .collect(),
            replacement: Some(pb::Chunk {
                base_offset: 0,
                end_offset: last.end_offset,
                object_key: key,
                object_size: size,
                position: 0,
                length: size,
                batch_count: replaced.iter().map(|c| c.batch_count).sum(),
                max_timestamp: replaced.iter().map(|c| c.max_timestamp).max().unwrap(),
                format: pb::ChunkFormat::Parquet.into(),
                ..pb::Chunk::default()
            }),
        })
        .await
        .unwrap();
    assert_eq!((swap.error_code, swap.conflict), (0, false));
    replaced
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name_and_labels))
        .map(|value| value.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {name_and_labels} in the metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_cannot_tell_the_parquet_tier_from_segments() {
    let env = start().await;
    let mut a = Conn::open(env.a.local_addr()).await;
    let mut b = Conn::open(env.b.local_addr()).await;

    // Produce, one flush per request.
    a.create_topic().await;
    for chunk in 0..CHUNKS {
        let base = a.produce(chunk_batches(chunk)).await;
        assert_eq!(base, (chunk * BATCHES_PER_CHUNK * RECORDS_PER_BATCH) as i64);
    }
    let topic_id = env
        .catalog
        .list_topics(pb::ListTopicsRequest::default())
        .await
        .unwrap()
        .topics
        .into_iter()
        .find(|t| t.name == TOPIC)
        .unwrap()
        .topic_id;

    let capture = a.read_all(0, 1 << 20).await;
    assert_eq!(capture.len() as i64, RECORDS);
    for (i, record) in capture.iter().enumerate() {
        assert_eq!(record.offset, i as i64);
        assert_eq!(record.timestamp, timestamp_of(record.offset));
    }
    for timestamp in lookup_timestamps().into_iter().filter(|t| *t >= 0) {
        let (code, offset, ts) = a.list_offset(timestamp).await;
        assert_eq!(
            (code, (offset, ts)),
            (0, expected_lookup(&capture, timestamp))
        );
    }
    let before = observe(&mut a).await;
    // Agent B has read nothing, so no block of the old segments is in its
    // cache; its index tail holds the segment chunks from the commit stream.
    b.fetch(RECORDS, 1 << 20).await;

    env.hide_invalidations.store(true, Ordering::SeqCst);
    let replaced = compact(&env, &topic_id).await;

    // The same answers from the Parquet tier (and across into segments).
    let after = observe(&mut a).await;
    for (before, after) in before.iter().zip(&after) {
        assert_eq!(before, after);
    }
    assert_eq!(before.len(), after.len());

    let metrics = Agent::metrics_renderer(&[&env.a])();
    // Many fetches, one footer parse for the one file.
    assert_eq!(
        metric(
            &metrics,
            "strata_parquet_footer_reads_total{agent=\"dev-agent-0\"}"
        ),
        1.0
    );
    assert!(
        metric(
            &metrics,
            "strata_fetch_tier_bytes_total{agent=\"dev-agent-0\",tier=\"parquet\"}"
        ) > 0.0
    );
    assert!(
        metric(
            &metrics,
            "strata_fetch_tier_batches_total{agent=\"dev-agent-0\",tier=\"segment\"}"
        ) > 0.0
    );

    // The GC deleted the replaced segments (grace passed). B's index still
    // lists them: its fetch finds them gone, looks up again, and answers.
    for chunk in &replaced {
        env.store
            .delete(&Path::from(chunk.object_key.as_str()))
            .await
            .unwrap();
    }
    assert_eq!(b.read_all(0, 1 << 20).await, capture);
    assert_eq!(b.read_all(5, 300).await, capture[5..]);
    env.hide_invalidations.store(false, Ordering::SeqCst);

    // Retention to the middle of a batch of the Parquet chunk.
    assert_eq!(a.delete_records(LOG_START).await, (0, LOG_START));
    let kept = &capture[LOG_START as usize..];
    for conn in [&mut a, &mut b] {
        assert_eq!(conn.list_offset(-2).await, (0, LOG_START, -1));
        let (code, log_start, _) = conn.fetch(LOG_START - 1, 1 << 20).await;
        assert_eq!(
            (code, log_start),
            (1, LOG_START),
            "OFFSET_OUT_OF_RANGE below the log start"
        );
        let (code, log_start, records) = conn.fetch(LOG_START, 1 << 20).await;
        assert_eq!((code, log_start), (0, LOG_START));
        // The batch holding the log start comes whole, as from Kafka.
        assert!(records[0].offset < LOG_START);
        assert_eq!(conn.read_all(LOG_START, 1 << 20).await, kept);
        for timestamp in lookup_timestamps().into_iter().filter(|t| *t >= 0) {
            let (code, offset, ts) = conn.list_offset(timestamp).await;
            assert_eq!(
                (code, (offset, ts)),
                (0, expected_lookup(kept, timestamp)),
                "at {timestamp}"
            );
        }
        // The greatest timestamp lies below the log start now.
        let newest = kept.iter().max_by_key(|r| r.timestamp).unwrap();
        assert_eq!(
            conn.list_offset(-3).await,
            (0, newest.offset, newest.timestamp)
        );
    }

    drop((a, b));
    tokio::time::timeout(Duration::from_secs(30), async {
        env.a.shutdown().await;
        env.b.shutdown().await;
    })
    .await
    .unwrap();
}
