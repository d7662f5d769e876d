//! Plans: validate every resource and their references, diff against current state, and
//! order the actions (creates and updates by dependency; deletes in reverse, last).

use crate::buses::nats::rules::Version;
use crate::buses::nats::{consumer as nats_consumer, stream as nats_stream};
use crate::buses::nats::{consumer_config as consumer, stream_config as stream};
use crate::config::broker;
use crate::drivers;
use crate::error::{Error, FieldDiag, Result};
use crate::model::{
    Action, ActionKind, BROKER, CONSUMER, Change, Output, RESOURCE_TYPES, STREAM, Spec, State,
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

fn rank(rtype: &str) -> u8 {
    match rtype {
        BROKER => 0,
        STREAM => 1,
        CONSUMER => 2,
        _ => 3,
    }
}

/// Validates the desired resources together and returns them resolved: `broker_ref` filled
/// in for streams and consumers, and `depends_on` holding every dependency (implicit ones
/// too), in dependency order.
pub fn resolve(desired: &[Spec], current: &[State]) -> Result<Vec<Spec>> {
    let mut diags: Vec<FieldDiag> = Vec::new();
    let mut seen = BTreeSet::new();
    for s in desired {
        if !seen.insert(s.name.as_str()) {
            diags.push(FieldDiag::new(
                &s.name,
                "name",
                "two resources have this name",
                "give every module a unique name",
            ));
        }
        if !RESOURCE_TYPES.contains(&s.rtype.as_str()) {
            diags.push(FieldDiag::new(
                &s.name,
                "type",
                format!("{:?} is not served by the eventbus provider", s.rtype),
                format!("use one of {}", RESOURCE_TYPES.join(", ")),
            ));
        }
    }
    let brokers: Vec<&str> = desired
        .iter()
        .filter(|s| s.rtype == BROKER)
        .map(|s| s.name.as_str())
        .collect();
    let known_brokers: BTreeSet<&str> = brokers
        .iter()
        .copied()
        .chain(
            current
                .iter()
                .filter(|s| s.rtype == BROKER)
                .map(|s| s.name.as_str()),
        )
        .collect();
    let default_broker = if known_brokers.len() == 1 {
        known_brokers.iter().next().copied()
    } else {
        None
    };
    let mut resolved: Vec<Spec> = Vec::new();
    // stream name -> (resource, broker, subjects)
    let mut streams: HashMap<String, (String, String, Vec<String>)> = HashMap::new();
    let pick_broker =
        |diags: &mut Vec<FieldDiag>, s: &Spec, given: Option<String>| -> Option<String> {
            match given {
                Some(b) if known_brokers.contains(b.as_str()) => Some(b),
                Some(b) => {
                    let list: Vec<&str> = known_brokers.iter().copied().collect();
                    diags.push(FieldDiag::new(
                        &s.name,
                        "config.broker_ref",
                        format!("names broker {b:?}, which no infra.eventbus resource declares"),
                        if list.is_empty() {
                            "declare an infra.eventbus module with that name".to_string()
                        } else {
                            format!("use one of: {}", list.join(", "))
                        },
                    ));
                    None
                }
                None => match default_broker {
                    Some(b) => Some(b.to_string()),
                    None if known_brokers.is_empty() => {
                        diags.push(FieldDiag::new(
                            &s.name,
                            "config.broker_ref",
                            "no broker is declared",
                            "declare an infra.eventbus module and name it in broker_ref",
                        ));
                        None
                    }
                    None => {
                        diags.push(FieldDiag::new(
                            &s.name,
                            "config.broker_ref",
                            "several brokers are declared, so this resource must name one",
                            "set broker_ref to the broker module's name",
                        ));
                        None
                    }
                },
            }
        };
    // Streams declared at all, valid or not: a consumer of an invalid stream is not also wrong.
    let declared_streams: BTreeSet<&str> = desired
        .iter()
        .filter(|s| s.rtype == STREAM)
        .filter_map(|s| s.config.get("name").and_then(Value::as_str))
        .collect();
    let mut parsed_consumers = Vec::new();
    for s in desired {
        let mut r = s.clone();
        let mut deps: Vec<String> = Vec::new();
        match s.rtype.as_str() {
            BROKER => {
                if let Err(d) = broker::parse(&s.name, &s.config) {
                    diags.extend(d);
                }
            }
            STREAM => match stream::parse(&s.name, &s.config) {
                Ok(c) => {
                    if let Some(b) = pick_broker(&mut diags, s, c.broker_ref.clone()) {
                        r.config.insert("broker_ref".into(), json!(b));
                        if brokers.contains(&b.as_str()) {
                            deps.push(b.clone());
                        }
                        let subjects: Vec<String> = c
                            .wire
                            .get("subjects")
                            .and_then(Value::as_array)
                            .map(|a| {
                                a.iter()
                                    .filter_map(|v| v.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default();
                        for (other, (res, ob, os)) in &streams {
                            if *ob != b {
                                continue;
                            }
                            if *other == c.name {
                                diags.push(FieldDiag::new(
                                    &s.name,
                                    "config.name",
                                    format!("stream {other} is also declared by {res}"),
                                    "give each stream resource its own name",
                                ));
                            } else if let Some((x, y)) = subjects
                                .iter()
                                .flat_map(|x| os.iter().map(move |y| (x, y)))
                                .find(|(x, y)| stream::subjects_overlap(x, y))
                            {
                                diags.push(FieldDiag::new(&s.name, "config.subjects", format!("{x:?} overlaps {y:?} of stream {other} ({res}); the server refuses overlapping streams"), "make the subjects disjoint"));
                            }
                        }
                        streams.insert(c.name.clone(), (s.name.clone(), b, subjects));
                    }
                }
                Err(d) => diags.extend(d),
            },
            CONSUMER => match consumer::parse(&s.name, &s.config) {
                Ok(c) => parsed_consumers.push((resolved.len(), c)),
                Err(d) => diags.extend(d),
            },
            _ => {}
        }
        r.depends_on = deps;
        resolved.push(r);
    }
    let mut consumer_names = BTreeSet::new();
    for (i, c) in parsed_consumers {
        let s = &desired[i];
        match streams.get(&c.stream_name) {
            Some((res, b, _)) => {
                if let Some(given) = &c.broker_ref
                    && given != b
                {
                    diags.push(FieldDiag::new(
                        &s.name,
                        "config.broker_ref",
                        format!("stream {} lives on broker {b}, not {given}", c.stream_name),
                        format!("set broker_ref: {b} or remove it"),
                    ));
                }
                resolved[i].config.insert("broker_ref".into(), json!(b));
                resolved[i].depends_on.push(res.clone());
            }
            None if declared_streams.contains(c.stream_name.as_str()) => {}
            None => {
                let declared: Vec<&str> = streams.keys().map(String::as_str).collect();
                diags.push(FieldDiag::new(
                    &s.name,
                    "config.stream_name",
                    format!(
                        "names stream {:?}, which no infra.eventbus.stream resource declares",
                        c.stream_name
                    ),
                    if declared.is_empty() {
                        "declare the stream as an infra.eventbus.stream module".to_string()
                    } else {
                        format!(
                            "use a declared stream ({}) or declare {}",
                            declared.join(", "),
                            c.stream_name
                        )
                    },
                ));
            }
        }
        if !consumer_names.insert((c.stream_name.clone(), c.name.clone())) {
            diags.push(FieldDiag::new(
                &s.name,
                "config.name",
                format!(
                    "consumer {} on stream {} is declared twice",
                    c.name, c.stream_name
                ),
                "give each consumer resource its own name",
            ));
        }
    }
    for (i, s) in desired.iter().enumerate() {
        for d in &s.depends_on {
            if !seen.contains(d.as_str()) {
                diags.push(FieldDiag::new(
                    &s.name,
                    "config.depends_on",
                    format!("names {d:?}, which is not a resource of this provider"),
                    "name another module of this file",
                ));
            } else if !resolved[i].depends_on.contains(d) {
                resolved[i].depends_on.push(d.clone());
            }
        }
    }
    diags.extend(crate::targets::kubernetes::unreachable_streams(&resolved));
    diags.extend(file_streams_on_memory_brokers(&resolved));
    if !diags.is_empty() {
        return Err(Error::Validation(diags));
    }
    order(resolved)
}

/// A broker whose JetStream keeps no files (App Platform with `jetstream.store: memory`)
/// refuses file streams; say so before anything is created.
fn file_streams_on_memory_brokers(specs: &[Spec]) -> Vec<FieldDiag> {
    let memory_only: BTreeSet<&str> = specs
        .iter()
        .filter(|s| s.rtype == BROKER)
        .filter(|s| {
            s.config.get("deploy_target").and_then(Value::as_str)
                == Some("digitalocean.app_platform")
        })
        .filter(|s| {
            s.config
                .get("jetstream")
                .and_then(|j| j.get("store"))
                .and_then(Value::as_str)
                == Some("memory")
        })
        .map(|s| s.name.as_str())
        .collect();
    specs
        .iter()
        .filter(|s| s.rtype == STREAM)
        .filter(|s| s.config.get("broker_ref").and_then(Value::as_str).is_some_and(|b| memory_only.contains(b)))
        .filter(|s| s.config.get("storage").and_then(Value::as_str) != Some("memory"))
        .map(|s| {
            FieldDiag::new(
                &s.name,
                "config.storage",
                "the broker keeps JetStream in memory only (jetstream.store: memory), so a file stream would be refused",
                "set storage: memory on this stream",
            )
        })
        .collect()
}

/// Dependency order (Kahn), ties broken by type (broker, stream, consumer) then file order.
fn order(specs: Vec<Spec>) -> Result<Vec<Spec>> {
    let names: BTreeMap<&str, usize> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut indeg = vec![0usize; specs.len()];
    let mut users: Vec<Vec<usize>> = vec![vec![]; specs.len()];
    for (i, s) in specs.iter().enumerate() {
        for d in &s.depends_on {
            if let Some(&j) = names.get(d.as_str()) {
                indeg[i] += 1;
                users[j].push(i);
            }
        }
    }
    let mut ready: BTreeSet<(u8, usize)> = (0..specs.len())
        .filter(|&i| indeg[i] == 0)
        .map(|i| (rank(&specs[i].rtype), i))
        .collect();
    let mut out = Vec::new();
    while let Some(&(r, i)) = ready.iter().next() {
        ready.remove(&(r, i));
        out.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.insert((rank(&specs[u].rtype), u));
            }
        }
    }
    if out.len() != specs.len() {
        let stuck: Vec<&str> = (0..specs.len())
            .filter(|i| !out.contains(i))
            .map(|i| specs[i].name.as_str())
            .collect();
        return Err(Error::invalid(
            stuck[0],
            "config.depends_on",
            format!("dependency cycle among {}", stuck.join(", ")),
            "remove one depends_on entry to break the cycle",
        ));
    }
    let mut slots: Vec<Option<Spec>> = specs.into_iter().map(Some).collect();
    Ok(out.into_iter().filter_map(|i| slots[i].take()).collect())
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
fn version_diags(specs: &[Spec], by_name: &HashMap<&str, &State>) -> Vec<FieldDiag> {
    let mut out = Vec::new();
    for s in specs {
        let Some(server) = server_version(s, by_name) else {
            continue;
        };
        let Some(v) = Version::parse(&server) else {
            continue;
        };
        match s.rtype.as_str() {
            STREAM => out.extend(nats_stream::check(s, v, &server)),
            CONSUMER => out.extend(nats_consumer::check(s, v, &server)),
            _ => {}
        }
    }
    out
}

pub fn plan(desired: &[Spec], current: &[State]) -> Result<Vec<Action>> {
    let specs = resolve(desired, current)?;
    let by_name: HashMap<&str, &State> = current.iter().map(|s| (s.name.as_str(), s)).collect();
    let diags = version_diags(&specs, &by_name);
    if !diags.is_empty() {
        return Err(Error::Validation(diags));
    }
    let mut replaced: BTreeSet<String> = BTreeSet::new();
    let mut actions = Vec::new();
    for spec in &specs {
        let mut notes = Vec::new();
        let (kind, changes) = match by_name.get(spec.name.as_str()) {
            None => {
                if spec.rtype == STREAM {
                    let sealed = stream::parse(&spec.name, &spec.config)
                        .ok()
                        .and_then(|c| stream::sealed_at_create(&spec.name, &c));
                    if let Some(d) = sealed {
                        return Err(Error::Validation(vec![d]));
                    }
                }
                if spec.config.get("adopt_existing") == Some(&json!(true)) {
                    notes.push("adopt_existing: an existing resource of this name is taken over if its config can be updated in place".into());
                }
                (Some(ActionKind::Create), vec![])
            }
            Some(st) if st.rtype != spec.rtype => (
                Some(ActionKind::Replace),
                vec![Change {
                    path: "type".into(),
                    old: json!(st.rtype),
                    new: json!(spec.rtype),
                    force_new: true,
                    reason: "the resource type changed".into(),
                }],
            ),
            Some(st) => {
                let mut changes = drivers::diff(spec, &output_of(st))?;
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
                        reason: "its stream is replaced, and the server deletes a stream's consumers with it".into(),
                    });
                }
                if changes.iter().any(|c| c.force_new) {
                    (Some(ActionKind::Replace), changes)
                } else if !changes.is_empty() {
                    (Some(ActionKind::Update), changes)
                } else {
                    (None, changes)
                }
            }
        };
        let Some(kind) = kind else { continue };
        if matches!(kind, ActionKind::Update | ActionKind::Replace)
            && spec.rtype == BROKER
            && spec.config.get("deploy_target").and_then(Value::as_str)
                == Some("digitalocean.app_platform")
        {
            notes.push("App Platform applies this as a new deployment: JetStream data (memory or ephemeral disk) is lost; `apply --refresh` recreates the streams and consumers empty".into());
        }
        if kind == ActionKind::Replace {
            replaced.insert(spec.name.clone());
            match spec.rtype.as_str() {
                CONSUMER => notes.push("replacing a consumer resets its delivery position: acknowledgements, pending and redelivery state are lost".into()),
                STREAM => notes.push("replacing a stream deletes its messages and its consumers; they are recreated empty".into()),
                _ => {}
            }
            if protected(spec) {
                notes.push(format!(
                    "protected: apply refuses this replace unless given --allow-replace {}",
                    spec.name
                ));
            }
        }
        actions.push(Action {
            kind,
            spec: spec.clone(),
            current: by_name.get(spec.name.as_str()).map(|s| (*s).clone()),
            changes,
            notes,
        });
    }
    let desired_names: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let gone: Vec<&State> = current
        .iter()
        .filter(|s| !desired_names.contains(s.name.as_str()))
        .collect();
    for st in delete_order(&gone) {
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
        actions.push(Action {
            kind: ActionKind::Delete,
            spec,
            current: Some(st.clone()),
            changes: vec![],
            notes,
        });
    }
    Ok(actions)
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
    let forward = order(specs).unwrap_or_default();
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
    use super::*;
    use crate::model::Json;

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
        let d = file_streams_on_memory_brokers(&specs);
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
        assert!(file_streams_on_memory_brokers(&ok).is_empty());
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
