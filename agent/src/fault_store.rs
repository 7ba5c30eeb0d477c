//! A fault-injecting object store, for tests only.
//!
//! [`FaultInjectingStore`] wraps any `Arc<dyn ObjectStore>` and, following
//! the rules currently held by its [`FaultControl`], delays calls, fails
//! them with a retriable error (what a 503 "Slow Down" that survived the
//! S3 client's own retries looks like) or hangs them, so tests can drive
//! the agent through object-store trouble in a real process. The rules
//! change at runtime: `strata agent --fault-injection` serves them on its
//! HTTP endpoint (`PUT /faults`, `DELETE /faults`, `GET /faults`). Without
//! that flag the wrapper is not in the object-store stack at all.
//!
//! The wrapper sits above the store's own retry layer (object_store's
//! `RetryConfig` for S3): an injected error is one the agent sees after
//! the client gave up, which is exactly the case the agent must survive.

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The kinds of object-store call a rule can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultOp {
    /// `put_opts` and multipart uploads.
    Put,
    /// `get_opts` with a body (whole objects and ranges) and `get_ranges`.
    Get,
    /// `get_opts` with `head: true` (`head()`).
    Head,
    /// `list` and `list_with_delimiter`.
    List,
    /// `delete_stream` (`delete()`).
    Delete,
}

/// One rule: what happens to the calls it targets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// The operations this rule targets; empty targets every operation.
    #[serde(default)]
    pub ops: Vec<FaultOp>,
    /// Chance (0.0 to 1.0) that a targeted call fails with an injected error.
    #[serde(default)]
    pub error_probability: f64,
    /// The next this many targeted calls fail, whatever the probability.
    #[serde(default)]
    pub error_next: u64,
    /// Added before every targeted call (and before its error, if any).
    #[serde(default)]
    pub delay_ms: u64,
    /// Targeted calls never complete while the rules stand; when the rules
    /// change they fail with an injected error (as a timed-out request
    /// would), so nothing stays stuck after a test clears its faults.
    #[serde(default)]
    pub hang: bool,
    /// A call picked to fail (by `error_probability` or `error_next`) is
    /// first carried out, and only then reported as failed: a write that
    /// succeeded but whose reply was lost, so its caller does not learn
    /// the outcome. Without it an injected error stops the call before it
    /// reaches the store.
    #[serde(default)]
    pub error_after_apply: bool,
}

impl FaultRule {
    fn targets(&self, op: FaultOp) -> bool {
        self.ops.is_empty() || self.ops.contains(&op)
    }
}

/// The rules in force; the first rule that targets a call applies to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// Rules in order of precedence.
    #[serde(default)]
    pub rules: Vec<FaultRule>,
    /// Seed of the error coin flips, so a failing run can be replayed.
    #[serde(default)]
    pub seed: u64,
}

/// Counts of what the wrapper did, for `GET /faults`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FaultCounts {
    /// Calls that went through the wrapper.
    pub calls: u64,
    /// Calls failed with an injected error.
    pub errors: u64,
    /// Calls delayed.
    pub delays: u64,
    /// Calls hung.
    pub hangs: u64,
}

#[derive(Debug, Default)]
struct State {
    plan: FaultPlan,
    rng: u64,
    counts: FaultCounts,
}

/// The runtime switch board of a [`FaultInjectingStore`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct FaultControl {
    state: Arc<Mutex<State>>,
    /// Bumped whenever the plan changes: releases hung calls.
    generation: watch::Sender<u64>,
}

impl Default for FaultControl {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            generation: watch::channel(0).0,
        }
    }
}

/// What one call suffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Action {
    op: FaultOp,
    delay: Duration,
    fail: bool,
    hang: bool,
    /// The failure comes after the call was carried out.
    after: bool,
}

impl FaultControl {
    /// A control with no rules: calls pass through untouched.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the rules; hung calls are released (they fail).
    pub fn set(&self, plan: FaultPlan) {
        {
            let mut state = self.state.lock().expect("fault state lock poisoned");
            state.rng = plan.seed;
            state.plan = plan;
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// Removes every rule; hung calls are released (they fail).
    pub fn clear(&self) {
        self.set(FaultPlan::default());
    }

    /// The rules in force.
    pub fn plan(&self) -> FaultPlan {
        self.state
            .lock()
            .expect("fault state lock poisoned")
            .plan
            .clone()
    }

    /// What the wrapper has done so far.
    pub fn counts(&self) -> FaultCounts {
        self.state.lock().expect("fault state lock poisoned").counts
    }

    fn decide(&self, op: FaultOp) -> Action {
        let mut state = self.state.lock().expect("fault state lock poisoned");
        state.counts.calls += 1;
        let mut action = Action {
            op,
            delay: Duration::ZERO,
            fail: false,
            hang: false,
            after: false,
        };
        let Some(index) = state.plan.rules.iter().position(|r| r.targets(op)) else {
            return action;
        };
        let draw = next_unit(&mut state.rng);
        let rule = &mut state.plan.rules[index];
        action.delay = Duration::from_millis(rule.delay_ms);
        action.hang = rule.hang;
        if rule.error_next > 0 {
            rule.error_next -= 1;
            action.fail = true;
        } else {
            action.fail = draw < rule.error_probability;
        }
        action.after = action.fail && rule.error_after_apply;
        let counts = &mut state.counts;
        counts.delays += u64::from(!action.delay.is_zero());
        counts.hangs += u64::from(action.hang);
        counts.errors += u64::from(action.fail || action.hang);
        action
    }

    /// Suffers `action`: `Err` when the call must fail.
    async fn apply(&self, action: Action) -> object_store::Result<()> {
        let mut generation = self.generation.subscribe();
        generation.mark_unchanged();
        if !action.delay.is_zero() {
            tokio::time::sleep(action.delay).await;
        }
        if action.hang {
            // Ends only when the rules change (or the caller gives up).
            let _ = generation.changed().await;
            return Err(injected(action.op, "hung request released"));
        }
        if action.fail && !action.after {
            return Err(injected(action.op, "503 Slow Down"));
        }
        Ok(())
    }

    /// Runs `call` under the fault the next `op` suffers.
    async fn around<T>(
        &self,
        op: FaultOp,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        let action = self.decide(op);
        self.apply(action).await?;
        let out = call.await?;
        if action.after {
            return Err(injected(op, "reply lost after the call was applied"));
        }
        Ok(out)
    }
}

/// splitmix64 onto [0, 1): a seeded, dependency-free coin.
fn next_unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The error of an injected fault.
#[derive(Debug, thiserror::Error)]
#[error("injected fault on {op:?}: {what}")]
pub struct InjectedFault {
    op: FaultOp,
    what: &'static str,
}

fn injected(op: FaultOp, what: &'static str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultInjection",
        source: Box::new(InjectedFault { op, what }),
    }
}

/// `inner` with the faults of a [`FaultControl`] injected.
#[derive(Debug)]
pub struct FaultInjectingStore {
    inner: Arc<dyn ObjectStore>,
    control: FaultControl,
}

impl FaultInjectingStore {
    /// Wraps `inner`; `control` switches faults on and off.
    pub fn new(inner: Arc<dyn ObjectStore>, control: FaultControl) -> Self {
        Self { inner, control }
    }
}

impl fmt::Display for FaultInjectingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultInjectingStore({})", self.inner)
    }
}

/// `stream` once `guard` lets it through; its error otherwise.
fn guarded<T: Send + 'static>(
    control: FaultControl,
    op: FaultOp,
    stream: BoxStream<'static, object_store::Result<T>>,
) -> BoxStream<'static, object_store::Result<T>> {
    let action = control.decide(op);
    let mut stream = Some(stream);
    futures::stream::once(async move { control.apply(action).await })
        .flat_map(move |guard| match (guard, stream.take()) {
            (Ok(()), Some(stream)) => stream,
            (Err(e), _) => futures::stream::once(async move { Err(e) }).boxed(),
            (Ok(()), None) => futures::stream::empty().boxed(),
        })
        .boxed()
}

#[async_trait::async_trait]
impl ObjectStore for FaultInjectingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let call = self.inner.put_opts(location, payload, opts);
        self.control.around(FaultOp::Put, call).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let call = self.inner.put_multipart_opts(location, opts);
        self.control.around(FaultOp::Put, call).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = if options.head {
            FaultOp::Head
        } else {
            FaultOp::Get
        };
        let call = self.inner.get_opts(location, options);
        self.control.around(op, call).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let call = self.inner.get_ranges(location, ranges);
        self.control.around(FaultOp::Get, call).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = self.inner.delete_stream(locations);
        guarded(self.control.clone(), FaultOp::Delete, inner)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        guarded(self.control.clone(), FaultOp::List, self.inner.list(prefix))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let call = self.inner.list_with_delimiter(prefix);
        self.control.around(FaultOp::List, call).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let call = self.inner.copy_opts(from, to, options);
        self.control.around(FaultOp::Put, call).await
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    fn store() -> (FaultInjectingStore, FaultControl) {
        let control = FaultControl::new();
        let store = FaultInjectingStore::new(Arc::new(InMemory::new()), control.clone());
        (store, control)
    }

    fn rule(ops: &[FaultOp]) -> FaultRule {
        FaultRule {
            ops: ops.to_vec(),
            ..FaultRule::default()
        }
    }

    fn is_injected(error: &object_store::Error) -> bool {
        matches!(
            error,
            object_store::Error::Generic {
                store: "FaultInjection",
                ..
            }
        )
    }

    #[tokio::test]
    async fn without_rules_calls_pass_through() {
        let (store, control) = store();
        let key = Path::from("a/b");
        store
            .put(&key, PutPayload::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(store.head(&key).await.unwrap().size, 1);
        let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
        assert_eq!(listed.len(), 1);
        store.delete(&key).await.unwrap();
        assert_eq!(control.counts().errors, 0);
        assert!(control.counts().calls >= 4);
    }

    #[tokio::test]
    async fn error_next_fails_exactly_that_many_calls_of_the_targeted_kind() {
        let (store, control) = store();
        let key = Path::from("k");
        store
            .put(&key, PutPayload::from_static(b"x"))
            .await
            .unwrap();
        control.set(FaultPlan {
            rules: vec![FaultRule {
                error_next: 2,
                ..rule(&[FaultOp::Put])
            }],
            seed: 1,
        });
        for _ in 0..2 {
            let error = store
                .put(&key, PutPayload::from_static(b"y"))
                .await
                .unwrap_err();
            assert!(is_injected(&error), "{error}");
        }
        // GETs are not targeted; the third PUT goes through.
        assert_eq!(
            &store.get(&key).await.unwrap().bytes().await.unwrap()[..],
            b"x"
        );
        store
            .put(&key, PutPayload::from_static(b"z"))
            .await
            .unwrap();
        assert_eq!(control.counts().errors, 2);
    }

    #[tokio::test]
    async fn error_probability_fails_about_that_share_and_replays_with_the_seed() {
        let (store, control) = store();
        let plan = FaultPlan {
            rules: vec![FaultRule {
                error_probability: 0.3,
                ..rule(&[FaultOp::Head])
            }],
            seed: 42,
        };
        let key = Path::from("k");
        store
            .put(&key, PutPayload::from_static(b"x"))
            .await
            .unwrap();
        let mut runs = Vec::new();
        for _ in 0..2 {
            control.set(plan.clone());
            let mut outcomes = Vec::new();
            for _ in 0..1000 {
                outcomes.push(store.head(&key).await.is_err());
            }
            runs.push(outcomes);
        }
        let failed = runs[0].iter().filter(|f| **f).count();
        assert!((200..400).contains(&failed), "{failed} of 1000 failed");
        assert_eq!(runs[0], runs[1], "the same seed gives the same faults");
    }

    #[tokio::test]
    async fn delays_hold_a_call_back() {
        let (store, control) = store();
        control.set(FaultPlan {
            rules: vec![FaultRule {
                delay_ms: 200,
                ..rule(&[])
            }],
            seed: 0,
        });
        let started = std::time::Instant::now();
        store
            .put(&Path::from("k"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(control.counts().delays, 1);
    }

    #[tokio::test]
    async fn hung_calls_never_complete_until_the_rules_change() {
        let (store, control) = store();
        control.set(FaultPlan {
            rules: vec![FaultRule {
                hang: true,
                ..rule(&[FaultOp::Put])
            }],
            seed: 0,
        });
        let key = Path::from("k");
        let mut hung = std::pin::pin!(store.put(&key, PutPayload::from_static(b"x")));
        for _ in 0..10 {
            assert!(
                futures::poll!(hung.as_mut()).is_pending(),
                "a hung put completed"
            );
            tokio::task::yield_now().await;
        }
        control.clear();
        let released = hung.await.unwrap_err();
        assert!(is_injected(&released), "{released}");
        assert_eq!(control.counts().hangs, 1);
        // Cleared: calls go through again.
        store
            .put(&key, PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn error_after_apply_writes_the_object_and_still_reports_an_error() {
        let (store, control) = store();
        control.set(FaultPlan {
            rules: vec![FaultRule {
                error_next: 1,
                error_after_apply: true,
                ..rule(&[FaultOp::Put])
            }],
            seed: 0,
        });
        let key = Path::from("k");
        let error = store
            .put(&key, PutPayload::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(is_injected(&error), "{error}");
        // The write landed although its caller was told it failed.
        assert_eq!(
            &store.get(&key).await.unwrap().bytes().await.unwrap()[..],
            b"x"
        );
        assert_eq!(control.counts().errors, 1);
    }

    #[tokio::test]
    async fn list_and_delete_streams_carry_the_injected_error() {
        let (store, control) = store();
        store
            .put(&Path::from("k"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        control.set(FaultPlan {
            rules: vec![FaultRule {
                error_next: 2,
                ..rule(&[FaultOp::List, FaultOp::Delete])
            }],
            seed: 0,
        });
        let listed: Result<Vec<_>, _> = store.list(None).try_collect().await;
        assert!(is_injected(&listed.unwrap_err()));
        assert!(is_injected(
            &store.delete(&Path::from("k")).await.unwrap_err()
        ));
        store.delete(&Path::from("k")).await.unwrap();
    }
}
