//! Building a segment object: the batches of many partitions, grouped into
//! one chunk per partition, followed by the footer.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use crate::batch::{BatchHeader, check_stored, frame};
use crate::error::{BatchError, SegmentError};
use crate::footer::{ChunkIndexEntry, ENTRY_LEN, MAX_ENTRIES, TRAILER_LEN, encode_footer};

/// Collects batches per partition and lays them out as one segment object.
///
/// Batches of a partition keep the order they were pushed in; chunks are
/// laid out in (topic id, partition) order, matching the footer's order.
/// The builder stores batches as given (zero-copy `Bytes`) and checks only
/// their framing: validate them first with [`crate::split_and_validate`].
#[derive(Debug, Default)]
pub struct SegmentBuilder {
    chunks: BTreeMap<([u8; 16], u32), Chunk>,
    data_len: u64,
}

#[derive(Debug)]
struct Chunk {
    batches: Vec<Bytes>,
    summary: ChunkIndexEntry,
}

impl SegmentBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no batch has been pushed.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes of batch data pushed so far (the object is this plus the footer).
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Number of partitions (chunks) pushed so far.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Adds one whole v2 batch for `(topic_id, partition)`.
    ///
    /// Fails, leaving the builder unchanged, if `batch` is not exactly one
    /// framed magic-2 batch (`Truncated`, `MultipleBatches`, …) or the
    /// segment would outgrow the format (`Overflow`).
    pub fn push_batch(
        &mut self,
        topic_id: [u8; 16],
        partition: u32,
        batch: Bytes,
    ) -> Result<(), SegmentError> {
        let header = frame_one(&batch)?;
        self.check_capacity(topic_id, partition, 1)?;
        self.add(topic_id, partition, &header, batch);
        Ok(())
    }

    /// Adds several batches for `(topic_id, partition)`, all or nothing.
    pub fn push_chunk(
        &mut self,
        topic_id: [u8; 16],
        partition: u32,
        batches: &[Bytes],
    ) -> Result<(), SegmentError> {
        let headers = batches
            .iter()
            .map(|batch| frame_one(batch))
            .collect::<Result<Vec<_>, _>>()?;
        self.check_capacity(topic_id, partition, batches.len())?;
        for (header, batch) in headers.iter().zip(batches) {
            self.add(topic_id, partition, header, batch.clone());
        }
        Ok(())
    }

    /// Lays out the object: chunk data, then footer and trailer. Returns the
    /// object and its index entries (also encoded in the footer).
    pub fn finish(self) -> (Bytes, Vec<ChunkIndexEntry>) {
        let (parts, entries) = self.finish_parts();
        let mut object = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
        for part in &parts {
            object.extend_from_slice(part);
        }
        (object.freeze(), entries)
    }

    /// Like [`SegmentBuilder::finish`] but without copying: the object is
    /// the concatenation of the returned parts (the batches as pushed, then
    /// the footer), ready for a multi-part or vectored upload.
    pub fn finish_parts(self) -> (Vec<Bytes>, Vec<ChunkIndexEntry>) {
        let mut parts = Vec::new();
        let mut entries = Vec::with_capacity(self.chunks.len());
        let mut position = 0_u64;
        for chunk in self.chunks.into_values() {
            let mut entry = chunk.summary;
            entry.position = position;
            entry.chunk_crc32c = chunk
                .batches
                .iter()
                .fold(0, |crc, batch| crc32c::crc32c_append(crc, batch));
            position += entry.length;
            parts.extend(chunk.batches);
            entries.push(entry);
        }
        let mut footer = BytesMut::with_capacity(4 + entries.len() * ENTRY_LEN + TRAILER_LEN);
        encode_footer(&entries, &mut footer);
        parts.push(footer.freeze());
        (parts, entries)
    }

    /// Refuses pushes that would overflow the footer's counters.
    fn check_capacity(
        &self,
        topic_id: [u8; 16],
        partition: u32,
        batches: usize,
    ) -> Result<(), SegmentError> {
        let existing = self.chunks.get(&(topic_id, partition));
        if existing.is_none() && self.chunks.len() >= MAX_ENTRIES {
            return Err(SegmentError::Overflow);
        }
        let batch_count = existing.map_or(0, |chunk| chunk.batches.len());
        match batch_count.checked_add(batches).map(u32::try_from) {
            Some(Ok(_)) => Ok(()),
            _ => Err(SegmentError::Overflow),
        }
    }

    fn add(&mut self, topic_id: [u8; 16], partition: u32, header: &BatchHeader, batch: Bytes) {
        let length = batch.len() as u64;
        let chunk = self
            .chunks
            .entry((topic_id, partition))
            .or_insert_with(|| Chunk {
                batches: Vec::new(),
                summary: first_summary(topic_id, partition, header),
            });
        let summary = &mut chunk.summary;
        summary.length += length;
        summary.batch_count += 1;
        summary.offset_count = summary.offset_count.saturating_add(offset_count(header));
        summary.min_timestamp = summary.min_timestamp.min(min_timestamp(header));
        summary.max_timestamp = summary.max_timestamp.max(header.max_timestamp);
        chunk.batches.push(batch);
        self.data_len += length;
    }
}

/// Summary of an empty chunk whose first batch is `header`.
fn first_summary(topic_id: [u8; 16], partition: u32, header: &BatchHeader) -> ChunkIndexEntry {
    ChunkIndexEntry {
        topic_id,
        partition,
        position: 0,
        length: 0,
        batch_count: 0,
        offset_count: 0,
        min_timestamp: i64::MAX,
        max_timestamp: i64::MIN,
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        chunk_crc32c: 0,
    }
}

/// The earliest timestamp a batch's records can report.
fn min_timestamp(header: &BatchHeader) -> i64 {
    if header.timestamp_type_log_append() {
        header.max_timestamp
    } else {
        header.base_timestamp
    }
}

/// `last_offset_delta + 1`, which framing keeps non-negative for stored batches.
fn offset_count(header: &BatchHeader) -> u64 {
    u64::try_from(header.offset_count()).unwrap_or(0)
}

/// Parses `batch` as exactly one whole, stored-valid batch.
fn frame_one(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let (header, len) = frame(batch)?;
    if len != batch.len() {
        return Err(BatchError::MultipleBatches);
    }
    check_stored(&header)?;
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::footer::Footer;
    use crate::patch::patch_batches;
    use crate::testing::{KeyValue, build_batch};
    use crate::validate::{Limits, split_and_validate};

    const TOPIC_A: [u8; 16] = [0xa; 16];
    const TOPIC_B: [u8; 16] = [0xb; 16];

    fn batch(records: usize, timestamp: i64, sequence: i32) -> Bytes {
        let records: Vec<KeyValue<'_>> = vec![(None, Some(b"value")); records];
        build_batch(&records, timestamp, Some((5, 0, sequence)))
    }

    #[test]
    fn groups_batches_by_partition_and_round_trips() {
        // Goal: interleaved pushes come out as one contiguous chunk per
        // partition, and the footer read back equals what finish returned.
        let mut builder = SegmentBuilder::new();
        builder.push_batch(TOPIC_B, 0, batch(2, 100, 0)).unwrap();
        builder.push_batch(TOPIC_A, 1, batch(1, 50, 0)).unwrap();
        builder.push_batch(TOPIC_B, 0, batch(3, 90, 2)).unwrap();
        assert_eq!(builder.chunk_count(), 2);
        let (object, entries) = builder.finish();
        let footer = Footer::parse(&object).unwrap();
        assert_eq!(footer.entries(), entries);
        let b = footer.find(TOPIC_B, 0).unwrap();
        assert_eq!((b.batch_count, b.offset_count), (2, 5));
        assert_eq!((b.min_timestamp, b.max_timestamp), (90, 101));
        assert_eq!((b.producer_id, b.base_sequence), (5, 0));
        let mut chunk = b.extract(&object).unwrap().to_vec();
        assert_eq!(patch_batches(&mut chunk, 10), Ok(15));
    }

    #[test]
    fn stored_batches_still_validate() {
        let mut builder = SegmentBuilder::new();
        builder.push_chunk(TOPIC_A, 7, &[batch(4, 1, 0)]).unwrap();
        let (object, entries) = builder.finish();
        let chunk = entries[0].extract(&object).unwrap();
        assert_eq!(
            split_and_validate(&chunk, &Limits::default())
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn push_chunk_is_all_or_nothing() {
        let mut builder = SegmentBuilder::new();
        let good = batch(1, 0, 0);
        let bad = good.slice(..good.len() - 1);
        assert!(builder.push_chunk(TOPIC_A, 0, &[good, bad]).is_err());
        assert!(builder.is_empty());
        assert_eq!(builder.data_len(), 0);
    }

    #[test]
    fn finish_parts_concatenate_to_finish() {
        let make = || {
            let mut builder = SegmentBuilder::new();
            builder.push_batch(TOPIC_A, 0, batch(1, 0, 0)).unwrap();
            builder.push_batch(TOPIC_A, 2, batch(2, 0, 0)).unwrap();
            builder
        };
        let (parts, _) = make().finish_parts();
        let (object, _) = make().finish();
        assert_eq!(parts.concat(), object.to_vec());
    }

    #[test]
    fn empty_segment_is_valid() {
        let (object, entries) = SegmentBuilder::new().finish();
        assert!(entries.is_empty());
        assert_eq!(Footer::parse(&object).unwrap().data_len(), 0);
    }
}
