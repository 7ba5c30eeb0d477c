//! KIP-848 consumer groups: the server side of `group.protocol=consumer`.
//!
//! Clients speak one API, `ConsumerGroupHeartbeat`: they join with member
//! epoch 0, heartbeat with the epoch the coordinator gave them, and leave with
//! epoch -1 (or -2 for a static member that will come back). The coordinator
//! keeps three levels of state per group:
//!
//! - the **group epoch**, bumped whenever the inputs of the assignment change
//!   (membership, subscriptions, the chosen assignor, the partition counts of
//!   subscribed topics);
//! - the **target assignment**, computed by a server-side assignor
//!   (`assignor.rs`) for the group epoch, stamped with the *assignment epoch*;
//! - each member's **current assignment** and member epoch, which converge on
//!   the target one safe step at a time: a member first gives up (revokes) the
//!   partitions it must lose and acknowledges that by listing what it still
//!   owns; only then does it move to the new epoch, and it receives a
//!   partition only once no other member holds it any more. So no partition is
//!   ever owned by two members at once.
//!
//! Everything here is synchronous and pure: the coordinator actor in
//! `group.rs` owns a [`ConsumerGroups`], passes the clock in, and calls
//! [`ConsumerGroups::expire`] at [`ConsumerGroups::next_deadline_ms`].
//!
//! Persistence stays outside too: every call that changes what a group's
//! [`ConsumerGroupRecord`] would hold (group epoch, membership, a member's
//! epoch, assignment, reconciliation state or subscription) marks the
//! group dirty; the actor drains [`ConsumerGroups::take_dirty`], takes a
//! [`ConsumerGroups::snapshot`] of each group still there and hands it to
//! the persister. [`ConsumerGroups::restore`] rebuilds groups from records
//! at startup, with fresh timers.
//!
//! Not supported: `subscribed_topic_regex` (answered with INVALID_REQUEST),
//! rack-aware assignment, client-side assignors, and conversion from or to
//! classic groups.

mod group;
mod member;
mod partitions;
mod request;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use self::group::{Group, describe_missing};
use self::member::Member;
use self::request::{Heartbeat, Rejection};
use crate::group::TopicsView;
use crate::group::assignor::Assignor;
use crate::store::ConsumerGroupRecord;

/// The member epoch a client sends to join or rejoin.
const JOIN_EPOCH: i32 = 0;
/// The member epoch a client sends to leave for good.
const LEAVE_EPOCH: i32 = -1;
/// The member epoch a static member sends to leave and keep its assignment
/// until it rejoins or its session expires.
const STATIC_LEAVE_EPOCH: i32 = -2;
/// `rebalance_timeout_ms` when the client did not send it.
const NOT_PROVIDED: i32 = -1;
/// `authorized_operations` when the client did not ask for it.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;
/// READ (3), DELETE (6) and DESCRIBE (8): all a group supports. Strata has no
/// ACLs, so every client may do all of them.
const AUTHORIZED_OPERATIONS_ALL: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// `member_type` in ConsumerGroupDescribe v1: a consumer-protocol member.
const MEMBER_TYPE_CONSUMER: i8 = 1;

/// Settings of the consumer group coordinator.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerGroupOptions {
    /// A member that does not heartbeat for this long is removed
    /// (`group.consumer.session.timeout.ms`, Kafka default 45 s).
    pub(crate) session_timeout_ms: i64,
    /// How often members should heartbeat
    /// (`group.consumer.heartbeat.interval.ms`, Kafka default 5 s).
    pub(crate) heartbeat_interval_ms: i32,
    /// The most members one group may have (`group.consumer.max.size`).
    pub(crate) max_size: usize,
    /// The assignor used when no member asks for one: `uniform` or `range`.
    /// An unknown name falls back to `uniform`.
    pub(crate) default_assignor: &'static str,
}

impl Default for ConsumerGroupOptions {
    fn default() -> Self {
        Self {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            // Kafka's default is unbounded; we bound every collection.
            max_size: 1_024,
            default_assignor: "uniform",
        }
    }
}

/// All consumer-protocol groups of one coordinator.
#[derive(Debug)]
pub(crate) struct ConsumerGroups {
    options: ConsumerGroupOptions,
    default_assignor: Assignor,
    groups: BTreeMap<String, Group>,
    /// Makes coordinator-generated member ids (v0 joins) unique.
    member_serial: u64,
    /// Groups whose persisted record is out of date (see
    /// [`ConsumerGroups::take_dirty`]).
    dirty: BTreeSet<String>,
}

impl ConsumerGroups {
    /// Creates a coordinator with no groups.
    pub(crate) fn new(options: ConsumerGroupOptions) -> Self {
        let default_assignor =
            Assignor::from_name(options.default_assignor).unwrap_or(Assignor::Uniform);
        Self {
            options,
            default_assignor,
            groups: BTreeMap::new(),
            member_serial: 0,
            dirty: BTreeSet::new(),
        }
    }

    /// Adds the groups of `records` (as loaded from the store), replacing
    /// groups of the same id. Members keep their ids, epochs, assignments
    /// and reconciliation state; their timers restart at `now_ms` (a full
    /// session, or a full rebalance timeout for a member still revoking),
    /// as Kafka's do after a coordinator failover. Unknown assignor names
    /// fall back to the default assignor (group) or no preference
    /// (member). Restored groups are not dirty.
    pub(crate) fn restore(&mut self, records: Vec<ConsumerGroupRecord>, now_ms: i64) {
        for record in records {
            let group_id = record.group_id.clone();
            let group = Group::restore(record, &self.options, self.default_assignor, now_ms);
            self.dirty.remove(&group_id);
            self.groups.insert(group_id, group);
        }
    }

    /// The record to persist for `group_id`, `None` if there is no such
    /// consumer group. Members are sorted by member id; sets are sorted.
    pub(crate) fn snapshot(&self, group_id: &str) -> Option<ConsumerGroupRecord> {
        let group = self.groups.get(group_id)?;
        Some(group.snapshot(group_id))
    }

    /// Takes the ids of the groups changed since the last call, sorted.
    /// A group deleted since ([`ConsumerGroups::delete`]) is left out: its
    /// deletion is the caller's write. Callers skip any id whose
    /// [`ConsumerGroups::snapshot`] is `None`.
    pub(crate) fn take_dirty(&mut self) -> Vec<String> {
        std::mem::take(&mut self.dirty).into_iter().collect()
    }

    /// Whether some group changed since the last
    /// [`ConsumerGroups::take_dirty`].
    pub(crate) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Handles one `ConsumerGroupHeartbeat` (v0 or v1). Errors are returned in
    /// the response's `error_code`.
    pub(crate) fn heartbeat(
        &mut self,
        request: ConsumerGroupHeartbeatRequest,
        version: i16,
        now_ms: i64,
        topics: &TopicsView,
    ) -> ConsumerGroupHeartbeatResponse {
        let outcome =
            Heartbeat::parse(request, version).and_then(|heartbeat| match heartbeat.member_epoch {
                LEAVE_EPOCH | STATIC_LEAVE_EPOCH => self.leave(&heartbeat, now_ms),
                _ => self.join_or_heartbeat(&heartbeat, now_ms, topics),
            });
        outcome.unwrap_or_else(Rejection::into_response)
    }

    /// Handles one `ConsumerGroupDescribe` (v0 or v1). A group that is not a
    /// consumer-protocol group is answered with GROUP_ID_NOT_FOUND; the caller
    /// may answer classic groups itself.
    pub(crate) fn describe(
        &self,
        request: ConsumerGroupDescribeRequest,
        version: i16,
        topics: &TopicsView,
    ) -> ConsumerGroupDescribeResponse {
        let include_operations = request.include_authorized_operations;
        let groups = request
            .group_ids
            .into_iter()
            .map(|group_id| match self.groups.get(group_id.as_str()) {
                Some(group) => group.describe(group_id, version, include_operations, topics),
                None => describe_missing(group_id),
            })
            .collect();
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    }

    /// Removes members whose session expired or who did not revoke within
    /// their rebalance timeout, then recomputes the affected targets.
    pub(crate) fn expire(&mut self, now_ms: i64) {
        for (group_id, group) in &mut self.groups {
            let expired: Vec<String> = group
                .members
                .iter()
                .filter(|(_, member)| member.deadline_ms() <= now_ms)
                .map(|(member_id, _)| member_id.clone())
                .collect();
            if !expired.is_empty() {
                tracing::info!(group_id, ?expired, "consumer group members expired");
                group.remove_members(&expired, self.default_assignor);
                self.dirty.insert(group_id.clone());
            }
        }
    }

    /// The earliest time at which [`ConsumerGroups::expire`] has work to do.
    pub(crate) fn next_deadline_ms(&self) -> Option<i64> {
        self.groups
            .values()
            .flat_map(|group| group.members.values())
            .map(Member::deadline_ms)
            .min()
    }

    /// Whether `group_id` is a consumer-protocol group (possibly empty).
    pub(crate) fn contains(&self, group_id: &str) -> bool {
        self.groups.contains_key(group_id)
    }

    /// Every group with its state: `Empty`, `Assigning`, `Reconciling` or
    /// `Stable`.
    pub(crate) fn list(&self) -> Vec<(String, &'static str)> {
        self.groups
            .iter()
            .map(|(group_id, group)| (group_id.clone(), group.state()))
            .collect()
    }

    /// Checks an OffsetCommit's (member id, member epoch) the way Kafka does
    /// for consumer groups. `None`: not a consumer group. `Some(false)`: an
    /// unknown member or a stale epoch (answer STALE_MEMBER_EPOCH, or
    /// UNKNOWN_MEMBER_ID when [`ConsumerGroups::contains`] holds but the
    /// member is gone). An empty member id with a negative epoch is an admin
    /// commit, allowed only while the group has no members.
    pub(crate) fn member_epoch_valid(
        &self,
        group_id: &str,
        member_id: &str,
        epoch: i32,
    ) -> Option<bool> {
        let group = self.groups.get(group_id)?;
        if member_id.is_empty() && epoch < 0 {
            return Some(group.members.is_empty());
        }
        Some(
            group
                .members
                .get(member_id)
                .is_some_and(|member| member.member_epoch == epoch),
        )
    }

    /// Deletes an empty group. Errors are Kafka codes: NON_EMPTY_GROUP (68)
    /// while it has members, GROUP_ID_NOT_FOUND (69) if there is no such
    /// consumer group.
    pub(crate) fn delete(&mut self, group_id: &str) -> Result<(), i16> {
        match self.groups.get(group_id) {
            None => Err(ResponseError::GroupIdNotFound.code()),
            Some(group) if !group.members.is_empty() => Err(ResponseError::NonEmptyGroup.code()),
            Some(_) => {
                self.groups.remove(group_id);
                self.dirty.remove(group_id);
                Ok(())
            }
        }
    }

    fn join_or_heartbeat(
        &mut self,
        heartbeat: &Heartbeat,
        now_ms: i64,
        topics: &TopicsView,
    ) -> Result<ConsumerGroupHeartbeatResponse, Rejection> {
        let member_id = match heartbeat.member_id.as_str() {
            "" => self.generate_member_id(now_ms),
            member_id => member_id.to_owned(),
        };
        let joining = heartbeat.member_epoch == JOIN_EPOCH;
        if !joining && !self.groups.contains_key(&heartbeat.group_id) {
            return Err(Rejection::unknown_member(&member_id));
        }
        let default_assignor = self.default_assignor;
        let group = self
            .groups
            .entry(heartbeat.group_id.clone())
            .or_insert_with(|| Group::new(default_assignor));
        // What the record holds besides this member changes only with the
        // group epoch (targets and topic metadata are recomputed under a
        // new one) or a static replacement (a new member id: `before` is
        // `None` then).
        let group_epoch = group.group_epoch;
        let before = group.members.get(&member_id).cloned();
        let joined = if joining {
            group.join(&member_id, heartbeat, self.options.max_size)
        } else {
            group.check_member(&member_id, heartbeat).map(|()| false)
        };
        let joined = match joined {
            Ok(joined) => joined,
            Err(rejection) => {
                if group.members.is_empty() && group.group_epoch == 0 {
                    self.groups.remove(&heartbeat.group_id);
                }
                return Err(rejection);
            }
        };
        if joined {
            tracing::info!(
                group_id = heartbeat.group_id,
                member_id,
                "consumer group member joined"
            );
        }
        let response = group.heartbeat(
            &member_id,
            heartbeat,
            joined,
            &self.options,
            default_assignor,
            now_ms,
            topics,
        );
        let unchanged = group.group_epoch == group_epoch
            && match (&before, group.members.get(&member_id)) {
                (Some(before), Some(after)) => before.persisted_eq(after),
                (None, None) => true,
                _ => false,
            };
        if !unchanged {
            self.dirty.insert(heartbeat.group_id.clone());
        }
        response
    }

    fn leave(
        &mut self,
        heartbeat: &Heartbeat,
        now_ms: i64,
    ) -> Result<ConsumerGroupHeartbeatResponse, Rejection> {
        let group = self
            .groups
            .get_mut(&heartbeat.group_id)
            .ok_or_else(|| Rejection::unknown_member(&heartbeat.member_id))?;
        let member_id = group.leaving_member(heartbeat)?;
        if heartbeat.member_epoch == STATIC_LEAVE_EPOCH {
            group.park_static(
                &member_id,
                now_ms.saturating_add(self.options.session_timeout_ms),
            );
        } else {
            group.remove_members(std::slice::from_ref(&member_id), self.default_assignor);
        }
        self.dirty.insert(heartbeat.group_id.clone());
        tracing::info!(
            group_id = heartbeat.group_id,
            member_id,
            epoch = heartbeat.member_epoch,
            "consumer group member left"
        );
        Ok(ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(StrBytes::from_string(member_id)))
            .with_member_epoch(heartbeat.member_epoch))
    }

    /// A member id for a v0 client that joined without one. Unique within
    /// this coordinator: the serial never repeats and the clock separates
    /// restarts.
    fn generate_member_id(&mut self, now_ms: i64) -> String {
        self.member_serial = self.member_serial.wrapping_add(1);
        let now = u64::try_from(now_ms).unwrap_or_default();
        Uuid::from_u64_pair(now, self.member_serial).to_string()
    }
}
