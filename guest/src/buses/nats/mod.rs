//! NATS JetStream: streams and consumers over the JSON management API, through the host's
//! `nats` import (request/reply on `$JS.API.>` only).

mod bus;
pub mod carry;
pub mod consumer;
pub mod consumer_config;
pub mod rules;
pub mod stream;
pub mod stream_config;

use crate::bindings::eventbus::iac::capability_types::CapError;
use crate::bindings::eventbus::iac::nats::{Auth, Connection, Endpoint};
use crate::config::Kind;
use crate::config::{FieldSpec, display_value};
use crate::error::{Error, Result};
use crate::model::{Change, Json};
use rules::{RuleRow, Version, refusal, rule};
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

pub use bus::BUS;

const TIMEOUT_MS: u32 = 5_000;
const ATTEMPTS: u32 = 3;

/// JetStream's own "try again" (503, e.g. 10008 during a leader election).
fn temporarily_unavailable(reply: &[u8]) -> bool {
    serde_json::from_slice::<Value>(reply)
        .ok()
        .and_then(|v| v.pointer("/error/code").and_then(Value::as_u64))
        == Some(503)
        && !String::from_utf8_lossy(reply).contains("not enabled")
}

/// A JetStream API error as the server reports it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub err_code: u32,
    pub description: String,
}

pub mod codes {
    pub const CONSUMER_CREATE: u32 = 10012;
    pub const CONSUMER_NOT_FOUND: u32 = 10014;
    pub const NOT_ENABLED: u32 = 10039;
    pub const STREAM_INVALID_CONFIG: u32 = 10052;
    pub const STREAM_NAME_EXISTS: u32 = 10058;
    pub const STREAM_NOT_FOUND: u32 = 10059;
    pub const CONSUMER_ALREADY_EXISTS: u32 = 10148;
    pub const CONSUMER_DOES_NOT_EXIST: u32 = 10149;
}

/// One JetStream API client on one host connection.
pub struct Js {
    conn: Connection,
    prefix: String,
    pub broker: String,
    pub version: Version,
    pub server_version: String,
}

thread_local! {
    static CONNS: RefCell<HashMap<String, Rc<Js>>> = RefCell::new(HashMap::new());
}

fn cap_error(e: CapError, what: &str) -> Error {
    crate::buses::cap_error(
        e,
        what,
        "apply or declare the broker in the same run, or grant it in the iac.provider config (allow_nats)",
    )
}

impl Js {
    fn wrap(conn: Connection) -> Js {
        let server_version = conn.server_version();
        Js {
            prefix: conn.api_prefix(),
            broker: conn.broker(),
            version: Version::parse(&server_version).unwrap_or(Version::NEWEST),
            server_version,
            conn,
        }
    }

    /// A connection to a broker resource, shared by every call in this instance.
    pub fn broker(name: &str) -> Result<Rc<Js>> {
        if let Some(js) = CONNS.with(|c| c.borrow().get(name).cloned()) {
            return Ok(js);
        }
        let conn = Connection::open_broker(name).map_err(|e| {
            cap_error(
                e,
                &format!(
                    "broker {}",
                    if name.is_empty() { "(default)" } else { name }
                ),
            )
        })?;
        let js = Rc::new(Js::wrap(conn));
        CONNS.with(|c| c.borrow_mut().insert(name.to_string(), js.clone()));
        Ok(js)
    }

    /// A connection to explicit URLs (a self-hosted broker being verified).
    pub fn endpoint(urls: &[String], auth: Option<Auth>, domain: Option<String>) -> Result<Js> {
        let ep = Endpoint {
            urls: urls.to_vec(),
            auth,
            domain,
        };
        let conn = Connection::open_endpoint(&ep)
            .map_err(|e| cap_error(e, &format!("NATS at {}", urls.join(","))))?;
        Ok(Js::wrap(conn))
    }

    /// Where this connection goes (URLs, credential handles, domain), from the host.
    pub fn where_to(&self) -> Endpoint {
        self.conn.endpoint()
    }

    /// Forgets cached connections (after a broker changes).
    pub fn forget(name: &str) {
        CONNS.with(|c| c.borrow_mut().remove(name));
    }

    /// One API request; `api` is the part after the prefix, e.g. `STREAM.INFO.ORDERS`.
    pub fn request(
        &self,
        api: &str,
        body: Option<&Value>,
    ) -> Result<std::result::Result<Value, ApiError>> {
        let subject = format!("{}.{api}", self.prefix);
        let payload = body
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        crate::log::debug(&format!("request {subject}"));
        // A cluster electing a leader answers late or "temporarily unavailable" for a moment:
        // retry with backoff. Every request we send is idempotent, so a retry after a lost
        // reply is safe.
        let mut attempt = 0u32;
        let reply = loop {
            match self.conn.request(&subject, &payload, TIMEOUT_MS) {
                Ok(r) if attempt + 1 < ATTEMPTS && temporarily_unavailable(&r) => {}
                Ok(r) => break r,
                Err(CapError::Unavailable(m)) if attempt + 1 < ATTEMPTS => {
                    crate::log::debug(&format!("{subject}: {m}; retrying"));
                }
                Err(e) => return Err(cap_error(e, &subject)),
            }
            std::thread::sleep(std::time::Duration::from_millis(250 << attempt));
            attempt += 1;
        };
        parse_reply(&subject, &reply)
    }

    /// Servers from 2.11 reject configs they would silently rewrite when asked to.
    pub fn pedantic(&self) -> bool {
        self.version.at_least(2, 11)
    }
}

/// A JetStream API reply on `subject`: the JSON value, or the server's `{"error": ...}`.
/// Pure (no host call), so it is fuzzed natively (guest/fuzz, target api_reply).
pub fn parse_reply(subject: &str, reply: &[u8]) -> Result<std::result::Result<Value, ApiError>> {
    let v: Value = serde_json::from_slice(reply)
        .map_err(|e| Error::Internal(format!("{subject}: reply is not JSON ({e})")))?;
    if let Some(err) = v.get("error") {
        return Ok(Err(ApiError {
            code: err.get("code").and_then(Value::as_u64).unwrap_or(500) as u16,
            err_code: err.get("err_code").and_then(Value::as_u64).unwrap_or(0) as u32,
            description: err
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        }));
    }
    Ok(Ok(v))
}

/// Maps a server refusal onto wfctl's sentinels.
pub fn api_error(resource: &str, what: &str, e: ApiError) -> Error {
    let text = format!(
        "{what}: {} (nats error {}, status {})",
        e.description, e.err_code, e.code
    );
    match e.code {
        404 => Error::NotFound(text),
        401 => Error::Unauthorized(text),
        403 => Error::Forbidden(text),
        429 => Error::RateLimited(text),
        502..=504 => Error::Transient(text),
        _ if e.err_code == codes::NOT_ENABLED => Error::Transient(text),
        400 | 500 => Error::invalid(
            resource,
            "config",
            text,
            "change the config so the server accepts it",
        ),
        _ => Error::Internal(text),
    }
}

pub fn supported(f: &FieldSpec, v: Version) -> bool {
    Version(f.since.0, f.since.1, f.since.2) <= v
}

/// Fields the server does not know are not sent (they would be silently ignored).
pub fn strip_unsupported(fields: &[FieldSpec], wire: &mut Json, v: Version) {
    for f in fields.iter().filter(|f| !supported(f, v)) {
        wire.remove(f.wire);
    }
}

/// Fields set to something other than their default on a server too old to know them.
/// The server version knows every field of the table (the usual case: no check to make).
pub fn all_supported(fields: &[FieldSpec], v: Version) -> bool {
    fields.iter().all(|f| supported(f, v))
}

pub fn unsupported(
    resource: &str,
    fields: &[FieldSpec],
    wire: &Json,
    defaults: &Json,
    v: Version,
    server: &str,
) -> Vec<crate::error::FieldDiag> {
    fields
        .iter()
        .filter(|f| !supported(f, v) && wire.get(f.wire) != defaults.get(f.wire))
        .map(|f| {
            crate::error::FieldDiag::new(
                resource,
                &format!("config.{}", f.key),
                format!(
                    "needs nats-server {}.{} or later, and this broker runs {server}",
                    f.since.0, f.since.1
                ),
                format!("remove {} or upgrade the server", f.key),
            )
        })
        .collect()
}

/// Field-by-field differences between a desired and a live config (both normalised), with
/// the update-versus-replace decision for this server version.
pub fn diff_fields(
    fields: &[FieldSpec],
    rules: &[RuleRow],
    desired: &Json,
    live: &Json,
    v: Version,
    server: &str,
) -> Vec<Change> {
    let mut out = Vec::new();
    for f in fields.iter().filter(|f| supported(f, v)) {
        let (old, new) = (live.get(f.wire), desired.get(f.wire));
        if old == new {
            continue;
        }
        let why = refusal(rule(rules, f.wire, v), old, new);
        out.push(Change {
            path: f.key.to_string(),
            old: old.map_or(Value::Null, |o| display_value(f.kind, o)),
            new: new.map_or(Value::Null, |n| display_value(f.kind, n)),
            force_new: why.is_some(),
            reason: why.map_or(String::new(), |w| {
                format!("nats-server {server} refuses this change in place: {w}")
            }),
        });
    }
    out
}

/// Only the table's fields of what a server reports: what outputs carry and diffs compare.
pub fn project(fields: &[FieldSpec], live: &Json) -> Json {
    let mut out = Json::new();
    for f in fields {
        if let Some(v) = live.get(f.wire) {
            out.insert(f.wire.to_string(), v.clone());
        }
    }
    out
}

/// A wire config turned back into the user's keys (for import and drift reports).
pub fn to_user(fields: &[FieldSpec], wire: &Json) -> Json {
    let mut out = Json::new();
    for f in fields {
        if let Some(v) = wire.get(f.wire) {
            out.insert(f.key.to_string(), display_value(f.kind, v));
        }
    }
    out
}

pub fn describe(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| format!("{} (live {}, desired {})", c.path, c.old, c.new))
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn outputs(broker: &str, js: &Js, extra: Json, config: Json) -> Json {
    let mut o = extra;
    o.insert("broker".into(), json!(broker));
    o.insert("server_version".into(), json!(js.server_version));
    o.insert("config".into(), Value::Object(config));
    o
}

/// A move to another broker, if the desired `broker_ref` differs from where the recorded
/// resource lives: always a replace (created there, deleted here).
pub fn broker_move(broker_ref: Option<&str>, outputs: &Json, what: &str) -> Option<Change> {
    let now = outputs.get("broker").and_then(Value::as_str).unwrap_or("");
    let to = broker_ref.filter(|b| !now.is_empty() && *b != now)?;
    Some(Change {
        path: "broker_ref".into(),
        old: json!(now),
        new: json!(to),
        force_new: true,
        reason: format!("the {what} moves to another broker: it is created there and deleted here"),
    })
}

pub fn version_of(outputs: &Json) -> (Version, String) {
    let s = outputs
        .get("server_version")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    (
        Version::parse(&s).unwrap_or(Version::NEWEST),
        if s.is_empty() {
            Version::NEWEST.to_string()
        } else {
            s
        },
    )
}

pub fn kind_of(fields: &[FieldSpec], key: &str) -> Kind {
    fields
        .iter()
        .find(|f| f.key == key)
        .map_or(Kind::Str, |f| f.kind)
}
