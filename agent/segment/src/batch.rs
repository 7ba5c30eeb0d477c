//! The Kafka v2 record batch header: field layout, parsing and derived values.
//!
//! Layout (big-endian), from the start of a batch:
//!
//! | offset | size | field                  | covered by CRC |
//! | ------ | ---- | ---------------------- | -------------- |
//! | 0      | 8    | base_offset            | no             |
//! | 8      | 4    | batch_length           | no             |
//! | 12     | 4    | partition_leader_epoch | no             |
//! | 16     | 1    | magic                  | no             |
//! | 17     | 4    | crc (CRC32C)           | no             |
//! | 21     | 2    | attributes             | yes            |
//! | 23     | 4    | last_offset_delta      | yes            |
//! | 27     | 8    | base_timestamp         | yes            |
//! | 35     | 8    | max_timestamp          | yes            |
//! | 43     | 8    | producer_id            | yes            |
//! | 51     | 2    | producer_epoch         | yes            |
//! | 53     | 4    | base_sequence          | yes            |
//! | 57     | 4    | records_count          | yes            |
//! | 61     | …    | records                | yes            |

use std::ops::Range;

use crate::error::BatchError;

/// Size in bytes of a v2 record batch header (everything before the records).
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batch_length` counts: base offset (8) plus the length field itself (4).
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal `batch_length`: a header with zero records.
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
/// The only record batch format Strata accepts.
pub const MAGIC_V2: i8 = 2;
/// `producer_id` of a batch sent without idempotence.
pub const NO_PRODUCER_ID: i64 = -1;

pub(crate) const BASE_OFFSET_OFFSET: usize = 0;
pub(crate) const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
pub(crate) const CRC_OFFSET: usize = 17;
pub(crate) const ATTRIBUTES_OFFSET: usize = 21;
pub(crate) const MAX_TIMESTAMP_OFFSET: usize = 35;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// The compression codec named by the low three bits of a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Records are stored uncompressed.
    None,
    /// gzip (codec id 1).
    Gzip,
    /// Snappy, in Kafka's xerial framing (codec id 2).
    Snappy,
    /// LZ4 frame format (codec id 3).
    Lz4,
    /// Zstandard (codec id 4).
    Zstd,
}

impl Compression {
    /// Maps Kafka's codec id to a codec; ids 5 to 7 are not defined.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }

    /// Kafka's codec id.
    pub fn id(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }
}

/// The decoded 61-byte header of a Kafka v2 record batch.
///
/// Parsing only checks that the bytes are there; [`crate::split_and_validate`]
/// applies Kafka's semantic checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record; clients send 0, Strata patches it on read.
    pub base_offset: i64,
    /// Length of the batch after this field (the whole batch is `12 + batch_length`).
    pub batch_length: i32,
    /// Leader epoch stamped by the broker; outside the CRC.
    pub partition_leader_epoch: i32,
    /// Format version; 2 for every batch Strata stores.
    pub magic: i8,
    /// CRC32C of the bytes from `attributes` to the end of the batch.
    pub crc: u32,
    /// Codec, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record; record timestamps are deltas from it.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the append time under LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `bytes`.
    ///
    /// Fails with [`BatchError::Truncated`] when fewer than
    /// [`BATCH_HEADER_LEN`] bytes are given; never panics.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        let Some(header) = bytes.first_chunk::<BATCH_HEADER_LEN>() else {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_LEN,
                available: bytes.len(),
            });
        };
        let mut reader = FieldReader {
            bytes: header,
            at: 0,
        };
        Ok(Self {
            base_offset: i64::from_be_bytes(reader.take()),
            batch_length: i32::from_be_bytes(reader.take()),
            partition_leader_epoch: i32::from_be_bytes(reader.take()),
            magic: i8::from_be_bytes(reader.take()),
            crc: u32::from_be_bytes(reader.take()),
            attributes: i16::from_be_bytes(reader.take()),
            last_offset_delta: i32::from_be_bytes(reader.take()),
            base_timestamp: i64::from_be_bytes(reader.take()),
            max_timestamp: i64::from_be_bytes(reader.take()),
            producer_id: i64::from_be_bytes(reader.take()),
            producer_epoch: i16::from_be_bytes(reader.take()),
            base_sequence: i32::from_be_bytes(reader.take()),
            records_count: i32::from_be_bytes(reader.take()),
        })
    }

    /// The codec, or `None` for the undefined ids 5 to 7.
    pub fn compression(&self) -> Option<Compression> {
        Compression::from_id((self.attributes & COMPRESSION_MASK) as u8)
    }

    /// True when the batch carries LogAppendTime (attribute bit 3).
    pub fn timestamp_type_log_append(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// True for a batch written inside a transaction (attribute bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// True for a control batch such as a transaction marker (attribute bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// True when the batch names an idempotent producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id != NO_PRODUCER_ID
    }

    /// Number of offsets the batch occupies: `last_offset_delta + 1`.
    ///
    /// Computed in `i64` so a hostile `i32::MAX` delta cannot overflow.
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    /// Offset of the last record once `base_offset` is assigned.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Sequence of the last record, wrapping past `i32::MAX` to 0 as Kafka does.
    ///
    /// Returns -1 (no sequence) for batches without a base sequence.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        // Kafka's DefaultRecordBatch.incrementSequence: wrap into [0, i32::MAX].
        last.rem_euclid(i64::from(i32::MAX) + 1) as i32
    }

    /// Total size of the batch on the wire: `12 + batch_length`, if non-negative.
    pub fn total_len(&self) -> Option<usize> {
        usize::try_from(self.batch_length)
            .ok()
            .map(|length| length + LOG_OVERHEAD)
    }
}

/// Computes the CRC32C a v2 batch must carry: over `attributes` to the end.
///
/// `batch` must be exactly one batch; shorter input yields the CRC of the
/// empty covered range rather than a panic.
pub fn batch_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(batch.get(ATTRIBUTES_OFFSET..).unwrap_or_default())
}

/// One batch found by [`iter_batches`]: its header and where it lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpan {
    /// The parsed header.
    pub header: BatchHeader,
    /// Byte range of the whole batch (`12 + batch_length` bytes) in the buffer.
    pub range: Range<usize>,
}

/// Walks concatenated batches, checking only framing: a full header,
/// `batch_length >= 49`, and the whole batch inside the buffer.
///
/// A trailing partial batch is an error, not silently ignored. After the
/// first error the iterator ends.
pub fn iter_batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter { buf, at: 0 }
}

/// Iterator returned by [`iter_batches`].
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    at: usize,
}

impl Iterator for BatchIter<'_> {
    type Item = Result<BatchSpan, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.at..).filter(|rest| !rest.is_empty())?;
        let span = frame(rest).map(|(header, len)| BatchSpan {
            header,
            range: self.at..self.at + len,
        });
        // Stop after an error: nothing after a bad frame can be located.
        self.at = match &span {
            Ok(span) => span.range.end,
            Err(_) => self.buf.len(),
        };
        Some(span)
    }
}

/// Parses the header at the start of `rest` and checks the batch fits.
pub(crate) fn frame(rest: &[u8]) -> Result<(BatchHeader, usize), BatchError> {
    let header = BatchHeader::parse(rest)?;
    if header.batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::BatchLengthTooSmall {
            batch_length: header.batch_length,
        });
    }
    let len = header.total_len().ok_or(BatchError::BatchLengthTooSmall {
        batch_length: header.batch_length,
    })?;
    if len > rest.len() {
        return Err(BatchError::Truncated {
            needed: len,
            available: rest.len(),
        });
    }
    Ok((header, len))
}

/// Checks a stored (already accepted) batch before its offsets are used:
/// magic 2 and a non-negative `last_offset_delta`.
pub(crate) fn check_stored(header: &BatchHeader) -> Result<(), BatchError> {
    if header.magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic {
            magic: header.magic,
        });
    }
    if header.last_offset_delta < 0 {
        return Err(BatchError::OffsetCountMismatch {
            last_offset_delta: header.last_offset_delta,
            records_count: header.records_count,
        });
    }
    Ok(())
}

struct FieldReader<'a> {
    bytes: &'a [u8; BATCH_HEADER_LEN],
    at: usize,
}

impl FieldReader<'_> {
    /// Takes the next `N` bytes; the caller sums sizes to exactly 61.
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_with(attributes: i16, base_sequence: i32, last_offset_delta: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: MIN_BATCH_LENGTH,
            partition_leader_epoch: -1,
            magic: MAGIC_V2,
            crc: 0,
            attributes,
            last_offset_delta,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence,
            records_count: last_offset_delta.wrapping_add(1),
        }
    }

    #[test]
    fn parse_reads_every_field_big_endian() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&7_i64.to_be_bytes());
        bytes.extend_from_slice(&49_i32.to_be_bytes());
        bytes.extend_from_slice(&3_i32.to_be_bytes());
        bytes.push(2);
        bytes.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
        bytes.extend_from_slice(&0x0033_i16.to_be_bytes());
        bytes.extend_from_slice(&4_i32.to_be_bytes());
        bytes.extend_from_slice(&100_i64.to_be_bytes());
        bytes.extend_from_slice(&200_i64.to_be_bytes());
        bytes.extend_from_slice(&55_i64.to_be_bytes());
        bytes.extend_from_slice(&6_i16.to_be_bytes());
        bytes.extend_from_slice(&10_i32.to_be_bytes());
        bytes.extend_from_slice(&5_i32.to_be_bytes());
        assert_eq!(bytes.len(), BATCH_HEADER_LEN);
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(header.base_offset, 7);
        assert_eq!(header.crc, 0xdead_beef);
        assert_eq!(header.compression(), Some(Compression::Lz4));
        assert!(header.is_transactional() && header.is_control());
        assert!(!header.timestamp_type_log_append());
        assert_eq!((header.max_timestamp, header.producer_id), (200, 55));
        assert_eq!((header.producer_epoch, header.base_sequence), (6, 10));
        assert_eq!(header.offset_count(), 5);
        assert_eq!(header.last_sequence(), 14);
        assert_eq!(header.total_len(), Some(61));
    }

    #[test]
    fn parse_rejects_short_input() {
        let error = BatchHeader::parse(&[0; 60]).unwrap_err();
        assert!(matches!(
            error,
            BatchError::Truncated {
                needed: 61,
                available: 60
            }
        ));
    }

    #[test]
    fn last_sequence_wraps_like_kafka() {
        assert_eq!(header_with(0, i32::MAX, 0).last_sequence(), i32::MAX);
        assert_eq!(header_with(0, i32::MAX, 1).last_sequence(), 0);
        assert_eq!(header_with(0, i32::MAX - 1, 3).last_sequence(), 1);
        assert_eq!(header_with(0, -1, 3).last_sequence(), -1);
    }

    #[test]
    fn compression_ids_round_trip_and_reject_undefined() {
        for id in 0..=4 {
            assert_eq!(Compression::from_id(id).map(Compression::id), Some(id));
        }
        assert_eq!(header_with(5, 0, 0).compression(), None);
        assert!(header_with(TIMESTAMP_TYPE_BIT, 0, 0).timestamp_type_log_append());
    }

    #[test]
    fn offset_count_does_not_overflow() {
        assert_eq!(header_with(0, 0, i32::MAX).offset_count(), 1 << 31);
    }
}
