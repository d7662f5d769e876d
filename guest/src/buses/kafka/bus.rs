//! Kafka as one of the provider's buses: topics and consumer groups, the checks plan makes
//! without a server, the validate-only questions it asks one, and the schemas.

use super::group_config::GroupCfg;
use super::topic_config::TopicCfg;
use super::{Admin, group, group_config, topic, topic_config};
use crate::buses::{Bus, Config, Kind, mismatch, nothing_at_create};
use crate::error::{Error, FieldDiag, Result};
use crate::model::{Action, ActionKind, Json, Output, STREAM};
use std::rc::Rc;

pub const BUS: Bus = Bus {
    name: "kafka",
    stream: Kind {
        parse: |spec| topic_config::parse(&spec.name, &spec.config).map(Config::KafkaTopic),
        create: |name, c| topic::create(name, topic_of(c)?),
        read: topic::read,
        update: |r, name, c| topic::update(r, name, topic_of(c)?),
        delete: topic::delete,
        diff: |name, c, out| topic::diff_output(name, topic_of(c)?, out),
        check_version: check_topic_version,
        check_create: nothing_at_create,
        replace_note: "replacing a topic deletes it with its messages, and its consumer groups' positions on it; it is created again empty",
        schema: topic_config::schema,
        to_user: |out: &Output| {
            let configs = out
                .outputs
                .get("overrides")
                .and_then(|o| o.as_array())
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str())
                .filter_map(|k| {
                    let v = out.outputs.get("config")?.get(k)?.as_str()?;
                    Some((k.to_string(), v.to_string()))
                })
                .collect();
            let mut c = topic_config::to_user(&configs);
            for k in ["name", "partitions", "replication_factor"] {
                if let Some(v) = out.outputs.get(k) {
                    c.insert(k.into(), v.clone());
                }
            }
            c
        },
    },
    consumer: Kind {
        parse: |spec| group_config::parse(&spec.name, &spec.config).map(Config::KafkaGroup),
        create: |name, c| group::create(name, group_of(c)?),
        read: group::read,
        update: |r, name, c| group::update(r, name, group_of(c)?),
        delete: group::delete,
        diff: |_, c, out| Ok(group::diff_output(group_of(c)?, out)),
        check_version: |_, _, _| vec![],
        check_create: nothing_at_create,
        replace_note: "replacing a consumer group deletes its committed positions; it starts again from deliver_policy",
        schema: group_config::schema,
        to_user: |out: &Output| {
            let mut c = Json::new();
            for k in ["name", "stream_name", "topics"] {
                if let Some(v) = out.outputs.get(k) {
                    c.insert(k.into(), v.clone());
                }
            }
            c
        },
    },
    preflight,
};

/// A Kafka release, major and minor.
type Release = (u32, u32);

/// Topic configs Kafka added (first release) or removed (first release without), against the
/// cluster's recorded version.
const CONFIG_RELEASES: &[(&str, Option<Release>, Option<Release>)] = &[
    ("message.timestamp.before.max.ms", Some((3, 6)), None),
    ("message.timestamp.after.max.ms", Some((3, 6)), None),
    ("message.downconversion.enable", None, Some((4, 0))),
    ("message.format.version", None, Some((4, 0))),
    ("message.timestamp.difference.max.ms", None, Some((4, 0))),
];

fn release(v: &str) -> Option<(u32, u32)> {
    let mut p = v.split(['.', '+', '-']);
    Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?))
}

fn topic_of(c: &Config) -> Result<&TopicCfg> {
    match c {
        Config::KafkaTopic(c) => Ok(c),
        other => Err(mismatch("a Kafka topic", other)),
    }
}

fn group_of(c: &Config) -> Result<&GroupCfg> {
    match c {
        Config::KafkaGroup(c) => Ok(c),
        other => Err(mismatch("a Kafka consumer group", other)),
    }
}

fn check_topic_version(resource: &str, c: &Config, server: &str) -> Vec<FieldDiag> {
    let (Ok(c), Some(v)) = (topic_of(c), release(server)) else {
        return vec![];
    };
    let mut out = Vec::new();
    for (name, since, until) in CONFIG_RELEASES {
        if !c.configs.contains_key(*name) {
            continue;
        }
        let path = format!("config.{}", topic_config::user_key(name));
        if let Some(s) = since.filter(|s| v < *s) {
            out.push(FieldDiag::new(
                resource,
                &path,
                format!(
                    "needs Kafka {}.{} or later, and this cluster runs {server}",
                    s.0, s.1
                ),
                format!("remove {name} or upgrade the cluster"),
            ));
        }
        if let Some(u) = until.filter(|u| v >= *u) {
            out.push(FieldDiag::new(
                resource,
                &path,
                format!(
                    "was removed in Kafka {}.{}, and this cluster runs {server}",
                    u.0, u.1
                ),
                format!("remove {name}"),
            ));
        }
    }
    out
}

/// The connection to a broker the host already knows; None if it is only being planned.
pub fn admin_if_known(broker: &str) -> Result<Option<Rc<Admin>>> {
    match Admin::broker(broker) {
        Ok(a) => Ok(Some(a)),
        Err(Error::Validation(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates and updates of topics are first sent with validate_only, so the plan shows the
/// server's own refusal before anything changes.
fn preflight(a: &Action) -> Result<Vec<String>> {
    if a.spec.rtype != STREAM {
        return Ok(vec![]);
    }
    let current = match a.kind {
        ActionKind::Create => None,
        ActionKind::Update => a.current.as_ref().map(|s| &s.outputs),
        _ => return Ok(vec![]),
    };
    let c = topic_config::parse(&a.spec.name, &a.spec.config).map_err(Error::Validation)?;
    topic::preflight(&a.spec.name, &c, current)
}
