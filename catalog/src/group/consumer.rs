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

use std::collections::{BTreeMap, BTreeSet, HashSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response as describe;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedPartitions;
use kafka_protocol::messages::consumer_group_heartbeat_response as heartbeat;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, GroupId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::TopicsView;
use super::assignor::{AssignmentSpec, Assignor, MemberSpec, TopicPartitionSet};
use crate::store::{
    ConsumerGroupRecord, ConsumerMemberRecord, ConsumerMemberState, SubscribedTopicRecord,
    TopicPartitionsRecord,
};

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

/// Where a member is on its way to its target assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberState {
    /// At the assignment epoch with all of its target partitions.
    Stable,
    /// Must revoke `pending_revocation` before it may advance.
    UnrevokedPartitions,
    /// At the assignment epoch, waiting for other members to release some of
    /// its target partitions.
    UnreleasedPartitions,
}

/// One member of a consumer group, keyed by member id in [`Group::members`].
/// Everything but the two deadlines is persisted (see [`Member::persisted_eq`]).
#[derive(Debug, Clone)]
struct Member {
    instance_id: Option<String>,
    rack_id: Option<String>,
    rebalance_timeout_ms: i32,
    subscribed_topic_names: BTreeSet<String>,
    server_assignor: Option<Assignor>,
    member_epoch: i32,
    previous_member_epoch: i32,
    state: MemberState,
    /// Partitions the member may use now (what the heartbeat returns).
    assigned: TopicPartitionSet,
    /// Partitions the member must give up and still holds.
    pending_revocation: TopicPartitionSet,
    /// A static member that left with epoch -2 and may come back.
    static_left: bool,
    session_deadline_ms: i64,
    /// Set while revoking: a member that takes longer than its rebalance
    /// timeout is removed so that it cannot block the group.
    revocation_deadline_ms: Option<i64>,
}

/// One consumer group.
#[derive(Debug)]
struct Group {
    group_epoch: i32,
    assignment_epoch: i32,
    assignor: Assignor,
    members: BTreeMap<String, Member>,
    /// Static members: instance id → member id.
    instances: BTreeMap<String, String>,
    /// Target assignment by member id, for `assignment_epoch`.
    target: BTreeMap<String, TopicPartitionSet>,
    /// Subscribed topics that exist: name → (topic id, partition count), as
    /// of the last heartbeat. A change bumps the group epoch.
    metadata: BTreeMap<String, (Uuid, u32)>,
}

/// A heartbeat refused with a Kafka error code.
#[derive(Debug)]
struct Rejection {
    error: ResponseError,
    message: String,
}

/// A validated `ConsumerGroupHeartbeatRequest`.
#[derive(Debug)]
struct Heartbeat {
    group_id: String,
    member_id: String,
    member_epoch: i32,
    instance_id: Option<String>,
    rack_id: Option<String>,
    rebalance_timeout_ms: i32,
    subscribed_topic_names: Option<BTreeSet<String>>,
    server_assignor: Option<Assignor>,
    /// What the member owns; `None` when unchanged since the last heartbeat.
    owned: Option<TopicPartitionSet>,
}

/// What one member needs to take its next reconciliation step.
#[derive(Debug)]
struct Step<'a> {
    target: &'a TopicPartitionSet,
    target_epoch: i32,
    held_by_others: &'a HashSet<(Uuid, i32)>,
    owned: Option<&'a TopicPartitionSet>,
    now_ms: i64,
    session_timeout_ms: i64,
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

impl Heartbeat {
    /// Validates a request the way Kafka's coordinator does and copies it into
    /// owned, typed fields.
    fn parse(request: ConsumerGroupHeartbeatRequest, version: i16) -> Result<Self, Rejection> {
        let group_id = request.group_id.as_str().to_owned();
        let member_id = request.member_id.as_str().to_owned();
        let member_epoch = request.member_epoch;
        if group_id.is_empty() {
            return Err(Rejection::invalid("GroupId can't be empty."));
        }
        if member_epoch < STATIC_LEAVE_EPOCH {
            return Err(Rejection::invalid(format!(
                "MemberEpoch {member_epoch} is invalid."
            )));
        }
        // v0 lets the coordinator generate the member id on join; from v1
        // on, the client always generates it.
        if member_id.is_empty() && (version >= 1 || member_epoch != JOIN_EPOCH) {
            return Err(Rejection::invalid("MemberId can't be empty."));
        }
        if request
            .subscribed_topic_regex
            .as_ref()
            .is_some_and(|regex| !regex.is_empty())
        {
            return Err(Rejection::invalid(
                "SubscribedTopicRegex is not supported by this coordinator; subscribe by topic names.",
            ));
        }
        if member_epoch == JOIN_EPOCH {
            check_join(&request)?;
        }
        let instance_id = non_empty(request.instance_id, "InstanceId")?;
        let rack_id = non_empty(request.rack_id, "RackId")?;
        if member_epoch == STATIC_LEAVE_EPOCH && instance_id.is_none() {
            return Err(Rejection::invalid(
                "InstanceId can't be null when leaving with epoch -2.",
            ));
        }
        Ok(Self {
            group_id,
            member_id,
            member_epoch,
            instance_id,
            rack_id,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            subscribed_topic_names: request
                .subscribed_topic_names
                .map(|names| names.iter().map(|name| name.as_str().to_owned()).collect()),
            server_assignor: parse_assignor(request.server_assignor)?,
            owned: request
                .topic_partitions
                .map(|owned| to_topic_partition_set(&owned)),
        })
    }

    /// Whether the client sent every field, as it does on join and after an
    /// error; the assignment is then always returned.
    fn is_full(&self) -> bool {
        self.member_epoch == JOIN_EPOCH
            || (self.rebalance_timeout_ms != NOT_PROVIDED
                && self.subscribed_topic_names.is_some()
                && self.owned.is_some())
    }
}

/// The extra checks on a join (member epoch 0).
fn check_join(request: &ConsumerGroupHeartbeatRequest) -> Result<(), Rejection> {
    if request.rebalance_timeout_ms == NOT_PROVIDED {
        return Err(Rejection::invalid(
            "RebalanceTimeoutMs must be provided in first request.",
        ));
    }
    match &request.topic_partitions {
        None => return Err(Rejection::invalid("TopicPartitions can't be null.")),
        Some(owned) if !owned.is_empty() => {
            return Err(Rejection::invalid(
                "TopicPartitions must be empty when (re-)joining.",
            ));
        }
        Some(_) => {}
    }
    if request.subscribed_topic_names.is_none() {
        return Err(Rejection::invalid(
            "SubscribedTopicNames must be set in first request.",
        ));
    }
    Ok(())
}

fn non_empty(value: Option<StrBytes>, field: &str) -> Result<Option<String>, Rejection> {
    match value {
        Some(value) if value.is_empty() => {
            Err(Rejection::invalid(format!("{field} can't be empty.")))
        }
        value => Ok(value.map(|value| value.as_str().to_owned())),
    }
}

/// `None` and `""` mean "no preference" (or "unchanged").
fn parse_assignor(name: Option<StrBytes>) -> Result<Option<Assignor>, Rejection> {
    let Some(name) = name.filter(|name| !name.is_empty()) else {
        return Ok(None);
    };
    match Assignor::from_name(name.as_str()) {
        Some(assignor) => Ok(Some(assignor)),
        None => Err(Rejection {
            error: ResponseError::UnsupportedAssignor,
            message: format!(
                "ServerAssignor {} is not supported; use uniform or range.",
                name.as_str()
            ),
        }),
    }
}

impl Group {
    fn new(assignor: Assignor) -> Self {
        Self {
            group_epoch: 0,
            assignment_epoch: 0,
            assignor,
            members: BTreeMap::new(),
            instances: BTreeMap::new(),
            target: BTreeMap::new(),
            metadata: BTreeMap::new(),
        }
    }

    /// The group of a persisted record, with every member's timers
    /// starting at `now_ms`.
    fn restore(
        record: ConsumerGroupRecord,
        options: &ConsumerGroupOptions,
        default_assignor: Assignor,
        now_ms: i64,
    ) -> Self {
        let assignor = Assignor::from_name(&record.assignor).unwrap_or_else(|| {
            tracing::warn!(
                group_id = record.group_id,
                assignor = record.assignor,
                "restored consumer group names an unknown assignor; using the default"
            );
            default_assignor
        });
        let mut group = Self::new(assignor);
        group.group_epoch = record.group_epoch;
        group.assignment_epoch = record.assignment_epoch;
        group.metadata = record
            .subscribed_topics
            .into_iter()
            .map(|topic| (topic.name, (topic.topic_id, topic.partition_count)))
            .collect();
        for member in record.members {
            let member_id = member.member_id.clone();
            group
                .target
                .insert(member_id.clone(), from_records(&member.target));
            let member = Member::restore(member, options.session_timeout_ms, now_ms);
            if let Some(instance_id) = &member.instance_id {
                group
                    .instances
                    .insert(instance_id.clone(), member_id.clone());
            }
            group.members.insert(member_id, member);
        }
        group
    }

    /// The record of this group, named `group_id`.
    fn snapshot(&self, group_id: &str) -> ConsumerGroupRecord {
        let empty = TopicPartitionSet::new();
        ConsumerGroupRecord {
            group_id: group_id.to_owned(),
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            assignor: self.assignor.name().to_owned(),
            subscribed_topics: self
                .metadata
                .iter()
                .map(
                    |(name, &(topic_id, partition_count))| SubscribedTopicRecord {
                        name: name.clone(),
                        topic_id,
                        partition_count,
                    },
                )
                .collect(),
            members: self
                .members
                .iter()
                .map(|(member_id, member)| {
                    let target = self.target.get(member_id).unwrap_or(&empty);
                    member.record(member_id, target)
                })
                .collect(),
        }
    }

    /// The rest of a join or heartbeat once the member is known to be valid:
    /// update its subscription, bump the group epoch and recompute the target
    /// if an input changed, take the member's next reconciliation step.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; a context struct would only rename them"
    )]
    fn heartbeat(
        &mut self,
        member_id: &str,
        heartbeat: &Heartbeat,
        joined: bool,
        options: &ConsumerGroupOptions,
        default_assignor: Assignor,
        now_ms: i64,
        topics: &TopicsView,
    ) -> Result<ConsumerGroupHeartbeatResponse, Rejection> {
        let before = self
            .members
            .get(member_id)
            .map(|member| member.assigned.clone())
            .ok_or_else(|| Rejection::unknown_member(member_id))?;
        let subscription_changed = self.update_member(member_id, heartbeat);
        let metadata_changed = self.refresh_metadata(topics);
        if joined || subscription_changed || metadata_changed {
            self.group_epoch += 1;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(default_assignor);
        }
        self.reconcile(
            member_id,
            heartbeat.owned.as_ref(),
            now_ms,
            options.session_timeout_ms,
        );
        let member = self
            .members
            .get_mut(member_id)
            .ok_or_else(|| Rejection::unknown_member(member_id))?;
        member.session_deadline_ms = now_ms.saturating_add(options.session_timeout_ms);
        Ok(member.heartbeat_response(member_id, heartbeat, &before, options.heartbeat_interval_ms))
    }

    /// Admits a member joining with epoch 0. Returns whether the membership
    /// changed (a new member); a rejoin or a static replacement does not.
    fn join(
        &mut self,
        member_id: &str,
        heartbeat: &Heartbeat,
        max_size: usize,
    ) -> Result<bool, Rejection> {
        if let Some(instance_id) = &heartbeat.instance_id {
            return self.join_static(member_id, instance_id, max_size);
        }
        if let Some(member) = self.members.get_mut(member_id) {
            // A fenced member rejoins with its id: it has dropped all of its
            // partitions, so it starts over from an empty assignment.
            member.reset();
            return Ok(false);
        }
        self.admit(member_id, None, max_size)?;
        Ok(true)
    }

    fn join_static(
        &mut self,
        member_id: &str,
        instance_id: &str,
        max_size: usize,
    ) -> Result<bool, Rejection> {
        let Some(existing) = self.instances.get(instance_id).cloned() else {
            if let Some(member) = self.members.get_mut(member_id) {
                member.reset();
                member.instance_id = Some(instance_id.to_owned());
                self.instances
                    .insert(instance_id.to_owned(), member_id.to_owned());
                return Ok(false);
            }
            self.admit(member_id, Some(instance_id), max_size)?;
            return Ok(true);
        };
        if existing == member_id {
            if let Some(member) = self.members.get_mut(member_id) {
                member.reset();
            }
            return Ok(false);
        }
        if !self
            .members
            .get(&existing)
            .is_some_and(|member| member.static_left)
        {
            return Err(Rejection {
                error: ResponseError::UnreleasedInstanceId,
                message: format!(
                    "Static member {existing} with instance id {instance_id} must leave first."
                ),
            });
        }
        self.replace_static(&existing, member_id, instance_id);
        Ok(false)
    }

    /// A static member that left with epoch -2 comes back under a new member
    /// id: the new member takes over its epoch, assignment and target, so no
    /// partition moves.
    fn replace_static(&mut self, old_member_id: &str, new_member_id: &str, instance_id: &str) {
        let Some(mut member) = self.members.remove(old_member_id) else {
            return;
        };
        member.static_left = false;
        self.members.insert(new_member_id.to_owned(), member);
        self.instances
            .insert(instance_id.to_owned(), new_member_id.to_owned());
        if let Some(target) = self.target.remove(old_member_id) {
            self.target.insert(new_member_id.to_owned(), target);
        }
    }

    fn admit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        max_size: usize,
    ) -> Result<(), Rejection> {
        if self.members.len() >= max_size {
            return Err(Rejection {
                error: ResponseError::GroupMaxSizeReached,
                message: format!(
                    "The consumer group has reached its maximum size of {max_size} members."
                ),
            });
        }
        self.members
            .insert(member_id.to_owned(), Member::new(instance_id));
        if let Some(instance_id) = instance_id {
            self.instances
                .insert(instance_id.to_owned(), member_id.to_owned());
        }
        Ok(())
    }

    /// Checks the identity and epoch of a member heartbeating with a positive
    /// epoch.
    fn check_member(&self, member_id: &str, heartbeat: &Heartbeat) -> Result<(), Rejection> {
        let member = self
            .members
            .get(member_id)
            .ok_or_else(|| Rejection::unknown_member(member_id))?;
        if let Some(instance_id) = &heartbeat.instance_id
            && member.instance_id.as_ref() != Some(instance_id)
        {
            return Err(Rejection {
                error: ResponseError::FencedInstanceId,
                message: format!("Member {member_id} does not own instance id {instance_id}."),
            });
        }
        let epoch = heartbeat.member_epoch;
        // The response carrying the member's new epoch may have been lost: the
        // previous epoch is fine if the member owns no more than it may.
        let retried = epoch == member.previous_member_epoch
            && heartbeat
                .owned
                .as_ref()
                .is_some_and(|owned| is_subset(owned, &member.assigned));
        if member.static_left
            || epoch > member.member_epoch
            || (epoch < member.member_epoch && !retried)
        {
            return Err(Rejection {
                error: ResponseError::FencedMemberEpoch,
                message: format!(
                    "Member {member_id} sent epoch {epoch}; the coordinator's is {}. Abandon all partitions and rejoin.",
                    member.member_epoch
                ),
            });
        }
        Ok(())
    }

    /// Resolves the member leaving with epoch -1 or -2.
    fn leaving_member(&self, heartbeat: &Heartbeat) -> Result<String, Rejection> {
        if let Some(instance_id) = &heartbeat.instance_id {
            let member_id = self
                .instances
                .get(instance_id)
                .ok_or_else(|| Rejection::unknown_member(&heartbeat.member_id))?;
            if *member_id != heartbeat.member_id {
                return Err(Rejection {
                    error: ResponseError::FencedInstanceId,
                    message: format!("Instance id {instance_id} belongs to member {member_id}."),
                });
            }
            return Ok(member_id.clone());
        }
        if !self.members.contains_key(&heartbeat.member_id) {
            return Err(Rejection::unknown_member(&heartbeat.member_id));
        }
        Ok(heartbeat.member_id.clone())
    }

    /// A static member left with epoch -2: it keeps its partitions, so no one
    /// else gets them, until it rejoins or its session expires.
    fn park_static(&mut self, member_id: &str, session_deadline_ms: i64) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.static_left = true;
            member.session_deadline_ms = session_deadline_ms;
            member.revocation_deadline_ms = None;
        }
    }

    /// Removes members, frees their partitions and recomputes the target.
    fn remove_members(&mut self, member_ids: &[String], default_assignor: Assignor) {
        let mut removed = false;
        for member_id in member_ids {
            if let Some(member) = self.members.remove(member_id) {
                removed = true;
                self.target.remove(member_id);
                if let Some(instance_id) = member.instance_id {
                    self.instances.remove(&instance_id);
                }
            }
        }
        if !removed {
            return;
        }
        // Forget topics no one subscribes to any more, so that the next
        // heartbeat does not see a metadata change and bump again.
        let subscribed: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|member| &member.subscribed_topic_names)
            .collect();
        self.metadata.retain(|name, _| subscribed.contains(name));
        self.group_epoch += 1;
        self.compute_target(default_assignor);
    }

    /// Applies the subscription fields of a heartbeat; returns whether an
    /// input of the assignment (topics or assignor) changed. Null fields mean
    /// "unchanged".
    fn update_member(&mut self, member_id: &str, heartbeat: &Heartbeat) -> bool {
        let Some(member) = self.members.get_mut(member_id) else {
            return false;
        };
        let mut changed = false;
        if let Some(names) = &heartbeat.subscribed_topic_names
            && *names != member.subscribed_topic_names
        {
            member.subscribed_topic_names = names.clone();
            changed = true;
        }
        if heartbeat.server_assignor.is_some()
            && heartbeat.server_assignor != member.server_assignor
        {
            member.server_assignor = heartbeat.server_assignor;
            changed = true;
        }
        if heartbeat.rack_id.is_some() {
            member.rack_id = heartbeat.rack_id.clone();
        }
        if heartbeat.rebalance_timeout_ms != NOT_PROVIDED {
            member.rebalance_timeout_ms = heartbeat.rebalance_timeout_ms;
        }
        changed
    }

    /// Re-reads the subscribed topics from the catalog's view; returns whether
    /// any was created, deleted or grew.
    fn refresh_metadata(&mut self, topics: &TopicsView) -> bool {
        let metadata: BTreeMap<String, (Uuid, u32)> = self
            .members
            .values()
            .flat_map(|member| &member.subscribed_topic_names)
            .filter_map(|name| topics.by_name.get(name).map(|&topic| (name.clone(), topic)))
            .collect();
        if metadata == self.metadata {
            return false;
        }
        self.metadata = metadata;
        true
    }

    /// Recomputes the target assignment for the current group epoch.
    fn compute_target(&mut self, default_assignor: Assignor) {
        self.assignor = self.preferred_assignor().unwrap_or(default_assignor);
        let members = self
            .members
            .iter()
            .map(|(member_id, member)| {
                let spec = MemberSpec {
                    subscribed_topic_ids: member
                        .subscribed_topic_names
                        .iter()
                        .filter_map(|name| self.metadata.get(name).map(|&(topic_id, _)| topic_id))
                        .collect(),
                    current: self.target.get(member_id).cloned().unwrap_or_default(),
                };
                (member_id.clone(), spec)
            })
            .collect();
        let partition_counts = self.metadata.values().copied().collect();
        self.target = self.assignor.assign(&AssignmentSpec {
            members,
            partition_counts,
        });
        self.assignment_epoch = self.group_epoch;
        tracing::debug!(
            group_epoch = self.group_epoch,
            assignor = self.assignor.name(),
            "consumer group target assignment computed"
        );
    }

    /// The assignor most members ask for (ties: the first in
    /// [`Assignor::ALL`]), if any member asks.
    fn preferred_assignor(&self) -> Option<Assignor> {
        let mut votes: BTreeMap<Assignor, usize> = BTreeMap::new();
        for assignor in self
            .members
            .values()
            .filter_map(|member| member.server_assignor)
        {
            *votes.entry(assignor).or_default() += 1;
        }
        votes
            .into_iter()
            .max_by_key(|&(assignor, count)| (count, std::cmp::Reverse(assignor)))
            .map(|(assignor, _)| assignor)
    }

    fn reconcile(
        &mut self,
        member_id: &str,
        owned: Option<&TopicPartitionSet>,
        now_ms: i64,
        session_timeout_ms: i64,
    ) {
        // The set of partitions other members hold costs time in the size
        // of the group; build it only for a member that actually moves
        // (steady-state heartbeats do not).
        let moves = self
            .members
            .get(member_id)
            .is_some_and(|member| member.needs_advance(self.assignment_epoch, owned));
        if !moves {
            return;
        }
        let held_by_others = self.held_by_others(member_id);
        let empty = TopicPartitionSet::new();
        let step = Step {
            target: self.target.get(member_id).unwrap_or(&empty),
            target_epoch: self.assignment_epoch,
            held_by_others: &held_by_others,
            owned,
            now_ms,
            session_timeout_ms,
        };
        if let Some(member) = self.members.get_mut(member_id) {
            member.reconcile(&step);
        }
    }

    /// Partitions other members may still use: assigned or not yet revoked.
    fn held_by_others(&self, member_id: &str) -> HashSet<(Uuid, i32)> {
        self.members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .flat_map(|(_, member)| [&member.assigned, &member.pending_revocation])
            .flat_map(|set| {
                set.iter().flat_map(|(&topic_id, partitions)| {
                    partitions.iter().map(move |&p| (topic_id, p))
                })
            })
            .collect()
    }

    fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self.members.values().any(|member| {
            member.member_epoch != self.assignment_epoch || member.state != MemberState::Stable
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn describe(
        &self,
        group_id: GroupId,
        version: i16,
        include_operations: bool,
        topics: &TopicsView,
    ) -> describe::DescribedGroup {
        let members = self
            .members
            .iter()
            .map(|(member_id, member)| {
                let target = self.target.get(member_id).cloned().unwrap_or_default();
                let names = TopicNames {
                    topics,
                    metadata: &self.metadata,
                };
                member.describe(member_id, &target, &names, version)
            })
            .collect();
        let operations = if include_operations {
            AUTHORIZED_OPERATIONS_ALL
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        };
        describe::DescribedGroup::default()
            .with_group_id(group_id)
            .with_group_state(StrBytes::from_static_str(self.state()))
            .with_group_epoch(self.group_epoch)
            .with_assignment_epoch(self.assignment_epoch)
            .with_assignor_name(StrBytes::from_static_str(self.assignor.name()))
            .with_members(members)
            .with_authorized_operations(operations)
    }
}

impl Member {
    fn new(instance_id: Option<&str>) -> Self {
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
    fn restore(record: ConsumerMemberRecord, session_timeout_ms: i64, now_ms: i64) -> Self {
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
    fn record(&self, member_id: &str, target: &TopicPartitionSet) -> ConsumerMemberRecord {
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
    fn persisted_eq(&self, other: &Self) -> bool {
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
    fn heartbeat_response(
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
    fn reset(&mut self) {
        self.set_epoch(JOIN_EPOCH);
        self.state = MemberState::Stable;
        self.assigned.clear();
        self.pending_revocation.clear();
        self.static_left = false;
        self.revocation_deadline_ms = None;
    }

    fn deadline_ms(&self) -> i64 {
        self.revocation_deadline_ms
            .map_or(self.session_deadline_ms, |deadline| {
                deadline.min(self.session_deadline_ms)
            })
    }

    fn set_epoch(&mut self, epoch: i32) {
        if epoch != self.member_epoch {
            self.previous_member_epoch = self.member_epoch;
            self.member_epoch = epoch;
        }
    }

    /// One reconciliation step (Kafka's `CurrentAssignmentBuilder`).
    fn reconcile(&mut self, step: &Step<'_>) {
        if self.needs_advance(step.target_epoch, step.owned) {
            self.advance(step);
        }
    }

    /// Whether a heartbeat moves this member: not when it is stable at the
    /// target epoch, nor while it still owns partitions it must revoke.
    fn needs_advance(&self, target_epoch: i32, owned: Option<&TopicPartitionSet>) -> bool {
        match self.state {
            MemberState::Stable if self.member_epoch == target_epoch => false,
            MemberState::UnrevokedPartitions if owns_any(owned, &self.pending_revocation) => false,
            _ => true,
        }
    }

    /// Moves towards the target: revoke first if the member still owns
    /// partitions it must lose; otherwise move to the target epoch and take
    /// every target partition no other member holds.
    fn advance(&mut self, step: &Step<'_>) {
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

    fn describe(
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

/// Topic id → name for describe output: the catalog's view first, then the
/// names the group last saw (for a topic deleted since).
#[derive(Debug)]
struct TopicNames<'a> {
    topics: &'a TopicsView,
    metadata: &'a BTreeMap<String, (Uuid, u32)>,
}

impl TopicNames<'_> {
    fn name(&self, topic_id: Uuid) -> String {
        if let Some((name, _)) = self.topics.by_id.get(&topic_id) {
            return name.clone();
        }
        self.metadata
            .iter()
            .find(|(_, (id, _))| *id == topic_id)
            .map(|(name, _)| name.clone())
            .unwrap_or_default()
    }

    fn assignment(&self, partitions: &TopicPartitionSet) -> describe::Assignment {
        let topic_partitions = partitions
            .iter()
            .map(|(&topic_id, partitions)| {
                describe::TopicPartitions::default()
                    .with_topic_id(topic_id)
                    .with_topic_name(TopicName(StrBytes::from_string(self.name(topic_id))))
                    .with_partitions(partitions.iter().copied().collect())
            })
            .collect();
        describe::Assignment::default().with_topic_partitions(topic_partitions)
    }
}

impl Rejection {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            error: ResponseError::InvalidRequest,
            message: message.into(),
        }
    }

    fn unknown_member(member_id: &str) -> Self {
        Self {
            error: ResponseError::UnknownMemberId,
            message: format!(
                "Member {member_id} is not a member of the group; rejoin with epoch 0."
            ),
        }
    }

    fn into_response(self) -> ConsumerGroupHeartbeatResponse {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(self.error.code())
            .with_error_message(Some(StrBytes::from_string(self.message)))
    }
}

fn describe_missing(group_id: GroupId) -> describe::DescribedGroup {
    let message = format!("Group {} is not a consumer group.", group_id.as_str());
    describe::DescribedGroup::default()
        .with_group_id(group_id)
        .with_error_code(ResponseError::GroupIdNotFound.code())
        .with_error_message(Some(StrBytes::from_string(message)))
        .with_group_state(StrBytes::from_static_str("Dead"))
}

fn heartbeat_assignment(partitions: &TopicPartitionSet) -> heartbeat::Assignment {
    let topic_partitions = partitions
        .iter()
        .map(|(&topic_id, partitions)| {
            heartbeat::TopicPartitions::default()
                .with_topic_id(topic_id)
                .with_partitions(partitions.iter().copied().collect())
        })
        .collect();
    heartbeat::Assignment::default().with_topic_partitions(topic_partitions)
}

fn to_topic_partition_set(owned: &[OwnedPartitions]) -> TopicPartitionSet {
    let mut set = TopicPartitionSet::new();
    for topic in owned {
        set.entry(topic.topic_id)
            .or_default()
            .extend(topic.partitions.iter().copied());
    }
    set.retain(|_, partitions| !partitions.is_empty());
    set
}

/// A partition set as persisted: topics by id, partitions ascending,
/// empty topics left out.
fn to_records(partitions: &TopicPartitionSet) -> Vec<TopicPartitionsRecord> {
    partitions
        .iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .map(|(&topic_id, partitions)| TopicPartitionsRecord {
            topic_id,
            partitions: partitions.iter().copied().collect(),
        })
        .collect()
}

/// The partition set of persisted records (topics listed twice merge).
fn from_records(records: &[TopicPartitionsRecord]) -> TopicPartitionSet {
    let mut set = TopicPartitionSet::new();
    for record in records {
        set.entry(record.topic_id)
            .or_default()
            .extend(record.partitions.iter().copied());
    }
    set.retain(|_, partitions| !partitions.is_empty());
    set
}

/// Whether the member still owns any of `partitions`. A member that did not
/// say what it owns is assumed to own everything it was given.
fn owns_any(owned: Option<&TopicPartitionSet>, partitions: &TopicPartitionSet) -> bool {
    let Some(owned) = owned else {
        return true;
    };
    partitions.iter().any(|(topic_id, partitions)| {
        owned
            .get(topic_id)
            .is_some_and(|owned| !owned.is_disjoint(partitions))
    })
}

fn is_subset(subset: &TopicPartitionSet, superset: &TopicPartitionSet) -> bool {
    subset.iter().all(|(topic_id, partitions)| {
        partitions.is_empty()
            || superset
                .get(topic_id)
                .is_some_and(|superset| partitions.is_subset(superset))
    })
}

fn intersection(left: &TopicPartitionSet, right: &TopicPartitionSet) -> TopicPartitionSet {
    left.iter()
        .filter_map(|(topic_id, partitions)| {
            let common: BTreeSet<i32> = partitions
                .intersection(right.get(topic_id)?)
                .copied()
                .collect();
            (!common.is_empty()).then_some((*topic_id, common))
        })
        .collect()
}

fn difference(left: &TopicPartitionSet, right: &TopicPartitionSet) -> TopicPartitionSet {
    left.iter()
        .filter_map(|(topic_id, partitions)| {
            let rest: BTreeSet<i32> = match right.get(topic_id) {
                Some(right) => partitions.difference(right).copied().collect(),
                None => partitions.clone(),
            };
            (!rest.is_empty()).then_some((*topic_id, rest))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const GROUP: &str = "orders-app";
    const V1: i16 = 1;

    fn topic_id(index: usize) -> Uuid {
        Uuid::from_u128(0x5157_0000 + index as u128)
    }

    /// A fake catalog view: topic `i` of `topics` gets id `topic_id(i)`.
    fn view(topics: &[(&str, u32)]) -> TopicsView {
        let mut by_name = HashMap::new();
        let mut by_id = HashMap::new();
        for (index, &(name, partitions)) in topics.iter().enumerate() {
            by_name.insert(name.to_owned(), (topic_id(index), partitions));
            by_id.insert(topic_id(index), (name.to_owned(), partitions));
        }
        TopicsView { by_name, by_id }
    }

    fn coordinator() -> ConsumerGroups {
        ConsumerGroups::new(ConsumerGroupOptions::default())
    }

    fn request(member_id: &str, epoch: i32) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_member_epoch(epoch)
    }

    fn join_request(member_id: &str, topics: &[&str]) -> ConsumerGroupHeartbeatRequest {
        let names = topics
            .iter()
            .map(|name| TopicName(StrBytes::from_string((*name).to_owned())))
            .collect();
        request(member_id, JOIN_EPOCH)
            .with_rebalance_timeout_ms(300_000)
            .with_subscribed_topic_names(Some(names))
            .with_topic_partitions(Some(Vec::new()))
    }

    fn owned_list(owned: &TopicPartitionSet) -> Vec<OwnedPartitions> {
        owned
            .iter()
            .map(|(&topic_id, partitions)| {
                OwnedPartitions::default()
                    .with_topic_id(topic_id)
                    .with_partitions(partitions.iter().copied().collect())
            })
            .collect()
    }

    fn response_set(response: &ConsumerGroupHeartbeatResponse) -> Option<TopicPartitionSet> {
        let assignment = response.assignment.as_ref()?;
        let mut set = TopicPartitionSet::new();
        for topic in &assignment.topic_partitions {
            set.entry(topic.topic_id)
                .or_default()
                .extend(topic.partitions.iter().copied());
        }
        Some(set)
    }

    fn count(set: &TopicPartitionSet) -> usize {
        set.values().map(BTreeSet::len).sum()
    }

    /// A client as librdkafka behaves: it starts using what the last
    /// assignment gave it at once, finishes revoking the rest later (or at
    /// once), and drops everything when fenced.
    #[derive(Debug)]
    struct Client {
        member_id: String,
        instance_id: Option<String>,
        topics: Vec<&'static str>,
        epoch: i32,
        /// The partitions of the last assignment.
        owned: TopicPartitionSet,
        /// Partitions taken away but still in use until
        /// [`Client::finish_revocation`] (only when `revoke_lazily`).
        revoking: TopicPartitionSet,
        revoke_lazily: bool,
        /// After a lost response the client sends a full request.
        full_next: bool,
    }

    impl Client {
        fn new(member_id: &str, topics: &[&'static str]) -> Self {
            Self {
                member_id: member_id.to_owned(),
                instance_id: None,
                topics: topics.to_vec(),
                epoch: JOIN_EPOCH,
                owned: TopicPartitionSet::new(),
                revoking: TopicPartitionSet::new(),
                revoke_lazily: false,
                full_next: false,
            }
        }

        /// Everything the client uses (and reports as owned).
        fn in_use(&self) -> TopicPartitionSet {
            let mut in_use = self.owned.clone();
            for (&topic_id, partitions) in &self.revoking {
                in_use.entry(topic_id).or_default().extend(partitions);
            }
            in_use
        }

        fn finish_revocation(&mut self) {
            self.revoking.clear();
        }

        /// Joins (epoch 0) or heartbeats, reporting what it owns when
        /// `report_owned`, and applies the response.
        fn beat(
            &mut self,
            groups: &mut ConsumerGroups,
            now_ms: i64,
            topics: &TopicsView,
            report_owned: bool,
        ) -> ConsumerGroupHeartbeatResponse {
            let mut request = if self.epoch == JOIN_EPOCH {
                join_request(&self.member_id, &self.topics)
            } else if std::mem::take(&mut self.full_next) {
                join_request(&self.member_id, &self.topics)
                    .with_member_epoch(self.epoch)
                    .with_topic_partitions(Some(owned_list(&self.in_use())))
            } else {
                request(&self.member_id, self.epoch)
                    .with_topic_partitions(report_owned.then(|| owned_list(&self.in_use())))
            };
            request.instance_id = self.instance_id.clone().map(StrBytes::from_string);
            let response = groups.heartbeat(request, V1, now_ms, topics);
            self.apply(&response);
            response
        }

        fn apply(&mut self, response: &ConsumerGroupHeartbeatResponse) {
            if response.error_code != 0 {
                self.owned.clear();
                self.revoking.clear();
                self.epoch = JOIN_EPOCH;
                return;
            }
            self.epoch = response.member_epoch;
            if let Some(assignment) = response_set(response) {
                if self.revoke_lazily {
                    let revoked = difference(&self.in_use(), &assignment);
                    self.revoking = revoked;
                }
                self.owned = assignment;
            }
        }
    }

    fn group(groups: &ConsumerGroups) -> &Group {
        &groups.groups[GROUP]
    }

    /// The safety invariant: no partition is held (assigned or not yet
    /// revoked) by two members on the server, nor used by two live clients.
    fn assert_disjoint(groups: &ConsumerGroups, clients: &[Client]) {
        let mut held = HashSet::new();
        for (member_id, member) in &group(groups).members {
            for set in [&member.assigned, &member.pending_revocation] {
                for (&topic_id, partitions) in set {
                    for &partition in partitions {
                        assert!(
                            held.insert((topic_id, partition)),
                            "{topic_id}:{partition} held twice ({member_id})"
                        );
                    }
                }
            }
        }
        let mut used = HashSet::new();
        for client in clients
            .iter()
            .filter(|client| group(groups).members.contains_key(&client.member_id))
        {
            for (&topic_id, partitions) in &client.in_use() {
                for &partition in partitions {
                    assert!(
                        used.insert((topic_id, partition)),
                        "{topic_id}:{partition} used by two clients"
                    );
                }
            }
        }
    }

    /// Heartbeats every client (reporting what it owns) until the group is
    /// stable.
    fn settle(
        groups: &mut ConsumerGroups,
        clients: &mut [Client],
        now_ms: i64,
        topics: &TopicsView,
    ) {
        for _ in 0..10 {
            for index in 0..clients.len() {
                clients[index].finish_revocation();
                clients[index].beat(groups, now_ms, topics, true);
                assert_disjoint(groups, clients);
            }
            let joined = clients.iter().all(|client| {
                group(groups)
                    .members
                    .get(&client.member_id)
                    .is_some_and(|member| member.member_epoch == client.epoch)
            });
            if joined && groups.list() == [(GROUP.to_owned(), "Stable")] {
                return;
            }
        }
        panic!("group did not settle: {:#?}", group(groups));
    }

    #[test]
    fn single_member_gets_everything() {
        let topics = view(&[("orders", 4), ("payments", 2)]);
        let mut groups = coordinator();
        let mut client = Client::new("a", &["orders", "payments"]);
        let response = client.beat(&mut groups, 0, &topics, true);
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        assert_eq!(response.member_epoch, 1);
        assert_eq!(response.member_id.as_ref().map(StrBytes::as_str), Some("a"));
        assert_eq!(response.heartbeat_interval_ms, 5_000);
        assert_eq!(count(&client.owned), 6);
        assert_eq!(groups.list(), [(GROUP.to_owned(), "Stable")]);

        // Nothing changed: the next heartbeat carries no assignment.
        let response = client.beat(&mut groups, 1_000, &topics, false);
        assert_eq!(response.assignment, None);
        assert_eq!(response.member_epoch, 1);
    }

    #[test]
    fn two_members_split_evenly_with_uniform() {
        let topics = view(&[("orders", 6), ("payments", 3)]);
        let mut groups = coordinator();
        let mut clients = vec![
            Client::new("a", &["orders", "payments"]),
            Client::new("b", &["orders", "payments"]),
        ];
        settle(&mut groups, &mut clients, 0, &topics);
        let loads: Vec<usize> = clients.iter().map(|client| count(&client.owned)).collect();
        assert!(loads == [5, 4] || loads == [4, 5], "{loads:?}");
        assert_eq!(group(&groups).assignor, Assignor::Uniform);
    }

    #[test]
    fn two_members_split_ranges_with_range() {
        let topics = view(&[("orders", 5)]);
        let mut groups = coordinator();
        let mut clients = vec![Client::new("a", &["orders"]), Client::new("b", &["orders"])];
        for client in &mut clients {
            let request = join_request(&client.member_id, &["orders"])
                .with_server_assignor(Some(StrBytes::from_static_str("range")));
            let response = groups.heartbeat(request, V1, 0, &topics);
            client.apply(&response);
        }
        settle(&mut groups, &mut clients, 0, &topics);
        assert_eq!(group(&groups).assignor, Assignor::Range);
        assert_eq!(clients[0].owned[&topic_id(0)], BTreeSet::from([0, 1, 2]));
        assert_eq!(clients[1].owned[&topic_id(0)], BTreeSet::from([3, 4]));
    }

    /// Goal: a joining member gets partitions only after their owners revoked
    /// them. Method: step the three clients by hand, withholding and then
    /// sending the owners' acknowledgements.
    #[test]
    fn third_member_waits_for_revocation() {
        let topics = view(&[("orders", 6)]);
        let mut groups = coordinator();
        let mut clients = vec![Client::new("a", &["orders"]), Client::new("b", &["orders"])];
        settle(&mut groups, &mut clients, 0, &topics);
        clients.push(Client::new("c", &["orders"]));

        let response = clients[2].beat(&mut groups, 10, &topics, true);
        assert_eq!(response.member_epoch, 3);
        assert_eq!(
            response_set(&response),
            Some(TopicPartitionSet::new()),
            "everything is still owned"
        );
        assert_eq!(groups.list(), [(GROUP.to_owned(), "Reconciling")]);

        // `a` learns what to keep but does not acknowledge yet: it stays at
        // its epoch and `c` still gets nothing.
        let response = clients[0].beat(&mut groups, 20, &topics, false);
        assert_eq!(response.member_epoch, 2);
        assert_eq!(
            clients[0].owned.values().map(BTreeSet::len).sum::<usize>(),
            2
        );
        assert_disjoint(&groups, &clients);
        clients[2].beat(&mut groups, 30, &topics, true);
        assert!(clients[2].owned.is_empty());

        // `a` acknowledges: it moves to epoch 3 and `c` gets a's partition.
        let response = clients[0].beat(&mut groups, 40, &topics, true);
        assert_eq!(response.member_epoch, 3);
        clients[2].beat(&mut groups, 50, &topics, true);
        assert_eq!(count(&clients[2].owned), 1);
        assert_disjoint(&groups, &clients);

        settle(&mut groups, &mut clients, 60, &topics);
        assert!(clients.iter().all(|client| count(&client.owned) == 2));
    }

    #[test]
    fn leaving_member_partitions_are_reassigned() {
        let topics = view(&[("orders", 6)]);
        let mut groups = coordinator();
        let mut clients = vec![Client::new("a", &["orders"]), Client::new("b", &["orders"])];
        settle(&mut groups, &mut clients, 0, &topics);

        let response = groups.heartbeat(request("b", LEAVE_EPOCH), V1, 10, &topics);
        assert_eq!(
            (response.error_code, response.member_epoch),
            (0, LEAVE_EPOCH)
        );
        clients.pop();
        let response = clients[0].beat(&mut groups, 20, &topics, true);
        assert_eq!(response.member_epoch, 3);
        assert_eq!(count(&clients[0].owned), 6);

        // Leaving twice: the member is gone.
        let response = groups.heartbeat(request("b", LEAVE_EPOCH), V1, 30, &topics);
        assert_eq!(response.error_code, ResponseError::UnknownMemberId.code());
    }

    #[test]
    fn expired_sessions_free_their_partitions() {
        let topics = view(&[("orders", 4)]);
        let mut groups = coordinator();
        let mut clients = vec![Client::new("a", &["orders"]), Client::new("b", &["orders"])];
        settle(&mut groups, &mut clients, 0, &topics);
        assert_eq!(groups.next_deadline_ms(), Some(45_000));

        clients[0].beat(&mut groups, 40_000, &topics, true);
        assert_eq!(
            groups.next_deadline_ms(),
            Some(45_000),
            "b's deadline is the earliest"
        );
        groups.expire(44_999);
        assert_eq!(group(&groups).members.len(), 2);
        groups.expire(45_000);
        assert_eq!(group(&groups).members.len(), 1);
        assert_eq!(groups.next_deadline_ms(), Some(85_000));

        clients[0].beat(&mut groups, 41_000, &topics, true);
        assert_eq!(count(&clients[0].owned), 4);
        let response = clients[1].beat(&mut groups, 41_000, &topics, true);
        assert_eq!(response.error_code, ResponseError::UnknownMemberId.code());
        assert!(
            clients[1].owned.is_empty(),
            "a fenced client drops its partitions"
        );
    }

    #[test]
    fn a_member_that_never_revokes_is_removed_after_its_rebalance_timeout() {
        let topics = view(&[("orders", 4)]);
        let mut groups = coordinator();
        let mut clients = vec![Client::new("a", &["orders"])];
        settle(&mut groups, &mut clients, 0, &topics);
        clients.push(Client::new("b", &["orders"]));
        clients[1].beat(&mut groups, 1_000, &topics, true);
        for now_ms in [2_000, 20_000, 40_000] {
            clients[0].beat(&mut groups, now_ms, &topics, false);
        }
        // The revocation started at 2 s with a 300 s rebalance timeout, but
        // heartbeats keep the session alive for 45 s past the last one.
        assert_eq!(
            groups.next_deadline_ms(),
            Some(46_000),
            "b's session comes first"
        );
        clients[1].beat(&mut groups, 300_000, &topics, true);
        clients[0].session_keepalive(&mut groups, 301_000, &topics);
        groups.expire(302_000);
        assert!(!group(&groups).members.contains_key("a"));
        clients[1].beat(&mut groups, 302_000, &topics, true);
        assert_eq!(count(&clients[1].owned), 4);
    }

    impl Client {
        /// A heartbeat that keeps the session alive without acknowledging.
        fn session_keepalive(
            &mut self,
            groups: &mut ConsumerGroups,
            now_ms: i64,
            topics: &TopicsView,
        ) {
            self.beat(groups, now_ms, topics, false);
        }
    }

    #[test]
    fn stale_or_future_epochs_are_fenced() {
        let topics = view(&[("orders", 4)]);
        let mut groups = coordinator();
        let mut clients = vec![Client::new("a", &["orders"])];
        settle(&mut groups, &mut clients, 0, &topics);

        let response = groups.heartbeat(request("a", 7), V1, 10, &topics);
        assert_eq!(response.error_code, ResponseError::FencedMemberEpoch.code());
        let response = groups.heartbeat(request("ghost", 1), V1, 10, &topics);
        assert_eq!(response.error_code, ResponseError::UnknownMemberId.code());
        let mut other = request("a", 1);
        other.group_id = GroupId(StrBytes::from_static_str("other"));
        let response = groups.heartbeat(other, V1, 10, &topics);
        assert_eq!(response.error_code, ResponseError::UnknownMemberId.code());

        // `b` joins, `a` moves to epoch 2 (losing 2 partitions).
        clients.push(Client::new("b", &["orders"]));
        settle(&mut groups, &mut clients, 20, &topics);
        assert_eq!(clients[0].epoch, 2);
        // The previous epoch is accepted when the member owns a subset of its
        // assignment (the response with epoch 2 was lost)...
        let owned = owned_list(&clients[0].owned);
        let response = groups.heartbeat(
            request("a", 1).with_topic_partitions(Some(owned)),
            V1,
            30,
            &topics,
        );
        assert_eq!((response.error_code, response.member_epoch), (0, 2));
        // ...but not when it claims partitions it no longer has.
        let everything = BTreeMap::from([(topic_id(0), BTreeSet::from([0, 1, 2, 3]))]);
        let owned = owned_list(&everything);
        let response = groups.heartbeat(
            request("a", 1).with_topic_partitions(Some(owned)),
            V1,
            40,
            &topics,
        );
        assert_eq!(response.error_code, ResponseError::FencedMemberEpoch.code());

        // A fenced member rejoins with epoch 0 and the same id.
        clients[0].epoch = JOIN_EPOCH;
        clients[0].owned.clear();
        let response = clients[0].beat(&mut groups, 50, &topics, true);
        assert_eq!((response.error_code, response.member_epoch), (0, 2));
        assert_eq!(count(&clients[0].owned), 2);
        assert_disjoint(&groups, &clients);
    }

    #[test]
    fn static_member_rejoins_with_its_assignment() {
        let topics = view(&[("orders", 6)]);
        let mut groups = coordinator();
        let mut clients = vec![
            Client::new("a1", &["orders"]),
            Client::new("b", &["orders"]),
        ];
        clients[0].instance_id = Some("host-a".to_owned());
        settle(&mut groups, &mut clients, 0, &topics);
        let before = clients[0].owned.clone();
        let epoch = clients[0].epoch;

        // Another process may not take the instance id while a1 is active.
        let mut impostor = Client::new("a2", &["orders"]);
        impostor.instance_id = Some("host-a".to_owned());
        let response = impostor.beat(&mut groups, 10, &topics, true);
        assert_eq!(
            response.error_code,
            ResponseError::UnreleasedInstanceId.code()
        );

        let leave = request("a1", STATIC_LEAVE_EPOCH)
            .with_instance_id(Some(StrBytes::from_static_str("host-a")));
        let response = groups.heartbeat(leave, V1, 20, &topics);
        assert_eq!(
            (response.error_code, response.member_epoch),
            (0, STATIC_LEAVE_EPOCH)
        );
        // b does not get a1's partitions while a1 is away.
        clients[1].beat(&mut groups, 30, &topics, true);
        assert_eq!(count(&clients[1].owned), 3);

        let response = impostor.beat(&mut groups, 40, &topics, true);
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        assert_eq!((impostor.epoch, &impostor.owned), (epoch, &before));
        assert!(!group(&groups).members.contains_key("a1"));
        assert_eq!(groups.list(), [(GROUP.to_owned(), "Stable")]);
    }

    #[test]
    fn new_partitions_are_assigned() {
        let mut groups = coordinator();
        let mut clients = vec![Client::new("a", &["orders"]), Client::new("b", &["orders"])];
        settle(&mut groups, &mut clients, 0, &view(&[("orders", 4)]));
        let group_epoch = group(&groups).group_epoch;

        let grown = view(&[("orders", 8)]);
        settle(&mut groups, &mut clients, 10, &grown);
        assert_eq!(group(&groups).group_epoch, group_epoch + 1);
        assert!(clients.iter().all(|client| count(&client.owned) == 4));

        // A topic created after the subscription is picked up too.
        clients.push(Client::new("c", &["audit"]));
        settle(&mut groups, &mut clients, 20, &grown);
        assert!(clients[2].owned.is_empty());
        settle(
            &mut groups,
            &mut clients,
            30,
            &view(&[("orders", 8), ("audit", 2)]),
        );
        assert_eq!(count(&clients[2].owned), 2);
    }

    #[test]
    fn describe_reports_members_and_assignments() {
        let topics = view(&[("orders", 3)]);
        let mut groups = coordinator();
        let mut clients = vec![Client::new("a", &["orders"])];
        clients[0].instance_id = Some("host-a".to_owned());
        settle(&mut groups, &mut clients, 0, &topics);

        let request = ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![
                GroupId(StrBytes::from_static_str(GROUP)),
                GroupId(StrBytes::from_static_str("nope")),
            ])
            .with_include_authorized_operations(true);
        let response = groups.describe(request.clone(), 1, &topics);
        let [found, missing] = &response.groups[..] else {
            panic!("two groups expected: {response:?}");
        };
        assert_eq!(found.error_code, 0);
        assert_eq!(found.group_state.as_str(), "Stable");
        assert_eq!((found.group_epoch, found.assignment_epoch), (1, 1));
        assert_eq!(found.assignor_name.as_str(), "uniform");
        assert_eq!(found.authorized_operations, AUTHORIZED_OPERATIONS_ALL);
        let member = &found.members[0];
        assert_eq!(member.member_id.as_str(), "a");
        assert_eq!(
            member.instance_id.as_ref().map(StrBytes::as_str),
            Some("host-a")
        );
        assert_eq!(member.member_epoch, 1);
        assert_eq!(member.member_type, MEMBER_TYPE_CONSUMER);
        assert_eq!(member.subscribed_topic_names[0].as_str(), "orders");
        let assigned = &member.assignment.topic_partitions[0];
        assert_eq!(
            (assigned.topic_id, assigned.topic_name.as_str()),
            (topic_id(0), "orders")
        );
        assert_eq!(assigned.partitions, [0, 1, 2]);
        assert_eq!(member.target_assignment, member.assignment);
        assert_eq!(missing.error_code, ResponseError::GroupIdNotFound.code());
        assert_eq!(missing.group_state.as_str(), "Dead");

        let response = groups.describe(
            request.with_include_authorized_operations(false),
            0,
            &topics,
        );
        assert_eq!(
            response.groups[0].authorized_operations,
            AUTHORIZED_OPERATIONS_OMITTED
        );
        assert_eq!(
            response.groups[0].members[0].member_type, -1,
            "v0 has no member type"
        );
    }

    #[test]
    fn invalid_requests_are_rejected() {
        let topics = view(&[("orders", 1)]);
        let mut groups = coordinator();
        let cases = [
            (join_request("", &["orders"]), ResponseError::InvalidRequest),
            (request("a", -3), ResponseError::InvalidRequest),
            (
                request("a", STATIC_LEAVE_EPOCH),
                ResponseError::InvalidRequest,
            ),
            (
                join_request("a", &["orders"]).with_topic_partitions(None),
                ResponseError::InvalidRequest,
            ),
            (
                join_request("a", &["orders"]).with_rebalance_timeout_ms(-1),
                ResponseError::InvalidRequest,
            ),
            (
                join_request("a", &["orders"]).with_subscribed_topic_names(None),
                ResponseError::InvalidRequest,
            ),
            (
                join_request("a", &[])
                    .with_subscribed_topic_regex(Some(StrBytes::from_static_str("ord.*"))),
                ResponseError::InvalidRequest,
            ),
            (
                join_request("a", &["orders"])
                    .with_server_assignor(Some(StrBytes::from_static_str("sticky"))),
                ResponseError::UnsupportedAssignor,
            ),
            (
                join_request("a", &["orders"])
                    .with_instance_id(Some(StrBytes::from_static_str(""))),
                ResponseError::InvalidRequest,
            ),
        ];
        for (request, error) in cases {
            let response = groups.heartbeat(request.clone(), V1, 0, &topics);
            assert_eq!(response.error_code, error.code(), "{request:?}");
            assert!(response.error_message.is_some());
        }
        assert!(!groups.contains(GROUP), "failed joins create no group");

        // v0 lets the coordinator choose the member id.
        let response = groups.heartbeat(join_request("", &["orders"]), 0, 0, &topics);
        assert_eq!(response.error_code, 0);
        assert!(
            response
                .member_id
                .is_some_and(|member_id| !member_id.is_empty())
        );
    }

    #[test]
    fn group_size_is_bounded() {
        let topics = view(&[("orders", 1)]);
        let options = ConsumerGroupOptions {
            max_size: 1,
            ..ConsumerGroupOptions::default()
        };
        let mut groups = ConsumerGroups::new(options);
        assert_eq!(
            groups
                .heartbeat(join_request("a", &["orders"]), V1, 0, &topics)
                .error_code,
            0
        );
        let response = groups.heartbeat(join_request("b", &["orders"]), V1, 0, &topics);
        assert_eq!(
            response.error_code,
            ResponseError::GroupMaxSizeReached.code()
        );
        // A rejoin is not a new member.
        assert_eq!(
            groups
                .heartbeat(join_request("a", &["orders"]), V1, 0, &topics)
                .error_code,
            0
        );
    }

    #[test]
    fn offset_commit_epochs_list_and_delete() {
        let topics = view(&[("orders", 1)]);
        let mut groups = coordinator();
        assert_eq!(groups.member_epoch_valid(GROUP, "a", 1), None);
        groups.heartbeat(join_request("a", &["orders"]), V1, 0, &topics);
        assert_eq!(groups.member_epoch_valid(GROUP, "a", 1), Some(true));
        assert_eq!(groups.member_epoch_valid(GROUP, "a", 0), Some(false));
        assert_eq!(groups.member_epoch_valid(GROUP, "b", 1), Some(false));
        assert_eq!(
            groups.member_epoch_valid(GROUP, "", -1),
            Some(false),
            "admin commits need an empty group"
        );
        assert_eq!(
            groups.delete(GROUP),
            Err(ResponseError::NonEmptyGroup.code())
        );

        groups.heartbeat(request("a", LEAVE_EPOCH), V1, 10, &topics);
        assert_eq!(groups.list(), [(GROUP.to_owned(), "Empty")]);
        assert_eq!(groups.member_epoch_valid(GROUP, "", -1), Some(true));
        assert_eq!(groups.delete(GROUP), Ok(()));
        assert!(!groups.contains(GROUP));
        assert_eq!(
            groups.delete(GROUP),
            Err(ResponseError::GroupIdNotFound.code())
        );
    }

    /// What the catalog holds after a restart: a new coordinator restored
    /// at `now_ms` from the snapshots of `groups`' dirty groups (as the
    /// persister would have written them) on top of what was saved before.
    /// Asserts that a restored group snapshots exactly as it was saved.
    fn restarted(groups: &mut ConsumerGroups, now_ms: i64) -> ConsumerGroups {
        groups.take_dirty();
        let records: Vec<ConsumerGroupRecord> = groups
            .list()
            .into_iter()
            .filter_map(|(group_id, _)| groups.snapshot(&group_id))
            .collect();
        let mut restored = coordinator();
        restored.restore(records.clone(), now_ms);
        assert!(!restored.has_dirty(), "restoring dirties nothing");
        for record in records {
            assert_eq!(restored.snapshot(&record.group_id), Some(record));
        }
        restored
    }

    /// Goal: a restart loses nothing members rely on: they keep heartbeating
    /// with their member id and epoch and keep their assignments, a
    /// rebalance in progress completes without double assignment, and
    /// sessions restart at the load time. Method: settle two members,
    /// start a third (so partitions are being revoked), restart from the
    /// snapshot, then heartbeat as before.
    #[test]
    fn restored_groups_carry_on() {
        let topics = view(&[("orders", 6)]);
        let mut groups = coordinator();
        let mut clients = vec![Client::new("a", &["orders"]), Client::new("b", &["orders"])];
        clients[1].instance_id = Some("host-b".to_owned());
        settle(&mut groups, &mut clients, 0, &topics);
        clients.push(Client::new("c", &["orders"]));
        clients[2].beat(&mut groups, 10, &topics, true);
        let before = groups.snapshot(GROUP).unwrap();
        assert_eq!(before.members.len(), 3);
        assert_eq!(before.assignor, "uniform");
        assert_eq!(before.subscribed_topics[0].partition_count, 6);

        let mut groups = restarted(&mut groups, 100_000);
        assert_eq!(
            groups.member_epoch_valid(GROUP, "a", clients[0].epoch),
            Some(true)
        );
        // Timers restarted at the load time, not at the saved heartbeats.
        assert_eq!(groups.next_deadline_ms(), Some(100_000 + 45_000));
        groups.expire(100_000 + 44_999);
        assert_eq!(group(&groups).members.len(), 3);
        let response = clients[0].beat(&mut groups, 100_010, &topics, true);
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        settle(&mut groups, &mut clients, 100_020, &topics);
        assert!(clients.iter().all(|client| count(&client.owned) == 2));
        // The static member is still known by its instance id.
        let impostor = join_request("b2", &["orders"])
            .with_instance_id(Some(StrBytes::from_static_str("host-b")));
        let response = groups.heartbeat(impostor, V1, 100_030, &topics);
        assert_eq!(
            response.error_code,
            ResponseError::UnreleasedInstanceId.code()
        );
    }

    /// Goal: exactly the changes a record holds mark a group dirty.
    /// Method: drive one group through a join, idle heartbeats, a
    /// subscription change, a leave, an expiry and a delete.
    #[test]
    fn changes_mark_groups_dirty() {
        let topics = view(&[("orders", 2), ("audit", 1)]);
        let mut groups = coordinator();
        let dirty = |groups: &mut ConsumerGroups| groups.take_dirty() == [GROUP.to_owned()];
        let mut a = Client::new("a", &["orders"]);
        a.beat(&mut groups, 0, &topics, true);
        assert!(dirty(&mut groups), "a join");
        a.beat(&mut groups, 10, &topics, true);
        a.beat(&mut groups, 20, &topics, false);
        assert!(!dirty(&mut groups), "heartbeats that change nothing");
        let rejected = groups.heartbeat(request("ghost", 3), V1, 25, &topics);
        assert_eq!(rejected.error_code, ResponseError::UnknownMemberId.code());
        assert!(!dirty(&mut groups), "a rejected heartbeat");
        let resubscribe = request("a", a.epoch).with_subscribed_topic_names(Some(vec![
            TopicName(StrBytes::from_static_str("orders")),
            TopicName(StrBytes::from_static_str("audit")),
        ]));
        let response = groups.heartbeat(resubscribe, V1, 30, &topics);
        assert_eq!(response.error_code, 0);
        assert!(dirty(&mut groups), "a subscription change");
        let rack = request("a", response.member_epoch)
            .with_rack_id(Some(StrBytes::from_static_str("rack-1")));
        groups.heartbeat(rack, V1, 40, &topics);
        assert!(dirty(&mut groups), "a member field");

        let mut b = Client::new("b", &["orders"]);
        b.beat(&mut groups, 50, &topics, true);
        groups.take_dirty();
        groups.heartbeat(request("b", LEAVE_EPOCH), V1, 60, &topics);
        assert!(dirty(&mut groups), "a leave");
        groups.expire(1_000_000);
        assert!(dirty(&mut groups), "an expiry");
        let empty = groups.snapshot(GROUP).unwrap();
        assert!(empty.members.is_empty(), "an emptied group is kept");
        assert!(empty.group_epoch > 0);

        a = Client::new("a", &["orders"]);
        a.beat(&mut groups, 1_000_010, &topics, true);
        groups.heartbeat(request("a", LEAVE_EPOCH), V1, 1_000_020, &topics);
        assert_eq!(groups.delete(GROUP), Ok(()));
        assert!(
            groups.take_dirty().is_empty(),
            "a deleted group is left out"
        );
        assert_eq!(groups.snapshot(GROUP), None);
    }

    /// A tiny deterministic generator so the randomized test needs no crate.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, bound: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % bound as u64) as usize
        }
    }

    /// Goal: no partition is ever held by two members, whatever the order of
    /// joins, leaves, static restarts, slow revocations, lost responses,
    /// missing acknowledgements, expiries and topic growth; and the
    /// group converges once clients heartbeat normally. Method: for many
    /// seeds, apply random actions to simulated clients, checking the
    /// invariant after each, then settle and check balance and coverage.
    #[test]
    fn randomized_sequences_never_double_assign() {
        for seed in 1..=200_u64 {
            let mut random = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut partitions = [3_u32, 5];
            let mut groups = coordinator();
            let mut clients: Vec<Client> = Vec::new();
            let mut next_id = 0;
            let mut now_ms = 0;
            for _ in 0..150 {
                let topics = view(&[("orders", partitions[0]), ("payments", partitions[1])]);
                now_ms += 500;
                match random.below(14) {
                    0 | 1 if clients.len() < 6 => {
                        next_id += 1;
                        let mut client =
                            Client::new(&format!("m{next_id}"), &["orders", "payments"]);
                        client.revoke_lazily = true;
                        if random.below(3) == 0 {
                            client.instance_id = Some(format!("host{next_id}"));
                        }
                        client.beat(&mut groups, now_ms, &topics, true);
                        clients.push(client);
                    }
                    2 if !clients.is_empty() => {
                        let client = clients.remove(random.below(clients.len()));
                        groups.heartbeat(
                            request(&client.member_id, LEAVE_EPOCH),
                            V1,
                            now_ms,
                            &topics,
                        );
                    }
                    3 => {
                        partitions[random.below(2)] += 1;
                    }
                    4 => {
                        now_ms += 20_000;
                        groups.expire(now_ms);
                    }
                    5 if !clients.is_empty() => {
                        // The response is lost: the client keeps its state.
                        let full_next = random.below(2) == 0;
                        let index = random.below(clients.len());
                        let client = &mut clients[index];
                        client.full_next = full_next;
                        if client.epoch != JOIN_EPOCH {
                            let request = request(&client.member_id, client.epoch)
                                .with_topic_partitions(Some(owned_list(&client.in_use())));
                            groups.heartbeat(request, V1, now_ms, &topics);
                        }
                    }
                    6 if clients.iter().any(|client| client.instance_id.is_some()) => {
                        // A static member restarts: it leaves with -2 and its
                        // new process rejoins under a new member id.
                        let Some(index) = clients
                            .iter()
                            .position(|client| client.instance_id.is_some())
                        else {
                            continue;
                        };
                        let old = clients.remove(index);
                        let leave = request(&old.member_id, STATIC_LEAVE_EPOCH)
                            .with_instance_id(old.instance_id.clone().map(StrBytes::from_string));
                        groups.heartbeat(leave, V1, now_ms, &topics);
                        next_id += 1;
                        let mut client =
                            Client::new(&format!("m{next_id}"), &["orders", "payments"]);
                        client.instance_id = old.instance_id;
                        client.revoke_lazily = true;
                        client.beat(&mut groups, now_ms, &topics, true);
                        clients.push(client);
                    }
                    7 | 8 if !clients.is_empty() => {
                        let index = random.below(clients.len());
                        clients[index].finish_revocation();
                    }
                    9 => {
                        // The catalog restarts: the group comes back from
                        // its record, mid-rebalance or not.
                        groups = restarted(&mut groups, now_ms);
                    }
                    _ if !clients.is_empty() => {
                        let index = random.below(clients.len());
                        let report = random.below(2) == 0;
                        clients[index].beat(&mut groups, now_ms, &topics, report);
                    }
                    _ => {}
                }
                if groups.contains(GROUP) {
                    assert_disjoint(&groups, &clients);
                }
            }
            if clients.is_empty() {
                continue;
            }
            let topics = view(&[("orders", partitions[0]), ("payments", partitions[1])]);
            settle(&mut groups, &mut clients, now_ms, &topics);
            let loads: Vec<usize> = clients.iter().map(|client| count(&client.owned)).collect();
            let total: usize = partitions.iter().map(|&count| count as usize).sum();
            assert_eq!(loads.iter().sum::<usize>(), total, "seed {seed}: {loads:?}");
            let spread = loads.iter().max().unwrap() - loads.iter().min().unwrap();
            assert!(spread <= 1, "seed {seed}: unbalanced {loads:?}");
        }
    }
}
