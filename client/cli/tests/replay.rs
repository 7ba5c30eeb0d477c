//! Goal: `strata replay` and `strata export` give exactly the records a
//! Kafka consumer fetches (offsets, timestamps, keys, values, headers),
//! whatever the codec, and whether a chunk is a segment or in the Parquet
//! tier. Method: a real `strata dev`; records produced over the Kafka
//! protocol in batches of every codec, with null keys and values, non-UTF-8
//! bytes and headers; a Kafka Fetch gives the expected records; the real
//! `strata` binary replays them from the object store. For the Parquet tier
//! the head of a partition is rewritten with `strata_parquet::write_file`,
//! PUT into dev's object directory and swapped in with ReplaceChunks.

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;
mod wire;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use serde_json::Value;
use strata_catalog_api::proto::{
    ChunkFormat, ChunkRef, ListTopicsRequest, LookupChunksRequest, ReplaceChunksRequest,
};
use strata_catalog_api::{CatalogApi, GrpcCatalog};

const TOPIC: &str = "replayed";
const BASE_TIME_MS: i64 = 1_700_000_000_000;
const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];
const PER_BATCH: i64 = 20;

/// One record as compared: offset, timestamp, key, value, headers.
type Expected = (
    i64,
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(Vec<u8>, Option<Vec<u8>>)>,
);

struct Kafka {
    stream: TcpStream,
    correlation: i32,
}

impl Kafka {
    fn connect(address: &str) -> Self {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Self {
            stream,
            correlation: 0,
        }
    }

    fn call(&mut self, key: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
        self.correlation += 1;
        let frame = wire::request_frame(key, version, self.correlation, "replay-test", &request);
        self.stream.write_all(&frame).unwrap();
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).unwrap();
        let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut buf).unwrap();
        let (correlation, response) = wire::decode_response(key, version, buf);
        assert_eq!(correlation, self.correlation);
        response
    }

    fn create_topic(&mut self, partitions: i32) {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(5000);
        let ResponseKind::CreateTopics(created) =
            self.call(ApiKey::CreateTopics, 5, request.into())
        else {
            panic!("not CreateTopics")
        };
        assert_eq!(created.topics[0].error_code, 0);
    }

    /// Produces one batch of `PER_BATCH` records starting at offset
    /// `first` (used for keys, values and timestamps).
    fn produce(&mut self, partition: i32, first: i64, compression: Compression) {
        let records: Vec<Record> = (first..first + PER_BATCH)
            .map(|id| record(id, id - first))
            .collect();
        self.produce_batch(partition, first, &records, compression);
    }

    /// Produces `records` as one batch, expecting base offset `first`.
    fn produce_batch(
        &mut self,
        partition: i32,
        first: i64,
        records: &[Record],
        compression: Compression,
    ) {
        let mut batch = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut batch, records, &options).unwrap();
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                produce_request::TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partition_data(vec![
                        produce_request::PartitionProduceData::default()
                            .with_index(partition)
                            .with_records(Some(batch.freeze())),
                    ]),
            ]);
        let ResponseKind::Produce(produced) = self.call(ApiKey::Produce, 9, request.into()) else {
            panic!("not Produce")
        };
        let answer = &produced.responses[0].partition_responses[0];
        assert_eq!(answer.error_code, 0, "{answer:?}");
        assert_eq!(answer.base_offset, first, "one producer, offsets in order");
    }

    /// Every record of `partition`, as a consumer fetches them.
    fn fetch_all(&mut self, partition: i32) -> Vec<Expected> {
        let mut out: Vec<Expected> = Vec::new();
        loop {
            let offset = out.last().map_or(0, |r| r.0 + 1);
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_min_bytes(1)
                .with_max_bytes(16 << 20)
                .with_topics(vec![
                    fetch_request::FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                        .with_partitions(vec![
                            fetch_request::FetchPartition::default()
                                .with_partition(partition)
                                .with_fetch_offset(offset)
                                .with_partition_max_bytes(16 << 20),
                        ]),
                ]);
            let ResponseKind::Fetch(fetched) = self.call(ApiKey::Fetch, 12, request.into()) else {
                panic!("not Fetch")
            };
            let answer = &fetched.responses[0].partitions[0];
            assert_eq!(answer.error_code, 0);
            let mut records = answer.records.clone().unwrap_or_default();
            for set in RecordBatchDecoder::decode_all(&mut records).unwrap() {
                for r in set.records.into_iter().filter(|r| !r.control) {
                    if r.offset >= offset {
                        out.push(expected(&r));
                    }
                }
            }
            if out.last().map_or(0, |r| r.0 + 1) >= answer.high_watermark {
                return out;
            }
        }
    }
}

/// The record produced at `offset`, `delta` into its batch (clients send
/// batches from offset 0): every 5th key null, every 7th value null, every
/// 11th value not UTF-8, headers on every 3rd.
fn record(offset: i64, delta: i64) -> Record {
    let value = match offset {
        o if o % 7 == 3 => None,
        o if o % 11 == 4 => Some(Bytes::from(vec![0xff, 0xfe, offset as u8])),
        o => Some(Bytes::from(format!("value, \"{o}\"\nline two"))),
    };
    let mut headers = IndexMap::new();
    if offset % 3 == 0 {
        headers.insert(
            StrBytes::from_static_str("trace"),
            Some(Bytes::from(format!("t-{offset}"))),
        );
        headers.insert(
            StrBytes::from_static_str("bin"),
            Some(Bytes::from_static(&[0xc3, 0x28])),
        );
        headers.insert(StrBytes::from_static_str("none"), None);
    }
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: delta,
        // The encoder keeps one batch while offset minus sequence is
        // constant, and -1 as the first sequence means not idempotent.
        sequence: delta as i32 - 1,
        timestamp: time_of(offset),
        key: (offset % 5 != 0).then(|| Bytes::from(format!("key-{offset}"))),
        value,
        headers,
    }
}

fn time_of(offset: i64) -> i64 {
    BASE_TIME_MS + 10 * offset
}

fn expected(r: &Record) -> Expected {
    (
        r.offset,
        r.timestamp,
        r.key.as_ref().map(|k| k.to_vec()),
        r.value.as_ref().map(|v| v.to_vec()),
        r.headers
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_ref().map(|v| v.to_vec())))
            .collect(),
    )
}

/// Runs the real `strata` binary against the test's dev server.
fn strata(server: &common::Server, args: &[&str]) -> Vec<u8> {
    let output = Command::new(common::strata_bin())
        .args(args)
        .args(["--catalog", &server.catalog, "--data-dir"])
        .arg(server.dir.path())
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "strata {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Bytes of a JSONL key/value: a string, `{"base64": ...}`, or null.
fn json_bytes(value: &Value) -> Option<Vec<u8>> {
    use base64::Engine;
    match value {
        Value::Null => None,
        Value::String(text) => Some(text.as_bytes().to_vec()),
        Value::Object(object) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(object["base64"].as_str().unwrap())
                .unwrap(),
        ),
        other => panic!("not a key or value: {other}"),
    }
}

fn parse_jsonl(stdout: &[u8], partition: i64) -> Vec<Expected> {
    std::str::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let json: Value = serde_json::from_str(line).unwrap();
            assert_eq!(json["topic"], TOPIC);
            assert_eq!(json["partition"], partition);
            assert_eq!(json["timestamp_type"], "CreateTime");
            let headers = json["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (json_bytes(&h["key"]).unwrap(), json_bytes(&h["value"])))
                .collect();
            (
                json["offset"].as_i64().unwrap(),
                json["timestamp"].as_i64().unwrap(),
                json_bytes(&json["key"]),
                json_bytes(&json["value"]),
                headers,
            )
        })
        .collect()
}

fn replay_jsonl(server: &common::Server, partition: i32, extra: &[&str]) -> Vec<Expected> {
    let partition_text = partition.to_string();
    let mut args = vec!["replay", "--topic", TOPIC, "--partition", &partition_text];
    args.extend_from_slice(extra);
    parse_jsonl(&strata(server, &args), partition.into())
}

/// Rows of an RFC 4180 document (quoted fields may hold `,`, `"` and newlines).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

/// Offsets, values and header counts of a Parquet output file.
fn read_parquet(path: &Path) -> Vec<(i64, Option<Vec<u8>>, usize)> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let file = std::fs::File::open(path).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let offsets = batch["offset"].as_primitive::<Int64Type>();
        let values = batch["value"].as_binary::<i32>();
        let headers = batch["headers"].as_list::<i32>();
        for row in 0..batch.num_rows() {
            out.push((
                offsets.value(row),
                values.is_valid(row).then(|| values.value(row).to_vec()),
                headers.value(row).len(),
            ));
        }
    }
    out
}

fn produce_every_codec(kafka: &mut Kafka, partition: i32, rounds: i64) {
    let mut first = 0;
    for _ in 0..rounds {
        for codec in CODECS {
            kafka.produce(partition, first, codec);
            first += PER_BATCH;
        }
    }
}

#[test]
fn replay_equals_a_kafka_fetch_from_segments() {
    let server = common::start();
    let mut kafka = Kafka::connect(&server.address);
    kafka.create_topic(2);
    produce_every_codec(&mut kafka, 0, 1);
    let fetched = kafka.fetch_all(0);
    assert_eq!(fetched.len() as i64, 5 * PER_BATCH);

    // Everything, and the same through explicit offset bounds.
    assert_eq!(replay_jsonl(&server, 0, &[]), fetched);
    assert_eq!(
        replay_jsonl(&server, 0, &["--from-offset", "13", "--to-offset", "57"]),
        fetched[13..57]
    );
    // Time bounds: milliseconds or RFC 3339 (offset 30 is at +300 ms).
    let from = time_of(42).to_string();
    assert_eq!(
        replay_jsonl(&server, 0, &["--from-time", &from]),
        fetched[42..]
    );
    assert_eq!(
        replay_jsonl(&server, 0, &["--to-time", "2023-11-14T22:13:20.300Z"]),
        fetched[..30]
    );
    // Binary keys and values as hex decode to the same bytes.
    let hex = strata(
        &server,
        &[
            "replay",
            "--topic",
            TOPIC,
            "--partition",
            "0",
            "--binary",
            "hex",
        ],
    );
    let first_line: Value =
        serde_json::from_str(std::str::from_utf8(&hex).unwrap().lines().nth(4).unwrap()).unwrap();
    assert_eq!(first_line["value"], "fffe04");

    // CSV: a header row, then one row per record with the same values.
    let csv = strata(
        &server,
        &[
            "replay",
            "--topic",
            TOPIC,
            "--partition",
            "0",
            "--format",
            "csv",
        ],
    );
    let rows = parse_csv(std::str::from_utf8(&csv).unwrap());
    assert_eq!(rows[0][..3], ["topic", "partition", "offset"]);
    assert_eq!(rows.len(), fetched.len() + 1);
    for (row, record) in rows[1..].iter().zip(&fetched) {
        assert_eq!(row.len(), 11, "{row:?}");
        assert_eq!(row[2], record.0.to_string());
        assert_eq!(row[3], record.1.to_string());
        assert_eq!(json_bytes(&csv_bytes(&row[8], &row[9])), record.3);
        assert_eq!(json_bytes(&csv_bytes(&row[6], &row[7])), record.2);
    }

    // Parquet output reads back.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.parquet");
    strata(
        &server,
        &[
            "replay",
            "--topic",
            TOPIC,
            "--partition",
            "0",
            "--format",
            "parquet",
            "--output",
            path.to_str().unwrap(),
        ],
    );
    let rows = read_parquet(&path);
    let want: Vec<_> = fetched
        .iter()
        .map(|r| (r.0, r.3.clone(), r.4.len()))
        .collect();
    assert_eq!(rows, want);
}

/// A CSV value and its encoding column as the JSON form `json_bytes` reads.
fn csv_bytes(value: &str, encoding: &str) -> Value {
    match encoding {
        "null" => Value::Null,
        "utf8" => Value::String(value.to_owned()),
        "base64" => serde_json::json!({ "base64": value }),
        other => panic!("unexpected encoding {other}"),
    }
}

#[test]
fn replay_reads_a_partition_whose_head_is_in_the_parquet_tier() {
    let server = common::start();
    let mut kafka = Kafka::connect(&server.address);
    kafka.create_topic(2);
    produce_every_codec(&mut kafka, 1, 2);
    let fetched = kafka.fetch_all(1);
    assert_eq!(fetched.len() as i64, 10 * PER_BATCH);

    // Compact the first 7 chunks (140 records) into one Parquet file with
    // small row groups, and swap it in.
    rewrite_as_parquet(&server, 1, 7);

    // Parquet head then segment tail, and bounds inside the Parquet part.
    assert_eq!(replay_jsonl(&server, 1, &[]), fetched);
    assert_eq!(
        replay_jsonl(&server, 1, &["--from-offset", "33", "--to-offset", "151"]),
        fetched[33..151]
    );
    let from = time_of(77).to_string();
    assert_eq!(
        replay_jsonl(&server, 1, &["--from-time", &from]),
        fetched[77..]
    );
    let to = time_of(90).to_string();
    assert_eq!(
        replay_jsonl(&server, 1, &["--from-offset", "12", "--to-time", &to]),
        fetched[12..90]
    );

    // Export: one Parquet file per partition (partition 0 is empty).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    strata(
        &server,
        &[
            "export",
            "--topic",
            TOPIC,
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(read_parquet(&out.join(format!("{TOPIC}-0.parquet"))).is_empty());
    let rows = read_parquet(&out.join(format!("{TOPIC}-1.parquet")));
    let want: Vec<_> = fetched
        .iter()
        .map(|r| (r.0, r.3.clone(), r.4.len()))
        .collect();
    assert_eq!(rows, want);
}

/// Rewrites the first `count` chunks of `partition` into one Parquet file
/// with small row groups (as a compactor would) and swaps it in; returns
/// the object keys of the chunks it replaced.
fn rewrite_as_parquet(server: &common::Server, partition: u32, count: u32) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let endpoint = format!("http://{}", server.catalog);
    let objects = server.dir.path().join("objects");
    runtime.block_on(async {
        let catalog = GrpcCatalog::connect_lazy(&endpoint).unwrap();
        let topics = catalog
            .list_topics(ListTopicsRequest {
                names: vec![TOPIC.to_owned()],
            })
            .await
            .unwrap();
        let topic_id = topics.topics[0].topic_id.clone();
        let chunks = catalog
            .lookup_chunks(LookupChunksRequest {
                topic_id: topic_id.clone(),
                partition,
                offset: 0,
                max_chunks: count,
            })
            .await
            .unwrap()
            .chunks;
        assert_eq!(chunks.len(), count as usize);
        let inputs: Vec<(i64, Bytes)> = chunks
            .iter()
            .map(|c| {
                let object = std::fs::read(objects.join(&c.object_key)).unwrap();
                let range = c.position as usize..(c.position + c.length) as usize;
                (c.base_offset, Bytes::copy_from_slice(&object[range]))
            })
            .collect();
        let info = strata_parquet::PartitionInfo {
            topic: TOPIC.to_owned(),
            topic_id: topic_id.as_slice().try_into().unwrap(),
            partition: partition as i32,
        };
        let options = strata_parquet::WriteOptions {
            row_group_bytes: 2048,
            ..Default::default()
        };
        let (file, summary) = strata_parquet::write_file(info, &inputs, options).unwrap();
        assert!(summary.row_group_count > 2, "{summary:?}");
        let key = format!(
            "parquet/{TOPIC}/{partition}/0-{}.parquet",
            summary.last_offset
        );
        std::fs::create_dir_all(objects.join(format!("parquet/{TOPIC}/{partition}"))).unwrap();
        std::fs::write(objects.join(&key), &file).unwrap();
        let last = chunks.last().unwrap();
        let replaced = catalog
            .replace_chunks(ReplaceChunksRequest {
                topic_id,
                partition,
                expected: chunks
                    .iter()
                    .map(|c| ChunkRef {
                        base_offset: c.base_offset,
                        end_offset: c.end_offset,
                        object_key: c.object_key.clone(),
                    })
                    .collect(),
                replacement: Some(strata_catalog_api::proto::Chunk {
                    base_offset: 0,
                    end_offset: last.end_offset,
                    object_key: key,
                    object_size: file.len() as u64,
                    position: 0,
                    length: file.len() as u64,
                    batch_count: summary.batch_count as u32,
                    max_timestamp: summary.max_timestamp_ms,
                    format: ChunkFormat::Parquet as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(replaced.error_code, 0);
        assert!(!replaced.conflict);
        chunks.into_iter().map(|c| c.object_key).collect()
    })
}

/// A replay slower than the GC grace: the chunks it has looked up are
/// rewritten as Parquet and their segment objects deleted while it is
/// blocked on its output. It looks the rest up again and gives every
/// record exactly once.
#[test]
fn replay_looks_chunks_up_again_when_their_objects_vanish_under_it() {
    const BATCHES: i64 = 20;
    let server = common::start();
    let mut kafka = Kafka::connect(&server.address);
    kafka.create_topic(1);
    // 4 KiB values: one batch's JSON lines overfill a pipe (64 KiB), so the
    // replay blocks on its output inside the first chunks.
    for batch in 0..BATCHES {
        let first = batch * PER_BATCH;
        let records: Vec<Record> = (first..first + PER_BATCH)
            .map(|id| Record {
                value: Some(Bytes::from(format!("{id:06}").repeat(700))),
                ..record(id, id - first)
            })
            .collect();
        kafka.produce_batch(0, first, &records, Compression::None);
    }
    let fetched = kafka.fetch_all(0);
    assert_eq!(fetched.len() as i64, BATCHES * PER_BATCH);

    let mut replay = Command::new(common::strata_bin())
        .args(["replay", "--topic", TOPIC, "--partition", "0"])
        .args(["--catalog", &server.catalog, "--data-dir"])
        .arg(server.dir.path())
        .arg("--quiet")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(replay.stdout.take().unwrap());
    let mut first_line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first_line).unwrap();
    assert!(first_line.contains("\"offset\":0"), "{first_line}");

    // The replay now waits on the full pipe with at most the prefetched
    // chunks in hand: compact everything and collect the segments.
    let objects = server.dir.path().join("objects");
    for key in rewrite_as_parquet(&server, 0, BATCHES as u32) {
        match std::fs::remove_file(objects.join(&key)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot delete {key}: {e}"),
        }
    }

    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let mut stderr = String::new();
    replay
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = replay.wait().unwrap();
    assert!(status.success(), "replay failed: {stderr}");
    let mut text = first_line.into_bytes();
    text.extend_from_slice(&rest);
    assert_eq!(parse_jsonl(&text, 0), fetched);
}
