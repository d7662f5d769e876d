//! Resource type -> driver. Brokers go to their deploy target (a Kafka cluster to its bus);
//! streams and consumers to the bus of their broker (`buses`).

use crate::buses::{self, kafka, kinesis};
use crate::config::broker;
use crate::error::{Error, Result};
use crate::model::{BROKER, CONSUMER, Change, Output, Ref, STREAM, Spec};
use crate::targets::{digitalocean, kubernetes, self_hosted};

fn unknown(rtype: &str) -> Error {
    Error::NotFound(format!(
        "no driver for resource type {rtype:?}: this provider serves {BROKER}, {STREAM} and {CONSUMER}"
    ))
}

fn broker_cfg(spec: &Spec) -> Result<broker::BrokerCfg> {
    broker::parse(&spec.name, &spec.config).map_err(Error::Validation)
}

pub fn create(spec: &Spec) -> Result<Output> {
    match spec.rtype.as_str() {
        BROKER => match broker_cfg(spec)? {
            c if c.provider == kafka::BUS.name => kafka::cluster::create(spec, &c),
            c if c.provider == kinesis::BUS.name => kinesis::account::create(spec, &c),
            c if c.deploy_target == digitalocean::TARGET => digitalocean::create(spec),
            c if c.deploy_target == kubernetes::TARGET => kubernetes::create(spec),
            c => self_hosted::create(spec, &c),
        },
        STREAM | CONSUMER => buses::create(spec),
        t => Err(unknown(t)),
    }
}

pub fn read(r: &Ref) -> Result<Output> {
    if r.provider_id.is_empty() && [BROKER, STREAM, CONSUMER].contains(&r.rtype.as_str()) {
        // wfctl's adoption probe (`adopt_existing: true`) reads by module name alone, before
        // it has any config to give: nothing says which stream or broker is meant. Not found
        // lets wfctl plan a create, and the create adopts an identical existing resource.
        return Err(Error::NotFound(format!(
            "{}: no provider id to read by; with adopt_existing, the create adopts the existing resource",
            r.name
        )));
    }
    match r.rtype.as_str() {
        BROKER if kafka::cluster::owns(&r.provider_id) => kafka::cluster::read(r),
        BROKER if kinesis::account::owns(&r.provider_id) => kinesis::account::read(r),
        BROKER if digitalocean::owns(&r.provider_id) => digitalocean::read(r),
        BROKER if kubernetes::owns(&r.provider_id) => kubernetes::read(r),
        BROKER => self_hosted::read(r),
        STREAM | CONSUMER => buses::read(r),
        t => Err(unknown(t)),
    }
}

pub fn update(r: &Ref, spec: &Spec) -> Result<Output> {
    match r.rtype.as_str() {
        BROKER => match broker_cfg(spec)? {
            c if c.provider == kafka::BUS.name => kafka::cluster::create(spec, &c),
            c if c.provider == kinesis::BUS.name => kinesis::account::create(spec, &c),
            c if c.deploy_target == digitalocean::TARGET => digitalocean::update(r, spec),
            c if c.deploy_target == kubernetes::TARGET => kubernetes::update(r, spec),
            c => self_hosted::update(spec, &c),
        },
        STREAM | CONSUMER => buses::update(r, spec),
        t => Err(unknown(t)),
    }
}

pub fn delete(r: &Ref) -> Result<()> {
    match r.rtype.as_str() {
        BROKER if kafka::cluster::owns(&r.provider_id) => kafka::cluster::delete(r),
        BROKER if kinesis::account::owns(&r.provider_id) => kinesis::account::delete(r),
        BROKER if digitalocean::owns(&r.provider_id) => digitalocean::delete(r),
        BROKER if kubernetes::owns(&r.provider_id) => kubernetes::delete(r),
        BROKER => self_hosted::delete(r),
        STREAM | CONSUMER => buses::delete(r),
        t => Err(unknown(t)),
    }
}

/// Desired spec against current outputs, without touching the server.
pub fn diff(spec: &Spec, current: &Output) -> Result<Vec<Change>> {
    match spec.rtype.as_str() {
        BROKER if kafka::cluster::targets(spec) => kafka::cluster::diff(spec, current),
        BROKER if kinesis::account::targets(spec) => kinesis::account::diff(spec, current),
        BROKER if digitalocean::targets(spec) => digitalocean::diff(spec, current),
        BROKER if kubernetes::targets(spec) => kubernetes::diff(spec, current),
        BROKER => self_hosted::diff(spec, current),
        STREAM | CONSUMER => buses::diff(spec, current),
        t => Err(unknown(t)),
    }
}

/// The diff wfctl asks for: against the recorded outputs, and also against the server for
/// streams and consumers, because wfctl replaces a stream without its consumers (the server
/// deletes them with it) and would otherwise never notice they are gone.
pub fn diff_live(spec: &Spec, current: &Output) -> Result<Vec<Change>> {
    let mut changes = diff(spec, current)?;
    if (spec.rtype == STREAM || spec.rtype == CONSUMER)
        && !current.provider_id.is_empty()
        && !changes.iter().any(|c| c.force_new)
    {
        let r = Ref {
            name: spec.name.clone(),
            rtype: spec.rtype.clone(),
            provider_id: current.provider_id.clone(),
        };
        if let Err(Error::NotFound(why)) = read(&r) {
            changes.push(Change {
                path: "exists".into(),
                old: serde_json::Value::Bool(false),
                new: serde_json::Value::Bool(true),
                force_new: true,
                reason: format!("it is gone from the server ({why}); it is created again"),
            });
        }
    }
    Ok(changes)
}

pub fn sensitive_keys(rtype: &str) -> Result<Vec<String>> {
    match rtype {
        BROKER | STREAM | CONSUMER => Ok(vec![]),
        t => Err(unknown(t)),
    }
}
