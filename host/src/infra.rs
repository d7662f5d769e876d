//! Reading a wfctl-format infra.yaml: modules, routing to the eventbus iac.provider module
//! (`iac_provider`, falling back to `provider`), `${ENV}` expansion, and credentials swapped
//! for secret handles before anything reaches the guest.

use crate::caps::secrets::{SecretStore, lookup_named};
use crate::runtime::wit;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

pub const PROVIDER_NAME: &str = "eventbus";
const SECRET_KEYS: [&str; 4] = ["token", "password", "nkey_seed", "creds"];

/// One problem with the input, pointing at the file, the resource and the field.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Diag {
    pub file: String,
    pub resource: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub path: String,
    pub message: String,
    pub fix: String,
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if !self.resource.is_empty() {
            write!(f, ": resource `{}`", self.resource)?;
            if !self.rtype.is_empty() {
                write!(f, " ({})", self.rtype)?;
            }
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

pub struct Infra {
    pub file: PathBuf,
    pub provider_module: String,
    pub provider_config: Value,
    pub specs: Vec<wit::ResourceSpec>,
    /// Modules routed to other providers, shown as a note.
    pub skipped: Vec<String>,
    /// NATS URLs the operator granted: self_hosted brokers' urls and `allow_nats`.
    pub nats_grants: Vec<String>,
    /// Kafka bootstrap servers the operator granted: self_hosted Kafka brokers'
    /// `bootstrap_servers` and `allow_kafka`.
    pub kafka_grants: Vec<String>,
}

impl Infra {
    pub fn display_name(&self) -> String {
        self.file.display().to_string()
    }

    pub fn type_of(&self, name: &str) -> String {
        self.specs
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.resource_type.clone())
            .unwrap_or_default()
    }
}

struct Loader<'a> {
    file: String,
    diags: Vec<Diag>,
    secrets: &'a SecretStore,
}

impl Loader<'_> {
    fn diag(
        &mut self,
        resource: &str,
        rtype: &str,
        path: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.diags.push(Diag {
            file: self.file.clone(),
            resource: resource.into(),
            rtype: rtype.into(),
            path: path.into(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    /// Expands `${VAR}` in every string, recording a diagnostic per missing variable.
    fn expand(&mut self, resource: &str, rtype: &str, path: &str, v: &mut Value) {
        match v {
            Value::String(s) => {
                if let Some(out) = self.expand_str(resource, rtype, path, s) {
                    *s = out;
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.expand(resource, rtype, &format!("{path}[{i}]"), item);
                }
            }
            Value::Object(o) => {
                for (k, item) in o.iter_mut() {
                    self.expand(resource, rtype, &format!("{path}.{k}"), item);
                }
            }
            _ => {}
        }
    }

    fn expand_str(&mut self, resource: &str, rtype: &str, path: &str, s: &str) -> Option<String> {
        if !s.contains("${") {
            return None;
        }
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                self.diag(
                    resource,
                    rtype,
                    path,
                    format!("unterminated ${{ in {s:?}"),
                    "close the reference with }",
                );
                return None;
            };
            let name = &after[..end];
            if name.contains('.') {
                self.diag(resource, rtype, path, format!("${{{name}}} is a cross-module reference, which wfctl resolves; the standalone CLI does not"), "write the value, or use an environment variable");
            } else if !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                match std::env::var(name) {
                    Ok(v) => out.push_str(&v),
                    Err(_) => self.diag(
                        resource,
                        rtype,
                        path,
                        format!("environment variable {name} is not set"),
                        format!("export {name}=... before running"),
                    ),
                }
            } else {
                self.diag(
                    resource,
                    rtype,
                    path,
                    format!("${{{name}}} is not a valid variable reference"),
                    "use ${NAME} with letters, digits and _",
                );
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// Credential values become handles: `${VAR}` and `secret://NAME` are resolved here, in
    /// the host; anything else is left for the guest to refuse as a plain-text credential.
    fn swap_credentials(&mut self, resource: &str, rtype: &str, config: &mut Map<String, Value>) {
        let Some(Value::Object(creds)) = config.get_mut("credentials") else {
            return;
        };
        for key in SECRET_KEYS {
            let Some(Value::String(raw)) = creds.get(key).cloned() else {
                continue;
            };
            let path = format!("config.credentials.{key}");
            let value = if let Some(var) = raw.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
            {
                match std::env::var(var) {
                    Ok(v) => v,
                    Err(_) => {
                        self.diag(
                            resource,
                            rtype,
                            &path,
                            format!("environment variable {var} is not set"),
                            format!("export {var}=... before running"),
                        );
                        continue;
                    }
                }
            } else if let Some(name) = raw.strip_prefix("secret://") {
                match lookup_named(name) {
                    Some(v) => v,
                    None => {
                        let var: String = name
                            .chars()
                            .map(|c| {
                                if c.is_ascii_alphanumeric() {
                                    c.to_ascii_uppercase()
                                } else {
                                    '_'
                                }
                            })
                            .collect();
                        self.diag(resource, rtype, &path, format!("secret {name:?} is not set"), format!("export EVENTBUS_SECRET_{var}=..., or put it in the file $EVENTBUS_SECRETS_DIR/{name}"));
                        continue;
                    }
                }
            } else {
                continue;
            };
            let handle = self
                .secrets
                .put(&format!("{resource}/credentials.{key}"), value);
            creds.insert(key.to_string(), Value::String(handle));
        }
    }
}

fn as_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

pub fn load(path: &Path, secrets: &SecretStore) -> anyhow::Result<Result<Infra, Vec<Diag>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(parse(path, &text, secrets))
}

pub fn parse(path: &Path, text: &str, secrets: &SecretStore) -> Result<Infra, Vec<Diag>> {
    let mut l = Loader {
        file: path.display().to_string(),
        diags: vec![],
        secrets,
    };
    let doc: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            l.diag(
                "",
                "",
                "",
                format!("not valid YAML: {e}"),
                "fix the YAML syntax at the position shown",
            );
            return Err(l.diags);
        }
    };
    let Some(modules) = doc.get("modules").and_then(Value::as_array) else {
        l.diag(
            "",
            "",
            "modules",
            "no modules list",
            "write `modules:` with one entry per resource, as wfctl expects",
        );
        return Err(l.diags);
    };
    let mut names = std::collections::BTreeSet::new();
    let mut providers: Vec<(String, String, Value)> = vec![];
    for (i, m) in modules.iter().enumerate() {
        let name = as_str(m.get("name")).unwrap_or("").to_string();
        let mtype = as_str(m.get("type")).unwrap_or("").to_string();
        if name.is_empty() {
            l.diag(
                "",
                &mtype,
                &format!("modules[{i}].name"),
                "a module has no name",
                "give every module a unique name",
            );
            continue;
        }
        if !names.insert(name.clone()) {
            l.diag(
                &name,
                &mtype,
                "name",
                "two modules have this name",
                "give every module a unique name",
            );
        }
        if mtype == "iac.provider" {
            let cfg = m.get("config").cloned().unwrap_or(json!({}));
            providers.push((
                name,
                as_str(cfg.get("provider")).unwrap_or("").to_string(),
                cfg,
            ));
        }
    }
    let ours: Vec<&(String, String, Value)> = providers
        .iter()
        .filter(|(_, p, _)| p == PROVIDER_NAME)
        .collect();
    let (provider_module, mut provider_config) = match ours.as_slice() {
        [one] => (one.0.clone(), one.2.clone()),
        [] => {
            l.diag(
                "",
                "iac.provider",
                "modules",
                "no iac.provider module has provider: eventbus",
                "add a module {name: eventbus, type: iac.provider, config: {provider: eventbus}}",
            );
            (String::new(), json!({}))
        }
        many => {
            let n: Vec<&str> = many.iter().map(|p| p.0.as_str()).collect();
            l.diag(
                "",
                "iac.provider",
                "modules",
                format!(
                    "several iac.provider modules use the eventbus provider: {}",
                    n.join(", ")
                ),
                "keep one",
            );
            (String::new(), json!({}))
        }
    };
    // AWS keys in the file only as references (checked before `${ENV}` is expanded).
    for (path, message, fix) in crate::caps::cloud::aws::plain_text_keys(&provider_config) {
        l.diag(&provider_module, "iac.provider", &path, message, fix);
    }
    l.expand(
        &provider_module,
        "iac.provider",
        "config",
        &mut provider_config,
    );
    let mut nats_grants: Vec<String> = provider_config
        .get("allow_nats")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut kafka_grants =
        crate::caps::kafka::endpoint::server_list(provider_config.get("allow_kafka"));
    let mut specs = vec![];
    let mut skipped = vec![];
    for m in modules {
        let (Some(name), Some(mtype)) = (as_str(m.get("name")), as_str(m.get("type"))) else {
            continue;
        };
        if !(mtype.starts_with("infra.") || mtype.starts_with("platform.")) {
            continue;
        }
        let mut config = match m.get("config") {
            Some(Value::Object(o)) => o.clone(),
            None | Some(Value::Null) => Map::new(),
            Some(_) => {
                l.diag(
                    name,
                    mtype,
                    "config",
                    "config must be a mapping",
                    "write key: value pairs under config",
                );
                continue;
            }
        };
        let route = as_str(config.get("iac_provider"))
            .or_else(|| as_str(config.get("provider")))
            .map(String::from);
        let field = if as_str(config.get("iac_provider")).is_some() {
            "config.iac_provider"
        } else {
            "config.provider"
        };
        let target = route
            .as_deref()
            .and_then(|r| providers.iter().find(|(n, _, _)| n == r));
        match target {
            Some((_, p, _)) if p == PROVIDER_NAME => {}
            Some((n, p, _)) => {
                skipped.push(format!("{name} ({mtype}) is routed to {n} (provider {p})"));
                continue;
            }
            None => {
                if mtype.starts_with("infra.eventbus") {
                    let msg = match &route {
                        Some(r) => format!(
                            "routes to {r:?}, which is not declared as an iac.provider module"
                        ),
                        None => "is missing: the resource is not routed to any iac.provider module"
                            .to_string(),
                    };
                    let fix = if provider_module.is_empty() {
                        "declare an iac.provider module with provider: eventbus and set iac_provider to its name".to_string()
                    } else {
                        format!("set iac_provider: {provider_module}")
                    };
                    l.diag(
                        name,
                        mtype,
                        if route.is_some() {
                            field
                        } else {
                            "config.iac_provider"
                        },
                        msg,
                        fix,
                    );
                } else {
                    skipped.push(format!(
                        "{name} ({mtype}) is not routed to the eventbus provider"
                    ));
                }
                continue;
            }
        }
        if m.get("protected") == Some(&Value::Bool(true)) {
            config.insert("protected".into(), Value::Bool(true));
        }
        l.swap_credentials(name, mtype, &mut config);
        let mut v = Value::Object(config);
        l.expand(name, mtype, "config", &mut v);
        let Value::Object(config) = v else {
            unreachable!()
        };
        if mtype == "infra.eventbus"
            && as_str(config.get("deploy_target")) == Some("self_hosted")
            && as_str(config.get("provider")) == Some("kafka")
        {
            kafka_grants.extend(crate::caps::kafka::endpoint::server_list(
                config.get("bootstrap_servers"),
            ));
        } else if mtype == "infra.eventbus"
            && as_str(config.get("deploy_target")) == Some("self_hosted")
        {
            match config
                .get("url")
                .filter(|v| !v.is_null())
                .or_else(|| config.get("urls"))
            {
                Some(Value::String(u)) => nats_grants.push(u.clone()),
                Some(Value::Array(us)) => {
                    nats_grants.extend(us.iter().filter_map(|u| u.as_str().map(String::from)))
                }
                _ => {}
            }
        }
        let depends_on = match config.get("depends_on") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => vec![],
        };
        specs.push(wit::ResourceSpec {
            name: name.to_string(),
            resource_type: mtype.to_string(),
            size: as_str(config.get("size")).unwrap_or("").to_string(),
            config_json: Value::Object(config).to_string(),
            hints: None,
            depends_on,
        });
    }
    if !l.diags.is_empty() {
        return Err(l.diags);
    }
    Ok(Infra {
        file: path.to_path_buf(),
        provider_module,
        provider_config,
        specs,
        skipped,
        nats_grants,
        kafka_grants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PILOTISH: &str = r#"
modules:
  - name: eventbus
    type: iac.provider
    config: {provider: eventbus}
  - name: b
    type: infra.eventbus
    config: {iac_provider: eventbus, provider: nats, deploy_target: self_hosted, url: "${EVENTBUS_TEST_URL_A}"}
  - name: vpc
    type: infra.vpc
    config: {provider: do}
  - name: do
    type: iac.provider
    config: {provider: digitalocean}
"#;

    #[test]
    fn routes_by_iac_provider_and_expands_env() {
        // Our resources are kept (with ${ENV} expanded and their url granted); others are skipped.
        unsafe { std::env::set_var("EVENTBUS_TEST_URL_A", "nats://127.0.0.1:4999") };
        let infra = parse(Path::new("infra.yaml"), PILOTISH, &SecretStore::default()).unwrap();
        assert_eq!(infra.specs.len(), 1);
        assert!(infra.specs[0].config_json.contains("nats://127.0.0.1:4999"));
        assert_eq!(infra.nats_grants, vec!["nats://127.0.0.1:4999"]);
        assert_eq!(infra.skipped.len(), 1);
    }

    #[test]
    fn kafka_bootstrap_servers_are_granted_from_self_hosted_brokers_and_allow_kafka() {
        let text = "modules:
  - {name: eventbus, type: iac.provider, config: {provider: eventbus, allow_kafka: ['ops:9092']}}
  - {name: k, type: infra.eventbus, config: {iac_provider: eventbus, provider: kafka, deploy_target: self_hosted, bootstrap_servers: 'a:9092,b:9093'}}
  - {name: l, type: infra.eventbus, config: {iac_provider: eventbus, provider: kafka, deploy_target: self_hosted, bootstrap_servers: ['c:9094']}}
  - {name: m, type: infra.eventbus, config: {iac_provider: eventbus, provider: kafka, deploy_target: kubernetes, bootstrap_servers: ['d:1']}}
";
        let infra = parse(Path::new("f.yaml"), text, &SecretStore::default()).unwrap();
        assert_eq!(
            infra.kafka_grants,
            vec!["ops:9092", "a:9092", "b:9093", "c:9094"]
        );
        assert!(infra.nats_grants.is_empty());
    }

    #[test]
    fn eventbus_resource_routed_to_an_undeclared_provider_names_the_field() {
        // The historical failure: provider: nats is not an iac.provider module.
        let text = "modules:\n  - {name: eventbus, type: iac.provider, config: {provider: eventbus}}\n  - {name: s, type: infra.eventbus.stream, config: {provider: nats, name: S}}\n";
        let d = parse(Path::new("f.yaml"), text, &SecretStore::default())
            .err()
            .unwrap();
        assert_eq!(d[0].resource, "s");
        assert_eq!(d[0].path, "config.provider");
        assert!(d[0].fix.contains("iac_provider: eventbus"));
    }

    #[test]
    fn missing_env_var_is_reported_at_its_field() {
        // A missing variable is an error naming the module and the field, not an empty string.
        let text = "modules:\n  - {name: eventbus, type: iac.provider, config: {provider: eventbus}}\n  - {name: b, type: infra.eventbus, config: {iac_provider: eventbus, url: '${EVENTBUS_TEST_SURELY_UNSET}'}}\n";
        let d = parse(Path::new("f.yaml"), text, &SecretStore::default())
            .err()
            .unwrap();
        assert_eq!(d[0].path, "config.url");
        assert!(d[0].message.contains("EVENTBUS_TEST_SURELY_UNSET"));
    }

    #[test]
    fn credentials_from_env_become_handles() {
        // The token's value stays in the host; the config carries only the handle.
        unsafe { std::env::set_var("EVENTBUS_TEST_TOKEN", "tok-123456") };
        let text = "modules:\n  - {name: eventbus, type: iac.provider, config: {provider: eventbus}}\n  - {name: b, type: infra.eventbus, config: {iac_provider: eventbus, credentials: {token: '${EVENTBUS_TEST_TOKEN}'}}}\n";
        let store = SecretStore::default();
        let infra = parse(Path::new("f.yaml"), text, &store).unwrap();
        assert!(!infra.specs[0].config_json.contains("tok-123456"));
        assert!(
            infra.specs[0]
                .config_json
                .contains("{{secret:b/credentials.token}}")
        );
        assert_eq!(
            store.resolve("{{secret:b/credentials.token}}").as_deref(),
            Some("tok-123456")
        );
    }
}
