//! Time and ids: the one `Clock` and the one id source of every role,
//! injected wherever a decision depends on them, so tests control both.
//!
//! `clippy.toml` bans `SystemTime::now` and `Ulid::new` everywhere else:
//! [`SystemClock`] and [`SystemIds`] are their only callers.
//!
//! ```
//! use strata_catalog_api::clock::{Clock, IdGen, SystemClock, SystemIds};
//! let before = SystemClock.now_ms();
//! let id = SystemIds.ulid();
//! assert!(id.timestamp_ms() as i64 >= before);
//! ```

use std::fmt::Debug;

/// Wall-clock time for every decision that depends on it: leases, session
/// timeouts, retention, compaction age, LogAppendTime.
pub trait Clock: Debug + Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "SystemClock is the one reader of the system clock"
    )]
    fn now_ms(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Where new object ids come from (segment and Parquet file ULIDs). A
/// ULID's time part is the moment it was made: the compactor reads a
/// segment's age from it.
pub trait IdGen: Debug + Send + Sync + 'static {
    /// A new, unique ULID.
    fn ulid(&self) -> ulid::Ulid;
}

/// ULIDs from the system clock and the thread's random generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemIds;

impl IdGen for SystemIds {
    #[expect(
        clippy::disallowed_methods,
        reason = "SystemIds is the one maker of random ULIDs"
    )]
    fn ulid(&self) -> ulid::Ulid {
        ulid::Ulid::new()
    }
}
