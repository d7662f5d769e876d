//! The `cloud` capability: calls to named cloud accounts. The operator configures each
//! account in the iac.provider module (`cloud_accounts`): base URL, credentials, and the
//! methods and path prefixes the guest may use. The host authenticates every request itself,
//! puts secret values in place of their handles on the way out, and masks them again on the
//! way back, so the guest never holds one. Anything outside the grant is a typed denial that
//! names the grant to add.

use super::CapError;
use super::secrets::SecretStore;
use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::cloud::{Host, Request, Response};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Methods and path prefixes one grant allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub methods: Vec<String>,
    pub paths: Vec<String>,
}

impl Grant {
    pub fn allows(&self, method: &str, path: &str) -> bool {
        self.methods
            .iter()
            .any(|m| m.eq_ignore_ascii_case(method) || m == "*")
            && self.paths.iter().any(|p| path_under(path, p))
    }
}

/// `path` is `prefix` or below it (on a segment boundary).
fn path_under(path: &str, prefix: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix) || path == prefix.trim_end_matches('/');
    }
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[derive(Clone)]
pub enum Auth {
    None,
    Bearer(String),
    /// PEM client certificate and key (Kubernetes).
    ClientCert(Vec<u8>),
}

#[derive(Clone)]
pub struct Account {
    pub name: String,
    pub base_url: String,
    pub grants: Vec<Grant>,
    auth: Auth,
    client: reqwest::Client,
    /// For a Kubernetes API: Secrets are write-only (`kube_secrets.rs`).
    secrets_rule: Option<std::sync::Arc<super::kube_secrets::SecretsRule>>,
}

#[derive(Default)]
pub struct CloudCap {
    accounts: BTreeMap<String, Account>,
}

/// Problems in the operator's `cloud_accounts` config: (path, message, fix).
pub type ConfigProblem = (String, String, String);

fn read_file(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

fn loopback(host: &str) -> bool {
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

impl CloudCap {
    /// Reads `cloud_accounts` from the iac.provider config. Credential values are added to the
    /// secret store (for masking), never passed on to the guest.
    pub fn from_config(
        config: &Value,
        secrets: &SecretStore,
    ) -> Result<CloudCap, Vec<ConfigProblem>> {
        let mut cap = CloudCap::default();
        let mut problems = Vec::new();
        let Some(accounts) = config.get("cloud_accounts") else {
            return Ok(cap);
        };
        let Some(accounts) = accounts.as_object() else {
            return Err(vec![(
                "config.cloud_accounts".into(),
                "must be a mapping of account names".into(),
                "write cloud_accounts: {NAME: {base_url, token, allow}}".into(),
            )]);
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        for (name, a) in accounts {
            let at = |k: &str| format!("config.cloud_accounts.{name}.{k}");
            let s = |k: &str| a.get(k).and_then(Value::as_str).map(String::from);
            let mut base_url = s("base_url");
            let mut token = s("token");
            let mut ca_pem: Option<Vec<u8>> = None;
            let mut identity_pem: Option<Vec<u8>> = None;
            if let Some(path) = s("kubeconfig") {
                match kubeconfig(&path, s("context").as_deref()) {
                    Ok(k) => {
                        base_url = base_url.or(Some(k.server));
                        token = token.or(k.token);
                        ca_pem = k.ca;
                        identity_pem = k.identity;
                    }
                    Err(e) => problems.push((
                        at("kubeconfig"),
                        e,
                        "point kubeconfig at a readable file and context at one of its contexts"
                            .into(),
                    )),
                }
            }
            if let Some(p) = s("ca_file") {
                match read_file(&p) {
                    Ok(b) => ca_pem = Some(b),
                    Err(e) => problems.push((
                        at("ca_file"),
                        e,
                        "give the path of the API server's CA certificate (PEM)".into(),
                    )),
                }
            }
            if let (Some(c), Some(k)) = (s("client_cert_file"), s("client_key_file")) {
                match (read_file(&c), read_file(&k)) {
                    (Ok(mut c), Ok(k)) => {
                        c.push(b'\n');
                        c.extend(k);
                        identity_pem = Some(c);
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        problems.push((at("client_cert_file"), e, "give readable PEM files".into()))
                    }
                }
            }
            let Some(base) = base_url.map(|b| b.trim_end_matches('/').to_string()) else {
                problems.push((
                    at("base_url"),
                    "is required".into(),
                    "set base_url to the API's https:// URL".into(),
                ));
                continue;
            };
            let (scheme, rest) = base.split_once("://").unwrap_or(("", ""));
            let host = rest.split(['/', ':']).next().unwrap_or("");
            if !(scheme == "https" || scheme == "http" && loopback(host)) {
                problems.push((
                    at("base_url"),
                    format!("{base} is not an https:// URL"),
                    "use https:// (plain http only to a loopback address, for local fakes)".into(),
                ));
                continue;
            }
            let mut grants = Vec::new();
            for (i, g) in a
                .get("allow")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let list = |k: &str| {
                    g.get(k)
                        .and_then(Value::as_array)
                        .map(|v| {
                            v.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                };
                let (methods, paths) = (list("methods"), list("paths"));
                if methods.is_empty()
                    || paths.is_empty()
                    || paths
                        .iter()
                        .any(|p| !p.starts_with('/') || check_path(p).is_err())
                {
                    problems.push((
                        format!("{}[{i}]", at("allow")),
                        "needs methods and absolute paths".into(),
                        "write {methods: [GET, POST], paths: [/v2/apps]}".into(),
                    ));
                    continue;
                }
                grants.push(Grant { methods, paths });
            }
            let auth = match (token, identity_pem.clone()) {
                (Some(t), _) => {
                    secrets.remember(&format!("cloud/{name}/token"), t.clone());
                    Auth::Bearer(t)
                }
                (None, Some(id)) => Auth::ClientCert(id),
                (None, None) => Auth::None,
            };
            // A Kubernetes API (a kubeconfig, or said so): its Secrets are write-only.
            let kubernetes =
                s("kubeconfig").is_some() || s("kind").as_deref() == Some("kubernetes");
            let secrets_rule = kubernetes.then(|| {
                let named: Vec<String> = a
                    .get("secrets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect();
                std::sync::Arc::new(super::kube_secrets::SecretsRule::new(
                    &named,
                    secrets.file_beside(&format!("kubernetes-secrets.{name}.json")),
                ))
            });
            let mut builder = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy();
            if let Some(pem) = &ca_pem {
                match reqwest::Certificate::from_pem_bundle(pem) {
                    Ok(certs) => builder = builder.tls_certs_only(certs),
                    Err(e) => problems.push((
                        at("ca_file"),
                        format!("not a PEM certificate: {e}"),
                        "give the CA certificate in PEM".into(),
                    )),
                }
            }
            if let Auth::ClientCert(pem) = &auth {
                match reqwest::Identity::from_pem(pem) {
                    Ok(id) => builder = builder.identity(id),
                    Err(e) => problems.push((
                        at("client_cert_file"),
                        format!("not a usable client certificate: {e}"),
                        "give the certificate and its key in PEM".into(),
                    )),
                }
            }
            match builder.build() {
                Ok(client) => {
                    cap.accounts.insert(
                        name.clone(),
                        Account {
                            name: name.clone(),
                            base_url: base,
                            grants,
                            auth,
                            client,
                            secrets_rule,
                        },
                    );
                }
                Err(e) => problems.push((
                    at("base_url"),
                    format!("cannot build an HTTP client: {e}"),
                    String::new(),
                )),
            }
        }
        if problems.is_empty() {
            Ok(cap)
        } else {
            Err(problems)
        }
    }

    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(name)
    }

    pub fn names(&self) -> Vec<String> {
        self.accounts.keys().cloned().collect()
    }
}

/// The provider config as the guest may see it: without operator credentials.
pub fn guest_view(config: &Value) -> Value {
    let mut c = config.clone();
    if let Some(o) = c.as_object_mut() {
        o.remove("cloud_accounts");
    }
    c
}

struct Kube {
    server: String,
    token: Option<String>,
    ca: Option<Vec<u8>>,
    identity: Option<Vec<u8>>,
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = T.iter().position(|&t| t == c).ok_or("invalid base64")? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// The parts of a kubeconfig the host needs: server, token or client certificate, CA.
fn kubeconfig(path: &str, context: Option<&str>) -> Result<Kube, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let doc: Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{path} is not YAML: {e}"))?;
    let ctx_name = context
        .map(String::from)
        .or_else(|| {
            doc.get("current-context")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .ok_or("no context given and no current-context")?;
    let find = |list: &str, name: &str| {
        doc.get(list).and_then(Value::as_array).and_then(|a| {
            a.iter()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
                .cloned()
        })
    };
    let ctx =
        find("contexts", &ctx_name).ok_or(format!("context {ctx_name:?} is not in {path}"))?;
    let cluster_name = ctx
        .pointer("/context/cluster")
        .and_then(Value::as_str)
        .ok_or("the context names no cluster")?;
    let user_name = ctx
        .pointer("/context/user")
        .and_then(Value::as_str)
        .unwrap_or("");
    let cluster = find("clusters", cluster_name)
        .ok_or(format!("cluster {cluster_name:?} is not in {path}"))?;
    let user = find("users", user_name).unwrap_or(Value::Null);
    let data = |v: &Value, inline: &str, file: &str| -> Result<Option<Vec<u8>>, String> {
        if let Some(d) = v.get(inline).and_then(Value::as_str) {
            return b64(d).map(Some);
        }
        v.get(file)
            .and_then(Value::as_str)
            .map(read_file)
            .transpose()
    };
    let c = cluster.get("cluster").cloned().unwrap_or(Value::Null);
    let u = user.get("user").cloned().unwrap_or(Value::Null);
    let ca = data(&c, "certificate-authority-data", "certificate-authority")?;
    let cert = data(&u, "client-certificate-data", "client-certificate")?;
    let key = data(&u, "client-key-data", "client-key")?;
    let identity = cert.zip(key).map(|(mut c, k)| {
        c.push(b'\n');
        c.extend(k);
        c
    });
    Ok(Kube {
        server: c
            .get("server")
            .and_then(Value::as_str)
            .ok_or("the cluster has no server")?
            .to_string(),
        token: u.get("token").and_then(Value::as_str).map(String::from),
        ca,
        identity,
    })
}

/// An app a granted cloud account runs for us (App Platform's `live_url`) is the endpoint a
/// broker of this run produced: its WebSocket form is granted for NATS, so the guest can check
/// the broker answers before create returns.
/// A URL the guest itself sent is not one the platform produced (an API that echoes requests
/// must not become a way to grant endpoints), so those are skipped.
fn grant_live_urls(caps: &super::Caps, body: &[u8], sent: &[u8]) {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    match (k.as_str(), x) {
                        ("live_url", Value::String(u)) => out.push(u.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let mut urls = Vec::new();
    walk(&v, &mut urls);
    let sent = String::from_utf8_lossy(sent);
    for u in urls.into_iter().filter(|u| !sent.contains(u.as_str())) {
        let ws = if let Some(rest) = u.strip_prefix("https://") {
            format!("wss://{}", rest.trim_end_matches('/'))
        } else if let Some(rest) = u.strip_prefix("http://") {
            format!("ws://{}", rest.trim_end_matches('/'))
        } else {
            continue;
        };
        tracing::debug!(url = %ws, "granting the NATS endpoint of an app the cloud account runs");
        caps.nats.grant(&ws);
    }
}

/// Refuses paths that could climb out of a granted prefix once a server normalises them.
pub fn check_path(path: &str) -> Result<(), String> {
    let lower = path.to_ascii_lowercase();
    if !path.starts_with('/') {
        return Err("must start with /".into());
    }
    if path.contains("//")
        || path.contains('\\')
        || path.chars().any(|c| c.is_control() || c.is_whitespace())
        || lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
    {
        return Err(
            "contains an empty segment, a backslash, whitespace or an encoded dot or slash".into(),
        );
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("contains . or .. segments".into());
    }
    Ok(())
}

const FORBIDDEN_HEADERS: [&str; 8] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "connection",
    "transfer-encoding",
    "content-length",
    "upgrade",
];

/// Puts secret values where the body carries their handles; JSON bodies get JSON-escaped values.
fn substitute(body: &[u8], secrets: &SecretStore, json: bool) -> Result<Vec<u8>, CapError> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Ok(body.to_vec());
    };
    if !text.contains(super::secrets::PREFIX) {
        return Ok(body.to_vec());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(super::secrets::PREFIX) {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        let end = after.find(super::secrets::SUFFIX).ok_or_else(|| {
            CapError::Invalid("unterminated secret handle in the request body".into())
        })? + super::secrets::SUFFIX.len();
        let handle = &after[..end];
        let value = secrets.resolve(handle).ok_or_else(|| {
            CapError::Unknown(format!("secret handle {handle} is unknown to the host"))
        })?;
        if json {
            let quoted = serde_json::to_string(&value).unwrap_or_default();
            out.push_str(&quoted[1..quoted.len() - 1]);
        } else {
            out.push_str(&value);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    Ok(out.into_bytes())
}

impl Host for HostState {
    async fn call(
        &mut self,
        account: String,
        req: Request,
    ) -> wasmtime::Result<Result<Response, CapError>> {
        let caps = self.caps.clone();
        if let Err(e) = read_only_allows(&self.grant, &req.method, &req.path) {
            tracing::warn!(%account, method = %req.method, export = self.grant.export, "cloud call denied: a change in a read-only call");
            return Ok(Err(e));
        }
        Ok(call(&caps, &account, req).await)
    }
}

/// Outside the mutating exports a cloud API may only be read: GET and HEAD. (Which of an
/// account's objects a mutating call may change is bounded by the account's grant alone: the
/// host cannot tell from a path which resource it belongs to.)
pub fn read_only_allows(
    grant: &super::grant::CallGrant,
    method: &str,
    path: &str,
) -> Result<(), CapError> {
    let method = method.to_ascii_uppercase();
    if grant.mutates || super::grant::READ_ONLY_METHODS.contains(&method.as_str()) {
        Ok(())
    } else {
        Err(CapError::Denied(grant.refusal(&format!("{method} {path}"))))
    }
}

pub async fn call(caps: &super::Caps, account: &str, req: Request) -> Result<Response, CapError> {
    let method = req.method.to_ascii_uppercase();
    tracing::debug!(%account, %method, path = %req.path, bytes = req.body.len(), "cloud.call");
    let (found, names) = {
        let cloud = caps.cloud.read().expect("cloud grants");
        (cloud.account(account).cloned(), cloud.names())
    };
    let Some(acct) = found else {
        tracing::warn!(%account, "cloud call denied: account not granted");
        return Err(CapError::Denied(format!(
            "cloud account {account:?} is not granted: add cloud_accounts.{account} {{base_url, token, allow}} to the iac.provider module config (granted: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    };
    let (path, query) = match req.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (req.path.as_str(), None),
    };
    if let Err(why) = check_path(path) {
        return Err(CapError::Denied(format!(
            "path {:?} is refused: it {why}",
            req.path
        )));
    }
    if query.is_some_and(|q| {
        q.chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '#')
    }) {
        return Err(CapError::Invalid(
            "the query string has whitespace, control characters or a fragment".into(),
        ));
    }
    if !["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"].contains(&method.as_str())
        || !acct.grants.iter().any(|g| g.allows(&method, path))
    {
        tracing::warn!(%account, %method, %path, "cloud call denied: outside the grant");
        return Err(CapError::Denied(format!(
            "{method} {path} on cloud account {account:?} is outside its grant: add {{methods: [{method}], paths: [{path}]}} to cloud_accounts.{account}.allow"
        )));
    }
    let secret_access = match &acct.secrets_rule {
        Some(rule) => match rule.check(&method, path, query) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(%account, %method, %path, "cloud call denied: a Kubernetes Secret");
                return Err(e);
            }
        },
        None => None,
    };
    let secret_access = secret_access.filter(|a| *a != super::kube_secrets::Access::Other);
    // A read is asked for metadata only (writes answer what was written, cut down after).
    let reads_secret = matches!(
        secret_access,
        Some(super::kube_secrets::Access::One { write: false, .. })
    );
    if req.body.len() > caps.limits.max_payload {
        return Err(CapError::Invalid(format!(
            "request body of {} bytes exceeds the {}-byte limit",
            req.body.len(),
            caps.limits.max_payload
        )));
    }
    let mut json = false;
    let mut builder = acct.client.request(
        reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| CapError::Invalid(e.to_string()))?,
        format!("{}{}", acct.base_url, req.path),
    );
    for (k, v) in &req.headers {
        let lk = k.to_ascii_lowercase();
        if FORBIDDEN_HEADERS.contains(&lk.as_str()) || lk.starts_with("proxy-") {
            return Err(CapError::Denied(format!(
                "header {k:?} is set by the host, not the guest"
            )));
        }
        if lk == "content-type" && v.to_ascii_lowercase().contains("json") {
            json = true;
        }
        if lk == "accept" && reads_secret {
            continue; // the host says how a Secret is answered
        }
        if v.contains(super::secrets::PREFIX) {
            return Err(CapError::Denied(format!(
                "header {k:?} carries a secret handle: secrets go only in request bodies"
            )));
        }
        builder = builder.header(k.as_str(), v.as_str());
    }
    if let Auth::Bearer(t) = &acct.auth {
        builder = builder.bearer_auth(t);
    }
    if reads_secret {
        builder = builder.header("accept", super::kube_secrets::METADATA_ONLY);
    }
    let req_body = req.body.clone();
    let body = substitute(&req.body, &caps.secrets, json)?;
    let resp = builder.body(body).send().await.map_err(|e| {
        CapError::Unavailable(
            caps.secrets
                .redact(&format!("{account}: {method} {path}: {e}")),
        )
    })?;
    let status = resp.status().as_u16();
    let headers = super::guest_headers(caps, resp.headers(), &["set-cookie", "www-authenticate"]);
    let mut bytes = super::read_body(caps, resp, account, super::Oversize::Refuse).await?;
    if let (Some(rule), Some(access)) = (&acct.secrets_rule, &secret_access) {
        bytes = rule.answered(access, &method, status, &req_body, bytes)?;
    }
    grant_live_urls(caps, &bytes, &req_body);
    let body = super::guest_body(caps, bytes);
    tracing::debug!(%account, %method, %path, status, "cloud.call answered");
    Ok(Response {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_match_on_segment_boundaries() {
        // /v2/apps covers /v2/apps/123 but not /v2/appsX or /v2/other.
        let g = Grant {
            methods: vec!["GET".into(), "POST".into()],
            paths: vec!["/v2/apps".into()],
        };
        assert!(g.allows("GET", "/v2/apps"));
        assert!(g.allows("post", "/v2/apps/123/deployments"));
        assert!(!g.allows("GET", "/v2/appsX"));
        assert!(!g.allows("DELETE", "/v2/apps/123"));
        assert!(!g.allows("GET", "/v2/droplets"));
    }

    #[test]
    fn paths_that_could_climb_out_are_refused() {
        // Dot segments and encoded separators would escape a prefix after normalisation.
        for bad in [
            "/v2/apps/../droplets",
            "/v2/apps/%2e%2e/x",
            "/v2/apps/%2F..",
            "/v2//apps",
            "v2/apps",
            "/v2/apps/./x",
            "/v2/apps\\..\\x",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        assert!(check_path("/api/v1/namespaces/eventbus/services/nats").is_ok());
    }

    #[test]
    fn secret_handles_in_json_bodies_become_escaped_values() {
        // The value goes out JSON-escaped; an unknown handle is refused.
        let s = SecretStore::default();
        s.put("p", "a\"b".into());
        let out = substitute(br#"{"v":"{{secret:p}}"}"#, &s, true).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"v":"a\"b"}"#);
        assert!(matches!(
            substitute(b"{{secret:nope}}", &s, true),
            Err(CapError::Unknown(_))
        ));
    }

    #[test]
    fn plain_http_is_refused_except_to_loopback() {
        // An operator's typo must not send a token in clear text across a network.
        let s = SecretStore::default();
        let cfg = serde_json::json!({"cloud_accounts": {"do": {"base_url": "http://api.example.com", "token": "t", "allow": []}}});
        assert!(CloudCap::from_config(&cfg, &s).is_err());
        let cfg = serde_json::json!({"cloud_accounts": {"do": {"base_url": "http://127.0.0.1:9", "token": "t", "allow": [{"methods": ["GET"], "paths": ["/v2/apps"]}]}}});
        assert!(CloudCap::from_config(&cfg, &s).is_ok());
    }
}
