//! One consumer group: membership, the group epoch, the target assignment
//! and each member's reconciliation towards it, and describe output.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response as describe;
use kafka_protocol::messages::{ConsumerGroupHeartbeatResponse, GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::member::{Member, MemberState, Step};
use super::partitions::{from_records, is_subset};
use super::request::{Heartbeat, Rejection};
use super::{
    AUTHORIZED_OPERATIONS_ALL, AUTHORIZED_OPERATIONS_OMITTED, ConsumerGroupOptions, NOT_PROVIDED,
};
use crate::group::TopicsView;
use crate::group::assignor::{AssignmentSpec, Assignor, MemberSpec, TopicPartitionSet};
use crate::store::{ConsumerGroupRecord, SubscribedTopicRecord};

/// One consumer group.
#[derive(Debug)]
pub(super) struct Group {
    pub(super) group_epoch: i32,
    pub(super) assignment_epoch: i32,
    pub(super) assignor: Assignor,
    pub(super) members: BTreeMap<String, Member>,
    /// Static members: instance id → member id.
    pub(super) instances: BTreeMap<String, String>,
    /// Target assignment by member id, for `assignment_epoch`.
    pub(super) target: BTreeMap<String, TopicPartitionSet>,
    /// Subscribed topics that exist: name → (topic id, partition count), as
    /// of the last heartbeat. A change bumps the group epoch.
    pub(super) metadata: BTreeMap<String, (Uuid, u32)>,
}

impl Group {
    pub(super) fn new(assignor: Assignor) -> Self {
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
    pub(super) fn restore(
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
    pub(super) fn snapshot(&self, group_id: &str) -> ConsumerGroupRecord {
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
    pub(super) fn heartbeat(
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
    pub(super) fn join(
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

    pub(super) fn join_static(
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
    pub(super) fn replace_static(
        &mut self,
        old_member_id: &str,
        new_member_id: &str,
        instance_id: &str,
    ) {
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

    pub(super) fn admit(
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
    pub(super) fn check_member(
        &self,
        member_id: &str,
        heartbeat: &Heartbeat,
    ) -> Result<(), Rejection> {
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
    pub(super) fn leaving_member(&self, heartbeat: &Heartbeat) -> Result<String, Rejection> {
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
    pub(super) fn park_static(&mut self, member_id: &str, session_deadline_ms: i64) {
        if let Some(member) = self.members.get_mut(member_id) {
            member.static_left = true;
            member.session_deadline_ms = session_deadline_ms;
            member.revocation_deadline_ms = None;
        }
    }

    /// Removes members, frees their partitions and recomputes the target.
    pub(super) fn remove_members(&mut self, member_ids: &[String], default_assignor: Assignor) {
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
    pub(super) fn update_member(&mut self, member_id: &str, heartbeat: &Heartbeat) -> bool {
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
    pub(super) fn refresh_metadata(&mut self, topics: &TopicsView) -> bool {
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
    pub(super) fn compute_target(&mut self, default_assignor: Assignor) {
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
    pub(super) fn preferred_assignor(&self) -> Option<Assignor> {
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

    pub(super) fn reconcile(
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
    pub(super) fn held_by_others(&self, member_id: &str) -> HashSet<(Uuid, i32)> {
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

    pub(super) fn state(&self) -> &'static str {
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

    pub(super) fn describe(
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

/// Topic id → name for describe output: the catalog's view first, then the
/// names the group last saw (for a topic deleted since).
#[derive(Debug)]
pub(super) struct TopicNames<'a> {
    pub(super) topics: &'a TopicsView,
    pub(super) metadata: &'a BTreeMap<String, (Uuid, u32)>,
}

impl TopicNames<'_> {
    pub(super) fn name(&self, topic_id: Uuid) -> String {
        if let Some((name, _)) = self.topics.by_id.get(&topic_id) {
            return name.clone();
        }
        self.metadata
            .iter()
            .find(|(_, (id, _))| *id == topic_id)
            .map(|(name, _)| name.clone())
            .unwrap_or_default()
    }

    pub(super) fn assignment(&self, partitions: &TopicPartitionSet) -> describe::Assignment {
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

pub(super) fn describe_missing(group_id: GroupId) -> describe::DescribedGroup {
    let message = format!("Group {} is not a consumer group.", group_id.as_str());
    describe::DescribedGroup::default()
        .with_group_id(group_id)
        .with_error_code(ResponseError::GroupIdNotFound.code())
        .with_error_message(Some(StrBytes::from_string(message)))
        .with_group_state(StrBytes::from_static_str("Dead"))
}
