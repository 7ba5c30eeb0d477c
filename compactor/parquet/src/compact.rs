//! Key compaction of Parquet-tier files, sans I/O: keep the latest record
//! per key, with the offsets records were written at (RFC 0005).
//!
//! Two passes, as Kafka's log cleaner makes:
//!
//! 1. [`KeyMap::add_rows`] over the *dirty* files (not key-compacted yet)
//!    in offset order: key hash (XXH3-128) → greatest offset. The map has
//!    a cap on its entries; when full it says so, and the caller cleans
//!    only up to the file where it filled (the rest stays dirty for the
//!    next pass; a shadowing offset past the cleaned range is still a
//!    record that exists, so what the map already holds stays valid).
//! 2. [`retain_latest`] over every file of the range (clean and dirty): a
//!    record is dropped when the map holds a later offset for its key, when
//!    it belongs to an aborted transaction, when it has no key (as Kafka's
//!    cleaner drops them), or when it is a tombstone whose delete horizon
//!    has passed. A kept tombstone's batch gets a delete horizon (now +
//!    `delete.retention.ms`) stored as Kafka does since KIP-534: attribute
//!    bit 6 set and the horizon in the batch's base timestamp (record
//!    timestamps are unchanged: the reader recomputes their deltas).
//!
//! [`CompactedFileWriter`] writes the kept rows as one file that covers the
//! same offsets as its inputs, holes included: its
//! `strata.first_offset`/`strata.last_offset` are the range's, and its
//! `strata.key_compacted` is `true`. The row with the range's greatest
//! offset is always kept (unless aborted: a marker chunk follows then), so
//! a fetch from any offset of the range finds the next record that exists.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int16Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, PrimitiveArray, RecordBatch, RecordBatchReader,
};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::file::metadata::KeyValue;

use crate::error::{Error, Result};
use crate::schema::{self, metadata_keys};
use crate::write::{
    CountingWrite, PartitionInfo, WriteOptions, WriteSummary, metadata, properties,
};

/// Batch attribute: the batch belongs to a transaction.
const TRANSACTIONAL_BIT: i16 = 0x10;
/// Batch attribute: a control batch (transaction marker).
const CONTROL_BIT: i16 = 0x20;
/// Batch attribute: the base timestamp holds the delete horizon (KIP-534).
pub const DELETE_HORIZON_BIT: i16 = 0x40;
/// Batch attribute: LogAppendTime.
const LOG_APPEND_TIME_BIT: i16 = 0x08;

/// The hash key compaction identifies a key by (XXH3-128: two distinct
/// keys share one with negligible probability, about 2^-64 for 2^32 keys).
pub fn key_hash(key: &[u8]) -> u128 {
    twox_hash::XxHash3_128::oneshot(key)
}

/// The outcome of the transactions in a range, from its markers.
#[derive(Debug, Default, Clone)]
pub struct TxnOutcomes {
    /// Per producer id, its markers' (offset, commit) in offset order.
    markers: HashMap<i64, Vec<(i64, bool)>>,
}

/// How a transactional record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    Aborted,
    /// No marker yet in the range: kept, and shadows nothing.
    Open,
}

impl TxnOutcomes {
    /// Adds a marker of `producer_id` at `offset`; markers must come in
    /// offset order.
    pub fn add_marker(&mut self, producer_id: i64, offset: i64, commit: bool) {
        self.markers
            .entry(producer_id)
            .or_default()
            .push((offset, commit));
    }

    /// The outcome of `producer_id`'s transactional record at `offset`: the
    /// first marker of that producer after it.
    fn outcome(&self, producer_id: i64, offset: i64) -> Outcome {
        let Some(markers) = self.markers.get(&producer_id) else {
            return Outcome::Open;
        };
        let index = markers.partition_point(|(at, _)| *at <= offset);
        match markers.get(index) {
            Some((_, true)) => Outcome::Committed,
            Some((_, false)) => Outcome::Aborted,
            None => Outcome::Open,
        }
    }
}

/// What compaction does with a row, before looking at its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    /// A data record: the latest per key is kept.
    Data,
    /// A record of an aborted transaction: dropped.
    Aborted,
    /// A control record or a record of a still open transaction: kept as
    /// is, and it shadows nothing.
    Untouched,
}

fn row_kind(attributes: i16, producer_id: i64, offset: i64, txns: &TxnOutcomes) -> RowKind {
    if attributes & CONTROL_BIT != 0 {
        return RowKind::Untouched;
    }
    if attributes & TRANSACTIONAL_BIT == 0 {
        return RowKind::Data;
    }
    match txns.outcome(producer_id, offset) {
        Outcome::Committed => RowKind::Data,
        Outcome::Aborted => RowKind::Aborted,
        Outcome::Open => RowKind::Untouched,
    }
}

/// The columns compaction reads, by name (full rows or a projection).
struct Columns<'a> {
    offset: &'a PrimitiveArray<Int64Type>,
    key: &'a BinaryArray,
    value: Option<&'a BinaryArray>,
    producer_id: &'a PrimitiveArray<Int64Type>,
    attributes: &'a PrimitiveArray<Int16Type>,
}

fn column<'a>(rows: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    rows.column_by_name(name).ok_or(Error::Format {
        reason: "a column key compaction needs is missing",
    })
}

impl<'a> Columns<'a> {
    fn new(rows: &'a RecordBatch) -> Result<Self> {
        let wrong = || Error::Format {
            reason: "column of an unexpected type",
        };
        let value = match rows.column_by_name("value") {
            Some(value) => Some(value.as_binary_opt::<i32>().ok_or_else(wrong)?),
            None => None,
        };
        Ok(Self {
            offset: column(rows, "offset")?
                .as_primitive_opt()
                .ok_or_else(wrong)?,
            key: column(rows, "key")?
                .as_binary_opt::<i32>()
                .ok_or_else(wrong)?,
            value,
            producer_id: column(rows, "producer_id")?
                .as_primitive_opt()
                .ok_or_else(wrong)?,
            attributes: column(rows, "batch_attributes")?
                .as_primitive_opt()
                .ok_or_else(wrong)?,
        })
    }

    fn kind(&self, row: usize, txns: &TxnOutcomes) -> RowKind {
        row_kind(
            self.attributes.value(row),
            self.producer_id.value(row),
            self.offset.value(row),
            txns,
        )
    }
}

/// The columns [`KeyMap::add_rows`] needs: read only these in pass 1.
pub const KEY_MAP_COLUMNS: &[&str] = &["offset", "key", "producer_id", "batch_attributes"];

/// Key hash → greatest offset of the records that count (data records and
/// committed transactional ones), with a cap on its entries.
#[derive(Debug)]
pub struct KeyMap {
    latest: HashMap<u128, i64>,
    keys_max: usize,
    /// The first offset not added (set when the map filled).
    full_at: Option<i64>,
}

impl KeyMap {
    /// An empty map of at most `keys_max` keys (about 48 bytes each).
    pub fn new(keys_max: usize) -> Self {
        Self {
            latest: HashMap::new(),
            keys_max: keys_max.max(1),
            full_at: None,
        }
    }

    /// Distinct keys held.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// The offset of the first record that did not fit, once full.
    pub fn full_at(&self) -> Option<i64> {
        self.full_at
    }

    /// Adds `rows` (in offset order, after every row added before). Returns
    /// false, adding nothing more, once a new key would pass the cap.
    pub fn add_rows(&mut self, rows: &RecordBatch, txns: &TxnOutcomes) -> Result<bool> {
        if self.full_at.is_some() {
            return Ok(false);
        }
        let columns = Columns::new(rows)?;
        for row in 0..rows.num_rows() {
            if columns.kind(row, txns) != RowKind::Data || columns.key.is_null(row) {
                continue;
            }
            let offset = columns.offset.value(row);
            let hash = key_hash(columns.key.value(row));
            if let Some(latest) = self.latest.get_mut(&hash) {
                *latest = (*latest).max(offset);
            } else if self.latest.len() >= self.keys_max {
                self.full_at = Some(offset);
                return Ok(false);
            } else {
                self.latest.insert(hash, offset);
            }
        }
        Ok(true)
    }

    fn shadows(&self, key: &[u8], offset: i64) -> bool {
        self.latest
            .get(&key_hash(key))
            .is_some_and(|latest| *latest > offset)
    }
}

/// The clock and the tombstone setting of one compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Horizon {
    /// Now, in Kafka milliseconds.
    pub now_ms: i64,
    /// The topic's `delete.retention.ms`.
    pub delete_retention_ms: i64,
}

/// What [`retain_latest`] made of some rows.
#[derive(Debug, Clone)]
pub struct Retained {
    /// The rows kept, batch fields updated (`None` when none is kept).
    pub rows: Option<RecordBatch>,
    /// Rows dropped.
    pub removed: usize,
    /// Batches that got a delete horizon.
    pub horizons_set: usize,
}

/// Per row, whether it is kept, and the batches (by base offset) whose
/// kept tombstones need a delete horizon. Pure: the core of compaction.
fn keep_mask(
    rows: &RecordBatch,
    map: &KeyMap,
    txns: &TxnOutcomes,
    keep_offset: i64,
    horizon: Horizon,
) -> Result<(Vec<bool>, Vec<i64>)> {
    let columns = Columns::new(rows)?;
    let Some(value) = columns.value else {
        return Err(Error::Format {
            reason: "a column key compaction needs is missing",
        });
    };
    let base_offset = int64(rows, "batch_base_offset")?;
    let base_timestamp = int64(rows, "batch_base_timestamp_ms")?;
    let mut keep = Vec::with_capacity(rows.num_rows());
    let mut need_horizon = Vec::new();
    for row in 0..rows.num_rows() {
        let offset = columns.offset.value(row);
        let attributes = columns.attributes.value(row);
        let kind = columns.kind(row, txns);
        // The last row stays (the file ends where its offsets end), unless
        // aborted: then a marker chunk follows, where a fetch carries on.
        let kept = (offset == keep_offset && kind != RowKind::Aborted)
            || match kind {
                RowKind::Untouched => true,
                RowKind::Aborted => false,
                RowKind::Data if columns.key.is_null(row) => false,
                RowKind::Data if map.shadows(columns.key.value(row), offset) => false,
                RowKind::Data if value.is_null(row) => {
                    let has_horizon = attributes & DELETE_HORIZON_BIT != 0;
                    !(has_horizon && base_timestamp.value(row) <= horizon.now_ms)
                }
                RowKind::Data => true,
            };
        if kept
            && value.is_null(row)
            && attributes & (DELETE_HORIZON_BIT | CONTROL_BIT) == 0
            && need_horizon.last() != Some(&base_offset.value(row))
        {
            need_horizon.push(base_offset.value(row));
        }
        keep.push(kept);
    }
    Ok((keep, need_horizon))
}

fn int64<'a>(rows: &'a RecordBatch, name: &str) -> Result<&'a PrimitiveArray<Int64Type>> {
    column(rows, name)?.as_primitive_opt().ok_or(Error::Format {
        reason: "column of an unexpected type",
    })
}

/// Filters full rows (whole Kafka batches, in offset order): drops what
/// compaction removes and gives kept tombstones' batches a delete horizon.
/// The row at `keep_offset` (the range's last) is always kept.
pub fn retain_latest(
    rows: &RecordBatch,
    map: &KeyMap,
    txns: &TxnOutcomes,
    keep_offset: i64,
    horizon: Horizon,
) -> Result<Retained> {
    let (keep, need_horizon) = keep_mask(rows, map, txns, keep_offset, horizon)?;
    let removed = keep.iter().filter(|kept| !**kept).count();
    let rows = set_horizons(rows, &need_horizon, horizon)?;
    let horizons_set = need_horizon.len();
    let kept = arrow_select::filter::filter_record_batch(&rows, &BooleanArray::from(keep))?;
    Ok(Retained {
        rows: (kept.num_rows() > 0).then_some(kept),
        removed,
        horizons_set,
    })
}

/// Sets the delete horizon on every row of the batches in `bases` whose
/// record timestamps survive a new base timestamp (CreateTime with the
/// delta derivable, or LogAppendTime, whose timestamps are the max).
fn set_horizons(rows: &RecordBatch, bases: &[i64], horizon: Horizon) -> Result<RecordBatch> {
    if bases.is_empty() {
        return Ok(rows.clone());
    }
    let base_offset = int64(rows, "batch_base_offset")?;
    let delta = int64(rows, "timestamp_delta")?;
    let attributes: &PrimitiveArray<Int16Type> = column(rows, "batch_attributes")?
        .as_primitive_opt()
        .ok_or(Error::Format {
            reason: "column of an unexpected type",
        })?;
    // A CreateTime batch with a raw delta kept cannot be rebased.
    let mut blocked = Vec::new();
    for row in 0..rows.num_rows() {
        if delta.is_valid(row) && attributes.value(row) & LOG_APPEND_TIME_BIT == 0 {
            blocked.push(base_offset.value(row));
        }
    }
    let horizon_ms = horizon.now_ms.saturating_add(horizon.delete_retention_ms);
    let chosen = |row: usize| {
        let base = base_offset.value(row);
        bases.contains(&base) && !blocked.contains(&base)
    };
    let new_attributes: PrimitiveArray<Int16Type> = (0..rows.num_rows())
        .map(|row| {
            let value = attributes.value(row);
            if chosen(row) {
                value | DELETE_HORIZON_BIT
            } else {
                value
            }
        })
        .collect();
    let base_timestamp = int64(rows, "batch_base_timestamp_ms")?;
    let new_base_timestamp: PrimitiveArray<Int64Type> = (0..rows.num_rows())
        .map(|row| {
            if chosen(row) {
                horizon_ms
            } else {
                base_timestamp.value(row)
            }
        })
        .collect();
    let mut columns = rows.columns().to_vec();
    let index = |name: &str| {
        rows.schema().index_of(name).map_err(|_| Error::Format {
            reason: "a column key compaction needs is missing",
        })
    };
    columns[index("batch_attributes")?] = Arc::new(new_attributes);
    columns[index("batch_base_timestamp_ms")?] = Arc::new(new_base_timestamp);
    Ok(RecordBatch::try_new(rows.schema(), columns)?)
}

/// A Parquet-tier file read for compaction: its offsets and whether it is
/// key-compacted already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOffsets {
    /// `strata.first_offset`.
    pub first_offset: i64,
    /// `strata.last_offset`.
    pub last_offset: i64,
}

/// The row groups of a Parquet-tier file, each as one record batch (row
/// groups end between Kafka batches, so each holds whole batches), with
/// only `columns` when given. Memory: one decoded row group at a time.
pub fn read_row_groups(
    file: Bytes,
    columns: Option<&[&str]>,
) -> Result<(FileOffsets, impl Iterator<Item = Result<RecordBatch>>)> {
    let metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new())?;
    let value = |key: &str| {
        metadata
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kvs| kvs.iter().find(|kv| kv.key == key))
            .and_then(|kv| kv.value.as_deref())
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or(Error::Format {
                reason: "missing strata.first_offset or strata.last_offset",
            })
    };
    let offsets = FileOffsets {
        first_offset: value(metadata_keys::FIRST_OFFSET)?,
        last_offset: value(metadata_keys::LAST_OFFSET)?,
    };
    let parquet_schema = metadata.parquet_schema();
    let mask = match columns {
        Some(names) => {
            let leaves: Vec<usize> = parquet_schema
                .columns()
                .iter()
                .enumerate()
                .filter(|(_, leaf)| {
                    leaf.path()
                        .parts()
                        .first()
                        .is_some_and(|root| names.contains(&root.as_str()))
                })
                .map(|(index, _)| index)
                .collect();
            ProjectionMask::leaves(parquet_schema, leaves)
        }
        None => ProjectionMask::all(),
    };
    let groups: Vec<usize> = metadata
        .metadata()
        .row_groups()
        .iter()
        .map(|group| usize::try_from(group.num_rows()).unwrap_or(0))
        .collect();
    let iter = groups.into_iter().enumerate().map(move |(group, rows)| {
        let reader =
            ParquetRecordBatchReaderBuilder::new_with_metadata(file.clone(), metadata.clone())
                .with_row_groups(vec![group])
                .with_projection(mask.clone())
                .with_batch_size(rows.max(1))
                .build()?;
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(arrow_select::concat::concat_batches(&schema, &batches)?)
    });
    Ok((offsets, iter))
}

/// Writes kept rows as one key-compacted file covering
/// `first_offset..=last_offset` (its inputs' offsets, holes included).
pub struct CompactedFileWriter<W: Write + Send> {
    writer: ArrowWriter<CountingWrite<W>>,
    info: PartitionInfo,
    options: WriteOptions,
    summary: WriteSummary,
    last_batch_base: Option<i64>,
}

impl<W: Write + Send> std::fmt::Debug for CompactedFileWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactedFileWriter")
            .field("info", &self.info)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send> CompactedFileWriter<W> {
    /// Starts a file for `info`'s partition covering the given offsets.
    pub fn new(
        sink: W,
        info: PartitionInfo,
        options: WriteOptions,
        first_offset: i64,
        last_offset: i64,
    ) -> Result<Self> {
        let sink = CountingWrite {
            inner: sink,
            bytes: 0,
        };
        let writer = ArrowWriter::try_new(sink, schema::schema(), Some(properties(&options)?))?;
        Ok(Self {
            writer,
            info,
            options,
            summary: WriteSummary {
                first_offset,
                last_offset,
                record_count: 0,
                batch_count: 0,
                max_timestamp_ms: i64::MIN,
                input_bytes: 0,
                file_bytes: 0,
                row_group_count: 0,
            },
            last_batch_base: None,
        })
    }

    /// Counts `bytes` of input files in the summary.
    pub fn add_input_bytes(&mut self, bytes: u64) {
        self.summary.input_bytes += bytes;
    }

    /// Appends rows (whole Kafka batches, after the rows written before);
    /// closes the row group once it reaches its target size.
    pub fn write(&mut self, rows: &RecordBatch) -> Result<()> {
        let bases = int64(rows, "batch_base_offset")?;
        let max_timestamp = int64(rows, "batch_max_timestamp_ms")?;
        for row in 0..rows.num_rows() {
            let base = bases.value(row);
            if self.last_batch_base != Some(base) {
                self.last_batch_base = Some(base);
                self.summary.batch_count += 1;
            }
            self.summary.max_timestamp_ms =
                self.summary.max_timestamp_ms.max(max_timestamp.value(row));
        }
        self.summary.record_count += rows.num_rows() as u64;
        self.writer.write(rows)?;
        if self.writer.in_progress_size() >= self.options.row_group_bytes {
            self.writer.flush()?;
        }
        Ok(())
    }

    /// Writes the footer. A file may have no row (every record of an
    /// aborted transaction): it still covers its offsets, and a fetch from
    /// it returns nothing and moves past them.
    pub fn finish(mut self) -> Result<(W, WriteSummary)> {
        for (key, value) in metadata(&self.info, &self.summary) {
            self.writer
                .append_key_value_metadata(KeyValue::new(key.to_owned(), value));
        }
        self.writer.append_key_value_metadata(KeyValue::new(
            metadata_keys::KEY_COMPACTED.to_owned(),
            "true".to_owned(),
        ));
        self.writer.flush()?;
        self.summary.row_group_count = self.writer.flushed_row_groups().len();
        let sink = self.writer.into_inner()?;
        self.summary.file_bytes = sink.bytes;
        Ok((sink.inner, self.summary))
    }
}
