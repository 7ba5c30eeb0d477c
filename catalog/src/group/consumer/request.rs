//! A `ConsumerGroupHeartbeatRequest` validated into a [`Heartbeat`], and
//! the [`Rejection`] of an invalid one.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;

use super::partitions::to_topic_partition_set;
use super::{JOIN_EPOCH, NOT_PROVIDED, STATIC_LEAVE_EPOCH};
use crate::group::assignor::{Assignor, TopicPartitionSet};

/// A heartbeat refused with a Kafka error code.
#[derive(Debug)]
pub(super) struct Rejection {
    pub(super) error: ResponseError,
    pub(super) message: String,
}

/// A validated `ConsumerGroupHeartbeatRequest`.
#[derive(Debug)]
pub(super) struct Heartbeat {
    pub(super) group_id: String,
    pub(super) member_id: String,
    pub(super) member_epoch: i32,
    pub(super) instance_id: Option<String>,
    pub(super) rack_id: Option<String>,
    pub(super) rebalance_timeout_ms: i32,
    pub(super) subscribed_topic_names: Option<BTreeSet<String>>,
    pub(super) server_assignor: Option<Assignor>,
    /// What the member owns; `None` when unchanged since the last heartbeat.
    pub(super) owned: Option<TopicPartitionSet>,
}

impl Heartbeat {
    /// Validates a request the way Kafka's coordinator does and copies it into
    /// owned, typed fields.
    pub(super) fn parse(
        request: ConsumerGroupHeartbeatRequest,
        version: i16,
    ) -> Result<Self, Rejection> {
        let group_id = request.group_id.as_str().to_owned();
        let member_id = request.member_id.as_str().to_owned();
        let member_epoch = request.member_epoch;
        if group_id.is_empty() {
            return Err(Rejection::invalid("GroupId can't be empty."));
        }
        if member_epoch < STATIC_LEAVE_EPOCH {
            return Err(Rejection::invalid(format!(
                "MemberEpoch {member_epoch} is invalid."
            )));
        }
        // v0 lets the coordinator generate the member id on join; from v1
        // on, the client always generates it.
        if member_id.is_empty() && (version >= 1 || member_epoch != JOIN_EPOCH) {
            return Err(Rejection::invalid("MemberId can't be empty."));
        }
        if request
            .subscribed_topic_regex
            .as_ref()
            .is_some_and(|regex| !regex.is_empty())
        {
            return Err(Rejection::invalid(
                "SubscribedTopicRegex is not supported by this coordinator; subscribe by topic names.",
            ));
        }
        if member_epoch == JOIN_EPOCH {
            check_join(&request)?;
        }
        let instance_id = non_empty(request.instance_id, "InstanceId")?;
        let rack_id = non_empty(request.rack_id, "RackId")?;
        if member_epoch == STATIC_LEAVE_EPOCH && instance_id.is_none() {
            return Err(Rejection::invalid(
                "InstanceId can't be null when leaving with epoch -2.",
            ));
        }
        Ok(Self {
            group_id,
            member_id,
            member_epoch,
            instance_id,
            rack_id,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            subscribed_topic_names: request
                .subscribed_topic_names
                .map(|names| names.iter().map(|name| name.as_str().to_owned()).collect()),
            server_assignor: parse_assignor(request.server_assignor)?,
            owned: request
                .topic_partitions
                .map(|owned| to_topic_partition_set(&owned)),
        })
    }

    /// Whether the client sent every field, as it does on join and after an
    /// error; the assignment is then always returned.
    pub(super) fn is_full(&self) -> bool {
        self.member_epoch == JOIN_EPOCH
            || (self.rebalance_timeout_ms != NOT_PROVIDED
                && self.subscribed_topic_names.is_some()
                && self.owned.is_some())
    }
}

/// The extra checks on a join (member epoch 0).
pub(super) fn check_join(request: &ConsumerGroupHeartbeatRequest) -> Result<(), Rejection> {
    if request.rebalance_timeout_ms == NOT_PROVIDED {
        return Err(Rejection::invalid(
            "RebalanceTimeoutMs must be provided in first request.",
        ));
    }
    match &request.topic_partitions {
        None => return Err(Rejection::invalid("TopicPartitions can't be null.")),
        Some(owned) if !owned.is_empty() => {
            return Err(Rejection::invalid(
                "TopicPartitions must be empty when (re-)joining.",
            ));
        }
        Some(_) => {}
    }
    if request.subscribed_topic_names.is_none() {
        return Err(Rejection::invalid(
            "SubscribedTopicNames must be set in first request.",
        ));
    }
    Ok(())
}

pub(super) fn non_empty(value: Option<StrBytes>, field: &str) -> Result<Option<String>, Rejection> {
    match value {
        Some(value) if value.is_empty() => {
            Err(Rejection::invalid(format!("{field} can't be empty.")))
        }
        value => Ok(value.map(|value| value.as_str().to_owned())),
    }
}

/// `None` and `""` mean "no preference" (or "unchanged").
pub(super) fn parse_assignor(name: Option<StrBytes>) -> Result<Option<Assignor>, Rejection> {
    let Some(name) = name.filter(|name| !name.is_empty()) else {
        return Ok(None);
    };
    match Assignor::from_name(name.as_str()) {
        Some(assignor) => Ok(Some(assignor)),
        None => Err(Rejection {
            error: ResponseError::UnsupportedAssignor,
            message: format!(
                "ServerAssignor {} is not supported; use uniform or range.",
                name.as_str()
            ),
        }),
    }
}

impl Rejection {
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self {
            error: ResponseError::InvalidRequest,
            message: message.into(),
        }
    }

    pub(super) fn unknown_member(member_id: &str) -> Self {
        Self {
            error: ResponseError::UnknownMemberId,
            message: format!(
                "Member {member_id} is not a member of the group; rejoin with epoch 0."
            ),
        }
    }

    pub(super) fn into_response(self) -> ConsumerGroupHeartbeatResponse {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(self.error.code())
            .with_error_message(Some(StrBytes::from_string(self.message)))
    }
}
