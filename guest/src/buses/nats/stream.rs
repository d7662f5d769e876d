//! Streams on JetStream: create (idempotent, adopting an identical stream), read, update,
//! delete, diff.

use super::stream_config::{self as cfg, FIELDS, StreamCfg};
use super::{
    Js, all_supported, api_error, broker_move, codes, describe, diff_fields, outputs, project,
    rules, strip_unsupported, unsupported, version_of,
};
use crate::error::FieldDiag;
use crate::error::{Error, Result};
use crate::model::{Change, Json, Output, Ref, STREAM};
use rules::Version;
use serde_json::{Value, json};

pub fn provider_id(broker: &str, name: &str) -> String {
    format!("{broker}/{name}")
}

/// (broker, stream) from a provider id; a bare name means the default broker.
pub fn parse_id(id: &str) -> (String, String) {
    match id.split_once('/') {
        Some((b, s)) => (b.to_string(), s.to_string()),
        None => (String::new(), id.to_string()),
    }
}

/// Fields the given server version does not know but the config sets.
pub fn check(resource: &str, c: &StreamCfg, v: Version, server: &str) -> Vec<FieldDiag> {
    if all_supported(FIELDS, v) {
        return vec![];
    }
    let mut defaults = Json::new();
    cfg::normalise(&mut defaults);
    unsupported(resource, FIELDS, &c.wire, &defaults, v, server)
}

fn supported_or_error(resource: &str, c: &StreamCfg, js: &Js) -> Result<()> {
    let d = check(resource, c, js.version, &js.server_version);
    if d.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(d))
    }
}

fn request_body(js: &Js, wire: &Json) -> Value {
    let mut body = wire.clone();
    strip_unsupported(FIELDS, &mut body, js.version);
    if js.pedantic() {
        body.insert("pedantic".into(), json!(true));
    }
    Value::Object(body)
}

fn output(resource: &str, js: &Js, info: &Value) -> Result<Output> {
    let mut live = info
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| Error::Internal("stream info without config".into()))?;
    cfg::normalise(&mut live);
    let name = live
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut extra = Json::new();
    extra.insert("name".into(), json!(name));
    extra.insert(
        "subjects".into(),
        live.get("subjects").cloned().unwrap_or(json!([])),
    );
    Ok(Output {
        name: resource.to_string(),
        rtype: STREAM.into(),
        provider_id: provider_id(&js.broker, &name),
        outputs: outputs(&js.broker, js, extra, project(FIELDS, &live)),
        sensitive: vec![],
        status: "running".into(),
    })
}

pub fn info(js: &Js, name: &str) -> Result<Option<Value>> {
    match js.request(&format!("STREAM.INFO.{name}"), None)? {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.err_code == codes::STREAM_NOT_FOUND || e.code == 404 => Ok(None),
        Err(e) => Err(api_error(name, &format!("reading stream {name}"), e)),
    }
}

pub fn create(resource: &str, c: &StreamCfg) -> Result<Output> {
    let js = Js::broker(c.broker_ref.as_deref().unwrap_or(""))?;
    supported_or_error(resource, c, &js)?;
    if let Some(d) = cfg::sealed_at_create(resource, c) {
        return Err(Error::Validation(vec![d]));
    }
    match js.request(
        &format!("STREAM.CREATE.{}", c.name),
        Some(&request_body(&js, &c.wire)),
    )? {
        Ok(v) => {
            let carried = super::carry::restore(&js, &c.name)?;
            if carried > 0 {
                crate::log::info(
                    "consumers recreated on the replaced stream",
                    &[("stream", &c.name), ("consumers", &carried.to_string())],
                );
            }
            output(resource, &js, &v)
        }
        Err(e) if e.err_code == codes::STREAM_NAME_EXISTS => {
            // Something else already holds the name: adopt it only if asked to.
            let live = info(&js, &c.name)?
                .ok_or_else(|| api_error(resource, "creating stream", e.clone()))?;
            let current = output(resource, &js, &live)?;
            let changes = diff_output(c, &current.outputs);
            if !c.common.adopt_existing {
                return Err(Error::AlreadyExists(format!(
                    "stream {} exists on the server with a different configuration: {}; set adopt_existing: true to take it over, or `eventbus import` it",
                    c.name,
                    describe(&changes)
                )));
            }
            if let Some(ch) = changes.iter().find(|c| c.force_new) {
                return Err(Error::AlreadyExists(format!(
                    "stream {} exists and cannot be adopted in place: {}",
                    c.name, ch.reason
                )));
            }
            update_with(resource, &js, c)
        }
        Err(e) => Err(api_error(
            resource,
            &format!("creating stream {}", c.name),
            e,
        )),
    }
}

fn update_with(resource: &str, js: &Js, c: &StreamCfg) -> Result<Output> {
    match js.request(
        &format!("STREAM.UPDATE.{}", c.name),
        Some(&request_body(js, &c.wire)),
    )? {
        Ok(v) => output(resource, js, &v),
        Err(e) => Err(api_error(
            resource,
            &format!("updating stream {}", c.name),
            e,
        )),
    }
}

pub fn read(r: &Ref) -> Result<Output> {
    let (broker, name) = parse_id(&r.provider_id);
    let js = Js::broker(&broker)?;
    match info(&js, &name)? {
        Some(v) => output(&r.name, &js, &v),
        None => Err(Error::NotFound(format!(
            "stream {name} does not exist on broker {}",
            js.broker
        ))),
    }
}

pub fn update(r: &Ref, resource: &str, c: &StreamCfg) -> Result<Output> {
    let js = Js::broker(
        c.broker_ref
            .as_deref()
            .unwrap_or(&parse_id(&r.provider_id).0),
    )?;
    supported_or_error(resource, c, &js)?;
    update_with(resource, &js, c)
}

pub fn delete(r: &Ref) -> Result<()> {
    let (broker, name) = parse_id(&r.provider_id);
    let js = Js::broker(&broker)?;
    super::carry::remember(&js, &name)?;
    match js.request(&format!("STREAM.DELETE.{name}"), None)? {
        Ok(_) => Ok(()),
        // Already gone is what we wanted.
        Err(e) if e.err_code == codes::STREAM_NOT_FOUND || e.code == 404 => Ok(()),
        Err(e) => Err(api_error(&r.name, &format!("deleting stream {name}"), e)),
    }
}

/// Desired config against the outputs of the last apply or read (no server call).
pub fn diff_output(c: &StreamCfg, outputs: &Json) -> Vec<Change> {
    let mut live = outputs
        .get("config")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    cfg::normalise(&mut live);
    let (v, server) = version_of(outputs);
    let mut changes = diff_fields(FIELDS, rules::STREAM, &c.wire, &live, v, &server);
    changes.extend(broker_move(c.broker_ref.as_deref(), outputs, "stream"));
    changes
}
