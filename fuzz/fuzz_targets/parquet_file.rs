//! Goal: a corrupt or foreign Parquet file in the Parquet tier (a bad disk
//! cache block, a file written by something else) gives an error, never a
//! panic, when the agent opens it and fetches from it.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use strata_parquet::{InMemoryFile, ParquetTierReader};

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let file = InMemoryFile::new(Bytes::copy_from_slice(data));
        if let Ok(reader) = ParquetTierReader::open(file).await {
            let _ = reader.fetch(reader.first_offset(), 1 << 20).await;
            let _ = reader.fetch(reader.last_offset(), 1).await;
        }
    });
});
