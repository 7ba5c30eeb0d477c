//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs. Topic configs
//! live in the catalog; broker settings are static per agent process.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use strata_catalog_api::proto::{AlterTopicConfigsRequest, TopicConfigEntry};
use strata_catalog_api::topic_config::{self, TOPIC_CONFIGS};

use super::str_bytes;
use crate::error_code;
use crate::server::Shared;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
const RESOURCE_BROKER_LOGGER: i8 = 8;

const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// One config as DescribeConfigs reports it.
struct Described {
    name: String,
    value: String,
    source: i8,
    config_type: i8,
    read_only: bool,
}

/// Answers DescribeConfigs.
pub(crate) async fn describe(
    shared: &Arc<Shared>,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut results = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let described = match resource.resource_type {
            RESOURCE_TOPIC => topic_configs(shared, &name).await,
            RESOURCE_BROKER => broker_configs(shared, &name),
            RESOURCE_BROKER_LOGGER => Ok(Vec::new()),
            other => Err((
                error_code::INVALID_REQUEST,
                format!("unsupported resource type {other}"),
            )),
        };
        match described {
            Ok(configs) => {
                let keys = resource.configuration_keys.as_ref();
                result.configs = configs
                    .into_iter()
                    .filter(|c| keys.is_none_or(|keys| keys.iter().any(|k| k.as_str() == c.name)))
                    .map(|c| to_result(c, version, request.include_synonyms))
                    .collect();
            }
            Err((code, message)) => {
                result.error_code = code;
                result.error_message = Some(str_bytes(&message));
            }
        }
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

fn to_result(c: Described, version: i16, synonyms: bool) -> DescribeConfigsResourceResult {
    let mut result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(&c.name))
        .with_value(Some(str_bytes(&c.value)))
        .with_read_only(c.read_only)
        .with_config_source(c.source);
    if version >= 3 {
        result.config_type = c.config_type;
    }
    if version >= 1 && synonyms {
        result.synonyms = vec![
            DescribeConfigsSynonym::default()
                .with_name(str_bytes(&c.name))
                .with_value(Some(str_bytes(&c.value)))
                .with_source(c.source),
        ];
    }
    result
}

async fn topic_configs(shared: &Arc<Shared>, name: &str) -> Result<Vec<Described>, (i16, String)> {
    shared.topics.invalidate(name);
    let topic = shared
        .topics
        .get(name)
        .await
        .map_err(|s| {
            (
                error_code::REQUEST_TIMED_OUT,
                format!("the catalog is unavailable: {}", s.message()),
            )
        })?
        .ok_or_else(|| {
            (
                error_code::UNKNOWN_TOPIC_OR_PARTITION,
                format!("topic {name} does not exist"),
            )
        })?;
    Ok(TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let set = topic.configs.get(def.name);
            Described {
                name: def.name.to_string(),
                value: set.cloned().unwrap_or_else(|| def.default.to_string()),
                source: if set.is_some() {
                    SOURCE_DYNAMIC_TOPIC
                } else {
                    SOURCE_DEFAULT
                },
                config_type: def.config_type.describe_configs_code(),
                read_only: false,
            }
        })
        .collect())
}

fn broker_configs(shared: &Arc<Shared>, name: &str) -> Result<Vec<Described>, (i16, String)> {
    let config = &shared.config;
    let node_id = shared.fleet.view().node_id;
    if !name.is_empty() && name.parse::<i32>().ok() != Some(node_id) {
        return Err((
            error_code::INVALID_REQUEST,
            format!("unknown broker {name}"),
        ));
    }
    let static_config = |name: &str, value: String, config_type: i8| Described {
        name: name.to_string(),
        value,
        source: SOURCE_STATIC_BROKER,
        config_type,
        read_only: true,
    };
    Ok(vec![
        static_config(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            1,
        ),
        static_config("broker.id", node_id.to_string(), 3),
        static_config("num.partitions", config.default_partitions.to_string(), 3),
        static_config(
            "socket.request.max.bytes",
            config.request_bytes_max.to_string(),
            3,
        ),
        static_config("message.max.bytes", "1048588".to_string(), 3),
        static_config("default.replication.factor", "1".to_string(), 5),
        static_config("min.insync.replicas", "1".to_string(), 3),
    ])
}

/// Answers AlterConfigs: a topic's configs become exactly the given set.
pub(crate) async fn alter(
    shared: &Arc<Shared>,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let set = resource
            .configs
            .iter()
            .filter_map(|c| {
                Some(TopicConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.as_ref()?.to_string(),
                })
            })
            .collect();
        let change = AlterTopicConfigsRequest {
            name: resource.resource_name.to_string(),
            set,
            delete: Vec::new(),
            replace_all: true,
            validate_only: request.validate_only,
        };
        let (code, message) = apply(shared, resource.resource_type, change).await;
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(code)
                .with_error_message(message.map(|m| str_bytes(&m))),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}

/// Answers IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT.
pub(crate) async fn incremental_alter(
    shared: &Arc<Shared>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.to_string();
        let (code, message) = match incremental_change(
            shared,
            &name,
            resource.resource_type,
            &resource.configs,
        )
        .await
        {
            Ok(mut change) => {
                change.validate_only = request.validate_only;
                apply(shared, resource.resource_type, change).await
            }
            Err((code, message)) => (code, Some(message)),
        };
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name)
                .with_error_code(code)
                .with_error_message(message.map(|m| str_bytes(&m))),
        );
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

async fn incremental_change(
    shared: &Arc<Shared>,
    name: &str,
    resource_type: i8,
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<AlterTopicConfigsRequest, (i16, String)> {
    let mut change = AlterTopicConfigsRequest {
        name: name.to_string(),
        ..Default::default()
    };
    if resource_type != RESOURCE_TOPIC {
        return Ok(change);
    }
    let current = match configs
        .iter()
        .any(|c| c.config_operation == OP_APPEND || c.config_operation == OP_SUBTRACT)
    {
        true => topic_configs(shared, name).await?,
        false => Vec::new(),
    };
    for c in configs {
        let key = c.name.to_string();
        let value = c
            .value
            .as_ref()
            .map(StrBytes::to_string)
            .unwrap_or_default();
        match c.config_operation {
            OP_SET => change.set.push(TopicConfigEntry { name: key, value }),
            OP_DELETE => change.delete.push(key),
            op @ (OP_APPEND | OP_SUBTRACT) => {
                let now = current
                    .iter()
                    .find(|d| d.name == key)
                    .map(|d| d.value.clone())
                    .unwrap_or_default();
                let mut items: Vec<String> = now
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                for v in value.split(',').filter(|s| !s.is_empty()) {
                    if op == OP_APPEND && !items.iter().any(|i| i == v) {
                        items.push(v.to_string());
                    } else if op == OP_SUBTRACT {
                        items.retain(|i| i != v);
                    }
                }
                change.set.push(TopicConfigEntry {
                    name: key,
                    value: items.join(","),
                });
            }
            other => {
                return Err((
                    error_code::INVALID_REQUEST,
                    format!("unknown config operation {other}"),
                ));
            }
        }
    }
    Ok(change)
}

async fn apply(
    shared: &Arc<Shared>,
    resource_type: i8,
    change: AlterTopicConfigsRequest,
) -> (i16, Option<String>) {
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER | RESOURCE_BROKER_LOGGER => {
            return (
                error_code::INVALID_REQUEST,
                Some(
                    "Strata agent settings are static: set them in the agent's configuration"
                        .into(),
                ),
            );
        }
        other => {
            return (
                error_code::INVALID_REQUEST,
                Some(format!("unsupported resource type {other}")),
            );
        }
    }
    for entry in &change.set {
        if let Err(message) = topic_config::validate(&entry.name, &entry.value) {
            return (error_code::INVALID_CONFIG, Some(message));
        }
    }
    let name = change.name.clone();
    match shared.catalog.alter_topic_configs(change).await {
        Ok(r) => {
            shared.topics.invalidate(&name);
            (
                r.error_code as i16,
                (r.error_code != 0).then_some(r.error_message),
            )
        }
        Err(status) => (
            error_code::REQUEST_TIMED_OUT,
            Some(format!("the catalog is unavailable: {}", status.message())),
        ),
    }
}
