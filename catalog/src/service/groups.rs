//! The group RPC: Kafka's consumer-group APIs, forwarded by agents to the
//! [`GroupCoordinator`](crate::GroupCoordinator).

use strata_catalog_api::proto::{GroupCallRequest, GroupCallResponse};
use tonic::{Request, Response, Status};

use super::CatalogService;
use crate::Result;

#[tracing::instrument(level = "debug", skip_all, fields(api_key = request.get_ref().api_key, api_version = request.get_ref().api_version))]
pub(super) async fn group_call(
    service: &CatalogService,
    request: Request<GroupCallRequest>,
) -> Result<Response<GroupCallResponse>, Status> {
    let request = request.into_inner();
    let (Ok(api_key), Ok(api_version)) = (
        i16::try_from(request.api_key),
        i16::try_from(request.api_version),
    ) else {
        return Err(Status::invalid_argument(
            "api_key and api_version are 16-bit",
        ));
    };
    let body = service
        .groups
        .call(
            api_key,
            api_version,
            &request.body,
            &request.client_id,
            &request.client_host,
        )
        .await?;
    Ok(Response::new(GroupCallResponse { body }))
}
