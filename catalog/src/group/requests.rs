//! One group call: decode, ask the actor (or the store), encode.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest, DeleteGroupsRequest,
    DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, ListGroupsResponse,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::actor::Command;
use super::classic::{ClientInfo, JoinArgs, str_bytes};
use super::codec::{self, decode, encode};
use super::offsets::view_for;
use super::{GroupCoordinator, GroupError, code, offsets};

/// One Kafka group request to answer.
#[derive(Debug)]
pub(super) struct Call<'a> {
    pub(super) coordinator: &'a GroupCoordinator,
    pub(super) key: ApiKey,
    pub(super) version: i16,
    pub(super) body: &'a [u8],
    pub(super) client_id: &'a str,
    pub(super) client_host: &'a str,
}

impl Call<'_> {
    /// Answers the call with the encoded response body.
    pub(super) async fn dispatch(self) -> Result<Vec<u8>, GroupError> {
        if !codec::supported(self.key, self.version) {
            return Err(GroupError::Unsupported {
                api_key: self.key as i16,
                api_version: self.version,
            });
        }
        let coordinator = self.coordinator;
        let version = self.version;
        match self.key {
            ApiKey::JoinGroup => {
                let request = self.decode()?;
                self.encode(&self.join(request).await?)
            }
            ApiKey::SyncGroup => {
                let request: SyncGroupRequest = self.decode()?;
                let response = coordinator
                    .ask(|reply| Command::Sync { request, reply })
                    .await?;
                self.encode(&codec::fit_sync(response, version))
            }
            ApiKey::Heartbeat => {
                let request: HeartbeatRequest = self.decode()?;
                let response = coordinator
                    .ask(|reply| Command::Heartbeat { request, reply })
                    .await?;
                self.encode(&response)
            }
            ApiKey::LeaveGroup => {
                let request = self.decode()?;
                self.encode(&self.leave(request).await?)
            }
            ApiKey::OffsetCommit => {
                let request: OffsetCommitRequest = self.decode()?;
                self.encode(&offsets::commit(coordinator, request, version).await?)
            }
            ApiKey::OffsetFetch => {
                let request: OffsetFetchRequest = self.decode()?;
                self.encode(&offsets::fetch(coordinator, request, version).await?)
            }
            ApiKey::OffsetDelete => {
                let request: OffsetDeleteRequest = self.decode()?;
                self.encode(&offsets::delete(coordinator, request).await?)
            }
            _ => self.dispatch_admin().await,
        }
    }

    async fn dispatch_admin(self) -> Result<Vec<u8>, GroupError> {
        match self.key {
            ApiKey::DescribeGroups => {
                let request = self.decode()?;
                self.encode(&self.describe(request).await?)
            }
            ApiKey::ListGroups => {
                let request = self.decode()?;
                self.encode(&self.list(request).await?)
            }
            ApiKey::DeleteGroups => {
                let request = self.decode()?;
                self.encode(&self.delete(request).await?)
            }
            ApiKey::ConsumerGroupHeartbeat => {
                let request: ConsumerGroupHeartbeatRequest = self.decode()?;
                let names = request.subscribed_topic_names.iter().flatten();
                let topics = view_for(self.coordinator, names.map(|n| n.0.as_str())).await?;
                let version = self.version;
                let response = self
                    .coordinator
                    .ask(|reply| Command::ConsumerHeartbeat {
                        request,
                        version,
                        topics,
                        reply,
                    })
                    .await?;
                self.encode(&response)
            }
            ApiKey::ConsumerGroupDescribe => {
                let request: ConsumerGroupDescribeRequest = self.decode()?;
                let topics = self.coordinator.inner.topics.get().await?;
                let version = self.version;
                let response = self
                    .coordinator
                    .ask(|reply| Command::ConsumerDescribe {
                        request,
                        version,
                        topics,
                        reply,
                    })
                    .await?;
                self.encode(&response)
            }
            _ => Err(GroupError::Unsupported {
                api_key: self.key as i16,
                api_version: self.version,
            }),
        }
    }

    fn decode<T: Decodable>(&self) -> Result<T, GroupError> {
        decode(self.key, self.version, self.body)
    }

    fn encode<T: Encodable>(&self, response: &T) -> Result<Vec<u8>, GroupError> {
        encode(self.key, self.version, response)
    }

    async fn join(
        &self,
        request: JoinGroupRequest,
    ) -> Result<kafka_protocol::messages::JoinGroupResponse, GroupError> {
        let client = ClientInfo {
            client_id: self.client_id.to_string(),
            client_host: self.client_host.to_string(),
        };
        let join = JoinArgs::from_request(request, self.version, client);
        let response = self
            .coordinator
            .ask(|reply| Command::Join { join, reply })
            .await?;
        Ok(codec::fit_join(response, self.version))
    }

    async fn leave(
        &self,
        request: LeaveGroupRequest,
    ) -> Result<kafka_protocol::messages::LeaveGroupResponse, GroupError> {
        let members = if self.version < 3 {
            vec![MemberIdentity::default().with_member_id(request.member_id)]
        } else {
            request.members
        };
        let group_id = request.group_id.0.as_str().to_string();
        let response = self
            .coordinator
            .ask(|reply| Command::Leave {
                group_id,
                members,
                reply,
            })
            .await?;
        Ok(codec::fit_leave(response, self.version))
    }

    async fn describe(
        &self,
        request: DescribeGroupsRequest,
    ) -> Result<DescribeGroupsResponse, GroupError> {
        let group_ids = request
            .groups
            .iter()
            .map(|g| g.0.as_str().to_string())
            .collect();
        let mut groups = self
            .coordinator
            .ask(|reply| Command::Describe { group_ids, reply })
            .await?;
        codec::fit_described(&mut groups, self.version);
        Ok(DescribeGroupsResponse::default().with_groups(groups))
    }

    async fn list(&self, request: ListGroupsRequest) -> Result<ListGroupsResponse, GroupError> {
        let listed = self
            .coordinator
            .ask(|reply| Command::List { reply })
            .await?;
        let wanted = |filter: &[StrBytes], value: &str| {
            filter.is_empty()
                || filter
                    .iter()
                    .any(|f| f.as_str().eq_ignore_ascii_case(value))
        };
        let mut groups: Vec<ListedGroup> = listed
            .into_iter()
            .filter(|g| wanted(&request.states_filter, g.state))
            .filter(|g| wanted(&request.types_filter, g.group_type))
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(str_bytes(&g.group_id).into())
                    .with_protocol_type(str_bytes(&g.protocol_type))
                    .with_group_state(StrBytes::from_static_str(g.state))
                    .with_group_type(StrBytes::from_static_str(g.group_type))
            })
            .collect();
        codec::fit_listed(&mut groups, self.version);
        Ok(ListGroupsResponse::default()
            .with_error_code(code::NONE)
            .with_groups(groups))
    }

    async fn delete(
        &self,
        request: DeleteGroupsRequest,
    ) -> Result<DeleteGroupsResponse, GroupError> {
        let group_ids: Vec<String> = request
            .groups_names
            .iter()
            .map(|g| g.0.as_str().to_string())
            .collect();
        let outcomes = self
            .coordinator
            .ask(|reply| Command::Delete { group_ids, reply })
            .await?;
        let mut results = Vec::with_capacity(outcomes.len());
        for (group_id, outcome) in request.groups_names.into_iter().zip(outcomes) {
            let error_code = match outcome {
                Ok(written) => written.await.unwrap_or(code::COORDINATOR_NOT_AVAILABLE),
                Err(error_code) => error_code,
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id)
                    .with_error_code(error_code),
            );
        }
        Ok(DeleteGroupsResponse::default().with_results(results))
    }
}
