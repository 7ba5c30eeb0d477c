//! Reading committed batches back, whatever the chunk's format: segment
//! chunks are byte ranges of segment objects (base offsets patched on the
//! way out, the payload never re-encoded); Parquet chunks are whole
//! Parquet-tier files whose rows are rebuilt into uncompressed batches.
//! Fetch and ListOffsets both read through [`ChunkReader::read`], so they
//! cannot disagree about a chunk's records.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use strata_catalog_api::proto::{Chunk, ChunkFormat};
use strata_segment::BatchHeader;

use crate::cache::{BlockCache, CacheError};
use crate::parquet_tier::{self, CachedFile, ParquetReaders};

/// One batch inside a [`ChunkRead`]'s bytes.
#[derive(Debug, Clone)]
pub(crate) struct BatchRef {
    pub(crate) base_offset: i64,
    pub(crate) range: Range<usize>,
    pub(crate) header: BatchHeader,
}

impl BatchRef {
    /// One past the batch's last offset.
    pub(crate) fn end_offset(&self) -> i64 {
        self.base_offset + self.header.offset_count()
    }
}

/// Where a chunk's records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    Segment,
    Parquet,
    /// A transaction marker: no object, the control batch is synthesized.
    Marker,
}

impl Tier {
    pub(crate) fn of(chunk: &Chunk) -> Self {
        if chunk.format == ChunkFormat::Parquet as i32 {
            Self::Parquet
        } else if chunk.format == ChunkFormat::Marker as i32 {
            Self::Marker
        } else {
            Self::Segment
        }
    }
}

/// The control batch of a marker chunk (one offset, at its base offset).
fn marker_batch(chunk: &Chunk) -> Bytes {
    let marker = chunk.marker.unwrap_or_default();
    let control = strata_segment::ControlMarker {
        producer_id: marker.producer_id,
        producer_epoch: i16::try_from(marker.producer_epoch).unwrap_or(i16::MAX),
        coordinator_epoch: marker.coordinator_epoch,
        commit: marker.commit,
        timestamp: chunk.max_timestamp,
    };
    Bytes::from(strata_segment::control_batch(chunk.base_offset, &control))
}

/// Batches of one chunk, from the one holding the requested offset on.
#[derive(Debug, Clone)]
pub(crate) struct ChunkRead {
    pub(crate) tier: Tier,
    pub(crate) bytes: Bytes,
    pub(crate) batches: Vec<BatchRef>,
}

/// Why a chunk could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("segment read: {0}")]
    Segment(#[from] CacheError),
    #[error("parquet tier read: {0}")]
    Parquet(#[from] strata_parquet::Error),
}

impl ReadError {
    /// The chunk's object does not exist: it was replaced (compaction) or
    /// dropped (retention) and deleted after the GC grace period, so the
    /// chunk list the reader holds is stale.
    pub(crate) fn is_not_found(&self) -> bool {
        match self {
            Self::Segment(error) => error.is_not_found(),
            Self::Parquet(error) => parquet_tier::is_not_found(error),
        }
    }
}

/// Bytes and batches served per tier.
#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    pub(crate) bytes: AtomicU64,
    pub(crate) batches: AtomicU64,
}

impl TierCounters {
    pub(crate) fn add(&self, bytes: usize, batches: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.batches.fetch_add(batches as u64, Ordering::Relaxed);
    }
}

/// Counters of a [`ChunkReader`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReadStats {
    pub(crate) segment_bytes: u64,
    pub(crate) segment_batches: u64,
    pub(crate) parquet_bytes: u64,
    pub(crate) parquet_batches: u64,
    /// Parquet footers (with page indexes) read and parsed.
    pub(crate) parquet_footers: u64,
}

/// Reads chunks of either format through the block cache.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    cache: BlockCache,
    parquet: ParquetReaders,
    /// Served by fetches, per tier.
    pub(crate) segment_served: TierCounters,
    pub(crate) parquet_served: TierCounters,
}

impl ChunkReader {
    pub(crate) fn new(cache: BlockCache, parquet_readers_max: usize) -> Self {
        Self {
            cache,
            parquet: ParquetReaders::new(parquet_readers_max),
            segment_served: TierCounters::default(),
            parquet_served: TierCounters::default(),
        }
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> ReadStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ReadStats {
            segment_bytes: load(&self.segment_served.bytes),
            segment_batches: load(&self.segment_served.batches),
            parquet_bytes: load(&self.parquet_served.bytes),
            parquet_batches: load(&self.parquet_served.batches),
            parquet_footers: self.parquet.opens(),
        }
    }

    /// The batches of `chunk` from the one holding `from` on, with the
    /// offsets the catalog assigned them. A segment chunk is read whole
    /// (it is one flush's worth); from a Parquet chunk, batches are added
    /// while they fit in `max_bytes`, and the first always comes (KIP-74),
    /// since a file may hold far more than one fetch wants.
    pub(crate) async fn read(
        &self,
        chunk: &Chunk,
        from: i64,
        max_bytes: usize,
    ) -> Result<ChunkRead, ReadError> {
        if from >= chunk.end_offset {
            return Ok(ChunkRead {
                tier: Tier::of(chunk),
                bytes: Bytes::new(),
                batches: Vec::new(),
            });
        }
        match Tier::of(chunk) {
            Tier::Marker => {
                let bytes = marker_batch(chunk);
                let batches = batches(chunk.base_offset, &bytes);
                Ok(ChunkRead {
                    tier: Tier::Marker,
                    bytes,
                    batches,
                })
            }
            Tier::Segment => {
                let bytes = self.read_segment_chunk(chunk).await?;
                let mut batches = batches(chunk.base_offset, &bytes);
                batches.retain(|b| b.end_offset() > from);
                Ok(ChunkRead {
                    tier: Tier::Segment,
                    bytes,
                    batches,
                })
            }
            Tier::Parquet => {
                let file = CachedFile::new(
                    self.cache.clone(),
                    Path::from(chunk.object_key.as_str()),
                    chunk.object_size,
                );
                let reader = self.parquet.get(file).await?;
                let fetched = reader
                    .fetch(from.max(reader.first_offset()), max_bytes)
                    .await?;
                let bytes = fetched.records;
                // Rebuilt batches carry their base offsets already, and a
                // key-compacted file has holes between them (batches whose
                // records were all removed): each keeps its own.
                let batches = rebuilt_batches(&bytes);
                Ok(ChunkRead {
                    tier: Tier::Parquet,
                    bytes,
                    batches,
                })
            }
        }
    }

    /// Forgets what is cached about a chunk's object (it is gone).
    pub(crate) fn forget(&self, chunk: &Chunk) {
        if Tier::of(chunk) == Tier::Parquet {
            self.parquet.remove(&chunk.object_key);
        }
    }

    async fn read_segment_chunk(&self, chunk: &Chunk) -> Result<Bytes, CacheError> {
        let key = Path::from(chunk.object_key.as_str());
        self.cache
            .read(
                &key,
                chunk.object_size,
                chunk.position..chunk.position + chunk.length,
            )
            .await
    }
}

/// The batches in `bytes`, the first at `base_offset`, each following one
/// at the previous one's end. Stops at the first malformed batch (never
/// expected: batches were validated before they were written, and objects
/// are checksummed).
fn batches(base_offset: i64, bytes: &[u8]) -> Vec<BatchRef> {
    let mut out = Vec::new();
    let mut position = 0usize;
    let mut offset = base_offset;
    while position < bytes.len() {
        let Ok(header) = BatchHeader::parse(&bytes[position..]) else {
            break;
        };
        let Some(length) = header.total_len() else {
            break;
        };
        if length == 0 || position + length > bytes.len() {
            break;
        }
        let batch = BatchRef {
            base_offset: offset,
            range: position..position + length,
            header,
        };
        offset = batch.end_offset();
        position += length;
        out.push(batch);
    }
    out
}

/// The batches of a Parquet-tier read, at the base offsets they carry
/// (rebuilt batches have them set; offsets may skip between batches).
fn rebuilt_batches(bytes: &[u8]) -> Vec<BatchRef> {
    let mut out = batches(0, bytes);
    for batch in &mut out {
        batch.base_offset = batch.header.base_offset;
    }
    out
}

/// Copies batches out of `bytes` with their base offsets patched.
pub(crate) fn patched(bytes: &[u8], batches: &[BatchRef], out: &mut BytesMut) {
    for batch in batches {
        let start = out.len();
        out.extend_from_slice(&bytes[batch.range.clone()]);
        // The range was parsed as a whole batch above, so patching cannot fail.
        let _ = strata_segment::patch_base_offset(&mut out[start..], batch.base_offset);
    }
}

#[cfg(test)]
mod tests {
    use strata_catalog_api::proto::TxnMarker;

    use super::*;

    /// Goal: batches rebuilt from a key-compacted Parquet file keep their
    /// own base offsets, so a hole between two batches (a batch whose
    /// records were all compacted away) does not shift the later one.
    #[test]
    fn rebuilt_batches_keep_their_offsets_across_holes() {
        let mut bytes = Vec::new();
        for base in [5_i64, 40] {
            let mut batch = strata_segment::testing::build_batch(
                &[(Some(b"k"), Some(b"v")), (Some(b"l"), Some(b"w"))],
                0,
                None,
            )
            .to_vec();
            strata_segment::patch_base_offset(&mut batch, base).expect("a whole batch");
            bytes.extend_from_slice(&batch);
        }
        let read = rebuilt_batches(&bytes);
        let offsets: Vec<_> = read
            .iter()
            .map(|b| (b.base_offset, b.end_offset()))
            .collect();
        assert_eq!(offsets, [(5, 7), (40, 42)]);
    }

    /// Goal: the catalog's marker chunk length is the size of the batch
    /// the reader synthesizes, and the batch is a control batch at the
    /// chunk's offset.
    #[test]
    fn marker_chunks_become_control_batches() {
        assert_eq!(
            strata_catalog_api::CONTROL_BATCH_BYTES,
            strata_segment::CONTROL_BATCH_LEN as u64
        );
        let chunk = Chunk {
            base_offset: 9,
            end_offset: 10,
            format: ChunkFormat::Marker as i32,
            max_timestamp: 5,
            marker: Some(TxnMarker {
                producer_id: 3,
                producer_epoch: 1,
                coordinator_epoch: 0,
                commit: false,
            }),
            ..Chunk::default()
        };
        let bytes = marker_batch(&chunk);
        let read = batches(chunk.base_offset, &bytes);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].base_offset, 9);
        assert!(read[0].header.is_control() && read[0].header.is_transactional());
        assert_eq!(read[0].header.producer_id, 3);
    }
}
