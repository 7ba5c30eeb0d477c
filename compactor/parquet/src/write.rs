//! Writing one partition's chunks as a Parquet-tier file.
//!
//! Input is what segments hold: per chunk, the base offset the catalog
//! assigned and the batches as the client sent them (compressed, base
//! offset still 0). Each batch is decompressed, its records are appended
//! to column buffers, and the buffers go to parquet's `ArrowWriter` a few
//! MiB at a time. Row groups are cut only between Kafka batches, so a
//! batch never spans two row groups, and memory stays bounded by the row
//! group size plus the output sink.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{ArrayBuilder, BinaryBuilder};
use arrow_array::types::{Int8Type, Int16Type, Int32Type, Int64Type};
use arrow_array::{
    ArrayRef, ListArray, PrimitiveArray, RecordBatch, StructArray, TimestampMicrosecondArray,
};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use strata_segment::{
    BatchHeader, MAGIC_V2, RecordView, batch_body, headers, iter_batches, records,
};

use crate::error::{Error, Result};

use crate::schema::{self, FORMAT_VERSION, metadata_keys};

/// Attribute bits of a batch kept in `batch_attributes`: everything except
/// the codec (rebuilt batches are uncompressed).
const KEPT_ATTRIBUTES: i16 = !0x07;
const LOG_APPEND_TIME_BIT: i16 = 0x08;

/// Where a file's rows come from: the partition it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Topic name.
    pub topic: String,
    /// Topic id (Kafka's UUID).
    pub topic_id: [u8; 16],
    /// Partition index.
    pub partition: i32,
}

/// Sizing and compression of written files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOptions {
    /// A row group is closed at the first batch boundary after its encoded
    /// size reaches this. Smaller groups make fetches read less; larger ones
    /// suit scans. Default 16 MiB.
    pub row_group_bytes: usize,
    /// Target size of a data page, the unit a fetch skips by through the
    /// page index. Default 1 MiB.
    pub data_page_bytes: usize,
    /// [`PartitionWriter::is_full`] turns true past this many bytes, so the
    /// caller starts a new file at the next chunk. Default 512 MiB.
    pub file_bytes_target: usize,
    /// zstd level (1 to 22). Default 1: twice the speed of level 3 for
    /// files about 15% larger (BENCHMARKS.md, "Parquet tier").
    pub zstd_level: i32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            row_group_bytes: 16 << 20,
            data_page_bytes: 1 << 20,
            file_bytes_target: 512 << 20,
            zstd_level: 1,
        }
    }
}

/// What a finished file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    /// Base offset of the first batch.
    pub first_offset: i64,
    /// Last offset of the last batch (its base offset plus last offset delta).
    pub last_offset: i64,
    /// Number of records (rows).
    pub record_count: u64,
    /// Number of Kafka record batches.
    pub batch_count: u64,
    /// Largest batch `max_timestamp` (Kafka milliseconds).
    pub max_timestamp_ms: i64,
    /// Bytes of stored batches read (compressed, as in segments).
    pub input_bytes: u64,
    /// Size of the Parquet file.
    pub file_bytes: u64,
    /// Number of row groups.
    pub row_group_count: usize,
}

/// Writes one partition's chunks, in offset order, as one Parquet file
/// into `W` (a `Vec<u8>`, a file, or any `Write`).
pub struct PartitionWriter<W: Write + Send> {
    writer: ArrowWriter<CountingWrite<W>>,
    info: PartitionInfo,
    options: WriteOptions,
    rows: RowBuffer,
    summary: Option<WriteSummary>,
    next_offset: i64,
}

impl<W: Write + Send> std::fmt::Debug for PartitionWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionWriter")
            .field("info", &self.info)
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send> PartitionWriter<W> {
    /// Starts a file for `info`'s partition.
    pub fn new(sink: W, info: PartitionInfo, options: WriteOptions) -> Result<Self> {
        let sink = CountingWrite {
            inner: sink,
            bytes: 0,
        };
        let writer = ArrowWriter::try_new(sink, schema::schema(), Some(properties(&options)?))?;
        Ok(Self {
            writer,
            info,
            options,
            rows: RowBuffer::default(),
            summary: None,
            next_offset: i64::MIN,
        })
    }

    /// Adds a chunk: the catalog's `base_offset` for its first batch and
    /// the stored batches (unpatched base offsets, any codec).
    ///
    /// Chunks must come in offset order without overlap. On error the file
    /// is unusable (rows of the chunk may be half written): drop it.
    pub fn push_chunk(&mut self, base_offset: i64, chunk: &Bytes) -> Result<()> {
        if base_offset < self.next_offset {
            return Err(Error::OffsetOrder {
                expected_at_least: self.next_offset,
                found: base_offset,
            });
        }
        let mut batch_base = base_offset;
        for span in iter_batches(chunk) {
            let span = span.map_err(|source| Error::Batch {
                chunk_base_offset: base_offset,
                source,
            })?;
            let batch = chunk.slice(span.range);
            let header = BatchHeader {
                base_offset: batch_base,
                ..span.header
            };
            // Checked first, so record offsets below cannot overflow.
            let next = batch_base
                .checked_add(header.offset_count())
                .ok_or(Error::RecordCount {
                    base_offset: batch_base,
                    expected: header.records_count,
                    found: 0,
                })?;
            self.push_batch(&header, &batch)?;
            self.record_batch(&header, batch.len());
            batch_base = next;
            self.next_offset = next;
            if self.rows.bytes >= self.arrow_batch_bytes() {
                self.write_rows()?;
            }
        }
        Ok(())
    }

    /// True once the file has reached [`WriteOptions::file_bytes_target`].
    pub fn is_full(&self) -> bool {
        let pending = self.writer.bytes_written() + self.writer.in_progress_size();
        pending + self.rows.bytes >= self.options.file_bytes_target
    }

    /// Writes the footer and returns the sink and what the file holds.
    ///
    /// Fails with [`Error::Empty`] when no record was pushed.
    pub fn finish(mut self) -> Result<(W, WriteSummary)> {
        self.write_rows()?;
        let Some(mut summary) = self.summary else {
            return Err(Error::Empty);
        };
        for (key, value) in metadata(&self.info, &summary) {
            self.writer
                .append_key_value_metadata(KeyValue::new(key.to_owned(), value));
        }
        // `into_inner` flushes the last row group and writes the footer.
        self.writer.flush()?;
        summary.row_group_count = self.writer.flushed_row_groups().len();
        let sink = self.writer.into_inner()?;
        summary.file_bytes = sink.bytes;
        Ok((sink.inner, summary))
    }

    /// Rows are handed to parquet in slices of about a quarter row group
    /// (at most 8 MiB), so row groups close near their target size.
    fn arrow_batch_bytes(&self) -> usize {
        (self.options.row_group_bytes / 4).clamp(1, 8 << 20)
    }

    /// Hands the buffered rows to parquet and closes the row group when it
    /// is big enough; called only between Kafka batches.
    fn write_rows(&mut self) -> Result<()> {
        if self.rows.len() > 0 {
            let batch = self.rows.take(schema::schema())?;
            self.writer.write(&batch)?;
        }
        if self.writer.in_progress_size() >= self.options.row_group_bytes {
            self.writer.flush()?;
        }
        Ok(())
    }

    fn record_batch(&mut self, header: &BatchHeader, input_len: usize) {
        let summary = self.summary.get_or_insert(WriteSummary {
            first_offset: header.base_offset,
            last_offset: header.base_offset,
            record_count: 0,
            batch_count: 0,
            max_timestamp_ms: i64::MIN,
            input_bytes: 0,
            file_bytes: 0,
            row_group_count: 0,
        });
        summary.last_offset = header.last_offset();
        summary.record_count += u64::try_from(header.records_count).unwrap_or(0);
        summary.batch_count += 1;
        summary.max_timestamp_ms = summary.max_timestamp_ms.max(header.max_timestamp);
        summary.input_bytes += input_len as u64;
    }

    /// Decodes one batch (its `base_offset` already assigned) into rows.
    fn push_batch(&mut self, header: &BatchHeader, batch: &Bytes) -> Result<()> {
        let base_offset = header.base_offset;
        let count_error = |found| Error::RecordCount {
            base_offset,
            expected: header.records_count,
            found,
        };
        if header.magic != MAGIC_V2 || header.last_offset_delta < 0 || header.records_count < 1 {
            return Err(count_error(0));
        }
        let body = batch_body(batch, header).map_err(|source| Error::Decompress {
            base_offset,
            source,
        })?;
        let mut found = 0_usize;
        let mut previous_delta = -1;
        for record in records(&body) {
            let record = record.map_err(|fault| Error::Record { base_offset, fault })?;
            let delta = record.offset_delta;
            if delta <= previous_delta || delta > header.last_offset_delta {
                return Err(count_error(found));
            }
            previous_delta = delta;
            self.rows.push(header, &record);
            found += 1;
        }
        if i32::try_from(found).ok() != Some(header.records_count) {
            // Rows of this batch were buffered: the writer is now unusable,
            // as push_chunk documents.
            return Err(count_error(found));
        }
        Ok(())
    }
}

/// Writes `chunks` (catalog base offset, stored batches) as one in-memory
/// Parquet file.
pub fn write_file(
    info: PartitionInfo,
    chunks: &[(i64, Bytes)],
    options: WriteOptions,
) -> Result<(Bytes, WriteSummary)> {
    let mut writer = PartitionWriter::new(Vec::new(), info, options)?;
    for (base_offset, chunk) in chunks {
        writer.push_chunk(*base_offset, chunk)?;
    }
    let (file, summary) = writer.finish()?;
    Ok((Bytes::from(file), summary))
}

pub(crate) fn properties(options: &WriteOptions) -> Result<WriterProperties> {
    let level = ZstdLevel::try_new(options.zstd_level)?;
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_data_page_size_limit(options.data_page_bytes)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]));
    // Payload columns: no dictionary (values rarely repeat, and a reader
    // should find the raw bytes), no min/max statistics (costly, useless).
    for path in [
        &["key"][..],
        &["value"],
        &["headers", "list", "element", "key"],
        &["headers", "list", "element", "value"],
    ] {
        let path = ColumnPath::new(path.iter().map(|part| (*part).to_owned()).collect());
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_statistics_enabled(path, EnabledStatistics::None);
    }
    for name in schema::DELTA_COLUMNS {
        let path = ColumnPath::from(*name);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
    }
    Ok(builder.build())
}

pub(crate) fn metadata(
    info: &PartitionInfo,
    summary: &WriteSummary,
) -> [(&'static str, String); 9] {
    let topic_id: String = info.topic_id.iter().map(|b| format!("{b:02x}")).collect();
    [
        (metadata_keys::FORMAT_VERSION, FORMAT_VERSION.to_string()),
        (metadata_keys::TOPIC, info.topic.clone()),
        (metadata_keys::TOPIC_ID, topic_id),
        (metadata_keys::PARTITION, info.partition.to_string()),
        (
            metadata_keys::FIRST_OFFSET,
            summary.first_offset.to_string(),
        ),
        (metadata_keys::LAST_OFFSET, summary.last_offset.to_string()),
        (
            metadata_keys::RECORD_COUNT,
            summary.record_count.to_string(),
        ),
        (metadata_keys::BATCH_COUNT, summary.batch_count.to_string()),
        (
            metadata_keys::MAX_TIMESTAMP,
            summary.max_timestamp_ms.to_string(),
        ),
    ]
}

/// Counts the bytes written through it: the file size, for any sink.
#[derive(Debug)]
pub(crate) struct CountingWrite<W> {
    pub(crate) inner: W,
    pub(crate) bytes: u64,
}

impl<W: Write> Write for CountingWrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Column buffers for rows not yet handed to parquet.
#[derive(Debug)]
struct RowBuffer {
    offset: Vec<i64>,
    timestamp: Vec<i64>,
    timestamp_type: Vec<i8>,
    key: BinaryBuilder,
    value: BinaryBuilder,
    header_offsets: Vec<i32>,
    header_key: BinaryBuilder,
    header_value: BinaryBuilder,
    producer_id: Vec<i64>,
    producer_epoch: Vec<i16>,
    sequence: Vec<i32>,
    batch_base_offset: Vec<i64>,
    batch_last_offset_delta: Vec<i32>,
    batch_base_timestamp: Vec<i64>,
    batch_max_timestamp: Vec<i64>,
    batch_attributes: Vec<i16>,
    batch_partition_leader_epoch: Vec<i32>,
    batch_base_sequence: Vec<i32>,
    timestamp_delta: Vec<Option<i64>>,
    /// Approximate bytes buffered (payloads plus fixed columns).
    bytes: usize,
}

impl Default for RowBuffer {
    fn default() -> Self {
        Self {
            offset: Vec::new(),
            timestamp: Vec::new(),
            timestamp_type: Vec::new(),
            key: BinaryBuilder::new(),
            value: BinaryBuilder::new(),
            header_offsets: vec![0],
            header_key: BinaryBuilder::new(),
            header_value: BinaryBuilder::new(),
            producer_id: Vec::new(),
            producer_epoch: Vec::new(),
            sequence: Vec::new(),
            batch_base_offset: Vec::new(),
            batch_last_offset_delta: Vec::new(),
            batch_base_timestamp: Vec::new(),
            batch_max_timestamp: Vec::new(),
            batch_attributes: Vec::new(),
            batch_partition_leader_epoch: Vec::new(),
            batch_base_sequence: Vec::new(),
            timestamp_delta: Vec::new(),
            bytes: 0,
        }
    }
}

/// Bytes a row costs besides its payloads (fixed-width columns).
const ROW_FIXED_BYTES: usize = 64;

impl RowBuffer {
    fn len(&self) -> usize {
        self.offset.len()
    }

    fn push(&mut self, header: &BatchHeader, record: &RecordView<'_>) {
        let log_append = header.attributes & LOG_APPEND_TIME_BIT != 0;
        let visible_ms = if log_append {
            header.max_timestamp
        } else {
            header.base_timestamp.wrapping_add(record.timestamp_delta)
        };
        let visible_us = visible_ms.checked_mul(1000);
        // The delta is derivable from `timestamp` only for CreateTime rows
        // whose microseconds did not overflow.
        let delta_kept = log_append || visible_us.is_none();
        self.offset
            .push(header.base_offset + i64::from(record.offset_delta));
        self.timestamp
            .push(visible_us.unwrap_or(visible_ms.saturating_mul(1000)));
        self.timestamp_type.push(i8::from(log_append));
        self.key.append_option(record.key);
        self.value.append_option(record.value);
        let mut header_bytes = 0;
        for (key, value) in headers(record) {
            self.header_key.append_value(key);
            self.header_value.append_option(value);
            header_bytes += key.len() + value.map_or(0, <[u8]>::len);
        }
        let header_total = self.header_key.len();
        self.header_offsets
            .push(i32::try_from(header_total).unwrap_or(i32::MAX));
        self.producer_id.push(header.producer_id);
        self.producer_epoch.push(header.producer_epoch);
        self.sequence
            .push(record_sequence(header.base_sequence, record.offset_delta));
        self.batch_base_offset.push(header.base_offset);
        self.batch_last_offset_delta.push(header.last_offset_delta);
        self.batch_base_timestamp.push(header.base_timestamp);
        self.batch_max_timestamp.push(header.max_timestamp);
        self.batch_attributes
            .push(header.attributes & KEPT_ATTRIBUTES);
        self.batch_partition_leader_epoch
            .push(header.partition_leader_epoch);
        self.batch_base_sequence.push(header.base_sequence);
        self.timestamp_delta
            .push(delta_kept.then_some(record.timestamp_delta));
        self.bytes += ROW_FIXED_BYTES
            + record.key.map_or(0, <[u8]>::len)
            + record.value.map_or(0, <[u8]>::len)
            + header_bytes;
    }

    /// Moves the buffered rows into a record batch.
    fn take(&mut self, schema: SchemaRef) -> Result<RecordBatch> {
        let mut taken = std::mem::take(self);
        let headers = StructArray::try_new(
            schema::header_fields(),
            vec![
                Arc::new(taken.header_key.finish()) as ArrayRef,
                Arc::new(taken.header_value.finish()),
            ],
            None,
        )?;
        let headers = ListArray::try_new(
            schema::header_item_field(),
            arrow_buffer::OffsetBuffer::new(taken.header_offsets.into()),
            Arc::new(headers),
            None,
        )?;
        let timestamp = TimestampMicrosecondArray::from(taken.timestamp).with_timezone("UTC");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(PrimitiveArray::<Int64Type>::from(taken.offset)),
            Arc::new(timestamp),
            Arc::new(PrimitiveArray::<Int8Type>::from(taken.timestamp_type)),
            Arc::new(taken.key.finish()),
            Arc::new(taken.value.finish()),
            Arc::new(headers),
            Arc::new(PrimitiveArray::<Int64Type>::from(taken.producer_id)),
            Arc::new(PrimitiveArray::<Int16Type>::from(taken.producer_epoch)),
            Arc::new(PrimitiveArray::<Int32Type>::from(taken.sequence)),
            Arc::new(PrimitiveArray::<Int64Type>::from(taken.batch_base_offset)),
            Arc::new(PrimitiveArray::<Int32Type>::from(
                taken.batch_last_offset_delta,
            )),
            Arc::new(PrimitiveArray::<Int64Type>::from(
                taken.batch_base_timestamp,
            )),
            Arc::new(PrimitiveArray::<Int64Type>::from(taken.batch_max_timestamp)),
            Arc::new(PrimitiveArray::<Int16Type>::from(taken.batch_attributes)),
            Arc::new(PrimitiveArray::<Int32Type>::from(
                taken.batch_partition_leader_epoch,
            )),
            Arc::new(PrimitiveArray::<Int32Type>::from(taken.batch_base_sequence)),
            Arc::new(PrimitiveArray::<Int64Type>::from(taken.timestamp_delta)),
        ];
        Ok(RecordBatch::try_new(schema, columns)?)
    }
}

/// A record's sequence: the batch's base sequence plus its offset delta,
/// wrapping past `i32::MAX` to 0 as Kafka does; -1 without a sequence.
pub(crate) fn record_sequence(base_sequence: i32, offset_delta: i32) -> i32 {
    if base_sequence < 0 {
        return -1;
    }
    (i64::from(base_sequence) + i64::from(offset_delta)).rem_euclid(i64::from(i32::MAX) + 1) as i32
}
