//! Enhanced fan-out consumers (`infra.eventbus.consumer` on a kinesis broker):
//! RegisterStreamConsumer on the stream's ARN, then a wait until ACTIVE. A consumer has no
//! settings to update: its name or its stream changing replaces it.

use super::{DEFAULT_ACCOUNT, ID_PREFIX, call, refused, stream, wait_for};
use crate::config::{Common, Fields, read_common};
use crate::error::{Error, FieldDiag, Result};
use crate::model::{CONSUMER, Change, Json, Output, Ref};
use serde_json::{Value, json};

/// Consumers AWS allows per stream.
pub const PER_STREAM: usize = 20;

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerCfg {
    pub name: String,
    pub stream_name: String,
    pub broker_ref: Option<String>,
    pub account: Option<String>,
    pub common: Common,
}

pub fn parse(resource: &str, config: &Json) -> std::result::Result<ConsumerCfg, Vec<FieldDiag>> {
    let mut f = Fields::new(resource, config);
    let common = read_common(&mut f);
    f.ignore("provider");
    let broker_ref = f.str("broker_ref");
    let account = f.str("account");
    let name = f
        .required_str(
            "name",
            "set name to the consumer's name, e.g. orders-intake",
        )
        .unwrap_or_default();
    let stream_name = f
        .required_str(
            "stream_name",
            "set stream_name to the `name` of the Kinesis stream it reads",
        )
        .unwrap_or_default();
    for (key, v) in [("name", &name), ("stream_name", &stream_name)] {
        if !v.is_empty() && !super::valid_name(v) {
            f.error(
                key,
                format!("{v:?} is not a Kinesis name: 1 to 128 of letters, digits, _ . -"),
                "use only a-z, A-Z, 0-9, _, . and -, at most 128 characters",
            );
        }
    }
    let diags = f.finish(&["name", "stream_name", "broker_ref", "account"]);
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(ConsumerCfg {
        name,
        stream_name,
        broker_ref,
        account,
        common,
    })
}

/// Where a consumer is: its broker, stream, name and cloud account.
struct At {
    broker: String,
    stream: String,
    name: String,
    account: String,
}

impl At {
    fn of(r: &Ref) -> Result<At> {
        let (segs, q) = super::parse_id(&r.provider_id);
        let [broker, stream, name] = segs.as_slice() else {
            return Err(Error::NotFound(format!(
                "{}: {:?} is not a Kinesis consumer's id",
                r.name, r.provider_id
            )));
        };
        Ok(At {
            broker: broker.to_string(),
            stream: stream.to_string(),
            name: name.to_string(),
            account: super::id_param(&q, "account")
                .unwrap_or(DEFAULT_ACCOUNT)
                .to_string(),
        })
    }

    fn new(c: &ConsumerCfg) -> At {
        At {
            broker: c.broker_ref.clone().unwrap_or_default(),
            stream: c.stream_name.clone(),
            name: c.name.clone(),
            account: c.account.clone().unwrap_or_else(|| DEFAULT_ACCOUNT.into()),
        }
    }

    fn id(&self) -> String {
        format!(
            "{ID_PREFIX}{}/{}/{}?account={}",
            self.broker, self.stream, self.name, self.account
        )
    }
}

/// The stream's ARN, or None when the stream is gone.
fn stream_arn(resource: &str, at: &At) -> Result<Option<String>> {
    Ok(stream::summary(resource, &at.account, &at.stream)?
        .and_then(|s| s.get("StreamARN").and_then(Value::as_str).map(String::from)))
}

/// DescribeStreamConsumer's description, or None when there is no such consumer.
fn describe(resource: &str, at: &At, arn: &str) -> Result<Option<Value>> {
    let body = json!({"StreamARN": arn, "ConsumerName": at.name});
    match call(&at.account, "DescribeStreamConsumer", body)? {
        Ok(v) => Ok(v.get("ConsumerDescription").cloned()),
        Err(e) if e.is("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(refused(
            resource,
            "config.name",
            "DescribeStreamConsumer",
            &e,
        )),
    }
}

fn output(resource: &str, at: &At, d: &Value) -> Output {
    let status = d
        .get("ConsumerStatus")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut o = Json::new();
    o.insert("name".into(), json!(at.name));
    o.insert("stream_name".into(), json!(at.stream));
    o.insert(
        "arn".into(),
        d.get("ConsumerARN").cloned().unwrap_or(Value::Null),
    );
    o.insert(
        "stream_arn".into(),
        d.get("StreamARN").cloned().unwrap_or(Value::Null),
    );
    o.insert("status".into(), json!(status));
    o.insert("account".into(), json!(at.account));
    o.insert("broker".into(), json!(at.broker));
    Output {
        name: resource.into(),
        rtype: CONSUMER.into(),
        provider_id: at.id(),
        outputs: o,
        sensitive: vec![],
        status: if status == "ACTIVE" {
            "running".into()
        } else {
            status.to_ascii_lowercase()
        },
    }
}

fn wait_active(resource: &str, at: &At, arn: &str) -> Result<Value> {
    wait_for(
        &format!("consumer {} becoming ACTIVE", at.name),
        || match describe(resource, at, arn)? {
            Some(d) if d.get("ConsumerStatus").and_then(Value::as_str) == Some("ACTIVE") => {
                Ok(Some(d))
            }
            Some(_) => Ok(None),
            None => Err(Error::NotFound(format!(
                "{resource}: consumer {} is gone",
                at.name
            ))),
        },
    )
}

/// Registers the consumer (an existing one of this name is the same consumer: nothing else
/// identifies one) and waits until it is ACTIVE.
pub fn create(resource: &str, c: &ConsumerCfg) -> Result<Output> {
    let at = At::new(c);
    let arn = stream_arn(resource, &at)?.ok_or_else(|| {
        Error::invalid(
            resource,
            "config.stream_name",
            format!("stream {} does not exist", at.stream),
            "apply the stream first (it is created before its consumers)",
        )
    })?;
    stream::wait_active(resource, &at.account, &at.stream)?;
    let body = json!({"StreamARN": arn, "ConsumerName": at.name});
    let what = format!(
        "RegisterStreamConsumer {} (at most 5 consumers register at once)",
        at.name
    );
    wait_for(&what, || {
        match call(&at.account, "RegisterStreamConsumer", body.clone())? {
            Ok(_) => Ok(Some(())),
            Err(e) if e.is("ResourceInUseException") => Ok(Some(())),
            // AWS (and kinesis-mock) register at most 5 consumers of a stream at a time.
            Err(e) if e.is("LimitExceededException") && registering(&e.message) => Ok(None),
            Err(e) if e.is("LimitExceededException") => Err(Error::invalid(
                resource,
                "config.stream_name",
                format!(
                    "Kinesis refused another consumer on {}: {}",
                    at.stream, e.message
                ),
                "a stream holds at most 20 consumers: remove some, or read another stream",
            )),
            Err(e) => Err(refused(
                resource,
                "config.name",
                "RegisterStreamConsumer",
                &e,
            )),
        }
    })?;
    let d = wait_active(resource, &at, &arn)?;
    Ok(output(resource, &at, &d))
}

pub fn read(r: &Ref) -> Result<Output> {
    let at = At::of(r)?;
    let gone = || {
        Error::NotFound(format!(
            "{}: consumer {} on stream {} does not exist",
            r.name, at.name, at.stream
        ))
    };
    let arn = stream_arn(&r.name, &at)?.ok_or_else(gone)?;
    let d = describe(&r.name, &at, &arn)?.ok_or_else(gone)?;
    Ok(output(&r.name, &at, &d))
}

/// Nothing to change in place: a consumer's only settings are its name and stream.
pub fn update(r: &Ref, resource: &str, _: &ConsumerCfg) -> Result<Output> {
    read(&Ref {
        name: resource.into(),
        ..r.clone()
    })
}

/// The limit of consumers registering at once (it passes), not of consumers per stream.
fn registering(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("at the same time") || m.contains("creating") || m.contains("rate")
}

/// Deregisters it and waits until it is gone; a consumer or stream already gone is done.
pub fn delete(r: &Ref) -> Result<()> {
    let at = At::of(r)?;
    let Some(arn) = stream_arn(&r.name, &at)? else {
        return Ok(());
    };
    let body = json!({"StreamARN": arn, "ConsumerName": at.name});
    match call(&at.account, "DeregisterStreamConsumer", body)? {
        Ok(_) => {}
        Err(e) if e.is("ResourceNotFoundException") => return Ok(()),
        Err(e) if e.is("ResourceInUseException") => {
            wait_active(&r.name, &at, &arn)?;
            let body = json!({"StreamARN": arn, "ConsumerName": at.name});
            if let Err(e) = call(&at.account, "DeregisterStreamConsumer", body)? {
                return Err(refused(
                    &r.name,
                    "config.name",
                    "DeregisterStreamConsumer",
                    &e,
                ));
            }
        }
        Err(e) => {
            return Err(refused(
                &r.name,
                "config.name",
                "DeregisterStreamConsumer",
                &e,
            ));
        }
    }
    wait_for(&format!("consumer {} being deregistered", at.name), || {
        Ok(describe(&r.name, &at, &arn)?.is_none().then_some(()))
    })
}

/// The name or the stream changing replaces the consumer (AWS has no rename).
pub fn diff(c: &ConsumerCfg, out: &Json) -> Vec<Change> {
    let mut changes = Vec::new();
    for (k, want) in [("name", &c.name), ("stream_name", &c.stream_name)] {
        let have = out.get(k).cloned().unwrap_or(Value::Null);
        if have != json!(want) {
            changes.push(Change {
                path: k.into(),
                old: have,
                new: json!(want),
                force_new: true,
                reason: format!("Kinesis cannot change a consumer's {k}: it is registered again"),
            });
        }
    }
    let account = c.account.as_deref().unwrap_or(DEFAULT_ACCOUNT);
    if let Some(was) = out
        .get("account")
        .and_then(Value::as_str)
        .filter(|a| *a != account)
    {
        changes.push(Change {
            path: "account".into(),
            old: json!(was),
            new: json!(account),
            force_new: true,
            reason: "the broker moved to another cloud account".into(),
        });
    }
    changes
}

pub fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "infra.eventbus.consumer (kinesis: an enhanced fan-out consumer)",
        "type": "object",
        "required": ["name", "stream_name"],
        "additionalProperties": false,
        "properties": {
            "iac_provider": {"type": "string"}, "provider": {"type": "string"}, "size": {"type": "string"},
            "depends_on": {"type": "array", "items": {"type": "string"}},
            "protected": {"type": "boolean"}, "adopt_existing": {"type": "boolean"},
            "broker_ref": {"type": "string"},
            "account": {"type": "string", "description": "filled in by plan: the broker's cloud account"},
            "name": {"type": "string", "pattern": "^[a-zA-Z0-9_.-]{1,128}$", "description": "the consumer's name; a change registers it again"},
            "stream_name": {"type": "string", "description": "the `name` of the Kinesis stream it reads (at most 20 consumers per stream); a change registers it again"}
        }
    })
}
