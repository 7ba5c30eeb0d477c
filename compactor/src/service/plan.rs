//! What to do with a partition, decided from its chunks alone: which run
//! of segment chunks to compact next, and where retention moves the log
//! start. Pure functions, so every rule is unit-tested without a catalog.

use strata_catalog_api::proto::{Chunk, ChunkFormat, Topic};
use strata_catalog_api::topic_config;

/// The topic configs the compactor obeys, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TopicPolicy {
    /// `strata.compaction.age.ms`: segments younger than this stay.
    pub(crate) compaction_age_ms: i64,
    /// `retention.ms`; negative = forever.
    pub(crate) retention_ms: i64,
    /// `retention.bytes`; negative = unbounded.
    pub(crate) retention_bytes: i64,
    /// Whether `cleanup.policy` includes `delete`: only then do
    /// `retention.ms` and `retention.bytes` apply. A compact-only topic
    /// keeps every key's latest value forever, as in Kafka.
    pub(crate) retention_deletes: bool,
}

impl TopicPolicy {
    /// The topic's explicit configs over the registry's defaults.
    pub(crate) fn of(topic: &Topic) -> Self {
        let value = |name: &str| -> i64 {
            let explicit = topic
                .configs
                .iter()
                .find(|entry| entry.name == name)
                .map(|entry| entry.value.as_str());
            explicit
                .or_else(|| topic_config::default_value(name))
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(-1)
        };
        let cleanup_policy = topic
            .configs
            .iter()
            .find(|entry| entry.name == "cleanup.policy")
            .map(|entry| entry.value.as_str())
            .or_else(|| topic_config::default_value("cleanup.policy"))
            .unwrap_or("delete");
        Self {
            compaction_age_ms: value("strata.compaction.age.ms"),
            retention_ms: value("retention.ms"),
            retention_bytes: value("retention.bytes"),
            retention_deletes: policy_deletes(cleanup_policy),
        }
    }
}

/// Whether a `cleanup.policy` value (`delete`, `compact`, or both
/// comma-separated in any order, as Kafka accepts) includes `delete`.
pub(crate) fn policy_deletes(cleanup_policy: &str) -> bool {
    cleanup_policy
        .split(',')
        .any(|part| part.trim().eq_ignore_ascii_case("delete"))
}

/// When a segment chunk was written: the timestamp of the segment's ULID
/// (`.../segments/<2 hex>/<ULID>.seg`), i.e. the agent's clock at flush.
///
/// The write time, not the records' `max_timestamp`, decides a segment's
/// age: producers set CreateTime freely (old replays, clocks in the
/// future), while compaction age is about how long data has sat in small
/// objects. Keys that are not ULIDs (written by other tools) fall back to
/// the chunk's `max_timestamp`.
pub(crate) fn written_ms(chunk: &Chunk) -> i64 {
    let name = chunk.object_key.rsplit('/').next().unwrap_or_default();
    let stem = name.strip_suffix(".seg").unwrap_or(name);
    match ulid::Ulid::from_string(stem) {
        Ok(id) => i64::try_from(id.timestamp_ms()).unwrap_or(i64::MAX),
        Err(_) => chunk.max_timestamp,
    }
}

/// Only segment chunks are compacted: Parquet chunks are done, and
/// transaction markers (no object) end a run.
fn is_segment(chunk: &Chunk) -> bool {
    chunk.format == ChunkFormat::Segment as i32
}

/// The next run to compact among `chunks` (a partition's chunks in offset
/// order): skip Parquet chunks, then take consecutive, contiguous segment
/// chunks written at least `age_ms` before `now_ms`, until their stored
/// bytes reach `target_bytes` (at least one chunk). Empty when nothing is
/// old enough.
pub(crate) fn next_run(chunks: &[Chunk], now_ms: i64, age_ms: i64, target_bytes: u64) -> &[Chunk] {
    let old_enough = |chunk: &Chunk| written_ms(chunk) <= now_ms.saturating_sub(age_ms);
    let Some(start) = chunks.iter().position(is_segment) else {
        return &[];
    };
    let mut end = start;
    let mut bytes = 0_u64;
    while let Some(chunk) = chunks.get(end) {
        let contiguous = end == start || chunks[end - 1].end_offset == chunk.base_offset;
        if !is_segment(chunk) || !old_enough(chunk) || !contiguous {
            break;
        }
        if end > start && bytes.saturating_add(chunk.length) > target_bytes {
            break;
        }
        bytes = bytes.saturating_add(chunk.length);
        end += 1;
    }
    &chunks[start..end]
}

/// Where retention moves the log start, if anywhere (only for a topic
/// whose `cleanup.policy` includes `delete`): past the leading
/// chunks whose `max_timestamp` is older than `retention_ms`, and past the
/// leading chunks whose removal leaves at least `retention_bytes` (sum of
/// chunk lengths), as Kafka deletes whole segments. Never past
/// `high_watermark`; `None` when the log start stays at `log_start`.
///
/// `chunks` must be all of the partition's chunks from its log start.
pub(crate) fn retention_target(
    chunks: &[Chunk],
    policy: TopicPolicy,
    now_ms: i64,
    log_start: i64,
    high_watermark: i64,
) -> Option<i64> {
    if !policy.retention_deletes {
        return None;
    }
    let mut dropped = 0;
    if policy.retention_ms >= 0 {
        let cutoff = now_ms.saturating_sub(policy.retention_ms);
        dropped = chunks
            .iter()
            .take_while(|chunk| chunk.max_timestamp < cutoff)
            .count();
    }
    if policy.retention_bytes >= 0 {
        let limit = u64::try_from(policy.retention_bytes).unwrap_or(0);
        let mut remaining: u64 = chunks[dropped..].iter().map(|c| c.length).sum();
        while let Some(chunk) = chunks.get(dropped) {
            let after = remaining.saturating_sub(chunk.length);
            if after < limit {
                break;
            }
            remaining = after;
            dropped += 1;
        }
    }
    let target = chunks[..dropped].last()?.end_offset.min(high_watermark);
    (target > log_start).then_some(target)
}

#[cfg(test)]
mod tests {
    use strata_catalog_api::proto::TopicConfigEntry;

    use super::*;

    fn chunk(base: i64, end: i64, key: &str, length: u64, max_timestamp: i64) -> Chunk {
        Chunk {
            base_offset: base,
            end_offset: end,
            object_key: key.to_string(),
            length,
            max_timestamp,
            format: ChunkFormat::Segment as i32,
            ..Chunk::default()
        }
    }

    fn segment(base: i64, end: i64, written_ms: u64, length: u64) -> Chunk {
        let id = ulid::Ulid::from_parts(written_ms, 7);
        chunk(base, end, &format!("p/segments/ab/{id}.seg"), length, 0)
    }

    fn parquet(base: i64, end: i64) -> Chunk {
        Chunk {
            format: ChunkFormat::Parquet as i32,
            ..chunk(base, end, "parquet/t/0/x.parquet", 10, 0)
        }
    }

    #[test]
    fn transaction_markers_end_a_run() {
        let marker = Chunk {
            format: ChunkFormat::Marker as i32,
            ..chunk(20, 21, "", 78, 0)
        };
        let chunks = [segment(10, 20, 100, 5), marker, segment(21, 30, 100, 5)];
        let run = next_run(&chunks, 10_000, 1_000, 1 << 20);
        assert_eq!(run, &chunks[..1]);
        // A run never starts at a marker either.
        let run = next_run(&chunks[1..], 10_000, 1_000, 1 << 20);
        assert_eq!(run, &chunks[2..]);
    }

    #[test]
    fn a_segment_is_as_old_as_its_ulid() {
        let id = ulid::Ulid::from_string("0000000001ZZZZZZZZZZZZZZZZ").expect("valid ULID");
        assert_eq!(id.timestamp_ms(), 1);
        assert_eq!(written_ms(&segment(0, 1, 1_234, 1)), 1_234);
        assert_eq!(written_ms(&chunk(0, 1, "segments/00/s1.seg", 1, 99)), 99);
    }

    #[test]
    fn the_run_starts_after_parquet_and_stops_at_young_segments() {
        let chunks = [
            parquet(0, 10),
            segment(10, 20, 100, 5),
            segment(20, 30, 200, 5),
            segment(30, 40, 900, 5),
        ];
        let run = next_run(&chunks, 1_000, 500, u64::MAX);
        assert_eq!(
            run.iter().map(|c| c.base_offset).collect::<Vec<_>>(),
            [10, 20]
        );
        assert!(next_run(&chunks, 1_000, 950, u64::MAX).is_empty());
        assert!(next_run(&chunks[..1], 1_000, 0, u64::MAX).is_empty());
    }

    #[test]
    fn the_run_stops_at_the_target_size_but_takes_one_chunk_at_least() {
        let chunks = [
            segment(0, 10, 1, 60),
            segment(10, 20, 1, 60),
            segment(20, 30, 1, 60),
        ];
        assert_eq!(next_run(&chunks, 10, 0, 130).len(), 2);
        assert_eq!(next_run(&chunks, 10, 0, 10).len(), 1);
    }

    #[test]
    fn the_run_stops_at_a_gap_or_a_parquet_chunk() {
        let gap = [segment(0, 10, 1, 1), segment(11, 20, 1, 1)];
        assert_eq!(next_run(&gap, 10, 0, u64::MAX).len(), 1);
        let mixed = [segment(0, 10, 1, 1), parquet(10, 20), segment(20, 30, 1, 1)];
        assert_eq!(next_run(&mixed, 10, 0, u64::MAX).len(), 1);
    }

    fn policy(retention_ms: i64, retention_bytes: i64) -> TopicPolicy {
        TopicPolicy {
            compaction_age_ms: 0,
            retention_ms,
            retention_bytes,
            retention_deletes: true,
        }
    }

    #[test]
    fn only_a_delete_policy_trims() {
        let chunks = [segment(0, 10, 100, 1), segment(10, 20, 100, 1)];
        let compact_only = TopicPolicy {
            retention_deletes: false,
            ..policy(0, 0)
        };
        assert_eq!(retention_target(&chunks, compact_only, 1_000, 0, 20), None);
        assert_eq!(
            retention_target(&chunks, policy(0, 0), 1_000, 0, 20),
            Some(20)
        );
        for (value, deletes) in [
            ("delete", true),
            ("compact", false),
            ("compact,delete", true),
            ("delete,compact", true),
            (" Compact , Delete ", true),
        ] {
            assert_eq!(policy_deletes(value), deletes, "{value}");
        }
    }

    #[test]
    fn retention_by_time_drops_leading_expired_chunks_only() {
        let chunks = [
            chunk(0, 10, "a", 1, 100),
            chunk(10, 20, "b", 1, 500),
            chunk(20, 30, "c", 1, 100),
        ];
        assert_eq!(
            retention_target(&chunks, policy(600, -1), 1_000, 0, 30),
            Some(10)
        );
        assert_eq!(
            retention_target(&chunks, policy(100, -1), 1_000, 0, 30),
            Some(30)
        );
        assert_eq!(
            retention_target(&chunks, policy(-1, -1), 1_000, 0, 30),
            None
        );
        // Already there: nothing to do.
        assert_eq!(
            retention_target(&chunks, policy(600, -1), 1_000, 10, 30),
            None
        );
    }

    #[test]
    fn retention_by_size_keeps_at_least_the_limit() {
        let chunks = [
            chunk(0, 10, "a", 100, 0),
            chunk(10, 20, "b", 100, 0),
            chunk(20, 30, "c", 100, 0),
        ];
        let at = |bytes| retention_target(&chunks, policy(-1, bytes), 0, 0, 30);
        assert_eq!(at(200), Some(10));
        assert_eq!(at(150), Some(10));
        assert_eq!(at(100), Some(20));
        assert_eq!(at(0), Some(30));
        assert_eq!(at(300), None);
    }

    #[test]
    fn retention_never_passes_the_high_watermark() {
        let chunks = [chunk(0, 10, "a", 100, 0)];
        assert_eq!(
            retention_target(&chunks, policy(0, -1), 1_000, 0, 5),
            Some(5)
        );
    }

    #[test]
    fn topic_configs_override_defaults() {
        let topic = Topic {
            configs: vec![TopicConfigEntry {
                name: "retention.bytes".into(),
                value: "1000".into(),
            }],
            ..Topic::default()
        };
        let policy = TopicPolicy::of(&topic);
        assert_eq!(policy.retention_bytes, 1000);
        assert_eq!(policy.retention_ms, 604_800_000);
        assert_eq!(policy.compaction_age_ms, 3_600_000);
    }
}
