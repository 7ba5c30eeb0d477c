//! The commit stream: every commit event, in sequence order, to every
//! subscriber, with a ring buffer of recent events for catch-up.
//!
//! A sequence can be used up without its event ever reaching the hub: on
//! PostgreSQL a COMMIT can land while the catalog sees the connection fail
//! (unknown outcome), and the next transaction continues after the stored
//! sequence. Events after such a hole are held at most the gap timeout
//! ([`gap_watchdog`]); then the missing sequences are declared lost,
//! subscribers see the jump (DATA_LOSS) and resync from the store, which
//! holds everything committed. The wait is bounded by time, never by a
//! count of later events.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use strata_catalog_api::CommitStream;
use strata_catalog_api::proto::CommitEvent;
use tokio::sync::broadcast;
use tonic::Status;

use super::catalog_metrics::CatalogMetrics;

/// Events that arrived ahead of a missing sequence are held at most this
/// many; past that the missing ones are declared lost (subscribers see the
/// gap and resync) rather than stalling the stream forever.
const PENDING_MAX: usize = 4096;

/// How long events wait behind a missing sequence before it is declared
/// lost, unless the service sets another (`commit_gap_timeout_ms`). Events
/// of one store transaction reach the hub microseconds apart; a hole that
/// lasts this long is a sequence whose event will never come.
#[cfg(test)]
pub(crate) const GAP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

/// Publishes commit events in sequence order and serves subscribers.
#[derive(Debug)]
pub(crate) struct CommitStreamHub {
    state: Mutex<HubState>,
    sender: broadcast::Sender<Arc<CommitEvent>>,
    gap_timeout: Duration,
    /// Holes declared lost and their sequences (`/metrics`).
    metrics: Arc<CatalogMetrics>,
}

#[derive(Debug)]
struct HubState {
    /// The next sequence to publish.
    next_sequence: u64,
    /// Events that arrived before `next_sequence` did.
    pending: BTreeMap<u64, Arc<CommitEvent>>,
    /// The latest published events, contiguous, oldest first.
    recent: VecDeque<Arc<CommitEvent>>,
    recent_max: usize,
    /// The greatest sequence handed to the hub.
    highest_known: u64,
    /// Since when events have waited behind a missing `next_sequence`.
    gap_since: Option<Instant>,
}

impl CommitStreamHub {
    /// A hub whose next event is `last_sequence + 1`.
    #[cfg(test)]
    pub(crate) fn new(last_sequence: u64, recent_max: usize, subscriber_queue: usize) -> Self {
        Self::with_gap_timeout(
            last_sequence,
            recent_max,
            subscriber_queue,
            GAP_TIMEOUT_DEFAULT,
            Arc::default(),
        )
    }

    /// Like [`new`](Self::new), with events held at most `gap_timeout`
    /// behind a missing sequence.
    pub(crate) fn with_gap_timeout(
        last_sequence: u64,
        recent_max: usize,
        subscriber_queue: usize,
        gap_timeout: Duration,
        metrics: Arc<CatalogMetrics>,
    ) -> Self {
        let (sender, _) = broadcast::channel(subscriber_queue.max(1));
        Self {
            state: Mutex::new(HubState {
                next_sequence: last_sequence + 1,
                pending: BTreeMap::new(),
                recent: VecDeque::with_capacity(recent_max.min(65_536)),
                recent_max: recent_max.max(1),
                highest_known: last_sequence,
                gap_since: None,
            }),
            sender,
            gap_timeout: gap_timeout.max(Duration::from_millis(1)),
            metrics,
        }
    }

    /// Holes declared lost since the start.
    #[cfg(test)]
    pub(crate) fn gaps_declared(&self) -> u64 {
        self.metrics.commit_gaps.load(Ordering::Relaxed)
    }

    /// Sequences declared lost since the start.
    #[cfg(test)]
    pub(crate) fn sequences_lost(&self) -> u64 {
        self.metrics.commit_sequences_lost.load(Ordering::Relaxed)
    }

    /// Declares the missing sequences lost if events have waited behind
    /// them longer than the gap timeout (or more than `PENDING_MAX` wait),
    /// and publishes what follows. Called by [`gap_watchdog`] and on every
    /// publish.
    pub(crate) fn heal_gap(&self, now: Instant) {
        let mut state = self.lock();
        self.heal_locked(&mut state, now);
    }

    fn heal_locked(&self, state: &mut HubState, now: Instant) {
        let Some(&first) = state.pending.keys().next() else {
            state.gap_since = None;
            return;
        };
        let since = *state.gap_since.get_or_insert(now);
        let overdue = now.saturating_duration_since(since) >= self.gap_timeout;
        if !overdue && state.pending.len() <= PENDING_MAX {
            return;
        }
        let lost = first - state.next_sequence;
        tracing::warn!(
            missing_from = state.next_sequence,
            missing_to = first - 1,
            waited_ms =
                u64::try_from(now.saturating_duration_since(since).as_millis()).unwrap_or(u64::MAX),
            "commit events never arrived (a write whose outcome the catalog did not learn); \
             subscribers will resync"
        );
        self.metrics.commit_gaps.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .commit_sequences_lost
            .fetch_add(lost, Ordering::Relaxed);
        state.next_sequence = first;
        state.gap_since = None;
        self.drain(state);
    }

    /// Publishes the pending events that follow `next_sequence` in order.
    fn drain(&self, state: &mut HubState) {
        loop {
            let next = state.next_sequence;
            let Some(event) = state.pending.remove(&next) else {
                break;
            };
            if state.recent.len() == state.recent_max {
                state.recent.pop_front();
            }
            state.recent.push_back(Arc::clone(&event));
            state.next_sequence += 1;
            // No subscribers is fine: the ring buffer keeps the event.
            let _ = self.sender.send(event);
        }
        if state.pending.is_empty() {
            state.gap_since = None;
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Publishes `event` once every event before it has been published.
    /// Commits finish in sequence order in the store but their callers may
    /// hand the events over in any order.
    pub(crate) fn publish(&self, event: CommitEvent) {
        let mut state = self.lock();
        if event.sequence < state.next_sequence {
            return;
        }
        state.highest_known = state.highest_known.max(event.sequence);
        state.pending.insert(event.sequence, Arc::new(event));
        self.drain(&mut state);
        if !state.pending.is_empty() {
            self.heal_locked(&mut state, Instant::now());
        }
    }

    /// A stream of the events after `after_sequence` (0 = from now on).
    ///
    /// Fails with OUT_OF_RANGE when those events are no longer buffered or
    /// `after_sequence` is beyond any commit: the caller must resync. The
    /// stream ends with DATA_LOSS if the subscriber falls too far behind.
    pub(crate) fn subscribe(&self, after_sequence: u64) -> Result<CommitStream, Status> {
        let state = self.lock();
        let receiver = self.sender.subscribe();
        let last_published = state.next_sequence - 1;
        let start = if after_sequence == 0 {
            last_published
        } else {
            after_sequence
        };
        if start > state.highest_known {
            return Err(Status::out_of_range(format!(
                "after_sequence {start} is beyond the last commit {}: resync",
                state.highest_known
            )));
        }
        let mut backlog = VecDeque::new();
        if start < last_published {
            let oldest = state
                .recent
                .front()
                .map_or(u64::MAX, |event| event.sequence);
            if oldest > start + 1 {
                return Err(Status::out_of_range(format!(
                    "commits after {start} are no longer buffered (oldest {oldest}): resync"
                )));
            }
            backlog.extend(state.recent.iter().filter(|e| e.sequence > start).cloned());
        }
        drop(state);
        let subscriber = Subscriber {
            backlog,
            receiver,
            last: start,
            done: false,
        };
        Ok(futures::stream::unfold(subscriber, Subscriber::next).boxed())
    }
}

/// Declares holes in the stream lost once they are older than the hub's
/// gap timeout, checking four times per timeout; stops when the hub is
/// dropped.
pub(crate) async fn gap_watchdog(hub: Weak<CommitStreamHub>) {
    let Some(period) = hub.upgrade().map(|hub| hub.gap_timeout / 4) else {
        return;
    };
    let period = period.max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(period).await;
        let Some(hub) = hub.upgrade() else {
            return;
        };
        hub.heal_gap(Instant::now());
    }
}

/// One subscriber's position in the stream.
struct Subscriber {
    backlog: VecDeque<Arc<CommitEvent>>,
    receiver: broadcast::Receiver<Arc<CommitEvent>>,
    last: u64,
    done: bool,
}

impl Subscriber {
    async fn next(mut self) -> Option<(Result<CommitEvent, Status>, Self)> {
        if self.done {
            return None;
        }
        loop {
            let event = match self.backlog.pop_front() {
                Some(event) => event,
                None => match self.receiver.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Closed) => return None,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        return self.fail(Status::data_loss(format!(
                            "subscriber fell {missed} commits behind: resync"
                        )));
                    }
                },
            };
            if event.sequence <= self.last {
                continue;
            }
            if event.sequence != self.last + 1 {
                let gap = format!("commit {} follows {}: resync", event.sequence, self.last);
                return self.fail(Status::data_loss(gap));
            }
            self.last = event.sequence;
            return Some((Ok(CommitEvent::clone(&event)), self));
        }
    }

    fn fail(mut self, status: Status) -> Option<(Result<CommitEvent, Status>, Self)> {
        self.done = true;
        Some((Err(status), self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: u64) -> CommitEvent {
        CommitEvent {
            sequence,
            ..Default::default()
        }
    }

    async fn sequences(stream: &mut CommitStream, count: usize) -> Vec<u64> {
        let mut out = Vec::new();
        for _ in 0..count {
            out.push(stream.next().await.unwrap().unwrap().sequence);
        }
        out
    }

    #[tokio::test]
    async fn reorders_and_catches_up() {
        let hub = CommitStreamHub::new(10, 4, 16);
        let mut live = hub.subscribe(0).unwrap();
        hub.publish(event(12));
        hub.publish(event(11));
        hub.publish(event(13));
        assert_eq!(sequences(&mut live, 3).await, [11, 12, 13]);
        let mut catch_up = hub.subscribe(11).unwrap();
        assert_eq!(sequences(&mut catch_up, 2).await, [12, 13]);
        hub.publish(event(14));
        assert_eq!(sequences(&mut catch_up, 1).await, [14]);
    }

    #[tokio::test]
    async fn too_old_or_too_new_must_resync() {
        let hub = CommitStreamHub::new(0, 2, 16);
        for sequence in 1..=5 {
            hub.publish(event(sequence));
        }
        assert_eq!(
            hub.subscribe(1).err().unwrap().code(),
            tonic::Code::OutOfRange
        );
        assert!(hub.subscribe(3).is_ok());
        assert_eq!(
            hub.subscribe(9).err().unwrap().code(),
            tonic::Code::OutOfRange
        );
    }

    /// Goal: a sequence whose event never comes (a COMMIT that landed
    /// while the catalog saw an error) must not hold the later events
    /// back for longer than the gap timeout. Method: sequence 11 is lost,
    /// 12 and 13 are published; on a paused clock, a live subscriber must
    /// see the gap (DATA_LOSS: resync) once the timeout passes, a new
    /// subscriber must get 12 and 13, and the hub counts the gap.
    #[tokio::test(start_paused = true)]
    async fn a_sequence_that_never_comes_is_declared_lost_within_the_timeout() {
        let hub = Arc::new(CommitStreamHub::new(10, 16, 16));
        let mut live = hub.subscribe(0).unwrap();
        hub.publish(event(12));
        hub.publish(event(13));
        let watchdog = tokio::spawn(gap_watchdog(Arc::downgrade(&hub)));
        let waited = tokio::time::timeout(GAP_TIMEOUT_DEFAULT * 3, live.next())
            .await
            .expect("the gap must be declared within the bound");
        assert_eq!(waited.unwrap().unwrap_err().code(), tonic::Code::DataLoss);
        let mut fresh = hub.subscribe(11).unwrap();
        assert_eq!(sequences(&mut fresh, 2).await, [12, 13]);
        assert_eq!(hub.gaps_declared(), 1);
        assert_eq!(hub.sequences_lost(), 1);
        watchdog.abort();
    }

    #[tokio::test]
    async fn a_lagging_subscriber_gets_data_loss() {
        let hub = CommitStreamHub::new(0, 2, 2);
        let mut slow = hub.subscribe(0).unwrap();
        for sequence in 1..=5 {
            hub.publish(event(sequence));
        }
        let error = slow.next().await.unwrap().unwrap_err();
        assert_eq!(error.code(), tonic::Code::DataLoss);
        assert!(slow.next().await.is_none());
    }
}
