//! Where `replay` reads from: the catalog for each partition's offsets and
//! chunks, the object store for the bytes. Segment chunks are fetched by
//! byte range and decoded batch by batch (any codec); Parquet-tier chunks
//! are read through parquet's object-store reader, skipping the row groups
//! whose `offset` (and, when seeking by time, `timestamp`) statistics show
//! nothing wanted. A few chunks are fetched ahead while earlier ones are
//! written out.

use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures::StreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::async_reader::{
    ParquetObjectReader, ParquetRecordBatchStream, ParquetRecordBatchStreamBuilder,
};
use strata_catalog_api::proto::{
    Chunk, ChunkFormat, FindChunkByTimestampRequest, GetPartitionOffsetsRequest, ListTopicsRequest,
    LookupChunksRequest,
};
use strata_catalog_api::{CatalogApi, GrpcCatalog};
use strata_segment::{batch_body, headers, records};

use super::parquet_chunk;
use crate::cli::ReadArgs;
use crate::object_store_url::ObjectStoreUrl;

/// Chunks listed per LookupChunks call.
const LOOKUP_CHUNKS_MAX: u32 = 64;
/// Chunks fetched ahead of the one being written out.
const PREFETCH_CHUNKS: usize = 8;
/// Objects that may vanish in a row under one read (each rewritten and
/// collected by a compactor) before the read gives up: each retry means
/// a whole compaction and GC grace went by without a record read.
const VANISHED_RETRIES: u32 = 5;
/// Kafka's UNKNOWN_TOPIC_OR_PARTITION, as the catalog answers it (an i32
/// in the catalog's protobuf responses).
const UNKNOWN_TOPIC_OR_PARTITION: i32 =
    strata_catalog_api::error_code::UNKNOWN_TOPIC_OR_PARTITION as i32;

/// One record as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp_ms: i64,
    /// LogAppendTime (else CreateTime).
    pub(crate) log_append_time: bool,
    pub(crate) key: Option<Bytes>,
    pub(crate) value: Option<Bytes>,
    /// In record order; keys may repeat.
    pub(crate) headers: Vec<(Bytes, Option<Bytes>)>,
}

/// The requested range, before it is resolved per partition.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bounds {
    pub(crate) from_offset: Option<i64>,
    pub(crate) from_time: Option<i64>,
    pub(crate) to_offset: Option<i64>,
    pub(crate) to_time: Option<i64>,
}

/// What to read of one partition: offsets `start..end`, further bounded
/// by the time limits, which only the records themselves can resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionPlan {
    pub(crate) partition: i32,
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// Skip records until the first one at or after this time.
    pub(crate) from_time: Option<i64>,
    /// Stop at the first record at or after this time.
    pub(crate) to_time: Option<i64>,
}

/// What reading one partition took.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PartitionRead {
    pub(crate) records: u64,
    pub(crate) bytes_read: u64,
}

/// An open topic: catalog client, object store, and the topic's id.
#[derive(Debug)]
pub(crate) struct Source {
    catalog: GrpcCatalog,
    catalog_endpoint: String,
    store: Arc<dyn ObjectStore>,
    topic: String,
    topic_id: Vec<u8>,
    partition_count: u32,
}

impl Source {
    /// Connects to the catalog, opens the object store and looks the
    /// topic up.
    pub(crate) async fn open(read: &ReadArgs) -> anyhow::Result<Self> {
        let endpoint = if read.catalog.contains("://") {
            read.catalog.clone()
        } else {
            format!("http://{}", read.catalog)
        };
        let catalog = GrpcCatalog::connect_lazy(&endpoint)
            .with_context(|| format!("`{endpoint}` is not a catalog endpoint URL"))?;
        let store = open_store(read)?;
        let topics = catalog
            .list_topics(ListTopicsRequest {
                names: vec![read.topic.clone()],
            })
            .await
            .map_err(|status| catalog_error(&endpoint, status))?;
        let Some(topic) = topics.topics.into_iter().find(|t| t.name == read.topic) else {
            bail!(
                "topic `{}` does not exist (UNKNOWN_TOPIC_OR_PARTITION)",
                read.topic
            );
        };
        Ok(Self {
            catalog,
            catalog_endpoint: endpoint,
            store,
            topic: topic.name,
            topic_id: topic.topic_id,
            partition_count: topic.partition_count,
        })
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    /// The partitions asked for (all when none), checked to exist.
    pub(crate) fn partitions(&self, asked: &[i32]) -> anyhow::Result<Vec<i32>> {
        let count = i32::try_from(self.partition_count).unwrap_or(i32::MAX);
        if asked.is_empty() {
            return Ok((0..count).collect());
        }
        let mut partitions = asked.to_vec();
        partitions.sort_unstable();
        partitions.dedup();
        if let Some(bad) = partitions.iter().find(|p| !(0..count).contains(*p)) {
            bail!(
                "partition {bad} of topic `{}` does not exist (UNKNOWN_TOPIC_OR_PARTITION): \
                 it has {count} partitions",
                self.topic
            );
        }
        Ok(partitions)
    }

    /// Resolves `bounds` for one partition against its log start offset
    /// and high watermark as they are now.
    pub(crate) async fn plan(
        &self,
        partition: i32,
        bounds: &Bounds,
    ) -> anyhow::Result<PartitionPlan> {
        let index = partition_index(partition)?;
        let offsets = self
            .catalog
            .get_partition_offsets(GetPartitionOffsetsRequest {
                topic_id: self.topic_id.clone(),
                partition: index,
            })
            .await
            .map_err(|status| catalog_error(&self.catalog_endpoint, status))?;
        self.check(offsets.error_code, partition)?;
        let (log_start, high_watermark) = (offsets.log_start_offset, offsets.high_watermark);
        let mut start = bounds
            .from_offset
            .map_or(log_start, |o| o.clamp(log_start, high_watermark));
        if let Some(time) = bounds.from_time {
            start = match self.chunk_at_time(index, time).await? {
                Some(chunk) => chunk.base_offset.clamp(log_start, high_watermark),
                None => high_watermark,
            };
        }
        let mut end = bounds
            .to_offset
            .map_or(high_watermark, |o| o.min(high_watermark));
        if let Some(time) = bounds.to_time
            && let Some(chunk) = self.chunk_at_time(index, time).await?
        {
            // The first record at or after `time` lies in this chunk.
            end = end.min(chunk.end_offset);
        }
        Ok(PartitionPlan {
            partition,
            start,
            end: end.max(start),
            from_time: bounds.from_time,
            to_time: bounds.to_time,
        })
    }

    /// The first chunk whose newest record is at or after `time`.
    async fn chunk_at_time(&self, partition: u32, time: i64) -> anyhow::Result<Option<Chunk>> {
        let found = self
            .catalog
            .find_chunk_by_timestamp(FindChunkByTimestampRequest {
                topic_id: self.topic_id.clone(),
                partition,
                timestamp: time,
            })
            .await
            .map_err(|status| catalog_error(&self.catalog_endpoint, status))?;
        self.check(found.error_code, partition as i32)?;
        Ok(found.chunk)
    }

    fn check(&self, error_code: i32, partition: i32) -> anyhow::Result<()> {
        match error_code {
            0 => Ok(()),
            UNKNOWN_TOPIC_OR_PARTITION => bail!(
                "partition {partition} of topic `{}` does not exist (UNKNOWN_TOPIC_OR_PARTITION); \
                 was the topic deleted?",
                self.topic
            ),
            code => bail!(
                "the catalog answered Kafka error {code} ({}) for partition {partition}",
                strata_client::error_name(code as i16)
            ),
        }
    }

    /// Reads `plan`, calling `emit` with each record in offset order.
    /// Control records (transaction markers) are skipped.
    pub(crate) async fn read_partition(
        &self,
        plan: &PartitionPlan,
        mut emit: impl FnMut(&Record) -> anyhow::Result<()>,
    ) -> anyhow::Result<PartitionRead> {
        let mut window = Window::new(plan);
        let mut read = PartitionRead::default();
        let mut next = plan.start;
        let mut first_chunk = true;
        let mut vanished = 0;
        'lookup: while next < plan.end && !window.stopped {
            let chunks = self.lookup(plan.partition, next).await?;
            let Some(last) = chunks.last() else {
                bail!(
                    "the catalog lists no chunk for offset {next} of partition {} below its \
                     high watermark {}",
                    plan.partition,
                    plan.end
                );
            };
            next = last.end_offset;
            // Transaction markers have no object and no records to replay.
            let wanted = chunks
                .into_iter()
                .take_while(|c| c.base_offset < plan.end)
                .filter(|c| c.format != ChunkFormat::Marker as i32);
            let mut opened = futures::stream::iter(wanted.map(|chunk| {
                let seek_time = if first_chunk { plan.from_time } else { None };
                first_chunk = false;
                self.open_chunk(chunk, plan, seek_time)
            }))
            .buffered(PREFETCH_CHUNKS);
            while let Some(chunk) = opened.next().await {
                let progress = window.next;
                let outcome = match chunk {
                    Ok(Opened::Segment { chunk, bytes }) => {
                        read.bytes_read += bytes.len() as u64;
                        decode_segment(&chunk, &bytes, &mut window, &mut emit)
                    }
                    Ok(Opened::Parquet {
                        stream,
                        bytes_selected,
                    }) => {
                        read.bytes_read += bytes_selected;
                        parquet_chunk::read(stream, plan.partition, &mut window, &mut emit).await
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = outcome {
                    // A compactor rewrote the chunk and the GC deleted its
                    // object while this read was on its way (a read slower
                    // than the GC grace): look the rest up again, after
                    // the last record judged, so nothing is read twice.
                    vanished = if window.next > progress {
                        1
                    } else {
                        vanished + 1
                    };
                    if !is_not_found(&e) || vanished > VANISHED_RETRIES {
                        return Err(e);
                    }
                    next = window.resume();
                    tracing::warn!(
                        partition = plan.partition,
                        offset = next,
                        error = format!("{e:#}"),
                        "an object vanished under the read (compacted and collected); looking the \
                         chunks up again"
                    );
                    continue 'lookup;
                }
                if window.stopped {
                    break;
                }
            }
        }
        read.records = window.taken;
        Ok(read)
    }

    async fn lookup(&self, partition: i32, offset: i64) -> anyhow::Result<Vec<Chunk>> {
        let found = self
            .catalog
            .lookup_chunks(LookupChunksRequest {
                topic_id: self.topic_id.clone(),
                partition: partition_index(partition)?,
                offset,
                max_chunks: LOOKUP_CHUNKS_MAX,
            })
            .await
            .map_err(|status| catalog_error(&self.catalog_endpoint, status))?;
        self.check(found.error_code, partition)?;
        Ok(found.chunks)
    }

    /// Fetches a segment chunk's bytes, or a Parquet chunk's footer (its
    /// row data is then streamed).
    async fn open_chunk(
        &self,
        chunk: Chunk,
        plan: &PartitionPlan,
        seek_time: Option<i64>,
    ) -> anyhow::Result<Opened> {
        let path = Path::from(chunk.object_key.as_str());
        if chunk.format == ChunkFormat::Parquet as i32 {
            let reader = ParquetObjectReader::new(self.store.clone(), path)
                .with_file_size(chunk.object_size);
            let builder = ParquetRecordBatchStreamBuilder::new(reader)
                .await
                .with_context(|| format!("cannot open the Parquet file {}", chunk.object_key))?;
            let (stream, bytes_selected) = parquet_chunk::select(builder, plan, seek_time)
                .with_context(|| format!("cannot read the Parquet file {}", chunk.object_key))?;
            return Ok(Opened::Parquet {
                stream,
                bytes_selected,
            });
        }
        let bytes = self
            .store
            .get_range(&path, chunk.position..chunk.position + chunk.length)
            .await
            .with_context(|| {
                format!(
                    "cannot read {} bytes at {} of {}",
                    chunk.length, chunk.position, chunk.object_key
                )
            })?;
        Ok(Opened::Segment { chunk, bytes })
    }
}

/// A chunk ready to decode.
enum Opened {
    Segment {
        chunk: Chunk,
        bytes: Bytes,
    },
    Parquet {
        stream: ParquetRecordBatchStream<ParquetObjectReader>,
        bytes_selected: u64,
    },
}

/// Which records of a partition to take, record by record, in offset order.
#[derive(Debug)]
pub(crate) struct Window {
    pub(crate) start: i64,
    pub(crate) end: i64,
    from_time: Option<i64>,
    to_time: Option<i64>,
    pub(crate) stopped: bool,
    taken: u64,
    /// The lowest offset not judged yet.
    next: i64,
}

/// What to do with one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Skip,
    Take,
    Stop,
}

impl Window {
    pub(crate) fn new(plan: &PartitionPlan) -> Self {
        Self {
            start: plan.start,
            end: plan.end,
            from_time: plan.from_time,
            to_time: plan.to_time,
            stopped: plan.start >= plan.end,
            taken: 0,
            next: plan.start,
        }
    }

    /// Moves the start past every record judged so far and returns it: a
    /// read resumed there emits nothing twice.
    pub(crate) fn resume(&mut self) -> i64 {
        self.start = self.start.max(self.next);
        self.start
    }

    pub(crate) fn judge(&mut self, offset: i64, timestamp_ms: i64) -> Verdict {
        if offset < self.start {
            return Verdict::Skip;
        }
        self.next = self.next.max(offset + 1);
        if offset >= self.end || self.to_time.is_some_and(|t| timestamp_ms >= t) {
            self.stopped = true;
            return Verdict::Stop;
        }
        if let Some(from) = self.from_time {
            if timestamp_ms < from {
                return Verdict::Skip;
            }
            // Found the start: every later record is taken, as a consumer
            // that sought to this time would see them.
            self.from_time = None;
        }
        self.taken += 1;
        Verdict::Take
    }
}

/// Decodes a segment chunk's batches. Their stored base offsets are not
/// patched: the chunk's base offset plus each batch's offset count give them.
fn decode_segment(
    chunk: &Chunk,
    bytes: &Bytes,
    window: &mut Window,
    emit: &mut impl FnMut(&Record) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let partition = chunk.partition as i32;
    let mut base_offset = chunk.base_offset;
    for span in strata_segment::iter_batches(bytes) {
        let span = span.with_context(|| corrupt(chunk))?;
        let header = span.header;
        let batch_base = base_offset;
        base_offset = base_offset.saturating_add(header.offset_count());
        if header.is_control() || base_offset <= window.start {
            continue;
        }
        if batch_base >= window.end {
            window.stopped = true;
            return Ok(());
        }
        let batch = bytes.slice(span.range);
        let body = batch_body(&batch, &header)
            .map_err(|reason| anyhow::anyhow!("{reason}"))
            .with_context(|| corrupt(chunk))?;
        for view in records(&body) {
            let view = view.with_context(|| corrupt(chunk))?;
            let offset = batch_base.saturating_add(view.offset_delta.into());
            let timestamp_ms = if header.timestamp_type_log_append() {
                header.max_timestamp
            } else {
                header.base_timestamp.saturating_add(view.timestamp_delta)
            };
            match window.judge(offset, timestamp_ms) {
                Verdict::Skip => continue,
                Verdict::Stop => return Ok(()),
                Verdict::Take => {}
            }
            let slice = |part: &[u8]| body.slice_ref(part);
            emit(&Record {
                partition,
                offset,
                timestamp_ms,
                log_append_time: header.timestamp_type_log_append(),
                key: view.key.map(slice),
                value: view.value.map(slice),
                headers: headers(&view)
                    .map(|(key, value)| (slice(key), value.map(slice)))
                    .collect(),
            })?;
        }
    }
    Ok(())
}

fn corrupt(chunk: &Chunk) -> String {
    format!(
        "malformed record batches in {} at {}..{} (offsets {}..{})",
        chunk.object_key,
        chunk.position,
        chunk.position + chunk.length,
        chunk.base_offset,
        chunk.end_offset
    )
}

fn partition_index(partition: i32) -> anyhow::Result<u32> {
    u32::try_from(partition).with_context(|| {
        format!("partition {partition} does not exist (UNKNOWN_TOPIC_OR_PARTITION)")
    })
}

/// Whether `error` comes from an object that is not there (any more).
fn is_not_found(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<object_store::Error>(),
            Some(object_store::Error::NotFound { .. })
        )
    })
}

fn catalog_error(endpoint: &str, status: tonic::Status) -> anyhow::Error {
    if status.code() == tonic::Code::Unavailable {
        anyhow::anyhow!(
            "cannot reach the catalog at {endpoint} (is `strata dev` or `strata catalog` \
             running? pass --catalog): {}",
            status.message()
        )
    } else {
        anyhow::anyhow!("the catalog at {endpoint} failed: {status}")
    }
}

/// `--object-store`, or `strata dev`'s object directory under `--data-dir`.
/// A local directory is opened read-only: nothing is created.
fn open_store(read: &ReadArgs) -> anyhow::Result<Arc<dyn ObjectStore>> {
    let url = match &read.object_store {
        Some(text) => ObjectStoreUrl::parse(text)?,
        None => ObjectStoreUrl::File {
            path: read.data_dir.join("objects"),
        },
    };
    match url {
        ObjectStoreUrl::File { path } => {
            let store = LocalFileSystem::new_with_prefix(&path).with_context(|| {
                format!(
                    "cannot open the object directory {} (pass strata dev's --data-dir, or \
                     --object-store)",
                    path.display()
                )
            })?;
            Ok(Arc::new(store))
        }
        url => url.open(&crate::config::S3Settings::resolve(read.s3.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(start: i64, end: i64, from_time: Option<i64>, to_time: Option<i64>) -> PartitionPlan {
        PartitionPlan {
            partition: 0,
            start,
            end,
            from_time,
            to_time,
        }
    }

    #[test]
    fn the_window_keeps_offsets_from_start_to_end() {
        let mut window = Window::new(&plan(5, 8, None, None));
        let verdicts: Vec<Verdict> = (3..9).map(|offset| window.judge(offset, 0)).collect();
        use Verdict::*;
        assert_eq!(verdicts, [Skip, Skip, Take, Take, Take, Stop]);
        assert!(window.stopped);
        assert_eq!(window.taken, 3);
    }

    #[test]
    fn from_time_starts_at_the_first_late_enough_record_and_keeps_all_after() {
        // Goal: like a consumer after offsetsForTimes, an earlier timestamp
        // after the start record is still read.
        let mut window = Window::new(&plan(0, 10, Some(100), None));
        let times = [50, 99, 100, 20, 150];
        let verdicts: Vec<Verdict> = (0..)
            .zip(times)
            .map(|(offset, time)| window.judge(offset, time))
            .collect();
        use Verdict::*;
        assert_eq!(verdicts, [Skip, Skip, Take, Take, Take]);
    }

    #[test]
    fn to_time_stops_at_the_first_record_at_or_after_it() {
        let mut window = Window::new(&plan(0, 10, None, Some(100)));
        use Verdict::*;
        assert_eq!(window.judge(0, 10), Take);
        assert_eq!(window.judge(1, 100), Stop);
        assert!(window.stopped);
    }

    #[test]
    fn an_empty_range_is_stopped_before_reading() {
        assert!(Window::new(&plan(7, 7, None, None)).stopped);
    }
}
