//! The `kafka` capability: Kafka's binary protocol, limited to cluster administration
//! (`apis.rs`), to granted clusters only, with credentials the host attaches itself.
//!
//! A cluster is granted by its bootstrap servers (`allow_kafka` in the iac.provider module's
//! config, a self-hosted Kafka broker's declared `bootstrap_servers`, brokers in state, brokers
//! a create or update of this run reported); the brokers its Metadata advertises are reachable
//! through it. The component sends request bodies; the host frames them (`conn.rs`), judges
//! them against the call's grant (`scope.rs`), and routes them (`cluster.rs`). Credentials are
//! secret handles, resolved only when connecting (`sasl.rs`); error texts are redacted.

pub mod apis;
mod cluster;

/// The wire protocol's types, as this capability frames and decodes them (for hosts and tests
/// that speak to it).
pub use kafka_protocol as protocol;
mod conn;
pub mod endpoint;
mod guard;
mod sasl;
pub mod scope;

#[cfg(test)]
mod tests;

use super::CapError;
use super::brokers::Registry;
use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::kafka::{
    ApiRange, Endpoint, Host, HostConnection, Route, Sasl,
};
use apis::Changes;
use cluster::{Call, Cluster, Ctx};
use endpoint::{KafkaEndpoint, Mechanism, SaslSpec};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use wasmtime::component::Resource;

/// A connection handed to the guest: which cluster, which broker resource, which endpoint.
pub struct KafkaConn {
    cluster: Arc<Cluster>,
    broker: String,
}

#[derive(Default)]
pub struct KafkaCap {
    grants: RwLock<BTreeSet<String>>,
    pub brokers: Registry<KafkaEndpoint>,
    clusters: tokio::sync::Mutex<HashMap<KafkaEndpoint, Arc<Cluster>>>,
}

impl KafkaCap {
    /// Grants a bootstrap server (`host:port`).
    pub fn grant(&self, server: &str) {
        if let Some(k) = endpoint::grant_key(server) {
            self.grants.write().expect("grants").insert(k);
        }
    }

    pub fn granted(&self, server: &str) -> bool {
        endpoint::grant_key(server)
            .is_some_and(|k| self.grants.read().expect("grants").contains(&k))
    }

    /// Records a Kafka broker from its outputs; returns whether they named an endpoint.
    pub fn register_broker(&self, name: &str, outputs: &Value) -> bool {
        match KafkaEndpoint::from_json(outputs) {
            Some(e) => {
                self.brokers.insert(name, e);
                true
            }
            None => false,
        }
    }

    /// Learns a broker from its provider id (`kafka/<name>?bootstrap=..&security=..[&sasl=..]`),
    /// for a process that has only refs; its servers were produced by this provider in an
    /// earlier run, so they are granted. Returns whether what is known changed.
    pub fn learn_from_id(&self, name: &str, provider_id: &str) -> bool {
        let Some(e) = KafkaEndpoint::from_id(provider_id) else {
            return false;
        };
        let servers = e.bootstrap.clone();
        let same = |known: &KafkaEndpoint, new: &KafkaEndpoint| {
            known.bootstrap == new.bootstrap
                && known.tls == new.tls
                && known.sasl.as_ref().map(|s| s.mechanism)
                    == new.sasl.as_ref().map(|s| s.mechanism)
        };
        if !self.brokers.learn(name, e, same) {
            return false;
        }
        for s in &servers {
            self.grant(s);
        }
        true
    }

    /// The cluster behind an endpoint, connected on first use; every bootstrap server must be
    /// granted.
    async fn cluster(&self, e: &KafkaEndpoint, ctx: &Ctx<'_>) -> Result<Arc<Cluster>, CapError> {
        for s in &e.bootstrap {
            if endpoint::grant_key(s).is_none() {
                return Err(CapError::Invalid(format!(
                    "{s:?} is not a Kafka server address (host:port)"
                )));
            }
            if !self.granted(s) {
                return Err(CapError::Denied(format!(
                    "Kafka bootstrap server {s} is not granted: declare it in the bootstrap_servers of a self_hosted infra.eventbus resource with provider kafka, or add it to `allow_kafka` in the iac.provider module config"
                )));
            }
        }
        let mut clusters = self.clusters.lock().await;
        if let Some(c) = clusters.get(e) {
            return Ok(c.clone());
        }
        let c = Arc::new(Cluster::connect(e, ctx).await?);
        clusters.insert(e.clone(), c.clone());
        Ok(c)
    }
}

fn sasl_from_wit(s: Sasl) -> SaslSpec {
    let (mechanism, (user, password)) = match s {
        Sasl::Plain(c) => (Mechanism::Plain, c),
        Sasl::ScramSha256(c) => (Mechanism::ScramSha256, c),
        Sasl::ScramSha512(c) => (Mechanism::ScramSha512, c),
    };
    SaslSpec {
        mechanism,
        user,
        password,
    }
}

fn sasl_to_wit(s: &SaslSpec) -> Sasl {
    let c = (s.user.clone(), s.password.clone());
    match s.mechanism {
        Mechanism::Plain => Sasl::Plain(c),
        Mechanism::ScramSha256 => Sasl::ScramSha256(c),
        Mechanism::ScramSha512 => Sasl::ScramSha512(c),
    }
}

/// An error as the guest sees it: no secret value in its text.
fn redacted(caps: &super::Caps, e: CapError) -> CapError {
    let r = |m: String| caps.secrets.redact(&m);
    match e {
        CapError::Denied(m) => CapError::Denied(r(m)),
        CapError::Unavailable(m) => CapError::Unavailable(r(m)),
        CapError::Invalid(m) => CapError::Invalid(r(m)),
        CapError::Unknown(m) => CapError::Unknown(r(m)),
    }
}

/// The permitted APIs the cluster serves, in the versions both it and the host speak.
fn permitted_versions(c: &Cluster) -> Vec<ApiRange> {
    apis::APIS
        .iter()
        .filter_map(|a| {
            let r = c.range(a.key, a.frame)?;
            Some(ApiRange {
                api_key: a.key,
                min_version: r.min,
                max_version: r.max,
            })
        })
        .collect()
}

impl HostState {
    async fn open_kafka(
        &mut self,
        e: KafkaEndpoint,
        broker: String,
    ) -> wasmtime::Result<Result<Resource<KafkaConn>, CapError>> {
        let caps = self.caps.clone();
        let ctx = Ctx {
            secrets: &caps.secrets,
            max: caps.limits.max_payload,
        };
        match caps.kafka.cluster(&e, &ctx).await {
            Ok(cluster) => Ok(Ok(self.table.push(KafkaConn { cluster, broker })?)),
            Err(err) => Ok(Err(redacted(&caps, err))),
        }
    }
}

impl Host for HostState {}

impl HostConnection for HostState {
    async fn open_broker(
        &mut self,
        broker: String,
    ) -> wasmtime::Result<Result<Resource<KafkaConn>, CapError>> {
        tracing::debug!(%broker, "kafka.open_broker");
        match self.caps.kafka.brokers.entry(&broker) {
            Ok((name, e)) => self.open_kafka(e, name).await,
            Err(e) => Ok(Err(e)),
        }
    }

    async fn open_endpoint(
        &mut self,
        endpoint: Endpoint,
    ) -> wasmtime::Result<Result<Resource<KafkaConn>, CapError>> {
        tracing::debug!(servers = ?endpoint.bootstrap_servers, "kafka.open_endpoint");
        if endpoint.bootstrap_servers.is_empty() || endpoint.bootstrap_servers.len() > 16 {
            return Ok(Err(CapError::Invalid(
                "an endpoint needs 1 to 16 bootstrap servers".into(),
            )));
        }
        let e = KafkaEndpoint {
            bootstrap: endpoint.bootstrap_servers,
            tls: endpoint.tls,
            sasl: endpoint.sasl.map(sasl_from_wit),
        };
        if let Some(s) = &e.sasl
            && !s.password.starts_with(super::secrets::PREFIX)
        {
            return Ok(Err(CapError::Invalid(
                "the SASL password must be a secret handle ({{secret:NAME}}), never a value".into(),
            )));
        }
        self.open_kafka(e, String::new()).await
    }

    async fn broker(&mut self, this: Resource<KafkaConn>) -> wasmtime::Result<String> {
        Ok(self.table.get(&this)?.broker.clone())
    }

    async fn endpoint(&mut self, this: Resource<KafkaConn>) -> wasmtime::Result<Endpoint> {
        let e = &self.table.get(&this)?.cluster.endpoint;
        Ok(Endpoint {
            bootstrap_servers: e.bootstrap.clone(),
            tls: e.tls,
            sasl: e.sasl.as_ref().map(sasl_to_wit),
        })
    }

    async fn api_versions(&mut self, this: Resource<KafkaConn>) -> wasmtime::Result<Vec<ApiRange>> {
        Ok(permitted_versions(&self.table.get(&this)?.cluster))
    }

    async fn request(
        &mut self,
        this: Resource<KafkaConn>,
        api_key: i16,
        api_version: i16,
        body: Vec<u8>,
        route: Route,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, CapError>> {
        let caps = self.caps.clone();
        let h = self.table.get(&this)?;
        let (cluster, broker) = (h.cluster.clone(), h.broker.clone());
        tracing::debug!(api = %apis::name_of(api_key), api_version, bytes = body.len(), "kafka.request");
        let checked = check(
            &cluster,
            &broker,
            api_key,
            api_version,
            &body,
            &self.grant,
            caps.limits.max_payload,
        );
        let (api, body) = match checked {
            Ok(ok) => ok,
            Err(e) => {
                if matches!(e, CapError::Denied(_)) {
                    tracing::warn!(api = %apis::name_of(api_key), export = self.grant.export, "denied Kafka request");
                }
                return Ok(Err(e));
            }
        };
        let route = match route {
            Route::Any => cluster::Route::Any,
            Route::Controller => cluster::Route::Controller,
            Route::Node(id) => cluster::Route::Node(id),
        };
        let call = Call {
            key: api_key,
            version: api_version,
            body: &body,
            timeout: Duration::from_millis(u64::from(timeout_ms).clamp(100, 60_000)),
            retry: api.changes == Changes::Never,
        };
        let ctx = Ctx {
            secrets: &caps.secrets,
            max: caps.limits.max_payload,
        };
        Ok(match cluster.request(route, &call, &ctx).await {
            Ok(resp) => Ok(resp.to_vec()),
            Err(e) => Err(redacted(&caps, e)),
        })
    }

    async fn drop(&mut self, this: Resource<KafkaConn>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

/// A request the component may send on this connection, in this call: the API permitted, the
/// version one both sides speak, the body within the payload limit and the call's grant.
/// Returns the API and the body to send.
pub fn check(
    cluster: &Cluster,
    broker: &str,
    key: i16,
    version: i16,
    body: &[u8],
    grant: &super::grant::CallGrant,
    max: usize,
) -> Result<(&'static apis::Api, Vec<u8>), CapError> {
    let Some(api) = apis::find(key) else {
        return Err(CapError::Denied(format!(
            "Kafka API {} is not granted: the component may administer topics, partitions, topic configs, consumer groups' offsets and ACLs, never produce or fetch messages, join groups, use transactions, delete records or authenticate (granted: {})",
            apis::name_of(key),
            apis::permitted()
        )));
    };
    let Some(range) = cluster.range(key, api.frame) else {
        return Err(CapError::Invalid(format!(
            "the Kafka cluster serves no version of {} the host can frame ({})",
            api.name, api.frame
        )));
    };
    if version < range.min || version > range.max {
        return Err(CapError::Invalid(format!(
            "{} v{version} is not one this cluster and the host both speak ({range}): ask api-versions",
            api.name
        )));
    }
    if body.len() > max {
        return Err(CapError::Invalid(format!(
            "request body of {} bytes exceeds the {max}-byte limit",
            body.len()
        )));
    }
    Ok((api, scope::check(api, version, body, broker, grant)?))
}
