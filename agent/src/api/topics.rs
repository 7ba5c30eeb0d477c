//! CreateTopics, DeleteTopics and CreatePartitions, forwarded to the catalog.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use strata_catalog_api::proto::{
    CreatePartitionsRequest as CatalogCreatePartitions, CreateTopicRequest, DeleteTopicRequest,
    Topic, TopicConfigEntry,
};
use tracing::warn;
use uuid::Uuid;

use super::str_bytes;
use crate::error_code;
use crate::server::Shared;

/// A Kafka error code and message.
pub(crate) type Failure = (i16, String);

fn unavailable(status: tonic::Status) -> Failure {
    warn!(%status, "catalog unavailable");
    (
        error_code::REQUEST_TIMED_OUT,
        format!("the catalog is unavailable: {}", status.message()),
    )
}

/// Creates a topic through the catalog.
pub(crate) async fn create_topic(
    shared: &Arc<Shared>,
    name: &str,
    partitions: i32,
    configs: Vec<TopicConfigEntry>,
    validate_only: bool,
) -> Result<Topic, Failure> {
    let partitions = if partitions == -1 {
        shared.config.default_partitions as i32
    } else {
        partitions
    };
    if partitions <= 0 {
        return Err((
            error_code::INVALID_PARTITIONS,
            format!("number of partitions must be at least 1, not {partitions}"),
        ));
    }
    check_partition_limits(shared, partitions as u32, 0).await?;
    let request = CreateTopicRequest {
        name: name.to_string(),
        partition_count: partitions as u32,
        configs,
        validate_only,
    };
    let response = shared
        .catalog
        .create_topic(request)
        .await
        .map_err(unavailable)?;
    shared.topics.invalidate(name);
    if response.error_code != 0 {
        return Err((response.error_code as i16, response.error_message));
    }
    response.topic.ok_or_else(|| {
        (
            error_code::UNKNOWN_SERVER_ERROR,
            "catalog returned no topic".to_string(),
        )
    })
}

/// Refuses a topic of `count` partitions (growing from `current`, 0 for a
/// new topic) over `max_partitions_per_topic` with INVALID_PARTITIONS, and
/// one that would take the cluster over `max_partitions` with
/// POLICY_VIOLATION, as Kafka answers requests beyond its limits and
/// policies. The cluster's count is the topic cache's (fresh from the
/// catalog), so concurrent creations on several agents may overshoot it
/// by what they add at once.
async fn check_partition_limits(
    shared: &Arc<Shared>,
    count: u32,
    current: u32,
) -> Result<(), Failure> {
    let limits = &shared.config.limits;
    if count > limits.max_partitions_per_topic {
        crate::metrics::add(&shared.metrics.partition_limit_refusals, 1);
        return Err((
            error_code::INVALID_PARTITIONS,
            format!(
                "{count} partitions is more than this cluster's max_partitions_per_topic ({})",
                limits.max_partitions_per_topic
            ),
        ));
    }
    let added = u64::from(count.saturating_sub(current));
    if added == 0 {
        return Ok(());
    }
    let topics = shared.topics.all().await.map_err(unavailable)?;
    let existing: u64 = topics.iter().map(|t| u64::from(t.partitions)).sum();
    if existing + added > limits.max_partitions {
        crate::metrics::add(&shared.metrics.partition_limit_refusals, 1);
        return Err((
            error_code::POLICY_VIOLATION,
            format!(
                "adding {added} partitions to the {existing} that exist would pass this cluster's max_partitions ({})",
                limits.max_partitions
            ),
        ));
    }
    Ok(())
}

/// Answers CreateTopics.
pub(crate) async fn create(
    shared: &Arc<Shared>,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = super::topic_str(&topic.name).to_string();
        let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = if topic.replication_factor == 0 || topic.replication_factor < -1 {
            Err((
                error_code::INVALID_REPLICATION_FACTOR,
                "replication factor must be -1 or at least 1".to_string(),
            ))
        } else {
            let partitions = if topic.assignments.is_empty() {
                topic.num_partitions
            } else {
                topic.assignments.len() as i32
            };
            let configs = topic
                .configs
                .iter()
                .filter_map(|c| {
                    Some(TopicConfigEntry {
                        name: c.name.to_string(),
                        value: c.value.as_ref()?.to_string(),
                    })
                })
                .collect();
            create_topic(shared, &name, partitions, configs, request.validate_only).await
        };
        match outcome {
            Ok(created) => {
                if version >= 7 {
                    result.topic_id = Uuid::from_slice(&created.topic_id).unwrap_or_default();
                }
                if version >= 5 {
                    result.num_partitions = created.partition_count as i32;
                    // Durability comes from object storage, not replicas:
                    // report what the client asked for, or 1.
                    result.replication_factor = topic.replication_factor.max(1);
                }
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(&message));
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Answers DeleteTopics (by name before v6, by name or id from v6).
pub(crate) async fn delete(
    shared: &Arc<Shared>,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<TopicName>, Uuid)> = request
        .topic_names
        .into_iter()
        .map(|n| (Some(n), Uuid::nil()))
        .collect();
    targets.extend(request.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut results = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let request = DeleteTopicRequest {
            name: name
                .as_ref()
                .map(|n| super::topic_str(n).to_string())
                .unwrap_or_default(),
            topic_id: if id.is_nil() {
                Vec::new()
            } else {
                id.as_bytes().to_vec()
            },
        };
        let mut result = DeletableTopicResult::default()
            .with_name(name.clone())
            .with_topic_id(id);
        match shared.catalog.delete_topic(request).await {
            Ok(response) => {
                if !response.name.is_empty() {
                    shared.topics.invalidate(&response.name);
                    result.name = Some(TopicName(str_bytes(&response.name)));
                }
                result.topic_id = Uuid::from_slice(&response.topic_id).unwrap_or(id);
                result.error_code = response.error_code as i16;
            }
            Err(status) => {
                let (code, message) = unavailable(status);
                result.error_code = code;
                result.error_message = Some(str_bytes(&message));
            }
        }
        if version < 6 {
            result.topic_id = Uuid::nil();
        }
        if version < 5 {
            result.error_message = None;
        }
        results.push(result);
    }
    DeleteTopicsResponse::default().with_responses(results)
}

/// Answers CreatePartitions.
pub(crate) async fn create_partitions(
    shared: &Arc<Shared>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = super::topic_str(&topic.name).to_string();
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if topic.count <= 0 {
            result.error_code = error_code::INVALID_PARTITIONS;
            result.error_message = Some(str_bytes("partition count must be positive"));
            results.push(result);
            continue;
        }
        let current = match shared.topics.get(&name).await {
            Ok(Some(info)) => info.partitions,
            // The catalog answers for topics it does not know, or cannot
            // be reached (then the request fails there too).
            _ => 0,
        };
        if let Err((code, message)) =
            check_partition_limits(shared, topic.count as u32, current).await
        {
            result.error_code = code;
            result.error_message = Some(str_bytes(&message));
            results.push(result);
            continue;
        }
        let request = CatalogCreatePartitions {
            name: name.clone(),
            new_partition_count: topic.count as u32,
            validate_only: request.validate_only,
        };
        match shared.catalog.create_partitions(request).await {
            Ok(response) => {
                shared.topics.invalidate(&name);
                result.error_code = response.error_code as i16;
                if response.error_code != 0 {
                    result.error_message = Some(str_bytes(&response.error_message));
                }
            }
            Err(status) => {
                let (code, message) = unavailable(status);
                result.error_code = code;
                result.error_message = Some(str_bytes(&message));
            }
        }
        results.push(result);
    }
    CreatePartitionsResponse::default().with_results(results)
}
