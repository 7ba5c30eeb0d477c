//! Transaction RPCs (AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
//! EndTxn, ListAbortedTransactions) and the reaper that aborts
//! transactions past their timeout.

use std::sync::Arc;

use strata_catalog_api::proto::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, ListAbortedTransactionsRequest,
    ListAbortedTransactionsResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse, TxnPartition,
    TxnPartitionResult, TxnProducer,
};
use tonic::{Request, Response, Status};

use super::commit_stream::CommitStreamHub;
use super::{CatalogService, kafka, topic_id, unknown_partition};
use crate::store::{CatalogStore, CommittedOffset, TxnOutcome, TxnRequest};
use crate::{Error, Result, error_code};

/// Kafka's default `transaction.max.timeout.ms`.
pub(super) const TRANSACTION_TIMEOUT_MAX_MS: i32 = 900_000;

/// How often the service looks for transactions past their timeout.
const TRANSACTION_TIMEOUT_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// One result per partition of `partitions`, the code of each by index.
pub(super) fn partition_results(
    partitions: &[TxnPartition],
    code: impl Fn(usize) -> i16,
) -> Vec<TxnPartitionResult> {
    partitions
        .iter()
        .enumerate()
        .map(|(i, p)| TxnPartitionResult {
            topic_id: p.topic_id.clone(),
            partition: p.partition,
            error_code: i32::from(code(i)),
        })
        .collect()
}

/// When the transaction APIs last ran, in milliseconds since the service
/// started (which counts as activity: transactions persisted by an earlier
/// run may still be open).
#[derive(Debug)]
pub(super) struct TxnActivity {
    started: tokio::time::Instant,
    last_ms: std::sync::atomic::AtomicU64,
}

impl TxnActivity {
    pub(super) fn new() -> Self {
        Self {
            started: tokio::time::Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A transaction may have begun or changed.
    pub(super) fn touch(&self) {
        self.last_ms
            .fetch_max(self.now_ms(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a transaction could still be open and unexpired: none can
    /// outlive the longest timeout a producer may ask for after the last
    /// call of a transaction API.
    pub(super) fn may_have_open_transactions(&self) -> bool {
        let quiet = u64::try_from(TRANSACTION_TIMEOUT_MAX_MS).unwrap_or(u64::MAX)
            + 2 * u64::try_from(TRANSACTION_TIMEOUT_CHECK.as_millis()).unwrap_or(0);
        self.now_ms()
            <= self
                .last_ms
                .load(std::sync::atomic::Ordering::Relaxed)
                .saturating_add(quiet)
    }
}

/// Aborts timed-out transactions every [`TRANSACTION_TIMEOUT_CHECK`] until
/// the service is dropped. A sweep is a write to the store, so it runs only
/// while a transaction could be open: an idle catalog's writer (and its
/// commit latency) is left alone.
pub(super) async fn transaction_reaper(
    service: std::sync::Weak<CommitStreamHub>,
    store: Arc<dyn CatalogStore>,
    activity: Arc<TxnActivity>,
) {
    let mut ticks = tokio::time::interval(TRANSACTION_TIMEOUT_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(hub) = service.upgrade() else {
            return;
        };
        if !activity.may_have_open_transactions() {
            continue;
        }
        let aborted = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                let aborts = store.abort_expired_transactions().await?;
                if let Some(event) = aborts.event {
                    hub.publish(event);
                }
                Ok::<_, Error>(aborts.transactional_ids)
            }
        })
        .await;
        match aborted {
            Ok(Ok(ids)) if !ids.is_empty() => {
                tracing::info!(?ids, "aborted transactions past their timeout");
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot abort timed-out transactions"),
            Err(error) => tracing::warn!(%error, "transaction reaper task failed"),
        }
    }
}

impl CatalogService {
    /// Runs a transaction coordinator call and publishes its markers.
    pub(super) async fn txn_call(
        &self,
        producer: Option<TxnProducer>,
        request: TxnRequest,
    ) -> Result<TxnOutcome> {
        self.txn_activity.touch();
        let producer = producer.ok_or(Error::InvalidArgument {
            field: "producer",
            reason: "missing".to_string(),
        })?;
        let store = Arc::clone(&self.store);
        self.write_and_publish(async move {
            let outcome = store.transaction(producer, request).await?;
            let event = outcome.event.clone();
            Ok((outcome, event))
        })
        .await
    }

    /// Aborts every transaction older than its timeout now (the service
    /// also does this on its own every second); for tests with a manual
    /// clock. Returns the transactional ids aborted.
    pub async fn abort_expired_transactions(&self) -> Result<Vec<String>> {
        let store = Arc::clone(&self.store);
        self.write_and_publish(async move {
            let aborts = store.abort_expired_transactions().await?;
            Ok((aborts.transactional_ids, aborts.event))
        })
        .await
    }
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn add_partitions_to_txn(
    service: &CatalogService,
    request: Request<AddPartitionsToTxnRequest>,
) -> Result<Response<AddPartitionsToTxnResponse>, Status> {
    let request = request.into_inner();
    let refs = request.partitions.clone();
    let partitions = refs
        .iter()
        .map(|p| Some((topic_id(&p.topic_id)?, p.partition)))
        .collect::<Option<Vec<_>>>();
    let Some(partitions) = partitions else {
        return Ok(Response::new(AddPartitionsToTxnResponse {
            error_code: 0,
            partitions: partition_results(&refs, |_| error_code::UNKNOWN_TOPIC_OR_PARTITION),
        }));
    };
    let call = if request.verify_only {
        TxnRequest::VerifyPartitions(partitions)
    } else {
        TxnRequest::AddPartitions(partitions)
    };
    let outcome = service.txn_call(request.producer, call).await;
    let response = match kafka(outcome)? {
        Ok(outcome) => AddPartitionsToTxnResponse {
            error_code: 0,
            partitions: partition_results(&refs, |i| outcome.partition_codes[i]),
        },
        Err((error_code, _)) => AddPartitionsToTxnResponse {
            error_code,
            partitions: Vec::new(),
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn add_offsets_to_txn(
    service: &CatalogService,
    request: Request<AddOffsetsToTxnRequest>,
) -> Result<Response<AddOffsetsToTxnResponse>, Status> {
    let request = request.into_inner();
    let call = TxnRequest::AddOffsets {
        group_id: request.group_id,
    };
    let outcome = service.txn_call(request.producer, call).await;
    let error_code = match kafka(outcome)? {
        Ok(_) => 0,
        Err((error_code, _)) => error_code,
    };
    Ok(Response::new(AddOffsetsToTxnResponse { error_code }))
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn txn_offset_commit(
    service: &CatalogService,
    request: Request<TxnOffsetCommitRequest>,
) -> Result<Response<TxnOffsetCommitResponse>, Status> {
    let request = request.into_inner();
    let refs: Vec<TxnPartition> = request
        .offsets
        .iter()
        .map(|o| TxnPartition {
            topic_id: o.topic_id.clone(),
            partition: o.partition,
        })
        .collect();
    let offsets = request
        .offsets
        .iter()
        .map(|o| {
            Some(CommittedOffset {
                topic_id: topic_id(&o.topic_id)?,
                partition: o.partition,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata.clone(),
                commit_timestamp_ms: -1,
            })
        })
        .collect::<Option<Vec<_>>>();
    let Some(offsets) = offsets else {
        return Ok(Response::new(TxnOffsetCommitResponse {
            error_code: 0,
            partitions: partition_results(&refs, |_| error_code::UNKNOWN_TOPIC_OR_PARTITION),
        }));
    };
    // A commit without group metadata (generation < 0, no member: an
    // older producer API) skips the check, as in Kafka.
    let anonymous = request.generation_id < 0 && request.member_id.is_empty();
    if request.check_member && !anonymous {
        let code = service
            .groups
            .validate_txn_commit(
                request.group_id.clone(),
                request.generation_id,
                request.member_id.clone(),
                request.group_instance_id.clone(),
            )
            .await?;
        if code != error_code::NONE {
            return Ok(Response::new(TxnOffsetCommitResponse {
                error_code: i32::from(code),
                partitions: Vec::new(),
            }));
        }
    }
    let call = TxnRequest::CommitOffsets {
        group_id: request.group_id,
        offsets,
        implicit_add: request.implicit_add,
    };
    let outcome = service.txn_call(request.producer, call).await;
    let response = match kafka(outcome)? {
        Ok(outcome) => TxnOffsetCommitResponse {
            error_code: 0,
            partitions: partition_results(&refs, |i| outcome.partition_codes[i]),
        },
        Err((error_code, _)) => TxnOffsetCommitResponse {
            error_code,
            partitions: Vec::new(),
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all, fields(commit = request.get_ref().commit))]
pub(super) async fn end_txn(
    service: &CatalogService,
    request: Request<EndTxnRequest>,
) -> Result<Response<EndTxnResponse>, Status> {
    let request = request.into_inner();
    let call = TxnRequest::End {
        commit: request.commit,
        bump_epoch: request.bump_epoch,
    };
    let outcome = service.txn_call(request.producer, call).await;
    let response = match kafka(outcome)? {
        Ok(outcome) => {
            let producer = outcome.producer;
            EndTxnResponse {
                error_code: 0,
                producer_id: producer.map_or(-1, |p| p.producer_id),
                producer_epoch: producer.map_or(-1, |p| p.producer_epoch),
            }
        }
        Err((error_code, _)) => EndTxnResponse {
            error_code,
            producer_id: -1,
            producer_epoch: -1,
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition))]
pub(super) async fn list_aborted_transactions(
    service: &CatalogService,
    request: Request<ListAbortedTransactionsRequest>,
) -> Result<Response<ListAbortedTransactionsResponse>, Status> {
    let request = request.into_inner();
    let result = match topic_id(&request.topic_id) {
        Some(id) => {
            service
                .store
                .aborted_transactions(
                    id,
                    request.partition,
                    request.from_offset,
                    request.to_offset,
                )
                .await
        }
        None => Err(unknown_partition(&request.topic_id, request.partition)),
    };
    let response = match kafka(result)? {
        Ok(transactions) => ListAbortedTransactionsResponse {
            error_code: 0,
            transactions,
        },
        Err((error_code, _)) => ListAbortedTransactionsResponse {
            error_code,
            transactions: Vec::new(),
        },
    };
    Ok(Response::new(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: the reaper stops writing to the store once no transaction can
    /// be open, and starts again with the next transaction call. Method:
    /// tokio's paused clock across the longest transaction timeout.
    #[tokio::test(start_paused = true)]
    async fn sweeps_only_while_a_transaction_could_be_open() {
        let activity = TxnActivity::new();
        assert!(activity.may_have_open_transactions(), "after a start");
        let longest = std::time::Duration::from_millis(
            u64::try_from(TRANSACTION_TIMEOUT_MAX_MS).expect("positive"),
        );
        tokio::time::advance(longest).await;
        assert!(activity.may_have_open_transactions(), "within the timeout");
        tokio::time::advance(TRANSACTION_TIMEOUT_CHECK * 3).await;
        assert!(!activity.may_have_open_transactions(), "quiet");
        activity.touch();
        assert!(activity.may_have_open_transactions(), "a transaction call");
    }
}
