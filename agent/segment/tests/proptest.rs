//! Property tests for every codec in the crate: batch validation, header
//! patching and the segment footer. A decoder must reject garbage with an
//! error and never panic.

#[path = "common/proptest_util.rs"]
mod proptest_util;

use bytes::Bytes;
use proptest::prelude::*;
use strata_segment::{
    BatchError, Footer, Limits, SegmentBuilder, SegmentError, batch_crc, iter_batches,
    patch_batches, read_trailer, set_log_append_time, split_and_validate,
};

fn build(pushes: &[([u8; 16], u32, Bytes)]) -> (Bytes, Vec<strata_segment::ChunkIndexEntry>) {
    let mut builder = SegmentBuilder::new();
    for (topic_id, partition, batch) in pushes {
        builder
            .push_batch(*topic_id, *partition, batch.clone())
            .expect("generated batches are well framed");
    }
    builder.finish()
}

proptest! {
    /// Goal: every batch the helper builds passes validation, zero-copy,
    /// with the header the helper wrote.
    #[test]
    fn valid_batches_are_accepted(batch in proptest_util::batch()) {
        let validated = split_and_validate(&batch, &Limits::default()).unwrap();
        prop_assert_eq!(validated.len(), 1);
        prop_assert_eq!(validated[0].bytes(), &batch);
        prop_assert_eq!(validated[0].header().offset_count(), i64::from(validated[0].header().records_count));
    }

    /// Goal: any single corrupted byte is caught, except in the partition
    /// leader epoch (bytes 12..16), which Kafka ignores on produce.
    /// Method: xor one byte with a non-zero mask and validate.
    #[test]
    fn flipped_bytes_are_rejected(batch in proptest_util::batch(), index in any::<prop::sample::Index>(), mask in 1_u8..) {
        let mut bytes = batch.to_vec();
        let at = index.index(bytes.len());
        bytes[at] ^= mask;
        let result = split_and_validate(&Bytes::from(bytes), &Limits::default());
        if (12..16).contains(&at) {
            prop_assert!(result.is_ok());
        } else {
            let error = result.unwrap_err();
            if at >= 21 {
                prop_assert!(matches!(error, BatchError::CrcMismatch { .. }), "{error:?}");
            }
            prop_assert!([2, 10, 87].contains(&error.kafka_error_code()));
        }
    }

    /// Goal: arbitrary bytes never panic the validator or the patcher.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), offset in any::<i64>()) {
        let _ = split_and_validate(&Bytes::from(bytes.clone()), &Limits::default());
        let mut patched = bytes.clone();
        if patch_batches(&mut patched, offset).is_err() {
            prop_assert_eq!(patched, bytes.clone());
        }
        let mut stamped = bytes;
        let _ = set_log_append_time(&mut stamped, offset);
    }

    /// Goal: patched offsets are consecutive and every CRC still holds.
    #[test]
    fn patch_batches_assigns_consecutive_offsets(
        batches in proptest::collection::vec(proptest_util::batch(), 1..6),
        first in 0..i64::MAX / 2,
    ) {
        let mut buf = batches.concat();
        let next = patch_batches(&mut buf, first).unwrap();
        let mut expected = first;
        for span in iter_batches(&buf) {
            let span = span.unwrap();
            prop_assert_eq!(span.header.base_offset, expected);
            prop_assert_eq!(batch_crc(&buf[span.range.clone()]), span.header.crc);
            expected += span.header.offset_count();
        }
        prop_assert_eq!(next, expected);
    }

    /// Goal: LogAppendTime keeps the batch valid and sets what readers use.
    #[test]
    fn log_append_time_keeps_batches_valid(batch in proptest_util::batch(), now in 0..i64::MAX) {
        let mut bytes = batch.to_vec();
        set_log_append_time(&mut bytes, now).unwrap();
        let validated = split_and_validate(&Bytes::from(bytes), &Limits::default()).unwrap();
        prop_assert!(validated[0].header().timestamp_type_log_append());
        prop_assert_eq!(validated[0].header().max_timestamp, now);
    }

    /// Goal: build → parse gives back the entries, and each chunk holds
    /// exactly its partition's batches in push order.
    #[test]
    fn segment_round_trip(pushes in proptest_util::segment_pushes()) {
        let (object, entries) = build(&pushes);
        let footer = Footer::parse(&object).unwrap();
        prop_assert_eq!(footer.entries(), &entries[..]);
        for entry in &entries {
            let chunk = entry.extract(&object).unwrap();
            let expected: Vec<u8> = pushes
                .iter()
                .filter(|(topic, partition, _)| (*topic, *partition) == (entry.topic_id, entry.partition))
                .flat_map(|(_, _, batch)| batch.to_vec())
                .collect();
            prop_assert_eq!(chunk.to_vec(), expected);
            prop_assert_eq!(iter_batches(&chunk).count(), entry.batch_count as usize);
        }
    }

    /// Goal: a reader holding only a suffix of the object parses the footer
    /// when the suffix covers footer and trailer, and errs otherwise.
    #[test]
    fn suffix_reads(pushes in proptest_util::segment_pushes(), cut in any::<prop::sample::Index>()) {
        let (object, _) = build(&pushes);
        let suffix_len = read_trailer(&object).unwrap().suffix_len() as usize;
        let start = cut.index(object.len() + 1);
        let tail = &object[start..];
        let parsed = Footer::parse_tail(tail, object.len() as u64);
        prop_assert_eq!(parsed.is_ok(), tail.len() >= suffix_len);
    }

    /// Goal: a truncated object is always an error.
    #[test]
    fn truncated_objects_fail(pushes in proptest_util::segment_pushes(), cut in any::<prop::sample::Index>()) {
        let (object, _) = build(&pushes);
        let len = cut.index(object.len());
        prop_assert!(Footer::parse(&object[..len]).is_err());
    }

    /// Goal: one corrupted byte is always caught: in the footer by parsing,
    /// in the data by the chunk CRC of exactly the chunk holding it.
    #[test]
    fn garbled_objects_fail(
        pushes in proptest_util::segment_pushes(),
        index in any::<prop::sample::Index>(),
        mask in 1_u8..,
    ) {
        let (object, entries) = build(&pushes);
        let mut garbled = object.to_vec();
        let at = index.index(garbled.len());
        garbled[at] ^= mask;
        let garbled = Bytes::from(garbled);
        match Footer::parse(&garbled) {
            Err(_) => prop_assert!(at as u64 >= entries.last().map_or(0, |entry| entry.range().end)),
            Ok(footer) => {
                for entry in footer.entries() {
                    let hit = entry.range().contains(&(at as u64));
                    let result = entry.extract(&garbled);
                    prop_assert_eq!(result.is_err(), hit);
                    if hit {
                        prop_assert_eq!(result.unwrap_err(), SegmentError::ChunkMismatch);
                    }
                }
            }
        }
    }

    /// Goal: arbitrary bytes, alone or behind a valid trailer magic, never
    /// panic the footer parser.
    #[test]
    fn garbage_footers_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        object_len in any::<u64>(),
    ) {
        let _ = Footer::parse(&bytes);
        let _ = Footer::parse_tail(&bytes, object_len);
        let mut with_magic = bytes;
        with_magic.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
        with_magic.extend_from_slice(b"STRSEG");
        let _ = Footer::parse(&with_magic);
        let _ = Footer::parse_tail(&with_magic, object_len);
    }
}
