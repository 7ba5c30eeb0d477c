//! Kafka v2 records, sans-I/O: the one record codec of Strata.
//!
//! Record layout: `length varint | attributes i8 | timestamp_delta varlong |
//! offset_delta varint | key_length varint | key | value_length varint |
//! value | header_count varint | (key_length varint | key | value_length
//! varint | value)*`, varints zig-zag encoded as in protobuf.
//!
//! - [`check_records`] checks the framing of a batch's records on produce
//!   (offset deltas 0, 1, 2, …, exactly `records_count` records);
//! - [`records`] and [`headers`] walk them without copying, for the
//!   compactor and `strata replay`: duplicate and non-UTF-8 header keys stay
//!   exactly as stored, where a map-based decoder would lose them;
//! - [`BatchEncoder`] encodes rebuilt uncompressed batches (the Parquet
//!   tier's reader) and the test batches of `testing`.
//!
//! Every decoder here returns an error on malformed input, never panics,
//! and does work bounded by the input length (every record consumes at
//! least one byte). A varint must fit its Java type: a 5-byte varint whose
//! value needs more than 32 bits is [`RecordError::VarintTooLong`].

use crate::batch::{LOG_OVERHEAD, MAGIC_V2, batch_crc};
use crate::error::RecordError;

/// One record of a batch, borrowing from the decompressed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Added to the batch's base timestamp (CreateTime batches).
    pub timestamp_delta: i64,
    /// Added to the batch's base offset.
    pub offset_delta: i32,
    /// The key, `None` when null.
    pub key: Option<&'a [u8]>,
    /// The value, `None` when null (a tombstone).
    pub value: Option<&'a [u8]>,
    /// The encoded headers (`header_count` of them), walked by [`headers`].
    pub headers: &'a [u8],
    /// Number of headers in `headers`.
    pub header_count: usize,
}

/// Walks the records of an uncompressed body.
pub fn records(body: &[u8]) -> RecordIter<'_> {
    RecordIter {
        cursor: Cursor { bytes: body },
    }
}

/// Iterator of [`records`]; ends after the first error.
#[derive(Debug)]
pub struct RecordIter<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cursor.bytes.is_empty() {
            return None;
        }
        let record = parse_record(&mut self.cursor, |_| Ok(()));
        if record.is_err() {
            self.cursor.bytes = &[];
        }
        Some(record)
    }
}

/// Checks that `body` holds exactly `records_count` well-framed records whose
/// offset deltas count up from 0.
///
/// With `require_keys` (a topic whose `cleanup.policy` includes
/// `compact`), a record without a key fails with [`RecordError::MissingKey`],
/// as a Kafka broker refuses it.
///
/// Returns the failing record's index with the reason.
pub(crate) fn check_records(
    body: &[u8],
    records_count: i32,
    require_keys: bool,
) -> Result<(), (usize, RecordError)> {
    let mut cursor = Cursor { bytes: body };
    let count = usize::try_from(records_count).unwrap_or(0);
    for index in 0..count {
        let offset_delta_is_index = |offset_delta: i32| {
            if usize::try_from(offset_delta).ok() == Some(index) {
                Ok(())
            } else {
                Err(RecordError::OffsetDelta {
                    expected: i64::try_from(index).unwrap_or(i64::MAX),
                    found: offset_delta.into(),
                })
            }
        };
        let record =
            parse_record(&mut cursor, offset_delta_is_index).map_err(|reason| (index, reason))?;
        if require_keys && record.key.is_none() {
            return Err((index, RecordError::MissingKey));
        }
    }
    if cursor.bytes.is_empty() {
        Ok(())
    } else {
        Err((count, RecordError::TrailingBytes))
    }
}

/// Parses one record; `check_offset_delta` runs as soon as the offset delta
/// is read, before the key and value.
fn parse_record<'a>(
    cursor: &mut Cursor<'a>,
    check_offset_delta: impl FnOnce(i32) -> Result<(), RecordError>,
) -> Result<RecordView<'a>, RecordError> {
    let length = cursor.length()?;
    let mut record = Cursor {
        bytes: cursor.take(length)?,
    };
    record.take(1)?; // attributes: unused in v2
    let timestamp_delta = record.varlong()?;
    let offset_delta = record.varint()?;
    check_offset_delta(offset_delta)?;
    let key = record.nullable_bytes()?;
    let value = record.nullable_bytes()?;
    let header_count = record.length()?;
    let headers = record.bytes;
    // Check the headers' framing now so that `headers()` cannot fail later.
    // Kafka rejects a null header key; a null header value is allowed.
    for _ in 0..header_count {
        let key_length = record.length()?;
        record.take(key_length)?;
        record.nullable_bytes()?;
    }
    if !record.bytes.is_empty() {
        return Err(RecordError::LengthMismatch);
    }
    Ok(RecordView {
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
        header_count,
    })
}

/// The headers of a record whose framing [`records`] already checked.
pub fn headers<'a>(
    record: &RecordView<'a>,
) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + use<'a> {
    let mut cursor = Cursor {
        bytes: record.headers,
    };
    (0..record.header_count).map_while(move |_| {
        let key_length = cursor.length().ok()?;
        let key = cursor.take(key_length).ok()?;
        let value = cursor.nullable_bytes().ok()?;
        Some((key, value))
    })
}

#[derive(Debug)]
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], RecordError> {
        let (head, tail) = self
            .bytes
            .split_at_checked(length)
            .ok_or(RecordError::Truncated)?;
        self.bytes = tail;
        Ok(head)
    }

    fn unsigned(&mut self, max_bytes: u32) -> Result<u64, RecordError> {
        let mut value = 0_u64;
        for index in 0..max_bytes {
            let (&byte, rest) = self.bytes.split_first().ok_or(RecordError::Truncated)?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::VarintTooLong)
    }

    /// A zig-zag varint of at most 5 bytes (a Java `int`).
    fn varint(&mut self) -> Result<i32, RecordError> {
        let raw = u32::try_from(self.unsigned(5)?).map_err(|_| RecordError::VarintTooLong)?;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// A zig-zag varlong of at most 10 bytes (a Java `long`).
    fn varlong(&mut self) -> Result<i64, RecordError> {
        let raw = self.unsigned(10)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A non-negative varint length.
    fn length(&mut self) -> Result<usize, RecordError> {
        let length = self.varint()?;
        usize::try_from(length).map_err(|_| RecordError::InvalidLength(length.into()))
    }

    /// A varint length followed by that many bytes; -1 is null.
    fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, RecordError> {
        match self.varint()? {
            -1 => Ok(None),
            length => {
                let length = usize::try_from(length)
                    .map_err(|_| RecordError::InvalidLength(length.into()))?;
                self.take(length).map(Some)
            }
        }
    }
}

/// Appends `value` as a zig-zag varint (Java `int`).
pub(crate) fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_unsigned(out, ((value << 1) ^ (value >> 31)) as u32 as u64);
}

/// Appends `value` as a zig-zag varlong (Java `long`).
pub(crate) fn put_varlong(out: &mut Vec<u8>, value: i64) {
    put_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn put_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Size of `value` as a zig-zag varint.
fn varint_len(value: i32) -> usize {
    let raw = ((value << 1) ^ (value >> 31)) as u32;
    (32 - raw.leading_zeros()).div_ceil(7).max(1) as usize
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, len_i32(bytes.len()));
            out.extend_from_slice(bytes);
        }
    }
}

fn len_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// Builds one uncompressed v2 batch record by record, in place.
///
/// The header is written with placeholders by [`BatchEncoder::start`];
/// [`BatchEncoder::finish`] fills `batch_length`, `records_count` and the
/// CRC32C. Records are encoded straight into the output buffer: the record
/// length prefix is written after the body by shifting it (one `memmove`
/// of the record, cheaper than a scratch copy for large values).
#[derive(Debug, Default)]
pub struct BatchEncoder {
    start: usize,
    records: i32,
}

/// The header fields of a batch written by [`BatchEncoder`]; the length,
/// record count and CRC are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuiltHeader {
    /// First offset of the batch.
    pub base_offset: i64,
    /// Leader epoch stamped by the broker.
    pub partition_leader_epoch: i32,
    /// Batch attributes (codec bits included as given).
    pub attributes: i16,
    /// Offset delta of the last record.
    pub last_offset_delta: i32,
    /// Timestamp the records' deltas are added to.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
}

impl BatchEncoder {
    /// Writes the header of a new batch at the end of `out`.
    pub fn start(out: &mut Vec<u8>, header: &RebuiltHeader) -> Self {
        let start = out.len();
        out.extend_from_slice(&header.base_offset.to_be_bytes());
        out.extend_from_slice(&0_i32.to_be_bytes()); // batch_length, set by finish
        out.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
        out.push(MAGIC_V2 as u8);
        out.extend_from_slice(&0_u32.to_be_bytes()); // crc, set by finish
        out.extend_from_slice(&header.attributes.to_be_bytes());
        out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
        out.extend_from_slice(&header.base_timestamp.to_be_bytes());
        out.extend_from_slice(&header.max_timestamp.to_be_bytes());
        out.extend_from_slice(&header.producer_id.to_be_bytes());
        out.extend_from_slice(&header.producer_epoch.to_be_bytes());
        out.extend_from_slice(&header.base_sequence.to_be_bytes());
        out.extend_from_slice(&0_i32.to_be_bytes()); // records_count, set by finish
        Self { start, records: 0 }
    }

    /// Appends one record to the batch.
    pub fn push<'h>(
        &mut self,
        out: &mut Vec<u8>,
        timestamp_delta: i64,
        offset_delta: i32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl ExactSizeIterator<Item = (&'h [u8], Option<&'h [u8]>)>,
    ) {
        // Reserve a 5-byte length slot, encode the body, then close the gap.
        let slot = out.len();
        out.extend_from_slice(&[0; 5]);
        out.push(0); // attributes
        put_varlong(out, timestamp_delta);
        put_varint(out, offset_delta);
        put_nullable(out, key);
        put_nullable(out, value);
        put_varint(out, len_i32(headers.len()));
        for (header_key, header_value) in headers {
            put_nullable(out, Some(header_key));
            put_nullable(out, header_value);
        }
        let body_len = len_i32(out.len() - slot - 5);
        let mut prefix = Vec::with_capacity(5);
        put_varint(&mut prefix, body_len);
        let unused = 5 - varint_len(body_len);
        out[slot + unused..slot + 5].copy_from_slice(&prefix);
        out.drain(slot..slot + unused);
        self.records += 1;
    }

    /// Fills in length, record count and CRC; returns the batch's size.
    pub fn finish(self, out: &mut [u8]) -> usize {
        let batch = &mut out[self.start..];
        let batch_length = len_i32(batch.len() - LOG_OVERHEAD);
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch[57..61].copy_from_slice(&self.records.to_be_bytes());
        let crc = batch_crc(batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch.len()
    }
}

#[cfg(any(test, feature = "test-util"))]
/// Encodes one record with no headers; the timestamp delta is `offset_delta`.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let mut body = Vec::new();
    body.push(0); // attributes
    put_varlong(&mut body, i64::from(offset_delta)); // timestamp delta
    put_varint(&mut body, offset_delta);
    put_nullable(&mut body, key);
    put_nullable(&mut body, value);
    put_varint(&mut body, 0); // header count
    put_varint(out, len_i32(body.len()));
    out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::KeyValue;

    fn encode(records: &[KeyValue<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for (delta, (key, value)) in records.iter().enumerate() {
            encode_record(&mut out, delta as i32, *key, *value);
        }
        out
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        // Goal: zig-zag encoding and the size function agree with decoding.
        for value in [0, 1, -1, 63, 64, -64, -65, i32::MAX, i32::MIN, 300, -300] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
            let mut cursor = Cursor { bytes: &out };
            assert_eq!(cursor.varint(), Ok(value));
            assert!(cursor.bytes.is_empty());
        }
        for value in [0, -1, i64::MAX, i64::MIN, 1 << 40] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(Cursor { bytes: &out }.varlong(), Ok(value));
        }
        // Ten bytes do not fit a Java `int`; neither do 5 bytes above 32 bits.
        let mut out = Vec::new();
        put_varlong(&mut out, i64::MIN);
        assert_eq!(
            Cursor { bytes: &out }.varint(),
            Err(RecordError::VarintTooLong)
        );
        assert_eq!(
            Cursor {
                bytes: &[0xff, 0xff, 0xff, 0xff, 0x1f]
            }
            .varint(),
            Err(RecordError::VarintTooLong)
        );
    }

    #[test]
    fn malformed_records_are_errors() {
        // Goal: truncation, overlong varints and bad lengths fail cleanly.
        assert_eq!(
            records(&[0x80; 6]).next(),
            Some(Err(RecordError::VarintTooLong))
        );
        assert_eq!(records(&[20, 0]).next(), Some(Err(RecordError::Truncated)));
        assert_eq!(
            records(&[1]).next(),
            Some(Err(RecordError::InvalidLength(-1)))
        );
        // A record of length 4: attributes, ts 0, offset 0, key length -3.
        assert_eq!(
            records(&[8, 0, 0, 0, 5]).next(),
            Some(Err(RecordError::InvalidLength(-3)))
        );
    }

    #[test]
    fn walks_records_and_headers() {
        // Goal: the view parser sees what the encoder wrote, headers in order.
        let mut out = Vec::new();
        let mut encoder = BatchEncoder::start(&mut out, &header(0));
        let headers = [(&b"h"[..], Some(&b"1"[..])), (&b"h"[..], None)];
        encoder.push(&mut out, 5, 0, None, Some(b"v"), headers.into_iter());
        encoder.finish(&mut out);
        let body = &out[crate::BATCH_HEADER_LEN..];
        assert_eq!(check_records(body, 1, false), Ok(()));
        let record = records(body).next().unwrap().unwrap();
        assert_eq!((record.timestamp_delta, record.offset_delta), (5, 0));
        assert_eq!((record.key, record.value), (None, Some(&b"v"[..])));
        assert_eq!(super::headers(&record).collect::<Vec<_>>(), headers);
    }

    fn header(base_sequence: i32) -> RebuiltHeader {
        RebuiltHeader {
            base_offset: 0,
            partition_leader_epoch: -1,
            attributes: 0,
            last_offset_delta: 0,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence,
        }
    }

    #[test]
    fn well_formed_records_pass() {
        let body = encode(&[
            (Some(b"k"), Some(b"v")),
            (None, None),
            (None, Some(&[7; 300])),
        ]);
        assert_eq!(check_records(&body, 3, false), Ok(()));
    }

    #[test]
    fn count_mismatch_and_trailing_bytes_fail() {
        let body = encode(&[(Some(b"k"), Some(b"v")), (None, None)]);
        assert_eq!(
            check_records(&body, 3, false),
            Err((2, RecordError::Truncated))
        );
        assert_eq!(
            check_records(&body, 1, false),
            Err((1, RecordError::TrailingBytes))
        );
    }

    #[test]
    fn offset_deltas_must_count_from_zero() {
        let mut body = Vec::new();
        encode_record(&mut body, 1, None, None);
        let error = check_records(&body, 1, false).unwrap_err();
        assert_eq!(
            error,
            (
                0,
                RecordError::OffsetDelta {
                    expected: 0,
                    found: 1
                }
            )
        );
    }

    #[test]
    fn negative_lengths_fail() {
        let mut body = Vec::new();
        put_varint(&mut body, -5);
        assert_eq!(
            check_records(&body, 1, false),
            Err((0, RecordError::InvalidLength(-5)))
        );
    }

    #[test]
    fn encoded_batch_matches_the_segment_crate_builder() {
        // Goal: our encoder writes the same bytes as the test
        // builder (an independent encoder) for the same records.
        let expected = crate::testing::build_batch(
            &[(Some(b"k"), Some(&[7; 200])), (None, None)],
            1_000,
            Some((5, 1, 9)),
        );
        let header = crate::BatchHeader::parse(&expected).unwrap();
        let mut out = Vec::new();
        let mut encoder = BatchEncoder::start(
            &mut out,
            &RebuiltHeader {
                base_offset: 0,
                partition_leader_epoch: -1,
                attributes: 0,
                last_offset_delta: 1,
                base_timestamp: 1_000,
                max_timestamp: header.max_timestamp,
                producer_id: 5,
                producer_epoch: 1,
                base_sequence: 9,
            },
        );
        let none = std::iter::empty();
        encoder.push(&mut out, 0, 0, Some(b"k"), Some(&[7; 200]), none);
        encoder.push(&mut out, 1, 1, None, None, std::iter::empty());
        assert_eq!(encoder.finish(&mut out), expected.len());
        assert_eq!(out, expected.to_vec());
    }
}
