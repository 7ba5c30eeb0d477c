//! The classic groups seen from the admin and offset APIs: DescribeGroups,
//! ListGroups, DeleteGroups, and the group checks of OffsetCommit and
//! OffsetDelete.

use std::collections::HashSet;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::protocol::Decodable;
use tokio::sync::oneshot;

use super::{ClassicGroups, Effect, Group, GroupState, TimerKind, code, str_bytes};
use crate::group::persist::Deferred;

/// The protocol type of Kafka consumers.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Who commits offsets (OffsetCommit's group fields).
#[derive(Debug, Clone, Default)]
pub(crate) struct CommitIdentity {
    pub(crate) group_id: String,
    /// -1 for a commit outside group management.
    pub(crate) generation_id: i32,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
}

/// The topics a group's members are subscribed to (OffsetDelete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subscriptions {
    /// These topics.
    Topics(HashSet<String>),
    /// Unknown (metadata that does not parse): every topic counts as
    /// subscribed, as in Kafka.
    All,
}

impl Subscriptions {
    /// Whether `topic` is subscribed.
    pub(crate) fn contains(&self, topic: &str) -> bool {
        match self {
            Self::Topics(topics) => topics.contains(topic),
            Self::All => true,
        }
    }
}

/// The group type of classic groups (ListGroups v5).
pub(crate) const CLASSIC_GROUP_TYPE: &str = "classic";

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedGroupInfo {
    pub(crate) group_id: String,
    pub(crate) protocol_type: String,
    /// Kafka's name of the state.
    pub(crate) state: &'static str,
    /// `classic` or `consumer`.
    pub(crate) group_type: &'static str,
}

impl ClassicGroups {
    /// DescribeGroups of one group: an unknown group is `Dead` with no
    /// error, as in Kafka; members carry metadata and assignments only when
    /// the group is Stable.
    pub(crate) fn describe(&self, group_id: &str) -> DescribedGroup {
        let Some(group) = self.groups.get(group_id) else {
            return DescribedGroup::default()
                .with_group_id(str_bytes(group_id).into())
                .with_group_state(str_bytes("Dead"));
        };
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        let members = group
            .members
            .values()
            .map(|m| {
                let member = DescribedGroupMember::default()
                    .with_member_id(str_bytes(&m.id))
                    .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                    .with_client_id(str_bytes(&m.client_id))
                    .with_client_host(str_bytes(&m.client_host));
                if stable {
                    member
                        .with_member_metadata(m.metadata(&protocol))
                        .with_member_assignment(m.assignment.clone())
                } else {
                    member
                }
            })
            .collect();
        DescribedGroup::default()
            .with_group_id(str_bytes(group_id).into())
            .with_group_state(str_bytes(group.state.name()))
            .with_protocol_type(str_bytes(
                group.protocol_type.as_deref().unwrap_or_default(),
            ))
            .with_protocol_data(str_bytes(if stable { &protocol } else { "" }))
            .with_members(members)
    }

    /// Every classic group, sorted by id.
    pub(crate) fn list(&self) -> Vec<ListedGroupInfo> {
        let mut groups: Vec<ListedGroupInfo> = self
            .groups
            .values()
            .map(|g| ListedGroupInfo {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
                group_type: CLASSIC_GROUP_TYPE,
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups
    }

    /// Whether a classic group exists (`None`), and whether it has members
    /// or member ids handed out.
    pub(crate) fn has_members(&self, group_id: &str) -> Option<bool> {
        let group = self.groups.get(group_id)?;
        Some(!group.members.is_empty() || !group.pending_members.is_empty())
    }

    /// Forgets a classic group without members (its offsets stay in the
    /// store), so a consumer-protocol group can take its id over.
    pub(crate) fn forget_empty(&mut self, group_id: &str) {
        if self.has_members(group_id) == Some(false) {
            self.cancel_timer(group_id, TimerKind::Join);
            self.cancel_timer(group_id, TimerKind::Sync);
            self.groups.remove(group_id);
        }
    }

    /// DeleteGroups of one group: only an Empty group can be deleted. On
    /// success the group is gone from memory and the returned receiver
    /// gets the outcome of deleting its record and offsets.
    pub(crate) fn delete(&mut self, group_id: &str) -> Result<oneshot::Receiver<i16>, i16> {
        let group = self.groups.get(group_id).ok_or(code::GROUP_ID_NOT_FOUND)?;
        if group.state != GroupState::Empty || !group.members.is_empty() {
            return Err(code::NON_EMPTY_GROUP);
        }
        let pending: Vec<String> = group.pending_members.iter().cloned().collect();
        for member_id in pending {
            self.cancel_timer(group_id, TimerKind::PendingMember(member_id));
        }
        self.cancel_timer(group_id, TimerKind::Join);
        self.cancel_timer(group_id, TimerKind::Sync);
        self.groups.remove(group_id);
        let (reply, outcome) = oneshot::channel();
        self.effects.push(Effect::Delete(
            group_id.to_string(),
            vec![Deferred::Done(reply)],
        ));
        Ok(outcome)
    }

    /// The group checks of an OffsetCommit (Kafka's `doCommitOffsets`):
    /// the error code for every partition of the commit, NONE to commit.
    /// A commit outside group management (generation < 0) to an unknown
    /// group creates it, Empty.
    pub(crate) fn validate_commit(&mut self, commit: &CommitIdentity, now_ms: i64) -> i16 {
        if commit.group_id.is_empty() {
            return code::INVALID_GROUP_ID;
        }
        let Some(group) = self.groups.get_mut(&commit.group_id) else {
            if commit.generation_id >= 0 {
                return code::ILLEGAL_GENERATION;
            }
            let mut group = Group::new(commit.group_id.clone());
            group.has_offsets = true;
            self.groups.insert(commit.group_id.clone(), group);
            return code::NONE;
        };
        let member_id = commit.member_id.as_str();
        if group.is_fenced(commit.instance_id.as_deref(), member_id) {
            return code::FENCED_INSTANCE_ID;
        }
        if commit.generation_id < 0 && group.state == GroupState::Empty {
            group.has_offsets = true;
            return code::NONE;
        }
        if group.state == GroupState::CompletingRebalance {
            return code::REBALANCE_IN_PROGRESS;
        }
        if !group.members.contains_key(member_id) {
            return code::UNKNOWN_MEMBER_ID;
        }
        if commit.generation_id != group.generation_id {
            return code::ILLEGAL_GENERATION;
        }
        group.has_offsets = true;
        self.arm_session(&commit.group_id, member_id, now_ms);
        code::NONE
    }

    /// The group checks of an OffsetDelete: GROUP_ID_NOT_FOUND for an
    /// unknown group, NON_EMPTY_GROUP for a group with members that are not
    /// Kafka consumers, else the topics the members are subscribed to
    /// (none for an Empty group).
    pub(crate) fn offset_delete_check(&self, group_id: &str) -> Result<Subscriptions, i16> {
        let group = self.groups.get(group_id).ok_or(code::GROUP_ID_NOT_FOUND)?;
        if group.state == GroupState::Empty {
            return Ok(Subscriptions::Topics(HashSet::new()));
        }
        if group.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return Err(code::NON_EMPTY_GROUP);
        }
        let mut topics = HashSet::new();
        for member in group.members.values() {
            let metadata = match &group.protocol_name {
                Some(protocol) => member.metadata(protocol),
                None => member
                    .protocols
                    .first()
                    .map(|(_, m)| m.clone())
                    .unwrap_or_default(),
            };
            match subscribed_topics(metadata) {
                Some(subscribed) => topics.extend(subscribed),
                None => return Ok(Subscriptions::All),
            }
        }
        Ok(Subscriptions::Topics(topics))
    }
}

/// The topics of a consumer's subscription metadata (a version, then
/// `ConsumerProtocolSubscription` at that version); `None` if it does not
/// parse. Newer versions only append fields, so they decode as the newest
/// version this build knows.
fn subscribed_topics(mut metadata: Bytes) -> Option<Vec<String>> {
    if metadata.remaining() < 2 {
        return None;
    }
    let version = metadata.get_i16().clamp(0, 3);
    let subscription = ConsumerProtocolSubscription::decode(&mut metadata, version).ok()?;
    Some(
        subscription
            .topics
            .into_iter()
            .map(|t| t.as_str().to_string())
            .collect(),
    )
}
