//! The coordinator actor: one task owns every group and its timers.
//!
//! Requests arrive as [`Command`]s over a bounded channel, each with a
//! oneshot for its answer; the task applies them one at a time to the
//! synchronous state machine, fires due timers on the catalog's clock
//! (sleeping until the earliest deadline, at most `tick_max_ms`), and hands
//! the resulting writes to the persister. It never awaits the store.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use tokio::sync::{mpsc, oneshot};

use super::classic::{
    ClassicGroups, CommitIdentity, JoinArgs, ListedClassicGroup, Reply, Subscriptions,
};
use super::persist::Persister;
use crate::store::Clock;

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
        reply: Reply<Vec<ListedClassicGroup>>,
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
    /// Fire due timers now.
    Tick { reply: Reply<()> },
}

/// Runs the actor until every command sender is dropped.
pub(crate) async fn run(
    mut groups: ClassicGroups,
    mut commands: mpsc::Receiver<Command>,
    persister: Persister,
    clock: Arc<dyn Clock>,
    tick_max_ms: u64,
) {
    loop {
        let now_ms = clock.now_ms();
        groups.expire(now_ms);
        groups
            .take_effects()
            .into_iter()
            .for_each(|e| persister.push(e));
        let wait_ms = groups
            .next_deadline_ms()
            .map_or(tick_max_ms, |deadline_ms| {
                u64::try_from(deadline_ms.saturating_sub(now_ms)).unwrap_or(0)
            })
            .min(tick_max_ms);
        let wake = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => handle(&mut groups, command, clock.now_ms()),
                None => break,
            },
            () = tokio::time::sleep_until(wake) => {}
        }
        groups
            .take_effects()
            .into_iter()
            .for_each(|e| persister.push(e));
    }
    tracing::debug!("group coordinator stopped");
}

/// Applies one command. Callers that went away need no answer.
fn handle(groups: &mut ClassicGroups, command: Command, now_ms: i64) {
    match command {
        Command::Join { join, reply } => groups.join(join, reply, now_ms),
        Command::Sync { request, reply } => groups.sync(request, reply, now_ms),
        Command::Heartbeat { request, reply } => {
            drop(reply.send(groups.heartbeat(&request, now_ms)));
        }
        Command::Leave {
            group_id,
            members,
            reply,
        } => drop(reply.send(groups.leave(&group_id, &members, now_ms))),
        Command::Describe { group_ids, reply } => {
            let described = group_ids.iter().map(|id| groups.describe(id)).collect();
            drop(reply.send(described));
        }
        Command::List { reply } => drop(reply.send(groups.list())),
        Command::Delete { group_ids, reply } => {
            let outcomes = group_ids.iter().map(|id| groups.delete(id)).collect();
            drop(reply.send(outcomes));
        }
        Command::ValidateCommit { commit, reply } => {
            let _ = reply.send(groups.validate_commit(&commit, now_ms));
        }
        Command::OffsetDeleteCheck { group_id, reply } => {
            drop(reply.send(groups.offset_delete_check(&group_id)));
        }
        Command::Tick { reply } => {
            groups.expire(now_ms);
            let _ = reply.send(());
        }
    }
}
