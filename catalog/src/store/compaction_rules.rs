//! The pure part of ReplaceChunks and DeleteRecords, shared by every
//! store: checking a swap request, comparing the expected chunks with the
//! ones in the index, the new log start of a DeleteRecords, repairing the
//! running max timestamps after chunks went, and the commit-stream events.

use strata_catalog_api::proto::{
    Chunk, ChunkFormat, CommitEvent, PartitionOffsets, PartitionRef, ReplaceChunksRequest,
};
use uuid::Uuid;

use crate::{Error, Result};

/// The most expected chunks one swap may name, so one request cannot
/// hold the writer for long.
pub(crate) const REPLACE_CHUNKS_MAX: usize = 100_000;

/// A checked swap request.
#[derive(Debug, Clone)]
pub(crate) struct ReplacePlan {
    pub(crate) topic_id: Uuid,
    pub(crate) partition: u32,
    /// The first expected base offset.
    pub(crate) from: i64,
    /// The last expected end offset (exclusive).
    pub(crate) to: i64,
    /// `(base_offset, end_offset, object_key)` of each expected chunk.
    pub(crate) expected: Vec<(i64, i64, String)>,
    /// The replacement, with the request's topic id and partition.
    pub(crate) replacement: Chunk,
}

impl ReplacePlan {
    /// The expected object keys, each once.
    pub(crate) fn expected_objects(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.expected.iter().map(|e| e.2.clone()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// A chunk in the index, as a swap compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexedChunk {
    pub(crate) base_offset: i64,
    pub(crate) end_offset: i64,
    pub(crate) object_key: String,
    pub(crate) max_timestamp: i64,
    pub(crate) running_max_timestamp: i64,
}

/// What a swap does, given the chunks now in its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplaceVerdict {
    /// The range holds exactly the expected chunks: swap, with the
    /// replacement's max and running max timestamps.
    Swap {
        max_timestamp: i64,
        running_max_timestamp: i64,
    },
    /// The range holds exactly the replacement: a replay of a swap that
    /// succeeded.
    AlreadyReplaced,
    /// Anything else.
    Conflict,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        field,
        reason: reason.into(),
    }
}

/// Checks the shape of a swap request.
/// Whether a swap's replacement object, created at `object_created_ms`
/// (0 = not said), is older than `max_age_ms` at `now_ms`.
pub(crate) fn too_old(request: &ReplaceChunksRequest, now_ms: i64, max_age_ms: i64) -> bool {
    request.object_created_ms > 0 && now_ms.saturating_sub(request.object_created_ms) > max_age_ms
}

pub(crate) fn plan_replace(request: &ReplaceChunksRequest) -> Result<ReplacePlan> {
    let topic_id =
        Uuid::from_slice(&request.topic_id).map_err(|_| invalid("topic_id", "not 16 bytes"))?;
    let (Some(first), Some(last)) = (request.expected.first(), request.expected.last()) else {
        return Err(invalid("expected", "empty"));
    };
    if request.expected.len() > REPLACE_CHUNKS_MAX {
        return Err(invalid("expected", "more than 100,000 chunks"));
    }
    let mut next = first.base_offset;
    for chunk in &request.expected {
        if chunk.base_offset != next || chunk.end_offset <= chunk.base_offset {
            return Err(invalid(
                "expected",
                format!(
                    "chunk {}..{} breaks contiguity at {next}",
                    chunk.base_offset, chunk.end_offset
                ),
            ));
        }
        next = chunk.end_offset;
    }
    let replacement = request
        .replacement
        .as_ref()
        .ok_or_else(|| invalid("replacement", "missing"))?;
    if replacement.base_offset != first.base_offset || replacement.end_offset != last.end_offset {
        return Err(invalid(
            "replacement",
            format!(
                "spans {}..{}, not the expected {}..{}",
                replacement.base_offset, replacement.end_offset, first.base_offset, last.end_offset
            ),
        ));
    }
    if replacement.object_key.is_empty() {
        return Err(invalid("replacement.object_key", "empty"));
    }
    if ChunkFormat::try_from(replacement.format).is_err() {
        return Err(invalid(
            "replacement.format",
            format!("unknown format {}", replacement.format),
        ));
    }
    Ok(ReplacePlan {
        topic_id,
        partition: request.partition,
        from: first.base_offset,
        to: last.end_offset,
        expected: request
            .expected
            .iter()
            .map(|c| (c.base_offset, c.end_offset, c.object_key.clone()))
            .collect(),
        replacement: Chunk {
            topic_id: request.topic_id.clone(),
            partition: request.partition,
            ..replacement.clone()
        },
    })
}

/// Compares the chunks now in the plan's range (in offset order) with the
/// expected ones.
pub(crate) fn judge(plan: &ReplacePlan, actual: &[IndexedChunk]) -> ReplaceVerdict {
    let matches = actual.len() == plan.expected.len()
        && actual
            .iter()
            .zip(&plan.expected)
            .all(|(a, e)| a.base_offset == e.0 && a.end_offset == e.1 && a.object_key == e.2);
    if matches {
        // The replacement holds every record of the chunks it replaces:
        // their greatest timestamp, and the running max of the last one.
        let max_timestamp = actual.iter().map(|a| a.max_timestamp).max().unwrap_or(-1);
        let running_max_timestamp = actual.last().map_or(-1, |a| a.running_max_timestamp);
        return ReplaceVerdict::Swap {
            max_timestamp,
            running_max_timestamp,
        };
    }
    let replayed = match actual {
        [only] => {
            only.base_offset == plan.from
                && only.end_offset == plan.to
                && only.object_key == plan.replacement.object_key
        }
        _ => false,
    };
    if replayed {
        ReplaceVerdict::AlreadyReplaced
    } else {
        ReplaceVerdict::Conflict
    }
}

/// The partition's `max_timestamp_offset` after a swap: a chunk of the
/// range that held the greatest timestamp is now the replacement.
pub(crate) fn max_timestamp_offset_after_swap(plan: &ReplacePlan, current: i64) -> i64 {
    if (plan.from..plan.to).contains(&current) {
        plan.from
    } else {
        current
    }
}

/// The log start offset a DeleteRecords to `offset` sets, `None` when it
/// does not move. -1 means the high watermark.
pub(crate) fn new_log_start(
    log_start: i64,
    high_watermark: i64,
    offset: i64,
) -> Result<Option<i64>> {
    let target = if offset == -1 { high_watermark } else { offset };
    if target < 0 || target > high_watermark {
        return Err(Error::OffsetOutOfRange {
            requested: offset,
            log_start,
            high_watermark,
        });
    }
    Ok((target > log_start).then_some(target))
}

/// A chunk's own and stored running max timestamps, for a repair walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunningMaxRow {
    pub(crate) base_offset: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) running_max_timestamp: i64,
}

/// One step of the walk that makes each chunk's running max timestamp the
/// greatest timestamp of the chunks left up to it, after chunks before
/// them went (their timestamps may have inflated the stored values).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunningMaxRepair {
    /// The greatest timestamp so far.
    running: i64,
}

impl RunningMaxRepair {
    /// A walk from the partition's first chunk.
    pub(crate) fn new() -> Self {
        Self { running: -1 }
    }

    /// Takes the next chunk in offset order. `Some(new value)` if its
    /// stored running max is wrong; `None` once it is right, and then every
    /// later chunk is right too (each stored value is the max of the
    /// previous one and the chunk's own), so the walk can stop.
    pub(crate) fn step(&mut self, row: &RunningMaxRow) -> Option<i64> {
        self.running = self.running.max(row.max_timestamp);
        (self.running != row.running_max_timestamp).then_some(self.running)
    }
}

/// The event of a swap or a DeleteRecords: the partition's offsets, and
/// the partition invalidated so agents drop their cached tails and look
/// the chunks up again.
pub(crate) fn invalidation_event(
    sequence: u64,
    topic_id: Uuid,
    partition: u32,
    log_start_offset: i64,
    high_watermark: i64,
) -> CommitEvent {
    let topic_id = topic_id.as_bytes().to_vec();
    CommitEvent {
        sequence,
        chunks: Vec::new(),
        offsets: vec![PartitionOffsets {
            topic_id: topic_id.clone(),
            partition,
            log_start_offset,
            high_watermark,
            // Unknown here; readers keep the greatest they saw.
            last_stable_offset: 0,
        }],
        invalidated: vec![PartitionRef {
            topic_id,
            partition,
        }],
    }
}

#[cfg(test)]
mod tests {
    use strata_catalog_api::proto::ChunkRef;

    use super::*;

    fn request(expected: &[(i64, i64, &str)], replacement: (i64, i64)) -> ReplaceChunksRequest {
        ReplaceChunksRequest {
            topic_id: Uuid::nil().as_bytes().to_vec(),
            object_created_ms: 0,
            partition: 0,
            expected: expected
                .iter()
                .map(|(b, e, k)| ChunkRef {
                    base_offset: *b,
                    end_offset: *e,
                    object_key: (*k).to_string(),
                })
                .collect(),
            replacement: Some(Chunk {
                base_offset: replacement.0,
                end_offset: replacement.1,
                object_key: "p".to_string(),
                format: ChunkFormat::Parquet.into(),
                ..Chunk::default()
            }),
        }
    }

    fn indexed(base: i64, end: i64, key: &str, max: i64, running: i64) -> IndexedChunk {
        IndexedChunk {
            base_offset: base,
            end_offset: end,
            object_key: key.to_string(),
            max_timestamp: max,
            running_max_timestamp: running,
        }
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert!(plan_replace(&request(&[], (0, 0))).is_err());
        assert!(plan_replace(&request(&[(0, 5, "a"), (6, 8, "b")], (0, 8))).is_err());
        assert!(plan_replace(&request(&[(0, 5, "a"), (5, 5, "b")], (0, 5))).is_err());
        assert!(plan_replace(&request(&[(0, 5, "a")], (0, 6))).is_err());
        let mut bad_format = request(&[(0, 5, "a")], (0, 5));
        if let Some(r) = bad_format.replacement.as_mut() {
            r.format = 7;
        }
        assert!(plan_replace(&bad_format).is_err());
        let plan = plan_replace(&request(&[(0, 5, "a"), (5, 8, "a")], (0, 8))).unwrap();
        assert_eq!((plan.from, plan.to), (0, 8));
        assert_eq!(plan.expected_objects(), ["a"]);
    }

    #[test]
    fn judge_compares_offsets_and_keys() {
        let plan = plan_replace(&request(&[(0, 5, "a"), (5, 8, "b")], (0, 8))).unwrap();
        let exact = [indexed(0, 5, "a", 30, 30), indexed(5, 8, "b", 20, 40)];
        assert_eq!(
            judge(&plan, &exact),
            ReplaceVerdict::Swap {
                max_timestamp: 30,
                running_max_timestamp: 40
            }
        );
        assert_eq!(judge(&plan, &exact[..1]), ReplaceVerdict::Conflict);
        let other_key = [indexed(0, 5, "a", 1, 1), indexed(5, 8, "c", 1, 1)];
        assert_eq!(judge(&plan, &other_key), ReplaceVerdict::Conflict);
        assert_eq!(
            judge(&plan, &[indexed(0, 8, "p", 30, 40)]),
            ReplaceVerdict::AlreadyReplaced
        );
        assert_eq!(
            judge(&plan, &[indexed(0, 8, "q", 30, 40)]),
            ReplaceVerdict::Conflict
        );
    }

    #[test]
    fn log_start_moves_forward_only() {
        assert_eq!(new_log_start(0, 10, 4).unwrap(), Some(4));
        assert_eq!(new_log_start(0, 10, -1).unwrap(), Some(10));
        assert_eq!(new_log_start(4, 10, 4).unwrap(), None);
        assert_eq!(new_log_start(4, 10, 2).unwrap(), None);
        assert!(matches!(
            new_log_start(0, 10, 11),
            Err(Error::OffsetOutOfRange { .. })
        ));
        assert!(matches!(
            new_log_start(0, 10, -2),
            Err(Error::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn running_max_repair_stops_once_settled() {
        // A deleted chunk had timestamp 100, so the stored values start at
        // 100; the chunks left reach 100 on their own at the third.
        let rows = [(10, 100), (50, 100), (120, 120), (90, 120)];
        let mut repair = RunningMaxRepair::new();
        let steps: Vec<Option<i64>> = rows
            .iter()
            .enumerate()
            .map(|(i, (own, stored))| {
                repair.step(&RunningMaxRow {
                    base_offset: i64::try_from(i).unwrap(),
                    max_timestamp: *own,
                    running_max_timestamp: *stored,
                })
            })
            .collect();
        assert_eq!(steps, [Some(10), Some(50), None, None]);
    }
}
