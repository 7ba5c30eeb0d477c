//! In-place header patches that never re-encode records.
//!
//! `base_offset` and `partition_leader_epoch` lie outside the CRC, so
//! patching them is a plain store. LogAppendTime changes `attributes` and
//! `max_timestamp`, which the CRC covers, so that patch recomputes CRC32C
//! (one pass over the batch, still far cheaper than re-encoding).

use crate::batch::{
    ATTRIBUTES_OFFSET, BASE_OFFSET_OFFSET, BATCH_HEADER_LEN, BatchHeader, CRC_OFFSET,
    MAX_TIMESTAMP_OFFSET, PARTITION_LEADER_EPOCH_OFFSET, batch_crc, check_stored, iter_batches,
};
use crate::error::BatchError;

const TIMESTAMP_TYPE_BIT: i16 = 0x08;

/// Writes `base_offset` into the header of the batch at the start of `batch`.
///
/// Fails only when `batch` is shorter than a header. The CRC stays valid.
pub fn patch_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    put(batch, BASE_OFFSET_OFFSET, &base_offset.to_be_bytes())
}

/// Writes `epoch` as the partition leader epoch of the batch at the start of `batch`.
///
/// Fails only when `batch` is shorter than a header. The CRC stays valid.
pub fn patch_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    put(batch, PARTITION_LEADER_EPOCH_OFFSET, &epoch.to_be_bytes())
}

/// Marks `batch` (exactly one whole batch) as LogAppendTime `now_ms`.
///
/// As Kafka's `DefaultRecordBatch.setMaxTimestamp`: sets attribute bit 3,
/// sets `max_timestamp = now_ms`, keeps `base_timestamp` and the record
/// deltas (readers give every record `max_timestamp` under LogAppendTime),
/// and recomputes the CRC. A no-op when both already hold.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len() != Some(batch.len()) {
        return Err(BatchError::Truncated {
            needed: header.total_len().unwrap_or(BATCH_HEADER_LEN),
            available: batch.len(),
        });
    }
    if header.timestamp_type_log_append() && header.max_timestamp == now_ms {
        return Ok(());
    }
    let attributes = header.attributes | TIMESTAMP_TYPE_BIT;
    put(batch, ATTRIBUTES_OFFSET, &attributes.to_be_bytes())?;
    put(batch, MAX_TIMESTAMP_OFFSET, &now_ms.to_be_bytes())?;
    put(batch, CRC_OFFSET, &batch_crc(batch).to_be_bytes())
}

/// Assigns consecutive base offsets to the concatenated batches in `buf`,
/// starting at `first_offset`: batch `i + 1` starts at batch `i`'s base plus
/// its [`BatchHeader::offset_count`]. Returns the offset after the last batch.
///
/// The whole buffer is checked before anything is written, so on error
/// (bad framing, magic other than 2, negative offset delta, overflow) `buf`
/// is unchanged. Never panics.
pub fn patch_batches(buf: &mut [u8], first_offset: i64) -> Result<i64, BatchError> {
    let mut plan = Vec::new();
    let mut next = first_offset;
    for span in iter_batches(buf) {
        let span = span?;
        check_stored(&span.header)?;
        plan.push((span.range.start, next));
        next = next
            .checked_add(span.header.offset_count())
            .ok_or(BatchError::OffsetOverflow)?;
    }
    for (start, base_offset) in plan {
        let batch = buf.get_mut(start..).unwrap_or_default();
        patch_base_offset(batch, base_offset)?;
    }
    Ok(next)
}

/// Copies `value` to `buf[at..]`, failing if the batch header is not all there.
fn put(buf: &mut [u8], at: usize, value: &[u8]) -> Result<(), BatchError> {
    if buf.len() < BATCH_HEADER_LEN {
        return Err(BatchError::Truncated {
            needed: BATCH_HEADER_LEN,
            available: buf.len(),
        });
    }
    let end = at + value.len();
    let target = buf.get_mut(at..end).ok_or(BatchError::Truncated {
        needed: end,
        available: 0,
    })?;
    target.copy_from_slice(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::testing::{KeyValue, build_batch};
    use crate::validate::{Limits, split_and_validate};

    const RECORDS: &[KeyValue<'static>] = &[(Some(b"a"), None), (None, Some(b"b")), (None, None)];

    #[test]
    fn base_offset_and_epoch_keep_the_crc_valid() {
        let mut batch = build_batch(RECORDS, 10, None).to_vec();
        patch_partition_leader_epoch(&mut batch, 4).unwrap();
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.partition_leader_epoch, 4);
        patch_base_offset(&mut batch, 1234).unwrap();
        let header = BatchHeader::parse(&batch).unwrap();
        assert_eq!(header.base_offset, 1234);
        assert_eq!(header.crc, batch_crc(&batch));
    }

    #[test]
    fn short_buffers_are_errors() {
        assert!(patch_base_offset(&mut [0; 8], 1).is_err());
        assert!(patch_partition_leader_epoch(&mut [], 1).is_err());
        assert!(set_log_append_time(&mut [0; 70], 1).is_err());
    }

    #[test]
    fn log_append_time_sets_bit_max_timestamp_and_crc() {
        let mut batch = build_batch(RECORDS, 10, Some((3, 0, 0))).to_vec();
        set_log_append_time(&mut batch, 99).unwrap();
        let header = BatchHeader::parse(&batch).unwrap();
        assert!(header.timestamp_type_log_append());
        assert_eq!((header.base_timestamp, header.max_timestamp), (10, 99));
        assert!(split_and_validate(&Bytes::from(batch), &Limits::default()).is_ok());
    }

    #[test]
    fn patch_batches_assigns_consecutive_offsets() {
        let parts = [
            build_batch(RECORDS, 0, None),
            build_batch(&RECORDS[..1], 0, None),
        ];
        let mut buf = parts.concat();
        assert_eq!(patch_batches(&mut buf, 100), Ok(104));
        let bases: Vec<i64> = iter_batches(&buf)
            .map(|span| span.unwrap().header.base_offset)
            .collect();
        assert_eq!(bases, [100, 103]);
    }

    #[test]
    fn patch_batches_leaves_buffer_unchanged_on_error() {
        let mut buf = [build_batch(RECORDS, 0, None).to_vec(), vec![0; 5]].concat();
        let before = buf.clone();
        assert!(matches!(
            patch_batches(&mut buf, 7),
            Err(BatchError::Truncated { .. })
        ));
        assert_eq!(buf, before);
        let mut buf = build_batch(RECORDS, 0, None).to_vec();
        assert_eq!(
            patch_batches(&mut buf, i64::MAX - 1),
            Err(BatchError::OffsetOverflow)
        );
    }
}
