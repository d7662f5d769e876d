//! Durable consumers on JetStream. Created with action "create" and updated with action
//! "update" (2.10+), so a consumer made or removed behind our back is reported rather than
//! silently overwritten.

use super::consumer_config::{self as cfg, ConsumerCfg, FIELDS, request_config};
use super::{
    Js, all_supported, api_error, broker_move, codes, describe, diff_fields, outputs, project,
    rules, strip_unsupported, unsupported, version_of,
};
use crate::error::FieldDiag;
use crate::error::{Error, Result};
use crate::model::{CONSUMER, Change, Json, Output, Ref};
use rules::Version;
use serde_json::{Value, json};

pub fn provider_id(broker: &str, stream: &str, name: &str) -> String {
    format!("{broker}/{stream}/{name}")
}

/// (broker, stream, consumer) from a provider id.
pub fn parse_id(id: &str) -> Result<(String, String, String)> {
    let parts: Vec<&str> = id.split('/').collect();
    match parts.as_slice() {
        [b, s, c] => Ok((b.to_string(), s.to_string(), c.to_string())),
        [s, c] => Ok((String::new(), s.to_string(), c.to_string())),
        _ => Err(Error::NotFound(format!(
            "{id:?} is not a consumer id (BROKER/STREAM/CONSUMER)"
        ))),
    }
}

/// Fields the given server version does not know but the config sets.
pub fn check(resource: &str, c: &ConsumerCfg, v: Version, server: &str) -> Vec<FieldDiag> {
    if all_supported(FIELDS, v) {
        return vec![];
    }
    let mut defaults = Json::new();
    if c.wire.get("ack_policy") == Some(&json!("none")) {
        defaults.insert("ack_policy".into(), json!("none"));
    }
    if let Some(ds) = c.wire.get("deliver_subject") {
        defaults.insert("deliver_subject".into(), ds.clone());
    }
    cfg::normalise(&mut defaults);
    unsupported(resource, FIELDS, &c.wire, &defaults, v, server)
}

fn supported_or_error(resource: &str, c: &ConsumerCfg, js: &Js) -> Result<()> {
    let d = check(resource, c, js.version, &js.server_version);
    if d.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(d))
    }
}

fn body(js: &Js, c: &ConsumerCfg, action: &str) -> Value {
    let mut config = request_config(&c.wire);
    strip_unsupported(FIELDS, &mut config, js.version);
    let mut b = json!({"stream_name": c.stream_name, "config": config});
    if js.version.at_least(2, 10) && !action.is_empty() {
        b["action"] = json!(action);
    }
    if js.pedantic() {
        b["pedantic"] = json!(true);
    }
    b
}

fn output(resource: &str, js: &Js, stream_name: &str, info: &Value) -> Result<Output> {
    let mut live = info
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| Error::Internal("consumer info without config".into()))?;
    cfg::normalise(&mut live);
    let name = live
        .get("durable_name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut extra = Json::new();
    extra.insert("name".into(), json!(name));
    extra.insert("stream_name".into(), json!(stream_name));
    Ok(Output {
        name: resource.to_string(),
        rtype: CONSUMER.into(),
        provider_id: provider_id(&js.broker, stream_name, &name),
        outputs: outputs(&js.broker, js, extra, project(FIELDS, &live)),
        sensitive: vec![],
        status: "running".into(),
    })
}

fn info(js: &Js, stream_name: &str, name: &str) -> Result<Option<Value>> {
    match js.request(&format!("CONSUMER.INFO.{stream_name}.{name}"), None)? {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if e.err_code == codes::CONSUMER_NOT_FOUND
                || e.err_code == codes::STREAM_NOT_FOUND
                || e.code == 404 =>
        {
            Ok(None)
        }
        Err(e) => Err(api_error(
            name,
            &format!("reading consumer {stream_name}/{name}"),
            e,
        )),
    }
}

fn send(
    resource: &str,
    js: &Js,
    c: &ConsumerCfg,
    action: &str,
) -> Result<std::result::Result<Output, super::ApiError>> {
    let subject = format!("CONSUMER.CREATE.{}.{}", c.stream_name, c.name);
    Ok(match js.request(&subject, Some(&body(js, c, action)))? {
        Ok(v) => Ok(output(resource, js, &c.stream_name, &v)?),
        Err(e) => Err(e),
    })
}

fn conflict(resource: &str, js: &Js, c: &ConsumerCfg) -> Result<Output> {
    let live = info(js, &c.stream_name, &c.name)?.ok_or_else(|| {
        Error::Transient(format!("consumer {} vanished while being created", c.name))
    })?;
    let current = output(resource, js, &c.stream_name, &live)?;
    let changes = diff_output(c, &current.outputs);
    if changes.is_empty() {
        return Ok(current);
    }
    if !c.common.adopt_existing {
        return Err(Error::AlreadyExists(format!(
            "consumer {}/{} exists on the server with a different configuration: {}; set adopt_existing: true to take it over, or `eventbus import` it",
            c.stream_name,
            c.name,
            describe(&changes)
        )));
    }
    if let Some(ch) = changes.iter().find(|c| c.force_new) {
        return Err(Error::AlreadyExists(format!(
            "consumer {} exists and cannot be adopted in place: {}",
            c.name, ch.reason
        )));
    }
    match send(resource, js, c, "update")? {
        Ok(o) => Ok(o),
        Err(e) => Err(api_error(
            resource,
            &format!("adopting consumer {}", c.name),
            e,
        )),
    }
}

pub fn create(resource: &str, c: &ConsumerCfg) -> Result<Output> {
    let js = Js::broker(c.broker_ref.as_deref().unwrap_or(""))?;
    supported_or_error(resource, c, &js)?;
    if !js.version.at_least(2, 10) {
        // No create-only action before 2.10: look first so we never overwrite a stranger.
        if info(&js, &c.stream_name, &c.name)?.is_some() {
            return conflict(resource, &js, c);
        }
    }
    match send(resource, &js, c, "create")? {
        Ok(o) => Ok(o),
        Err(e)
            if e.err_code == codes::CONSUMER_ALREADY_EXISTS
                || e.err_code == codes::CONSUMER_CREATE
                    && e.description.contains("already exists") =>
        {
            conflict(resource, &js, c)
        }
        Err(e) if e.err_code == codes::STREAM_NOT_FOUND => Err(Error::NotFound(format!(
            "stream {} does not exist on broker {}: create it before consumer {}",
            c.stream_name, js.broker, c.name
        ))),
        Err(e) => Err(api_error(
            resource,
            &format!("creating consumer {}/{}", c.stream_name, c.name),
            e,
        )),
    }
}

pub fn read(r: &Ref) -> Result<Output> {
    let (broker, stream_name, name) = parse_id(&r.provider_id)?;
    let js = Js::broker(&broker)?;
    match info(&js, &stream_name, &name)? {
        Some(v) => output(&r.name, &js, &stream_name, &v),
        None => Err(Error::NotFound(format!(
            "consumer {stream_name}/{name} does not exist on broker {}",
            js.broker
        ))),
    }
}

pub fn update(r: &Ref, resource: &str, c: &ConsumerCfg) -> Result<Output> {
    let broker = parse_id(&r.provider_id).map(|p| p.0).unwrap_or_default();
    let js = Js::broker(c.broker_ref.as_deref().unwrap_or(&broker))?;
    supported_or_error(resource, c, &js)?;
    match send(resource, &js, c, "update")? {
        Ok(o) => Ok(o),
        Err(e) if e.err_code == codes::CONSUMER_DOES_NOT_EXIST => Err(Error::NotFound(format!(
            "consumer {}/{} was deleted outside eventbus; run `eventbus drift`, then apply to recreate it",
            c.stream_name, c.name
        ))),
        Err(e) => Err(api_error(
            resource,
            &format!("updating consumer {}/{}", c.stream_name, c.name),
            e,
        )),
    }
}

pub fn delete(r: &Ref) -> Result<()> {
    let (broker, stream_name, name) = parse_id(&r.provider_id)?;
    let js = Js::broker(&broker)?;
    match js.request(&format!("CONSUMER.DELETE.{stream_name}.{name}"), None)? {
        Ok(_) => Ok(()),
        Err(e)
            if e.err_code == codes::CONSUMER_NOT_FOUND
                || e.err_code == codes::STREAM_NOT_FOUND
                || e.code == 404 =>
        {
            Ok(())
        }
        Err(e) => Err(api_error(
            &r.name,
            &format!("deleting consumer {stream_name}/{name}"),
            e,
        )),
    }
}

/// Desired config against the outputs of the last apply or read (no server call).
pub fn diff_output(c: &ConsumerCfg, outputs: &Json) -> Vec<Change> {
    let mut live = outputs
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    cfg::normalise(&mut live);
    let (v, server) = version_of(outputs);
    let mut changes = diff_fields(FIELDS, rules::CONSUMER, &c.wire, &live, v, &server);
    let stream_now = outputs
        .get("stream_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !stream_now.is_empty() && stream_now != c.stream_name {
        changes.push(Change {
            path: "stream_name".into(),
            old: json!(stream_now),
            new: json!(c.stream_name),
            force_new: true,
            reason: "a consumer belongs to one stream: it is created on the new stream".into(),
        });
    }
    changes.extend(broker_move(c.broker_ref.as_deref(), outputs, "consumer"));
    changes
}

/// The ids of a stream's consumers on the server (for import and drift).
pub fn names(js: &Js, stream_name: &str) -> Result<Vec<String>> {
    match js.request(
        &format!("CONSUMER.NAMES.{stream_name}"),
        Some(&json!({"offset": 0})),
    )? {
        Ok(v) => Ok(v
            .get("consumers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()),
        Err(e) => Err(api_error(stream_name, "listing consumers", e)),
    }
}
