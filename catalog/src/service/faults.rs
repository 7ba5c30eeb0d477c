//! Test-only faults of the catalog's commit path (`strata catalog
//! --fault-injection`, driven over `PUT /faults`): the two ways a
//! CommitSegment can have an outcome its caller does not learn.
//!
//! - **Late apply**: the commit is held for a while and then applied, even
//!   though its caller has long stopped waiting. A gRPC server runs each
//!   request in a task of its own, and the catalog finishes a write whose
//!   caller went away, so a commit the agent gave up on can land after a
//!   later one: this is how that looks, on demand.
//! - **Lost reply**: the commit is applied, and its caller is told the
//!   catalog was unavailable.
//! - **Unknown outcome**: the commit is applied, but the catalog itself
//!   does not learn it (as when PostgreSQL's COMMIT succeeds and the
//!   connection breaks before the answer): the caller is told the catalog
//!   was unavailable AND the commit's event never reaches the commit
//!   stream, whose sequence number is used up all the same.
//!
//! Each rule fires for a number of commits and then disarms itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the next commits suffer. Counts go down as faults fire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitFaultPlan {
    /// How long a late commit is held before it is applied.
    #[serde(default)]
    pub late_apply_ms: u64,
    /// How many of the next commits are applied late.
    #[serde(default)]
    pub late_apply_count: u32,
    /// How many of the next commits lose their reply after applying.
    #[serde(default)]
    pub lose_reply_count: u32,
    /// How many of the next commits have an outcome the catalog does not
    /// learn (reply and commit-stream event lost).
    #[serde(default)]
    pub unknown_outcome_count: u32,
}

/// How many faults fired since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CommitFaultCounts {
    /// Commits applied late.
    pub late_applied: u64,
    /// Replies lost after a commit applied.
    pub replies_lost: u64,
    /// Commits applied whose outcome the catalog did not learn.
    #[serde(default)]
    pub unknown_outcomes: u64,
}

/// The fault one commit suffers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CommitFault {
    /// Hold the commit this long, then apply it.
    pub(crate) late_apply: Option<Duration>,
    /// Apply it, then answer UNAVAILABLE.
    pub(crate) lose_reply: bool,
    /// Apply it, drop its commit-stream event, answer UNAVAILABLE.
    pub(crate) unknown_outcome: bool,
}

#[derive(Debug, Default)]
struct State {
    plan: CommitFaultPlan,
    counts: CommitFaultCounts,
}

/// The shared fault switchboard of one catalog. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CommitFaults {
    state: Arc<Mutex<State>>,
}

impl CommitFaults {
    /// No faults armed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the plan.
    pub fn set(&self, plan: CommitFaultPlan) {
        self.lock().plan = plan;
    }

    /// Disarms every rule.
    pub fn clear(&self) {
        self.lock().plan = CommitFaultPlan::default();
    }

    /// The plan as it stands (counts left).
    pub fn plan(&self) -> CommitFaultPlan {
        self.lock().plan.clone()
    }

    /// The faults fired so far.
    pub fn counts(&self) -> CommitFaultCounts {
        self.lock().counts
    }

    /// Takes the fault the next commit suffers, counting it down.
    pub(crate) fn next(&self) -> CommitFault {
        let mut state = self.lock();
        let mut fault = CommitFault::default();
        if state.plan.late_apply_count > 0 {
            state.plan.late_apply_count -= 1;
            state.counts.late_applied += 1;
            fault.late_apply = Some(Duration::from_millis(state.plan.late_apply_ms));
        }
        if state.plan.lose_reply_count > 0 {
            state.plan.lose_reply_count -= 1;
            state.counts.replies_lost += 1;
            fault.lose_reply = true;
        }
        if state.plan.unknown_outcome_count > 0 {
            state.plan.unknown_outcome_count -= 1;
            state.counts.unknown_outcomes += 1;
            fault.unknown_outcome = true;
        }
        fault
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data: a panic elsewhere cannot leave it torn.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_their_count_then_disarm() {
        let faults = CommitFaults::new();
        assert_eq!(faults.next(), CommitFault::default());
        faults.set(CommitFaultPlan {
            late_apply_ms: 250,
            late_apply_count: 1,
            lose_reply_count: 2,
            ..CommitFaultPlan::default()
        });
        let first = faults.next();
        assert_eq!(first.late_apply, Some(Duration::from_millis(250)));
        assert!(first.lose_reply);
        let second = faults.next();
        assert_eq!(second.late_apply, None);
        assert!(second.lose_reply);
        assert_eq!(faults.next(), CommitFault::default());
        assert_eq!(
            faults.counts(),
            CommitFaultCounts {
                late_applied: 1,
                replies_lost: 2,
                unknown_outcomes: 0,
            }
        );
        faults.set(CommitFaultPlan {
            lose_reply_count: 5,
            ..CommitFaultPlan::default()
        });
        faults.clear();
        assert_eq!(faults.next(), CommitFault::default());
    }

    #[test]
    fn plans_parse_from_json_and_refuse_unknown_fields() {
        let plan: CommitFaultPlan =
            serde_json::from_str(r#"{"late_apply_ms": 3000, "late_apply_count": 1}"#)
                .expect("parses");
        assert_eq!(plan.late_apply_count, 1);
        assert_eq!(plan.lose_reply_count, 0);
        assert!(serde_json::from_str::<CommitFaultPlan>(r#"{"late": 1}"#).is_err());
    }
}
