//! Compaction RPCs: chunk swaps, DeleteRecords, dead objects for garbage
//! collection, and compaction claims.

use std::sync::Arc;

use strata_catalog_api::proto::{
    ClaimCompactionRequest, ClaimCompactionResponse, DeadObject, DeleteRecordsRequest,
    DeleteRecordsResponse, ForgetDeadObjectsRequest, ForgetDeadObjectsResponse,
    ListDeadObjectsRequest, ListDeadObjectsResponse, ReferencedObjectsRequest,
    ReferencedObjectsResponse, ReleaseCompactionRequest, ReleaseCompactionResponse,
    ReplaceChunksRequest, ReplaceChunksResponse,
};
use tonic::{Request, Response, Status};

use super::claims;
use super::{CatalogService, kafka, topic_id, unknown_partition};
use crate::Result;

/// Dead objects listed when the request asks for 0.
const LIST_DEAD_OBJECTS_DEFAULT: u32 = 1_000;

/// The most object keys one ForgetDeadObjects or ReferencedObjects names.
const OBJECT_KEYS_MAX: usize = 10_000;

/// Object keys of a GC request: at most [`OBJECT_KEYS_MAX`].
fn checked_keys(keys: Vec<String>) -> Result<Vec<String>, Status> {
    if keys.len() > OBJECT_KEYS_MAX {
        return Err(Status::invalid_argument(format!(
            "{} object keys; at most {OBJECT_KEYS_MAX} per call",
            keys.len()
        )));
    }
    Ok(keys)
}

#[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition))]
pub(super) async fn replace_chunks(
    service: &CatalogService,
    request: Request<ReplaceChunksRequest>,
) -> Result<Response<ReplaceChunksResponse>, Status> {
    let request = request.into_inner();
    let store = Arc::clone(&service.store);
    let outcome = service
        .write_and_publish(async move {
            let outcome = store.replace_chunks(request).await?;
            let event = outcome.event.clone();
            Ok((outcome, event))
        })
        .await;
    let response = match kafka(outcome)? {
        Ok(outcome) => {
            if outcome.conflict {
                tracing::debug!("compaction swap conflict");
            }
            ReplaceChunksResponse {
                error_code: 0,
                conflict: outcome.conflict,
                sequence: outcome.sequence,
            }
        }
        Err((error_code, _)) => ReplaceChunksResponse {
            error_code,
            conflict: false,
            sequence: 0,
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition, offset = request.get_ref().offset))]
pub(super) async fn delete_records(
    service: &CatalogService,
    request: Request<DeleteRecordsRequest>,
) -> Result<Response<DeleteRecordsResponse>, Status> {
    let request = request.into_inner();
    let result = match topic_id(&request.topic_id) {
        Some(id) => {
            let store = Arc::clone(&service.store);
            service
                .write_and_publish(async move {
                    let outcome = store
                        .delete_records(id, request.partition, request.offset)
                        .await?;
                    Ok((outcome.low_watermark, outcome.event))
                })
                .await
        }
        None => Err(unknown_partition(&request.topic_id, request.partition)),
    };
    let response = match kafka(result)? {
        Ok(low_watermark) => DeleteRecordsResponse {
            error_code: 0,
            low_watermark,
        },
        Err((error_code, _)) => DeleteRecordsResponse {
            error_code,
            low_watermark: -1,
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all, fields(dead_before_ms = request.get_ref().dead_before_ms))]
pub(super) async fn list_dead_objects(
    service: &CatalogService,
    request: Request<ListDeadObjectsRequest>,
) -> Result<Response<ListDeadObjectsResponse>, Status> {
    let request = request.into_inner();
    let limit = match request.limit {
        0 => LIST_DEAD_OBJECTS_DEFAULT,
        n => n,
    };
    let objects = service
        .store
        .list_dead_objects(request.dead_before_ms, limit)
        .await?
        .into_iter()
        .map(|dead| DeadObject {
            object_key: dead.object_key,
            dead_since_ms: dead.dead_since_ms,
        })
        .collect();
    Ok(Response::new(ListDeadObjectsResponse { objects }))
}

#[tracing::instrument(level = "debug", skip_all, fields(objects = request.get_ref().object_keys.len()))]
pub(super) async fn forget_dead_objects(
    service: &CatalogService,
    request: Request<ForgetDeadObjectsRequest>,
) -> Result<Response<ForgetDeadObjectsResponse>, Status> {
    let keys = checked_keys(request.into_inner().object_keys)?;
    if !keys.is_empty() {
        service.store.forget_dead_objects(keys).await?;
    }
    Ok(Response::new(ForgetDeadObjectsResponse {}))
}

#[tracing::instrument(level = "debug", skip_all, fields(objects = request.get_ref().object_keys.len()))]
pub(super) async fn referenced_objects(
    service: &CatalogService,
    request: Request<ReferencedObjectsRequest>,
) -> Result<Response<ReferencedObjectsResponse>, Status> {
    let keys = checked_keys(request.into_inner().object_keys)?;
    let object_keys = if keys.is_empty() {
        Vec::new()
    } else {
        service.store.referenced_objects(keys).await?
    };
    Ok(Response::new(ReferencedObjectsResponse {
        object_keys,
        max_commit_age_ms: u64::try_from(service.max_commit_age_ms).unwrap_or(0),
    }))
}

#[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition, compactor = %request.get_ref().compactor_id))]
pub(super) async fn claim_compaction(
    service: &CatalogService,
    request: Request<ClaimCompactionRequest>,
) -> Result<Response<ClaimCompactionResponse>, Status> {
    let request = request.into_inner();
    if request.compactor_id.is_empty() {
        return Err(Status::invalid_argument("compactor_id is empty"));
    }
    if !(1..=claims::LEASE_MAX_MS).contains(&request.lease_ms) {
        return Err(Status::invalid_argument(
            "lease_ms must be between 1 ms and 1 hour",
        ));
    }
    let answer = service.claims.claim(
        (request.topic_id, request.partition),
        &request.compactor_id,
        request.lease_ms,
    );
    Ok(Response::new(ClaimCompactionResponse {
        granted: answer.granted,
        expires_ms: answer.expires_ms,
        holder: answer.holder,
    }))
}

#[tracing::instrument(level = "debug", skip_all, fields(partition = request.get_ref().partition, compactor = %request.get_ref().compactor_id))]
pub(super) async fn release_compaction(
    service: &CatalogService,
    request: Request<ReleaseCompactionRequest>,
) -> Result<Response<ReleaseCompactionResponse>, Status> {
    let request = request.into_inner();
    let released = service.claims.release(
        &(request.topic_id, request.partition),
        &request.compactor_id,
    );
    Ok(Response::new(ReleaseCompactionResponse { released }))
}
