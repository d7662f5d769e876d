//! `infra.eventbus` with `provider: kafka`, `deploy_target: self_hosted`: an existing Kafka
//! cluster we do not own. Create verifies it answers and records where it is, with its
//! cluster id, controller, broker count and version; delete only forgets it.

use super::Admin;
use crate::bindings::eventbus::iac::kafka::{Endpoint, Route, Sasl};
use crate::config::Fields;
use crate::config::broker::{BrokerCfg, Credentials};
use crate::error::{Error, Result};
use crate::model::{BROKER, Change, Json, Output, Ref, Spec};
use kafka_protocol::messages::{ApiVersionsRequest, DescribeClusterRequest, MetadataRequest};
use serde_json::{Value, json};

pub const PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
pub const MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
const ID_PREFIX: &str = "kafka/";

/// Where a Kafka cluster is and how to authenticate to it.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaCfg {
    pub bootstrap_servers: Vec<String>,
    pub security_protocol: String,
    pub sasl_mechanism: Option<String>,
}

/// The Kafka keys of a broker's config (`bootstrap_servers`, `security_protocol`,
/// `sasl_mechanism`); credentials are read with every broker's.
pub fn read_config(f: &mut Fields, credentials: Option<&Credentials>) -> KafkaCfg {
    let bootstrap_servers: Vec<String> = f
        .str_list("bootstrap_servers")
        .unwrap_or_default()
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if bootstrap_servers.is_empty() {
        f.error(
            "bootstrap_servers",
            "is required for a self_hosted Kafka cluster",
            "set bootstrap_servers to host:port of one or more brokers, e.g. 127.0.0.1:9092 or ${KAFKA_BOOTSTRAP}",
        );
    }
    for s in &bootstrap_servers {
        if let Some(bad) = invalid_server(s) {
            f.error(
                "bootstrap_servers",
                bad,
                "write host:port, e.g. kafka-1.internal:9092",
            );
        }
    }
    let security_protocol = f
        .str("security_protocol")
        .map(|s| s.to_ascii_uppercase())
        .unwrap_or_else(|| "PLAINTEXT".into());
    if !PROTOCOLS.contains(&security_protocol.as_str()) {
        f.error(
            "security_protocol",
            format!("{security_protocol:?} is not a Kafka security protocol"),
            format!("use one of: {}", PROTOCOLS.join(", ")),
        );
    }
    let sasl = security_protocol.starts_with("SASL_");
    let sasl_mechanism = f.str("sasl_mechanism").map(|s| s.to_ascii_uppercase());
    match (&sasl_mechanism, sasl) {
        (Some(m), _) if !MECHANISMS.contains(&m.as_str()) => f.error(
            "sasl_mechanism",
            format!("{m:?} is not a SASL mechanism this provider speaks"),
            format!("use one of: {}", MECHANISMS.join(", ")),
        ),
        (Some(_), false) => f.error(
            "sasl_mechanism",
            format!("SASL is not used with security_protocol {security_protocol}"),
            "set security_protocol: SASL_SSL (or SASL_PLAINTEXT), or remove sasl_mechanism",
        ),
        (None, true) => f.error(
            "sasl_mechanism",
            format!("is required with security_protocol {security_protocol}"),
            format!("set sasl_mechanism to one of: {}", MECHANISMS.join(", ")),
        ),
        _ => {}
    }
    match (sasl, credentials) {
        (true, Some(Credentials::UserPassword(..))) | (false, None) => {}
        (true, _) => f.error(
            "credentials",
            "SASL needs a user and a password",
            "set credentials: {user: NAME, password: ${ENV_VAR} or secret://NAME}",
        ),
        (false, Some(_)) => f.error(
            "credentials",
            format!("credentials are not used with security_protocol {security_protocol}"),
            "set security_protocol: SASL_SSL (or SASL_PLAINTEXT) with a sasl_mechanism, or remove credentials",
        ),
    }
    KafkaCfg {
        bootstrap_servers,
        security_protocol,
        sasl_mechanism,
    }
}

fn invalid_server(s: &str) -> Option<String> {
    if s.contains("://") {
        return Some(format!("{s:?}: write host:port without a scheme"));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => None,
        _ => Some(format!("{s:?} is not host:port")),
    }
}

/// The identity diff compares: where the cluster is and how we authenticate (not the handles).
pub fn identity(k: &KafkaCfg, identity: &mut Json) {
    identity.insert("bootstrap_servers".into(), json!(k.bootstrap_servers));
    identity.insert("security_protocol".into(), json!(k.security_protocol));
    identity.insert("sasl_mechanism".into(), json!(k.sasl_mechanism));
}

/// `kafka/<resource>?bootstrap=<h:p>,<h:p>&security=<protocol>[&sasl=<mechanism>]`: the endpoint
/// travels with the id, so a process that only has refs can reach the cluster.
pub fn provider_id(resource: &str, k: &KafkaCfg) -> String {
    let mut id = format!(
        "{ID_PREFIX}{resource}?bootstrap={}&security={}",
        k.bootstrap_servers.join(","),
        k.security_protocol
    );
    if let Some(m) = &k.sasl_mechanism {
        id.push_str(&format!("&sasl={m}"));
    }
    id
}

pub fn owns(provider_id: &str) -> bool {
    provider_id.starts_with(ID_PREFIX)
}

pub fn targets(spec: &Spec) -> bool {
    spec.config.get("provider").and_then(Value::as_str) == Some(super::BUS.name)
}

fn endpoint(k: &KafkaCfg, credentials: Option<&Credentials>) -> Endpoint {
    let sasl = match (k.sasl_mechanism.as_deref(), credentials) {
        (Some(m), Some(Credentials::UserPassword(u, p))) => {
            let pair = (u.clone(), p.clone());
            Some(match m {
                "PLAIN" => Sasl::Plain(pair),
                "SCRAM-SHA-256" => Sasl::ScramSha256(pair),
                _ => Sasl::ScramSha512(pair),
            })
        }
        _ => None,
    };
    Endpoint {
        bootstrap_servers: k.bootstrap_servers.clone(),
        tls: k.security_protocol.ends_with("SSL"),
        sasl,
    }
}

/// What the cluster says of itself: id, controller, brokers, and its metadata version.
fn describe(admin: &Admin, resource: &str) -> Result<Json> {
    let mut o = Json::new();
    if admin.supports::<DescribeClusterRequest>() {
        let r = admin.call(
            &DescribeClusterRequest::default(),
            Route::Any,
            "describing the cluster",
        )?;
        if r.error_code != 0 {
            return Err(super::errors::to_error(
                resource,
                "config.bootstrap_servers",
                "describing the cluster",
                r.error_code,
                r.error_message.as_deref(),
            ));
        }
        o.insert("cluster_id".into(), json!(r.cluster_id.as_str()));
        o.insert("controller".into(), json!(r.controller_id.0));
        o.insert("broker_count".into(), json!(r.brokers.len()));
        o.insert(
            "nodes".into(),
            json!(
                r.brokers
                    .iter()
                    .map(|b| format!("{}:{}", b.host.as_str(), b.port))
                    .collect::<Vec<_>>()
            ),
        );
    } else {
        let r = admin.call(
            &MetadataRequest::default().with_topics(Some(vec![])),
            Route::Any,
            "reading cluster metadata",
        )?;
        o.insert(
            "cluster_id".into(),
            json!(r.cluster_id.as_ref().map(|c| c.as_str())),
        );
        o.insert("controller".into(), json!(r.controller_id.0));
        o.insert("broker_count".into(), json!(r.brokers.len()));
    }
    // ApiVersions from v3 names the client; Kafka refuses an empty name.
    let asked = ApiVersionsRequest::default()
        .with_client_software_name(super::str_bytes("eventbus"))
        .with_client_software_version(super::str_bytes(crate::provider::VERSION));
    let versions = admin.call(&asked, Route::Any, "reading the cluster's features")?;
    if let Some(level) = versions
        .finalized_features
        .iter()
        .find(|f| f.name.as_str() == "metadata.version")
        .map(|f| f.max_version_level)
    {
        o.insert("metadata_version".into(), json!(level));
        o.insert("version".into(), json!(release_of(level)));
        // What plan's version checks read, as for a NATS broker.
        o.insert("server_version".into(), json!(release_of(level)));
    }
    Ok(o)
}

/// The Kafka release a `metadata.version` feature level belongs to (KRaft clusters): the
/// release whose default level it is or leads up to, as `kafka-storage version-mapping` of
/// Kafka 4.4 maps them (3.3 = 7, 3.9 = 21, 4.0 = 25, 4.4 = 33). A cluster upgraded without
/// raising its metadata version reports the older release.
pub fn release_of(level: i16) -> String {
    let r = match level {
        ..=0 => "unknown",
        1..=7 => "3.3",
        8 => "3.4",
        9..=11 => "3.5",
        12..=14 => "3.6",
        15..=19 => "3.7",
        20 => "3.8",
        21 => "3.9",
        22..=25 => "4.0",
        26..=27 => "4.1",
        28..=29 => "4.2",
        30 => "4.3",
        31..=33 => "4.4",
        _ => "4.5+",
    };
    r.to_string()
}

fn output(resource: &str, c: &BrokerCfg, k: &KafkaCfg, info: Json) -> Output {
    let mut o = info;
    o.insert("provider".into(), json!(c.provider));
    o.insert("bus".into(), json!(super::BUS.name));
    o.insert("deploy_target".into(), json!(c.deploy_target));
    o.insert("bootstrap_servers".into(), json!(k.bootstrap_servers));
    o.insert("endpoint".into(), json!(k.bootstrap_servers.join(",")));
    o.insert("security_protocol".into(), json!(k.security_protocol));
    o.insert(
        "sasl".into(),
        match (&k.sasl_mechanism, &c.credentials) {
            (Some(m), Some(Credentials::UserPassword(u, p))) => {
                json!({"mechanism": m, "user": u, "password": p})
            }
            _ => Value::Null,
        },
    );
    o.insert("identity".into(), Value::Object(c.identity.clone()));
    Output {
        name: resource.into(),
        rtype: BROKER.into(),
        provider_id: provider_id(resource, k),
        outputs: o,
        sensitive: vec![],
        status: "running".into(),
    }
}

fn kafka_cfg(c: &BrokerCfg) -> Result<&KafkaCfg> {
    c.kafka
        .as_ref()
        .ok_or_else(|| Error::Internal("a Kafka broker without its Kafka settings".into()))
}

pub fn create(spec: &Spec, c: &BrokerCfg) -> Result<Output> {
    let k = kafka_cfg(c)?;
    let admin = Admin::endpoint(&endpoint(k, c.credentials.as_ref()))?;
    let info = describe(&admin, &spec.name)?;
    Admin::forget(&spec.name);
    Ok(output(&spec.name, c, k, info))
}

/// Reads the cluster back through the host's record of it, in the shape create returns.
pub fn read(r: &Ref) -> Result<Output> {
    let admin = Admin::broker(&r.name)?;
    let ep = admin.where_to();
    let (mechanism, credentials) = match ep.sasl {
        Some(Sasl::Plain((u, p))) => (Some("PLAIN"), Some(Credentials::UserPassword(u, p))),
        Some(Sasl::ScramSha256((u, p))) => {
            (Some("SCRAM-SHA-256"), Some(Credentials::UserPassword(u, p)))
        }
        Some(Sasl::ScramSha512((u, p))) => {
            (Some("SCRAM-SHA-512"), Some(Credentials::UserPassword(u, p)))
        }
        None => (None, None),
    };
    let k = KafkaCfg {
        bootstrap_servers: ep.bootstrap_servers,
        security_protocol: match (ep.tls, mechanism.is_some()) {
            (false, false) => "PLAINTEXT",
            (true, false) => "SSL",
            (false, true) => "SASL_PLAINTEXT",
            (true, true) => "SASL_SSL",
        }
        .into(),
        sasl_mechanism: mechanism.map(String::from),
    };
    let mut identity =
        crate::config::broker::identity("kafka", "self_hosted", &[], None, credentials.as_ref());
    identity.remove("urls");
    identity.remove("domain");
    self::identity(&k, &mut identity);
    let c = BrokerCfg {
        provider: "kafka".into(),
        deploy_target: "self_hosted".into(),
        urls: vec![],
        domain: None,
        credentials,
        version: String::new(),
        common: Default::default(),
        identity,
        kafka: Some(k.clone()),
    };
    let info = describe(&admin, &r.name)?;
    let mut out = output(&r.name, &c, &k, info);
    out.provider_id = r.provider_id.clone();
    Ok(out)
}

/// Nothing to remove: the cluster is not ours. The record is forgotten.
pub fn delete(r: &Ref) -> Result<()> {
    Admin::forget(&r.name);
    Ok(())
}

/// Where the cluster is and how it is reached, against the recorded identity: the same rules
/// as a self-hosted NATS server (provider and target replace, the rest updates).
pub fn diff(spec: &Spec, current: &Output) -> Result<Vec<Change>> {
    crate::targets::self_hosted::diff(spec, current)
}
