//! The PostgreSQL schema and its versioned migrations.
//!
//! Migrations run at open, under a session-level advisory lock, so two
//! catalogs starting at once apply each migration exactly once: the second
//! waits for the lock, then finds the schema current.

use tokio_postgres::Client;

use crate::Result;
use crate::store::migrations;

/// Key of the advisory lock held while migrating ("strata" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x7374_7261_7461;

/// Migrations in order; migration `i` brings the schema to version `i + 1`.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5];

/// Version 1: everything the SQLite store has at its version 3 (topics,
/// partitions, the chunk index, segments, producers, transactional ids,
/// group offsets, classic and KIP-848 group records), plus a sequence for
/// producer ids so that catalogs sharing a database never hand out the
/// same id.
///
/// Partition indexes and counts are `BIGINT` (they are `u32` in Rust);
/// topic ids are the 16 raw bytes, as in the protocol.
const V1: &str = "
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('commit_sequence', 0);

CREATE SEQUENCE producer_ids AS BIGINT MINVALUE 0 START WITH 0;

CREATE TABLE topics (
    topic_id BYTEA PRIMARY KEY,
    name TEXT NOT NULL,
    partition_count BIGINT NOT NULL,
    configs TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    deleted BOOLEAN NOT NULL DEFAULT FALSE,
    deleted_ms BIGINT
);
CREATE UNIQUE INDEX topics_live_name ON topics (name) WHERE NOT deleted;

CREATE TABLE partitions (
    topic_id BYTEA NOT NULL,
    partition BIGINT NOT NULL,
    log_start_offset BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    last_stable_offset BIGINT NOT NULL,
    max_timestamp BIGINT NOT NULL,
    max_timestamp_offset BIGINT NOT NULL,
    PRIMARY KEY (topic_id, partition)
);

CREATE TABLE chunks (
    topic_id BYTEA NOT NULL,
    partition BIGINT NOT NULL,
    base_offset BIGINT NOT NULL,
    end_offset BIGINT NOT NULL,
    object_key TEXT NOT NULL,
    object_size BIGINT NOT NULL,
    position BIGINT NOT NULL,
    length BIGINT NOT NULL,
    batch_count BIGINT NOT NULL,
    max_timestamp BIGINT NOT NULL,
    running_max_timestamp BIGINT NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
);
CREATE INDEX chunks_by_time ON chunks (topic_id, partition, running_max_timestamp);

CREATE TABLE segments (
    segment_id TEXT PRIMARY KEY,
    object_key TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    committed_ms BIGINT NOT NULL,
    response BYTEA NOT NULL
);

CREATE TABLE producers (
    producer_id BIGINT PRIMARY KEY,
    producer_epoch INTEGER NOT NULL,
    transactional_id TEXT,
    last_update_ms BIGINT NOT NULL
);

CREATE TABLE transactional_ids (
    transactional_id TEXT PRIMARY KEY,
    producer_id BIGINT NOT NULL,
    producer_epoch INTEGER NOT NULL,
    last_producer_id BIGINT NOT NULL,
    last_producer_epoch INTEGER NOT NULL,
    transaction_timeout_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    last_update_ms BIGINT NOT NULL
);

CREATE TABLE producer_partitions (
    producer_id BIGINT NOT NULL,
    topic_id BYTEA NOT NULL,
    partition BIGINT NOT NULL,
    producer_epoch INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    last_timestamp BIGINT NOT NULL,
    last_update_ms BIGINT NOT NULL,
    coordinator_epoch INTEGER NOT NULL,
    current_txn_start_offset BIGINT NOT NULL,
    recent_batches BYTEA NOT NULL,
    PRIMARY KEY (producer_id, topic_id, partition)
);
CREATE INDEX producer_partitions_by_partition ON producer_partitions (topic_id, partition);

CREATE TABLE group_offsets (
    group_id TEXT NOT NULL,
    topic_id BYTEA NOT NULL,
    partition BIGINT NOT NULL,
    committed_offset BIGINT NOT NULL,
    leader_epoch INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    commit_ms BIGINT NOT NULL,
    PRIMARY KEY (group_id, topic_id, partition)
);
CREATE INDEX group_offsets_by_topic ON group_offsets (topic_id);

CREATE TABLE classic_groups (
    group_id TEXT PRIMARY KEY,
    protocol_type TEXT NOT NULL,
    protocol_name TEXT NOT NULL,
    generation_id INTEGER NOT NULL,
    leader_id TEXT NOT NULL,
    saved_ms BIGINT NOT NULL
);

CREATE TABLE classic_group_members (
    group_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    instance_id TEXT,
    client_id TEXT NOT NULL,
    client_host TEXT NOT NULL,
    session_timeout_ms INTEGER NOT NULL,
    rebalance_timeout_ms INTEGER NOT NULL,
    protocol_names TEXT[] NOT NULL,
    protocol_metadata BYTEA[] NOT NULL,
    assignment BYTEA NOT NULL,
    PRIMARY KEY (group_id, position)
);

CREATE TABLE consumer_groups (
    group_id TEXT PRIMARY KEY,
    format BIGINT NOT NULL,
    record BYTEA NOT NULL,
    saved_ms BIGINT NOT NULL
);
";

/// Version 2: as SQLite's version 4: the agent registry, the storage tier
/// of each chunk (0 = segment, 1 = Parquet), an index from objects to their
/// chunks, and objects awaiting garbage collection. Agent epochs come from a
/// sequence, unique across catalogs sharing the database.
const V2: &str = "
ALTER TABLE chunks ADD COLUMN format SMALLINT NOT NULL DEFAULT 0;
CREATE INDEX chunks_by_object ON chunks (object_key);
CREATE INDEX segments_by_object ON segments (object_key);

CREATE SEQUENCE agent_epochs AS BIGINT MINVALUE 1 START WITH 1;
CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY,
    epoch BIGINT NOT NULL,
    host TEXT NOT NULL,
    port BIGINT NOT NULL,
    zone TEXT NOT NULL,
    registered_ms BIGINT NOT NULL,
    fenced BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE dead_objects (
    object_key TEXT PRIMARY KEY,
    dead_since_ms BIGINT NOT NULL
);
";

/// Version 3: as SQLite's version 5: transactions (marker chunks, the
/// transaction state of each transactional id, the open transactions'
/// partitions and pending offsets, aborted transaction ranges).
const V3: &str = "
ALTER TABLE chunks ADD COLUMN marker_producer_id BIGINT;
ALTER TABLE chunks ADD COLUMN marker_producer_epoch INTEGER;
ALTER TABLE chunks ADD COLUMN marker_coordinator_epoch INTEGER;
ALTER TABLE chunks ADD COLUMN marker_commit BOOLEAN;
ALTER TABLE transactional_ids ADD COLUMN txn_started_ms BIGINT NOT NULL DEFAULT -1;

CREATE TABLE txn_partitions (
    transactional_id TEXT NOT NULL,
    topic_id BYTEA NOT NULL,
    partition BIGINT NOT NULL,
    PRIMARY KEY (transactional_id, topic_id, partition)
);
CREATE INDEX txn_partitions_by_topic ON txn_partitions (topic_id);

CREATE TABLE txn_offsets (
    transactional_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    topic_id BYTEA NOT NULL,
    partition BIGINT NOT NULL,
    committed_offset BIGINT NOT NULL,
    leader_epoch INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (transactional_id, group_id, topic_id, partition)
);
CREATE INDEX txn_offsets_by_topic ON txn_offsets (topic_id);

CREATE TABLE aborted_txns (
    topic_id BYTEA NOT NULL,
    partition BIGINT NOT NULL,
    last_offset BIGINT NOT NULL,
    producer_id BIGINT NOT NULL,
    first_offset BIGINT NOT NULL,
    PRIMARY KEY (topic_id, partition, last_offset)
);
CREATE INDEX transactional_ids_by_state ON transactional_ids (state);
";

/// Version 4: the catalog lease (high availability): one row naming the
/// active catalog, its address, its term (the fencing token every write
/// checks) and when its lease runs out.
const V4: &str = "
CREATE TABLE catalog_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    address TEXT NOT NULL,
    term BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);
";

/// Version 5: as SQLite's version 7: SCRAM credentials and the agents'
/// listeners.
const V5: &str = "
CREATE TABLE scram_credentials (
    user_name TEXT NOT NULL,
    mechanism INTEGER NOT NULL,
    salt BYTEA NOT NULL,
    stored_key BYTEA NOT NULL,
    server_key BYTEA NOT NULL,
    iterations INTEGER NOT NULL,
    PRIMARY KEY (user_name, mechanism)
);

CREATE TABLE agent_listeners (
    agent_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    port BIGINT NOT NULL,
    PRIMARY KEY (agent_id, position)
);
";

/// Brings the database to the newest schema version, one transaction per
/// migration, holding the migration advisory lock throughout. Idempotent;
/// fails with `SchemaTooNew` if the database is newer than this build.
pub(super) async fn migrate(client: &mut Client) -> Result<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let migrated = apply_missing(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    migrated?;
    unlocked?;
    Ok(())
}

async fn apply_missing(client: &mut Client) -> Result<()> {
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await?;
    let current: i64 = client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await?
        .try_get(0)?;
    for (version, migration) in migrations::pending(MIGRATIONS, current)? {
        let transaction = client.transaction().await?;
        transaction.batch_execute(migration).await?;
        transaction
            .execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                &[&version],
            )
            .await?;
        transaction.commit().await?;
        tracing::info!(version, "applied catalog schema migration (postgres)");
    }
    Ok(())
}

/// How many migrations this build knows (the newest schema version).
pub(super) fn newest_version() -> i64 {
    i64::try_from(MIGRATIONS.len()).expect("few migrations")
}
