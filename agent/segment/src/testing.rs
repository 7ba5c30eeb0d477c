//! Builders for valid v2 record batches, for tests in this and other crates.
//!
//! Enabled by the `test-util` feature. Batches are uncompressed, records
//! carry no headers, and record `i` has timestamp `base_timestamp + i`.

use bytes::Bytes;

use crate::batch::{
    BATCH_HEADER_LEN, BatchHeader, CRC_OFFSET, LOG_OVERHEAD, MAGIC_V2, NO_PRODUCER_ID, batch_crc,
};
use crate::records::encode_record;

/// One record for [`build_batch`]: optional key, optional value.
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// Builds a valid, uncompressed v2 batch holding `records` (key, value).
///
/// `producer` is `(producer_id, producer_epoch, base_sequence)` for an
/// idempotent batch, or `None` for a plain one. The base offset is 0 and the
/// partition leader epoch -1, as a client sends them. An empty `records`
/// gives a batch with `records_count` 0, which validation rejects.
pub fn build_batch(
    records: &[KeyValue<'_>],
    base_timestamp: i64,
    producer: Option<(i64, i16, i32)>,
) -> Bytes {
    let mut body = Vec::new();
    for (delta, (key, value)) in records.iter().enumerate() {
        encode_record(
            &mut body,
            i32::try_from(delta).unwrap_or(i32::MAX),
            *key,
            *value,
        );
    }
    let count = i32::try_from(records.len()).unwrap_or(i32::MAX);
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((NO_PRODUCER_ID, -1, -1));
    let header = BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: MAGIC_V2,
        crc: 0,
        attributes: 0,
        last_offset_delta: count - 1,
        base_timestamp,
        max_timestamp: base_timestamp.saturating_add(i64::from(count.max(1) - 1)),
        producer_id,
        producer_epoch,
        base_sequence,
        records_count: count,
    };
    build_raw_batch(&header, &body)
}

/// Serialises `header` followed by `body`, computing `batch_length` and the
/// CRC (the header's own values for those two fields are ignored).
///
/// Use it to craft batches that break one rule while keeping a valid CRC.
pub fn build_raw_batch(header: &BatchHeader, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    let batch_length =
        i32::try_from(BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()).unwrap_or(i32::MAX);
    out.extend_from_slice(&header.base_offset.to_be_bytes());
    out.extend_from_slice(&batch_length.to_be_bytes());
    out.extend_from_slice(&header.partition_leader_epoch.to_be_bytes());
    out.extend_from_slice(&header.magic.to_be_bytes());
    out.extend_from_slice(&0_u32.to_be_bytes());
    out.extend_from_slice(&header.attributes.to_be_bytes());
    out.extend_from_slice(&header.last_offset_delta.to_be_bytes());
    out.extend_from_slice(&header.base_timestamp.to_be_bytes());
    out.extend_from_slice(&header.max_timestamp.to_be_bytes());
    out.extend_from_slice(&header.producer_id.to_be_bytes());
    out.extend_from_slice(&header.producer_epoch.to_be_bytes());
    out.extend_from_slice(&header.base_sequence.to_be_bytes());
    out.extend_from_slice(&header.records_count.to_be_bytes());
    out.extend_from_slice(body);
    let crc = batch_crc(&out);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(out)
}
