//! Goal: a response that is ready is sent at once, even while the next
//! request on the same connection is still waiting (Kafka clients pipeline
//! requests). Method: on one connection, send a Produce (answered within
//! milliseconds) followed by a Fetch that long-polls for 6 s; the Produce
//! response must be readable long before the Fetch's wait ends. Before the
//! fix, the Produce response sat in the write buffer for the whole wait.

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;
mod wire;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn frame(key: ApiKey, version: i16, correlation_id: i32, request: &RequestKind) -> BytesMut {
    wire::request_frame(key, version, correlation_id, "pipelining-test", request)
}

fn read_response(stream: &mut TcpStream, key: ApiKey, version: i16) -> (i32, ResponseKind) {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut buf = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut buf).unwrap();
    wire::decode_response(key, version, buf)
}

fn batch() -> Bytes {
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from_static(b"hello")),
        headers: IndexMap::new(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
    buf.freeze()
}

#[test]
fn a_ready_response_is_not_held_behind_a_waiting_one() {
    let server = common::start();
    let mut stream = TcpStream::connect(&server.address).unwrap();
    let topic = TopicName(StrBytes::from_static_str("pipelined"));

    let create = CreateTopicsRequest::default()
        .with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(topic.clone())
                .with_num_partitions(2)
                .with_replication_factor(1),
        ])
        .with_timeout_ms(5000);
    stream
        .write_all(&frame(ApiKey::CreateTopics, 5, 1, &create.into()))
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (_, created) = read_response(&mut stream, ApiKey::CreateTopics, 5);
    let ResponseKind::CreateTopics(created) = created else {
        panic!("not CreateTopics")
    };
    assert_eq!(created.topics[0].error_code, 0);

    // A produce to partition 0, then (pipelined) a fetch long-polling the
    // empty partition 1. Responses go out in request order, so the
    // produce's answer is first, and it must not wait for the fetch.
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(topic.clone())
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch())),
                ]),
        ]);
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(6_000)
        .with_min_bytes(1 << 20)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            fetch_request::FetchTopic::default()
                .with_topic(topic)
                .with_partitions(vec![
                    fetch_request::FetchPartition::default()
                        .with_partition(1)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let mut both = frame(ApiKey::Produce, 9, 2, &produce.into());
    both.extend_from_slice(&frame(ApiKey::Fetch, 11, 3, &fetch.into()));
    stream.write_all(&both).unwrap();

    // Generous bound, far below the fetch's 6 s wait.
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let (correlation, produced) = read_response(&mut stream, ApiKey::Produce, 9);
    assert_eq!(correlation, 2);
    let ResponseKind::Produce(produced) = produced else {
        panic!("not Produce")
    };
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);

    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (correlation, _) = read_response(&mut stream, ApiKey::Fetch, 11);
    assert_eq!(correlation, 3);
}
