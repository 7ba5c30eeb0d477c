//! The writer task: group commit of queued commands in one transaction.
//!
//! A batch is split into units: each run of consecutive segment commits is
//! one unit (applied set-wise by `commit.rs`), every other command is a unit
//! of its own. Each unit runs in a savepoint, rolled back if it fails, so a
//! failed unit leaves no trace and does not fail the others. A failure
//! outside the savepoints (the connection broke, the final COMMIT failed)
//! fails every command of the batch, and nothing of it is written.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::FutureExt;
use strata_catalog_api::proto::CommitSegmentRequest;
use tokio::sync::mpsc;

use super::rows::{Transaction, WriteContext};
use super::{PostgresOptions, commit, pool_error};
use crate::store::command::{Answer, Command, Reply, SWEEP_INTERVAL_MS, answered};
use crate::store::ops;
use crate::store::{CommitOutcome, LeaseFence};
use crate::{Error, Result};

/// A failure that fails a whole batch or unit: shared by every command in
/// it.
#[derive(Debug, Clone)]
pub(super) struct Failure(Arc<Error>);

impl Failure {
    /// An error for one of the commands it fails.
    fn error(&self) -> Error {
        match self.0.as_ref() {
            Error::Postgres(error) => Error::Postgres(Arc::clone(error)),
            Error::PostgresUnavailable { reason } => Error::PostgresUnavailable {
                reason: reason.clone(),
            },
            Error::Corrupt { what } => Error::Corrupt { what: what.clone() },
            Error::Closed => Error::Closed,
            Error::NotActive { held, current } => Error::NotActive {
                held: *held,
                current: *current,
            },
            other => Error::Task(other.to_string()),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self(Arc::new(error))
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::from(Error::from(error))
    }
}

/// A unit's answers and whether it failed (and must be rolled back).
struct UnitAnswers {
    answers: Vec<Box<dyn Answer>>,
    failed: bool,
}

/// Applies a run of segment commits set-wise; a failure of the run fails
/// each of its commits.
async fn commit_run(
    context: &mut WriteContext<'_, '_>,
    commits: Vec<(CommitSegmentRequest, Reply<CommitOutcome>)>,
) -> UnitAnswers {
    let (requests, replies): (Vec<_>, Vec<_>) = commits.into_iter().unzip();
    let applied = match ops::lease::check(context.fence, context.lease_term) {
        Ok(()) => commit::apply_run(context, &requests).await,
        Err(error) => Err(error),
    };
    match applied {
        Ok(outcomes) => UnitAnswers {
            failed: false,
            answers: replies
                .into_iter()
                .zip(outcomes)
                .map(|(reply, result)| answered(reply, result))
                .collect(),
        },
        Err(error) => {
            let failure = Failure::from(error);
            UnitAnswers {
                failed: true,
                answers: replies
                    .into_iter()
                    .map(|reply| answered(reply, Err(failure.error())))
                    .collect(),
            }
        }
    }
}

/// The writer task's loop: runs until every sender is dropped.
pub(super) async fn run(
    pool: Pool,
    mut receiver: mpsc::Receiver<Command>,
    options: PostgresOptions,
    fence: LeaseFence,
) {
    let batch_max = options.group_commit_max.max(1);
    let mut last_sweep_ms = i64::MIN / 2;
    while let Some(first) = receiver.recv().await {
        let mut batch = Vec::with_capacity(batch_max);
        batch.push(first);
        while batch.len() < batch_max {
            match receiver.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let applied = AssertUnwindSafe(apply_batch(
            &pool,
            &options,
            &fence,
            batch,
            &mut last_sweep_ms,
        ))
        .catch_unwind()
        .await;
        if applied.is_err() {
            // The transaction was dropped (rolled back); the batch's callers
            // see their reply channels closed (`Error::Closed`, retryable).
            tracing::error!("postgres catalog writer panicked; the batch was rolled back");
        }
    }
    tracing::debug!("postgres catalog writer stopped");
}

/// Applies `batch` in one transaction and answers every command.
async fn apply_batch(
    pool: &Pool,
    options: &PostgresOptions,
    fence: &LeaseFence,
    batch: Vec<Command>,
    last_sweep_ms: &mut i64,
) {
    let mut client = match pool.get().await {
        Ok(client) => client,
        Err(error) => {
            let failure = Failure::from(pool_error(error));
            batch
                .into_iter()
                .for_each(|command| command.fail(|| failure.error()));
            return;
        }
    };
    let (transaction, sequence, lease_term) = match begin(&mut client).await {
        Ok(begun) => begun,
        Err(failure) => {
            tracing::warn!(error = %failure.0, "catalog write transaction did not start");
            batch
                .into_iter()
                .for_each(|command| command.fail(|| failure.error()));
            return;
        }
    };
    let mut context = WriteContext {
        transaction: &transaction,
        sequence,
        now_ms: options.clock.now_ms(),
        options,
        fence: fence.term(),
        lease_term,
    };
    let (answers, mut poisoned) = apply_units(&mut context, batch).await;
    if poisoned.is_none()
        && context.now_ms - *last_sweep_ms >= SWEEP_INTERVAL_MS
        && ops::lease::check(context.fence, context.lease_term).is_ok()
    {
        *last_sweep_ms = context.now_ms;
        poisoned = sweep(&mut context).await;
    }
    let new_sequence = context.sequence;
    let committed = match poisoned {
        Some(failure) => Err(failure),
        None => finish(transaction, sequence, new_sequence).await,
    };
    match committed {
        Ok(()) => answers.into_iter().for_each(|answer| answer.send(None)),
        Err(failure) => {
            tracing::error!(error = %failure.0, commands = answers.len(), "catalog group commit failed");
            let error = || failure.error();
            answers
                .into_iter()
                .for_each(|answer| answer.send(Some(&error)));
        }
    }
}

/// Starts the transaction and locks the commit-sequence row, which
/// serializes the writers of every process sharing the database, then
/// reads the lease term. A takeover is a write too (it takes the same
/// lock), so the term read here stays the database's term until COMMIT:
/// a writer whose term is stale cannot commit anything.
async fn begin(
    client: &mut deadpool_postgres::Object,
) -> Result<(Transaction<'_>, u64, u64), Failure> {
    let transaction = client.transaction().await?;
    let statement = transaction
        .prepare_cached("SELECT value FROM meta WHERE key = 'commit_sequence' FOR UPDATE")
        .await?;
    let value: i64 = transaction.query_one(&statement, &[]).await?.try_get(0)?;
    let sequence = super::to_u64("commit sequence", value)?;
    let statement = transaction
        .prepare_cached("SELECT term FROM catalog_lease WHERE id = 1")
        .await?;
    let lease_term = match transaction.query_opt(&statement, &[]).await? {
        Some(row) => super::to_u64("lease term", row.try_get(0)?)?,
        None => 0,
    };
    Ok((transaction, sequence, lease_term))
}

/// Saves the commit sequence (if it moved) and commits.
async fn finish(transaction: Transaction<'_>, before: u64, after: u64) -> Result<(), Failure> {
    if after != before {
        let value = super::to_bigint("commit sequence", after)?;
        let statement = transaction
            .prepare_cached("UPDATE meta SET value = $1 WHERE key = 'commit_sequence'")
            .await?;
        transaction.execute(&statement, &[&value]).await?;
    }
    transaction.commit().await?;
    Ok(())
}

/// Runs the batch unit by unit. Returns the answers, and the failure that
/// poisoned the transaction (then nothing of the batch may be committed).
async fn apply_units(
    context: &mut WriteContext<'_, '_>,
    batch: Vec<Command>,
) -> (Vec<Box<dyn Answer>>, Option<Failure>) {
    let mut answers: Vec<Box<dyn Answer>> = Vec::with_capacity(batch.len());
    let mut commits = Vec::new();
    let mut poisoned = None;
    let mut commands = batch.into_iter();
    while poisoned.is_none() {
        let next = commands.next();
        match next {
            Some(Command::CommitSegment(request, reply)) => commits.push((request, reply)),
            other => {
                if !commits.is_empty() {
                    let run = std::mem::take(&mut commits);
                    poisoned = in_savepoint(context, Unit::Commits(run), &mut answers).await;
                }
                match other {
                    Some(command) if poisoned.is_none() => {
                        poisoned =
                            in_savepoint(context, Unit::Command(command), &mut answers).await;
                    }
                    Some(command) => {
                        let failure = poisoned.clone().expect("checked by the guard");
                        command.fail(|| failure.error());
                    }
                    None => break,
                }
            }
        }
    }
    if let Some(failure) = &poisoned {
        commits.into_iter().for_each(|(request, reply)| {
            Command::CommitSegment(request, reply).fail(|| failure.error())
        });
        commands.for_each(|command| command.fail(|| failure.error()));
    }
    (answers, poisoned)
}

/// What one savepoint holds.
enum Unit {
    Commits(Vec<(CommitSegmentRequest, Reply<CommitOutcome>)>),
    Command(Command),
}

/// Runs one unit in a savepoint, rolled back if it fails. Returns a
/// failure if the transaction can no longer be used.
async fn in_savepoint(
    context: &mut WriteContext<'_, '_>,
    unit: Unit,
    answers: &mut Vec<Box<dyn Answer>>,
) -> Option<Failure> {
    if let Err(error) = context.transaction.batch_execute("SAVEPOINT unit").await {
        let failure = Failure::from(error);
        match unit {
            Unit::Commits(commits) => commits.into_iter().for_each(|(request, reply)| {
                Command::CommitSegment(request, reply).fail(|| failure.error());
            }),
            Unit::Command(command) => command.fail(|| failure.error()),
        }
        return Some(failure);
    }
    let before = context.sequence;
    let applied = match unit {
        Unit::Commits(commits) => commit_run(context, commits).await,
        Unit::Command(command) => {
            let answer = command.apply(context).await;
            UnitAnswers {
                failed: answer.failed(),
                answers: vec![answer],
            }
        }
    };
    answers.extend(applied.answers);
    let end = if applied.failed {
        context.sequence = before;
        "ROLLBACK TO SAVEPOINT unit; RELEASE SAVEPOINT unit"
    } else {
        "RELEASE SAVEPOINT unit"
    };
    context
        .transaction
        .batch_execute(end)
        .await
        .err()
        .map(Failure::from)
}

/// Deletes expired producer state in a savepoint: a failed sweep only
/// warns. Returns a failure if the transaction can no longer be used.
async fn sweep(context: &mut WriteContext<'_, '_>) -> Option<Failure> {
    let transaction = context.transaction;
    if let Err(error) = transaction.batch_execute("SAVEPOINT sweep").await {
        return Some(Failure::from(error));
    }
    let end = match ops::producers::sweep_expired(context).await {
        Ok(removed) => {
            tracing::debug!(removed, "swept expired producer state");
            "RELEASE SAVEPOINT sweep"
        }
        Err(error) => {
            tracing::warn!(%error, "sweeping expired producer state failed");
            "ROLLBACK TO SAVEPOINT sweep; RELEASE SAVEPOINT sweep"
        }
    };
    transaction
        .batch_execute(end)
        .await
        .err()
        .map(Failure::from)
}
