//! Request counts, errors and latency per catalog RPC: a tower layer on the
//! gRPC server, rendered in the Prometheus text format by the catalog's
//! `/metrics`. CommitSegment's latency is the catalog-side commit latency.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::codegen::http;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 5.0,
];

#[derive(Debug, Default, Clone)]
struct Method {
    /// Per bucket, the last one +Inf (not cumulative).
    buckets: [u64; BUCKETS.len() + 1],
    count: u64,
    errors: u64,
    seconds: f64,
}

/// The counters of every RPC served.
#[derive(Debug, Default)]
pub struct RpcMetrics {
    methods: Mutex<BTreeMap<String, Method>>,
}

impl RpcMetrics {
    /// Counts one call of `method` that took `elapsed`; `failed` when it
    /// ended in a gRPC error (a Kafka error code in a response is not one).
    pub fn observe(&self, method: &str, elapsed: Duration, failed: bool) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BUCKETS.len());
        let mut methods = self.methods.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = methods.entry(method.to_string()).or_default();
        entry.buckets[bucket] += 1;
        entry.count += 1;
        entry.errors += u64::from(failed);
        entry.seconds += seconds;
    }

    /// Prometheus text: `strata_catalog_rpc_duration_seconds` (histogram)
    /// and `strata_catalog_rpc_errors_total`, labelled by method.
    pub fn render(&self) -> String {
        let methods = self
            .methods
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut out = String::new();
        let name = "strata_catalog_rpc_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Catalog RPCs by method, from request to response headers.\n# TYPE {name} histogram"
        );
        for (method, m) in &methods {
            let mut cumulative = 0;
            for (bound, n) in BUCKETS.iter().zip(&m.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{method=\"{method}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                m.count
            );
            let _ = writeln!(out, "{name}_sum{{method=\"{method}\"}} {}", m.seconds);
            let _ = writeln!(out, "{name}_count{{method=\"{method}\"}} {}", m.count);
        }
        let errors = "strata_catalog_rpc_errors_total";
        let _ = writeln!(
            out,
            "# HELP {errors} Catalog RPCs that ended in a gRPC error status.\n# TYPE {errors} counter"
        );
        for (method, m) in &methods {
            let _ = writeln!(out, "{errors}{{method=\"{method}\"}} {}", m.errors);
        }
        out
    }
}

/// The tower layer that feeds [`RpcMetrics`].
#[derive(Debug, Clone)]
pub(crate) struct RpcMetricsLayer(pub(crate) Arc<RpcMetrics>);

impl<S> tower_layer::Layer<S> for RpcMetricsLayer {
    type Service = RpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetricsService {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

/// A gRPC service measured by [`RpcMetricsLayer`].
#[derive(Debug, Clone)]
pub(crate) struct RpcMetricsService<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

impl<S, B, R> tower_service::Service<http::Request<B>> for RpcMetricsService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let started = Instant::now();
        let metrics = Arc::clone(&self.metrics);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await;
            // tonic puts a handler's error status in the `grpc-status`
            // header of an otherwise successful HTTP response.
            let failed = match &response {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|status| status != "0"),
                Err(_) => true,
            };
            metrics.observe(&method, started.elapsed(), failed);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cumulative_histograms_and_errors_per_method() {
        let metrics = RpcMetrics::default();
        metrics.observe("CommitSegment", Duration::from_micros(700), false);
        metrics.observe("CommitSegment", Duration::from_millis(3), true);
        metrics.observe("LookupChunks", Duration::from_secs(9), false);
        let text = metrics.render();
        for line in [
            "strata_catalog_rpc_duration_seconds_bucket{method=\"CommitSegment\",le=\"0.0005\"} 0",
            "strata_catalog_rpc_duration_seconds_bucket{method=\"CommitSegment\",le=\"0.001\"} 1",
            "strata_catalog_rpc_duration_seconds_bucket{method=\"CommitSegment\",le=\"0.005\"} 2",
            "strata_catalog_rpc_duration_seconds_count{method=\"CommitSegment\"} 2",
            "strata_catalog_rpc_duration_seconds_bucket{method=\"LookupChunks\",le=\"5\"} 0",
            "strata_catalog_rpc_duration_seconds_bucket{method=\"LookupChunks\",le=\"+Inf\"} 1",
            "strata_catalog_rpc_errors_total{method=\"CommitSegment\"} 1",
            "strata_catalog_rpc_errors_total{method=\"LookupChunks\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
