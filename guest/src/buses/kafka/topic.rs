//! Topics: create (adopting an existing topic that can be updated in place), read, update
//! (partitions up by CreatePartitions, replication factor by reassignment, configs by
//! IncrementalAlterConfigs), delete, diff, and the plan's validate-only preflight.

use super::errors::{self, NONE, TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION};
use super::topic_config::{self as cfg, TopicCfg};
use super::{Admin, SERVER_TIMEOUT_MS, str_bytes};
use crate::bindings::eventbus::iac::kafka::Route;
use crate::error::{Error, Result};
use crate::model::{Change, Json, Output, Ref, STREAM};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    ListPartitionReassignmentsRequest, MetadataRequest, TopicName,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// DescribeConfigs / IncrementalAlterConfigs resource type of a topic.
const TOPIC_RESOURCE: i8 = 2;
/// DescribeConfigs config source of a per-topic override.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const SET: i8 = 0;
/// How many times a topic's metadata is asked for while it settles after a change.
const SETTLE_TRIES: u32 = 40;

pub fn provider_id(broker: &str, name: &str) -> String {
    format!("{broker}/{name}")
}

pub fn parse_id(id: &str) -> (String, String) {
    match id.split_once('/') {
        Some((b, t)) => (b.to_string(), t.to_string()),
        None => (String::new(), id.to_string()),
    }
}

fn topic_name(name: &str) -> TopicName {
    TopicName(str_bytes(name))
}

/// What the server holds of a topic: partitions with their replicas, and every config.
#[derive(Debug, Clone)]
pub struct Live {
    pub partitions: Partitions,
    pub configs: BTreeMap<String, String>,
    pub overrides: Vec<String>,
    pub brokers: Vec<i32>,
}

impl Live {
    pub fn replication_factor(&self) -> i16 {
        self.partitions
            .iter()
            .map(|(_, r)| r.len())
            .max()
            .unwrap_or(0) as i16
    }
}

/// A topic's partitions with their replicas' broker ids.
type Partitions = Vec<(i32, Vec<i32>)>;

/// The topic's partitions and the cluster's broker ids; None if the topic is not there (yet).
fn metadata(admin: &Admin, name: &str) -> Result<Option<(Partitions, Vec<i32>)>> {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(name))),
        ]))
        .with_allow_auto_topic_creation(false);
    let r = admin.call(&req, Route::Any, &format!("reading topic {name}"))?;
    let brokers = r.brokers.iter().map(|b| b.node_id.0).collect();
    let Some(t) = r.topics.into_iter().next() else {
        return Ok(None);
    };
    match t.error_code {
        NONE => {}
        UNKNOWN_TOPIC_OR_PARTITION => return Ok(None),
        // Just created, leaders not elected yet: not there yet.
        5 => return Ok(None),
        c => {
            return Err(errors::to_error(
                name,
                "config.name",
                &format!("reading topic {name}"),
                c,
                None,
            ));
        }
    }
    let mut parts: Vec<(i32, Vec<i32>)> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                p.replica_nodes.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    parts.sort();
    Ok(Some((parts, brokers)))
}

fn configs(admin: &Admin, name: &str) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    let req = DescribeConfigsRequest::default().with_resources(vec![
        DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(str_bytes(name))
            .with_configuration_keys(None),
    ]);
    let r = admin.call(
        &req,
        Route::Any,
        &format!("reading the configs of topic {name}"),
    )?;
    let mut all = BTreeMap::new();
    let mut overrides = Vec::new();
    for res in r.results {
        if res.error_code != NONE {
            return Err(errors::to_error(
                name,
                "config",
                &format!("reading the configs of topic {name}"),
                res.error_code,
                res.error_message.as_deref(),
            ));
        }
        for c in res.configs.iter().filter(|c| !c.is_sensitive) {
            if let Some(v) = &c.value {
                all.insert(c.name.to_string(), v.to_string());
            }
            if c.config_source == DYNAMIC_TOPIC_CONFIG {
                overrides.push(c.name.to_string());
            }
        }
    }
    Ok((all, overrides))
}

pub fn live(admin: &Admin, name: &str) -> Result<Option<Live>> {
    let Some((partitions, brokers)) = metadata(admin, name)? else {
        return Ok(None);
    };
    // Deleted between the two questions (a destroy racing a killed apply's leftovers): gone.
    let (configs, overrides) = match configs(admin, name) {
        Err(Error::NotFound(_)) => return Ok(None),
        other => other?,
    };
    Ok(Some(Live {
        partitions,
        configs,
        overrides,
        brokers,
    }))
}

fn output(resource: &str, admin: &Admin, name: &str, l: &Live) -> Output {
    let mut o = Json::new();
    o.insert("broker".into(), json!(admin.broker));
    o.insert("bus".into(), json!(super::BUS.name));
    o.insert("name".into(), json!(name));
    o.insert("partitions".into(), json!(l.partitions.len()));
    o.insert("replication_factor".into(), json!(l.replication_factor()));
    o.insert("config".into(), json!(l.configs));
    o.insert("overrides".into(), json!(l.overrides));
    Output {
        name: resource.to_string(),
        rtype: STREAM.into(),
        provider_id: provider_id(&admin.broker, name),
        outputs: o,
        sensitive: vec![],
        status: "running".into(),
    }
}

/// Reads until the topic is there (or gone), as metadata settles after a change.
fn settle(admin: &Admin, name: &str, present: bool) -> Result<Option<Live>> {
    for attempt in 0..SETTLE_TRIES {
        let l = live(admin, name)?;
        if l.is_some() == present && l.as_ref().is_none_or(|l| !l.partitions.is_empty()) {
            return Ok(l);
        }
        std::thread::sleep(std::time::Duration::from_millis(
            50 * u64::from(attempt.min(10) + 1),
        ));
    }
    Err(Error::Transient(format!(
        "topic {name} did not {} in the cluster's metadata in time",
        if present { "appear" } else { "disappear" }
    )))
}

fn create_request(c: &TopicCfg, validate_only: bool) -> CreateTopicsRequest {
    let configs = c
        .configs
        .iter()
        .map(|(k, v)| {
            CreatableTopicConfig::default()
                .with_name(str_bytes(k))
                .with_value(Some(str_bytes(v)))
        })
        .collect();
    CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name(&c.name))
                .with_num_partitions(c.partitions.unwrap_or(-1))
                .with_replication_factor(c.replication_factor.unwrap_or(-1))
                .with_configs(configs),
        ])
        .with_timeout_ms(SERVER_TIMEOUT_MS)
        .with_validate_only(validate_only)
}

/// The field a server refusal of a create points at, by its error code.
fn field_of(code: i16) -> &'static str {
    match code {
        errors::INVALID_PARTITIONS => "config.partitions",
        errors::INVALID_REPLICATION_FACTOR => "config.replication_factor",
        errors::INVALID_CONFIG => "config.configs",
        _ => "config.name",
    }
}

/// CreateTopics (for real, or validate-only); Ok(false) if the topic exists already.
fn send_create(admin: &Admin, resource: &str, c: &TopicCfg, validate_only: bool) -> Result<bool> {
    let what = format!(
        "{} topic {}",
        if validate_only {
            "checking"
        } else {
            "creating"
        },
        c.name
    );
    let r = admin.call(&create_request(c, validate_only), Route::Controller, &what)?;
    let Some(t) = r.topics.into_iter().next() else {
        return Err(Error::Internal(format!("{what}: no result in the reply")));
    };
    match t.error_code {
        NONE => Ok(true),
        TOPIC_ALREADY_EXISTS => Ok(false),
        code => Err(errors::to_error(
            resource,
            field_of(code),
            &what,
            code,
            t.error_message.as_deref(),
        )),
    }
}

pub fn create(resource: &str, c: &TopicCfg) -> Result<Output> {
    let admin = Admin::broker(c.broker_ref.as_deref().unwrap_or(""))?;
    if !send_create(&admin, resource, c, false)? {
        // It exists: take it over if the file's config can be reached in place.
        let l = settle(&admin, &c.name, true)?.expect("present");
        let changes = diff_live(resource, c, &output(resource, &admin, &c.name, &l).outputs)?;
        if let Some(blocking) = changes.iter().find(|ch| ch.force_new) {
            return Err(Error::AlreadyExists(format!(
                "topic {} already exists on broker {} and cannot be taken over in place: {} ({} live, {} desired); delete it, or change the file to match",
                c.name, admin.broker, blocking.path, blocking.old, blocking.new
            )));
        }
        return apply_changes(resource, &admin, c, &l);
    }
    let l = settle(&admin, &c.name, true)?.expect("present");
    Ok(output(resource, &admin, &c.name, &l))
}

pub fn read(r: &Ref) -> Result<Output> {
    let (broker, name) = parse_id(&r.provider_id);
    let admin = Admin::broker(&broker)?;
    match live(&admin, &name)? {
        Some(l) => Ok(output(&r.name, &admin, &name, &l)),
        None => Err(Error::NotFound(format!(
            "topic {name} does not exist on broker {}",
            admin.broker
        ))),
    }
}

pub fn update(r: &Ref, resource: &str, c: &TopicCfg) -> Result<Output> {
    let admin = Admin::broker(
        c.broker_ref
            .as_deref()
            .unwrap_or(&parse_id(&r.provider_id).0),
    )?;
    let Some(l) = live(&admin, &c.name)? else {
        return Err(Error::NotFound(format!(
            "topic {} was deleted outside eventbus; run `eventbus drift`, then apply to recreate it",
            c.name
        )));
    };
    apply_changes(resource, &admin, c, &l)
}

/// Brings a live topic to the desired config in place: partitions, replicas, configs.
fn apply_changes(resource: &str, admin: &Admin, c: &TopicCfg, l: &Live) -> Result<Output> {
    if let Some(p) = c.partitions.filter(|p| *p as usize > l.partitions.len()) {
        add_partitions(admin, resource, &c.name, p, false)?;
    }
    if let Some(rf) = c
        .replication_factor
        .filter(|rf| *rf != l.replication_factor())
    {
        super::reassign::replication_factor(admin, resource, &c.name, l, rf)?;
    }
    let changed: Vec<(&String, &String)> = c
        .configs
        .iter()
        .filter(|(k, v)| {
            l.configs.get(*k).map(|live| cfg::comparable(k, live)) != Some((*v).clone())
        })
        .collect();
    if !changed.is_empty() {
        alter_configs(admin, resource, &c.name, &changed, false)?;
    }
    let now = caught_up(admin, c)?;
    Ok(output(resource, admin, &c.name, &now))
}

/// The topic as the broker answering reads sees it once it holds the change: the controller
/// commits a change before every broker has applied it, so a read right after may be stale.
fn caught_up(admin: &Admin, c: &TopicCfg) -> Result<Live> {
    let mut last = None;
    for attempt in 0..SETTLE_TRIES {
        let l = live(admin, &c.name)?.ok_or_else(|| {
            Error::NotFound(format!("topic {} vanished during the update", c.name))
        })?;
        let partitions_ok = c
            .partitions
            .is_none_or(|p| l.partitions.len() >= p as usize)
            && c.replication_factor
                .is_none_or(|rf| l.partitions.iter().all(|(_, r)| r.len() == rf as usize));
        let configs_ok = c
            .configs
            .iter()
            .all(|(k, v)| l.configs.get(k).map(|h| cfg::comparable(k, h)).as_ref() == Some(v));
        if partitions_ok && configs_ok {
            return Ok(l);
        }
        last = Some(l);
        std::thread::sleep(std::time::Duration::from_millis(
            50 * u64::from(attempt.min(10) + 1),
        ));
    }
    // Recorded as the server reports it: the next plan shows what is still missing.
    last.ok_or_else(|| Error::Transient(format!("topic {} could not be read back", c.name)))
}

fn add_partitions(
    admin: &Admin,
    resource: &str,
    name: &str,
    count: i32,
    validate_only: bool,
) -> Result<()> {
    let what = format!("raising topic {name} to {count} partitions");
    let req = CreatePartitionsRequest::default()
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(count)
                .with_assignments(None),
        ])
        .with_timeout_ms(SERVER_TIMEOUT_MS)
        .with_validate_only(validate_only);
    let r = admin.call(&req, Route::Controller, &what)?;
    match r.results.into_iter().find(|t| t.error_code != NONE) {
        None => Ok(()),
        Some(t) => Err(errors::to_error(
            resource,
            "config.partitions",
            &what,
            t.error_code,
            t.error_message.as_deref(),
        )),
    }
}

fn alter_configs(
    admin: &Admin,
    resource: &str,
    name: &str,
    changed: &[(&String, &String)],
    validate_only: bool,
) -> Result<()> {
    let what = format!("changing the configs of topic {name}");
    let configs = changed
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(str_bytes(k))
                .with_config_operation(SET)
                .with_value(Some(str_bytes(v)))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default()
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(str_bytes(name))
                .with_configs(configs),
        ])
        .with_validate_only(validate_only);
    let r = admin.call(&req, Route::Controller, &what)?;
    match r.responses.into_iter().find(|t| t.error_code != NONE) {
        None => Ok(()),
        Some(t) => {
            let field = match changed {
                [(k, _)] => format!("config.{}", cfg::user_key(k)),
                _ => "config".into(),
            };
            Err(errors::to_error(
                resource,
                &field,
                &what,
                t.error_code,
                t.error_message.as_deref(),
            ))
        }
    }
}

pub fn delete(r: &Ref) -> Result<()> {
    let (broker, name) = parse_id(&r.provider_id);
    let admin = Admin::broker(&broker)?;
    let what = format!("deleting topic {name}");
    let v = admin.version_of::<DeleteTopicsRequest>().unwrap_or(6);
    let req = if v >= 6 {
        DeleteTopicsRequest::default().with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic_name(&name))),
        ])
    } else {
        DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&name)])
    }
    .with_timeout_ms(SERVER_TIMEOUT_MS);
    let resp = admin.call(&req, Route::Controller, &what)?;
    match resp.responses.into_iter().find(|t| t.error_code != NONE) {
        None => {}
        Some(t) if t.error_code == UNKNOWN_TOPIC_OR_PARTITION => return Ok(()),
        Some(t) => {
            return Err(errors::to_error(
                &r.name,
                "config.name",
                &what,
                t.error_code,
                t.error_message.as_deref(),
            ));
        }
    }
    settle(&admin, &name, false).map(|_| ())
}

/// Desired config against recorded outputs (no server call).
pub fn diff_output(resource: &str, c: &TopicCfg, outputs: &Json) -> Result<Vec<Change>> {
    let mut changes = diff_live(resource, c, outputs)?;
    changes.extend(crate::buses::nats::broker_move(
        c.broker_ref.as_deref(),
        outputs,
        "topic",
    ));
    Ok(changes)
}

/// Field-by-field: only what the file sets is compared, so broker defaults never drift.
fn diff_live(resource: &str, c: &TopicCfg, outputs: &Json) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    out.extend(super::renamed(
        outputs,
        &c.name,
        "Kafka cannot rename a topic: a new one is created and the old one deleted, with its messages",
    ));
    let int = |k: &str| outputs.get(k).and_then(Value::as_i64);
    if let (Some(want), Some(have)) = (c.partitions, int("partitions"))
        && i64::from(want) != have
    {
        let lower = i64::from(want) < have;
        if lower && !c.allow_data_loss {
            return Err(Error::invalid(
                resource,
                "config.partitions",
                format!(
                    "{have} -> {want}: Kafka cannot remove partitions; the topic would have to be deleted and created again, losing its messages and its consumer groups' positions"
                ),
                format!(
                    "keep partitions: {have}, or set allow_data_loss: true on this topic to replace it"
                ),
            ));
        }
        out.push(Change {
            path: "partitions".into(),
            old: json!(have),
            new: json!(want),
            force_new: lower,
            reason: if lower {
                "Kafka cannot remove partitions: the topic is deleted and created again, and its messages and its groups' positions are lost (allow_data_loss)".into()
            } else {
                String::new()
            },
        });
    }
    if let (Some(want), Some(have)) = (c.replication_factor, int("replication_factor"))
        && i64::from(want) != have
    {
        out.push(Change {
            path: "replication_factor".into(),
            old: json!(have),
            new: json!(want),
            force_new: false,
            reason: String::new(),
        });
    }
    let live = outputs.get("config").and_then(Value::as_object);
    for (k, want) in &c.configs {
        let have = live.and_then(|m| m.get(k)).and_then(Value::as_str);
        if have.map(|h| cfg::comparable(k, h)).as_ref() != Some(want) {
            out.push(Change {
                path: cfg::user_key(k),
                old: have.map_or(Value::Null, |h| cfg::display(k, h)),
                new: cfg::display(k, want),
                force_new: false,
                reason: String::new(),
            });
        }
    }
    Ok(out)
}

/// The plan's question to the server: would it accept this create or update? Nothing changes.
pub fn preflight(resource: &str, c: &TopicCfg, current: Option<&Json>) -> Result<Vec<String>> {
    let Some(admin) = super::bus::admin_if_known(c.broker_ref.as_deref().unwrap_or(""))? else {
        return Ok(vec![
            "not checked with the server: its broker is created in this apply".into(),
        ]);
    };
    match current {
        None => {
            if send_create(&admin, resource, c, true)? {
                Ok(vec!["the server accepts this topic (validate_only)".into()])
            } else {
                Ok(vec![format!(
                    "topic {} already exists on the server; apply takes it over if it can be updated in place",
                    c.name
                )])
            }
        }
        Some(outputs) => {
            let mut notes = Vec::new();
            let have = outputs
                .get("partitions")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if let Some(p) = c.partitions.filter(|p| i64::from(*p) > have) {
                add_partitions(&admin, resource, &c.name, p, true)?;
                notes.push(format!("the server accepts {p} partitions (validate_only)"));
            }
            let live = outputs.get("config").and_then(Value::as_object);
            let changed: Vec<(&String, &String)> = c
                .configs
                .iter()
                .filter(|(k, v)| {
                    live.and_then(|m| m.get(*k))
                        .and_then(Value::as_str)
                        .map(|h| cfg::comparable(k, h))
                        .as_ref()
                        != Some(*v)
                })
                .collect();
            if !changed.is_empty() {
                alter_configs(&admin, resource, &c.name, &changed, true)?;
                notes.push("the server accepts the config changes (validate_only)".into());
            }
            Ok(notes)
        }
    }
}

/// The replica lists of a topic's partitions, by partition.
pub fn replicas(l: &Live) -> BTreeMap<i32, Vec<BrokerId>> {
    l.partitions
        .iter()
        .map(|(p, r)| (*p, r.iter().map(|b| BrokerId(*b)).collect()))
        .collect()
}

pub fn reassign_request(
    name: &str,
    plan: &BTreeMap<i32, Vec<i32>>,
) -> AlterPartitionReassignmentsRequest {
    AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(SERVER_TIMEOUT_MS)
        .with_topics(vec![
            ReassignableTopic::default()
                .with_name(topic_name(name))
                .with_partitions(
                    plan.iter()
                        .map(|(p, r)| {
                            ReassignablePartition::default()
                                .with_partition_index(*p)
                                .with_replicas(Some(r.iter().map(|b| BrokerId(*b)).collect()))
                        })
                        .collect(),
                ),
        ])
}

pub fn ongoing_request(name: &str, partitions: Vec<i32>) -> ListPartitionReassignmentsRequest {
    ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(SERVER_TIMEOUT_MS)
        .with_topics(Some(vec![
            ListPartitionReassignmentsTopics::default()
                .with_name(topic_name(name))
                .with_partition_indexes(partitions),
        ]))
}
