//! Reading records from a Parquet-tier chunk (`strata_parquet::schema`):
//! only the columns a consumer sees, only the row groups that can hold
//! wanted offsets.

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int8Type, Int16Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, BinaryArray, RecordBatch};
use bytes::Bytes;
use futures::StreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::{
    ParquetObjectReader, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder,
};
use parquet::file::metadata::RowGroupMetaData;
use parquet::file::statistics::Statistics;

use super::source::{PartitionPlan, Record, Verdict, Window};

/// The columns read, in file order.
const COLUMNS: [&str; 7] = [
    "offset",
    "timestamp",
    "timestamp_type",
    "key",
    "value",
    "headers",
    "batch_attributes",
];
/// Control batch bit of `batch_attributes` (transaction markers).
const CONTROL_BIT: i16 = 0x20;
/// Rows per decoded Arrow batch.
const BATCH_ROWS: usize = 8192;

/// Picks the row groups of the file that can hold records of `plan` and
/// returns the stream over them with the compressed bytes it will read.
///
/// A row group is skipped when its `offset` statistics lie outside
/// `plan.start..plan.end`, and, when `seek_time` is set (the chunk where a
/// `--from-time` search starts), when it comes before the first row group
/// whose newest `timestamp` reaches that time.
pub(crate) fn select(
    builder: ParquetRecordBatchStreamBuilder<ParquetObjectReader>,
    plan: &PartitionPlan,
    seek_time: Option<i64>,
) -> anyhow::Result<(ParquetRecordBatchStream<ParquetObjectReader>, u64)> {
    let metadata = builder.metadata().clone();
    let schema = metadata.file_metadata().schema_descr();
    let leaf = |name: &str| {
        schema
            .columns()
            .iter()
            .position(|c| c.path().string() == name)
            .with_context(|| format!("no `{name}` column: not a Strata Parquet-tier file"))
    };
    let (offset_leaf, time_leaf) = (leaf("offset")?, leaf("timestamp")?);
    let mut seek_us = seek_time.map(|ms| ms.saturating_mul(1000));
    let mut groups = Vec::new();
    let mut bytes = 0u64;
    for (index, group) in metadata.row_groups().iter().enumerate() {
        let (min_offset, max_offset) = min_max(group, offset_leaf).unwrap_or((i64::MIN, i64::MAX));
        if max_offset < plan.start || min_offset >= plan.end {
            continue;
        }
        if let Some(seek) = seek_us {
            let (_, max_time) = min_max(group, time_leaf).unwrap_or((i64::MIN, i64::MAX));
            if max_time < seek {
                continue;
            }
            seek_us = None;
        }
        groups.push(index);
        bytes += u64::try_from(group.compressed_size()).unwrap_or(0);
    }
    let roots: Vec<usize> = COLUMNS
        .iter()
        .map(|name| {
            builder
                .schema()
                .index_of(name)
                .with_context(|| format!("no `{name}` column: not a Strata Parquet-tier file"))
        })
        .collect::<anyhow::Result<_>>()?;
    let mask = ProjectionMask::roots(schema, roots);
    let stream = builder
        .with_row_groups(groups)
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()?;
    Ok((stream, bytes))
}

/// Min and max of an int64 column chunk's statistics.
fn min_max(group: &RowGroupMetaData, leaf: usize) -> Option<(i64, i64)> {
    match group.column(leaf).statistics()? {
        Statistics::Int64(stats) => Some((*stats.min_opt()?, *stats.max_opt()?)),
        _ => None,
    }
}

/// Emits the stream's records that `window` takes, until it stops.
pub(crate) async fn read(
    mut stream: ParquetRecordBatchStream<ParquetObjectReader>,
    partition: i32,
    window: &mut Window,
    emit: &mut impl FnMut(&Record) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    while let Some(batch) = stream.next().await {
        let batch = batch.context("cannot read a Parquet row group")?;
        let columns = Columns::new(&batch)?;
        for row in 0..batch.num_rows() {
            if columns.attributes.value(row) & CONTROL_BIT != 0 {
                continue;
            }
            let offset = columns.offsets.value(row);
            let timestamp_ms = columns.timestamps.value(row).div_euclid(1000);
            match window.judge(offset, timestamp_ms) {
                Verdict::Skip => continue,
                Verdict::Stop => return Ok(()),
                Verdict::Take => {}
            }
            emit(&columns.record(partition, row, offset, timestamp_ms)?)?;
        }
    }
    Ok(())
}

/// The projected columns of one decoded batch, typed.
struct Columns<'a> {
    offsets: &'a arrow_array::PrimitiveArray<Int64Type>,
    timestamps: &'a arrow_array::PrimitiveArray<TimestampMicrosecondType>,
    timestamp_types: &'a arrow_array::PrimitiveArray<Int8Type>,
    keys: &'a BinaryArray,
    values: &'a BinaryArray,
    headers: &'a arrow_array::ListArray,
    attributes: &'a arrow_array::PrimitiveArray<Int16Type>,
}

impl<'a> Columns<'a> {
    fn new(batch: &'a RecordBatch) -> anyhow::Result<Self> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .with_context(|| format!("the Parquet file has no `{name}` column"))
        };
        let wrong = |name: &str| format!("the `{name}` column has an unexpected type");
        Ok(Self {
            offsets: column("offset")?
                .as_primitive_opt()
                .with_context(|| wrong("offset"))?,
            timestamps: column("timestamp")?
                .as_primitive_opt()
                .with_context(|| wrong("timestamp"))?,
            timestamp_types: column("timestamp_type")?
                .as_primitive_opt()
                .with_context(|| wrong("timestamp_type"))?,
            keys: column("key")?
                .as_binary_opt()
                .with_context(|| wrong("key"))?,
            values: column("value")?
                .as_binary_opt()
                .with_context(|| wrong("value"))?,
            headers: column("headers")?
                .as_list_opt()
                .with_context(|| wrong("headers"))?,
            attributes: column("batch_attributes")?
                .as_primitive_opt()
                .with_context(|| wrong("batch_attributes"))?,
        })
    }

    fn record(
        &self,
        partition: i32,
        row: usize,
        offset: i64,
        timestamp_ms: i64,
    ) -> anyhow::Result<Record> {
        Ok(Record {
            partition,
            offset,
            timestamp_ms,
            log_append_time: self.timestamp_types.value(row) == 1,
            key: nullable(self.keys, row),
            value: nullable(self.values, row),
            headers: self.headers(row)?,
        })
    }

    fn headers(&self, row: usize) -> anyhow::Result<Vec<(Bytes, Option<Bytes>)>> {
        let list = self.headers.value(row);
        let Some(entries) = list.as_struct_opt() else {
            anyhow::bail!("the `headers` column has an unexpected type");
        };
        let (Some(keys), Some(values)) = (
            entries.column(0).as_binary_opt::<i32>(),
            entries.column(1).as_binary_opt::<i32>(),
        ) else {
            anyhow::bail!("the `headers` column has an unexpected type");
        };
        Ok((0..entries.len())
            .map(|i| (Bytes::copy_from_slice(keys.value(i)), nullable(values, i)))
            .collect())
    }
}

fn nullable(array: &BinaryArray, row: usize) -> Option<Bytes> {
    array
        .is_valid(row)
        .then(|| Bytes::copy_from_slice(array.value(row)))
}
