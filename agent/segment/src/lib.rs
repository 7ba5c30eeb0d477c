//! Strata's data-plane byte formats, sans-I/O: Kafka v2 record batches and
//! the segment objects that hold them.
//!
//! - [`split_and_validate`] checks the `records` of a Produce request the
//!   way a Kafka 4 broker does and returns zero-copy [`ValidatedBatch`]es,
//!   or a [`BatchError`] that maps to a Kafka error code.
//! - The one Kafka record codec: [`decompress`] / [`batch_body`] (every
//!   producer codec, bounded against decompression bombs), [`records`] /
//!   [`headers`] (zero-copy record views) and [`BatchEncoder`]. Produce
//!   validation, the compactor's Parquet writer and reader, and
//!   `strata replay` all use it.
//! - [`patch_batches`], [`patch_base_offset`], [`patch_partition_leader_epoch`]
//!   and [`set_log_append_time`] rewrite header fields in place; batches are
//!   stored as the client sent them and never re-encoded.
//! - [`SegmentBuilder`] lays out one object per agent flush: one chunk per
//!   partition, then a footer ([`Footer`], [`ChunkIndexEntry`]) that makes
//!   the object readable without the catalog. [`read_trailer`] and
//!   [`Footer::parse_tail`] read it from a suffix-range GET.
//!
//! The byte layout is specified in `docs/segment-format.md`.
//!
//! ```
//! use bytes::Bytes;
//! use strata_segment::{Footer, Limits, SegmentBuilder, patch_batches, split_and_validate};
//! # let records = strata_segment::testing::build_batch(&[(None, Some(b"hello"))], 1_700_000_000_000, None);
//!
//! // Produce: validate one partition's records and add them to the flush.
//! let batches = split_and_validate(&records, &Limits::default())?;
//! let mut builder = SegmentBuilder::new();
//! let topic_id = [7; 16];
//! for batch in batches {
//!     builder.push_batch(topic_id, 0, batch.into_bytes())?;
//! }
//! let (object, _entries) = builder.finish();
//!
//! // Fetch: find the partition's chunk from the footer alone and give its
//! // batches their offsets (the catalog assigned 42).
//! let footer = Footer::parse(&object)?;
//! let entry = footer.find(topic_id, 0).expect("partition 0 was written");
//! let mut chunk = entry.extract(&object)?.to_vec();
//! let next_offset = patch_batches(&mut chunk, 42)?;
//! assert_eq!(next_offset, 43);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod batch;
mod compression;
mod control;
mod error;
mod footer;
mod patch;
mod records;
mod segment;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
mod validate;

pub use batch::{
    BATCH_HEADER_LEN, BatchHeader, BatchIter, BatchSpan, Compression, LOG_OVERHEAD, MAGIC_V2,
    MIN_BATCH_LENGTH, NO_PRODUCER_ID, batch_crc, iter_batches,
};
pub use compression::{DecompressError, batch_body, decompress};
pub use control::{CONTROL_BATCH_LEN, ControlMarker, control_batch};
pub use error::{BatchError, RecordError, SegmentError};
pub use footer::{
    ChunkIndexEntry, ENTRY_LEN, Footer, SEGMENT_FORMAT_VERSION, SEGMENT_MAGIC, TRAILER_LEN,
    Trailer, read_trailer,
};
pub use patch::{
    patch_base_offset, patch_batches, patch_partition_leader_epoch, set_log_append_time,
};
pub use records::{BatchEncoder, RebuiltHeader, RecordIter, RecordView, headers, records};
pub use segment::SegmentBuilder;
pub use validate::{
    DECOMPRESSED_BYTES_MAX, DEFAULT_MAX_MESSAGE_BYTES, Decompress, Limits, ValidatedBatch,
    split_and_validate,
};
