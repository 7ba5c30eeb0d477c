//! The classic group protocol's state machine (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup and the timers), after Kafka's `GroupCoordinator`.
//!
//! Synchronous and pure: every call takes the clock's `now_ms`, answers
//! through the oneshot it is given (JoinGroup and SyncGroup responses are
//! held until the barrier completes), and leaves writes for the store in
//! an outbox of [`Effect`]s that the actor hands to the persister.
//!
//! A group moves Empty -> PreparingRebalance (the join barrier) ->
//! CompletingRebalance (waiting for the leader's assignments) -> Stable,
//! and back to PreparingRebalance when a member joins, leaves, changes its
//! protocols or expires.

mod admin;
mod join;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;

pub(crate) use self::admin::{CommitIdentity, ListedGroupInfo, Subscriptions};
pub(crate) use self::join::{ClientInfo, JoinArgs};
use super::persist::{Deferred, Effect};
use super::timers::Timers;
use super::{GroupOptions, code};
use crate::store::{GroupMemberRecord, GroupRecord, MemberProtocol};

/// Where a held response goes.
pub(crate) type Reply<T> = oneshot::Sender<T>;

/// A classic group's state, named as Kafka names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum GroupState {
    /// No members (offsets may exist).
    Empty,
    /// The join barrier: waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignments.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
}

impl GroupState {
    /// Kafka's name of the state (DescribeGroups, ListGroups).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

/// What a timer is for; keyed with the group id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum TimerKind {
    /// A member's session: it expires without heartbeats.
    Session(String),
    /// A member id handed out with MEMBER_ID_REQUIRED, not yet used.
    PendingMember(String),
    /// The join barrier's deadline (rebalance timeout or initial delay).
    Join,
    /// Members that have not sent SyncGroup after the join completed.
    Sync,
}

type TimerKey = (String, TimerKind);

/// A member of a classic group.
#[derive(Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    /// Protocol names and metadata, most preferred first.
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<Reply<JoinGroupResponse>>,
    awaiting_sync: Option<Reply<SyncGroupResponse>>,
}

impl Member {
    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn record(&self) -> GroupMemberRecord {
        GroupMemberRecord {
            member_id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            client_id: self.client_id.clone(),
            client_host: self.client_host.clone(),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            protocols: self
                .protocols
                .iter()
                .map(|(name, metadata)| MemberProtocol {
                    name: name.clone(),
                    metadata: metadata.to_vec(),
                })
                .collect(),
            assignment: self.assignment.to_vec(),
        }
    }

    fn from_record(record: GroupMemberRecord) -> Self {
        Self {
            id: record.member_id,
            instance_id: record.instance_id,
            client_id: record.client_id,
            client_host: record.client_host,
            session_timeout_ms: record.session_timeout_ms,
            rebalance_timeout_ms: record.rebalance_timeout_ms,
            protocols: record
                .protocols
                .into_iter()
                .map(|p| (p.name, Bytes::from(p.metadata)))
                .collect(),
            assignment: Bytes::from(record.assignment),
            awaiting_join: None,
            awaiting_sync: None,
        }
    }
}

/// The join barrier of a rebalance in progress.
#[derive(Debug, Clone, Copy)]
struct Rebalance {
    /// The barrier completes at the latest here (rebalance timeout).
    deadline_ms: i64,
    /// For the first rebalance of an empty group: the barrier waits until
    /// here (`initial_rebalance_delay_ms`, extended by each new member).
    initial_until_ms: Option<i64>,
}

/// A classic group.
#[derive(Debug)]
struct Group {
    id: String,
    state: GroupState,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    generation_id: i32,
    leader_id: Option<String>,
    /// In join order (the first member leads when the leader left).
    members: IndexMap<String, Member>,
    /// Static members: instance id -> member id.
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED.
    pending_members: HashSet<String>,
    rebalance: Option<Rebalance>,
    /// Members of the current generation that have not sent SyncGroup.
    pending_sync: HashSet<String>,
    /// Offsets may exist: the group outlives its members.
    has_offsets: bool,
    /// A record of the group may be in the store.
    persisted: bool,
}

impl Group {
    fn new(id: String) -> Self {
        Self {
            id,
            state: GroupState::Empty,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: HashSet::new(),
            rebalance: None,
            pending_sync: HashSet::new(),
            has_offsets: false,
            persisted: false,
        }
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Whether `instance_id` belongs to another member than `member_id`.
    fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|instance| self.static_members.get(instance))
            .is_some_and(|owner| owner != member_id)
    }

    /// Whether a member with these protocols may join (Kafka's
    /// `supportsProtocols`), ignoring the member `except` itself.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)], except: &str) -> bool {
        let mut others = self.members.values().filter(|m| m.id != except).peekable();
        if others.peek().is_none() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .filter(|m| m.id != except)
                    .all(|m| m.supports(name))
            })
    }

    /// The protocol every member supports with the most first-choice
    /// votes; ties go to the first member's preference.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(&name.as_str()))
            {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for candidate in candidates {
            let count = votes.get(candidate).copied().unwrap_or(0);
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((candidate, count));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    fn max_rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn record(&self) -> GroupRecord {
        GroupRecord {
            group_id: self.id.clone(),
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: self.protocol_name.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            leader_id: self.leader_id.clone().unwrap_or_default(),
            members: self.members.values().map(Member::record).collect(),
        }
    }

    /// The join response of `member_id` in the current generation; the
    /// leader gets every member's metadata for the selected protocol.
    fn join_response(&self, member_id: &str) -> JoinGroupResponse {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if self.is_leader(member_id) {
            self.members
                .values()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.id))
                        .with_group_instance_id(m.instance_id.as_deref().map(str_bytes))
                        .with_metadata(m.metadata(&protocol))
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse::default()
            .with_error_code(code::NONE)
            .with_generation_id(self.generation_id)
            .with_protocol_type(self.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(Some(str_bytes(&protocol)))
            .with_leader(str_bytes(self.leader_id.as_deref().unwrap_or_default()))
            .with_member_id(str_bytes(member_id))
            .with_members(members)
    }

    fn sync_response(&self, assignment: Bytes) -> SyncGroupResponse {
        SyncGroupResponse::default()
            .with_error_code(code::NONE)
            .with_protocol_type(self.protocol_type.as_deref().map(str_bytes))
            .with_protocol_name(self.protocol_name.as_deref().map(str_bytes))
            .with_assignment(assignment)
    }
}

/// A `StrBytes` copy of `s`.
pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// A JoinGroup error response.
pub(crate) fn join_error(member_id: &str, error_code: i16) -> JoinGroupResponse {
    JoinGroupResponse::default()
        .with_error_code(error_code)
        .with_generation_id(-1)
        .with_protocol_name(None)
        .with_member_id(str_bytes(member_id))
}

/// A SyncGroup error response.
pub(crate) fn sync_error(error_code: i16) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(error_code)
}

/// Every classic group, their timers, and the writes they await.
#[derive(Debug)]
pub(crate) struct ClassicGroups {
    groups: HashMap<String, Group>,
    timers: Timers<TimerKey>,
    effects: Vec<Effect>,
    options: GroupOptions,
}

impl ClassicGroups {
    /// No groups.
    pub(crate) fn new(options: GroupOptions) -> Self {
        Self {
            groups: HashMap::new(),
            timers: Timers::default(),
            effects: Vec::new(),
            options,
        }
    }

    /// The groups of `records` (as loaded from the store): groups with
    /// members are Stable in their saved generation with fresh session
    /// timers; the others are Empty.
    pub(crate) fn load(options: GroupOptions, records: Vec<GroupRecord>, now_ms: i64) -> Self {
        let mut groups = Self::new(options);
        for record in records {
            let mut group = Group::new(record.group_id.clone());
            group.generation_id = record.generation_id;
            group.protocol_type = Some(record.protocol_type).filter(|t| !t.is_empty());
            group.has_offsets = true;
            group.persisted = true;
            if !record.members.is_empty() {
                group.state = GroupState::Stable;
                group.protocol_name = Some(record.protocol_name);
                group.leader_id = Some(record.leader_id);
            }
            for member in record.members.into_iter().map(Member::from_record) {
                let deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                let key = (group.id.clone(), TimerKind::Session(member.id.clone()));
                groups.timers.set(key, deadline_ms);
                if let Some(instance) = &member.instance_id {
                    group
                        .static_members
                        .insert(instance.clone(), member.id.clone());
                }
                group.members.insert(member.id.clone(), member);
            }
            groups.groups.insert(group.id.clone(), group);
        }
        groups
    }

    /// Queues a write (for groups of the other protocol, whose offsets
    /// go through the same persister).
    pub(crate) fn push_effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    /// Takes the writes the last calls produced.
    pub(crate) fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// The earliest timer deadline.
    pub(crate) fn next_deadline_ms(&self) -> Option<i64> {
        self.timers.next_deadline_ms()
    }

    fn arm_session(&mut self, group_id: &str, member_id: &str, now_ms: i64) {
        let Some(member) = self
            .groups
            .get(group_id)
            .and_then(|g| g.members.get(member_id))
        else {
            return;
        };
        let deadline_ms = now_ms + i64::from(member.session_timeout_ms);
        let key = (
            group_id.to_string(),
            TimerKind::Session(member_id.to_string()),
        );
        self.timers.set(key, deadline_ms);
    }

    fn cancel_timer(&mut self, group_id: &str, kind: TimerKind) {
        self.timers.cancel(&(group_id.to_string(), kind));
    }

    /// Handles a SyncGroup: the leader's assignments complete the
    /// generation; followers wait for them.
    pub(crate) fn sync(
        &mut self,
        request: SyncGroupRequest,
        reply: Reply<SyncGroupResponse>,
        now_ms: i64,
    ) {
        let group_id = request.group_id.0.as_str().to_string();
        let member_id = request.member_id.as_str().to_string();
        if let Err(error_code) = self.check_sync(&group_id, &request) {
            drop(reply.send(sync_error(error_code)));
            return;
        }
        let Some(group) = self.groups.get_mut(&group_id) else {
            drop(reply.send(sync_error(code::UNKNOWN_MEMBER_ID)));
            return;
        };
        match group.state {
            GroupState::Empty => drop(reply.send(sync_error(code::UNKNOWN_MEMBER_ID))),
            GroupState::PreparingRebalance => {
                drop(reply.send(sync_error(code::REBALANCE_IN_PROGRESS)));
            }
            GroupState::Stable => {
                group.pending_sync.remove(&member_id);
                if group.pending_sync.is_empty() {
                    self.cancel_timer(&group_id, TimerKind::Sync);
                }
                let group = &self.groups[&group_id];
                let assignment = group.members[&member_id].assignment.clone();
                drop(reply.send(group.sync_response(assignment)));
                self.arm_session(&group_id, &member_id, now_ms);
            }
            GroupState::CompletingRebalance => {
                let is_leader = group.is_leader(&member_id);
                if let Some(member) = group.members.get_mut(&member_id)
                    && let Some(old) = member.awaiting_sync.replace(reply)
                {
                    drop(old.send(sync_error(code::REBALANCE_IN_PROGRESS)));
                }
                self.arm_session(&group_id, &member_id, now_ms);
                if is_leader {
                    let assignments = request
                        .assignments
                        .into_iter()
                        .map(|a| (a.member_id.as_str().to_string(), a.assignment))
                        .collect();
                    self.complete_sync(&group_id, assignments);
                }
            }
        }
    }

    fn check_sync(&self, group_id: &str, request: &SyncGroupRequest) -> Result<(), i16> {
        if group_id.is_empty() {
            return Err(code::INVALID_GROUP_ID);
        }
        let group = self.groups.get(group_id).ok_or(code::UNKNOWN_MEMBER_ID)?;
        let member_id = request.member_id.as_str();
        let instance_id = request.group_instance_id.as_ref().map(StrBytes::as_str);
        if group.is_fenced(instance_id, member_id) {
            return Err(code::FENCED_INSTANCE_ID);
        }
        if !group.members.contains_key(member_id) {
            return Err(code::UNKNOWN_MEMBER_ID);
        }
        if request.generation_id != group.generation_id {
            return Err(code::ILLEGAL_GENERATION);
        }
        let mismatch = |asked: &Option<StrBytes>, have: &Option<String>| {
            asked
                .as_ref()
                .is_some_and(|asked| have.as_deref() != Some(asked.as_str()))
        };
        if mismatch(&request.protocol_type, &group.protocol_type)
            || mismatch(&request.protocol_name, &group.protocol_name)
        {
            return Err(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        Ok(())
    }

    /// Stores the leader's assignments, makes the group Stable and sends
    /// the waiting SyncGroup responses once the record is saved.
    fn complete_sync(&mut self, group_id: &str, mut assignments: HashMap<String, Bytes>) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        group.state = GroupState::Stable;
        group.persisted = true;
        let mut deferred = Vec::new();
        let response = |group: &Group, assignment: Bytes| group.sync_response(assignment);
        let ids: Vec<String> = group.members.keys().cloned().collect();
        for id in ids {
            let assignment = assignments.remove(&id).unwrap_or_default();
            let member = &mut group.members[&id];
            member.assignment = assignment.clone();
            if let Some(reply) = member.awaiting_sync.take() {
                group.pending_sync.remove(&id);
                deferred.push(Deferred::Sync(reply, response(group, assignment)));
            }
        }
        if group.pending_sync.is_empty() {
            self.cancel_timer(group_id, TimerKind::Sync);
        }
        let record = self.groups[group_id].record();
        self.effects.push(Effect::Save(record, deferred));
    }

    /// Handles a Heartbeat.
    pub(crate) fn heartbeat(
        &mut self,
        request: &HeartbeatRequest,
        now_ms: i64,
    ) -> HeartbeatResponse {
        let error_code = self.heartbeat_code(request, now_ms);
        HeartbeatResponse::default().with_error_code(error_code)
    }

    fn heartbeat_code(&mut self, request: &HeartbeatRequest, now_ms: i64) -> i16 {
        let group_id = request.group_id.0.as_str();
        let member_id = request.member_id.as_str();
        if group_id.is_empty() {
            return code::INVALID_GROUP_ID;
        }
        let Some(group) = self.groups.get(group_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        let instance_id = request.group_instance_id.as_ref().map(StrBytes::as_str);
        if group.is_fenced(instance_id, member_id) {
            return code::FENCED_INSTANCE_ID;
        }
        if !group.members.contains_key(member_id) {
            return code::UNKNOWN_MEMBER_ID;
        }
        if request.generation_id != group.generation_id {
            return code::ILLEGAL_GENERATION;
        }
        let state = group.state;
        self.arm_session(group_id, member_id, now_ms);
        match state {
            GroupState::Empty => code::UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => code::REBALANCE_IN_PROGRESS,
            GroupState::CompletingRebalance | GroupState::Stable => code::NONE,
        }
    }

    /// Handles a LeaveGroup of one or more members (by member id, or by
    /// instance id for static members).
    pub(crate) fn leave(
        &mut self,
        group_id: &str,
        leaving: &[MemberIdentity],
        now_ms: i64,
    ) -> LeaveGroupResponse {
        if group_id.is_empty() {
            return LeaveGroupResponse::default().with_error_code(code::INVALID_GROUP_ID);
        }
        let mut responses = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for identity in leaving {
            let member_id = identity.member_id.as_str();
            let instance_id = identity.group_instance_id.as_ref().map(StrBytes::as_str);
            let error_code = self.leave_one(group_id, member_id, instance_id);
            removed |= error_code == code::NONE;
            responses.push(
                MemberResponse::default()
                    .with_member_id(identity.member_id.clone())
                    .with_group_instance_id(identity.group_instance_id.clone())
                    .with_error_code(error_code),
            );
        }
        if removed {
            self.after_removal(group_id, now_ms);
        }
        LeaveGroupResponse::default()
            .with_error_code(code::NONE)
            .with_members(responses)
    }

    fn leave_one(&mut self, group_id: &str, member_id: &str, instance_id: Option<&str>) -> i16 {
        let Some(group) = self.groups.get_mut(group_id) else {
            return code::UNKNOWN_MEMBER_ID;
        };
        let target = match instance_id {
            Some(instance) => match group.static_members.get(instance) {
                Some(owner) if !member_id.is_empty() && owner != member_id => {
                    return code::FENCED_INSTANCE_ID;
                }
                Some(owner) => owner.clone(),
                None => return code::UNKNOWN_MEMBER_ID,
            },
            None => member_id.to_string(),
        };
        if group.pending_members.remove(&target) {
            self.cancel_timer(group_id, TimerKind::PendingMember(target));
            return code::NONE;
        }
        if !group.members.contains_key(&target) {
            return code::UNKNOWN_MEMBER_ID;
        }
        self.remove_member(group_id, &target);
        code::NONE
    }

    /// Removes a member without moving the group: its held responses get
    /// UNKNOWN_MEMBER_ID and its timers stop.
    fn remove_member(&mut self, group_id: &str, member_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        let Some(member) = group.members.shift_remove(member_id) else {
            return;
        };
        if let Some(reply) = member.awaiting_join {
            drop(reply.send(join_error(member_id, code::UNKNOWN_MEMBER_ID)));
        }
        if let Some(reply) = member.awaiting_sync {
            drop(reply.send(sync_error(code::UNKNOWN_MEMBER_ID)));
        }
        if let Some(instance) = &member.instance_id
            && group.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            group.static_members.remove(instance);
        }
        group.pending_sync.remove(member_id);
        if group.is_leader(member_id) {
            group.leader_id = None;
        }
        self.cancel_timer(group_id, TimerKind::Session(member_id.to_string()));
    }

    /// Moves the group after members left or expired: a rebalance, or the
    /// completion of the one in progress.
    fn after_removal(&mut self, group_id: &str, now_ms: i64) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(group_id, now_ms);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(group_id, now_ms),
            GroupState::Empty => self.maybe_forget(group_id),
        }
    }

    /// Forgets an Empty group that has nothing worth keeping.
    fn maybe_forget(&mut self, group_id: &str) {
        let forget = self.groups.get(group_id).is_some_and(|g| {
            g.state == GroupState::Empty
                && g.members.is_empty()
                && g.pending_members.is_empty()
                && !g.has_offsets
                && !g.persisted
        });
        if forget {
            self.groups.remove(group_id);
        }
    }

    /// Fires every timer due at `now_ms`: expired sessions and pending
    /// member ids, join barriers at their deadline, members that never
    /// sent SyncGroup.
    pub(crate) fn expire(&mut self, now_ms: i64) {
        while let Some((group_id, kind)) = self.timers.pop_expired(now_ms) {
            match kind {
                TimerKind::Session(member_id) => self.expire_session(&group_id, &member_id, now_ms),
                TimerKind::PendingMember(member_id) => {
                    if let Some(group) = self.groups.get_mut(&group_id) {
                        group.pending_members.remove(&member_id);
                        self.after_removal(&group_id, now_ms);
                    }
                }
                TimerKind::Join => self.maybe_complete_join(&group_id, now_ms),
                TimerKind::Sync => self.expire_pending_sync(&group_id, now_ms),
            }
        }
    }

    fn expire_session(&mut self, group_id: &str, member_id: &str, now_ms: i64) {
        let Some(member) = self
            .groups
            .get(group_id)
            .and_then(|g| g.members.get(member_id))
        else {
            return;
        };
        if member.awaiting_join.is_some() || member.awaiting_sync.is_some() {
            // Kafka keeps members alive while their requests are held.
            self.arm_session(group_id, member_id, now_ms);
            return;
        }
        tracing::info!(group_id, member_id, "group member session expired");
        self.remove_member(group_id, member_id);
        self.after_removal(group_id, now_ms);
    }

    fn expire_pending_sync(&mut self, group_id: &str, now_ms: i64) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        if !matches!(
            group.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) || group.pending_sync.is_empty()
        {
            return;
        }
        let late: Vec<String> = group.pending_sync.iter().cloned().collect();
        tracing::info!(group_id, ?late, "members did not sync in time");
        for member_id in late {
            self.remove_member(group_id, &member_id);
        }
        self.after_removal(group_id, now_ms);
    }

    /// Starts a rebalance: the join barrier opens, held SyncGroups learn
    /// that the group is rebalancing.
    fn prepare_rebalance(&mut self, group_id: &str, now_ms: i64) {
        let initial_delay_ms = self.options.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if group.state == GroupState::CompletingRebalance {
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(reply) = member.awaiting_sync.take() {
                    drop(reply.send(sync_error(code::REBALANCE_IN_PROGRESS)));
                }
            }
        }
        group.pending_sync.clear();
        let deadline_ms = now_ms + group.max_rebalance_timeout_ms();
        let initial_until_ms = (group.state == GroupState::Empty)
            .then(|| (now_ms + initial_delay_ms).min(deadline_ms));
        group.state = GroupState::PreparingRebalance;
        group.rebalance = Some(Rebalance {
            deadline_ms,
            initial_until_ms,
        });
        tracing::debug!(
            group_id,
            generation = group.generation_id,
            "rebalance started"
        );
        self.cancel_timer(group_id, TimerKind::Sync);
        self.maybe_complete_join(group_id, now_ms);
    }

    /// Completes the join barrier if every member rejoined (after the
    /// initial delay of a new group) or the deadline passed; otherwise arms
    /// the barrier's timer.
    fn maybe_complete_join(&mut self, group_id: &str, now_ms: i64) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        let (GroupState::PreparingRebalance, Some(rebalance)) = (group.state, group.rebalance)
        else {
            return;
        };
        let all_joined = group.pending_members.is_empty()
            && group.members.values().all(|m| m.awaiting_join.is_some());
        let (ready, wake_ms) = match rebalance.initial_until_ms {
            Some(until_ms) => (now_ms >= until_ms, until_ms),
            None => (
                all_joined || now_ms >= rebalance.deadline_ms,
                rebalance.deadline_ms,
            ),
        };
        if ready {
            self.complete_join(group_id, now_ms);
        } else {
            self.timers
                .set((group_id.to_string(), TimerKind::Join), wake_ms);
        }
    }

    /// Ends the join barrier: members that did not rejoin are removed, the
    /// generation advances, the protocol is selected and every held
    /// JoinGroup is answered (the leader with the members' metadata).
    fn complete_join(&mut self, group_id: &str, now_ms: i64) {
        self.cancel_timer(group_id, TimerKind::Join);
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        let missing: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.id.clone())
            .collect();
        for member_id in missing {
            self.remove_member(group_id, &member_id);
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        group.rebalance = None;
        group.generation_id += 1;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.protocol_name = None;
            group.leader_id = None;
            self.group_emptied(group_id);
            return;
        }
        group.protocol_name = group.select_protocol();
        if !group
            .leader_id
            .as_ref()
            .is_some_and(|l| group.members.contains_key(l))
        {
            group.leader_id = group.members.keys().next().cloned();
        }
        group.state = GroupState::CompletingRebalance;
        group.pending_sync = group.members.keys().cloned().collect();
        tracing::debug!(group_id, generation = group.generation_id, "join completed");
        let mut replies = Vec::new();
        for member in group.members.values_mut() {
            if let Some(reply) = member.awaiting_join.take() {
                replies.push((member.id.clone(), reply));
            }
        }
        let group = &self.groups[group_id];
        let sync_deadline_ms = now_ms + group.max_rebalance_timeout_ms();
        let ids: Vec<String> = replies.iter().map(|(id, _)| id.clone()).collect();
        for (member_id, reply) in replies {
            drop(reply.send(group.join_response(&member_id)));
        }
        for member_id in ids {
            self.arm_session(group_id, &member_id, now_ms);
        }
        self.timers
            .set((group_id.to_string(), TimerKind::Sync), sync_deadline_ms);
    }

    /// Records that a group lost its last member: its record is saved (or
    /// the group forgotten when nothing of it is worth keeping).
    fn group_emptied(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        if !group.has_offsets && !group.persisted {
            self.maybe_forget(group_id);
            return;
        }
        group.persisted = true;
        let record = group.record();
        self.effects.push(Effect::Save(record, Vec::new()));
    }
}
