//! Key compaction of topics whose `cleanup.policy` includes `compact`
//! (docs/rfcs/0005-key-compaction.md): the latest record per key is kept
//! at its offset, older ones are removed, tombstones go after
//! `delete.retention.ms`, aborted transactions go.
//!
//! The cleanable range is the partition's leading Parquet and marker
//! chunks, up to the first segment chunk, the last stable offset, or the
//! first Parquet chunk younger than `min.compaction.lag.ms`. Its files
//! named `*.compacted.parquet` are clean, the others dirty. A pass is due
//! when dirty bytes reach `min.cleanable.dirty.ratio` of the range, or the
//! oldest dirty file is older than `max.compaction.lag.ms`. Then the dirty
//! files' keys go into a bounded map, and every file of the range is
//! rewritten, in groups of up to the target file size between transaction
//! markers, each group swapped in with the same compare-and-swap as the
//! Parquet rewrite.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use strata_catalog_api::proto::{Chunk, ChunkFormat, GetPartitionOffsetsRequest, Topic};
use strata_catalog_api::topic_config;
use strata_parquet::{
    CompactedFileWriter, Horizon, KEY_MAP_COLUMNS, KeyMap, PartitionInfo, TxnOutcomes,
    WriteSummary, read_row_groups, retain_latest,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Compactor, CompactorMetrics, PassReport, ServiceError, Swap};

/// How the object key of a key-compacted file ends: the planner tells
/// clean files from dirty ones by it, without reading them.
pub(crate) const COMPACTED_SUFFIX: &str = ".compacted.parquet";

/// The key compaction configs of a compacted topic, defaults applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct KeyPolicy {
    /// `min.compaction.lag.ms`: newer records are not compacted.
    pub(crate) min_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty file older than this forces a pass.
    pub(crate) max_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`.
    pub(crate) min_dirty_ratio: f64,
    /// `delete.retention.ms`: how long a tombstone stays once compacted.
    pub(crate) delete_retention_ms: i64,
}

impl KeyPolicy {
    /// The topic's policy, or `None` unless its `cleanup.policy` includes
    /// `compact`.
    pub(crate) fn of(topic: &Topic) -> Option<Self> {
        let value = |name: &str| {
            topic
                .configs
                .iter()
                .find(|entry| entry.name == name)
                .map(|entry| entry.value.as_str())
                .or_else(|| topic_config::default_value(name))
                .unwrap_or_default()
                .trim()
        };
        let compacts = value("cleanup.policy")
            .split(',')
            .any(|part| part.trim().eq_ignore_ascii_case("compact"));
        let long = |name: &str, default: i64| value(name).parse().unwrap_or(default);
        compacts.then(|| Self {
            min_lag_ms: long("min.compaction.lag.ms", 0),
            max_lag_ms: long("max.compaction.lag.ms", i64::MAX),
            min_dirty_ratio: value("min.cleanable.dirty.ratio").parse().unwrap_or(0.5),
            delete_retention_ms: long("delete.retention.ms", 86_400_000),
        })
    }
}

fn is_parquet(chunk: &Chunk) -> bool {
    chunk.format == ChunkFormat::Parquet as i32
}

fn is_marker(chunk: &Chunk) -> bool {
    chunk.format == ChunkFormat::Marker as i32
}

/// Whether a chunk is a key-compacted file.
pub(crate) fn is_clean(chunk: &Chunk) -> bool {
    is_parquet(chunk) && chunk.object_key.ends_with(COMPACTED_SUFFIX)
}

/// The cleanable range of `chunks` (a partition's, from its log start):
/// the leading contiguous Parquet and marker chunks that end at or before
/// `last_stable_offset`, stopping at a Parquet chunk whose records are
/// younger than `min_lag_ms` (by their greatest timestamp, as Kafka
/// judges a segment). Trailing markers are left out.
pub(crate) fn cleanable(
    chunks: &[Chunk],
    now_ms: i64,
    min_lag_ms: i64,
    last_stable_offset: i64,
) -> &[Chunk] {
    let mut end = 0;
    let mut taken = 0;
    while let Some(chunk) = chunks.get(taken) {
        let contiguous = taken == 0 || chunks[taken - 1].end_offset == chunk.base_offset;
        let old_enough = chunk.max_timestamp <= now_ms.saturating_sub(min_lag_ms);
        let usable = is_marker(chunk) || (is_parquet(chunk) && old_enough);
        if !contiguous || !usable || chunk.end_offset > last_stable_offset {
            break;
        }
        taken += 1;
        if is_parquet(chunk) {
            end = taken;
        }
    }
    &chunks[..end]
}

/// Whether `range` needs a pass: it has a dirty file, and dirty bytes are
/// at least `min_dirty_ratio` of all, or a dirty file is older than
/// `max_lag_ms`.
pub(crate) fn is_due(range: &[Chunk], now_ms: i64, policy: KeyPolicy) -> bool {
    let files = range.iter().filter(|chunk| is_parquet(chunk));
    let (mut dirty, mut total) = (0_u64, 0_u64);
    let mut oldest_dirty = i64::MAX;
    for chunk in files {
        total = total.saturating_add(chunk.length);
        if !is_clean(chunk) {
            dirty = dirty.saturating_add(chunk.length);
            oldest_dirty = oldest_dirty.min(chunk.max_timestamp);
        }
    }
    if oldest_dirty == i64::MAX {
        return false;
    }
    let ratio = dirty as f64 / total.max(1) as f64;
    ratio >= policy.min_dirty_ratio || oldest_dirty <= now_ms.saturating_sub(policy.max_lag_ms)
}

/// The output files of a pass over `range`: runs of Parquet chunks between
/// markers, cut greedily so the inputs of one file stay within
/// `target_bytes` (one chunk at least).
pub(crate) fn groups(range: &[Chunk], target_bytes: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None::<usize>;
    let mut bytes = 0_u64;
    for (index, chunk) in range.iter().enumerate() {
        if !is_parquet(chunk) {
            if let Some(first) = start.take() {
                out.push(first..index);
            }
            continue;
        }
        match start {
            Some(first) if bytes.saturating_add(chunk.length) > target_bytes => {
                out.push(first..index);
                start = Some(index);
                bytes = chunk.length;
            }
            Some(_) => bytes = bytes.saturating_add(chunk.length),
            None => {
                start = Some(index);
                bytes = chunk.length;
            }
        }
    }
    if let Some(first) = start {
        out.push(first..range.len());
    }
    out
}

/// The outcomes of the transactions whose markers lie in `chunks`.
fn outcomes(chunks: &[Chunk]) -> TxnOutcomes {
    let mut txns = TxnOutcomes::default();
    for chunk in chunks.iter().filter(|chunk| is_marker(chunk)) {
        if let Some(marker) = &chunk.marker {
            txns.add_marker(marker.producer_id, chunk.base_offset, marker.commit);
        }
    }
    txns
}

/// What rewriting a group did.
#[derive(Debug, Default)]
struct GroupStats {
    removed: u64,
    horizons_set: u64,
}

impl Compactor {
    /// One key compaction pass over a compacted topic's partition, when due.
    pub(super) async fn key_compact(
        &self,
        info: &PartitionInfo,
        topic: &Topic,
        policy: KeyPolicy,
        lost: &CancellationToken,
        report: &mut PassReport,
    ) -> Result<(), ServiceError> {
        let partition = u32::try_from(info.partition).unwrap_or(0);
        let Some(listed) = self.list_chunks(topic, partition).await? else {
            return Ok(());
        };
        let offsets = self
            .catalog
            .get_partition_offsets(GetPartitionOffsetsRequest {
                topic_id: topic.topic_id.clone(),
                partition,
            })
            .await?;
        if offsets.error_code != 0 {
            return Ok(());
        }
        let now_ms = self.clock.now_ms();
        let range = cleanable(
            &listed.chunks,
            now_ms,
            policy.min_lag_ms,
            offsets.last_stable_offset,
        );
        if !is_due(range, now_ms, policy) {
            return Ok(());
        }
        // Every marker of the partition, not only the range's: a marker
        // past the range (the commit right after the range's last file)
        // still decides the records in it, and the range ends at the last
        // stable offset, so each of its transactions has its marker here.
        let txns = Arc::new(outcomes(&listed.chunks));
        let Some((map, end)) = self.key_map(range, &txns).await? else {
            warn!(
                topic = %info.topic, partition = info.partition,
                keys_max = self.config.key_compaction_keys_max,
                "a dirty file holds more distinct keys than the key map takes; raise --key-compaction-keys-max"
            );
            CompactorMetrics::add(&self.metrics.key_map_full, 1);
            return Ok(());
        };
        let range = &range[..end];
        let map = Arc::new(map);
        let horizon = Horizon {
            now_ms,
            delete_retention_ms: policy.delete_retention_ms,
        };
        for group in groups(range, self.config.target_file_bytes) {
            if lost.is_cancelled() {
                return Ok(());
            }
            let group = &range[group];
            // Before the file is named and written, on the compactor's clock.
            let created_ms = self.clock.now_ms();
            let written = self
                .rewrite_group(info, group, Arc::clone(&map), Arc::clone(&txns), horizon)
                .await?;
            let Some((key, summary, stats)) = written else {
                continue;
            };
            match self
                .install(info, topic, group, (&key, created_ms), &summary, lost)
                .await?
            {
                Swap::Done => {}
                Swap::Conflict => {
                    report.swap_conflicts += 1;
                    return Ok(());
                }
                Swap::Gone => return Ok(()),
            }
            report.files_swapped += 1;
            let m = &self.metrics;
            CompactorMetrics::add(&m.swaps_ok, 1);
            CompactorMetrics::add(&m.key_compaction_files, 1);
            CompactorMetrics::add(&m.key_compaction_input_bytes, summary.input_bytes);
            CompactorMetrics::add(&m.key_compaction_output_bytes, summary.file_bytes);
            CompactorMetrics::add(&m.key_compaction_records_removed, stats.removed);
            info!(
                file = %key,
                files = group.iter().filter(|c| is_parquet(c)).count(),
                records = summary.record_count,
                removed = stats.removed,
                tombstone_horizons = stats.horizons_set,
                input_bytes = summary.input_bytes,
                file_bytes = summary.file_bytes,
                "key-compacted"
            );
        }
        Ok(())
    }

    /// The key map of `range`'s dirty files, and how many chunks of the
    /// range it covers (all, or up to the file where it filled). `None`
    /// when not even the first dirty file fits.
    async fn key_map(
        &self,
        range: &[Chunk],
        txns: &Arc<TxnOutcomes>,
    ) -> Result<Option<(KeyMap, usize)>, ServiceError> {
        let mut map = KeyMap::new(self.config.key_compaction_keys_max);
        let mut first_dirty = None;
        for (index, chunk) in range.iter().enumerate() {
            if !is_parquet(chunk) || is_clean(chunk) {
                continue;
            }
            first_dirty.get_or_insert(index);
            let file = self.read_file(chunk).await?;
            let txns = Arc::clone(txns);
            let (returned, fit) = tokio::task::spawn_blocking(move || {
                let mut fit = true;
                let (_, groups) = read_row_groups(file, Some(KEY_MAP_COLUMNS))?;
                for rows in groups {
                    fit = fit && map.add_rows(&rows?, &txns)?;
                }
                Ok::<_, strata_parquet::Error>((map, fit))
            })
            .await
            .map_err(|_| ServiceError::EncoderPanicked)??;
            map = returned;
            if !fit {
                // Records of this file that made it into the map still
                // shadow older ones: they exist, past the range cleaned.
                return Ok((Some(index) > first_dirty).then_some((map, index)));
            }
        }
        Ok(Some((map, range.len())))
    }

    async fn read_file(&self, chunk: &Chunk) -> Result<Bytes, ServiceError> {
        let path = Path::from(chunk.object_key.as_str());
        Ok(self.store.get(&path).await?.bytes().await?)
    }

    /// Writes the kept rows of `group` as one file and uploads it; `None`
    /// when the group is one clean file that would not change.
    async fn rewrite_group(
        &self,
        info: &PartitionInfo,
        group: &[Chunk],
        map: Arc<KeyMap>,
        txns: Arc<TxnOutcomes>,
        horizon: Horizon,
    ) -> Result<Option<(Path, WriteSummary, GroupStats)>, ServiceError> {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            return Ok(None);
        };
        let (base_offset, last_offset) = (first.base_offset, last.end_offset - 1);
        let mut writer = CompactedFileWriter::new(
            Vec::new(),
            info.clone(),
            self.config.write.clone(),
            base_offset,
            last_offset,
        )?;
        let mut stats = GroupStats::default();
        for chunk in group {
            let file = self.read_file(chunk).await?;
            let (map, txns) = (Arc::clone(&map), Arc::clone(&txns));
            let input_bytes = file.len() as u64;
            let (returned, removed, horizons) = tokio::task::spawn_blocking(move || {
                let (mut removed, mut horizons) = (0, 0);
                let (_, groups) = read_row_groups(file, None)?;
                for rows in groups {
                    let retained = retain_latest(&rows?, &map, &txns, last_offset, horizon)?;
                    removed += retained.removed as u64;
                    horizons += retained.horizons_set as u64;
                    if let Some(rows) = retained.rows {
                        writer.write(&rows)?;
                    }
                }
                writer.add_input_bytes(input_bytes);
                Ok::<_, strata_parquet::Error>((writer, removed, horizons))
            })
            .await
            .map_err(|_| ServiceError::EncoderPanicked)??;
            writer = returned;
            stats.removed += removed;
            stats.horizons_set += horizons;
        }
        let unchanged = stats.removed == 0 && stats.horizons_set == 0;
        if unchanged && group.len() == 1 && is_clean(first) {
            return Ok(None);
        }
        let (file, summary) = tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(|_| ServiceError::EncoderPanicked)??;
        let key = Path::from(format!(
            "parquet/{}/{}/{:020}-{:020}-{}{COMPACTED_SUFFIX}",
            info.topic,
            info.partition,
            base_offset,
            last_offset,
            self.ids.ulid()
        ));
        self.store
            .put(&key, PutPayload::from_bytes(Bytes::from(file)))
            .await?;
        Ok(Some((key, summary, stats)))
    }
}

#[cfg(test)]
mod tests {
    use strata_catalog_api::proto::{TopicConfigEntry, TxnMarker};

    use super::*;

    fn file(base: i64, end: i64, clean: bool, length: u64, max_timestamp: i64) -> Chunk {
        let suffix = if clean { COMPACTED_SUFFIX } else { ".parquet" };
        Chunk {
            base_offset: base,
            end_offset: end,
            object_key: format!("parquet/t/0/{base}-{end}-X{suffix}"),
            length,
            max_timestamp,
            format: ChunkFormat::Parquet as i32,
            ..Chunk::default()
        }
    }

    fn segment(base: i64, end: i64) -> Chunk {
        Chunk {
            base_offset: base,
            end_offset: end,
            format: ChunkFormat::Segment as i32,
            ..Chunk::default()
        }
    }

    fn marker(at: i64, producer_id: i64, commit: bool) -> Chunk {
        Chunk {
            base_offset: at,
            end_offset: at + 1,
            format: ChunkFormat::Marker as i32,
            marker: Some(TxnMarker {
                producer_id,
                commit,
                ..TxnMarker::default()
            }),
            ..Chunk::default()
        }
    }

    fn policy(min_dirty_ratio: f64, max_lag_ms: i64) -> KeyPolicy {
        KeyPolicy {
            min_lag_ms: 0,
            max_lag_ms,
            min_dirty_ratio,
            delete_retention_ms: 1,
        }
    }

    /// Goal: the range stops at segments, the last stable offset, young
    /// files and gaps, and never ends on a marker.
    #[test]
    fn the_cleanable_range_stops_where_kafka_stops() {
        let chunks = [
            file(0, 10, true, 5, 100),
            marker(10, 1, true),
            file(11, 20, false, 5, 200),
            marker(20, 2, false),
            segment(21, 30),
        ];
        assert_eq!(cleanable(&chunks, 1_000, 0, 30).len(), 3);
        // The last stable offset inside the second file.
        assert_eq!(cleanable(&chunks, 1_000, 0, 15).len(), 1);
        // min.compaction.lag.ms keeps the second file out.
        assert_eq!(cleanable(&chunks, 1_000, 850, 30).len(), 1);
        assert_eq!(cleanable(&chunks, 1_000, 950, 30).len(), 0);
        let gap = [file(0, 10, false, 1, 0), file(11, 20, false, 1, 0)];
        assert_eq!(cleanable(&gap, 1_000, 0, 30).len(), 1);
    }

    /// Goal: the dirty ratio and max.compaction.lag.ms decide; a range
    /// without a dirty file is never due.
    #[test]
    fn a_pass_is_due_by_dirty_ratio_or_max_lag() {
        let range = [file(0, 10, true, 300, 100), file(10, 20, false, 100, 500)];
        assert!(is_due(&range, 1_000, policy(0.25, i64::MAX)));
        assert!(!is_due(&range, 1_000, policy(0.5, i64::MAX)));
        assert!(is_due(&range, 1_000, policy(0.5, 500)));
        assert!(!is_due(&range, 1_000, policy(0.5, 501)));
        assert!(!is_due(&range[..1], 1_000, policy(0.0, 0)));
    }

    /// Goal: output files never span a marker and stay within the target.
    #[test]
    fn groups_split_at_markers_and_the_target_size() {
        let range = [
            file(0, 10, true, 60, 0),
            file(10, 20, false, 60, 0),
            file(20, 30, false, 60, 0),
            marker(30, 1, false),
            file(31, 40, false, 500, 0),
        ];
        assert_eq!(groups(&range, 130), [0..2, 2..3, 4..5]);
        assert_eq!(groups(&range, 1 << 20), [0..3, 4..5]);
    }

    /// Goal: markers in the range give each transaction its outcome.
    #[test]
    fn markers_give_outcomes_and_configs_are_read() {
        let range = [file(0, 10, false, 1, 0), marker(10, 4, false)];
        let txns = outcomes(&range);
        assert!(format!("{txns:?}").contains("4: [(10, false)]"));
        let topic = Topic {
            configs: vec![
                TopicConfigEntry {
                    name: "cleanup.policy".into(),
                    value: "compact,delete".into(),
                },
                TopicConfigEntry {
                    name: "min.cleanable.dirty.ratio".into(),
                    value: "0.1".into(),
                },
            ],
            ..Topic::default()
        };
        let policy = KeyPolicy::of(&topic).expect("a compacted topic");
        assert_eq!(policy.min_dirty_ratio, 0.1);
        assert_eq!(policy.delete_retention_ms, 86_400_000);
        assert_eq!(policy.max_lag_ms, i64::MAX);
        assert_eq!(KeyPolicy::of(&Topic::default()), None);
    }
}
