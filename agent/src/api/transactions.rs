//! The transaction coordinator APIs (AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn): the catalog coordinates every transactional
//! id, so the agent resolves topic names to ids and forwards each call.
//!
//! PRODUCER_FENCED (90) is answered as INVALID_PRODUCER_EPOCH (47) to the
//! request versions that predate it, as Kafka does.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
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

/// The first EndTxn and TxnOffsetCommit version of KIP-890 part 2
/// (`transaction.version` 2): epoch bump per transaction, implicit adds.
pub(crate) const TRANSACTION_V2_END_TXN: i16 = 5;

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

/// Answers AddPartitionsToTxn: v0-v3 (one transaction, from a client) and
/// v4+ (a batch of transactions, each possibly `verify_only`: KIP-890's
/// check that adds nothing).
pub(crate) async fn add_partitions(
    shared: &Arc<Shared>,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        let topics = request
            .v3_and_below_topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions.clone()))
            .collect::<Vec<_>>();
        let txn = producer(
            &request.v3_and_below_transactional_id,
            request.v3_and_below_producer_id,
            request.v3_and_below_producer_epoch,
        );
        let results = add_one(shared, version, txn, &topics, false).await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut results = Vec::with_capacity(request.transactions.len());
    for transaction in &request.transactions {
        let topics = transaction
            .topics
            .iter()
            .map(|t| (t.name.clone(), t.partitions.clone()))
            .collect::<Vec<_>>();
        let txn = producer(
            &transaction.transactional_id,
            transaction.producer_id,
            transaction.producer_epoch,
        );
        let topic_results = add_one(shared, version, txn, &topics, transaction.verify_only).await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(transaction.transactional_id.clone())
                .with_topic_results(topic_results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// Adds (or verifies) one transaction's partitions; one result per
/// partition. Any unknown partition fails the whole call
/// (OPERATION_NOT_ATTEMPTED for the others), as Kafka does.
pub(crate) async fn add_one(
    shared: &Arc<Shared>,
    version: i16,
    txn: proto::TxnProducer,
    topics: &[(TopicName, Vec<i32>)],
    verify_only: bool,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut refs = Vec::new();
    let mut unknown = Vec::new();
    for (name, partitions) in topics {
        for &partition in partitions {
            match partition_id(shared, name, partition).await {
                Some(id) => refs.push((name.clone(), partition, id)),
                None => unknown.push((name.clone(), partition)),
            }
        }
    }
    let codes: Vec<(TopicName, i32, i16)> = if unknown.is_empty() {
        let call = proto::AddPartitionsToTxnRequest {
            producer: Some(txn),
            partitions: refs
                .iter()
                .map(|(_, partition, id)| proto::TxnPartition {
                    topic_id: id.as_bytes().to_vec(),
                    partition: *partition as u32,
                })
                .collect(),
            verify_only,
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
    let mut results: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (name, partition, code) in codes {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(code);
        match results.iter_mut().find(|t| t.name == name) {
            Some(topic) => topic.results_by_partition.push(result),
            None => results.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(name)
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    results
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

/// Answers EndTxn. v5 (KIP-890 part 2, `transaction.version` 2) bumps the
/// producer's epoch as the transaction ends and answers the producer id
/// and epoch of the next transaction.
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
        bump_epoch: version >= TRANSACTION_V2_END_TXN,
    };
    let (code, producer_id, producer_epoch) = match shared.catalog.end_txn(call).await {
        Ok(r) => (
            for_version(r.error_code as i16, version, 2),
            r.producer_id,
            i16::try_from(r.producer_epoch).unwrap_or(-1),
        ),
        Err(status) => {
            warn!(%status, "catalog unavailable during EndTxn");
            (error_code::COORDINATOR_NOT_AVAILABLE, -1, -1)
        }
    };
    EndTxnResponse::default()
        .with_error_code(code)
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch)
}

/// Answers TxnOffsetCommit. v3+ checks the group generation and member
/// like an OffsetCommit. The offsets wait in the catalog until the
/// transaction ends; v5 (KIP-890 part 2) adds the group to the transaction
/// implicitly (such clients send no AddOffsetsToTxn).
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
        implicit_add: version >= TRANSACTION_V2_END_TXN,
        // v3+ carries the consumer's group metadata: checked like an
        // OffsetCommit's, as a broker does.
        check_member: version >= 3,
        generation_id: request.generation_id,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
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
