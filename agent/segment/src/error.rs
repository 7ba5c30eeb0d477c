//! Error types: one for record batches, one for segment objects.

use thiserror::Error;

use kafka_protocol::ResponseError;

/// Kafka `CORRUPT_MESSAGE`: the bytes fail a CRC or framing check.
const CORRUPT_MESSAGE: i16 = ResponseError::CorruptMessage.code();
/// Kafka `MESSAGE_TOO_LARGE`: a batch exceeds `max.message.bytes`.
const MESSAGE_TOO_LARGE: i16 = ResponseError::MessageTooLarge.code();
/// Kafka `INVALID_RECORD`: well-formed bytes that break a produce rule.
const INVALID_RECORD: i16 = ResponseError::InvalidRecord.code();

/// Why a produce request's `records` bytes (or a stored batch) were rejected.
///
/// Each variant maps to the error code a Kafka 4 broker answers with, via
/// [`BatchError::kafka_error_code`]. Indices count batches from 0 within the
/// buffer being checked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The request carried no batch at all.
    #[error("produce request has no record batch")]
    Empty,
    /// Fewer bytes than a batch header or the declared batch length.
    #[error("record batch truncated: needed {needed} bytes, {available} available")]
    Truncated {
        /// Bytes the batch claims or the header needs.
        needed: usize,
        /// Bytes actually present.
        available: usize,
    },
    /// `batch_length` is below the 49 bytes a header with no records takes.
    #[error("batch_length {batch_length} is smaller than the minimum 49")]
    BatchLengthTooSmall {
        /// The declared length.
        batch_length: i32,
    },
    /// A magic byte other than 2 (Kafka produce v3+ accepts only v2 batches).
    #[error("unsupported record batch magic {magic}; only magic 2 is accepted")]
    UnsupportedMagic {
        /// The magic byte found.
        magic: i8,
    },
    /// The stored CRC32C does not match the bytes.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC carried in the header.
        stored: u32,
        /// CRC computed over `attributes..end`.
        computed: u32,
    },
    /// Attribute bits 0..=2 name a codec id Kafka does not define (5..=7).
    #[error("unknown compression codec id {id}")]
    UnknownCompression {
        /// The codec id.
        id: u8,
    },
    /// The batch is larger than the topic's `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge {
        /// Whole batch size including the 12-byte log overhead.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A client batch must carry base offset 0.
    #[error("client batch has base offset {base_offset}, expected 0")]
    NonZeroBaseOffset {
        /// The base offset found.
        base_offset: i64,
    },
    /// `records_count` is zero or negative.
    #[error("invalid records_count {records_count}")]
    InvalidRecordsCount {
        /// The count found.
        records_count: i32,
    },
    /// `last_offset_delta + 1` disagrees with `records_count`.
    #[error("last_offset_delta {last_offset_delta} does not match records_count {records_count}")]
    OffsetCountMismatch {
        /// The delta found.
        last_offset_delta: i32,
        /// The count found.
        records_count: i32,
    },
    /// Clients may not write control batches (transaction markers).
    #[error("clients may not write control batches")]
    ControlBatch,
    /// An idempotent batch (producer id set) with a negative base sequence.
    #[error("producer {producer_id} sent invalid base sequence {base_sequence}")]
    InvalidSequence {
        /// Producer id of the batch.
        producer_id: i64,
        /// The sequence found.
        base_sequence: i32,
    },
    /// A transactional batch without a producer id.
    #[error("transactional batch without a producer id")]
    TransactionalWithoutProducer,
    /// More than one batch where Kafka allows exactly one.
    #[error("produce request carries more than one record batch for a partition")]
    MultipleBatches,
    /// Batches of one request disagree on producer id, epoch or transactionality.
    #[error("batch {index} has different producer fields from the first batch")]
    ProducerMismatch {
        /// Index of the offending batch.
        index: usize,
    },
    /// Batches of one request whose sequences are not consecutive.
    #[error("batch {index} has base sequence {found}, expected {expected}")]
    SequenceGap {
        /// Index of the offending batch.
        index: usize,
        /// Sequence that would continue the previous batch.
        expected: i32,
        /// Sequence found.
        found: i32,
    },
    /// The records of an uncompressed batch are not well formed.
    #[error("record {record_index} is malformed: {reason}")]
    MalformedRecord {
        /// Index of the record within its batch.
        record_index: usize,
        /// What is wrong with it.
        reason: RecordError,
    },
    /// Assigning offsets would pass `i64::MAX`.
    #[error("offset overflow while assigning base offsets")]
    OffsetOverflow,
    /// The body of a compressed batch does not decompress (or expands past
    /// the validation limit).
    #[error("compressed records do not decompress: {source}")]
    CorruptCompressed {
        /// The codec's complaint.
        source: crate::compression::DecompressError,
    },
}

impl BatchError {
    /// The Kafka error code a broker returns for this rejection.
    ///
    /// `CORRUPT_MESSAGE` (2) for framing, CRC and codec faults,
    /// `MESSAGE_TOO_LARGE` (10) for size, `INVALID_RECORD` (87) otherwise.
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Self::Truncated { .. }
            | Self::BatchLengthTooSmall { .. }
            | Self::CrcMismatch { .. }
            | Self::UnknownCompression { .. }
            | Self::CorruptCompressed { .. } => CORRUPT_MESSAGE,
            Self::TooLarge { .. } => MESSAGE_TOO_LARGE,
            Self::Empty
            | Self::UnsupportedMagic { .. }
            | Self::NonZeroBaseOffset { .. }
            | Self::InvalidRecordsCount { .. }
            | Self::OffsetCountMismatch { .. }
            | Self::ControlBatch
            | Self::InvalidSequence { .. }
            | Self::TransactionalWithoutProducer
            | Self::MultipleBatches
            | Self::ProducerMismatch { .. }
            | Self::SequenceGap { .. }
            | Self::MalformedRecord { .. }
            | Self::OffsetOverflow => INVALID_RECORD,
        }
    }
}

/// What is wrong with one record inside an uncompressed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The record or the batch ended inside a field.
    #[error("truncated")]
    Truncated,
    /// A varint ran past its maximum length (5 bytes, or 10 for a varlong).
    #[error("varint too long")]
    VarintTooLong,
    /// A length field is negative where only -1 (null) or more is allowed.
    #[error("invalid length {0}")]
    InvalidLength(i64),
    /// The record's fields do not fill exactly its declared length.
    #[error("fields do not fill the declared record length")]
    LengthMismatch,
    /// Offset deltas must count 0, 1, 2, … in record order.
    #[error("offset delta {found}, expected {expected}")]
    OffsetDelta {
        /// Delta the record's position implies.
        expected: i64,
        /// Delta found.
        found: i64,
    },
    /// Bytes remain after the declared number of records.
    #[error("bytes remain after the last record")]
    TrailingBytes,
    /// A record without a key sent to a compacted topic (`cleanup.policy`
    /// includes `compact`): key compaction keeps the latest record per key,
    /// so every record needs one. Give the record a key, or write it to a
    /// topic with `cleanup.policy=delete`.
    #[error("a record without a key cannot be written to a compacted topic")]
    MissingKey,
}

/// Why a segment object, its footer or a chunk could not be read or built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// Fewer bytes than the trailer, the footer or the claimed object needs.
    #[error("segment too short: needed {needed} bytes, {available} available")]
    TooShort {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The trailer does not end with the segment magic.
    #[error("not a Strata segment (bad magic)")]
    BadMagic,
    /// A format version this reader does not know.
    #[error("unsupported segment format version {version}")]
    UnsupportedVersion {
        /// The version found.
        version: u16,
    },
    /// The footer checksum does not match.
    #[error("segment footer CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    FooterCrcMismatch {
        /// CRC in the trailer.
        stored: u32,
        /// CRC computed.
        computed: u32,
    },
    /// The footer's length disagrees with its entry count.
    #[error("footer of {footer_length} bytes cannot hold {entry_count} entries")]
    FooterLength {
        /// Footer length from the trailer.
        footer_length: u32,
        /// Entry count from the footer.
        entry_count: u32,
    },
    /// Index entries are not sorted by (topic, partition) or not unique.
    #[error("index entry {index} is out of order or duplicated")]
    EntryOrder {
        /// Index of the offending entry.
        index: usize,
    },
    /// Index entries do not tile the data region exactly, or an entry is
    /// implausible (no batch, or shorter than its batches' headers).
    #[error("chunk {index} does not start where the previous chunk (or the object) ends")]
    ChunkLayout {
        /// Index of the offending entry; the entry count when the last
        /// chunk does not end where the footer starts.
        index: usize,
    },
    /// A chunk's bytes do not match its index entry (length or CRC32C).
    #[error("chunk bytes do not match the index entry")]
    ChunkMismatch,
    /// A chunk or the whole segment outgrew the format's counters.
    #[error("segment too large for the format's counters")]
    Overflow,
    /// A batch handed to the builder is not a well-formed batch.
    #[error("invalid batch: {0}")]
    Batch(#[from] BatchError),
}
