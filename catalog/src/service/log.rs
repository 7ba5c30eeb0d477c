//! Log RPCs: segment commits, chunk lookups by offset and timestamp,
//! partition offsets, and the commit stream.

use std::sync::Arc;

use strata_catalog_api::CommitStream;
use strata_catalog_api::proto::{
    CommitSegmentRequest, CommitSegmentResponse, FindChunkByTimestampRequest,
    FindChunkByTimestampResponse, GetPartitionOffsetsRequest, GetPartitionOffsetsResponse,
    LookupChunksRequest, LookupChunksResponse, SubscribeCommitsRequest,
};
use tonic::{Request, Response, Status};

use super::{CatalogService, CommitFaults, kafka, topic_id, unknown_partition};
use crate::{Error, Result};

/// Chunks returned by LookupChunks when the request asks for 0.
const LOOKUP_CHUNKS_DEFAULT: u32 = 1_000;
/// The most chunks one LookupChunks returns, whatever it asks for.
const LOOKUP_CHUNKS_MAX: u32 = 10_000;

impl CatalogService {
    fn check_commit(request: &CommitSegmentRequest) -> Result<()> {
        if request.segment_id.is_empty() {
            return Err(Error::InvalidArgument {
                field: "segment_id",
                reason: "empty".to_string(),
            });
        }
        let empty_batch = request
            .chunks
            .iter()
            .flat_map(|chunk| &chunk.batches)
            .any(|batch| batch.offset_count == 0);
        if empty_batch {
            return Err(Error::InvalidArgument {
                field: "offset_count",
                reason: "a batch spans at least one offset".to_string(),
            });
        }
        Ok(())
    }
}

#[tracing::instrument(level = "debug", skip_all, fields(segment_id = %request.get_ref().segment_id))]
pub(super) async fn commit_segment(
    service: &CatalogService,
    request: Request<CommitSegmentRequest>,
) -> Result<Response<CommitSegmentResponse>, Status> {
    let request = request.into_inner();
    CatalogService::check_commit(&request)?;
    if request.agent_epoch == 0 && !service.unfenced_commits {
        return Err(Status::failed_precondition(format!(
            "agent `{}` committed without a registration epoch; this catalog fences every \
             commit: register first (RegisterAgent)",
            request.agent_id
        )));
    }
    let store = Arc::clone(&service.store);
    let fault = service
        .commit_faults
        .as_ref()
        .map(CommitFaults::next)
        .unwrap_or_default();
    // The write runs in a task of its own (`write_and_publish`), so a
    // late commit lands even after its caller stopped waiting.
    let response = service
        .write_and_publish(async move {
            if let Some(delay) = fault.late_apply {
                tracing::warn!(
                    ?delay,
                    "fault injection: holding a commit, then applying it"
                );
                tokio::time::sleep(delay).await;
            }
            let outcome = store.commit_segment(request).await?;
            if fault.unknown_outcome {
                tracing::warn!(
                    "fault injection: the commit applied; the catalog does not learn it \
                     (reply and commit-stream event lost)"
                );
                return Ok((outcome.response, None));
            }
            Ok((outcome.response, outcome.event))
        })
        .await?;
    if fault.lose_reply || fault.unknown_outcome {
        tracing::warn!("fault injection: the commit applied; its reply is lost");
        return Err(Status::unavailable(
            "fault injection: the commit was applied but its reply is lost",
        ));
    }
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition, offset = request.get_ref().offset))]
pub(super) async fn lookup_chunks(
    service: &CatalogService,
    request: Request<LookupChunksRequest>,
) -> Result<Response<LookupChunksResponse>, Status> {
    let request = request.into_inner();
    let max_chunks = match request.max_chunks {
        0 => LOOKUP_CHUNKS_DEFAULT,
        n => n.min(LOOKUP_CHUNKS_MAX),
    };
    let result = match topic_id(&request.topic_id) {
        Some(id) => {
            service
                .store
                .lookup_chunks(id, request.partition, request.offset, max_chunks)
                .await
        }
        None => Err(unknown_partition(&request.topic_id, request.partition)),
    };
    let response = match kafka(result)? {
        Ok(lookup) => LookupChunksResponse {
            error_code: 0,
            chunks: lookup.chunks,
            log_start_offset: lookup.log_start_offset,
            high_watermark: lookup.high_watermark,
        },
        Err((error_code, _)) => LookupChunksResponse {
            error_code,
            chunks: Vec::new(),
            log_start_offset: -1,
            high_watermark: -1,
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition))]
pub(super) async fn get_partition_offsets(
    service: &CatalogService,
    request: Request<GetPartitionOffsetsRequest>,
) -> Result<Response<GetPartitionOffsetsResponse>, Status> {
    let request = request.into_inner();
    let result = match topic_id(&request.topic_id) {
        Some(id) => service.store.partition_offsets(id, request.partition).await,
        None => Err(unknown_partition(&request.topic_id, request.partition)),
    };
    let response = match kafka(result)? {
        Ok(offsets) => GetPartitionOffsetsResponse {
            error_code: 0,
            log_start_offset: offsets.log_start_offset,
            high_watermark: offsets.high_watermark,
            max_timestamp: offsets.max_timestamp,
            max_timestamp_chunk: offsets.max_timestamp_chunk,
            last_stable_offset: offsets.last_stable_offset,
        },
        Err((error_code, _)) => GetPartitionOffsetsResponse {
            error_code,
            log_start_offset: -1,
            high_watermark: -1,
            max_timestamp: -1,
            max_timestamp_chunk: None,
            last_stable_offset: -1,
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition, timestamp = request.get_ref().timestamp))]
pub(super) async fn find_chunk_by_timestamp(
    service: &CatalogService,
    request: Request<FindChunkByTimestampRequest>,
) -> Result<Response<FindChunkByTimestampResponse>, Status> {
    let request = request.into_inner();
    let result = match topic_id(&request.topic_id) {
        Some(id) => {
            service
                .store
                .find_chunk_by_timestamp(id, request.partition, request.timestamp)
                .await
        }
        None => Err(unknown_partition(&request.topic_id, request.partition)),
    };
    let response = match kafka(result)? {
        Ok(chunk) => FindChunkByTimestampResponse {
            error_code: 0,
            chunk,
        },
        Err((error_code, _)) => FindChunkByTimestampResponse {
            error_code,
            chunk: None,
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all, fields(after_sequence = request.get_ref().after_sequence))]
pub(super) async fn subscribe_commits(
    service: &CatalogService,
    request: Request<SubscribeCommitsRequest>,
) -> Result<Response<CommitStream>, Status> {
    let stream = service.hub.subscribe(request.into_inner().after_sequence)?;
    Ok(Response::new(stream))
}
