//! The compactor's clock, injected so tests can move time by hand.

/// Wall-clock milliseconds since the Unix epoch.
///
/// Ages (`strata.compaction.age.ms`, `retention.ms`) and grace periods are
/// measured on it. It should agree with the catalog's clock: dead-object
/// times are the catalog's, and the GC compares them with this clock.
pub trait Clock: std::fmt::Debug + Send + Sync {
    /// Now, in milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}
