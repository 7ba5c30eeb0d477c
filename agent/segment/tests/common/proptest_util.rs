//! Proptest strategies shared by this crate's property tests.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use strata_segment::testing::{KeyValue, build_batch};

/// One record as `build_batch` takes it: optional key, optional value.
pub type OwnedRecord = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Idempotent producer fields `(producer_id, producer_epoch, base_sequence)`.
pub type Producer = (i64, i16, i32);

/// Up to 64 arbitrary bytes, or null.
pub fn field() -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(vec(any::<u8>(), 0..64))
}

/// Between 1 and 20 records with random keys and values.
pub fn records() -> impl Strategy<Value = Vec<OwnedRecord>> {
    vec((field(), field()), 1..20)
}

/// No producer, or a valid idempotent one (sequences up to `i32::MAX`).
pub fn producer() -> impl Strategy<Value = Option<Producer>> {
    proptest::option::of((0..i64::MAX, 0..i16::MAX, 0..=i32::MAX))
}

/// A valid uncompressed v2 batch, as a client would send it.
pub fn batch() -> impl Strategy<Value = Bytes> {
    (records(), any::<i64>(), producer()).prop_map(|(records, base_timestamp, producer)| {
        let borrowed: Vec<KeyValue<'_>> = records
            .iter()
            .map(|(key, value)| (key.as_deref(), value.as_deref()))
            .collect();
        build_batch(&borrowed, base_timestamp.clamp(0, i64::MAX / 2), producer)
    })
}

/// Batches tagged with one of three topics and one of four partitions,
/// in push order.
pub fn segment_pushes() -> impl Strategy<Value = Vec<([u8; 16], u32, Bytes)>> {
    vec((0_u8..3, 0_u32..4, batch()), 0..12).prop_map(|pushes| {
        pushes
            .into_iter()
            .map(|(topic, partition, batch)| ([topic; 16], partition, batch))
            .collect()
    })
}
