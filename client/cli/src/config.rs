//! Settings of the production roles (`strata catalog`, `strata agent`,
//! `strata admin`): one model, four layers.
//!
//! Every setting can come from, in order of precedence (highest first):
//!
//! 1. a command-line flag (`--flush-interval-ms 50`),
//! 2. a `STRATA_*` environment variable (`STRATA_FLUSH_INTERVAL_MS=50`),
//! 3. the TOML file named by `--config` / `STRATA_CONFIG`
//!    (`[agent] flush_interval_ms = 50`),
//! 4. the built-in default (the `DEFAULT_*` constants below).
//!
//! Flags and environment are parsed by clap (a flag wins over its variable);
//! the file and the defaults are layered underneath here. Keys are
//! snake_case with units last; the file has one section per role
//! (`[catalog]`, `[agent]`) plus `[s3]` for the S3 client, so one file can
//! serve a whole deployment. `docs/configuration.md` lists every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Deserialize;
use strata_agent::AgentConfig;
use strata_compactor::CompactorConfig;

use crate::object_store_url::ObjectStoreUrl;
use crate::security_config::SecurityOptions;

/// Default catalog gRPC listener.
pub(crate) const DEFAULT_CATALOG_LISTEN: &str = "127.0.0.1:9093";
/// Default catalog `/metrics` listener.
pub(crate) const DEFAULT_CATALOG_METRICS_LISTEN: &str = "127.0.0.1:9645";
/// Default agent Kafka listener.
pub(crate) const DEFAULT_AGENT_LISTEN: &str = "127.0.0.1:9092";
/// Default agent `/metrics` listener.
pub(crate) const DEFAULT_AGENT_METRICS_LISTEN: &str = "127.0.0.1:9644";
/// Default agent lease: an agent missing heartbeats for this long is
/// fenced and leaves Metadata.
pub(crate) const DEFAULT_AGENT_LEASE_MS: u64 = 10_000;
/// How long the catalog lease lasts without renewal.
pub(crate) const DEFAULT_CATALOG_LEASE_MS: u64 = 10_000;
/// Default compactor `/metrics` listener.
pub(crate) const DEFAULT_COMPACTOR_METRICS_LISTEN: &str = "127.0.0.1:9646";
/// Default catalog endpoint of an agent.
pub(crate) const DEFAULT_CATALOG_ENDPOINT: &str = "http://127.0.0.1:9093";
/// Default cluster id reported to Kafka clients.
pub(crate) const DEFAULT_CLUSTER_ID: &str = "strata";
/// Production flushes wait this long for more data: every flush is one
/// paid PUT on S3.
pub(crate) const DEFAULT_FLUSH_INTERVAL_MS: u64 = 100;
/// Default flush size.
pub(crate) const DEFAULT_FLUSH_BYTES: usize = 4 * 1024 * 1024;
/// Default wait for a produce to become durable before REQUEST_TIMED_OUT.
pub(crate) const DEFAULT_PRODUCE_TIMEOUT_MS: u64 = 30_000;
/// Default memory tier of the block cache.
pub(crate) const DEFAULT_CACHE_MEMORY_MB: usize = 256;
/// Default disk tier of the block cache: on in production, where every
/// miss is a paid GET.
pub(crate) const DEFAULT_CACHE_DISK_MB: usize = 1024;
/// Default attempts after a failed object-store request.
pub(crate) const DEFAULT_S3_RETRIES_MAX: usize = 10;
/// Default bound on the time spent retrying one object-store request. With
/// the request timeout it stays within the default produce timeout, so a
/// retried flush never outlives the produce waiting for it.
pub(crate) const DEFAULT_S3_RETRY_TIMEOUT_MS: u64 = 20_000;
/// Default timeout of one object-store request.
pub(crate) const DEFAULT_S3_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Default timeout for opening a connection to the object store.
pub(crate) const DEFAULT_S3_CONNECT_TIMEOUT_MS: u64 = 5_000;

/// Declares a struct of optional settings that clap and serde both fill,
/// and `or`, which layers one over another field by field.
macro_rules! layered {
    (
        $(#[$meta:meta])*
        pub(crate) struct $name:ident {
            $( $(#[$field_meta:meta])* $field:ident: $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub(crate) struct $name {
            $( $(#[$field_meta])* pub(crate) $field: Option<$ty>, )*
        }

        impl $name {
            /// The settings' keys, as in the file.
            #[allow(dead_code, clippy::allow_attributes, reason = "used by some structs only")]
            pub(crate) const KEYS: &'static [&'static str] = &[$( stringify!($field), )*];

            /// `self`'s settings, each falling back to `lower`'s.
            pub(crate) fn or(self, lower: Self) -> Self {
                Self { $( $field: self.$field.or(lower.$field), )* }
            }
        }
    };
}

pub(crate) use layered;

layered! {
    /// Settings of `strata catalog` (file section `[catalog]`).
    #[derive(Debug, Default, Clone, Args, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct CatalogOptions {
        /// Where the catalog keeps its state: sqlite:///path/catalog.db or
        /// postgres://user@host:port/database.
        #[arg(long, env = "STRATA_STORE")]
        store: String,
        /// gRPC listener for agents and tools [default: 127.0.0.1:9093].
        #[arg(long, env = "STRATA_LISTEN")]
        listen: SocketAddr,
        /// HTTP endpoint for /metrics, /health and /ready
        /// [default: 127.0.0.1:9645].
        #[arg(long, env = "STRATA_METRICS_LISTEN")]
        metrics_listen: SocketAddr,
        /// SQLite synchronous=FULL: commits survive power loss, not only a
        /// crash [default: true].
        #[arg(long, env = "STRATA_FSYNC", action = clap::ArgAction::Set)]
        fsync: bool,
        /// An agent that does not heartbeat for this long is fenced and
        /// drops out of Metadata [default: 10000].
        #[arg(long, env = "STRATA_AGENT_LEASE_MS")]
        agent_lease_ms: u64,
        /// Refuse a first commit whose object is older than this; orphan
        /// sweeps wait twice it [default: 300000].
        #[arg(long, env = "STRATA_MAX_COMMIT_AGE_MS")]
        max_commit_age_ms: i64,
        /// The address agents reach this catalog at, named by standbys
        /// [default: http://<--listen>].
        #[arg(long, env = "STRATA_ADVERTISE")]
        advertise: String,
        /// One catalog per database holds the lease and serves; standbys take
        /// over this long after it stops renewing [default: 10000].
        #[arg(long, env = "STRATA_CATALOG_LEASE_MS")]
        catalog_lease_ms: u64,
        /// How often the active catalog renews its lease and a standby
        /// tries to take it [default: a third of --catalog-lease-ms].
        #[arg(long, env = "STRATA_CATALOG_LEASE_RENEW_INTERVAL_MS")]
        catalog_lease_renew_interval_ms: u64,
        /// Commit events wait this long behind a missing commit-stream
        /// sequence, then agents resync [default: 2000].
        #[arg(long, env = "STRATA_COMMIT_GAP_TIMEOUT_MS")]
        commit_gap_timeout_ms: u64,
    }
}

layered! {
    /// Settings of `strata agent` (file section `[agent]`).
    #[derive(Debug, Default, Clone, Args, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct AgentOptions {
        /// The catalog's gRPC endpoint; with catalog high availability,
        /// every catalog of the database, comma-separated
        /// (http://a:9093,http://b:9093): calls follow the active one
        /// [default: http://127.0.0.1:9093].
        #[arg(long, env = "STRATA_CATALOG")]
        catalog: String,
        /// Where data lives: s3://bucket/prefix or file:///directory.
        #[arg(long, env = "STRATA_OBJECT_STORE")]
        object_store: String,
        /// Kafka listener [default: 127.0.0.1:9092].
        #[arg(long, env = "STRATA_LISTEN")]
        listen: SocketAddr,
        /// host:port clients are told to connect to [default: the listener].
        #[arg(long, env = "STRATA_ADVERTISE")]
        advertise: String,
        /// Names the default agent id (`agent-<node_id>`); the broker id in
        /// Metadata comes from the catalog [default: none].
        #[arg(long, env = "STRATA_NODE_ID")]
        node_id: i32,
        /// Id this agent commits under; unique per agent (two agents with
        /// one id fence each other) [default: agent-<node_id> with
        /// --node-id, else agent-<host name>-<advertised port>].
        #[arg(long, env = "STRATA_AGENT_ID")]
        agent_id: String,
        /// Availability zone (Kafka's broker.rack) [default: none].
        #[arg(long, env = "STRATA_ZONE")]
        zone: String,
        /// Cluster id reported to clients; the same on every agent
        /// [default: strata].
        #[arg(long, env = "STRATA_CLUSTER_ID")]
        cluster_id: String,
        /// HTTP endpoint for /metrics, /health and /ready
        /// [default: 127.0.0.1:9644].
        #[arg(long, env = "STRATA_METRICS_LISTEN")]
        metrics_listen: SocketAddr,
        /// Flush once the oldest buffered batch is this old [default: 100].
        #[arg(long, env = "STRATA_FLUSH_INTERVAL_MS")]
        flush_interval_ms: u64,
        /// Also flush whenever no flush is in flight (more, smaller objects)
        /// [default: false].
        #[arg(long, env = "STRATA_FLUSH_EAGER", action = clap::ArgAction::Set)]
        flush_eager: bool,
        /// Flush once the buffer holds this many bytes [default: 4194304].
        #[arg(long, env = "STRATA_FLUSH_BYTES")]
        flush_bytes: usize,
        /// Answer a produce with REQUEST_TIMED_OUT when its data is not
        /// durable after this long [default: 30000].
        #[arg(long, env = "STRATA_PRODUCE_TIMEOUT_MS")]
        produce_timeout_ms: u64,
        /// Create unknown topics on Metadata requests [default: true].
        #[arg(long, env = "STRATA_AUTO_CREATE_TOPICS", action = clap::ArgAction::Set)]
        auto_create_topics: bool,
        /// Partitions of auto-created topics [default: 1].
        #[arg(long, env = "STRATA_DEFAULT_PARTITIONS")]
        default_partitions: u32,
        /// Memory tier of the block cache, in MiB [default: 256].
        #[arg(long, env = "STRATA_CACHE_MEMORY_MB")]
        cache_memory_mb: usize,
        /// Disk tier of the block cache, in MiB; 0 turns it off
        /// [default: 1024].
        #[arg(long, env = "STRATA_CACHE_DISK_MB")]
        cache_disk_mb: usize,
        /// Directory of the disk tier; one per agent
        /// [default: <temp dir>/strata-cache-<listen port>].
        #[arg(long, env = "STRATA_CACHE_DIR")]
        cache_dir: PathBuf,
    }
}

layered! {
    /// The agent's hard limits on what clients may ask (file section
    /// `[agent]`; also taken by `strata dev`). Kafka's broker settings of
    /// the same names where Kafka has one.
    #[derive(Debug, Default, Clone, Args, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct LimitOptions {
        /// Bytes buffered or uploading before produces wait for room; also
        /// the most one produce partition may carry [default: 67108864].
        #[arg(long, env = "STRATA_BUFFER_BYTES_MAX")]
        buffer_bytes_max: usize,
        /// Kafka's message.max.bytes: the largest record batch of a topic
        /// without its own max.message.bytes (never above
        /// buffer_bytes_max) [default: 1048588].
        #[arg(long, env = "STRATA_MESSAGE_MAX_BYTES")]
        message_max_bytes: usize,
        /// Kafka's fetch.max.bytes: the most record bytes one Fetch
        /// response carries, whatever the request asks [default: 57671680].
        #[arg(long, env = "STRATA_FETCH_MAX_BYTES")]
        fetch_max_bytes: usize,
        /// The most Fetch response bytes in memory at once, over all
        /// connections [default: 268435456].
        #[arg(long, env = "STRATA_FETCH_MEMORY_BYTES_MAX")]
        fetch_memory_bytes_max: usize,
        /// Close a connection whose client has not read a response whole
        /// this long after it was written [default: 30000].
        #[arg(long, env = "STRATA_RESPONSE_WRITE_TIMEOUT_MS")]
        response_write_timeout_ms: u64,
        /// Kafka's max.connections: client connections open at once; more
        /// are closed on arrival [default: 10000].
        #[arg(long, env = "STRATA_MAX_CONNECTIONS")]
        max_connections: usize,
        /// Kafka's max.connections.per.ip [default: 1000].
        #[arg(long, env = "STRATA_MAX_CONNECTIONS_PER_IP")]
        max_connections_per_ip: usize,
        /// Kafka's connections.max.idle.ms: close a connection with no
        /// request for this long [default: 600000].
        #[arg(long, env = "STRATA_CONNECTIONS_MAX_IDLE_MS")]
        connections_max_idle_ms: u64,
        /// Close a connection whose request frame has not arrived whole
        /// this long after its first byte [default: 30000].
        #[arg(long, env = "STRATA_REQUEST_READ_TIMEOUT_MS")]
        request_read_timeout_ms: u64,
        /// The most partitions one topic may have [default: 10000].
        #[arg(long, env = "STRATA_MAX_PARTITIONS_PER_TOPIC")]
        max_partitions_per_topic: u32,
        /// The most partitions of all topics together [default: 100000].
        #[arg(long, env = "STRATA_MAX_PARTITIONS")]
        max_partitions: u64,
    }
}

impl LimitOptions {
    /// Layers the set limits over `config` (`strata agent` and
    /// `strata dev`); every limit is at least 1.
    pub(crate) fn apply(&self, config: &mut AgentConfig) {
        let ms = Duration::from_millis;
        let limits = &mut config.limits;
        if let Some(v) = self.buffer_bytes_max {
            config.buffer_bytes_max = v.max(1);
        }
        if let Some(v) = self.message_max_bytes {
            limits.message_max_bytes = v.max(1);
        }
        if let Some(v) = self.fetch_max_bytes {
            limits.fetch_max_bytes = v.max(1);
        }
        if let Some(v) = self.fetch_memory_bytes_max {
            limits.fetch_memory_bytes_max = v.max(1);
        }
        if let Some(v) = self.response_write_timeout_ms {
            limits.response_write_timeout = ms(v.max(1));
        }
        if let Some(v) = self.max_connections {
            limits.max_connections = v.max(1);
        }
        if let Some(v) = self.max_connections_per_ip {
            limits.max_connections_per_ip = v.max(1);
        }
        if let Some(v) = self.connections_max_idle_ms {
            limits.connections_max_idle = ms(v.max(1));
        }
        if let Some(v) = self.request_read_timeout_ms {
            limits.request_read_timeout = ms(v.max(1));
        }
        if let Some(v) = self.max_partitions_per_topic {
            limits.max_partitions_per_topic = v.max(1);
        }
        if let Some(v) = self.max_partitions {
            limits.max_partitions = v.max(1);
        }
    }
}

layered! {
    /// Settings of `strata compactor` (file section `[compactor]`).
    #[derive(Debug, Default, Clone, Args, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct CompactorOptions {
        /// The catalog's gRPC endpoint; with catalog high availability,
        /// every catalog of the database, comma-separated
        /// (http://a:9093,http://b:9093): calls follow the active one
        /// [default: http://127.0.0.1:9093].
        #[arg(long, env = "STRATA_CATALOG")]
        catalog: String,
        /// Where data lives (the agents' object store): s3://bucket/prefix
        /// or file:///directory.
        #[arg(long, env = "STRATA_OBJECT_STORE")]
        object_store: String,
        /// HTTP endpoint for /metrics, /health and /ready
        /// [default: 127.0.0.1:9646].
        #[arg(long, env = "STRATA_METRICS_LISTEN")]
        metrics_listen: SocketAddr,
        /// Names this compactor in compaction claims; unique per process
        /// [default: <hostname>-<pid>].
        #[arg(long, env = "STRATA_COMPACTOR_ID")]
        compactor_id: String,
        /// Time between passes over every partition [default: 60000].
        #[arg(long, env = "STRATA_INTERVAL_MS")]
        interval_ms: u64,
        /// Segment bytes (input) gathered into one Parquet file
        /// [default: 134217728].
        #[arg(long, env = "STRATA_TARGET_FILE_BYTES")]
        target_file_bytes: u64,
        /// Distinct keys the key compaction map holds at most (about 48
        /// bytes each); dirty files past it wait for the next pass
        /// [default: 2000000].
        #[arg(long, env = "STRATA_KEY_COMPACTION_KEYS_MAX")]
        key_compaction_keys_max: usize,
        /// Parquet row group size [default: 16777216].
        #[arg(long, env = "STRATA_ROW_GROUP_BYTES")]
        row_group_bytes: usize,
        /// Delete a dead object once it has been dead this long (longer
        /// than any read in flight) [default: 600000].
        #[arg(long, env = "STRATA_GC_GRACE_MS")]
        gc_grace_ms: i64,
        /// Delete an object the catalog does not know once it is this old,
        /// and never before twice the catalog's max commit age (so never
        /// one whose commit may still land) [default: 3600000].
        #[arg(long, env = "STRATA_ORPHAN_GRACE_MS")]
        orphan_grace_ms: i64,
        /// Time between orphan sweeps (each lists the bucket)
        /// [default: 3600000].
        #[arg(long, env = "STRATA_ORPHAN_SWEEP_INTERVAL_MS")]
        orphan_sweep_interval_ms: u64,
        /// Length of a compaction claim, renewed while working
        /// [default: 60000].
        #[arg(long, env = "STRATA_CLAIM_LEASE_MS")]
        claim_lease_ms: i64,
        /// Time between retention checks (Kafka's
        /// log.retention.check.interval.ms) [default: 300000].
        #[arg(long, env = "STRATA_RETENTION_CHECK_INTERVAL_MS")]
        retention_check_interval_ms: i64,
    }
}

layered! {
    /// The S3 client (file section `[s3]`). Unset keys fall back to the
    /// standard AWS environment (`AWS_ENDPOINT_URL`, `AWS_REGION`, ...).
    #[derive(Debug, Default, Clone, Args, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct S3Options {
        /// S3 endpoint, for MinIO and other S3-compatible servers
        /// [default: AWS_ENDPOINT_URL, else AWS S3].
        #[arg(long = "s3-endpoint", env = "STRATA_S3_ENDPOINT")]
        endpoint: String,
        /// Region [default: AWS_REGION / AWS_DEFAULT_REGION, else us-east-1].
        #[arg(long = "s3-region", env = "STRATA_S3_REGION")]
        region: String,
        /// Path-style URLs (endpoint/bucket/key) instead of virtual-hosted
        /// (bucket.endpoint/key) [default: true].
        #[arg(long = "s3-path-style", env = "STRATA_S3_PATH_STYLE", action = clap::ArgAction::Set)]
        path_style: bool,
        /// Allow plain http:// endpoints [default: true when the endpoint
        /// starts with http://].
        #[arg(long = "s3-allow-http", env = "STRATA_S3_ALLOW_HTTP", action = clap::ArgAction::Set)]
        allow_http: bool,
        /// Retries of a failed request (with exponential backoff)
        /// [default: 10].
        #[arg(long = "s3-retries-max", env = "STRATA_S3_RETRIES_MAX")]
        retries_max: usize,
        /// Stop retrying a request after this long [default: 20000].
        #[arg(long = "s3-retry-timeout-ms", env = "STRATA_S3_RETRY_TIMEOUT_MS")]
        retry_timeout_ms: u64,
        /// Timeout of one request [default: 10000].
        #[arg(long = "s3-request-timeout-ms", env = "STRATA_S3_REQUEST_TIMEOUT_MS")]
        request_timeout_ms: u64,
        /// Timeout for opening a connection [default: 5000].
        #[arg(long = "s3-connect-timeout-ms", env = "STRATA_S3_CONNECT_TIMEOUT_MS")]
        connect_timeout_ms: u64,
    }
}

/// The `--config` TOML file: one optional section per role.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// `[catalog]`.
    #[serde(default)]
    pub(crate) catalog: CatalogOptions,
    /// `[agent]`.
    #[serde(default)]
    pub(crate) agent: AgentOptions,
    /// The limit keys of `[agent]` (see [`ConfigFile::parse`]).
    #[serde(skip)]
    pub(crate) agent_limits: LimitOptions,
    /// The listener and security keys of `[agent]`.
    #[serde(skip)]
    pub(crate) agent_security: SecurityOptions,
    /// `[compactor]`.
    #[serde(default)]
    pub(crate) compactor: CompactorOptions,
    /// `[s3]`.
    #[serde(default)]
    pub(crate) s3: S3Options,
}

impl ConfigFile {
    /// Reads `path`, or an empty file when there is none.
    pub(crate) fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::parse(&text).with_context(|| {
            format!(
                "invalid config file {} (keys are listed in docs/configuration.md)",
                path.display()
            )
        })
    }

    /// Parses the file. `[agent]` holds both [`AgentOptions`] and
    /// [`LimitOptions`] (which `strata dev` shares); serde cannot flatten
    /// into a struct that denies unknown keys, so the limit keys are taken
    /// out of the section first.
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut table: toml::Table = toml::from_str(text)?;
        let mut limits = toml::Table::new();
        let mut security = toml::Table::new();
        if let Some(toml::Value::Table(agent)) = table.get_mut("agent") {
            for (keys, into) in [
                (LimitOptions::KEYS, &mut limits),
                (SecurityOptions::KEYS, &mut security),
            ] {
                for key in keys {
                    if let Some(value) = agent.remove(*key) {
                        into.insert((*key).to_string(), value);
                    }
                }
            }
        }
        let mut file: Self = table.try_into()?;
        file.agent_limits = limits.try_into()?;
        file.agent_security = security.try_into()?;
        Ok(file)
    }
}

/// The agent id used when none is given: `agent-<node id>` when a node id
/// is (the operator numbered the agents), else one that differs between
/// machines and between agents on one machine (which listen on different
/// ports), so that agents started without ids never share one.
fn default_agent_id(node_id: Option<i32>, machine: &str, advertise_port: u16) -> String {
    match node_id {
        Some(node_id) => format!("agent-{node_id}"),
        None => format!("agent-{machine}-{advertise_port}"),
    }
}

/// This machine's host name (Linux: the kernel's; else `$HOSTNAME`).
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `strata catalog`, fully resolved. Its `Debug` hides a password in the
/// store URL, so the settings can be logged.
#[derive(Clone)]
pub(crate) struct CatalogSettings {
    /// The store URL (`sqlite://...` or `postgres://...`).
    pub(crate) store: String,
    /// gRPC listener.
    pub(crate) listen: SocketAddr,
    /// HTTP listener.
    pub(crate) metrics_listen: SocketAddr,
    /// SQLite `synchronous=FULL`.
    pub(crate) fsync: bool,
    /// Agent lease.
    pub(crate) agent_lease_ms: u64,
    /// Oldest an object may be at its first commit or swap.
    pub(crate) max_commit_age_ms: i64,
    /// HA: this catalog's address for agents, the lease, its renewal.
    pub(crate) advertise: String,
    pub(crate) catalog_lease_ms: u64,
    pub(crate) catalog_lease_renew_interval_ms: u64,
    /// How long the commit stream waits for a missing sequence.
    pub(crate) commit_gap_timeout_ms: u64,
    /// Test-only commit faults over `/faults`.
    pub(crate) fault_injection: bool,
}

impl std::fmt::Debug for CatalogSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogSettings")
            .field("store", &redact_password(&self.store))
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("fsync", &self.fsync)
            .field("agent_lease_ms", &self.agent_lease_ms)
            .field("max_commit_age_ms", &self.max_commit_age_ms)
            .field("advertise", &self.advertise)
            .field("catalog_lease_ms", &self.catalog_lease_ms)
            .field(
                "catalog_lease_renew_interval_ms",
                &self.catalog_lease_renew_interval_ms,
            )
            .field("commit_gap_timeout_ms", &self.commit_gap_timeout_ms)
            .field("fault_injection", &self.fault_injection)
            .finish()
    }
}

/// `url` with its password, if any, replaced by `***`.
pub(crate) fn redact_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Fails only for URLs that cannot have a password at all.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// The shortest `max_commit_age_ms` accepted: a second, so that a test can
/// shorten the orphan sweep's wait without refusing every commit.
const MIN_MAX_COMMIT_AGE_MS: i64 = 1_000;

impl CatalogSettings {
    /// Applies the defaults; fails when a required setting is missing.
    pub(crate) fn resolve(options: CatalogOptions) -> anyhow::Result<Self> {
        let store = options.store.context(
            "no catalog store: pass --store sqlite:///path/catalog.db (or set STRATA_STORE, \
             or `store` under [catalog] in the --config file)",
        )?;
        let listen = options.listen.unwrap_or(addr(DEFAULT_CATALOG_LISTEN));
        let catalog_lease_ms = options
            .catalog_lease_ms
            .unwrap_or(DEFAULT_CATALOG_LEASE_MS)
            .max(1);
        let catalog_lease_renew_interval_ms = options
            .catalog_lease_renew_interval_ms
            .unwrap_or(catalog_lease_ms / 3)
            .max(1);
        anyhow::ensure!(
            catalog_lease_renew_interval_ms < catalog_lease_ms,
            "--catalog-lease-renew-interval-ms ({catalog_lease_renew_interval_ms}) must be below \
             --catalog-lease-ms ({catalog_lease_ms}), or the active catalog loses its lease \
             between renewals; a third of the lease is a good value"
        );
        Ok(Self {
            store,
            listen,
            metrics_listen: options
                .metrics_listen
                .unwrap_or(addr(DEFAULT_CATALOG_METRICS_LISTEN)),
            fsync: options.fsync.unwrap_or(true),
            agent_lease_ms: options.agent_lease_ms.unwrap_or(DEFAULT_AGENT_LEASE_MS),
            max_commit_age_ms: match options.max_commit_age_ms {
                None => strata_catalog::MAX_COMMIT_AGE_MS_DEFAULT,
                Some(ms) if ms >= MIN_MAX_COMMIT_AGE_MS => ms,
                Some(ms) => anyhow::bail!(
                    "max_commit_age_ms = {ms} is too short: commits need at least \
                     {MIN_MAX_COMMIT_AGE_MS} ms (keep it above the agents' produce timeout, \
                     default 30000)"
                ),
            },
            advertise: options
                .advertise
                .unwrap_or_else(|| format!("http://{listen}")),
            catalog_lease_ms,
            catalog_lease_renew_interval_ms,
            commit_gap_timeout_ms: options.commit_gap_timeout_ms.unwrap_or(2_000),
            fault_injection: false,
        })
    }
}

/// The `--object-store` a role cannot run without, parsed; the error
/// says how to give it (`whose` names whose store it must be).
fn required_object_store(value: Option<&str>, whose: &str) -> anyhow::Result<ObjectStoreUrl> {
    let value = value.with_context(|| {
        format!(
            "no object store: pass --object-store s3://bucket/prefix or \
             --object-store file:///directory{whose} (or set STRATA_OBJECT_STORE)"
        )
    })?;
    ObjectStoreUrl::parse(value)
}

/// `strata agent`, fully resolved.
#[derive(Debug, Clone)]
pub(crate) struct AgentSettings {
    /// The catalog's gRPC endpoint.
    pub(crate) catalog: String,
    /// Where objects live.
    pub(crate) object_store: ObjectStoreUrl,
    /// HTTP listener.
    pub(crate) metrics_listen: SocketAddr,
    /// Wrap the object store in the test-only fault injector.
    pub(crate) fault_injection: bool,
    /// The agent's own settings.
    pub(crate) agent: AgentConfig,
}

impl AgentSettings {
    /// Applies the production defaults; fails when a required setting is
    /// missing or malformed.
    pub(crate) fn resolve(
        options: AgentOptions,
        limits: &LimitOptions,
        security: &SecurityOptions,
    ) -> anyhow::Result<Self> {
        let object_store = required_object_store(options.object_store.as_deref(), "")?;
        let listen = options.listen.unwrap_or(addr(DEFAULT_AGENT_LISTEN));
        let mut agent = AgentConfig::dev(listen, None);
        let (host, port) = match options.advertise.as_deref() {
            Some(advertise) => parse_host_port(advertise)?,
            None => (listen.ip().to_string(), listen.port()),
        };
        agent.advertise_host = host;
        agent.advertise_port = port;
        agent.node_id = options.node_id.unwrap_or(0);
        agent.register = true;
        agent.zone = options.zone.clone().filter(|zone| !zone.is_empty());
        apply_flush_options(&mut agent, &options);
        apply_cache_options(&mut agent, &options, listen);
        limits.apply(&mut agent);
        security.apply(&mut agent)?;
        agent.agent_id = options.agent_id.unwrap_or_else(|| {
            default_agent_id(options.node_id, &machine_name(), agent.advertise_port)
        });
        agent.cluster_id = options
            .cluster_id
            .unwrap_or_else(|| DEFAULT_CLUSTER_ID.to_string());
        Ok(Self {
            catalog: options
                .catalog
                .unwrap_or_else(|| DEFAULT_CATALOG_ENDPOINT.to_string()),
            object_store,
            metrics_listen: options
                .metrics_listen
                .unwrap_or(addr(DEFAULT_AGENT_METRICS_LISTEN)),
            fault_injection: false,
            agent,
        })
    }
}

fn apply_flush_options(agent: &mut AgentConfig, options: &AgentOptions) {
    agent.flush_interval = Duration::from_millis(
        options
            .flush_interval_ms
            .unwrap_or(DEFAULT_FLUSH_INTERVAL_MS),
    );
    agent.flush_eager = options.flush_eager.unwrap_or(false);
    agent.flush_bytes = options.flush_bytes.unwrap_or(DEFAULT_FLUSH_BYTES);
    agent.produce_timeout = Duration::from_millis(
        options
            .produce_timeout_ms
            .unwrap_or(DEFAULT_PRODUCE_TIMEOUT_MS),
    );
    agent.auto_create_topics = options.auto_create_topics.unwrap_or(true);
    agent.default_partitions = options.default_partitions.unwrap_or(1).max(1);
}

fn apply_cache_options(agent: &mut AgentConfig, options: &AgentOptions, listen: SocketAddr) {
    let mib = 1024 * 1024;
    agent.cache.memory_bytes = options.cache_memory_mb.unwrap_or(DEFAULT_CACHE_MEMORY_MB) * mib;
    let disk_mb = options.cache_disk_mb.unwrap_or(DEFAULT_CACHE_DISK_MB);
    agent.cache.disk_bytes = disk_mb * mib;
    agent.cache.disk_dir = (disk_mb > 0).then(|| {
        options
            .cache_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("strata-cache-{}", listen.port())))
    });
}

/// `strata compactor`, fully resolved.
#[derive(Debug, Clone)]
pub(crate) struct CompactorSettings {
    /// The catalog's gRPC endpoint.
    pub(crate) catalog: String,
    /// Where objects live.
    pub(crate) object_store: ObjectStoreUrl,
    /// HTTP listener.
    pub(crate) metrics_listen: SocketAddr,
    /// The compactor's own settings.
    pub(crate) compactor: CompactorConfig,
}

impl CompactorSettings {
    /// Applies the defaults (CompactorConfig::new's); fails when the object
    /// store is missing or malformed.
    pub(crate) fn resolve(options: CompactorOptions) -> anyhow::Result<Self> {
        let object_store = required_object_store(options.object_store.as_deref(), ", the agents'")?;
        let id = options
            .compactor_id
            .clone()
            .unwrap_or_else(default_compactor_id);
        let mut compactor = CompactorConfig::new(id);
        apply_compactor_options(&mut compactor, &options);
        Ok(Self {
            catalog: options
                .catalog
                .unwrap_or_else(|| DEFAULT_CATALOG_ENDPOINT.to_string()),
            object_store,
            metrics_listen: options
                .metrics_listen
                .unwrap_or(addr(DEFAULT_COMPACTOR_METRICS_LISTEN)),
            compactor,
        })
    }
}

/// Layers the set options over `config` (`strata dev` uses it too).
pub(crate) fn apply_compactor_options(config: &mut CompactorConfig, options: &CompactorOptions) {
    let ms = Duration::from_millis;
    if let Some(v) = options.interval_ms {
        config.interval = ms(v);
    }
    if let Some(v) = options.target_file_bytes {
        config.target_file_bytes = v.max(1);
    }
    if let Some(v) = options.key_compaction_keys_max {
        config.key_compaction_keys_max = v.max(1);
    }
    if let Some(v) = options.row_group_bytes {
        config.write.row_group_bytes = v.max(1);
    }
    if let Some(v) = options.gc_grace_ms {
        config.gc_grace_ms = v.max(0);
    }
    if let Some(v) = options.orphan_grace_ms {
        config.orphan_grace_ms = v.max(0);
    }
    if let Some(v) = options.orphan_sweep_interval_ms {
        config.orphan_sweep_interval = ms(v);
    }
    if let Some(v) = options.claim_lease_ms {
        config.claim_lease_ms = v.clamp(1, 3_600_000);
    }
    if let Some(v) = options.retention_check_interval_ms {
        config.retention_check_interval_ms = v.max(0);
    }
}

/// `<hostname>-<pid>`: unique per process on a host, readable in logs.
fn default_compactor_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "compactor".to_string());
    format!("{host}-{}", std::process::id())
}

/// The S3 client settings with Strata's defaults applied where Strata
/// has one; `None` leaves the key to the AWS environment.
#[derive(Debug, Clone)]
pub(crate) struct S3Settings {
    /// Endpoint override.
    pub(crate) endpoint: Option<String>,
    /// Region override.
    pub(crate) region: Option<String>,
    /// Path-style override.
    pub(crate) path_style: Option<bool>,
    /// Plain-HTTP override.
    pub(crate) allow_http: Option<bool>,
    /// Retries per request.
    pub(crate) retries_max: usize,
    /// Retry budget per request.
    pub(crate) retry_timeout: Duration,
    /// Timeout per request.
    pub(crate) request_timeout: Duration,
    /// Timeout per connection attempt.
    pub(crate) connect_timeout: Duration,
}

impl S3Settings {
    /// Applies the defaults.
    pub(crate) fn resolve(options: S3Options) -> Self {
        let ms = Duration::from_millis;
        Self {
            endpoint: options.endpoint,
            region: options.region,
            path_style: options.path_style,
            allow_http: options.allow_http,
            retries_max: options.retries_max.unwrap_or(DEFAULT_S3_RETRIES_MAX),
            retry_timeout: ms(options
                .retry_timeout_ms
                .unwrap_or(DEFAULT_S3_RETRY_TIMEOUT_MS)),
            request_timeout: ms(options
                .request_timeout_ms
                .unwrap_or(DEFAULT_S3_REQUEST_TIMEOUT_MS)),
            connect_timeout: ms(options
                .connect_timeout_ms
                .unwrap_or(DEFAULT_S3_CONNECT_TIMEOUT_MS)),
        }
    }
}

/// Parses `host:port` (the host may be a name, an IPv4 address or a
/// bracketed IPv6 address).
pub(crate) fn parse_host_port(text: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("`{text}` is not host:port (e.g. agent-1.internal:9092)"))?;
    let port = port
        .parse::<u16>()
        .with_context(|| format!("`{text}`: the port must be a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    anyhow::ensure!(!host.is_empty(), "`{text}`: the host is empty");
    Ok((host.to_string(), port))
}

/// `--fault-injection` is a flag only (no environment variable, no file
/// key: configuration alone cannot turn it on in production) and serves
/// `/faults` only on a loopback metrics endpoint.
pub(crate) fn check_fault_injection(
    enabled: bool,
    metrics_listen: SocketAddr,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !enabled || metrics_listen.ip().is_loopback(),
        "--fault-injection serves /faults on the metrics endpoint, which must then be on \
         loopback (e.g. --metrics-listen 127.0.0.1:9644), not {metrics_listen}"
    );
    Ok(())
}

/// One of the `DEFAULT_*` listener constants as an address.
fn addr(constant: &'static str) -> SocketAddr {
    constant
        .parse()
        .expect("the DEFAULT_* listener constants are valid socket addresses")
}

#[cfg(test)]
mod tests;
