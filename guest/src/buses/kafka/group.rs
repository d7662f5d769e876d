//! Consumer groups: a new group gets its starting position committed on every partition of
//! its topics (earliest, latest, or the first offset at a time), as an admin commit that
//! joins nothing; an existing group is never moved. Optional ACLs give a principal Read on
//! the topics and the group. Deleting a group with live members is refused.

use super::errors::{self, GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP, NONE};
use super::group_config::{GroupCfg, Start};
use super::{Admin, str_bytes};
use crate::bindings::eventbus::iac::kafka::Route;
use crate::error::{Error, Result};
use crate::model::{CONSUMER, Change, Json, Output, Ref};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::{
    BrokerId, CreateAclsRequest, DeleteAclsRequest, DeleteGroupsRequest, DescribeGroupsRequest,
    FindCoordinatorRequest, GroupId, ListOffsetsRequest, MetadataRequest, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const EARLIEST: i64 = -2;
const LATEST: i64 = -1;
/// ACL codes: resource types, LITERAL pattern, READ, ALLOW.
const ACL_TOPIC: i8 = 2;
const ACL_GROUP: i8 = 3;
const LITERAL: i8 = 3;
const READ: i8 = 3;
const ALLOW: i8 = 3;
const COORDINATOR_TRIES: u32 = 20;

pub fn provider_id(broker: &str, topic: &str, name: &str) -> String {
    format!("{broker}/{topic}/{name}")
}

pub fn parse_id(id: &str) -> Result<(String, String, String)> {
    let mut p = id.splitn(3, '/');
    match (p.next(), p.next(), p.next()) {
        (Some(b), Some(t), Some(g)) => Ok((b.into(), t.into(), g.into())),
        _ => Err(Error::Internal(format!(
            "{id:?} is not a Kafka group id (BROKER/TOPIC/GROUP)"
        ))),
    }
}

fn gid(name: &str) -> GroupId {
    GroupId(str_bytes(name))
}

fn tname(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

/// The broker that coordinates a group (retried while the coordinator loads).
fn coordinator(admin: &Admin, group: &str) -> Result<Route> {
    let v = admin.version_of::<FindCoordinatorRequest>().unwrap_or(0);
    let req = if v >= 4 {
        FindCoordinatorRequest::default().with_coordinator_keys(vec![str_bytes(group)])
    } else {
        FindCoordinatorRequest::default().with_key(str_bytes(group))
    };
    let what = format!("finding the coordinator of group {group}");
    for attempt in 0..COORDINATOR_TRIES {
        let r = admin.call(&req, Route::Any, &what)?;
        let (code, node, msg) = match r.coordinators.first() {
            Some(c) => (c.error_code, c.node_id.0, c.error_message.clone()),
            None => (r.error_code, r.node_id.0, r.error_message.clone()),
        };
        if code == NONE {
            return Ok(Route::Node(node));
        }
        if !errors::retriable(code) || attempt + 1 == COORDINATOR_TRIES {
            return Err(errors::to_error(
                group,
                "config.name",
                &what,
                code,
                msg.as_deref(),
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(
            100 * u64::from(attempt + 1),
        ));
    }
    unreachable!()
}

/// Runs `f` at the group's coordinator, finding it again while the answer is "not the
/// coordinator" or "still loading" (a coordinator moves, and loads its log after a start).
fn at_coordinator<T>(admin: &Admin, group: &str, f: impl Fn(Route) -> Result<T>) -> Result<T> {
    let mut attempt = 0;
    loop {
        match f(coordinator(admin, group)?) {
            Err(Error::Transient(m)) if attempt + 1 < COORDINATOR_TRIES => {
                crate::log::debug(&format!("group {group}: {m}; asking again"));
                std::thread::sleep(std::time::Duration::from_millis(
                    100 * u64::from(attempt + 1),
                ));
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// (state, live members) as the coordinator describes the group.
fn describe(admin: &Admin, route: Route, group: &str) -> Result<(String, usize)> {
    let what = format!("describing group {group}");
    let r = admin.call(
        &DescribeGroupsRequest::default().with_groups(vec![gid(group)]),
        route,
        &what,
    )?;
    let g = r
        .groups
        .into_iter()
        .next()
        .ok_or_else(|| Error::Internal(format!("{what}: empty reply")))?;
    if g.error_code != NONE && g.error_code != GROUP_ID_NOT_FOUND {
        return Err(errors::to_error(
            group,
            "config.name",
            &what,
            g.error_code,
            g.error_message.as_deref(),
        ));
    }
    Ok((g.group_state.to_string(), g.members.len()))
}

/// One topic of an OffsetFetch answer: error code, topic, (partition, committed offset).
type Answer = (i16, String, Vec<(i32, i64)>);

/// The group's committed offsets: topic -> partition -> offset.
fn committed(
    admin: &Admin,
    route: Route,
    group: &str,
) -> Result<BTreeMap<String, BTreeMap<i32, i64>>> {
    let what = format!("reading the offsets of group {group}");
    let v = admin.version_of::<OffsetFetchRequest>().unwrap_or(1);
    let req = if v >= 8 {
        OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(gid(group))
                .with_topics(None),
        ])
    } else {
        OffsetFetchRequest::default()
            .with_group_id(gid(group))
            .with_topics(None)
    };
    let r = admin.call(&req, route, &what)?;
    // v8 answers per group, earlier versions for the one group: (error, topic, partitions).
    let answers: Vec<Answer> = if v >= 8 {
        r.groups
            .into_iter()
            .flat_map(|g| {
                let code = g.error_code;
                let topics: Vec<_> = g
                    .topics
                    .into_iter()
                    .map(|t| {
                        let parts = t
                            .partitions
                            .iter()
                            .map(|p| (p.partition_index, p.committed_offset));
                        (code, t.name.to_string(), parts.collect())
                    })
                    .collect();
                if topics.is_empty() {
                    vec![(code, String::new(), vec![])]
                } else {
                    topics
                }
            })
            .collect()
    } else {
        let code = r.error_code;
        let mut v: Vec<_> = r
            .topics
            .into_iter()
            .map(|t| {
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, p.committed_offset));
                (code, t.name.to_string(), parts.collect())
            })
            .collect();
        v.push((code, String::new(), vec![]));
        v
    };
    let mut out: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    for (code, topic, parts) in answers {
        if code != NONE && code != GROUP_ID_NOT_FOUND {
            return Err(errors::to_error(group, "config.name", &what, code, None));
        }
        let e = out.entry(topic).or_default();
        e.extend(parts.into_iter().filter(|(_, off)| *off >= 0));
    }
    out.retain(|_, p| !p.is_empty());
    Ok(out)
}

/// Each partition's leader, for the topics given.
fn leaders(
    admin: &Admin,
    resource: &str,
    topics: &[String],
) -> Result<BTreeMap<(String, i32), i32>> {
    let req = MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(tname(t))))
                .collect(),
        ))
        .with_allow_auto_topic_creation(false);
    let r = admin.call(&req, Route::Any, "reading partition leaders")?;
    let mut out = BTreeMap::new();
    for t in r.topics {
        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
        if t.error_code != NONE {
            return Err(errors::to_error(
                resource,
                "config.stream_name",
                &format!("reading topic {name}"),
                t.error_code,
                None,
            ));
        }
        for p in t.partitions {
            out.insert((name.clone(), p.partition_index), p.leader_id.0);
        }
    }
    Ok(out)
}

/// The offset to start from on every partition, asked of each partition's leader.
fn starts(admin: &Admin, resource: &str, c: &GroupCfg) -> Result<BTreeMap<(String, i32), i64>> {
    let ts = match c.start {
        Start::Earliest => EARLIEST,
        Start::Latest => LATEST,
        Start::At(ms) => ms,
    };
    let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
    for ((t, p), leader) in leaders(admin, resource, &c.topics)? {
        by_leader.entry(leader).or_default().push((t, p));
    }
    let mut out = BTreeMap::new();
    for (leader, parts) in by_leader {
        let mut topics: BTreeMap<String, Vec<ListOffsetsPartition>> = BTreeMap::new();
        for (t, p) in &parts {
            topics.entry(t.clone()).or_default().push(
                ListOffsetsPartition::default()
                    .with_partition_index(*p)
                    .with_timestamp(ts),
            );
        }
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        ListOffsetsTopic::default()
                            .with_name(tname(&t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let r = admin.call(&req, Route::Node(leader), "looking up starting offsets")?;
        for t in r.topics {
            for p in t.partitions {
                if p.error_code != NONE {
                    return Err(errors::to_error(
                        resource,
                        "config.deliver_policy",
                        "looking up starting offsets",
                        p.error_code,
                        None,
                    ));
                }
                // No message at or after the time: start at the end.
                let off = if p.offset < 0 { LATEST } else { p.offset };
                out.insert((t.name.to_string(), p.partition_index), off);
            }
        }
    }
    if out.values().any(|o| *o == LATEST) {
        // Resolve "no such message" to the end of the log.
        let latest = starts(
            admin,
            resource,
            &GroupCfg {
                start: Start::Latest,
                ..c.clone()
            },
        )?;
        for (k, v) in out.iter_mut().filter(|(_, v)| **v == LATEST) {
            *v = latest.get(k).copied().unwrap_or(0);
        }
    }
    Ok(out)
}

fn commit(
    admin: &Admin,
    route: Route,
    resource: &str,
    group: &str,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<()> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for ((t, p), off) in offsets {
        topics.entry(t).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*off)
                .with_committed_leader_epoch(-1),
        );
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(str_bytes(""))
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(tname(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let what = format!("committing the starting position of group {group}");
    let r = admin.call(&req, route, &what)?;
    match r
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.error_code != NONE)
    {
        None => Ok(()),
        Some(p) => Err(errors::to_error(
            resource,
            "config.name",
            &what,
            p.error_code,
            None,
        )),
    }
}

fn acl_creations(c: &GroupCfg, principal: &str) -> Vec<AclCreation> {
    let acl = |rtype: i8, name: &str| {
        AclCreation::default()
            .with_resource_type(rtype)
            .with_resource_name(str_bytes(name))
            .with_resource_pattern_type(LITERAL)
            .with_principal(str_bytes(principal))
            .with_host(str_bytes("*"))
            .with_operation(READ)
            .with_permission_type(ALLOW)
    };
    let mut v: Vec<AclCreation> = c.topics.iter().map(|t| acl(ACL_TOPIC, t)).collect();
    v.push(acl(ACL_GROUP, &c.name));
    v
}

fn grant(admin: &Admin, resource: &str, c: &GroupCfg) -> Result<()> {
    let Some(principal) = &c.principal else {
        return Ok(());
    };
    let what = format!(
        "granting {principal} Read on group {} and its topics",
        c.name
    );
    let r = admin.call(
        &CreateAclsRequest::default().with_creations(acl_creations(c, principal)),
        Route::Any,
        &what,
    )?;
    match r.results.into_iter().find(|x| x.error_code != NONE) {
        None => Ok(()),
        Some(x) if x.error_code == 54 => Err(Error::invalid(
            resource,
            "config.principal",
            format!("{what}: the cluster has no authorizer, so it keeps no ACLs"),
            "remove principal, or configure authorizer.class.name on the brokers",
        )),
        Some(x) => Err(errors::to_error(
            resource,
            "config.principal",
            &what,
            x.error_code,
            x.error_message.as_deref(),
        )),
    }
}

/// Removes Read ACLs on the group (and on `topics`) for `principal`, or for anyone.
fn revoke(
    admin: &Admin,
    resource: &str,
    group: &str,
    topics: &[String],
    principal: Option<&str>,
) -> Result<()> {
    let filter = |rtype: i8, name: &str| {
        DeleteAclsFilter::default()
            .with_resource_type_filter(rtype)
            .with_resource_name_filter(Some(str_bytes(name)))
            .with_pattern_type_filter(LITERAL)
            .with_principal_filter(principal.map(str_bytes))
            .with_host_filter(Some(str_bytes("*")))
            .with_operation(READ)
            .with_permission_type(ALLOW)
    };
    let mut filters: Vec<DeleteAclsFilter> = topics.iter().map(|t| filter(ACL_TOPIC, t)).collect();
    filters.push(filter(ACL_GROUP, group));
    let what = format!("revoking Read on group {group}");
    let r = admin.call(
        &DeleteAclsRequest::default().with_filters(filters),
        Route::Any,
        &what,
    )?;
    match r
        .filter_results
        .into_iter()
        .find(|x| x.error_code != NONE && x.error_code != 54)
    {
        None => Ok(()),
        Some(x) => Err(errors::to_error(
            resource,
            "config.principal",
            &what,
            x.error_code,
            x.error_message.as_deref(),
        )),
    }
}

fn output(
    resource: &str,
    admin: &Admin,
    c_topics: &[String],
    group: &str,
    principal: Option<&str>,
) -> Result<Output> {
    let (state, members, offsets) = at_coordinator(admin, group, |route| {
        let (state, members) = describe(admin, route, group)?;
        Ok((state, members, committed(admin, route, group)?))
    })?;
    if offsets.is_empty() && members == 0 {
        return Err(Error::NotFound(format!(
            "group {group} does not exist on broker {} (no members, no committed offsets)",
            admin.broker
        )));
    }
    let topics: Vec<String> = if c_topics.is_empty() {
        offsets.keys().cloned().collect()
    } else {
        c_topics.to_vec()
    };
    let mut o = Json::new();
    o.insert("broker".into(), json!(admin.broker));
    o.insert("bus".into(), json!(super::BUS.name));
    o.insert("name".into(), json!(group));
    o.insert("stream_name".into(), json!(topics.first()));
    o.insert("topics".into(), json!(topics));
    o.insert("state".into(), json!(state));
    o.insert("members".into(), json!(members));
    o.insert(
        "partitions".into(),
        json!(offsets.values().map(BTreeMap::len).sum::<usize>()),
    );
    o.insert("principal".into(), json!(principal));
    Ok(Output {
        name: resource.to_string(),
        rtype: CONSUMER.into(),
        provider_id: provider_id(
            &admin.broker,
            topics.first().map_or("", String::as_str),
            group,
        ),
        outputs: o,
        sensitive: vec![],
        status: "running".into(),
    })
}

pub fn create(resource: &str, c: &GroupCfg) -> Result<Output> {
    let admin = Admin::broker(c.broker_ref.as_deref().unwrap_or(""))?;
    at_coordinator(&admin, &c.name, |route| {
        let (_, members) = describe(&admin, route, &c.name)?;
        let have = committed(&admin, route, &c.name)?;
        if members > 0 {
            return Ok(()); // in use: its position is its consumers' business
        }
        // Commit a start only where the group has none: an existing position is never moved.
        let mut todo = starts(&admin, resource, c)?;
        todo.retain(|(t, p), _| !have.get(t).is_some_and(|ps| ps.contains_key(p)));
        if todo.is_empty() {
            return Ok(());
        }
        commit(&admin, route, resource, &c.name, &todo)
    })?;
    grant(&admin, resource, c)?;
    output(resource, &admin, &c.topics, &c.name, c.principal.as_deref())
}

pub fn read(r: &Ref) -> Result<Output> {
    let (broker, _, group) = parse_id(&r.provider_id)?;
    let admin = Admin::broker(&broker)?;
    output(&r.name, &admin, &[], &group, None).map(|mut o| {
        o.outputs.remove("principal");
        o
    })
}

pub fn update(r: &Ref, resource: &str, c: &GroupCfg) -> Result<Output> {
    let broker = parse_id(&r.provider_id).map(|p| p.0).unwrap_or_default();
    let admin = Admin::broker(c.broker_ref.as_deref().unwrap_or(&broker))?;
    grant(&admin, resource, c)?;
    output(resource, &admin, &c.topics, &c.name, c.principal.as_deref())
}

pub fn delete(r: &Ref) -> Result<()> {
    let (broker, topic, group) = parse_id(&r.provider_id)?;
    let admin = Admin::broker(&broker)?;
    let what = format!("deleting group {group}");
    let request = DeleteGroupsRequest::default().with_groups_names(vec![gid(&group)]);
    let code = at_coordinator(&admin, &group, |route| {
        let resp = admin.call(&request, route, &what)?;
        match resp
            .results
            .into_iter()
            .map(|x| x.error_code)
            .find(|c| *c != NONE)
        {
            Some(c) if errors::retriable(c) => {
                Err(errors::to_error(&r.name, "config.name", &what, c, None))
            }
            other => Ok(other),
        }
    })?;
    match code {
        None | Some(GROUP_ID_NOT_FOUND) => Ok(()),
        Some(NON_EMPTY_GROUP) => {
            let (_, members) =
                at_coordinator(&admin, &group, |route| describe(&admin, route, &group))?;
            Err(Error::invalid(
                &r.name,
                "config.name",
                format!(
                    "group {group} still has {members} live member(s); Kafka refuses to delete a group in use"
                ),
                "stop the group's consumers, then apply again",
            ))
        }
        Some(code) => Err(errors::to_error(&r.name, "config.name", &what, code, None)),
    }?;
    // The group is gone, so are the grants on it (a cluster without an authorizer has none).
    let _ = topic;
    revoke(&admin, &r.name, &group, &[], None)
}

/// Desired config against recorded outputs (no server call).
pub fn diff_output(c: &GroupCfg, o: &Json) -> Vec<Change> {
    let mut out = Vec::new();
    out.extend(super::renamed(
        o,
        &c.name,
        "a group id cannot change: a new group starts from deliver_policy and the old one is deleted",
    ));
    let mut now_topics: Vec<String> = o
        .get("topics")
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .unwrap_or_default();
    let mut want = c.topics.clone();
    now_topics.sort();
    want.sort();
    if !now_topics.is_empty() && now_topics != want {
        out.push(Change {
            path: "stream_name".into(),
            old: json!(now_topics),
            new: json!(want),
            force_new: true,
            reason: "the group reads other topics: it is created again from deliver_policy".into(),
        });
    }
    if o.contains_key("principal") {
        let now = o.get("principal").and_then(Value::as_str);
        if now != c.principal.as_deref() {
            out.push(Change {
                path: "principal".into(),
                old: json!(now),
                new: json!(c.principal),
                force_new: false,
                reason: String::new(),
            });
        }
    }
    out.extend(crate::buses::nats::broker_move(
        c.broker_ref.as_deref(),
        o,
        "consumer group",
    ));
    out
}
