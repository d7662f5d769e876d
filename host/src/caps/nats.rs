//! The `nats` capability: request/reply on JetStream management subjects only
//! (`$JS.API.>`, or `$JS.<domain>.API.>` for a broker with a domain), to granted endpoints
//! only, with credentials the host attaches itself. Connections are shared by all instances.

use super::CapError;
use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::nats::{Auth, Endpoint, Host, HostConnection};
use async_nats::{Client, ConnectOptions, ServerAddr};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;
use std::time::Duration;
use wasmtime::component::Resource;

/// A connection handed to the guest: which client, which broker, which API prefix.
pub struct ConnHandle {
    entry: BrokerEntry,
    client: Client,
    broker: String,
    prefix: String,
    server_version: String,
}

/// Credentials as secret handles; values are looked up only when connecting.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuthSpec {
    Token(String),
    UserPassword(String, String),
    NkeySeed(String),
    Creds(String),
}

impl AuthSpec {
    /// A broker's `auth` output (`{kind, token | user + password | nkey_seed | creds}`, values
    /// as secret handles), as the component reports it and the plugin saves it.
    pub fn from_json(auth: &Value) -> Option<AuthSpec> {
        let s = |k: &str| auth.get(k).and_then(Value::as_str).map(String::from);
        match auth.get("kind").and_then(Value::as_str) {
            Some("token") => s("token").map(AuthSpec::Token),
            Some("user_password") => s("user")
                .zip(s("password"))
                .map(|(u, p)| AuthSpec::UserPassword(u, p)),
            Some("nkey") => s("nkey_seed").map(AuthSpec::NkeySeed),
            Some("creds") => s("creds").map(AuthSpec::Creds),
            _ => None,
        }
    }

    /// The inverse of [`AuthSpec::from_json`].
    pub fn to_json(&self) -> Value {
        match self {
            AuthSpec::Token(t) => serde_json::json!({"kind": "token", "token": t}),
            AuthSpec::UserPassword(u, p) => {
                serde_json::json!({"kind": "user_password", "user": u, "password": p})
            }
            AuthSpec::NkeySeed(n) => serde_json::json!({"kind": "nkey", "nkey_seed": n}),
            AuthSpec::Creds(c) => serde_json::json!({"kind": "creds", "creds": c}),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEntry {
    pub urls: Vec<String>,
    pub auth: Option<AuthSpec>,
    pub domain: Option<String>,
}

#[derive(Default)]
pub struct NatsCap {
    grants: RwLock<BTreeSet<String>>,
    brokers: super::brokers::Registry<BrokerEntry>,
    clients: tokio::sync::Mutex<HashMap<String, Client>>,
}

/// `scheme://host:port`, with NATS's default ports, for comparing grants.
pub fn grant_key(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let hostport = rest
        .split(['/', '?'])
        .next()?
        .rsplit('@')
        .next()?
        .to_ascii_lowercase();
    if hostport.is_empty() {
        return None;
    }
    let has_port = hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()) && !p.is_empty())
        && !hostport.ends_with(']');
    let port = match scheme.as_str() {
        "nats" | "tls" => "4222",
        "ws" => "80",
        "wss" => "443",
        _ => return None,
    };
    Some(if has_port {
        format!("{scheme}://{hostport}")
    } else {
        format!("{scheme}://{hostport}:{port}")
    })
}

fn auth_from_wit(a: Auth) -> AuthSpec {
    match a {
        Auth::Token(t) => AuthSpec::Token(t),
        Auth::UserPassword((u, p)) => AuthSpec::UserPassword(u, p),
        Auth::NkeySeed(n) => AuthSpec::NkeySeed(n),
        Auth::Creds(c) => AuthSpec::Creds(c),
    }
}

impl NatsCap {
    /// Grants an endpoint (operator policy, or a self-hosted broker's declared url).
    pub fn grant(&self, url: &str) {
        if let Some(k) = grant_key(url) {
            self.grants.write().expect("grants").insert(k);
        }
    }

    pub fn granted(&self, url: &str) -> bool {
        grant_key(url).is_some_and(|k| self.grants.read().expect("grants").contains(&k))
    }

    /// The same check on the url as the connector parses it (WHATWG rules): `grant_key`'s
    /// plain split would read `nats://evil:1#@granted:2` or `ws://evil:1\@granted:2` as the
    /// granted host, while the client dials `evil`.
    fn granted_as_dialled(&self, url: &str) -> bool {
        let Ok(a) = url.parse::<ServerAddr>() else {
            return false;
        };
        let host = if a.host().contains(':') {
            format!("[{}]", a.host())
        } else {
            a.host().to_string()
        };
        self.granted(&format!("{}://{host}:{}", a.scheme(), a.port()))
    }

    pub fn knows(&self, name: &str) -> bool {
        self.brokers.knows(name)
    }

    pub fn broker_names(&self) -> Vec<String> {
        self.brokers.names()
    }

    /// Records a broker from its outputs (`urls`, `domain`, `auth` with secret handles).
    pub fn register_broker(&self, name: &str, outputs: &Value) {
        let urls: Vec<String> = outputs
            .get("urls")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        if urls.is_empty() {
            return;
        }
        let auth = outputs.get("auth").and_then(AuthSpec::from_json);
        let domain = outputs
            .get("domain")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(String::from);
        self.brokers
            .insert(name, BrokerEntry { urls, auth, domain });
    }

    /// Learns a self-hosted broker from its provider id (`self_hosted/<name>?urls=..[&domain=..]`),
    /// for a process that has only refs (wfctl's destroy, status, drift). The endpoint was
    /// produced by this provider in an earlier run, so it is granted. A broker this process
    /// already learned (with its credentials) is left as it is; one only restored from what an
    /// earlier process saved (maybe for another project) takes the endpoint wfctl's state names.
    /// Returns whether what is known changed.
    pub fn learn_from_id(&self, name: &str, provider_id: &str) -> bool {
        let Some(query) = provider_id
            .strip_prefix("self_hosted/")
            .and_then(|r| r.split_once('?'))
            .map(|(_, q)| q)
        else {
            return false;
        };
        let mut urls = Vec::new();
        let mut domain = None;
        for part in query.split('&') {
            match part.split_once('=') {
                Some(("urls", v)) => {
                    urls.extend(v.split(',').filter(|u| !u.is_empty()).map(String::from))
                }
                Some(("domain", v)) if !v.is_empty() => domain = Some(v.to_string()),
                _ => {}
            }
        }
        if urls.is_empty() {
            return false;
        }
        let entry = BrokerEntry {
            urls: urls.clone(),
            auth: None,
            domain,
        };
        // Learned in this process, or saved at this very endpoint: keep it.
        if !self.brokers.learn(name, entry, |known, new| {
            known.urls == new.urls && known.domain == new.domain
        }) {
            return false;
        }
        for u in &urls {
            self.grant(u);
        }
        true
    }

    pub fn forget_broker(&self, name: &str) {
        self.brokers.forget(name);
    }

    /// Every known broker, by name.
    pub fn brokers(&self) -> Vec<(String, BrokerEntry)> {
        self.brokers.all()
    }

    /// Records a broker as an earlier process knew it (credentials still as handles).
    pub fn restore_broker(&self, name: &str, entry: BrokerEntry) {
        self.brokers.restore(name, entry);
    }

    fn entry(&self, name: &str) -> Result<(String, BrokerEntry), CapError> {
        self.brokers.entry(name)
    }

    async fn connect(
        &self,
        e: &BrokerEntry,
        secrets: &super::secrets::SecretStore,
    ) -> Result<Client, CapError> {
        for u in &e.urls {
            if !self.granted(u) || !self.granted_as_dialled(u) {
                return Err(CapError::Denied(format!(
                    "NATS endpoint {u} is not granted: declare it as the url of a self_hosted infra.eventbus resource, or add it to `allow_nats` in the iac.provider module config"
                )));
            }
        }
        let key = format!("{:?}|{:?}", e.urls, e.auth);
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key)
            && c.connection_state() != async_nats::connection::State::Disconnected
        {
            return Ok(c.clone());
        }
        let secret = |h: &str| {
            secrets.resolve(h).ok_or_else(|| {
                CapError::Unknown(format!("secret handle {h} is unknown to the host"))
            })
        };
        let mut opts = ConnectOptions::new()
            .name("eventbus-iac")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(10)))
            .ignore_discovered_servers()
            .max_reconnects(Some(3));
        opts = match &e.auth {
            None => opts,
            Some(AuthSpec::Token(h)) => opts.token(secret(h)?),
            Some(AuthSpec::UserPassword(u, h)) => opts.user_and_password(u.clone(), secret(h)?),
            Some(AuthSpec::NkeySeed(h)) => opts.nkey(secret(h)?),
            Some(AuthSpec::Creds(h)) => opts.credentials(&secret(h)?).map_err(|err| {
                CapError::Invalid(format!("the creds secret is malformed: {err}"))
            })?,
        };
        let addrs: Vec<ServerAddr> = e
            .urls
            .iter()
            .map(|u| {
                u.parse::<ServerAddr>()
                    .map_err(|err| CapError::Invalid(format!("{u}: {err}")))
            })
            .collect::<Result<_, _>>()?;
        let client = opts.connect(addrs).await.map_err(|err| {
            let text = secrets.redact(&err.to_string());
            match err.kind() {
                async_nats::ConnectErrorKind::AuthorizationViolation => CapError::Denied(format!(
                    "{}: the server refused the credentials: {text}",
                    e.urls.join(",")
                )),
                _ => {
                    CapError::Unavailable(format!("cannot connect to {}: {text}", e.urls.join(",")))
                }
            }
        })?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

fn api_prefix(domain: Option<&str>) -> String {
    match domain {
        Some(d) => format!("$JS.{d}.API"),
        None => "$JS.API".into(),
    }
}

/// Only complete JetStream API subjects under this connection's prefix: no wildcards, no
/// other subjects (`$SYS.>`, data subjects...).
pub fn check_subject(prefix: &str, subject: &str) -> Result<(), CapError> {
    let ok_chars = !subject.is_empty()
        && subject.len() <= 512
        && !subject
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>');
    let under = subject
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('.'))
        .is_some_and(|r| !r.is_empty() && r.split('.').all(|t| !t.is_empty()));
    if ok_chars && under {
        Ok(())
    } else {
        Err(CapError::Denied(format!(
            "subject {subject:?} is outside the JetStream management API ({prefix}.>): only JetStream API requests are granted"
        )))
    }
}

/// One JetStream API operation the component may use: its verb, how many names follow it
/// (stream, then consumer), and whether it changes the server.
pub struct Operation {
    pub verb: &'static str,
    pub names: usize,
    pub changes: bool,
}

const fn op(verb: &'static str, names: usize, changes: bool) -> Operation {
    Operation {
        verb,
        names,
        changes,
    }
}

/// Every JetStream API operation granted: account info, and the management of streams and
/// durable consumers. Nothing that reads, deletes or moves messages (`STREAM.MSG.GET`,
/// `DIRECT.GET`, `CONSUMER.MSG.NEXT`, `STREAM.PURGE`, `STREAM.MSG.DELETE`), no snapshots or
/// restores, and no cluster or account administration (peer and server removal, leader
/// step-downs, account purges).
pub const OPERATIONS: &[Operation] = &[
    op("INFO", 0, false),
    op("STREAM.NAMES", 0, false),
    op("STREAM.LIST", 0, false),
    op("STREAM.INFO", 1, false),
    op("STREAM.CREATE", 1, true),
    op("STREAM.UPDATE", 1, true),
    op("STREAM.DELETE", 1, true),
    op("CONSUMER.NAMES", 1, false),
    op("CONSUMER.LIST", 1, false),
    op("CONSUMER.INFO", 2, false),
    op("CONSUMER.CREATE", 2, true),
    op("CONSUMER.DURABLE.CREATE", 2, true),
    op("CONSUMER.DELETE", 2, true),
];

/// The operation a (well-formed) API subject asks for and the names it carries.
fn operation<'a>(prefix: &str, subject: &'a str) -> Option<(&'static Operation, Vec<&'a str>)> {
    let tokens: Vec<&str> = subject
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .split('.')
        .collect();
    OPERATIONS.iter().find_map(|o| {
        let verb: Vec<&str> = o.verb.split('.').collect();
        (tokens.len() == verb.len() + o.names && tokens[..verb.len()] == verb[..])
            .then(|| (o, tokens[verb.len()..].to_vec()))
    })
}

/// The subject names a granted operation, and a change only within what `grant` may change.
pub fn check_operation(
    prefix: &str,
    subject: &str,
    broker: &str,
    grant: &super::grant::CallGrant,
) -> Result<(), CapError> {
    let Some((o, names)) = operation(prefix, subject) else {
        let verb = subject
            .strip_prefix(prefix)
            .unwrap_or(subject)
            .trim_start_matches('.');
        return Err(CapError::Denied(format!(
            "JetStream operation {verb:?} is not granted: the component may manage streams and durable consumers, never read, move or delete messages or administer the cluster or account (granted: {})",
            OPERATIONS
                .iter()
                .map(|o| o.verb)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if !o.changes {
        return Ok(());
    }
    let (stream, consumer) = (names[0], names.get(1).copied());
    if grant.may_write(broker, stream, consumer) {
        Ok(())
    } else {
        Err(CapError::Denied(grant.refusal(&format!(
            "{} on {}",
            o.verb,
            names.join("/")
        ))))
    }
}

impl Host for HostState {}

impl HostConnection for HostState {
    async fn open_broker(
        &mut self,
        broker: String,
    ) -> wasmtime::Result<Result<Resource<ConnHandle>, CapError>> {
        tracing::debug!(%broker, "nats.open_broker");
        let caps = self.caps.clone();
        let (name, entry) = match caps.nats.entry(&broker) {
            Ok(e) => e,
            Err(e) => return Ok(Err(e)),
        };
        let client = match caps.nats.connect(&entry, &caps.secrets).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let h = ConnHandle {
            entry: entry.clone(),
            server_version: client.server_info().version.clone(),
            client,
            broker: name,
            prefix: api_prefix(entry.domain.as_deref()),
        };
        Ok(Ok(self.table.push(h)?))
    }

    async fn open_endpoint(
        &mut self,
        endpoint: Endpoint,
    ) -> wasmtime::Result<Result<Resource<ConnHandle>, CapError>> {
        tracing::debug!(urls = ?endpoint.urls, "nats.open_endpoint");
        if endpoint.urls.is_empty() || endpoint.urls.len() > 16 {
            return Ok(Err(CapError::Invalid(
                "an endpoint needs 1 to 16 urls".into(),
            )));
        }
        if let Some(d) = &endpoint.domain
            && (d.is_empty() || d.contains(['.', '*', '>', ' ']))
        {
            return Ok(Err(CapError::Invalid(format!(
                "{d:?} is not a JetStream domain"
            ))));
        }
        let entry = BrokerEntry {
            urls: endpoint.urls,
            auth: endpoint.auth.map(auth_from_wit),
            domain: endpoint.domain,
        };
        let caps = self.caps.clone();
        let client = match caps.nats.connect(&entry, &caps.secrets).await {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let h = ConnHandle {
            entry: entry.clone(),
            server_version: client.server_info().version.clone(),
            client,
            broker: String::new(),
            prefix: api_prefix(entry.domain.as_deref()),
        };
        Ok(Ok(self.table.push(h)?))
    }

    async fn broker(&mut self, this: Resource<ConnHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&this)?.broker.clone())
    }

    async fn api_prefix(&mut self, this: Resource<ConnHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&this)?.prefix.clone())
    }

    async fn server_version(&mut self, this: Resource<ConnHandle>) -> wasmtime::Result<String> {
        Ok(self.table.get(&this)?.server_version.clone())
    }

    async fn endpoint(&mut self, this: Resource<ConnHandle>) -> wasmtime::Result<Endpoint> {
        let e = &self.table.get(&this)?.entry;
        Ok(Endpoint {
            urls: e.urls.clone(),
            auth: e.auth.clone().map(|a| match a {
                AuthSpec::Token(t) => Auth::Token(t),
                AuthSpec::UserPassword(u, p) => Auth::UserPassword((u, p)),
                AuthSpec::NkeySeed(n) => Auth::NkeySeed(n),
                AuthSpec::Creds(c) => Auth::Creds(c),
            }),
            domain: e.domain.clone(),
        })
    }

    async fn request(
        &mut self,
        this: Resource<ConnHandle>,
        subject: String,
        payload: Vec<u8>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, CapError>> {
        let max = self.caps.limits.max_payload;
        let h = self.table.get(&this)?;
        tracing::debug!(%subject, bytes = payload.len(), "nats.request");
        if let Err(e) = check_subject(&h.prefix, &subject)
            .and_then(|()| check_operation(&h.prefix, &subject, &h.broker, &self.grant))
        {
            tracing::warn!(%subject, export = self.grant.export, "denied NATS request");
            return Ok(Err(e));
        }
        if payload.len() > max {
            return Ok(Err(CapError::Invalid(format!(
                "request payload of {} bytes exceeds the {max}-byte limit",
                payload.len()
            ))));
        }
        let client = h.client.clone();
        let timeout = Duration::from_millis(u64::from(timeout_ms).clamp(100, 60_000));
        let req = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(timeout));
        Ok(match client.send_request(subject.clone(), req).await {
            Ok(msg) if msg.payload.len() > max => Err(CapError::Invalid(format!(
                "reply of {} bytes exceeds the {max}-byte limit",
                msg.payload.len()
            ))),
            Ok(msg) => Ok(msg.payload.to_vec()),
            Err(e) => Err(CapError::Unavailable(match e.kind() {
                async_nats::RequestErrorKind::TimedOut => {
                    format!("{subject}: no reply within {timeout:?}")
                }
                async_nats::RequestErrorKind::NoResponders => format!(
                    "{subject}: no responders (is JetStream enabled, and the domain right?)"
                ),
                _ => format!("{subject}: {e}"),
            })),
        })
    }

    async fn drop(&mut self, this: Resource<ConnHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_jetstream_api_subjects_under_the_prefix_pass() {
        // The management API is allowed; system, data and wildcard subjects are not.
        assert!(check_subject("$JS.API", "$JS.API.STREAM.INFO.ORDERS").is_ok());
        assert!(check_subject("$JS.API", "$JS.API.INFO").is_ok());
        for bad in [
            "$SYS.REQ.SERVER.PING",
            "orders.created",
            "$JS.API.>",
            "$JS.API.STREAM.INFO.*",
            "$JS.API.",
            "$JS.API",
            "$JS.APIX.INFO",
            "$JS.hub.API.INFO",
            "$JS.API..INFO",
        ] {
            assert!(
                matches!(check_subject("$JS.API", bad), Err(CapError::Denied(_))),
                "{bad} must be denied"
            );
        }
        // With a domain only that domain's API is reachable.
        assert!(check_subject("$JS.hub.API", "$JS.hub.API.INFO").is_ok());
        assert!(check_subject("$JS.hub.API", "$JS.API.INFO").is_err());
    }

    #[test]
    fn a_broker_is_learned_from_its_provider_id_without_overriding_a_known_one() {
        // A fresh process with only refs can reach the broker; credentials already known stay.
        let cap = NatsCap::default();
        cap.learn_from_id(
            "b",
            "self_hosted/b?urls=nats://127.0.0.1:4222,nats://127.0.0.1:4223&domain=hub",
        );
        let (_, e) = cap.entry("b").unwrap();
        assert_eq!(e.urls.len(), 2);
        assert_eq!(e.domain.as_deref(), Some("hub"));
        assert!(cap.granted("nats://127.0.0.1:4223"));
        cap.register_broker("c", &serde_json::json!({"urls": ["nats://h:1"], "auth": {"kind": "token", "token": "{{secret:x}}"}}));
        cap.learn_from_id("c", "self_hosted/c?urls=nats://other:1");
        assert_eq!(cap.entry("c").unwrap().1.urls, vec!["nats://h:1"]);
        // Ids of other shapes teach nothing.
        cap.learn_from_id("d", "kubernetes/ns/d");
        assert!(cap.entry("d").is_err());
    }

    #[test]
    fn only_management_operations_are_granted_and_changes_only_in_scope() {
        use crate::caps::grant::CallGrant;
        let read = CallGrant::read_only();
        // Reads pass in any call.
        for ok in [
            "$JS.API.INFO",
            "$JS.API.STREAM.NAMES",
            "$JS.API.STREAM.INFO.S",
            "$JS.API.CONSUMER.LIST.S",
            "$JS.API.CONSUMER.INFO.S.c",
        ] {
            assert!(check_operation("$JS.API", ok, "b", &read).is_ok(), "{ok}");
        }
        // Messages, purges, snapshots and administration are never granted, nor odd forms.
        for bad in [
            "$JS.API.STREAM.MSG.GET.S",
            "$JS.API.DIRECT.GET.S",
            "$JS.API.CONSUMER.MSG.NEXT.S.c",
            "$JS.API.STREAM.PURGE.S",
            "$JS.API.STREAM.MSG.DELETE.S",
            "$JS.API.STREAM.SNAPSHOT.S",
            "$JS.API.STREAM.RESTORE.S",
            "$JS.API.ACCOUNT.PURGE.A",
            "$JS.API.SERVER.REMOVE",
            "$JS.API.STREAM.PEER.REMOVE.S",
            "$JS.API.META.LEADER.STEPDOWN",
            "$JS.API.CONSUMER.CREATE.S",
            "$JS.API.CONSUMER.CREATE.S.c.orders.>",
            "$JS.API.STREAM.INFO",
        ] {
            let all = CallGrant {
                export: "create",
                mutates: true,
                objects: vec![crate::caps::grant::Object {
                    broker: None,
                    stream: "S".into(),
                    consumer: None,
                }],
            };
            let e = check_operation("$JS.API", bad, "b", &all).unwrap_err();
            assert!(format!("{e:?}").contains("not granted"), "{bad}: {e:?}");
        }
        // A change is refused in a read-only call, naming the export.
        let mut plan = CallGrant::read_only();
        plan.export = "plan";
        let e = check_operation("$JS.API", "$JS.API.STREAM.DELETE.S", "b", &plan).unwrap_err();
        assert!(format!("{e:?}").contains("`plan` may only read"), "{e:?}");
    }

    #[test]
    fn grants_compare_scheme_host_and_port_with_default_ports() {
        // nats://h and nats://h:4222 are the same endpoint; ws and nats on one port are not.
        let cap = NatsCap::default();
        cap.grant("nats://Example.com");
        assert!(cap.granted("nats://example.com:4222"));
        assert!(!cap.granted("ws://example.com:4222"));
        assert!(!cap.granted("nats://example.com:4223"));
        assert!(!cap.granted("nats://other:4222"));
    }

    #[test]
    fn urls_are_judged_as_the_client_will_dial_them() {
        // A naive split sees the granted host after the '@'; the url parser sees `evil`.
        let cap = NatsCap::default();
        cap.grant("nats://granted:4222");
        cap.grant("ws://granted:80");
        assert!(cap.granted_as_dialled("nats://granted:4222"));
        assert!(cap.granted_as_dialled("ws://granted"));
        for sneaky in [
            "nats://evil:4222#@granted:4222",
            "ws://evil:80\\@granted:80",
            "nats://granted:4222@evil:4222",
        ] {
            assert!(!cap.granted_as_dialled(sneaky), "{sneaky}");
        }
        // The naive check alone would have let the first two through.
        assert!(cap.granted("nats://evil:4222#@granted:4222"));
        assert!(cap.granted("ws://evil:80\\@granted:80"));
    }
}
