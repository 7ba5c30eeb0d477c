//! The transaction coordinator APIs (AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn): the catalog coordinates every transactional
//! id, so the agent resolves topic names to ids and forwards each call.
//!
//! PRODUCER_FENCED (90) is answered as INVALID_PRODUCER_EPOCH (47) to the
//! request versions that predate it, as Kafka does.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, ProducerId, TopicName,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use strata_catalog_api::proto;
use tracing::warn;
use uuid::Uuid;

use crate::error_code;
use crate::server::Shared;

/// Kafka's PRODUCER_FENCED, introduced with KIP-588.
const PRODUCER_FENCED: i16 = 90;
/// Kafka's OPERATION_NOT_ATTEMPTED: the other partitions of an
/// AddPartitionsToTxn that failed for one of them.
const OPERATION_NOT_ATTEMPTED: i16 = 55;

/// The code for a client speaking `version`: PRODUCER_FENCED becomes
/// INVALID_PRODUCER_EPOCH below `fenced_since`.
fn for_version(code: i16, version: i16, fenced_since: i16) -> i16 {
    if code == PRODUCER_FENCED && version < fenced_since {
        error_code::INVALID_PRODUCER_EPOCH
    } else {
        code
    }
}

fn producer(transactional_id: &str, producer_id: ProducerId, epoch: i16) -> proto::TxnProducer {
    proto::TxnProducer {
        transactional_id: transactional_id.to_string(),
        producer_id: producer_id.0,
        producer_epoch: i32::from(epoch),
    }
}

/// The topic's id when it has `partition`.
async fn partition_id(shared: &Arc<Shared>, name: &TopicName, partition: i32) -> Option<Uuid> {
    let info = shared.topics.get(super::topic_str(name)).await.ok()??;
    info.has_partition(partition).then_some(info.id)
}

/// Answers AddPartitionsToTxn v0-v3.
pub(crate) async fn add_partitions(
    shared: &Arc<Shared>,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let mut refs = Vec::new();
    let mut unknown = Vec::new();
    for topic in &request.v3_and_below_topics {
        for &partition in &topic.partitions {
            match partition_id(shared, &topic.name, partition).await {
                Some(id) => refs.push((topic.name.clone(), partition, id)),
                None => unknown.push((topic.name.clone(), partition)),
            }
        }
    }
    let codes: Vec<(TopicName, i32, i16)> = if unknown.is_empty() {
        let call = proto::AddPartitionsToTxnRequest {
            producer: Some(producer(
                &request.v3_and_below_transactional_id,
                request.v3_and_below_producer_id,
                request.v3_and_below_producer_epoch,
            )),
            partitions: refs
                .iter()
                .map(|(_, partition, id)| proto::TxnPartition {
                    topic_id: id.as_bytes().to_vec(),
                    partition: *partition as u32,
                })
                .collect(),
        };
        let (code, per_partition) = match shared.catalog.add_partitions_to_txn(call).await {
            Ok(r) => (
                r.error_code as i16,
                r.partitions.iter().map(|p| p.error_code as i16).collect(),
            ),
            Err(status) => {
                warn!(%status, "catalog unavailable during AddPartitionsToTxn");
                (error_code::COORDINATOR_NOT_AVAILABLE, Vec::new())
            }
        };
        refs.into_iter()
            .enumerate()
            .map(|(i, (name, partition, _))| {
                let code = match code {
                    error_code::NONE => per_partition.get(i).copied().unwrap_or(error_code::NONE),
                    code => for_version(code, version, 2),
                };
                (name, partition, code)
            })
            .collect()
    } else {
        let unknown_codes = unknown
            .into_iter()
            .map(|(name, partition)| (name, partition, error_code::UNKNOWN_TOPIC_OR_PARTITION));
        refs.into_iter()
            .map(|(name, partition, _)| (name, partition, OPERATION_NOT_ATTEMPTED))
            .chain(unknown_codes)
            .collect()
    };
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (name, partition, code) in codes {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(code);
        match topics.iter_mut().find(|t| t.name == name) {
            Some(topic) => topic.results_by_partition.push(result),
            None => topics.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(name)
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(topics)
}

/// Answers AddOffsetsToTxn.
pub(crate) async fn add_offsets(
    shared: &Arc<Shared>,
    version: i16,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let call = proto::AddOffsetsToTxnRequest {
        producer: Some(producer(
            &request.transactional_id,
            request.producer_id,
            request.producer_epoch,
        )),
        group_id: request.group_id.to_string(),
    };
    let code = match shared.catalog.add_offsets_to_txn(call).await {
        Ok(r) => for_version(r.error_code as i16, version, 2),
        Err(status) => {
            warn!(%status, "catalog unavailable during AddOffsetsToTxn");
            error_code::COORDINATOR_NOT_AVAILABLE
        }
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// Answers EndTxn v0-v4.
pub(crate) async fn end(
    shared: &Arc<Shared>,
    version: i16,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let call = proto::EndTxnRequest {
        producer: Some(producer(
            &request.transactional_id,
            request.producer_id,
            request.producer_epoch,
        )),
        commit: request.committed,
    };
    let code = match shared.catalog.end_txn(call).await {
        Ok(r) => for_version(r.error_code as i16, version, 2),
        Err(status) => {
            warn!(%status, "catalog unavailable during EndTxn");
            error_code::COORDINATOR_NOT_AVAILABLE
        }
    };
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}

/// Answers TxnOffsetCommit v0-v4. The group's generation and member (v3+)
/// are not checked: the offsets wait in the catalog until the transaction
/// ends.
pub(crate) async fn offset_commit(
    shared: &Arc<Shared>,
    version: i16,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let mut entries = Vec::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            let id = partition_id(shared, &topic.name, p.partition_index).await;
            entries.push((topic.name.clone(), p.partition_index, id.is_some()));
            if let Some(id) = id {
                offsets.push(proto::TxnOffset {
                    topic_id: id.as_bytes().to_vec(),
                    partition: p.partition_index as u32,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p
                        .committed_metadata
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                });
            }
        }
    }
    let call = proto::TxnOffsetCommitRequest {
        producer: Some(producer(
            &request.transactional_id,
            request.producer_id,
            request.producer_epoch,
        )),
        group_id: request.group_id.to_string(),
        offsets,
    };
    let (code, mut per_partition) = match shared.catalog.txn_offset_commit(call).await {
        Ok(r) => (
            for_version(r.error_code as i16, version, 3),
            r.partitions
                .into_iter()
                .map(|p| p.error_code as i16)
                .collect::<Vec<_>>()
                .into_iter(),
        ),
        Err(status) => {
            warn!(%status, "catalog unavailable during TxnOffsetCommit");
            (
                error_code::COORDINATOR_NOT_AVAILABLE,
                Vec::new().into_iter(),
            )
        }
    };
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
    for (name, partition, known) in entries {
        let partition_code = match (known, code) {
            (false, _) => error_code::UNKNOWN_TOPIC_OR_PARTITION,
            (true, error_code::NONE) => per_partition.next().unwrap_or(error_code::NONE),
            (true, code) => code,
        };
        let result = TxnOffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(partition_code);
        match topics.iter_mut().find(|t| t.name == name) {
            Some(topic) => topic.partitions.push(result),
            None => topics.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(vec![result]),
            ),
        }
    }
    TxnOffsetCommitResponse::default().with_topics(topics)
}
