//! Validation of the `records` bytes of one partition in a Produce request.
//!
//! The checks and their order follow a Kafka 4 broker: `ProduceRequest.
//! validateRecords` (magic 2, exactly one batch), then
//! `UnifiedLog.analyzeAndValidateRecords` (base offset 0, size, CRC), then
//! `LogValidator.validateBatch` (counts, control batches, sequences), then
//! record framing for uncompressed batches.

use bytes::{Bytes, BytesMut};

use crate::batch::{BATCH_HEADER_LEN, BatchHeader, Compression, MAGIC_V2, batch_crc, iter_batches};
use crate::error::BatchError;
use crate::patch::set_log_append_time;
use crate::records::check_records;

/// Kafka's default `message.max.bytes` / `max.message.bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Per-topic limits applied by [`split_and_validate`].
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest batch accepted, counting its 12-byte log overhead, like
    /// Kafka's `max.message.bytes`.
    pub max_message_bytes: usize,
    /// Accept several batches for one partition in one request. Kafka
    /// (produce v3+) rejects that with `INVALID_RECORD`; when allowed, the
    /// batches must agree on producer id, epoch and transactionality and
    /// continue each other's sequences.
    pub allow_multiple_batches: bool,
    /// Decompresses the records of a compressed batch so their framing is
    /// checked as a broker does (a corrupt body is CORRUPT_MESSAGE, a bad
    /// record INVALID_RECORD). `None`: compressed bodies are checked by
    /// header and CRC only. The agent passes [`crate::decompress`].
    pub decompress: Option<Decompress>,
    /// Refuse records without a key ([`crate::RecordError::MissingKey`],
    /// INVALID_RECORD), as Kafka does on a topic whose `cleanup.policy`
    /// includes `compact`. Compressed batches are checked only when
    /// `decompress` is set.
    pub require_keys: bool,
}

/// Decompresses a batch body (the bytes after the 61-byte header) written
/// with `Compression`, into at most `limit` bytes.
pub type Decompress =
    fn(Compression, &[u8], usize) -> Result<Vec<u8>, crate::compression::DecompressError>;

/// Most bytes a compressed batch may expand to when validated: Kafka's
/// largest fetchable record set, against decompression bombs.
pub const DECOMPRESSED_BYTES_MAX: usize = 100 * 1024 * 1024;

impl Default for Limits {
    /// Kafka's defaults: 1 048 588 bytes, one batch per partition.
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            allow_multiple_batches: false,
            decompress: None,
            require_keys: false,
        }
    }
}

/// A batch that passed [`split_and_validate`], sharing the request's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedBatch {
    header: BatchHeader,
    bytes: Bytes,
}

impl ValidatedBatch {
    /// The parsed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The whole batch, a zero-copy slice of the request.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Gives up the batch bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Stamps LogAppendTime `now_ms` on a copy of the batch (the only copy
    /// made on the produce path, and only for LogAppendTime topics).
    pub fn with_log_append_time(self, now_ms: i64) -> Self {
        let mut bytes = BytesMut::from(&self.bytes[..]);
        match set_log_append_time(&mut bytes, now_ms) {
            Ok(()) => Self {
                header: BatchHeader::parse(&bytes).unwrap_or(self.header),
                bytes: bytes.freeze(),
            },
            // Unreachable for a validated batch; keep the batch unchanged.
            Err(_) => self,
        }
    }
}

/// Splits one partition's `records` into batches and validates each one.
///
/// On success every batch is a zero-copy slice of `records`. The first
/// failing check wins; map it to a Kafka error with
/// [`BatchError::kafka_error_code`]. Never panics, whatever the bytes.
pub fn split_and_validate(
    records: &Bytes,
    limits: &Limits,
) -> Result<Vec<ValidatedBatch>, BatchError> {
    let mut batches: Vec<ValidatedBatch> = Vec::new();
    for span in iter_batches(records) {
        let span = span?;
        if span.header.magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic {
                magic: span.header.magic,
            });
        }
        if !batches.is_empty() && !limits.allow_multiple_batches {
            return Err(BatchError::MultipleBatches);
        }
        let bytes = records.slice(span.range);
        validate_batch(&span.header, &bytes, limits)?;
        if let Some(previous) = batches.last() {
            check_continues(
                &batches[0].header,
                &previous.header,
                &span.header,
                batches.len(),
            )?;
        }
        batches.push(ValidatedBatch {
            header: span.header,
            bytes,
        });
    }
    if batches.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(batches)
}

/// Checks one framed, magic-2 batch in Kafka's order.
fn validate_batch(header: &BatchHeader, bytes: &[u8], limits: &Limits) -> Result<(), BatchError> {
    if header.base_offset != 0 {
        return Err(BatchError::NonZeroBaseOffset {
            base_offset: header.base_offset,
        });
    }
    if bytes.len() > limits.max_message_bytes {
        return Err(BatchError::TooLarge {
            size: bytes.len(),
            max: limits.max_message_bytes,
        });
    }
    let computed = batch_crc(bytes);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    let compression = header.compression().ok_or(BatchError::UnknownCompression {
        id: (header.attributes & 0x07) as u8,
    })?;
    check_counts(header)?;
    check_producer(header)?;
    let body = bytes.get(BATCH_HEADER_LEN..).unwrap_or_default();
    let malformed = |(record_index, reason)| BatchError::MalformedRecord {
        record_index,
        reason,
    };
    match (compression, limits.decompress) {
        (Compression::None, _) => {
            check_records(body, header.records_count, limits.require_keys).map_err(malformed)?
        }
        (_, Some(decompress)) => {
            let plain = decompress(compression, body, DECOMPRESSED_BYTES_MAX)
                .map_err(|source| BatchError::CorruptCompressed { source })?;
            check_records(&plain, header.records_count, limits.require_keys).map_err(malformed)?;
        }
        (_, None) => {}
    }
    Ok(())
}

/// `records_count > 0` and `last_offset_delta + 1 == records_count`.
fn check_counts(header: &BatchHeader) -> Result<(), BatchError> {
    if header.records_count <= 0 {
        return Err(BatchError::InvalidRecordsCount {
            records_count: header.records_count,
        });
    }
    if header.offset_count() != i64::from(header.records_count) {
        return Err(BatchError::OffsetCountMismatch {
            last_offset_delta: header.last_offset_delta,
            records_count: header.records_count,
        });
    }
    Ok(())
}

/// Client batches: no control batches, sane producer fields.
fn check_producer(header: &BatchHeader) -> Result<(), BatchError> {
    if header.is_control() {
        return Err(BatchError::ControlBatch);
    }
    if header.has_producer_id() && header.base_sequence < 0 {
        return Err(BatchError::InvalidSequence {
            producer_id: header.producer_id,
            base_sequence: header.base_sequence,
        });
    }
    if header.is_transactional() && !header.has_producer_id() {
        return Err(BatchError::TransactionalWithoutProducer);
    }
    Ok(())
}

/// When several batches are allowed, batch `index` must come from the same
/// producer session as the first and continue the previous one's sequence.
fn check_continues(
    first: &BatchHeader,
    previous: &BatchHeader,
    current: &BatchHeader,
    index: usize,
) -> Result<(), BatchError> {
    let same_producer = current.producer_id == first.producer_id
        && current.producer_epoch == first.producer_epoch
        && current.is_transactional() == first.is_transactional();
    if !same_producer {
        return Err(BatchError::ProducerMismatch { index });
    }
    if !current.has_producer_id() {
        return Ok(());
    }
    let expected = next_sequence(previous.last_sequence());
    if current.base_sequence != expected {
        return Err(BatchError::SequenceGap {
            index,
            expected,
            found: current.base_sequence,
        });
    }
    Ok(())
}

/// The sequence after `sequence`, wrapping from `i32::MAX` to 0.
fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::ATTRIBUTES_OFFSET;
    use crate::error::RecordError;
    use crate::testing::{KeyValue, build_batch, build_raw_batch};

    const RECORDS: &[KeyValue<'static>] = &[(Some(b"k"), Some(b"v")), (None, Some(b"w"))];

    fn concat(parts: &[Bytes]) -> Bytes {
        parts.concat().into()
    }

    fn error_of(bytes: &[u8], limits: &Limits) -> BatchError {
        split_and_validate(&Bytes::copy_from_slice(bytes), limits).unwrap_err()
    }

    fn with_header(change: impl FnOnce(&mut BatchHeader), body_records: i32) -> Bytes {
        let batch = build_batch(&RECORDS[..body_records as usize], 1_000, None);
        let mut header = BatchHeader::parse(&batch).unwrap();
        change(&mut header);
        build_raw_batch(&header, &batch[BATCH_HEADER_LEN..])
    }

    #[test]
    fn accepts_a_valid_batch_zero_copy() {
        let records = build_batch(RECORDS, 1_000, Some((7, 1, 0)));
        let batches = split_and_validate(&records, &Limits::default()).unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].bytes().as_ptr(), records.as_ptr());
        assert_eq!(batches[0].header().records_count, 2);
    }

    #[test]
    fn empty_and_truncated_input() {
        let limits = Limits::default();
        assert_eq!(error_of(&[], &limits), BatchError::Empty);
        let batch = build_batch(RECORDS, 0, None);
        let error = error_of(&batch[..batch.len() - 1], &limits);
        assert!(matches!(error, BatchError::Truncated { .. }));
        assert_eq!(error.kafka_error_code(), 2);
        assert!(matches!(
            error_of(&batch[..20], &limits),
            BatchError::Truncated { .. }
        ));
    }

    #[test]
    fn flipped_crc_byte_is_corrupt_message() {
        let mut batch = build_batch(RECORDS, 0, None).to_vec();
        let last = batch.len() - 1;
        batch[last] ^= 1;
        let error = error_of(&batch, &Limits::default());
        assert!(matches!(error, BatchError::CrcMismatch { .. }));
        assert_eq!(error.kafka_error_code(), 2);
    }

    #[test]
    fn old_magic_is_invalid_record() {
        let batch = with_header(|header| header.magic = 1, 2);
        let error = error_of(&batch, &Limits::default());
        assert_eq!(error, BatchError::UnsupportedMagic { magic: 1 });
        assert_eq!(error.kafka_error_code(), 87);
    }

    /// Goal: a compacted topic refuses a keyless record with
    /// INVALID_RECORD, as a Kafka broker does, and accepts keyed ones;
    /// other topics accept both.
    #[test]
    fn compacted_topics_require_keys() {
        let compacted = Limits {
            require_keys: true,
            ..Limits::default()
        };
        let keyless = build_batch(RECORDS, 0, None);
        let error = error_of(&keyless, &compacted);
        assert_eq!(
            error,
            BatchError::MalformedRecord {
                record_index: 1,
                reason: crate::RecordError::MissingKey
            }
        );
        assert_eq!(error.kafka_error_code(), 87);
        assert!(split_and_validate(&keyless, &Limits::default()).is_ok());
        let keyed = build_batch(&RECORDS[..1], 0, None);
        assert!(split_and_validate(&keyed, &compacted).is_ok());
    }

    #[test]
    fn too_large_is_message_too_large() {
        let batch = build_batch(RECORDS, 0, None);
        let limits = Limits {
            max_message_bytes: batch.len() - 1,
            ..Limits::default()
        };
        assert_eq!(error_of(&batch, &limits).kafka_error_code(), 10);
    }

    #[test]
    fn count_rules() {
        let limits = Limits::default();
        let zero = with_header(|header| header.records_count = 0, 0);
        assert!(matches!(
            error_of(&zero, &limits),
            BatchError::InvalidRecordsCount { .. }
        ));
        let mismatch = with_header(|header| header.last_offset_delta = 5, 2);
        assert!(matches!(
            error_of(&mismatch, &limits),
            BatchError::OffsetCountMismatch { .. }
        ));
        let short_body = with_header(
            |header| {
                header.records_count = 3;
                header.last_offset_delta = 2;
            },
            2,
        );
        let error = error_of(&short_body, &limits);
        assert!(matches!(
            error,
            BatchError::MalformedRecord {
                record_index: 2,
                reason: RecordError::Truncated
            }
        ));
    }

    #[test]
    fn producer_rules() {
        let limits = Limits::default();
        let control = with_header(|header| header.attributes |= 0x20, 2);
        assert_eq!(error_of(&control, &limits), BatchError::ControlBatch);
        let bad_sequence = with_header(|header| header.producer_id = 9, 2);
        assert!(matches!(
            error_of(&bad_sequence, &limits),
            BatchError::InvalidSequence { .. }
        ));
        let transactional = with_header(|header| header.attributes |= 0x10, 2);
        assert_eq!(
            error_of(&transactional, &limits),
            BatchError::TransactionalWithoutProducer
        );
        let offset = with_header(|header| header.base_offset = 3, 2);
        assert!(matches!(
            error_of(&offset, &limits),
            BatchError::NonZeroBaseOffset { base_offset: 3 }
        ));
    }

    #[test]
    fn unknown_codec_is_corrupt_message() {
        let batch = with_header(|header| header.attributes |= 0x07, 2);
        let error = error_of(&batch, &Limits::default());
        assert_eq!(error, BatchError::UnknownCompression { id: 7 });
        assert_eq!(error.kafka_error_code(), 2);
    }

    #[test]
    fn compressed_bodies_are_opaque() {
        // Goal: a compressed batch is checked by header and CRC only; its
        // body is never decompressed here.
        let batch = with_header(|header| header.attributes |= 0x04, 2);
        assert_eq!(batch[ATTRIBUTES_OFFSET + 1] & 0x07, 4);
        assert!(split_and_validate(&batch, &Limits::default()).is_ok());
    }

    #[test]
    fn compressed_bodies_are_checked_through_the_decompress_hook() {
        // Goal: with a decompressor, a body that does not decompress is
        // CORRUPT_MESSAGE and decompressed records that do not match the
        // header are INVALID_RECORD, as a broker answers.
        let batch = with_header(|header| header.attributes |= 0x04, 2);
        let failing = Limits {
            decompress: Some(|_, _, _| Err(crate::DecompressError::TruncatedFraming)),
            ..Limits::default()
        };
        let error = error_of(&batch, &failing);
        assert!(
            matches!(error, BatchError::CorruptCompressed { .. }),
            "{error:?}"
        );
        assert_eq!(error.kafka_error_code(), 2);
        let empty = Limits {
            decompress: Some(|_, _, _| Ok(Vec::new())),
            ..Limits::default()
        };
        let error = error_of(&batch, &empty);
        assert!(
            matches!(error, BatchError::MalformedRecord { .. }),
            "{error:?}"
        );
        assert_eq!(error.kafka_error_code(), 87);
        // The identity "decompressor" sees the well-formed records.
        let identity = Limits {
            decompress: Some(|_, body, _| Ok(body.to_vec())),
            ..Limits::default()
        };
        assert!(split_and_validate(&batch, &identity).is_ok());
    }

    #[test]
    fn one_batch_per_request_unless_allowed() {
        let first = build_batch(RECORDS, 0, Some((7, 1, 0)));
        let second = build_batch(RECORDS, 0, Some((7, 1, 2)));
        let both = concat(&[first.clone(), second]);
        assert_eq!(
            error_of(&both, &Limits::default()),
            BatchError::MultipleBatches
        );
        let limits = Limits {
            allow_multiple_batches: true,
            ..Limits::default()
        };
        assert_eq!(split_and_validate(&both, &limits).unwrap().len(), 2);
        let gap = concat(&[first.clone(), build_batch(RECORDS, 0, Some((7, 1, 3)))]);
        assert!(matches!(
            error_of(&gap, &limits),
            BatchError::SequenceGap { expected: 2, .. }
        ));
        let other = concat(&[first, build_batch(RECORDS, 0, Some((8, 1, 2)))]);
        assert_eq!(
            error_of(&other, &limits),
            BatchError::ProducerMismatch { index: 1 }
        );
    }

    #[test]
    fn sequences_wrap_across_batches() {
        let first = build_batch(RECORDS, 0, Some((7, 1, i32::MAX - 1)));
        let second = build_batch(RECORDS, 0, Some((7, 1, 0)));
        let limits = Limits {
            allow_multiple_batches: true,
            ..Limits::default()
        };
        assert!(split_and_validate(&concat(&[first, second]), &limits).is_ok());
    }

    #[test]
    fn log_append_time_copy_keeps_crc_valid() {
        let records = build_batch(RECORDS, 1_000, None);
        let batch = split_and_validate(&records, &Limits::default())
            .unwrap()
            .remove(0);
        let stamped = batch.with_log_append_time(5_000);
        assert!(stamped.header().timestamp_type_log_append());
        assert_eq!(stamped.header().max_timestamp, 5_000);
        assert!(split_and_validate(stamped.bytes(), &Limits::default()).is_ok());
    }
}
