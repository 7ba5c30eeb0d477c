//! The row traits of [`crate::store::rows`] over SQLite: the writer's open
//! transaction ([`WriteContext`]) and one file of SQL per domain. Every
//! method is synchronous underneath, so its future is ready when created.

pub(super) mod agents;
pub(super) mod chunks;
pub(super) mod groups;
pub(super) mod lease;
pub(super) mod producers;
pub(super) mod scram;
pub(super) mod topics;
mod transactions;

use rusqlite::Connection;

use super::SqliteOptions;
use crate::store::rows::Rows;

/// Counters the writer keeps in memory and persists in `meta` with each
/// transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counters {
    /// The last commit-stream sequence handed out.
    pub(super) commit_sequence: u64,
    /// The next producer id to hand out.
    pub(super) next_producer_id: i64,
}

impl Counters {
    /// Takes the next commit-stream sequence.
    pub(super) fn next_sequence(&mut self) -> u64 {
        self.commit_sequence += 1;
        self.commit_sequence
    }

    /// Takes a new producer id.
    pub(super) fn allocate_producer_id(&mut self) -> i64 {
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        id
    }
}

/// What a command needs to run inside the open transaction.
#[derive(Debug)]
pub(super) struct WriteContext<'a> {
    pub(super) connection: &'a Connection,
    pub(super) counters: &'a mut Counters,
    pub(super) now_ms: i64,
    pub(super) options: &'a SqliteOptions,
    /// The term this store writes under (`LeaseFence`).
    pub(super) fence: u64,
    /// The lease term in the database (0: never held).
    pub(super) lease_term: u64,
}

impl Rows for WriteContext<'_> {
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
        self.counters.next_sequence()
    }
}
