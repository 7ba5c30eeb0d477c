//! Transaction admin RPCs (ListTransactions, DescribeTransaction,
//! AbortTransaction, WriteTxnMarkers): what `kafka-transactions.sh list /
//! describe / find-hanging / abort` and `strata txn` need to find and end
//! a stuck transaction.

use strata_catalog_api::proto::{
    AbortTransactionRequest, AbortTransactionResponse, DescribeTransactionRequest,
    DescribeTransactionResponse, ListTransactionsRequest, ListTransactionsResponse,
    TransactionListing, TxnPartition, TxnProducer, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use tonic::{Request, Response, Status};

use super::{CatalogService, kafka, topic_id};
use crate::error_code;
use crate::store::{TxnRequest, TxnSummary};

/// Transactional ids one ListTransactions returns at most (Kafka returns
/// all; a bound keeps one answer small). Filters apply to this window.
pub(super) const TRANSACTIONS_LIST_MAX: u32 = 10_000;

fn txn_partition(topic_id: uuid::Uuid, partition: u32) -> TxnPartition {
    TxnPartition {
        topic_id: topic_id.as_bytes().to_vec(),
        partition,
    }
}

/// Whether a listed transaction passes the request's filters.
fn matches(summary: &TxnSummary, request: &ListTransactionsRequest, now_ms: i64) -> bool {
    let state = request.states.is_empty() || request.states.contains(&summary.state);
    let producer =
        request.producer_ids.is_empty() || request.producer_ids.contains(&summary.producer_id);
    let duration = request.duration_min_ms < 0
        || (summary.started_ms >= 0 && now_ms - summary.started_ms >= request.duration_min_ms);
    state && producer && duration
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn list_transactions(
    service: &CatalogService,
    request: Request<ListTransactionsRequest>,
) -> Result<Response<ListTransactionsResponse>, Status> {
    let request = request.into_inner();
    let listed = service.store.list_transactions(TRANSACTIONS_LIST_MAX).await;
    let now_ms = service.clock.now_ms();
    let response = match kafka(listed)? {
        Ok(summaries) => ListTransactionsResponse {
            error_code: 0,
            transactions: summaries
                .into_iter()
                .filter(|s| matches(s, &request, now_ms))
                .map(|s| TransactionListing {
                    transactional_id: s.transactional_id,
                    producer_id: s.producer_id,
                    state: s.state,
                })
                .collect(),
        },
        Err((error_code, _)) => ListTransactionsResponse {
            error_code,
            transactions: Vec::new(),
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn describe_transaction(
    service: &CatalogService,
    request: Request<DescribeTransactionRequest>,
) -> Result<Response<DescribeTransactionResponse>, Status> {
    let request = request.into_inner();
    let described = service
        .store
        .describe_transaction(&request.transactional_id)
        .await;
    let response = match kafka(described)? {
        Ok(Some((summary, partitions))) => DescribeTransactionResponse {
            error_code: 0,
            state: summary.state,
            producer_id: summary.producer_id,
            producer_epoch: summary.producer_epoch,
            transaction_timeout_ms: summary.timeout_ms,
            transaction_start_ms: summary.started_ms,
            partitions: partitions
                .into_iter()
                .map(|(id, p)| txn_partition(id, p))
                .collect(),
        },
        Ok(None) => DescribeTransactionResponse {
            error_code: i32::from(error_code::TRANSACTIONAL_ID_NOT_FOUND),
            producer_id: -1,
            producer_epoch: -1,
            transaction_start_ms: -1,
            ..DescribeTransactionResponse::default()
        },
        Err((error_code, _)) => DescribeTransactionResponse {
            error_code,
            producer_id: -1,
            producer_epoch: -1,
            transaction_start_ms: -1,
            ..DescribeTransactionResponse::default()
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "info", skip_all, fields(transactional_id = %request.get_ref().transactional_id))]
pub(super) async fn abort_transaction(
    service: &CatalogService,
    request: Request<AbortTransactionRequest>,
) -> Result<Response<AbortTransactionResponse>, Status> {
    let request = request.into_inner();
    let producer = TxnProducer {
        transactional_id: request.transactional_id,
        producer_id: -1,
        producer_epoch: -1,
    };
    let outcome = service
        .txn_call(Some(producer), TxnRequest::AdminAbort)
        .await;
    let response = match kafka(outcome)? {
        Ok(outcome) => {
            let producer = outcome.producer;
            let partitions = outcome
                .event
                .iter()
                .flat_map(|event| &event.chunks)
                .map(|chunk| TxnPartition {
                    topic_id: chunk.topic_id.clone(),
                    partition: chunk.partition,
                })
                .collect();
            tracing::info!(?producer, "operator aborted an open transaction");
            AbortTransactionResponse {
                error_code: 0,
                producer_id: producer.map_or(-1, |p| p.producer_id),
                producer_epoch: producer.map_or(-1, |p| p.producer_epoch),
                partitions,
            }
        }
        Err((error_code, _)) => AbortTransactionResponse {
            error_code,
            producer_id: -1,
            producer_epoch: -1,
            partitions: Vec::new(),
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "info", skip_all, fields(producer_id = request.get_ref().producer_id))]
pub(super) async fn write_txn_markers(
    service: &CatalogService,
    request: Request<WriteTxnMarkersRequest>,
) -> Result<Response<WriteTxnMarkersResponse>, Status> {
    let request = request.into_inner();
    let refs = request.partitions.clone();
    let partitions = refs
        .iter()
        .map(|p| Some((topic_id(&p.topic_id)?, p.partition)))
        .collect::<Option<Vec<_>>>();
    let Some(partitions) = partitions else {
        return Ok(Response::new(WriteTxnMarkersResponse {
            error_code: 0,
            partitions: super::transactions::partition_results(&refs, |_| {
                error_code::UNKNOWN_TOPIC_OR_PARTITION
            }),
        }));
    };
    let producer = TxnProducer {
        transactional_id: String::new(),
        producer_id: request.producer_id,
        producer_epoch: request.producer_epoch,
    };
    let call = TxnRequest::WriteMarkers {
        commit: request.commit,
        partitions,
    };
    let outcome = service.txn_call(Some(producer), call).await;
    let response = match kafka(outcome)? {
        Ok(outcome) => WriteTxnMarkersResponse {
            error_code: 0,
            partitions: super::transactions::partition_results(&refs, |i| {
                outcome.partition_codes[i]
            }),
        },
        Err((error_code, _)) => WriteTxnMarkersResponse {
            error_code,
            partitions: Vec::new(),
        },
    };
    Ok(Response::new(response))
}
