//! The compaction service: the loop behind `strata compactor` (and the
//! compactor inside `strata dev`).
//!
//! Each pass lists the topics and, per partition it can claim
//! (`ClaimCompaction`, renewed while it works):
//!
//! 1. enforces retention (`retention.ms`, `retention.bytes`) with
//!    `DeleteRecords`;
//! 2. rewrites runs of segment chunks older than `strata.compaction.age.ms`
//!    as Parquet files (`parquet/<topic>/<partition>/<first>-<last>-<ULID>.parquet`)
//!    and swaps them in with `ReplaceChunks`; a lost swap deletes its file;
//! 3. for a topic whose `cleanup.policy` includes `compact`, key-compacts
//!    its leading Parquet files when due (`service/key_compaction.rs`).
//!
//! then deletes the objects the catalog has listed as dead for longer than
//! the GC grace period. Less often, an orphan sweep deletes old objects the
//! catalog does not know at all (a writer that crashed between its PUT and
//! its commit or swap).
//!
//! Every step is safe to repeat and to run in two compactors at once: the
//! swap is a compare-and-swap, `DeleteRecords` only moves forward, and an
//! object is deleted only when the catalog says nothing needs it.

mod clock;
mod config;
mod gc;
mod key_compaction;
mod metrics;
mod plan;
mod retention;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use strata_catalog_api::CatalogApi;
use strata_catalog_api::proto::{
    Chunk, ChunkFormat, ChunkRef, ClaimCompactionRequest, ListTopicsRequest, LookupChunksRequest,
    ReleaseCompactionRequest, ReplaceChunksRequest, Topic,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use clock::{Clock, IdGen, SystemClock, SystemIds};
pub use config::CompactorConfig;
use key_compaction::KeyPolicy;
pub use metrics::CompactorMetrics;
use plan::TopicPolicy;
use upload::{ChunkSource, UploadOptions};

use strata_parquet::PartitionInfo;

/// Kafka's UNKNOWN_TOPIC_OR_PARTITION, as the catalog answers it (an i32
/// in the catalog's protobuf responses).
const UNKNOWN_TOPIC_OR_PARTITION: i32 =
    strata_catalog_api::error_code::UNKNOWN_TOPIC_OR_PARTITION as i32;
/// Chunks per LookupChunks page.
const LOOKUP_PAGE: u32 = 1_000;
/// Keys per ListDeadObjects / ReferencedObjects call.
const KEYS_PER_CALL: usize = 1_000;
/// Object deletions in flight at once.
const DELETE_CONCURRENCY: usize = 8;
/// Attempts at a swap whose outcome is unknown (transport error); a
/// replayed swap that already succeeded answers success.
const SWAP_ATTEMPTS: u32 = 3;

/// What went wrong in a step of the service. Every step is retried on the
/// next pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A catalog RPC failed (transport or internal error).
    #[error("catalog: {0}")]
    Catalog(#[from] tonic::Status),
    /// An object-store request failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// A chunk could not be decoded or the file could not be encoded.
    #[error("parquet tier: {0}")]
    Format(#[from] strata_parquet::Error),
    /// The catalog answered with a Kafka error code.
    #[error("the catalog answered error code {code} to {call}")]
    Refused {
        /// The RPC.
        call: &'static str,
        /// The Kafka error code.
        code: i32,
    },
    /// A step of a file's pipeline (read, encode, upload) stopped because
    /// another one failed; that one's error is the cause reported.
    #[error("the {step} stopped because another step of the same file failed")]
    Aborted {
        /// The step that stopped.
        step: PipelineStep,
    },
    /// The Parquet encoder's task panicked (a bug; the file is dropped).
    #[error("the Parquet encoder panicked")]
    EncoderPanicked,
    /// A topic id from the catalog is not 16 bytes.
    #[error("topic {topic} has a malformed id")]
    MalformedTopicId {
        /// The topic's name.
        topic: String,
    },
    /// The file written does not hold the offsets of the chunks it replaces.
    #[error(
        "chunks {base_offset}..{end_offset} produced a file of offsets {first_offset}..={last_offset}"
    )]
    OffsetsMismatch {
        /// First offset of the chunks.
        base_offset: i64,
        /// One past the last offset of the chunks.
        end_offset: i64,
        /// First offset in the file.
        first_offset: i64,
        /// Last offset in the file.
        last_offset: i64,
    },
}

/// The steps of writing one Parquet file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineStep {
    /// Reading the chunks from the object store.
    Read,
    /// Encoding the Parquet file.
    Encode,
    /// Uploading the file's parts.
    Upload,
}

impl std::fmt::Display for PipelineStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Read => "read of the chunks",
            Self::Encode => "Parquet encoder",
            Self::Upload => "upload",
        })
    }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    /// Parquet files swapped into the catalog.
    pub files_swapped: u64,
    /// Files whose swap was lost (and which were deleted).
    pub swap_conflicts: u64,
    /// Partitions whose log start retention moved.
    pub retention_moves: u64,
    /// Partitions skipped because another compactor holds their claim.
    pub partitions_skipped: u64,
    /// Dead objects the GC deleted.
    pub gc_deleted: u64,
    /// Steps that failed (logged; retried next pass).
    pub errors: u64,
}

impl PassReport {
    fn add(&mut self, other: Self) {
        self.files_swapped += other.files_swapped;
        self.swap_conflicts += other.swap_conflicts;
        self.retention_moves += other.retention_moves;
        self.partitions_skipped += other.partitions_skipped;
        self.gc_deleted += other.gc_deleted;
        self.errors += other.errors;
    }
}

/// A partition's chunks from its log start, with its offsets.
#[derive(Debug)]
struct PartitionChunks {
    chunks: Vec<Chunk>,
    log_start: i64,
    high_watermark: i64,
}

/// The compactor: see the module documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Compactor {
    catalog: Arc<dyn CatalogApi>,
    store: Arc<dyn ObjectStore>,
    config: Arc<CompactorConfig>,
    clock: Arc<dyn Clock>,
    /// Makes the ULIDs of Parquet file keys.
    ids: Arc<dyn IdGen>,
    metrics: Arc<CompactorMetrics>,
    /// When retention is next checked (clock ms); 0 = at the next pass.
    next_retention_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl Compactor {
    /// A compactor over `catalog` and `store` (the bucket and prefix the
    /// agents write to), on the system clock.
    pub fn new(
        config: CompactorConfig,
        catalog: Arc<dyn CatalogApi>,
        store: Arc<dyn ObjectStore>,
    ) -> Self {
        Self {
            catalog,
            store,
            config: Arc::new(config),
            clock: Arc::new(SystemClock),
            ids: Arc::new(SystemIds),
            metrics: Arc::default(),
            next_retention_ms: Arc::default(),
        }
    }

    /// The same compactor on another clock (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same compactor with another id source (tests).
    pub fn with_ids(mut self, ids: Arc<dyn IdGen>) -> Self {
        self.ids = ids;
        self
    }

    /// Its counters, for `/metrics`.
    pub fn metrics(&self) -> Arc<CompactorMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Runs passes every `interval` and orphan sweeps every
    /// `orphan_sweep_interval` until `stop` is cancelled. A step that fails
    /// is logged, counted and retried on the next pass.
    pub async fn run(&self, stop: CancellationToken) {
        info!(compactor_id = %self.config.compactor_id, interval = ?self.config.interval, "the compactor is running");
        let mut last_sweep: Option<tokio::time::Instant> = None;
        loop {
            let report = tokio::select! {
                report = self.pass() => report,
                () = stop.cancelled() => break,
            };
            debug!(?report, "compaction pass done");
            let sweep_due =
                last_sweep.is_none_or(|at| at.elapsed() >= self.config.orphan_sweep_interval);
            if sweep_due {
                last_sweep = Some(tokio::time::Instant::now());
                tokio::select! {
                    swept = self.sweep_orphans() => {
                        if let Err(e) = swept {
                            self.failed("orphan sweep", &e);
                        }
                    }
                    () = stop.cancelled() => break,
                }
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                () = stop.cancelled() => break,
            }
        }
        info!("the compactor stopped");
    }

    /// One pass: retention and compaction of every partition this compactor
    /// can claim, then the GC of dead objects.
    pub async fn pass(&self) -> PassReport {
        let mut report = PassReport::default();
        let retention = self.retention_due();
        match self.catalog.list_topics(ListTopicsRequest::default()).await {
            Ok(response) => {
                for topic in &response.topics {
                    for partition in 0..topic.partition_count {
                        report.add(self.partition(topic, partition, retention).await);
                    }
                }
            }
            Err(e) => {
                self.failed("list topics", &e.into());
                report.errors += 1;
            }
        }
        match self.collect_garbage().await {
            Ok(deleted) => report.gc_deleted = deleted,
            Err(e) => {
                self.failed("garbage collection", &e);
                report.errors += 1;
            }
        }
        CompactorMetrics::add(&self.metrics.passes, 1);
        report
    }

    /// Claims one partition, works on it while renewing the claim, and
    /// releases it.
    async fn partition(&self, topic: &Topic, partition: u32, retention: bool) -> PassReport {
        let mut report = PassReport::default();
        let claim = ClaimCompactionRequest {
            topic_id: topic.topic_id.clone(),
            partition,
            compactor_id: self.config.compactor_id.clone(),
            lease_ms: self.config.claim_lease_ms,
        };
        match self.catalog.claim_compaction(claim.clone()).await {
            Ok(response) if response.granted => {}
            Ok(response) => {
                debug!(topic = %topic.name, partition, holder = %response.holder, "claimed by another compactor");
                report.partitions_skipped = 1;
                return report;
            }
            Err(e) => {
                self.failed("claim", &e.into());
                report.errors = 1;
                return report;
            }
        }
        let lost = CancellationToken::new();
        let renewal = tokio::spawn(renew(Arc::clone(&self.catalog), claim, lost.clone()));
        let result = self
            .work(topic, partition, retention, &lost, &mut report)
            .await;
        renewal.abort();
        if let Err(e) = result {
            warn!(topic = %topic.name, partition, error = %e, "partition work failed; retrying next pass");
            CompactorMetrics::add(&self.metrics.errors, 1);
            report.errors += 1;
        }
        let release = ReleaseCompactionRequest {
            topic_id: topic.topic_id.clone(),
            partition,
            compactor_id: self.config.compactor_id.clone(),
        };
        if let Err(e) = self.catalog.release_compaction(release).await {
            // The lease runs out by itself.
            debug!(error = %e, "release of a compaction claim failed");
        }
        report
    }

    /// Retention, then compaction runs until nothing is old enough.
    async fn work(
        &self,
        topic: &Topic,
        partition: u32,
        retention: bool,
        lost: &CancellationToken,
        report: &mut PassReport,
    ) -> Result<(), ServiceError> {
        let Ok(topic_id) = <[u8; 16]>::try_from(topic.topic_id.as_slice()) else {
            return Err(ServiceError::MalformedTopicId {
                topic: topic.name.clone(),
            });
        };
        let policy = TopicPolicy::of(topic);
        let Some(listed) = self.list_chunks(topic, partition).await? else {
            return Ok(());
        };
        if retention && self.retain(topic, partition, policy, &listed).await? {
            report.retention_moves += 1;
        }
        let info = PartitionInfo {
            topic: topic.name.clone(),
            topic_id,
            partition: i32::try_from(partition).unwrap_or(i32::MAX),
        };
        loop {
            if lost.is_cancelled() {
                return Ok(());
            }
            let Some(listed) = self.list_chunks(topic, partition).await? else {
                return Ok(());
            };
            let run = plan::next_run(
                &listed.chunks,
                self.clock.now_ms(),
                policy.compaction_age_ms,
                self.config.target_file_bytes,
            );
            if run.is_empty() {
                break;
            }
            match self.compact(&info, topic, run, lost).await? {
                Swap::Done => report.files_swapped += 1,
                Swap::Conflict => {
                    report.swap_conflicts += 1;
                    // Someone else changed the partition; look again next pass.
                    return Ok(());
                }
                Swap::Gone => return Ok(()),
            }
        }
        if let Some(key_policy) = KeyPolicy::of(topic) {
            self.key_compact(&info, topic, key_policy, lost, report)
                .await?;
        }
        Ok(())
    }

    /// All chunks of a partition from its log start; `None` when the
    /// partition no longer exists.
    async fn list_chunks(
        &self,
        topic: &Topic,
        partition: u32,
    ) -> Result<Option<PartitionChunks>, ServiceError> {
        let mut listed = PartitionChunks {
            chunks: Vec::new(),
            log_start: 0,
            high_watermark: 0,
        };
        let mut offset = 0;
        loop {
            let response = self
                .catalog
                .lookup_chunks(LookupChunksRequest {
                    topic_id: topic.topic_id.clone(),
                    partition,
                    offset,
                    max_chunks: LOOKUP_PAGE,
                })
                .await?;
            match response.error_code {
                0 => {}
                UNKNOWN_TOPIC_OR_PARTITION => return Ok(None),
                code => {
                    return Err(ServiceError::Refused {
                        call: "LookupChunks",
                        code,
                    });
                }
            }
            if listed.chunks.is_empty() {
                listed.log_start = response.log_start_offset;
                listed.high_watermark = response.high_watermark;
            }
            let page_full = response.chunks.len() >= LOOKUP_PAGE as usize;
            let next = response.chunks.last().map(|chunk| chunk.end_offset);
            // A page that overlaps the previous one (a swap in between)
            // keeps only chunks past what we have.
            let have = listed.chunks.last().map_or(i64::MIN, |c| c.end_offset);
            listed.chunks.extend(
                response
                    .chunks
                    .into_iter()
                    .filter(|c| c.base_offset >= have),
            );
            match next {
                Some(next) if page_full && next < response.high_watermark => offset = next,
                _ => return Ok(Some(listed)),
            }
        }
    }

    /// Writes `run` as one Parquet file and swaps it in.
    async fn compact(
        &self,
        info: &PartitionInfo,
        topic: &Topic,
        run: &[Chunk],
        lost: &CancellationToken,
    ) -> Result<Swap, ServiceError> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(Swap::Gone);
        };
        let (base_offset, end_offset) = (first.base_offset, last.end_offset);
        let file_id = self.ids.ulid();
        // Named now, on the compactor's clock: the catalog refuses the swap
        // once the file is older than its max commit age.
        let created_ms = self.clock.now_ms();
        let key = Path::from(format!(
            "parquet/{}/{}/{:020}-{:020}-{}.parquet",
            info.topic,
            info.partition,
            base_offset,
            end_offset - 1,
            file_id
        ));
        let sources = run
            .iter()
            .map(|chunk| ChunkSource {
                base_offset: chunk.base_offset,
                object: Path::from(chunk.object_key.as_str()),
                range: chunk.position..chunk.position.saturating_add(chunk.length),
            })
            .collect();
        let options = UploadOptions {
            write: self.config.write.clone(),
            fetch_concurrency: self.config.fetch_concurrency,
            part_bytes: self.config.upload_part_bytes,
        };
        let summary = upload::write_parquet(
            Arc::clone(&self.store),
            &key,
            info.clone(),
            sources,
            options,
        )
        .await?;
        let m = &self.metrics;
        CompactorMetrics::add(&m.files_written, 1);
        CompactorMetrics::add(&m.input_bytes, summary.input_bytes);
        CompactorMetrics::add(&m.output_bytes, summary.file_bytes);
        CompactorMetrics::add(&m.rows, summary.record_count);
        if summary.first_offset != base_offset || summary.last_offset != end_offset - 1 {
            self.delete_quietly(&key).await;
            return Err(ServiceError::OffsetsMismatch {
                base_offset,
                end_offset,
                first_offset: summary.first_offset,
                last_offset: summary.last_offset,
            });
        }
        let swap = self
            .install(info, topic, run, (&key, created_ms), &summary, lost)
            .await?;
        if swap != Swap::Done {
            return Ok(swap);
        }
        CompactorMetrics::add(&m.swaps_ok, 1);
        info!(
            file = %key,
            chunks = run.len(),
            records = summary.record_count,
            input_bytes = summary.input_bytes,
            file_bytes = summary.file_bytes,
            "compacted"
        );
        Ok(Swap::Done)
    }

    /// Swaps the file at `key` (named at `created_ms`, written from `run`, holding `summary`) in
    /// for `run`; deletes it when the swap is lost or refused.
    async fn install(
        &self,
        info: &PartitionInfo,
        topic: &Topic,
        run: &[Chunk],
        (key, created_ms): (&Path, i64),
        summary: &strata_parquet::WriteSummary,
        lost: &CancellationToken,
    ) -> Result<Swap, ServiceError> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(Swap::Gone);
        };
        let (base_offset, end_offset) = (first.base_offset, last.end_offset);
        let m = &self.metrics;
        if lost.is_cancelled() {
            // Another compactor may be working here now; do not race it.
            self.delete_quietly(key).await;
            return Ok(Swap::Gone);
        }
        let request = ReplaceChunksRequest {
            topic_id: topic.topic_id.clone(),
            partition: u32::try_from(info.partition).unwrap_or(0),
            expected: run
                .iter()
                .map(|chunk| ChunkRef {
                    base_offset: chunk.base_offset,
                    end_offset: chunk.end_offset,
                    object_key: chunk.object_key.clone(),
                })
                .collect(),
            replacement: Some(Chunk {
                base_offset,
                end_offset,
                object_key: key.to_string(),
                object_size: summary.file_bytes,
                position: 0,
                length: summary.file_bytes,
                batch_count: u32::try_from(summary.batch_count).unwrap_or(u32::MAX),
                max_timestamp: summary.max_timestamp_ms,
                format: ChunkFormat::Parquet as i32,
                ..Chunk::default()
            }),
            object_created_ms: created_ms,
        };
        let response = self.swap(request).await?;
        if response.error_code == UNKNOWN_TOPIC_OR_PARTITION {
            info!(file = %key, "the partition is gone; deleting the file");
            self.delete_quietly(key).await;
            return Ok(Swap::Gone);
        }
        if response.error_code != 0 {
            self.delete_quietly(key).await;
            return Err(ServiceError::Refused {
                call: "ReplaceChunks",
                code: response.error_code,
            });
        }
        if response.conflict {
            info!(file = %key, "lost the swap to another writer; deleting the file");
            CompactorMetrics::add(&m.swaps_conflict, 1);
            self.delete_quietly(key).await;
            return Ok(Swap::Conflict);
        }
        Ok(Swap::Done)
    }

    /// ReplaceChunks, retried on transport errors (a replay of a swap that
    /// succeeded answers success). When every attempt fails the file stays:
    /// the swap may have happened; if not, the orphan sweep deletes it.
    async fn swap(
        &self,
        request: ReplaceChunksRequest,
    ) -> Result<strata_catalog_api::proto::ReplaceChunksResponse, ServiceError> {
        let mut attempt = 1;
        loop {
            match self.catalog.replace_chunks(request.clone()).await {
                Ok(response) => return Ok(response),
                Err(e) if attempt < SWAP_ATTEMPTS => {
                    warn!(error = %e, attempt, "swap failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Deletes a file this compactor wrote and will not swap in; a failure
    /// leaves it to the orphan sweep.
    async fn delete_quietly(&self, key: &Path) {
        if let Err(e) = self.store.delete(key).await
            && !matches!(e, object_store::Error::NotFound { .. })
        {
            warn!(file = %key, error = %e, "cannot delete an unused file; the orphan sweep will");
        }
    }

    fn failed(&self, step: &str, error: &ServiceError) {
        warn!(step, %error, "compactor step failed; retrying next pass");
        CompactorMetrics::add(&self.metrics.errors, 1);
    }
}

/// How a swap ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swap {
    /// The file replaced the run.
    Done,
    /// The run changed under us; the file was deleted.
    Conflict,
    /// The partition is gone or our claim was lost; the file was deleted.
    Gone,
}

/// Renews `claim` every third of its lease until aborted; cancels `lost`
/// when another compactor got it (our lease ran out in between).
async fn renew(
    catalog: Arc<dyn CatalogApi>,
    claim: ClaimCompactionRequest,
    lost: CancellationToken,
) {
    let period = Duration::from_millis(u64::try_from(claim.lease_ms / 3).unwrap_or(1).max(1));
    loop {
        tokio::time::sleep(period).await;
        match catalog.claim_compaction(claim.clone()).await {
            Ok(response) if response.granted => {}
            Ok(response) => {
                warn!(holder = %response.holder, "lost the compaction claim");
                lost.cancel();
                return;
            }
            // Transient: the swap's compare-and-swap still protects us.
            Err(e) => debug!(error = %e, "claim renewal failed"),
        }
    }
}
