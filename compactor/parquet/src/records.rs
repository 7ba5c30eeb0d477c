//! Kafka v2 records, sans-I/O: decompressing a stored batch body, walking
//! its records without copying, and encoding rebuilt uncompressed batches.
//!
//! Record layout: `length varint | attributes i8 | timestamp_delta varlong |
//! offset_delta varint | key_length varint | key | value_length varint |
//! value | header_count varint | (key_length varint | key | value_length
//! varint | value)*`, varints zig-zag encoded. Every decoder here returns an
//! error on malformed input, never panics, and does work bounded by the
//! input length.
//!
//! The decoding half is public so that `strata replay` reads segment chunks
//! with the same parser as the compactor: it keeps duplicate and non-UTF-8
//! header keys exactly, where a map-based decoder would not.

use bytes::Bytes;
use std::io::Read;

use strata_segment::{BATCH_HEADER_LEN, BatchHeader, Compression, LOG_OVERHEAD, MAGIC_V2};

/// Why a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordFault {
    /// The bytes end inside a field.
    #[error("truncated record")]
    Truncated,
    /// A varint is longer than its type allows.
    #[error("varint too long")]
    VarintTooLong,
    /// A negative length where only null (-1) or a size may appear.
    #[error("invalid length {0}")]
    InvalidLength(i64),
    /// A record's length does not match its fields.
    #[error("record length does not match its fields")]
    LengthMismatch,
    /// Bytes remain after the last record.
    #[error("bytes after the last record")]
    TrailingBytes,
}

/// Returns the uncompressed records of a stored batch (everything after the
/// 61-byte header), decompressing with the codec its attributes name, up to
/// [`strata_segment::DECOMPRESSED_BYTES_MAX`] bytes.
pub fn batch_body(batch: &Bytes, header: &BatchHeader) -> Result<Bytes, String> {
    let compressed = batch.slice(BATCH_HEADER_LEN.min(batch.len())..);
    match header.compression() {
        Some(Compression::None) => Ok(compressed),
        Some(codec) => {
            decompress(codec, &compressed, strata_segment::DECOMPRESSED_BYTES_MAX).map(Bytes::from)
        }
        None => Err(format!("unknown codec in attributes {}", header.attributes)),
    }
}

/// Decompresses a batch body written with `compression`, refusing to
/// produce more than `limit` bytes.
pub fn decompress(compression: Compression, body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    let read = match compression {
        Compression::None => {
            out.extend_from_slice(body);
            Ok(body.len())
        }
        Compression::Gzip => flate2::read::GzDecoder::new(body)
            .take(cap)
            .read_to_end(&mut out),
        Compression::Snappy => return snappy(body, limit),
        Compression::Lz4 => {
            lz4::Decoder::new(body).and_then(|decoder| decoder.take(cap).read_to_end(&mut out))
        }
        Compression::Zstd => zstd::stream::read::Decoder::new(body)
            .and_then(|decoder| decoder.take(cap).read_to_end(&mut out)),
    };
    read.map_err(|e| e.to_string())?;
    if out.len() > limit {
        return Err(format!("expands past {limit} bytes"));
    }
    Ok(out)
}

/// Kafka's snappy: the xerial framing (a magic header, then length-prefixed
/// raw snappy blocks) from the Java client, or one raw block from others.
fn snappy(body: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    const XERIAL_MAGIC: &[u8] = &[0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
    let mut decoder = snap::raw::Decoder::new();
    let mut block = |compressed: &[u8], out: &mut Vec<u8>| -> Result<(), String> {
        let size = snap::raw::decompress_len(compressed).map_err(|e| e.to_string())?;
        if out.len().saturating_add(size) > limit {
            return Err(format!("expands past {limit} bytes"));
        }
        let start = out.len();
        out.resize(start + size, 0);
        decoder
            .decompress(compressed, &mut out[start..])
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    let mut out = Vec::new();
    if body.len() >= 16 && body.starts_with(XERIAL_MAGIC) {
        let mut rest = &body[16..];
        while !rest.is_empty() {
            let (length, tail) = rest.split_at_checked(4).ok_or("truncated xerial block")?;
            let length = u32::from_be_bytes(length.try_into().map_err(|_| "bad length")?) as usize;
            let (chunk, tail) = tail
                .split_at_checked(length)
                .ok_or("truncated xerial block")?;
            block(chunk, &mut out)?;
            rest = tail;
        }
    } else {
        block(body, &mut out)?;
    }
    Ok(out)
}

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
    type Item = Result<RecordView<'a>, RecordFault>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cursor.bytes.is_empty() {
            return None;
        }
        let record = parse_record(&mut self.cursor);
        if record.is_err() {
            self.cursor.bytes = &[];
        }
        Some(record)
    }
}

fn parse_record<'a>(cursor: &mut Cursor<'a>) -> Result<RecordView<'a>, RecordFault> {
    let length = cursor.length()?;
    let mut record = Cursor {
        bytes: cursor.take(length)?,
    };
    record.take(1)?; // attributes: unused in v2
    let timestamp_delta = record.varlong()?;
    let offset_delta = record.varint()?;
    let key = record.nullable_bytes()?;
    let value = record.nullable_bytes()?;
    let header_count = record.length()?;
    let headers = record.bytes;
    // Check the headers' framing now so that `headers()` cannot fail later.
    for _ in 0..header_count {
        let key_length = record.length()?;
        record.take(key_length)?;
        record.nullable_bytes()?;
    }
    if !record.bytes.is_empty() {
        return Err(RecordFault::LengthMismatch);
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
    fn take(&mut self, length: usize) -> Result<&'a [u8], RecordFault> {
        let (head, tail) = self
            .bytes
            .split_at_checked(length)
            .ok_or(RecordFault::Truncated)?;
        self.bytes = tail;
        Ok(head)
    }

    fn unsigned(&mut self, max_bytes: u32) -> Result<u64, RecordFault> {
        let mut value = 0_u64;
        for index in 0..max_bytes {
            let (&byte, rest) = self.bytes.split_first().ok_or(RecordFault::Truncated)?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordFault::VarintTooLong)
    }

    fn varint(&mut self) -> Result<i32, RecordFault> {
        let raw = self.unsigned(5)? as u32;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    fn varlong(&mut self) -> Result<i64, RecordFault> {
        let raw = self.unsigned(10)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }

    /// A non-negative varint length.
    fn length(&mut self) -> Result<usize, RecordFault> {
        let length = self.varint()?;
        usize::try_from(length).map_err(|_| RecordFault::InvalidLength(length.into()))
    }

    /// A varint length followed by that many bytes; -1 is null.
    fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, RecordFault> {
        match self.varint()? {
            -1 => Ok(None),
            length => {
                let length = usize::try_from(length)
                    .map_err(|_| RecordFault::InvalidLength(length.into()))?;
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
pub(crate) struct BatchEncoder {
    start: usize,
    records: i32,
}

/// The header fields of a rebuilt batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RebuiltHeader {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchEncoder {
    /// Writes the header of a new batch at the end of `out`.
    pub(crate) fn start(out: &mut Vec<u8>, header: &RebuiltHeader) -> Self {
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
    pub(crate) fn push<'h>(
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
    pub(crate) fn finish(self, out: &mut [u8]) -> usize {
        let batch = &mut out[self.start..];
        let batch_length = len_i32(batch.len() - LOG_OVERHEAD);
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch[57..61].copy_from_slice(&self.records.to_be_bytes());
        let crc = strata_segment::batch_crc(batch);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        // Goal: zig-zag encoding and the size function agree with decoding.
        for value in [0, 1, -1, 63, 64, -64, -65, i32::MAX, i32::MIN, 300, -300] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
            assert_eq!(Cursor { bytes: &out }.varint(), Ok(value));
        }
        for value in [0, -1, i64::MAX, i64::MIN, 1 << 40] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(Cursor { bytes: &out }.varlong(), Ok(value));
        }
    }

    #[test]
    fn malformed_records_are_errors() {
        // Goal: truncation, overlong varints and bad lengths fail cleanly.
        assert_eq!(
            records(&[0x80; 6]).next(),
            Some(Err(RecordFault::VarintTooLong))
        );
        assert_eq!(records(&[20, 0]).next(), Some(Err(RecordFault::Truncated)));
        assert_eq!(
            records(&[1]).next(),
            Some(Err(RecordFault::InvalidLength(-1)))
        );
        // A record of length 4: attributes, ts 0, offset 0, key length -3.
        assert_eq!(
            records(&[8, 0, 0, 0, 5]).next(),
            Some(Err(RecordFault::InvalidLength(-3)))
        );
    }

    #[test]
    fn encoded_batch_matches_the_segment_crate_builder() {
        // Goal: our encoder writes the same bytes as strata_segment's test
        // builder (an independent encoder) for the same records.
        let expected = strata_segment::testing::build_batch(
            &[(Some(b"k"), Some(&[7; 200])), (None, None)],
            1_000,
            Some((5, 1, 9)),
        );
        let header = BatchHeader::parse(&expected).unwrap();
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

#[cfg(test)]
mod codec_tests {
    use super::*;
    use std::io::Write;

    fn records() -> Vec<u8> {
        (0..16_384u32).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn every_codec_round_trips_and_garbage_is_refused() {
        let plain = records();
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gzip.write_all(&plain).unwrap();
        let gzip = gzip.finish().unwrap();
        let mut lz4 = lz4::EncoderBuilder::new().build(Vec::new()).unwrap();
        lz4.write_all(&plain).unwrap();
        let (lz4, finished) = lz4.finish();
        finished.unwrap();
        let zstd = zstd::encode_all(plain.as_slice(), 1).unwrap();
        let snappy = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        for (codec, body) in [
            (Compression::Gzip, gzip),
            (Compression::Lz4, lz4),
            (Compression::Zstd, zstd),
            (Compression::Snappy, snappy),
        ] {
            assert_eq!(
                decompress(codec, &body, 1 << 20).unwrap(),
                plain,
                "{codec:?}"
            );
            assert!(decompress(codec, &body, 100).is_err(), "{codec:?} limit");
            // A truncated body fails or yields less (the record check
            // after decompression refuses that).
            let truncated = decompress(codec, &body[..body.len() / 2], 1 << 20);
            assert!(
                truncated
                    .as_ref()
                    .map_or(true, |out| out.len() < plain.len()),
                "{codec:?} truncated"
            );
            assert!(
                decompress(codec, b"not compressed at all", 1 << 20).is_err(),
                "{codec:?} garbage"
            );
        }
    }
}
