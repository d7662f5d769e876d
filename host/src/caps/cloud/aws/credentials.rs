//! Where an AWS account's keys come from, in the order AWS's own tools look:
//!
//! 1. the account's `access_key_id` and `secret_access_key` (and `session_token`), given in
//!    the file only as `${ENV}` or `secret://NAME`;
//! 2. the account's `profile`, if it names one (then nothing else is tried);
//! 3. `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`);
//! 4. the profile `AWS_PROFILE` (else `default`) in the shared credentials and config files;
//! 5. `AWS_WEB_IDENTITY_TOKEN_FILE` with `AWS_ROLE_ARN`: the token exchanged for temporary keys
//!    by STS AssumeRoleWithWebIdentity (`web_identity.rs`).
//!
//! Every value found is remembered by the secret store, so it is masked in whatever goes back
//! to the component and redacted from logs; none has a handle the component could use.

use super::profile;
use super::web_identity::WebIdentity;
use crate::caps::secrets::{SecretStore, lookup_named_in};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// The environment the chain reads: the process's, or (tests) a map of its own.
#[derive(Clone, Default)]
pub struct Env {
    vars: Option<BTreeMap<String, String>>,
}

impl Env {
    pub fn process() -> Env {
        Env { vars: None }
    }

    pub fn of<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Env {
        Env {
            vars: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// A variable's value; an empty one counts as unset, as AWS's tools treat it.
    pub fn get(&self, key: &str) -> Option<String> {
        match &self.vars {
            None => std::env::var(key).ok(),
            Some(m) => m.get(key).cloned(),
        }
        .filter(|v| !v.is_empty())
    }
}

/// One set of keys.
#[derive(Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Temporary keys' end (web identity); None for long-term keys.
    pub expires: Option<SystemTime>,
}

impl Keys {
    /// Kept by the secret store to be masked and redacted, never resolved for the guest.
    pub fn remember(&self, account: &str, secrets: &SecretStore) {
        secrets.remember(
            &format!("cloud/{account}/aws_access_key_id"),
            self.access_key_id.clone(),
        );
        secrets.remember(
            &format!("cloud/{account}/aws_secret_access_key"),
            self.secret_access_key.clone(),
        );
        if let Some(t) = &self.session_token {
            secrets.remember(&format!("cloud/{account}/aws_session_token"), t.clone());
        }
    }

    /// Still good `margin` from now.
    fn fresh(&self, margin: Duration) -> bool {
        self.expires.is_none_or(|e| e > SystemTime::now() + margin)
    }
}

/// Where an account's keys come from.
pub enum Source {
    /// Keys known at start: the account's own, the environment's, or a profile's.
    Fixed(Keys),
    /// Temporary keys for a role, fetched and renewed as they are needed.
    WebIdentity(WebIdentity),
}

/// An account's keys, as found by the chain.
pub struct Credentials {
    pub source: Source,
    /// Where they were found, for errors: "the environment (AWS_ACCESS_KEY_ID)".
    pub found_in: String,
    cached: tokio::sync::Mutex<Option<Keys>>,
}

/// Renewed this long before temporary keys expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

impl Credentials {
    /// Keys to sign with now: fixed ones, or a role's temporary keys (fetched on first use,
    /// renewed before they expire).
    pub async fn keys(
        &self,
        account: &str,
        client: &reqwest::Client,
        secrets: &SecretStore,
    ) -> Result<Keys, String> {
        match &self.source {
            Source::Fixed(k) => Ok(k.clone()),
            Source::WebIdentity(w) => {
                let mut cached = self.cached.lock().await;
                if let Some(k) = cached.as_ref().filter(|k| k.fresh(RENEW_BEFORE)) {
                    return Ok(k.clone());
                }
                let keys = w.assume(client, secrets, account).await?;
                keys.remember(account, secrets);
                *cached = Some(keys.clone());
                Ok(keys)
            }
        }
    }

    /// Temporary keys AWS no longer takes are fetched again on the next call.
    pub async fn forget(&self) {
        *self.cached.lock().await = None;
    }
}

/// A problem with an account's credentials: (field, message, fix).
pub type Problem = (String, String, String);

/// Runs the chain for the account `name` (config `a`) in the environment `env`.
pub fn find(
    name: &str,
    a: &Value,
    region: &str,
    env: &Env,
    secrets: &SecretStore,
) -> Result<Credentials, Problem> {
    let made = |source: Source, found_in: String| {
        if let Source::Fixed(k) = &source {
            k.remember(name, secrets);
        }
        Ok(Credentials {
            source,
            found_in,
            cached: Default::default(),
        })
    };
    let field = |k: &str| format!("config.cloud_accounts.{name}.{k}");
    // 1. The account's own keys.
    let own = |k: &str| -> Result<Option<String>, Problem> {
        let Some(raw) = a.get(k).and_then(Value::as_str) else {
            return Ok(None);
        };
        match raw.strip_prefix("secret://") {
            Some(n) => lookup_named_in(n, &|v| env.get(v)).map(Some).ok_or_else(|| {
                (
                    field(k),
                    format!("secret {n:?} is not set"),
                    format!(
                        "export EVENTBUS_SECRET_{}=..., or put it in the file $EVENTBUS_SECRETS_DIR/{n}",
                        n.chars()
                            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
                            .collect::<String>()
                    ),
                )
            }),
            None => Ok(Some(raw.to_string())),
        }
    };
    match (own("access_key_id")?, own("secret_access_key")?) {
        (Some(id), Some(secret)) => {
            let keys = Keys {
                access_key_id: id,
                secret_access_key: secret,
                session_token: own("session_token")?,
                expires: None,
            };
            return made(
                Source::Fixed(keys),
                format!("cloud_accounts.{name}'s own keys"),
            );
        }
        (None, None) => {}
        _ => {
            return Err((
                field("secret_access_key"),
                "access_key_id and secret_access_key go together".into(),
                "give both (as ${ENV} or secret://NAME), or neither to use the environment or a profile"
                    .into(),
            ));
        }
    }
    // 2. The account's profile, alone.
    if let Some(p) = a.get("profile").and_then(Value::as_str) {
        return match from_profile(name, p, region, env)? {
            Some((source, at)) => made(source, at),
            None => Err((
                field("profile"),
                format!("profile {p:?} is in neither {}", files(env)),
                "name a profile of those files, or set AWS_SHARED_CREDENTIALS_FILE / AWS_CONFIG_FILE"
                    .into(),
            )),
        };
    }
    // 3. The environment's keys.
    match (
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => {
            let keys = Keys {
                access_key_id: id,
                secret_access_key: secret,
                session_token: env.get("AWS_SESSION_TOKEN"),
                expires: None,
            };
            return made(
                Source::Fixed(keys),
                "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)".into(),
            );
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err((
                field("auth"),
                "only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set".into(),
                "export both, or neither".into(),
            ));
        }
        (None, None) => {}
    }
    // 4. The shared files' profile.
    let explicit = env.get("AWS_PROFILE");
    let p = explicit.clone().unwrap_or_else(|| "default".into());
    if let Some((source, at)) = from_profile(name, &p, region, env)? {
        return made(source, at);
    }
    if explicit.is_some() {
        return Err((
            field("auth"),
            format!(
                "AWS_PROFILE names {p:?}, which is in neither {}",
                files(env)
            ),
            "set AWS_PROFILE to a profile of those files".into(),
        ));
    }
    // 5. A web identity token for a role.
    if let (Some(token_file), Some(role_arn)) = (
        env.get("AWS_WEB_IDENTITY_TOKEN_FILE"),
        env.get("AWS_ROLE_ARN"),
    ) {
        let w = WebIdentity::new(
            token_file,
            role_arn,
            env.get("AWS_ROLE_SESSION_NAME"),
            region,
            env,
        )
        .map_err(|e| (field("auth"), e, "fix AWS_ENDPOINT_URL_STS".into()))?;
        let at = format!(
            "a web identity (AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN {})",
            w.role_arn
        );
        return made(Source::WebIdentity(w), at);
    }
    Err((
        field("auth"),
        format!(
            "no AWS credentials: none of the account's access_key_id/secret_access_key, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile \"default\" in {}, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN",
            files(env)
        ),
        "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, set AWS_PROFILE, or give the account access_key_id and secret_access_key as ${ENV} or secret://NAME".into(),
    ))
}

fn files(env: &Env) -> String {
    let (c, f) = profile::paths(env);
    let show = |p: Option<std::path::PathBuf>| {
        p.map_or("(no $HOME)".to_string(), |p| p.display().to_string())
    };
    format!("{} nor {}", show(c), show(f))
}

/// A profile's keys, or its role and web identity token file; None if no file has it.
fn from_profile(
    name: &str,
    p: &str,
    region: &str,
    env: &Env,
) -> Result<Option<(Source, String)>, Problem> {
    let at = format!("config.cloud_accounts.{name}.profile");
    let Some(prof) = profile::load(env, p)
        .map_err(|e| (at.clone(), e, "make the AWS shared files readable".into()))?
    else {
        return Ok(None);
    };
    let get = |k: &str| prof.get(k).filter(|v| !v.is_empty()).cloned();
    if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
        let keys = Keys {
            access_key_id: id,
            secret_access_key: secret,
            session_token: get("aws_session_token"),
            expires: None,
        };
        return Ok(Some((Source::Fixed(keys), format!("the profile {p:?}"))));
    }
    if let (Some(role_arn), Some(token_file)) = (get("role_arn"), get("web_identity_token_file")) {
        let w = WebIdentity::new(token_file, role_arn, get("role_session_name"), region, env)
            .map_err(|e| (at.clone(), e, "fix AWS_ENDPOINT_URL_STS".into()))?;
        let found = format!("the profile {p:?} (web identity for {})", w.role_arn);
        return Ok(Some((Source::WebIdentity(w), found)));
    }
    let unsupported: Vec<&str> = [
        "source_profile",
        "credential_process",
        "sso_session",
        "sso_start_url",
        "credential_source",
    ]
    .into_iter()
    .filter(|k| prof.contains_key(*k))
    .collect();
    Err((
        at,
        if unsupported.is_empty() {
            format!("the profile {p:?} has no aws_access_key_id and aws_secret_access_key, nor role_arn with web_identity_token_file")
        } else {
            format!(
                "the profile {p:?} gets its keys through {}, which the host does not run",
                unsupported.join(", ")
            )
        },
        "give the profile aws_access_key_id and aws_secret_access_key (or role_arn and web_identity_token_file), or use the environment's keys".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temp dir holding `files`, removed on drop.
    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(files: &[(&str, &str)]) -> Dir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "eventbus-aws-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(d.join(".aws")).unwrap();
        for (name, text) in files {
            std::fs::write(d.join(name), text).unwrap();
        }
        Dir(d)
    }

    fn found(a: Value, env: &Env) -> Result<(String, Option<Keys>), Problem> {
        let c = find("aws", &a, "eu-west-1", env, &SecretStore::default())?;
        let keys = match &c.source {
            Source::Fixed(k) => Some(k.clone()),
            Source::WebIdentity(_) => None,
        };
        Ok((c.found_in, keys))
    }

    #[test]
    fn the_environment_comes_before_the_default_profile() {
        // As with the AWS CLI: AWS_ACCESS_KEY_ID wins over ~/.aws/credentials' [default].
        let home = dir(&[(
            ".aws/credentials",
            "[default]\naws_access_key_id=AKIAFILE\naws_secret_access_key=f\n",
        )]);
        let h = home.0.display().to_string();
        let env = Env::of([
            ("HOME", h.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "e"),
            ("AWS_SESSION_TOKEN", "t"),
        ]);
        let (at, keys) = found(serde_json::json!({}), &env).unwrap();
        let keys = keys.unwrap();
        assert_eq!(
            (keys.access_key_id.as_str(), keys.session_token.as_deref()),
            ("AKIAENV", Some("t"))
        );
        assert!(at.contains("AWS_ACCESS_KEY_ID"), "{at}");
        let (_, keys) = found(serde_json::json!({}), &Env::of([("HOME", h.as_str())])).unwrap();
        assert_eq!(keys.unwrap().access_key_id, "AKIAFILE");
    }

    #[test]
    fn a_named_profile_is_read_from_the_files_aws_profile_points_at() {
        // AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE, and the account's own profile, which
        // is used alone (the environment's keys are not looked at then).
        let d = dir(&[(
            "creds",
            "[ci]\naws_access_key_id = AKIACI\naws_secret_access_key = c\n",
        )]);
        let creds = d.0.join("creds").display().to_string();
        let env = Env::of([
            ("AWS_SHARED_CREDENTIALS_FILE", creds.as_str()),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_PROFILE", "ci"),
        ]);
        let (at, keys) = found(serde_json::json!({}), &env).unwrap();
        assert_eq!(keys.unwrap().access_key_id, "AKIACI");
        assert!(at.contains("\"ci\""), "{at}");
        let env = Env::of([
            ("AWS_SHARED_CREDENTIALS_FILE", creds.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "e"),
        ]);
        let (_, keys) = found(serde_json::json!({"profile": "ci"}), &env).unwrap();
        assert_eq!(keys.unwrap().access_key_id, "AKIACI");
        let e = found(serde_json::json!({"profile": "nope"}), &env)
            .err()
            .unwrap();
        assert_eq!(e.0, "config.cloud_accounts.aws.profile");
    }

    #[test]
    fn the_accounts_own_keys_come_from_secret_handles() {
        // secret://NAME is read as the rest of the file's secrets are; one key alone is refused.
        let env = Env::of([("EVENTBUS_SECRET_AWS_SECRET", "s3cr3t-value")]);
        let a = serde_json::json!({"access_key_id": "AKIAOWN", "secret_access_key": "secret://aws-secret"});
        let (_, keys) = found(a, &env).unwrap();
        assert_eq!(keys.unwrap().secret_access_key, "s3cr3t-value");
        let e = found(
            serde_json::json!({"secret_access_key": "secret://missing"}),
            &env,
        )
        .err()
        .unwrap();
        assert!(e.1.contains("not set"), "{e:?}");
        let e = found(
            serde_json::json!({"access_key_id": "AKIAOWN"}),
            &Env::of([("HOME", "/nonexistent")]),
        )
        .err()
        .unwrap();
        assert!(e.1.contains("go together"), "{e:?}");
    }

    #[test]
    fn no_credentials_anywhere_names_every_place_looked() {
        // The error lists the chain, and the fix names the usual ways.
        let e = found(serde_json::json!({}), &Env::of([("HOME", "/nonexistent")]))
            .err()
            .unwrap();
        assert_eq!(e.0, "config.cloud_accounts.aws.auth");
        assert!(
            e.1.contains("AWS_ACCESS_KEY_ID") && e.1.contains("AWS_WEB_IDENTITY_TOKEN_FILE"),
            "{}",
            e.1
        );
        assert!(e.2.contains("secret://"), "{}", e.2);
    }

    #[test]
    fn found_keys_are_masked_but_never_resolvable() {
        // Masking replaces the value; the guest cannot turn a handle into it.
        let s = SecretStore::default();
        let env = Env::of([
            ("AWS_ACCESS_KEY_ID", "AKIAMASKED1"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-key"),
        ]);
        find("aws", &serde_json::json!({}), "eu-west-1", &env, &s).unwrap();
        assert!(!s.mask("x very-secret-key y").contains("very-secret-key"));
        assert!(
            s.resolve("{{secret:cloud/aws/aws_secret_access_key}}")
                .is_none()
        );
    }
}
