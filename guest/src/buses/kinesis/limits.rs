//! What a plan checks for Kinesis across resources: each stream and consumer learns its
//! broker's cloud account; at most 20 consumers per stream; at most 5 streams creating at
//! once (a sixth new stream waits for the first, by an added dependency); and, with a server
//! to ask, a stream deleted while consumers this plan keeps are still registered on it stops
//! the plan unless `enforce_consumer_deletion: true`.

use super::consumer::PER_STREAM;
use super::{DEFAULT_ACCOUNT, call, refused};
use crate::buses::Config;
use crate::error::{Error, FieldDiag, Result};
use crate::model::{Action, ActionKind, BROKER, CONSUMER, STREAM, Spec, State};
use crate::plan::Resolved;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// Streams CreateStream may have CREATING at once in an account.
pub const CREATING_AT_ONCE: usize = 5;

thread_local! {
    /// Consumers this plan deletes: (stream name, consumer name).
    static GOING: RefCell<BTreeSet<(String, String)>> = const { RefCell::new(BTreeSet::new()) };
    /// A new stream held back by the 5-creating limit: resource -> the one it waits for.
    static HELD: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
}

/// Each kinesis broker's cloud account: declared now, else as recorded.
fn accounts(desired: &[Spec], current: &[State]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for st in current.iter().filter(|s| s.rtype == BROKER) {
        if st.outputs.get("bus").and_then(Value::as_str) == Some(super::BUS.name) {
            let a = st
                .outputs
                .get("account")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_ACCOUNT);
            out.insert(st.name.clone(), a.to_string());
        }
    }
    for s in desired.iter().filter(|s| s.rtype == BROKER) {
        if s.config.get("provider").and_then(Value::as_str) == Some(super::BUS.name) {
            let a = s
                .config
                .get("account")
                .and_then(Value::as_str)
                .unwrap_or(DEFAULT_ACCOUNT);
            out.insert(s.name.clone(), a.to_string());
        }
    }
    out
}

/// The plan-wide Kinesis rules, on the resolved resources (see the module's doc).
pub fn resolve(
    desired: &[Spec],
    current: &[State],
    resolved: &mut [Resolved],
    diags: &mut Vec<FieldDiag>,
) {
    let accounts = accounts(desired, current);
    let recorded: BTreeSet<&str> = current.iter().map(|s| s.name.as_str()).collect();
    let mut per_stream: BTreeMap<String, usize> = BTreeMap::new();
    let mut new_streams: BTreeMap<String, Vec<String>> = BTreeMap::new();
    HELD.with(|h| h.borrow_mut().clear());
    for r in resolved.iter_mut() {
        let Some(p) = r.parsed.as_mut() else { continue };
        if p.bus.name != super::BUS.name {
            continue;
        }
        let broker = p.config.broker_ref().unwrap_or("").to_string();
        let account = accounts
            .get(&broker)
            .cloned()
            .unwrap_or_else(|| DEFAULT_ACCOUNT.into());
        let written = match &mut p.config {
            Config::KinesisStream(c) => c.account.replace(account.clone()),
            Config::KinesisConsumer(c) => c.account.replace(account.clone()),
            _ => None,
        };
        if let Some(w) = written.filter(|w| *w != account) {
            diags.push(FieldDiag::new(
                &r.spec.name,
                "config.account",
                format!("says {w}, but broker {broker} uses cloud account {account}"),
                "remove account: plan fills it in from the broker",
            ));
        }
        r.spec.config.insert("account".into(), json!(account));
        match &p.config {
            Config::KinesisConsumer(c) => {
                let n = per_stream
                    .entry(format!("{broker}/{}", c.stream_name))
                    .or_default();
                *n += 1;
                if *n > PER_STREAM {
                    diags.push(FieldDiag::new(
                        &r.spec.name,
                        "config.stream_name",
                        format!(
                            "stream {} would have {n} consumers; Kinesis allows {PER_STREAM}",
                            c.stream_name
                        ),
                        "move consumers to another stream or remove some",
                    ));
                }
            }
            Config::KinesisStream(_) if !recorded.contains(r.spec.name.as_str()) => {
                new_streams
                    .entry(account)
                    .or_default()
                    .push(r.spec.name.clone());
            }
            _ => {}
        }
    }
    hold_creates(resolved, &new_streams);
    let desired_names: BTreeSet<&str> = desired.iter().map(|s| s.name.as_str()).collect();
    GOING.with(|g| {
        let mut g = g.borrow_mut();
        g.clear();
        for st in current
            .iter()
            .filter(|s| s.rtype == CONSUMER && !desired_names.contains(s.name.as_str()))
        {
            let s = |k: &str| {
                st.outputs
                    .get(k)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            g.insert((s("stream_name"), s("name")));
        }
    });
}

/// The sixth new stream of an account waits for the first, the seventh for the second...
fn hold_creates(resolved: &mut [Resolved], new_streams: &BTreeMap<String, Vec<String>>) {
    for names in new_streams.values() {
        for (i, name) in names.iter().enumerate().skip(CREATING_AT_ONCE) {
            let before = &names[i - CREATING_AT_ONCE];
            if let Some(r) = resolved.iter_mut().find(|r| &r.spec.name == name)
                && !r.spec.depends_on.contains(before)
            {
                r.spec.depends_on.push(before.clone());
                HELD.with(|h| h.borrow_mut().insert(name.clone(), before.clone()));
            }
        }
    }
}

/// The plan's notes for a Kinesis action, and the refusal of a stream delete that would
/// strand consumers (asked of the server: ListStreamConsumers is a read).
pub fn preflight(a: &Action) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    if a.spec.rtype != STREAM {
        return Ok(notes);
    }
    if let Some(before) = HELD.with(|h| h.borrow().get(&a.spec.name).cloned()) {
        notes.push(format!(
            "Kinesis has at most {CREATING_AT_ONCE} streams CREATING at once: this create waits for {before}"
        ));
    }
    for c in a
        .changes
        .iter()
        .filter(|c| c.path == "shard_count" && !c.reason.is_empty())
    {
        notes.push(format!("shard_count: {}", c.reason));
    }
    if matches!(a.kind, ActionKind::Delete | ActionKind::Replace) {
        stranded(a)?;
    }
    Ok(notes)
}

fn stranded(a: &Action) -> Result<()> {
    let Some(st) = &a.current else { return Ok(()) };
    let enforce = a.spec.config.get("enforce_consumer_deletion") == Some(&json!(true))
        || st.outputs.get("enforce_consumer_deletion") == Some(&json!(true));
    let (Some(arn), Some(name)) = (
        st.outputs
            .get("arn")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty()),
        st.outputs.get("name").and_then(Value::as_str),
    ) else {
        return Ok(());
    };
    if enforce {
        return Ok(());
    }
    let account = st
        .outputs
        .get("account")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_ACCOUNT);
    let listed = match call(account, "ListStreamConsumers", json!({"StreamARN": arn}))? {
        Ok(v) => v,
        Err(e) if e.is("ResourceNotFoundException") => return Ok(()),
        Err(e) => {
            return Err(refused(
                &a.spec.name,
                "config.name",
                "ListStreamConsumers",
                &e,
            ));
        }
    };
    let left: Vec<String> = listed
        .get("Consumers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("ConsumerName").and_then(Value::as_str))
        .filter(|c| {
            a.kind == ActionKind::Replace
                || !GOING.with(|g| g.borrow().contains(&(name.to_string(), c.to_string())))
        })
        .map(String::from)
        .collect();
    if left.is_empty() {
        return Ok(());
    }
    Err(Error::invalid(
        &a.spec.name,
        "config.enforce_consumer_deletion",
        format!(
            "stream {name} would be deleted while consumers {} are still registered on it (this plan does not delete them), and Kinesis refuses that",
            left.join(", ")
        ),
        "delete those consumers too, or set enforce_consumer_deletion: true on the stream (apply it first) to deregister them with it",
    ))
}

#[cfg(test)]
mod tests {
    use crate::model::{ActionKind, BROKER, CONSUMER, Json, STREAM, Spec, State};
    use crate::plan::plan;
    use serde_json::json;

    fn spec(name: &str, rtype: &str, cfg: serde_json::Value) -> Spec {
        Spec {
            name: name.into(),
            rtype: rtype.into(),
            config: cfg.as_object().cloned().unwrap_or_default(),
            ..Spec::default()
        }
    }

    fn broker() -> Spec {
        spec(
            "k",
            BROKER,
            json!({"provider": "kinesis", "deploy_target": "aws.kinesis", "account": "prod"}),
        )
    }

    #[test]
    fn streams_and_consumers_learn_their_brokers_cloud_account() {
        // The account travels in each spec, so apply reaches it without the broker.
        let specs = vec![
            broker(),
            spec("s", STREAM, json!({"name": "orders"})),
            spec(
                "c",
                CONSUMER,
                json!({"name": "c1", "stream_name": "orders"}),
            ),
        ];
        let actions = plan(&specs, &[]).unwrap();
        assert_eq!(actions[1].spec.config["account"], json!("prod"));
        assert_eq!(actions[2].spec.config["account"], json!("prod"));
    }

    #[test]
    fn a_twenty_first_consumer_on_a_stream_is_refused() {
        // Kinesis allows 20 enhanced fan-out consumers per stream.
        let mut specs = vec![broker(), spec("s", STREAM, json!({"name": "orders"}))];
        for i in 0..21 {
            specs.push(spec(
                &format!("c{i:02}"),
                CONSUMER,
                json!({"name": format!("c{i}"), "stream_name": "orders"}),
            ));
        }
        let Err(crate::error::Error::Validation(d)) = plan(&specs, &[]) else {
            panic!("expected a refusal")
        };
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].path, "config.stream_name");
    }

    #[test]
    fn a_sixth_new_stream_waits_for_the_first() {
        // At most 5 streams CREATING at once: the sixth depends on the first.
        let mut specs = vec![broker()];
        for i in 0..6 {
            specs.push(spec(
                &format!("s{i}"),
                STREAM,
                json!({"name": format!("st{i}")}),
            ));
        }
        let actions = plan(&specs, &[]).unwrap();
        let sixth = actions.iter().find(|a| a.spec.name == "s5").unwrap();
        assert!(
            sixth.spec.depends_on.contains(&"s0".to_string()),
            "{:?}",
            sixth.spec.depends_on
        );
        let fifth = actions.iter().find(|a| a.spec.name == "s4").unwrap();
        assert!(!fifth.spec.depends_on.iter().any(|d| d.starts_with('s')));
    }

    #[test]
    fn two_to_nine_shards_is_one_update_in_three_steps() {
        // The plan names the steps; the rescalings recorded in outputs count against the day.
        let outputs: Json = json!({"name": "orders", "stream_mode": "provisioned", "shard_count": 2,
            "retention": "24h", "encryption": "none", "kms_key_id": null, "tags": {},
            "max_record_size": 1024, "enforce_consumer_deletion": false, "account": "prod", "rescales": []})
        .as_object()
        .cloned()
        .unwrap();
        let current = vec![State {
            name: "s".into(),
            rtype: STREAM.into(),
            outputs: outputs.clone(),
            ..State::default()
        }];
        let specs = vec![
            broker(),
            spec("s", STREAM, json!({"name": "orders", "shard_count": 9})),
        ];
        let actions = plan(&specs, &current).unwrap();
        let a = actions.iter().find(|a| a.spec.name == "s").unwrap();
        assert_eq!(a.kind, ActionKind::Update);
        assert!(
            a.changes[0].reason.contains("3 steps, 2 -> 4 -> 8 -> 9"),
            "{:?}",
            a.changes
        );
        // Nine rescalings in the last hour leave room for one, not three.
        let now = super::super::now_secs();
        let mut spent = outputs;
        spent.insert("rescales".into(), json!(vec![now - 60; 9]));
        let current = vec![State {
            outputs: spent,
            ..current[0].clone()
        }];
        let Err(crate::error::Error::Validation(d)) = plan(&specs, &current) else {
            panic!("expected the day's budget to refuse it")
        };
        assert_eq!(d[0].path, "config.shard_count");
        assert!(d[0].message.contains("9 of AWS's 10"), "{d:?}");
    }
}
