//! Topic and partition requests: CreateTopics, Produce, ListOffsets.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{CreateTopicsRequest, ListOffsetsRequest, ProduceRequest};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use tracing::instrument;

use super::{Client, TopicPartition, broker_id, topic_name};
use crate::error::{Error, Result};

/// Produce v13 names topics by id only; this client names them.
const PRODUCE_VERSION_MAX: i16 = 12;

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark).
    Latest,
    /// The first offset whose record timestamp is at or after this many
    /// milliseconds since the Unix epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The timestamp ListOffsets encodes this as.
    fn timestamp(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ms) => ms,
        }
    }
}

/// One record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// The record key.
    pub key: Option<Bytes>,
    /// The record value.
    pub value: Option<Bytes>,
    /// Creation time in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl Client {
    /// Creates `name` with `partitions` partitions and the broker's default
    /// replication. Fails with TOPIC_ALREADY_EXISTS when it exists.
    #[instrument(level = "debug", skip_all, fields(topic = name))]
    pub async fn create_topic(&mut self, name: &str, partitions: i32) -> Result<()> {
        let timeout_ms = self.request_timeout_ms();
        let build = |version: i16| {
            let topic = CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(if version >= 4 { -1 } else { 1 });
            CreateTopicsRequest::default()
                .with_topics(vec![topic])
                .with_timeout_ms(timeout_ms)
        };
        let response = if self.brokers.contains_key(&self.controller_id) {
            self.call_node(self.controller_id, i16::MAX, build).await?
        } else {
            self.call_any(i16::MAX, build).await?
        };
        for topic in response.topics {
            Error::check(topic.error_code, || {
                topic
                    .error_message
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| format!("topic {name:?}"))
            })?;
        }
        Ok(())
    }

    /// Appends `records` to one partition as a single v2 batch (acks=all);
    /// returns the offset of the first.
    #[instrument(level = "debug", skip_all, fields(topic = topic, partition = partition))]
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProducerRecord],
    ) -> Result<i64> {
        let batch = encode_batch(records)?;
        let leader = self.leader(&TopicPartition::new(topic, partition)).await?;
        let timeout_ms = self.request_timeout_ms();
        let response = self
            .call_node(leader, PRODUCE_VERSION_MAX, |_| {
                let data = PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch));
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(timeout_ms)
                    .with_topic_data(vec![
                        TopicProduceData::default()
                            .with_name(topic_name(topic))
                            .with_partition_data(vec![data]),
                    ])
            })
            .await?;
        let answer = response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.index == partition)
            .ok_or_else(|| Error::Protocol {
                address: format!("broker {leader}"),
                reason: format!("Produce response lacks {topic}-{partition}"),
            })?;
        Error::check(answer.error_code, || {
            answer
                .error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_else(|| format!("partition {topic}-{partition}"))
        })?;
        Ok(answer.base_offset)
    }

    /// Looks up `spec` for each partition, asking each partition's leader.
    /// An offset is `None` when a timestamp lies after every record.
    #[instrument(level = "debug", skip_all, fields(partitions = partitions.len()))]
    pub async fn list_offsets(
        &mut self,
        partitions: &[TopicPartition],
        spec: OffsetSpec,
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
        let mut by_leader: BTreeMap<i32, Vec<&TopicPartition>> = BTreeMap::new();
        for (partition, leader) in partitions.iter().zip(self.leaders(partitions).await?) {
            by_leader.entry(leader).or_default().push(partition);
        }
        let mut offsets = BTreeMap::new();
        for (leader, partitions) in by_leader {
            let request = list_offsets_request(&partitions, spec);
            let response = self.call_node(leader, i16::MAX, |_| request).await?;
            for topic in response.topics {
                for p in topic.partitions {
                    let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                    Error::check(p.error_code, || {
                        format!("partition {}-{}", tp.topic, tp.partition)
                    })?;
                    offsets.insert(tp, (p.offset >= 0).then_some(p.offset));
                }
            }
        }
        Ok(offsets)
    }

    /// The leader of each partition, in order.
    async fn leaders(&mut self, partitions: &[TopicPartition]) -> Result<Vec<i32>> {
        let mut topics: Vec<&str> = partitions.iter().map(|p| p.topic.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        let metadata = self.metadata(Some(&topics)).await?;
        partitions
            .iter()
            .map(|tp| {
                metadata
                    .topics
                    .iter()
                    .find(|t| t.name == tp.topic)
                    .and_then(|t| t.leaders.get(&tp.partition))
                    .copied()
                    .filter(|&leader| leader >= 0)
                    .ok_or_else(|| Error::Kafka {
                        code: 3, // UNKNOWN_TOPIC_OR_PARTITION
                        message: format!("partition {}-{}", tp.topic, tp.partition),
                    })
            })
            .collect()
    }

    async fn leader(&mut self, partition: &TopicPartition) -> Result<i32> {
        let leaders = self.leaders(std::slice::from_ref(partition)).await?;
        Ok(leaders
            .into_iter()
            .next()
            .expect("one leader per partition asked for"))
    }

    fn request_timeout_ms(&self) -> i32 {
        let ms = self.connection_config.request_timeout.as_millis();
        i32::try_from(ms).unwrap_or(i32::MAX)
    }
}

/// A ListOffsets request for `partitions` (read-uncommitted, as a consumer).
fn list_offsets_request(partitions: &[&TopicPartition], spec: OffsetSpec) -> ListOffsetsRequest {
    let mut topics: BTreeMap<&str, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for tp in partitions {
        topics.entry(&tp.topic).or_default().push(
            ListOffsetsPartition::default()
                .with_partition_index(tp.partition)
                .with_timestamp(spec.timestamp()),
        );
    }
    ListOffsetsRequest::default()
        .with_replica_id(broker_id(-1))
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    ListOffsetsTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// One uncompressed v2 record batch holding `records` at offsets 0..n.
fn encode_batch(records: &[ProducerRecord]) -> Result<Bytes> {
    let records: Vec<Record> = records
        .iter()
        .zip(0..)
        .map(|(r, offset): (_, i32)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(offset),
            // The encoder keeps records in one batch while offset minus
            // sequence is constant and derives the batch's base sequence
            // from the first record: -1 there means "not idempotent".
            sequence: offset - 1,
            timestamp: r.timestamp_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: IndexMap::new(),
        })
        .collect();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .map_err(|e| Error::InvalidArgument(format!("cannot encode the record batch: {e}")))?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use kafka_protocol::records::RecordBatchDecoder;

    use super::*;

    #[test]
    fn batches_round_trip() {
        let records: Vec<ProducerRecord> = (0..3)
            .map(|i| ProducerRecord {
                key: None,
                value: Some(Bytes::from(format!("v{i}"))),
                timestamp_ms: 1000 * i,
            })
            .collect();
        let mut batch = encode_batch(&records).expect("encodes");
        let set = RecordBatchDecoder::decode(&mut batch).expect("decodes");
        assert!(batch.is_empty(), "one batch holds every record");
        let values: Vec<_> = set.records.iter().map(|r| r.value.clone()).collect();
        assert_eq!(
            values,
            records.iter().map(|r| r.value.clone()).collect::<Vec<_>>()
        );
        assert_eq!(set.records[2].timestamp, 2000);
    }

    #[test]
    fn list_offsets_groups_partitions_by_topic() {
        let a0 = TopicPartition::new("a", 0);
        let b1 = TopicPartition::new("b", 1);
        let a1 = TopicPartition::new("a", 1);
        let request = list_offsets_request(&[&a0, &b1, &a1], OffsetSpec::Earliest);
        assert_eq!(request.topics.len(), 2);
        assert_eq!(request.topics[0].partitions.len(), 2);
        assert_eq!(request.topics[0].partitions[1].timestamp, -2);
        assert_eq!(request.replica_id.0, -1);
    }
}
