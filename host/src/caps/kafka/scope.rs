//! One request judged against the call's grant: the body decoded (after `guard.rs` walked it),
//! the forms the host refuses outright (topic ids, non-topic configs, a group member's commit,
//! ACLs on patterns or on `*`, topics auto-created by Metadata), then each topic and group a
//! change names checked against the call's scope. What is sent is the body re-encoded from
//! what was checked, so the server reads exactly what the host judged.

use super::apis::{Api, Changes};
use super::guard;
use crate::caps::CapError;
use crate::caps::grant::CallGrant;
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

/// What a change names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Topic(String),
    Group(String),
    /// An ACL on a topic (a group's principal is granted Read on the topics it reads).
    TopicAcl(String),
    /// A group's committed offsets on one topic.
    Offsets {
        group: String,
        topic: String,
    },
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Topic(t) | Target::TopicAcl(t) => format!("topic {t:?}"),
            Target::Group(g) => format!("group {g:?}"),
            Target::Offsets { group, topic } => format!("group {group:?}'s offsets on {topic:?}"),
        }
    }

    fn in_scope(&self, broker: &str, grant: &CallGrant) -> bool {
        match self {
            Target::Topic(t) => grant.may_write(broker, t, None),
            Target::TopicAcl(t) => grant.may_grant_on_topic(broker, t),
            Target::Group(g) => grant.may_write_group(broker, g, None),
            Target::Offsets { group, topic } => grant.may_write_group(broker, group, Some(topic)),
        }
    }
}

/// A checked request as decoded: whether it only asks the server to validate, what it would
/// change, and the bytes to send.
struct Asked {
    validate_only: bool,
    targets: Vec<Target>,
    body: Vec<u8>,
}

/// Config resource and ACL codes (Kafka's `ConfigResource.Type`, `ResourceType`, `PatternType`).
const CONFIG_TOPIC: i8 = 2;
const ACL_TOPIC: i8 = 2;
const ACL_GROUP: i8 = 3;
const PATTERN_LITERAL: i8 = 3;

/// The body to send for `api` at `version`, or why not.
pub fn check(
    api: &Api,
    version: i16,
    body: &[u8],
    broker: &str,
    grant: &CallGrant,
) -> Result<Vec<u8>, CapError> {
    let key = ApiKey::try_from(api.key).expect("the table holds protocol keys");
    if api.changes == Changes::Never && key != ApiKey::Metadata {
        return Ok(body.to_vec()); // reads: the server parses them; nothing to judge
    }
    guard::walk(key, version, body)
        .map_err(|e| CapError::Invalid(format!("{} v{version}: {e}", api.name)))?;
    let asked = ask(key, api.name, version, body)?;
    if api.changes == Changes::Never
        || (api.changes == Changes::UnlessValidateOnly && asked.validate_only)
    {
        return Ok(asked.body);
    }
    if let Some(t) = asked.targets.iter().find(|t| !t.in_scope(broker, grant)) {
        return Err(CapError::Denied(grant.kafka_refusal(&format!(
            "{} on {}",
            api.name,
            t.describe()
        ))));
    }
    if asked.targets.is_empty() && !grant.mutates {
        return Err(CapError::Denied(grant.kafka_refusal(api.name)));
    }
    Ok(asked.body)
}

fn decode<T: Decodable>(name: &str, version: i16, body: &[u8]) -> Result<T, CapError> {
    let mut buf = Bytes::copy_from_slice(body);
    let msg = T::decode(&mut buf, version).map_err(|e| {
        CapError::Invalid(format!("{name} v{version}: the body does not decode: {e}"))
    })?;
    if buf.has_remaining() {
        return Err(CapError::Invalid(format!(
            "{name} v{version}: {} bytes after the request",
            buf.remaining()
        )));
    }
    Ok(msg)
}

fn encode<T: Encodable>(name: &str, version: i16, msg: &T) -> Result<Vec<u8>, CapError> {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, version)
        .map_err(|e| CapError::Invalid(format!("{name} v{version}: cannot re-encode: {e}")))?;
    Ok(buf.to_vec())
}

fn refuse<T>(text: String) -> Result<T, CapError> {
    Err(CapError::Denied(text))
}

fn topics<'a>(names: impl Iterator<Item = &'a TopicName>) -> Vec<Target> {
    names.map(|n| Target::Topic(n.0.to_string())).collect()
}

/// Decodes a checked request and says what it asks.
fn ask(key: ApiKey, name: &str, v: i16, body: &[u8]) -> Result<Asked, CapError> {
    let asked = |validate_only, targets, body| Asked {
        validate_only,
        targets,
        body,
    };
    Ok(match key {
        ApiKey::CreateTopics => {
            let r: CreateTopicsRequest = decode(name, v, body)?;
            let t = topics(r.topics.iter().map(|t| &t.name));
            asked(r.validate_only, t, encode(name, v, &r)?)
        }
        ApiKey::CreatePartitions => {
            let r: CreatePartitionsRequest = decode(name, v, body)?;
            let t = topics(r.topics.iter().map(|t| &t.name));
            asked(r.validate_only, t, encode(name, v, &r)?)
        }
        ApiKey::IncrementalAlterConfigs => {
            let r: IncrementalAlterConfigsRequest = decode(name, v, body)?;
            let mut t = vec![];
            for res in &r.resources {
                if res.resource_type != CONFIG_TOPIC {
                    return refuse(format!(
                        "IncrementalAlterConfigs on a {} resource ({:?}) is refused: only topic configs may be altered",
                        config_type(res.resource_type),
                        res.resource_name.as_str()
                    ));
                }
                t.push(Target::Topic(res.resource_name.to_string()));
            }
            asked(r.validate_only, t, encode(name, v, &r)?)
        }
        ApiKey::DeleteTopics => {
            let r: DeleteTopicsRequest = decode(name, v, body)?;
            let mut t = topics(r.topic_names.iter());
            for d in &r.topics {
                match &d.name {
                    Some(n) if d.topic_id.is_nil() => t.push(Target::Topic(n.0.to_string())),
                    _ => return refuse(
                        "DeleteTopics by topic id is refused: name each topic (the host checks names against the call's scope)".into(),
                    ),
                }
            }
            asked(false, t, encode(name, v, &r)?)
        }
        ApiKey::AlterPartitionReassignments => {
            let r: AlterPartitionReassignmentsRequest = decode(name, v, body)?;
            let t = topics(r.topics.iter().map(|t| &t.name));
            asked(false, t, encode(name, v, &r)?)
        }
        ApiKey::OffsetCommit => {
            let r: OffsetCommitRequest = decode(name, v, body)?;
            asked(false, offset_commit(&r)?, encode(name, v, &r)?)
        }
        ApiKey::DeleteGroups => {
            let r: DeleteGroupsRequest = decode(name, v, body)?;
            let t = r
                .groups_names
                .iter()
                .map(|g| Target::Group(g.0.to_string()));
            asked(false, t.collect(), encode(name, v, &r)?)
        }
        ApiKey::CreateAcls => {
            let r: CreateAclsRequest = decode(name, v, body)?;
            let t = r
                .creations
                .iter()
                .map(|c| {
                    let n = Some(c.resource_name.as_str());
                    acl_target(c.resource_type, n, c.resource_pattern_type)
                })
                .collect::<Result<_, _>>()?;
            asked(false, t, encode(name, v, &r)?)
        }
        ApiKey::DeleteAcls => {
            let r: DeleteAclsRequest = decode(name, v, body)?;
            let t = r
                .filters
                .iter()
                .map(|f| {
                    let n = f.resource_name_filter.as_ref().map(|n| n.as_str());
                    acl_target(f.resource_type_filter, n, f.pattern_type_filter)
                })
                .collect::<Result<_, _>>()?;
            asked(false, t, encode(name, v, &r)?)
        }
        _ => {
            let r: MetadataRequest = decode(name, v, body)?;
            let named = r.topics.as_ref().is_some_and(|t| !t.is_empty());
            if named && (v < 4 || r.allow_auto_topic_creation) {
                return refuse(
                    "Metadata that may create the topics it names is refused: send allow_auto_topic_creation false, at version 4 or later".into(),
                );
            }
            asked(false, vec![], encode(name, v, &r)?)
        }
    })
}

/// An administrative commit only: as a group member it would take part in the group.
fn offset_commit(r: &OffsetCommitRequest) -> Result<Vec<Target>, CapError> {
    if !r.member_id.is_empty()
        || r.generation_id_or_member_epoch != -1
        || r.group_instance_id.is_some()
    {
        return refuse(
            "OffsetCommit as a group member (member id, generation or group instance id set) is refused: only an administrative commit (empty member id, generation -1) is permitted".into(),
        );
    }
    let group = r.group_id.0.to_string();
    let mut t = vec![Target::Group(group.clone())];
    t.extend(r.topics.iter().map(|tp| Target::Offsets {
        group: group.clone(),
        topic: tp.name.0.to_string(),
    }));
    Ok(t)
}

/// The one literal topic or group an ACL (or ACL filter) names.
fn acl_target(rtype: i8, name: Option<&str>, pattern: i8) -> Result<Target, CapError> {
    if pattern != PATTERN_LITERAL {
        return refuse(format!(
            "an ACL or ACL filter with pattern type {pattern} is refused: only LITERAL (3) names one resource"
        ));
    }
    let name = match name {
        Some(n) if !n.is_empty() && n != "*" => n.to_string(),
        other => {
            return refuse(format!(
                "an ACL or ACL filter on the resource name {other:?} is refused: name one topic or group (never null or *)"
            ));
        }
    };
    match rtype {
        ACL_TOPIC => Ok(Target::TopicAcl(name)),
        ACL_GROUP => Ok(Target::Group(name)),
        other => refuse(format!(
            "an ACL or ACL filter on resource type {other} is refused: only topic (2) and group (3) ACLs"
        )),
    }
}

fn config_type(t: i8) -> String {
    match t {
        4 => "broker".into(),
        8 => "broker-logger".into(),
        16 => "client-metrics".into(),
        32 => "group".into(),
        other => format!("type-{other}"),
    }
}
