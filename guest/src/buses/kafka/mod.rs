//! Apache Kafka: topics (`infra.eventbus.stream`) and consumer groups
//! (`infra.eventbus.consumer`) through the host's `kafka` import, which carries cluster
//! administration requests only. Requests are encoded and responses decoded with the
//! `kafka-protocol` crate; the host writes headers, negotiates versions and authenticates.

mod bus;
pub mod cluster;
pub mod errors;
pub mod group;
pub mod group_config;
pub mod reassign;
pub mod topic;
pub mod topic_config;

pub use bus::BUS;

use crate::bindings::eventbus::iac::capability_types::CapError;
use crate::bindings::eventbus::iac::kafka::{ApiRange, Connection, Endpoint, Route};
use crate::error::{Error, Result};
use bytes::BytesMut;
use kafka_protocol::protocol::{Decodable, Message, Request, StrBytes};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Server-side timeout for admin requests that wait (topic creation, deletion, partitions).
pub const SERVER_TIMEOUT_MS: i32 = 30_000;
const CALL_TIMEOUT_MS: u32 = 40_000;
const ATTEMPTS: u32 = 4;

/// One Kafka admin client on one host connection.
pub struct Admin {
    conn: Connection,
    pub broker: String,
    apis: Vec<ApiRange>,
}

thread_local! {
    static CONNS: RefCell<HashMap<String, Rc<Admin>>> = RefCell::new(HashMap::new());
}

pub fn cap_error(e: CapError, what: &str) -> Error {
    crate::buses::cap_error(
        e,
        what,
        "apply or declare the Kafka broker in the same run, or grant it in the iac.provider config (allow_kafka)",
    )
}

pub fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

impl Admin {
    fn wrap(conn: Connection, broker: String) -> Admin {
        let apis = conn.api_versions();
        Admin { conn, broker, apis }
    }

    /// The connection to a Kafka broker resource, shared by every call in this instance.
    pub fn broker(name: &str) -> Result<Rc<Admin>> {
        if let Some(a) = CONNS.with(|c| c.borrow().get(name).cloned()) {
            return Ok(a);
        }
        let shown = if name.is_empty() { "(default)" } else { name };
        let conn = Connection::open_broker(name)
            .map_err(|e| cap_error(e, &format!("Kafka broker {shown}")))?;
        let admin = Rc::new(Admin::wrap(conn, name.to_string()));
        CONNS.with(|c| c.borrow_mut().insert(name.to_string(), admin.clone()));
        Ok(admin)
    }

    /// A connection to explicit bootstrap servers (a self-hosted cluster being verified).
    pub fn endpoint(ep: &Endpoint) -> Result<Admin> {
        let conn = Connection::open_endpoint(ep)
            .map_err(|e| cap_error(e, &format!("Kafka at {}", ep.bootstrap_servers.join(","))))?;
        Ok(Admin::wrap(conn, String::new()))
    }

    pub fn forget(name: &str) {
        CONNS.with(|c| c.borrow_mut().remove(name));
    }

    pub fn where_to(&self) -> Endpoint {
        self.conn.endpoint()
    }

    /// The highest version of `R` both we and the cluster speak (and the host permits).
    pub fn version_of<R: Request>(&self) -> Option<i16> {
        let ours = R::VERSIONS;
        let theirs = self.apis.iter().find(|a| a.api_key == R::KEY)?;
        let (lo, hi) = (
            ours.min.max(theirs.min_version),
            ours.max.min(theirs.max_version),
        );
        (lo <= hi).then_some(hi)
    }

    pub fn supports<R: Request>(&self) -> bool {
        self.version_of::<R>().is_some()
    }

    /// One request, retried while the cluster says "not now" at the transport level.
    pub fn call<R: Request>(&self, req: &R, route: Route, what: &str) -> Result<R::Response> {
        let version = self.version_of::<R>().ok_or_else(|| {
            Error::Unimplemented(format!(
                "{what}: the cluster (or the host's grant) offers no version of API {} this provider speaks ({}..{})",
                R::KEY,
                R::VERSIONS.min,
                R::VERSIONS.max
            ))
        })?;
        let mut body = BytesMut::new();
        req.encode(&mut body, version)
            .map_err(|e| Error::Internal(format!("{what}: encoding the request: {e}")))?;
        let mut attempt = 0u32;
        let reply = loop {
            match self
                .conn
                .request(R::KEY, version, &body, route, CALL_TIMEOUT_MS)
            {
                Ok(r) => break r,
                Err(CapError::Unavailable(m)) if attempt + 1 < ATTEMPTS => {
                    crate::log::debug(&format!("{what}: {m}; retrying"));
                }
                Err(e) => return Err(cap_error(e, what)),
            }
            std::thread::sleep(std::time::Duration::from_millis(250 << attempt));
            attempt += 1;
        };
        decode::<R::Response>(&reply, version, what)
    }
}

/// A response body at `version`. Pure (no host call).
pub fn decode<T: Decodable + Message>(reply: &[u8], version: i16, what: &str) -> Result<T> {
    let mut buf = bytes::Bytes::copy_from_slice(reply);
    T::decode(&mut buf, version)
        .map_err(|e| Error::Internal(format!("{what}: the reply does not decode: {e}")))
}

/// A `name` that differs from the recorded one: Kafka renames nothing, so a replace.
pub fn renamed(
    outputs: &crate::model::Json,
    want: &str,
    reason: &str,
) -> Option<crate::model::Change> {
    let now = outputs
        .get("name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    (!now.is_empty() && now != want).then(|| crate::model::Change {
        path: "name".into(),
        old: serde_json::json!(now),
        new: serde_json::json!(want),
        force_new: true,
        reason: reason.into(),
    })
}
