//! Goal: compaction never panics on any stored chunk bytes (produce does
//! not decompress, so a compressed batch body reaches the compactor
//! unchecked), and whatever it accepts reads back through the Parquet tier
//! from the first offset.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strata_parquet::{InMemoryFile, ParquetTierReader, PartitionInfo, WriteOptions, write_file};

fuzz_target!(|data: &[u8]| {
    let info = PartitionInfo {
        topic: "fuzz".to_string(),
        topic_id: [7; 16],
        partition: 0,
    };
    let chunk = Bytes::copy_from_slice(data);
    let Ok((file, summary)) = write_file(info, &[(0, chunk)], WriteOptions::default()) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let reader = ParquetTierReader::open(InMemoryFile::new(file))
            .await
            .expect("a file the writer produced opens");
        let fetched = reader
            .fetch(reader.first_offset(), usize::MAX)
            .await
            .expect("a file the writer produced reads");
        assert_eq!(fetched.batch_count as u64, summary.batch_count);
    });
});
