//! Transaction control batches (COMMIT / ABORT markers), built from a
//! marker's fields: the catalog stores markers as index entries without
//! bytes, and readers synthesize the batch Kafka clients expect.

use crate::batch::{ATTRIBUTES_OFFSET, BATCH_HEADER_LEN, CRC_OFFSET, LOG_OVERHEAD, MAGIC_V2};

/// Attributes of a control batch: transactional and control, no
/// compression, CreateTime.
const CONTROL_ATTRIBUTES: i16 = 0x10 | 0x20;

/// The one record of a control batch: length 16 (varint), attributes,
/// timestamp delta 0, offset delta 0, key length 4 (zigzag varint 8),
/// key, value length 6 (zigzag varint 12), value, no headers.
const RECORD_LEN: usize = 17;

/// The size of every control batch [`control_batch`] builds.
pub const CONTROL_BATCH_LEN: usize = BATCH_HEADER_LEN + RECORD_LEN;

/// A marker's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlMarker {
    /// The producer whose transaction the marker ends.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
    /// The transaction coordinator's epoch.
    pub coordinator_epoch: i32,
    /// COMMIT when true, ABORT when false.
    pub commit: bool,
    /// The marker's timestamp (ms).
    pub timestamp: i64,
}

/// A v2 control batch at `base_offset` holding one marker record: key =
/// version 0 + type (0 ABORT, 1 COMMIT), value = version 0 + coordinator
/// epoch, as Kafka's `EndTransactionMarker` writes it; CRC32C included.
pub fn control_batch(base_offset: i64, marker: &ControlMarker) -> Vec<u8> {
    let mut out = Vec::with_capacity(CONTROL_BATCH_LEN);
    out.extend_from_slice(&base_offset.to_be_bytes());
    let batch_length = i32::try_from(CONTROL_BATCH_LEN - LOG_OVERHEAD).expect("a small constant");
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    out.push(MAGIC_V2 as u8);
    out.extend_from_slice(&0u32.to_be_bytes()); // CRC, set below
    out.extend_from_slice(&CONTROL_ATTRIBUTES.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    out.extend_from_slice(&marker.timestamp.to_be_bytes()); // base timestamp
    out.extend_from_slice(&marker.timestamp.to_be_bytes()); // max timestamp
    out.extend_from_slice(&marker.producer_id.to_be_bytes());
    out.extend_from_slice(&marker.producer_epoch.to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    out.extend_from_slice(&1i32.to_be_bytes()); // record count
    // The record; every varint here fits in one byte (zigzag doubles).
    out.push(((RECORD_LEN - 1) * 2) as u8);
    out.push(0); // attributes
    out.push(0); // timestamp delta
    out.push(0); // offset delta
    out.push(4 * 2); // key length
    out.extend_from_slice(&0i16.to_be_bytes()); // key version
    out.extend_from_slice(&i16::from(marker.commit).to_be_bytes());
    out.push(6 * 2); // value length
    out.extend_from_slice(&0i16.to_be_bytes()); // value version
    out.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    out.push(0); // header count
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchHeader, batch_crc};

    #[test]
    fn control_batches_parse_as_kafka_markers() {
        let marker = ControlMarker {
            producer_id: 42,
            producer_epoch: 3,
            coordinator_epoch: 7,
            commit: true,
            timestamp: 1_700_000_000_000,
        };
        let batch = control_batch(100, &marker);
        assert_eq!(batch.len(), CONTROL_BATCH_LEN);
        let header = BatchHeader::parse(&batch).expect("a valid header");
        assert_eq!(header.base_offset, 100);
        assert!(header.is_control() && header.is_transactional());
        assert_eq!(header.offset_count(), 1);
        assert_eq!(header.total_len(), Some(CONTROL_BATCH_LEN));
        assert_eq!(header.crc, batch_crc(&batch));
        // Key: version 0, type 1 (COMMIT); value: version 0, epoch 7.
        let record = &batch[BATCH_HEADER_LEN..];
        assert_eq!(record[0], 32, "record length 16, zigzag");
        assert_eq!(&record[5..9], &[0, 0, 0, 1]);
        assert_eq!(&record[10..16], &[0, 0, 0, 0, 0, 7]);
        let abort = control_batch(
            100,
            &ControlMarker {
                commit: false,
                ..marker
            },
        );
        assert_eq!(
            &abort[BATCH_HEADER_LEN + 5..BATCH_HEADER_LEN + 9],
            &[0, 0, 0, 0]
        );
    }
}
