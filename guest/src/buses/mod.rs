//! Buses: how streams and consumers are made on each message system. Each bus is a folder
//! (`nats/`, `kafka/`) that holds its field tables, its update-versus-replace rules and its
//! drivers, and describes itself with one [`Bus`] value; [`BUSES`] lists them. A stream or
//! consumer goes to the bus of the broker it references, decided here and only here.

pub mod kafka;
pub mod kinesis;
pub mod nats;

use crate::bindings::eventbus::iac::brokers;
use crate::error::{Error, FieldDiag, Result};
use crate::model::{Change, Json, Output, Ref, STREAM, Spec};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::HashMap;

/// Every bus this provider serves. Adding one is its folder plus a line here.
pub const BUSES: &[&Bus] = &[&nats::BUS, &kafka::BUS, &kinesis::BUS];

/// The bus of a broker whose outputs or config do not say (state written before Kafka).
pub const DEFAULT_BUS: &str = "nats";

/// A stream's or consumer's config as its bus parsed and normalised it: once, at the edge
/// (`plan`'s resolve, or the export being called), and then handed to every later step
/// (references, version checks, diffs, requests). A bus adds its variants here.
#[derive(Debug, Clone, PartialEq)]
pub enum Config {
    NatsStream(nats::stream_config::StreamCfg),
    NatsConsumer(nats::consumer_config::ConsumerCfg),
    KafkaTopic(kafka::topic_config::TopicCfg),
    KafkaGroup(kafka::group_config::GroupCfg),
    KinesisStream(kinesis::stream_config::StreamCfg),
    KinesisConsumer(kinesis::consumer::ConsumerCfg),
}

impl Config {
    /// The server-side name (JetStream stream or consumer, Kafka topic or group).
    pub fn name(&self) -> &str {
        match self {
            Config::NatsStream(c) => &c.name,
            Config::NatsConsumer(c) => &c.name,
            Config::KafkaTopic(c) => &c.name,
            Config::KafkaGroup(c) => &c.name,
            Config::KinesisStream(c) => &c.name,
            Config::KinesisConsumer(c) => &c.name,
        }
    }

    pub fn broker_ref(&self) -> Option<&str> {
        match self {
            Config::NatsStream(c) => c.broker_ref.as_deref(),
            Config::NatsConsumer(c) => c.broker_ref.as_deref(),
            Config::KafkaTopic(c) => c.broker_ref.as_deref(),
            Config::KafkaGroup(c) => c.broker_ref.as_deref(),
            Config::KinesisStream(c) => c.broker_ref.as_deref(),
            Config::KinesisConsumer(c) => c.broker_ref.as_deref(),
        }
    }

    /// The broker `resolve` found for it (named, the only one, or its stream's).
    pub fn set_broker_ref(&mut self, broker: &str) {
        let b = Some(broker.to_string());
        match self {
            Config::NatsStream(c) => c.broker_ref = b,
            Config::NatsConsumer(c) => c.broker_ref = b,
            Config::KafkaTopic(c) => c.broker_ref = b,
            Config::KafkaGroup(c) => c.broker_ref = b,
            Config::KinesisStream(c) => c.broker_ref = b,
            Config::KinesisConsumer(c) => c.broker_ref = b,
        }
    }

    /// Subjects a stream claims (NATS); two streams on a broker must not overlap.
    pub fn subjects(&self) -> Vec<&str> {
        match self {
            Config::NatsStream(c) => c.subjects(),
            _ => vec![],
        }
    }

    /// The streams (topics) a consumer reads; the first is the one it is recorded under.
    pub fn streams(&self) -> Vec<&str> {
        match self {
            Config::NatsConsumer(c) => vec![c.stream_name.as_str()],
            Config::KafkaGroup(c) => c.topics.iter().map(String::as_str).collect(),
            Config::KinesisConsumer(c) => vec![c.stream_name.as_str()],
            _ => vec![],
        }
    }
}

/// The config a bus function was handed was parsed by another bus or kind: a routing bug.
pub fn mismatch(want: &str, got: &Config) -> Error {
    Error::Internal(format!(
        "expected the config of {want}, got {}",
        match got {
            Config::NatsStream(_) => "a NATS stream",
            Config::NatsConsumer(_) => "a NATS consumer",
            Config::KafkaTopic(_) => "a Kafka topic",
            Config::KafkaGroup(_) => "a Kafka consumer group",
            Config::KinesisStream(_) => "a Kinesis stream",
            Config::KinesisConsumer(_) => "a Kinesis consumer",
        }
    ))
}

/// One resource kind (stream or consumer) on one bus. Every function after `parse` takes the
/// resource's name (for diagnostics) and its parsed config.
pub struct Kind {
    pub parse: fn(&Spec) -> std::result::Result<Config, Vec<FieldDiag>>,
    pub create: fn(&str, &Config) -> Result<Output>,
    pub read: fn(&Ref) -> Result<Output>,
    pub update: fn(&Ref, &str, &Config) -> Result<Output>,
    pub delete: fn(&Ref) -> Result<()>,
    /// Desired config against the outputs recorded by the last apply or read, without
    /// asking the server.
    pub diff: fn(&str, &Config, &Json) -> Result<Vec<Change>>,
    /// Fields the server version recorded for this resource or its broker does not know.
    pub check_version: fn(&str, &Config, &str) -> Vec<FieldDiag>,
    /// What a create would be refused for, found without a server.
    pub check_create: fn(&str, &Config) -> Option<FieldDiag>,
    /// The plan's note for a replace: what is lost.
    pub replace_note: &'static str,
    /// JSON Schema of the config.
    pub schema: fn() -> Value,
    /// A server config turned back into the user's keys, for import.
    pub to_user: fn(&Output) -> Json,
}

pub struct Bus {
    /// The broker's `provider`: nats, kafka.
    pub name: &'static str,
    pub stream: Kind,
    pub consumer: Kind,
    /// Asks the server whether it would accept a planned create or update without changing
    /// anything (Kafka's validate_only). Notes for the plan, or the server's refusal.
    pub preflight: fn(&crate::model::Action) -> Result<Vec<String>>,
}

pub fn by_name(name: &str) -> Option<&'static Bus> {
    BUSES.iter().copied().find(|b| b.name == name)
}

thread_local! {
    /// Brokers' buses learned from this call's own specs and state, before the host knows them.
    static KNOWN: RefCell<HashMap<String, &'static str>> = RefCell::new(HashMap::new());
}

/// Remembers a broker's bus (from a desired broker's `provider` or a recorded broker's
/// outputs), for the calls that follow in this instance.
pub fn learn(broker: &str, bus: &str) {
    if let Some(b) = by_name(bus) {
        KNOWN.with(|k| k.borrow_mut().insert(broker.to_string(), b.name));
    }
}

/// The bus a recorded broker's outputs name; `nats` for state written before there was a choice.
pub fn of_outputs(outputs: &Json) -> &'static str {
    outputs
        .get("bus")
        .or_else(|| outputs.get("provider"))
        .and_then(Value::as_str)
        .and_then(by_name)
        .map_or(DEFAULT_BUS, |b| b.name)
}

/// The bus of the broker named `broker` ("" = the only one): learned in this instance, else
/// as the host knows it.
pub fn of_broker(broker: &str) -> Result<&'static Bus> {
    if let Some(b) = KNOWN.with(|k| k.borrow().get(broker).copied()) {
        return Ok(by_name(b).unwrap_or(&nats::BUS));
    }
    match brokers::bus(broker) {
        Ok(name) => by_name(&name).ok_or_else(|| {
            Error::Internal(format!(
                "broker {broker:?} runs {name:?}, a bus this provider does not serve"
            ))
        }),
        // A broker the host has never seen: NATS keeps its old error paths (it names the grant).
        Err(_) => Ok(&nats::BUS),
    }
}

/// The broker a spec references (`broker_ref`, which plan fills in), "" for the default.
fn broker_of_spec(spec: &Spec) -> &str {
    spec.config
        .get("broker_ref")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The broker part of a stream's or consumer's provider id (`BROKER/...`).
fn broker_of_id(provider_id: &str) -> &str {
    provider_id.split_once('/').map_or("", |(b, _)| b)
}

/// The bus of a stream's or consumer's spec. A Kinesis one carries its broker's cloud account
/// (plan fills it in), so it is routed even where the host knows nothing of its broker (the
/// host's broker registry holds NATS and Kafka endpoints; a Kinesis broker has none).
pub fn for_spec(spec: &Spec) -> Result<&'static Bus> {
    let broker = broker_of_spec(spec);
    let known = KNOWN.with(|k| k.borrow().contains_key(broker)) || brokers::bus(broker).is_ok();
    if !known && spec.config.contains_key("account") {
        return Ok(&kinesis::BUS);
    }
    of_broker(broker)
}

pub fn for_ref(r: &Ref) -> Result<&'static Bus> {
    if kinesis::owns(&r.provider_id) {
        return Ok(&kinesis::BUS);
    }
    of_broker(broker_of_id(&r.provider_id))
}

impl Bus {
    /// Its entry for a stream or a consumer.
    pub fn kind(&self, rtype: &str) -> &Kind {
        if rtype == STREAM {
            &self.stream
        } else {
            &self.consumer
        }
    }
}

/// A stream's or consumer's spec parsed by the bus of its broker: the edge of an export
/// that is handed one.
pub fn parse(spec: &Spec) -> Result<(&'static Bus, Config)> {
    let bus = for_spec(spec)?;
    let c = (bus.kind(&spec.rtype).parse)(spec).map_err(Error::Validation)?;
    Ok((bus, c))
}

/// The driver calls for a stream or consumer, routed to its bus.
pub fn create(spec: &Spec) -> Result<Output> {
    let (bus, c) = parse(spec)?;
    (bus.kind(&spec.rtype).create)(&spec.name, &c)
}

pub fn read(r: &Ref) -> Result<Output> {
    (for_ref(r)?.kind(&r.rtype).read)(r)
}

pub fn update(r: &Ref, spec: &Spec) -> Result<Output> {
    let (bus, c) = parse(spec)?;
    (bus.kind(&spec.rtype).update)(r, &spec.name, &c)
}

pub fn delete(r: &Ref) -> Result<()> {
    (for_ref(r)?.kind(&r.rtype).delete)(r)
}

/// The bus a diff goes to: the spec's broker's, else the recorded resource's.
fn bus_for_diff(spec: &Spec, current: &Output) -> Result<&'static Bus> {
    match broker_of_spec(spec) {
        "" => for_ref(&Ref {
            name: current.name.clone(),
            rtype: current.rtype.clone(),
            provider_id: current.provider_id.clone(),
        }),
        _ => for_spec(spec),
    }
}

pub fn diff(spec: &Spec, current: &Output) -> Result<Vec<Change>> {
    let bus = bus_for_diff(spec, current)?;
    let kind = bus.kind(&spec.rtype);
    let c = (kind.parse)(spec).map_err(Error::Validation)?;
    (kind.diff)(&spec.name, &c, &current.outputs)
}

pub fn to_user(bus: &Bus, rtype: &str, out: &Output) -> Json {
    (bus.kind(rtype).to_user)(out)
}

/// Asks each planned stream's and consumer's server whether it would accept the change,
/// where its bus can ask without changing anything; the answers become notes.
pub fn preflight(actions: &mut [crate::model::Action]) -> Result<()> {
    for a in actions
        .iter_mut()
        .filter(|a| a.spec.rtype != crate::model::BROKER)
    {
        let bus = for_spec(&a.spec)?;
        let notes = (bus.preflight)(a)?;
        a.notes.extend(notes);
    }
    Ok(())
}

/// A capability's refusal in wfctl's terms, `what` naming the request; `unknown` means the
/// host does not know the broker, which says nothing about the resource (wfctl would drop a
/// resource from state on a not-found delete), so it is reported with `grant_fix`.
pub fn cap_error(
    e: crate::bindings::eventbus::iac::capability_types::CapError,
    what: &str,
    grant_fix: &str,
) -> Error {
    use crate::bindings::eventbus::iac::capability_types::CapError;
    let text = |m: String| {
        if m.starts_with(what) {
            m
        } else {
            format!("{what}: {m}")
        }
    };
    match e {
        CapError::Denied(m) => Error::Forbidden(text(m)),
        CapError::Unavailable(m) => Error::Transient(text(m)),
        CapError::Invalid(m) => Error::Internal(text(m)),
        CapError::Unknown(m) => Error::invalid("", "config.broker_ref", text(m), grant_fix),
    }
}

/// No server to ask: nothing to add.
pub fn no_preflight(_: &crate::model::Action) -> Result<Vec<String>> {
    Ok(vec![])
}

pub fn nothing_at_create(_: &str, _: &Config) -> Option<FieldDiag> {
    None
}
