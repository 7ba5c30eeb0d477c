//! Consumer-group administration: FindCoordinator, ListGroups,
//! DescribeGroups, OffsetFetch, OffsetCommit and DeleteGroups.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest,
    GroupId, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::{Decodable, Message, StrBytes};
use serde::Serialize;
use tracing::{instrument, warn};

use super::{Client, TopicPartition, str_bytes, topic_name};
use crate::error::{Error, Result};

/// FindCoordinator's key type for consumer groups.
const KEY_TYPE_GROUP: i8 = 0;

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// The protocol type (`consumer` for Kafka consumers; empty when the
    /// group only stores offsets).
    pub protocol_type: String,
    /// The group's state (`Stable`, `Empty`, ...), when the broker reports it.
    pub state: Option<String>,
}

/// A member of a group, from DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberDescription {
    /// The member id the coordinator assigned.
    pub member_id: String,
    /// The static membership id, if any.
    pub group_instance_id: Option<String>,
    /// The member's client id.
    pub client_id: String,
    /// The member's host, as the coordinator saw it.
    pub client_host: String,
    /// The partitions assigned to it (consumer protocol only).
    pub assignment: Vec<TopicPartition>,
}

/// A group's state and members, from DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance` or
    /// `Dead` (a group that does not exist).
    pub state: String,
    /// The protocol type (`consumer` for Kafka consumers).
    pub protocol_type: String,
    /// The chosen protocol (the assignor, e.g. `range`).
    pub protocol: String,
    /// The current members.
    pub members: Vec<MemberDescription>,
}

impl GroupDescription {
    /// Whether an administrator may change the group's offsets: Kafka only
    /// allows it when no consumer is a member.
    pub fn is_inactive(&self) -> bool {
        self.members.is_empty() && matches!(self.state.as_str(), "Empty" | "Dead")
    }
}

impl Client {
    /// Lists the groups of every broker (optionally only those in one of
    /// `states`, e.g. `Stable`), sorted by id.
    #[instrument(level = "debug", skip_all)]
    pub async fn list_groups(&mut self, states: &[String]) -> Result<Vec<GroupListing>> {
        self.metadata(Some(&[])).await?;
        let mut groups = BTreeMap::new();
        for node_id in self.broker_ids() {
            let response = self
                .call_node(node_id, i16::MAX, |version| {
                    let mut request = ListGroupsRequest::default();
                    if version >= 4 {
                        request.states_filter = states.iter().map(|s| str_bytes(s)).collect();
                    }
                    request
                })
                .await?;
            Error::check(response.error_code, || {
                format!("ListGroups on broker {node_id}")
            })?;
            for group in response.groups {
                let listing = GroupListing {
                    group_id: group.group_id.0.to_string(),
                    protocol_type: group.protocol_type.to_string(),
                    state: Some(group.group_state.to_string()).filter(|s| !s.is_empty()),
                };
                groups.insert(listing.group_id.clone(), listing);
            }
        }
        let matches = |g: &GroupListing| {
            states.is_empty()
                || g.state
                    .as_ref()
                    .is_some_and(|s| states.iter().any(|want| want.eq_ignore_ascii_case(s)))
        };
        Ok(groups.into_values().filter(matches).collect())
    }

    /// Describes `group`. A group that does not exist is reported as
    /// state `Dead` with no members, as Kafka does.
    #[instrument(level = "debug", skip_all, fields(group = group))]
    pub async fn describe_group(&mut self, group: &str) -> Result<GroupDescription> {
        let address = self.coordinator(group).await?;
        let response = self
            .call_group(group, &address, i16::MAX, |_| {
                DescribeGroupsRequest::default().with_groups(vec![group_id(group)])
            })
            .await?;
        let described = response
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| Error::Protocol {
                address: address.clone(),
                reason: format!("DescribeGroups response lacks group {group:?}"),
            })?;
        if described.error_code == GROUP_ID_NOT_FOUND {
            return Ok(dead_group(group));
        }
        self.check_group(group, described.error_code, described.error_message)?;
        let consumer = described.protocol_type.as_str() == "consumer";
        Ok(GroupDescription {
            group_id: group.to_owned(),
            state: described.group_state.to_string(),
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            members: described
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    assignment: if consumer {
                        decode_assignment(group, &m.member_assignment)
                    } else {
                        Vec::new()
                    },
                    member_id: m.member_id.to_string(),
                    group_instance_id: m.group_instance_id.map(|s| s.to_string()),
                    client_id: m.client_id.to_string(),
                    client_host: m.client_host.to_string(),
                })
                .collect(),
        })
    }

    /// The committed offset of every partition `group` has one for.
    #[instrument(level = "debug", skip_all, fields(group = group))]
    pub async fn committed_offsets(
        &mut self,
        group: &str,
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let address = self.coordinator(group).await?;
        let response = self
            .call_group(group, &address, i16::MAX, |version| {
                offset_fetch_request(group, version)
            })
            .await?;
        committed_from_response(group, response)
            .inspect_err(|e| self.forget_coordinator_on(group, e))
    }

    /// Commits `offsets` for `group` as an administrator (generation -1, no
    /// member id), which the coordinator only accepts while the group has
    /// no active members.
    #[instrument(level = "debug", skip_all, fields(group = group))]
    pub async fn commit_offsets(
        &mut self,
        group: &str,
        offsets: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        let address = self.coordinator(group).await?;
        let response = self
            .call_group(group, &address, i16::MAX, |_| {
                offset_commit_request(group, offsets)
            })
            .await?;
        for topic in response.topics {
            for p in topic.partitions {
                self.check_group(group, p.error_code, None)
                    .map_err(|e| match e {
                        Error::Kafka { code, .. } => Error::Kafka {
                            code,
                            message: format!(
                                "commit for group {group:?}, partition {}-{}",
                                topic.name.0, p.partition_index
                            ),
                        },
                        other => other,
                    })?;
            }
        }
        Ok(())
    }

    /// Deletes `group` and its offsets. Fails with NON_EMPTY_GROUP while it
    /// has members and GROUP_ID_NOT_FOUND when it does not exist.
    #[instrument(level = "debug", skip_all, fields(group = group))]
    pub async fn delete_group(&mut self, group: &str) -> Result<()> {
        let address = self.coordinator(group).await?;
        let response = self
            .call_group(group, &address, i16::MAX, |_| {
                DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)])
            })
            .await?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.group_id.0.as_str() == group)
            .ok_or_else(|| Error::Protocol {
                address,
                reason: format!("DeleteGroups response lacks group {group:?}"),
            })?;
        self.check_group(group, result.error_code, None)
    }

    /// The `host:port` of `group`'s coordinator, cached until it fails.
    async fn coordinator(&mut self, group: &str) -> Result<String> {
        if let Some(address) = self.coordinators.get(group) {
            return Ok(address.clone());
        }
        let response = self
            .call_any(i16::MAX, |version| {
                let request = FindCoordinatorRequest::default().with_key_type(KEY_TYPE_GROUP);
                if version >= 4 {
                    request.with_coordinator_keys(vec![str_bytes(group)])
                } else {
                    request.with_key(str_bytes(group))
                }
            })
            .await?;
        let (error_code, error_message, host, port) = match response.coordinators.first() {
            Some(c) => (
                c.error_code,
                c.error_message.clone(),
                c.host.clone(),
                c.port,
            ),
            None => (
                response.error_code,
                response.error_message.clone(),
                response.host.clone(),
                response.port,
            ),
        };
        Error::check(error_code, || {
            message_or(error_message, || format!("coordinator of group {group:?}"))
        })?;
        let address = format!("{host}:{port}");
        self.coordinators.insert(group.to_owned(), address.clone());
        Ok(address)
    }

    /// Sends a group request to its coordinator; forgets the coordinator
    /// when the request fails in a way that may mean it moved.
    async fn call_group<R: kafka_protocol::protocol::Request>(
        &mut self,
        group: &str,
        address: &str,
        cap: i16,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response> {
        let result = self.call(address, cap, build).await;
        if let Err(e) = &result {
            self.forget_coordinator_on(group, e);
        }
        result
    }

    /// `Err` for a group error code; forgets a coordinator that moved.
    fn check_group(&mut self, group: &str, code: i16, message: Option<StrBytes>) -> Result<()> {
        let result = Error::check(code, || message_or(message, || format!("group {group:?}")));
        if let Err(e) = &result {
            self.forget_coordinator_on(group, e);
        }
        result
    }

    fn forget_coordinator_on(&mut self, group: &str, error: &Error) {
        if error.is_retryable() {
            self.coordinators.remove(group);
        }
    }
}

const GROUP_ID_NOT_FOUND: i16 = 69;

fn dead_group(group: &str) -> GroupDescription {
    GroupDescription {
        group_id: group.to_owned(),
        state: "Dead".to_owned(),
        protocol_type: String::new(),
        protocol: String::new(),
        members: Vec::new(),
    }
}

fn group_id(group: &str) -> GroupId {
    GroupId(str_bytes(group))
}

fn message_or(message: Option<StrBytes>, default: impl FnOnce() -> String) -> String {
    message
        .map(|m| m.to_string())
        .filter(|m| !m.is_empty())
        .unwrap_or_else(default)
}

/// OffsetFetch for every topic of `group`, in the shape of `version`. v1
/// cannot ask for every topic (a null list); brokers since Kafka 0.10.2
/// speak v2, so v1 is not worth a fallback.
fn offset_fetch_request(group: &str, version: i16) -> OffsetFetchRequest {
    if version >= 8 {
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id(group))
                .with_topics(None),
        ])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(None)
    }
}

/// The committed offsets in an OffsetFetch response of any version; -1
/// (no commit) is left out.
fn committed_from_response(
    group: &str,
    response: OffsetFetchResponse,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let mut offsets = BTreeMap::new();
    let context = || format!("offsets of group {group:?}");
    if let Some(g) = response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
    {
        Error::check(g.error_code, context)?;
        for topic in g.topics {
            for p in topic.partitions {
                Error::check(p.error_code, context)?;
                if p.committed_offset >= 0 {
                    let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                    offsets.insert(tp, p.committed_offset);
                }
            }
        }
        return Ok(offsets);
    }
    Error::check(response.error_code, context)?;
    for topic in response.topics {
        for p in topic.partitions {
            Error::check(p.error_code, context)?;
            if p.committed_offset >= 0 {
                let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
                offsets.insert(tp, p.committed_offset);
            }
        }
    }
    Ok(offsets)
}

/// An admin OffsetCommit: generation -1, empty member id.
fn offset_commit_request(
    group: &str,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> OffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, &offset) in offsets {
        topics.entry(&tp.topic).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(offset),
        );
    }
    OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// The partitions in a consumer-protocol assignment (a version, then the
/// body). Undecodable assignments are logged and shown as empty.
fn decode_assignment(group: &str, bytes: &Bytes) -> Vec<TopicPartition> {
    let mut buf = bytes.clone();
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16().min(ConsumerProtocolAssignment::VERSIONS.max);
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(assignment) => assignment
            .assigned_partitions
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic.0.to_string();
                t.partitions
                    .into_iter()
                    .map(move |p| TopicPartition::new(topic.clone(), p))
            })
            .collect(),
        Err(e) => {
            warn!(group, error = %e, "cannot decode a member's assignment");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
    use kafka_protocol::messages::offset_fetch_response::{
        OffsetFetchResponsePartition, OffsetFetchResponseTopic,
    };
    use kafka_protocol::protocol::Encodable;

    use super::*;

    #[test]
    fn offset_fetch_requests_encode_in_every_version() {
        for version in 2..=OffsetFetchRequest::VERSIONS.max {
            let request = offset_fetch_request("g", version);
            let mut buf = BytesMut::new();
            assert!(request.encode(&mut buf, version).is_ok(), "v{version}");
        }
    }

    #[test]
    fn admin_commits_use_generation_minus_one() {
        let offsets = BTreeMap::from([(TopicPartition::new("t", 1), 5)]);
        let request = offset_commit_request("g", &offsets);
        assert_eq!(request.generation_id_or_member_epoch, -1);
        assert!(request.member_id.is_empty());
        assert_eq!(request.topics[0].partitions[0].committed_offset, 5);
        for version in OffsetCommitRequest::VERSIONS.min..=OffsetCommitRequest::VERSIONS.max {
            let mut buf = BytesMut::new();
            assert!(request.encode(&mut buf, version).is_ok(), "v{version}");
        }
    }

    #[test]
    fn uncommitted_partitions_are_left_out() {
        let partition = |index, offset| {
            OffsetFetchResponsePartition::default()
                .with_partition_index(index)
                .with_committed_offset(offset)
        };
        let response = OffsetFetchResponse::default().with_topics(vec![
            OffsetFetchResponseTopic::default()
                .with_name(topic_name("t"))
                .with_partitions(vec![partition(0, 3), partition(1, -1)]),
        ]);
        let offsets = committed_from_response("g", response).expect("no error");
        assert_eq!(offsets, BTreeMap::from([(TopicPartition::new("t", 0), 3)]));
    }

    #[test]
    fn assignments_decode_with_their_version_prefix() {
        let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            AssignedTopic::default()
                .with_topic(topic_name("t"))
                .with_partitions(vec![0, 2]),
        ]);
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        assignment.encode(&mut buf, 1).expect("encodes");
        let decoded = decode_assignment("g", &buf.freeze());
        assert_eq!(
            decoded,
            [TopicPartition::new("t", 0), TopicPartition::new("t", 2)]
        );
        assert!(decode_assignment("g", &Bytes::new()).is_empty());
    }

    #[test]
    fn only_memberless_groups_are_inactive() {
        let mut group = dead_group("g");
        assert!(group.is_inactive());
        group.state = "Stable".to_owned();
        assert!(!group.is_inactive());
    }
}
