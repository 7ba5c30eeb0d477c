//! The group coordinator through `GroupCall`, over a real SqliteStore:
//! Kafka-encoded request bodies built by `kafka-protocol` at the oldest
//! and newest versions, decoded responses.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strata_catalog::{CatalogService, GroupOptions, ServiceOptions, SqliteOptions};
use strata_catalog_api::proto::{CreateTopicRequest, DeleteTopicRequest, GroupCallRequest};
use strata_catalog_api::{CatalogApi, InProcess};

use strata_catalog::error_code::{
    GROUP_ID_NOT_FOUND, INCONSISTENT_GROUP_PROTOCOL, MEMBER_ID_REQUIRED, NON_EMPTY_GROUP,
    REBALANCE_IN_PROGRESS, STALE_MEMBER_EPOCH, UNKNOWN_TOPIC_OR_PARTITION,
};

async fn service(path: &std::path::Path) -> InProcess<CatalogService> {
    let options = ServiceOptions {
        groups: GroupOptions {
            initial_rebalance_delay_ms: 20,
            min_session_timeout_ms: 100,
            ..GroupOptions::default()
        },
        ..ServiceOptions::default()
    };
    let service = CatalogService::open_sqlite(path, SqliteOptions::default(), options)
        .await
        .expect("open the service");
    InProcess(service)
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn group(value: &str) -> GroupId {
    GroupId(s(value))
}

/// Sends `request` at `version` and decodes the response.
async fn call<Q: Encodable, R: Decodable>(
    catalog: &InProcess<CatalogService>,
    key: ApiKey,
    version: i16,
    request: &Q,
) -> R {
    let mut body = Vec::new();
    request
        .encode(&mut body, version)
        .expect("encode the request");
    let response = catalog
        .group_call(GroupCallRequest {
            api_key: i32::from(key as i16),
            api_version: i32::from(version),
            body,
            client_id: "test-client".to_string(),
            client_host: "/127.0.0.1".to_string(),
        })
        .await
        .expect("group call");
    let mut bytes = Bytes::from(response.body);
    R::decode(&mut bytes, version).expect("decode the response")
}

async fn create_topic(catalog: &InProcess<CatalogService>, name: &str, partitions: u32) {
    let response = catalog
        .create_topic(CreateTopicRequest {
            name: name.to_string(),
            partition_count: partitions,
            configs: Vec::new(),
            validate_only: false,
        })
        .await
        .expect("create the topic");
    assert_eq!(response.error_code, 0);
}

fn join_request(group_id: &str, member_id: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(10_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"subscription")),
        ])
}

fn commit_request(group_id: &str, generation: i32, member: &str) -> OffsetCommitRequest {
    let partition = |index, offset| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(index)
            .with_committed_offset(offset)
            .with_committed_metadata(Some(s("meta")))
    };
    OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![partition(0, 5), partition(7, 1)]),
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("missing")))
                .with_partitions(vec![partition(0, 1)]),
        ])
}

/// Goal: a whole consumer lifecycle at the oldest versions (v0 JoinGroup,
/// SyncGroup, Heartbeat, LeaveGroup; OffsetCommit v2, OffsetFetch v1),
/// then the admin APIs, then DeleteGroups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_lifecycle_at_oldest_versions() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = service(&dir.path().join("catalog.db")).await;
    create_topic(&catalog, "orders", 2).await;

    let joined: JoinGroupResponse =
        call(&catalog, ApiKey::JoinGroup, 0, &join_request("old", "")).await;
    assert_eq!(joined.error_code, 0);
    let member = joined.member_id.as_str().to_string();
    assert!(member.starts_with("test-client-"), "{member}");
    assert_eq!(
        (joined.generation_id, joined.leader.as_str()),
        (1, member.as_str())
    );
    assert_eq!(joined.members.len(), 1);

    let sync = SyncGroupRequest::default()
        .with_group_id(group("old"))
        .with_generation_id(1)
        .with_member_id(s(&member))
        .with_assignments(vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(Bytes::from_static(b"orders-0-1")),
        ]);
    let synced: SyncGroupResponse = call(&catalog, ApiKey::SyncGroup, 0, &sync).await;
    assert_eq!(
        (synced.error_code, &synced.assignment[..]),
        (0, &b"orders-0-1"[..])
    );

    let heartbeat = HeartbeatRequest::default()
        .with_group_id(group("old"))
        .with_generation_id(1)
        .with_member_id(s(&member));
    let beat: HeartbeatResponse = call(&catalog, ApiKey::Heartbeat, 0, &heartbeat).await;
    assert_eq!(beat.error_code, 0);

    let committed: OffsetCommitResponse = call(
        &catalog,
        ApiKey::OffsetCommit,
        2,
        &commit_request("old", 1, &member),
    )
    .await;
    let codes: Vec<Vec<i16>> = committed
        .topics
        .iter()
        .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
        .collect();
    assert_eq!(
        codes,
        [
            vec![0, UNKNOWN_TOPIC_OR_PARTITION],
            vec![UNKNOWN_TOPIC_OR_PARTITION]
        ]
    );

    let fetch = OffsetFetchRequest::default()
        .with_group_id(group("old"))
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partition_indexes(vec![0, 1]),
        ]));
    let fetched: OffsetFetchResponse = call(&catalog, ApiKey::OffsetFetch, 1, &fetch).await;
    let offsets: Vec<(i64, String)> = fetched.topics[0]
        .partitions
        .iter()
        .map(|p| (p.committed_offset, p.metadata.as_ref().unwrap().to_string()))
        .collect();
    assert_eq!(offsets, [(5, "meta".to_string()), (-1, String::new())]);

    admin_apis_at_oldest_versions(&catalog, &member).await;

    let leave = LeaveGroupRequest::default()
        .with_group_id(group("old"))
        .with_member_id(s(&member));
    let left: LeaveGroupResponse = call(&catalog, ApiKey::LeaveGroup, 0, &leave).await;
    assert_eq!(left.error_code, 0);

    let delete = DeleteGroupsRequest::default().with_groups_names(vec![group("old")]);
    let deleted: DeleteGroupsResponse = call(&catalog, ApiKey::DeleteGroups, 0, &delete).await;
    assert_eq!(deleted.results[0].error_code, 0);
    let fetched: OffsetFetchResponse = call(&catalog, ApiKey::OffsetFetch, 1, &fetch).await;
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, -1);
}

async fn admin_apis_at_oldest_versions(catalog: &InProcess<CatalogService>, member: &str) {
    let describe = DescribeGroupsRequest::default().with_groups(vec![group("old"), group("none")]);
    let described: DescribeGroupsResponse =
        call(catalog, ApiKey::DescribeGroups, 0, &describe).await;
    let old = &described.groups[0];
    assert_eq!(old.group_state.as_str(), "Stable");
    assert_eq!(old.protocol_data.as_str(), "range");
    assert_eq!(old.members[0].member_id.as_str(), member);
    assert_eq!(old.members[0].client_host.as_str(), "/127.0.0.1");
    assert_eq!(&old.members[0].member_assignment[..], b"orders-0-1");
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");

    let listed: ListGroupsResponse = call(
        catalog,
        ApiKey::ListGroups,
        0,
        &ListGroupsRequest::default(),
    )
    .await;
    let ids: Vec<&str> = listed
        .groups
        .iter()
        .map(|g| g.group_id.0.as_str())
        .collect();
    assert_eq!(ids, ["old"]);

    let delete = DeleteGroupsRequest::default().with_groups_names(vec![group("old")]);
    let deleted: DeleteGroupsResponse = call(catalog, ApiKey::DeleteGroups, 0, &delete).await;
    assert_eq!(deleted.results[0].error_code, NON_EMPTY_GROUP);
}

/// Goal: the newest versions: MEMBER_ID_REQUIRED, JoinGroup v9 and
/// SyncGroup v5 with protocol fields, OffsetCommit v9 from a simple
/// consumer, multi-group OffsetFetch v9, ListGroups v5 filters,
/// LeaveGroup v5 batches, OffsetDelete, and KIP-848 groups beside classic
/// ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_versions() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = service(&dir.path().join("catalog.db")).await;
    create_topic(&catalog, "orders", 2).await;
    let first: JoinGroupResponse =
        call(&catalog, ApiKey::JoinGroup, 9, &join_request("new", "")).await;
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member = first.member_id.as_str().to_string();
    let joined: JoinGroupResponse = call(
        &catalog,
        ApiKey::JoinGroup,
        9,
        &join_request("new", &member),
    )
    .await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(
        joined.protocol_type.as_ref().map(StrBytes::as_str),
        Some("consumer")
    );
    let sync = SyncGroupRequest::default()
        .with_group_id(group("new"))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member))
        .with_protocol_type(Some(s("consumer")))
        .with_protocol_name(Some(s("range")));
    let synced: SyncGroupResponse = call(&catalog, ApiKey::SyncGroup, 5, &sync).await;
    assert_eq!(synced.error_code, 0);
    assert_eq!(
        synced.protocol_name.as_ref().map(StrBytes::as_str),
        Some("range")
    );

    let committed: OffsetCommitResponse = call(
        &catalog,
        ApiKey::OffsetCommit,
        9,
        &commit_request("simple", -1, ""),
    )
    .await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    let fetch = OffsetFetchRequest::default().with_groups(vec![
        OffsetFetchRequestGroup::default()
            .with_group_id(group("simple"))
            .with_topics(None),
        OffsetFetchRequestGroup::default()
            .with_group_id(group("new"))
            .with_topics(Some(vec![
                OffsetFetchRequestTopics::default()
                    .with_name(TopicName(s("orders")))
                    .with_partition_indexes(vec![0]),
            ])),
    ]);
    let fetched: OffsetFetchResponse = call(&catalog, ApiKey::OffsetFetch, 9, &fetch).await;
    let simple = &fetched.groups[0].topics[0];
    assert_eq!(simple.name.0.as_str(), "orders");
    assert_eq!(simple.partitions[0].committed_offset, 5);
    assert_eq!(
        fetched.groups[1].topics[0].partitions[0].committed_offset,
        -1
    );

    list_with_filters(&catalog).await;
    consumer_protocol_groups(&catalog).await;
    offset_delete(&catalog).await;
    leave_batched(&catalog, &member).await;
}

/// KIP-848 groups share the coordinator: a group id belongs to one
/// protocol, ListGroups shows both types, members commit with their epoch.
async fn consumer_protocol_groups(catalog: &InProcess<CatalogService>) {
    let heartbeat = |group_id: &str| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group(group_id))
            .with_member_id(s("kip848-member"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(5_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("orders"))]))
            .with_topic_partitions(Some(Vec::new()))
    };
    let joined: ConsumerGroupHeartbeatResponse = call(
        catalog,
        ApiKey::ConsumerGroupHeartbeat,
        1,
        &heartbeat("kip848"),
    )
    .await;
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    assert!(joined.member_epoch > 0);
    let classic: ConsumerGroupHeartbeatResponse = call(
        catalog,
        ApiKey::ConsumerGroupHeartbeat,
        1,
        &heartbeat("new"),
    )
    .await;
    assert_eq!(
        classic.error_code, GROUP_ID_NOT_FOUND,
        "a classic group with members"
    );
    let join: JoinGroupResponse =
        call(catalog, ApiKey::JoinGroup, 9, &join_request("kip848", "")).await;
    assert_eq!(join.error_code, INCONSISTENT_GROUP_PROTOCOL);
    let types = ListGroupsRequest::default().with_types_filter(vec![s("consumer")]);
    let listed: ListGroupsResponse = call(catalog, ApiKey::ListGroups, 5, &types).await;
    let ids: Vec<&str> = listed
        .groups
        .iter()
        .map(|g| g.group_id.0.as_str())
        .collect();
    assert_eq!(ids, ["kip848"]);
    let stale = commit_request("kip848", joined.member_epoch + 1, "kip848-member");
    let committed: OffsetCommitResponse = call(catalog, ApiKey::OffsetCommit, 9, &stale).await;
    assert_eq!(
        committed.topics[0].partitions[0].error_code,
        STALE_MEMBER_EPOCH
    );
    let current = commit_request("kip848", joined.member_epoch, "kip848-member");
    let committed: OffsetCommitResponse = call(catalog, ApiKey::OffsetCommit, 9, &current).await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
}

async fn list_with_filters(catalog: &InProcess<CatalogService>) {
    let list = |states: &[&str], types: &[&str]| {
        ListGroupsRequest::default()
            .with_states_filter(states.iter().map(|v| s(v)).collect())
            .with_types_filter(types.iter().map(|v| s(v)).collect())
    };
    let ids = |response: &ListGroupsResponse| -> Vec<String> {
        response
            .groups
            .iter()
            .map(|g| g.group_id.0.to_string())
            .collect()
    };
    let all: ListGroupsResponse = call(catalog, ApiKey::ListGroups, 5, &list(&[], &[])).await;
    assert_eq!(ids(&all), ["new", "simple"]);
    assert_eq!(all.groups[0].group_type.as_str(), "classic");
    let stable: ListGroupsResponse =
        call(catalog, ApiKey::ListGroups, 5, &list(&["stable"], &[])).await;
    assert_eq!(ids(&stable), ["new"]);
    let empty: ListGroupsResponse =
        call(catalog, ApiKey::ListGroups, 4, &list(&["Empty"], &[])).await;
    assert_eq!(ids(&empty), ["simple"]);
    assert_eq!(empty.groups[0].group_state.as_str(), "Empty");
    let consumer: ListGroupsResponse =
        call(catalog, ApiKey::ListGroups, 5, &list(&[], &["consumer"])).await;
    assert!(consumer.groups.is_empty());
}

async fn offset_delete(catalog: &InProcess<CatalogService>) {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    let request = OffsetDeleteRequest::default()
        .with_group_id(group("simple"))
        .with_topics(vec![
            OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("orders")))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0),
                ]),
        ]);
    let response: OffsetDeleteResponse = call(catalog, ApiKey::OffsetDelete, 0, &request).await;
    assert_eq!(response.error_code, 0);
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    let unknown = request.clone().with_group_id(group("nobody"));
    let response: OffsetDeleteResponse = call(catalog, ApiKey::OffsetDelete, 0, &unknown).await;
    assert_eq!(response.error_code, 69);
}

async fn leave_batched(catalog: &InProcess<CatalogService>, member: &str) {
    let pending: JoinGroupResponse =
        call(catalog, ApiKey::JoinGroup, 9, &join_request("new", "")).await;
    assert_eq!(pending.error_code, MEMBER_ID_REQUIRED);
    let leave = LeaveGroupRequest::default()
        .with_group_id(group("new"))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(member)),
            MemberIdentity::default().with_member_id(pending.member_id.clone()),
            MemberIdentity::default()
                .with_member_id(s("ghost"))
                .with_reason(Some(s("test"))),
        ]);
    let left: LeaveGroupResponse = call(catalog, ApiKey::LeaveGroup, 5, &leave).await;
    let codes: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, [0, 0, 25]);
}

/// Goal: members keep their generation across a catalog restart, and a
/// deleted topic's offsets are not fetched. Method: sync a group, commit,
/// reopen the service on the same file, heartbeat and fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let catalog = service(&path).await;
    create_topic(&catalog, "orders", 2).await;
    let joined: JoinGroupResponse =
        call(&catalog, ApiKey::JoinGroup, 4, &join_request("kept", "")).await;
    let joined: JoinGroupResponse = call(
        &catalog,
        ApiKey::JoinGroup,
        4,
        &join_request("kept", joined.member_id.as_str()),
    )
    .await;
    let member = joined.member_id.as_str().to_string();
    let sync = SyncGroupRequest::default()
        .with_group_id(group("kept"))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member));
    let synced: SyncGroupResponse = call(&catalog, ApiKey::SyncGroup, 3, &sync).await;
    assert_eq!(synced.error_code, 0);
    let committed: OffsetCommitResponse = call(
        &catalog,
        ApiKey::OffsetCommit,
        8,
        &commit_request("kept", joined.generation_id, &member),
    )
    .await;
    assert_eq!(committed.topics[0].partitions[0].error_code, 0);
    drop(catalog);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let catalog = service(&path).await;
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(group("kept"))
        .with_generation_id(joined.generation_id)
        .with_member_id(s(&member));
    let beat: HeartbeatResponse = call(&catalog, ApiKey::Heartbeat, 4, &heartbeat).await;
    assert_eq!(beat.error_code, 0, "the member survives the restart");
    let stale = heartbeat
        .clone()
        .with_generation_id(joined.generation_id + 1);
    let beat: HeartbeatResponse = call(&catalog, ApiKey::Heartbeat, 4, &stale).await;
    assert_eq!(beat.error_code, 22);
    let fetch = OffsetFetchRequest::default()
        .with_group_id(group("kept"))
        .with_topics(None)
        .with_require_stable(true);
    let fetched: OffsetFetchResponse = call(&catalog, ApiKey::OffsetFetch, 7, &fetch).await;
    assert_eq!(fetched.topics[0].partitions[0].committed_offset, 5);
    assert_eq!(fetched.topics[0].partitions[0].committed_leader_epoch, -1);

    let deleted = catalog
        .delete_topic(DeleteTopicRequest {
            name: "orders".to_string(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(deleted.error_code, 0);
    let fetched: OffsetFetchResponse = call(&catalog, ApiKey::OffsetFetch, 7, &fetch).await;
    assert!(
        fetched.topics.is_empty(),
        "a deleted topic's offsets are gone"
    );
    let joiner: JoinGroupResponse =
        call(&catalog, ApiKey::JoinGroup, 4, &join_request("kept", "")).await;
    let rejoin = join_request("kept", joiner.member_id.as_str());
    let busy: HeartbeatResponse = {
        let catalog = &catalog;
        let joining = call::<_, JoinGroupResponse>(catalog, ApiKey::JoinGroup, 4, &rejoin);
        let beat = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            call(catalog, ApiKey::Heartbeat, 4, &heartbeat).await
        };
        let (_, beat) = tokio::join!(
            tokio::time::timeout(Duration::from_millis(200), joining),
            beat
        );
        beat
    };
    assert_eq!(busy.error_code, REBALANCE_IN_PROGRESS);
}

/// Goal: a body that does not decode is INVALID_ARGUMENT, not a crash.
#[tokio::test]
async fn malformed_bodies_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = service(&dir.path().join("catalog.db")).await;
    for (key, version) in [
        (ApiKey::JoinGroup, 9),
        (ApiKey::OffsetCommit, 2),
        (ApiKey::Heartbeat, 0),
    ] {
        let status = catalog
            .group_call(GroupCallRequest {
                api_key: i32::from(key as i16),
                api_version: version,
                body: vec![0xff, 0xff, 0xff],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{key:?}");
    }
    let status = catalog
        .group_call(GroupCallRequest {
            api_key: i32::from(ApiKey::JoinGroup as i16),
            api_version: 10,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

/// A KIP-848 member as a client sees itself: its id, epoch and partitions.
#[derive(Debug, Clone, PartialEq)]
struct Kip848Member {
    id: String,
    epoch: i32,
    /// Partitions by topic id, sorted.
    owned: Vec<(uuid::Uuid, Vec<i32>)>,
}

impl Kip848Member {
    fn owned_request(&self) -> Vec<consumer_group_heartbeat_request::TopicPartitions> {
        self.owned
            .iter()
            .map(|(topic_id, partitions)| {
                consumer_group_heartbeat_request::TopicPartitions::default()
                    .with_topic_id(*topic_id)
                    .with_partitions(partitions.clone())
            })
            .collect()
    }

    /// A full heartbeat (every field set): the response carries the
    /// assignment.
    fn full_heartbeat(&self, group_id: &str) -> ConsumerGroupHeartbeatRequest {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group(group_id))
            .with_member_id(s(&self.id))
            .with_member_epoch(self.epoch)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(s("orders"))]))
            .with_topic_partitions(Some(self.owned_request()))
    }

    /// Applies a successful response.
    fn apply(&mut self, response: &ConsumerGroupHeartbeatResponse) {
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        if let Some(id) = &response.member_id {
            self.id = id.as_str().to_string();
        }
        self.epoch = response.member_epoch;
        if let Some(assignment) = &response.assignment {
            let mut owned: Vec<(uuid::Uuid, Vec<i32>)> = assignment
                .topic_partitions
                .iter()
                .map(|topic| {
                    let mut partitions = topic.partitions.clone();
                    partitions.sort_unstable();
                    (topic.topic_id, partitions)
                })
                .filter(|(_, partitions)| !partitions.is_empty())
                .collect();
            owned.sort();
            self.owned = owned;
        }
    }

    fn partition_count(&self) -> usize {
        self.owned
            .iter()
            .map(|(_, partitions)| partitions.len())
            .sum()
    }
}

/// Sends a ConsumerGroupHeartbeat at `version`.
async fn kip848_beat(
    catalog: &InProcess<CatalogService>,
    version: i16,
    request: &ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    call(catalog, ApiKey::ConsumerGroupHeartbeat, version, request).await
}

/// The consumer group record saved in the SQLite file at `path`, polled
/// until `done` accepts it: the coordinator saves behind its responses.
async fn saved_consumer_group(
    path: &std::path::Path,
    group_id: &str,
    done: impl Fn(Option<&strata_catalog::ConsumerGroupRecord>) -> bool,
) -> Option<strata_catalog::ConsumerGroupRecord> {
    use strata_catalog::{CatalogStore, SqliteStore};
    let store = SqliteStore::open(path, SqliteOptions::default()).expect("open the file");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let records = store.load_consumer_groups().await.expect("load");
        let record = records.into_iter().find(|r| r.group_id == group_id);
        if done(record.as_ref()) {
            return record;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer group was not saved as expected: {record:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Goal: KIP-848 membership, assignments and epochs are catalog state:
/// after a restart members keep heartbeating with their member id and
/// epoch (no FENCED_MEMBER_EPOCH, no UNKNOWN_MEMBER_ID) with their
/// assignment intact and commit offsets with their epoch; an emptied
/// group is kept with its epoch; DeleteGroups removes it for good.
/// Method: two members (ConsumerGroupHeartbeat v1 with a client id, v0
/// with a coordinator-generated one) settle on a 4-partition topic; wait
/// for the record to be saved, reopen the service on the same file and
/// heartbeat; then leave, restart, delete, restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kip848_groups_survive_a_restart() {
    const GROUP: &str = "kip848-restart";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.db");
    let catalog = service(&path).await;
    create_topic(&catalog, "orders", 4).await;

    let mut a = Kip848Member {
        id: "kip848-a".to_string(),
        epoch: 0,
        owned: Vec::new(),
    };
    let mut b = Kip848Member {
        id: String::new(),
        ..a.clone()
    };
    a.apply(&kip848_beat(&catalog, 1, &a.full_heartbeat(GROUP)).await);
    assert_eq!((a.epoch, a.partition_count()), (1, 4));
    b.apply(&kip848_beat(&catalog, 0, &b.full_heartbeat(GROUP)).await);
    assert!(!b.id.is_empty(), "v0: the coordinator chose the member id");
    for _ in 0..5 {
        a.apply(&kip848_beat(&catalog, 1, &a.full_heartbeat(GROUP)).await);
        b.apply(&kip848_beat(&catalog, 0, &b.full_heartbeat(GROUP)).await);
    }
    assert_eq!((a.epoch, b.epoch), (2, 2), "{a:?} {b:?}");
    assert_eq!((a.partition_count(), b.partition_count()), (2, 2));
    saved_consumer_group(&path, GROUP, |record| {
        record.is_some_and(|r| {
            r.members.len() == 2
                && r.members.iter().all(|m| {
                    m.member_epoch == 2
                        && m.assigned.iter().map(|t| t.partitions.len()).sum::<usize>() == 2
                })
        })
    })
    .await;
    drop(catalog);

    let catalog = service(&path).await;
    for (member, version) in [(&mut a, 1), (&mut b, 0)] {
        let before = member.clone();
        let response = kip848_beat(&catalog, version, &member.full_heartbeat(GROUP)).await;
        member.apply(&response);
        assert_eq!(*member, before, "the member survives the restart as it was");
        assert!(response.assignment.is_some(), "a full heartbeat");
        // A light heartbeat (only id and epoch) works too.
        let light = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group(GROUP))
            .with_member_id(s(&member.id))
            .with_member_epoch(member.epoch);
        let response = kip848_beat(&catalog, version, &light).await;
        assert_eq!(
            (response.error_code, response.member_epoch),
            (0, before.epoch)
        );
    }
    let commit = commit_request(GROUP, a.epoch, &a.id);
    let committed: OffsetCommitResponse = call(&catalog, ApiKey::OffsetCommit, 9, &commit).await;
    assert_eq!(
        committed.topics[0].partitions[0].error_code, 0,
        "the member epoch is still valid for commits"
    );
    let describe = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group(GROUP)]);
    let described: ConsumerGroupDescribeResponse =
        call(&catalog, ApiKey::ConsumerGroupDescribe, 0, &describe).await;
    let described = &described.groups[0];
    assert_eq!(
        (
            described.group_state.as_str(),
            described.group_epoch,
            described.assignment_epoch,
            described.members.len()
        ),
        ("Stable", 2, 2, 2)
    );

    // Both leave: the group is kept, empty, with its epoch.
    for (member, version) in [(&a, 1), (&b, 0)] {
        let leave = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(group(GROUP))
            .with_member_id(s(&member.id))
            .with_member_epoch(-1);
        let left = kip848_beat(&catalog, version, &leave).await;
        assert_eq!((left.error_code, left.member_epoch), (0, -1));
    }
    let emptied = saved_consumer_group(&path, GROUP, |record| {
        record.is_some_and(|r| r.members.is_empty())
    })
    .await
    .expect("the emptied group is saved");
    assert_eq!(emptied.group_epoch, 4, "two leaves bump the epoch twice");
    drop(catalog);

    let catalog = service(&path).await;
    let listed: ListGroupsResponse = call(
        &catalog,
        ApiKey::ListGroups,
        5,
        &ListGroupsRequest::default(),
    )
    .await;
    let states: Vec<(&str, &str, &str)> = listed
        .groups
        .iter()
        .map(|g| {
            (
                g.group_id.0.as_str(),
                g.group_state.as_str(),
                g.group_type.as_str(),
            )
        })
        .collect();
    assert_eq!(states, [(GROUP, "Empty", "consumer")]);
    let stale = kip848_beat(&catalog, 1, &a.full_heartbeat(GROUP)).await;
    assert_eq!(stale.error_code, 25, "a member that left is unknown");
    let delete = DeleteGroupsRequest::default().with_groups_names(vec![group(GROUP)]);
    let deleted: DeleteGroupsResponse = call(&catalog, ApiKey::DeleteGroups, 2, &delete).await;
    assert_eq!(deleted.results[0].error_code, 0);
    saved_consumer_group(&path, GROUP, |record| record.is_none()).await;
    drop(catalog);

    let catalog = service(&path).await;
    let listed: ListGroupsResponse = call(
        &catalog,
        ApiKey::ListGroups,
        5,
        &ListGroupsRequest::default(),
    )
    .await;
    assert!(listed.groups.is_empty(), "{listed:?}");
    let fetch = OffsetFetchRequest::default()
        .with_group_id(group(GROUP))
        .with_topics(None);
    let fetched: OffsetFetchResponse = call(&catalog, ApiKey::OffsetFetch, 7, &fetch).await;
    assert!(fetched.topics.is_empty(), "the offsets went with the group");
}
