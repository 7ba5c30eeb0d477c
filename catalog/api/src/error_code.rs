//! Kafka error codes: the one table every Strata crate answers with.
//!
//! Each constant is taken from `kafka_protocol`'s `ResponseError` (Apache
//! Kafka's `Errors`), so a number is written nowhere else. Kafka's codes are
//! data in responses, never Rust errors (STYLE.md §3).

use kafka_protocol::ResponseError as E;

/// `UNKNOWN_SERVER_ERROR`.
pub const UNKNOWN_SERVER_ERROR: i16 = E::UnknownServerError.code();

/// No error.
pub const NONE: i16 = 0;

/// `OFFSET_OUT_OF_RANGE` (1).
pub const OFFSET_OUT_OF_RANGE: i16 = E::OffsetOutOfRange.code();

/// `CORRUPT_MESSAGE` (2).
pub const CORRUPT_MESSAGE: i16 = E::CorruptMessage.code();

/// `UNKNOWN_TOPIC_OR_PARTITION` (3).
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = E::UnknownTopicOrPartition.code();

/// `INVALID_FETCH_SIZE` (4).
pub const INVALID_FETCH_SIZE: i16 = E::InvalidFetchSize.code();

/// `LEADER_NOT_AVAILABLE` (5).
pub const LEADER_NOT_AVAILABLE: i16 = E::LeaderNotAvailable.code();

/// `NOT_LEADER_OR_FOLLOWER` (6).
pub const NOT_LEADER_OR_FOLLOWER: i16 = E::NotLeaderOrFollower.code();

/// `REQUEST_TIMED_OUT` (7).
pub const REQUEST_TIMED_OUT: i16 = E::RequestTimedOut.code();

/// `MESSAGE_TOO_LARGE` (10).
pub const MESSAGE_TOO_LARGE: i16 = E::MessageTooLarge.code();

/// `OFFSET_METADATA_TOO_LARGE` (12).
pub const OFFSET_METADATA_TOO_LARGE: i16 = E::OffsetMetadataTooLarge.code();

/// `COORDINATOR_NOT_AVAILABLE` (15).
pub const COORDINATOR_NOT_AVAILABLE: i16 = E::CoordinatorNotAvailable.code();

/// `NOT_COORDINATOR` (16).
pub const NOT_COORDINATOR: i16 = E::NotCoordinator.code();

/// `INVALID_TOPIC_EXCEPTION` (17).
pub const INVALID_TOPIC_EXCEPTION: i16 = E::InvalidTopicException.code();

/// `RECORD_LIST_TOO_LARGE` (18).
pub const RECORD_LIST_TOO_LARGE: i16 = E::RecordListTooLarge.code();

/// `INVALID_REQUIRED_ACKS` (21).
pub const INVALID_REQUIRED_ACKS: i16 = E::InvalidRequiredAcks.code();

/// `ILLEGAL_GENERATION` (22).
pub const ILLEGAL_GENERATION: i16 = E::IllegalGeneration.code();

/// `INCONSISTENT_GROUP_PROTOCOL` (23).
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = E::InconsistentGroupProtocol.code();

/// `INVALID_GROUP_ID` (24).
pub const INVALID_GROUP_ID: i16 = E::InvalidGroupId.code();

/// `UNKNOWN_MEMBER_ID` (25).
pub const UNKNOWN_MEMBER_ID: i16 = E::UnknownMemberId.code();

/// `INVALID_SESSION_TIMEOUT` (26).
pub const INVALID_SESSION_TIMEOUT: i16 = E::InvalidSessionTimeout.code();

/// `REBALANCE_IN_PROGRESS` (27).
pub const REBALANCE_IN_PROGRESS: i16 = E::RebalanceInProgress.code();

/// `INVALID_TIMESTAMP` (32).
pub const INVALID_TIMESTAMP: i16 = E::InvalidTimestamp.code();

/// `UNSUPPORTED_VERSION` (35).
pub const UNSUPPORTED_VERSION: i16 = E::UnsupportedVersion.code();

/// `TOPIC_ALREADY_EXISTS` (36).
pub const TOPIC_ALREADY_EXISTS: i16 = E::TopicAlreadyExists.code();

/// `INVALID_PARTITIONS` (37).
pub const INVALID_PARTITIONS: i16 = E::InvalidPartitions.code();

/// `INVALID_REPLICATION_FACTOR` (38).
pub const INVALID_REPLICATION_FACTOR: i16 = E::InvalidReplicationFactor.code();

/// `INVALID_REPLICA_ASSIGNMENT` (39).
pub const INVALID_REPLICA_ASSIGNMENT: i16 = E::InvalidReplicaAssignment.code();

/// `INVALID_CONFIG` (40).
pub const INVALID_CONFIG: i16 = E::InvalidConfig.code();

/// `INVALID_REQUEST` (42).
pub const INVALID_REQUEST: i16 = E::InvalidRequest.code();

/// `UNSUPPORTED_FOR_MESSAGE_FORMAT` (43).
pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = E::UnsupportedForMessageFormat.code();

/// `POLICY_VIOLATION` (44).
pub const POLICY_VIOLATION: i16 = E::PolicyViolation.code();

/// `OUT_OF_ORDER_SEQUENCE_NUMBER` (45).
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = E::OutOfOrderSequenceNumber.code();

/// `DUPLICATE_SEQUENCE_NUMBER` (46).
pub const DUPLICATE_SEQUENCE_NUMBER: i16 = E::DuplicateSequenceNumber.code();

/// `INVALID_PRODUCER_EPOCH` (47).
pub const INVALID_PRODUCER_EPOCH: i16 = E::InvalidProducerEpoch.code();

/// `INVALID_TXN_STATE` (48).
pub const INVALID_TXN_STATE: i16 = E::InvalidTxnState.code();

/// `INVALID_PRODUCER_ID_MAPPING` (49).
pub const INVALID_PRODUCER_ID_MAPPING: i16 = E::InvalidProducerIdMapping.code();

/// `INVALID_TRANSACTION_TIMEOUT` (50).
pub const INVALID_TRANSACTION_TIMEOUT: i16 = E::InvalidTransactionTimeout.code();

/// `TRANSACTIONAL_ID_AUTHORIZATION_FAILED` (53).
pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = E::TransactionalIdAuthorizationFailed.code();

/// `KAFKA_STORAGE_ERROR` (56).
pub const KAFKA_STORAGE_ERROR: i16 = E::KafkaStorageError.code();

/// `UNKNOWN_PRODUCER_ID` (59).
pub const UNKNOWN_PRODUCER_ID: i16 = E::UnknownProducerId.code();

/// `NON_EMPTY_GROUP` (68).
pub const NON_EMPTY_GROUP: i16 = E::NonEmptyGroup.code();

/// `GROUP_ID_NOT_FOUND` (69).
pub const GROUP_ID_NOT_FOUND: i16 = E::GroupIdNotFound.code();

/// `MEMBER_ID_REQUIRED` (79).
pub const MEMBER_ID_REQUIRED: i16 = E::MemberIdRequired.code();

/// `GROUP_MAX_SIZE_REACHED` (81).
pub const GROUP_MAX_SIZE_REACHED: i16 = E::GroupMaxSizeReached.code();

/// `FENCED_INSTANCE_ID` (82).
pub const FENCED_INSTANCE_ID: i16 = E::FencedInstanceId.code();

/// `GROUP_SUBSCRIBED_TO_TOPIC` (86).
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = E::GroupSubscribedToTopic.code();

/// `INVALID_RECORD` (87).
pub const INVALID_RECORD: i16 = E::InvalidRecord.code();

/// `PRODUCER_FENCED` (90).
pub const PRODUCER_FENCED: i16 = E::ProducerFenced.code();

/// `UNKNOWN_TOPIC_ID` (100).
pub const UNKNOWN_TOPIC_ID: i16 = E::UnknownTopicId.code();

/// `TRANSACTIONAL_ID_NOT_FOUND` (105).
pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = E::TransactionalIdNotFound.code();

/// `STALE_MEMBER_EPOCH` (113).
pub const STALE_MEMBER_EPOCH: i16 = E::StaleMemberEpoch.code();

/// `UNSUPPORTED_SASL_MECHANISM` (33).
pub const UNSUPPORTED_SASL_MECHANISM: i16 = E::UnsupportedSaslMechanism.code();

/// `ILLEGAL_SASL_STATE` (34).
pub const ILLEGAL_SASL_STATE: i16 = E::IllegalSaslState.code();

/// `SASL_AUTHENTICATION_FAILED` (58).
pub const SASL_AUTHENTICATION_FAILED: i16 = E::SaslAuthenticationFailed.code();

/// `RESOURCE_NOT_FOUND` (91).
pub const RESOURCE_NOT_FOUND: i16 = E::ResourceNotFound.code();

/// `DUPLICATE_RESOURCE` (92).
pub const DUPLICATE_RESOURCE: i16 = E::DuplicateResource.code();

/// `UNACCEPTABLE_CREDENTIAL` (93).
pub const UNACCEPTABLE_CREDENTIAL: i16 = E::UnacceptableCredential.code();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_kafkas_numbers() {
        // A spot check against Apache Kafka's `Errors`, in case the enum ever moves.
        assert_eq!(UNKNOWN_SERVER_ERROR, -1);
        assert_eq!(CORRUPT_MESSAGE, 2);
        assert_eq!(NOT_LEADER_OR_FOLLOWER, 6);
        assert_eq!(OUT_OF_ORDER_SEQUENCE_NUMBER, 45);
        assert_eq!(KAFKA_STORAGE_ERROR, 56);
        assert_eq!(INVALID_RECORD, 87);
        assert_eq!(STALE_MEMBER_EPOCH, 113);
        assert_eq!(SASL_AUTHENTICATION_FAILED, 58);
        assert_eq!(UNACCEPTABLE_CREDENTIAL, 93);
    }
}
