//! Shared helpers of the compactor's integration tests: an independent v2
//! batch encoder, compression through `kafka-protocol`, and the proptest
//! strategies for arbitrary batches.

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use proptest::prelude::*;
use strata_segment::testing::build_raw_batch;
use strata_segment::{BatchHeader, MAGIC_V2};

/// One record as generated.
#[derive(Debug, Clone)]
pub struct RecordSpec {
    pub timestamp_delta: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// One batch as generated: header fields, codec and records.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub codec: u8,
    pub log_append_time: bool,
    pub transactional: bool,
    pub control: bool,
    pub partition_leader_epoch: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records: Vec<RecordSpec>,
}

impl BatchSpec {
    fn attributes(&self, codec: u8) -> i16 {
        i16::from(codec)
            | if self.log_append_time { 0x08 } else { 0 }
            | if self.transactional { 0x10 } else { 0 }
            | if self.control { 0x20 } else { 0 }
    }

    fn header(&self, codec: u8) -> BatchHeader {
        let count = i32::try_from(self.records.len()).unwrap();
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: self.partition_leader_epoch,
            magic: MAGIC_V2,
            crc: 0,
            attributes: self.attributes(codec),
            last_offset_delta: count - 1,
            base_timestamp: self.base_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records_count: count,
        }
    }

    /// The batch as a client would send it, in its codec.
    pub fn stored(&self) -> Bytes {
        let body = encode_records(&self.records);
        let mut compressed = BytesMut::new();
        let fill = |buf: &mut BytesMut| {
            buf.put_slice(&body);
            Ok(())
        };
        match self.codec {
            0 => compressed.put_slice(&body),
            1 => Gzip::compress(&mut compressed, fill).unwrap(),
            2 => Snappy::compress(&mut compressed, fill).unwrap(),
            3 => Lz4::compress(&mut compressed, fill).unwrap(),
            _ => Zstd::compress(&mut compressed, fill).unwrap(),
        }
        build_raw_batch(&self.header(self.codec), &compressed)
    }

    /// The batch a Parquet-tier fetch must return: uncompressed, with
    /// `base_offset`.
    pub fn expected(&self, base_offset: i64) -> Vec<u8> {
        let header = BatchHeader {
            base_offset,
            ..self.header(0)
        };
        build_raw_batch(&header, &encode_records(&self.records)).to_vec()
    }
}

/// Encodes records the way Kafka's `DefaultRecord.writeTo` does.
pub fn encode_records(records: &[RecordSpec]) -> Vec<u8> {
    let mut out = Vec::new();
    for (delta, record) in records.iter().enumerate() {
        let mut body = vec![0_u8];
        varlong(&mut body, record.timestamp_delta);
        varlong(&mut body, i64::try_from(delta).unwrap());
        bytes_field(&mut body, record.key.as_deref());
        bytes_field(&mut body, record.value.as_deref());
        varlong(&mut body, i64::try_from(record.headers.len()).unwrap());
        for (key, value) in &record.headers {
            bytes_field(&mut body, Some(key));
            bytes_field(&mut body, value.as_deref());
        }
        varlong(&mut out, i64::try_from(body.len()).unwrap());
        out.extend_from_slice(&body);
    }
    out
}

fn varlong(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (raw & 0x7f) as u8;
        raw >>= 7;
        if raw == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn bytes_field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => varlong(out, -1),
        Some(bytes) => {
            varlong(out, i64::try_from(bytes.len()).unwrap());
            out.extend_from_slice(bytes);
        }
    }
}

fn payload() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Vec::new())),
        4 => proptest::collection::vec(any::<u8>(), 1..300).prop_map(Some),
    ]
}

fn record() -> impl Strategy<Value = RecordSpec> {
    let header = (proptest::collection::vec(any::<u8>(), 0..12), payload());
    (
        prop_oneof![4 => -5_i64..1000, 1 => any::<i64>()],
        payload(),
        payload(),
        proptest::collection::vec(header, 0..3),
    )
        .prop_map(|(timestamp_delta, key, value, headers)| RecordSpec {
            timestamp_delta,
            key,
            value,
            headers,
        })
}

fn timestamp() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 0_i64..2_000_000_000_000, 1 => Just(-1_i64), 1 => any::<i64>()]
}

/// An arbitrary batch: any codec, timestamp type, producer fields, flags.
pub fn batch() -> impl Strategy<Value = BatchSpec> {
    (
        0_u8..5,
        any::<(bool, bool, bool)>(),
        prop_oneof![Just(-1), 0..10],
        timestamp(),
        timestamp(),
        prop_oneof![
            Just((-1_i64, -1_i16, -1_i32)),
            (
                0_i64..1000,
                0_i16..5,
                prop_oneof![0..100, Just(i32::MAX - 1)]
            )
        ],
        proptest::collection::vec(record(), 1..8),
    )
        .prop_map(
            |(
                codec,
                (log_append_time, transactional, control),
                epoch,
                base,
                max,
                producer,
                records,
            )| {
                BatchSpec {
                    codec,
                    log_append_time,
                    transactional,
                    control,
                    partition_leader_epoch: epoch,
                    base_timestamp: base,
                    max_timestamp: max,
                    producer_id: producer.0,
                    producer_epoch: producer.1,
                    base_sequence: producer.2,
                    records,
                }
            },
        )
}

/// A partition's chunks: each a list of batches; chunk base offsets follow
/// on from each other, sometimes with a gap (as after retention).
pub fn chunks() -> impl Strategy<Value = Vec<(i64, Vec<BatchSpec>)>> {
    (
        0_i64..1_000_000,
        proptest::collection::vec((0_i64..3, proptest::collection::vec(batch(), 1..4)), 1..5),
    )
        .prop_map(|(first, chunks)| {
            let mut next = first;
            chunks
                .into_iter()
                .map(|(gap, batches)| {
                    let base = next + gap;
                    next = base + batches.iter().map(|b| b.records.len() as i64).sum::<i64>();
                    (base, batches)
                })
                .collect()
        })
}

/// Every batch with its base offset and expected fetch bytes, in order.
pub fn expected_batches(chunks: &[(i64, Vec<BatchSpec>)]) -> Vec<(i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    for (base, batches) in chunks {
        let mut next = *base;
        for batch in batches {
            let last = next + batch.records.len() as i64 - 1;
            out.push((next, last, batch.expected(next)));
            next = last + 1;
        }
    }
    out
}

/// The stored chunks to hand to the writer.
pub fn stored_chunks(chunks: &[(i64, Vec<BatchSpec>)]) -> Vec<(i64, Bytes)> {
    chunks
        .iter()
        .map(|(base, batches)| {
            let bytes: Vec<u8> = batches.iter().flat_map(|b| b.stored().to_vec()).collect();
            (*base, Bytes::from(bytes))
        })
        .collect()
}

/// Runs a future on a fresh current-thread runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}
