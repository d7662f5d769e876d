//! The capabilities: the only doors out of the sandbox. One module per WIT import, each
//! owning its policy check. Every denial is a typed error naming the grant to add.

pub mod brokers;
pub mod cloud;
pub mod grant;
pub mod http;
pub mod kafka;
pub mod kube_secrets;
pub mod log;
pub mod nats;
pub mod policy;
pub mod secrets;

use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::{capability_types, types};
use crate::runtime::limits::Limits;

pub use capability_types::CapError;

/// Everything every store shares: grants, connections, secrets, limits.
pub struct Caps {
    pub nats: nats::NatsCap,
    pub kafka: kafka::KafkaCap,
    pub secrets: secrets::SecretStore,
    /// Replaceable after start: under wfctl they arrive with `Initialize`.
    pub cloud: std::sync::RwLock<cloud::CloudCap>,
    pub http: std::sync::RwLock<http::HttpCap>,
    pub limits: Limits,
}

impl Caps {
    /// Capabilities with no cloud account granted.
    pub fn new(nats: nats::NatsCap, secrets: secrets::SecretStore, limits: Limits) -> Caps {
        Caps {
            nats,
            kafka: Default::default(),
            secrets,
            cloud: Default::default(),
            http: Default::default(),
            limits,
        }
    }

    pub fn with_kafka(mut self, kafka: kafka::KafkaCap) -> Caps {
        self.kafka = kafka;
        self
    }

    pub fn with_http(self, http: http::HttpCap) -> Caps {
        self.set_http(http);
        self
    }

    pub fn with_cloud(self, cloud: cloud::CloudCap) -> Caps {
        self.set_cloud(cloud);
        self
    }

    pub fn set_cloud(&self, cloud: cloud::CloudCap) {
        *self.cloud.write().expect("cloud grants") = cloud;
    }

    pub fn set_http(&self, http: http::HttpCap) {
        *self.http.write().expect("http grants") = http;
    }
}

/// The answer's headers as the guest may see them: values masked where they carry a secret,
/// names in `drop` left out, and anything that is not text skipped.
pub fn guest_headers(
    caps: &Caps,
    headers: &reqwest::header::HeaderMap,
    drop: &[&str],
) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .filter_map(|(k, v)| {
            let v = v.to_str().ok()?;
            Some((k.as_str().to_string(), caps.secrets.mask(v)))
        })
        .collect()
}

/// What to do with a body longer than the payload limit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    Refuse,
    Truncate,
}

/// Reads an answer's body chunk by chunk, never holding more than the payload limit: a longer
/// one is refused or cut short at the limit. `who` names the call in errors.
pub async fn read_body(
    caps: &Caps,
    mut resp: reqwest::Response,
    who: &str,
    over: Oversize,
) -> Result<Vec<u8>, CapError> {
    let limit = caps.limits.max_payload;
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| CapError::Unavailable(format!("{who}: reading the response: {e}")))?
    {
        if body.len() + chunk.len() > limit {
            if over == Oversize::Refuse {
                return Err(CapError::Invalid(format!(
                    "{who}: the response exceeds the {limit}-byte payload limit"
                )));
            }
            body.extend_from_slice(&chunk[..limit - body.len()]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A body as the guest may see it: text with every secret value masked; binary as it is.
pub fn guest_body(caps: &Caps, body: Vec<u8>) -> Vec<u8> {
    match std::str::from_utf8(&body) {
        Ok(t) => caps.secrets.mask(t).into_bytes(),
        Err(_) => body,
    }
}

impl types::Host for HostState {}
impl capability_types::Host for HostState {}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(max_payload: usize) -> Caps {
        let limits = Limits {
            max_payload,
            ..Limits::default()
        };
        Caps::new(Default::default(), Default::default(), limits)
    }

    fn answer(body: &str) -> reqwest::Response {
        reqwest::Response::from(::http::Response::new(body.to_string()))
    }

    #[tokio::test]
    async fn bodies_are_bounded_by_the_payload_limit() {
        let c = caps(8);
        let ok = read_body(&c, answer("12345678"), "t", Oversize::Refuse).await;
        assert_eq!(ok.unwrap(), b"12345678");
        let cut = read_body(&c, answer("123456789abc"), "t", Oversize::Truncate).await;
        assert_eq!(cut.unwrap(), b"12345678");
        match read_body(&c, answer("123456789abc"), "t", Oversize::Refuse).await {
            Err(CapError::Invalid(m)) => assert!(m.contains("8-byte payload limit"), "{m}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
