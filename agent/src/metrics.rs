//! The agent's counters, rendered in the Prometheus text format by
//! [`crate::Agent::render_metrics`]. Exporter wiring (the HTTP endpoint)
//! lives in the binary.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::CacheStats;

/// Counters of one agent.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) produce_requests: AtomicU64,
    pub(crate) produce_batches: AtomicU64,
    pub(crate) produce_bytes: AtomicU64,
    pub(crate) produce_errors: AtomicU64,
    pub(crate) fetch_requests: AtomicU64,
    pub(crate) fetch_bytes: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) flush_bytes: AtomicU64,
    pub(crate) segment_puts: AtomicU64,
    pub(crate) segment_put_errors: AtomicU64,
    pub(crate) catalog_commits: AtomicU64,
    pub(crate) catalog_commit_errors: AtomicU64,
    pub(crate) catalog_commit_micros: AtomicU64,
    pub(crate) connections: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Metrics {
    /// Prometheus text exposition of the counters and the cache's stats.
    pub(crate) fn render(&self, cache: CacheStats) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, u64); 14] = [
            (
                "strata_produce_requests_total",
                "Produce requests received.",
                self.produce_requests.load(Ordering::Relaxed),
            ),
            (
                "strata_produce_batches_total",
                "Record batches appended.",
                self.produce_batches.load(Ordering::Relaxed),
            ),
            (
                "strata_produce_bytes_total",
                "Record batch bytes appended.",
                self.produce_bytes.load(Ordering::Relaxed),
            ),
            (
                "strata_produce_errors_total",
                "Produce partitions answered with an error.",
                self.produce_errors.load(Ordering::Relaxed),
            ),
            (
                "strata_fetch_requests_total",
                "Fetch requests answered.",
                self.fetch_requests.load(Ordering::Relaxed),
            ),
            (
                "strata_fetch_bytes_total",
                "Record bytes returned by fetches.",
                self.fetch_bytes.load(Ordering::Relaxed),
            ),
            (
                "strata_flushes_total",
                "Flushes of the produce buffer.",
                self.flushes.load(Ordering::Relaxed),
            ),
            (
                "strata_flush_bytes_total",
                "Bytes written by flushes.",
                self.flush_bytes.load(Ordering::Relaxed),
            ),
            (
                "strata_object_puts_total{purpose=\"produce\"}",
                "Object PUTs.",
                self.segment_puts.load(Ordering::Relaxed),
            ),
            (
                "strata_object_put_errors_total{purpose=\"produce\"}",
                "Failed object PUTs.",
                self.segment_put_errors.load(Ordering::Relaxed),
            ),
            (
                "strata_catalog_commits_total",
                "Catalog commits made.",
                self.catalog_commits.load(Ordering::Relaxed),
            ),
            (
                "strata_catalog_commit_errors_total",
                "Catalog commits that failed.",
                self.catalog_commit_errors.load(Ordering::Relaxed),
            ),
            (
                "strata_catalog_commit_seconds_total",
                "Time spent in catalog commits (sum; divide by commits).",
                0,
            ),
            (
                "strata_connections_total",
                "Client connections accepted.",
                self.connections.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            let base = name.split('{').next().unwrap_or(name);
            let _ = writeln!(out, "# HELP {base} {help}\n# TYPE {base} counter");
            if base == "strata_catalog_commit_seconds_total" {
                let seconds = self.catalog_commit_micros.load(Ordering::Relaxed) as f64 / 1e6;
                let _ = writeln!(out, "{name} {seconds}");
            } else {
                let _ = writeln!(out, "{name} {value}");
            }
        }
        let cache_counters = [
            ("strata_cache_hits_total", "Block cache hits.", cache.hits),
            (
                "strata_cache_misses_total",
                "Block cache misses.",
                cache.misses,
            ),
            (
                "strata_object_gets_total{purpose=\"fetch\"}",
                "Object GETs issued by the block cache.",
                cache.gets,
            ),
            (
                "strata_object_get_bytes_total{purpose=\"fetch\"}",
                "Bytes fetched from object storage.",
                cache.bytes_fetched,
            ),
        ];
        for (name, help, value) in cache_counters {
            let base = name.split('{').next().unwrap_or(name);
            let _ = writeln!(
                out,
                "# HELP {base} {help}\n# TYPE {base} counter\n{name} {value}"
            );
        }
        out
    }
}
