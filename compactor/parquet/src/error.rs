//! The crate's error type.

use strata_segment::{BatchError, RecordError};

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong writing or reading a Parquet-tier file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A stored chunk is not a sequence of well-framed v2 batches.
    #[error("bad batch framing in the chunk at offset {chunk_base_offset}: {source}")]
    Batch {
        /// Base offset the catalog assigned to the chunk.
        chunk_base_offset: i64,
        /// The framing error.
        source: BatchError,
    },
    /// A batch's body could not be decompressed.
    #[error("cannot decompress the batch at offset {base_offset}: {source}")]
    Decompress {
        /// Base offset of the batch.
        base_offset: i64,
        /// What the decompressor said.
        source: strata_segment::DecompressError,
    },
    /// A batch's records are malformed.
    #[error("bad record in the batch at offset {base_offset}: {fault}")]
    Record {
        /// Base offset of the batch.
        base_offset: i64,
        /// What is wrong.
        fault: RecordError,
    },
    /// A batch holds a different number of records than its header says,
    /// or none at all, or offset deltas that do not increase.
    #[error("batch at offset {base_offset}: header says {expected} records, found {found}")]
    RecordCount {
        /// Base offset of the batch.
        base_offset: i64,
        /// `records_count` from the header.
        expected: i32,
        /// Records decoded before the mismatch showed.
        found: usize,
    },
    /// Chunks were given out of offset order (or overlapping).
    #[error("chunk at offset {found} comes before offset {expected_at_least}")]
    OffsetOrder {
        /// The first offset the next chunk may start at.
        expected_at_least: i64,
        /// The chunk's base offset.
        found: i64,
    },
    /// No records were given to the writer.
    #[error("no records to write")]
    Empty,
    /// The requested offset is not in the file.
    #[error("offset {requested} is outside the file's offsets {first_offset}..={last_offset}")]
    OffsetOutOfRange {
        /// The fetch offset.
        requested: i64,
        /// First offset of the file.
        first_offset: i64,
        /// Last offset of the file.
        last_offset: i64,
    },
    /// The file is valid Parquet but not a Parquet-tier file this version reads.
    #[error("not a Strata Parquet-tier file: {reason}")]
    Format {
        /// What is missing or inconsistent.
        reason: &'static str,
    },
    /// The Parquet decoder panicked on corrupt data (caught; the file is bad).
    #[error("the parquet decoder panicked: corrupt file")]
    DecoderPanic,
    /// Parquet encoding or decoding failed (includes corrupt files and I/O).
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Arrow array construction failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

impl Error {
    /// True for errors that may pass on retry: only I/O errors surfaced
    /// through the Parquet reader (object store). Bad data stays bad.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Parquet(parquet::errors::ParquetError::External(_))
        )
    }
}
