//! The session behind the gRPC services: the component loaded once, one instance serialized
//! behind a mutex (replaced after a trap or a timeout), and what the host must learn from
//! the traffic because wfctl has no infra.yaml to give it: NATS and Kafka grants, broker
//! endpoints, and credentials, which are swapped for secret handles before any config reaches
//! the guest.

use crate::caps::Caps;
use crate::caps::kafka::endpoint::server_list;
use crate::caps::secrets::{SecretStore, lookup_named};
use crate::runtime::{self, Guest, GuestResult, Runtime, wit};
use serde_json::{Map, Value};
use std::sync::{Arc, RwLock};
use tokio::sync::{Mutex, MutexGuard, OnceCell};
use tokio::task::JoinHandle;
use tonic::Status;

pub const BROKER: &str = "infra.eventbus";
const SECRET_KEYS: [&str; 4] = ["token", "password", "nkey_seed", "creds"];

/// The instance and the provider config it was initialized with.
pub struct Slot {
    guest: Option<Guest>,
    config: Option<String>,
}

impl Slot {
    /// The ready instance (always present once [`Bridge::guest`] returned the slot).
    pub fn get(&mut self) -> &mut Guest {
        self.guest
            .as_mut()
            .expect("Bridge::guest installs an instance")
    }
}

pub struct Bridge {
    pub caps: Arc<Caps>,
    loader: std::sync::Mutex<Option<JoinHandle<anyhow::Result<Runtime>>>>,
    runtime: OnceCell<Result<Runtime, String>>,
    slot: Mutex<Slot>,
    types: RwLock<Vec<String>>,
    /// Where learned brokers are kept for the next process wfctl starts (none in tests).
    saved: Option<super::brokers::SavedBrokers>,
}

impl Bridge {
    /// Starts loading (or compiling) the component in the background right away, so the
    /// handshake is not held up by it.
    pub fn new(
        caps: Arc<Caps>,
        wasm: anyhow::Result<std::path::PathBuf>,
        saved: Option<super::brokers::SavedBrokers>,
    ) -> Bridge {
        let c = caps.clone();
        let handle = tokio::task::spawn_blocking(move || {
            let wasm = wasm?;
            let rt = Runtime::new(&wasm, c)?;
            tracing::info!(component = %wasm.display(), source = ?rt.source, elapsed = ?rt.load_time, "component loaded");
            Ok(rt)
        });
        Bridge {
            caps,
            loader: std::sync::Mutex::new(Some(handle)),
            runtime: OnceCell::new(),
            slot: Mutex::new(Slot {
                guest: None,
                config: None,
            }),
            types: RwLock::new(vec![]),
            saved,
        }
    }

    async fn runtime(&self) -> Result<&Runtime, Status> {
        let r = self
            .runtime
            .get_or_init(|| async {
                let handle = self.loader.lock().expect("loader").take();
                match handle {
                    Some(h) => match h.await {
                        Ok(Ok(rt)) => Ok(rt),
                        Ok(Err(e)) => Err(format!("{e:#}")),
                        Err(e) => Err(format!("loading the component panicked: {e}")),
                    },
                    None => Err("the component loader is gone".into()),
                }
            })
            .await;
        r.as_ref().map_err(|e| {
            Status::internal(format!(
                "internal error: the eventbus plugin cannot start its component: {e}"
            ))
        })
    }

    /// The serialized instance: the current one if healthy, else a fresh one initialized with
    /// the config wfctl gave (a trap or timeout fails only the call it happened in).
    pub async fn guest(&self) -> Result<MutexGuard<'_, Slot>, Status> {
        let rt = self.runtime().await?;
        let mut slot = self.slot.lock().await;
        if slot.guest.as_ref().is_none_or(|g| g.poisoned) {
            if slot.guest.is_some() {
                tracing::warn!("replacing a component instance that trapped or timed out");
            }
            slot.guest = None;
            let mut g = rt
                .instance()
                .await
                .map_err(|e| Status::internal(format!("internal error: {e:#}")))?;
            if let Some(cfg) = slot.config.clone() {
                self.finish(g.initialize(&cfg).await)?;
            }
            slot.guest = Some(g);
        }
        Ok(slot)
    }

    /// `Initialize`: the iac.provider module's config, credentials swapped for handles and
    /// `allow_nats` and `allow_kafka` granted, validated by the guest and kept for fresh
    /// instances.
    pub async fn initialize(&self, config_json: &str) -> Result<(), Status> {
        let mut cfg = if config_json.trim().is_empty() {
            Map::new()
        } else {
            match serde_json::from_str::<Value>(config_json) {
                Ok(Value::Object(o)) => o,
                Ok(Value::Null) => Map::new(),
                Ok(_) => {
                    return Err(Status::invalid_argument(
                        "iac: validation error: config_json: the provider config must be a JSON object",
                    ));
                }
                Err(e) => {
                    return Err(Status::invalid_argument(format!(
                        "iac: validation error: config_json is not JSON: {e}"
                    )));
                }
            }
        };
        self.swap_credentials("iac.provider", &mut cfg)?;
        if let Some(urls) = cfg.get("allow_nats") {
            for u in url_list(urls) {
                self.caps.nats.grant(&u);
            }
        }
        for s in server_list(cfg.get("allow_kafka")) {
            self.caps.kafka.grant(&s);
        }
        // Cloud accounts and the HTTP allow-list stay in the host; the guest sees neither.
        let whole = Value::Object(cfg);
        match crate::caps::cloud::CloudCap::from_config(&whole, &self.caps.secrets) {
            Ok(cloud) => self.caps.set_cloud(cloud),
            Err(problems) => {
                let text: Vec<String> = problems
                    .iter()
                    .map(|(path, message, fix)| format!("{path}: {message} (fix: {fix})"))
                    .collect();
                return Err(Status::invalid_argument(format!(
                    "iac: validation error: {}",
                    self.caps.secrets.redact(&text.join("; "))
                )));
            }
        }
        self.caps
            .set_http(crate::caps::http::HttpCap::from_config(&whole));
        let text = crate::caps::cloud::guest_view(&whole).to_string();
        let mut slot = self.guest().await?;
        self.finish(slot.get().initialize(&text).await)?;
        slot.config = Some(text);
        Ok(())
    }

    /// Maps a guest call's outcome onto a gRPC status whose message carries wfctl's sentinel.
    pub fn finish<T>(&self, r: GuestResult<T>) -> Result<T, Status> {
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(provider_status(&e, &self.caps.secrets)),
            Err(trap) => {
                let text = self.caps.secrets.redact(&format!("{trap:#}"));
                tracing::error!("{text}");
                if text.contains("exceeded") {
                    Err(Status::deadline_exceeded(format!(
                        "iac: transient error: {text}"
                    )))
                } else {
                    Err(Status::internal(format!("internal error: {text}")))
                }
            }
        }
    }

    /// Resource types the component serves (asked once).
    async fn served_types(&self) -> Result<Vec<String>, Status> {
        if let Some(t) = Some(self.types.read().expect("types").clone()).filter(|t| !t.is_empty()) {
            return Ok(t);
        }
        let mut slot = self.guest().await?;
        let caps = slot
            .get()
            .capabilities()
            .await
            .map_err(|e| Status::internal(format!("internal error: {e:#}")))?;
        let t: Vec<String> = caps
            .capabilities
            .into_iter()
            .map(|c| c.resource_type)
            .collect();
        *self.types.write().expect("types") = t.clone();
        Ok(t)
    }

    /// ResourceDriver routing: an empty type is the caller's error, an unknown one is not found.
    pub async fn check_type(&self, rtype: &str) -> Result<(), Status> {
        if rtype.is_empty() {
            return Err(Status::invalid_argument(
                "iac: validation error: resource_type is required on every ResourceDriver call",
            ));
        }
        let served = self.served_types().await?;
        if served.iter().any(|t| t == rtype) {
            Ok(())
        } else {
            Err(Status::not_found(format!(
                "iac: resource not found: no driver for resource type {rtype:?}: this provider serves {}",
                served.join(", ")
            )))
        }
    }

    /// A desired spec on its way to the guest: credentials swapped for handles, and a
    /// self-hosted broker's url (NATS) or bootstrap servers (Kafka) granted (the operator
    /// declared them).
    pub fn prepare_spec(&self, spec: &mut wit::ResourceSpec) -> Result<(), Status> {
        if spec.config_json.trim().is_empty() {
            return Ok(());
        }
        let Ok(Value::Object(mut cfg)) = serde_json::from_str::<Value>(&spec.config_json) else {
            return Ok(()); // the guest reports the malformed config with its field
        };
        if cfg.get("credentials").is_some() {
            self.swap_credentials(&spec.name, &mut cfg)?;
            spec.config_json = Value::Object(cfg.clone()).to_string();
        }
        let self_hosted = spec.resource_type == BROKER
            && cfg.get("deploy_target").and_then(Value::as_str) == Some("self_hosted");
        if self_hosted && cfg.get("provider").and_then(Value::as_str) == Some("kafka") {
            for s in server_list(cfg.get("bootstrap_servers")) {
                self.caps.kafka.grant(&s);
            }
        } else if self_hosted {
            for u in cfg
                .get("url")
                .filter(|v| !v.is_null())
                .or_else(|| cfg.get("urls"))
                .map(url_list)
                .unwrap_or_default()
            {
                self.caps.nats.grant(&u);
            }
        }
        Ok(())
    }

    /// Records a broker the guest reported (Create/Update/Read outputs, or the `current`
    /// outputs wfctl passes to Diff), so streams and consumers can open it by name.
    pub fn learn_broker(&self, name: &str, rtype: &str, outputs_json: &str) {
        if rtype != BROKER || name.is_empty() {
            return;
        }
        if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(outputs_json)
            && (v.get("urls").is_some() || crate::caps::brokers::is_kafka(&v))
        {
            tracing::debug!(broker = name, "broker registered");
            self.caps.register_broker(name, &v);
            self.save_brokers();
        }
    }

    /// Brokers named by refs (their provider ids carry the endpoint), so a fresh process can
    /// destroy, read or check what an earlier one created.
    pub async fn learn_refs(&self, refs: &[wit::ResourceRef]) {
        for r in refs.iter().filter(|r| r.resource_type == BROKER) {
            if self.caps.learn_broker_id(&r.name, &r.provider_id) {
                self.save_brokers();
            }
            if self.caps.knows_broker(&r.name) {
                continue;
            }
            // A broker on a platform: ask its target (through its cloud account) where it is.
            let Ok(mut slot) = self.guest().await else {
                return;
            };
            if let Ok(Ok(out)) = slot.get().read(r).await {
                drop(slot);
                if let Ok(v) = serde_json::from_str::<Value>(&out.outputs_json) {
                    self.caps.grant_broker_outputs(&v);
                }
                self.learn_broker(&r.name, &r.resource_type, &out.outputs_json);
            }
        }
    }

    pub fn forget_broker(&self, name: &str, rtype: &str) {
        if rtype == BROKER {
            self.caps.forget_broker(name);
            self.save_brokers();
        }
    }

    fn save_brokers(&self) {
        if let Some(saved) = &self.saved {
            saved.save(&self.caps);
        }
    }

    /// Plain-text credentials become host-held secrets; the guest sees `{{secret:NAME}}`
    /// handles named `<owner>/credentials.<key>` (as the CLI names them, so outputs recorded
    /// by either resolve in the other). `secret://NAME` is looked up as the CLI does.
    fn swap_credentials(&self, owner: &str, cfg: &mut Map<String, Value>) -> Result<(), Status> {
        let Some(Value::Object(creds)) = cfg.get_mut("credentials") else {
            return Ok(());
        };
        for key in SECRET_KEYS {
            let Some(Value::String(raw)) = creds.get(key).cloned() else {
                continue;
            };
            let name = format!("{owner}/credentials.{key}");
            let handle = SecretStore::handle(&name);
            if raw == handle && self.caps.secrets.resolve(&handle).is_some() {
                continue; // already ours
            }
            let value = match raw.strip_prefix("secret://") {
                Some(n) => lookup_named(n).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "iac: validation error: resource `{owner}`: config.credentials.{key}: secret {n:?} is not set (fix: export EVENTBUS_SECRET_{} for the plugin, or pass the value)",
                        n.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect::<String>()
                    ))
                })?,
                None => raw,
            };
            creds.insert(
                key.to_string(),
                Value::String(self.caps.secrets.put(&name, value)),
            );
        }
        Ok(())
    }
}

fn url_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|u| u.as_str().map(String::from))
            .collect(),
        _ => vec![],
    }
}

/// One gRPC code per error case; the message is the guest's text with wfctl's sentinel.
pub fn provider_status(e: &wit::ProviderError, secrets: &SecretStore) -> Status {
    use tonic::Code;
    use wit::ProviderError as E;
    let code = match e {
        E::NotFound(_) => Code::NotFound,
        E::AlreadyExists(_) => Code::AlreadyExists,
        E::Validation(_) => Code::InvalidArgument,
        E::RateLimited(_) => Code::ResourceExhausted,
        E::Transient(_) => Code::Unavailable,
        E::Unauthorized(_) => Code::Unauthenticated,
        E::Forbidden(_) => Code::PermissionDenied,
        E::Unimplemented(_) => Code::Unimplemented,
        E::Internal(_) => Code::Internal,
    };
    Status::new(code, secrets.redact(&runtime::error_text(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_provider_error_keeps_its_sentinel_and_gets_its_code() {
        // wfctl matches the text; the code is for everything else that reads gRPC statuses.
        let s = SecretStore::default();
        let cases = [
            (
                wit::ProviderError::NotFound("iac: resource not found: x".into()),
                Code::NotFound,
                "iac: resource not found",
            ),
            (
                wit::ProviderError::AlreadyExists("iac: resource already exists: x".into()),
                Code::AlreadyExists,
                "iac: resource already exists",
            ),
            (
                wit::ProviderError::Transient("iac: transient error: x".into()),
                Code::Unavailable,
                "iac: transient error",
            ),
            (
                wit::ProviderError::Forbidden("iac: forbidden: x".into()),
                Code::PermissionDenied,
                "iac: forbidden",
            ),
            (
                wit::ProviderError::Unauthorized("iac: unauthorized: x".into()),
                Code::Unauthenticated,
                "iac: unauthorized",
            ),
            (
                wit::ProviderError::RateLimited("iac: rate limited: x".into()),
                Code::ResourceExhausted,
                "iac: rate limited",
            ),
            (
                wit::ProviderError::Validation(vec![wit::FieldDiagnostic {
                    resource: "r".into(),
                    path: "config.x".into(),
                    message: "bad".into(),
                    fix: "fix it".into(),
                }]),
                Code::InvalidArgument,
                "iac: validation error: resource `r`: config.x: bad (fix: fix it)",
            ),
        ];
        for (e, code, text) in cases {
            let st = provider_status(&e, &s);
            assert_eq!(st.code(), code);
            assert!(st.message().contains(text), "{} lacks {text}", st.message());
        }
    }

    #[test]
    fn secret_values_never_appear_in_a_status_message() {
        let s = SecretStore::default();
        s.put("b/credentials.token", "hunter2-token".into());
        let st = provider_status(
            &wit::ProviderError::Internal("internal error: auth hunter2-token refused".into()),
            &s,
        );
        assert!(!st.message().contains("hunter2-token"));
    }
}
