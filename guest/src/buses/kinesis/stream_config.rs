//! A Kinesis data stream's config (`infra.eventbus.stream` on a kinesis broker), parsed once
//! into [`StreamCfg`]: every rule that needs no server is checked here.

use crate::config::{Common, Fields, duration, read_common};
use crate::error::FieldDiag;
use crate::model::Json;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const MODES: &[&str] = &["provisioned", "on_demand"];
pub const ENCRYPTIONS: &[&str] = &["none", "kms"];
/// Retention Kinesis accepts, in hours.
pub const RETENTION_HOURS: (i64, i64) = (24, 8760);
/// Tags per stream (and per AddTagsToStream call, on AWS).
pub const MAX_TAGS: usize = 50;
/// `max_record_size` in KiB.
pub const RECORD_KIB: (i64, i64) = (1024, 10240);
/// Shards per stream AWS allows.
pub const MAX_SHARDS: i64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Provisioned,
    OnDemand,
}

impl Mode {
    pub fn wire(self) -> &'static str {
        match self {
            Mode::Provisioned => "PROVISIONED",
            Mode::OnDemand => "ON_DEMAND",
        }
    }
    pub fn key(self) -> &'static str {
        match self {
            Mode::Provisioned => "provisioned",
            Mode::OnDemand => "on_demand",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamCfg {
    pub name: String,
    pub broker_ref: Option<String>,
    /// The broker's cloud account (plan fills it in from the broker).
    pub account: Option<String>,
    pub mode: Mode,
    /// Provisioned only.
    pub shard_count: Option<i64>,
    pub retention_hours: i64,
    /// None = no encryption; Some(key id) = KMS.
    pub kms_key_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub max_record_kib: Option<i64>,
    pub enforce_consumer_deletion: bool,
    pub common: Common,
}

const KEYS: &[&str] = &[
    "name",
    "broker_ref",
    "account",
    "stream_mode",
    "shard_count",
    "retention",
    "encryption",
    "kms_key_id",
    "tags",
    "max_record_size",
    "enforce_consumer_deletion",
];

pub fn parse(resource: &str, config: &Json) -> Result<StreamCfg, Vec<FieldDiag>> {
    let mut f = Fields::new(resource, config);
    let common = read_common(&mut f);
    f.ignore("provider");
    let broker_ref = f.str("broker_ref");
    let account = f.str("account");
    let name = f
        .required_str(
            "name",
            "set name to the Kinesis stream's name, e.g. bmw-fulfillment",
        )
        .unwrap_or_default();
    if !name.is_empty() && !super::valid_name(&name) {
        f.error(
            "name",
            format!("{name:?} is not a Kinesis stream name: 1 to 128 of letters, digits, _ . -"),
            "use only a-z, A-Z, 0-9, _, . and -, at most 128 characters",
        );
    }
    let mode = match f
        .str("stream_mode")
        .map(|m| m.to_ascii_lowercase().replace('-', "_"))
    {
        None => Mode::Provisioned,
        Some(m) if m == "provisioned" => Mode::Provisioned,
        Some(m) if m == "on_demand" => Mode::OnDemand,
        Some(m) => {
            f.error(
                "stream_mode",
                format!("{m:?} is not a stream mode"),
                "use provisioned or on_demand",
            );
            Mode::Provisioned
        }
    };
    let shard_count = read_shards(&mut f, mode);
    let retention_hours = read_retention(&mut f);
    let kms_key_id = read_encryption(&mut f);
    let tags = read_tags(&mut f);
    let max_record_kib = read_record_size(&mut f);
    let enforce_consumer_deletion = f.bool("enforce_consumer_deletion").unwrap_or(false);
    let diags = f.finish(KEYS);
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(StreamCfg {
        name,
        broker_ref,
        account,
        mode,
        shard_count,
        retention_hours,
        kms_key_id,
        tags,
        max_record_kib,
        enforce_consumer_deletion,
        common,
    })
}

fn int(f: &mut Fields, key: &str) -> Option<i64> {
    let (v, _) = f.raw(key, &[])?;
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    if n.is_none() {
        f.error(
            key,
            format!("expected a whole number, got {v}"),
            "write an integer such as 4",
        );
    }
    n
}

fn read_shards(f: &mut Fields, mode: Mode) -> Option<i64> {
    let n = int(f, "shard_count");
    match (mode, n) {
        (Mode::OnDemand, Some(_)) => {
            f.error(
                "shard_count",
                "an on_demand stream has no shard count: Kinesis sizes it itself",
                "remove shard_count, or set stream_mode: provisioned",
            );
            None
        }
        (Mode::OnDemand, None) => None,
        (Mode::Provisioned, None) => Some(1),
        (Mode::Provisioned, Some(n)) if !(1..=MAX_SHARDS).contains(&n) => {
            f.error(
                "shard_count",
                format!("{n} is outside 1..{MAX_SHARDS}"),
                "give a provisioned stream between 1 and 10000 shards",
            );
            None
        }
        (Mode::Provisioned, Some(n)) => Some(n),
    }
}

fn read_retention(f: &mut Fields) -> i64 {
    let Some((v, _)) = f.raw("retention", &["retention_period_hours"]) else {
        return RETENTION_HOURS.0;
    };
    let ns = match v {
        Value::String(s) => duration::parse(s).ok(),
        _ => None,
    };
    let hour = 3_600_000_000_000i64;
    match ns {
        Some(ns)
            if ns % hour == 0 && (RETENTION_HOURS.0..=RETENTION_HOURS.1).contains(&(ns / hour)) =>
        {
            ns / hour
        }
        _ => {
            f.error(
                "retention",
                format!("{v} is not a whole number of hours between 24h and 8760h"),
                "write a duration in hours, such as 24h, 168h or 8760h",
            );
            RETENTION_HOURS.0
        }
    }
}

fn read_encryption(f: &mut Fields) -> Option<String> {
    let kind = f.str("encryption").map(|e| e.to_ascii_lowercase());
    let key = f.str("kms_key_id").filter(|k| !k.is_empty());
    match (kind.as_deref(), key) {
        (None | Some("none"), None) => None,
        (Some("kms"), Some(k)) => Some(k),
        (None, Some(k)) => Some(k),
        (Some("kms"), None) => {
            f.error(
                "kms_key_id",
                "is required with encryption: kms",
                "set kms_key_id to a KMS key id, ARN or alias, e.g. alias/aws/kinesis",
            );
            None
        }
        (Some("none"), Some(_)) => {
            f.error(
                "kms_key_id",
                "is set but encryption is none",
                "set encryption: kms, or remove kms_key_id",
            );
            None
        }
        (Some(other), _) => {
            f.error(
                "encryption",
                format!("{other:?} is not an encryption"),
                "use none or kms (with kms_key_id)",
            );
            None
        }
    }
}

fn read_tags(f: &mut Fields) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    let Some((v, _)) = f.raw("tags", &[]) else {
        return tags;
    };
    let Some(o) = v.as_object() else {
        f.error(
            "tags",
            "expected a mapping of tag keys to values",
            "write tags: {team: fulfillment}",
        );
        return tags;
    };
    for (k, v) in o {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => {
                f.error(
                    "tags",
                    format!("tag {k:?}: expected a string value"),
                    "quote the value",
                );
                continue;
            }
        };
        if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
            f.error(
                "tags",
                format!("tag {k:?}: keys are 1-128 characters (not aws:...), values at most 256"),
                "shorten the tag",
            );
        }
        tags.insert(k.clone(), v);
    }
    if tags.len() > MAX_TAGS {
        f.error(
            "tags",
            format!(
                "{} tags; a Kinesis stream holds at most {MAX_TAGS}",
                tags.len()
            ),
            "remove tags until at most 50 are left",
        );
    }
    tags
}

fn read_record_size(f: &mut Fields) -> Option<i64> {
    let n = int(f, "max_record_size")?;
    if !(RECORD_KIB.0..=RECORD_KIB.1).contains(&n) {
        f.error(
            "max_record_size",
            format!("{n} KiB is outside {}..{} KiB", RECORD_KIB.0, RECORD_KIB.1),
            "write the largest record in KiB, from 1024 (1 MiB, the default) to 10240",
        );
        return None;
    }
    Some(n)
}

/// The config as outputs record it and diff compares it (our keys, our forms).
pub fn live(c: &StreamCfg) -> Json {
    let mut o = Json::new();
    o.insert("name".into(), json!(c.name));
    o.insert("stream_mode".into(), json!(c.mode.key()));
    o.insert("shard_count".into(), json!(c.shard_count));
    o.insert("retention".into(), json!(format!("{}h", c.retention_hours)));
    o.insert(
        "encryption".into(),
        json!(if c.kms_key_id.is_some() {
            "kms"
        } else {
            "none"
        }),
    );
    o.insert("kms_key_id".into(), json!(c.kms_key_id));
    o.insert("tags".into(), json!(c.tags));
    o.insert(
        "max_record_size".into(),
        json!(c.max_record_kib.unwrap_or(RECORD_KIB.0)),
    );
    o.insert(
        "enforce_consumer_deletion".into(),
        json!(c.enforce_consumer_deletion),
    );
    o
}

pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "infra.eventbus.stream (kinesis: a Kinesis data stream)",
        "type": "object",
        "required": ["name"],
        "additionalProperties": false,
        "properties": {
            "iac_provider": {"type": "string"}, "provider": {"type": "string"}, "size": {"type": "string"},
            "depends_on": {"type": "array", "items": {"type": "string"}},
            "protected": {"type": "boolean"}, "adopt_existing": {"type": "boolean"},
            "broker_ref": {"type": "string", "description": "the kinesis broker (AWS account and region)"},
            "account": {"type": "string", "description": "filled in by plan: the broker's cloud account"},
            "name": {"type": "string", "pattern": "^[a-zA-Z0-9_.-]{1,128}$", "description": "the stream's name; a change replaces the stream"},
            "stream_mode": {"enum": MODES, "default": "provisioned"},
            "shard_count": {"type": "integer", "minimum": 1, "maximum": MAX_SHARDS, "default": 1, "description": "provisioned only; changed by UpdateShardCount, at most doubling or halving per step (a larger change is applied in steps), at most 10 rescalings per 24 hours"},
            "retention": {"type": "string", "default": "24h", "description": "whole hours from 24h to 8760h"},
            "encryption": {"enum": ENCRYPTIONS, "default": "none"},
            "kms_key_id": {"type": "string", "description": "with encryption: kms; a key id, ARN or alias (alias/aws/kinesis)"},
            "tags": {"type": "object", "maxProperties": MAX_TAGS, "additionalProperties": {"type": "string"}},
            "max_record_size": {"type": "integer", "minimum": RECORD_KIB.0, "maximum": RECORD_KIB.1, "default": RECORD_KIB.0, "description": "the largest record, in KiB"},
            "enforce_consumer_deletion": {"type": "boolean", "default": false, "description": "deleting the stream also deregisters consumers it still has; without it the plan stops when any remain"}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Json {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn on_demand_with_a_shard_count_is_refused_naming_the_field() {
        // Kinesis sizes on-demand streams itself; kinesis-mock accepts UpdateShardCount on one.
        let d = parse(
            "s",
            &cfg(r#"{"name":"a","stream_mode":"on_demand","shard_count":2}"#),
        )
        .unwrap_err();
        assert_eq!(d[0].path, "config.shard_count");
        assert!(d[0].fix.contains("remove shard_count"), "{d:?}");
    }

    #[test]
    fn retention_is_whole_hours_from_a_day_to_a_year() {
        // 24h..8760h in our duration form; 23h and 90m are refused.
        let ok = parse("s", &cfg(r#"{"name":"a","retention":"168h"}"#)).unwrap();
        assert_eq!(ok.retention_hours, 168);
        for bad in ["23h", "8761h", "90m", "25h30m"] {
            let text = format!(r#"{{"name":"a","retention":"{bad}"}}"#);
            let d = parse("s", &cfg(&text)).unwrap_err();
            assert_eq!(d[0].path, "config.retention", "{bad}");
        }
    }

    #[test]
    fn bad_names_too_many_tags_and_kms_without_key_are_refused() {
        // Each problem names its own field.
        let mut tags = Json::new();
        for i in 0..51 {
            tags.insert(format!("k{i}"), json!("v"));
        }
        let mut c = cfg(r#"{"name":"a/b","encryption":"kms"}"#);
        c.insert("tags".into(), Value::Object(tags));
        let d = parse("s", &c).unwrap_err();
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert!(paths.contains(&"config.name"), "{paths:?}");
        assert!(paths.contains(&"config.tags"), "{paths:?}");
        assert!(paths.contains(&"config.kms_key_id"), "{paths:?}");
    }

    #[test]
    fn a_provisioned_stream_defaults_to_one_shard_and_a_day() {
        // What CreateStream gets when the file says only the name.
        let c = parse("s", &cfg(r#"{"name":"a"}"#)).unwrap();
        assert_eq!(
            (c.mode, c.shard_count, c.retention_hours),
            (Mode::Provisioned, Some(1), 24)
        );
        assert_eq!(live(&c)["encryption"], json!("none"));
    }
}
