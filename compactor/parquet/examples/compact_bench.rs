//! Throughput of the Parquet tier on one core: compaction (stored batches
//! -> Parquet) and fetch (Parquet -> rebuilt batches), 1 KiB records.
//!
//! Run (optimise this crate; its dependencies already are in dev builds):
//!
//! ```text
//! cargo run -p strata-parquet --example compact_bench \
//!     --config 'profile.dev.package.strata-parquet.opt-level=3' -- [MiB] [codec]
//! ```
//!
//! `codec` is `none` (default) or `lz4`, as a producer would send.
//! MB/s counts the uncompressed record batch bytes (1 MB = 10^6 bytes).

#![expect(
    clippy::disallowed_macros,
    reason = "a benchmark program prints its results"
)]

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Lz4};
use strata_parquet::{InMemoryFile, ParquetTierReader, PartitionInfo, WriteOptions, write_file};
use strata_segment::testing::{build_batch, build_raw_batch};
use strata_segment::{BATCH_HEADER_LEN, BatchHeader};

/// Result of the example's steps.
type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const RECORDS_PER_BATCH: usize = 100;
const RECORD_BYTES: usize = 1024;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(Ok(256), |a| a.parse())?;
    let lz4 = args.next().as_deref() == Some("lz4");
    let (chunks, raw_bytes) = input(mib, lz4)?;
    let stored: usize = chunks.iter().map(|(_, c)| c.len()).sum();
    let info = PartitionInfo {
        topic: "bench".into(),
        topic_id: [9; 16],
        partition: 0,
    };

    let started = Instant::now();
    let (file, summary) = write_file(info, &chunks, WriteOptions::default())?;
    let write_seconds = started.elapsed().as_secs_f64();

    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let started = Instant::now();
    let fetched_bytes = runtime.block_on(async {
        let reader = ParquetTierReader::open(InMemoryFile::new(file.clone())).await?;
        let mut offset = reader.first_offset();
        let mut total = 0;
        while offset <= reader.last_offset() {
            let fetched = reader.fetch(offset, 1 << 20).await?;
            total += fetched.records.len();
            offset = fetched.next_offset;
        }
        Ok::<_, strata_parquet::Error>(total)
    })?;
    let read_seconds = started.elapsed().as_secs_f64();

    let mb = raw_bytes as f64 / 1e6;
    println!(
        "input: {} records of {RECORD_BYTES} B in {} batches, {:.1} MB uncompressed, {:.1} MB stored ({})",
        summary.record_count,
        summary.batch_count,
        mb,
        stored as f64 / 1e6,
        if lz4 { "lz4" } else { "none" },
    );
    println!(
        "parquet: {:.1} MB, {} row groups",
        summary.file_bytes as f64 / 1e6,
        summary.row_group_count
    );
    println!(
        "compaction: {:.0} MB/s ({write_seconds:.2} s, one core)",
        mb / write_seconds
    );
    println!(
        "fetch: {:.0} MB/s ({read_seconds:.2} s, 1 MiB fetches, {:.1} MB returned)",
        fetched_bytes as f64 / 1e6 / read_seconds,
        fetched_bytes as f64 / 1e6
    );
    Ok(())
}

/// Chunks of 10 batches of 100 records with 1 KiB text-like values (they
/// compress about 2:1, like JSON events).
fn input(mib: usize, lz4: bool) -> BenchResult<(Vec<(i64, Bytes)>, usize)> {
    let words: Vec<&[u8]> = [
        &b"user"[..],
        b"click",
        b"id",
        b"\"page\":",
        b"2024",
        b"session",
        b"{",
        b"}",
        b"ok",
    ]
    .into();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut value = || {
        let mut out = Vec::with_capacity(RECORD_BYTES);
        while out.len() < RECORD_BYTES {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            out.extend_from_slice(words[(seed % words.len() as u64) as usize]);
            out.extend_from_slice(&seed.to_le_bytes()[..2]);
        }
        out.truncate(RECORD_BYTES);
        out
    };
    let batch_count = (mib << 20) / (RECORDS_PER_BATCH * RECORD_BYTES);
    let mut chunks = Vec::new();
    let mut raw_bytes = 0;
    let mut offset = 0;
    for batches in (0..batch_count).collect::<Vec<_>>().chunks(10) {
        let mut chunk = Vec::new();
        for batch in batches {
            let values: Vec<Vec<u8>> = (0..RECORDS_PER_BATCH).map(|_| value()).collect();
            let key = format!("key-{batch}");
            let records: Vec<_> = values
                .iter()
                .map(|v| (Some(key.as_bytes()), Some(v.as_slice())))
                .collect();
            let plain = build_batch(&records, 1_700_000_000_000 + *batch as i64, Some((1, 0, 0)));
            raw_bytes += plain.len();
            chunk.extend_from_slice(&if lz4 { compress(&plain)? } else { plain });
        }
        let offsets = (batches.len() * RECORDS_PER_BATCH) as i64;
        chunks.push((offset, Bytes::from(chunk)));
        offset += offsets;
    }
    Ok((chunks, raw_bytes))
}

fn compress(plain: &Bytes) -> Result<Bytes, Box<dyn std::error::Error>> {
    let header = BatchHeader::parse(plain)?;
    let mut body = BytesMut::new();
    Lz4::compress(&mut body, |buf: &mut BytesMut| {
        buf.put_slice(&plain[BATCH_HEADER_LEN..]);
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    let header = BatchHeader {
        attributes: header.attributes | 3,
        ..header
    };
    Ok(build_raw_batch(&header, &body))
}
