//! The client's error type: every failure names what went wrong and what the
//! user can do about it.

use std::time::Duration;

use kafka_protocol::error::ResponseError;

/// A result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller can do about an [`Error`]. Kinds are API; messages are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A transient condition (network, coordinator moving): try again.
    Retryable,
    /// The named group, topic or partition does not exist.
    NotFound,
    /// The request is wrong or not allowed in the current state: fix it first.
    Invalid,
    /// The broker does not speak a protocol version this client needs.
    Unsupported,
    /// The broker sent something this client cannot understand.
    Internal,
}

/// Everything that can go wrong talking to a Kafka-compatible broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker answered with a Kafka error code.
    #[error("{} ({code}): {message}; {}", error_name(*code), hint(*code))]
    Kafka {
        /// The Kafka error code (see the protocol guide's error table).
        code: i16,
        /// What failed: the server's message or the object concerned.
        message: String,
    },
    /// A TCP connection could not be opened.
    #[error(
        "cannot connect to {address}: {cause}; check that the broker runs and that \
         --bootstrap (or STRATA_BOOTSTRAP) names its Kafka listener"
    )]
    Connect {
        /// The `host:port` dialled.
        address: String,
        /// The operating system's error. It is part of the message rather
        /// than `source()`, so a printed chain does not repeat it.
        cause: std::io::Error,
    },
    /// An open connection failed while sending or receiving.
    #[error("connection to {address} failed: {cause}; the broker may have restarted, try again")]
    Io {
        /// The broker's `host:port`.
        address: String,
        /// The operating system's error. It is part of the message rather
        /// than `source()`, so a printed chain does not repeat it.
        cause: std::io::Error,
    },
    /// The broker did not answer in time.
    #[error(
        "{operation} on {address} timed out after {timeout:?}; check that the broker is \
         healthy and try again"
    )]
    Timeout {
        /// The broker's `host:port`.
        address: String,
        /// What was being waited for (connect, or an API name).
        operation: String,
        /// How long the client waited.
        timeout: Duration,
    },
    /// The broker sent bytes that do not decode as the expected response.
    #[error(
        "protocol error from {address}: {reason}; the broker may not be Kafka-compatible, \
         or client and broker disagree on a version"
    )]
    Protocol {
        /// The broker's `host:port`.
        address: String,
        /// What did not decode.
        reason: String,
    },
    /// No version of an API is implemented by both client and broker.
    #[error(
        "broker {address} does not support {api} in a version this client speaks \
         ({client_min}..={client_max}); upgrade the broker or use a matching client"
    )]
    UnsupportedVersion {
        /// The broker's `host:port`.
        address: String,
        /// The Kafka API's name.
        api: String,
        /// The oldest version the client speaks.
        client_min: i16,
        /// The newest version the client speaks.
        client_max: i16,
    },
    /// None of the bootstrap servers could be reached.
    #[error("no bootstrap server answered (tried {tried}); last error: {last}")]
    Bootstrap {
        /// The addresses tried, comma-separated.
        tried: String,
        /// The error from the last address tried (part of the message).
        last: Box<Error>,
    },
    /// A broker id that the cluster metadata does not list.
    #[error(
        "broker {node_id} is not in the cluster metadata; the cluster may be changing, try again"
    )]
    UnknownBroker {
        /// The broker's node id.
        node_id: i32,
    },
    /// Offsets of a group with live members cannot be changed by an admin.
    #[error("group {group} is active ({members} members, state {state}); stop its consumers first")]
    GroupActive {
        /// The group id.
        group: String,
        /// The group's state, as the coordinator names it.
        state: String,
        /// How many members the group has.
        members: usize,
    },
    /// The caller asked for something that cannot be done.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// What the caller can do about this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Kafka { code, .. } => kafka_kind(*code),
            Error::Connect { .. }
            | Error::Io { .. }
            | Error::Timeout { .. }
            | Error::Bootstrap { .. }
            | Error::UnknownBroker { .. } => ErrorKind::Retryable,
            Error::Protocol { .. } => ErrorKind::Internal,
            Error::UnsupportedVersion { .. } => ErrorKind::Unsupported,
            Error::GroupActive { .. } | Error::InvalidArgument(_) => ErrorKind::Invalid,
        }
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Retryable
    }

    /// The Kafka error code, when the broker answered with one.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether this error says a connection is no longer usable.
    pub(crate) fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Error::Io { .. } | Error::Timeout { .. } | Error::Protocol { .. }
        )
    }

    /// `Err(Error::Kafka)` unless `code` is 0 (NONE).
    pub(crate) fn check(code: i16, message: impl FnOnce() -> String) -> Result<()> {
        if code == 0 {
            Ok(())
        } else {
            Err(Error::Kafka {
                code,
                message: message(),
            })
        }
    }
}

/// Kafka's name for an error code, as in its documentation:
/// `GROUP_ID_NOT_FOUND` for 69.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(code)) => format!("UNKNOWN_ERROR_CODE_{code}"),
        Some(error) => screaming_snake_case(&error.to_string()),
    }
}

/// `GroupIdNotFound` → `GROUP_ID_NOT_FOUND`.
fn screaming_snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn kafka_kind(code: i16) -> ErrorKind {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::GroupIdNotFound | ResponseError::UnknownTopicOrPartition) => {
            ErrorKind::NotFound
        }
        Some(ResponseError::UnsupportedVersion) => ErrorKind::Unsupported,
        Some(ResponseError::UnknownServerError) => ErrorKind::Internal,
        Some(error) if error.is_retriable() => ErrorKind::Retryable,
        _ => ErrorKind::Invalid,
    }
}

/// What a user should do about a Kafka error code.
fn hint(code: i16) -> &'static str {
    use ResponseError as E;
    match ResponseError::try_from_code(code) {
        Some(E::GroupIdNotFound) => "check the group id with `strata group list`",
        Some(E::NonEmptyGroup) => "the group has active members; stop its consumers first",
        Some(E::UnknownMemberId | E::IllegalGeneration | E::RebalanceInProgress) => {
            "the group has active members; stop its consumers first"
        }
        Some(E::UnknownTopicOrPartition) => "check the topic name and partition number",
        Some(E::TopicAlreadyExists) => "the topic exists already; use it or pick another name",
        Some(E::InvalidGroupId) => "pass a non-empty group id",
        Some(E::GroupAuthorizationFailed | E::TopicAuthorizationFailed) => {
            "ask an administrator for access"
        }
        Some(E::UnsupportedVersion) => "upgrade the broker or use a matching client",
        Some(E::OffsetOutOfRange) => "pick an offset between the earliest and latest offsets",
        Some(E::UnknownServerError) | None => "see the broker logs",
        Some(error) if error.is_retriable() => "this is transient; try again",
        Some(_) => "see the broker logs for details",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_follow_kafka_docs() {
        assert_eq!(error_name(69), "GROUP_ID_NOT_FOUND");
        assert_eq!(error_name(68), "NON_EMPTY_GROUP");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
    }

    #[test]
    fn kafka_error_message_names_the_error_and_the_remedy() {
        let error = Error::Kafka {
            code: 69,
            message: "group \"g\"".to_owned(),
        };
        let text = error.to_string();
        assert!(
            text.starts_with("GROUP_ID_NOT_FOUND (69): group \"g\""),
            "{text}"
        );
        assert!(text.contains("strata group list"), "{text}");
        assert_eq!(error.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn kinds_follow_kafka_retriability() {
        let kind = |code| Error::Kafka {
            code,
            message: String::new(),
        };
        assert!(kind(15).is_retryable()); // COORDINATOR_NOT_AVAILABLE
        assert_eq!(kind(68).kind(), ErrorKind::Invalid); // NON_EMPTY_GROUP
    }
}
