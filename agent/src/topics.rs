//! The agent's view of topics: a cache over the catalog.
//!
//! Topics change rarely and every produce and fetch needs them, so the agent
//! keeps them in memory and refreshes an entry from the catalog when it is
//! missing or older than [`TOPIC_TTL`]. Changes made through this agent
//! invalidate the entry at once. While the catalog cannot be reached, stale
//! entries keep serving (Metadata, Fetch and Produce go on resolving known
//! topics; produces then fail at commit with a retriable error).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use strata_catalog_api::CatalogApi;
use strata_catalog_api::proto::{ListTopicsRequest, Topic};
use tonic::Status;
use uuid::Uuid;

/// How long a cached topic is trusted before it is re-read.
const TOPIC_TTL: Duration = Duration::from_secs(5);

/// One topic as the data path needs it.
#[derive(Debug, Clone)]
pub(crate) struct TopicInfo {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) partitions: u32,
    /// Configs set on the topic; absent keys take their defaults.
    pub(crate) configs: HashMap<String, String>,
}

impl TopicInfo {
    fn from_proto(topic: Topic) -> Option<Self> {
        let id = Uuid::from_slice(&topic.topic_id).ok()?;
        Some(Self {
            id,
            name: topic.name,
            partitions: topic.partition_count,
            configs: topic
                .configs
                .into_iter()
                .map(|c| (c.name, c.value))
                .collect(),
        })
    }

    /// The topic's `max.message.bytes`, or `default` (the agent's
    /// `message_max_bytes`, as Kafka's `message.max.bytes`) when unset.
    pub(crate) fn max_message_bytes(&self, default: usize) -> usize {
        self.configs
            .get("max.message.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// Whether the topic's `message.timestamp.type` is LogAppendTime.
    pub(crate) fn log_append_time(&self) -> bool {
        self.configs
            .get("message.timestamp.type")
            .is_some_and(|v| v == "LogAppendTime")
    }

    /// Whether the topic's `cleanup.policy` includes `compact`: its records
    /// need keys (Kafka refuses keyless ones with INVALID_RECORD).
    pub(crate) fn compacted(&self) -> bool {
        self.configs.get("cleanup.policy").is_some_and(|policy| {
            policy
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case("compact"))
        })
    }

    /// Whether `partition` exists.
    pub(crate) fn has_partition(&self, partition: i32) -> bool {
        partition >= 0 && (partition as u32) < self.partitions
    }
}

#[derive(Debug)]
struct Entry {
    topic: Arc<TopicInfo>,
    loaded: Instant,
}

impl Entry {
    fn fresh(&self) -> Option<Arc<TopicInfo>> {
        (self.loaded.elapsed() < TOPIC_TTL).then(|| self.topic.clone())
    }
}

/// The cached topics, by name, with an id index (Fetch and Produce v13+
/// name topics by id).
#[derive(Debug, Default)]
struct Maps {
    by_name: HashMap<String, Entry>,
    name_of: HashMap<Uuid, String>,
}

/// A cache of topics by name and id.
#[derive(Debug)]
pub(crate) struct TopicCache {
    catalog: Arc<dyn CatalogApi>,
    maps: RwLock<Maps>,
}

impl TopicCache {
    pub(crate) fn new(catalog: Arc<dyn CatalogApi>) -> Self {
        Self {
            catalog,
            maps: RwLock::new(Maps::default()),
        }
    }

    /// The topic called `name`, or `None` when it does not exist.
    pub(crate) async fn get(&self, name: &str) -> Result<Option<Arc<TopicInfo>>, Status> {
        let cached = self.read().by_name.get(name).and_then(Entry::fresh);
        if let Some(topic) = cached {
            return Ok(Some(topic));
        }
        match self.load(vec![name.to_string()]).await {
            Ok(topics) => Ok(topics.into_iter().find(|t| t.name == name)),
            Err(status) => match self.read().by_name.get(name) {
                Some(stale) => Ok(Some(stale.topic.clone())),
                None => Err(status),
            },
        }
    }

    /// The topic with id `id`, or `None` when it does not exist.
    pub(crate) async fn get_by_id(&self, id: Uuid) -> Result<Option<Arc<TopicInfo>>, Status> {
        let cached = {
            let maps = self.read();
            maps.name_of
                .get(&id)
                .and_then(|name| maps.by_name.get(name))
                .and_then(Entry::fresh)
                .filter(|topic| topic.id == id)
        };
        if let Some(topic) = cached {
            return Ok(Some(topic));
        }
        match self.load(Vec::new()).await {
            Ok(topics) => Ok(topics.into_iter().find(|t| t.id == id)),
            Err(status) => {
                let maps = self.read();
                let stale = maps
                    .name_of
                    .get(&id)
                    .and_then(|name| maps.by_name.get(name));
                match stale {
                    Some(stale) => Ok(Some(stale.topic.clone())),
                    None => Err(status),
                }
            }
        }
    }

    /// Every topic, fresh from the catalog (the cached ones while the
    /// catalog cannot be reached).
    pub(crate) async fn all(&self) -> Result<Vec<Arc<TopicInfo>>, Status> {
        match self.load(Vec::new()).await {
            Ok(topics) => Ok(topics),
            Err(status) => {
                let maps = self.read();
                if maps.by_name.is_empty() {
                    return Err(status);
                }
                Ok(maps.by_name.values().map(|e| e.topic.clone()).collect())
            }
        }
    }

    /// Forgets `name` so the next use re-reads it.
    pub(crate) fn invalidate(&self, name: &str) {
        let mut maps = self.maps.write().expect("topic cache lock poisoned");
        if let Some(entry) = maps.by_name.remove(name) {
            maps.name_of.remove(&entry.topic.id);
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps.read().expect("topic cache lock poisoned")
    }

    /// Loads `names` (all topics when empty) from the catalog into the cache.
    async fn load(&self, names: Vec<String>) -> Result<Vec<Arc<TopicInfo>>, Status> {
        let all = names.is_empty();
        let response = self
            .catalog
            .list_topics(ListTopicsRequest {
                names: names.clone(),
            })
            .await?;
        let topics: Vec<Arc<TopicInfo>> = response
            .topics
            .into_iter()
            .filter_map(TopicInfo::from_proto)
            .map(Arc::new)
            .collect();
        let now = Instant::now();
        let mut maps = self.maps.write().expect("topic cache lock poisoned");
        if all {
            *maps = Maps::default();
        } else {
            for name in &names {
                if let Some(entry) = maps.by_name.remove(name) {
                    maps.name_of.remove(&entry.topic.id);
                }
            }
        }
        for topic in &topics {
            maps.name_of.insert(topic.id, topic.name.clone());
            let entry = Entry {
                topic: topic.clone(),
                loaded: now,
            };
            maps.by_name.insert(topic.name.clone(), entry);
        }
        Ok(topics)
    }
}
