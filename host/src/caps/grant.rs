//! What one call into the component may do with its capabilities.
//!
//! The host knows which export it is calling, so "a plan never changes anything" is the host's
//! rule, not the component's promise: every call is read-only except the driver calls that
//! exist to change something (`create`, `update`, `delete`, `scale`) and the provider's
//! `destroy`. A mutating call is further scoped to its own resource: the server-side objects
//! its spec or provider id names. Each capability asks this grant before it acts (NATS by
//! operation and object, Kafka by API and topic or group, cloud by method); a denial names the
//! export and the reason. On Kafka a stream is a topic (its config `name`) and a consumer a
//! consumer group (its `name`) on its topic or topics (`stream_name`, one or a list).

use crate::runtime::wit;
use serde_json::Value;

/// The objects a mutating call may change: a stream (and the consumers on it, which the server
/// deletes with it and which a stream's replacement recreates), or one consumer; on Kafka a
/// topic, or one consumer group on a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The broker resource's name; `None` when the resource names none (its only broker).
    pub broker: Option<String>,
    pub stream: String,
    pub consumer: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CallGrant {
    /// The export being called (`plan`, `create`...), for denials.
    pub export: &'static str,
    pub mutates: bool,
    pub objects: Vec<Object>,
}

impl Default for CallGrant {
    fn default() -> Self {
        CallGrant::read_only()
    }
}

/// The exports that may change anything; every other one is read-only. (`runtime::Guest`
/// gives these, and only these, a mutating grant.)
pub const MUTATING_EXPORTS: [&str; 5] = ["create", "update", "delete", "scale", "destroy"];

/// The only methods a read-only call may use on a cloud API or over HTTP.
pub const READ_ONLY_METHODS: [&str; 2] = ["GET", "HEAD"];

const STREAM: &str = "infra.eventbus.stream";
const CONSUMER: &str = "infra.eventbus.consumer";

impl CallGrant {
    /// Every export but the mutating ones: capabilities answer reads only.
    pub fn read_only() -> CallGrant {
        CallGrant {
            export: "",
            mutates: false,
            objects: vec![],
        }
    }

    /// A mutating call that may change what these specs and refs name, and nothing else.
    pub fn mutating(specs: &[&wit::ResourceSpec], refs: &[&wit::ResourceRef]) -> CallGrant {
        let mut objects: Vec<Object> = vec![];
        for o in specs
            .iter()
            .flat_map(|s| of_spec(s))
            .chain(refs.iter().filter_map(|r| of_ref(r)))
        {
            if !objects.contains(&o) {
                objects.push(o);
            }
        }
        CallGrant {
            export: "",
            mutates: true,
            objects,
        }
    }

    /// Whether a write to the stream (`consumer: None`) or to a consumer on it is in scope.
    pub fn may_write(&self, broker: &str, stream: &str, consumer: Option<&str>) -> bool {
        self.mutates
            && self.objects.iter().any(|o| {
                o.broker.as_deref().is_none_or(|b| b == broker)
                    && o.stream == stream
                    && (o.consumer.is_none() || o.consumer.as_deref() == consumer)
            })
    }

    /// Whether a write to the consumer group `group` is in scope (on `topic`, if the write is
    /// to its offsets there): only a call for that very consumer, never its stream's call.
    pub fn may_write_group(&self, broker: &str, group: &str, topic: Option<&str>) -> bool {
        self.mutates
            && self.objects.iter().any(|o| {
                o.broker.as_deref().is_none_or(|b| b == broker)
                    && o.consumer.as_deref() == Some(group)
                    && topic.is_none_or(|t| o.stream == t)
            })
    }

    /// Whether an ACL on `topic` may be written: the topic's own call, or a consumer group's
    /// call on that topic (its principal is granted Read on the topics the group reads).
    pub fn may_grant_on_topic(&self, broker: &str, topic: &str) -> bool {
        self.may_write(broker, topic, None)
            || self.mutates
                && self.objects.iter().any(|o| {
                    o.broker.as_deref().is_none_or(|b| b == broker)
                        && o.consumer.is_some()
                        && o.stream == topic
                })
    }

    /// Why a change is refused: the phase, or the scope.
    pub fn refusal(&self, what: &str) -> String {
        self.refusal_in(what, describe, "no JetStream object")
    }

    /// [`CallGrant::refusal`] in Kafka's words.
    pub fn kafka_refusal(&self, what: &str) -> String {
        self.refusal_in(what, describe_kafka, "no Kafka topic or group")
    }

    fn refusal_in(&self, what: &str, describe: fn(&Object) -> String, nothing: &str) -> String {
        let export = if self.export.is_empty() {
            "this call"
        } else {
            self.export
        };
        if !self.mutates {
            format!(
                "{what} changes the server, and `{export}` may only read: changes are granted only inside create, update, delete, scale and destroy"
            )
        } else {
            let scope: Vec<String> = self.objects.iter().map(describe).collect();
            format!(
                "{what} is outside this `{export}` call's resource: it may change only {}",
                if scope.is_empty() {
                    nothing.to_string()
                } else {
                    scope.join(", ")
                }
            )
        }
    }
}

fn describe(o: &Object) -> String {
    match &o.consumer {
        Some(c) => format!("consumer {}/{c}", o.stream),
        None => format!("stream {} and its consumers", o.stream),
    }
}

fn describe_kafka(o: &Object) -> String {
    match &o.consumer {
        Some(c) => format!("consumer group {c} on topic {}", o.stream),
        None => format!("topic {}", o.stream),
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(String::from)
}

/// A stream's `name` or a consumer's `stream_name` (one, or a list of Kafka topics) + `name`,
/// on its `broker_ref`.
fn of_spec(s: &wit::ResourceSpec) -> Vec<Object> {
    let Ok(config) = serde_json::from_str::<Value>(&s.config_json) else {
        return vec![];
    };
    let broker = text(&config, "broker_ref");
    let name = text(&config, "name");
    match (s.resource_type.as_str(), name) {
        (STREAM, Some(stream)) => vec![Object {
            broker,
            stream,
            consumer: None,
        }],
        (CONSUMER, Some(consumer)) => {
            let streams: Vec<String> = match config.get("stream_name") {
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                _ => text(&config, "stream_name").into_iter().collect(),
            };
            streams
                .into_iter()
                .map(|stream| Object {
                    broker: broker.clone(),
                    stream,
                    consumer: Some(consumer.clone()),
                })
                .collect()
        }
        _ => vec![],
    }
}

/// Provider ids `BROKER/STREAM` and `BROKER/STREAM/CONSUMER` (a bare name: the only broker).
fn of_ref(r: &wit::ResourceRef) -> Option<Object> {
    let parts: Vec<&str> = r.provider_id.split('/').collect();
    let named = |s: &str| (!s.is_empty()).then(|| s.to_string());
    match (r.resource_type.as_str(), parts.as_slice()) {
        (STREAM, [stream]) => Some(Object {
            broker: None,
            stream: named(stream)?,
            consumer: None,
        }),
        (STREAM, [broker, stream]) => Some(Object {
            broker: named(broker),
            stream: named(stream)?,
            consumer: None,
        }),
        (CONSUMER, [broker, stream, consumer]) => Some(Object {
            broker: named(broker),
            stream: named(stream)?,
            consumer: Some(named(consumer)?),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rtype: &str, config: Value) -> wit::ResourceSpec {
        wit::ResourceSpec {
            name: "r".into(),
            resource_type: rtype.into(),
            config_json: config.to_string(),
            size: String::new(),
            hints: None,
            depends_on: vec![],
        }
    }

    fn reference(rtype: &str, id: &str) -> wit::ResourceRef {
        wit::ResourceRef {
            name: "r".into(),
            resource_type: rtype.into(),
            provider_id: id.into(),
        }
    }

    #[test]
    fn a_read_only_call_may_write_nothing() {
        assert!(!CallGrant::read_only().may_write("b", "S", None));
    }

    #[test]
    fn a_stream_call_may_write_its_stream_and_its_consumers_only() {
        let s = spec(
            STREAM,
            serde_json::json!({"name": "ORDERS", "broker_ref": "b"}),
        );
        let g = CallGrant::mutating(&[&s], &[]);
        assert!(g.may_write("b", "ORDERS", None));
        // Its consumers: a replaced stream's consumers are recreated on it.
        assert!(g.may_write("b", "ORDERS", Some("c")));
        assert!(!g.may_write("b", "OTHER", None));
        assert!(!g.may_write("other-broker", "ORDERS", None));
    }

    #[test]
    fn a_consumer_call_may_write_that_consumer_only() {
        let r = reference(CONSUMER, "b/ORDERS/intake");
        let g = CallGrant::mutating(&[], &[&r]);
        assert!(g.may_write("b", "ORDERS", Some("intake")));
        assert!(!g.may_write("b", "ORDERS", Some("other")));
        assert!(!g.may_write("b", "ORDERS", None), "not its stream");
    }

    #[test]
    fn a_consumer_call_may_write_its_group_on_its_topics_only() {
        // A Kafka consumer: its group, on each of its topics; its topics' own calls may not.
        let s = spec(
            CONSUMER,
            serde_json::json!({"name": "billing", "stream_name": ["orders", "refunds"], "broker_ref": "k"}),
        );
        let g = CallGrant::mutating(&[&s], &[]);
        assert!(g.may_write_group("k", "billing", None));
        assert!(g.may_write_group("k", "billing", Some("refunds")));
        assert!(!g.may_write_group("k", "billing", Some("payments")));
        assert!(!g.may_write_group("k", "other", None));
        assert!(!g.may_write("k", "orders", None), "not its topic");
        let topic = spec(STREAM, serde_json::json!({"name": "orders"}));
        let t = CallGrant::mutating(&[&topic], &[]);
        assert!(!t.may_write_group("k", "billing", Some("orders")));
        assert!(
            t.kafka_refusal("DeleteGroups on group \"billing\"")
                .contains("may change only topic orders")
        );
        assert!(!CallGrant::read_only().may_write_group("k", "billing", None));
    }

    #[test]
    fn a_broker_call_may_write_no_jetstream_object() {
        let s = spec(
            "infra.eventbus",
            serde_json::json!({"name": "ORDERS", "stream_name": "ORDERS"}),
        );
        let g = CallGrant::mutating(&[&s], &[]);
        assert!(!g.may_write("b", "ORDERS", None));
        assert!(
            g.refusal("STREAM.DELETE.ORDERS")
                .contains("no JetStream object")
        );
    }
}
