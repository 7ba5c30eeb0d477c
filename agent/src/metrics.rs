//! The agent's counters, rendered in the Prometheus text format by
//! [`crate::Agent::render_metrics`]. Exporter wiring (the HTTP endpoint)
//! lives in the binary.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::cache::CacheStats;
use crate::reader::ReadStats;

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
    pub(crate) flushes_failed: AtomicU64,
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

/// One sample: a metric name with its labels and value.
struct Sample {
    name: &'static str,
    help: &'static str,
    labels: String,
    value: f64,
}

impl Metrics {
    /// The samples of one agent, each labelled `agent="<agent>"`.
    fn samples(&self, agent: &str, cache: CacheStats, reads: ReadStats) -> Vec<Sample> {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let plain = format!("agent=\"{agent}\"");
        let produce = format!("agent=\"{agent}\",purpose=\"produce\"");
        let fetch = format!("agent=\"{agent}\",purpose=\"fetch\"");
        let segment = format!("agent=\"{agent}\",tier=\"segment\"");
        let parquet = format!("agent=\"{agent}\",tier=\"parquet\"");
        let s = |name, help, labels: &String, value| Sample {
            name,
            help,
            labels: labels.clone(),
            value,
        };
        vec![
            s(
                "strata_produce_requests_total",
                "Produce requests received.",
                &plain,
                load(&self.produce_requests),
            ),
            s(
                "strata_produce_batches_total",
                "Record batches appended.",
                &plain,
                load(&self.produce_batches),
            ),
            s(
                "strata_produce_bytes_total",
                "Record batch bytes appended.",
                &plain,
                load(&self.produce_bytes),
            ),
            s(
                "strata_produce_errors_total",
                "Produce partitions answered with an error.",
                &plain,
                load(&self.produce_errors),
            ),
            s(
                "strata_fetch_requests_total",
                "Fetch requests answered.",
                &plain,
                load(&self.fetch_requests),
            ),
            s(
                "strata_fetch_bytes_total",
                "Record bytes returned by fetches.",
                &plain,
                load(&self.fetch_bytes),
            ),
            s(
                "strata_fetch_tier_bytes_total",
                "Record bytes returned by fetches, per tier the chunks were read from.",
                &segment,
                reads.segment_bytes as f64,
            ),
            s(
                "strata_fetch_tier_bytes_total",
                "Record bytes returned by fetches, per tier the chunks were read from.",
                &parquet,
                reads.parquet_bytes as f64,
            ),
            s(
                "strata_fetch_tier_batches_total",
                "Record batches returned by fetches, per tier the chunks were read from.",
                &segment,
                reads.segment_batches as f64,
            ),
            s(
                "strata_fetch_tier_batches_total",
                "Record batches returned by fetches, per tier the chunks were read from.",
                &parquet,
                reads.parquet_batches as f64,
            ),
            s(
                "strata_parquet_footer_reads_total",
                "Parquet-tier footers (with page indexes) read and parsed; opened readers are kept.",
                &plain,
                reads.parquet_footers as f64,
            ),
            s(
                "strata_flushes_total",
                "Flushes of the produce buffer.",
                &plain,
                load(&self.flushes),
            ),
            s(
                "strata_flushes_failed_total",
                "Flushes answered with an error (not durable in time, or behind one that was not).",
                &plain,
                load(&self.flushes_failed),
            ),
            s(
                "strata_flush_bytes_total",
                "Bytes written by flushes.",
                &plain,
                load(&self.flush_bytes),
            ),
            s(
                "strata_object_puts_total",
                "Object PUTs.",
                &produce,
                load(&self.segment_puts),
            ),
            s(
                "strata_object_put_errors_total",
                "Failed object PUTs.",
                &produce,
                load(&self.segment_put_errors),
            ),
            s(
                "strata_catalog_commits_total",
                "Catalog commits made.",
                &plain,
                load(&self.catalog_commits),
            ),
            s(
                "strata_catalog_commit_errors_total",
                "Catalog commits that failed.",
                &plain,
                load(&self.catalog_commit_errors),
            ),
            s(
                "strata_catalog_commit_seconds_total",
                "Time spent in catalog commits (divide by commits for the mean).",
                &plain,
                load(&self.catalog_commit_micros) / 1e6,
            ),
            s(
                "strata_connections_total",
                "Client connections accepted.",
                &plain,
                load(&self.connections),
            ),
            s(
                "strata_cache_hits_total",
                "Block cache hits.",
                &plain,
                cache.hits as f64,
            ),
            s(
                "strata_cache_misses_total",
                "Block cache misses.",
                &plain,
                cache.misses as f64,
            ),
            s(
                "strata_object_gets_total",
                "Object GETs issued by the block cache.",
                &fetch,
                cache.gets as f64,
            ),
            s(
                "strata_object_get_bytes_total",
                "Bytes fetched from object storage.",
                &fetch,
                cache.bytes_fetched as f64,
            ),
        ]
    }
}

/// Prometheus text exposition of several agents' counters: each metric's
/// HELP and TYPE once, then one line per agent.
pub(crate) fn render(agents: &[(&str, &Metrics, CacheStats, ReadStats)]) -> String {
    let per_agent: Vec<Vec<Sample>> = agents
        .iter()
        .map(|(name, m, cache, reads)| m.samples(name, *cache, *reads))
        .collect();
    let mut out = String::new();
    let Some(first) = per_agent.first() else {
        return out;
    };
    for (i, sample) in first.iter().enumerate() {
        // Samples of one metric with different labels are adjacent: HELP
        // and TYPE once per metric.
        if i == 0 || first[i - 1].name != sample.name {
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} counter",
                sample.name, sample.help, sample.name
            );
        }
        for samples in &per_agent {
            let s = &samples[i];
            let _ = writeln!(out, "{}{{{}}} {}", s.name, s.labels, s.value);
        }
    }
    out
}
