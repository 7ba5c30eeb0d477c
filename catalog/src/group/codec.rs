//! Decoding requests and encoding responses at their version, with the
//! fix-ups that keep every response encodable at the caller's version
//! (`kafka-protocol` refuses to encode a field the version lacks when it
//! holds a non-default value).

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, JoinGroupResponse, LeaveGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{GroupError, code};

/// Whether the coordinator serves `key` at `version` (the list is shared
/// with the agents, which advertise it).
pub(crate) fn supported(key: ApiKey, version: i16) -> bool {
    strata_catalog_api::GROUP_API_VERSIONS
        .iter()
        .any(|&(k, min, max)| k == key as i16 && (min..=max).contains(&version))
}

/// Decodes a request body at `version`.
pub(crate) fn decode<T: Decodable>(
    key: ApiKey,
    version: i16,
    body: &[u8],
) -> Result<T, GroupError> {
    let mut buf = Bytes::copy_from_slice(body);
    let malformed = |reason: String| GroupError::Malformed {
        api_key: key as i16,
        api_version: version,
        reason,
    };
    // The codec is generated code fed with bytes a client chose: a panic
    // inside it is a malformed request, never a crashed coordinator.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        T::decode(&mut buf, version)
    }))
    .map_err(|_| malformed("the request body could not be decoded".to_string()))?
    .map_err(|error| malformed(error.to_string()))
}

/// Encodes a response body at `version`.
pub(crate) fn encode<T: Encodable>(
    key: ApiKey,
    version: i16,
    response: &T,
) -> Result<Vec<u8>, GroupError> {
    let mut buf = Vec::new();
    response
        .encode(&mut buf, version)
        .map_err(|error| GroupError::Encode {
            api_key: key as i16,
            api_version: version,
            reason: error.to_string(),
        })?;
    Ok(buf)
}

/// Fits a JoinGroup response to `version`.
pub(crate) fn fit_join(mut response: JoinGroupResponse, version: i16) -> JoinGroupResponse {
    if version < 7 {
        response.protocol_type = None;
        // Non-nullable before v7.
        response.protocol_name.get_or_insert_with(StrBytes::new);
    }
    if version < 9 && response.skip_assignment {
        // Before KIP-814 a static leader that must not reassign is told
        // so by an empty member list.
        response.skip_assignment = false;
        response.members.clear();
    }
    if version < 5 {
        for member in &mut response.members {
            member.group_instance_id = None;
        }
    }
    response
}

/// Fits a SyncGroup response to `version`.
pub(crate) fn fit_sync(mut response: SyncGroupResponse, version: i16) -> SyncGroupResponse {
    if version < 5 {
        response.protocol_type = None;
        response.protocol_name = None;
    }
    response
}

/// Fits a LeaveGroup response to `version`: before v3 one member left and
/// its error is the response's.
pub(crate) fn fit_leave(mut response: LeaveGroupResponse, version: i16) -> LeaveGroupResponse {
    if version < 3 {
        if response.error_code == code::NONE
            && let Some(member) = response.members.first()
        {
            response.error_code = member.error_code;
        }
        response.members.clear();
    }
    response
}

/// Fits described groups to `version`.
pub(crate) fn fit_described(groups: &mut [DescribedGroup], version: i16) {
    if version < 4 {
        for member in groups.iter_mut().flat_map(|g| g.members.iter_mut()) {
            member.group_instance_id = None;
        }
    }
}

/// Fits listed groups to `version`.
pub(crate) fn fit_listed(groups: &mut [ListedGroup], version: i16) {
    for group in groups {
        if version < 4 {
            group.group_state = StrBytes::new();
        }
        if version < 5 {
            group.group_type = StrBytes::new();
        }
    }
}
