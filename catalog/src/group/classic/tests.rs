//! The classic state machine under a manual clock: every test drives
//! `ClassicGroups` directly, moving `now_ms` by hand and reading the held
//! responses from their oneshot receivers.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{ConsumerProtocolSubscription, GroupId};
use kafka_protocol::protocol::Encodable;
use oneshot::error::TryRecvError;

use super::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;
const DELAY_MS: i64 = 100;

struct Harness {
    groups: ClassicGroups,
    now_ms: i64,
}

fn options() -> GroupOptions {
    GroupOptions {
        initial_rebalance_delay_ms: DELAY_MS,
        min_session_timeout_ms: 1_000,
        ..GroupOptions::default()
    }
}

fn args(group: &str, member_id: &str, protocols: &[(&str, &[u8])]) -> JoinArgs {
    JoinArgs {
        group_id: group.to_string(),
        member_id: member_id.to_string(),
        instance_id: None,
        protocol_type: "consumer".to_string(),
        protocols: protocols
            .iter()
            .map(|(name, metadata)| (name.to_string(), Bytes::copy_from_slice(metadata)))
            .collect(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        require_known_member_id: true,
        client: ClientInfo {
            client_id: "client".to_string(),
            client_host: "/127.0.0.1".to_string(),
        },
    }
}

fn range() -> Vec<(&'static str, &'static [u8])> {
    vec![("range", b"m")]
}

fn answered<T>(receiver: &mut oneshot::Receiver<T>) -> T {
    receiver.try_recv().expect("the response was sent")
}

fn pending<T: std::fmt::Debug>(receiver: &mut oneshot::Receiver<T>) {
    assert!(matches!(receiver.try_recv(), Err(TryRecvError::Empty)));
}

impl Harness {
    fn new() -> Self {
        Self {
            groups: ClassicGroups::new(options()),
            now_ms: 1_000_000,
        }
    }

    fn join(&mut self, join: JoinArgs) -> oneshot::Receiver<JoinGroupResponse> {
        let (reply, receiver) = oneshot::channel();
        self.groups.join(join, reply, self.now_ms);
        receiver
    }

    /// A new dynamic member: MEMBER_ID_REQUIRED, then the held rejoin.
    fn join_new(&mut self, mut join: JoinArgs) -> (String, oneshot::Receiver<JoinGroupResponse>) {
        let first = answered(&mut self.join(join.clone()));
        assert_eq!(first.error_code, code::MEMBER_ID_REQUIRED);
        join.member_id = first.member_id.as_str().to_string();
        assert!(join.member_id.starts_with("client-"));
        (join.member_id.clone(), self.join(join))
    }

    fn sync(
        &mut self,
        group: &str,
        generation_id: i32,
        member_id: &str,
        assignments: &[(&str, &[u8])],
    ) -> oneshot::Receiver<SyncGroupResponse> {
        let request = SyncGroupRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id(generation_id)
            .with_member_id(str_bytes(member_id))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(member, bytes)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(str_bytes(member))
                            .with_assignment(Bytes::copy_from_slice(bytes))
                    })
                    .collect(),
            );
        let (reply, receiver) = oneshot::channel();
        self.groups.sync(request, reply, self.now_ms);
        self.flush();
        receiver
    }

    fn heartbeat(&mut self, group: &str, generation_id: i32, member_id: &str) -> i16 {
        self.heartbeat_static(group, generation_id, member_id, None)
    }

    fn heartbeat_static(
        &mut self,
        group: &str,
        generation_id: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> i16 {
        let request = HeartbeatRequest::default()
            .with_group_id(GroupId(str_bytes(group)))
            .with_generation_id(generation_id)
            .with_member_id(str_bytes(member_id))
            .with_group_instance_id(instance_id.map(str_bytes));
        self.groups.heartbeat(&request, self.now_ms).error_code
    }

    fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
        self.groups.expire(self.now_ms);
        self.flush();
    }

    /// Completes every pending write as if the store succeeded.
    fn flush(&mut self) {
        self.groups
            .take_effects()
            .into_iter()
            .for_each(Effect::complete);
    }

    fn state(&self, group: &str) -> Option<GroupState> {
        self.groups.groups.get(group).map(|g| g.state)
    }

    /// A Stable group of `count` dynamic members; returns their ids (the
    /// first is the leader) and the generation.
    fn stable_group(&mut self, group: &str, count: usize) -> (Vec<String>, i32) {
        let mut joins: Vec<_> = (0..count)
            .map(|_| self.join_new(args(group, "", &range())))
            .collect();
        self.advance(DELAY_MS);
        let responses: Vec<_> = joins.iter_mut().map(|(_, r)| answered(r)).collect();
        let generation = responses[0].generation_id;
        let leader = responses[0].leader.as_str().to_string();
        let mut ids: Vec<String> = joins.into_iter().map(|(id, _)| id).collect();
        ids.sort_by_key(|id| *id != leader);
        let assignments: Vec<(&str, &[u8])> =
            ids.iter().map(|id| (id.as_str(), &b"a"[..])).collect();
        let mut leader_sync = self.sync(group, generation, &ids[0], &assignments);
        assert_eq!(answered(&mut leader_sync).error_code, code::NONE);
        for id in &ids[1..] {
            assert_eq!(
                answered(&mut self.sync(group, generation, id, &[])).error_code,
                0
            );
        }
        assert_eq!(self.state(group), Some(GroupState::Stable));
        (ids, generation)
    }
}

/// Goal: the join barrier waits for every member (after the initial
/// delay), elects one leader that alone gets the members' metadata, and
/// followers' SyncGroups wait for the leader's assignments.
#[test]
fn join_barrier_with_three_members_and_sync() {
    let mut h = Harness::new();
    let mut joins: Vec<_> = (0..3)
        .map(|_| h.join_new(args("g", "", &range())))
        .collect();
    for (_, receiver) in &mut joins {
        pending(receiver);
    }
    assert_eq!(h.state("g"), Some(GroupState::PreparingRebalance));
    h.advance(DELAY_MS - 1);
    pending(&mut joins[0].1);
    h.advance(1);
    let responses: Vec<JoinGroupResponse> = joins.iter_mut().map(|(_, r)| answered(r)).collect();
    let leader = responses[0].leader.clone();
    for (response, (id, _)) in responses.iter().zip(&joins) {
        assert_eq!(response.error_code, code::NONE);
        assert_eq!(response.generation_id, 1);
        assert_eq!(response.leader, leader);
        assert_eq!(response.protocol_name.as_ref().unwrap().as_str(), "range");
        let expected_members = if response.member_id == leader { 3 } else { 0 };
        assert_eq!(response.members.len(), expected_members, "{id}");
    }
    assert_eq!(h.state("g"), Some(GroupState::CompletingRebalance));
    let ids: Vec<String> = joins.iter().map(|(id, _)| id.clone()).collect();
    let follower = ids
        .iter()
        .find(|id| **id != leader.as_str())
        .unwrap()
        .clone();
    let mut follower_sync = h.sync("g", 1, &follower, &[]);
    pending(&mut follower_sync);
    let assignments: Vec<(&str, &[u8])> =
        ids.iter().map(|id| (id.as_str(), id.as_bytes())).collect();
    let mut leader_sync = h.sync("g", 1, leader.as_str(), &assignments);
    assert_eq!(answered(&mut leader_sync).assignment, leader.as_bytes());
    assert_eq!(answered(&mut follower_sync).assignment, follower.as_bytes());
    assert_eq!(h.state("g"), Some(GroupState::Stable));
    assert_eq!(h.heartbeat("g", 1, &follower), code::NONE);
}

/// Goal: the selected protocol is one every member supports, by votes.
#[test]
fn protocol_selection_follows_votes() {
    let mut h = Harness::new();
    let mut a = h
        .join_new(args("p", "", &[("range", b""), ("roundrobin", b"")]))
        .1;
    let mut b = h
        .join_new(args("p", "", &[("roundrobin", b""), ("range", b"")]))
        .1;
    let mut c = h
        .join_new(args("p", "", &[("roundrobin", b""), ("sticky", b"")]))
        .1;
    h.advance(DELAY_MS);
    for receiver in [&mut a, &mut b, &mut c] {
        let response = answered(receiver);
        assert_eq!(response.protocol_name.unwrap().as_str(), "roundrobin");
    }
    let mut d = h.join(args("p", "", &[("sticky", b"")]));
    assert_eq!(
        answered(&mut d).error_code,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
}

/// Goal: request validation answers Kafka's codes.
#[test]
fn invalid_joins_get_kafka_codes() {
    let mut h = Harness::new();
    let mut bad = args("", "", &range());
    assert_eq!(
        answered(&mut h.join(bad.clone())).error_code,
        code::INVALID_GROUP_ID
    );
    bad.group_id = "v".to_string();
    bad.session_timeout_ms = 10;
    assert_eq!(
        answered(&mut h.join(bad.clone())).error_code,
        code::INVALID_SESSION_TIMEOUT
    );
    bad.session_timeout_ms = SESSION_MS;
    bad.protocols.clear();
    assert_eq!(
        answered(&mut h.join(bad.clone())).error_code,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
    let unknown = args("v", "nobody", &range());
    assert_eq!(
        answered(&mut h.join(unknown)).error_code,
        code::UNKNOWN_MEMBER_ID
    );
    assert!(h.state("v").is_none(), "failed joins leave no group behind");
    h.stable_group("v", 1);
    let mut other_type = args("v", "", &range());
    other_type.protocol_type = "connect".to_string();
    assert_eq!(
        answered(&mut h.join(other_type)).error_code,
        code::INCONSISTENT_GROUP_PROTOCOL
    );
}

/// Goal: stale generations and unknown members get 22 and 25 from
/// Heartbeat and SyncGroup.
#[test]
fn stale_generation_and_unknown_member() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group("s", 2);
    assert_eq!(
        h.heartbeat("s", generation - 1, &ids[1]),
        code::ILLEGAL_GENERATION
    );
    assert_eq!(
        h.heartbeat("s", generation, "ghost"),
        code::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        h.heartbeat("nope", generation, &ids[0]),
        code::UNKNOWN_MEMBER_ID
    );
    assert_eq!(h.heartbeat("", generation, &ids[0]), code::INVALID_GROUP_ID);
    let mut sync = h.sync("s", generation + 1, &ids[1], &[]);
    assert_eq!(answered(&mut sync).error_code, code::ILLEGAL_GENERATION);
    let mut sync = h.sync("s", generation, "ghost", &[]);
    assert_eq!(answered(&mut sync).error_code, code::UNKNOWN_MEMBER_ID);
}

/// Goal: a member that stops heartbeating expires after its session
/// timeout, the others learn of the rebalance through Heartbeat (27) and
/// the rejoin completes a generation without it.
#[test]
fn session_expiry_triggers_rebalance() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group("e", 2);
    let survivor = ids[1].clone();
    h.advance(i64::from(SESSION_MS) / 2);
    assert_eq!(h.heartbeat("e", generation, &survivor), code::NONE);
    h.advance(i64::from(SESSION_MS) / 2 + 1);
    assert_eq!(
        h.groups.groups["e"].members.len(),
        1,
        "the silent member expired"
    );
    assert_eq!(h.state("e"), Some(GroupState::PreparingRebalance));
    assert_eq!(
        h.heartbeat("e", generation, &survivor),
        code::REBALANCE_IN_PROGRESS
    );
    let mut rejoin = h.join(args("e", &survivor, &range()));
    let response = answered(&mut rejoin);
    assert_eq!(response.generation_id, generation + 1);
    assert_eq!(
        response.leader.as_str(),
        survivor,
        "a new leader is elected"
    );
    assert_eq!(response.members.len(), 1);
}

/// Goal: members that do not rejoin within the rebalance timeout are
/// removed and the barrier completes without them; a leader that never
/// syncs is removed after the rebalance timeout too.
#[test]
fn rebalance_and_sync_timeouts() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group("r", 2);
    let mut rejoin = h.join(args("r", &ids[1], &[("range", b"changed")]));
    // The other member keeps heartbeating but never rejoins.
    for _ in 0..5 {
        pending(&mut rejoin);
        h.advance(5_000);
        assert_eq!(
            h.heartbeat("r", generation, &ids[0]),
            code::REBALANCE_IN_PROGRESS
        );
    }
    h.advance(i64::from(REBALANCE_MS) - 25_001);
    pending(&mut rejoin);
    h.advance(1);
    let response = answered(&mut rejoin);
    assert_eq!(response.generation_id, generation + 1);
    assert_eq!(
        response.members.len(),
        1,
        "the member that did not rejoin is gone"
    );
    // The new leader never sends SyncGroup.
    h.advance(i64::from(REBALANCE_MS));
    assert!(h.groups.groups["r"].members.is_empty());
    assert_eq!(h.state("r"), Some(GroupState::Empty));
}

/// Goal: KIP-345: a static member that rejoins without its member id
/// replaces its old id without a rebalance; the old id is fenced (82).
#[test]
fn static_member_rejoins_without_rebalance() {
    let mut h = Harness::new();
    let mut a = args("st", "", &range());
    a.instance_id = Some("instance-a".to_string());
    let mut first = h.join(a.clone());
    let (b_id, mut b) = h.join_new(args("st", "", &range()));
    h.advance(DELAY_MS);
    let a_joined = answered(&mut first);
    answered(&mut b);
    let a_old = a_joined.member_id.as_str().to_string();
    let generation = a_joined.generation_id;
    let leader = a_joined.leader.as_str().to_string();
    let assignments: Vec<(&str, &[u8])> =
        vec![(a_old.as_str(), b"for-a"), (b_id.as_str(), b"for-b")];
    answered(&mut h.sync("st", generation, &leader, &assignments));
    let follower = if leader == a_old {
        b_id.clone()
    } else {
        a_old.clone()
    };
    answered(&mut h.sync("st", generation, &follower, &[]));
    assert_eq!(h.state("st"), Some(GroupState::Stable));

    let mut rejoin = h.join(a.clone());
    h.flush();
    let response = answered(&mut rejoin);
    let a_new = response.member_id.as_str().to_string();
    assert_eq!(response.error_code, code::NONE);
    assert_ne!(a_new, a_old);
    assert_eq!(response.generation_id, generation, "no new generation");
    assert_eq!(response.skip_assignment, leader == a_old);
    assert_eq!(h.state("st"), Some(GroupState::Stable));
    assert_eq!(
        h.heartbeat("st", generation, &b_id),
        code::NONE,
        "no rebalance"
    );
    let fenced = h.heartbeat_static("st", generation, &a_old, Some("instance-a"));
    assert_eq!(fenced, code::FENCED_INSTANCE_ID);
    let renewed = h.heartbeat_static("st", generation, &a_new, Some("instance-a"));
    assert_eq!(renewed, code::NONE);
    let mut sync = h.sync("st", generation, &a_new, &[]);
    assert_eq!(
        answered(&mut sync).assignment,
        &b"for-a"[..],
        "the assignment is kept"
    );
}

/// Goal: a LeaveGroup of several members (one by instance id) removes
/// them in one request, answers per member, and rebalances.
#[test]
fn leave_group_batched() {
    let mut h = Harness::new();
    let mut s = args("l", "", &range());
    s.instance_id = Some("i-1".to_string());
    let mut static_join = h.join(s);
    let mut dynamic: Vec<_> = (0..2)
        .map(|_| h.join_new(args("l", "", &range())))
        .collect();
    h.advance(DELAY_MS);
    answered(&mut static_join);
    dynamic.iter_mut().for_each(|(_, r)| drop(answered(r)));
    let leaving = vec![
        MemberIdentity::default().with_member_id(str_bytes(&dynamic[0].0)),
        MemberIdentity::default().with_group_instance_id(Some(str_bytes("i-1"))),
        MemberIdentity::default().with_member_id(str_bytes("ghost")),
    ];
    let response = h.groups.leave("l", &leaving, h.now_ms);
    let codes: Vec<i16> = response.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, [code::NONE, code::NONE, code::UNKNOWN_MEMBER_ID]);
    assert_eq!(h.groups.groups["l"].members.len(), 1);
    assert_eq!(h.state("l"), Some(GroupState::PreparingRebalance));
    let mut rejoin = h.join(args("l", &dynamic[1].0, &range()));
    assert_eq!(answered(&mut rejoin).members.len(), 1);
    let missing = h.groups.leave("nope", &leaving[..1], h.now_ms);
    assert_eq!(missing.members[0].error_code, code::UNKNOWN_MEMBER_ID);
}

/// Goal: commits outside group management (generation -1) are accepted for
/// groups without members and create an Empty group; members must commit
/// with their generation.
#[test]
fn simple_consumer_and_member_commits() {
    let mut h = Harness::new();
    let simple = CommitIdentity {
        group_id: "simple".to_string(),
        generation_id: -1,
        ..CommitIdentity::default()
    };
    assert_eq!(h.groups.validate_commit(&simple, h.now_ms), code::NONE);
    assert_eq!(h.state("simple"), Some(GroupState::Empty));
    let stale = CommitIdentity {
        group_id: "unknown".to_string(),
        generation_id: 3,
        ..CommitIdentity::default()
    };
    assert_eq!(
        h.groups.validate_commit(&stale, h.now_ms),
        code::ILLEGAL_GENERATION
    );
    let (ids, generation) = h.stable_group("c", 1);
    let mut member = CommitIdentity {
        group_id: "c".to_string(),
        generation_id: generation,
        member_id: ids[0].clone(),
        instance_id: None,
    };
    assert_eq!(h.groups.validate_commit(&member, h.now_ms), code::NONE);
    member.generation_id = -1;
    member.member_id = String::new();
    assert_eq!(
        h.groups.validate_commit(&member, h.now_ms),
        code::UNKNOWN_MEMBER_ID
    );
    let empty = CommitIdentity {
        generation_id: -1,
        ..CommitIdentity::default()
    };
    assert_eq!(
        h.groups.validate_commit(&empty, h.now_ms),
        code::INVALID_GROUP_ID
    );
}

/// Goal: ListGroups sees every group with its state; DeleteGroups deletes
/// only Empty groups (68 otherwise, 69 for unknown ones).
#[test]
fn list_and_delete_groups() {
    let mut h = Harness::new();
    h.stable_group("busy", 1);
    let simple = CommitIdentity {
        group_id: "idle".to_string(),
        generation_id: -1,
        ..CommitIdentity::default()
    };
    h.groups.validate_commit(&simple, h.now_ms);
    let listed: Vec<(String, &str)> = h
        .groups
        .list()
        .into_iter()
        .map(|g| (g.group_id, g.state))
        .collect();
    assert_eq!(
        listed,
        [
            ("busy".to_string(), "Stable"),
            ("idle".to_string(), "Empty")
        ]
    );
    assert_eq!(h.groups.delete("busy").unwrap_err(), code::NON_EMPTY_GROUP);
    assert_eq!(
        h.groups.delete("nope").unwrap_err(),
        code::GROUP_ID_NOT_FOUND
    );
    let mut deleted = h.groups.delete("idle").expect("an empty group is deleted");
    let effects = h.groups.take_effects();
    assert!(matches!(&effects[..], [Effect::Delete(id, _)] if id == "idle"));
    effects.into_iter().for_each(Effect::complete);
    assert_eq!(answered(&mut deleted), code::NONE);
    assert!(h.state("idle").is_none());
    let described = h.groups.describe("idle");
    assert_eq!(described.group_state.as_str(), "Dead");
}

fn subscription(topics: &[&str]) -> Vec<u8> {
    let mut bytes = BytesMut::new();
    bytes.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|t| str_bytes(t)).collect())
        .encode(&mut bytes, 0)
        .unwrap();
    bytes.to_vec()
}

/// Goal: OffsetDelete may not delete offsets of a topic the members are
/// subscribed to (86); groups of other protocol types with members are
/// NON_EMPTY_GROUP.
#[test]
fn offset_delete_respects_subscriptions() {
    let mut h = Harness::new();
    let metadata = subscription(&["orders"]);
    let mut join = h
        .join_new(args("sub", "", &[("range", metadata.as_slice())]))
        .1;
    h.advance(DELAY_MS);
    answered(&mut join);
    let subscriptions = h.groups.offset_delete_check("sub").unwrap();
    assert!(subscriptions.contains("orders"));
    assert!(!subscriptions.contains("payments"));
    assert_eq!(
        h.groups.offset_delete_check("nope").unwrap_err(),
        code::GROUP_ID_NOT_FOUND
    );
    let mut connect = args("conn", "", &range());
    connect.protocol_type = "connect".to_string();
    let mut join = h.join_new(connect).1;
    h.advance(DELAY_MS);
    answered(&mut join);
    assert_eq!(
        h.groups.offset_delete_check("conn").unwrap_err(),
        code::NON_EMPTY_GROUP
    );
}

/// Goal: a group record saved at SyncGroup loads back as a Stable group
/// whose members can keep heartbeating, their timers restarted.
#[test]
fn loaded_groups_keep_their_members() {
    let mut h = Harness::new();
    let (ids, generation) = h.stable_group("persist", 2);
    let record = h.groups.groups["persist"].record();
    assert_eq!(record.members.len(), 2);
    let mut restarted = Harness {
        groups: ClassicGroups::load(options(), vec![record], h.now_ms + 60_000),
        now_ms: h.now_ms + 60_000,
    };
    assert_eq!(restarted.state("persist"), Some(GroupState::Stable));
    assert_eq!(
        restarted.heartbeat("persist", generation, &ids[0]),
        code::NONE
    );
    restarted.advance(i64::from(SESSION_MS) + 1);
    assert_eq!(restarted.groups.groups["persist"].members.len(), 0);
    assert_eq!(restarted.state("persist"), Some(GroupState::Empty));
}
