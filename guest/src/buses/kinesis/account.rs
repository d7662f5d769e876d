//! `infra.eventbus` with `provider: kinesis`, `deploy_target: aws.kinesis`: an AWS account and
//! region, reached through the operator's `cloud_accounts` entry named by `account` (default
//! `aws`). Create checks the account answers (DescribeLimits) and records where it is; delete
//! only forgets it: the account is not ours.

use super::{DEFAULT_ACCOUNT, ID_PREFIX, call, refused};
use crate::config::Fields;
use crate::config::broker::BrokerCfg;
use crate::error::Result;
use crate::model::{BROKER, Change, Json, Output, Ref, Spec};
use serde_json::{Value, json};

/// The kinesis keys of a broker's config, into its identity: `account` (the cloud account)
/// and, if written, `region` (checked against the ARNs the account answers with).
pub fn read_config(f: &mut Fields, identity: &mut Json) {
    let account = f
        .str("account")
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| DEFAULT_ACCOUNT.into());
    if account.contains(['/', '?', '&', '=']) {
        f.error(
            "account",
            format!("{account:?} is not a cloud account name"),
            "name a key of the iac.provider module's cloud_accounts, e.g. aws",
        );
    }
    let region = f.str("region").filter(|r| !r.is_empty());
    if let Some(r) = &region
        && !r
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        f.error(
            "region",
            format!("{r:?} is not an AWS region"),
            "write a region such as eu-central-1",
        );
    }
    identity.remove("urls");
    identity.remove("domain");
    identity.insert("account".into(), json!(account));
    identity.insert("region".into(), json!(region));
}

/// The cloud account a parsed kinesis broker uses.
pub fn account_of(c: &BrokerCfg) -> String {
    c.identity
        .get("account")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_ACCOUNT)
        .to_string()
}

pub fn provider_id(resource: &str, account: &str) -> String {
    format!("{ID_PREFIX}{resource}?account={account}")
}

/// A kinesis broker's id: `kinesis/<broker>?account=...` (one path segment).
pub fn owns(provider_id: &str) -> bool {
    provider_id.starts_with(ID_PREFIX) && super::parse_id(provider_id).0.len() == 1
}

pub fn targets(spec: &Spec) -> bool {
    spec.config.get("provider").and_then(Value::as_str) == Some(super::BUS.name)
}

/// What the account says of itself: its shard limit and open shards, on-demand streams.
fn describe(resource: &str, account: &str) -> Result<Json> {
    let limits = call(account, "DescribeLimits", json!({}))?
        .map_err(|e| refused(resource, "config.account", "DescribeLimits", &e))?;
    let mut o = Json::new();
    for (ours, theirs) in [
        ("shard_limit", "ShardLimit"),
        ("open_shards", "OpenShardCount"),
        ("on_demand_streams", "OnDemandStreamCount"),
        ("on_demand_stream_limit", "OnDemandStreamCountLimit"),
    ] {
        if let Some(v) = limits.get(theirs) {
            o.insert(ours.into(), v.clone());
        }
    }
    Ok(o)
}

fn output(
    resource: &str,
    account: &str,
    region: Option<&str>,
    identity: Json,
    info: Json,
) -> Output {
    let mut o = info;
    o.insert("provider".into(), json!(super::BUS.name));
    o.insert("bus".into(), json!(super::BUS.name));
    o.insert("deploy_target".into(), json!("aws.kinesis"));
    o.insert("account".into(), json!(account));
    o.insert("region".into(), json!(region));
    o.insert("identity".into(), Value::Object(identity));
    Output {
        name: resource.into(),
        rtype: BROKER.into(),
        provider_id: provider_id(resource, account),
        outputs: o,
        sensitive: vec![],
        status: "running".into(),
    }
}

pub fn create(spec: &Spec, c: &BrokerCfg) -> Result<Output> {
    let account = account_of(c);
    let info = describe(&spec.name, &account)?;
    let region = c.identity.get("region").and_then(Value::as_str);
    Ok(output(
        &spec.name,
        &account,
        region,
        c.identity.clone(),
        info,
    ))
}

/// The account read back by its id.
pub fn read(r: &Ref) -> Result<Output> {
    let (_, q) = super::parse_id(&r.provider_id);
    let account = super::id_param(&q, "account").unwrap_or(DEFAULT_ACCOUNT);
    let info = describe(&r.name, account)?;
    let mut identity = Json::new();
    identity.insert("provider".into(), json!("kinesis"));
    identity.insert("deploy_target".into(), json!("aws.kinesis"));
    identity.insert("account".into(), json!(account));
    Ok(output(&r.name, account, None, identity, info))
}

/// Nothing to remove: the account is not ours.
pub fn delete(_: &Ref) -> Result<()> {
    Ok(())
}

/// Provider and target replace; another account or region is an update (the streams on it
/// are replaced, their `account` having changed).
pub fn diff(spec: &Spec, current: &Output) -> Result<Vec<Change>> {
    crate::targets::self_hosted::diff(spec, current)
}
