//! The Arrow/Parquet schema of the Parquet tier: one row per Kafka record.
//!
//! Record-level columns serve SQL readers (Iceberg, DuckDB, DataFusion);
//! the `batch_*` columns repeat each batch's header fields on every row of
//! the batch (run-length encoding makes the repeats nearly free) so that
//! [`crate::ParquetTierReader`] rebuilds every batch with its original
//! boundaries and header. Every field carries a `PARQUET:field_id` so that
//! Iceberg readers map columns by id.
//!
//! Exactness notes:
//! - `timestamp` is the time a Kafka consumer sees: `max_timestamp` for
//!   LogAppendTime batches, `base_timestamp + delta` otherwise, times 1000.
//!   When that does not determine the record's stored timestamp delta
//!   (LogAppendTime, or a millisecond value outside the microsecond range,
//!   which then saturates) the raw delta is kept in `timestamp_delta`.
//! - Header keys are binary: Kafka sends them as strings, but a broker keeps
//!   their bytes as sent, and a librdkafka consumer sees those bytes.
//! - The per-record `attributes` byte (unused in v2) is not kept: rebuilt
//!   records carry 0, as every Kafka client writes.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use parquet::arrow::PARQUET_FIELD_ID_META_KEY;

/// Version of the row layout, stored as `strata.format_version`.
pub const FORMAT_VERSION: u32 = 1;

/// Parquet key-value metadata keys written on every file.
pub mod metadata_keys {
    /// The row layout version ([`super::FORMAT_VERSION`]).
    pub const FORMAT_VERSION: &str = "strata.format_version";
    /// Topic name.
    pub const TOPIC: &str = "strata.topic";
    /// Topic id as 32 lowercase hex digits.
    pub const TOPIC_ID: &str = "strata.topic_id";
    /// Partition index.
    pub const PARTITION: &str = "strata.partition";
    /// Base offset of the first batch.
    pub const FIRST_OFFSET: &str = "strata.first_offset";
    /// Last offset of the last batch (`base_offset + last_offset_delta`).
    pub const LAST_OFFSET: &str = "strata.last_offset";
    /// Number of rows (records).
    pub const RECORD_COUNT: &str = "strata.record_count";
    /// Number of Kafka record batches.
    pub const BATCH_COUNT: &str = "strata.batch_count";
    /// Largest batch `max_timestamp`, in Kafka milliseconds.
    pub const MAX_TIMESTAMP: &str = "strata.max_timestamp_ms";
    /// `true` on a file written by key compaction (RFC 0005): it may have
    /// holes (offsets of removed records) anywhere between its first and
    /// last offsets, which a fetch skips to the next record.
    pub const KEY_COMPACTED: &str = "strata.key_compacted";
}

// Column positions in the top-level schema; the reader and writer index by them.
pub(crate) const COL_OFFSET: usize = 0;
pub(crate) const COL_TIMESTAMP: usize = 1;
pub(crate) const COL_TIMESTAMP_TYPE: usize = 2;
pub(crate) const COL_KEY: usize = 3;
pub(crate) const COL_VALUE: usize = 4;
pub(crate) const COL_HEADERS: usize = 5;
pub(crate) const COL_PRODUCER_ID: usize = 6;
pub(crate) const COL_PRODUCER_EPOCH: usize = 7;
pub(crate) const COL_SEQUENCE: usize = 8;
pub(crate) const COL_BATCH_BASE_OFFSET: usize = 9;
pub(crate) const COL_BATCH_LAST_OFFSET_DELTA: usize = 10;
pub(crate) const COL_BATCH_BASE_TIMESTAMP: usize = 11;
pub(crate) const COL_BATCH_MAX_TIMESTAMP: usize = 12;
pub(crate) const COL_BATCH_ATTRIBUTES: usize = 13;
pub(crate) const COL_BATCH_PARTITION_LEADER_EPOCH: usize = 14;
pub(crate) const COL_BATCH_BASE_SEQUENCE: usize = 15;
pub(crate) const COL_TIMESTAMP_DELTA: usize = 16;
pub(crate) const COLUMN_COUNT: usize = 17;

/// Column names of the integer columns written with delta encoding and
/// without dictionaries (offsets and times grow steadily).
pub(crate) const DELTA_COLUMNS: &[&str] = &["offset", "timestamp", "batch_base_offset"];

fn field(name: &str, data_type: DataType, nullable: bool, id: i32) -> Field {
    Field::new(name, data_type, nullable).with_metadata(HashMap::from([(
        PARQUET_FIELD_ID_META_KEY.to_owned(),
        id.to_string(),
    )]))
}

/// The struct of one record header: binary `key` (never null), binary `value`.
pub(crate) fn header_fields() -> Fields {
    Fields::from(vec![
        field("key", DataType::Binary, false, 19),
        field("value", DataType::Binary, true, 20),
    ])
}

/// The list item field of `headers`.
pub(crate) fn header_item_field() -> Arc<Field> {
    Arc::new(field(
        "element",
        DataType::Struct(header_fields()),
        false,
        18,
    ))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let timestamp = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        field("offset", DataType::Int64, false, 1),
        field("timestamp", timestamp, false, 2),
        field("timestamp_type", DataType::Int8, false, 3),
        field("key", DataType::Binary, true, 4),
        field("value", DataType::Binary, true, 5),
        field("headers", DataType::List(header_item_field()), false, 6),
        field("producer_id", DataType::Int64, false, 7),
        field("producer_epoch", DataType::Int16, false, 8),
        field("sequence", DataType::Int32, false, 9),
        field("batch_base_offset", DataType::Int64, false, 10),
        field("batch_last_offset_delta", DataType::Int32, false, 11),
        field("batch_base_timestamp_ms", DataType::Int64, false, 12),
        field("batch_max_timestamp_ms", DataType::Int64, false, 13),
        field("batch_attributes", DataType::Int16, false, 14),
        field("batch_partition_leader_epoch", DataType::Int32, false, 15),
        field("batch_base_sequence", DataType::Int32, false, 16),
        field("timestamp_delta", DataType::Int64, true, 17),
    ]))
});

/// The Arrow schema of every Parquet-tier file (format version 1).
///
/// | column | type | meaning |
/// | --- | --- | --- |
/// | `offset` | int64 | record offset |
/// | `timestamp` | timestamp(µs, UTC) | the timestamp a consumer sees |
/// | `timestamp_type` | int8 | 0 CreateTime, 1 LogAppendTime |
/// | `key`, `value` | binary, nullable | record key and value |
/// | `headers` | list<struct<key: binary, value: binary?>> | record headers in order |
/// | `producer_id`, `producer_epoch` | int64, int16 | the batch's producer, or -1 |
/// | `sequence` | int32 | the record's sequence, or -1 |
/// | `batch_base_offset` … `batch_base_sequence` | | the batch header |
/// | `timestamp_delta` | int64, nullable | raw record delta when `timestamp` does not give it |
///
/// `batch_attributes` has the compression bits cleared: rebuilt batches
/// are uncompressed.
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_a_unique_field_id() {
        // Goal: Iceberg readers need an id on every field, nested ones included.
        fn collect(field: &Field, ids: &mut Vec<String>) {
            ids.push(field.metadata()[PARQUET_FIELD_ID_META_KEY].clone());
            match field.data_type() {
                DataType::List(item) => collect(item, ids),
                DataType::Struct(fields) => fields.iter().for_each(|f| collect(f, ids)),
                _ => {}
            }
        }
        let mut ids = Vec::new();
        schema().fields().iter().for_each(|f| collect(f, &mut ids));
        let count = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), count);
        assert_eq!(count, 20);
        assert_eq!(schema().fields().len(), COLUMN_COUNT);
        assert_eq!(
            schema().field(COL_TIMESTAMP_DELTA).name(),
            "timestamp_delta"
        );
        assert_eq!(schema().field(COL_HEADERS).name(), "headers");
    }
}
