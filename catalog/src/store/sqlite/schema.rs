//! The SQLite schema, its versioned migrations, and connection settings.

use rusqlite::{Connection, OptionalExtension};

use crate::Result;
use crate::store::migrations;

/// Migrations in order; migration `i` brings the schema to version `i + 1`.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7];

/// Version 1: topics, partitions, the chunk index, segments, producers.
///
/// Room for transactions is already here, so they need no migration of the
/// hot tables: `partitions.last_stable_offset`, the transaction columns of
/// `producer_partitions`, and the `transactional_ids` table (its `state`
/// column will hold the transaction state machine).
const V1: &str = "
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('commit_sequence', 0), ('next_producer_id', 0);

CREATE TABLE topics (
    topic_id BLOB PRIMARY KEY,
    name TEXT NOT NULL,
    partition_count INTEGER NOT NULL,
    configs TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    deleted_ms INTEGER
) WITHOUT ROWID;
CREATE UNIQUE INDEX topics_live_name ON topics (name) WHERE deleted = 0;

CREATE TABLE partitions (
    topic_id BLOB NOT NULL,
    partition INTEGER NOT NULL,
    log_start_offset INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    last_stable_offset INTEGER NOT NULL,
    max_timestamp INTEGER NOT NULL,
    max_timestamp_offset INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition)
) WITHOUT ROWID;

CREATE TABLE chunks (
    topic_id BLOB NOT NULL,
    partition INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    object_key TEXT NOT NULL,
    object_size INTEGER NOT NULL,
    position INTEGER NOT NULL,
    length INTEGER NOT NULL,
    batch_count INTEGER NOT NULL,
    max_timestamp INTEGER NOT NULL,
    running_max_timestamp INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
) WITHOUT ROWID;
CREATE INDEX chunks_by_time ON chunks (topic_id, partition, running_max_timestamp);

CREATE TABLE segments (
    segment_id TEXT PRIMARY KEY,
    object_key TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    committed_ms INTEGER NOT NULL,
    response BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE producers (
    producer_id INTEGER PRIMARY KEY,
    producer_epoch INTEGER NOT NULL,
    transactional_id TEXT,
    last_update_ms INTEGER NOT NULL
);

CREATE TABLE transactional_ids (
    transactional_id TEXT PRIMARY KEY,
    producer_id INTEGER NOT NULL,
    producer_epoch INTEGER NOT NULL,
    last_producer_id INTEGER NOT NULL,
    last_producer_epoch INTEGER NOT NULL,
    transaction_timeout_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    last_update_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE producer_partitions (
    producer_id INTEGER NOT NULL,
    topic_id BLOB NOT NULL,
    partition INTEGER NOT NULL,
    producer_epoch INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    last_timestamp INTEGER NOT NULL,
    last_update_ms INTEGER NOT NULL,
    coordinator_epoch INTEGER NOT NULL,
    current_txn_start_offset INTEGER NOT NULL,
    recent_batches BLOB NOT NULL,
    PRIMARY KEY (producer_id, topic_id, partition)
) WITHOUT ROWID;
CREATE INDEX producer_partitions_by_partition ON producer_partitions (topic_id, partition);
";

/// Version 2: consumer groups: committed offsets (by topic id, removed
/// with the topic) and classic group records with their members.
const V2: &str = "
CREATE TABLE group_offsets (
    group_id TEXT NOT NULL,
    topic_id BLOB NOT NULL,
    partition INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL,
    leader_epoch INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    commit_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, topic_id, partition)
) WITHOUT ROWID;
CREATE INDEX group_offsets_by_topic ON group_offsets (topic_id);

CREATE TABLE classic_groups (
    group_id TEXT PRIMARY KEY,
    protocol_type TEXT NOT NULL,
    protocol_name TEXT NOT NULL,
    generation_id INTEGER NOT NULL,
    leader_id TEXT NOT NULL,
    saved_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE classic_group_members (
    group_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    member_id TEXT NOT NULL,
    instance_id TEXT,
    client_id TEXT NOT NULL,
    client_host TEXT NOT NULL,
    session_timeout_ms INTEGER NOT NULL,
    rebalance_timeout_ms INTEGER NOT NULL,
    protocols BLOB NOT NULL,
    assignment BLOB NOT NULL,
    PRIMARY KEY (group_id, position)
) WITHOUT ROWID;
";

/// Version 3: KIP-848 consumer groups, one encoded record per group
/// (`format` names the encoding of `record`; see `consumer_groups.rs`).
const V3: &str = "
CREATE TABLE consumer_groups (
    group_id TEXT PRIMARY KEY,
    format INTEGER NOT NULL,
    record BLOB NOT NULL,
    saved_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 4: the agent registry (epochs fence zombie agents), the storage
/// tier of each chunk (segment or Parquet), an index from objects to their
/// chunks, and objects no chunk references any more (garbage collection
/// deletes them after a grace period).
///
/// `chunks.format`: 0 = a run of record batches in a segment object,
/// 1 = a Parquet file written by the compactor (`position` 0, `length` the
/// file size). `agents.fenced`: 1 once its lease expired; its commits fail
/// until it registers again and gets a new epoch. `meta.next_agent_epoch`
/// makes epochs unique across every agent and every registration.
const V4: &str = "
ALTER TABLE chunks ADD COLUMN format INTEGER NOT NULL DEFAULT 0;
CREATE INDEX chunks_by_object ON chunks (object_key);
CREATE INDEX segments_by_object ON segments (object_key);

INSERT INTO meta (key, value) VALUES ('next_agent_epoch', 1);
CREATE TABLE agents (
    agent_id TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    zone TEXT NOT NULL,
    registered_ms INTEGER NOT NULL,
    fenced INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

CREATE TABLE dead_objects (
    object_key TEXT PRIMARY KEY,
    dead_since_ms INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Version 5: transactions. Marker chunks (`format` 2) carry their
/// marker's producer id, epoch, coordinator epoch and type (1 = COMMIT,
/// 0 = ABORT) and no object. `transactional_ids.state` holds the
/// transaction state machine (`Empty`, `Ongoing`, `CompleteCommit`,
/// `CompleteAbort`) and `txn_started_ms` when the open transaction began;
/// `txn_partitions` and `txn_offsets` hold the open transaction's
/// partitions and pending consumer-group offsets; `aborted_txns` the
/// ranges of aborted transactions per partition (READ_COMMITTED fetches
/// list them), keyed by the ABORT marker's offset.
const V5: &str = "
ALTER TABLE chunks ADD COLUMN marker_producer_id INTEGER;
ALTER TABLE chunks ADD COLUMN marker_producer_epoch INTEGER;
ALTER TABLE chunks ADD COLUMN marker_coordinator_epoch INTEGER;
ALTER TABLE chunks ADD COLUMN marker_commit INTEGER;
ALTER TABLE transactional_ids ADD COLUMN txn_started_ms INTEGER NOT NULL DEFAULT -1;

CREATE TABLE txn_partitions (
    transactional_id TEXT NOT NULL,
    topic_id BLOB NOT NULL,
    partition INTEGER NOT NULL,
    PRIMARY KEY (transactional_id, topic_id, partition)
) WITHOUT ROWID;
CREATE INDEX txn_partitions_by_topic ON txn_partitions (topic_id);

CREATE TABLE txn_offsets (
    transactional_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    topic_id BLOB NOT NULL,
    partition INTEGER NOT NULL,
    committed_offset INTEGER NOT NULL,
    leader_epoch INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (transactional_id, group_id, topic_id, partition)
) WITHOUT ROWID;
CREATE INDEX txn_offsets_by_topic ON txn_offsets (topic_id);

CREATE TABLE aborted_txns (
    topic_id BLOB NOT NULL,
    partition INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    producer_id INTEGER NOT NULL,
    first_offset INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition, last_offset)
) WITHOUT ROWID;
CREATE INDEX transactional_ids_by_state ON transactional_ids (state);
";

/// Version 6: the catalog lease (high availability): one row naming the
/// active catalog, its address, its term (the fencing token every write
/// checks) and when its lease runs out.
const V6: &str = "
CREATE TABLE catalog_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    address TEXT NOT NULL,
    term INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
";

/// Version 7: security. `scram_credentials` holds each user's SCRAM
/// credential per mechanism (1 = SHA-256, 2 = SHA-512): salt, StoredKey,
/// ServerKey and PBKDF2 iterations, never a password. `agent_listeners`
/// holds each registered agent's advertised address per listener name
/// (`position` keeps the configured order).
const V7: &str = "
CREATE TABLE scram_credentials (
    user_name TEXT NOT NULL,
    mechanism INTEGER NOT NULL,
    salt BLOB NOT NULL,
    stored_key BLOB NOT NULL,
    server_key BLOB NOT NULL,
    iterations INTEGER NOT NULL,
    PRIMARY KEY (user_name, mechanism)
) WITHOUT ROWID;

CREATE TABLE agent_listeners (
    agent_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    PRIMARY KEY (agent_id, position)
) WITHOUT ROWID;
";

/// Applies the connection settings every connection needs.
pub(super) fn configure(connection: &Connection, fsync: bool) -> Result<()> {
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", if fsync { "FULL" } else { "NORMAL" })?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    connection.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    // 64 MiB of page cache (negative = KiB).
    connection.pragma_update(None, "cache_size", -65536)?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Brings the database to the newest schema version, one transaction per
/// migration. Fails if the file is newer than this build.
pub(super) fn migrate(connection: &mut Connection) -> Result<()> {
    connection
        .execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: i64 = connection
        .query_row("SELECT MAX(version) FROM schema_version", [], |row| {
            row.get::<_, Option<i64>>(0)
        })
        .optional()?
        .flatten()
        .unwrap_or(0);
    for (version, migration) in migrations::pending(MIGRATIONS, current)? {
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        transaction.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )?;
        transaction.commit()?;
        tracing::info!(version, "applied catalog schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn migrates_once_and_refuses_newer_schemas() {
        let mut connection = Connection::open_in_memory().unwrap();
        migrate(&mut connection).unwrap();
        // Idempotent: a second open applies nothing.
        migrate(&mut connection).unwrap();
        let versions: i64 = connection
            .query_row("SELECT COUNT(*) FROM schema_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(versions, i64::try_from(MIGRATIONS.len()).unwrap());
        connection
            .execute("INSERT INTO schema_version (version) VALUES (99)", [])
            .unwrap();
        assert!(matches!(
            migrate(&mut connection),
            Err(Error::SchemaTooNew { found: 99, .. })
        ));
    }

    /// Goal: a file written by a V2 build gains the KIP-848 table and keeps
    /// its groups. Method: build a V2 schema by hand, store a classic group,
    /// migrate.
    #[test]
    fn v2_files_migrate_to_v3() {
        let mut connection = Connection::open_in_memory().unwrap();
        connection
            .execute_batch("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            .unwrap();
        for (index, migration) in [V1, V2].iter().enumerate() {
            connection.execute_batch(migration).unwrap();
            connection
                .execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [i64::try_from(index).unwrap() + 1],
                )
                .unwrap();
        }
        connection
            .execute(
                "INSERT INTO classic_groups VALUES ('old', 'consumer', 'range', 3, 'm', 0)",
                [],
            )
            .unwrap();
        migrate(&mut connection).unwrap();
        let version: i64 = connection
            .query_row("SELECT MAX(version) FROM schema_version", [], |row| {
                row.get(0)
            })
            .unwrap();
        assert_eq!(version, i64::try_from(MIGRATIONS.len()).unwrap());
        let kept: i32 = connection
            .query_row(
                "SELECT generation_id FROM classic_groups WHERE group_id = 'old'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(kept, 3);
        let consumer_groups: i64 = connection
            .query_row("SELECT COUNT(*) FROM consumer_groups", [], |row| row.get(0))
            .unwrap();
        assert_eq!(consumer_groups, 0);
    }
}
