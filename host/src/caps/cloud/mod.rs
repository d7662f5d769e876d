//! The `cloud` capability: calls to named cloud accounts. The operator configures each
//! account in the iac.provider module (`cloud_accounts`, read by `config.rs`): base URL,
//! credentials, and the methods, path prefixes and (AWS) operations the guest may use
//! (`grant.rs`). The host authenticates every request itself (a bearer token, a client
//! certificate, or for `auth: aws` a Signature Version 4 of its own: `aws/`), puts secret
//! values in place of their handles on the way out, and masks them again on the way back, so
//! the guest never holds one. Anything outside the grant is a typed denial that names the
//! grant to add.

pub mod aws;
mod config;
pub mod grant;
mod kubeconfig;

use super::CapError;
use super::secrets::SecretStore;
use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::cloud::{Host, Request, Response};
pub use grant::{Grant, check_path};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone)]
pub enum Auth {
    None,
    Bearer(String),
    /// PEM client certificate and key (Kubernetes).
    ClientCert(Vec<u8>),
    /// Signature Version 4 with keys the host found (`aws/`).
    Aws(Arc<aws::AwsAccount>),
}

#[derive(Clone)]
pub struct Account {
    pub name: String,
    pub base_url: String,
    pub grants: Vec<Grant>,
    auth: Auth,
    client: reqwest::Client,
    /// For a Kubernetes API: Secrets are write-only (`kube_secrets.rs`).
    secrets_rule: Option<Arc<super::kube_secrets::SecretsRule>>,
}

#[derive(Default)]
pub struct CloudCap {
    accounts: BTreeMap<String, Account>,
}

/// Problems in the operator's `cloud_accounts` config: (path, message, fix).
pub type ConfigProblem = (String, String, String);

impl CloudCap {
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
        Ok(call(&caps, &self.grant, &account, req).await)
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

/// The denial of a request outside the account's grant, naming the grant entry to add.
fn outside_grant(account: &str, method: &str, path: &str, target: Option<&str>) -> CapError {
    let entry = match target {
        Some(t) if method == "POST" && path == "/" => format!("{{targets: [{t}]}}"),
        Some(t) => format!("{{methods: [{method}], paths: [{path}], targets: [{t}]}}"),
        None => format!("{{methods: [{method}], paths: [{path}]}}"),
    };
    let what = match target {
        Some(t) => format!("operation {t} ({method} {path})"),
        None => format!("{method} {path}"),
    };
    CapError::Denied(format!(
        "{what} on cloud account {account:?} is outside its grant: add {entry} to cloud_accounts.{account}.allow"
    ))
}

/// One request to a granted account, checked against the account's grant and the call's
/// (`grant`: a read-only export only reads), authenticated by the host.
pub async fn call(
    caps: &super::Caps,
    grant: &super::grant::CallGrant,
    account: &str,
    req: Request,
) -> Result<Response, CapError> {
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
    let aws = match &acct.auth {
        Auth::Aws(a) => Some(a.clone()),
        _ => None,
    };
    // An AWS request names its operation in X-Amz-Target and leaves the signature to us.
    let target = match &aws {
        Some(_) => match aws::check_request(account, &req.headers, query) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(%account, %method, %path, "cloud call denied: the request would sign itself or hide its operation");
                return Err(e);
            }
        },
        None => None,
    };
    // A read-only export reads: GET and HEAD, or on AWS an operation named Describe*, List*
    // or Get* (AWS's reads are POSTs too).
    let read_only = match target {
        Some(t) => grant.mutates || aws::reads_only(t),
        None => read_only_allows(grant, &method, &req.path).is_ok(),
    };
    if !read_only {
        let what = match target {
            Some(t) => format!("operation {t} on cloud account {account:?}"),
            None => format!("{method} {}", req.path),
        };
        tracing::warn!(%account, %method, export = grant.export, "cloud call denied: a change in a read-only call");
        return Err(CapError::Denied(grant.refusal(&what)));
    }
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
        || !acct.grants.iter().any(|g| g.allows(&method, path, target))
    {
        tracing::warn!(%account, %method, %path, target = target.unwrap_or(""), "cloud call denied: outside the grant");
        return Err(outside_grant(account, &method, path, target));
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
    let url = format!("{}{}", acct.base_url, req.path);
    let mut builder = acct.client.request(
        reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| CapError::Invalid(e.to_string()))?,
        &url,
    );
    let mut sent_headers = Vec::new();
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
        sent_headers.push((lk, v.clone()));
    }
    if let Auth::Bearer(t) = &acct.auth {
        builder = builder.bearer_auth(t);
    }
    if reads_secret {
        sent_headers.push(("accept".into(), super::kube_secrets::METADATA_ONLY.into()));
    }
    let req_body = req.body.clone();
    let body = substitute(&req.body, &caps.secrets, json)?;
    if let Some(aws) = &aws {
        let keys = aws
            .credentials
            .keys(account, &acct.client, &caps.secrets)
            .await
            .map_err(|e| {
                tracing::warn!(%account, "cloud call: no AWS keys: {}", caps.secrets.redact(&e));
                CapError::Unavailable(caps.secrets.redact(&format!(
                    "cloud account {account:?}: no AWS keys from {}: {e}",
                    aws.credentials.found_in
                )))
            })?;
        let signed = aws::sigv4::headers(
            &keys,
            &aws.region,
            &aws.service,
            &method,
            &url,
            &sent_headers,
            &body,
            std::time::SystemTime::now(),
        )
        .map_err(|e| CapError::Invalid(format!("cloud account {account:?}: {e}")))?;
        sent_headers.extend(signed);
    }
    for (k, v) in &sent_headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let resp = builder.body(body).send().await.map_err(|e| {
        CapError::Unavailable(
            caps.secrets
                .redact(&format!("{account}: {method} {path}: {e}")),
        )
    })?;
    let status = resp.status().as_u16();
    let headers = super::guest_headers(caps, resp.headers(), &["set-cookie", "www-authenticate"]);
    let mut bytes = super::read_body(caps, resp, account, super::Oversize::Refuse).await?;
    if let Some(aws) = &aws
        && (status == 400 || status == 403)
        && let Some(code) =
            aws::error_code(&bytes).filter(|c| aws::CREDENTIAL_REFUSALS.contains(&c.as_str()))
    {
        // Not the operation's fault: the keys or the signature. Temporary keys are fetched
        // again next time; the operator is told where the refused keys came from.
        aws.credentials.forget().await;
        let text = caps.secrets.redact(&format!(
            "cloud account {account:?}: AWS refused the request's credentials (HTTP {status} {code}); the keys came from {}; fix: give the account a matching access key id and secret access key (and session token), and check the clock",
            aws.credentials.found_in
        ));
        tracing::warn!(%account, %code, "{text}");
        return Err(CapError::Denied(text));
    }
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

    #[test]
    fn an_aws_account_grants_operations_as_posts_to_the_root() {
        // `targets` alone means POST / (AWS's JSON protocols); the endpoint defaults to the
        // service's regional one; keys come from the chain (here the account's environment).
        let s = SecretStore::default();
        let env = aws::credentials::Env::of([
            ("AWS_ACCESS_KEY_ID", "AKIATEST"),
            ("AWS_SECRET_ACCESS_KEY", "k"),
        ]);
        let cfg = serde_json::json!({"cloud_accounts": {"aws": {"auth": "aws", "region": "eu-central-1", "service": "kinesis",
            "allow": [{"targets": ["Kinesis_20131202.ListStreams"]}]}}});
        let cap = CloudCap::from_config_in(&cfg, &s, &env).unwrap_or_else(|p| panic!("{p:?}"));
        let a = cap.account("aws").unwrap();
        assert_eq!(a.base_url, "https://kinesis.eu-central-1.amazonaws.com");
        assert_eq!(a.grants[0].methods, ["POST"]);
        assert!(a.grants[0].allows("POST", "/", Some("Kinesis_20131202.ListStreams")));
    }

    #[test]
    fn aws_settings_are_checked_where_they_are_written() {
        // Operations on a non-AWS account, a missing region, an unknown auth: each names its field.
        let s = SecretStore::default();
        let env = aws::credentials::Env::of([
            ("AWS_ACCESS_KEY_ID", "AKIATEST"),
            ("AWS_SECRET_ACCESS_KEY", "k"),
        ]);
        let fields = |cfg: Value| -> Vec<String> {
            match CloudCap::from_config_in(&cfg, &s, &env) {
                Ok(_) => vec![],
                Err(p) => p.into_iter().map(|(f, _, _)| f).collect(),
            }
        };
        let fields_of = fields(
            serde_json::json!({"cloud_accounts": {"do": {"base_url": "https://api.example.com",
            "allow": [{"methods": ["POST"], "paths": ["/"], "targets": ["Kinesis_20131202.ListStreams"]}]}}}),
        );
        assert_eq!(fields_of, ["config.cloud_accounts.do.allow[0].targets"]);
        assert_eq!(
            fields(
                serde_json::json!({"cloud_accounts": {"aws": {"auth": "aws", "service": "kinesis"}}})
            ),
            ["config.cloud_accounts.aws.region"]
        );
        assert_eq!(
            fields(serde_json::json!({"cloud_accounts": {"aws": {"auth": "gcp"}}})),
            ["config.cloud_accounts.aws.auth"]
        );
        assert_eq!(
            fields(
                serde_json::json!({"cloud_accounts": {"aws": {"auth": "aws", "region": "eu-west-1", "service": "kinesis",
                "allow": [{"targets": ["Kinesis_20131202.*"]}]}}})
            ),
            ["config.cloud_accounts.aws.allow[0].targets"]
        );
    }
}
