//! The persister: writes group records behind the actor's back, in order
//! per group, and answers the requests that wait for a write.
//!
//! The actor never awaits the store. It hands each write ([`Effect`]) to
//! the [`Persister`], which keeps at most one pending delete and one
//! pending save per group (a newer save replaces an older one: only the
//! latest state matters, and a group id belongs to one protocol at a time,
//! so a KIP-848 record replaces a pending classic one and vice versa), and
//! a task that applies them. A group's pending delete is applied before
//! its pending save: a delete queued after a save supersedes it, a save
//! queued after a delete follows it. Responses that
//! Kafka sends only after the group is stored (SyncGroup completing a
//! generation, a static member's rejoin, DeleteGroups) travel with the
//! write as [`Deferred`]s and are sent when it is done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use tokio::sync::{mpsc, oneshot};

use super::code;
use crate::store::{ConsumerGroupRecord, GroupRecord, SharedStore};

/// A response waiting for a write.
#[derive(Debug)]
pub(crate) enum Deferred {
    /// A JoinGroup response.
    Join(oneshot::Sender<JoinGroupResponse>, JoinGroupResponse),
    /// A SyncGroup response.
    Sync(oneshot::Sender<SyncGroupResponse>, SyncGroupResponse),
    /// A bare error code (DeleteGroups).
    Done(oneshot::Sender<i16>),
}

impl Deferred {
    /// Sends the response; `error` (a failed write) replaces its code.
    /// Callers that went away need no answer.
    pub(crate) fn complete(self, error: Option<i16>) {
        match self {
            Self::Join(reply, mut response) => {
                if let Some(code) = error {
                    response.error_code = code;
                }
                drop(reply.send(response));
            }
            Self::Sync(reply, mut response) => {
                if let Some(code) = error {
                    response.error_code = code;
                    response.assignment = bytes::Bytes::new();
                }
                drop(reply.send(response));
            }
            Self::Done(reply) => drop(reply.send(error.unwrap_or(code::NONE))),
        }
    }
}

/// A write of group state.
#[derive(Debug)]
pub(crate) enum Effect {
    /// Save the classic record (replacing the group's previous one).
    Save(GroupRecord, Vec<Deferred>),
    /// Save the KIP-848 consumer group record (replacing the group's
    /// previous one). Nothing waits for it: the actor answers heartbeats
    /// at once.
    SaveConsumer(ConsumerGroupRecord),
    /// Delete the group's record and offsets.
    Delete(String, Vec<Deferred>),
}

impl Effect {
    /// Completes the deferred responses without writing (tests).
    #[cfg(test)]
    pub(crate) fn complete(self) {
        if let Self::Save(_, deferred) | Self::Delete(_, deferred) = self {
            deferred.into_iter().for_each(|d| d.complete(None));
        }
    }
}

/// A record to save.
#[derive(Debug)]
enum Record {
    Classic(GroupRecord),
    Consumer(ConsumerGroupRecord),
}

/// The writes pending for one group, applied delete first.
#[derive(Debug, Default)]
struct Pending {
    delete: Option<Vec<Deferred>>,
    save: Option<(Record, Vec<Deferred>)>,
}

impl Pending {
    /// Replaces the pending save; its waiters carry over to the new one.
    fn save(&mut self, record: Record, deferred: Vec<Deferred>) {
        let mut waiting = self.save.take().map(|(_, d)| d).unwrap_or_default();
        waiting.extend(deferred);
        self.save = Some((record, waiting));
    }
}

/// Hands writes to the persister task.
#[derive(Debug)]
pub(crate) struct Persister {
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    wake: mpsc::Sender<()>,
}

impl Persister {
    /// Starts the persister task; it stops after the [`Persister`] is
    /// dropped and every pending write is done.
    pub(crate) fn start(store: SharedStore) -> Self {
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let (wake, woken) = mpsc::channel(1);
        tokio::spawn(run(store, Arc::clone(&pending), woken));
        Self { pending, wake }
    }

    /// Queues a write.
    pub(crate) fn push(&self, effect: Effect) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            match effect {
                Effect::Save(record, deferred) => pending
                    .entry(record.group_id.clone())
                    .or_default()
                    .save(Record::Classic(record), deferred),
                Effect::SaveConsumer(record) => pending
                    .entry(record.group_id.clone())
                    .or_default()
                    .save(Record::Consumer(record), Vec::new()),
                Effect::Delete(group_id, deferred) => {
                    let entry = pending.entry(group_id).or_default();
                    // The delete supersedes an older save; its waiters are
                    // answered once the delete is done.
                    let mut waiting = entry.delete.take().unwrap_or_default();
                    waiting.extend(entry.save.take().map(|(_, d)| d).unwrap_or_default());
                    waiting.extend(deferred);
                    entry.delete = Some(waiting);
                }
            }
        }
        // A full channel means the task is already woken.
        let _ = self.wake.try_send(());
    }
}

async fn run(
    store: SharedStore,
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    mut woken: mpsc::Receiver<()>,
) {
    while woken.recv().await.is_some() {
        flush(&store, &pending).await;
    }
    flush(&store, &pending).await;
    tracing::debug!("group persister stopped");
}

/// Applies every pending write; groups are written concurrently (the
/// store batches them), each group's writes in order.
async fn flush(store: &SharedStore, pending: &Mutex<HashMap<String, Pending>>) {
    loop {
        let batch: Vec<(String, Pending)> = pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        if batch.is_empty() {
            return;
        }
        let writes = batch
            .into_iter()
            .map(|(group_id, writes)| write(store, group_id, writes));
        futures::future::join_all(writes).await;
    }
}

async fn write(store: &SharedStore, group_id: String, pending: Pending) {
    if let Some(deferred) = pending.delete {
        let error = match store.delete_group(&group_id).await {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(%error, group_id, "deleting a group failed");
                Some(code::COORDINATOR_NOT_AVAILABLE)
            }
        };
        deferred.into_iter().for_each(|d| d.complete(error));
    }
    if let Some((record, deferred)) = pending.save {
        let saved = match record {
            Record::Classic(record) => store.save_group(record).await,
            Record::Consumer(record) => store.save_consumer_group(record).await,
        };
        let error = match saved {
            Ok(()) => None,
            Err(error) => {
                tracing::warn!(%error, group_id, "saving a group failed");
                Some(code::COORDINATOR_NOT_AVAILABLE)
            }
        };
        deferred.into_iter().for_each(|d| d.complete(error));
    }
}
