//! `infra.eventbus`: a broker. `provider` picks the bus, `deploy_target` where it runs.

use super::{Common, Fields, read_common};
use crate::buses::kafka::cluster::{self as kafka_cluster, KafkaCfg};
use crate::error::FieldDiag;
use crate::model::Json;
use serde_json::{Value, json};

pub const PROVIDERS: &[&str] = &["nats", "kafka", "kinesis"];
pub const TARGETS: &[&str] = &[
    "self_hosted",
    "kubernetes",
    "digitalocean.app_platform",
    "digitalocean.managed_kafka",
    "aws.ecs",
    "aws.eks",
    "aws.msk",
    "aws.kinesis",
];
/// Targets this release can provision.
pub const IMPLEMENTED: &[(&str, &str)] = &[
    ("nats", "self_hosted"),
    ("nats", "digitalocean.app_platform"),
    ("nats", "kubernetes"),
    ("kafka", "self_hosted"),
    ("kinesis", "aws.kinesis"),
];
/// The pairs the original plugin allowed.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "nats",
        &[
            "digitalocean.app_platform",
            "aws.ecs",
            "aws.eks",
            "kubernetes",
            "self_hosted",
        ],
    ),
    (
        "kafka",
        &[
            "digitalocean.managed_kafka",
            "aws.msk",
            "kubernetes",
            "self_hosted",
        ],
    ),
    ("kinesis", &["aws.kinesis"]),
];

/// The host's secret placeholder form; values never reach the guest.
pub const SECRET_PREFIX: &str = "{{secret:";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    Token(String),
    UserPassword(String, String),
    NkeySeed(String),
    Creds(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct BrokerCfg {
    pub provider: String,
    pub deploy_target: String,
    pub urls: Vec<String>,
    pub domain: Option<String>,
    pub credentials: Option<Credentials>,
    pub version: String,
    pub common: Common,
    /// Everything that identifies the broker, compared by diff.
    pub identity: Json,
    /// Where a Kafka cluster is (provider: kafka).
    pub kafka: Option<KafkaCfg>,
}

pub fn parse(resource: &str, config: &Json) -> Result<BrokerCfg, Vec<FieldDiag>> {
    let mut f = Fields::new(resource, config);
    let common = read_common(&mut f);
    let provider = f
        .required_str("provider", "set provider to nats, kafka or kinesis")
        .unwrap_or_default();
    if !provider.is_empty() && !PROVIDERS.contains(&provider.as_str()) {
        f.error(
            "provider",
            format!("{provider:?} is not a bus this provider knows"),
            "use nats, kafka or kinesis",
        );
    }
    let target = f
        .required_str("deploy_target", "set deploy_target, e.g. self_hosted")
        .unwrap_or_default();
    if !target.is_empty() && !TARGETS.contains(&target.as_str()) {
        f.error(
            "deploy_target",
            format!("{target:?} is not a deploy target"),
            format!("use one of: {}", TARGETS.join(", ")),
        );
    } else if let Some((_, ok)) = ALLOWED.iter().find(|(p, _)| *p == provider) {
        if !target.is_empty() && !ok.contains(&target.as_str()) {
            f.error(
                "deploy_target",
                format!("{provider} cannot run on {target}"),
                format!("for {provider} use one of: {}", ok.join(", ")),
            );
        } else if !target.is_empty() && !IMPLEMENTED.contains(&(provider.as_str(), target.as_str()))
        {
            f.error(
                "deploy_target",
                format!("{provider} on {target} is not implemented in this release"),
                "use deploy_target: self_hosted with the address of an existing server",
            );
        }
    }
    let version = f.str("version").unwrap_or_else(|| "2.10".into());
    if version == "latest" {
        f.error(
            "version",
            "\"latest\" is refused: a plan must not change under you",
            "pin a version such as 2.10",
        );
    }
    let _ = f.field(&super::FieldSpec::new(
        "replicas",
        "replicas",
        super::Kind::Int,
        super::Default::None,
        "",
    ));
    let urls = f
        .str_list("url")
        .or_else(|| f.str_list("urls"))
        .unwrap_or_default();
    let mut kinesis_identity = Json::new();
    if provider == "kinesis" {
        crate::buses::kinesis::account::read_config(&mut f, &mut kinesis_identity);
    }
    if target == "self_hosted" && provider == "nats" && urls.is_empty() {
        f.error(
            "url",
            "is required for a self_hosted broker",
            "set url to the NATS server, e.g. nats://127.0.0.1:4222 or ${NATS_URL}",
        );
    }
    for u in &urls {
        if let Some(bad) = invalid_url(u) {
            f.error(
                "url",
                bad,
                "use nats://host:port, tls://host:port, ws://host:port or wss://host[:port]",
            );
        }
    }
    let domain = f.str("domain").filter(|d| !d.is_empty());
    if let Some(d) = &domain
        && d.contains(['.', '*', '>', ' '])
    {
        f.error(
            "domain",
            format!("{d:?} is not a valid JetStream domain"),
            "use letters, digits, - and _",
        );
    }
    let credentials = read_credentials(&mut f);
    let kafka =
        (provider == "kafka").then(|| kafka_cluster::read_config(&mut f, credentials.as_ref()));
    if let Some(mut js) = f.object("jetstream") {
        let enabled = js.bool("enabled");
        if enabled == Some(false) && provider == "nats" {
            js.error(
                "enabled",
                "streams and consumers need JetStream",
                "set jetstream.enabled: true",
            );
        }
        for k in ["max_storage_bytes", "max_memory_bytes", "max_age", "store"] {
            js.ignore(k);
        }
        f.diags.extend(js.finish(&[
            "enabled",
            "max_storage_bytes",
            "max_memory_bytes",
            "max_age",
            "store",
        ]));
    }
    for k in ["limits", "kafka", "kinesis"] {
        if f.raw(k, &[]).is_some() && k != "limits" && k != provider {
            f.error(
                k,
                format!("{k} settings do not apply to a {provider} broker"),
                format!("remove {k}"),
            );
        }
    }
    read_resolved_size(&mut f, config);
    if target == crate::targets::digitalocean::TARGET {
        f.ignore("digitalocean");
        f.diags
            .extend(crate::targets::digitalocean::validate(resource, config));
    }
    if target == crate::targets::kubernetes::TARGET {
        f.ignore("kubernetes");
        f.diags
            .extend(crate::targets::kubernetes::check(resource, config, ""));
    }
    let diags = f.finish(&[
        "provider",
        "deploy_target",
        "version",
        "replicas",
        "url",
        "urls",
        "domain",
        "credentials",
        "jetstream",
        "bootstrap_servers",
        "security_protocol",
        "sasl_mechanism",
        "limits",
        "kafka",
        "kinesis",
        "account",
        "region",
    ]);
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut identity = identity(
        &provider,
        &target,
        &urls,
        domain.as_deref(),
        credentials.as_ref(),
    );
    if let Some(k) = &kafka {
        identity.remove("urls");
        identity.remove("domain");
        kafka_cluster::identity(k, &mut identity);
    }
    if provider == "kinesis" {
        identity.remove("urls");
        identity.remove("domain");
        identity.extend(kinesis_identity);
    }
    Ok(BrokerCfg {
        provider,
        deploy_target: target,
        urls,
        domain,
        credentials,
        version,
        common,
        identity,
        kafka,
    })
}

/// Everything that identifies a broker, as diff compares it (credential kinds, not handles).
/// wfctl resolves an abstract `size` (xs..xl) through ResolveSizing before apply and merges
/// the answer into the config as top-level keys (`instance_type`, `cpu`, `memory`,
/// `storage`). They restate `size`, so they are accepted exactly as our own answer for it;
/// anything else (or without `size`) is refused: `limits` is where a broker's own go.
fn read_resolved_size(f: &mut Fields, config: &Json) {
    let size = config.get("size").and_then(Value::as_str);
    let resolved = size.and_then(|s| crate::provider::resolve_sizing(crate::model::BROKER, s).ok());
    for key in ["instance_type", "cpu", "memory", "storage"] {
        let (Some(value), Some(size), Some((instance_type, specs))) =
            (config.get(key), size, resolved.as_ref())
        else {
            continue; // without a size: an unknown key, reported as such
        };
        let expected = match key {
            "instance_type" => json!(instance_type),
            _ => specs.get(key).cloned().unwrap_or(Value::Null),
        };
        f.ignore(key);
        if *value != expected {
            f.error(
                key,
                format!("{value} is not what size {size:?} resolves to ({expected}); wfctl sets it from size"),
                format!("remove {key}; to set the broker's own resources, use limits.{key}"),
            );
        }
    }
}

pub fn identity(
    provider: &str,
    target: &str,
    urls: &[String],
    domain: Option<&str>,
    credentials: Option<&Credentials>,
) -> Json {
    let mut identity = Json::new();
    identity.insert("provider".into(), json!(provider));
    identity.insert("deploy_target".into(), json!(target));
    identity.insert("urls".into(), json!(urls));
    identity.insert(
        "domain".into(),
        domain.map_or(Value::Null, |d| Value::String(d.to_string())),
    );
    identity.insert("credentials".into(), json!(credentials.map(cred_kind)));
    identity
}

fn cred_kind(c: &Credentials) -> &'static str {
    match c {
        Credentials::Token(_) => "token",
        Credentials::UserPassword(..) => "user_password",
        Credentials::NkeySeed(_) => "nkey",
        Credentials::Creds(_) => "creds",
    }
}

pub fn read_credentials(f: &mut Fields) -> Option<Credentials> {
    let mut c = f.object("credentials")?;
    let secret = |c: &mut Fields, key: &str| -> Option<String> {
        let v = c.str(key)?;
        if !v.starts_with(SECRET_PREFIX) {
            c.error(
                key,
                "credentials must not be written in the file",
                "use secret://NAME or ${ENV_VAR}; the host keeps the value",
            );
            return None;
        }
        Some(v)
    };
    let token = secret(&mut c, "token");
    let user = c.str("user");
    let password = secret(&mut c, "password");
    let nkey = secret(&mut c, "nkey_seed");
    let creds = secret(&mut c, "creds");
    let out = match (token, user, password, nkey, creds) {
        (Some(t), None, None, None, None) => Some(Credentials::Token(t)),
        (None, Some(u), Some(p), None, None) => Some(Credentials::UserPassword(u, p)),
        (None, None, None, Some(n), None) => Some(Credentials::NkeySeed(n)),
        (None, None, None, None, Some(k)) => Some(Credentials::Creds(k)),
        (None, None, None, None, None) => None,
        _ => {
            c.error(
                "",
                "exactly one of token, user+password, nkey_seed or creds",
                "keep one kind of credential",
            );
            None
        }
    };
    let diags = c.finish(&["token", "user", "password", "nkey_seed", "creds"]);
    f.diags.extend(diags);
    out
}

pub fn invalid_url(u: &str) -> Option<String> {
    let Some((scheme, rest)) = u.split_once("://") else {
        return Some(format!("{u:?} has no scheme"));
    };
    if !["nats", "tls", "ws", "wss"].contains(&scheme) {
        return Some(format!("{u:?}: scheme {scheme:?} is not a NATS transport"));
    }
    let host = rest.rsplit('@').next().unwrap_or(rest);
    if host.is_empty() || host.starts_with(':') {
        return Some(format!("{u:?} has no host"));
    }
    if rest.contains('@') {
        return Some(format!("{u:?} embeds credentials in the URL"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Json {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_keys_wfctl_merges_from_size_are_accepted_only_as_our_answer_for_that_size() {
        // wfctl's apply merges ResolveSizing's answer for `size: s` into the config.
        let merged = r#"{"provider":"nats","deploy_target":"self_hosted","url":"nats://127.0.0.1:4222","size":"s","instance_type":"nats-s","cpu":"1","memory":"2Gi","storage":"50Gi"}"#;
        assert!(parse("b", &cfg(merged)).is_ok());
        // A value that is not the answer for that size is refused, naming the field.
        let edited = merged.replace(r#""cpu":"1""#, r#""cpu":"3""#);
        let diags = parse("b", &cfg(&edited)).unwrap_err();
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(format!("{:?}", diags[0]).contains("cpu"), "{diags:?}");
        // Without a size they are unknown keys, as before.
        let without_size = r#"{"provider":"nats","deploy_target":"self_hosted","url":"nats://127.0.0.1:4222","cpu":"1"}"#;
        assert!(parse("b", &cfg(without_size)).is_err());
    }

    #[test]
    fn pilot_broker_parses() {
        // The pilot's broker: nats on self_hosted with one url.
        let b = parse("bmw-eventbus", &cfg(r#"{"iac_provider":"eventbus","provider":"nats","deploy_target":"self_hosted","url":"nats://127.0.0.1:4222","jetstream":{"enabled":true}}"#)).unwrap();
        assert_eq!(b.urls, vec!["nats://127.0.0.1:4222"]);
        assert_eq!(b.deploy_target, "self_hosted");
    }

    #[test]
    fn plain_text_credentials_are_refused() {
        // A token typed into infra.yaml must never be accepted.
        let d = parse("b", &cfg(r#"{"provider":"nats","deploy_target":"self_hosted","url":"nats://h:1","credentials":{"token":"s3cret"}}"#)).unwrap_err();
        assert_eq!(d[0].path, "config.credentials.token");
    }

    #[test]
    fn unimplemented_and_impossible_targets_are_named() {
        // kinesis cannot run on kubernetes; the error names the allowed targets.
        let d = parse(
            "b",
            &cfg(r#"{"provider":"kinesis","deploy_target":"kubernetes"}"#),
        )
        .unwrap_err();
        assert!(
            d.iter()
                .any(|d| d.path == "config.deploy_target" && d.fix.contains("aws.kinesis"))
        );
        let d = parse(
            "b",
            &cfg(r#"{"provider":"nats","deploy_target":"aws.ecs"}"#),
        )
        .unwrap_err();
        assert!(d.iter().any(|d| d.message.contains("not implemented")));
    }

    #[test]
    fn urls_with_embedded_credentials_are_refused() {
        // user:pass@host would leak into state and plans.
        assert!(invalid_url("nats://u:p@h:4222").is_some());
        assert!(invalid_url("wss://nats.example.com").is_none());
    }
}
