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
    Dev(Box<DevArgs>),
    /// Inspect and manage consumer groups: list, describe, reset offsets,
    /// delete.
    Group(GroupArgs),
    /// Run the catalog as its own process (production): topics, offsets
    /// and consumer groups, served to agents over gRPC.
    Catalog(CatalogArgs),
    /// Run one agent as its own process (production): the Kafka protocol
    /// front end, writing to S3 (or a directory) and a remote catalog.
    Agent(Box<AgentArgs>),
    /// Run the compactor as its own process (production): rewrites old
    /// segments as Parquet, enforces retention, deletes unreferenced
    /// objects.
    Compactor(Box<CompactorArgs>),
    /// One-off operations on a deployment, such as checking a bucket.
    Admin(AdminArgs),
    /// Print a topic's records (JSON lines, CSV or Parquet), read straight
    /// from the object store through the catalog: no agent involved.
    Replay(Box<ReplayArgs>),
    /// Copy a topic to local files (one per partition, or one file), read
    /// straight from the object store like `replay`.
    Export(Box<ExportArgs>),
    /// Inspect transactions and end a stuck one: list, describe, abort
    /// (through the catalog, the coordinator of every transactional id).
    Txn(TxnArgs),
    /// Manage SASL users: SCRAM credentials stored (salted and iterated)
    /// in the catalog.
    User(crate::user_cmd::UserArgs),
}

/// Settings of `strata txn`.
#[derive(Debug, Args)]
pub(crate) struct TxnArgs {
    /// The catalog's gRPC endpoint [default: strata dev's].
    #[arg(
        long,
        global = true,
        default_value = crate::config::DEFAULT_CATALOG_ENDPOINT,
        env = "STRATA_CATALOG"
    )]
    pub(crate) catalog: String,
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: TxnCommand,
}

/// `strata txn` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TxnCommand {
    /// List transactional ids with their producer and state.
    List {
        /// Only these states (Empty, Ongoing, CompleteCommit,
        /// CompleteAbort); repeat or separate with commas.
        #[arg(long, value_delimiter = ',')]
        state: Vec<String>,
        /// Only transactions open at least this long (milliseconds).
        #[arg(long, value_name = "MS")]
        open_longer_than_ms: Option<i64>,
    },
    /// Show one transactional id: state, producer, timeout, start and the
    /// partitions of its open transaction.
    Describe {
        /// The transactional id.
        transactional_id: String,
    },
    /// Abort the open transaction of a transactional id whose producer is
    /// gone or stuck: ABORT markers go to every partition, and the
    /// producer's epoch is bumped, so a producer still running is fenced.
    Abort {
        /// The transactional id.
        transactional_id: String,
    },
}

/// Settings of `strata compactor`. Each flag also reads the `STRATA_*`
/// variable shown and the `[compactor]` / `[s3]` sections of `--config`;
/// flags win over the environment, which wins over the file.
#[derive(Debug, Args)]
pub(crate) struct CompactorArgs {
    /// TOML file of settings (see docs/configuration.md).
    #[arg(long, env = "STRATA_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Resolve every setting, build the object-store client, print the
    /// result and exit without connecting to anything.
    #[arg(long)]
    pub(crate) check_config: bool,
    #[command(flatten)]
    pub(crate) compactor: crate::config::CompactorOptions,
    #[command(flatten)]
    pub(crate) s3: crate::config::S3Options,
}

/// Settings of `strata catalog`. Each flag also reads the `STRATA_*`
/// variable shown and the `[catalog]` section of `--config`; flags win
/// over the environment, which wins over the file.
#[derive(Debug, Args)]
pub(crate) struct CatalogArgs {
    /// TOML file of settings (see docs/configuration.md).
    #[arg(long, env = "STRATA_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Resolve every setting (flags, STRATA_*, file, defaults), print the
    /// result and exit without starting anything.
    #[arg(long)]
    pub(crate) check_config: bool,
    #[command(flatten)]
    pub(crate) catalog: crate::config::CatalogOptions,
    /// FOR TESTS ONLY: obey fault rules set over the metrics endpoint
    /// (`PUT /faults`, `DELETE /faults`). A flag only, with no
    /// environment variable or file key, and refused unless
    /// --metrics-listen is a loopback address.
    #[arg(long)]
    pub(crate) fault_injection: bool,
}

/// Settings of `strata agent`. Each flag also reads the `STRATA_*`
/// variable shown and the `[agent]` / `[s3]` sections of `--config`; flags
/// win over the environment, which wins over the file.
#[derive(Debug, Args)]
pub(crate) struct AgentArgs {
    /// TOML file of settings (see docs/configuration.md).
    #[arg(long, env = "STRATA_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Resolve every setting (flags, STRATA_*, file, defaults), build the
    /// object-store client, print the result and exit without connecting
    /// to anything.
    #[arg(long)]
    pub(crate) check_config: bool,
    /// FOR TESTS ONLY: obey fault rules set over the metrics endpoint
    /// (`PUT /faults`, `DELETE /faults`). A flag only, with no
    /// environment variable or file key, and refused unless
    /// --metrics-listen is a loopback address.
    #[arg(long)]
    pub(crate) fault_injection: bool,
    #[command(flatten)]
    pub(crate) agent: crate::config::AgentOptions,
    #[command(flatten)]
    pub(crate) limits: crate::config::LimitOptions,
    #[command(flatten)]
    pub(crate) security: crate::security_config::SecurityOptions,
    #[command(flatten)]
    pub(crate) s3: crate::config::S3Options,
}

/// Settings of `strata admin`.
#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(subcommand)]
    pub(crate) command: AdminCommand,
}

/// `strata admin` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Check that an object store has what Strata needs (bucket, writes,
    /// range GET, conditional PUT, delete) and say what is missing.
    InitBucket(InitBucketArgs),
}

/// Settings of `strata admin init-bucket`.
#[derive(Debug, Args)]
pub(crate) struct InitBucketArgs {
    /// TOML file of settings; its `[s3]` section and `[agent]`
    /// `object_store` apply.
    #[arg(long, env = "STRATA_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// The object store to check: s3://bucket/prefix or file:///dir.
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    pub(crate) object_store: Option<String>,
    /// Create the bucket when it does not exist.
    #[arg(long)]
    pub(crate) create: bool,
    /// Resolve the settings, build the S3 client, print them and exit
    /// without contacting the object store.
    #[arg(long)]
    pub(crate) check_config: bool,
    #[command(flatten)]
    pub(crate) s3: crate::config::S3Options,
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
    /// Also flush at once whenever no flush is in flight (lowest latency;
    /// more, smaller objects). Production agents on S3 turn this off.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "STRATA_FLUSH_EAGER")]
    pub(crate) flush_eager: bool,
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
    /// How long an empty consumer group's first rebalance waits for more
    /// members (Kafka's group.initial.rebalance.delay.ms).
    #[arg(
        long,
        default_value_t = 3000,
        env = "STRATA_GROUP_INITIAL_REBALANCE_DELAY_MS"
    )]
    pub(crate) group_initial_rebalance_delay_ms: i64,
    /// Make acknowledged data survive power loss, not only a process crash:
    /// fsync objects and their directories, SQLite synchronous=FULL.
    #[arg(long, env = "STRATA_FSYNC")]
    pub(crate) fsync: bool,
    /// Agents to run, on consecutive ports from --listen (and from the
    /// --advertise port), sharing one catalog and object store.
    #[arg(long, default_value_t = 1, env = "STRATA_AGENTS")]
    pub(crate) agents: usize,
    /// HTTP endpoint for /metrics (Prometheus), /health and /ready.
    #[arg(long, default_value = "127.0.0.1:9644", env = "STRATA_METRICS_LISTEN")]
    pub(crate) metrics_listen: SocketAddr,
    /// Memory for the block cache, in MiB.
    #[arg(long, default_value_t = 256, env = "STRATA_CACHE_MEMORY_MB")]
    pub(crate) cache_memory_mb: usize,
    /// Disk for the block cache under the data dir, in MiB (0 = no disk
    /// tier). Off by default in dev: the objects are on local disk already,
    /// so a disk tier would write every produced byte twice. It pays off in
    /// front of S3.
    #[arg(long, default_value_t = 0, env = "STRATA_CACHE_DISK_MB")]
    pub(crate) cache_disk_mb: usize,
    /// Run the compactor (Parquet tier, retention, garbage collection).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "STRATA_COMPACTION")]
    pub(crate) compaction: bool,
    /// Time between compaction passes.
    #[arg(long, default_value_t = 10_000, env = "STRATA_COMPACTION_INTERVAL_MS")]
    pub(crate) compaction_interval_ms: u64,
    /// Segment bytes (input) gathered into one Parquet file.
    #[arg(long, default_value_t = 128 << 20, env = "STRATA_COMPACTION_TARGET_FILE_BYTES")]
    pub(crate) compaction_target_file_bytes: u64,
    /// Delete dead objects after this long.
    #[arg(long, default_value_t = 60_000, env = "STRATA_COMPACTION_GC_GRACE_MS")]
    pub(crate) compaction_gc_grace_ms: i64,
    /// Delete unknown (orphan) objects once they are this old, and never
    /// before twice --max-commit-age-ms.
    #[arg(
        long,
        default_value_t = 3_600_000,
        env = "STRATA_COMPACTION_ORPHAN_GRACE_MS"
    )]
    pub(crate) compaction_orphan_grace_ms: i64,
    /// A segment whose first commit applies later than this after it was
    /// named is refused (the client retries); orphan sweeps wait twice this.
    #[arg(long, default_value_t = 300_000, value_parser = clap::value_parser!(i64).range(1_000..), env = "STRATA_MAX_COMMIT_AGE_MS")]
    pub(crate) max_commit_age_ms: i64,
    /// Time between retention checks (Kafka's
    /// log.retention.check.interval.ms).
    #[arg(
        long,
        default_value_t = 300_000,
        env = "STRATA_RETENTION_CHECK_INTERVAL_MS"
    )]
    pub(crate) retention_check_interval_ms: i64,
    /// The agents' limits on what clients may ask.
    #[command(flatten)]
    pub(crate) limits: crate::config::LimitOptions,
    /// Listeners, TLS and SASL (PLAINTEXT without authentication unless
    /// set).
    #[command(flatten)]
    pub(crate) security: crate::security_config::SecurityOptions,
}

/// Settings of `strata group`.
#[derive(Debug, Args)]
pub(crate) struct GroupArgs {
    /// Kafka listener to bootstrap from (host:port; comma-separated for
    /// several).
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:9092",
        env = "STRATA_BOOTSTRAP"
    )]
    pub(crate) bootstrap: String,
    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: GroupCommand,
}

/// `strata group` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups.
    List {
        /// Only groups in these states (e.g. Stable, Empty); repeat or
        /// separate with commas.
        #[arg(long, value_delimiter = ',')]
        state: Vec<String>,
    },
    /// Show a group's state, members and, per partition, the committed
    /// offset, log end offset and lag.
    Describe {
        /// The group id.
        group: String,
    },
    /// Move a group's committed offsets. The group must have no active
    /// members.
    ResetOffsets(ResetOffsetsArgs),
    /// Delete a group and its committed offsets. The group must have no
    /// active members.
    Delete {
        /// The group id.
        group: String,
    },
}

/// Settings of `strata group reset-offsets`.
#[derive(Debug, Args)]
pub(crate) struct ResetOffsetsArgs {
    /// The group id.
    pub(crate) group: String,
    /// The topic whose offsets to move.
    #[arg(long)]
    pub(crate) topic: String,
    /// Only this partition (default: every partition of the topic).
    #[arg(long)]
    pub(crate) partition: Option<i32>,
    #[command(flatten)]
    pub(crate) target: ResetTarget,
    /// Show the new offsets without committing them.
    #[arg(long)]
    pub(crate) dry_run: bool,
}

/// Where `reset-offsets` moves the offsets; exactly one is required.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct ResetTarget {
    /// To the log start offset.
    #[arg(long)]
    pub(crate) to_earliest: bool,
    /// To the log end offset.
    #[arg(long)]
    pub(crate) to_latest: bool,
    /// To this offset, clamped to the partition's earliest..=latest range.
    #[arg(long, value_name = "OFFSET")]
    pub(crate) to_offset: Option<i64>,
    /// To the first record at or after this time (RFC 3339, e.g.
    /// 2026-01-01T00:00:00Z); the log end if there is none.
    #[arg(long, value_name = "DATETIME", value_parser = crate::group_cmd::parse_datetime_ms)]
    pub(crate) to_datetime: Option<i64>,
}

/// Settings of `strata replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    pub(crate) read: ReadArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub(crate) format: OutputFormat,
    /// Write the records to this file instead of stdout (the summary then
    /// goes to stdout).
    #[arg(long, short = 'o')]
    pub(crate) output: Option<PathBuf>,
}

/// Settings of `strata export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub(crate) read: ReadArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "parquet")]
    pub(crate) format: OutputFormat,
    /// A directory, filled with one `<topic>-<partition>.<format>` file per
    /// partition; or, when it ends in `.parquet`, `.jsonl` or `.csv`, one
    /// file holding every partition.
    #[arg(long, short = 'o')]
    pub(crate) output: PathBuf,
}

/// What `replay` and `export` read, from where, and how they report.
#[derive(Debug, Args)]
pub(crate) struct ReadArgs {
    /// The topic to read.
    #[arg(long)]
    pub(crate) topic: String,
    /// Only these partitions (repeat or separate with commas; default:
    /// every partition).
    #[arg(long, value_delimiter = ',')]
    pub(crate) partition: Vec<i32>,
    /// First offset to read (inclusive; default: the log start offset).
    #[arg(long, value_name = "OFFSET", conflicts_with = "from_time")]
    pub(crate) from_offset: Option<i64>,
    /// Start at the first record whose timestamp is at or after this time
    /// (RFC 3339 or milliseconds since the epoch), as Kafka's
    /// offsetsForTimes does; later records are all read, whatever their
    /// timestamp.
    #[arg(long, value_name = "TIME", value_parser = parse_time_ms)]
    pub(crate) from_time: Option<i64>,
    /// Stop before this offset (exclusive; default: the high watermark
    /// when the command starts).
    #[arg(long, value_name = "OFFSET", conflicts_with = "to_time")]
    pub(crate) to_offset: Option<i64>,
    /// Stop before the first record whose timestamp is at or after this
    /// time (RFC 3339 or milliseconds since the epoch).
    #[arg(long, value_name = "TIME", value_parser = parse_time_ms)]
    pub(crate) to_time: Option<i64>,
    /// How keys, values and header values appear in JSON and CSV:
    /// `auto` writes UTF-8 text when the bytes are valid UTF-8 and base64
    /// otherwise (marked, see docs/replay.md); Parquet keeps raw bytes.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) binary: BinaryEncoding,
    /// The catalog's gRPC endpoint [default: strata dev's].
    #[arg(
        long,
        default_value = crate::config::DEFAULT_CATALOG_ENDPOINT,
        env = "STRATA_CATALOG"
    )]
    pub(crate) catalog: String,
    /// Where data lives: s3://bucket/prefix or file:///directory
    /// [default: the `objects` directory of --data-dir].
    #[arg(long, env = "STRATA_OBJECT_STORE")]
    pub(crate) object_store: Option<String>,
    /// `strata dev`'s data directory, used when --object-store is not given.
    #[arg(long, default_value = "./strata-data", env = "STRATA_DATA_DIR")]
    pub(crate) data_dir: PathBuf,
    /// No progress bar and no summary (errors still go to stderr).
    #[arg(long, short = 'q')]
    pub(crate) quiet: bool,
    /// Print the summary as one JSON document.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) s3: crate::config::S3Options,
}

/// Output formats of `replay` and `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// One JSON object per record and line.
    Jsonl,
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// One Parquet file (zstd), with raw binary keys and values.
    Parquet,
}

impl OutputFormat {
    /// The file extension, without the dot.
    pub(crate) fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

/// How binary fields are written as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum BinaryEncoding {
    /// UTF-8 text when valid, else base64 (marked as such).
    Auto,
    /// Always standard base64 (with padding).
    Base64,
    /// Always lowercase hex.
    Hex,
    /// Always text; invalid UTF-8 sequences become U+FFFD.
    #[value(name = "utf8-lossy")]
    Utf8Lossy,
}

/// Milliseconds since the epoch, written as such or as RFC 3339.
fn parse_time_ms(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(ms) => Ok(ms),
        Err(_) => crate::group_cmd::parse_datetime_ms(text),
    }
}
