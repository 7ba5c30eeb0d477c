//! The segment footer: chunk index, trailer, encoding and checked parsing.
//!
//! See `docs/segment-format.md` for the byte layout. Parsing needs only the
//! object's tail and its total length, so a reader can fetch the footer
//! with one suffix-range GET and never trusts a length it has not bounded.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use crate::batch::BATCH_HEADER_LEN;
use crate::error::SegmentError;

/// The last six bytes of every segment object.
pub const SEGMENT_MAGIC: [u8; 6] = *b"STRSEG";
/// The footer format version this crate writes and reads.
pub const SEGMENT_FORMAT_VERSION: u16 = 1;
/// Size of the fixed trailer at the end of the object.
pub const TRAILER_LEN: usize = 16;
/// Size of one encoded [`ChunkIndexEntry`].
pub const ENTRY_LEN: usize = 82;
/// Size of the entry-count prefix of the footer.
const COUNT_LEN: usize = 4;
/// Most entries a footer can hold with a `u32` length.
pub(crate) const MAX_ENTRIES: usize = (u32::MAX as usize - COUNT_LEN) / ENTRY_LEN;

/// Index entry for one chunk: the contiguous batches of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkIndexEntry {
    /// Kafka topic id (a UUID).
    pub topic_id: [u8; 16],
    /// Partition number.
    pub partition: u32,
    /// Offset of the chunk's first byte in the object.
    pub position: u64,
    /// Chunk length in bytes.
    pub length: u64,
    /// Number of batches in the chunk.
    pub batch_count: u32,
    /// Offsets the chunk occupies: the sum of `last_offset_delta + 1`.
    pub offset_count: u64,
    /// Smallest batch start time: `base_timestamp`, or `max_timestamp` for
    /// LogAppendTime batches.
    pub min_timestamp: i64,
    /// Largest `max_timestamp` of the chunk's batches.
    pub max_timestamp: i64,
    /// Producer id of the first batch (-1 if not idempotent).
    pub producer_id: i64,
    /// Producer epoch of the first batch.
    pub producer_epoch: i16,
    /// Base sequence of the first batch.
    pub base_sequence: i32,
    /// CRC32C of the chunk's bytes as stored.
    pub chunk_crc32c: u32,
}

impl ChunkIndexEntry {
    /// Byte range of the chunk in the object.
    pub fn range(&self) -> Range<u64> {
        self.position..self.position.saturating_add(self.length)
    }

    /// Checks `chunk` against the entry's length and CRC32C.
    pub fn verify(&self, chunk: &[u8]) -> Result<(), SegmentError> {
        let length_matches = u64::try_from(chunk.len()).is_ok_and(|length| length == self.length);
        if length_matches && crc32c::crc32c(chunk) == self.chunk_crc32c {
            Ok(())
        } else {
            Err(SegmentError::ChunkMismatch)
        }
    }

    /// Slices this chunk out of the whole `object`, zero-copy, and verifies it.
    pub fn extract(&self, object: &Bytes) -> Result<Bytes, SegmentError> {
        let start = usize::try_from(self.position).map_err(|_| SegmentError::ChunkMismatch)?;
        let end = usize::try_from(self.range().end).map_err(|_| SegmentError::ChunkMismatch)?;
        if end > object.len() {
            return Err(SegmentError::TooShort {
                needed: self.range().end,
                available: object.len() as u64,
            });
        }
        let chunk = object.slice(start..end);
        self.verify(&chunk)?;
        Ok(chunk)
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_slice(&self.topic_id);
        out.put_u32(self.partition);
        out.put_u64(self.position);
        out.put_u64(self.length);
        out.put_u32(self.batch_count);
        out.put_u64(self.offset_count);
        out.put_i64(self.min_timestamp);
        out.put_i64(self.max_timestamp);
        out.put_i64(self.producer_id);
        out.put_i16(self.producer_epoch);
        out.put_i32(self.base_sequence);
        out.put_u32(self.chunk_crc32c);
    }

    fn decode(bytes: &[u8; ENTRY_LEN]) -> Self {
        let mut reader = Reader { bytes, at: 0 };
        Self {
            topic_id: reader.take(),
            partition: u32::from_be_bytes(reader.take()),
            position: u64::from_be_bytes(reader.take()),
            length: u64::from_be_bytes(reader.take()),
            batch_count: u32::from_be_bytes(reader.take()),
            offset_count: u64::from_be_bytes(reader.take()),
            min_timestamp: i64::from_be_bytes(reader.take()),
            max_timestamp: i64::from_be_bytes(reader.take()),
            producer_id: i64::from_be_bytes(reader.take()),
            producer_epoch: i16::from_be_bytes(reader.take()),
            base_sequence: i32::from_be_bytes(reader.take()),
            chunk_crc32c: u32::from_be_bytes(reader.take()),
        }
    }

    fn key(&self) -> ([u8; 16], u32) {
        (self.topic_id, self.partition)
    }
}

/// The fixed 16-byte trailer that ends every segment object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Length of the footer (entry count and entries), excluding the trailer.
    pub footer_length: u32,
    /// Footer format version.
    pub version: u16,
    /// CRC32C of the footer bytes followed by `footer_length` and `version`.
    pub footer_crc32c: u32,
}

impl Trailer {
    /// Bytes to fetch from the end of the object to read the whole footer.
    pub fn suffix_len(&self) -> u64 {
        u64::from(self.footer_length) + TRAILER_LEN as u64
    }
}

/// Reads the trailer from the last 16 bytes of `tail` (any suffix of the
/// object), checking the magic and the version.
pub fn read_trailer(tail: &[u8]) -> Result<Trailer, SegmentError> {
    let Some(trailer) = tail.last_chunk::<TRAILER_LEN>() else {
        return Err(SegmentError::TooShort {
            needed: TRAILER_LEN as u64,
            available: tail.len() as u64,
        });
    };
    let mut reader = Reader {
        bytes: trailer,
        at: 0,
    };
    let footer_length = u32::from_be_bytes(reader.take());
    let version = u16::from_be_bytes(reader.take());
    let footer_crc32c = u32::from_be_bytes(reader.take());
    let magic: [u8; 6] = reader.take();
    if magic != SEGMENT_MAGIC {
        return Err(SegmentError::BadMagic);
    }
    if version != SEGMENT_FORMAT_VERSION {
        return Err(SegmentError::UnsupportedVersion { version });
    }
    Ok(Trailer {
        footer_length,
        version,
        footer_crc32c,
    })
}

/// The parsed and checked footer of a segment object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    version: u16,
    data_len: u64,
    entries: Vec<ChunkIndexEntry>,
}

impl Footer {
    /// Parses the footer of a whole segment `object`.
    pub fn parse(object: &[u8]) -> Result<Self, SegmentError> {
        Self::parse_tail(object, object.len() as u64)
    }

    /// Parses the footer from `tail`, the last `tail.len()` bytes of an
    /// object of `object_len` bytes (fetch at least [`Trailer::suffix_len`]).
    ///
    /// Checks magic, version, CRC, that the footer length matches the entry
    /// count, that entries are sorted by (topic, partition) without
    /// duplicates, and that the chunks tile the data region exactly.
    pub fn parse_tail(tail: &[u8], object_len: u64) -> Result<Self, SegmentError> {
        let trailer = read_trailer(tail)?;
        let suffix_len = trailer.suffix_len();
        let available = (tail.len() as u64).min(object_len);
        if suffix_len > available {
            return Err(SegmentError::TooShort {
                needed: suffix_len,
                available,
            });
        }
        let footer_start = tail.len() - suffix_len as usize;
        let footer = &tail[footer_start..tail.len() - TRAILER_LEN];
        let computed = footer_crc(footer, trailer.footer_length, trailer.version);
        if computed != trailer.footer_crc32c {
            return Err(SegmentError::FooterCrcMismatch {
                stored: trailer.footer_crc32c,
                computed,
            });
        }
        let entries = decode_entries(footer, trailer.footer_length)?;
        let data_len = object_len - suffix_len;
        check_layout(&entries, data_len)?;
        Ok(Self {
            version: trailer.version,
            data_len,
            entries,
        })
    }

    /// Footer format version.
    pub fn version(&self) -> u16 {
        self.version
    }

    /// Bytes of chunk data before the footer.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// The index entries, sorted by (topic id, partition).
    pub fn entries(&self) -> &[ChunkIndexEntry] {
        &self.entries
    }

    /// Gives up the index entries.
    pub fn into_entries(self) -> Vec<ChunkIndexEntry> {
        self.entries
    }

    /// The entry for one partition, by binary search.
    pub fn find(&self, topic_id: [u8; 16], partition: u32) -> Option<&ChunkIndexEntry> {
        let index = self
            .entries
            .binary_search_by(|entry| entry.key().cmp(&(topic_id, partition)))
            .ok()?;
        self.entries.get(index)
    }
}

/// Appends footer and trailer for `entries` to `out`.
///
/// The caller keeps `entries.len() <= MAX_ENTRIES`.
pub(crate) fn encode_footer(entries: &[ChunkIndexEntry], out: &mut BytesMut) {
    let start = out.len();
    let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    out.put_u32(count);
    for entry in entries {
        entry.encode(out);
    }
    let footer_length = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    let crc = footer_crc(&out[start..], footer_length, SEGMENT_FORMAT_VERSION);
    out.put_u32(footer_length);
    out.put_u16(SEGMENT_FORMAT_VERSION);
    out.put_u32(crc);
    out.put_slice(&SEGMENT_MAGIC);
}

fn footer_crc(footer: &[u8], footer_length: u32, version: u16) -> u32 {
    let crc = crc32c::crc32c(footer);
    let crc = crc32c::crc32c_append(crc, &footer_length.to_be_bytes());
    crc32c::crc32c_append(crc, &version.to_be_bytes())
}

fn decode_entries(footer: &[u8], footer_length: u32) -> Result<Vec<ChunkIndexEntry>, SegmentError> {
    let Some((count, body)) = footer.split_first_chunk::<COUNT_LEN>() else {
        return Err(SegmentError::FooterLength {
            footer_length,
            entry_count: 0,
        });
    };
    let entry_count = u32::from_be_bytes(*count);
    let (chunks, rest) = body.as_chunks::<ENTRY_LEN>();
    if !rest.is_empty() || chunks.len() as u64 != u64::from(entry_count) {
        return Err(SegmentError::FooterLength {
            footer_length,
            entry_count,
        });
    }
    Ok(chunks.iter().map(ChunkIndexEntry::decode).collect())
}

/// Entries strictly sorted by key; chunks contiguous from 0 to `data_len`.
fn check_layout(entries: &[ChunkIndexEntry], data_len: u64) -> Result<(), SegmentError> {
    let mut expected_position = 0_u64;
    for (index, entry) in entries.iter().enumerate() {
        let sorted = index == 0 || entries[index - 1].key() < entry.key();
        if !sorted {
            return Err(SegmentError::EntryOrder { index });
        }
        let smallest = u64::from(entry.batch_count).saturating_mul(BATCH_HEADER_LEN as u64);
        let plausible = entry.batch_count > 0 && entry.length >= smallest;
        if entry.position != expected_position || !plausible {
            return Err(SegmentError::ChunkLayout { index });
        }
        expected_position = entry
            .position
            .checked_add(entry.length)
            .ok_or(SegmentError::ChunkLayout { index })?;
    }
    if expected_position != data_len {
        return Err(SegmentError::ChunkLayout {
            index: entries.len(),
        });
    }
    Ok(())
}

struct Reader<'a, const LEN: usize> {
    bytes: &'a [u8; LEN],
    at: usize,
}

impl<const LEN: usize> Reader<'_, LEN> {
    /// Takes the next `N` bytes; callers' field sizes sum to exactly `LEN`.
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

    fn entry(partition: u32, position: u64, length: u64) -> ChunkIndexEntry {
        ChunkIndexEntry {
            topic_id: [1; 16],
            partition,
            position,
            length,
            batch_count: 1,
            offset_count: 3,
            min_timestamp: -5,
            max_timestamp: 7,
            producer_id: 42,
            producer_epoch: 2,
            base_sequence: 9,
            chunk_crc32c: 0xabcd,
        }
    }

    fn object_with(entries: &[ChunkIndexEntry], data_len: usize) -> Vec<u8> {
        let mut out = BytesMut::from(&vec![0_u8; data_len][..]);
        encode_footer(entries, &mut out);
        out.to_vec()
    }

    #[test]
    fn footer_round_trips_and_finds() {
        let entries = [entry(0, 0, 100), entry(3, 100, 61)];
        let object = object_with(&entries, 161);
        assert_eq!(object.len(), 161 + COUNT_LEN + 2 * ENTRY_LEN + TRAILER_LEN);
        let footer = Footer::parse(&object).unwrap();
        assert_eq!(footer.entries(), entries);
        assert_eq!(footer.data_len(), 161);
        assert_eq!(footer.find([1; 16], 3), Some(&entries[1]));
        assert_eq!(footer.find([1; 16], 4), None);
    }

    #[test]
    fn tail_alone_is_enough() {
        let entries = [entry(0, 0, 1000)];
        let object = object_with(&entries, 1000);
        let trailer = read_trailer(&object[object.len() - TRAILER_LEN..]).unwrap();
        let tail = &object[object.len() - trailer.suffix_len() as usize..];
        let footer = Footer::parse_tail(tail, object.len() as u64).unwrap();
        assert_eq!(footer.entries(), entries);
        let short = &tail[1..];
        assert!(matches!(
            Footer::parse_tail(short, object.len() as u64),
            Err(SegmentError::TooShort { .. })
        ));
    }

    #[test]
    fn rejects_bad_magic_version_and_crc() {
        let object = object_with(&[entry(0, 0, 61)], 61);
        let mut bad = object.clone();
        *bad.last_mut().unwrap() = b'X';
        assert_eq!(Footer::parse(&bad), Err(SegmentError::BadMagic));
        let mut bad = object.clone();
        let version_at = bad.len() - 12;
        bad[version_at + 1] = 9;
        assert_eq!(
            Footer::parse(&bad),
            Err(SegmentError::UnsupportedVersion { version: 9 })
        );
        let mut bad = object;
        bad[70] ^= 0xff;
        assert!(matches!(
            Footer::parse(&bad),
            Err(SegmentError::FooterCrcMismatch { .. })
        ));
    }

    #[test]
    fn rejects_bad_layout() {
        let gap = object_with(&[entry(0, 0, 61), entry(1, 62, 61)], 123);
        assert_eq!(
            Footer::parse(&gap),
            Err(SegmentError::ChunkLayout { index: 1 })
        );
        let unsorted = object_with(&[entry(1, 0, 61), entry(0, 61, 61)], 122);
        assert_eq!(
            Footer::parse(&unsorted),
            Err(SegmentError::EntryOrder { index: 1 })
        );
        let short_data = object_with(&[entry(0, 0, 61)], 60);
        assert_eq!(
            Footer::parse(&short_data),
            Err(SegmentError::ChunkLayout { index: 1 })
        );
        let empty = object_with(&[], 0);
        assert_eq!(
            Footer::parse(&empty).map(|footer| footer.entries().len()),
            Ok(0)
        );
    }

    #[test]
    fn verify_and_extract_check_length_and_crc() {
        let data = Bytes::from_static(&[5; 61]);
        let mut good = entry(0, 0, 61);
        good.chunk_crc32c = crc32c::crc32c(&data);
        assert_eq!(good.extract(&data), Ok(data.clone()));
        let mut bad = good.clone();
        bad.chunk_crc32c ^= 1;
        assert_eq!(bad.extract(&data), Err(SegmentError::ChunkMismatch));
        let far = entry(0, 100, 61);
        assert!(matches!(
            far.extract(&data),
            Err(SegmentError::TooShort { .. })
        ));
    }
}
