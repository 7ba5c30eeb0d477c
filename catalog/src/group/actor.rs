//! The coordinator actor: one task owns every group and its timers.
//!
//! Requests arrive as [`Command`]s over a bounded channel, each with a
//! oneshot for its answer; the task applies them one at a time to the
//! synchronous state machines (classic and KIP-848 consumer groups), fires
//! due timers on the catalog's clock (sleeping until the earliest deadline,
//! at most `tick_max_ms`), and hands the resulting writes to the persister.
//! It never awaits the store.
//!
//! Classic writes are handed over after every command. KIP-848 groups are
//! snapshotted when the command queue is empty, or after at most
//! [`CONSUMER_SAVE_BATCH`] commands: during a rebalance every member's
//! heartbeat changes the group, and one snapshot after a burst of them
//! costs one copy of the group instead of one per heartbeat. The
//! persister keeps only the latest record of a group anyway.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, HeartbeatRequest, HeartbeatResponse, JoinGroupResponse,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};

use super::classic::{
    ClassicGroups, CommitIdentity, JoinArgs, ListedGroupInfo, Reply, Subscriptions, join_error,
    str_bytes,
};
use super::consumer::ConsumerGroups;
use super::persist::{Deferred, Effect, Persister};
use super::{TopicsView, code};
use crate::store::Clock;

/// The protocol type and group type of KIP-848 groups.
const CONSUMER: &str = "consumer";

/// The most commands handled between two snapshots of the changed KIP-848
/// groups while commands keep arriving.
const CONSUMER_SAVE_BATCH: usize = 64;

/// The outcome of deleting one group: an error code, or a receiver for the
/// outcome of the store write.
pub(crate) type DeleteOutcome = Result<oneshot::Receiver<i16>, i16>;

/// A request to the actor.
#[derive(Debug)]
pub(crate) enum Command {
    Join {
        join: JoinArgs,
        reply: Reply<JoinGroupResponse>,
    },
    Sync {
        request: SyncGroupRequest,
        reply: Reply<SyncGroupResponse>,
    },
    Heartbeat {
        request: HeartbeatRequest,
        reply: Reply<HeartbeatResponse>,
    },
    Leave {
        group_id: String,
        members: Vec<MemberIdentity>,
        reply: Reply<LeaveGroupResponse>,
    },
    Describe {
        group_ids: Vec<String>,
        reply: Reply<Vec<DescribedGroup>>,
    },
    List {
        reply: Reply<Vec<ListedGroupInfo>>,
    },
    Delete {
        group_ids: Vec<String>,
        reply: Reply<Vec<DeleteOutcome>>,
    },
    ValidateCommit {
        commit: CommitIdentity,
        reply: Reply<i16>,
    },
    OffsetDeleteCheck {
        group_id: String,
        reply: Reply<Result<Subscriptions, i16>>,
    },
    ConsumerHeartbeat {
        request: ConsumerGroupHeartbeatRequest,
        version: i16,
        topics: Arc<TopicsView>,
        reply: Reply<ConsumerGroupHeartbeatResponse>,
    },
    ConsumerDescribe {
        request: ConsumerGroupDescribeRequest,
        version: i16,
        topics: Arc<TopicsView>,
        reply: Reply<ConsumerGroupDescribeResponse>,
    },
    /// Fire due timers now.
    Tick {
        reply: Reply<()>,
    },
}

/// Every group the actor owns. A group id belongs to one protocol.
#[derive(Debug)]
pub(crate) struct Groups {
    pub(crate) classic: ClassicGroups,
    pub(crate) consumer: ConsumerGroups,
}

impl Groups {
    fn expire(&mut self, now_ms: i64) {
        self.classic.expire(now_ms);
        self.consumer.expire(now_ms);
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        let classic = self.classic.next_deadline_ms();
        let consumer = self.consumer.next_deadline_ms();
        classic.into_iter().chain(consumer).min()
    }
}

/// Runs the actor until every command sender is dropped.
pub(crate) async fn run(
    mut groups: Groups,
    mut commands: mpsc::Receiver<Command>,
    persister: Persister,
    clock: Arc<dyn Clock>,
    tick_max_ms: u64,
) {
    // Commands handled since a KIP-848 group changed without being saved.
    let mut unsaved = 0;
    loop {
        let now_ms = clock.now_ms();
        groups.expire(now_ms);
        flush(&mut groups, &persister, &commands, &mut unsaved);
        let wait_ms = groups
            .next_deadline_ms()
            .map_or(tick_max_ms, |deadline_ms| {
                u64::try_from(deadline_ms.saturating_sub(now_ms)).unwrap_or(0)
            })
            .min(tick_max_ms);
        let wake = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => {
                    handle(&mut groups, command, clock.now_ms());
                    unsaved += 1;
                }
                None => break,
            },
            () = tokio::time::sleep_until(wake) => {}
        }
        flush(&mut groups, &persister, &commands, &mut unsaved);
    }
    flush_classic(&mut groups, &persister);
    save_consumer_groups(&mut groups, &persister);
    tracing::debug!("group coordinator stopped");
}

/// Hands the classic writes to the persister, and the changed KIP-848
/// groups too when no command is waiting or enough were handled.
fn flush(
    groups: &mut Groups,
    persister: &Persister,
    commands: &mpsc::Receiver<Command>,
    unsaved: &mut usize,
) {
    flush_classic(groups, persister);
    if !groups.consumer.has_dirty() {
        *unsaved = 0;
    } else if commands.is_empty() || *unsaved >= CONSUMER_SAVE_BATCH {
        save_consumer_groups(groups, persister);
        *unsaved = 0;
    }
}

fn flush_classic(groups: &mut Groups, persister: &Persister) {
    groups
        .classic
        .take_effects()
        .into_iter()
        .for_each(|effect| persister.push(effect));
}

/// Queues a save of every KIP-848 group changed since the last call.
fn save_consumer_groups(groups: &mut Groups, persister: &Persister) {
    for group_id in groups.consumer.take_dirty() {
        if let Some(record) = groups.consumer.snapshot(&group_id) {
            persister.push(Effect::SaveConsumer(record));
        }
    }
}

/// Applies one command. Callers that went away need no answer.
fn handle(groups: &mut Groups, command: Command, now_ms: i64) {
    let classic = &mut groups.classic;
    match command {
        Command::Join { join, reply } => {
            if groups.consumer.contains(&join.group_id) {
                let error = join_error(&join.member_id, code::INCONSISTENT_GROUP_PROTOCOL);
                drop(reply.send(error));
            } else {
                classic.join(join, reply, now_ms);
            }
        }
        Command::Sync { request, reply } => classic.sync(request, reply, now_ms),
        Command::Heartbeat { request, reply } => {
            drop(reply.send(classic.heartbeat(&request, now_ms)));
        }
        Command::Leave {
            group_id,
            members,
            reply,
        } => drop(reply.send(classic.leave(&group_id, &members, now_ms))),
        Command::Describe { group_ids, reply } => {
            drop(reply.send(describe(groups, &group_ids)));
        }
        Command::List { reply } => drop(reply.send(list(groups))),
        Command::Delete { group_ids, reply } => {
            let outcomes = group_ids.iter().map(|id| delete(groups, id)).collect();
            drop(reply.send(outcomes));
        }
        Command::ValidateCommit { commit, reply } => {
            let _ = reply.send(validate_commit(groups, &commit, now_ms));
        }
        Command::OffsetDeleteCheck { group_id, reply } => {
            drop(reply.send(offset_delete_check(groups, &group_id)));
        }
        Command::ConsumerHeartbeat {
            request,
            version,
            topics,
            reply,
        } => drop(reply.send(consumer_heartbeat(
            groups, request, version, now_ms, &topics,
        ))),
        Command::ConsumerDescribe {
            request,
            version,
            topics,
            reply,
        } => drop(reply.send(groups.consumer.describe(request, version, &topics))),
        Command::Tick { reply } => {
            groups.expire(now_ms);
            let _ = reply.send(());
        }
    }
}

/// A ConsumerGroupHeartbeat: refused for a classic group with members;
/// an empty classic group gives its id up (its offsets stay).
fn consumer_heartbeat(
    groups: &mut Groups,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    now_ms: i64,
    topics: &TopicsView,
) -> ConsumerGroupHeartbeatResponse {
    let group_id = request.group_id.0.as_str().to_string();
    match groups.classic.has_members(&group_id) {
        Some(true) => {
            return ConsumerGroupHeartbeatResponse::default()
                .with_error_code(code::GROUP_ID_NOT_FOUND)
                .with_error_message(Some(StrBytes::from_static_str(
                    "the group is a classic group",
                )));
        }
        Some(false) => groups.classic.forget_empty(&group_id),
        None => {}
    }
    groups.consumer.heartbeat(request, version, now_ms, topics)
}

fn describe(groups: &Groups, group_ids: &[String]) -> Vec<DescribedGroup> {
    let consumer_states = groups.consumer.list();
    group_ids
        .iter()
        .map(|id| match consumer_states.iter().find(|(g, _)| g == id) {
            Some((_, state)) => DescribedGroup::default()
                .with_group_id(str_bytes(id).into())
                .with_group_state(StrBytes::from_static_str(state))
                .with_protocol_type(StrBytes::from_static_str(CONSUMER)),
            None => groups.classic.describe(id),
        })
        .collect()
}

fn list(groups: &Groups) -> Vec<ListedGroupInfo> {
    let mut listed = groups.classic.list();
    listed.extend(
        groups
            .consumer
            .list()
            .into_iter()
            .map(|(group_id, state)| ListedGroupInfo {
                group_id,
                protocol_type: CONSUMER.to_string(),
                state,
                group_type: CONSUMER,
            }),
    );
    listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    listed
}

fn delete(groups: &mut Groups, group_id: &str) -> DeleteOutcome {
    if !groups.consumer.contains(group_id) {
        return groups.classic.delete(group_id);
    }
    groups.consumer.delete(group_id)?;
    let (reply, outcome) = oneshot::channel();
    let effect = Effect::Delete(group_id.to_string(), vec![Deferred::Done(reply)]);
    groups.classic.push_effect(effect);
    Ok(outcome)
}

/// The group checks of an OffsetCommit: consumer groups check the member
/// epoch (KIP-848), classic groups the generation.
fn validate_commit(groups: &mut Groups, commit: &CommitIdentity, now_ms: i64) -> i16 {
    let valid = groups.consumer.member_epoch_valid(
        &commit.group_id,
        &commit.member_id,
        commit.generation_id,
    );
    match valid {
        None => groups.classic.validate_commit(commit, now_ms),
        Some(true) => code::NONE,
        Some(false) if commit.member_id.is_empty() => code::UNKNOWN_MEMBER_ID,
        Some(false) => code::STALE_MEMBER_EPOCH,
    }
}

/// The group checks of an OffsetDelete. The subscriptions of a consumer
/// group's members are not exposed: while it has members, every topic
/// counts as subscribed.
fn offset_delete_check(groups: &Groups, group_id: &str) -> Result<Subscriptions, i16> {
    match groups.consumer.member_epoch_valid(group_id, "", -1) {
        None => groups.classic.offset_delete_check(group_id),
        Some(true) => Ok(Subscriptions::Topics(Default::default())),
        Some(false) => Ok(Subscriptions::All),
    }
}
