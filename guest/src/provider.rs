//! Provider-level operations: capabilities, status, drift, destroy, import, sizing, schema.

use crate::buses::{self, BUSES};
use crate::config::broker;
use crate::drivers;
use crate::error::{Error, Result};
use crate::model::{
    BROKER, CONSUMER, Drift, DriftClass, Json, Output, RESOURCE_TYPES, Ref, STREAM, Spec, State,
};
use serde_json::{Value, json};

pub const NAME: &str = "eventbus";
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn capabilities() -> Vec<(String, i32, Vec<String>)> {
    RESOURCE_TYPES
        .iter()
        .map(|t| {
            let tier = if *t == BROKER { 1 } else { 2 };
            (
                t.to_string(),
                tier,
                ["create", "read", "update", "delete"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            )
        })
        .collect()
}

/// running when the resource answers, unknown (with the reason) when it does not.
pub fn status(refs: &[Ref]) -> Vec<(Ref, String, Json)> {
    refs.iter()
        .map(|r| match drivers::read(r) {
            Ok(o) => (r.clone(), "running".to_string(), o.outputs),
            Err(Error::NotFound(m)) => (
                r.clone(),
                "stopped".to_string(),
                json!({"error": m}).as_object().cloned().unwrap_or_default(),
            ),
            Err(e) => (
                r.clone(),
                "unknown".to_string(),
                json!({"error": e.to_string()})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
        })
        .collect()
}

/// Ghosts (gone from the server) and config drift (changed on the server) against `specs`.
pub fn detect_drift(refs: &[Ref], specs: &[Spec]) -> Result<Vec<Drift>> {
    let mut out = Vec::new();
    for r in refs {
        let spec = specs.iter().find(|s| s.name == r.name);
        let drift = |class, expected, actual, fields| Drift {
            name: r.name.clone(),
            rtype: r.rtype.clone(),
            class,
            expected,
            actual,
            fields,
        };
        match drivers::read(r) {
            Err(Error::NotFound(m)) => {
                let expected = spec.map(|s| s.config.clone()).unwrap_or_default();
                let actual = json!({"error": m}).as_object().cloned().unwrap_or_default();
                out.push(drift(DriftClass::Ghost, expected, actual, vec![]));
            }
            Err(e) => return Err(e),
            Ok(live) => {
                let changes = match spec {
                    Some(s) => drivers::diff(s, &live)?,
                    _ => vec![],
                };
                if changes.is_empty() {
                    out.push(drift(DriftClass::InSync, Json::new(), Json::new(), vec![]));
                } else {
                    let mut exp = Json::new();
                    let mut act = Json::new();
                    for c in &changes {
                        exp.insert(c.path.clone(), c.new.clone());
                        act.insert(c.path.clone(), c.old.clone());
                    }
                    out.push(drift(
                        DriftClass::Config,
                        exp,
                        act,
                        changes.iter().map(|c| c.path.clone()).collect(),
                    ));
                }
            }
        }
    }
    Ok(out)
}

fn rank(rtype: &str) -> u8 {
    match rtype {
        CONSUMER => 0,
        STREAM => 1,
        _ => 2,
    }
}

/// Deletes consumers, then streams, then brokers, in whatever order the refs arrive.
pub fn destroy(refs: &[Ref]) -> (Vec<String>, Vec<(String, String, String)>) {
    let mut sorted: Vec<&Ref> = refs.iter().collect();
    sorted.sort_by_key(|r| rank(&r.rtype));
    let mut done = Vec::new();
    let mut errors = Vec::new();
    for r in sorted {
        match drivers::delete(r) {
            Ok(()) => done.push(r.name.clone()),
            Err(e) => errors.push((r.name.clone(), "delete".to_string(), e.to_string())),
        }
    }
    (done, errors)
}

/// Brings an existing stream (`BROKER/STREAM`) or consumer (`BROKER/STREAM/CONSUMER`)
/// under management with its real config.
pub fn import(provider_id: &str, rtype: &str) -> Result<State> {
    let name = provider_id
        .rsplit('/')
        .next()
        .unwrap_or(provider_id)
        .to_string();
    let out: Output = drivers::read(&Ref {
        name: name.clone(),
        rtype: rtype.into(),
        provider_id: provider_id.into(),
    })?;
    if rtype != STREAM && rtype != CONSUMER {
        return Err(Error::Unimplemented(format!(
            "import of {rtype}: declare the broker instead; create adopts it"
        )));
    }
    let bus = buses::by_name(buses::of_outputs(&out.outputs)).unwrap_or(&buses::nats::BUS);
    let mut applied = buses::to_user(bus, rtype, &out);
    applied.insert(
        "broker_ref".into(),
        out.outputs.get("broker").cloned().unwrap_or(Value::Null),
    );
    Ok(State {
        name,
        rtype: rtype.into(),
        provider_id: out.provider_id,
        applied_config: applied,
        outputs: out.outputs,
        dependencies: vec![],
    })
}

pub fn resolve_sizing(rtype: &str, size: &str) -> Result<(String, Json)> {
    if rtype != BROKER {
        // wfctl asks for every resource whose config has `size`; only brokers have one.
        return Err(Error::invalid(
            "",
            "size",
            format!("an {rtype} has no size: only a broker (infra.eventbus) is sized"),
            "remove size from this resource's config (a stream's limits are max_bytes, max_msgs and max_age)",
        ));
    }
    let (cpu, mem, storage) = match size {
        "xs" => ("0.25", "512Mi", "10Gi"),
        "s" => ("1", "2Gi", "50Gi"),
        "m" => ("2", "4Gi", "100Gi"),
        "l" => ("4", "16Gi", "500Gi"),
        "xl" => ("8", "32Gi", "1Ti"),
        other => {
            return Err(Error::invalid(
                "",
                "size",
                format!("{other:?} is not a size"),
                "use xs, s, m, l or xl",
            ));
        }
    };
    Ok((
        format!("nats-{size}"),
        json!({"cpu": cpu, "memory": mem, "storage": storage})
            .as_object()
            .cloned()
            .unwrap_or_default(),
    ))
}

/// A stream's and a consumer's schema depend on the bus of their broker: one per bus, under
/// `anyOf`, each titled with its bus (`eventbus schema TYPE --bus kafka` picks one).
pub fn schema(rtype: &str) -> Result<Value> {
    match rtype {
        STREAM | CONSUMER => {
            let each: Vec<Value> = BUSES
                .iter()
                .map(|b| {
                    let mut s = if rtype == STREAM {
                        (b.stream.schema)()
                    } else {
                        (b.consumer.schema)()
                    };
                    if let Some(o) = s.as_object_mut() {
                        o.remove("$schema");
                        o.insert("x-bus".into(), json!(b.name));
                    }
                    s
                })
                .collect();
            Ok(json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": rtype,
                "description": "the config depends on the bus of the broker it references (broker_ref): one schema per bus",
                "anyOf": each,
            }))
        }
        BROKER => Ok(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": BROKER,
            "type": "object",
            "required": ["provider", "deploy_target"],
            "additionalProperties": false,
            "properties": {
                "iac_provider": {"type": "string"}, "size": {"type": "string"}, "depends_on": {"type": "array", "items": {"type": "string"}},
                "protected": {"type": "boolean"}, "adopt_existing": {"type": "boolean"},
                "provider": {"enum": broker::PROVIDERS},
                "deploy_target": {"enum": broker::TARGETS},
                "url": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}], "description": "NATS URL(s) of a self_hosted broker"},
                "bootstrap_servers": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}], "description": "host:port of a self_hosted Kafka cluster's brokers"},
                "security_protocol": {"enum": buses::kafka::cluster::PROTOCOLS, "default": "PLAINTEXT", "description": "Kafka"},
                "sasl_mechanism": {"enum": buses::kafka::cluster::MECHANISMS, "description": "Kafka, with SASL_PLAINTEXT or SASL_SSL"},
                "account": {"type": "string", "default": "aws", "description": "Kinesis: the iac.provider module's cloud_accounts entry (auth: aws) the broker's streams and consumers are managed through"},
                "region": {"type": "string", "description": "Kinesis: the AWS region, recorded in outputs (the signing region is the cloud account's)"},
                "urls": {"type": "array", "items": {"type": "string"}},
                "domain": {"type": "string", "description": "JetStream domain"},
                "version": {"type": "string", "default": "2.10"},
                "replicas": {"type": ["integer", "string"]},
                "credentials": {"type": "object", "additionalProperties": false, "properties": {
                    "token": {"type": "string", "x-secret": true}, "user": {"type": "string"},
                    "password": {"type": "string", "x-secret": true}, "nkey_seed": {"type": "string", "x-secret": true},
                    "creds": {"type": "string", "x-secret": true}}},
                "jetstream": {"type": "object", "properties": {"enabled": {"type": "boolean"}, "max_storage_bytes": {}, "max_memory_bytes": {}, "max_age": {}}},
                "limits": {"type": "object"}, "kafka": {"type": "object"}, "kinesis": {"type": "object"}
            }
        })),
        other => Err(Error::NotFound(format!("no schema for {other:?}"))),
    }
}
