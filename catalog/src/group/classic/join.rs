//! JoinGroup: new members, known members and static members (KIP-345).

use bytes::Bytes;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use uuid::Uuid;

use super::{ClassicGroups, Deferred, Effect, Group, GroupState, Member, Reply, TimerKind};
use super::{code, join_error};

/// Who sent a request (not part of the Kafka body; the agent tells).
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientInfo {
    /// The client id of the request header.
    pub(crate) client_id: String,
    /// The client's address.
    pub(crate) client_host: String,
}

/// A JoinGroup request in owned form.
#[derive(Debug, Clone)]
pub(crate) struct JoinArgs {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) session_timeout_ms: i32,
    pub(crate) rebalance_timeout_ms: i32,
    /// v4+: a new dynamic member must rejoin with the id it is given.
    pub(crate) require_known_member_id: bool,
    pub(crate) client: ClientInfo,
}

impl JoinArgs {
    /// The arguments of `request`, decoded at `version`.
    pub(crate) fn from_request(
        request: JoinGroupRequest,
        version: i16,
        client: ClientInfo,
    ) -> Self {
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        let rebalance_timeout_ms = if version == 0 {
            request.session_timeout_ms
        } else {
            request.rebalance_timeout_ms
        };
        Self {
            group_id: request.group_id.0.as_str().to_string(),
            member_id: request.member_id.as_str().to_string(),
            instance_id: request.group_instance_id.map(|i| i.as_str().to_string()),
            protocol_type: request.protocol_type.as_str().to_string(),
            protocols: request
                .protocols
                .into_iter()
                .map(|p| (p.name.as_str().to_string(), p.metadata))
                .collect(),
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms,
            require_known_member_id: version >= 4,
            client,
        }
    }

    fn new_member(&self, member_id: String, reply: Reply<JoinGroupResponse>) -> Member {
        Member {
            id: member_id,
            instance_id: self.instance_id.clone(),
            client_id: self.client.client_id.clone(),
            client_host: self.client.client_host.clone(),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            protocols: self.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: Some(reply),
            awaiting_sync: None,
        }
    }

    /// Whether `member` already has exactly these protocols.
    fn matches(&self, member: &Member) -> bool {
        member.protocols == self.protocols
    }
}

impl ClassicGroups {
    /// Handles a JoinGroup. The response is sent through `reply` when the
    /// join barrier completes, or at once for errors and rejoins that need
    /// no rebalance.
    pub(crate) fn join(&mut self, join: JoinArgs, reply: Reply<JoinGroupResponse>, now_ms: i64) {
        if let Err(error_code) = self.check_join(&join) {
            drop(reply.send(join_error(&join.member_id, error_code)));
            return;
        }
        if join.member_id.is_empty() {
            self.join_new(join, reply, now_ms);
        } else {
            self.join_known(join, reply, now_ms);
        }
    }

    fn check_join(&self, join: &JoinArgs) -> Result<(), i16> {
        if join.group_id.is_empty() {
            return Err(code::INVALID_GROUP_ID);
        }
        let session = join.session_timeout_ms;
        if session < self.options.min_session_timeout_ms
            || session > self.options.max_session_timeout_ms
        {
            return Err(code::INVALID_SESSION_TIMEOUT);
        }
        if join.protocol_type.is_empty() || join.protocols.is_empty() {
            return Err(code::INCONSISTENT_GROUP_PROTOCOL);
        }
        Ok(())
    }

    fn join_new(&mut self, join: JoinArgs, reply: Reply<JoinGroupResponse>, now_ms: i64) {
        let max_size = self.options.max_group_size;
        let group = self
            .groups
            .entry(join.group_id.clone())
            .or_insert_with(|| Group::new(join.group_id.clone()));
        let error_code = if group.members.len() >= max_size {
            Some(code::GROUP_MAX_SIZE_REACHED)
        } else if !group.supports(&join.protocol_type, &join.protocols, "") {
            Some(code::INCONSISTENT_GROUP_PROTOCOL)
        } else {
            None
        };
        if let Some(error_code) = error_code {
            drop(reply.send(join_error("", error_code)));
            self.maybe_forget(&join.group_id);
            return;
        }
        let member_id = format!("{}-{}", join.client.client_id, Uuid::new_v4());
        let existing = join
            .instance_id
            .as_ref()
            .and_then(|instance| group.static_members.get(instance))
            .cloned();
        if let Some(old_member_id) = existing {
            self.replace_static(join, &old_member_id, member_id, reply, now_ms);
        } else if join.instance_id.is_none() && join.require_known_member_id {
            group.pending_members.insert(member_id.clone());
            let deadline_ms = now_ms + i64::from(join.session_timeout_ms);
            let key = (
                join.group_id.clone(),
                TimerKind::PendingMember(member_id.clone()),
            );
            self.timers.set(key, deadline_ms);
            drop(reply.send(join_error(&member_id, code::MEMBER_ID_REQUIRED)));
        } else {
            self.add_member(join, member_id, reply, now_ms);
        }
    }

    fn join_known(&mut self, join: JoinArgs, reply: Reply<JoinGroupResponse>, now_ms: i64) {
        let member_id = join.member_id.clone();
        let Some(group) = self.groups.get_mut(&join.group_id) else {
            drop(reply.send(join_error(&member_id, code::UNKNOWN_MEMBER_ID)));
            return;
        };
        if group.pending_members.remove(&member_id) {
            let kind = TimerKind::PendingMember(member_id.clone());
            self.cancel_timer(&join.group_id, kind);
            self.add_member(join, member_id, reply, now_ms);
            return;
        }
        if let Some(error_code) = known_member_error(group, &join) {
            drop(reply.send(join_error(&member_id, error_code)));
            return;
        }
        let unchanged = join.matches(&group.members[&member_id]);
        match group.state {
            GroupState::Empty => {
                drop(reply.send(join_error(&member_id, code::UNKNOWN_MEMBER_ID)));
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged
                    && (group.state == GroupState::CompletingRebalance
                        || !group.is_leader(&member_id)) =>
            {
                // A retry (or a follower's rejoin) with the same protocols:
                // the current generation stands.
                drop(reply.send(group.join_response(&member_id)));
                self.arm_session(&join.group_id, &member_id, now_ms);
            }
            _ => self.update_member(join, reply, now_ms),
        }
    }

    /// Adds a member awaiting its join response and moves the group toward
    /// a new generation.
    fn add_member(
        &mut self,
        join: JoinArgs,
        member_id: String,
        reply: Reply<JoinGroupResponse>,
        now_ms: i64,
    ) {
        let initial_delay_ms = self.options.initial_rebalance_delay_ms;
        let Some(group) = self.groups.get_mut(&join.group_id) else {
            return;
        };
        if group.members.is_empty() {
            group.protocol_type = Some(join.protocol_type.clone());
        }
        if let Some(instance) = &join.instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        let member = join.new_member(member_id.clone(), reply);
        group.members.insert(member_id.clone(), member);
        // A new member of a group still in its initial delay extends the
        // delay, up to the rebalance deadline.
        if let Some(rebalance) = &mut group.rebalance
            && let Some(until_ms) = &mut rebalance.initial_until_ms
        {
            *until_ms = (now_ms + initial_delay_ms).min(rebalance.deadline_ms);
        }
        self.arm_session(&join.group_id, &member_id, now_ms);
        self.rebalance_or_complete(&join.group_id, now_ms);
    }

    /// Updates a known member's protocols and timeouts and holds its join
    /// response for the next generation.
    fn update_member(&mut self, join: JoinArgs, reply: Reply<JoinGroupResponse>, now_ms: i64) {
        let Some(member) = self
            .groups
            .get_mut(&join.group_id)
            .and_then(|g| g.members.get_mut(&join.member_id))
        else {
            return;
        };
        member.protocols = join.protocols;
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.client_id = join.client.client_id;
        member.client_host = join.client.client_host;
        if let Some(old) = member.awaiting_join.replace(reply) {
            // A retried JoinGroup supersedes the earlier one.
            drop(old.send(join_error(&join.member_id, code::REBALANCE_IN_PROGRESS)));
        }
        self.arm_session(&join.group_id, &join.member_id, now_ms);
        self.rebalance_or_complete(&join.group_id, now_ms);
    }

    fn rebalance_or_complete(&mut self, group_id: &str, now_ms: i64) {
        let Some(group) = self.groups.get(group_id) else {
            return;
        };
        if group.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(group_id, now_ms);
        } else {
            self.prepare_rebalance(group_id, now_ms);
        }
    }

    /// A static member rejoined without its member id: it gets a new id
    /// that replaces the old one (fencing the old), keeping its assignment.
    /// A Stable group whose member's protocols are unchanged needs no
    /// rebalance: the member gets the current generation back (a leader
    /// with `skip_assignment`) once the group is saved.
    fn replace_static(
        &mut self,
        join: JoinArgs,
        old_member_id: &str,
        member_id: String,
        reply: Reply<JoinGroupResponse>,
        now_ms: i64,
    ) {
        let group_id = join.group_id.clone();
        self.cancel_timer(&group_id, TimerKind::Session(old_member_id.to_string()));
        let Some(group) = self.groups.get_mut(&group_id) else {
            return;
        };
        let Some(mut member) = group.members.shift_remove(old_member_id) else {
            return;
        };
        if let Some(old) = member.awaiting_join.take() {
            drop(old.send(join_error(old_member_id, code::FENCED_INSTANCE_ID)));
        }
        if let Some(old) = member.awaiting_sync.take() {
            drop(old.send(super::sync_error(code::FENCED_INSTANCE_ID)));
        }
        let unchanged = join.matches(&member);
        member.id = member_id.clone();
        member.protocols = join.protocols.clone();
        member.session_timeout_ms = join.session_timeout_ms;
        member.rebalance_timeout_ms = join.rebalance_timeout_ms;
        member.client_id = join.client.client_id.clone();
        member.client_host = join.client.client_host.clone();
        if let Some(instance) = &join.instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        if group.is_leader(old_member_id) {
            group.leader_id = Some(member_id.clone());
        }
        if group.pending_sync.remove(old_member_id) {
            group.pending_sync.insert(member_id.clone());
        }
        group.members.insert(member_id.clone(), member);
        self.arm_session(&group_id, &member_id, now_ms);
        let group = &self.groups[&group_id];
        if group.state == GroupState::Stable
            && unchanged
            && group.select_protocol() == group.protocol_name
        {
            tracing::info!(
                group_id,
                member_id,
                "static member replaced without a rebalance"
            );
            let response = group
                .join_response(&member_id)
                .with_skip_assignment(group.is_leader(&member_id));
            let record = group.record();
            let deferred = vec![Deferred::Join(reply, response)];
            self.effects.push(Effect::Save(record, deferred));
            return;
        }
        if let Some(member) = self
            .groups
            .get_mut(&group_id)
            .and_then(|g| g.members.get_mut(&member_id))
        {
            member.awaiting_join = Some(reply);
        }
        self.rebalance_or_complete(&group_id, now_ms);
    }
}

/// The error of a JoinGroup by a known member id, if any.
fn known_member_error(group: &Group, join: &JoinArgs) -> Option<i16> {
    if let Some(instance) = &join.instance_id {
        match group.static_members.get(instance) {
            Some(owner) if *owner != join.member_id => return Some(code::FENCED_INSTANCE_ID),
            Some(_) => {}
            None => return Some(code::UNKNOWN_MEMBER_ID),
        }
    }
    if !group.members.contains_key(&join.member_id) {
        return Some(code::UNKNOWN_MEMBER_ID);
    }
    if !group.supports(&join.protocol_type, &join.protocols, &join.member_id) {
        return Some(code::INCONSISTENT_GROUP_PROTOCOL);
    }
    None
}
