//! Goal: `strata group list/describe/reset-offsets/delete` follow Kafka's
//! semantics against a real broker: describe shows committed offsets, log
//! end offsets and lag; reset moves offsets to the earliest, a given offset
//! (clamped), a time or the latest, and a dry run changes nothing; reset is
//! refused while the group has a member; delete removes the group.
//! Method: start the real `strata dev` binary on free ports and a temp dir,
//! create a topic and produce and commit through the `strata_client`
//! library, then run the `strata group` subcommands as subprocesses with
//! `--json` and check their documents (and, for failures, their stderr).

#![expect(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

mod common;

use common::{Server, start};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolSubscription, GroupId, JoinGroupRequest, JoinGroupResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use serde_json::Value;
use strata_client::{Client, ClientConfig, ProducerRecord, TopicPartition};

const TOPIC: &str = "orders";
const GROUP: &str = "billing";

/// What one `strata group ...` run printed.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The JSON document of a run that must have succeeded.
    fn json(&self) -> Value {
        assert!(self.success, "strata group failed: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

fn strata_group(server: &Server, args: &[&str]) -> Run {
    let output = Command::new(common::strata_bin())
        .arg("group")
        .args(args)
        .args(["--bootstrap", &server.address, "--json"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run strata group");
    Run {
        success: output.status.success(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Partition → (committed offset, log end offset, lag) from `describe`.
type Offsets = BTreeMap<i64, (Option<i64>, Option<i64>, Option<i64>)>;

fn describe(server: &Server, group: &str) -> (Value, Offsets) {
    let document = strata_group(server, &["describe", group]).json();
    let offsets = document["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["topic"], TOPIC);
            (
                p["partition"].as_i64().unwrap(),
                (
                    p["committed_offset"].as_i64(),
                    p["log_end_offset"].as_i64(),
                    p["lag"].as_i64(),
                ),
            )
        })
        .collect();
    (document, offsets)
}

/// `reset-offsets` output as partition → (old offset, new offset).
fn reset(server: &Server, args: &[&str]) -> BTreeMap<i64, (Option<i64>, i64)> {
    let mut all = vec!["reset-offsets", GROUP, "--topic", TOPIC];
    all.extend_from_slice(args);
    let document = strata_group(server, &all).json();
    assert_eq!(document["group"], GROUP);
    assert_eq!(document["dry_run"], args.contains(&"--dry-run"));
    document["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                (p["old_offset"].as_i64(), p["new_offset"].as_i64().unwrap()),
            )
        })
        .collect()
}

fn committed(server: &Server) -> Vec<Option<i64>> {
    describe(server, GROUP).1.values().map(|o| o.0).collect()
}

fn group_ids(server: &Server) -> Vec<String> {
    let document = strata_group(server, &["list"]).json();
    document["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Partition 0 gets 5 records, partition 1 gets 3; record `i` of each has
/// timestamp `(i + 1) * 1000` ms. Then the group commits 4 and 1.
async fn set_up(server: &Server) {
    let mut client = Client::connect(ClientConfig::new(&server.address))
        .await
        .unwrap();
    client.create_topic(TOPIC, 2).await.unwrap();
    for (partition, count) in [(0, 5), (1, 3)] {
        let records: Vec<ProducerRecord> = (0..count)
            .map(|i| ProducerRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                timestamp_ms: (i + 1) * 1000,
            })
            .collect();
        let base = client.produce(TOPIC, partition, &records).await.unwrap();
        assert_eq!(base, 0);
    }
    let offsets = BTreeMap::from([
        (TopicPartition::new(TOPIC, 0), 4),
        (TopicPartition::new(TOPIC, 1), 1),
    ]);
    client.commit_offsets(GROUP, &offsets).await.unwrap();
    assert_eq!(client.committed_offsets(GROUP).await.unwrap(), offsets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commands_follow_kafka_semantics() {
    let server = start();
    set_up(&server).await;

    // list and describe.
    assert!(group_ids(&server).contains(&GROUP.to_owned()));
    let (document, offsets) = describe(&server, GROUP);
    assert_eq!(document["group_id"], GROUP);
    assert_eq!(document["state"], "Empty");
    assert_eq!(document["members"], serde_json::json!([]));
    let expected: Offsets = BTreeMap::from([
        (0, (Some(4), Some(5), Some(1))),
        (1, (Some(1), Some(3), Some(2))),
    ]);
    assert_eq!(offsets, expected);

    // A dry run reports the plan and changes nothing.
    let plan = reset(&server, &["--to-earliest", "--dry-run"]);
    assert_eq!(plan, BTreeMap::from([(0, (Some(4), 0)), (1, (Some(1), 0))]));
    assert_eq!(committed(&server), [Some(4), Some(1)]);

    let done = reset(&server, &["--to-earliest"]);
    assert_eq!(done, plan);
    assert_eq!(committed(&server), [Some(0), Some(0)]);

    // One partition, to an offset.
    let done = reset(&server, &["--partition", "0", "--to-offset", "2"]);
    assert_eq!(done, BTreeMap::from([(0, (Some(0), 2))]));
    assert_eq!(committed(&server), [Some(2), Some(0)]);

    // Offsets past the log end are clamped to it.
    let done = reset(&server, &["--to-offset", "100"]);
    assert_eq!(done, BTreeMap::from([(0, (Some(2), 5)), (1, (Some(0), 3))]));

    // By time: the first record at or after 3 s is offset 2 in both.
    let done = reset(&server, &["--to-datetime", "1970-01-01T00:00:03Z"]);
    assert_eq!(done, BTreeMap::from([(0, (Some(5), 2)), (1, (Some(3), 2))]));
    let done = reset(&server, &["--partition", "1", "--to-latest"]);
    assert_eq!(done, BTreeMap::from([(1, (Some(2), 3))]));
    assert_eq!(committed(&server), [Some(2), Some(3)]);

    // delete removes the group; deleting it again names the Kafka error.
    let deleted = strata_group(&server, &["delete", GROUP]).json();
    assert_eq!(deleted, serde_json::json!({ "deleted": GROUP }));
    assert!(!group_ids(&server).contains(&GROUP.to_owned()));
    let again = strata_group(&server, &["delete", GROUP]);
    assert!(!again.success);
    assert!(
        again.stderr.contains("GROUP_ID_NOT_FOUND"),
        "{}",
        again.stderr
    );
    assert!(
        again.stderr.contains("strata group list"),
        "{}",
        again.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_of_an_active_group_cannot_be_reset() {
    let server = start();
    set_up(&server).await;
    let _member = join_group(&server.address, GROUP);

    let (document, _) = describe(&server, GROUP);
    assert_eq!(document["members"].as_array().unwrap().len(), 1);
    let refused = strata_group(
        &server,
        &["reset-offsets", GROUP, "--topic", TOPIC, "--to-earliest"],
    );
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("group billing is active")
            && refused.stderr.contains("stop its consumers first"),
        "{}",
        refused.stderr
    );
    assert_eq!(committed(&server), [Some(4), Some(1)]);
    let delete = strata_group(&server, &["delete", GROUP]);
    assert!(!delete.success);
    assert!(
        delete.stderr.contains("NON_EMPTY_GROUP"),
        "{}",
        delete.stderr
    );
}

/// Joins `group` as a consumer subscribed to the topic (JoinGroup v3, which
/// needs no second round for a member id) and returns the connection,
/// which keeps the member alive for its 30 s session.
fn join_group(address: &str, group: &str) -> TcpStream {
    let mut subscription = BytesMut::new();
    subscription.put_i16(0);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str(TOPIC)])
        .encode(&mut subscription, 0)
        .unwrap();
    let request = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(subscription.freeze()),
        ]);
    let version = 3;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::JoinGroup as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("group-cli-test")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, ApiKey::JoinGroup.request_header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(&i32::try_from(body.len()).unwrap().to_be_bytes())
        .unwrap();
    stream.write_all(&body).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut response = vec![0u8; usize::try_from(i32::from_be_bytes(size)).unwrap()];
    stream.read_exact(&mut response).unwrap();
    let mut response = Bytes::from(response);
    ResponseHeader::decode(
        &mut response,
        ApiKey::JoinGroup.response_header_version(version),
    )
    .unwrap();
    let joined = JoinGroupResponse::decode(&mut response, version).unwrap();
    assert_eq!(joined.error_code, 0, "JoinGroup failed");
    stream
}
