//! Secret handles. Values stay in the host: the guest sees only `{{secret:NAME}}`
//! placeholders, which the host substitutes where it uses them (NATS credentials today,
//! outgoing cloud request bodies later).

use super::CapError;
use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::secrets::Host;
use std::collections::HashMap;
use std::sync::RwLock;

pub const PREFIX: &str = "{{secret:";
pub const SUFFIX: &str = "}}";

#[derive(Default)]
pub struct SecretStore {
    values: RwLock<HashMap<String, String>>,
}

impl SecretStore {
    pub fn handle(name: &str) -> String {
        format!("{PREFIX}{name}{SUFFIX}")
    }

    /// Keeps `value` under `name` and returns the handle the guest will see.
    pub fn put(&self, name: &str, value: String) -> String {
        self.values
            .write()
            .expect("secret store")
            .insert(name.to_string(), value);
        Self::handle(name)
    }

    /// The value behind a handle, for the host's own use only.
    pub fn resolve(&self, handle: &str) -> Option<String> {
        let name = handle.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        self.values.read().expect("secret store").get(name).cloned()
    }

    /// Every value, so output paths can redact them.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in self.values.read().expect("secret store").values() {
            if v.len() >= 4 {
                out = out.replace(v.as_str(), "[redacted]");
            }
        }
        out
    }
}

/// A `secret://NAME` reference: `EVENTBUS_SECRET_<NAME>` in the environment, or the file
/// `$EVENTBUS_SECRETS_DIR/NAME`.
pub fn lookup_named(name: &str) -> Option<String> {
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
    if let Ok(v) = std::env::var(format!("EVENTBUS_SECRET_{var}")) {
        return Some(v);
    }
    let dir = std::env::var_os("EVENTBUS_SECRETS_DIR")?;
    if name.contains(['/', '\\']) || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(std::path::Path::new(&dir).join(name))
        .ok()
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
}

impl Host for HostState {
    async fn named(&mut self, name: String) -> wasmtime::Result<Result<String, CapError>> {
        tracing::debug!(%name, "secrets.named");
        Ok(
            if self
                .caps
                .secrets
                .values
                .read()
                .expect("secret store")
                .contains_key(&name)
            {
                Ok(SecretStore::handle(&name))
            } else {
                Err(CapError::Unknown(format!(
                    "secret {name:?} is not configured: reference it as secret://{name} and set EVENTBUS_SECRET_{}",
                    name.to_uppercase()
                )))
            },
        )
    }

    async fn generate(
        &mut self,
        name: String,
        _length: u32,
    ) -> wasmtime::Result<Result<String, CapError>> {
        Ok(Err(CapError::Denied(format!(
            "generating secret {name:?} is not granted: no deploy target that needs generated credentials is enabled in this host"
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_resolve_only_in_the_host_and_values_are_redacted() {
        // The guest gets a placeholder; the host can resolve it and scrub the value from text.
        let s = SecretStore::default();
        let h = s.put("b/credentials.token", "s3cr3t-value".into());
        assert_eq!(h, "{{secret:b/credentials.token}}");
        assert_eq!(s.resolve(&h).as_deref(), Some("s3cr3t-value"));
        assert_eq!(s.resolve("{{secret:other}}"), None);
        assert_eq!(s.redact("token=s3cr3t-value"), "token=[redacted]");
    }
}
