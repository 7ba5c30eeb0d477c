//! One member of a consumer group: its subscription, epochs, current
//! assignment and the safe steps that take it to its target assignment.

use std::collections::{BTreeSet, HashSet};

use kafka_protocol::messages::consumer_group_describe_response as describe;
use kafka_protocol::messages::{ConsumerGroupHeartbeatResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::group::TopicNames;
use super::partitions::{
    difference, from_records, heartbeat_assignment, intersection, owns_any, to_records,
};
use super::request::Heartbeat;
use super::{JOIN_EPOCH, MEMBER_TYPE_CONSUMER, NOT_PROVIDED, STATIC_LEAVE_EPOCH};
use crate::group::assignor::{Assignor, TopicPartitionSet};
use crate::store::{ConsumerMemberRecord, ConsumerMemberState};

/// Where a member is on its way to its target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MemberState {
    /// At the assignment epoch with all of its target partitions.
    Stable,
    /// Must revoke `pending_revocation` before it may advance.
    UnrevokedPartitions,
    /// At the assignment epoch, waiting for other members to release some of
    /// its target partitions.
    UnreleasedPartitions,
}

/// One member of a consumer group, keyed by member id in
/// [`Group::members`](super::group::Group::members). Everything but the two
/// deadlines is persisted (see [`Member::persisted_eq`]).
#[derive(Debug, Clone)]
pub(super) struct Member {
    pub(super) instance_id: Option<String>,
    pub(super) rack_id: Option<String>,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) subscribed_topic_names: BTreeSet<String>,
    pub(super) server_assignor: Option<Assignor>,
    pub(super) member_epoch: i32,
    pub(super) previous_member_epoch: i32,
    pub(super) state: MemberState,
    /// Partitions the member may use now (what the heartbeat returns).
    pub(super) assigned: TopicPartitionSet,
    /// Partitions the member must give up and still holds.
    pub(super) pending_revocation: TopicPartitionSet,
    /// A static member that left with epoch -2 and may come back.
    pub(super) static_left: bool,
    pub(super) session_deadline_ms: i64,
    /// Set while revoking: a member that takes longer than its rebalance
    /// timeout is removed so that it cannot block the group.
    pub(super) revocation_deadline_ms: Option<i64>,
}

/// What one member needs to take its next reconciliation step.
#[derive(Debug)]
pub(super) struct Step<'a> {
    pub(super) target: &'a TopicPartitionSet,
    pub(super) target_epoch: i32,
    pub(super) held_by_others: &'a HashSet<(Uuid, i32)>,
    pub(super) owned: Option<&'a TopicPartitionSet>,
    pub(super) now_ms: i64,
    pub(super) session_timeout_ms: i64,
}

impl Member {
    pub(super) fn new(instance_id: Option<&str>) -> Self {
        Self {
            instance_id: instance_id.map(str::to_owned),
            rack_id: None,
            rebalance_timeout_ms: NOT_PROVIDED,
            subscribed_topic_names: BTreeSet::new(),
            server_assignor: None,
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: TopicPartitionSet::new(),
            pending_revocation: TopicPartitionSet::new(),
            static_left: false,
            session_deadline_ms: i64::MAX,
            revocation_deadline_ms: None,
        }
    }

    /// The member of a persisted record; its session (or, while it is
    /// revoking, its rebalance timeout) starts at `now_ms`.
    pub(super) fn restore(
        record: ConsumerMemberRecord,
        session_timeout_ms: i64,
        now_ms: i64,
    ) -> Self {
        let state = match record.state {
            ConsumerMemberState::Stable => MemberState::Stable,
            ConsumerMemberState::UnrevokedPartitions => MemberState::UnrevokedPartitions,
            ConsumerMemberState::UnreleasedPartitions => MemberState::UnreleasedPartitions,
        };
        let revocation_deadline_ms = (state == MemberState::UnrevokedPartitions).then(|| {
            let timeout_ms = match record.rebalance_timeout_ms {
                timeout_ms if timeout_ms > 0 => i64::from(timeout_ms),
                _ => session_timeout_ms,
            };
            now_ms.saturating_add(timeout_ms)
        });
        Self {
            instance_id: record.instance_id,
            rack_id: record.rack_id,
            rebalance_timeout_ms: record.rebalance_timeout_ms,
            subscribed_topic_names: record.subscribed_topic_names.into_iter().collect(),
            server_assignor: record
                .server_assignor
                .as_deref()
                .and_then(Assignor::from_name),
            member_epoch: record.member_epoch,
            previous_member_epoch: record.previous_member_epoch,
            state,
            assigned: from_records(&record.assigned),
            pending_revocation: from_records(&record.pending_revocation),
            static_left: record.static_left,
            session_deadline_ms: now_ms.saturating_add(session_timeout_ms),
            revocation_deadline_ms,
        }
    }

    /// The record of this member, `member_id`, whose target is `target`.
    pub(super) fn record(
        &self,
        member_id: &str,
        target: &TopicPartitionSet,
    ) -> ConsumerMemberRecord {
        ConsumerMemberRecord {
            member_id: member_id.to_owned(),
            instance_id: self.instance_id.clone(),
            rack_id: self.rack_id.clone(),
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            subscribed_topic_names: self.subscribed_topic_names.iter().cloned().collect(),
            server_assignor: self
                .server_assignor
                .map(|assignor| assignor.name().to_owned()),
            member_epoch: self.member_epoch,
            previous_member_epoch: self.previous_member_epoch,
            state: match self.state {
                MemberState::Stable => ConsumerMemberState::Stable,
                MemberState::UnrevokedPartitions => ConsumerMemberState::UnrevokedPartitions,
                MemberState::UnreleasedPartitions => ConsumerMemberState::UnreleasedPartitions,
            },
            assigned: to_records(&self.assigned),
            pending_revocation: to_records(&self.pending_revocation),
            target: to_records(target),
            static_left: self.static_left,
        }
    }

    /// Whether the persisted fields (all but the deadlines) are equal.
    pub(super) fn persisted_eq(&self, other: &Self) -> bool {
        let Self {
            instance_id,
            rack_id,
            rebalance_timeout_ms,
            subscribed_topic_names,
            server_assignor,
            member_epoch,
            previous_member_epoch,
            state,
            assigned,
            pending_revocation,
            static_left,
            session_deadline_ms: _,
            revocation_deadline_ms: _,
        } = self;
        *instance_id == other.instance_id
            && *rack_id == other.rack_id
            && *rebalance_timeout_ms == other.rebalance_timeout_ms
            && *subscribed_topic_names == other.subscribed_topic_names
            && *server_assignor == other.server_assignor
            && *member_epoch == other.member_epoch
            && *previous_member_epoch == other.previous_member_epoch
            && *state == other.state
            && *assigned == other.assigned
            && *pending_revocation == other.pending_revocation
            && *static_left == other.static_left
    }

    /// The response to a successful heartbeat. `before` is what the member
    /// was assigned before it.
    pub(super) fn heartbeat_response(
        &self,
        member_id: &str,
        heartbeat: &Heartbeat,
        before: &TopicPartitionSet,
        heartbeat_interval_ms: i32,
    ) -> ConsumerGroupHeartbeatResponse {
        // The assignment goes out on full requests and when it changed. Also,
        // unlike Kafka, whenever the client's epoch was not the current one or
        // what it reports owning differs from its assignment: it missed a
        // response without noticing (Kafka relies on the client sending a
        // full request then), and repeating the assignment costs little.
        let changed = heartbeat.member_epoch != self.member_epoch || *before != self.assigned;
        let unaware = heartbeat
            .owned
            .as_ref()
            .is_some_and(|owned| *owned != self.assigned);
        let assignment = (heartbeat.is_full() || changed || unaware)
            .then(|| heartbeat_assignment(&self.assigned));
        ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(member_id.to_owned())))
            .with_member_epoch(self.member_epoch)
            .with_heartbeat_interval_ms(heartbeat_interval_ms)
            .with_assignment(assignment)
    }

    /// The member rejoined with epoch 0: it owns nothing any more.
    pub(super) fn reset(&mut self) {
        self.set_epoch(JOIN_EPOCH);
        self.state = MemberState::Stable;
        self.assigned.clear();
        self.pending_revocation.clear();
        self.static_left = false;
        self.revocation_deadline_ms = None;
    }

    pub(super) fn deadline_ms(&self) -> i64 {
        self.revocation_deadline_ms
            .map_or(self.session_deadline_ms, |deadline| {
                deadline.min(self.session_deadline_ms)
            })
    }

    pub(super) fn set_epoch(&mut self, epoch: i32) {
        if epoch != self.member_epoch {
            self.previous_member_epoch = self.member_epoch;
            self.member_epoch = epoch;
        }
    }

    /// One reconciliation step (Kafka's `CurrentAssignmentBuilder`).
    pub(super) fn reconcile(&mut self, step: &Step<'_>) {
        if self.needs_advance(step.target_epoch, step.owned) {
            self.advance(step);
        }
    }

    /// Whether a heartbeat moves this member: not when it is stable at the
    /// target epoch, nor while it still owns partitions it must revoke.
    pub(super) fn needs_advance(
        &self,
        target_epoch: i32,
        owned: Option<&TopicPartitionSet>,
    ) -> bool {
        match self.state {
            MemberState::Stable if self.member_epoch == target_epoch => false,
            MemberState::UnrevokedPartitions if owns_any(owned, &self.pending_revocation) => false,
            _ => true,
        }
    }

    /// Moves towards the target: revoke first if the member still owns
    /// partitions it must lose; otherwise move to the target epoch and take
    /// every target partition no other member holds.
    pub(super) fn advance(&mut self, step: &Step<'_>) {
        let kept = intersection(&self.assigned, step.target);
        let revoked = difference(&self.assigned, step.target);
        if !revoked.is_empty() && owns_any(step.owned, &revoked) {
            self.state = MemberState::UnrevokedPartitions;
            self.assigned = kept;
            self.pending_revocation = revoked;
            let timeout_ms = match self.rebalance_timeout_ms {
                timeout_ms if timeout_ms > 0 => i64::from(timeout_ms),
                _ => step.session_timeout_ms,
            };
            self.revocation_deadline_ms = Some(step.now_ms.saturating_add(timeout_ms));
            return;
        }
        let mut assigned = kept;
        let mut unreleased = false;
        for (&topic_id, partitions) in &difference(step.target, &self.assigned) {
            for &partition in partitions {
                if step.held_by_others.contains(&(topic_id, partition)) {
                    unreleased = true;
                } else {
                    assigned.entry(topic_id).or_default().insert(partition);
                }
            }
        }
        self.assigned = assigned;
        self.pending_revocation.clear();
        self.revocation_deadline_ms = None;
        self.set_epoch(step.target_epoch);
        self.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
    }

    pub(super) fn describe(
        &self,
        member_id: &str,
        target: &TopicPartitionSet,
        names: &TopicNames<'_>,
        version: i16,
    ) -> describe::Member {
        let epoch = if self.static_left {
            STATIC_LEAVE_EPOCH
        } else {
            self.member_epoch
        };
        let member = describe::Member::default()
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_instance_id(self.instance_id.clone().map(StrBytes::from_string))
            .with_rack_id(self.rack_id.clone().map(StrBytes::from_string))
            .with_member_epoch(epoch)
            .with_subscribed_topic_names(
                self.subscribed_topic_names
                    .iter()
                    .map(|name| TopicName(StrBytes::from_string(name.clone())))
                    .collect(),
            )
            .with_assignment(names.assignment(&self.assigned))
            .with_target_assignment(names.assignment(target));
        if version >= 1 {
            member.with_member_type(MEMBER_TYPE_CONSUMER)
        } else {
            member
        }
    }
}
