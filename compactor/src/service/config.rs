//! Settings of the compaction service.

use std::time::Duration;

use strata_parquet::WriteOptions;

/// How the compactor paces itself and sizes its files. The CLI builds it
/// from `strata compactor` flags (client/cli/src/config.rs); `strata dev` uses
/// [`CompactorConfig::dev`].
#[derive(Debug, Clone)]
pub struct CompactorConfig {
    /// Names this compactor in compaction claims; unique per process.
    pub compactor_id: String,
    /// Time between passes over every partition.
    pub interval: Duration,
    /// A Parquet file gathers segment chunks until their stored (input)
    /// bytes reach this; one chunk always fits, however large.
    pub target_file_bytes: u64,
    /// Row groups, pages and zstd level of the Parquet files.
    pub write: WriteOptions,
    /// Segment chunk reads in flight at once (one ranged GET per chunk).
    pub fetch_concurrency: usize,
    /// Size of a multipart upload part; a file that fits in one part is
    /// sent with a single PUT. At least 5 MiB on S3.
    pub upload_part_bytes: usize,
    /// A dead object is deleted once it has been dead this long: longer
    /// than any read in flight of the chunks it held.
    pub gc_grace_ms: i64,
    /// An object the catalog does not know is deleted once it is this old:
    /// longer than any agent's PUT-to-commit time and the compactor's
    /// PUT-to-swap time, so no object about to be committed is touched.
    pub orphan_grace_ms: i64,
    /// Time between orphan sweeps (each lists the whole bucket).
    pub orphan_sweep_interval: Duration,
    /// Length of a compaction claim; renewed at a third of it while the
    /// partition is worked on.
    pub claim_lease_ms: i64,
    /// Time between retention checks (Kafka's
    /// `log.retention.check.interval.ms`, 5 minutes): records past
    /// `retention.ms` stay readable until the next check, as on a broker,
    /// so a client that writes old timestamps and reads them back at once
    /// finds them. Passes in between only compact.
    pub retention_check_interval_ms: i64,
    /// Distinct keys the key compaction map holds at most (about 48 bytes
    /// each: the default takes about 100 MiB). A pass whose dirty files
    /// hold more cleans up to the file where the map filled; the rest is
    /// cleaned next pass. A single file with more keys is skipped and
    /// counted (`strata_compactor_key_map_full_total`).
    pub key_compaction_keys_max: usize,
}

impl CompactorConfig {
    /// Production defaults.
    pub fn new(compactor_id: impl Into<String>) -> Self {
        Self {
            compactor_id: compactor_id.into(),
            interval: Duration::from_secs(60),
            target_file_bytes: 128 << 20,
            write: WriteOptions::default(),
            fetch_concurrency: 8,
            upload_part_bytes: 16 << 20,
            gc_grace_ms: 10 * 60 * 1000,
            orphan_grace_ms: 60 * 60 * 1000,
            orphan_sweep_interval: Duration::from_secs(60 * 60),
            claim_lease_ms: 60_000,
            retention_check_interval_ms: 300_000,
            key_compaction_keys_max: 2_000_000,
        }
    }

    /// `strata dev`: frequent passes and short grace periods, so data shows
    /// up as Parquet soon after `strata.compaction.age.ms`.
    pub fn dev(compactor_id: impl Into<String>) -> Self {
        Self {
            interval: Duration::from_secs(10),
            gc_grace_ms: 60_000,
            orphan_sweep_interval: Duration::from_secs(10 * 60),
            ..Self::new(compactor_id)
        }
    }
}
