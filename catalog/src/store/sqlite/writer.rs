//! The writer thread: group commit of queued commands.

use std::sync::Arc;

use futures::FutureExt;
use rusqlite::Connection;
use tokio::sync::mpsc;

use super::SqliteOptions;
use super::rows::{Counters, WriteContext};
use crate::store::LeaseFence;
use crate::store::command::{Answer, Command, SWEEP_INTERVAL_MS};
use crate::store::ops;
use crate::{Error, Result};

/// The output of a future that is ready when created: an operation over
/// SQLite's rows, whose every method runs synchronously.
fn ready<T>(operation: impl Future<Output = T>) -> T {
    operation
        .now_or_never()
        .expect("SQLite rows are synchronous: their futures never wait")
}

/// The writer thread's loop: runs until every sender is dropped.
pub(super) fn run(
    connection: Connection,
    mut receiver: mpsc::Receiver<Command>,
    options: SqliteOptions,
    fence: LeaseFence,
) {
    let mut counters = match load_counters(&connection) {
        Ok(counters) => counters,
        Err(error) => {
            tracing::error!(%error, "catalog writer cannot read its counters; stopping");
            return;
        }
    };
    let mut batch = Vec::with_capacity(options.group_commit_max);
    let mut last_sweep_ms = i64::MIN / 2;
    while let Some(first) = receiver.blocking_recv() {
        batch.push(first);
        while batch.len() < options.group_commit_max.max(1) {
            match receiver.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            apply_batch(
                &connection,
                &mut counters,
                &options,
                &fence,
                &mut batch,
                &mut last_sweep_ms,
            );
        }));
        if applied.is_err() && !recover_from_panic(&connection, &mut counters, &mut batch) {
            return;
        }
    }
    tracing::debug!("catalog writer stopped");
}

/// Undoes the transaction a panic left open, so the writer keeps serving.
/// The batch's callers see their reply channels closed (`Error::Closed`,
/// retryable) and nothing of the batch was written. Returns false if the
/// writer cannot go on.
fn recover_from_panic(
    connection: &Connection,
    counters: &mut Counters,
    batch: &mut Vec<Command>,
) -> bool {
    tracing::error!("catalog writer panicked; the batch was rolled back");
    batch.clear();
    if let Err(error) = execute(connection, "ROLLBACK") {
        tracing::warn!(%error, "rollback after a panic failed");
    }
    match load_counters(connection) {
        Ok(reloaded) => {
            *counters = reloaded;
            true
        }
        Err(error) => {
            tracing::error!(%error, "catalog writer cannot reload its counters; stopping");
            false
        }
    }
}

/// Applies `batch` in one transaction and answers every command.
fn apply_batch(
    connection: &Connection,
    counters: &mut Counters,
    options: &SqliteOptions,
    fence: &LeaseFence,
    batch: &mut Vec<Command>,
    last_sweep_ms: &mut i64,
) {
    let persisted = *counters;
    // The term is read after BEGIN IMMEDIATE took the database's write
    // lock: a takeover (a lease claim in another process) cannot slip in
    // between the check and the commit.
    let lease_term = execute(connection, "BEGIN IMMEDIATE")
        .and_then(|()| super::rows::lease::read_term(connection));
    let lease_term = match lease_term {
        Ok(term) => term,
        Err(error) => {
            if let Err(rollback) = execute(connection, "ROLLBACK") {
                tracing::debug!(%rollback, "no transaction to roll back");
            }
            let error = Arc::new(error);
            batch
                .drain(..)
                .for_each(|command| command.fail(|| Error::Sqlite(Arc::clone(&error))));
            return;
        }
    };
    let mut context = WriteContext {
        connection,
        counters,
        now_ms: options.clock.now_ms(),
        options,
        fence: fence.term(),
        lease_term,
    };
    let answers: Vec<Box<dyn Answer>> = batch
        .drain(..)
        .map(|command| apply_in_savepoint(&mut context, command))
        .collect();
    if context.now_ms - *last_sweep_ms >= SWEEP_INTERVAL_MS
        && ops::lease::check(context.fence, context.lease_term).is_ok()
    {
        *last_sweep_ms = context.now_ms;
        match ready(ops::producers::sweep_expired(&mut context)) {
            Ok(removed) => tracing::debug!(removed, "swept expired producer state"),
            Err(error) => tracing::warn!(%error, "sweeping expired producer state failed"),
        }
    }
    let committed = save_counters(connection, &persisted, counters)
        .and_then(|()| execute(connection, "COMMIT"));
    match committed {
        Ok(()) => answers.into_iter().for_each(|answer| answer.send(None)),
        Err(error) => {
            tracing::error!(%error, commands = answers.len(), "catalog group commit failed");
            if let Err(rollback) = execute(connection, "ROLLBACK") {
                tracing::warn!(%rollback, "rollback after a failed commit failed");
            }
            *counters = persisted;
            let error = Arc::new(error);
            let failure = || Error::Sqlite(Arc::clone(&error));
            answers
                .into_iter()
                .for_each(|answer| answer.send(Some(&failure)));
        }
    }
}

/// Runs one command in a savepoint, rolled back if the command fails, so a
/// failed command leaves no trace and does not fail the others.
fn apply_in_savepoint(context: &mut WriteContext<'_>, command: Command) -> Box<dyn Answer> {
    if let Err(error) = execute(context.connection, "SAVEPOINT command") {
        let error = Arc::new(error);
        command.fail(|| Error::Sqlite(Arc::clone(&error)));
        return Box::new(Failed);
    }
    let before = *context.counters;
    let answer = ready(command.apply(context));
    if answer.failed() {
        *context.counters = before;
        if let Err(error) = execute(context.connection, "ROLLBACK TO command") {
            tracing::error!(%error, "rolling back a failed catalog command failed");
        }
    }
    if let Err(error) = execute(context.connection, "RELEASE command") {
        tracing::error!(%error, "releasing a catalog savepoint failed");
    }
    answer
}

/// The answer of a command that was already answered with an error.
struct Failed;

impl Answer for Failed {
    fn failed(&self) -> bool {
        true
    }

    fn send(self: Box<Self>, _: Option<&dyn Fn() -> Error>) {}
}

fn execute(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn load_counters(connection: &Connection) -> Result<Counters> {
    let get = |key: &str| -> Result<i64> {
        Ok(
            connection.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })?,
        )
    };
    let sequence = get("commit_sequence")?;
    Ok(Counters {
        commit_sequence: u64::try_from(sequence).map_err(|_| Error::Corrupt {
            what: format!("commit sequence {sequence}"),
        })?,
        next_producer_id: get("next_producer_id")?,
    })
}

fn save_counters(
    connection: &Connection,
    persisted: &Counters,
    counters: &Counters,
) -> rusqlite::Result<()> {
    let mut update = connection.prepare_cached("UPDATE meta SET value = ?2 WHERE key = ?1")?;
    if counters.commit_sequence != persisted.commit_sequence {
        let sequence = i64::try_from(counters.commit_sequence)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        update.execute(rusqlite::params!["commit_sequence", sequence])?;
    }
    if counters.next_producer_id != persisted.next_producer_id {
        update.execute(rusqlite::params![
            "next_producer_id",
            counters.next_producer_id
        ])?;
    }
    Ok(())
}
