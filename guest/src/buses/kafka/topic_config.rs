//! A Kafka topic's config: name, partitions, replication factor, and the topic configs Kafka
//! documents, as a table. Users write our keys (`retention: 168h`, `cleanup_policy: compact`)
//! or Kafka's own names with Kafka's own values (`retention.ms: 604800000`); anything else
//! Kafka documents goes in `configs`. Values are normalised to what DescribeConfigs answers,
//! so what the file sets compares equal to what the server reports.

use crate::config::{Common, Fields, duration, read_common};
use crate::error::FieldDiag;
use crate::model::Json;
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TKind {
    /// Milliseconds in Kafka; `168h` for people; -1 (or `unlimited`) where Kafka allows it.
    Ms {
        unlimited: bool,
    },
    /// A whole number (bytes, counts); -1 where Kafka means unlimited.
    Int,
    Bool,
    /// A decimal number (ratios).
    Ratio,
    Enum(&'static [&'static str]),
    /// A comma-separated set (cleanup.policy).
    Set(&'static [&'static str]),
    Str,
}

pub struct TopicField {
    /// The key users write.
    pub key: &'static str,
    /// Kafka's config name (also accepted as a key, with Kafka's own value form).
    pub kafka: &'static str,
    pub kind: TKind,
    pub doc: &'static str,
}

const fn f(key: &'static str, kafka: &'static str, kind: TKind, doc: &'static str) -> TopicField {
    TopicField {
        key,
        kafka,
        kind,
        doc,
    }
}

const MS: TKind = TKind::Ms { unlimited: false };
const MS_OR_UNLIMITED: TKind = TKind::Ms { unlimited: true };

pub const FIELDS: &[TopicField] = &[
    f(
        "retention",
        "retention.ms",
        MS_OR_UNLIMITED,
        "how long messages are kept (168h; unlimited)",
    ),
    f(
        "retention_bytes",
        "retention.bytes",
        TKind::Int,
        "bytes kept per partition before old segments go (-1: no limit)",
    ),
    f(
        "cleanup_policy",
        "cleanup.policy",
        TKind::Set(&["delete", "compact"]),
        "delete, compact, or both (delete,compact)",
    ),
    f(
        "min_insync_replicas",
        "min.insync.replicas",
        TKind::Int,
        "replicas that must acknowledge an acks=all write",
    ),
    f(
        "max_message_bytes",
        "max.message.bytes",
        TKind::Int,
        "the largest record batch the topic accepts",
    ),
    f(
        "segment_bytes",
        "segment.bytes",
        TKind::Int,
        "size of one log segment file",
    ),
    f(
        "segment",
        "segment.ms",
        MS,
        "time after which a segment is rolled even if not full",
    ),
    f(
        "segment_jitter",
        "segment.jitter.ms",
        MS,
        "random jitter subtracted from segment rolling time",
    ),
    f(
        "segment_index_bytes",
        "segment.index.bytes",
        TKind::Int,
        "size of the offset index per segment",
    ),
    f(
        "index_interval_bytes",
        "index.interval.bytes",
        TKind::Int,
        "how often an index entry is added",
    ),
    f(
        "compression_type",
        "compression.type",
        TKind::Enum(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        "final compression of the topic's data",
    ),
    f(
        "message_timestamp_type",
        "message.timestamp.type",
        TKind::Enum(&["CreateTime", "LogAppendTime"]),
        "whose clock stamps a message",
    ),
    f(
        "message_timestamp_before_max",
        "message.timestamp.before.max.ms",
        MS_OR_UNLIMITED,
        "how far in the past a message timestamp may be (Kafka 3.6+)",
    ),
    f(
        "message_timestamp_after_max",
        "message.timestamp.after.max.ms",
        MS_OR_UNLIMITED,
        "how far in the future a message timestamp may be (Kafka 3.6+)",
    ),
    f(
        "delete_retention",
        "delete.retention.ms",
        MS,
        "how long tombstones are kept on a compacted topic",
    ),
    f(
        "min_compaction_lag",
        "min.compaction.lag.ms",
        MS,
        "minimum age before a message may be compacted",
    ),
    f(
        "max_compaction_lag",
        "max.compaction.lag.ms",
        MS,
        "maximum age before a message must be compactable",
    ),
    f(
        "min_cleanable_dirty_ratio",
        "min.cleanable.dirty.ratio",
        TKind::Ratio,
        "share of the log that must be dirty before compaction",
    ),
    f(
        "file_delete_delay",
        "file.delete.delay.ms",
        MS,
        "delay before a deleted segment's file is removed",
    ),
    f(
        "flush_messages",
        "flush.messages",
        TKind::Int,
        "force an fsync every N messages",
    ),
    f("flush", "flush.ms", MS, "force an fsync after this long"),
    f(
        "preallocate",
        "preallocate",
        TKind::Bool,
        "preallocate segment files",
    ),
    f(
        "unclean_leader_election",
        "unclean.leader.election.enable",
        TKind::Bool,
        "let an out-of-sync replica become leader (may lose data)",
    ),
    f(
        "local_retention",
        "local.retention.ms",
        MS_OR_UNLIMITED,
        "local retention with tiered storage (-2: same as retention)",
    ),
    f(
        "local_retention_bytes",
        "local.retention.bytes",
        TKind::Int,
        "local bytes with tiered storage (-2: same as retention_bytes)",
    ),
    f(
        "remote_storage",
        "remote.storage.enable",
        TKind::Bool,
        "tiered storage for this topic",
    ),
];

pub const NAME_MAX: usize = 249;

#[derive(Debug, Clone, PartialEq)]
pub struct TopicCfg {
    pub name: String,
    pub broker_ref: Option<String>,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    /// Kafka config name -> value, normalised as DescribeConfigs reports it.
    pub configs: BTreeMap<String, String>,
    /// A partition decrease (delete and create, losing the data) is allowed.
    pub allow_data_loss: bool,
    pub common: Common,
}

pub fn parse(resource: &str, config: &Json) -> Result<TopicCfg, Vec<FieldDiag>> {
    let mut f = Fields::new(resource, config);
    let common = read_common(&mut f);
    f.ignore("provider");
    let broker_ref = f.str("broker_ref");
    let name = f
        .required_str(
            "name",
            "set name to the Kafka topic name, e.g. bmw.fulfillment",
        )
        .unwrap_or_default();
    if !name.is_empty()
        && let Some(bad) = invalid_name(&name)
    {
        f.error(
            "name",
            bad,
            "use letters, digits, '.', '_' and '-' (at most 249)",
        );
    }
    let partitions = positive(&mut f, "partitions", i32::MAX as i64).map(|n| n as i32);
    let replication_factor =
        positive(&mut f, "replication_factor", i16::MAX as i64).map(|n| n as i16);
    let allow_data_loss = f.bool("allow_data_loss").unwrap_or(false);
    let mut configs = BTreeMap::new();
    for field in FIELDS {
        if let Some(v) = read_field(&mut f, field) {
            configs.insert(field.kafka.to_string(), v);
        }
    }
    read_extra_configs(&mut f, &mut configs);
    let mut known: Vec<&str> = FIELDS.iter().flat_map(|x| [x.key, x.kafka]).collect();
    known.extend([
        "name",
        "partitions",
        "replication_factor",
        "configs",
        "allow_data_loss",
        "broker_ref",
        "provider",
    ]);
    let diags = f.finish(&known);
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(TopicCfg {
        name,
        broker_ref,
        partitions,
        replication_factor,
        configs,
        allow_data_loss,
        common,
    })
}

fn positive(f: &mut Fields, key: &str, max: i64) -> Option<i64> {
    let (v, k) = f.raw(key, &[])?;
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if (1..=max).contains(&n) => Some(n),
        _ => {
            f.error(
                k,
                format!("expected a whole number from 1 to {max}, got {v}"),
                format!("write {key}: 6"),
            );
            None
        }
    }
}

/// One table field, by our key or Kafka's name, as the string Kafka stores.
fn read_field(f: &mut Fields, field: &TopicField) -> Option<String> {
    if let Some((v, k)) = f.raw(field.key, &[]) {
        return ours(f, field, v, k);
    }
    let (v, k) = f.raw(field.kafka, &[])?;
    kafkas(f, field, v, k)
}

/// Our form: durations with units.
fn ours(f: &mut Fields, field: &TopicField, v: &Value, k: &str) -> Option<String> {
    let TKind::Ms { unlimited } = field.kind else {
        return kafkas(f, field, v, k);
    };
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    if unlimited && (text == "-1" || text.eq_ignore_ascii_case("unlimited")) {
        return Some("-1".into());
    }
    match duration::parse(&text) {
        Ok(ns) if v.is_string() && ns % 1_000_000 == 0 => Some((ns / 1_000_000).to_string()),
        Ok(_) if v.is_string() => {
            f.error(
                k,
                format!("{text:?} is not a whole number of milliseconds"),
                "Kafka keeps milliseconds: use ms, s, m, h or d",
            );
            None
        }
        _ => {
            f.error(
                k,
                format!("expected a duration such as \"168h\", got {v}"),
                format!(
                    "write a duration with a unit (168h, 30m, 500ms){}, or {} in milliseconds",
                    if unlimited { ", or unlimited" } else { "" },
                    field.kafka
                ),
            );
            None
        }
    }
}

/// Kafka's form: the value as Kafka's own config would take it.
fn kafkas(f: &mut Fields, field: &TopicField, v: &Value, k: &str) -> Option<String> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            f.error(
                k,
                format!("expected a single value, got {other}"),
                "write a string or a number",
            );
            return None;
        }
    };
    let out = normalise(field.kind, &text);
    if out.is_none() {
        let fix = match field.kind {
            TKind::Ms { .. } | TKind::Int => "write a whole number".to_string(),
            TKind::Bool => "write true or false".to_string(),
            TKind::Ratio => "write a number between 0 and 1, such as 0.5".to_string(),
            TKind::Enum(v) => format!("use one of: {}", v.join(", ")),
            TKind::Set(v) => format!("use one or more of {}, separated by commas", v.join(", ")),
            TKind::Str => "write a string".to_string(),
        };
        f.error(k, format!("{text:?} is not a valid {}", field.kafka), fix);
    }
    out
}

/// A value in the form DescribeConfigs reports it, or None if it is not one of `kind`.
pub fn normalise(kind: TKind, text: &str) -> Option<String> {
    let t = text.trim();
    match kind {
        TKind::Ms { .. } | TKind::Int => t.parse::<i64>().ok().map(|n| n.to_string()),
        TKind::Bool => match t.to_ascii_lowercase().as_str() {
            "true" => Some("true".into()),
            "false" => Some("false".into()),
            _ => None,
        },
        TKind::Ratio => t
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite())
            .map(|r| format!("{r:?}")),
        TKind::Enum(values) => values
            .iter()
            .find(|v| v.eq_ignore_ascii_case(t))
            .map(|v| v.to_string()),
        TKind::Set(values) => {
            let mut parts: Vec<&str> = Vec::new();
            for p in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let v = values.iter().find(|v| v.eq_ignore_ascii_case(p))?;
                if !parts.contains(v) {
                    parts.push(v);
                }
            }
            parts.sort();
            (!parts.is_empty()).then(|| parts.join(","))
        }
        TKind::Str => Some(t.to_string()),
    }
}

/// How a Kafka config's value compares: by the table's kind, else as text.
pub fn comparable(kafka_name: &str, value: &str) -> String {
    FIELDS
        .iter()
        .find(|f| f.kafka == kafka_name)
        .and_then(|f| normalise(f.kind, value))
        .unwrap_or_else(|| value.trim().to_string())
}

/// `configs: {name: value}`: any other topic config Kafka documents, in Kafka's own form.
fn read_extra_configs(f: &mut Fields, configs: &mut BTreeMap<String, String>) {
    let Some((v, k)) = f.raw("configs", &[]) else {
        return;
    };
    let Some(map) = v.as_object() else {
        f.error(
            k,
            "expected a mapping of Kafka config names to values",
            "write configs: {\"segment.ms\": \"3600000\"}",
        );
        return;
    };
    for (name, value) in map {
        let valid = !name.is_empty()
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_' || c == '-'
            });
        let text = match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        match (valid, text) {
            (false, _) => f.error(
                &format!("configs.{name}"),
                "is not a Kafka config name",
                "use the name Kafka documents, such as segment.ms",
            ),
            (true, None) => f.error(
                &format!("configs.{name}"),
                "expected a single value",
                "write a string or a number",
            ),
            (true, Some(_)) if configs.contains_key(name) => f.error(
                &format!("configs.{name}"),
                "is also set by its own key",
                "set it once",
            ),
            (true, Some(t)) => {
                configs.insert(name.clone(), comparable(name, &t));
            }
        }
    }
}

pub fn invalid_name(name: &str) -> Option<String> {
    if name == "." || name == ".." {
        return Some(format!("{name:?} is not a topic name Kafka allows"));
    }
    if name.len() > NAME_MAX {
        return Some(format!(
            "{} characters is longer than Kafka's {NAME_MAX}",
            name.len()
        ));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .map(|c| format!("{name:?} contains {c:?}"))
}

/// The user's keys for a config Kafka reports (for import and drift).
pub fn to_user(configs: &BTreeMap<String, String>) -> Json {
    let mut out = Json::new();
    let mut extra = Json::new();
    for (k, v) in configs {
        match FIELDS.iter().find(|f| f.kafka == k) {
            Some(f) => {
                let shown = match (f.kind, v.parse::<i64>()) {
                    (TKind::Ms { .. }, Ok(ms)) if ms >= 0 => {
                        json!(duration::format(ms * 1_000_000))
                    }
                    (TKind::Ms { .. }, _) => json!("unlimited"),
                    (TKind::Int, Ok(n)) => json!(n),
                    (TKind::Bool, _) => json!(v == "true"),
                    _ => json!(v),
                };
                out.insert(f.key.to_string(), shown);
            }
            None => {
                extra.insert(k.clone(), json!(v));
            }
        }
    }
    if !extra.is_empty() {
        out.insert("configs".into(), Value::Object(extra));
    }
    out
}

/// The user's key for a Kafka config name (plans show what the file says).
pub fn user_key(kafka_name: &str) -> String {
    FIELDS
        .iter()
        .find(|f| f.kafka == kafka_name)
        .map_or_else(|| format!("configs.{kafka_name}"), |f| f.key.to_string())
}

/// A value as plans show it: durations as `168h`.
pub fn display(kafka_name: &str, value: &str) -> Value {
    match FIELDS
        .iter()
        .find(|f| f.kafka == kafka_name)
        .map(|f| f.kind)
    {
        Some(TKind::Ms { .. }) => match value.parse::<i64>() {
            Ok(ms) if ms >= 0 => json!(duration::format(ms * 1_000_000)),
            Ok(_) => json!("unlimited"),
            Err(_) => json!(value),
        },
        _ => json!(value),
    }
}

pub fn schema() -> Value {
    let mut props = Json::new();
    props.insert("name".into(), json!({"type": "string", "maxLength": NAME_MAX, "pattern": "^[a-zA-Z0-9._-]+$", "description": "the Kafka topic name"}));
    props.insert("partitions".into(), json!({"type": ["integer", "string"], "minimum": 1, "description": "partitions; raised in place, lowered only by recreating the topic (allow_data_loss)"}));
    props.insert("replication_factor".into(), json!({"type": ["integer", "string"], "minimum": 1, "description": "replicas per partition; changed in place by reassignment"}));
    props.insert("allow_data_loss".into(), json!({"type": "boolean", "description": "allow a partition decrease, which deletes and recreates the topic"}));
    props.insert("configs".into(), json!({"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}, "description": "other topic configs, by Kafka's names"}));
    props.insert("broker_ref".into(), json!({"type": "string", "description": "the infra.eventbus module (provider: kafka) this topic lives on"}));
    for field in FIELDS {
        let s = match field.kind {
            TKind::Ms { .. } => json!({"type": "string", "description": field.doc}),
            TKind::Int => json!({"type": ["integer", "string"], "description": field.doc}),
            TKind::Bool => json!({"type": "boolean", "description": field.doc}),
            TKind::Ratio => json!({"type": ["number", "string"], "description": field.doc}),
            TKind::Enum(v) => json!({"enum": v, "description": field.doc}),
            TKind::Set(_) | TKind::Str => json!({"type": "string", "description": field.doc}),
        };
        props.insert(field.key.into(), s);
        props.insert(
            field.kafka.into(),
            json!({"description": format!("{} in Kafka's own form", field.kafka)}),
        );
    }
    for k in crate::config::COMMON_KEYS {
        props.entry(k.to_string()).or_insert(json!({}));
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "infra.eventbus.stream (kafka: a topic)",
        "type": "object",
        "properties": props,
        "required": ["name"],
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Json {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn our_durations_and_kafkas_own_names_mean_the_same() {
        // `retention: 168h` and `retention.ms: 604800000` are one config.
        let a = parse(
            "t",
            &cfg(r#"{"name":"bmw.fulfillment","partitions":6,"retention":"168h"}"#),
        )
        .unwrap();
        let b = parse(
            "t",
            &cfg(r#"{"name":"bmw.fulfillment","partitions":"6","retention.ms":604800000}"#),
        )
        .unwrap();
        assert_eq!(a.configs, b.configs);
        assert_eq!(a.configs["retention.ms"], "604800000");
        assert_eq!(a.partitions, Some(6));
    }

    #[test]
    fn values_are_normalised_as_kafka_reports_them() {
        // Kafka answers "compact,delete" and "0.5" whatever order or precision was written.
        let c = parse("t", &cfg(r#"{"name":"t","cleanup_policy":"delete, compact","min_cleanable_dirty_ratio":"0.50"}"#)).unwrap();
        assert_eq!(c.configs["cleanup.policy"], "compact,delete");
        assert_eq!(c.configs["min.cleanable.dirty.ratio"], "0.5");
    }

    #[test]
    fn bad_values_name_the_field_and_the_fix() {
        let d = parse("t", &cfg(r#"{"name":"bad name","retention":"7 days","partitions":0,"compression_type":"brotli"}"#)).unwrap_err();
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert!(paths.contains(&"config.name"), "{paths:?}");
        assert!(paths.contains(&"config.retention"), "{paths:?}");
        assert!(paths.contains(&"config.partitions"), "{paths:?}");
        assert!(paths.contains(&"config.compression_type"), "{paths:?}");
    }

    #[test]
    fn other_configs_pass_through_by_kafkas_name() {
        let c = parse(
            "t",
            &cfg(r#"{"name":"t","configs":{"message.downconversion.enable":"false"}}"#),
        )
        .unwrap();
        assert_eq!(c.configs["message.downconversion.enable"], "false");
        let d = parse(
            "t",
            &cfg(r#"{"name":"t","retention":"1h","configs":{"retention.ms":"1"}}"#),
        )
        .unwrap_err();
        assert_eq!(d[0].path, "config.configs.retention.ms");
    }
}
