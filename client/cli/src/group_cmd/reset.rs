//! `strata group reset-offsets`, with Kafka's semantics: only for a group
//! without active members; targets come from ListOffsets and are clamped to
//! each partition's earliest..=latest range; the commit is an admin
//! OffsetCommit (generation -1, no member id).

use std::collections::BTreeMap;

use serde::Serialize;
use strata_client::{Client, Error, OffsetSpec, TopicPartition};

use super::{optional, table, to_json};
use crate::cli::{ResetOffsetsArgs, ResetTarget};

/// Where to move each offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
    /// Milliseconds since the Unix epoch.
    Datetime(i64),
}

impl ResetTo {
    fn from_args(target: &ResetTarget) -> Self {
        match (target.to_offset, target.to_datetime) {
            (Some(offset), _) => ResetTo::Offset(offset),
            (None, Some(ms)) => ResetTo::Datetime(ms),
            (None, None) if target.to_earliest => ResetTo::Earliest,
            // clap requires exactly one target, so this is --to-latest.
            (None, None) => ResetTo::Latest,
        }
    }
}

/// One row of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct OffsetChange {
    topic: String,
    partition: i32,
    old_offset: Option<i64>,
    new_offset: i64,
}

/// The JSON document of `reset-offsets`.
#[derive(Debug, Serialize)]
struct ResetReport<'a> {
    group: &'a str,
    dry_run: bool,
    offsets: &'a [OffsetChange],
}

/// Computes the new offsets, commits them unless `--dry-run`, and renders
/// the old and new offsets.
pub(super) async fn run(
    client: &mut Client,
    args: ResetOffsetsArgs,
    json: bool,
) -> anyhow::Result<String> {
    let group = args.group.as_str();
    let description = client.describe_group(group).await?;
    if !description.is_inactive() {
        return Err(Error::GroupActive {
            group: group.to_owned(),
            state: description.state,
            members: description.members.len(),
        }
        .into());
    }
    let partitions = match args.partition {
        Some(partition) => vec![TopicPartition::new(&args.topic, partition)],
        None => (client.partitions(&args.topic).await?)
            .into_iter()
            .map(|p| TopicPartition::new(&args.topic, p))
            .collect(),
    };
    let targets = targets(client, &partitions, ResetTo::from_args(&args.target)).await?;
    let committed = client.committed_offsets(group).await?;
    let changes = changes(&committed, &targets);
    if !args.dry_run {
        client.commit_offsets(group, &targets).await?;
    }
    if json {
        let report = ResetReport {
            group,
            dry_run: args.dry_run,
            offsets: &changes,
        };
        return to_json(&report);
    }
    Ok(render(group, &changes, args.dry_run))
}

/// The new offset of each partition.
async fn targets(
    client: &mut Client,
    partitions: &[TopicPartition],
    to: ResetTo,
) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let earliest = client
        .list_offsets(partitions, OffsetSpec::Earliest)
        .await?;
    let latest = client.list_offsets(partitions, OffsetSpec::Latest).await?;
    let at_time = match to {
        ResetTo::Datetime(ms) => {
            client
                .list_offsets(partitions, OffsetSpec::Timestamp(ms))
                .await?
        }
        _ => BTreeMap::new(),
    };
    Ok(partitions
        .iter()
        .map(|tp| {
            let earliest = earliest.get(tp).copied().flatten().unwrap_or(0);
            let latest = latest.get(tp).copied().flatten().unwrap_or(earliest);
            let at_time = at_time.get(tp).copied().flatten();
            (tp.clone(), target_offset(to, earliest, latest, at_time))
        })
        .collect())
}

/// Kafka's rule: the requested position, clamped into the partition's
/// range; a time after every record means the log end.
fn target_offset(to: ResetTo, earliest: i64, latest: i64, at_time: Option<i64>) -> i64 {
    let latest = latest.max(earliest);
    let wanted = match to {
        ResetTo::Earliest => earliest,
        ResetTo::Latest => latest,
        ResetTo::Offset(offset) => offset,
        ResetTo::Datetime(_) => at_time.unwrap_or(latest),
    };
    wanted.clamp(earliest, latest)
}

fn changes(
    committed: &BTreeMap<TopicPartition, i64>,
    targets: &BTreeMap<TopicPartition, i64>,
) -> Vec<OffsetChange> {
    targets
        .iter()
        .map(|(tp, &new_offset)| OffsetChange {
            topic: tp.topic.clone(),
            partition: tp.partition,
            old_offset: committed.get(tp).copied(),
            new_offset,
        })
        .collect()
}

fn render(group: &str, changes: &[OffsetChange], dry_run: bool) -> String {
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                c.topic.clone(),
                c.partition.to_string(),
                optional(c.old_offset),
                c.new_offset.to_string(),
            ]
        })
        .collect();
    let mut out = table::render(&["TOPIC", "PARTITION", "OLD OFFSET", "NEW OFFSET"], &rows);
    if dry_run {
        out.push_str("\nDry run: nothing was committed.\n");
    } else {
        let offsets = if changes.len() == 1 {
            "offset"
        } else {
            "offsets"
        };
        out.push_str(&format!(
            "\nCommitted {} {offsets} for group {group}.\n",
            changes.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_clamp_into_the_partition_range() {
        assert_eq!(target_offset(ResetTo::Earliest, 2, 9, None), 2);
        assert_eq!(target_offset(ResetTo::Latest, 2, 9, None), 9);
        assert_eq!(target_offset(ResetTo::Offset(5), 2, 9, None), 5);
        assert_eq!(target_offset(ResetTo::Offset(0), 2, 9, None), 2);
        assert_eq!(target_offset(ResetTo::Offset(100), 2, 9, None), 9);
        assert_eq!(target_offset(ResetTo::Datetime(0), 2, 9, Some(4)), 4);
        assert_eq!(target_offset(ResetTo::Datetime(0), 2, 9, None), 9);
    }

    #[test]
    fn old_offsets_are_absent_where_nothing_was_committed() {
        let t0 = TopicPartition::new("t", 0);
        let t1 = TopicPartition::new("t", 1);
        let committed = BTreeMap::from([(t0.clone(), 7)]);
        let targets = BTreeMap::from([(t0, 0), (t1, 0)]);
        let rows = changes(&committed, &targets);
        assert_eq!(rows[0].old_offset, Some(7));
        assert_eq!(rows[1].old_offset, None);
    }

    #[test]
    fn results_render_as_a_table_with_a_footer() {
        let rows = [OffsetChange {
            topic: "orders".to_owned(),
            partition: 0,
            old_offset: None,
            new_offset: 2,
        }];
        assert_eq!(
            render("g", &rows, true),
            "TOPIC   PARTITION  OLD OFFSET  NEW OFFSET\n\
             orders  0          -           2\n\
             \nDry run: nothing was committed.\n"
        );
        assert!(render("g", &rows, false).ends_with("Committed 1 offset for group g.\n"));
    }
}
