//! Bad input gives an error, never a panic: corrupt or truncated Parquet
//! files on the read side, malformed stored batches on the write side.

#[expect(dead_code, reason = "this test uses a subset of the helpers")]
mod common;

use bytes::Bytes;
use common::{block_on, chunks, stored_chunks};
use proptest::prelude::*;
use strata_parquet::{
    Error, InMemoryFile, ParquetTierReader, PartitionInfo, WriteOptions, write_file,
};
use strata_segment::testing::build_batch;

fn info() -> PartitionInfo {
    PartitionInfo {
        topic: "t".into(),
        topic_id: [1; 16],
        partition: 0,
    }
}

/// Opens `file` and fetches from every offset in `offsets`; any outcome
/// but a panic is fine.
fn read_all(file: Bytes, offsets: &[i64]) {
    block_on(async {
        let Ok(reader) = ParquetTierReader::open(InMemoryFile::new(file)).await else {
            return;
        };
        for offset in offsets {
            let _ = reader.fetch(*offset, 1 << 20).await;
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Goal: a truncated file or one with flipped bytes is an error or
    /// wrong data, never a panic. Method: corrupt a valid file at random.
    #[test]
    fn corrupt_files_do_not_panic(
        chunks in chunks(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 1_u8..=255), 0..4),
    ) {
        let (file, summary) = write_file(info(), &stored_chunks(&chunks), WriteOptions {
            row_group_bytes: 2048,
            data_page_bytes: 256,
            ..WriteOptions::default()
        }).unwrap();
        let offsets = [summary.first_offset, (summary.first_offset + summary.last_offset) / 2];
        let mut bytes = file.to_vec();
        for (at, mask) in &flips {
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
        }
        if flips.is_empty() {
            bytes.truncate(cut.index(bytes.len()));
        }
        read_all(Bytes::from(bytes), &offsets);
    }

    /// Goal: a stored chunk with garbage after a valid header is an error.
    #[test]
    fn malformed_chunks_are_errors(tail in proptest::collection::vec(any::<u8>(), 0..200), codec in 0_i16..8) {
        let mut batch = build_batch(&[(Some(b"k"), Some(b"v"))], 0, None).to_vec();
        batch.truncate(61);
        batch.extend_from_slice(&tail);
        let length = i32::try_from(batch.len() - 12).unwrap();
        batch[8..12].copy_from_slice(&length.to_be_bytes());
        batch[21..23].copy_from_slice(&codec.to_be_bytes());
        let result = write_file(info(), &[(0, Bytes::from(batch))], WriteOptions::default());
        // Random bytes may by chance be one valid record; anything else fails.
        if let Err(error) = result {
            prop_assert!(matches!(
                error,
                Error::Record { .. } | Error::RecordCount { .. } | Error::Decompress { .. }
            ), "{error}");
        }
    }
}

#[test]
fn garbage_and_foreign_files_are_errors() {
    // Goal: not-Parquet bytes and a Parquet file without our metadata are
    // refused with an error. Method: feed both to the reader.
    block_on(async {
        for garbage in [&b""[..], b"PAR1", b"PAR1\0\0\0\0PAR1", &[0xff; 100]] {
            let result =
                ParquetTierReader::open(InMemoryFile::new(Bytes::from_static(garbage))).await;
            assert!(result.is_err());
        }
        let column: arrow_array::ArrayRef =
            std::sync::Arc::new(arrow_array::Int64Array::from(vec![1, 2]));
        let batch = arrow_array::RecordBatch::try_from_iter([("offset", column)]).unwrap();
        let mut foreign = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut foreign, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        let result = ParquetTierReader::open(InMemoryFile::new(Bytes::from(foreign))).await;
        assert!(matches!(result, Err(Error::Format { .. })));
    });
    let out_of_order = [
        (10, build_batch(&[(None, Some(b"a"))], 0, None)),
        (5, build_batch(&[(None, Some(b"b"))], 0, None)),
    ];
    assert!(matches!(
        write_file(info(), &out_of_order, WriteOptions::default()),
        Err(Error::OffsetOrder {
            expected_at_least: 11,
            found: 5
        })
    ));
    assert!(matches!(
        write_file(info(), &[], WriteOptions::default()),
        Err(Error::Empty)
    ));
}
