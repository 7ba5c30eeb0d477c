//! The transaction admin APIs: ListTransactions, DescribeTransactions and
//! WriteTxnMarkers (what `kafka-transactions.sh list / describe /
//! find-hanging / abort` send), forwarded to the catalog, the coordinator
//! of every transactional id.

use std::sync::Arc;

use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedState,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};
use strata_catalog_api::proto;
use tracing::warn;
use uuid::Uuid;

use super::str_bytes;
use crate::error_code;
use crate::server::Shared;

/// The states a ListTransactions filter may name (Kafka's, of which the
/// catalog has these four: it never stores the Prepare* states).
const KNOWN_STATES: &[&str] = &[
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

/// Answers ListTransactions v0-v1.
pub(crate) async fn list(
    shared: &Arc<Shared>,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let states: Vec<String> = request
        .state_filters
        .iter()
        .map(|s| s.to_string())
        .collect();
    let unknown: Vec<_> = states
        .iter()
        .filter(|s| !KNOWN_STATES.contains(&s.as_str()))
        .map(|s| str_bytes(s))
        .collect();
    let call = proto::ListTransactionsRequest {
        states,
        producer_ids: request.producer_id_filters.iter().map(|p| p.0).collect(),
        duration_min_ms: request.duration_filter,
    };
    let response = ListTransactionsResponse::default().with_unknown_state_filters(unknown);
    match shared.catalog.list_transactions(call).await {
        Ok(r) => response
            .with_error_code(r.error_code as i16)
            .with_transaction_states(
                r.transactions
                    .into_iter()
                    .map(|t| {
                        ListedState::default()
                            .with_transactional_id(TransactionalId(str_bytes(&t.transactional_id)))
                            .with_producer_id(ProducerId(t.producer_id))
                            .with_transaction_state(str_bytes(&t.state))
                    })
                    .collect(),
            ),
        Err(status) => {
            warn!(%status, "catalog unavailable during ListTransactions");
            response.with_error_code(error_code::COORDINATOR_NOT_AVAILABLE)
        }
    }
}

/// The topic names of `partitions`, grouped by topic (partitions of topics
/// deleted since are left out).
async fn topics_of(shared: &Arc<Shared>, partitions: &[proto::TxnPartition]) -> Vec<TopicData> {
    let mut topics: Vec<TopicData> = Vec::new();
    for p in partitions {
        let Ok(id) = Uuid::from_slice(&p.topic_id) else {
            continue;
        };
        let Ok(Some(info)) = shared.topics.get_by_id(id).await else {
            continue;
        };
        let name = TopicName(str_bytes(&info.name));
        match topics.iter_mut().find(|t| t.topic == name) {
            Some(topic) => topic.partitions.push(p.partition as i32),
            None => topics.push(
                TopicData::default()
                    .with_topic(name)
                    .with_partitions(vec![p.partition as i32]),
            ),
        }
    }
    topics
}

/// Answers DescribeTransactions v0.
pub(crate) async fn describe(
    shared: &Arc<Shared>,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for transactional_id in request.transactional_ids {
        let call = proto::DescribeTransactionRequest {
            transactional_id: transactional_id.to_string(),
        };
        let state = DescribedState::default()
            .with_transactional_id(transactional_id)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
        states.push(match shared.catalog.describe_transaction(call).await {
            Ok(r) if r.error_code != 0 => state.with_error_code(r.error_code as i16),
            Ok(r) => state
                .with_transaction_state(str_bytes(&r.state))
                .with_transaction_timeout_ms(r.transaction_timeout_ms)
                .with_transaction_start_time_ms(r.transaction_start_ms)
                .with_producer_id(ProducerId(r.producer_id))
                .with_producer_epoch(i16::try_from(r.producer_epoch).unwrap_or(i16::MAX))
                .with_topics(topics_of(shared, &r.partitions).await),
            Err(status) => {
                warn!(%status, "catalog unavailable during DescribeTransactions");
                state.with_error_code(error_code::COORDINATOR_NOT_AVAILABLE)
            }
        });
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

/// Answers WriteTxnMarkers v1: one catalog call per marker; partitions of
/// unknown topics get UNKNOWN_TOPIC_OR_PARTITION.
pub(crate) async fn write_markers(
    shared: &Arc<Shared>,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(request.markers.len());
    for marker in request.markers {
        let mut known = Vec::new();
        let mut codes: Vec<(TopicName, i32, i16)> = Vec::new();
        for topic in &marker.topics {
            let info = shared
                .topics
                .get(super::topic_str(&topic.name))
                .await
                .ok()
                .flatten();
            for &partition in &topic.partition_indexes {
                match &info {
                    Some(info) if info.has_partition(partition) => {
                        known.push(proto::TxnPartition {
                            topic_id: info.id.as_bytes().to_vec(),
                            partition: partition as u32,
                        });
                        codes.push((topic.name.clone(), partition, error_code::NONE));
                    }
                    _ => codes.push((
                        topic.name.clone(),
                        partition,
                        error_code::UNKNOWN_TOPIC_OR_PARTITION,
                    )),
                }
            }
        }
        let call = proto::WriteTxnMarkersRequest {
            producer_id: marker.producer_id.0,
            producer_epoch: i32::from(marker.producer_epoch),
            commit: marker.transaction_result,
            partitions: known,
        };
        let answered: Vec<i16> = match shared.catalog.write_txn_markers(call).await {
            Ok(r) if r.error_code != 0 => vec![r.error_code as i16; codes.len()],
            Ok(r) => r.partitions.iter().map(|p| p.error_code as i16).collect(),
            Err(status) => {
                warn!(%status, "catalog unavailable during WriteTxnMarkers");
                vec![error_code::COORDINATOR_NOT_AVAILABLE; codes.len()]
            }
        };
        let mut answered = answered.into_iter();
        let mut topics: Vec<WritableTxnMarkerTopicResult> = Vec::new();
        for (name, partition, code) in codes {
            let code = if code == error_code::NONE {
                answered.next().unwrap_or(error_code::NONE)
            } else {
                code
            };
            let result = WritableTxnMarkerPartitionResult::default()
                .with_partition_index(partition)
                .with_error_code(code);
            match topics.iter_mut().find(|t| t.name == name) {
                Some(topic) => topic.partitions.push(result),
                None => topics.push(
                    WritableTxnMarkerTopicResult::default()
                        .with_name(name)
                        .with_partitions(vec![result]),
                ),
            }
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
