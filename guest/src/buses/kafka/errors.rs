//! Kafka's error codes, as the provider reports them: which are "not found", which are worth
//! retrying, and which are the server refusing a config (named with the resource and field).

use crate::error::Error;
use kafka_protocol::error::ResponseError;

pub const NONE: i16 = 0;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;
pub const INVALID_PARTITIONS: i16 = 37;
pub const INVALID_REPLICATION_FACTOR: i16 = 38;
pub const INVALID_CONFIG: i16 = 40;
pub const NOT_CONTROLLER: i16 = 41;
pub const INVALID_REQUEST: i16 = 42;
pub const REASSIGNMENT_IN_PROGRESS: i16 = 60;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
pub const UNKNOWN_TOPIC_ID: i16 = 100;

/// `NAME (code N): message` for an error code and the server's own message, if any.
pub fn text(code: i16, message: Option<&str>) -> String {
    let name = ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| "UNKNOWN".into());
    match message.filter(|m| !m.is_empty()) {
        Some(m) => format!("{m} (kafka error {name}, code {code})"),
        None => format!("kafka error {name}, code {code}"),
    }
}

/// Errors that clear by themselves (an election, a coordinator loading its log).
pub fn retriable(code: i16) -> bool {
    ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
        || matches!(
            code,
            NOT_CONTROLLER
                | COORDINATOR_LOAD_IN_PROGRESS
                | COORDINATOR_NOT_AVAILABLE
                | NOT_COORDINATOR
                | REASSIGNMENT_IN_PROGRESS
        )
}

/// A server refusal mapped onto wfctl's sentinels; `field` is where a config refusal points.
pub fn to_error(
    resource: &str,
    field: &str,
    what: &str,
    code: i16,
    message: Option<&str>,
) -> Error {
    let text = format!("{what}: {}", text(code, message));
    match code {
        UNKNOWN_TOPIC_OR_PARTITION | GROUP_ID_NOT_FOUND | UNKNOWN_TOPIC_ID => Error::NotFound(text),
        29..=31 | 53 => Error::Forbidden(text),
        58 => Error::Unauthorized(text),
        TOPIC_ALREADY_EXISTS => Error::AlreadyExists(text),
        INVALID_PARTITIONS
        | INVALID_REPLICATION_FACTOR
        | INVALID_CONFIG
        | INVALID_REQUEST
        | 17
        | 39
        | 10
        | 44
        | 87 => Error::invalid(
            resource,
            field,
            text,
            "change the config so the server accepts it",
        ),
        c if retriable(c) => Error::Transient(text),
        _ => Error::Internal(text),
    }
}
