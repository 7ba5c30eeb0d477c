//! Strata's Parquet tier format, sans catalog and sans object store: the
//! compactor (`strata-parquet`) writes these files and the agent reads
//! them on the fetch path.
//!
//! - [`schema()`]: one row per Kafka record, with the batch header fields
//!   repeated per row so batches can be rebuilt exactly; every field has a
//!   `PARQUET:field_id` for Iceberg readers.
//! - [`PartitionWriter`] / [`write_file`]: decode a partition's stored
//!   chunks (any codec) and write one zstd Parquet file with offset and
//!   timestamp statistics and a page index.
//! - [`ParquetTierReader`]: answer a fetch from such a file with
//!   uncompressed Kafka v2 batches identical to the originals (apart from
//!   compression), reading only the row groups and pages it needs.
//!
//! ```
//! use bytes::Bytes;
//! use strata_parquet::{InMemoryFile, ParquetTierReader, PartitionInfo, WriteOptions, write_file};
//! # let chunk = strata_segment::testing::build_batch(&[(None, Some(b"hello"))], 1_700_000_000_000, None);
//!
//! // Compact: the catalog gave the chunk base offset 42.
//! let info = PartitionInfo { topic: "events".into(), topic_id: [7; 16], partition: 0 };
//! let (file, summary) = write_file(info, &[(42, chunk)], WriteOptions::default())?;
//! assert_eq!((summary.first_offset, summary.last_offset), (42, 42));
//!
//! // Fetch from offset 42, at most 1 MiB.
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let reader = ParquetTierReader::open(InMemoryFile::new(file)).await?;
//! let fetched = reader.fetch(42, 1 << 20).await?;
//! assert_eq!(fetched.next_offset, 43);
//! # Ok::<(), strata_parquet::Error>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod compact;
mod error;
mod read;
mod schema;
mod write;

pub use compact::{
    CompactedFileWriter, DELETE_HORIZON_BIT, FileOffsets, Horizon, KEY_MAP_COLUMNS, KeyMap,
    Retained, TxnOutcomes, key_hash, read_row_groups, retain_latest,
};
pub use error::{Error, Result};
pub use read::{Fetched, InMemoryFile, ParquetTierReader};
pub use schema::{FORMAT_VERSION, metadata_keys, schema};
pub use write::{PartitionInfo, PartitionWriter, WriteOptions, WriteSummary, write_file};
