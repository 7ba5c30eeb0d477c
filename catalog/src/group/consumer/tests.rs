use std::collections::{HashMap, HashSet};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as OwnedPartitions;
use kafka_protocol::messages::{GroupId, TopicName};

use super::group::Group;
use super::partitions::difference;
use super::*;
use crate::group::assignor::TopicPartitionSet;

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
fn settle(groups: &mut ConsumerGroups, clients: &mut [Client], now_ms: i64, topics: &TopicsView) {
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
    fn session_keepalive(&mut self, groups: &mut ConsumerGroups, now_ms: i64, topics: &TopicsView) {
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
            join_request("a", &["orders"]).with_instance_id(Some(StrBytes::from_static_str(""))),
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
    let impostor =
        join_request("b2", &["orders"]).with_instance_id(Some(StrBytes::from_static_str("host-b")));
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
    let rack =
        request("a", response.member_epoch).with_rack_id(Some(StrBytes::from_static_str("rack-1")));
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
                    let mut client = Client::new(&format!("m{next_id}"), &["orders", "payments"]);
                    client.revoke_lazily = true;
                    if random.below(3) == 0 {
                        client.instance_id = Some(format!("host{next_id}"));
                    }
                    client.beat(&mut groups, now_ms, &topics, true);
                    clients.push(client);
                }
                2 if !clients.is_empty() => {
                    let client = clients.remove(random.below(clients.len()));
                    groups.heartbeat(request(&client.member_id, LEAVE_EPOCH), V1, now_ms, &topics);
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
                    let mut client = Client::new(&format!("m{next_id}"), &["orders", "payments"]);
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
