//! The group coordinator: Kafka's classic consumer-group protocol and
//! committed offsets, for every group of the cluster.
//!
//! Agents forward the Kafka group APIs undecoded (`GroupCall`); the
//! [`GroupCoordinator`] decodes them with `kafka-protocol`, answers with
//! Kafka's semantics and error codes, and encodes the response body.
//!
//! - Membership, generations, the join/sync barrier and every timer live in
//!   memory in ONE actor task ([`actor`]) driven by the catalog's [`Clock`];
//!   the state machine itself ([`classic`]) is synchronous and pure, so it
//!   is tested with a manual clock.
//! - Committed offsets and group records are persisted through the
//!   [`CatalogStore`](crate::CatalogStore): offsets on every OffsetCommit
//!   ([`offsets`]); classic records (generation, leader, members,
//!   assignments) when a generation completes or a group empties; KIP-848
//!   records (group epoch, target and current assignments, member epochs,
//!   subscriptions) whenever one of those changes, an emptied group
//!   included ([`persist`]). Records are loaded at startup so members of
//!   either protocol keep heartbeating with their member id and epoch
//!   across a catalog restart; their timers restart from the load time, as
//!   in Kafka.
//! - Classic assignors run in the clients: the coordinator relays the
//!   members' protocol metadata and the leader's assignments as opaque
//!   bytes. KIP-848 consumer groups ([`consumer`], server-side assignors in
//!   [`assignor`]) share the actor; a group id belongs to one protocol.

mod actor;
mod assignor;
mod classic;
mod codec;
mod consumer;
mod offsets;
mod persist;
mod requests;
mod timers;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use kafka_protocol::messages::ApiKey;
use strata_catalog_api::proto::Topic;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;
use uuid::Uuid;

use self::actor::Command;
use self::classic::ClassicGroups;
use self::consumer::{ConsumerGroupOptions, ConsumerGroups};
use self::persist::Persister;
use crate::store::{Clock, SharedStore, SystemClock};

/// The Kafka error codes of the group APIs.
pub(crate) mod code {
    pub(crate) use strata_catalog_api::error_code::*;
}

/// Settings of the [`GroupCoordinator`]. Names follow Kafka's broker
/// configs (`group.initial.rebalance.delay.ms` ...).
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// How long the first rebalance of an empty group waits for more
    /// members (extended by each new member, up to the rebalance timeout).
    /// Kafka's `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i64,
    /// The smallest session timeout a member may ask for
    /// (`group.min.session.timeout.ms`).
    pub min_session_timeout_ms: i32,
    /// The largest session timeout a member may ask for
    /// (`group.max.session.timeout.ms`).
    pub max_session_timeout_ms: i32,
    /// The most members of one group (`group.max.size`).
    pub max_group_size: usize,
    /// The longest offset metadata string (`offset.metadata.max.bytes`).
    pub offset_metadata_max_bytes: usize,
    /// Capacity of the coordinator actor's command queue.
    pub queue_capacity: usize,
    /// The longest the actor sleeps between timer checks, so a clock that
    /// jumps (or a manual test clock) is noticed.
    pub tick_max_ms: u64,
    /// Topics unknown to the coordinator's cached view are looked up again
    /// in the store when the view is older than this.
    pub topics_refresh_ms: i64,
    /// KIP-848 consumer groups: a member that does not heartbeat for this
    /// long is removed (`group.consumer.session.timeout.ms`).
    pub consumer_session_timeout_ms: i64,
    /// KIP-848 consumer groups: how often members heartbeat
    /// (`group.consumer.heartbeat.interval.ms`).
    pub consumer_heartbeat_interval_ms: i32,
    /// KIP-848 consumer groups: the most members of one group
    /// (`group.consumer.max.size`).
    pub consumer_max_group_size: usize,
    /// The catalog's clock: every timer runs on it. Use the store's clock.
    pub clock: Arc<dyn Clock>,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            initial_rebalance_delay_ms: 3_000,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_group_size: usize::MAX,
            offset_metadata_max_bytes: 4_096,
            queue_capacity: 4_096,
            tick_max_ms: 1_000,
            topics_refresh_ms: 1_000,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
            consumer_max_group_size: 1_024,
            clock: Arc::new(SystemClock),
        }
    }
}

/// Why a group call could not be answered with a Kafka response.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The API key or version is not served by the coordinator.
    #[error("group API {api_key} version {api_version} is not supported")]
    Unsupported {
        /// The API key.
        api_key: i16,
        /// The version.
        api_version: i16,
    },
    /// The request body does not decode at its version.
    #[error("malformed group request (API {api_key} v{api_version}): {reason}")]
    Malformed {
        /// The API key.
        api_key: i16,
        /// The version.
        api_version: i16,
        /// The decoder's complaint.
        reason: String,
    },
    /// A response could not be encoded (a bug of the coordinator).
    #[error("encoding the response of API {api_key} v{api_version}: {reason}")]
    Encode {
        /// The API key.
        api_key: i16,
        /// The version.
        api_version: i16,
        /// The encoder's complaint.
        reason: String,
    },
    /// The coordinator actor has stopped.
    #[error("the group coordinator has stopped")]
    Stopped,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::Error),
}

impl From<GroupError> for Status {
    fn from(error: GroupError) -> Self {
        match error {
            GroupError::Unsupported { .. } | GroupError::Malformed { .. } => {
                Status::invalid_argument(error.to_string())
            }
            GroupError::Encode { .. } => Status::internal(error.to_string()),
            GroupError::Stopped => Status::unavailable(error.to_string()),
            GroupError::Store(error) => error.into(),
        }
    }
}

/// A snapshot of the live topics, for resolving names and ids.
#[derive(Debug, Clone, Default)]
pub(crate) struct TopicsView {
    /// Topic name -> (id, partition count).
    pub(crate) by_name: HashMap<String, (Uuid, u32)>,
    /// Topic id -> (name, partition count).
    pub(crate) by_id: HashMap<Uuid, (String, u32)>,
}

impl TopicsView {
    /// The view of `topics` (topics with malformed ids are left out).
    pub(crate) fn from_topics(topics: &[Topic]) -> Self {
        let mut view = Self::default();
        for topic in topics {
            let Ok(id) = Uuid::from_slice(&topic.topic_id) else {
                continue;
            };
            view.by_name
                .insert(topic.name.clone(), (id, topic.partition_count));
            view.by_id
                .insert(id, (topic.name.clone(), topic.partition_count));
        }
        view
    }

    /// The id of partition `partition` of topic `name`, if both exist.
    pub(crate) fn partition(&self, name: &str, partition: i32) -> Option<(Uuid, u32)> {
        let &(id, count) = self.by_name.get(name)?;
        let partition = u32::try_from(partition).ok()?;
        (partition < count).then_some((id, partition))
    }
}

/// The coordinator's cached [`TopicsView`], dropped when topics change
/// through the service and reloaded from the store on the next use.
#[derive(Debug)]
struct TopicsCache {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    state: Mutex<TopicsCacheState>,
}

#[derive(Debug, Default)]
struct TopicsCacheState {
    view: Option<Arc<TopicsView>>,
    loaded_ms: i64,
    /// Bumped by every invalidation, so a load that raced with one is not
    /// cached.
    version: u64,
}

impl TopicsCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, TopicsCacheState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached view, loaded if there is none.
    async fn get(&self) -> crate::Result<Arc<TopicsView>> {
        if let Some(view) = self.lock().view.clone() {
            return Ok(view);
        }
        self.reload().await
    }

    /// The cached view if it was loaded less than `max_age_ms` ago, else a
    /// fresh one.
    async fn fresh(&self, max_age_ms: i64) -> crate::Result<Arc<TopicsView>> {
        let now_ms = self.clock.now_ms();
        {
            let state = self.lock();
            if let Some(view) = &state.view
                && now_ms - state.loaded_ms < max_age_ms
            {
                return Ok(Arc::clone(view));
            }
        }
        self.reload().await
    }

    async fn reload(&self) -> crate::Result<Arc<TopicsView>> {
        let version = self.lock().version;
        let now_ms = self.clock.now_ms();
        let topics = self.store.list_topics(&[]).await?;
        let view = Arc::new(TopicsView::from_topics(&topics));
        let mut state = self.lock();
        if state.version == version {
            state.view = Some(Arc::clone(&view));
            state.loaded_ms = now_ms;
        }
        Ok(view)
    }

    fn invalidate(&self) {
        let mut state = self.lock();
        state.version += 1;
        state.view = None;
    }
}

/// The group coordinator: serves the Kafka group APIs for every group.
/// Cheap to clone; the actor stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct GroupCoordinator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    commands: mpsc::Sender<Command>,
    store: SharedStore,
    topics: TopicsCache,
    options: GroupOptions,
}

impl GroupCoordinator {
    /// Loads the persisted groups (classic and KIP-848) from `store` and
    /// starts the coordinator actor and its persister on the current tokio
    /// runtime. Fails if the store cannot be read or holds a record that
    /// does not decode.
    pub async fn start(store: SharedStore, options: GroupOptions) -> crate::Result<Self> {
        let mut records = store.load_groups().await?;
        let consumer_records = store.load_consumer_groups().await?;
        let now_ms = options.clock.now_ms();
        // A group id belongs to one protocol; the store keeps one record
        // per group, so this only guards against a store that does not.
        let consumer_ids: HashSet<&str> = consumer_records
            .iter()
            .map(|record| record.group_id.as_str())
            .collect();
        records.retain(|record| !consumer_ids.contains(record.group_id.as_str()));
        let classic = ClassicGroups::load(options.clone(), records, now_ms);
        let mut consumer = ConsumerGroups::new(ConsumerGroupOptions {
            session_timeout_ms: options.consumer_session_timeout_ms,
            heartbeat_interval_ms: options.consumer_heartbeat_interval_ms,
            max_size: options.consumer_max_group_size,
            ..ConsumerGroupOptions::default()
        });
        let loaded = consumer_records.len();
        consumer.restore(consumer_records, now_ms);
        tracing::debug!(consumer_groups = loaded, "loaded KIP-848 consumer groups");
        let persister = Persister::start(Arc::clone(&store));
        let (commands, receiver) = mpsc::channel(options.queue_capacity.max(1));
        tokio::spawn(actor::run(
            actor::Groups { classic, consumer },
            receiver,
            persister,
            Arc::clone(&options.clock),
            options.tick_max_ms.max(1),
        ));
        let topics = TopicsCache {
            store: Arc::clone(&store),
            clock: Arc::clone(&options.clock),
            state: Mutex::new(TopicsCacheState::default()),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                commands,
                store,
                topics,
                options,
            }),
        })
    }

    /// Answers one Kafka group request: `body` is the request after its
    /// header, encoded at `api_version`; the result is the response body at
    /// the same version. Kafka errors are codes inside the response; `Err`
    /// means the request could not be decoded or the coordinator failed.
    #[tracing::instrument(level = "debug", skip(self, body), fields(bytes = body.len()))]
    pub async fn call(
        &self,
        api_key: i16,
        api_version: i16,
        body: &[u8],
        client_id: &str,
        client_host: &str,
    ) -> Result<Vec<u8>, GroupError> {
        let unsupported = GroupError::Unsupported {
            api_key,
            api_version,
        };
        let Ok(key) = ApiKey::try_from(api_key) else {
            return Err(unsupported);
        };
        let call = requests::Call {
            coordinator: self,
            key,
            version: api_version,
            body,
            client_id,
            client_host,
        };
        call.dispatch().await
    }

    /// Drops the cached topic view: call after creating, deleting or
    /// growing a topic so commits to it resolve at once.
    pub fn invalidate_topics(&self) {
        self.inner.topics.invalidate();
    }

    /// Makes the actor check its timers now (tests with a manual clock).
    pub async fn tick(&self) -> Result<(), GroupError> {
        self.ask(|reply| Command::Tick { reply }).await
    }

    /// The group checks of a TxnOffsetCommit v3+ (the consumer's group
    /// metadata: generation or member epoch, member id, instance id), as
    /// for an OffsetCommit: NONE, or the Kafka code for every partition.
    pub(crate) async fn validate_txn_commit(
        &self,
        group_id: String,
        generation_id: i32,
        member_id: String,
        instance_id: Option<String>,
    ) -> Result<i16, GroupError> {
        let commit = self::classic::CommitIdentity {
            group_id,
            generation_id,
            member_id,
            instance_id,
        };
        self.ask(|reply| Command::ValidateCommit { commit, reply })
            .await
    }

    /// Sends a command to the actor and waits for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, GroupError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(command(reply))
            .await
            .map_err(|_| GroupError::Stopped)?;
        answer.await.map_err(|_| GroupError::Stopped)
    }

    fn store(&self) -> &SharedStore {
        &self.inner.store
    }

    fn options(&self) -> &GroupOptions {
        &self.inner.options
    }

    fn now_ms(&self) -> i64 {
        self.inner.options.clock.now_ms()
    }
}
