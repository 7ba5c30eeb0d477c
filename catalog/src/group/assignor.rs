//! Server-side partition assignors for KIP-848 consumer groups.
//!
//! With `group.protocol=consumer` the coordinator, not a client leader,
//! decides which member owns which partition. An assignor is a pure function
//! from the group's members (their subscriptions and their previous target
//! assignment) and the subscribed topics' partition counts to a new target
//! assignment. Clients pick one through `server_assignor` in the heartbeat;
//! [`Assignor::from_name`] lists the names we accept.
//!
//! The target is only where members should end up: `consumer.rs` moves each
//! member towards it one safe step at a time (a partition is handed over only
//! after its previous owner has revoked it).

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

/// Partition indexes by topic id. Ordered so that responses, describe output
/// and assignor decisions are deterministic.
pub(crate) type TopicPartitionSet = BTreeMap<Uuid, BTreeSet<i32>>;

/// One topic partition, the unit an assignor hands out.
type Partition = (Uuid, i32);

/// A server-side assignor, selected by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Assignor {
    /// Spread all subscribed partitions evenly over the members, keeping each
    /// member's previous partitions where balance allows (sticky).
    Uniform,
    /// Per topic, give each subscribed member a contiguous range of partitions,
    /// like the classic protocol's range assignor.
    Range,
}

/// What an assignor needs to know about one member.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberSpec {
    /// The topics the member subscribes to that exist.
    pub(crate) subscribed_topic_ids: BTreeSet<Uuid>,
    /// The member's previous target assignment (stickiness hint).
    pub(crate) current: TopicPartitionSet,
}

/// The input of an assignment: members by member id and the partition count of
/// every topic any member subscribes to.
#[derive(Debug, Clone, Default)]
pub(crate) struct AssignmentSpec {
    /// Members by member id.
    pub(crate) members: BTreeMap<String, MemberSpec>,
    /// Partition count by topic id.
    pub(crate) partition_counts: BTreeMap<Uuid, u32>,
}

impl Assignor {
    /// Every assignor, in the order `ConsumerGroupDescribe` would list them.
    pub(crate) const ALL: [Assignor; 2] = [Assignor::Uniform, Assignor::Range];

    /// Looks an assignor up by its protocol name (`uniform`, `range`).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|assignor| assignor.name() == name)
    }

    /// The protocol name, as clients send it in `server_assignor`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Assignor::Uniform => "uniform",
            Assignor::Range => "range",
        }
    }

    /// Computes a target assignment. Every member of `spec` has an entry in
    /// the result (possibly empty) and no partition is given to two members.
    pub(crate) fn assign(self, spec: &AssignmentSpec) -> BTreeMap<String, TopicPartitionSet> {
        match self {
            Assignor::Uniform => uniform(spec),
            Assignor::Range => range(spec),
        }
    }
}

/// The sticky uniform assignor.
///
/// 1. Each member keeps the partitions of its previous target that still
///    exist and that it still subscribes to.
/// 2. Each partition left over goes to the least loaded subscribed member.
/// 3. While some member holds at least two partitions more than another member
///    that could take one of them, one partition moves. Each move lowers the
///    sum of squared loads, so the loop ends; with identical subscriptions it
///    ends with loads within one of each other after the fewest moves.
fn uniform(spec: &AssignmentSpec) -> BTreeMap<String, TopicPartitionSet> {
    let ids: Vec<&String> = spec.members.keys().collect();
    let subscriptions: Vec<&BTreeSet<Uuid>> = spec
        .members
        .values()
        .map(|member| &member.subscribed_topic_ids)
        .collect();
    let mut held = retain_sticky(spec);
    let free = unheld_partitions(spec, &subscriptions, &held);
    for partition in free {
        if let Some(index) = least_loaded_subscriber(&held, &subscriptions, partition.0) {
            held[index].insert(partition);
        }
    }
    balance(&mut held, &subscriptions);
    ids.into_iter()
        .zip(held)
        .map(|(id, partitions)| (id.clone(), to_topic_partition_set(&partitions)))
        .collect()
}

/// Step 1 of [`uniform`]: each member's still-valid previous partitions, in
/// member id order; a partition claimed twice (never in a valid target) goes
/// to the first claimant.
fn retain_sticky(spec: &AssignmentSpec) -> Vec<BTreeSet<Partition>> {
    let mut taken = BTreeSet::new();
    spec.members
        .values()
        .map(|member| {
            let mut kept = BTreeSet::new();
            for (topic_id, partitions) in &member.current {
                let Some(&count) = spec.partition_counts.get(topic_id) else {
                    continue;
                };
                if !member.subscribed_topic_ids.contains(topic_id) {
                    continue;
                }
                for &partition in partitions {
                    let valid = u32::try_from(partition).is_ok_and(|index| index < count);
                    if valid && taken.insert((*topic_id, partition)) {
                        kept.insert((*topic_id, partition));
                    }
                }
            }
            kept
        })
        .collect()
}

/// Subscribed partitions nobody holds yet, in topic then partition order.
fn unheld_partitions(
    spec: &AssignmentSpec,
    subscriptions: &[&BTreeSet<Uuid>],
    held: &[BTreeSet<Partition>],
) -> Vec<Partition> {
    let subscribed: BTreeSet<Uuid> = subscriptions
        .iter()
        .flat_map(|set| set.iter().copied())
        .collect();
    let taken: BTreeSet<&Partition> = held.iter().flatten().collect();
    let mut free = Vec::new();
    for topic_id in subscribed {
        let Some(&count) = spec.partition_counts.get(&topic_id) else {
            continue;
        };
        for index in 0..count {
            let Ok(partition) = i32::try_from(index) else {
                break;
            };
            let partition = (topic_id, partition);
            if !taken.contains(&partition) {
                free.push(partition);
            }
        }
    }
    free
}

/// The member subscribed to `topic_id` with the fewest partitions (first by
/// member id on ties), if any member subscribes to it.
fn least_loaded_subscriber(
    held: &[BTreeSet<Partition>],
    subscriptions: &[&BTreeSet<Uuid>],
    topic_id: Uuid,
) -> Option<usize> {
    (0..held.len())
        .filter(|&index| subscriptions[index].contains(&topic_id))
        .min_by_key(|&index| held[index].len())
}

/// Step 3 of [`uniform`]: move single partitions from heavy to light members
/// until no move lowers the imbalance.
fn balance(held: &mut [BTreeSet<Partition>], subscriptions: &[&BTreeSet<Uuid>]) {
    // Each move lowers the sum of squared loads by at least two, so the number
    // of moves is bounded by that sum; the explicit bound documents it.
    let total: usize = held.iter().map(BTreeSet::len).sum();
    let moves_max = total.saturating_mul(total).saturating_add(1);
    for _ in 0..moves_max {
        let Some((from, to, partition)) = find_move(held, subscriptions) else {
            return;
        };
        held[from].remove(&partition);
        held[to].insert(partition);
    }
}

/// One partition that can move from a member to a member holding at least two
/// fewer partitions and subscribed to its topic; heaviest donors first.
fn find_move(
    held: &[BTreeSet<Partition>],
    subscriptions: &[&BTreeSet<Uuid>],
) -> Option<(usize, usize, Partition)> {
    let mut order: Vec<usize> = (0..held.len()).collect();
    order.sort_by_key(|&index| (std::cmp::Reverse(held[index].len()), index));
    for &from in &order {
        for &to in order.iter().rev() {
            if held[to].len() + 1 >= held[from].len() {
                break;
            }
            let movable = held[from]
                .iter()
                .rev()
                .find(|(topic_id, _)| subscriptions[to].contains(topic_id));
            if let Some(&partition) = movable {
                return Some((from, to, partition));
            }
        }
    }
    None
}

/// The range assignor: for each topic, the subscribed members in member id
/// order each take a contiguous range; the first `count % members` take one
/// extra partition.
fn range(spec: &AssignmentSpec) -> BTreeMap<String, TopicPartitionSet> {
    let mut result: BTreeMap<String, TopicPartitionSet> = spec
        .members
        .keys()
        .map(|id| (id.clone(), TopicPartitionSet::new()))
        .collect();
    for (&topic_id, &count) in &spec.partition_counts {
        let subscribers: Vec<&String> = spec
            .members
            .iter()
            .filter(|(_, member)| member.subscribed_topic_ids.contains(&topic_id))
            .map(|(id, _)| id)
            .collect();
        for (id, partitions) in subscribers.iter().zip(ranges(count, subscribers.len())) {
            if partitions.is_empty() {
                continue;
            }
            if let Some(assignment) = result.get_mut(*id) {
                assignment.insert(topic_id, partitions);
            }
        }
    }
    result
}

/// Splits partitions `0..count` into `members` contiguous ranges.
fn ranges(count: u32, members: usize) -> Vec<BTreeSet<i32>> {
    let Ok(members_u32) = u32::try_from(members) else {
        return Vec::new();
    };
    if members_u32 == 0 {
        return Vec::new();
    }
    let per_member = count / members_u32;
    let extra = count % members_u32;
    (0..members_u32)
        .map(|index| {
            let start = index * per_member + index.min(extra);
            let length = per_member + u32::from(index < extra);
            (start..start + length)
                .filter_map(|partition| i32::try_from(partition).ok())
                .collect()
        })
        .collect()
}

fn to_topic_partition_set(partitions: &BTreeSet<Partition>) -> TopicPartitionSet {
    let mut set = TopicPartitionSet::new();
    for &(topic_id, partition) in partitions {
        set.entry(topic_id).or_default().insert(partition);
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn spec(members: &[(&str, &[u128])], topics: &[(u128, u32)]) -> AssignmentSpec {
        AssignmentSpec {
            members: members
                .iter()
                .map(|(id, subscribed)| {
                    let member = MemberSpec {
                        subscribed_topic_ids: subscribed.iter().map(|&n| topic(n)).collect(),
                        current: TopicPartitionSet::new(),
                    };
                    ((*id).to_owned(), member)
                })
                .collect(),
            partition_counts: topics.iter().map(|&(n, count)| (topic(n), count)).collect(),
        }
    }

    fn count(assignment: &TopicPartitionSet) -> usize {
        assignment.values().map(BTreeSet::len).sum()
    }

    /// Goal: no partition is handed out twice and every subscribed partition is
    /// handed out. Method: flatten the result and compare with the universe.
    fn assert_exact_cover(result: &BTreeMap<String, TopicPartitionSet>, topics: &[(u128, u32)]) {
        let mut seen = BTreeSet::new();
        for assignment in result.values() {
            for (topic_id, partitions) in assignment {
                for &partition in partitions {
                    assert!(
                        seen.insert((*topic_id, partition)),
                        "{topic_id}:{partition} twice"
                    );
                }
            }
        }
        let total: u32 = topics.iter().map(|&(_, count)| count).sum();
        assert_eq!(seen.len(), total as usize);
    }

    #[test]
    fn names_round_trip() {
        for assignor in Assignor::ALL {
            assert_eq!(Assignor::from_name(assignor.name()), Some(assignor));
        }
        assert_eq!(Assignor::from_name("cooperative-sticky"), None);
    }

    #[test]
    fn uniform_balances_and_sticks() {
        let topics = [(1, 7), (2, 5)];
        let mut spec = spec(&[("a", &[1, 2]), ("b", &[1, 2])], &topics);
        let first = Assignor::Uniform.assign(&spec);
        assert_exact_cover(&first, &topics);
        assert_eq!(count(&first["a"]), 6);
        assert_eq!(count(&first["b"]), 6);

        // A third member arrives: only a third of the partitions move, and
        // each old member keeps a subset of what it had.
        for (id, assignment) in &first {
            if let Some(member) = spec.members.get_mut(id) {
                member.current = assignment.clone();
            }
        }
        spec.members.insert(
            "c".to_owned(),
            MemberSpec {
                subscribed_topic_ids: [topic(1), topic(2)].into(),
                current: TopicPartitionSet::new(),
            },
        );
        let second = Assignor::Uniform.assign(&spec);
        assert_exact_cover(&second, &topics);
        for id in ["a", "b", "c"] {
            assert_eq!(count(&second[id]), 4, "{id}");
        }
        for id in ["a", "b"] {
            for (topic_id, partitions) in &second[id] {
                assert!(
                    partitions.is_subset(&first[id][topic_id]),
                    "{id} gained a partition"
                );
            }
        }
    }

    #[test]
    fn uniform_respects_subscriptions() {
        let topics = [(1, 4), (2, 4)];
        let spec = spec(&[("a", &[1]), ("b", &[1, 2]), ("c", &[2])], &topics);
        let result = Assignor::Uniform.assign(&spec);
        assert_exact_cover(&result, &topics);
        assert!(!result["a"].contains_key(&topic(2)));
        assert!(!result["c"].contains_key(&topic(1)));
        let loads: Vec<usize> = result.values().map(count).collect();
        assert!(
            loads.iter().max() <= Some(&3) && loads.iter().min() >= Some(&2),
            "{loads:?}"
        );
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let topics = [(1, 5), (2, 2)];
        let spec = spec(&[("a", &[1, 2]), ("b", &[1, 2])], &topics);
        let result = Assignor::Range.assign(&spec);
        assert_exact_cover(&result, &topics);
        assert_eq!(result["a"][&topic(1)], BTreeSet::from([0, 1, 2]));
        assert_eq!(result["b"][&topic(1)], BTreeSet::from([3, 4]));
        assert_eq!(result["a"][&topic(2)], BTreeSet::from([0]));
        assert_eq!(result["b"][&topic(2)], BTreeSet::from([1]));
    }

    #[test]
    fn members_without_topics_get_empty_assignments() {
        let topics = [(1, 1)];
        for assignor in Assignor::ALL {
            let result = assignor.assign(&spec(&[("a", &[1]), ("b", &[1]), ("c", &[9])], &topics));
            assert_exact_cover(&result, &topics);
            assert_eq!(result.len(), 3);
            assert!(result["c"].is_empty());
        }
    }
}
