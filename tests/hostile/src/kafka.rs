//! The `kafka` and `bus` attacks: raw Kafka requests through the host's `kafka` import.
//!
//! `kafka` opens a connection as `p` says (`{"broker": name}`, or `{"bootstrap": [...], "tls":
//! bool, "sasl": {"mechanism", "user", "password"}}`), asks the permitted API versions if
//! `p.api_versions`, then sends every request in `p.requests` (`api_key`, `api_version`,
//! `body_hex`, `route`: "any" | "controller" | a node id, `timeout_ms`) and reports each answer
//! (`{"ok_hex": ...}` or the cap-error). The bodies are made by the test, which encodes them;
//! this component only carries bytes, as a hostile one would.

use crate::bindings::eventbus::iac::brokers;
use crate::bindings::eventbus::iac::capability_types::CapError;
use crate::bindings::eventbus::iac::kafka::{Connection, Endpoint, Route, Sasl};
use crate::{cap, s, strings};
use serde_json::{Value, json};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn open(p: &Value) -> Result<Connection, CapError> {
    if let Some(b) = p.get("broker").and_then(Value::as_str) {
        return Connection::open_broker(b);
    }
    let sasl = p.get("sasl").filter(|v| v.is_object()).map(|v| {
        let pair = (s(v, "user"), s(v, "password"));
        match s(v, "mechanism").as_str() {
            "PLAIN" => Sasl::Plain(pair),
            "SCRAM-SHA-256" => Sasl::ScramSha256(pair),
            _ => Sasl::ScramSha512(pair),
        }
    });
    Connection::open_endpoint(&Endpoint {
        bootstrap_servers: strings(p, "bootstrap"),
        tls: p.get("tls").and_then(Value::as_bool).unwrap_or(false),
        sasl,
    })
}

fn route(v: &Value) -> Route {
    match v {
        Value::Number(n) => Route::Node(n.as_i64().unwrap_or(-1) as i32),
        Value::String(r) if r == "controller" => Route::Controller,
        _ => Route::Any,
    }
}

pub fn kafka(p: &Value) -> Value {
    let conn = match open(p) {
        Ok(c) => c,
        Err(e) => return json!({"open": cap(e)}),
    };
    let versions: Vec<Value> = if p.get("api_versions").is_some() {
        conn.api_versions()
            .iter()
            .map(|a| json!([a.api_key, a.min_version, a.max_version]))
            .collect()
    } else {
        vec![]
    };
    let mut answers = Vec::new();
    for r in p
        .get("requests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = r.get("api_key").and_then(Value::as_i64).unwrap_or(0) as i16;
        let version = r.get("api_version").and_then(Value::as_i64).unwrap_or(0) as i16;
        let body = unhex(&s(r, "body_hex"));
        let timeout = r.get("timeout_ms").and_then(Value::as_u64).unwrap_or(5000) as u32;
        let to = route(r.get("route").unwrap_or(&Value::Null));
        answers.push(match conn.request(key, version, &body, to, timeout) {
            Ok(reply) => json!({"ok_hex": hex(&reply)}),
            Err(e) => cap(e),
        });
    }
    let ep = conn.endpoint();
    json!({
        "open": {"ok": {
            "broker": conn.broker(),
            "endpoint": format!("{ep:?}"),
        }},
        "api_versions": versions,
        "requests": answers,
    })
}

/// `brokers.bus(name)` for each name in `p.names`.
pub fn bus(p: &Value) -> Value {
    let answers: Vec<Value> = strings(p, "names")
        .iter()
        .map(|n| match brokers::bus(n) {
            Ok(b) => json!({"ok": b}),
            Err(e) => cap(e),
        })
        .collect();
    json!({"buses": answers})
}
