//! Consumer-group APIs: forwarded undecoded to the catalog's group
//! coordinator, which holds every group's members, generations, timers and
//! offsets, so any agent can serve any group member.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use strata_catalog_api::proto::GroupCallRequest;
use tracing::warn;

use super::{Pending, Reply};
use crate::server::Shared;

/// The group APIs and versions the coordinator serves, as API keys.
pub(crate) fn group_apis() -> impl Iterator<Item = (ApiKey, i16, i16)> {
    strata_catalog_api::GROUP_API_VERSIONS
        .iter()
        .filter_map(|&(key, min, max)| Some((ApiKey::try_from(key).ok()?, min, max)))
}

/// Whether `key` is forwarded to the group coordinator.
pub(crate) fn is_group_api(key: ApiKey) -> bool {
    group_apis().any(|(k, _, _)| k == key)
}

/// Forwards one group request (its body after the header) to the catalog.
/// When the catalog cannot be reached the answer is
/// COORDINATOR_NOT_AVAILABLE (see `group_unavailable`): clients look the
/// coordinator up again and retry.
pub(crate) fn forward(
    shared: &Arc<Shared>,
    api_key: ApiKey,
    header: RequestHeader,
    body: Bytes,
    peer: SocketAddr,
) -> Pending {
    let shared = shared.clone();
    Box::pin(async move {
        let version = header.request_api_version;
        let request = GroupCallRequest {
            api_key: i32::from(api_key as i16),
            api_version: i32::from(version),
            body: body.to_vec(),
            client_id: header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default(),
            client_host: format!("/{}", peer.ip()),
        };
        match shared.catalog.group_call(request).await {
            Ok(response) => super::frame(api_key, version, header.correlation_id, |buf| {
                buf.extend_from_slice(&response.body);
                Ok(())
            }),
            Err(status) => {
                warn!(%status, ?api_key, "group coordinator unreachable; answering COORDINATOR_NOT_AVAILABLE");
                match super::group_unavailable::response(api_key, version, &body) {
                    Some(answer) => super::encode(api_key, version, header.correlation_id, &answer),
                    None => Reply::Close,
                }
            }
        }
    })
}
