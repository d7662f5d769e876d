//! Reading `cloud_accounts` from the iac.provider module's config into accounts: endpoint,
//! authentication, and grants. Every problem names its field and the fix.

use super::aws::{self, credentials::Env};
use super::grant::{check_path, valid_target};
use super::kubeconfig::{kubeconfig, read_file};
use super::{Account, Auth, CloudCap, ConfigProblem, Grant};
use crate::caps::kube_secrets::SecretsRule;
use crate::caps::secrets::SecretStore;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

impl CloudCap {
    /// Reads `cloud_accounts` from the iac.provider config. Credential values are added to the
    /// secret store (for masking), never passed on to the guest.
    pub fn from_config(
        config: &Value,
        secrets: &SecretStore,
    ) -> Result<CloudCap, Vec<ConfigProblem>> {
        CloudCap::from_config_in(config, secrets, &Env::process())
    }

    /// [`CloudCap::from_config`] with AWS credentials looked for in `env`.
    pub fn from_config_in(
        config: &Value,
        secrets: &SecretStore,
        env: &Env,
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
            let aws = match s("auth").as_deref() {
                None => None,
                Some("aws") => {
                    if let Some(k) = ["token", "kubeconfig", "client_cert_file"]
                        .into_iter()
                        .find(|k| a.get(*k).is_some())
                    {
                        problems.push((
                            at(k),
                            "an AWS account signs its requests with AWS keys".into(),
                            format!("remove {k}; the keys come from the environment, a profile or access_key_id/secret_access_key"),
                        ));
                        continue;
                    }
                    match aws::from_config(name, a, env, secrets) {
                        Ok((account, base)) => {
                            base_url = Some(base);
                            Some(Arc::new(account))
                        }
                        Err(p) => {
                            problems.extend(p);
                            continue;
                        }
                    }
                }
                Some(other) => {
                    problems.push((
                        at("auth"),
                        format!("unknown auth {other:?}"),
                        "write auth: aws for an AWS account, or leave auth out".into(),
                    ));
                    continue;
                }
            };
            let Some(base) = base_url.map(|b| b.trim_end_matches('/').to_string()) else {
                problems.push((
                    at("base_url"),
                    "is required".into(),
                    "set base_url to the API's https:// URL".into(),
                ));
                continue;
            };
            if !aws::secure_url(&base) {
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
                let (mut methods, mut paths, targets) =
                    (list("methods"), list("paths"), list("targets"));
                if !targets.is_empty() {
                    if aws.is_none() {
                        problems.push((
                            format!("{}[{i}].targets", at("allow")),
                            "X-Amz-Target operations are granted only on an AWS account".into(),
                            "add auth: aws with region and service to the account, or remove targets".into(),
                        ));
                        continue;
                    }
                    if let Some(bad) = targets.iter().find(|t| !valid_target(t)) {
                        problems.push((
                            format!("{}[{i}].targets", at("allow")),
                            format!("{bad:?} is not an X-Amz-Target"),
                            "write the operation as AWS names it: Kinesis_20131202.CreateStream"
                                .into(),
                        ));
                        continue;
                    }
                    // AWS's JSON protocols: every operation is a POST to /.
                    if methods.is_empty() {
                        methods = vec!["POST".into()];
                    }
                    if paths.is_empty() {
                        paths = vec!["/".into()];
                    }
                }
                if methods.is_empty()
                    || paths.is_empty()
                    || paths
                        .iter()
                        .any(|p| !p.starts_with('/') || check_path(p).is_err())
                {
                    problems.push((
                        format!("{}[{i}]", at("allow")),
                        "needs methods and absolute paths".into(),
                        if aws.is_some() {
                            "write {targets: [Kinesis_20131202.ListStreams]}, or {methods: [GET], paths: [/clusters]} for a REST API".into()
                        } else {
                            "write {methods: [GET, POST], paths: [/v2/apps]}".into()
                        },
                    ));
                    continue;
                }
                grants.push(Grant {
                    methods,
                    paths,
                    targets,
                });
            }
            let auth = match (aws, token, identity_pem.clone()) {
                (Some(aws), _, _) => Auth::Aws(aws),
                (None, Some(t), _) => {
                    secrets.remember(&format!("cloud/{name}/token"), t.clone());
                    Auth::Bearer(t)
                }
                (None, None, Some(id)) => Auth::ClientCert(id),
                (None, None, None) => Auth::None,
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
                Arc::new(SecretsRule::new(
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
}
