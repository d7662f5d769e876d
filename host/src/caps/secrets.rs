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
    /// Names known only to be masked and redacted (operator credentials the host uses
    /// itself): no handle resolves to them, so no guest request can carry them.
    host_only: RwLock<std::collections::HashSet<String>>,
    /// Where generated secrets are kept between runs (0600), if anywhere.
    generated_file: RwLock<Option<std::path::PathBuf>>,
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

    /// Knows a value only to mask and redact it (an operator credential the guest never uses).
    pub fn remember(&self, name: &str, value: String) {
        self.put(name, value);
        self.host_only
            .write()
            .expect("secret store")
            .insert(name.to_string());
    }

    /// Every known value in `text` replaced by its handle (responses going into the guest),
    /// also where an API reflects it JSON-escaped or base64-encoded (a Kubernetes Secret's
    /// `data`), so storing a handle and reading it back does not reveal the value.
    pub fn mask(&self, text: &str) -> String {
        let values = self.values.read().expect("secret store");
        let mut out = text.to_string();
        for (name, v) in values.iter() {
            for form in forms(v) {
                if out.contains(form.as_str()) {
                    out = out.replace(form.as_str(), &Self::handle(name));
                }
            }
        }
        out
    }

    /// Loads the secrets generated in earlier runs and keeps new ones in `path` (mode 0600).
    pub fn keep_generated_in(&self, path: &std::path::Path) -> std::io::Result<()> {
        if let Ok(text) = std::fs::read_to_string(path) {
            let saved: HashMap<String, String> =
                serde_json::from_str(&text).map_err(std::io::Error::other)?;
            self.values.write().expect("secret store").extend(saved);
        }
        *self.generated_file.write().expect("secret store") = Some(path.to_path_buf());
        Ok(())
    }

    /// A file beside the generated secrets (same directory, same privacy), for other host
    /// records that must outlive this process; None when secrets are kept in memory only.
    pub fn file_beside(&self, name: &str) -> Option<std::path::PathBuf> {
        let file = self.generated_file.read().expect("secret store").clone()?;
        Some(file.with_file_name(name))
    }

    /// The handle of `name`, generating `length` random letters and digits the first time.
    pub fn generate(&self, name: &str, length: u32) -> Result<String, String> {
        if self.values.read().expect("secret store").contains_key(name) {
            return Ok(Self::handle(name));
        }
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let len = length.clamp(16, 128) as usize;
        let mut raw = vec![0u8; len];
        getrandom::fill(&mut raw).map_err(|e| format!("no randomness: {e}"))?;
        let value: String = raw
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect();
        let file = self.generated_file.read().expect("secret store").clone();
        let mut values = self.values.write().expect("secret store");
        values.insert(name.to_string(), value.clone());
        if let Some(path) = file {
            let mut saved: HashMap<String, String> = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default();
            saved.insert(name.to_string(), value);
            write_private(
                &path,
                &serde_json::to_vec_pretty(&saved).unwrap_or_default(),
            )
            .map_err(|e| {
                format!(
                    "cannot keep the generated secret in {}: {e}",
                    path.display()
                )
            })?;
        }
        Ok(Self::handle(name))
    }

    /// The value behind a handle, for the host's own use only.
    pub fn resolve(&self, handle: &str) -> Option<String> {
        let name = handle.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        if self.host_only.read().expect("secret store").contains(name) {
            return None;
        }
        self.values.read().expect("secret store").get(name).cloned()
    }

    /// A guest may have a handle for `name` (known, and not host-only).
    pub fn has(&self, name: &str) -> bool {
        self.values.read().expect("secret store").contains_key(name)
            && !self.host_only.read().expect("secret store").contains(name)
    }

    /// Every value, so output paths can redact them (in the same forms `mask` knows).
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in self.values.read().expect("secret store").values() {
            for form in forms(v) {
                out = out.replace(form.as_str(), "[redacted]");
            }
        }
        out
    }
}

/// The forms a value takes in text the host passes on: as is; JSON-escaped the way serde,
/// Go (`<`, `>`, `&` as `\u003c`...) and Python (non-ASCII as `\uXXXX`) write it, once or
/// twice; and each of those base64-encoded (standard and URL-safe) at the three alignments it
/// can have inside a longer encoded string, keeping only the characters that depend on the
/// value alone. Values shorter than 4 characters are not looked for.
fn forms(v: &str) -> Vec<String> {
    if v.len() < 4 {
        return Vec::new();
    }
    let escape = |s: &str, go: bool, ascii: bool| {
        let mut out = String::new();
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' if go => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c if (c as u32) < 0x20 || (ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{u:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out
    };
    let mut texts = vec![v.to_string()];
    for (go, ascii) in [(false, false), (true, false), (false, true), (true, true)] {
        let once = escape(v, go, ascii);
        texts.push(escape(&once, false, false));
        texts.push(once);
    }
    texts.sort();
    texts.dedup();
    let mut out = Vec::new();
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for text in &texts {
        for offset in 0..3usize {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(text.as_bytes());
            // Character i covers bits [6i, 6i+6): keep those made of the text's bits only.
            let (first, last) = ((offset * 8).div_ceil(6), bytes.len() * 8 / 6);
            let core: String = (first..last)
                .map(|i| {
                    let (byte, shift) = ((6 * i) / 8, (6 * i) % 8);
                    let word = (u16::from(bytes[byte]) << 8)
                        | u16::from(bytes.get(byte + 1).copied().unwrap_or(0));
                    T[((word >> (10 - shift)) & 63) as usize] as char
                })
                .collect();
            if core.len() >= 6 {
                out.push(core.replace('+', "-").replace('/', "_"));
                out.push(core);
            }
        }
    }
    out.extend(texts);
    out.sort_by_key(|f| std::cmp::Reverse(f.len()));
    out.dedup();
    out
}

/// Writes a file only its owner can read, atomically.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A `secret://NAME` reference: `EVENTBUS_SECRET_<NAME>` in the environment, or the file
/// `$EVENTBUS_SECRETS_DIR/NAME`.
pub fn lookup_named(name: &str) -> Option<String> {
    lookup_named_in(name, &|k| std::env::var(k).ok())
}

/// [`lookup_named`] with the environment read through `env` (a cloud account's credential
/// chain is tested with an environment of its own).
pub fn lookup_named_in(name: &str, env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
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
    if let Some(v) = env(&format!("EVENTBUS_SECRET_{var}")) {
        return Some(v);
    }
    let dir = env("EVENTBUS_SECRETS_DIR")?;
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
        Ok(if self.caps.secrets.has(&name) {
            Ok(SecretStore::handle(&name))
        } else {
            Err(CapError::Unknown(format!(
                "secret {name:?} is not configured: reference it as secret://{name} and set EVENTBUS_SECRET_{}",
                name.to_uppercase()
            )))
        })
    }

    async fn generate(
        &mut self,
        name: String,
        length: u32,
    ) -> wasmtime::Result<Result<String, CapError>> {
        tracing::debug!(%name, "secrets.generate");
        if name.is_empty() || name.len() > 200 || name.contains(['{', '}']) {
            return Ok(Err(CapError::Invalid(format!(
                "{name:?} is not a secret name"
            ))));
        }
        // Generating keeps a new secret: a change, so only a mutating call makes one; a read
        // gets the handle of one that exists.
        if !self.grant.mutates && !self.caps.secrets.has(&name) {
            return Ok(Err(CapError::Denied(
                self.grant
                    .refusal(&format!("generating the secret {name:?}")),
            )));
        }
        Ok(self
            .caps
            .secrets
            .generate(&name, length)
            .map_err(CapError::Unavailable))
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
        assert_eq!(
            s.mask("echo s3cr3t-value"),
            "echo {{secret:b/credentials.token}}"
        );
    }

    #[test]
    fn reflected_forms_are_masked_and_host_only_values_never_resolve() {
        // An API that stores a handle's value and returns it base64-encoded (a Kubernetes
        // Secret) or JSON-escaped must not hand the value to the guest.
        let s = SecretStore::default();
        s.put("p", "pa\"ss/word+0123456789".into());
        s.remember("cloud/a/token", "operator-token-value".into());
        let b64 = |b: &[u8]| {
            const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            b.chunks(3)
                .flat_map(|c| {
                    let n = (c[0] as u32) << 16
                        | (*c.get(1).unwrap_or(&0) as u32) << 8
                        | *c.get(2).unwrap_or(&0) as u32;
                    (0..4).map(move |i| T[(n >> (18 - 6 * i) & 63) as usize] as char)
                })
                .collect::<String>()
        };
        for prefix in ["", "x", "xy", "xyz"] {
            let enc = b64(format!("{prefix}pa\"ss/word+0123456789").as_bytes());
            let core = &enc[prefix.len() * 2..prefix.len() * 2 + 8];
            assert!(!s.mask(&enc).contains(core), "{prefix:?}");
        }
        assert_eq!(
            s.mask(r#"{"v":"pa\"ss/word+0123456789"}"#),
            r#"{"v":"{{secret:p}}"}"#
        );
        assert_eq!(s.resolve("{{secret:cloud/a/token}}"), None);
        assert!(!s.has("cloud/a/token") && s.has("p"));
        assert_eq!(
            s.mask("Bearer operator-token-value"),
            "Bearer {{secret:cloud/a/token}}"
        );
    }

    #[test]
    fn generated_secrets_are_stable_across_runs_and_kept_private() {
        // The second run gets the same value back from the 0600 file, not a new one.
        use std::os::unix::fs::PermissionsExt;
        let dir =
            std::env::temp_dir().join(format!("eventbus-secrets-test-{}", std::process::id()));
        let file = dir.join("secrets.json");
        let a = SecretStore::default();
        a.keep_generated_in(&file).unwrap();
        let h = a.generate("broker/admin", 32).unwrap();
        let v = a.resolve(&h).unwrap();
        assert_eq!(v.len(), 32);
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let b = SecretStore::default();
        b.keep_generated_in(&file).unwrap();
        assert_eq!(b.generate("broker/admin", 32).unwrap(), h);
        assert_eq!(b.resolve(&h).unwrap(), v);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
