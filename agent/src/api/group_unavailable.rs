//! The answer to a group request when the catalog (and with it the group
//! coordinator) cannot be reached: COORDINATOR_NOT_AVAILABLE in every
//! error field the response has, as a Kafka broker answers while its
//! coordinator is loading or moving. Clients then look the coordinator up
//! again and retry, without the reconnect a closed connection costs.
//!
//! Group requests are forwarded undecoded; only this error path decodes
//! them, to name the groups, topics and partitions in the answer.

use bytes::Bytes;
use kafka_protocol::messages::consumer_group_describe_response::DescribedGroup as ConsumerDescribedGroup;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;

use crate::error_code::COORDINATOR_NOT_AVAILABLE as CODE;

/// The COORDINATOR_NOT_AVAILABLE response to a group request, or `None`
/// when the body does not decode as `api_key` v`version` (the caller then
/// closes the connection, as for any unparseable frame).
pub(crate) fn response(api_key: ApiKey, version: i16, body: &Bytes) -> Option<ResponseKind> {
    let mut body = body.clone();
    let request = RequestKind::decode(api_key, &mut body, version).ok()?;
    Some(match request {
        RequestKind::JoinGroup(_) => JoinGroupResponse::default().with_error_code(CODE).into(),
        RequestKind::SyncGroup(_) => SyncGroupResponse::default().with_error_code(CODE).into(),
        RequestKind::Heartbeat(_) => HeartbeatResponse::default().with_error_code(CODE).into(),
        RequestKind::LeaveGroup(_) => LeaveGroupResponse::default().with_error_code(CODE).into(),
        RequestKind::ListGroups(_) => ListGroupsResponse::default().with_error_code(CODE).into(),
        RequestKind::OffsetDelete(_) => {
            OffsetDeleteResponse::default().with_error_code(CODE).into()
        }
        RequestKind::ConsumerGroupHeartbeat(_) => ConsumerGroupHeartbeatResponse::default()
            .with_error_code(CODE)
            .into(),
        RequestKind::DescribeGroups(r) => DescribeGroupsResponse::default()
            .with_groups(
                r.groups
                    .into_iter()
                    .map(|g| {
                        DescribedGroup::default()
                            .with_group_id(g)
                            .with_error_code(CODE)
                    })
                    .collect(),
            )
            .into(),
        RequestKind::ConsumerGroupDescribe(r) => ConsumerGroupDescribeResponse::default()
            .with_groups(
                r.group_ids
                    .into_iter()
                    .map(|g| {
                        ConsumerDescribedGroup::default()
                            .with_group_id(g)
                            .with_error_code(CODE)
                    })
                    .collect(),
            )
            .into(),
        RequestKind::DeleteGroups(r) => DeleteGroupsResponse::default()
            .with_results(
                r.groups_names
                    .into_iter()
                    .map(|g| {
                        DeletableGroupResult::default()
                            .with_group_id(g)
                            .with_error_code(CODE)
                    })
                    .collect(),
            )
            .into(),
        RequestKind::OffsetCommit(r) => OffsetCommitResponse::default()
            .with_topics(
                r.topics
                    .into_iter()
                    .map(|t| {
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|p| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(CODE)
                            })
                            .collect();
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name)
                            .with_topic_id(t.topic_id)
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
            .into(),
        RequestKind::OffsetFetch(r) => offset_fetch(version, r).into(),
        _ => return None,
    })
}

/// OffsetFetch has three shapes: v0-1 (errors per partition only), v2-7
/// (plus a top-level error) and v8+ (per group).
fn offset_fetch(version: i16, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let topics = g
                    .topics
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| {
                        let partitions = t
                            .partition_indexes
                            .iter()
                            .map(|&p| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(-1)
                                    .with_error_code(CODE)
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(t.name)
                            .with_topic_id(t.topic_id)
                            .with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
                    .with_error_code(CODE)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = request
        .topics
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&p| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(-1)
                        .with_error_code(CODE)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response.with_error_code(CODE)
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::StrBytes;

    /// A request of every shape, holding one group, topic and partition
    /// where the API names them.
    fn request(key: ApiKey, version: i16) -> RequestKind {
        let group = GroupId(StrBytes::from_static_str("g"));
        let topic = TopicName(StrBytes::from_static_str("t"));
        match key {
            ApiKey::DescribeGroups => DescribeGroupsRequest::default()
                .with_groups(vec![group])
                .into(),
            ApiKey::ConsumerGroupDescribe => ConsumerGroupDescribeRequest::default()
                .with_group_ids(vec![group])
                .into(),
            ApiKey::DeleteGroups => DeleteGroupsRequest::default()
                .with_groups_names(vec![group])
                .into(),
            ApiKey::OffsetCommit => {
                let p = offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(3);
                let t = offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(topic)
                    .with_partitions(vec![p]);
                OffsetCommitRequest::default()
                    .with_group_id(group)
                    .with_topics(vec![t])
                    .into()
            }
            ApiKey::OffsetFetch if version >= 8 => {
                let t = offset_fetch_request::OffsetFetchRequestTopics::default()
                    .with_name(topic)
                    .with_partition_indexes(vec![3]);
                let g = offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group)
                    .with_topics(Some(vec![t]));
                OffsetFetchRequest::default().with_groups(vec![g]).into()
            }
            ApiKey::OffsetFetch => {
                let t = offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(topic)
                    .with_partition_indexes(vec![3]);
                OffsetFetchRequest::default()
                    .with_group_id(group)
                    .with_topics(Some(vec![t]))
                    .into()
            }
            ApiKey::JoinGroup => JoinGroupRequest::default().into(),
            ApiKey::SyncGroup => SyncGroupRequest::default().into(),
            ApiKey::Heartbeat => HeartbeatRequest::default().into(),
            ApiKey::LeaveGroup => LeaveGroupRequest::default().into(),
            ApiKey::ListGroups => ListGroupsRequest::default().into(),
            ApiKey::OffsetDelete => OffsetDeleteRequest::default().into(),
            ApiKey::ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest::default().into(),
            other => panic!("{other:?} is not a group API"),
        }
    }

    /// Every error field a response carries (top level, per group, per
    /// partition), as read back from the encoded response.
    fn codes(response: &ResponseKind) -> Vec<i16> {
        match response {
            ResponseKind::JoinGroup(r) => vec![r.error_code],
            ResponseKind::SyncGroup(r) => vec![r.error_code],
            ResponseKind::Heartbeat(r) => vec![r.error_code],
            ResponseKind::LeaveGroup(r) => vec![r.error_code],
            ResponseKind::ListGroups(r) => vec![r.error_code],
            ResponseKind::OffsetDelete(r) => vec![r.error_code],
            ResponseKind::ConsumerGroupHeartbeat(r) => vec![r.error_code],
            ResponseKind::DescribeGroups(r) => r.groups.iter().map(|g| g.error_code).collect(),
            ResponseKind::ConsumerGroupDescribe(r) => {
                r.groups.iter().map(|g| g.error_code).collect()
            }
            ResponseKind::DeleteGroups(r) => r.results.iter().map(|g| g.error_code).collect(),
            ResponseKind::OffsetCommit(r) => r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
            ResponseKind::OffsetFetch(r) if !r.groups.is_empty() => r
                .groups
                .iter()
                .flat_map(|g| {
                    g.topics
                        .iter()
                        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                        .chain([g.error_code])
                })
                .collect(),
            ResponseKind::OffsetFetch(r) => r
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
            other => panic!("unexpected response {other:?}"),
        }
    }

    /// Goal: every version of every forwarded group API gets an encodable
    /// COORDINATOR_NOT_AVAILABLE answer naming what was asked. Method:
    /// encode a request, build the answer, encode and decode it again.
    #[test]
    fn every_group_api_version_answers_coordinator_not_available() {
        let mut checked = 0;
        for (key, min, max) in super::super::group::group_apis() {
            for version in min..=max {
                let mut body = BytesMut::new();
                request(key, version)
                    .encode(&mut body, version)
                    .unwrap_or_else(|e| panic!("{key:?} v{version} request: {e}"));
                let answer = response(key, version, &body.freeze())
                    .unwrap_or_else(|| panic!("{key:?} v{version}: no answer"));
                let mut encoded = BytesMut::new();
                answer
                    .encode(&mut encoded, version)
                    .unwrap_or_else(|e| panic!("{key:?} v{version} response: {e}"));
                let decoded = ResponseKind::decode(key, &mut encoded.freeze(), version)
                    .unwrap_or_else(|e| panic!("{key:?} v{version} decode: {e}"));
                let codes = codes(&decoded);
                assert!(!codes.is_empty(), "{key:?} v{version}: no error field");
                assert!(
                    codes.iter().all(|&c| c == CODE),
                    "{key:?} v{version}: {codes:?}"
                );
                checked += 1;
            }
        }
        assert!(checked > 40, "only {checked} API versions checked");
    }

    #[test]
    fn garbage_bodies_get_no_answer() {
        let body = Bytes::from_static(&[0xff, 0xff, 0xff]);
        assert!(response(ApiKey::OffsetCommit, 8, &body).is_none());
    }
}
