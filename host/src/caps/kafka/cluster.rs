//! One Kafka cluster as the host reaches it: a connection to a bootstrap server, and one to each
//! broker a request is routed to (a group coordinator, a partition leader, the controller),
//! found through Metadata. Nodes a granted cluster advertises are reachable through it; no
//! other address is. Connections are kept across calls and instances, one request at a time
//! each; one that failed or timed out mid-request is dropped and opened again on next use.

use super::conn::{Conn, Credentials};
use super::endpoint::{KafkaEndpoint, parse_server};
use crate::caps::CapError;
use crate::caps::secrets::SecretStore;
use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// How long opening a connection (TCP, TLS, ApiVersions, SASL) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection's place: a bootstrap server (`None`) or a node by id.
type Slot = Option<i32>;

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Any,
    Controller,
    Node(i32),
}

/// One request of the component's, already checked.
pub struct Call<'a> {
    pub key: i16,
    pub version: i16,
    pub body: &'a [u8],
    pub timeout: Duration,
    /// A read: tried once more on a fresh connection if the one it went out on failed.
    pub retry: bool,
}

/// What connecting needs from the host: the secrets behind credential handles, and the
/// largest response accepted.
pub struct Ctx<'a> {
    pub secrets: &'a SecretStore,
    pub max: usize,
}

#[derive(Default)]
struct Nodes {
    by_id: HashMap<i32, (String, u16)>,
    controller: i32,
}

pub struct Cluster {
    pub endpoint: KafkaEndpoint,
    /// The API versions the bootstrap broker serves: key → (min, max).
    pub versions: HashMap<i16, (i16, i16)>,
    nodes: std::sync::Mutex<Nodes>,
    conns: Mutex<HashMap<Slot, Arc<Mutex<Option<Conn>>>>>,
}

/// The credential values behind an endpoint's handles. The user may be a plain name.
fn credentials(e: &KafkaEndpoint, secrets: &SecretStore) -> Result<Option<Credentials>, CapError> {
    let Some(s) = &e.sasl else {
        return Ok(None);
    };
    if s.password.is_empty() {
        return Err(CapError::Unknown(format!(
            "the SASL credentials for {} are not known to this process: the broker's outputs carry them (create, update or read the infra.eventbus resource)",
            e.bootstrap.join(",")
        )));
    }
    let resolve = |h: &str| {
        secrets.resolve(h).ok_or_else(|| {
            CapError::Unknown(format!(
                "secret handle {h} is unknown to the host (SASL credentials must be secret handles)"
            ))
        })
    };
    let user = if s.user.starts_with(crate::caps::secrets::PREFIX) {
        resolve(&s.user)?
    } else {
        s.user.clone()
    };
    Ok(Some(Credentials {
        mechanism: s.mechanism,
        user,
        password: resolve(&s.password)?,
    }))
}

impl Cluster {
    /// Connects to the first bootstrap server that answers and reads the cluster's brokers.
    pub async fn connect(endpoint: &KafkaEndpoint, ctx: &Ctx<'_>) -> Result<Cluster, CapError> {
        let conn = open_bootstrap(endpoint, ctx).await?;
        let cluster = Cluster {
            endpoint: endpoint.clone(),
            versions: conn.versions.clone(),
            nodes: Default::default(),
            conns: Mutex::new(HashMap::from([(None, Arc::new(Mutex::new(Some(conn))))])),
        };
        cluster.refresh(ctx).await?;
        Ok(cluster)
    }

    /// A cluster that serves these `(key, min, max)` versions and has no connection, for tests.
    #[cfg(test)]
    pub fn serving(versions: &[(i16, i16, i16)]) -> Cluster {
        Cluster {
            endpoint: KafkaEndpoint {
                bootstrap: vec!["127.0.0.1:9092".into()],
                tls: false,
                sasl: None,
            },
            versions: versions.iter().map(|&(k, lo, hi)| (k, (lo, hi))).collect(),
            nodes: Default::default(),
            conns: Default::default(),
        }
    }

    /// The versions of `key` both the cluster and the host (`ours`) speak.
    pub fn range(&self, key: i16, ours: VersionRange) -> Option<VersionRange> {
        let (min, max) = *self.versions.get(&key)?;
        let r = ours.intersect(&VersionRange { min, max });
        (!r.is_empty()).then_some(r)
    }

    /// Sends a request where `route` says; the response's body.
    pub async fn request(
        &self,
        route: Route,
        call: &Call<'_>,
        ctx: &Ctx<'_>,
    ) -> Result<Bytes, CapError> {
        let slot = match route {
            Route::Any => None,
            Route::Controller => Some(self.controller(ctx).await?),
            Route::Node(id) => {
                self.node(id, ctx).await?;
                Some(id)
            }
        };
        match self.send(slot, call, ctx).await {
            Err(CapError::Unavailable(_)) if call.retry => self.send(slot, call, ctx).await,
            other => other,
        }
    }

    async fn send(&self, slot: Slot, call: &Call<'_>, ctx: &Ctx<'_>) -> Result<Bytes, CapError> {
        let timeout = call.timeout;
        let cell = self.conns.lock().await.entry(slot).or_default().clone();
        let mut held = cell.lock().await;
        if held.is_none() {
            *held = Some(self.open(slot, ctx).await?);
        }
        let conn = held.as_mut().expect("opened above");
        let addr = conn.addr.clone();
        let trip = conn.round_trip(call.key, call.version, call.body);
        match tokio::time::timeout(timeout, trip).await {
            Ok(Ok(b)) => Ok(b),
            Ok(Err(e)) => {
                *held = None; // its state is unknown now
                Err(e)
            }
            Err(_) => {
                *held = None;
                Err(CapError::Unavailable(format!(
                    "Kafka broker {addr}: no response within {timeout:?}"
                )))
            }
        }
    }

    async fn open(&self, slot: Slot, ctx: &Ctx<'_>) -> Result<Conn, CapError> {
        let Some(id) = slot else {
            return open_bootstrap(&self.endpoint, ctx).await;
        };
        let (host, port) = self
            .nodes
            .lock()
            .expect("nodes")
            .by_id
            .get(&id)
            .cloned()
            .ok_or_else(|| CapError::Unavailable(format!("node {id} left the cluster")))?;
        let creds = credentials(&self.endpoint, ctx.secrets)?;
        let open = Conn::open(&host, port, self.endpoint.tls, creds.as_ref(), ctx.max);
        tokio::time::timeout(CONNECT_TIMEOUT, open)
            .await
            .unwrap_or_else(|_| {
                Err(CapError::Unavailable(format!(
                    "Kafka broker {host}:{port} (node {id}): no connection within {CONNECT_TIMEOUT:?}"
                )))
            })
    }

    /// Reads the cluster's brokers and controller (Metadata for no topic) from a bootstrap
    /// server; a node whose address changed loses its connection.
    async fn refresh(&self, ctx: &Ctx<'_>) -> Result<(), CapError> {
        let cell = self.conns.lock().await.entry(None).or_default().clone();
        let mut held = cell.lock().await;
        if held.is_none() {
            *held = Some(open_bootstrap(&self.endpoint, ctx).await?);
        }
        let conn = held.as_mut().expect("opened above");
        let ours = VersionRange {
            min: 1,
            max: MetadataRequest::VERSIONS.max,
        };
        let Some(v) = conn.version_for(ApiKey::Metadata, ours) else {
            return Err(CapError::Unavailable(format!(
                "Kafka broker {}: it serves no Metadata version the host speaks",
                conn.addr
            )));
        };
        let req = MetadataRequest::default().with_topics(Some(vec![]));
        let call = conn.call::<_, MetadataResponse>(ApiKey::Metadata, v, &req);
        let resp = match tokio::time::timeout(CONNECT_TIMEOUT, call).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                *held = None;
                return Err(e);
            }
            Err(_) => {
                *held = None;
                return Err(CapError::Unavailable("Kafka Metadata: no response".into()));
            }
        };
        drop(held);
        let mut fresh = HashMap::new();
        for b in &resp.brokers {
            let host = b.host.to_string();
            if let (Some((h, _)), Ok(port)) = (parse_server(&host), u16::try_from(b.port)) {
                fresh.insert(b.node_id.0, (h, port));
            }
        }
        let moved: Vec<i32> = {
            let mut nodes = self.nodes.lock().expect("nodes");
            let moved = nodes
                .by_id
                .iter()
                .filter(|(id, a)| fresh.get(id) != Some(a))
                .map(|(id, _)| *id)
                .collect();
            nodes.by_id = fresh;
            nodes.controller = resp.controller_id.0;
            moved
        };
        let mut conns = self.conns.lock().await;
        for id in moved {
            conns.remove(&Some(id));
        }
        Ok(())
    }

    /// A node the cluster advertises (reading Metadata again if it is not known yet).
    async fn node(&self, id: i32, ctx: &Ctx<'_>) -> Result<(), CapError> {
        if self.knows(id) {
            return Ok(());
        }
        self.refresh(ctx).await?;
        if self.knows(id) {
            return Ok(());
        }
        let mut ids: Vec<i32> = self
            .nodes
            .lock()
            .expect("nodes")
            .by_id
            .keys()
            .copied()
            .collect();
        ids.sort();
        Err(CapError::Invalid(format!(
            "node {id} is not a broker of this Kafka cluster (its brokers: {ids:?})"
        )))
    }

    fn knows(&self, id: i32) -> bool {
        self.nodes.lock().expect("nodes").by_id.contains_key(&id)
    }

    async fn controller(&self, ctx: &Ctx<'_>) -> Result<i32, CapError> {
        let known = |c: &Cluster| {
            let n = c.nodes.lock().expect("nodes");
            n.by_id.contains_key(&n.controller).then_some(n.controller)
        };
        if let Some(id) = known(self) {
            return Ok(id);
        }
        self.refresh(ctx).await?;
        known(self).ok_or_else(|| {
            CapError::Unavailable("the Kafka cluster names no controller among its brokers".into())
        })
    }
}

/// The first bootstrap server that answers; a refusal of the credentials ends the search.
async fn open_bootstrap(e: &KafkaEndpoint, ctx: &Ctx<'_>) -> Result<Conn, CapError> {
    let creds = credentials(e, ctx.secrets)?;
    let mut failures = vec![];
    for server in &e.bootstrap {
        let Some((host, port)) = parse_server(server) else {
            failures.push(format!("{server}: not host:port"));
            continue;
        };
        let open = Conn::open(&host, port, e.tls, creds.as_ref(), ctx.max);
        match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(CapError::Denied(m))) => return Err(CapError::Denied(m)),
            Ok(Err(CapError::Unavailable(m) | CapError::Invalid(m) | CapError::Unknown(m))) => {
                failures.push(m)
            }
            Err(_) => failures.push(format!(
                "{server}: no connection within {CONNECT_TIMEOUT:?}"
            )),
        }
    }
    Err(CapError::Unavailable(format!(
        "cannot reach the Kafka cluster at {}: {}",
        e.bootstrap.join(","),
        failures.join("; ")
    )))
}
