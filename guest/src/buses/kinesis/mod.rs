//! Amazon Kinesis Data Streams: a broker is an AWS account and region (`account.rs`), a stream
//! a Kinesis data stream (`stream.rs`), a consumer an enhanced fan-out consumer
//! (`consumer.rs`). Every request goes through the host's `cloud` import to the operator's
//! `auth: aws` account, which signs it: the component names the operation (`X-Amz-Target`)
//! and the JSON body, never a key, a region or an endpoint.

pub mod account;
mod bus;
pub mod consumer;
pub mod limits;
pub mod shards;
pub mod stream;
pub mod stream_config;

pub use bus::BUS;

use crate::bindings::eventbus::iac::capability_types::CapError;
use crate::bindings::eventbus::iac::cloud::{self, Request};
use crate::error::{Error, Result};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Kinesis's JSON 1.1 API version, the prefix of every `X-Amz-Target`.
pub const API: &str = "Kinesis_20131202";
/// The cloud account a broker uses when its config names none.
pub const DEFAULT_ACCOUNT: &str = "aws";
/// How long one export call may spend waiting for streams and consumers to settle, all waits
/// together (the host stops a call after 120 s); the next apply picks the wait up again.
pub const WAIT: Duration = Duration::from_secs(90);

thread_local! {
    /// When the current export call's waiting must end ([`begin`]).
    static DEADLINE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// Starts the wait budget of an export call (create, update, delete).
pub fn begin() {
    DEADLINE.with(|d| d.set(Some(Instant::now() + WAIT)));
}
/// Provider ids: `kinesis/<broker>/<stream>[/<consumer>]?account=<cloud account>&...`.
pub const ID_PREFIX: &str = "kinesis/";

/// An error Kinesis answered: its code (`ResourceNotFoundException`...) and message.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
}

/// The answer of one operation: its JSON body, or Kinesis's error.
pub type Answer = std::result::Result<Value, AwsError>;

/// Every operation the provider sends, for the IAM policy and the operator's grant.
pub const OPERATIONS: &[&str] = &[
    "DescribeLimits",
    "ListStreams",
    "CreateStream",
    "DescribeStreamSummary",
    "ListTagsForStream",
    "AddTagsToStream",
    "RemoveTagsFromStream",
    "UpdateStreamMode",
    "UpdateShardCount",
    "IncreaseStreamRetentionPeriod",
    "DecreaseStreamRetentionPeriod",
    "StartStreamEncryption",
    "StopStreamEncryption",
    "UpdateMaxRecordSize",
    "DeleteStream",
    "ListStreamConsumers",
    "RegisterStreamConsumer",
    "DescribeStreamConsumer",
    "DeregisterStreamConsumer",
];

fn cap_error(e: CapError, what: &str) -> Error {
    match e {
        CapError::Denied(m) | CapError::Unknown(m) => Error::Forbidden(format!("{what}: {m}")),
        CapError::Unavailable(m) => Error::Transient(format!("{what}: {m}")),
        CapError::Invalid(m) => Error::Internal(format!("{what}: {m}")),
    }
}

/// Kinesis's error code without its namespace (`com.amazonaws.kinesis#X` → `X`).
fn error_of(status: u16, body: &[u8]) -> AwsError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = v
        .get("__type")
        .and_then(Value::as_str)
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
        .unwrap_or_else(|| format!("HTTP {status}"));
    let message = v
        .get("message")
        .or_else(|| v.get("Message"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    AwsError {
        status,
        code,
        message,
    }
}

/// One operation on `account`, retried while the service is unreachable, failing on its side
/// (5xx) or throttling (`LimitExceededException` on the rate, which Kinesis answers for more
/// than its calls per second; callers that must tell it from a real limit use [`call_once`]).
pub fn call(account: &str, op: &str, body: Value) -> Result<Answer> {
    let mut delay = Duration::from_millis(200);
    for attempt in 1.. {
        let answer = call_once(account, op, &body);
        let retry = match &answer {
            Err(Error::Transient(_)) => true,
            Ok(Err(e)) => e.status >= 500 || e.is("ThrottlingException"),
            _ => false,
        };
        if !retry || attempt >= 5 {
            return answer;
        }
        crate::log::debug(&format!("{op}: retrying ({attempt})"));
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    unreachable!("the loop returns")
}

/// One operation, once.
pub fn call_once(account: &str, op: &str, body: &Value) -> Result<Answer> {
    let req = Request {
        method: "POST".into(),
        path: "/".into(),
        headers: vec![
            ("X-Amz-Target".into(), format!("{API}.{op}")),
            ("Content-Type".into(), "application/x-amz-json-1.1".into()),
        ],
        body: serde_json::to_vec(body).unwrap_or_default(),
    };
    let what = format!("Kinesis {op} on cloud account {account:?}");
    let resp = cloud::call(account, &req).map_err(|e| cap_error(e, &what))?;
    if (200..300).contains(&resp.status) {
        if resp.body.is_empty() {
            return Ok(Ok(json!({})));
        }
        return serde_json::from_slice(&resp.body)
            .map(Ok)
            .map_err(|e| Error::Internal(format!("{what}: the answer is not JSON: {e}")));
    }
    Ok(Err(error_of(resp.status, &resp.body)))
}

/// Kinesis's refusal as the provider's error, naming the resource and what to do.
pub fn refused(resource: &str, path: &str, what: &str, e: &AwsError) -> Error {
    let text = format!("{what}: Kinesis answered {} ({})", e.code, e.message);
    match e.code.as_str() {
        "ResourceNotFoundException" => Error::NotFound(format!("{resource}: {text}")),
        "InvalidArgumentException" | "ValidationException" => Error::invalid(
            resource,
            path,
            text,
            "change the value to one Kinesis accepts (see the message)",
        ),
        "LimitExceededException" => Error::RateLimited(format!(
            "{resource}: {text}; wait for the limit to reset or raise it with AWS"
        )),
        "AccessDeniedException" | "UnrecognizedClientException" => Error::Forbidden(format!(
            "{resource}: {text}; the account's IAM policy must allow kinesis:{}",
            what.split_whitespace().next().unwrap_or(what)
        )),
        "KMSAccessDeniedException"
        | "KMSDisabledException"
        | "KMSInvalidStateException"
        | "KMSNotFoundException"
        | "KMSOptInRequired"
        | "KMSThrottlingException" => Error::invalid(
            resource,
            "config.kms_key_id",
            text,
            "use a KMS key that exists, is enabled and that the account may use",
        ),
        _ if e.status >= 500 => Error::Transient(format!("{resource}: {text}")),
        _ => Error::Internal(format!("{resource}: {text}")),
    }
}

/// Polls `look` until it says done (Some), backing off from 100 ms to 3 s, until the call's
/// deadline ([`begin`], else [`WAIT`] from now); then a transient error saying what is still pending (apply again to follow it).
pub fn wait_for<T>(what: &str, mut look: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = DEADLINE
        .with(|d| d.get())
        .unwrap_or_else(|| Instant::now() + WAIT);
    let mut delay = Duration::from_millis(100);
    loop {
        if let Some(t) = look()? {
            return Ok(t);
        }
        if Instant::now() >= deadline {
            return Err(Error::Transient(format!(
                "{what}: still not done when this call's {}s of waiting ran out; apply again to follow it",
                WAIT.as_secs()
            )));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(3));
    }
}

/// Names of streams and consumers: 1 to 128 of `[a-zA-Z0-9_.-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The parts of a provider id: the path segments after `kinesis/` and the query's pairs.
pub fn parse_id(id: &str) -> (Vec<&str>, Vec<(&str, &str)>) {
    let rest = id.strip_prefix(ID_PREFIX).unwrap_or(id);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let segs = path.split('/').collect();
    let pairs = query.split('&').filter_map(|p| p.split_once('=')).collect();
    (segs, pairs)
}

pub fn id_param<'a>(pairs: &[(&str, &'a str)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// A stream's or consumer's id is ours: routed here whatever the host knows of its broker.
pub fn owns(provider_id: &str) -> bool {
    provider_id.starts_with(ID_PREFIX) && parse_id(provider_id).0.len() >= 2
}

/// Seconds since the Unix epoch (the host's clock, to the millisecond).
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kinesis_rules() {
        // 1 to 128 of letters, digits, _ . -; nothing else.
        assert!(valid_name("bmw.fulfillment_1-a"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(129)));
        assert!(valid_name(&"x".repeat(128)));
    }

    #[test]
    fn error_codes_lose_their_namespace() {
        // Some servers answer `namespace#Code`; the code is what the provider matches on.
        let e = error_of(
            400,
            br#"{"__type":"com.amazonaws.kinesis#ResourceInUseException","message":"busy"}"#,
        );
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("ResourceInUseException", "busy")
        );
    }

    #[test]
    fn ids_carry_broker_stream_and_account() {
        // The id alone reaches the stream: its broker, name and cloud account.
        let (segs, q) = parse_id("kinesis/k/orders?account=aws&enforce=true");
        assert_eq!(segs, ["k", "orders"]);
        assert_eq!(id_param(&q, "account"), Some("aws"));
        assert!(owns("kinesis/k/orders?account=aws"));
        assert!(
            !owns("kinesis/k?account=aws"),
            "a broker's id is not a stream's"
        );
        assert!(!owns("k/orders"));
    }
}
