//! Key compaction on one core: a changelog of `keys` keys written 10
//! times each (the latest version wins), as Parquet-tier files, compacted
//! the way the compactor does it (key map over the dirty files, then the
//! rewrite). Reports MB/s of input (uncompressed record bytes and Parquet
//! bytes read) and the space saved.
//!
//! ```text
//! cargo run -p strata-parquet --example key_compaction_bench \
//!     --config 'profile.dev.package.strata-parquet.opt-level=3' -- [keys] [value bytes]
//! ```
//!
//! 1 MB = 10^6 bytes.

#![expect(
    clippy::disallowed_macros,
    reason = "a benchmark program prints its results"
)]

use std::time::Instant;

use bytes::Bytes;
use strata_parquet::{
    CompactedFileWriter, Horizon, KEY_MAP_COLUMNS, KeyMap, PartitionInfo, TxnOutcomes,
    WriteOptions, read_row_groups, retain_latest, write_file,
};
use strata_segment::testing::build_batch;

const VERSIONS: usize = 10;
const RECORDS_PER_BATCH: usize = 100;
/// Keys per Parquet input file (one file per version here, as segments
/// arrive over time).
const FILES: usize = VERSIONS;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let value_bytes: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let info = PartitionInfo {
        topic: "bench".into(),
        topic_id: [9; 16],
        partition: 0,
    };
    // Input: one Parquet file per version, every key once per version.
    let mut files = Vec::new();
    let mut raw_bytes = 0_usize;
    let mut offset = 0_i64;
    for version in 0..FILES {
        let mut chunk = Vec::new();
        for start in (0..keys).step_by(RECORDS_PER_BATCH) {
            let records: Vec<(Vec<u8>, Vec<u8>)> = (start..(start + RECORDS_PER_BATCH).min(keys))
                .map(|k| {
                    let key = format!("key-{k:09}").into_bytes();
                    // Hex digits of an LCG: about 2:1 compressible, like text.
                    let mut state = (k * VERSIONS + version) as u64 + 1;
                    let mut value = format!("{k}-v{version}-").into_bytes();
                    while value.len() < value_bytes {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        value.push(b"0123456789abcdef"[(state >> 60) as usize]);
                    }
                    (key, value)
                })
                .collect();
            let refs: Vec<strata_segment::testing::KeyValue<'_>> = records
                .iter()
                .map(|(k, v)| (Some(k.as_slice()), Some(v.as_slice())))
                .collect();
            let batch = build_batch(&refs, 1_700_000_000_000, None);
            raw_bytes += batch.len();
            chunk.extend_from_slice(&batch);
        }
        let (file, _) = write_file(
            info.clone(),
            &[(offset, Bytes::from(chunk))],
            WriteOptions::default(),
        )?;
        offset += keys as i64;
        files.push(file);
    }
    let parquet_in: usize = files.iter().map(Bytes::len).sum();
    let txns = TxnOutcomes::default();
    let horizon = Horizon {
        now_ms: 1_700_000_000_000,
        delete_retention_ms: 86_400_000,
    };

    let started = Instant::now();
    let mut map = KeyMap::new(usize::MAX);
    for file in &files {
        let (_, groups) = read_row_groups(file.clone(), Some(KEY_MAP_COLUMNS))?;
        for rows in groups {
            map.add_rows(&rows?, &txns)?;
        }
    }
    let map_seconds = started.elapsed().as_secs_f64();
    let mut writer =
        CompactedFileWriter::new(Vec::new(), info, WriteOptions::default(), 0, offset - 1)?;
    for file in &files {
        let (_, groups) = read_row_groups(file.clone(), None)?;
        for rows in groups {
            if let Some(rows) = retain_latest(&rows?, &map, &txns, offset - 1, horizon)?.rows {
                writer.write(&rows)?;
            }
        }
    }
    let (out, summary) = writer.finish()?;
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary.record_count, keys as u64);
    let mb = |bytes: usize| bytes as f64 / 1e6;
    println!(
        "{keys} keys x {VERSIONS} versions, {value_bytes} B values: {:.1} MB of record batches, {:.1} MB of Parquet in {FILES} files",
        mb(raw_bytes),
        mb(parquet_in)
    );
    println!(
        "key compaction: {seconds:.2} s (key map {map_seconds:.2} s): {:.0} MB/s of record bytes, {:.0} MB/s of Parquet read",
        mb(raw_bytes) / seconds,
        mb(parquet_in) / seconds
    );
    println!(
        "output: {:.1} MB in 1 file, {} records; space saved {:.1} % of the Parquet input",
        mb(out.len()),
        summary.record_count,
        100.0 * (1.0 - out.len() as f64 / parquet_in as f64)
    );
    Ok(())
}
