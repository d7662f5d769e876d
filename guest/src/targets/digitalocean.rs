//! `deploy_target: digitalocean.app_platform`: the broker is an App Platform app running the
//! official `nats` image, reachable from outside the app over an HTTPS route to NATS's
//! WebSocket listener (`wss://<app host>`), so the stream and consumer drivers — and the
//! operator running wfctl — can reach it. (The original plugin exposed NATS only on internal
//! ports, so nothing outside the app could create streams.)
//!
//! Every API call goes through the host's `cloud` import to a named account (default
//! `digitalocean`); the host holds the token and the grant. The admin password is a host
//! secret: the guest puts its handle in a SECRET env var of the app spec and the host
//! substitutes the value on the way out.
//!
//! API calls (all under `/v2/apps`): `GET /v2/apps` (create: is the name taken?),
//! `POST /v2/apps`, `GET /v2/apps/{id}`, `PUT /v2/apps/{id}`, `DELETE /v2/apps/{id}`,
//! `GET /v2/apps/{id}/deployments/{deployment_id}` (wait for ACTIVE, or report the cause).

use crate::bindings::eventbus::iac::capability_types::CapError;
use crate::bindings::eventbus::iac::cloud::Request;
use crate::bindings::eventbus::iac::nats::Auth;
use crate::bindings::eventbus::iac::secrets;
use crate::buses::nats::Js;
use crate::config::broker::{self as bcfg, Credentials, SECRET_PREFIX};
use crate::config::{Default as D, FieldSpec, Fields, Kind, duration};
use crate::error::{Error, FieldDiag, Result};
use crate::model::{BROKER, Change, Json, Output, Ref, Spec};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub const TARGET: &str = "digitalocean.app_platform";
pub const DEFAULT_ACCOUNT: &str = "digitalocean";
/// The one service of the app.
const SERVICE: &str = "nats";
/// NATS's WebSocket listener, which is also the service's `http_port`: App Platform routes
/// HTTPS (and WebSocket upgrades) from the app's public host to it.
const WS_PORT: u16 = 8080;
const ADMIN: &str = "admin";
const PASSWORD_LEN: u32 = 32;
/// The env var holding nats-server's config (plain, no secrets) and the secret one.
const ENV_CONFIG: &str = "NATS_CONFIG";
const ENV_PASSWORD: &str = "NATS_ADMIN_PASSWORD";
/// Marks the app as this resource's, so a create that is retried finds its own app.
const ENV_OWNER: &str = "EVENTBUS_RESOURCE";
const CONF_FILE: &str = "/tmp/nats-server.conf";
const STORE_DIR: &str = "/tmp/nats";
const DEFAULT_SLUG: &str = "apps-s-1vcpu-1gb";
const DEFAULT_DEPLOY_TIMEOUT_S: u64 = 900;

/// App Platform regions (`app_spec.yml`).
pub const REGIONS: &[&str] = &[
    "atl", "nyc", "sfo", "tor", "ams", "fra", "lon", "blr", "sgp", "syd",
];

/// Instance sizes (`app_component_instance_base.yml`): slug, milli-vCPUs, memory MiB.
/// The order is the order sizing picks from (cheapest that fits first).
const SLUGS: &[(&str, u32, u32)] = &[
    ("apps-s-1vcpu-0.5gb", 1000, 512),
    ("apps-s-1vcpu-1gb", 1000, 1024),
    ("apps-s-1vcpu-2gb", 1000, 2048),
    ("apps-s-2vcpu-4gb", 2000, 4096),
    ("apps-d-2vcpu-8gb", 2000, 8192),
    ("apps-d-4vcpu-16gb", 4000, 16384),
    ("apps-d-8vcpu-32gb", 8000, 32768),
    ("apps-s-1vcpu-1gb-fixed", 1000, 1024),
    ("apps-d-1vcpu-0.5gb", 1000, 512),
    ("apps-d-1vcpu-1gb", 1000, 1024),
    ("apps-d-1vcpu-2gb", 1000, 2048),
    ("apps-d-1vcpu-4gb", 1000, 4096),
    ("apps-d-2vcpu-4gb", 2000, 4096),
    ("apps-d-4vcpu-8gb", 4000, 8192),
    // Deprecated legacy slugs, still accepted by the API.
    ("basic-xxs", 1000, 512),
    ("basic-xs", 1000, 1024),
    ("basic-s", 1000, 2048),
    ("basic-m", 2000, 4096),
    ("professional-xs", 1000, 1024),
    ("professional-s", 1000, 2048),
    ("professional-m", 2000, 4096),
    ("professional-1l", 1000, 4096),
    ("professional-l", 2000, 8192),
    ("professional-xl", 4000, 16384),
];
/// How many of `SLUGS` sizing picks from.
const PICKABLE: usize = 7;

/// The generic sizes as (milli-vCPUs, MiB), the same table `resolve-sizing` answers with.
const SIZES: &[(&str, u32, u32)] = &[
    ("xs", 250, 512),
    ("s", 1000, 2048),
    ("m", 2000, 4096),
    ("l", 4000, 16384),
    ("xl", 8000, 32768),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Memory,
    File,
}

impl Store {
    fn as_str(self) -> &'static str {
        match self {
            Store::Memory => "memory",
            Store::File => "file",
        }
    }
}

/// A broker's App Platform settings, read from its config.
#[derive(Debug, Clone, PartialEq)]
pub struct DoCfg {
    pub account: String,
    pub app_name: String,
    pub region: Option<String>,
    pub slug: String,
    pub image_tag: String,
    pub store: Store,
    /// JetStream memory limit: the configured one, else half the instance's memory.
    pub max_memory: i64,
    /// JetStream file limit: 0 with memory storage, None (the server's own) when unset.
    pub max_storage: Option<i64>,
    pub domain: Option<String>,
    pub user: String,
    /// The password handle when the config names an operator secret; else one is generated.
    pub password: Option<String>,
    pub deploy_timeout: Duration,
    pub adopt_existing: bool,
}

fn is_app_name(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=32).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !s.ends_with('-')
}

/// "512Mi", "2Gi", "1G", "1073741824" -> MiB.
fn parse_mem_mib(s: &str) -> Option<u32> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let bytes = match unit.trim() {
        "" => n,
        "Ki" => n * 1024.0,
        "Mi" => n * 1024.0 * 1024.0,
        "Gi" => n * 1024.0 * 1024.0 * 1024.0,
        "Ti" => n * 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "K" | "k" => n * 1e3,
        "M" => n * 1e6,
        "G" => n * 1e9,
        "T" => n * 1e12,
        _ => return None,
    };
    Some((bytes / (1024.0 * 1024.0)).ceil() as u32)
}

/// "500m", "1", "0.25" -> milli-vCPUs.
fn parse_cpu_milli(s: &str) -> Option<u32> {
    let s = s.trim();
    if let Some(m) = s.strip_suffix('m') {
        return m.parse::<u32>().ok();
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| *f > 0.0)
        .map(|f| (f * 1000.0).ceil() as u32)
}

/// The cheapest instance size with at least this much CPU and memory.
pub fn slug_for(cpu_milli: u32, mem_mib: u32) -> Option<&'static str> {
    SLUGS[..PICKABLE]
        .iter()
        .find(|(_, c, m)| *c >= cpu_milli && *m >= mem_mib)
        .map(|(s, _, _)| *s)
}

fn slug_mem_mib(slug: &str) -> u32 {
    SLUGS
        .iter()
        .find(|(s, _, _)| *s == slug)
        .map_or(512, |(_, _, m)| *m)
}

fn value_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads and checks the App Platform part of a broker's config. `config` is the whole
/// broker config; the generic keys (provider, version, ...) are checked by `config::broker`.
pub fn parse(resource: &str, config: &Json) -> std::result::Result<DoCfg, Vec<FieldDiag>> {
    let mut diags = Vec::new();
    let mut top = Fields::new(resource, config);
    let err = |diags: &mut Vec<FieldDiag>, path: &str, m: String, fix: &str| {
        diags.push(FieldDiag::new(resource, path, m, fix));
    };

    let mut account = DEFAULT_ACCOUNT.to_string();
    let mut app_name = resource.to_string();
    let mut region = None;
    let mut slug = None;
    let mut image_tag = None;
    let mut ack = false;
    let mut deploy_timeout = Duration::from_secs(DEFAULT_DEPLOY_TIMEOUT_S);
    let mut app_name_given = false;
    if let Some(mut d) = top.object("digitalocean") {
        if let Some(a) = d.str("account") {
            if a.trim().is_empty() {
                d.error(
                    "account",
                    "must not be empty",
                    "name a cloud account of the iac.provider module, e.g. digitalocean",
                );
            } else {
                account = a;
            }
        }
        if let Some(n) = d.str("app_name") {
            app_name = n;
            app_name_given = true;
        }
        region = d.str("region");
        if let Some(r) = &region
            && !REGIONS.contains(&r.as_str())
        {
            d.error(
                "region",
                format!("{r:?} is not an App Platform region"),
                format!("use one of: {}", REGIONS.join(", ")),
            );
        }
        slug = d.str("instance_size_slug");
        if let Some(s) = &slug
            && !SLUGS.iter().any(|(k, _, _)| k == s)
        {
            d.error(
                "instance_size_slug",
                format!("{s:?} is not an App Platform instance size"),
                format!(
                    "use one of: {} (or remove it and set size: xs|s|m|l|xl)",
                    SLUGS[..PICKABLE]
                        .iter()
                        .map(|(s, _, _)| *s)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        image_tag = d.str("image_tag");
        if let Some(t) = &image_tag {
            let bare = t.trim();
            if bare.is_empty()
                || bare == "latest"
                || bare == "alpine"
                || bare.contains(['@', ':', ' '])
            {
                d.error(
                    "image_tag",
                    format!("{t:?} is not a pinned nats image tag"),
                    "pin a tag such as 2.10.22-alpine (\"latest\" is refused: a plan must not change under you)",
                );
            }
        }
        ack = d.bool("acknowledge_ephemeral_storage").unwrap_or(false);
        if let Some(t) = d.str("deploy_timeout") {
            match duration::parse(&t) {
                Ok(ns) if ns >= 1_000_000_000 => {
                    deploy_timeout = Duration::from_nanos(ns as u64);
                }
                Ok(_) => d.error("deploy_timeout", "must be at least 1s", "use e.g. 15m"),
                Err(e) => d.error("deploy_timeout", e, "use a duration such as 15m"),
            }
        }
        diags.extend(d.finish(&[
            "account",
            "app_name",
            "region",
            "instance_size_slug",
            "image_tag",
            "acknowledge_ephemeral_storage",
            "deploy_timeout",
        ]));
    }
    if !is_app_name(&app_name) {
        let (path, fix) = if app_name_given {
            (
                "config.digitalocean.app_name",
                "use 2 to 32 lowercase letters, digits and dashes, starting with a letter",
            )
        } else {
            (
                "config.digitalocean.app_name",
                "the resource name is used by default; set digitalocean.app_name to 2-32 lowercase letters, digits and dashes, starting with a letter",
            )
        };
        err(
            &mut diags,
            path,
            format!("{app_name:?} is not a valid App Platform app name"),
            fix,
        );
    }

    // Sizing: instance_size_slug, else limits {cpu, memory}, else size, else the default.
    let mut need: Option<(u32, u32, &str)> = None;
    if let Some(Value::Object(l)) = config.get("limits") {
        let cpu = l.get("cpu").and_then(value_str);
        let mem = l.get("memory").and_then(value_str);
        let c = match &cpu {
            Some(c) => match parse_cpu_milli(c) {
                Some(v) => Some(v),
                None => {
                    err(
                        &mut diags,
                        "config.limits.cpu",
                        format!("{c:?} is not a CPU quantity"),
                        "write vCPUs such as 1, 0.5 or 500m",
                    );
                    None
                }
            },
            None => None,
        };
        let m = match &mem {
            Some(m) => match parse_mem_mib(m) {
                Some(v) => Some(v),
                None => {
                    err(
                        &mut diags,
                        "config.limits.memory",
                        format!("{m:?} is not a memory quantity"),
                        "write memory such as 512Mi, 2Gi or 4G",
                    );
                    None
                }
            },
            None => None,
        };
        if c.is_some() || m.is_some() {
            need = Some((c.unwrap_or(0), m.unwrap_or(0), "config.limits"));
        }
    }
    let size = config.get("size").and_then(Value::as_str).unwrap_or("");
    if need.is_none() && !size.is_empty() {
        match SIZES.iter().find(|(s, _, _)| *s == size) {
            Some((_, c, m)) => need = Some((*c, *m, "config.size")),
            None => err(
                &mut diags,
                "config.size",
                format!("{size:?} is not a size"),
                "use xs, s, m, l or xl",
            ),
        }
    }
    let slug = match (slug, need) {
        (Some(s), _) => s,
        (None, Some((c, m, path))) => match slug_for(c, m) {
            Some(s) => s.to_string(),
            None => {
                err(
                    &mut diags,
                    path,
                    "no App Platform instance size is that large (the largest has 8 vCPUs and 32 GiB)".into(),
                    "ask for at most 8 vCPUs and 32Gi",
                );
                DEFAULT_SLUG.to_string()
            }
        },
        (None, None) => DEFAULT_SLUG.to_string(),
    };

    let version = config
        .get("version")
        .and_then(value_str)
        .unwrap_or_else(|| "2.10".into());
    let image_tag = image_tag.unwrap_or_else(|| format!("{version}-alpine"));

    // JetStream: App Platform has no persistent volumes.
    let mut store = None;
    let mut max_memory = None;
    let mut max_storage = None;
    if let Some(Value::Object(js)) = config.get("jetstream") {
        let mut j = Fields::new(resource, js);
        let int = |j: &mut Fields, k: &'static str| {
            j.field(&FieldSpec::new(k, k, Kind::Int, D::None, ""))
                .and_then(|v| v.as_i64())
        };
        match js.get("store").and_then(Value::as_str) {
            Some("memory") => store = Some(Store::Memory),
            Some("file") => store = Some(Store::File),
            Some(other) => err(
                &mut diags,
                "config.jetstream.store",
                format!("{other:?} is not a JetStream store"),
                "use memory or file",
            ),
            None => {}
        }
        max_memory = int(&mut j, "max_memory_bytes").filter(|v| *v > 0);
        max_storage = int(&mut j, "max_storage_bytes").filter(|v| *v > 0);
        diags.extend(j.diags.into_iter().map(|mut d| {
            d.path = d.path.replacen("config.", "config.jetstream.", 1);
            d
        }));
    }
    let domain = config
        .get("domain")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .map(String::from);
    let store = match store {
        Some(Store::Memory) => Store::Memory,
        Some(Store::File) if ack => Store::File,
        None if ack => Store::File,
        s => {
            err(
                &mut diags,
                "config.jetstream.store",
                format!(
                    "App Platform has no persistent volumes: JetStream {} storage in an app is lost on every redeploy, restart or instance replacement",
                    if s.is_none() {
                        "file (the default)"
                    } else {
                        "file"
                    }
                ),
                "set jetstream.store: memory (streams on this broker then need storage: memory), or keep file storage and set digitalocean.acknowledge_ephemeral_storage: true to accept that it is lost on every redeploy",
            );
            Store::File
        }
    };
    if store == Store::Memory && max_storage.is_some() {
        err(
            &mut diags,
            "config.jetstream.max_storage_bytes",
            "has no effect with jetstream.store: memory (file storage is switched off)".into(),
            "remove max_storage_bytes, or use store: file with digitalocean.acknowledge_ephemeral_storage: true",
        );
    }
    let max_memory = max_memory.unwrap_or(i64::from(slug_mem_mib(&slug)) * 1024 * 1024 / 2);
    let max_storage = if store == Store::Memory {
        Some(0)
    } else {
        max_storage
    };

    // One server: App Platform instances cannot reach each other on cluster routes.
    if let Some(r) = config.get("replicas").and_then(value_str)
        && r.trim().parse::<i64>().map_or(true, |n| n > 1)
    {
        err(
            &mut diags,
            "config.replicas",
            format!(
                "{r} replicas cannot form a NATS cluster on App Platform: its instances cannot reach each other on cluster routes"
            ),
            "set replicas: 1 (or use deploy_target: kubernetes for a cluster)",
        );
    }
    for k in ["url", "urls"] {
        if config.get(k).is_some_and(|v| !v.is_null()) {
            err(
                &mut diags,
                &format!("config.{k}"),
                "a digitalocean.app_platform broker gets its URL from the app it creates".into(),
                "remove it; the broker's outputs carry wss://<app host>",
            );
        }
    }
    let (user, password) = match bcfg::read_credentials(&mut Fields::new(resource, config)) {
        None => (ADMIN.to_string(), None),
        Some(Credentials::UserPassword(u, p)) => (u, Some(p)),
        Some(_) => {
            err(
                &mut diags,
                "config.credentials",
                "an App Platform broker authenticates with a user and password".into(),
                "remove credentials to have the host generate the admin password, or give user + password (secret://NAME)",
            );
            (ADMIN.to_string(), None)
        }
    };
    if !user
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        || user.is_empty()
    {
        err(
            &mut diags,
            "config.credentials.user",
            format!("{user:?} cannot be written into the server config"),
            "use letters, digits, - and _",
        );
    }
    let adopt_existing = config
        .get("adopt_existing")
        .is_some_and(|v| v == &json!(true) || v == &json!("true"));
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(DoCfg {
        account,
        app_name,
        region,
        slug,
        image_tag,
        store,
        max_memory,
        max_storage,
        domain,
        user,
        password,
        deploy_timeout,
        adopt_existing,
    })
}

/// Whether a broker spec asks for this target.
pub fn targets(spec: &Spec) -> bool {
    spec.config.get("deploy_target").and_then(Value::as_str) == Some(TARGET)
}

/// Diagnostics only (for `config::broker`).
pub fn validate(resource: &str, config: &Json) -> Vec<FieldDiag> {
    parse(resource, config).err().unwrap_or_default()
}

impl DoCfg {
    /// Everything that identifies the broker, as diff compares it. Effective values (the
    /// sizing and memory limit actually used), so a read of the live app gives the same.
    pub fn identity(&self, password: &str) -> Json {
        let mut i = Json::new();
        i.insert("provider".into(), json!("nats"));
        i.insert("deploy_target".into(), json!(TARGET));
        i.insert("account".into(), json!(self.account));
        i.insert("app_name".into(), json!(self.app_name));
        i.insert("region".into(), json!(self.region));
        i.insert("instance_size_slug".into(), json!(self.slug));
        i.insert("image_tag".into(), json!(self.image_tag));
        i.insert(
            "jetstream".into(),
            json!({"store": self.store.as_str(), "max_memory_bytes": self.max_memory, "max_storage_bytes": self.max_storage}),
        );
        i.insert("domain".into(), json!(self.domain));
        i.insert("user".into(), json!(self.user));
        i.insert("password".into(), json!(password));
        i
    }

    /// nats-server's configuration, one line (App Platform env values are single strings).
    /// The password is read from the SECRET env var by nats-server itself.
    pub fn server_config(&self) -> String {
        let mut js = format!(
            "store_dir: \"{STORE_DIR}\"; max_memory_store: {}",
            self.max_memory
        );
        if let Some(s) = self.max_storage {
            js.push_str(&format!("; max_file_store: {s}"));
        }
        if let Some(d) = &self.domain {
            js.push_str(&format!("; domain: \"{d}\""));
        }
        format!(
            "server_name: \"{name}\"; listen: \"0.0.0.0:4222\"; jetstream {{ {js} }}; websocket {{ port: {WS_PORT}; no_tls: true }}; authorization {{ user: \"{user}\"; password: ${ENV_PASSWORD} }}",
            name = self.app_name,
            user = self.user,
        )
    }

    /// The app spec (`app_spec.yml`): one service running the official nats image.
    pub fn app_spec(&self, resource: &str, password: &str) -> Value {
        let run = format!(
            "sh -c 'printf \"%s\\n\" \"${ENV_CONFIG}\" > {CONF_FILE} && exec nats-server -c {CONF_FILE}'"
        );
        let mut spec = json!({
            "name": self.app_name,
            "services": [{
                "name": SERVICE,
                "image": {
                    "registry_type": "DOCKER_HUB",
                    "registry": "library",
                    "repository": "nats",
                    "tag": self.image_tag,
                },
                "run_command": run,
                "instance_count": 1,
                "instance_size_slug": self.slug,
                "http_port": WS_PORT,
                "envs": [
                    {"key": ENV_CONFIG, "scope": "RUN_TIME", "type": "GENERAL", "value": self.server_config()},
                    {"key": ENV_PASSWORD, "scope": "RUN_TIME", "type": "SECRET", "value": password},
                    {"key": ENV_OWNER, "scope": "RUN_TIME", "type": "GENERAL", "value": resource},
                ],
            }],
            "ingress": {"rules": [{
                "match": {"path": {"prefix": "/"}},
                "component": {"name": SERVICE},
            }]},
        });
        if let Some(r) = &self.region {
            spec["region"] = json!(r);
        }
        spec
    }
}

// ---------------------------------------------------------------------------------------------
// The DigitalOcean API through the host's `cloud` import.

/// 429, 5xx and unreachable answers: 7 attempts, 0.25 s doubling to 8 s (about 24 s in all).
const RETRY: super::Retry = super::Retry {
    attempts: 7,
    first: Duration::from_millis(250),
    max: Duration::from_secs(8),
    max_after: Duration::from_secs(30),
};

struct Api<'a> {
    account: &'a str,
}

fn do_message(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            let id = v.get("id").and_then(Value::as_str).unwrap_or("");
            let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
            match (id.is_empty(), msg.is_empty()) {
                (false, false) => format!("{id}: {msg}"),
                (true, false) => msg.to_string(),
                _ => String::from_utf8_lossy(body).chars().take(300).collect(),
            }
        }
        Err(_) => String::from_utf8_lossy(body).chars().take(300).collect(),
    }
}

impl Api<'_> {
    /// One API call; 429, 5xx and unreachable answers are retried with backoff and surface
    /// as rate-limited / transient when they persist. Returns the status and the JSON body.
    fn call(
        &self,
        resource: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let req = Request {
            method: method.to_string(),
            path: path.to_string(),
            headers: vec![
                ("Accept".into(), "application/json".into()),
                ("Content-Type".into(), "application/json".into()),
            ],
            body: body
                .map(|b| serde_json::to_vec(b).unwrap_or_default())
                .unwrap_or_default(),
        };
        let what = format!("DigitalOcean {method} {path} (account {})", self.account);
        let resp =
            super::call_with_retry(self.account, &req, &what, &RETRY, |r| do_message(&r.body))?;
        let status = resp.status;
        if (200..300).contains(&status) {
            let v = if resp.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&resp.body)
                    .map_err(|e| Error::Internal(format!("{what}: the answer is not JSON ({e})")))?
            };
            return Ok((status, v));
        }
        let msg = format!("{what}: {status} {}", do_message(&resp.body));
        Err(match status {
            401 => Error::Unauthorized(format!(
                "{msg} (check the token of cloud account {:?})",
                self.account
            )),
            403 => Error::Forbidden(msg),
            404 => Error::NotFound(msg),
            409 => Error::AlreadyExists(msg),
            400 | 422 => Error::invalid(
                resource,
                "config",
                msg,
                "change the broker's config so App Platform accepts the app spec",
            ),
            _ => Error::Internal(msg),
        })
    }

    fn json(
        &self,
        resource: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        self.call(resource, method, path, body).map(|(_, v)| v)
    }
}

// ---------------------------------------------------------------------------------------------
// Provider ids: the app id; `<account>:<app id>` when the account is not the default one.

pub fn provider_id(account: &str, app_id: &str) -> String {
    if account == DEFAULT_ACCOUNT {
        app_id.to_string()
    } else {
        format!("{account}:{app_id}")
    }
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// (account, app id)
pub fn parse_id(id: &str) -> (String, String) {
    match id.rsplit_once(':') {
        Some((a, app)) => (a.to_string(), app.to_string()),
        None => (DEFAULT_ACCOUNT.to_string(), id.to_string()),
    }
}

/// Whether a broker's provider id is an App Platform app's.
pub fn owns(provider_id: &str) -> bool {
    !provider_id.contains('/') && is_uuid(&parse_id(provider_id).1)
}

// ---------------------------------------------------------------------------------------------
// Deployments

/// The cause of a failed deployment: every failed step's component, code and message.
fn failure_cause(d: &Value) -> String {
    fn walk(step: &Value, out: &mut Vec<String>) {
        if step.get("status").and_then(Value::as_str) == Some("ERROR")
            && let Some(r) = step.get("reason")
        {
            let code = r.get("code").and_then(Value::as_str).unwrap_or("");
            let msg = r.get("message").and_then(Value::as_str).unwrap_or("");
            let comp = step
                .get("component_name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let mut s = String::new();
            if !comp.is_empty() {
                s.push_str(&format!("component {comp}: "));
            }
            s.push_str(code);
            if !msg.is_empty() {
                if !code.is_empty() {
                    s.push_str(": ");
                }
                s.push_str(msg);
            }
            if !s.is_empty() && !out.contains(&s) {
                out.push(s);
            }
        }
        if let Some(steps) = step.get("steps").and_then(Value::as_array) {
            for s in steps {
                walk(s, out);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(p) = d.get("progress") {
        for k in ["steps", "summary_steps"] {
            for s in p.get(k).and_then(Value::as_array).into_iter().flatten() {
                walk(s, &mut out);
            }
        }
    }
    if out.is_empty() {
        "App Platform reported no failed step".into()
    } else {
        out.join("; ")
    }
}

/// Waits until the deployment is ACTIVE; a failed (or cancelled, superseded) one is an error
/// carrying the deployment's own cause.
fn wait_active(
    api: &Api,
    resource: &str,
    app_id: &str,
    dep_id: &str,
    timeout: Duration,
) -> Result<()> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(300);
    let mut last_phase = String::new();
    loop {
        let v = api.json(
            resource,
            "GET",
            &format!("/v2/apps/{app_id}/deployments/{dep_id}"),
            None,
        )?;
        let d = v.get("deployment").cloned().unwrap_or(Value::Null);
        let phase = d
            .get("phase")
            .and_then(Value::as_str)
            .unwrap_or("UNKNOWN")
            .to_string();
        if phase != last_phase {
            crate::log::info(
                "App Platform deployment",
                &[("app", app_id), ("deployment", dep_id), ("phase", &phase)],
            );
            last_phase = phase.clone();
        }
        match phase.as_str() {
            "ACTIVE" => return Ok(()),
            "ERROR" | "CANCELED" | "SUPERSEDED" => {
                return Err(Error::invalid(
                    resource,
                    "config",
                    format!(
                        "App Platform deployment {dep_id} of app {app_id} ended {phase}: {}",
                        failure_cause(&d)
                    ),
                    "fix the cause and apply again: the app is kept, and the next apply redeploys it",
                ));
            }
            _ => {}
        }
        if start.elapsed() >= timeout {
            return Err(Error::Transient(format!(
                "App Platform deployment {dep_id} of app {app_id} is still {phase} after {}s; apply again to keep waiting (or raise digitalocean.deploy_timeout)",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(delay);
        delay = (delay * 3 / 2).min(Duration::from_secs(5));
    }
}

fn deployment_id(app: &Value) -> Option<String> {
    ["pending_deployment", "in_progress_deployment"]
        .iter()
        .find_map(|k| app.pointer(&format!("/{k}/id")).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(String::from)
}

// ---------------------------------------------------------------------------------------------
// Driver operations

fn password_secret_name(resource: &str) -> String {
    format!("{resource}/nats_admin_password")
}

/// The admin password's handle: the operator's named secret, else one the host generates
/// (the same on every run).
fn password_handle(resource: &str, c: &DoCfg) -> Result<String> {
    if let Some(p) = &c.password {
        return Ok(p.clone());
    }
    secrets::generate(&password_secret_name(resource), PASSWORD_LEN).map_err(|e| match e {
        CapError::Denied(m) | CapError::Unknown(m) | CapError::Invalid(m) => {
            Error::Forbidden(format!("generating the admin password of {resource}: {m}"))
        }
        CapError::Unavailable(m) => {
            Error::Transient(format!("generating the admin password of {resource}: {m}"))
        }
    })
}

/// `https://host` (or `http://127.0.0.1:port` from a local fake) -> `wss://host` / `ws://...`.
fn ws_url(live_url: &str) -> Option<String> {
    let (scheme, rest) = live_url.split_once("://")?;
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    match scheme {
        "https" => Some(format!("wss://{host}")),
        "http" => Some(format!("ws://{host}")),
        _ => None,
    }
}

fn owner_of(app: &Value) -> Option<String> {
    app.pointer("/spec/services")?
        .as_array()?
        .iter()
        .flat_map(|s| {
            s.get("envs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|e| e.get("key").and_then(Value::as_str) == Some(ENV_OWNER))
        .and_then(|e| e.get("value").and_then(Value::as_str))
        .map(String::from)
}

/// The app of this name, if any (`GET /v2/apps`, every page).
fn find_by_name(api: &Api, resource: &str, name: &str) -> Result<Option<Value>> {
    let mut page = 1;
    loop {
        let v = api.json(
            resource,
            "GET",
            &format!("/v2/apps?page={page}&per_page=100"),
            None,
        )?;
        let apps = v
            .get("apps")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if let Some(a) = apps
            .iter()
            .find(|a| a.pointer("/spec/name").and_then(Value::as_str) == Some(name))
        {
            return Ok(Some(a.clone()));
        }
        if apps.is_empty()
            || v.pointer("/links/pages/next")
                .and_then(Value::as_str)
                .is_none()
            || page >= 50
        {
            return Ok(None);
        }
        page += 1;
    }
}

fn get_app(api: &Api, resource: &str, app_id: &str) -> Result<Value> {
    let v = api.json(resource, "GET", &format!("/v2/apps/{app_id}"), None)?;
    v.get("app")
        .cloned()
        .ok_or_else(|| Error::Internal(format!("GET /v2/apps/{app_id}: no app in the answer")))
}

/// Connects to the broker over its public WebSocket URL and asks JetStream for its account
/// info, retrying briefly while the route comes up. None when the host has not granted the
/// URL yet (it grants a broker's outputs `urls` when the call returns).
fn verify(
    resource: &str,
    urls: &[String],
    auth: Auth,
    domain: Option<String>,
) -> Result<Option<Js>> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt =
            Js::endpoint(urls, Some(auth.clone()), domain.clone()).and_then(|js| {
                match js.request("INFO", None)? {
                    Ok(_) => Ok(js),
                    Err(e) => Err(crate::buses::nats::api_error(
                        resource,
                        "JetStream account info",
                        e,
                    )),
                }
            });
        match attempt {
            Ok(js) => return Ok(Some(js)),
            Err(Error::Forbidden(m)) if m.contains("not granted") => {
                crate::log::debug(&format!("{resource}: not verified yet: {m}"));
                return Ok(None);
            }
            Err(Error::Transient(m)) if start.elapsed() < Duration::from_secs(60) => {
                crate::log::debug(&format!("{resource}: NATS not reachable yet: {m}"));
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The outputs of a broker from its live app.
fn output(
    resource: &str,
    account: &str,
    app: &Value,
    identity: Json,
    auth: (&str, &str),
    js: Option<&Js>,
) -> Result<Output> {
    let app_id = app
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if app_id.is_empty() {
        return Err(Error::Internal(
            "App Platform answered an app without an id".into(),
        ));
    }
    let live_url = app
        .get("live_url")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let url = ws_url(&live_url).ok_or_else(|| {
        Error::Transient(format!(
            "app {app_id} has no live URL yet ({live_url:?}); apply again once it is live"
        ))
    })?;
    let mut o = Json::new();
    o.insert("provider".into(), json!("nats"));
    o.insert("deploy_target".into(), json!(TARGET));
    o.insert("account".into(), json!(account));
    o.insert("app_id".into(), json!(app_id));
    o.insert("live_url".into(), json!(live_url));
    o.insert("urls".into(), json!([url]));
    o.insert("endpoint".into(), json!(url));
    o.insert(
        "domain".into(),
        identity.get("domain").cloned().unwrap_or(Value::Null),
    );
    o.insert(
        "auth".into(),
        json!({"kind": "user_password", "user": auth.0, "password": auth.1}),
    );
    o.insert(
        "active_deployment_id".into(),
        app.pointer("/active_deployment/id")
            .cloned()
            .unwrap_or(Value::Null),
    );
    let version = js.map(|j| j.server_version.clone()).unwrap_or_default();
    o.insert("server_version".into(), json!(version));
    o.insert("identity".into(), Value::Object(identity));
    Ok(Output {
        name: resource.into(),
        rtype: BROKER.into(),
        provider_id: provider_id(account, &app_id),
        outputs: o,
        sensitive: vec![],
        status: "running".into(),
    })
}

/// Waits for the app's new deployment, then reads it back and connects.
fn finish(api: &Api, resource: &str, c: &DoCfg, app: &Value, password: &str) -> Result<Output> {
    let app_id = app
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(dep) = deployment_id(app) {
        wait_active(api, resource, &app_id, &dep, c.deploy_timeout)?;
    }
    let app = get_app(api, resource, &app_id)?;
    if app.get("active_deployment").is_none() {
        return Err(Error::Transient(format!(
            "app {app_id} has no active deployment yet; apply again to keep waiting"
        )));
    }
    let url = app
        .get("live_url")
        .and_then(Value::as_str)
        .and_then(ws_url)
        .unwrap_or_default();
    Js::forget(resource);
    let js = if url.is_empty() {
        None
    } else {
        verify(
            resource,
            &[url],
            Auth::UserPassword((c.user.clone(), password.to_string())),
            c.domain.clone(),
        )?
    };
    output(
        resource,
        &c.account,
        &app,
        c.identity(password),
        (&c.user, password),
        js.as_ref(),
    )
}

pub fn create(spec: &Spec) -> Result<Output> {
    let c = parse(&spec.name, &spec.config).map_err(Error::Validation)?;
    let api = Api {
        account: &c.account,
    };
    let password = password_handle(&spec.name, &c)?;
    let body = json!({"spec": c.app_spec(&spec.name, &password)});
    // Create is idempotent by name: a create retried after a failure finds its own app.
    if let Some(existing) = find_by_name(&api, &spec.name, &c.app_name)? {
        let id = existing
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let ours = owner_of(&existing).as_deref() == Some(spec.name.as_str());
        if !ours && !c.adopt_existing {
            return Err(Error::AlreadyExists(format!(
                "an App Platform app named {:?} already exists (id {id}) and was not created for {}: set digitalocean.app_name to another name, or adopt_existing: true to take it over",
                c.app_name, spec.name
            )));
        }
        crate::log::info(
            "App Platform app exists: updating it",
            &[("app", &id), ("resource", &spec.name)],
        );
        let v = api.json(&spec.name, "PUT", &format!("/v2/apps/{id}"), Some(&body))?;
        let app = v.get("app").cloned().unwrap_or(existing);
        return finish(&api, &spec.name, &c, &app, &password);
    }
    crate::log::info(
        "creating App Platform app",
        &[("app_name", &c.app_name), ("account", &c.account)],
    );
    let v = api.json(&spec.name, "POST", "/v2/apps", Some(&body))?;
    let app = v
        .get("app")
        .cloned()
        .ok_or_else(|| Error::Internal("POST /v2/apps: no app in the answer".into()))?;
    if app
        .get("id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(Error::Internal(
            "POST /v2/apps answered an app without an id".into(),
        ));
    }
    finish(&api, &spec.name, &c, &app, &password)
}

/// PUT the new spec: App Platform makes a new deployment; wait until it is active or failed.
pub fn update(r: &Ref, spec: &Spec) -> Result<Output> {
    let c = parse(&spec.name, &spec.config).map_err(Error::Validation)?;
    let (account, app_id) = parse_id(&r.provider_id);
    if account != c.account {
        return Err(Error::invalid(
            &spec.name,
            "config.digitalocean.account",
            format!("the app lives in account {account:?}, not {:?}", c.account),
            "an app cannot move between accounts in place; the plan replaces it",
        ));
    }
    let api = Api {
        account: &c.account,
    };
    let password = password_handle(&spec.name, &c)?;
    let body = json!({"spec": c.app_spec(&spec.name, &password)});
    let v = api.json(
        &spec.name,
        "PUT",
        &format!("/v2/apps/{app_id}"),
        Some(&body),
    )?;
    let app = v
        .get("app")
        .cloned()
        .ok_or_else(|| Error::Internal(format!("PUT /v2/apps/{app_id}: no app in the answer")))?;
    finish(&api, &spec.name, &c, &app, &password)
}

/// A value of nats-server's one-line config: `key: value` up to `;` or `}`.
fn conf_value(conf: &str, key: &str) -> Option<String> {
    let pat = format!("{key}: ");
    let at = conf.find(&pat)? + pat.len();
    let rest = &conf[at..];
    let end = rest.find([';', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().trim_matches('"').to_string())
}

/// The identity of a live app, from its spec, in the shape `DoCfg::identity` gives.
fn live_identity(account: &str, app: &Value, password: &str) -> Json {
    let spec = app.get("spec").cloned().unwrap_or(Value::Null);
    let svc = spec
        .get("services")
        .and_then(Value::as_array)
        .and_then(|s| {
            s.iter()
                .find(|s| s.get("name").and_then(Value::as_str) == Some(SERVICE))
        })
        .cloned()
        .unwrap_or(Value::Null);
    let conf = svc
        .get("envs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|e| e.get("key").and_then(Value::as_str) == Some(ENV_CONFIG))
        .and_then(|e| e.get("value").and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let num = |k: &str| conf_value(&conf, k).and_then(|v| v.parse::<i64>().ok());
    let max_storage = num("max_file_store");
    let store = if max_storage == Some(0) {
        "memory"
    } else {
        "file"
    };
    let mut i = Json::new();
    i.insert("provider".into(), json!("nats"));
    i.insert("deploy_target".into(), json!(TARGET));
    i.insert("account".into(), json!(account));
    i.insert(
        "app_name".into(),
        spec.get("name").cloned().unwrap_or(Value::Null),
    );
    i.insert(
        "region".into(),
        spec.get("region").cloned().unwrap_or(Value::Null),
    );
    i.insert(
        "instance_size_slug".into(),
        svc.get("instance_size_slug")
            .cloned()
            .unwrap_or(Value::Null),
    );
    i.insert(
        "image_tag".into(),
        svc.pointer("/image/tag").cloned().unwrap_or(Value::Null),
    );
    i.insert(
        "jetstream".into(),
        json!({"store": store, "max_memory_bytes": num("max_memory_store"), "max_storage_bytes": max_storage}),
    );
    i.insert("domain".into(), json!(conf_value(&conf, "domain")));
    i.insert("user".into(), json!(conf_value(&conf, "user")));
    i.insert("password".into(), json!(password));
    i
}

/// Reads the app back (404: not found) and connects through the endpoint the host knows.
pub fn read(r: &Ref) -> Result<Output> {
    let (account, app_id) = parse_id(&r.provider_id);
    let api = Api { account: &account };
    let app = get_app(&api, &r.name, &app_id)?;
    // Credentials: the handles the host holds for this broker (from state), else the
    // generated password's handle.
    let known = Js::broker(&r.name).ok();
    let (user, password) = match known.as_ref().and_then(|js| js.where_to().auth) {
        Some(Auth::UserPassword((u, p))) => (u, p),
        _ => {
            let conf_user = live_identity(&account, &app, "")
                .get("user")
                .and_then(Value::as_str)
                .unwrap_or(ADMIN)
                .to_string();
            let p = secrets::named(&password_secret_name(&r.name)).unwrap_or_default();
            (conf_user, p)
        }
    };
    let identity = live_identity(&account, &app, &password);
    let mut out = output(&r.name, &account, &app, identity, (&user, &password), None)?;
    let js = match known {
        Some(js) => Some(js),
        None => {
            let urls: Vec<String> = out
                .outputs
                .get("urls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str().map(String::from))
                .collect();
            let domain = out
                .outputs
                .get("domain")
                .and_then(Value::as_str)
                .map(String::from);
            verify(
                &r.name,
                &urls,
                Auth::UserPassword((user.clone(), password.clone())),
                domain,
            )?
            .map(std::rc::Rc::new)
        }
    };
    if let Some(js) = js {
        match js.request("INFO", None)? {
            Ok(_) => {
                out.outputs
                    .insert("server_version".into(), json!(js.server_version));
            }
            Err(e) => {
                return Err(crate::buses::nats::api_error(
                    &r.name,
                    "JetStream account info",
                    e,
                ));
            }
        }
    }
    out.provider_id = r.provider_id.clone();
    Ok(out)
}

/// Deletes the app (already gone counts as done).
pub fn delete(r: &Ref) -> Result<()> {
    let (account, app_id) = parse_id(&r.provider_id);
    let api = Api { account: &account };
    Js::forget(&r.name);
    match api.call(&r.name, "DELETE", &format!("/v2/apps/{app_id}"), None) {
        Ok(_) | Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Where a changed identity key lives in the user's config, and whether it forces a new app.
fn change_of(key: &str) -> (String, bool, &'static str) {
    match key {
        "provider" | "deploy_target" => (
            key.into(),
            true,
            "a broker cannot change its bus or deploy target in place",
        ),
        "account" => (
            "digitalocean.account".into(),
            true,
            "an app cannot move between DigitalOcean accounts",
        ),
        "region" => (
            "digitalocean.region".into(),
            true,
            "App Platform cannot move an app to another region in place",
        ),
        "app_name" | "instance_size_slug" | "image_tag" => {
            (format!("digitalocean.{key}"), false, "")
        }
        "user" | "password" => (format!("credentials.{key}"), false, ""),
        other => (other.into(), false, ""),
    }
}

pub fn diff(spec: &Spec, current: &Output) -> Result<Vec<Change>> {
    let c = parse(&spec.name, &spec.config).map_err(Error::Validation)?;
    let live = super::recorded_identity(current);
    // The password handle is the host's; a generated one keeps its handle across runs.
    let password = match &c.password {
        Some(p) => p.clone(),
        None => live
            .get("password")
            .and_then(Value::as_str)
            .filter(|p| p.starts_with(SECRET_PREFIX))
            .map(String::from)
            .unwrap_or_default(),
    };
    let want = c.identity(&password);
    let mut out = Vec::new();
    for (k, w) in &want {
        let have = live.get(k).cloned().unwrap_or(Value::Null);
        if k == "jetstream" {
            for sub in ["store", "max_memory_bytes", "max_storage_bytes"] {
                let (h, n) = (
                    have.get(sub).cloned().unwrap_or(Value::Null),
                    w.get(sub).cloned().unwrap_or(Value::Null),
                );
                if h != n {
                    out.push(Change {
                        path: format!("jetstream.{sub}"),
                        old: h,
                        new: n,
                        force_new: false,
                        reason: String::new(),
                    });
                }
            }
            continue;
        }
        if k == "password" && c.password.is_none() && !live.contains_key("password") {
            continue;
        }
        if &have != w {
            let (path, force, why) = change_of(k);
            out.push(Change {
                path,
                old: have,
                new: w.clone(),
                force_new: force,
                reason: if force {
                    why.to_string()
                } else {
                    String::new()
                },
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Json {
        serde_json::from_str(text).unwrap()
    }

    const BASE: &str = r#"{"provider":"nats","deploy_target":"digitalocean.app_platform","version":"2.10","jetstream":{"enabled":true,"store":"memory"},"digitalocean":{"region":"nyc"}}"#;

    #[test]
    fn file_storage_needs_an_explicit_acknowledgement() {
        // App Platform has no volumes: file storage (the default) is refused, naming the fix.
        let d = parse(
            "bus",
            &cfg(r#"{"provider":"nats","deploy_target":"digitalocean.app_platform"}"#),
        )
        .unwrap_err();
        let d = d
            .iter()
            .find(|d| d.path == "config.jetstream.store")
            .expect("store diagnostic");
        assert!(d.message.contains("no persistent volumes"), "{d:?}");
        assert!(
            d.fix.contains("acknowledge_ephemeral_storage: true")
                && d.fix.contains("store: memory"),
            "{d:?}"
        );
        let ok = parse("bus", &cfg(r#"{"provider":"nats","deploy_target":"digitalocean.app_platform","digitalocean":{"acknowledge_ephemeral_storage":true}}"#)).unwrap();
        assert_eq!(ok.store, Store::File);
        assert_eq!(parse("bus", &cfg(BASE)).unwrap().store, Store::Memory);
    }

    #[test]
    fn sizing_prefers_slug_then_limits_then_size() {
        // An explicit slug wins; limits pick the cheapest size that fits; size maps like resolve-sizing.
        let mut c = cfg(BASE);
        c.insert("size".into(), json!("m"));
        assert_eq!(parse("bus", &c).unwrap().slug, "apps-s-2vcpu-4gb");
        c.insert("limits".into(), json!({"cpu": "500m", "memory": "1Gi"}));
        assert_eq!(parse("bus", &c).unwrap().slug, "apps-s-1vcpu-1gb");
        c["digitalocean"]["instance_size_slug"] = json!("apps-d-4vcpu-8gb");
        assert_eq!(parse("bus", &c).unwrap().slug, "apps-d-4vcpu-8gb");
        assert_eq!(parse("bus", &cfg(BASE)).unwrap().slug, DEFAULT_SLUG);
    }

    #[test]
    fn the_app_spec_exposes_nats_over_an_https_route_to_the_websocket_listener() {
        // The original plugin's flaw: NATS only on internal ports. Here the http_port is NATS's
        // websocket listener and the ingress routes "/" to it.
        let c = parse("bus", &cfg(BASE)).unwrap();
        let s = c.app_spec("bus", "{{secret:bus/nats_admin_password}}");
        let svc = &s["services"][0];
        assert_eq!(svc["http_port"], json!(WS_PORT));
        assert_eq!(svc["image"]["repository"], json!("nats"));
        assert_eq!(svc["image"]["tag"], json!("2.10-alpine"));
        assert_eq!(
            s["ingress"]["rules"][0]["component"]["name"],
            json!(SERVICE)
        );
        let conf = c.server_config();
        assert!(
            conf.contains("websocket { port: 8080; no_tls: true }"),
            "{conf}"
        );
        assert!(conf.contains("max_file_store: 0"), "{conf}");
        assert!(conf.contains("password: $NATS_ADMIN_PASSWORD"), "{conf}");
        let secret = svc["envs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == json!("SECRET"))
            .unwrap();
        assert_eq!(secret["value"], json!("{{secret:bus/nats_admin_password}}"));
    }

    #[test]
    fn the_live_identity_reads_back_what_the_config_asked_for() {
        // A read of the app the spec describes must not show a diff (no-op re-plan after refresh).
        let c = parse("bus", &cfg(BASE)).unwrap();
        let app = json!({"id": "x", "spec": c.app_spec("bus", "EV[1:abc]")});
        assert_eq!(
            live_identity("digitalocean", &app, "{{secret:p}}"),
            c.identity("{{secret:p}}")
        );
    }

    #[test]
    fn latest_replicas_and_urls_are_refused() {
        let d = parse("bus", &cfg(r#"{"provider":"nats","deploy_target":"digitalocean.app_platform","replicas":3,"url":"nats://x:1","jetstream":{"store":"memory"},"digitalocean":{"image_tag":"latest"}}"#)).unwrap_err();
        let paths: Vec<&str> = d.iter().map(|d| d.path.as_str()).collect();
        assert!(paths.contains(&"config.replicas"), "{paths:?}");
        assert!(paths.contains(&"config.url"), "{paths:?}");
        assert!(
            paths.contains(&"config.digitalocean.image_tag"),
            "{paths:?}"
        );
    }

    #[test]
    fn provider_ids_are_app_ids_and_route_here() {
        let id = "4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf";
        assert_eq!(provider_id(DEFAULT_ACCOUNT, id), id);
        assert!(owns(id));
        assert!(owns(&provider_id("staging", id)));
        assert_eq!(
            parse_id(&provider_id("staging", id)),
            ("staging".into(), id.into())
        );
        assert!(!owns("self_hosted/bus"));
    }

    #[test]
    fn a_failed_deployment_names_its_cause() {
        let d = json!({"phase": "ERROR", "progress": {"steps": [{"name": "deploy", "status": "ERROR", "steps": [
            {"component_name": "nats", "status": "ERROR", "reason": {"code": "DeployContainerExitNonZero", "message": "exited with 1"}}]}]}});
        assert_eq!(
            failure_cause(&d),
            "component nats: DeployContainerExitNonZero: exited with 1"
        );
    }
}
