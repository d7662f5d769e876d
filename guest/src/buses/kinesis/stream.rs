//! Kinesis data streams: CreateStream (idempotent by name: an existing stream with the same
//! mode and shards is taken as ours, so a killed apply resumes), updates in place with the
//! call each field needs, in AWS's order (UpdateStreamMode first, then UpdateShardCount in
//! steps, retention, encryption, record size, tags), DeleteStream, and waits that poll
//! DescribeStreamSummary until the stream settles.

use super::shards;
use super::stream_config::{self, Mode, StreamCfg};
use super::{Answer, AwsError, DEFAULT_ACCOUNT, ID_PREFIX, call, call_once, refused, wait_for};
use crate::error::{Error, Result};
use crate::model::{Change, Json, Output, Ref, STREAM};
use serde_json::{Value, json};

/// Where a stream is: its broker, name, cloud account, and what its id remembers.
#[derive(Debug, Clone, PartialEq)]
pub struct At {
    pub broker: String,
    pub name: String,
    pub account: String,
    pub enforce: bool,
    /// Rescalings of the last 24 hours (Unix seconds).
    pub rescales: Vec<i64>,
}

impl At {
    pub fn of(r: &Ref) -> Result<At> {
        let (segs, q) = super::parse_id(&r.provider_id);
        let [broker, name, ..] = segs.as_slice() else {
            return Err(Error::NotFound(format!(
                "{}: {:?} is not a Kinesis stream's id",
                r.name, r.provider_id
            )));
        };
        Ok(At {
            broker: broker.to_string(),
            name: name.to_string(),
            account: super::id_param(&q, "account")
                .unwrap_or(DEFAULT_ACCOUNT)
                .to_string(),
            enforce: super::id_param(&q, "enforce") == Some("true"),
            rescales: shards::decode(super::id_param(&q, "rescales").unwrap_or("")),
        })
    }

    fn new(c: &StreamCfg) -> At {
        At {
            broker: c.broker_ref.clone().unwrap_or_default(),
            name: c.name.clone(),
            account: c.account.clone().unwrap_or_else(|| DEFAULT_ACCOUNT.into()),
            enforce: c.enforce_consumer_deletion,
            rescales: vec![],
        }
    }

    pub fn id(&self) -> String {
        let mut id = format!(
            "{ID_PREFIX}{}/{}?account={}",
            self.broker, self.name, self.account
        );
        if self.enforce {
            id.push_str("&enforce=true");
        }
        if !self.rescales.is_empty() {
            id.push_str(&format!("&rescales={}", shards::encode(&self.rescales)));
        }
        id
    }
}

/// DescribeStreamSummary's answer, or None when there is no such stream.
pub fn summary(resource: &str, account: &str, name: &str) -> Result<Option<Value>> {
    match call(
        account,
        "DescribeStreamSummary",
        json!({"StreamName": name}),
    )? {
        Ok(v) => Ok(v.get("StreamDescriptionSummary").cloned()),
        Err(e) if e.is("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(refused(
            resource,
            "config.name",
            "DescribeStreamSummary",
            &e,
        )),
    }
}

fn status(s: &Value) -> &str {
    s.get("StreamStatus").and_then(Value::as_str).unwrap_or("")
}

/// Waits until the stream is ACTIVE (after CREATING or UPDATING); its summary.
pub fn wait_active(resource: &str, account: &str, name: &str) -> Result<Value> {
    wait_for(
        &format!("stream {name} becoming ACTIVE"),
        || match summary(resource, account, name)? {
            Some(s) if status(&s) == "ACTIVE" => Ok(Some(s)),
            Some(_) => Ok(None),
            None => Err(Error::NotFound(format!(
                "{resource}: stream {name} is gone"
            ))),
        },
    )
}

fn tags(resource: &str, account: &str, name: &str) -> Result<Json> {
    let mut out = Json::new();
    let mut body = json!({"StreamName": name});
    loop {
        let page = call(account, "ListTagsForStream", body.clone())?
            .map_err(|e| refused(resource, "config.tags", "ListTagsForStream", &e))?;
        let list = page
            .get("Tags")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for t in &list {
            if let (Some(k), Some(v)) = (t.get("Key").and_then(Value::as_str), t.get("Value")) {
                out.insert(k.into(), json!(v.as_str().unwrap_or("")));
            }
        }
        let more = page.get("HasMoreTags").and_then(Value::as_bool) == Some(true);
        match list.last().and_then(|t| t.get("Key")) {
            Some(last) if more => body["ExclusiveStartTagKey"] = last.clone(),
            _ => return Ok(out),
        }
    }
}

/// The stream as its outputs record it: our keys in our forms, its ARN and status.
fn output(resource: &str, at: &At, s: &Value, tags: Json) -> Output {
    let mode = match s
        .pointer("/StreamModeDetails/StreamMode")
        .and_then(Value::as_str)
    {
        Some("ON_DEMAND") => Mode::OnDemand,
        _ => Mode::Provisioned,
    };
    let key = s
        .get("KeyId")
        .and_then(Value::as_str)
        .filter(|_| s.get("EncryptionType").and_then(Value::as_str) == Some("KMS"));
    let arn = s.get("StreamARN").and_then(Value::as_str).unwrap_or("");
    let arn_parts: Vec<&str> = arn.split(':').collect();
    let mut o = Json::new();
    o.insert("name".into(), json!(at.name));
    o.insert("stream_mode".into(), json!(mode.key()));
    o.insert(
        "shard_count".into(),
        match mode {
            Mode::Provisioned => s.get("OpenShardCount").cloned().unwrap_or(Value::Null),
            Mode::OnDemand => Value::Null,
        },
    );
    let hours = s
        .get("RetentionPeriodHours")
        .and_then(Value::as_i64)
        .unwrap_or(24);
    o.insert("retention".into(), json!(format!("{hours}h")));
    o.insert(
        "encryption".into(),
        json!(if key.is_some() { "kms" } else { "none" }),
    );
    o.insert("kms_key_id".into(), json!(key));
    o.insert("tags".into(), Value::Object(tags));
    o.insert(
        "max_record_size".into(),
        json!(
            s.get("MaxRecordSizeInKiB")
                .and_then(Value::as_i64)
                .unwrap_or(stream_config::RECORD_KIB.0)
        ),
    );
    o.insert("enforce_consumer_deletion".into(), json!(at.enforce));
    o.insert("arn".into(), json!(arn));
    o.insert("status".into(), json!(status(s)));
    o.insert(
        "open_shards".into(),
        s.get("OpenShardCount").cloned().unwrap_or(Value::Null),
    );
    o.insert(
        "consumer_count".into(),
        s.get("ConsumerCount").cloned().unwrap_or(Value::Null),
    );
    o.insert(
        "region".into(),
        json!(arn_parts.get(3).copied().unwrap_or("")),
    );
    o.insert(
        "aws_account_id".into(),
        json!(arn_parts.get(4).copied().unwrap_or("")),
    );
    o.insert("account".into(), json!(at.account));
    o.insert("broker".into(), json!(at.broker));
    o.insert("rescales".into(), json!(at.rescales));
    Output {
        name: resource.into(),
        rtype: STREAM.into(),
        provider_id: at.id(),
        outputs: o,
        sensitive: vec![],
        status: if status(s) == "ACTIVE" {
            "running".into()
        } else {
            status(s).to_ascii_lowercase()
        },
    }
}

fn read_at(resource: &str, at: &At) -> Result<Output> {
    let s = summary(resource, &at.account, &at.name)?
        .ok_or_else(|| Error::NotFound(format!("{resource}: stream {} does not exist", at.name)))?;
    let t = tags(resource, &at.account, &at.name)?;
    let mut at = at.clone();
    at.rescales = shards::recent(&at.rescales, super::now_secs());
    Ok(output(resource, &at, &s, t))
}

pub fn read(r: &Ref) -> Result<Output> {
    read_at(&r.name, &At::of(r)?)
}

fn create_request(c: &StreamCfg) -> Value {
    let mut body =
        json!({"StreamName": c.name, "StreamModeDetails": {"StreamMode": c.mode.wire()}});
    if let Some(n) = c.shard_count.filter(|_| c.mode == Mode::Provisioned) {
        body["ShardCount"] = json!(n);
    }
    body
}

pub fn create(resource: &str, c: &StreamCfg) -> Result<Output> {
    let at = At::new(c);
    let made = wait_for(
        &format!("CreateStream {} (at most 5 streams create at once)", c.name),
        || {
            match call_once(&at.account, "CreateStream", &create_request(c))? {
                Ok(_) => Ok(Some(true)),
                Err(e) if e.is("ResourceInUseException") => Ok(Some(false)),
                // More than 5 streams CREATING in the account: wait for one to finish.
                Err(e) if e.is("LimitExceededException") && e.message.contains("CREATING") => {
                    Ok(None)
                }
                Err(e) => Err(refused(resource, "config.name", "CreateStream", &e)),
            }
        },
    )?;
    let s = wait_active(resource, &at.account, &c.name)?;
    if !made {
        existing_matches(resource, c, &s)?;
    }
    converge(resource, at, c, s)
}

/// A stream of this name already exists: ours from an apply that was stopped (same mode and
/// shards), or one `adopt_existing` takes over; anything else is a conflict naming the fields.
fn existing_matches(resource: &str, c: &StreamCfg, s: &Value) -> Result<()> {
    if c.common.adopt_existing {
        return Ok(());
    }
    let mode = s
        .pointer("/StreamModeDetails/StreamMode")
        .and_then(Value::as_str)
        .unwrap_or("PROVISIONED");
    let open = s.get("OpenShardCount").and_then(Value::as_i64);
    let mut differ = Vec::new();
    if mode != c.mode.wire() {
        differ.push(format!("stream_mode is {mode}"));
    }
    if c.mode == Mode::Provisioned && open != c.shard_count {
        differ.push(format!("shard_count is {}", open.unwrap_or(0)));
    }
    if differ.is_empty() {
        return Ok(());
    }
    Err(Error::AlreadyExists(format!(
        "{resource}: stream {} already exists and differs ({}); set adopt_existing: true to take it over, or choose another name",
        c.name,
        differ.join(", ")
    )))
}

pub fn update(r: &Ref, resource: &str, c: &StreamCfg) -> Result<Output> {
    let mut at = At::of(r)?;
    at.enforce = c.enforce_consumer_deletion;
    let s = wait_active(resource, &at.account, &c.name)?;
    converge(resource, at, c, s)
}

/// One change call, then the wait for the stream to settle; its summary after.
fn change(resource: &str, at: &At, op: &str, path: &str, body: Value) -> Result<Value> {
    call(&at.account, op, body)?.map_err(|e| refused(resource, path, op, &e))?;
    wait_active(resource, &at.account, &at.name)
}

/// Brings an ACTIVE stream (summary `s`) to the config, one field at a time in AWS's order.
fn converge(resource: &str, mut at: At, c: &StreamCfg, mut s: Value) -> Result<Output> {
    let arn = s
        .get("StreamARN")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let name = json!(c.name);
    let mode = s
        .pointer("/StreamModeDetails/StreamMode")
        .and_then(Value::as_str)
        .unwrap_or("PROVISIONED");
    if mode != c.mode.wire() {
        let body = json!({"StreamARN": arn, "StreamModeDetails": {"StreamMode": c.mode.wire()}});
        s = change(
            resource,
            &at,
            "UpdateStreamMode",
            "config.stream_mode",
            body,
        )?;
    }
    if let (Mode::Provisioned, Some(want)) = (c.mode, c.shard_count) {
        let open = s
            .get("OpenShardCount")
            .and_then(Value::as_i64)
            .unwrap_or(want);
        for step in shards::steps(open, want) {
            let now = super::now_secs();
            if let Err(free) = shards::fits(&at.rescales, 1, now) {
                return Err(budget_spent(resource, &at, free - now));
            }
            let body = json!({"StreamName": name, "TargetShardCount": step, "ScalingType": "UNIFORM_SCALING"});
            s = change(
                resource,
                &at,
                "UpdateShardCount",
                "config.shard_count",
                body,
            )?;
            at.rescales = shards::recent(&at.rescales, now);
            at.rescales.push(now);
        }
    }
    let hours = s
        .get("RetentionPeriodHours")
        .and_then(Value::as_i64)
        .unwrap_or(24);
    if hours != c.retention_hours {
        let op = if c.retention_hours > hours {
            "IncreaseStreamRetentionPeriod"
        } else {
            "DecreaseStreamRetentionPeriod"
        };
        let body = json!({"StreamName": name, "RetentionPeriodHours": c.retention_hours});
        s = change(resource, &at, op, "config.retention", body)?;
    }
    s = encryption(resource, &at, c, s)?;
    let kib = s
        .get("MaxRecordSizeInKiB")
        .and_then(Value::as_i64)
        .unwrap_or(stream_config::RECORD_KIB.0);
    if let Some(want) = c.max_record_kib.filter(|w| *w != kib) {
        let body = json!({"StreamARN": arn, "MaxRecordSizeInKiB": want});
        s = change(
            resource,
            &at,
            "UpdateMaxRecordSize",
            "config.max_record_size",
            body,
        )?;
    }
    let have = tags(resource, &at.account, &c.name)?;
    retag(resource, &at, c, &have)?;
    let t = tags(resource, &at.account, &c.name)?;
    at.rescales = shards::recent(&at.rescales, super::now_secs());
    Ok(output(resource, &at, &s, t))
}

fn encryption(resource: &str, at: &At, c: &StreamCfg, s: Value) -> Result<Value> {
    let current = s
        .get("KeyId")
        .and_then(Value::as_str)
        .filter(|_| s.get("EncryptionType").and_then(Value::as_str) == Some("KMS"))
        .map(String::from);
    if current == c.kms_key_id {
        return Ok(s);
    }
    let name = json!(c.name);
    match (&current, &c.kms_key_id) {
        (Some(old), None) => {
            let body = json!({"StreamName": name, "EncryptionType": "KMS", "KeyId": old});
            change(
                resource,
                at,
                "StopStreamEncryption",
                "config.encryption",
                body,
            )
        }
        (_, Some(key)) => {
            let body = json!({"StreamName": name, "EncryptionType": "KMS", "KeyId": key});
            change(
                resource,
                at,
                "StartStreamEncryption",
                "config.kms_key_id",
                body,
            )
        }
        (None, None) => Ok(s),
    }
}

/// Tags removed, then added or changed, at most 10 per call (kinesis-mock's limit; AWS's is 50).
fn retag(resource: &str, at: &At, c: &StreamCfg, have: &Json) -> Result<()> {
    let gone: Vec<&String> = have.keys().filter(|k| !c.tags.contains_key(*k)).collect();
    for chunk in gone.chunks(10) {
        let body = json!({"StreamName": c.name, "TagKeys": chunk});
        call(&at.account, "RemoveTagsFromStream", body)?
            .map_err(|e| refused(resource, "config.tags", "RemoveTagsFromStream", &e))?;
    }
    let set: Vec<(&String, &String)> = c
        .tags
        .iter()
        .filter(|(k, v)| have.get(*k).and_then(Value::as_str) != Some(v.as_str()))
        .collect();
    for chunk in set.chunks(10) {
        let tags: Json = chunk
            .iter()
            .map(|(k, v)| ((*k).clone(), json!(v)))
            .collect();
        call(
            &at.account,
            "AddTagsToStream",
            json!({"StreamName": c.name, "Tags": tags}),
        )?
        .map_err(|e| refused(resource, "config.tags", "AddTagsToStream", &e))?;
    }
    Ok(())
}

fn budget_spent(resource: &str, at: &At, wait_secs: i64) -> Error {
    Error::invalid(
        resource,
        "config.shard_count",
        format!(
            "stream {} was rescaled {} times in the last 24 hours; AWS allows {}",
            at.name,
            at.rescales.len(),
            shards::PER_DAY
        ),
        format!(
            "apply the rest of the change in {}h{}m, when the oldest rescaling is a day old",
            wait_secs / 3600,
            wait_secs % 3600 / 60
        ),
    )
}

pub fn delete(r: &Ref) -> Result<()> {
    let at = At::of(r)?;
    let body = json!({"StreamName": at.name, "EnforceConsumerDeletion": at.enforce});
    let answer: Answer = call(&at.account, "DeleteStream", body.clone())?;
    match answer {
        Ok(_) => {}
        Err(e) if e.is("ResourceNotFoundException") => return Ok(()),
        Err(e) if e.is("ResourceInUseException") => in_use(r, &at, &e, body)?,
        Err(e) => return Err(refused(&r.name, "config.name", "DeleteStream", &e)),
    }
    wait_for(&format!("stream {} being deleted", at.name), || {
        Ok(summary(&r.name, &at.account, &at.name)?
            .is_none()
            .then_some(()))
    })
}

/// DeleteStream refused as in use: still creating or updating (wait, then once more), or
/// it has consumers and enforce_consumer_deletion is off.
fn in_use(r: &Ref, at: &At, e: &AwsError, body: Value) -> Result<()> {
    match summary(&r.name, &at.account, &at.name)? {
        None => Ok(()),
        Some(s) if status(&s) != "ACTIVE" && status(&s) != "DELETING" => {
            wait_active(&r.name, &at.account, &at.name)?;
            match call(&at.account, "DeleteStream", body)? {
                Ok(_) => Ok(()),
                Err(e) if e.is("ResourceNotFoundException") => Ok(()),
                Err(e) => Err(refused(&r.name, "config.name", "DeleteStream", &e)),
            }
        }
        Some(_) => Err(Error::invalid(
            &r.name,
            "config.enforce_consumer_deletion",
            format!(
                "Kinesis refused to delete stream {}: {} ({})",
                at.name, e.code, e.message
            ),
            "deregister its consumers first, or set enforce_consumer_deletion: true to delete them with it",
        )),
    }
}

/// The desired config against the recorded outputs: the name replaces, the rest updates; a
/// shard change larger than AWS allows in one call says how many steps it takes, and one the
/// day's rescaling budget cannot hold is refused.
pub fn diff(resource: &str, c: &StreamCfg, out: &Json) -> Result<Vec<Change>> {
    let want = stream_config::live(c);
    let mut changes = Vec::new();
    for (k, new) in &want {
        let old = out.get(k).cloned().unwrap_or(Value::Null);
        if &old == new || (k == "shard_count" && c.mode == Mode::OnDemand) {
            continue;
        }
        let (force_new, reason) = match k.as_str() {
            "name" => (true, "Kinesis cannot rename a stream".to_string()),
            "shard_count" => (false, shard_reason(resource, &old, new, out)?),
            "stream_mode" => (false, "UpdateStreamMode, before any other change".into()),
            "retention" => (false, "Increase/DecreaseStreamRetentionPeriod".into()),
            _ => (false, String::new()),
        };
        changes.push(Change {
            path: k.clone(),
            old,
            new: new.clone(),
            force_new,
            reason,
        });
    }
    let account = c.account.as_deref().unwrap_or(DEFAULT_ACCOUNT);
    match out.get("account").and_then(Value::as_str) {
        Some(was) if was != account => changes.push(Change {
            path: "account".into(),
            old: json!(was),
            new: json!(account),
            force_new: true,
            reason: "the broker moved to another cloud account: a stream cannot move with it"
                .into(),
        }),
        _ => {}
    }
    Ok(changes)
}

fn shard_reason(resource: &str, old: &Value, new: &Value, out: &Json) -> Result<String> {
    let (Some(from), Some(to)) = (old.as_i64(), new.as_i64()) else {
        return Ok("set after the mode change".into());
    };
    let steps = shards::steps(from, to);
    let history: Vec<i64> = out
        .get("rescales")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    let now = super::now_secs();
    if let Err(free) = shards::fits(&history, steps.len(), now) {
        let used = shards::recent(&history, now).len();
        let wait = free - now;
        return Err(Error::invalid(
            resource,
            "config.shard_count",
            format!(
                "{} needs {} rescalings and {used} of AWS's {} per 24 hours are used",
                shards::path(from, to),
                steps.len(),
                shards::PER_DAY
            ),
            format!(
                "change shard_count by less now, or wait {}h{}m for the oldest rescaling to age out",
                wait / 3600,
                wait % 3600 / 60
            ),
        ));
    }
    Ok(if steps.len() > 1 {
        format!(
            "UpdateShardCount in {} steps, {}: AWS allows at most double or half the open shards per call",
            steps.len(),
            shards::path(from, to)
        )
    } else {
        "UpdateShardCount (UNIFORM_SCALING)".into()
    })
}
