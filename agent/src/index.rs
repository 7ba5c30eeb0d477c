//! The in-memory tail of every partition's index, fed by the catalog's
//! commit stream.
//!
//! For each partition the agent has seen commits for, it keeps the recent
//! chunks and the offsets (log start, high watermark). A fetch near the tail
//! (nearly every fetch) needs no catalog call. Older offsets, and partitions
//! not seen yet, are looked up in the catalog. A gap in the stream's
//! sequence numbers means events were missed: every tail is dropped and
//! rebuilt from the catalog on demand, so a fetch is never answered from an
//! incomplete index.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use strata_catalog_api::CatalogApi;
use strata_catalog_api::proto::{
    Chunk, CommitEvent, GetPartitionOffsetsRequest, LookupChunksRequest, SubscribeCommitsRequest,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::{info, warn};
use uuid::Uuid;

use crate::error_code;

/// Chunks kept per partition tail; older ones are looked up in the catalog.
const TAIL_CHUNKS_MAX: usize = 4096;

/// The offsets of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offsets {
    pub(crate) log_start: i64,
    pub(crate) high_watermark: i64,
    /// The first offset of the earliest open transaction, else the high
    /// watermark: READ_COMMITTED fetches stop here. Like the high
    /// watermark it never decreases, so views are merged with `max`.
    pub(crate) last_stable: i64,
}

#[derive(Debug)]
struct Tail {
    offsets: Offsets,
    /// Every committed offset in `[complete_from, high_watermark)` lies in
    /// `chunks`.
    complete_from: i64,
    chunks: BTreeMap<i64, Chunk>,
}

type Key = (Uuid, u32);

/// The tails of all partitions.
#[derive(Debug)]
pub(crate) struct PartitionIndex {
    catalog: Arc<dyn CatalogApi>,
    tails: RwLock<HashMap<Key, Tail>>,
    /// Bumped after every applied commit: long-polling fetches wait on it.
    commits: watch::Sender<u64>,
    /// Bumped whenever tails are dropped (an `invalidated` partition or a
    /// resync), under the `tails` write lock. Offsets asked from the catalog
    /// become a tail only if no drop happened meanwhile: an answer from
    /// before a DeleteRecords must not bring back the old log start.
    drops: AtomicU64,
}

impl PartitionIndex {
    pub(crate) fn new(catalog: Arc<dyn CatalogApi>) -> Self {
        Self {
            catalog,
            tails: RwLock::new(HashMap::new()),
            commits: watch::channel(0).0,
            drops: AtomicU64::new(0),
        }
    }

    /// A receiver that changes whenever a commit is applied.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Follows the catalog's commit stream until `stop`, resubscribing after
    /// errors.
    pub(crate) async fn run_subscriber(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        loop {
            let subscribed = tokio::select! {
                _ = stop.cancelled() => return,
                s = self.catalog.subscribe_commits(SubscribeCommitsRequest { after_sequence: 0 }) => s,
            };
            match subscribed {
                Ok(mut stream) => {
                    backoff = Duration::from_millis(50);
                    // Events before this subscription are unknown to us.
                    self.clear();
                    info!("following the catalog's commit stream");
                    let mut last: Option<u64> = None;
                    loop {
                        let event = tokio::select! {
                            _ = stop.cancelled() => return,
                            e = stream.next() => e,
                        };
                        match event {
                            Some(Ok(event)) => {
                                if let Some(last) = last.filter(|l| event.sequence != l + 1) {
                                    warn!(
                                        last,
                                        next = event.sequence,
                                        "gap in the commit stream; resyncing"
                                    );
                                    self.clear();
                                }
                                last = Some(event.sequence);
                                self.apply(event);
                            }
                            Some(Err(status)) => {
                                warn!(%status, "commit stream failed; resubscribing");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Err(status) => warn!(%status, "cannot subscribe to the commit stream; retrying"),
            }
            self.clear();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    fn clear(&self) {
        let mut tails = self.tails.write().expect("index lock poisoned");
        tails.clear();
        self.drops.fetch_add(1, Ordering::Relaxed);
        drop(tails);
        self.commits.send_modify(|n| *n += 1);
    }

    /// Applies one commit event.
    pub(crate) fn apply(&self, event: CommitEvent) {
        {
            let mut tails = self.tails.write().expect("index lock poisoned");
            if !event.invalidated.is_empty() {
                self.drops.fetch_add(1, Ordering::Relaxed);
            }
            for r in &event.invalidated {
                if let Ok(id) = Uuid::from_slice(&r.topic_id) {
                    tails.remove(&(id, r.partition));
                }
            }
            for chunk in event.chunks {
                let Ok(id) = Uuid::from_slice(&chunk.topic_id) else {
                    continue;
                };
                let tail = tails.entry((id, chunk.partition)).or_insert_with(|| Tail {
                    offsets: Offsets {
                        log_start: 0,
                        high_watermark: chunk.base_offset,
                        last_stable: 0,
                    },
                    complete_from: chunk.base_offset,
                    chunks: BTreeMap::new(),
                });
                tail.offsets.high_watermark = tail.offsets.high_watermark.max(chunk.end_offset);
                tail.chunks.insert(chunk.base_offset, chunk);
                while tail.chunks.len() > TAIL_CHUNKS_MAX {
                    if let Some((_, oldest)) = tail.chunks.pop_first() {
                        tail.complete_from = oldest.end_offset;
                    }
                }
            }
            for o in event.offsets {
                let Ok(id) = Uuid::from_slice(&o.topic_id) else {
                    continue;
                };
                if let Some(tail) = tails.get_mut(&(id, o.partition)) {
                    tail.offsets.log_start = o.log_start_offset;
                    tail.offsets.high_watermark = tail.offsets.high_watermark.max(o.high_watermark);
                    tail.offsets.last_stable = tail.offsets.last_stable.max(o.last_stable_offset);
                }
            }
        }
        self.commits.send_modify(|n| *n += 1);
    }

    /// The partition's offsets: from the tail when known, else (or with
    /// `fresh`) from the catalog.
    pub(crate) async fn offsets(
        &self,
        topic: Uuid,
        partition: u32,
        fresh: bool,
    ) -> Result<Result<Offsets, i16>, Status> {
        let cached = self
            .tails
            .read()
            .expect("index lock poisoned")
            .get(&(topic, partition))
            .map(|t| t.offsets);
        if let Some(offsets) = cached.filter(|_| !fresh) {
            return Ok(Ok(offsets));
        }
        let drops = self.drops.load(Ordering::Relaxed);
        let r = self
            .catalog
            .get_partition_offsets(GetPartitionOffsetsRequest {
                topic_id: topic.as_bytes().to_vec(),
                partition,
            })
            .await?;
        if r.error_code != 0 {
            return Ok(Err(r.error_code as i16));
        }
        let offsets = Offsets {
            log_start: r.log_start_offset,
            high_watermark: r.high_watermark,
            last_stable: r.last_stable_offset,
        };
        let mut tails = self.tails.write().expect("index lock poisoned");
        if self.drops.load(Ordering::Relaxed) != drops {
            // A tail was dropped while the catalog answered: the answer may
            // predate it, so it is returned but not cached.
            return Ok(Ok(offsets));
        }
        let tail = tails.entry((topic, partition)).or_insert_with(|| Tail {
            offsets,
            complete_from: offsets.high_watermark,
            chunks: BTreeMap::new(),
        });
        tail.offsets.log_start = tail.offsets.log_start.max(offsets.log_start);
        tail.offsets.high_watermark = tail.offsets.high_watermark.max(offsets.high_watermark);
        tail.offsets.last_stable = tail.offsets.last_stable.max(offsets.last_stable);
        Ok(Ok(tail.offsets))
    }

    /// Chunks holding `offset` and after, in order (at most `max_chunks`):
    /// from the tail when it holds `offset`, else (or with `fresh`) from
    /// the catalog. Chunk lists from the catalog are not kept: only the
    /// tail, which the commit stream's `invalidated` drops, caches chunks.
    pub(crate) async fn chunks_from(
        &self,
        topic: Uuid,
        partition: u32,
        offset: i64,
        max_chunks: usize,
        fresh: bool,
    ) -> Result<Result<Vec<Chunk>, i16>, Status> {
        if !fresh && let Some(chunks) = self.tail_chunks(topic, partition, offset, max_chunks) {
            return Ok(Ok(chunks));
        }
        let r = self
            .catalog
            .lookup_chunks(LookupChunksRequest {
                topic_id: topic.as_bytes().to_vec(),
                partition,
                offset,
                max_chunks: max_chunks as u32,
            })
            .await?;
        if r.error_code != i32::from(error_code::NONE) {
            return Ok(Err(r.error_code as i16));
        }
        Ok(Ok(r.chunks))
    }

    fn tail_chunks(
        &self,
        topic: Uuid,
        partition: u32,
        offset: i64,
        max_chunks: usize,
    ) -> Option<Vec<Chunk>> {
        let tails = self.tails.read().expect("index lock poisoned");
        let tail = tails.get(&(topic, partition))?;
        if offset < tail.complete_from || offset >= tail.offsets.high_watermark {
            return None;
        }
        let start = tail.chunks.range(..=offset).next_back().map(|(b, _)| *b)?;
        let chunks: Vec<Chunk> = tail
            .chunks
            .range(start..)
            .take(max_chunks)
            .map(|(_, c)| c.clone())
            .collect();
        chunks
            .first()
            .is_some_and(|c| c.end_offset > offset)
            .then_some(chunks)
    }
}
