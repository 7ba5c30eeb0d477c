//! Consumer-group APIs: forwarded undecoded to the catalog's group
//! coordinator, which holds every group's members, generations, timers and
//! offsets, so any agent can serve any group member.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::Encodable;
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
/// When the catalog cannot be reached the connection is closed: clients
/// treat that as retriable, rediscover the coordinator and try again.
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
            Ok(response) => frame(api_key, version, header.correlation_id, &response.body),
            Err(status) => {
                warn!(%status, ?api_key, "group coordinator call failed; closing the connection");
                Reply::Close
            }
        }
    })
}

fn frame(api_key: ApiKey, version: i16, correlation_id: i32, body: &[u8]) -> Reply {
    let mut buf = BytesMut::with_capacity(16 + body.len());
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    if header
        .encode(&mut buf, api_key.response_header_version(version))
        .is_err()
    {
        return Reply::Close;
    }
    buf.extend_from_slice(body);
    let size = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&size.to_be_bytes());
    Reply::Frame(buf.freeze())
}
