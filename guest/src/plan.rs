//! Plans: validate every resource and their references, diff against current state, and
//! order the actions (creates and updates by dependency; deletes in reverse, last).

use crate::buses::nats::stream_config as nats_stream_config;
use crate::buses::{self, Bus};
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
/// too), in dependency order. Each stream and consumer is read by the bus of its broker.
pub fn resolve(desired: &[Spec], current: &[State]) -> Result<Vec<Spec>> {
    let mut diags = check_names(desired);
    let brokers = Brokers::new(desired, current);
    let mut resolved: Vec<Spec> = desired
        .iter()
        .map(|s| Spec {
            depends_on: vec![],
            ..s.clone()
        })
        .collect();
    for s in desired.iter().filter(|s| s.rtype == BROKER) {
        if let Err(d) = broker::parse(&s.name, &s.config) {
            diags.extend(d);
        }
    }
    let streams = resolve_streams(desired, &brokers, &mut resolved, &mut diags);
    resolve_consumers(desired, &brokers, &streams, &mut resolved, &mut diags);
    let seen: BTreeSet<&str> = desired.iter().map(|s| s.name.as_str()).collect();
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

/// Unique names, and only the types this provider serves.
fn check_names(desired: &[Spec]) -> Vec<FieldDiag> {
    let mut diags = Vec::new();
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
    diags
}

/// The brokers a stream or consumer may name: declared now or recorded, with their bus.
struct Brokers<'a> {
    declared: BTreeSet<&'a str>,
    bus: BTreeMap<&'a str, &'static Bus>,
}

impl<'a> Brokers<'a> {
    fn new(desired: &'a [Spec], current: &'a [State]) -> Self {
        let mut bus = BTreeMap::new();
        for st in current.iter().filter(|s| s.rtype == BROKER) {
            bus.insert(
                st.name.as_str(),
                buses::by_name(buses::of_outputs(&st.outputs)).unwrap_or(&buses::nats::BUS),
            );
        }
        for s in desired.iter().filter(|s| s.rtype == BROKER) {
            let named = s
                .config
                .get("provider")
                .and_then(Value::as_str)
                .and_then(buses::by_name);
            bus.insert(s.name.as_str(), named.unwrap_or(&buses::nats::BUS));
        }
        for (name, b) in &bus {
            buses::learn(name, b.name);
        }
        Brokers {
            declared: desired
                .iter()
                .filter(|s| s.rtype == BROKER)
                .map(|s| s.name.as_str())
                .collect(),
            bus,
        }
    }

    /// The broker a resource names (or the only one), with a diagnostic if there is none.
    fn pick(
        &self,
        diags: &mut Vec<FieldDiag>,
        s: &Spec,
        given: Option<&str>,
    ) -> Option<(String, &'static Bus)> {
        let known: Vec<&str> = self.bus.keys().copied().collect();
        let name = match given {
            Some(b) if self.bus.contains_key(b) => b,
            Some(b) => {
                diags.push(FieldDiag::new(
                    &s.name,
                    "config.broker_ref",
                    format!("names broker {b:?}, which no infra.eventbus resource declares"),
                    if known.is_empty() {
                        "declare an infra.eventbus module with that name".to_string()
                    } else {
                        format!("use one of: {}", known.join(", "))
                    },
                ));
                return None;
            }
            None => match known.as_slice() {
                [one] => one,
                [] => {
                    diags.push(FieldDiag::new(
                        &s.name,
                        "config.broker_ref",
                        "no broker is declared",
                        "declare an infra.eventbus module and name it in broker_ref",
                    ));
                    return None;
                }
                _ => {
                    diags.push(FieldDiag::new(
                        &s.name,
                        "config.broker_ref",
                        "several brokers are declared, so this resource must name one",
                        "set broker_ref to the broker module's name",
                    ));
                    return None;
                }
            },
        };
        Some((name.to_string(), self.bus[name]))
    }
}

/// A declared stream: its resource, broker, bus and claimed subjects.
struct Declared {
    resource: String,
    broker: String,
    bus: &'static Bus,
    subjects: Vec<String>,
}

fn resolve_streams(
    desired: &[Spec],
    brokers: &Brokers,
    resolved: &mut [Spec],
    diags: &mut Vec<FieldDiag>,
) -> HashMap<String, Declared> {
    let mut streams: HashMap<String, Declared> = HashMap::new();
    for (i, s) in desired
        .iter()
        .enumerate()
        .filter(|(_, s)| s.rtype == STREAM)
    {
        let given = s.config.get("broker_ref").and_then(Value::as_str);
        let Some((b, bus)) = brokers.pick(diags, s, given) else {
            continue;
        };
        let c = match (bus.stream.parse)(s) {
            Ok(c) => c,
            Err(d) => {
                diags.extend(d);
                continue;
            }
        };
        resolved[i].config.insert("broker_ref".into(), json!(b));
        if brokers.declared.contains(b.as_str()) {
            resolved[i].depends_on.push(b.clone());
        }
        for (other, d) in streams.iter().filter(|(_, d)| d.broker == b) {
            if *other == c.name {
                diags.push(FieldDiag::new(
                    &s.name,
                    "config.name",
                    format!("stream {other} is also declared by {}", d.resource),
                    "give each stream resource its own name",
                ));
            } else if let Some((x, y)) = c
                .subjects
                .iter()
                .flat_map(|x| d.subjects.iter().map(move |y| (x, y)))
                .find(|(x, y)| nats_stream_config::subjects_overlap(x, y))
            {
                diags.push(FieldDiag::new(&s.name, "config.subjects", format!("{x:?} overlaps {y:?} of stream {other} ({}); the server refuses overlapping streams", d.resource), "make the subjects disjoint"));
            }
        }
        streams.insert(
            c.name.clone(),
            Declared {
                resource: s.name.clone(),
                broker: b,
                bus,
                subjects: c.subjects,
            },
        );
    }
    streams
}

fn resolve_consumers(
    desired: &[Spec],
    brokers: &Brokers,
    streams: &HashMap<String, Declared>,
    resolved: &mut [Spec],
    diags: &mut Vec<FieldDiag>,
) {
    // Streams declared at all, valid or not: a consumer of an invalid stream is not also wrong.
    let declared: BTreeSet<&str> = desired
        .iter()
        .filter(|s| s.rtype == STREAM)
        .filter_map(|s| s.config.get("name").and_then(Value::as_str))
        .collect();
    let mut names = BTreeSet::new();
    for (i, s) in desired
        .iter()
        .enumerate()
        .filter(|(_, s)| s.rtype == CONSUMER)
    {
        let first = s
            .config
            .get("stream_name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let given = s.config.get("broker_ref").and_then(Value::as_str);
        let bus = match streams.get(first) {
            Some(d) => d.bus,
            None => match given.and_then(|b| brokers.bus.get(b)) {
                Some(b) => *b,
                None => brokers
                    .bus
                    .values()
                    .next()
                    .copied()
                    .unwrap_or(&buses::nats::BUS),
            },
        };
        let c = match (bus.consumer.parse)(s) {
            Ok(c) => c,
            Err(d) => {
                diags.extend(d);
                continue;
            }
        };
        for stream in &c.streams {
            match streams.get(stream) {
                Some(d) => {
                    if let Some(g) = &c.broker_ref
                        && *g != d.broker
                    {
                        diags.push(FieldDiag::new(
                            &s.name,
                            "config.broker_ref",
                            format!("stream {stream} lives on broker {}, not {g}", d.broker),
                            format!("set broker_ref: {} or remove it", d.broker),
                        ));
                    }
                    resolved[i]
                        .config
                        .insert("broker_ref".into(), json!(d.broker));
                    if !resolved[i].depends_on.contains(&d.resource) {
                        resolved[i].depends_on.push(d.resource.clone());
                    }
                }
                None if declared.contains(stream.as_str()) => {}
                None => {
                    let known: Vec<&str> = streams.keys().map(String::as_str).collect();
                    diags.push(FieldDiag::new(
                        &s.name,
                        "config.stream_name",
                        format!("names stream {stream:?}, which no infra.eventbus.stream resource declares"),
                        if known.is_empty() {
                            "declare the stream as an infra.eventbus.stream module".to_string()
                        } else {
                            format!("use a declared stream ({}) or declare {stream}", known.join(", "))
                        },
                    ));
                }
            }
        }
        let first = c.streams.first().cloned().unwrap_or_default();
        if !names.insert((first.clone(), c.name.clone())) {
            diags.push(FieldDiag::new(
                &s.name,
                "config.name",
                format!("consumer {} on stream {first} is declared twice", c.name),
                "give each consumer resource its own name",
            ));
        }
    }
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

/// The bus a resolved stream or consumer is on (its broker_ref is filled in by `resolve`).
fn bus_of(spec: &Spec) -> &'static Bus {
    buses::for_spec(spec).unwrap_or(&buses::nats::BUS)
}

/// The entry of a stream's or consumer's bus for it; None for a broker.
fn kind_of(spec: &Spec) -> Option<KindRef<'static>> {
    match spec.rtype.as_str() {
        STREAM => Some(KindRef::Stream(&bus_of(spec).stream)),
        CONSUMER => Some(KindRef::Consumer(&bus_of(spec).consumer)),
        _ => None,
    }
}

/// A stream's or consumer's entry in its bus, whichever it is.
enum KindRef<'b> {
    Stream(&'b buses::Kind<buses::StreamSummary>),
    Consumer(&'b buses::Kind<buses::ConsumerSummary>),
}

impl KindRef<'_> {
    fn check_version(&self, spec: &Spec, server: &str) -> Vec<FieldDiag> {
        match self {
            KindRef::Stream(k) => (k.check_version)(spec, server),
            KindRef::Consumer(k) => (k.check_version)(spec, server),
        }
    }
    fn check_create(&self, spec: &Spec) -> Option<FieldDiag> {
        match self {
            KindRef::Stream(k) => (k.check_create)(spec),
            KindRef::Consumer(k) => (k.check_create)(spec),
        }
    }
    fn replace_note(&self) -> &'static str {
        match self {
            KindRef::Stream(k) => k.replace_note,
            KindRef::Consumer(k) => k.replace_note,
        }
    }
}

/// Fields the broker's server is too old for, caught before anything is changed.
fn version_diags(specs: &[Spec], by_name: &HashMap<&str, &State>) -> Vec<FieldDiag> {
    let mut out = Vec::new();
    for s in specs {
        let Some(server) = server_version(s, by_name) else {
            continue;
        };
        if let Some(k) = kind_of(s) {
            out.extend(k.check_version(s, &server));
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
        let current = by_name.get(spec.name.as_str()).copied();
        let Some((kind, changes)) = decide(spec, current, &replaced)? else {
            continue;
        };
        if kind == ActionKind::Replace {
            replaced.insert(spec.name.clone());
        }
        actions.push(Action {
            kind,
            notes: notes(spec, kind),
            spec: spec.clone(),
            current: current.cloned(),
            changes,
        });
    }
    let desired_names: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let gone: Vec<&State> = current
        .iter()
        .filter(|s| !desired_names.contains(s.name.as_str()))
        .collect();
    actions.extend(delete_order(&gone).into_iter().map(delete_action));
    Ok(actions)
}

/// Create, update, replace or nothing, with the changes that decide it.
fn decide(
    spec: &Spec,
    current: Option<&State>,
    replaced: &BTreeSet<String>,
) -> Result<Option<(ActionKind, Vec<Change>)>> {
    let Some(st) = current else {
        if let Some(d) = kind_of(spec).and_then(|k| k.check_create(spec)) {
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
fn notes(spec: &Spec, kind: ActionKind) -> Vec<String> {
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
        if let Some(k) = kind_of(spec) {
            notes.push(k.replace_note().into());
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
