//! Conformance of topics: create, list, configure, grow and delete.

use std::collections::BTreeMap;

use strata_catalog_api::proto::Topic;
use uuid::Uuid;

use super::{create_topic, topic_uuid};
use crate::Error;
use crate::store::{CatalogStore, ConfigChange, NewTopic, TopicRef};

/// Create, list, configure, grow and delete topics.
pub async fn topic_crud(store: &dyn CatalogStore) {
    let name = "conformance.crud";
    let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
    let new = NewTopic {
        topic_id: Uuid::new_v4(),
        name: name.to_string(),
        partition_count: 3,
        configs,
    };
    let topic = store.create_topic(new.clone()).await.expect("create");
    assert_eq!((topic.name.as_str(), topic.partition_count), (name, 3));
    assert_eq!(topic_uuid(&topic), new.topic_id);
    assert_eq!(topic.configs.len(), 1);
    let again = store
        .create_topic(NewTopic {
            topic_id: Uuid::new_v4(),
            ..new
        })
        .await;
    assert!(
        matches!(again, Err(Error::TopicAlreadyExists { .. })),
        "duplicate name: {again:?}"
    );

    let listed = store.list_topics(&[name.to_string()]).await.expect("list");
    assert_eq!(listed, vec![topic.clone()]);
    let all = store.list_topics(&[]).await.expect("list all");
    assert!(all.iter().any(|t| t.name == name));
    assert!(
        store
            .list_topics(&["conformance.none".to_string()])
            .await
            .expect("list")
            .is_empty()
    );

    topic_configs(store, name).await;
    topic_partitions(store, &topic).await;
    topic_deletion(store, &topic).await;
}

async fn topic_configs(store: &dyn CatalogStore, name: &str) {
    let change = ConfigChange {
        set: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        delete: vec!["retention.ms".to_string()],
        replace_all: false,
    };
    let altered = store
        .alter_topic_configs(name, change.clone())
        .await
        .expect("alter");
    let configs: Vec<_> = altered
        .configs
        .iter()
        .map(|c| (c.name.as_str(), c.value.as_str()))
        .collect();
    assert_eq!(configs, [("cleanup.policy", "compact")]);
    // Idempotent.
    let again = store
        .alter_topic_configs(name, change)
        .await
        .expect("alter again");
    assert_eq!(again.configs, altered.configs);
    let replace = ConfigChange {
        set: BTreeMap::from([("segment.ms".to_string(), "1".to_string())]),
        delete: Vec::new(),
        replace_all: true,
    };
    let replaced = store
        .alter_topic_configs(name, replace)
        .await
        .expect("replace");
    let configs: Vec<_> = replaced
        .configs
        .iter()
        .map(|c| (c.name.as_str(), c.value.as_str()))
        .collect();
    assert_eq!(configs, [("segment.ms", "1")]);
    let listed = store.list_topics(&[name.to_string()]).await.expect("list");
    assert_eq!(listed[0].configs, replaced.configs, "configs persist");
    let unknown = store
        .alter_topic_configs("conformance.none", ConfigChange::default())
        .await;
    assert!(matches!(unknown, Err(Error::UnknownTopic { .. })));
}

async fn topic_partitions(store: &dyn CatalogStore, topic: &Topic) {
    let name = topic.name.as_str();
    let same = store.create_partitions(name, 3).await;
    assert!(
        matches!(
            same,
            Err(Error::InvalidPartitions {
                current: 3,
                requested: 3
            })
        ),
        "{same:?}"
    );
    let grown = store.create_partitions(name, 5).await.expect("grow");
    assert_eq!(grown.partition_count, 5);
    let offsets = store
        .partition_offsets(topic_uuid(topic), 4)
        .await
        .expect("new partition");
    assert_eq!(
        (
            offsets.log_start_offset,
            offsets.high_watermark,
            offsets.max_timestamp
        ),
        (0, 0, -1)
    );
    let missing = store.partition_offsets(topic_uuid(topic), 5).await;
    assert!(
        matches!(missing, Err(Error::UnknownPartition { .. })),
        "{missing:?}"
    );
    let unknown = store.create_partitions("conformance.none", 2).await;
    assert!(matches!(unknown, Err(Error::UnknownTopic { .. })));
}

async fn topic_deletion(store: &dyn CatalogStore, topic: &Topic) {
    let name = topic.name.as_str();
    let deleted = store
        .delete_topic(TopicRef::Name(name.to_string()))
        .await
        .expect("delete");
    assert_eq!(deleted.topic.topic_id, topic.topic_id);
    assert_eq!(
        deleted.event.invalidated.len(),
        5,
        "every partition is invalidated"
    );
    assert!(deleted.event.sequence > 0);
    assert!(
        store
            .list_topics(&[name.to_string()])
            .await
            .expect("list")
            .is_empty()
    );
    assert!(store.partition_offsets(topic_uuid(topic), 0).await.is_err());
    let again = store.delete_topic(TopicRef::Name(name.to_string())).await;
    assert!(matches!(again, Err(Error::UnknownTopic { .. })));
    let by_id = store.delete_topic(TopicRef::Id(topic_uuid(topic))).await;
    assert!(matches!(by_id, Err(Error::UnknownTopicId { .. })));
    // The name is free again, with a new id.
    let recreated = create_topic(store, name, 1).await;
    assert_ne!(recreated.topic_id, topic.topic_id);
    let deleted = store
        .delete_topic(TopicRef::Id(topic_uuid(&recreated)))
        .await
        .expect("by id");
    assert_eq!(deleted.topic.name, name);
}
