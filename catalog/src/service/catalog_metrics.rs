//! [`CatalogMetrics`]: the catalog's own counters and gauges for
//! `/metrics` (the RPC histograms live in `rpc_metrics.rs`). One instance
//! per process, shared by every service the process builds, so counters
//! keep counting across a standby's takeovers.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the commit stream and of catalog high availability.
#[derive(Debug, Default)]
pub struct CatalogMetrics {
    /// Holes in the commit stream declared lost after the gap timeout.
    pub(crate) commit_gaps: AtomicU64,
    /// Sequences in those holes.
    pub(crate) commit_sequences_lost: AtomicU64,
    /// 1 while this catalog holds the lease and serves, else 0.
    pub(crate) is_active: AtomicU64,
    /// Times this catalog took the lease (became active).
    pub(crate) takeovers: AtomicU64,
    /// Times this catalog lost the lease or stepped down.
    pub(crate) step_downs: AtomicU64,
    /// The lease term this catalog holds (0 when it holds none).
    pub(crate) term: AtomicU64,
}

impl CatalogMetrics {
    /// Holes in the commit stream declared lost since the start.
    pub fn commit_gaps(&self) -> u64 {
        self.commit_gaps.load(Ordering::Relaxed)
    }

    /// Whether this catalog is the active one.
    pub fn is_active(&self) -> bool {
        self.is_active.load(Ordering::Relaxed) == 1
    }

    /// Times this catalog became active.
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Ordering::Relaxed)
    }

    /// Prometheus text for these metrics.
    pub fn render(&self) -> String {
        let mut text = String::new();
        let rows: [(&str, &str, &str, &AtomicU64); 6] = [
            (
                "strata_catalog_commit_gaps_total",
                "counter",
                "Holes in the commit stream declared lost after commit_gap_timeout_ms (subscribers resync).",
                &self.commit_gaps,
            ),
            (
                "strata_catalog_commit_sequences_lost_total",
                "counter",
                "Commit-stream sequences in holes declared lost.",
                &self.commit_sequences_lost,
            ),
            (
                "strata_catalog_is_active",
                "gauge",
                "1 while this catalog holds the lease in the database and serves; 0 on a standby.",
                &self.is_active,
            ),
            (
                "strata_catalog_takeovers_total",
                "counter",
                "Times this catalog took the lease and became the active catalog.",
                &self.takeovers,
            ),
            (
                "strata_catalog_step_downs_total",
                "counter",
                "Times this catalog lost the lease (another took over, or it could not renew in time) and stopped serving.",
                &self.step_downs,
            ),
            (
                "strata_catalog_lease_term",
                "gauge",
                "The lease term (fencing token) this catalog holds; 0 when it holds none.",
                &self.term,
            ),
        ];
        for (name, kind, help, value) in rows {
            let value = value.load(Ordering::Relaxed);
            // Writing to a String cannot fail.
            let _ = write!(
                text,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
        text
    }
}
