//! `strata group`: consumer-group administration over the Kafka protocol,
//! through the `strata_client` library. Output is aligned tables, or one
//! JSON document with `--json`.

mod datetime;
mod reset;
pub(crate) mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use anyhow::Context;
use serde::Serialize;
use strata_client::{
    Client, ClientConfig, GroupDescription, GroupListing, MemberDescription, OffsetSpec,
    TopicPartition,
};

pub(crate) use self::datetime::{format_datetime_ms, parse_datetime_ms};
use crate::cli::{GroupArgs, GroupCommand};

/// Runs one `strata group` subcommand and prints its result to stdout.
pub(crate) async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let mut client = Client::connect(ClientConfig::new(&args.bootstrap)).await?;
    let json = args.json;
    let output = match args.command {
        GroupCommand::List { state } => list(&mut client, &state, json).await?,
        GroupCommand::Describe { group } => describe(&mut client, &group, json).await?,
        GroupCommand::ResetOffsets(reset) => reset::run(&mut client, reset, json).await?,
        GroupCommand::Delete { group } => delete(&mut client, &group, json).await?,
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}

async fn list(client: &mut Client, states: &[String], json: bool) -> anyhow::Result<String> {
    let groups = client.list_groups(states).await?;
    if json {
        return to_json(&serde_json::json!({ "groups": groups }));
    }
    Ok(render_list(&groups))
}

fn render_list(groups: &[GroupListing]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.group_id.clone(),
                g.state.clone().unwrap_or_else(|| "-".to_owned()),
                or_dash(&g.protocol_type),
            ]
        })
        .collect();
    table::render(&["GROUP", "STATE", "PROTOCOL TYPE"], &rows)
}

/// One partition of `strata group describe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct PartitionLag {
    topic: String,
    partition: i32,
    committed_offset: Option<i64>,
    log_end_offset: Option<i64>,
    lag: Option<i64>,
    member_id: Option<String>,
}

/// The JSON document of `strata group describe`.
#[derive(Debug, Serialize)]
struct GroupReport {
    #[serde(flatten)]
    description: GroupDescription,
    offsets: Vec<PartitionLag>,
}

async fn describe(client: &mut Client, group: &str, json: bool) -> anyhow::Result<String> {
    let description = client.describe_group(group).await?;
    let committed = client.committed_offsets(group).await?;
    let partitions = partitions_of(&description, &committed);
    let log_ends = client.list_offsets(&partitions, OffsetSpec::Latest).await?;
    let offsets = partition_lags(&description.members, &committed, &log_ends);
    let report = GroupReport {
        description,
        offsets,
    };
    if json {
        return to_json(&report);
    }
    Ok(render_report(&report))
}

/// Every partition the group has committed or been assigned, in order.
fn partitions_of(
    description: &GroupDescription,
    committed: &BTreeMap<TopicPartition, i64>,
) -> Vec<TopicPartition> {
    let assigned = description.members.iter().flat_map(|m| &m.assignment);
    let all: BTreeSet<&TopicPartition> = committed.keys().chain(assigned).collect();
    all.into_iter().cloned().collect()
}

/// Committed offset, log end and lag per partition; the lag is only known
/// where both offsets are.
fn partition_lags(
    members: &[MemberDescription],
    committed: &BTreeMap<TopicPartition, i64>,
    log_ends: &BTreeMap<TopicPartition, Option<i64>>,
) -> Vec<PartitionLag> {
    log_ends
        .iter()
        .map(|(tp, &log_end)| {
            let committed = committed.get(tp).copied();
            PartitionLag {
                topic: tp.topic.clone(),
                partition: tp.partition,
                committed_offset: committed,
                log_end_offset: log_end,
                lag: committed.zip(log_end).map(|(c, end)| (end - c).max(0)),
                member_id: members
                    .iter()
                    .find(|m| m.assignment.contains(tp))
                    .map(|m| m.member_id.clone()),
            }
        })
        .collect()
}

fn render_report(report: &GroupReport) -> String {
    let d = &report.description;
    let protocol = match (d.protocol_type.as_str(), d.protocol.as_str()) {
        ("", "") => "-".to_owned(),
        (kind, "") => kind.to_owned(),
        (kind, name) => format!("{kind}/{name}"),
    };
    let mut out = format!(
        "Group:    {}\nState:    {}\nProtocol: {protocol}\nMembers:  {}\n\n",
        d.group_id,
        d.state,
        d.members.len()
    );
    if !d.members.is_empty() {
        out.push_str(&render_members(&d.members));
        out.push('\n');
    }
    if report.offsets.is_empty() {
        out.push_str("No committed offsets.\n");
    } else {
        out.push_str(&render_lags(&report.offsets));
    }
    out
}

fn render_members(members: &[MemberDescription]) -> String {
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            let assignment: Vec<String> = m
                .assignment
                .iter()
                .map(|tp| format!("{}-{}", tp.topic, tp.partition))
                .collect();
            vec![
                m.member_id.clone(),
                or_dash(&m.client_id),
                or_dash(&m.client_host),
                or_dash(&assignment.join(",")),
            ]
        })
        .collect();
    table::render(&["MEMBER ID", "CLIENT ID", "HOST", "ASSIGNMENT"], &rows)
}

fn render_lags(lags: &[PartitionLag]) -> String {
    let rows: Vec<Vec<String>> = lags
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                optional(p.committed_offset),
                optional(p.log_end_offset),
                optional(p.lag),
                p.member_id.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let headers = [
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "LOG END",
        "LAG",
        "MEMBER ID",
    ];
    table::render(&headers, &rows)
}

async fn delete(client: &mut Client, group: &str, json: bool) -> anyhow::Result<String> {
    client.delete_group(group).await?;
    if json {
        return to_json(&serde_json::json!({ "deleted": group }));
    }
    Ok(format!("Deleted group {group}.\n"))
}

fn to_json(value: &impl Serialize) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value).context("cannot render JSON")?;
    text.push('\n');
    Ok(text)
}

fn optional(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<GroupArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("strata").chain(args.iter().copied()))?;
        match cli.command {
            Command::Group(args) => Ok(args),
            other => panic!("not a group command: {other:?}"),
        }
    }

    #[test]
    fn bootstrap_and_json_are_accepted_after_the_subcommand() {
        let args = parse(&["group", "list", "--bootstrap", "h:1", "--json"]).expect("parses");
        assert_eq!(args.bootstrap, "h:1");
        assert!(args.json);
        assert!(matches!(args.command, GroupCommand::List { state } if state.is_empty()));
    }

    #[test]
    fn bootstrap_defaults_to_the_local_listener() {
        let args = parse(&["group", "describe", "g"]).expect("parses");
        assert_eq!(args.bootstrap, "127.0.0.1:9092");
        assert!(!args.json);
        assert!(matches!(args.command, GroupCommand::Describe { group } if group == "g"));
    }

    #[test]
    fn list_takes_states_repeated_or_comma_separated() {
        let args = parse(&[
            "group",
            "list",
            "--state",
            "Stable,Empty",
            "--state",
            "Dead",
        ])
        .expect("parses");
        let GroupCommand::List { state } = args.command else {
            panic!("not list")
        };
        assert_eq!(state, ["Stable", "Empty", "Dead"]);
    }

    #[test]
    fn reset_needs_exactly_one_target() {
        assert!(parse(&["group", "reset-offsets", "g", "--topic", "t"]).is_err());
        let both = [
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-earliest",
            "--to-latest",
        ];
        assert!(parse(&both).is_err());
        let args = parse(&[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--partition",
            "3",
            "--to-offset",
            "7",
            "--dry-run",
        ])
        .expect("parses");
        let GroupCommand::ResetOffsets(reset) = args.command else {
            panic!("not reset-offsets")
        };
        assert_eq!(
            (reset.partition, reset.target.to_offset),
            (Some(3), Some(7))
        );
        assert!(reset.dry_run);
    }

    #[test]
    fn reset_parses_datetimes_and_rejects_bad_ones() {
        let args = [
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-datetime",
        ];
        let ok = parse(&[&args[..], &["1970-01-01T00:00:01Z"]].concat()).expect("parses");
        let GroupCommand::ResetOffsets(reset) = ok.command else {
            panic!("not reset-offsets")
        };
        assert_eq!(reset.target.to_datetime, Some(1000));
        assert!(parse(&[&args[..], &["tomorrow"]].concat()).is_err());
    }

    #[test]
    fn delete_needs_a_group() {
        assert!(parse(&["group", "delete"]).is_err());
    }

    fn member(id: &str, assignment: &[TopicPartition]) -> MemberDescription {
        MemberDescription {
            member_id: id.to_owned(),
            group_instance_id: None,
            client_id: "c".to_owned(),
            client_host: "/10.0.0.1".to_owned(),
            assignment: assignment.to_vec(),
        }
    }

    #[test]
    fn lag_is_log_end_minus_committed_where_both_are_known() {
        let t0 = TopicPartition::new("t", 0);
        let t1 = TopicPartition::new("t", 1);
        let committed = BTreeMap::from([(t0.clone(), 3)]);
        let log_ends = BTreeMap::from([(t0.clone(), Some(5)), (t1.clone(), Some(9))]);
        let lags = partition_lags(&[member("m1", &[t1])], &committed, &log_ends);
        assert_eq!(lags[0].lag, Some(2));
        assert_eq!(lags[0].member_id, None);
        assert_eq!(lags[1].committed_offset, None);
        assert_eq!(lags[1].lag, None);
        assert_eq!(lags[1].member_id.as_deref(), Some("m1"));
    }

    #[test]
    fn describe_renders_members_and_offsets_as_tables() {
        let t0 = TopicPartition::new("orders", 0);
        let report = GroupReport {
            description: GroupDescription {
                group_id: "g".to_owned(),
                state: "Stable".to_owned(),
                protocol_type: "consumer".to_owned(),
                protocol: "range".to_owned(),
                members: vec![member("m1", std::slice::from_ref(&t0))],
            },
            offsets: vec![PartitionLag {
                topic: "orders".to_owned(),
                partition: 0,
                committed_offset: Some(3),
                log_end_offset: Some(5),
                lag: Some(2),
                member_id: Some("m1".to_owned()),
            }],
        };
        let text = render_report(&report);
        assert_eq!(
            text,
            "Group:    g\nState:    Stable\nProtocol: consumer/range\nMembers:  1\n\n\
             MEMBER ID  CLIENT ID  HOST       ASSIGNMENT\n\
             m1         c          /10.0.0.1  orders-0\n\n\
             TOPIC   PARTITION  COMMITTED  LOG END  LAG  MEMBER ID\n\
             orders  0          3          5        2    m1\n"
        );
    }

    #[test]
    fn list_renders_missing_values_as_dashes() {
        let groups = [GroupListing {
            group_id: "g".to_owned(),
            protocol_type: String::new(),
            state: None,
        }];
        assert_eq!(
            render_list(&groups),
            "GROUP  STATE  PROTOCOL TYPE\ng      -      -\n"
        );
    }
}
