//! The Kafka error codes the catalog returns inside responses.
//!
//! Numbers from Apache Kafka's `org.apache.kafka.common.protocol.Errors`.

/// No error.
pub const NONE: i16 = 0;
/// The offset is outside the partition's log.
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
/// The topic or partition does not exist.
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
/// The topic name is invalid.
pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
/// The request is malformed.
pub const INVALID_REQUEST: i16 = 42;
/// A topic with this name already exists.
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
/// The partition count is invalid.
pub const INVALID_PARTITIONS: i16 = 37;
/// A config is unknown or invalid.
pub const INVALID_CONFIG: i16 = 40;
/// The batch's sequence does not follow the producer's last sequence.
pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
/// The batch was already appended (the original offset is returned).
pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
/// The producer's epoch is older than the current one.
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
/// The transaction state does not allow the call.
pub const INVALID_TXN_STATE: i16 = 48;
/// The producer id is not the transactional id's producer.
pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
/// The transaction timeout is out of range.
pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
/// The producer id is not known (never allocated or expired).
pub const UNKNOWN_PRODUCER_ID: i16 = 59;
/// A newer producer with the same transactional id exists.
pub const PRODUCER_FENCED: i16 = 90;
/// No topic has this id.
pub const UNKNOWN_TOPIC_ID: i16 = 100;
