//! Topic RPCs: create, delete, grow, list and configure topics, with
//! Kafka's rules for names, partition counts and configs.

use std::collections::BTreeMap;
use std::sync::Arc;

use strata_catalog_api::proto::{
    AlterTopicConfigsRequest, AlterTopicConfigsResponse, CreatePartitionsRequest,
    CreatePartitionsResponse, CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest,
    DeleteTopicResponse, ListTopicsRequest, ListTopicsResponse, Topic, TopicConfigEntry,
};
use strata_catalog_api::topic_config;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{CatalogService, kafka, topic_id};
use crate::store::{ConfigChange, NewTopic, TopicRef};
use crate::{Error, Result, error_code};

/// The longest topic name Kafka allows.
const TOPIC_NAME_LENGTH_MAX: usize = 249;

/// A sanity bound on partitions per topic, so one request cannot stall the
/// writer creating billions of rows.
const PARTITIONS_MAX: u32 = 100_000;

/// Checks a topic name against Kafka's rules: 1 to 249 characters of
/// `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "the name is empty"
    } else if name == "." || name == ".." {
        "the name cannot be '.' or '..'"
    } else if name.len() > TOPIC_NAME_LENGTH_MAX {
        "the name is longer than 249 characters"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "the name may contain only ASCII alphanumerics, '.', '_' and '-'"
    } else {
        return Ok(());
    };
    Err(Error::InvalidTopicName {
        name: name.to_string(),
        reason,
    })
}

fn validate_configs(entries: &[TopicConfigEntry]) -> Result<BTreeMap<String, String>> {
    let mut configs = BTreeMap::new();
    for entry in entries {
        topic_config::validate(&entry.name, &entry.value).map_err(|reason| {
            Error::InvalidConfig {
                name: entry.name.clone(),
                reason,
            }
        })?;
        if configs
            .insert(entry.name.clone(), entry.value.clone())
            .is_some()
        {
            return Err(Error::InvalidConfig {
                name: entry.name.clone(),
                reason: "set more than once".to_string(),
            });
        }
    }
    Ok(configs)
}

fn validate_partition_count(current: u32, requested: u32) -> Result<()> {
    if requested == 0 || requested <= current || requested > PARTITIONS_MAX {
        return Err(Error::InvalidPartitions { current, requested });
    }
    Ok(())
}

impl CatalogService {
    async fn topic_exists(&self, name: &str) -> Result<Option<Topic>> {
        let mut topics = self.store.list_topics(&[name.to_string()]).await?;
        Ok(topics.pop())
    }

    async fn create_topic_checked(&self, request: CreateTopicRequest) -> Result<Topic> {
        validate_topic_name(&request.name)?;
        validate_partition_count(0, request.partition_count)?;
        let configs = validate_configs(&request.configs)?;
        let topic = NewTopic {
            topic_id: Uuid::new_v4(),
            name: request.name,
            partition_count: request.partition_count,
            configs,
        };
        if !request.validate_only {
            let created = self.store.create_topic(topic).await;
            self.groups.invalidate_topics();
            return created;
        }
        if self.topic_exists(&topic.name).await?.is_some() {
            return Err(Error::TopicAlreadyExists { name: topic.name });
        }
        Ok(Topic {
            topic_id: Vec::new(),
            name: topic.name,
            partition_count: topic.partition_count,
            configs: request.configs,
            created_ms: 0,
        })
    }

    async fn create_partitions_checked(&self, request: CreatePartitionsRequest) -> Result<()> {
        let current =
            self.topic_exists(&request.name)
                .await?
                .ok_or_else(|| Error::UnknownTopic {
                    name: request.name.clone(),
                })?;
        validate_partition_count(current.partition_count, request.new_partition_count)?;
        if !request.validate_only {
            let grown = self
                .store
                .create_partitions(&request.name, request.new_partition_count)
                .await;
            self.groups.invalidate_topics();
            grown?;
        }
        Ok(())
    }

    async fn alter_configs_checked(&self, request: AlterTopicConfigsRequest) -> Result<()> {
        let set = validate_configs(&request.set)?;
        if let Some(name) = request
            .delete
            .iter()
            .find(|n| topic_config::find(n).is_none())
        {
            return Err(Error::InvalidConfig {
                name: name.clone(),
                reason: "unknown topic config".to_string(),
            });
        }
        if request.validate_only {
            self.topic_exists(&request.name)
                .await?
                .ok_or_else(|| Error::UnknownTopic {
                    name: request.name.clone(),
                })?;
            return Ok(());
        }
        let change = ConfigChange {
            set,
            delete: request.delete,
            replace_all: request.replace_all,
        };
        self.store
            .alter_topic_configs(&request.name, change)
            .await?;
        Ok(())
    }
}

#[tracing::instrument(level = "debug", skip_all, fields(topic = %request.get_ref().name))]
pub(super) async fn create_topic(
    service: &CatalogService,
    request: Request<CreateTopicRequest>,
) -> Result<Response<CreateTopicResponse>, Status> {
    let response = match kafka(service.create_topic_checked(request.into_inner()).await)? {
        Ok(topic) => CreateTopicResponse {
            topic: Some(topic),
            ..Default::default()
        },
        Err((error_code, error_message)) => CreateTopicResponse {
            error_code,
            error_message,
            topic: None,
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all, fields(topic = %request.get_ref().name))]
pub(super) async fn delete_topic(
    service: &CatalogService,
    request: Request<DeleteTopicRequest>,
) -> Result<Response<DeleteTopicResponse>, Status> {
    let request = request.into_inner();
    let topic = if request.topic_id.is_empty() {
        TopicRef::Name(request.name)
    } else {
        match topic_id(&request.topic_id) {
            Some(id) => TopicRef::Id(id),
            None => {
                return Ok(Response::new(DeleteTopicResponse {
                    error_code: i32::from(error_code::UNKNOWN_TOPIC_ID),
                    ..Default::default()
                }));
            }
        }
    };
    let store = Arc::clone(&service.store);
    let deleted = service
        .write_and_publish(async move {
            let deleted = store.delete_topic(topic).await?;
            Ok((deleted.topic, Some(deleted.event)))
        })
        .await;
    service.groups.invalidate_topics();
    let response = match kafka(deleted)? {
        Ok(topic) => DeleteTopicResponse {
            error_code: 0,
            topic_id: topic.topic_id,
            name: topic.name,
        },
        Err((error_code, _)) => DeleteTopicResponse {
            error_code,
            ..Default::default()
        },
    };
    Ok(Response::new(response))
}

#[tracing::instrument(level = "debug", skip_all, fields(topic = %request.get_ref().name))]
pub(super) async fn create_partitions(
    service: &CatalogService,
    request: Request<CreatePartitionsRequest>,
) -> Result<Response<CreatePartitionsResponse>, Status> {
    let result = kafka(
        service
            .create_partitions_checked(request.into_inner())
            .await,
    )?;
    let (error_code, error_message) = result.err().unwrap_or_default();
    Ok(Response::new(CreatePartitionsResponse {
        error_code,
        error_message,
    }))
}

#[tracing::instrument(level = "debug", skip_all)]
pub(super) async fn list_topics(
    service: &CatalogService,
    request: Request<ListTopicsRequest>,
) -> Result<Response<ListTopicsResponse>, Status> {
    let topics = service
        .store
        .list_topics(&request.into_inner().names)
        .await?;
    Ok(Response::new(ListTopicsResponse { topics }))
}

#[tracing::instrument(level = "debug", skip_all, fields(topic = %request.get_ref().name))]
pub(super) async fn alter_topic_configs(
    service: &CatalogService,
    request: Request<AlterTopicConfigsRequest>,
) -> Result<Response<AlterTopicConfigsResponse>, Status> {
    let result = kafka(service.alter_configs_checked(request.into_inner()).await)?;
    let (error_code, error_message) = result.err().unwrap_or_default();
    Ok(Response::new(AlterTopicConfigsResponse {
        error_code,
        error_message,
    }))
}
