//! Plans: validate every resource and their references (`resolve`, which also parses each
//! config once), diff against current state, and order the actions (creates and updates by
//! dependency; deletes in reverse, last).

mod resolve;

pub use resolve::{Parsed, Resolved, resolve};

use crate::drivers;
use crate::error::{Error, FieldDiag, Result};
use crate::model::{Action, ActionKind, BROKER, CONSUMER, Change, Output, Spec, State};
use resolve::{order, rank};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};

pub fn plan(desired: &[Spec], current: &[State]) -> Result<Vec<Action>> {
    let resolved = resolve(desired, current)?;
    let by_name: HashMap<&str, &State> = current.iter().map(|s| (s.name.as_str(), s)).collect();
    let diags = version_diags(&resolved, &by_name);
    if !diags.is_empty() {
        return Err(Error::Validation(diags));
    }
    let desired_names: BTreeSet<&str> = desired.iter().map(|s| s.name.as_str()).collect();
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    let mut actions = Vec::new();
    for r in resolved {
        let current = by_name.get(r.spec.name.as_str()).copied();
        let Some((kind, changes)) = decide(&r, current, &replaced)? else {
            continue;
        };
        if kind == ActionKind::Replace {
            replaced.insert(r.spec.name.clone());
        }
        actions.push(Action {
            kind,
            notes: notes(&r, kind),
            spec: r.spec,
            current: current.cloned(),
            changes,
        });
    }
    let gone: Vec<&State> = current
        .iter()
        .filter(|s| !desired_names.contains(s.name.as_str()))
        .collect();
    actions.extend(delete_order(&gone).into_iter().map(delete_action));
    Ok(actions)
}

pub fn output_of(st: &State) -> Output {
    Output {
        name: st.name.clone(),
        rtype: st.rtype.clone(),
        provider_id: st.provider_id.clone(),
        outputs: st.outputs.clone(),
        sensitive: vec![],
        status: "running".into(),
    }
}

fn protected(spec: &Spec) -> bool {
    spec.config
        .get("protected")
        .is_some_and(|v| v == &json!(true) || v == &json!("true"))
}

/// The server version a resource will meet: its own last apply's, else its broker's.
fn server_version(spec: &Spec, by_name: &HashMap<&str, &State>) -> Option<String> {
    let v = |st: &State| {
        st.outputs
            .get("server_version")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    by_name
        .get(spec.name.as_str())
        .and_then(|s| v(s))
        .or_else(|| {
            let broker = spec.config.get("broker_ref").and_then(Value::as_str)?;
            by_name.get(broker).and_then(|s| v(s))
        })
}

/// Fields the broker's server is too old for, caught before anything is changed.
fn version_diags(resolved: &[Resolved], by_name: &HashMap<&str, &State>) -> Vec<FieldDiag> {
    let mut out = Vec::new();
    for r in resolved {
        let (Some((kind, config)), Some(server)) = (r.kind(), server_version(&r.spec, by_name))
        else {
            continue;
        };
        out.extend((kind.check_version)(&r.spec.name, config, &server));
    }
    out
}

/// Create, update, replace or nothing, with the changes that decide it.
fn decide(
    r: &Resolved,
    current: Option<&State>,
    replaced: &BTreeSet<String>,
) -> Result<Option<(ActionKind, Vec<Change>)>> {
    let spec = &r.spec;
    let Some(st) = current else {
        if let Some(d) = r
            .kind()
            .and_then(|(kind, config)| (kind.check_create)(&spec.name, config))
        {
            return Err(Error::Validation(vec![d]));
        }
        return Ok(Some((ActionKind::Create, vec![])));
    };
    if st.rtype != spec.rtype {
        let c = Change {
            path: "type".into(),
            old: json!(st.rtype),
            new: json!(spec.rtype),
            force_new: true,
            reason: "the resource type changed".into(),
        };
        return Ok(Some((ActionKind::Replace, vec![c])));
    }
    let mut changes = match r.kind() {
        Some((kind, config)) => (kind.diff)(&spec.name, config, &st.outputs)?,
        None => drivers::diff(spec, &output_of(st))?,
    };
    if spec.rtype == CONSUMER && spec.depends_on.iter().any(|d| replaced.contains(d)) {
        let stream = spec
            .config
            .get("stream_name")
            .cloned()
            .unwrap_or(Value::Null);
        changes.push(Change {
            path: "stream_name".into(),
            old: stream.clone(),
            new: stream,
            force_new: true,
            reason: "its stream is replaced, and a stream's consumers go with it".into(),
        });
    }
    Ok(if changes.iter().any(|c| c.force_new) {
        Some((ActionKind::Replace, changes))
    } else if !changes.is_empty() {
        Some((ActionKind::Update, changes))
    } else {
        None
    })
}

/// What a reviewer should know about an action: what a replace loses, guards that apply.
fn notes(r: &Resolved, kind: ActionKind) -> Vec<String> {
    let spec = &r.spec;
    let mut notes = Vec::new();
    if kind == ActionKind::Create && spec.config.get("adopt_existing") == Some(&json!(true)) {
        notes.push("adopt_existing: an existing resource of this name is taken over if its config can be updated in place".into());
    }
    if matches!(kind, ActionKind::Update | ActionKind::Replace)
        && spec.rtype == BROKER
        && spec.config.get("deploy_target").and_then(Value::as_str)
            == Some("digitalocean.app_platform")
    {
        notes.push("App Platform applies this as a new deployment: JetStream data (memory or ephemeral disk) is lost; `apply --refresh` recreates the streams and consumers empty".into());
    }
    if kind == ActionKind::Replace {
        if let Some((k, _)) = r.kind() {
            notes.push(k.replace_note.into());
        }
        if protected(spec) {
            notes.push(format!(
                "protected: apply refuses this replace unless given --allow-replace {}",
                spec.name
            ));
        }
    }
    notes
}

fn delete_action(st: &State) -> Action {
    let spec = Spec {
        name: st.name.clone(),
        rtype: st.rtype.clone(),
        config: st.applied_config.clone(),
        size: String::new(),
        depends_on: st.dependencies.clone(),
    };
    let mut notes = Vec::new();
    if protected(&spec) {
        notes.push(format!(
            "protected: apply refuses this delete unless given --allow-replace {}",
            st.name
        ));
    }
    if st.rtype == CONSUMER {
        notes.push("deleting a consumer discards its delivery position".into());
    }
    Action {
        kind: ActionKind::Delete,
        spec,
        current: Some(st.clone()),
        changes: vec![],
        notes,
    }
}

/// Dependents first: consumers, then streams, then brokers, honouring recorded dependencies.
pub fn delete_order<'a>(gone: &[&'a State]) -> Vec<&'a State> {
    let specs: Vec<Spec> = gone
        .iter()
        .map(|s| Spec {
            name: s.name.clone(),
            rtype: s.rtype.clone(),
            depends_on: s.dependencies.clone(),
            ..Spec::default()
        })
        .collect();
    let forward = order(specs, |s| s).unwrap_or_default();
    let mut out: Vec<&State> = forward
        .iter()
        .rev()
        .filter_map(|sp| gone.iter().copied().find(|s| s.name == sp.name))
        .collect();
    if out.len() != gone.len() {
        out = gone.to_vec();
        out.sort_by_key(|s| std::cmp::Reverse(rank(&s.rtype)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::resolve::file_streams_on_memory_brokers;
    use super::*;
    use crate::model::{Json, STREAM};

    fn spec(name: &str, rtype: &str, cfg: &str) -> Spec {
        Spec {
            name: name.into(),
            rtype: rtype.into(),
            config: serde_json::from_str::<Json>(cfg).unwrap(),
            ..Spec::default()
        }
    }

    fn pilot() -> Vec<Spec> {
        vec![
            spec("c1", CONSUMER, r#"{"stream_name":"S","name":"c1"}"#),
            spec("s", STREAM, r#"{"name":"S","subjects":["s.>"]}"#),
            spec(
                "b",
                BROKER,
                r#"{"provider":"nats","deploy_target":"self_hosted","url":"nats://127.0.0.1:4222"}"#,
            ),
        ]
    }

    #[test]
    fn creates_come_in_dependency_order_whatever_the_file_order() {
        // Broker, then stream, then consumer, though the file lists them backwards.
        let actions = plan(&pilot(), &[]).unwrap();
        let names: Vec<&str> = actions.iter().map(|a| a.spec.name.as_str()).collect();
        assert_eq!(names, ["b", "s", "c1"]);
        assert!(actions.iter().all(|a| a.kind == ActionKind::Create));
        // The resolved consumer knows its broker through its stream.
        assert_eq!(actions[2].spec.config["broker_ref"], json!("b"));
        assert_eq!(actions[2].spec.depends_on, vec!["s".to_string()]);
    }

    #[test]
    fn a_consumer_naming_an_undeclared_stream_is_refused() {
        // The diagnostic names the resource and the field.
        let mut specs = pilot();
        specs[0] = spec("c1", CONSUMER, r#"{"stream_name":"NOPE","name":"c1"}"#);
        let Err(Error::Validation(d)) = plan(&specs, &[]) else {
            panic!("expected validation error")
        };
        assert_eq!(d[0].resource, "c1");
        assert_eq!(d[0].path, "config.stream_name");
    }

    #[test]
    fn an_invalid_stream_does_not_make_its_consumers_invalid_too() {
        // Only the stream with the bad field is reported, not every consumer that names it.
        let mut specs = pilot();
        specs[1] = spec(
            "s",
            STREAM,
            r#"{"name":"S","subjects":["s.>"],"max_age":"7 days"}"#,
        );
        let Err(Error::Validation(d)) = plan(&specs, &[]) else {
            panic!("expected validation error")
        };
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(
            (d[0].resource.as_str(), d[0].path.as_str()),
            ("s", "config.max_age")
        );
    }

    #[test]
    fn a_file_stream_on_a_memory_only_app_platform_broker_is_refused() {
        // The server there has no file storage; the plan says so before anything is created.
        let specs = vec![
            spec(
                "b",
                BROKER,
                r#"{"provider":"nats","deploy_target":"digitalocean.app_platform","jetstream":{"store":"memory"}}"#,
            ),
            spec(
                "s",
                STREAM,
                r#"{"name":"S","subjects":["s.>"],"broker_ref":"b"}"#,
            ),
        ];
        let d = file_streams_on_memory_brokers(&specs.iter().collect::<Vec<_>>());
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].resource.as_str(), d[0].path.as_str()),
            ("s", "config.storage")
        );
        let mut ok = specs.clone();
        ok[1] = spec(
            "s",
            STREAM,
            r#"{"name":"S","subjects":["s.>"],"broker_ref":"b","storage":"memory"}"#,
        );
        assert!(file_streams_on_memory_brokers(&ok.iter().collect::<Vec<_>>()).is_empty());
    }

    #[test]
    fn deletes_go_dependents_first() {
        // With nothing desired, the consumer goes before the stream before the broker.
        let st = |n: &str, t: &str, deps: &[&str]| State {
            name: n.into(),
            rtype: t.into(),
            dependencies: deps.iter().map(|s| s.to_string()).collect(),
            ..State::default()
        };
        let current = vec![
            st("b", BROKER, &[]),
            st("s", STREAM, &["b"]),
            st("c1", CONSUMER, &["s"]),
        ];
        let actions = plan(&[], &current).unwrap();
        let names: Vec<&str> = actions.iter().map(|a| a.spec.name.as_str()).collect();
        assert_eq!(names, ["c1", "s", "b"]);
    }

    #[test]
    fn overlapping_streams_on_one_broker_are_refused() {
        // The server would refuse the second stream (10065); the plan refuses it first.
        let mut specs = pilot();
        specs.push(spec(
            "s2",
            STREAM,
            r#"{"name":"S2","subjects":["s.orders"]}"#,
        ));
        let Err(Error::Validation(d)) = plan(&specs, &[]) else {
            panic!("expected validation error")
        };
        assert!(
            d.iter()
                .any(|d| d.resource == "s2" && d.path == "config.subjects")
        );
    }

    #[test]
    fn dependency_cycles_are_refused() {
        // a -> b -> a can never be applied.
        let specs = vec![
            spec(
                "b",
                BROKER,
                r#"{"provider":"nats","deploy_target":"self_hosted","url":"nats://h:1","depends_on":["s"]}"#,
            ),
            spec("s", STREAM, r#"{"name":"S","subjects":["s"]}"#),
        ];
        let specs: Vec<Spec> = specs
            .into_iter()
            .map(|mut s| {
                s.depends_on = s
                    .config
                    .get("depends_on")
                    .and_then(|d| serde_json::from_value(d.clone()).ok())
                    .unwrap_or_default();
                s
            })
            .collect();
        let Err(Error::Validation(d)) = plan(&specs, &[]) else {
            panic!("expected a cycle")
        };
        assert!(d[0].message.contains("cycle"));
    }
}
