//! A Kafka consumer group's config: its id, the topic(s) it reads, where a new group starts
//! (`deliver_policy: all | new | by_start_time`, as for NATS), and an optional `principal`
//! granted Read on its topics and on the group.

use crate::config::{Common, Fields, read_common};
use crate::error::FieldDiag;
use crate::model::Json;
use serde_json::{Value, json};

pub const DELIVER: &[&str] = &["all", "new", "by_start_time"];

#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    Earliest,
    Latest,
    /// Milliseconds since the epoch.
    At(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupCfg {
    pub name: String,
    pub topics: Vec<String>,
    pub broker_ref: Option<String>,
    pub start: Start,
    /// `User:alice`: Read on the topics and on the group.
    pub principal: Option<String>,
    pub common: Common,
}

pub fn parse(resource: &str, config: &Json) -> Result<GroupCfg, Vec<FieldDiag>> {
    let mut f = Fields::new(resource, config);
    let common = read_common(&mut f);
    f.ignore("provider");
    let broker_ref = f.str("broker_ref");
    let name = f
        .required_str(
            "name",
            "set name to the consumer group id, e.g. orders-intake",
        )
        .unwrap_or_default();
    if name.len() > 255 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        f.error(
            "name",
            format!("{name:?} is not a usable group id"),
            "use up to 255 characters without spaces",
        );
    }
    let mut topics: Vec<String> = f.str("stream_name").into_iter().collect();
    topics.extend(f.str_list("topics").unwrap_or_default());
    topics.dedup();
    if topics.is_empty() {
        f.error(
            "stream_name",
            "is required",
            "set stream_name to the `name` of a topic resource (or topics: [..])",
        );
    }
    for t in &topics {
        if let Some(bad) = super::topic_config::invalid_name(t) {
            f.error("stream_name", bad, "name the topic as Kafka does");
        }
    }
    let policy = f.str("deliver_policy").unwrap_or_else(|| "all".into());
    let start_time = f.str("opt_start_time");
    let start = match (policy.as_str(), start_time) {
        ("all", None) => Start::Earliest,
        ("new", None) => Start::Latest,
        ("by_start_time", Some(t)) => match rfc3339_ms(&t) {
            Some(ms) => Start::At(ms),
            None => {
                f.error(
                    "opt_start_time",
                    format!("{t:?} is not an RFC 3339 time"),
                    "write e.g. 2026-12-01T00:00:00Z",
                );
                Start::Earliest
            }
        },
        ("by_start_time", None) => {
            f.error(
                "opt_start_time",
                "is required with deliver_policy: by_start_time",
                "set opt_start_time, e.g. 2026-12-01T00:00:00Z",
            );
            Start::Earliest
        }
        (p, Some(_)) if DELIVER.contains(&p) => {
            f.error(
                "opt_start_time",
                format!("is only used with deliver_policy: by_start_time, not {p}"),
                "remove opt_start_time or set deliver_policy: by_start_time",
            );
            Start::Earliest
        }
        (p, _) => {
            f.error(
                "deliver_policy",
                format!("{p:?} is not a starting position a Kafka group has"),
                format!("use one of: {}", DELIVER.join(", ")),
            );
            Start::Earliest
        }
    };
    let principal = f.str("principal");
    if let Some(p) = &principal
        && !p
            .split_once(':')
            .is_some_and(|(t, n)| !t.is_empty() && !n.is_empty() && n != "*")
    {
        f.error(
            "principal",
            format!("{p:?} is not a Kafka principal"),
            "write TYPE:NAME, e.g. User:orders-service",
        );
    }
    let diags = f.finish(&[
        "name",
        "stream_name",
        "topics",
        "deliver_policy",
        "opt_start_time",
        "principal",
        "broker_ref",
        "provider",
    ]);
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(GroupCfg {
        name,
        topics,
        broker_ref,
        start,
        principal,
        common,
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` as milliseconds since the epoch.
pub fn rfc3339_ms(t: &str) -> Option<i64> {
    let t = t.trim();
    let num = |s: &str| s.parse::<i64>().ok();
    let (date, rest) = t.split_once(['T', 't', ' '])?;
    let mut d = date.splitn(3, '-');
    let (y, m, dd) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let (time, offset_ms) = if let Some(x) = rest.strip_suffix(['Z', 'z']) {
        (x, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (x, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (x, sign * (num(oh)? * 3_600_000 + num(om)? * 60_000))
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut p = hms.splitn(3, ':');
    let (h, mi, s) = (num(p.next()?)?, num(p.next()?)?, num(p.next()?)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&dd) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let ms_frac = if frac.is_empty() {
        0
    } else {
        num(&format!("{:0<3}", &frac[..frac.len().min(3)]))?
    };
    // Days from the civil date (proleptic Gregorian).
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) * 1000 + ms_frac) - offset_ms)
}

pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "infra.eventbus.consumer (kafka: a consumer group)",
        "type": "object",
        "required": ["name"],
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string", "description": "the consumer group id"},
            "stream_name": {"type": "string", "description": "the topic the group reads (the `name` of a topic resource)"},
            "topics": {"type": "array", "items": {"type": "string"}, "description": "more topics the group reads"},
            "deliver_policy": {"enum": DELIVER, "description": "where a new group starts: all (earliest), new (latest), by_start_time; an existing group is never moved"},
            "opt_start_time": {"type": "string", "description": "RFC 3339 time for by_start_time"},
            "principal": {"type": "string", "description": "TYPE:NAME granted Read on the topics and the group (needs an authorizer)"},
            "broker_ref": {"type": "string"},
            "iac_provider": {}, "provider": {}, "depends_on": {}, "protected": {}, "adopt_existing": {}, "size": {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_are_read_as_rfc3339() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2026-12-01T00:00:00.5Z"),
            Some(1_796_083_200_500)
        );
        assert_eq!(
            rfc3339_ms("2026-12-01T01:00:00+01:00"),
            Some(1_796_083_200_000)
        );
        assert_eq!(rfc3339_ms("yesterday"), None);
    }

    #[test]
    fn a_group_needs_a_topic_and_a_known_starting_position() {
        let cfg: Json = serde_json::from_str(r#"{"name":"g","deliver_policy":"last"}"#).unwrap();
        let d = parse("g", &cfg).unwrap_err();
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert!(
            paths.contains(&"config.stream_name") && paths.contains(&"config.deliver_policy"),
            "{paths:?}"
        );
    }
}
