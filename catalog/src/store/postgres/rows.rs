//! The row traits of [`crate::store::rows`] over PostgreSQL: the writer's
//! open transaction ([`WriteContext`]) and one file of SQL per domain.

pub(super) mod agents;
pub(super) mod chunks;
mod groups;
mod lease;
pub(super) mod producers;
pub(super) mod scram;
pub(super) mod topics;
mod transactions;

use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::PostgresOptions;
use crate::Result;
use crate::store::rows::Rows;

/// The writer's open transaction.
pub(super) type Transaction<'c> = deadpool_postgres::Transaction<'c>;

/// What a command needs to run inside the open transaction.
#[derive(Debug)]
pub(super) struct WriteContext<'a, 'c> {
    pub(super) transaction: &'a Transaction<'c>,
    /// The last commit-stream sequence handed out (persisted at COMMIT).
    pub(super) sequence: u64,
    pub(super) now_ms: i64,
    pub(super) options: &'a PostgresOptions,
    /// The term this store writes under (`LeaseFence`).
    pub(super) fence: u64,
    /// The lease term in the database (0: never held).
    pub(super) lease_term: u64,
}

impl WriteContext<'_, '_> {
    /// Takes the next commit-stream sequence.
    pub(super) fn next_sequence(&mut self) -> u64 {
        self.sequence += 1;
        self.sequence
    }
}

impl Rows for WriteContext<'_, '_> {
    fn now_ms(&self) -> i64 {
        self.now_ms
    }

    fn producer_id_expiration_ms(&self) -> i64 {
        self.options.producer_id_expiration_ms
    }

    fn max_commit_age_ms(&self) -> i64 {
        self.options.max_commit_age_ms
    }

    fn next_sequence(&mut self) -> u64 {
        WriteContext::next_sequence(self)
    }
}

/// Statements of the open transaction, each prepared once per connection.
impl WriteContext<'_, '_> {
    /// Runs a statement; the number of rows it changed.
    pub(super) async fn execute(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let statement = self.transaction.prepare_cached(sql).await?;
        Ok(self.transaction.execute(&statement, params).await?)
    }

    /// Runs a query; its rows.
    pub(super) async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>> {
        let statement = self.transaction.prepare_cached(sql).await?;
        Ok(self.transaction.query(&statement, params).await?)
    }

    /// Runs a query of at most one row.
    pub(super) async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>> {
        let statement = self.transaction.prepare_cached(sql).await?;
        Ok(self.transaction.query_opt(&statement, params).await?)
    }

    /// Runs a query of exactly one row.
    pub(super) async fn query_one(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let statement = self.transaction.prepare_cached(sql).await?;
        Ok(self.transaction.query_one(&statement, params).await?)
    }
}
