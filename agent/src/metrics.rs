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
    pub(crate) catalog_commits_fenced: AtomicU64,
    pub(crate) catalog_commits_unknown: AtomicU64,
    pub(crate) catalog_commits_resolved: AtomicU64,
    pub(crate) catalog_commits_self_fenced: AtomicU64,
    pub(crate) fetch_redirects: AtomicU64,
    pub(crate) catalog_commit_micros: AtomicU64,
    pub(crate) connections: AtomicU64,
    /// Produce partitions refused for their size (MESSAGE_TOO_LARGE,
    /// RECORD_LIST_TOO_LARGE).
    pub(crate) produce_too_large: AtomicU64,
    /// Appends that waited for room in the buffer until their deadline.
    pub(crate) produce_buffer_timeouts: AtomicU64,
    /// Fetches whose `max_bytes` was above
    /// `fetch_max_bytes`, or unlimited, and was capped.
    pub(crate) fetch_max_bytes_capped: AtomicU64,
    /// Fetches that read with less than their byte budget because the
    /// agent's `fetch_memory_bytes_max` was partly spent.
    pub(crate) fetch_memory_reduced: AtomicU64,
    /// Fetches that waited for `fetch_memory_bytes_max` to free up.
    pub(crate) fetch_memory_waits: AtomicU64,
    /// Connections closed because a response was not read within
    /// `response_write_timeout`.
    pub(crate) response_write_timeouts: AtomicU64,
    /// Connections closed at once: over `max_connections`.
    pub(crate) connections_refused_total_limit: AtomicU64,
    /// Connections closed at once: over `max_connections_per_ip`.
    pub(crate) connections_refused_ip_limit: AtomicU64,
    /// Connections closed after `connections_max_idle`.
    pub(crate) connections_idle_closed: AtomicU64,
    /// Connections closed because a frame did not arrive whole within
    /// `request_read_timeout`.
    pub(crate) request_read_timeouts: AtomicU64,
    /// CreateTopics/CreatePartitions refused by a partition limit.
    pub(crate) partition_limit_refusals: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub(crate) tls_handshake_failures: AtomicU64,
    /// TLS configurations reloaded after their files changed.
    pub(crate) tls_reloads: AtomicU64,
    /// Successful SASL authentications (re-authentications included).
    pub(crate) sasl_authentications: AtomicU64,
    /// KIP-368 re-authentications that succeeded.
    pub(crate) sasl_reauthentications: AtomicU64,
    /// Failed SASL authentications (wrong password or proof, unknown user).
    pub(crate) sasl_authentication_failures: AtomicU64,
    /// Connections closed for a request their SASL state does not allow
    /// (before authentication, or after the session expired).
    pub(crate) sasl_state_closes: AtomicU64,
    /// Requests and their latency, per API.
    pub(crate) requests: ApiLatencies,
}

/// Upper bounds (seconds) of the request latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// Highest Kafka API key tracked (keys above share nothing: not counted).
const API_KEYS: usize = 96;

/// Request counts and a latency histogram per Kafka API key.
#[derive(Debug)]
pub(crate) struct ApiLatencies {
    /// Per API key: a count per bucket (the last is +Inf), then the sum
    /// of latencies in microseconds.
    apis: Vec<[AtomicU64; LATENCY_BUCKETS.len() + 2]>,
}

impl Default for ApiLatencies {
    fn default() -> Self {
        Self {
            apis: (0..API_KEYS).map(|_| Default::default()).collect(),
        }
    }
}

impl ApiLatencies {
    /// Counts one request of `api` that took `elapsed`.
    pub(crate) fn observe(
        &self,
        api: kafka_protocol::messages::ApiKey,
        elapsed: std::time::Duration,
    ) {
        let Some(slots) = usize::try_from(api as i16)
            .ok()
            .and_then(|key| self.apis.get(key))
        else {
            return;
        };
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        add(&slots[bucket], 1);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        add(&slots[LATENCY_BUCKETS.len() + 1], micros);
    }

    /// Cumulative bucket counts, the count and the sum (seconds) of one API.
    fn histogram(&self, key: usize) -> (Vec<u64>, u64, f64) {
        let slots = &self.apis[key];
        let mut cumulative = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        let mut total = 0;
        for slot in &slots[..=LATENCY_BUCKETS.len()] {
            total += slot.load(Ordering::Relaxed);
            cumulative.push(total);
        }
        let sum = slots[LATENCY_BUCKETS.len() + 1].load(Ordering::Relaxed) as f64 / 1e6;
        (cumulative, total, sum)
    }
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
                "strata_catalog_commits_fenced_total",
                "Catalog commits refused because this agent was fenced (its lease had expired).",
                &plain,
                load(&self.catalog_commits_fenced),
            ),
            s(
                "strata_catalog_commits_unknown_total",
                "Catalog commits whose outcome was unknown when their produce requests timed out; each is resolved before any later commit.",
                &plain,
                load(&self.catalog_commits_unknown),
            ),
            s(
                "strata_catalog_commits_resolved_total",
                "Unknown-outcome commits resolved by sending them again (strata dev: applied once, then or before, or refused).",
                &plain,
                load(&self.catalog_commits_resolved),
            ),
            s(
                "strata_catalog_commits_self_fenced_total",
                "Unknown-outcome commits after which this agent registered anew, so that they cannot land after a later commit.",
                &plain,
                load(&self.catalog_commits_self_fenced),
            ),
            s(
                "strata_fetch_redirects_total",
                "Fetch partitions sent to an agent in the consumer's zone (KIP-392).",
                &plain,
                load(&self.fetch_redirects),
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
                "strata_produce_too_large_total",
                "Produce partitions refused for their size (MESSAGE_TOO_LARGE or RECORD_LIST_TOO_LARGE).",
                &plain,
                load(&self.produce_too_large),
            ),
            s(
                "strata_produce_buffer_timeouts_total",
                "Produce partitions that waited for room in the full produce buffer until their deadline (REQUEST_TIMED_OUT).",
                &plain,
                load(&self.produce_buffer_timeouts),
            ),
            s(
                "strata_fetch_max_bytes_capped_total",
                "Fetch requests whose max_bytes was above fetch_max_bytes, or unlimited (0 or less), and was capped.",
                &plain,
                load(&self.fetch_max_bytes_capped),
            ),
            s(
                "strata_fetch_memory_limited_total",
                "Fetches held back by fetch_memory_bytes_max: read with less than their budget, or waited for memory.",
                &format!("agent=\"{agent}\",outcome=\"reduced\""),
                load(&self.fetch_memory_reduced),
            ),
            s(
                "strata_fetch_memory_limited_total",
                "Fetches held back by fetch_memory_bytes_max: read with less than their budget, or waited for memory.",
                &format!("agent=\"{agent}\",outcome=\"waited\""),
                load(&self.fetch_memory_waits),
            ),
            s(
                "strata_response_write_timeouts_total",
                "Client connections closed because a response was not read within response_write_timeout_ms.",
                &plain,
                load(&self.response_write_timeouts),
            ),
            s(
                "strata_connections_refused_total",
                "Client connections closed on arrival, by the limit they were over.",
                &format!("agent=\"{agent}\",limit=\"max_connections\""),
                load(&self.connections_refused_total_limit),
            ),
            s(
                "strata_connections_refused_total",
                "Client connections closed on arrival, by the limit they were over.",
                &format!("agent=\"{agent}\",limit=\"max_connections_per_ip\""),
                load(&self.connections_refused_ip_limit),
            ),
            s(
                "strata_connections_idle_closed_total",
                "Client connections closed after connections_max_idle_ms without a request.",
                &plain,
                load(&self.connections_idle_closed),
            ),
            s(
                "strata_tls_handshake_failures_total",
                "TLS handshakes that failed or did not finish within the handshake timeout.",
                &plain,
                load(&self.tls_handshake_failures),
            ),
            s(
                "strata_tls_reloads_total",
                "TLS certificate reloads after the files changed.",
                &plain,
                load(&self.tls_reloads),
            ),
            s(
                "strata_sasl_authentications_total",
                "Successful SASL authentications, re-authentications included.",
                &plain,
                load(&self.sasl_authentications),
            ),
            s(
                "strata_sasl_reauthentications_total",
                "Successful KIP-368 re-authentications.",
                &plain,
                load(&self.sasl_reauthentications),
            ),
            s(
                "strata_sasl_authentication_failures_total",
                "Failed SASL authentications (wrong credentials or unknown user).",
                &plain,
                load(&self.sasl_authentication_failures),
            ),
            s(
                "strata_sasl_state_closes_total",
                "Connections closed for a request sent before SASL authentication or after the session expired.",
                &plain,
                load(&self.sasl_state_closes),
            ),
            s(
                "strata_request_read_timeouts_total",
                "Client connections closed because a request frame did not arrive whole within request_read_timeout_ms.",
                &plain,
                load(&self.request_read_timeouts),
            ),
            s(
                "strata_partition_limit_refusals_total",
                "CreateTopics/CreatePartitions (and auto-creations) refused by max_partitions_per_topic or max_partitions.",
                &plain,
                load(&self.partition_limit_refusals),
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
    render_request_latencies(&mut out, agents);
    out
}

/// `strata_request_duration_seconds`: a histogram per agent and API, for
/// the APIs that served at least one request.
fn render_request_latencies(out: &mut String, agents: &[(&str, &Metrics, CacheStats, ReadStats)]) {
    const NAME: &str = "strata_request_duration_seconds";
    let _ = writeln!(
        out,
        "# HELP {NAME} Kafka requests by API: time from the decoded request to the response ready to send (a long-polling fetch includes its wait).\n# TYPE {NAME} histogram"
    );
    for key in 0..API_KEYS {
        let Ok(api) = kafka_protocol::messages::ApiKey::try_from(key as i16) else {
            continue;
        };
        for (agent, metrics, _, _) in agents {
            let (cumulative, count, sum) = metrics.requests.histogram(key);
            if count == 0 {
                continue;
            }
            let labels = format!("agent=\"{agent}\",api=\"{api:?}\"");
            for (bound, n) in LATENCY_BUCKETS.iter().zip(&cumulative) {
                let _ = writeln!(out, "{NAME}_bucket{{{labels},le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "{NAME}_bucket{{{labels},le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{NAME}_sum{{{labels}}} {sum}");
            let _ = writeln!(out, "{NAME}_count{{{labels}}} {count}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kafka_protocol::messages::ApiKey;

    use super::*;

    /// Goal: per-API latency histograms render as Prometheus histograms
    /// (cumulative buckets, +Inf = count, sum in seconds), only for APIs
    /// that served requests.
    #[test]
    fn request_latencies_render_as_cumulative_histograms() {
        let metrics = Metrics::default();
        metrics
            .requests
            .observe(ApiKey::Produce, Duration::from_micros(1_500));
        metrics
            .requests
            .observe(ApiKey::Produce, Duration::from_millis(40));
        metrics
            .requests
            .observe(ApiKey::Fetch, Duration::from_secs(60));
        let text = render(&[("a1", &metrics, CacheStats::default(), ReadStats::default())]);
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.starts_with(needle))
                .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
                .rsplit(' ')
                .next()
                .map(str::to_string)
                .unwrap_or_default()
        };
        let produce = "strata_request_duration_seconds_bucket{agent=\"a1\",api=\"Produce\"";
        assert_eq!(line(&format!("{produce},le=\"0.001\"}}")), "0");
        assert_eq!(line(&format!("{produce},le=\"0.002\"}}")), "1");
        assert_eq!(line(&format!("{produce},le=\"0.05\"}}")), "2");
        assert_eq!(line(&format!("{produce},le=\"+Inf\"}}")), "2");
        assert_eq!(
            line("strata_request_duration_seconds_count{agent=\"a1\",api=\"Produce\"}"),
            "2"
        );
        assert_eq!(
            line("strata_request_duration_seconds_sum{agent=\"a1\",api=\"Produce\"}"),
            "0.0415"
        );
        let fetch = "strata_request_duration_seconds_bucket{agent=\"a1\",api=\"Fetch\"";
        assert_eq!(line(&format!("{fetch},le=\"30\"}}")), "0");
        assert_eq!(line(&format!("{fetch},le=\"+Inf\"}}")), "1");
        assert!(!text.contains("api=\"Metadata\""), "unused APIs stay out");
    }
}
