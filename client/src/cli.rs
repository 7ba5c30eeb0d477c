//! Command-line interface. Flags are kebab-case; each also reads a
//! `STRATA_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Strata: Kafka-compatible event streaming on object storage.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about)]
pub(crate) struct Cli {
    /// Log output format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "STRATA_LOG_FORMAT"
    )]
    pub(crate) log_format: LogFormat,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run everything in one process: catalog (SQLite), agent and a
    /// local-directory object store. The embedded default for development.
    Dev(DevArgs),
}

/// Settings of `strata dev`.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// Directory holding objects, the SQLite catalog and the disk cache.
    #[arg(long, default_value = "./strata-data", env = "STRATA_DATA_DIR")]
    pub(crate) data_dir: PathBuf,
    /// Kafka listener.
    #[arg(long, default_value = "127.0.0.1:9092", env = "STRATA_LISTEN")]
    pub(crate) listen: SocketAddr,
    /// host:port clients are told to connect to (default: the listener).
    #[arg(long, env = "STRATA_ADVERTISE")]
    pub(crate) advertise: Option<String>,
    /// Catalog gRPC listener, for other tools and agents.
    #[arg(long, default_value = "127.0.0.1:9093", env = "STRATA_CATALOG_LISTEN")]
    pub(crate) catalog_listen: SocketAddr,
    /// Flush the produce buffer once its oldest batch is this old.
    #[arg(long, default_value_t = 5, env = "STRATA_FLUSH_INTERVAL_MS")]
    pub(crate) flush_interval_ms: u64,
    /// Flush the produce buffer once it holds this many bytes.
    #[arg(long, default_value_t = 4 * 1024 * 1024, env = "STRATA_FLUSH_BYTES")]
    pub(crate) flush_bytes: usize,
    /// Create unknown topics on Metadata requests (Kafka's
    /// auto.create.topics.enable).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "STRATA_AUTO_CREATE_TOPICS")]
    pub(crate) auto_create_topics: bool,
    /// Partitions of auto-created topics (Kafka's num.partitions).
    #[arg(long, default_value_t = 1, env = "STRATA_DEFAULT_PARTITIONS")]
    pub(crate) default_partitions: u32,
    /// Make acknowledged data survive power loss, not only a process crash:
    /// fsync objects and their directories, SQLite synchronous=FULL.
    #[arg(long, env = "STRATA_FSYNC")]
    pub(crate) fsync: bool,
    /// HTTP endpoint for /metrics (Prometheus), /health and /ready.
    #[arg(long, default_value = "127.0.0.1:9644", env = "STRATA_METRICS_LISTEN")]
    pub(crate) metrics_listen: SocketAddr,
    /// Memory for the block cache, in MiB.
    #[arg(long, default_value_t = 256, env = "STRATA_CACHE_MEMORY_MB")]
    pub(crate) cache_memory_mb: usize,
    /// Disk for the block cache under the data dir, in MiB (0 = no disk tier).
    #[arg(long, default_value_t = 1024, env = "STRATA_CACHE_DISK_MB")]
    pub(crate) cache_disk_mb: usize,
}
