//! The file's layout: metadata, statistics, page index, field ids, and a
//! fetch that reads only the row group and pages it needs.

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

#[expect(dead_code, reason = "this test uses a subset of the helpers")]
mod common;

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{BatchSpec, RecordSpec, block_on, expected_batches, stored_chunks};
use futures::future::BoxFuture;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetObjectReader};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use strata_parquet::{
    InMemoryFile, ParquetTierReader, PartitionInfo, WriteOptions, metadata_keys, write_file,
};

/// 100 batches of 10 records with 1 KiB incompressible values, from offset 1000.
fn chunks() -> Vec<(i64, Vec<BatchSpec>)> {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as u8
    };
    let batches = (0..100)
        .map(|batch| BatchSpec {
            codec: (batch % 5) as u8,
            log_append_time: false,
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            base_timestamp: 1_700_000_000_000 + batch * 10,
            max_timestamp: 1_700_000_000_009 + batch * 10,
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: i32::try_from(batch * 10).unwrap(),
            records: (0..10)
                .map(|i| RecordSpec {
                    timestamp_delta: i,
                    key: Some(format!("key-{batch}-{i}").into_bytes()),
                    value: Some((0..1024).map(|_| random()).collect()),
                    headers: vec![(b"h".to_vec(), None)],
                })
                .collect(),
        })
        .collect::<Vec<_>>();
    let (first, second) = batches.split_at(50);
    vec![(1000, first.to_vec()), (1500, second.to_vec())]
}

fn info() -> PartitionInfo {
    PartitionInfo {
        topic: "clicks".into(),
        topic_id: [0xab; 16],
        partition: 5,
    }
}

fn options() -> WriteOptions {
    WriteOptions {
        row_group_bytes: 256 << 10,
        data_page_bytes: 8 << 10,
        ..WriteOptions::default()
    }
}

#[test]
fn metadata_statistics_and_page_index_are_written() {
    // Goal: readers find the kv metadata, per row group offset and
    // timestamp statistics, a page index, field ids, and no dictionary on
    // key/value. Method: parse the footer with parquet's own reader.
    let (file, summary) = write_file(info(), &stored_chunks(&chunks()), options()).unwrap();
    assert_eq!((summary.first_offset, summary.last_offset), (1000, 1999));
    assert_eq!((summary.record_count, summary.batch_count), (1000, 100));
    assert_eq!(summary.file_bytes, file.len() as u64);
    assert!(summary.row_group_count > 1, "{summary:?}");
    let metadata = ParquetMetaDataReader::new()
        .with_page_index_policy(PageIndexPolicy::Required)
        .parse_and_finish(&file)
        .unwrap();
    let kv = |key: &str| {
        metadata
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    };
    assert_eq!(kv(metadata_keys::FORMAT_VERSION).as_deref(), Some("1"));
    assert_eq!(kv(metadata_keys::TOPIC).as_deref(), Some("clicks"));
    assert_eq!(kv(metadata_keys::TOPIC_ID), Some("ab".repeat(16)));
    assert_eq!(kv(metadata_keys::PARTITION).as_deref(), Some("5"));
    assert_eq!(kv(metadata_keys::FIRST_OFFSET).as_deref(), Some("1000"));
    assert_eq!(kv(metadata_keys::LAST_OFFSET).as_deref(), Some("1999"));
    assert_eq!(kv(metadata_keys::RECORD_COUNT).as_deref(), Some("1000"));
    assert_eq!(metadata.num_row_groups(), summary.row_group_count);

    let schema = metadata.file_metadata().schema_descr();
    let leaf = |name: &str| {
        schema
            .columns()
            .iter()
            .position(|c| c.path().string() == name)
            .unwrap()
    };
    let mut previous_max = i64::MIN;
    for group in metadata.row_groups() {
        let Some(Statistics::Int64(offsets)) = group.column(leaf("offset")).statistics() else {
            panic!("no offset statistics");
        };
        assert!(*offsets.min_opt().unwrap() > previous_max);
        previous_max = *offsets.max_opt().unwrap();
        let Some(Statistics::Int64(times)) = group.column(leaf("timestamp")).statistics() else {
            panic!("no timestamp statistics");
        };
        assert!(*times.min_opt().unwrap() >= 1_700_000_000_000_000);
        for payload in ["key", "value"] {
            assert_eq!(group.column(leaf(payload)).dictionary_page_offset(), None);
        }
    }
    assert_eq!(previous_max, 1999);
    let column_index = metadata.column_index().expect("column index");
    let offset_index = metadata.offset_index().expect("offset index");
    assert_eq!(column_index.len(), metadata.num_row_groups());
    assert!(offset_index[0][leaf("value")].page_locations().len() > 1);
    for column in schema.columns() {
        assert!(
            column.self_type().get_basic_info().has_id(),
            "{}",
            column.path()
        );
    }
}

/// An `AsyncFileReader` that records every byte range it is asked for.
#[derive(Debug, Clone)]
struct CountingFile {
    inner: InMemoryFile,
    ranges: Arc<Mutex<Vec<Range<u64>>>>,
}

impl AsyncFileReader for CountingFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.ranges.lock().unwrap().push(range.clone());
        self.inner.get_bytes(range)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        self.inner.get_metadata(options)
    }
}

#[test]
fn fetch_reads_only_the_needed_row_group_and_pages() {
    // Goal: a fetch is served from the row group holding its offset and
    // only the pages it needs. Method: record the byte ranges the reader
    // asks for and compare them with the row groups' column chunk ranges.
    let chunks = chunks();
    let (file, _) = write_file(info(), &stored_chunks(&chunks), options()).unwrap();
    let metadata = ParquetMetaDataReader::new()
        .parse_and_finish(&file)
        .unwrap();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let input = CountingFile {
        inner: InMemoryFile::new(file.clone()),
        ranges: Arc::clone(&ranges),
    };
    block_on(async {
        let reader = ParquetTierReader::open(input).await.unwrap();
        // A middle row group; fetch from an offset inside its second batch.
        let group = metadata.num_row_groups() / 2;
        let first_row: i64 = metadata.row_groups()[..group]
            .iter()
            .map(|g| g.num_rows())
            .sum();
        let offset = 1000 + first_row + 13;
        ranges.lock().unwrap().clear();
        let fetched = reader.fetch(offset, 4096).await.unwrap();
        assert_eq!(fetched.row_groups_read, vec![group]);
        assert_eq!(fetched.batch_count, 1);

        let expected = expected_batches(&chunks);
        let want = expected
            .iter()
            .find(|(_, last, _)| *last >= offset)
            .unwrap();
        assert_eq!(&fetched.records[..], &want.2[..]);

        let chunk_ranges: Vec<(u64, u64)> = metadata.row_groups()[group]
            .columns()
            .iter()
            .map(|c| {
                let (start, len) = c.byte_range();
                (start, start + len)
            })
            .collect();
        let group_bytes = metadata.row_groups()[group].compressed_size() as u64;
        let requested: Vec<Range<u64>> = ranges.lock().unwrap().clone();
        let mut total = 0;
        for range in &requested {
            assert!(
                chunk_ranges
                    .iter()
                    .any(|(s, e)| *s <= range.start && range.end <= *e),
                "range {range:?} is outside row group {group}"
            );
            total += range.end - range.start;
        }
        assert!(
            total * 3 < group_bytes,
            "read {total} of the group's {group_bytes} bytes"
        );
    });
}

#[test]
fn fetch_through_an_object_store() {
    // Goal: the reader works over parquet's ParquetObjectReader, the path
    // the agent takes. Method: an in-memory object store (a unit fake).
    let chunks = chunks();
    let (file, _) = write_file(info(), &stored_chunks(&chunks), options()).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let path = Path::from("parquet/clicks/5/1000-1999.parquet");
    block_on(async {
        store.put(&path, file.clone().into()).await.unwrap();
        let input =
            ParquetObjectReader::new(Arc::clone(&store), path).with_file_size(file.len() as u64);
        let reader = ParquetTierReader::open(input).await.unwrap();
        let fetched = reader.fetch(1000, usize::MAX).await.unwrap();
        let expected: Vec<u8> = expected_batches(&chunks)
            .into_iter()
            .flat_map(|b| b.2)
            .collect();
        assert_eq!(&fetched.records[..], &expected[..]);
        assert_eq!(fetched.next_offset, 2000);
    });
}
