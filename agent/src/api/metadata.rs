//! Metadata: brokers and topics. The brokers are the live agents (with
//! their zones as racks). Any agent can serve any partition, so partition
//! leaders only spread clients over the agents (a stable hash of topic id
//! and partition over the agents sorted by node id); replicas and ISR are
//! every live agent, leader first.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use tracing::warn;
use uuid::Uuid;

use super::{str_bytes, topics::create_topic};
use crate::error_code;
use crate::fleet::FleetView;
use crate::security::RequestContext;
use crate::server::Shared;
use crate::topics::TopicInfo;

/// Answers Metadata, auto-creating requested topics when allowed.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    context: &RequestContext,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let config = &shared.config;
    let fleet = shared.fleet.view();
    let brokers: Vec<MetadataResponseBroker> = fleet
        .members
        .iter()
        .map(|b| {
            let rack = if version >= 1 {
                b.zone.as_deref().map(str_bytes)
            } else {
                None
            };
            // As Kafka: the addresses of the listener the client came in on.
            let (host, port) = b.address(&context.listener);
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.node_id))
                .with_host(str_bytes(host))
                .with_port(i32::from(port))
                .with_rack(rack)
        })
        .collect();
    // Before v4 a request could not opt out of auto-creation.
    let auto_create =
        config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics = match request.topics {
        None => all_topics(shared, &fleet).await,
        Some(requested) if requested.is_empty() && version == 0 => all_topics(shared, &fleet).await,
        Some(requested) => {
            let mut out = Vec::with_capacity(requested.len());
            for t in requested {
                out.push(one_topic(shared, &fleet, t.name, t.topic_id, auto_create).await);
            }
            out
        }
    };
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    // Fields a version lacks must keep their defaults or encoding fails.
    if version >= 1 {
        response.controller_id = BrokerId(fleet.node_id);
    }
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&config.cluster_id));
    }
    if version < 10 {
        for topic in &mut response.topics {
            topic.topic_id = Uuid::nil();
        }
    }
    if version < 7 {
        for partition in response
            .topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
        {
            partition.leader_epoch = -1;
        }
    }
    response
}

async fn all_topics(shared: &Arc<Shared>, fleet: &FleetView) -> Vec<MetadataResponseTopic> {
    match shared.topics.all().await {
        Ok(topics) => topics.iter().map(|t| describe(fleet, t)).collect(),
        Err(status) => {
            warn!(%status, "catalog unavailable during Metadata");
            Vec::new()
        }
    }
}

async fn one_topic(
    shared: &Arc<Shared>,
    fleet: &FleetView,
    name: Option<TopicName>,
    id: Uuid,
    auto_create: bool,
) -> MetadataResponseTopic {
    let found = match &name {
        Some(name) => shared.topics.get(super::topic_str(name)).await,
        None => shared.topics.get_by_id(id).await,
    };
    match found {
        Ok(Some(topic)) => describe(fleet, &topic),
        Ok(None) => match name {
            Some(name) if auto_create => auto_create_topic(shared, fleet, name).await,
            Some(name) => error_topic(Some(name), id, error_code::UNKNOWN_TOPIC_OR_PARTITION),
            None => error_topic(None, id, error_code::UNKNOWN_TOPIC_ID),
        },
        Err(status) => {
            warn!(%status, "catalog unavailable during Metadata");
            error_topic(name, id, error_code::LEADER_NOT_AVAILABLE)
        }
    }
}

async fn auto_create_topic(
    shared: &Arc<Shared>,
    fleet: &FleetView,
    name: TopicName,
) -> MetadataResponseTopic {
    let partitions = shared.config.default_partitions as i32;
    match create_topic(
        shared,
        super::topic_str(&name),
        partitions,
        Vec::new(),
        false,
    )
    .await
    {
        Ok(_) | Err((error_code::TOPIC_ALREADY_EXISTS, _)) => {
            match shared.topics.get(super::topic_str(&name)).await {
                Ok(Some(topic)) => describe(fleet, &topic),
                _ => error_topic(Some(name), Uuid::nil(), error_code::LEADER_NOT_AVAILABLE),
            }
        }
        Err((code, _)) => {
            // Invalid names get INVALID_TOPIC_EXCEPTION, as Kafka answers.
            error_topic(Some(name), Uuid::nil(), code)
        }
    }
}

fn error_topic(name: Option<TopicName>, id: Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name)
        .with_topic_id(id)
        .with_topic_authorized_operations(i32::MIN)
}

fn describe(fleet: &FleetView, topic: &TopicInfo) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions as i32)
        .map(|p| {
            let replicas: Vec<BrokerId> = fleet
                .replicas(&topic.id, p)
                .into_iter()
                .map(BrokerId)
                .collect();
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(replicas[0])
                .with_leader_epoch(0)
                .with_replica_nodes(replicas.clone())
                .with_isr_nodes(replicas)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(&topic.name))))
        .with_topic_id(topic.id)
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}
