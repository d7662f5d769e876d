//! Config parsing, validation and planning on arbitrary input.
//!
//! The input is a JSON object. The whole object goes through the broker, stream and consumer
//! parsers; then every entry whose value is an object becomes one resource named by its key:
//! `$type` picks its type (else the key picks one), `$depends_on` lists its explicit
//! dependencies, `$current` (an object) is the outputs of a last apply, so the resource is
//! also in the current state, and `"$gone": true` leaves it only there (a delete).
//! Nothing may panic; a resolved plan holds every resource once, after its dependencies; a
//! plan acts once per resource and deletes exactly what is no longer desired; a stream or
//! consumer config that parses diffs empty against its own echo from the server.
#![no_main]

use eventbus_guest::buses::Config;
use eventbus_guest::buses::nats::{consumer as nats_consumer, stream as nats_stream};
use eventbus_guest::buses::nats::{consumer_config as consumer, stream_config as stream};
use eventbus_guest::config::broker;
use eventbus_guest::model::{ActionKind, CONSUMER, Json, RESOURCE_TYPES, STREAM, Spec, State};
use eventbus_guest::plan;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const MAX_RESOURCES: usize = 8;

fn strings(v: Option<Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .into_iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        Some(Value::String(s)) => vec![s],
        _ => vec![],
    }
}

/// A parsed config, echoed back by a server of the newest version, must diff empty: the
/// normalisation the plan relies on is idempotent.
fn settles(spec: &Spec) {
    let (wire, extra, parsed) = match spec.rtype.as_str() {
        STREAM => match stream::parse(&spec.name, &spec.config) {
            Ok(c) => (
                c.wire.clone(),
                json!({"broker": c.broker_ref.clone().unwrap_or_default()}),
                Config::NatsStream(c),
            ),
            Err(_) => return,
        },
        CONSUMER => match consumer::parse(&spec.name, &spec.config) {
            Ok(c) => (
                c.wire.clone(),
                json!({"broker": c.broker_ref.clone().unwrap_or_default(), "stream_name": c.stream_name}),
                Config::NatsConsumer(c),
            ),
            Err(_) => return,
        },
        _ => return,
    };
    let mut outputs: Json = extra.as_object().cloned().unwrap_or_default();
    outputs.insert("server_version".into(), json!("2.15.1"));
    outputs.insert("config".into(), Value::Object(wire));
    let changes = match &parsed {
        Config::NatsStream(c) => nats_stream::diff_output(c, &outputs),
        Config::NatsConsumer(c) => nats_consumer::diff_output(c, &outputs),
        _ => unreachable!("only NATS configs are parsed here"),
    };
    assert!(
        changes.is_empty(),
        "{} {:?} does not settle against its own echo: {changes:?}",
        spec.rtype,
        spec.config
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(top)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    // Every parser on the whole object: diagnostics are fine, a panic is not.
    let _ = stream::parse("fuzz", &top);
    let _ = consumer::parse("fuzz", &top);
    let _ = broker::parse("fuzz", &top);

    let mut desired = Vec::new();
    let mut current = Vec::new();
    for (i, (name, v)) in top.iter().enumerate().take(MAX_RESOURCES) {
        let Value::Object(cfg) = v else { continue };
        let mut config = cfg.clone();
        let rtype = match config.remove("$type") {
            Some(Value::String(t)) => t,
            _ => RESOURCE_TYPES[(name.len() + i) % RESOURCE_TYPES.len()].to_string(),
        };
        let depends_on = strings(config.remove("$depends_on"));
        let live = config.remove("$current");
        let gone = config.remove("$gone") == Some(Value::Bool(true));
        if let Some(Value::Object(outputs)) = live {
            current.push(State {
                name: name.clone(),
                rtype: rtype.clone(),
                provider_id: format!("fuzz/{name}"),
                applied_config: config.clone(),
                outputs,
                dependencies: depends_on.clone(),
            });
        }
        if !gone {
            let spec = Spec {
                name: name.clone(),
                rtype,
                config,
                size: String::new(),
                depends_on,
            };
            settles(&spec);
            desired.push(spec);
        }
    }

    match plan::resolve(&desired, &current) {
        Ok(resolved) => {
            // Every resource once, each after everything it depends on.
            assert_eq!(resolved.len(), desired.len());
            let mut before = BTreeSet::new();
            for s in resolved.iter().map(|r| &r.spec) {
                for d in &s.depends_on {
                    assert!(
                        before.contains(d.as_str()),
                        "{} is ordered before its dependency {d}",
                        s.name
                    );
                }
                assert!(before.insert(s.name.as_str()), "{} twice", s.name);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    match plan::plan(&desired, &current) {
        Ok(actions) => {
            let wanted: BTreeSet<&str> = desired.iter().map(|s| s.name.as_str()).collect();
            let mut seen = BTreeSet::new();
            for a in &actions {
                assert!(
                    seen.insert(a.spec.name.as_str()),
                    "{} planned twice",
                    a.spec.name
                );
                assert_eq!(
                    a.kind == ActionKind::Delete,
                    !wanted.contains(a.spec.name.as_str()),
                    "{:?} of {}",
                    a.kind,
                    a.spec.name
                );
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
