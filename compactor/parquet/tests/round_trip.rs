//! Property tests: arbitrary stored batches -> Parquet -> fetch gives back
//! the same batches, byte for byte, except that they are uncompressed.

mod common;

use common::{block_on, chunks, expected_batches, stored_chunks};
use proptest::prelude::*;
use strata_parquet::{InMemoryFile, ParquetTierReader, PartitionInfo, WriteOptions, write_file};
use strata_segment::{batch_crc, iter_batches};

fn info() -> PartitionInfo {
    PartitionInfo {
        topic: "orders".into(),
        topic_id: [3; 16],
        partition: 2,
    }
}

/// What a broker returns for a fetch at `offset` with `max_bytes`: the
/// batches from the first one ending at or after `offset`, adding each next
/// batch while the total stays within `max_bytes`, the first always.
fn expected_fetch(batches: &[(i64, i64, Vec<u8>)], offset: i64, max_bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (_, _, bytes) in batches.iter().skip_while(|(_, last, _)| *last < offset) {
        if !out.is_empty() && out.len() + bytes.len() > max_bytes {
            break;
        }
        out.extend_from_slice(bytes);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Goal: every header field and record survives the Parquet tier, for
    /// all codecs, LogAppendTime, transactional and control batches, any
    /// row group and page size. Method: the expected bytes come from an
    /// independent encoder (tests/common) over the generated specs; the
    /// fetch from the first offset returns all of them, fetches from random
    /// offsets with random budgets return what a broker would.
    #[test]
    fn batches_survive_the_parquet_tier(
        chunks in chunks(),
        row_group_bytes in prop_oneof![Just(16_usize << 20), 1_usize..4096],
        data_page_bytes in prop_oneof![Just(1_usize << 20), 64_usize..1024],
        fetches in proptest::collection::vec((any::<prop::sample::Index>(), 1_usize..3000), 1..6),
    ) {
        let options = WriteOptions { row_group_bytes, data_page_bytes, ..WriteOptions::default() };
        let expected = expected_batches(&chunks);
        let (file, summary) = write_file(info(), &stored_chunks(&chunks), options).unwrap();
        let first = expected[0].0;
        let last = expected[expected.len() - 1].1;
        prop_assert_eq!((summary.first_offset, summary.last_offset), (first, last));
        prop_assert_eq!(summary.batch_count, expected.len() as u64);

        block_on(async {
            let reader = ParquetTierReader::open(InMemoryFile::new(file)).await.unwrap();
            let all = reader.fetch(first, usize::MAX).await.unwrap();
            let all_expected: Vec<u8> = expected.iter().flat_map(|b| b.2.clone()).collect();
            prop_assert_eq!(&all.records[..], &all_expected[..]);
            prop_assert_eq!(all.next_offset, last + 1);
            prop_assert_eq!(all.batch_count, expected.len());
            for span in iter_batches(&all.records) {
                let span = span.unwrap();
                prop_assert_eq!(span.header.crc, batch_crc(&all.records[span.range]));
            }
            for (pick, max_bytes) in fetches {
                let offset = first + pick.index(usize::try_from(last - first + 1).unwrap()) as i64;
                let fetched = reader.fetch(offset, max_bytes).await.unwrap();
                let want = expected_fetch(&expected, offset, max_bytes);
                prop_assert_eq!(&fetched.records[..], &want[..], "offset {}, max {}", offset, max_bytes);
            }
            prop_assert!(reader.fetch(last + 1, 1).await.is_err());
            prop_assert!(reader.fetch(first - 1, 1).await.is_err());
            Ok(())
        })?;
    }
}
