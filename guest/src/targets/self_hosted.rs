//! `deploy_target: self_hosted`: the broker is an existing NATS server we do not own. Create
//! verifies JetStream answers there and records the endpoint; delete only forgets it.

use crate::bindings::eventbus::iac::nats::Auth;
use crate::buses::nats::{Js, api_error};
use crate::config::broker::{self as cfg, BrokerCfg, Credentials};
use crate::error::{Error, Result};
use crate::model::{BROKER, Change, Json, Output, Ref, Spec};
use serde_json::{Value, json};

/// `self_hosted/<resource>?urls=<url>,<url>[&domain=<d>]`: the endpoint travels with the id,
/// so a process that only has refs (wfctl's destroy, status, drift) can still reach the broker.
pub fn provider_id(resource: &str, urls: &[String], domain: Option<&str>) -> String {
    let mut id = format!("self_hosted/{resource}?urls={}", urls.join(","));
    if let Some(d) = domain {
        id.push_str(&format!("&domain={d}"));
    }
    id
}

fn auth(c: &Option<Credentials>) -> Option<Auth> {
    c.as_ref().map(|c| match c {
        Credentials::Token(t) => Auth::Token(t.clone()),
        Credentials::UserPassword(u, p) => Auth::UserPassword((u.clone(), p.clone())),
        Credentials::NkeySeed(n) => Auth::NkeySeed(n.clone()),
        Credentials::Creds(k) => Auth::Creds(k.clone()),
    })
}

fn auth_json(c: &Option<Credentials>) -> Value {
    match c {
        None => Value::Null,
        Some(Credentials::Token(t)) => json!({"kind": "token", "token": t}),
        Some(Credentials::UserPassword(u, p)) => {
            json!({"kind": "user_password", "user": u, "password": p})
        }
        Some(Credentials::NkeySeed(n)) => json!({"kind": "nkey", "nkey_seed": n}),
        Some(Credentials::Creds(k)) => json!({"kind": "creds", "creds": k}),
    }
}

/// Asks JetStream for the account info: proves the server is there and has JetStream.
fn verify(js: &Js, resource: &str) -> Result<Value> {
    let answer = match js.request("INFO", None) {
        // Nobody serves the JetStream API there: not enabled, or another domain.
        Err(Error::Transient(m)) if m.contains("no responders") => {
            let ep = js.where_to();
            return Err(match ep.domain {
                Some(d) => Error::invalid(
                    resource,
                    "config.domain",
                    format!(
                        "no JetStream answers in domain {d:?} at {}",
                        ep.urls.join(", ")
                    ),
                    "check the server's jetstream.domain setting and use the same name, or remove domain",
                ),
                None => Error::invalid(
                    resource,
                    "config.url",
                    format!("no JetStream answers at {}", ep.urls.join(", ")),
                    "start nats-server with -js (or enable jetstream in its config), or set the JetStream domain",
                ),
            });
        }
        other => other?,
    };
    match answer {
        Ok(v) => Ok(v),
        Err(e) if e.code == 503 || e.err_code == 10039 => Err(Error::invalid(
            resource,
            "config.url",
            format!(
                "the server answers but JetStream is not enabled for this account ({})",
                e.description
            ),
            "start nats-server with -js (or enable jetstream in its config)",
        )),
        Err(e) => Err(api_error(resource, "reading JetStream account info", e)),
    }
}

fn output(resource: &str, c: &BrokerCfg, js: &Js, info: &Value) -> Output {
    let mut o = Json::new();
    o.insert("provider".into(), json!(c.provider));
    o.insert("deploy_target".into(), json!(c.deploy_target));
    o.insert("urls".into(), json!(c.urls));
    o.insert("endpoint".into(), json!(c.urls.first()));
    o.insert(
        "domain".into(),
        c.domain.clone().map_or(Value::Null, Value::String),
    );
    o.insert("auth".into(), auth_json(&c.credentials));
    o.insert("server_version".into(), json!(js.server_version));
    o.insert(
        "api_level".into(),
        info.pointer("/api/level").cloned().unwrap_or(json!(0)),
    );
    o.insert("identity".into(), Value::Object(c.identity.clone()));
    Output {
        name: resource.into(),
        rtype: BROKER.into(),
        provider_id: provider_id(resource, &c.urls, c.domain.as_deref()),
        outputs: o,
        sensitive: vec![],
        status: "running".into(),
    }
}

pub fn create(spec: &Spec, c: &BrokerCfg) -> Result<Output> {
    let js = Js::endpoint(&c.urls, auth(&c.credentials), c.domain.clone())?;
    let info = verify(&js, &spec.name)?;
    Js::forget(&spec.name);
    Ok(output(&spec.name, c, &js, &info))
}

pub fn update(spec: &Spec, c: &BrokerCfg) -> Result<Output> {
    create(spec, c)
}

/// Reads the broker back from what the host knows of it (its endpoint) and what the server
/// says now, in the same shape create returns.
pub fn read(r: &Ref) -> Result<Output> {
    let js = Js::broker(&r.name)?;
    let info = verify(&js, &r.name)?;
    let ep = js.where_to();
    let credentials = ep.auth.map(|a| match a {
        Auth::Token(t) => Credentials::Token(t),
        Auth::UserPassword((u, p)) => Credentials::UserPassword(u, p),
        Auth::NkeySeed(n) => Credentials::NkeySeed(n),
        Auth::Creds(c) => Credentials::Creds(c),
    });
    let c = BrokerCfg {
        identity: cfg::identity(
            "nats",
            "self_hosted",
            &ep.urls,
            ep.domain.as_deref(),
            credentials.as_ref(),
        ),
        provider: "nats".into(),
        deploy_target: "self_hosted".into(),
        urls: ep.urls,
        domain: ep.domain,
        credentials,
        version: String::new(),
        common: Default::default(),
        kafka: None,
    };
    let mut out = output(&r.name, &c, &js, &info);
    out.provider_id = r.provider_id.clone();
    Ok(out)
}

/// Nothing to remove: the server is not ours. The record is forgotten.
pub fn delete(_r: &Ref) -> Result<()> {
    Ok(())
}

pub fn diff(spec: &Spec, current: &Output) -> Result<Vec<Change>> {
    let c = cfg::parse(&spec.name, &spec.config).map_err(Error::Validation)?;
    let live = super::recorded_identity(current);
    let mut out = Vec::new();
    for (k, want) in &c.identity {
        let have = live.get(k).cloned().unwrap_or(Value::Null);
        if &have != want {
            let force = k == "provider" || k == "deploy_target";
            out.push(Change {
                path: if k == "urls" { "url".into() } else { k.clone() },
                old: have,
                new: want.clone(),
                force_new: force,
                reason: if force {
                    format!("a broker cannot change its {k} in place")
                } else {
                    String::new()
                },
            });
        }
    }
    Ok(out)
}
