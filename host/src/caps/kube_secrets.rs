//! Kubernetes Secrets are write-only for the component.
//!
//! A cloud grant is by method and path prefix, and the grant a Kubernetes target needs
//! (`GET` under `/api/v1/namespaces/NS/`) would let a component read every Secret in the
//! namespace, data and all: an operator's other credentials. So, for an account that is a
//! Kubernetes API (`kubeconfig`, or `kind: kubernetes`), whatever the grant says:
//!
//! - Secrets are never listed or watched (any path form, `watch=` in the query).
//! - One Secret is read, by name, only if the component created it (recorded by the host when
//!   the API accepted the create, kept beside the generated secrets across runs) or the
//!   operator named it (`secrets: [NS/NAME]` in the account); and only as metadata: the host
//!   sets the Accept header itself, and refuses an answer that carries `data` or `stringData`.
//! - A Secret is replaced, patched or deleted only under the same condition; a create is
//!   allowed (it adds a Secret, it cannot read one); deleting the whole collection is refused.
//! - Whatever a write answers, `data` and `stringData` are removed before the component sees it.
//! - A `%` in a path is refused (Kubernetes names never need one, and the API server would
//!   decode `secr%65ts` into `secrets`).

use super::CapError;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::RwLock;

/// What the API answers a Secret read with when asked for metadata only.
pub const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";

/// One call's relation to Secrets.
#[derive(Debug, PartialEq, Eq)]
pub enum Access {
    /// Not about Secrets at all.
    Other,
    /// A Secret by name: read (`write` false) or changed.
    One {
        namespace: String,
        name: String,
        write: bool,
    },
    /// A create in a namespace's collection (its name is in the body).
    Create { namespace: String },
}

/// The Secrets a Kubernetes account's component may touch by name: the operator's and its own.
pub struct SecretsRule {
    granted: BTreeSet<(String, String)>,
    created: RwLock<BTreeSet<(String, String)>>,
    file: Option<PathBuf>,
}

impl SecretsRule {
    /// `granted` as `NS/NAME`; `file` keeps the created ones for later runs.
    pub fn new(granted: &[String], file: Option<PathBuf>) -> SecretsRule {
        let created = file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
            .unwrap_or_default();
        SecretsRule {
            granted: granted.iter().filter_map(|g| pair(g)).collect(),
            created: RwLock::new(created.iter().filter_map(|g| pair(g)).collect()),
            file,
        }
    }

    fn known(&self, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_string(), name.to_string());
        self.granted.contains(&key) || self.created.read().expect("created").contains(&key)
    }

    /// Refuses what the rule forbids before anything is sent; returns what the call is.
    pub fn check(&self, method: &str, path: &str, query: Option<&str>) -> Result<Access, CapError> {
        if path.contains('%') {
            return Err(CapError::Denied(format!(
                "path {path:?} has a percent-encoded character: Kubernetes names never need one"
            )));
        }
        let access = classify(method, path, query)?;
        if let Access::One {
            namespace, name, ..
        } = &access
            && !self.known(namespace, name)
        {
            return Err(CapError::Denied(format!(
                "Secret {namespace}/{name} was not created by this provider: Secrets are write-only for the component, and only its own (or ones named in the account's `secrets: [{namespace}/{name}]`) may be read as metadata, replaced or deleted"
            )));
        }
        Ok(access)
    }

    /// After the API answered: remember a created Secret, forget a deleted one, and keep
    /// Secret data out of the answer (refusing a read that carries it).
    pub fn answered(
        &self,
        access: &Access,
        method: &str,
        status: u16,
        sent: &[u8],
        body: Vec<u8>,
    ) -> Result<Vec<u8>, CapError> {
        if *access == Access::Other {
            return Ok(body);
        }
        let ok = (200..300).contains(&status);
        match access {
            Access::Create { namespace } if ok => {
                let name = serde_json::from_slice::<Value>(sent)
                    .ok()
                    .and_then(|v| v.pointer("/metadata/name")?.as_str().map(String::from));
                if let Some(name) = name {
                    self.record(namespace, &name, true);
                }
            }
            Access::One {
                namespace, name, ..
            } if ok && method == "DELETE" => self.record(namespace, name, false),
            _ => {}
        }
        let Ok(mut v) = serde_json::from_slice::<Value>(&body) else {
            return Ok(body); // not JSON: a Status text or empty
        };
        let reading = matches!(access, Access::One { write: false, .. });
        if reading && carries_data(&v) {
            return Err(CapError::Denied(
                "the API answered a Secret read with its data; the host asked for metadata only and refuses it".into(),
            ));
        }
        strip_data(&mut v);
        Ok(serde_json::to_vec(&v).unwrap_or_default())
    }

    fn record(&self, namespace: &str, name: &str, add: bool) {
        let mut created = self.created.write().expect("created");
        let key = (namespace.to_string(), name.to_string());
        if add {
            created.insert(key)
        } else {
            created.remove(&key)
        };
        if let Some(file) = &self.file {
            let list: Vec<String> = created.iter().map(|(n, s)| format!("{n}/{s}")).collect();
            let bytes = serde_json::to_vec_pretty(&list).unwrap_or_default();
            if let Err(e) = super::secrets::write_private(file, &bytes) {
                tracing::warn!(
                    "cannot keep the created Kubernetes Secrets in {}: {e}",
                    file.display()
                );
            }
        }
    }
}

fn pair(s: &str) -> Option<(String, String)> {
    let (ns, name) = s.split_once('/')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| (ns.to_string(), name.to_string()))
}

/// Which Secret a call is about, refusing lists, watches and collection deletes. Read by the
/// path's structure, as the API server routes it: `/api/v1[/watch][/namespaces/NS]/RESOURCE
/// [/NAME[/SUBRESOURCE]]` (a namespace or object may itself be called `secrets`).
fn classify(method: &str, path: &str, query: Option<&str>) -> Result<Access, CapError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(rest) = segs.strip_prefix(&["api", "v1"]) else {
        return Ok(Access::Other); // only the core API has Secrets
    };
    let (watch_path, rest) = match rest.strip_prefix(&["watch"]) {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let ["secrets", rest @ ..] = rest else {
        return Ok(Access::Other);
    };
    let watching = watch_path
        || query.is_some_and(|q| {
            q.split('&').any(|kv| {
                kv.split('=')
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("watch"))
            })
        });
    let read = matches!(method, "GET" | "HEAD");
    let refuse = |what: &str| {
        Err(CapError::Denied(format!(
            "{what} Secrets is refused: Secrets are write-only for the component (read one of its own by name, as metadata)"
        )))
    };
    match (namespace, rest, watching) {
        (_, _, true) => refuse("watching"),
        (None, _, _) => refuse("listing every namespace's"),
        (Some(_), [_, _, ..], _) => refuse("a sub-resource of"),
        (Some(ns), [name], _) => Ok(Access::One {
            namespace: ns,
            name: name.to_string(),
            write: !read,
        }),
        (Some(ns), [], _) if method == "POST" => Ok(Access::Create { namespace: ns }),
        (Some(_), [], _) if read => refuse("listing"),
        (Some(_), [], _) => refuse("changing the whole collection of"),
    }
}

fn carries_data(v: &Value) -> bool {
    let has = |o: &Value| o.get("data").is_some() || o.get("stringData").is_some();
    has(v)
        || v["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(has))
        || has(&v["object"])
}

fn strip_data(v: &mut Value) {
    let strip = |o: &mut Value| {
        if let Some(m) = o.as_object_mut() {
            m.remove("data");
            m.remove("stringData");
        }
    };
    strip(v);
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        items.iter_mut().for_each(strip);
    }
    if let Some(o) = v.get_mut("object") {
        strip(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> SecretsRule {
        SecretsRule::new(&["ns/operator-named".into()], None)
    }

    #[test]
    fn lists_and_watches_of_secrets_are_refused_in_every_form() {
        // Every way to see more than one Secret, with or without a trailing slash or query.
        let r = rule();
        for (path, query) in [
            ("/api/v1/namespaces/ns/secrets", None),
            ("/api/v1/namespaces/ns/secrets/", None),
            ("/api/v1/namespaces/ns/secrets", Some("labelSelector=a")),
            ("/api/v1/secrets", None),
            ("/api/v1/watch/namespaces/ns/secrets", None),
            ("/api/v1/watch/secrets", None),
            ("/api/v1/namespaces/ns/secrets", Some("watch=1")),
            (
                "/api/v1/namespaces/ns/secrets/mine-auth",
                Some("watch=true"),
            ),
            ("/api/v1/namespaces/ns/secr%65ts", None),
        ] {
            assert!(r.check("GET", path, query).is_err(), "{path}?{query:?}");
        }
        assert!(
            r.check("DELETE", "/api/v1/namespaces/ns/secrets", None)
                .is_err()
        );
    }

    #[test]
    fn one_secret_is_reachable_only_if_ours_or_named_by_the_operator() {
        let r = rule();
        let other = "/api/v1/namespaces/ns/secrets/db-password";
        for m in ["GET", "PUT", "PATCH", "DELETE"] {
            assert!(r.check(m, other, None).is_err(), "{m} another Secret");
        }
        assert!(
            r.check("GET", "/api/v1/namespaces/ns/secrets/operator-named", None)
                .is_ok()
        );
        // A create is allowed, and makes the Secret ours once the API accepted it.
        let create = r
            .check("POST", "/api/v1/namespaces/ns/secrets", None)
            .unwrap();
        r.answered(
            &create,
            "POST",
            201,
            br#"{"metadata":{"name":"mine-auth"}}"#,
            b"{}".to_vec(),
        )
        .unwrap();
        assert!(
            r.check("GET", "/api/v1/namespaces/ns/secrets/mine-auth/", None)
                .is_ok()
        );
        assert!(
            r.check("GET", "/api/v1/namespaces/other/secrets/mine-auth", None)
                .is_err()
        );
    }

    #[test]
    fn data_never_comes_back() {
        let r = rule();
        let read = r
            .check("GET", "/api/v1/namespaces/ns/secrets/operator-named", None)
            .unwrap();
        let with_data =
            br#"{"kind":"Secret","metadata":{"name":"operator-named"},"data":{"p":"aHVudGVy"}}"#;
        assert!(
            r.answered(&read, "GET", 200, b"", with_data.to_vec())
                .is_err()
        );
        // A write's echo is cut down to metadata.
        let put = r
            .check("PUT", "/api/v1/namespaces/ns/secrets/operator-named", None)
            .unwrap();
        let out = r
            .answered(&put, "PUT", 200, b"", with_data.to_vec())
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            !out.contains("\"data\"") && !out.contains("aHVudGVy"),
            "{out}"
        );
    }

    #[test]
    fn other_resources_are_not_the_rules_business() {
        let r = rule();
        for p in [
            "/api/v1/namespaces/ns/configmaps/secrets",
            "/api/v1/namespaces/secrets/configmaps/x",
            "/apis/apps/v1/namespaces/ns/statefulsets/secrets",
        ] {
            assert_eq!(r.check("GET", p, None).unwrap(), Access::Other, "{p}");
        }
        // A namespace called `secrets` does not hide its Secrets.
        assert!(
            r.check("GET", "/api/v1/namespaces/secrets/secrets/x", None)
                .is_err()
        );
    }
}
