//! Answering a Kafka fetch from a Parquet-tier file.
//!
//! [`ParquetTierReader::open`] reads the footer and page index once (keep
//! the reader to reuse them). [`ParquetTierReader::fetch`] then:
//!
//! 1. picks the row group holding the batch that contains the fetch offset
//!    from the `batch_base_offset` statistics (the writer never splits a
//!    batch across row groups), with no data read;
//! 2. reads only the two small batch-offset columns of that row group to
//!    find the batch's first row;
//! 3. reads all columns from that row on, in windows sized by the byte
//!    budget, so the page index limits the fetched pages to the rows
//!    needed, and rebuilds uncompressed v2 batches until `max_bytes`.

use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrowPrimitiveType, BinaryArray, ListArray, PrimitiveArray, RecordBatch};
use bytes::Bytes;
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowSelection, RowSelector,
};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;

use crate::error::{Error, Result};
use crate::schema::{self, *};
use strata_segment::{BatchEncoder, RebuiltHeader};

/// A Parquet file held in memory, readable by [`ParquetTierReader`].
#[derive(Debug, Clone)]
pub struct InMemoryFile {
    bytes: Bytes,
}

impl InMemoryFile {
    /// Wraps the whole file.
    pub fn new(bytes: Bytes) -> Self {
        Self { bytes }
    }
}

impl AsyncFileReader for InMemoryFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let slice = usize::try_from(range.start)
            .ok()
            .zip(usize::try_from(range.end).ok())
            .filter(|(start, end)| start <= end && *end <= self.bytes.len())
            .map(|(start, end)| self.bytes.slice(start..end))
            .ok_or_else(|| {
                parquet::errors::ParquetError::EOF(format!(
                    "range {range:?} outside a file of {} bytes",
                    self.bytes.len()
                ))
            });
        futures::future::ready(slice).boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&self.bytes)
            .map(Arc::new);
        futures::future::ready(metadata).boxed()
    }
}

/// What a fetch returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Whole uncompressed v2 record batches, base offsets set, CRC valid.
    /// Empty only when the fetch offset lies after the last record but
    /// within the last batch's offsets.
    pub records: Bytes,
    /// The offset after the last returned batch.
    pub next_offset: i64,
    /// Number of batches in `records`.
    pub batch_count: usize,
    /// Indexes of the row groups whose data was read (for metrics and tests).
    pub row_groups_read: Vec<usize>,
}

/// Reads Kafka record batches back from one Parquet-tier file.
///
/// `R` is any parquet `AsyncFileReader` that can be cloned cheaply: an
/// [`InMemoryFile`], or parquet's `ParquetObjectReader` over an object
/// store (only the footer and the needed byte ranges are fetched).
#[derive(Debug, Clone)]
pub struct ParquetTierReader<R> {
    input: R,
    metadata: ArrowReaderMetadata,
    first_offset: i64,
    last_offset: i64,
    /// Per row group: smallest `batch_base_offset` and row count.
    row_groups: Vec<(i64, usize)>,
}

impl<R: AsyncFileReader + Clone + Unpin + Send + 'static> ParquetTierReader<R> {
    /// Reads and checks the footer, key-value metadata, statistics and page index.
    pub async fn open(input: R) -> Result<Self> {
        // As in `fetch`: a corrupt footer must not panic through.
        AssertUnwindSafe(Self::open_inner(input))
            .catch_unwind()
            .await
            .unwrap_or(Err(Error::DecoderPanic))
    }

    async fn open_inner(mut input: R) -> Result<Self> {
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let metadata = ArrowReaderMetadata::load_async(&mut input, options).await?;
        check_schema(&metadata)?;
        check_chunk_ranges(metadata.metadata())?;
        let file = metadata.metadata().file_metadata();
        let value = |key: &str| {
            file.key_value_metadata()
                .and_then(|kvs| kvs.iter().find(|kv| kv.key == key))
                .and_then(|kv| kv.value.as_deref())
        };
        if value(metadata_keys::FORMAT_VERSION) != Some(&FORMAT_VERSION.to_string()) {
            return Err(Error::Format {
                reason: "missing or unknown strata.format_version",
            });
        }
        let offset = |key| {
            value(key)
                .and_then(|text| text.parse::<i64>().ok())
                .ok_or(Error::Format {
                    reason: "missing strata.first_offset or strata.last_offset",
                })
        };
        let first_offset = offset(metadata_keys::FIRST_OFFSET)?;
        let last_offset = offset(metadata_keys::LAST_OFFSET)?;
        let row_groups = row_group_bases(metadata.metadata())?;
        Ok(Self {
            input,
            metadata,
            first_offset,
            last_offset,
            row_groups,
        })
    }

    /// Base offset of the file's first batch.
    pub fn first_offset(&self) -> i64 {
        self.first_offset
    }

    /// Last offset of the file's last batch.
    pub fn last_offset(&self) -> i64 {
        self.last_offset
    }

    /// Returns whole batches from the one containing `offset` on, adding
    /// batches while the total stays within `max_bytes`; the first batch
    /// is returned even when larger (KIP-74).
    ///
    /// Fails with [`Error::OffsetOutOfRange`] when `offset` is outside
    /// [`Self::first_offset`]`..=`[`Self::last_offset`].
    pub async fn fetch(&self, offset: i64, max_bytes: usize) -> Result<Fetched> {
        // parquet 58 can panic on corrupt page data (for instance in its
        // definition-level decoder, found by the robustness proptest);
        // page checksums are not written by its writer. A corrupt file must
        // fail the fetch, not take the agent down.
        AssertUnwindSafe(self.fetch_inner(offset, max_bytes))
            .catch_unwind()
            .await
            .unwrap_or(Err(Error::DecoderPanic))
    }

    async fn fetch_inner(&self, offset: i64, max_bytes: usize) -> Result<Fetched> {
        if offset < self.first_offset || offset > self.last_offset {
            return Err(Error::OffsetOutOfRange {
                requested: offset,
                first_offset: self.first_offset,
                last_offset: self.last_offset,
            });
        }
        if self.row_groups.is_empty() {
            // A key-compacted file whose records were all removed.
            return Ok(Assembly::new(max_bytes).finish(self.last_offset));
        }
        // The last row group whose first batch starts at or before `offset`.
        let mut group = self
            .row_groups
            .iter()
            .rposition(|(base, _)| *base <= offset)
            .unwrap_or(0);
        let mut start = match self.first_row_from(group, offset).await? {
            Some(row) => row,
            None => {
                group += 1;
                0
            }
        };
        let mut assembly = Assembly::new(max_bytes);
        while group < self.row_groups.len() && !assembly.done {
            let rows = self.row_groups[group].1;
            assembly.row_groups_read.push(group);
            while start < rows && !assembly.done {
                let window = self.window_rows(group, &assembly).min(rows - start);
                self.read_window(group, start..start + window, &mut assembly)
                    .await?;
                start += window;
            }
            group += 1;
            start = 0;
        }
        Ok(assembly.finish(self.last_offset))
    }

    /// Index of the first row in `group` of the first batch whose last
    /// offset is at least `offset`, or `None` if every batch there ends
    /// before it.
    async fn first_row_from(&self, group: usize, offset: i64) -> Result<Option<usize>> {
        let mask = ProjectionMask::roots(
            self.metadata.parquet_schema(),
            [COL_BATCH_BASE_OFFSET, COL_BATCH_LAST_OFFSET_DELTA],
        );
        let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
            self.input.clone(),
            self.metadata.clone(),
        )
        .with_row_groups(vec![group])
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()?;
        let mut row = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let bases = primitive::<Int64Type>(&batch, 0)?;
            let deltas = primitive::<Int32Type>(&batch, 1)?;
            for index in 0..batch.num_rows() {
                let last = bases
                    .value(index)
                    .saturating_add(deltas.value(index).into());
                if last >= offset {
                    return Ok(Some(row + index));
                }
            }
            row += batch.num_rows();
        }
        Ok(None)
    }

    /// Rows to read next: enough for the rest of the byte budget by the
    /// row group's average row size, plus a quarter, and at least 32 (a
    /// window is one request per column: not too many round trips).
    fn window_rows(&self, group: usize, assembly: &Assembly) -> usize {
        let meta = self.metadata.metadata().row_group(group);
        let rows = usize::try_from(meta.num_rows()).unwrap_or(1).max(1);
        let row_bytes = (usize::try_from(meta.total_byte_size()).unwrap_or(0) / rows).max(1);
        let budget = assembly.max_bytes.saturating_sub(assembly.out.len());
        let rows = budget / row_bytes + 1;
        rows.saturating_add(rows / 4).max(32)
    }

    async fn read_window(
        &self,
        group: usize,
        rows: Range<usize>,
        assembly: &mut Assembly,
    ) -> Result<()> {
        let total = self.row_groups[group].1;
        let selection = RowSelection::from(vec![
            RowSelector::skip(rows.start),
            RowSelector::select(rows.len()),
            RowSelector::skip(total - rows.end),
        ]);
        let mut stream = ParquetRecordBatchStreamBuilder::new_with_metadata(
            self.input.clone(),
            self.metadata.clone(),
        )
        .with_row_groups(vec![group])
        .with_row_selection(selection)
        .with_batch_size(rows.len().clamp(1, 8192))
        .build()?;
        while let Some(batch) = stream.next().await {
            assembly.push_rows(&Columns::new(&batch?)?)?;
            if assembly.done {
                break;
            }
        }
        Ok(())
    }
}

/// Fails unless the file's Arrow schema is this crate's (names and types).
fn check_schema(metadata: &ArrowReaderMetadata) -> Result<()> {
    let expected = schema::schema();
    let found = metadata.schema();
    let same = found.fields().len() == expected.fields().len()
        && found
            .fields()
            .iter()
            .zip(expected.fields())
            .all(|(a, b)| a.name() == b.name() && a.data_type().equals_datatype(b.data_type()));
    if same {
        Ok(())
    } else {
        Err(Error::Format {
            reason: "columns differ from the Parquet-tier schema",
        })
    }
}

/// Fails on a column chunk with a negative position or size: parquet
/// asserts on those when it fetches the chunk (a panic on a corrupt footer).
fn check_chunk_ranges(metadata: &ParquetMetaData) -> Result<()> {
    let valid = metadata.row_groups().iter().all(|group| {
        group.columns().iter().all(|column| {
            column.data_page_offset() >= 0
                && column.dictionary_page_offset().is_none_or(|at| at >= 0)
                && column.compressed_size() >= 0
        })
    });
    if valid {
        Ok(())
    } else {
        Err(Error::Format {
            reason: "column chunk with a negative position or size",
        })
    }
}

/// Per row group, the minimum `batch_base_offset` (from statistics) and
/// the row count.
fn row_group_bases(metadata: &ParquetMetaData) -> Result<Vec<(i64, usize)>> {
    let missing = Error::Format {
        reason: "row group without batch_base_offset statistics",
    };
    let leaf = metadata
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|column| column.path().string() == "batch_base_offset")
        .ok_or(Error::Format {
            reason: "no batch_base_offset column",
        })?;
    metadata
        .row_groups()
        .iter()
        .map(|group| match group.column(leaf).statistics() {
            Some(Statistics::Int64(stats)) => match stats.min_opt() {
                Some(min) => Ok((*min, usize::try_from(group.num_rows()).unwrap_or(0))),
                None => Err(Error::Format {
                    reason: "row group without batch_base_offset statistics",
                }),
            },
            _ => Err(Error::Format {
                reason: "row group without batch_base_offset statistics",
            }),
        })
        .collect::<Result<Vec<_>>>()
        .map_err(|_| missing)
}

fn primitive<T: ArrowPrimitiveType>(
    batch: &RecordBatch,
    index: usize,
) -> Result<&PrimitiveArray<T>> {
    batch
        .column(index)
        .as_primitive_opt::<T>()
        .ok_or(Error::Format {
            reason: "column of an unexpected type",
        })
}

fn binary(batch: &RecordBatch, index: usize) -> Result<&BinaryArray> {
    batch
        .column(index)
        .as_binary_opt::<i32>()
        .ok_or(Error::Format {
            reason: "column of an unexpected type",
        })
}

/// The typed columns of one record batch read with the full schema.
struct Columns<'a> {
    rows: usize,
    offset: &'a PrimitiveArray<Int64Type>,
    timestamp: &'a PrimitiveArray<TimestampMicrosecondType>,
    key: &'a BinaryArray,
    value: &'a BinaryArray,
    headers: &'a ListArray,
    header_key: &'a BinaryArray,
    header_value: &'a BinaryArray,
    producer_id: &'a PrimitiveArray<Int64Type>,
    producer_epoch: &'a PrimitiveArray<Int16Type>,
    base_offset: &'a PrimitiveArray<Int64Type>,
    last_offset_delta: &'a PrimitiveArray<Int32Type>,
    base_timestamp: &'a PrimitiveArray<Int64Type>,
    max_timestamp: &'a PrimitiveArray<Int64Type>,
    attributes: &'a PrimitiveArray<Int16Type>,
    partition_leader_epoch: &'a PrimitiveArray<Int32Type>,
    base_sequence: &'a PrimitiveArray<Int32Type>,
    timestamp_delta: &'a PrimitiveArray<Int64Type>,
}

impl<'a> Columns<'a> {
    fn new(batch: &'a RecordBatch) -> Result<Self> {
        if batch.num_columns() != COLUMN_COUNT {
            return Err(Error::Format {
                reason: "columns differ from the Parquet-tier schema",
            });
        }
        let wrong = || Error::Format {
            reason: "column of an unexpected type",
        };
        let headers = batch
            .column(COL_HEADERS)
            .as_list_opt::<i32>()
            .ok_or_else(wrong)?;
        let entries = headers.values().as_struct_opt().ok_or_else(wrong)?;
        if entries.num_columns() != 2 {
            return Err(wrong());
        }
        // The timestamp-type column is redundant with the attributes; it
        // is only checked to be there.
        primitive::<Int8Type>(batch, COL_TIMESTAMP_TYPE)?;
        primitive::<Int32Type>(batch, COL_SEQUENCE)?;
        Ok(Self {
            rows: batch.num_rows(),
            offset: primitive(batch, COL_OFFSET)?,
            timestamp: primitive(batch, COL_TIMESTAMP)?,
            key: binary(batch, COL_KEY)?,
            value: binary(batch, COL_VALUE)?,
            headers,
            header_key: entries.column(0).as_binary_opt::<i32>().ok_or_else(wrong)?,
            header_value: entries.column(1).as_binary_opt::<i32>().ok_or_else(wrong)?,
            producer_id: primitive(batch, COL_PRODUCER_ID)?,
            producer_epoch: primitive(batch, COL_PRODUCER_EPOCH)?,
            base_offset: primitive(batch, COL_BATCH_BASE_OFFSET)?,
            last_offset_delta: primitive(batch, COL_BATCH_LAST_OFFSET_DELTA)?,
            base_timestamp: primitive(batch, COL_BATCH_BASE_TIMESTAMP)?,
            max_timestamp: primitive(batch, COL_BATCH_MAX_TIMESTAMP)?,
            attributes: primitive(batch, COL_BATCH_ATTRIBUTES)?,
            partition_leader_epoch: primitive(batch, COL_BATCH_PARTITION_LEADER_EPOCH)?,
            base_sequence: primitive(batch, COL_BATCH_BASE_SEQUENCE)?,
            timestamp_delta: primitive(batch, COL_TIMESTAMP_DELTA)?,
        })
    }

    fn header(&self, row: usize) -> RebuiltHeader {
        RebuiltHeader {
            base_offset: self.base_offset.value(row),
            partition_leader_epoch: self.partition_leader_epoch.value(row),
            attributes: self.attributes.value(row),
            last_offset_delta: self.last_offset_delta.value(row),
            base_timestamp: self.base_timestamp.value(row),
            max_timestamp: self.max_timestamp.value(row),
            producer_id: self.producer_id.value(row),
            producer_epoch: self.producer_epoch.value(row),
            base_sequence: self.base_sequence.value(row),
        }
    }

    fn optional(array: &BinaryArray, row: usize) -> Option<&[u8]> {
        array.is_valid(row).then(|| array.value(row))
    }
}

/// Rebuilt batches and the batch being rebuilt.
#[derive(Debug)]
struct Assembly {
    out: Vec<u8>,
    max_bytes: usize,
    /// The open batch: its encoder, base offset, last offset and start in `out`.
    open: Option<(BatchEncoder, i64, i64, usize)>,
    /// Length of `out` holding only closed batches.
    closed_len: usize,
    next_offset: Option<i64>,
    batch_count: usize,
    done: bool,
    row_groups_read: Vec<usize>,
}

impl Assembly {
    fn new(max_bytes: usize) -> Self {
        Self {
            out: Vec::new(),
            max_bytes,
            open: None,
            closed_len: 0,
            next_offset: None,
            batch_count: 0,
            done: false,
            row_groups_read: Vec::new(),
        }
    }

    fn push_rows(&mut self, columns: &Columns<'_>) -> Result<()> {
        for row in 0..columns.rows {
            let base = columns.base_offset.value(row);
            if self.open.as_ref().is_some_and(|open| open.1 != base) {
                self.close();
            }
            if self.done {
                return Ok(());
            }
            if self.open.is_none() {
                let header = columns.header(row);
                let last = base.saturating_add(header.last_offset_delta.into());
                let start = self.out.len();
                let encoder = BatchEncoder::start(&mut self.out, &header);
                self.open = Some((encoder, base, last, start));
            }
            self.push_record(columns, row)?;
            // Stop reading as soon as the open batch cannot fit.
            if self.closed_len > 0 && self.out.len() > self.max_bytes {
                self.out.truncate(self.closed_len);
                self.open = None;
                self.done = true;
            }
        }
        Ok(())
    }

    fn push_record(&mut self, columns: &Columns<'_>, row: usize) -> Result<()> {
        let Some((encoder, base, _, _)) = self.open.as_mut() else {
            return Ok(());
        };
        let offset_delta =
            i32::try_from(columns.offset.value(row).wrapping_sub(*base)).map_err(|_| {
                Error::Format {
                    reason: "record offset outside its batch",
                }
            })?;
        let timestamp_delta = if columns.timestamp_delta.is_valid(row) {
            columns.timestamp_delta.value(row)
        } else {
            (columns.timestamp.value(row) / 1000).wrapping_sub(columns.base_timestamp.value(row))
        };
        let headers = columns.headers.value_offsets();
        let (first, end) = (headers[row], headers[row + 1]);
        let header_rows = usize::try_from(first).unwrap_or(0)..usize::try_from(end).unwrap_or(0);
        let header_pairs = header_rows.map(|index| {
            (
                columns.header_key.value(index),
                Columns::optional(columns.header_value, index),
            )
        });
        encoder.push(
            &mut self.out,
            timestamp_delta,
            offset_delta,
            Columns::optional(columns.key, row),
            Columns::optional(columns.value, row),
            header_pairs,
        );
        Ok(())
    }

    /// Closes the open batch: keeps it if it is the first or fits the budget.
    fn close(&mut self) {
        let Some((encoder, _, last, _)) = self.open.take() else {
            return;
        };
        encoder.finish(&mut self.out);
        if self.closed_len > 0 && self.out.len() > self.max_bytes {
            self.out.truncate(self.closed_len);
            self.done = true;
            return;
        }
        self.closed_len = self.out.len();
        self.next_offset = Some(last.saturating_add(1));
        self.batch_count += 1;
        if self.out.len() >= self.max_bytes {
            self.done = true;
        }
    }

    fn finish(mut self, last_offset: i64) -> Fetched {
        self.close();
        Fetched {
            records: Bytes::from(self.out),
            next_offset: self.next_offset.unwrap_or(last_offset.saturating_add(1)),
            batch_count: self.batch_count,
            row_groups_read: self.row_groups_read,
        }
    }
}
