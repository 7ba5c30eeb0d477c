//! The compactor's counters, rendered as Prometheus text on `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters of everything the compactor did. Cheap to bump from
/// any task; [`CompactorMetrics::render`] writes them out.
#[derive(Debug, Default)]
pub struct CompactorMetrics {
    /// Passes over every partition completed.
    pub passes: AtomicU64,
    /// Parquet files uploaded (whether or not their swap succeeded).
    pub files_written: AtomicU64,
    /// Bytes of segment chunks read as input.
    pub input_bytes: AtomicU64,
    /// Bytes of Parquet written.
    pub output_bytes: AtomicU64,
    /// Records (rows) written.
    pub rows: AtomicU64,
    /// Swaps that replaced chunks.
    pub swaps_ok: AtomicU64,
    /// Swaps lost to another writer (the file was deleted).
    pub swaps_conflict: AtomicU64,
    /// Log start offset moves made by retention.
    pub retention_deletions: AtomicU64,
    /// Dead objects deleted by the GC.
    pub gc_deleted: AtomicU64,
    /// Orphans (objects the catalog does not know) deleted by the sweep.
    pub orphans_deleted: AtomicU64,
    /// Unknown objects the sweep left because they were younger than twice
    /// the catalog's max commit age (their commit may still land).
    pub orphans_too_young: AtomicU64,
    /// Failures of any step (catalog, object store, bad data); the work is
    /// retried on the next pass.
    pub errors: AtomicU64,
    /// Key-compacted files swapped in.
    pub key_compaction_files: AtomicU64,
    /// Bytes of Parquet files read by key compaction's rewrite.
    pub key_compaction_input_bytes: AtomicU64,
    /// Bytes of key-compacted files written.
    pub key_compaction_output_bytes: AtomicU64,
    /// Records key compaction removed (older versions, expired
    /// tombstones, aborted transactions).
    pub key_compaction_records_removed: AtomicU64,
    /// Passes skipped because one dirty file held more distinct keys than
    /// the key map's cap (`--key-compaction-keys-max`).
    pub key_map_full: AtomicU64,
}

impl CompactorMetrics {
    /// Adds `n` to `counter`.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let counters: [(&str, &str, &AtomicU64, &str); 17] = [
            ("passes", "", &self.passes, "Passes over every partition."),
            (
                "files_written",
                "",
                &self.files_written,
                "Parquet files uploaded.",
            ),
            (
                "input_bytes",
                "",
                &self.input_bytes,
                "Segment chunk bytes compacted.",
            ),
            (
                "output_bytes",
                "",
                &self.output_bytes,
                "Parquet bytes written.",
            ),
            ("rows", "", &self.rows, "Records written to Parquet."),
            (
                "swaps",
                "outcome=\"ok\"",
                &self.swaps_ok,
                "Chunk swaps by outcome.",
            ),
            ("swaps", "outcome=\"conflict\"", &self.swaps_conflict, ""),
            (
                "retention_deletions",
                "",
                &self.retention_deletions,
                "Log start offset moves made by retention.",
            ),
            (
                "gc_deleted_objects",
                "",
                &self.gc_deleted,
                "Dead objects deleted.",
            ),
            (
                "orphans_deleted",
                "",
                &self.orphans_deleted,
                "Orphan objects deleted.",
            ),
            (
                "orphans_too_young",
                "",
                &self.orphans_too_young,
                "Unknown objects left by a sweep: younger than twice the catalog's max commit age.",
            ),
            (
                "errors",
                "",
                &self.errors,
                "Failed steps (retried next pass).",
            ),
            (
                "key_compaction_files",
                "",
                &self.key_compaction_files,
                "Key-compacted Parquet files swapped in.",
            ),
            (
                "key_compaction_input_bytes",
                "",
                &self.key_compaction_input_bytes,
                "Parquet bytes read by key compaction.",
            ),
            (
                "key_compaction_output_bytes",
                "",
                &self.key_compaction_output_bytes,
                "Key-compacted Parquet bytes written.",
            ),
            (
                "key_compaction_records_removed",
                "",
                &self.key_compaction_records_removed,
                "Records removed by key compaction.",
            ),
            (
                "key_map_full",
                "",
                &self.key_map_full,
                "Key compaction passes skipped: a file held more keys than --key-compaction-keys-max.",
            ),
        ];
        let mut out = String::new();
        for (name, labels, counter, help) in counters {
            let name = format!("strata_compactor_{name}_total");
            if !help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            }
            let value = counter.load(Ordering::Relaxed);
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_once_with_its_value() {
        let metrics = CompactorMetrics::default();
        CompactorMetrics::add(&metrics.swaps_conflict, 2);
        CompactorMetrics::add(&metrics.rows, 7);
        let text = metrics.render();
        assert!(
            text.contains("strata_compactor_swaps_total{outcome=\"conflict\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("strata_compactor_rows_total 7\n"), "{text}");
        assert_eq!(
            text.matches("# TYPE strata_compactor_swaps_total").count(),
            1
        );
    }
}
