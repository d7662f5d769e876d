//! `infra.eventbus.consumer`: a durable JetStream consumer. The table is the ConsumerConfig
//! fields a user manages (nats-server server/consumer.go), with the server's defaults.

use super::stream_config::{invalid_name, invalid_subject};
use crate::config::{Common, Default as D, FieldSpec, Fields, Kind, apply_defaults, read_common};
use crate::error::FieldDiag;
use crate::model::Json;
use serde_json::{Value, json};

pub const DELIVER_POLICIES: &[&str] = &[
    "all",
    "last",
    "new",
    "by_start_sequence",
    "by_start_time",
    "last_per_subject",
];

pub const FIELDS: &[FieldSpec] = &[
    FieldSpec::new(
        "name",
        "durable_name",
        Kind::Str,
        D::None,
        "the durable consumer name",
    ),
    FieldSpec::new(
        "description",
        "description",
        Kind::Str,
        D::None,
        "free text shown by the server",
    ),
    FieldSpec::new(
        "deliver_policy",
        "deliver_policy",
        Kind::Enum(DELIVER_POLICIES),
        D::Str("all"),
        "where in the stream delivery starts",
    ),
    FieldSpec::new(
        "opt_start_seq",
        "opt_start_seq",
        Kind::Int,
        D::None,
        "first sequence, with deliver_policy by_start_sequence",
    ),
    FieldSpec::new(
        "opt_start_time",
        "opt_start_time",
        Kind::Str,
        D::None,
        "RFC 3339 start time, with deliver_policy by_start_time",
    ),
    FieldSpec::new(
        "ack_policy",
        "ack_policy",
        Kind::Enum(&["explicit", "none", "all"]),
        D::Str("explicit"),
        "how messages are acknowledged",
    ),
    FieldSpec::new(
        "ack_wait",
        "ack_wait",
        Kind::Duration,
        D::Int(30_000_000_000),
        "redelivery delay for unacknowledged messages",
    ),
    FieldSpec::new(
        "max_deliver",
        "max_deliver",
        Kind::Int,
        D::Unlimited,
        "delivery attempts; 0 or -1 for unlimited",
    ),
    FieldSpec::new(
        "backoff",
        "backoff",
        Kind::DurationList,
        D::None,
        "redelivery delays, e.g. [1s, 5s, 30s]",
    ),
    FieldSpec::new(
        "filter_subject",
        "filter_subject",
        Kind::Str,
        D::None,
        "only messages on this subject",
    ),
    FieldSpec::new(
        "filter_subjects",
        "filter_subjects",
        Kind::StrList,
        D::None,
        "only messages on these subjects (2.10+)",
    )
    .since(2, 10),
    FieldSpec::new(
        "replay_policy",
        "replay_policy",
        Kind::Enum(&["instant", "original"]),
        D::Str("instant"),
        "replay speed",
    ),
    FieldSpec::new(
        "rate_limit_bps",
        "rate_limit_bps",
        Kind::Int,
        D::None,
        "delivery rate limit in bits per second",
    ),
    FieldSpec::new(
        "sample_freq",
        "sample_freq",
        Kind::Str,
        D::None,
        "ack sampling, e.g. \"100%\"",
    ),
    FieldSpec::new(
        "max_waiting",
        "max_waiting",
        Kind::Int,
        D::Derived,
        "pull requests waiting at once (pull consumers; default 512)",
    ),
    FieldSpec::new(
        "max_ack_pending",
        "max_ack_pending",
        Kind::Int,
        D::Derived,
        "unacknowledged messages at once (default 1000)",
    ),
    FieldSpec::new(
        "headers_only",
        "headers_only",
        Kind::Bool,
        D::None,
        "deliver headers only",
    ),
    FieldSpec::new(
        "max_batch",
        "max_batch",
        Kind::Int,
        D::None,
        "largest pull batch",
    ),
    FieldSpec::new(
        "max_expires",
        "max_expires",
        Kind::Duration,
        D::None,
        "longest pull request expiry",
    ),
    FieldSpec::new(
        "max_bytes",
        "max_bytes",
        Kind::Int,
        D::None,
        "largest pull request in bytes",
    ),
    FieldSpec::new(
        "inactive_threshold",
        "inactive_threshold",
        Kind::Duration,
        D::None,
        "remove the consumer after this long inactive",
    ),
    FieldSpec::new(
        "num_replicas",
        "num_replicas",
        Kind::Int,
        D::None,
        "replicas; 0 inherits the stream's",
    )
    .alias(&["replicas"]),
    FieldSpec::new(
        "mem_storage",
        "mem_storage",
        Kind::Bool,
        D::None,
        "keep consumer state in memory",
    ),
    FieldSpec::new(
        "deliver_subject",
        "deliver_subject",
        Kind::Str,
        D::None,
        "push consumer delivery subject (absent for pull)",
    ),
    FieldSpec::new(
        "deliver_group",
        "deliver_group",
        Kind::Str,
        D::None,
        "push consumer queue group",
    ),
    FieldSpec::new(
        "flow_control",
        "flow_control",
        Kind::Bool,
        D::None,
        "push consumer flow control",
    ),
    FieldSpec::new(
        "idle_heartbeat",
        "idle_heartbeat",
        Kind::Duration,
        D::None,
        "push consumer heartbeat interval",
    ),
    FieldSpec::new(
        "metadata",
        "metadata",
        Kind::StrMap,
        D::None,
        "user metadata",
    )
    .since(2, 10),
    FieldSpec::new(
        "priority_groups",
        "priority_groups",
        Kind::StrList,
        D::None,
        "pull priority groups",
    )
    .since(2, 11),
    FieldSpec::new(
        "priority_policy",
        "priority_policy",
        Kind::Enum(&["none", "overflow", "pinned_client", "prioritized"]),
        D::Str("none"),
        "pull priority policy",
    )
    .since(2, 11),
    FieldSpec::new(
        "priority_timeout",
        "priority_timeout",
        Kind::Duration,
        D::None,
        "pinned client timeout",
    )
    .since(2, 11),
];

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerCfg {
    pub name: String,
    pub stream_name: String,
    pub broker_ref: Option<String>,
    /// The ConsumerConfig to send, defaults filled.
    pub wire: Json,
    pub common: Common,
}

pub fn parse(resource: &str, config: &Json) -> Result<ConsumerCfg, Vec<FieldDiag>> {
    let mut f = Fields::new(resource, config);
    let common = read_common(&mut f);
    let broker_ref = f.str("broker_ref");
    if let Some(p) = f.str("provider").filter(|p| p != "nats") {
        f.error(
            "provider",
            format!("consumers are implemented for nats only, not {p:?}"),
            "remove provider or set it to nats",
        );
    }
    let stream_name = f
        .required_str(
            "stream_name",
            "set stream_name to the `name` of a stream resource",
        )
        .unwrap_or_default();
    if !stream_name.is_empty()
        && let Some(bad) = invalid_name(&stream_name)
    {
        f.error("stream_name", bad, "use the stream's JetStream name");
    }
    let mut wire = Json::new();
    for spec in FIELDS {
        if let Some(v) = f.field(spec) {
            wire.insert(spec.wire.to_string(), v);
        }
    }
    let name = wire
        .get("durable_name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !config.contains_key("name") {
        f.error(
            "name",
            "is required",
            "set name to the durable consumer name, e.g. orders-intake",
        );
    } else if let Some(bad) = invalid_name(&name) {
        f.error("name", bad, "use letters, digits, - and _ only");
    }
    let policy = wire
        .get("deliver_policy")
        .and_then(Value::as_str)
        .unwrap_or("all")
        .to_string();
    if policy == "by_start_sequence" && !wire.contains_key("opt_start_seq") {
        f.error(
            "opt_start_seq",
            "is required with deliver_policy by_start_sequence",
            "set opt_start_seq to the first sequence",
        );
    }
    if policy == "by_start_time" && !wire.contains_key("opt_start_time") {
        f.error(
            "opt_start_time",
            "is required with deliver_policy by_start_time",
            "set opt_start_time, e.g. 2026-01-01T00:00:00Z",
        );
    }
    for key in ["filter_subject"] {
        if let Some(s) = wire
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            && let Some(bad) = invalid_subject(s)
        {
            f.error(
                key,
                format!("{s:?}: {bad}"),
                "use dot-separated tokens; * and > only as whole tokens",
            );
        }
    }
    if wire.contains_key("filter_subject")
        && wire
            .get("filter_subjects")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    {
        f.error(
            "filter_subjects",
            "can not be combined with filter_subject",
            "move filter_subject into filter_subjects",
        );
    }
    let backoff_len = wire
        .get("backoff")
        .and_then(Value::as_array)
        .map_or(0, Vec::len) as i64;
    let max_deliver = wire.get("max_deliver").and_then(Value::as_i64).unwrap_or(0);
    if backoff_len > 0 && max_deliver > 0 && backoff_len >= max_deliver {
        f.error(
            "backoff",
            format!("has {backoff_len} entries but max_deliver is {max_deliver}"),
            "make max_deliver larger than the number of backoff entries",
        );
    }
    if wire.get("ack_policy") == Some(&json!("none")) && backoff_len > 0 {
        f.error(
            "backoff",
            "needs an acknowledging ack_policy",
            "set ack_policy to explicit or remove backoff",
        );
    }
    let mut known: Vec<&str> = FIELDS.iter().map(|s| s.key).collect();
    known.extend(["broker_ref", "provider", "stream_name"]);
    let diags = f.finish(&known);
    if !diags.is_empty() {
        return Err(diags);
    }
    normalise(&mut wire);
    Ok(ConsumerCfg {
        name,
        stream_name,
        broker_ref,
        wire,
        common,
    })
}

/// Applies the server's defaults (to what we send, and to what the server reports).
pub fn normalise(wire: &mut Json) {
    // The server echoes `name` equal to `durable_name`; compare on one of them.
    if !wire.contains_key("durable_name")
        && let Some(n) = wire.get("name").cloned()
    {
        wire.insert("durable_name".into(), n);
    }
    wire.remove("name");
    let ack_none = wire.get("ack_policy").and_then(Value::as_str) == Some("none");
    apply_defaults(FIELDS, wire);
    let push = wire
        .get("deliver_subject")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let zero_or_absent = |w: &Json, k: &str| w.get(k).and_then(Value::as_i64).unwrap_or(0) == 0;
    if !push && zero_or_absent(wire, "max_waiting") {
        wire.insert("max_waiting".into(), json!(512));
    }
    if !ack_none && zero_or_absent(wire, "max_ack_pending") {
        wire.insert("max_ack_pending".into(), json!(1000));
    }
    if zero_or_absent(wire, "max_ack_pending") {
        wire.remove("max_ack_pending");
    }
    // A backoff's first value becomes the ack wait on the server.
    if let Some(first) = wire.get("backoff").and_then(|b| b.get(0)).cloned() {
        wire.insert("ack_wait".into(), first);
    }
    if let Some(Value::Object(meta)) = wire.get_mut("metadata") {
        meta.retain(|k, _| !k.starts_with("_nats."));
        if meta.is_empty() {
            wire.remove("metadata");
        }
    }
}

/// The consumer config as the server's create request wants it.
pub fn request_config(wire: &Json) -> Json {
    let mut c = wire.clone();
    if let Some(n) = c.get("durable_name").cloned() {
        c.insert("name".into(), n);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Json {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn pilot_consumer_parses_with_server_defaults() {
        // max_deliver 0/unset means unlimited (-1); pull consumers wait for 512 requests.
        let c = parse("c", &cfg(r#"{"stream_name":"BMW_FULFILLMENT","name":"payment-capture","filter_subject":"bmw.payments.authorized","ack_policy":"explicit"}"#)).unwrap();
        assert_eq!(c.wire["max_deliver"], json!(-1));
        assert_eq!(c.wire["max_waiting"], json!(512));
        assert_eq!(c.wire["max_ack_pending"], json!(1000));
        assert_eq!(c.wire["ack_wait"], json!(30_000_000_000i64));
        assert_eq!(c.wire["durable_name"], json!("payment-capture"));
    }

    #[test]
    fn missing_stream_name_is_a_field_error() {
        // The diagnostic names the field and says what to do.
        let d = parse("c", &cfg(r#"{"name":"x"}"#)).unwrap_err();
        assert_eq!(d[0].path, "config.stream_name");
        assert!(d[0].fix.contains("stream"));
    }

    #[test]
    fn server_echo_with_name_equals_desired() {
        // The server reports both name and durable_name; normalising makes them compare equal.
        let desired = parse(
            "c",
            &cfg(r#"{"stream_name":"S","name":"n","ack_policy":"none"}"#),
        )
        .unwrap()
        .wire;
        let mut live = cfg(
            r#"{"name":"n","durable_name":"n","deliver_policy":"all","ack_policy":"none","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"num_replicas":0}"#,
        );
        normalise(&mut live);
        assert_eq!(desired, live);
    }
}
