//! The segment writer: the produce buffer, flushes, uploads and commits.
//!
//! Produce requests append validated batches to one in-memory buffer shared
//! by every partition. A flush takes the whole buffer when it holds
//! `flush_bytes` or its oldest batch is `flush_interval` old, writes it as
//! ONE segment object, then makes ONE catalog commit that assigns the
//! offsets of every batch in it. Uploads of several flushes may overlap, but
//! commits happen one at a time in flush order (DESIGN.md, "Commit order"):
//! a failed flush fails every flush queued behind it, so an idempotent
//! producer's sequences never leap a hole.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};
use strata_catalog_api::CatalogApi;
use strata_catalog_api::clock::IdGen;
use strata_catalog_api::proto::{
    BatchMeta, ChunkWrite, CommitSegmentRequest, CommitSegmentResponse,
};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::cache::BlockCache;
use crate::config::AgentConfig;
use crate::error_code;
use crate::fleet::Fleet;
use crate::metrics::{Metrics, add};

/// The outcome of one append, sent to the produce request that made it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppendResult {
    pub(crate) error_code: i16,
    /// Offset of the append's first batch.
    pub(crate) base_offset: i64,
    pub(crate) log_start_offset: i64,
}

impl AppendResult {
    pub(crate) fn error_with(error_code: i16) -> Self {
        Self {
            error_code,
            base_offset: -1,
            log_start_offset: -1,
        }
    }
}

/// Batches of one partition from one produce request.
#[derive(Debug)]
pub(crate) struct Append {
    pub(crate) topic_id: Uuid,
    pub(crate) partition: u32,
    pub(crate) batches: Vec<(Bytes, BatchMeta)>,
}

#[derive(Debug)]
struct Waiter {
    first_batch: usize,
    batch_count: usize,
    tx: oneshot::Sender<AppendResult>,
}

#[derive(Debug, Default)]
struct PartitionBuffer {
    batches: Vec<Bytes>,
    metas: Vec<BatchMeta>,
    waiters: Vec<Waiter>,
}

#[derive(Debug, Default)]
struct Buffer {
    partitions: HashMap<(Uuid, u32), PartitionBuffer>,
    bytes: usize,
    oldest: Option<Instant>,
    permits: Vec<OwnedSemaphorePermit>,
    closed: bool,
}

/// One flush: the buffer's content at the moment it was taken.
#[derive(Debug)]
struct Flush {
    partitions: Vec<((Uuid, u32), PartitionBuffer)>,
    /// Upload and commit must be done by then, or the flush fails: no
    /// produce waiting for it is still listening (see
    /// `AgentConfig::produce_timeout`), and a flush stuck on a hung request
    /// would hold every later flush behind it.
    deadline: tokio::time::Instant,
    /// The agent's epoch when the flush was taken (0 = unregistered or
    /// dev): the flush commits under the registration that accepted its
    /// data, so a zombie's flush is refused by the catalog.
    epoch: u64,
    /// Released when the flush is answered: back-pressure on appends.
    _permits: Vec<OwnedSemaphorePermit>,
}

/// Handle to the writer's tasks.
#[derive(Debug, Clone)]
pub(crate) struct SegmentWriter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    buffer: Mutex<Buffer>,
    wake: Notify,
    budget: Arc<Semaphore>,
    /// The permits `budget` holds when nothing is buffered.
    budget_permits: u32,
    metrics: Arc<Metrics>,
    flush_bytes: usize,
    flush_interval: Duration,
    /// Flush at once when no flush is in flight (see `AgentConfig::flush_eager`).
    flush_eager: bool,
    /// See `AgentConfig::produce_timeout`.
    produce_timeout: Duration,
    /// Flushes taken and not yet answered.
    in_flight: std::sync::atomic::AtomicUsize,
    drained: Notify,
    done: Mutex<bool>,
    fleet: Arc<Fleet>,
}

/// Budget is counted in KiB so that a 256 MiB budget fits a semaphore.
const PERMIT_BYTES: usize = 1024;

/// The permits an append of `bytes` takes from a budget of `budget`
/// permits, or `None` when it is larger than the whole budget: such an
/// append could only wait forever (and, the semaphore being fair, every
/// append behind it too).
fn permits_for(bytes: usize, budget: u32) -> Option<u32> {
    let permits = u32::try_from(bytes.div_ceil(PERMIT_BYTES).max(1)).ok()?;
    (permits <= budget).then_some(permits)
}

/// The permits of a budget of `bytes` (at least one; a u32, as
/// `acquire_many` takes).
fn budget_permits(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(PERMIT_BYTES))
        .unwrap_or(u32::MAX)
        .max(1)
}

impl SegmentWriter {
    /// Starts the flush and commit tasks.
    pub(crate) fn start(
        config: &AgentConfig,
        components: &crate::Components,
        cache: BlockCache,
        metrics: Arc<Metrics>,
        fleet: Arc<Fleet>,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let inner = Arc::new(Inner {
            buffer: Mutex::new(Buffer::default()),
            wake: Notify::new(),
            budget: Arc::new(Semaphore::new(
                budget_permits(config.buffer_bytes_max) as usize
            )),
            budget_permits: budget_permits(config.buffer_bytes_max),
            metrics: metrics.clone(),
            flush_bytes: config.flush_bytes,
            flush_interval: config.flush_interval,
            flush_eager: config.flush_eager,
            produce_timeout: config.produce_timeout,
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            drained: Notify::new(),
            done: Mutex::new(false),
            fleet: fleet.clone(),
        });
        let (tx, rx) = mpsc::channel(config.uploads_in_flight_max.max(1));
        let uploader = Uploader {
            metrics: metrics.clone(),
            store: components.store.clone(),
            ids: components.ids.clone(),
            cache,
            prefix: config.object_prefix.clone(),
        };
        tasks.spawn(flush_loop(inner.clone(), uploader, tx));
        let committer = Committer {
            metrics,
            catalog: components.catalog.clone(),
            fleet,
            agent_id: config.agent_id.clone(),
        };
        tasks.spawn(commit_loop(inner.clone(), committer, rx));
        Self { inner }
    }

    /// Appends batches; the receiver gets the result once the flush holding
    /// them is durable and committed (or failed). Waits while the buffer is
    /// full, until `deadline` at the latest (then REQUEST_TIMED_OUT); an
    /// append larger than the whole buffer is refused with
    /// RECORD_LIST_TOO_LARGE instead of waiting for room that can never
    /// exist. Dropping the future gives up the wait.
    pub(crate) async fn append(
        &self,
        append: Append,
        deadline: tokio::time::Instant,
    ) -> oneshot::Receiver<AppendResult> {
        let (tx, rx) = oneshot::channel();
        let bytes: usize = append.batches.iter().map(|(b, _)| b.len()).sum();
        let Some(permits) = permits_for(bytes, self.inner.budget_permits) else {
            let _ = tx.send(AppendResult::error_with(error_code::RECORD_LIST_TOO_LARGE));
            return rx;
        };
        let acquire = self.inner.budget.clone().acquire_many_owned(permits);
        let permit = match tokio::time::timeout_at(deadline, acquire).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => {
                let _ = tx.send(AppendResult::error_with(error_code::KAFKA_STORAGE_ERROR));
                return rx;
            }
            Err(_) => {
                add(&self.inner.metrics.produce_buffer_timeouts, 1);
                let _ = tx.send(AppendResult::error_with(error_code::REQUEST_TIMED_OUT));
                return rx;
            }
        };
        let wake = {
            let mut buffer = self
                .inner
                .buffer
                .lock()
                .expect("writer buffer lock poisoned");
            if buffer.closed {
                let _ = tx.send(AppendResult::error_with(error_code::NOT_LEADER_OR_FOLLOWER));
                return rx;
            }
            let was_empty = buffer.oldest.is_none();
            buffer.oldest.get_or_insert_with(Instant::now);
            buffer.bytes += bytes;
            buffer.permits.push(permit);
            let partition = buffer
                .partitions
                .entry((append.topic_id, append.partition))
                .or_default();
            partition.waiters.push(Waiter {
                first_batch: partition.batches.len(),
                batch_count: append.batches.len(),
                tx,
            });
            for (bytes, meta) in append.batches {
                partition.batches.push(bytes);
                partition.metas.push(meta);
            }
            was_empty || buffer.bytes >= self.inner.flush_bytes
        };
        if wake {
            self.inner.wake.notify_one();
        }
        rx
    }

    /// Flushes what is buffered, waits until every flush is committed, and
    /// refuses appends from then on.
    pub(crate) async fn close(&self) {
        self.inner
            .buffer
            .lock()
            .expect("writer buffer lock poisoned")
            .closed = true;
        self.inner.wake.notify_one();
        loop {
            let drained = self.inner.drained.notified();
            if *self.inner.done.lock().expect("writer done lock poisoned") {
                return;
            }
            drained.await;
        }
    }
}

impl Inner {
    /// Whether `close` was called: the writer takes no more appends.
    fn is_closing(&self) -> bool {
        self.buffer
            .lock()
            .expect("writer buffer lock poisoned")
            .closed
    }

    /// Marks one flush answered; an eager writer may flush again at once.
    fn flush_done(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.flush_eager {
            self.wake.notify_one();
        }
    }

    /// Takes the buffer if a flush is due; otherwise says how long to wait.
    fn take_if_due(&self) -> Result<Option<Flush>, Option<Duration>> {
        let mut buffer = self.buffer.lock().expect("writer buffer lock poisoned");
        let Some(oldest) = buffer.oldest else {
            return if buffer.closed { Ok(None) } else { Err(None) };
        };
        let age = oldest.elapsed();
        let idle = self.flush_eager && self.in_flight.load(Ordering::Acquire) == 0;
        if buffer.bytes < self.flush_bytes && age < self.flush_interval && !buffer.closed && !idle {
            return Err(Some(self.flush_interval - age));
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let taken = std::mem::take(&mut *buffer);
        buffer.closed = taken.closed;
        let mut partitions: Vec<_> = taken.partitions.into_iter().collect();
        // A stable order makes segments easy to inspect; not needed for correctness.
        partitions.sort_by_key(|(key, _)| *key);
        Ok(Some(Flush {
            partitions,
            deadline: tokio::time::Instant::now() + self.produce_timeout,
            epoch: self.fleet.epoch(),
            _permits: taken.permits,
        }))
    }
}

async fn flush_loop(inner: Arc<Inner>, uploader: Uploader, tx: mpsc::Sender<(Flush, UploadTask)>) {
    let uploader = Arc::new(uploader);
    loop {
        match inner.take_if_due() {
            Ok(Some(flush)) => {
                let segment = uploader.build(&flush);
                // Counted before the upload starts, so that flushes minus
                // commits minus failures is what is in flight.
                add(&uploader.metrics.flushes, 1);
                add(&uploader.metrics.flush_bytes, segment.bytes.len() as u64);
                let up = uploader.clone();
                let task = tokio::spawn(async move { up.upload(segment).await });
                if tx.send((flush, task)).await.is_err() {
                    return;
                }
            }
            // Closed and empty: the commit loop ends when `tx` drops.
            Ok(None) => return,
            Err(wait) => {
                let notified = inner.wake.notified();
                match wait {
                    Some(wait) => {
                        let _ = tokio::time::timeout(wait, notified).await;
                    }
                    None => notified.await,
                }
            }
        }
    }
}

/// A segment ready to upload.
#[derive(Debug)]
struct Segment {
    id: ulid::Ulid,
    key: Path,
    bytes: Bytes,
    /// Position of each partition's first batch, in flush order.
    positions: Vec<u64>,
}

type UploadTask = tokio::task::JoinHandle<Result<Segment, object_store::Error>>;

#[derive(Debug)]
struct Uploader {
    metrics: Arc<Metrics>,
    store: Arc<dyn ObjectStore>,
    /// Makes the segment ULIDs (their time is the compactor's segment age).
    ids: Arc<dyn IdGen>,
    cache: BlockCache,
    prefix: String,
}

impl Uploader {
    fn build(&self, flush: &Flush) -> Segment {
        let id = self.ids.ulid();
        let mut builder = strata_segment::SegmentBuilder::new();
        for ((topic_id, partition), buffer) in &flush.partitions {
            // Batches were validated on the way in; a failure here is a bug.
            builder
                .push_chunk(*topic_id.as_bytes(), *partition, &buffer.batches)
                .expect("validated batches always fit a segment");
        }
        let (bytes, entries) = builder.finish();
        let by_partition: HashMap<([u8; 16], u32), u64> = entries
            .iter()
            .map(|e| ((e.topic_id, e.partition), e.position))
            .collect();
        let positions = flush
            .partitions
            .iter()
            .map(|((topic_id, partition), _)| by_partition[&(*topic_id.as_bytes(), *partition)])
            .collect();
        Segment {
            id,
            key: segment_key(&self.prefix, id),
            bytes,
            positions,
        }
    }

    async fn upload(&self, segment: Segment) -> Result<Segment, object_store::Error> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = PutPayload::from_bytes(segment.bytes.clone());
        let put = self.store.put_opts(&segment.key, payload, options).await;
        add(&self.metrics.segment_puts, 1);
        match put {
            Ok(_) => {}
            // The key is a fresh ULID only this writer uses: it exists only
            // because an earlier attempt of this very PUT landed before the
            // client retried it (a timeout or a lost response).
            Err(object_store::Error::AlreadyExists { .. }) => {
                debug!(segment = %segment.id, "segment already written by an earlier attempt");
            }
            Err(e) => {
                add(&self.metrics.segment_put_errors, 1);
                return Err(e);
            }
        }
        // Write-through: the tail of every partition is read from here.
        self.cache.insert_object(&segment.key, &segment.bytes);
        Ok(segment)
    }
}

/// `<prefix>/segments/<2 hex chars>/<ulid>.seg`; the hash spreads keys over
/// S3 prefixes.
fn segment_key(prefix: &str, id: ulid::Ulid) -> Path {
    let hash = crc32c::crc32c(id.to_string().as_bytes()) & 0xff;
    let prefix = prefix.trim_matches('/');
    let key = if prefix.is_empty() {
        format!("segments/{hash:02x}/{id}.seg")
    } else {
        format!("{prefix}/segments/{hash:02x}/{id}.seg")
    };
    Path::from(key)
}

#[derive(Debug)]
struct Committer {
    metrics: Arc<Metrics>,
    catalog: Arc<dyn CatalogApi>,
    fleet: Arc<Fleet>,
    agent_id: String,
}

/// Longest wait for one CommitSegment call: a catalog that accepted the
/// connection and then stopped answering (paused, overloaded) must not hold
/// the commit past its retries.
const COMMIT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

async fn commit_loop(
    inner: Arc<Inner>,
    committer: Committer,
    mut rx: mpsc::Receiver<(Flush, UploadTask)>,
) {
    while let Some((flush, mut task)) = rx.recv().await {
        let uploaded = match tokio::time::timeout_at(flush.deadline, &mut task).await {
            Ok(uploaded) => uploaded,
            Err(_) => {
                // The PUT may still land: its object is an orphan for the
                // garbage collector, never committed.
                task.abort();
                error!(
                    "segment upload did not finish before the produce deadline; failing its produce requests"
                );
                answer_all(&committer.metrics, flush, error_code::REQUEST_TIMED_OUT);
                inner.flush_done();
                fail_queued(
                    &inner,
                    &committer.metrics,
                    &mut rx,
                    error_code::REQUEST_TIMED_OUT,
                );
                continue;
            }
        };
        let mut unresolved = None;
        let code = match uploaded {
            Ok(Ok(segment)) => match committer.commit(&flush, &segment).await {
                Ok(response) => {
                    answer(flush, &response);
                    inner.flush_done();
                    continue;
                }
                Err(CommitError::Refused(status))
                    if status.code() == tonic::Code::FailedPrecondition =>
                {
                    // Fenced: this agent's registration expired (a pause
                    // past its lease). Nothing was committed; the clients
                    // retry, and later flushes use the new registration.
                    warn!(%status, segment = %segment.id, "commit refused: this agent is fenced");
                    add(&committer.metrics.catalog_commits_fenced, 1);
                    committer.fleet.fenced(flush.epoch);
                    error_code::NOT_LEADER_OR_FOLLOWER
                }
                Err(CommitError::Refused(status)) => {
                    error!(%status, segment = %segment.id, "catalog refused the commit; failing its produce requests");
                    error_code::REQUEST_TIMED_OUT
                }
                Err(CommitError::Unknown { status, request }) => {
                    error!(
                        %status, segment = %segment.id,
                        "catalog commit outcome unknown at the produce deadline; failing its produce \
                         requests, then resolving the commit before any later one"
                    );
                    add(&committer.metrics.catalog_commits_unknown, 1);
                    unresolved = Some(request);
                    error_code::REQUEST_TIMED_OUT
                }
            },
            Ok(Err(e)) => {
                error!(error = %e, "segment upload failed; failing its produce requests");
                error_code::KAFKA_STORAGE_ERROR
            }
            Err(e) => {
                error!(error = %e, "segment upload task failed");
                error_code::KAFKA_STORAGE_ERROR
            }
        };
        answer_all(&committer.metrics, flush, code);
        inner.flush_done();
        fail_queued(&inner, &committer.metrics, &mut rx, code);
        if let Some(request) = unresolved {
            let mut arrivals = Arrivals {
                inner: &inner,
                metrics: &committer.metrics,
                rx: &mut rx,
                open: true,
            };
            committer.resolve(&mut arrivals, request).await;
        }
    }
    *inner.done.lock().expect("writer done lock poisoned") = true;
    inner.drained.notify_waiters();
    info!("segment writer drained");
}

/// Flushes queued behind a failed one may hold later batches of the same
/// producers: committing them would leap a hole in sequences or reorder a
/// partition. Fail them too; their objects become orphans for the garbage
/// collector.
fn fail_queued(
    inner: &Inner,
    metrics: &Metrics,
    rx: &mut mpsc::Receiver<(Flush, UploadTask)>,
    code: i16,
) {
    while let Ok((queued, _task)) = rx.try_recv() {
        answer_all(metrics, queued, code);
        inner.flush_done();
    }
}

/// Why a commit did not succeed.
#[derive(Debug)]
enum CommitError {
    /// Nothing was applied, and nothing can be applied later: the catalog
    /// refused the commit, or it was never sent.
    Refused(tonic::Status),
    /// The commit was sent, and its outcome is unknown: it may have been
    /// applied, or may still be (a request the catalog is still working
    /// on). See [`Committer::resolve`].
    Unknown {
        status: tonic::Status,
        request: CommitSegmentRequest,
    },
}

impl Committer {
    /// Commits a segment, retrying transport failures and timed-out calls
    /// with bounded backoff until the flush's deadline. Retries are safe:
    /// the segment id makes the commit idempotent (a retried commit that
    /// had landed returns the stored answer).
    async fn commit(
        &self,
        flush: &Flush,
        segment: &Segment,
    ) -> Result<CommitSegmentResponse, CommitError> {
        let started = Instant::now();
        let agent_epoch = match flush.epoch {
            0 => {
                let remaining = flush
                    .deadline
                    .saturating_duration_since(tokio::time::Instant::now());
                self.fleet.wait_epoch(remaining).await.ok_or_else(|| {
                    CommitError::Refused(tonic::Status::unavailable(
                        "this agent is not registered with the catalog",
                    ))
                })?
            }
            epoch => epoch,
        };
        let request = CommitSegmentRequest {
            segment_id: segment.id.to_string(),
            object_key: segment.key.to_string(),
            object_size: segment.bytes.len() as u64,
            agent_id: self.agent_id.clone(),
            agent_epoch,
            chunks: flush
                .partitions
                .iter()
                .zip(&segment.positions)
                .map(|(((topic_id, partition), buffer), position)| ChunkWrite {
                    topic_id: topic_id.as_bytes().to_vec(),
                    partition: *partition,
                    position: *position,
                    batches: buffer.metas.clone(),
                })
                .collect(),
        };
        let mut backoff = Duration::from_millis(10);
        loop {
            let remaining = flush
                .deadline
                .saturating_duration_since(tokio::time::Instant::now());
            match self.attempt(&request, remaining).await {
                Ok(response) => {
                    add(&self.metrics.catalog_commits, 1);
                    add(
                        &self.metrics.catalog_commit_micros,
                        started.elapsed().as_micros() as u64,
                    );
                    debug!(segment = %segment.id, elapsed_us = started.elapsed().as_micros() as u64, "committed");
                    return Ok(response);
                }
                Err(status)
                    if is_retryable(&status)
                        && tokio::time::Instant::now() + backoff < flush.deadline =>
                {
                    warn!(%status, "catalog commit failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(status) => {
                    add(&self.metrics.catalog_commit_errors, 1);
                    return Err(if outcome_unknown(&status) {
                        CommitError::Unknown { status, request }
                    } else {
                        CommitError::Refused(status)
                    });
                }
            }
        }
    }

    /// One CommitSegment call, bounded by `limit` (at most
    /// [`COMMIT_ATTEMPT_TIMEOUT`]).
    async fn attempt(
        &self,
        request: &CommitSegmentRequest,
        limit: Duration,
    ) -> Result<CommitSegmentResponse, tonic::Status> {
        tokio::time::timeout(
            limit.min(COMMIT_ATTEMPT_TIMEOUT),
            self.catalog.commit_segment(request.clone()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(
                "no answer from the catalog in time",
            ))
        })
    }

    /// Settles a commit whose outcome is unknown before the agent commits
    /// anything after it.
    ///
    /// Why: its produce requests were answered REQUEST_TIMED_OUT, and the
    /// clients' next batches come next. Were a later commit checked while
    /// this one is still in flight in the catalog (a gRPC server runs each
    /// request in a task of its own, and finishes a write whose caller went
    /// away), the later batch would be refused OUT_OF_ORDER_SEQUENCE_NUMBER
    /// for the missing batch, the producer would bump its epoch and send
    /// that batch again under new sequence numbers, and then the old commit
    /// would land: the same records twice (measured under a chaos run).
    ///
    /// How: a registered agent fences itself: it drops its epoch and
    /// registers anew before it commits again. The new epoch fences the old
    /// one inside every commit transaction, so the old commit either landed
    /// before the new registration (ahead of every later commit) or never
    /// lands; flushes taken under the old epoch are refused
    /// (NOT_LEADER_OR_FOLLOWER) and their clients retry. `strata dev`
    /// (epoch 0, the catalog in process, commits taken in the order they
    /// were made) sends the same request again until the catalog gives a
    /// definite answer (idempotent by segment id), for at most one produce
    /// timeout. Flushes that arrive meanwhile are failed unsent (see
    /// [`Arrivals`]).
    async fn resolve(&self, arrivals: &mut Arrivals<'_>, request: CommitSegmentRequest) {
        if request.agent_epoch > 0 {
            self.fence_self(arrivals, request.agent_epoch).await;
            return;
        }
        let started = Instant::now();
        let mut backoff = Duration::from_millis(10);
        loop {
            let attempt = arrivals
                .fail_while(self.attempt(&request, COMMIT_ATTEMPT_TIMEOUT))
                .await;
            match attempt {
                Ok(_) => {
                    add(&self.metrics.catalog_commits_resolved, 1);
                    warn!(
                        segment = %request.segment_id,
                        "the unknown-outcome commit is applied; clients retrying its batches get their offsets"
                    );
                    return;
                }
                Err(status) if !outcome_unknown(&status) => {
                    add(&self.metrics.catalog_commits_resolved, 1);
                    info!(%status, segment = %request.segment_id, "the unknown-outcome commit is refused: nothing of it was applied");
                    return;
                }
                Err(status)
                    if arrivals.inner.is_closing()
                        || started.elapsed() >= arrivals.inner.produce_timeout =>
                {
                    error!(%status, segment = %request.segment_id, "giving up on a commit of unknown outcome");
                    return;
                }
                Err(status) => {
                    warn!(%status, segment = %request.segment_id, "resolving a commit of unknown outcome; retrying");
                    arrivals.fail_while(tokio::time::sleep(backoff)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Drops the registration `epoch` and waits until the agent is
    /// registered anew (so that the catalog refuses `epoch` from then on),
    /// or the writer is closing.
    async fn fence_self(&self, arrivals: &mut Arrivals<'_>, epoch: u64) {
        add(&self.metrics.catalog_commits_self_fenced, 1);
        error!(
            epoch,
            "a commit's outcome is unknown; registering anew so that it cannot land after a later one"
        );
        self.fleet.fenced(epoch);
        while !arrivals.inner.is_closing() {
            let registered = arrivals
                .fail_while(self.fleet.wait_epoch(Duration::from_secs(1)))
                .await;
            if registered.is_some_and(|current| current != epoch) {
                return;
            }
        }
    }
}

/// The flushes that reach the commit loop while it resolves a commit of
/// unknown outcome. None of them may be committed before the resolution,
/// and their producers must not wait on it: each is answered
/// REQUEST_TIMED_OUT at once, never sent (so nothing of it is applied), and
/// its clients retry.
struct Arrivals<'a> {
    inner: &'a Inner,
    metrics: &'a Metrics,
    rx: &'a mut mpsc::Receiver<(Flush, UploadTask)>,
    /// False once the channel closed.
    open: bool,
}

impl Arrivals<'_> {
    /// Awaits `work`, failing every flush that arrives meanwhile.
    async fn fail_while<T>(&mut self, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                arrival = self.rx.recv(), if self.open => match arrival {
                    Some((flush, _task)) => {
                        answer_all(self.metrics, flush, error_code::REQUEST_TIMED_OUT);
                        self.inner.flush_done();
                    }
                    None => self.open = false,
                },
            }
        }
    }
}

/// Whether a failed commit may have been applied, or may still be: a
/// timeout, a lost connection, or a catalog that failed around its own
/// COMMIT. Refusals the catalog decides before writing anything (fenced,
/// invalid, unknown topic) are definite.
fn outcome_unknown(status: &tonic::Status) -> bool {
    !matches!(
        status.code(),
        tonic::Code::FailedPrecondition
            | tonic::Code::InvalidArgument
            | tonic::Code::NotFound
            | tonic::Code::AlreadyExists
            | tonic::Code::PermissionDenied
            | tonic::Code::Unauthenticated
            | tonic::Code::OutOfRange
            | tonic::Code::Unimplemented
    )
}

fn is_retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::ResourceExhausted
            | tonic::Code::Aborted
    )
}

fn answer_all(metrics: &Metrics, flush: Flush, code: i16) {
    add(&metrics.flushes_failed, 1);
    for (_, buffer) in flush.partitions {
        for waiter in buffer.waiters {
            let _ = waiter.tx.send(AppendResult::error_with(code));
        }
    }
}

fn answer(flush: Flush, response: &CommitSegmentResponse) {
    for ((_, buffer), chunk) in flush.partitions.into_iter().zip(&response.chunks) {
        for waiter in buffer.waiters {
            let results = chunk
                .batches
                .get(waiter.first_batch..waiter.first_batch + waiter.batch_count);
            let result = match results {
                Some(results) if !results.is_empty() => summarize(results, chunk.log_start_offset),
                _ => AppendResult::error_with(error_code::UNKNOWN_SERVER_ERROR),
            };
            let _ = waiter.tx.send(result);
        }
    }
}

/// One produce partition's answer from its batches' results. A duplicate
/// is a success carrying the original offset, as Kafka answers it.
fn summarize(
    results: &[strata_catalog_api::proto::BatchResult],
    log_start_offset: i64,
) -> AppendResult {
    let failed = results.iter().find(|r| {
        r.error_code != 0 && r.error_code != i32::from(error_code::DUPLICATE_SEQUENCE_NUMBER)
    });
    match failed {
        Some(r) => AppendResult::error_with(r.error_code as i16),
        None => AppendResult {
            error_code: error_code::NONE,
            base_offset: results[0].base_offset,
            log_start_offset,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: no append asks the buffer semaphore for more permits than it
    /// holds (such a request waits forever and, the semaphore being fair,
    /// wedges every append behind it). Method: sizes around the budget.
    #[test]
    fn an_append_never_asks_for_more_permits_than_exist() {
        let budget = budget_permits(64 * 1024 * 1024);
        assert_eq!(budget, 65_536);
        assert_eq!(permits_for(0, budget), Some(1));
        assert_eq!(permits_for(1, budget), Some(1));
        assert_eq!(permits_for(64 * 1024 * 1024, budget), Some(budget));
        assert_eq!(permits_for(64 * 1024 * 1024 + 1, budget), None);
        assert_eq!(permits_for(usize::MAX, budget), None);
        assert_eq!(budget_permits(0), 1);
        assert_eq!(budget_permits(usize::MAX), u32::MAX);
    }
}
