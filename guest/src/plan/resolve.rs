//! The edge of a plan: every desired resource checked together and parsed once. Names are
//! unique, references point at declared resources, each stream and consumer is parsed by the
//! bus of its broker, and the whole is put in dependency order.

use crate::buses::nats::stream_config::Claims;
use crate::buses::{self, Bus, Config, Kind};
use crate::config::broker;
use crate::error::{Error, FieldDiag, Result};
use crate::model::{BROKER, CONSUMER, RESOURCE_TYPES, STREAM, Spec, State};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A desired resource as `resolve` leaves it: its spec with `broker_ref` filled in and
/// `depends_on` holding every dependency (implicit ones too), and, for a stream or consumer,
/// its bus and its config parsed by that bus.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub spec: Spec,
    pub parsed: Option<Parsed>,
}

#[derive(Clone)]
pub struct Parsed {
    pub bus: &'static Bus,
    pub config: Config,
}

impl std::fmt::Debug for Parsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:?}", self.bus.name, self.config)
    }
}

impl Resolved {
    /// Its stream or consumer entry in its bus, with its config; None for a broker.
    pub fn kind(&self) -> Option<(&'static Kind, &Config)> {
        let p = self.parsed.as_ref()?;
        Some((p.bus.kind(&self.spec.rtype), &p.config))
    }
}

pub(super) fn rank(rtype: &str) -> u8 {
    match rtype {
        BROKER => 0,
        STREAM => 1,
        CONSUMER => 2,
        _ => 3,
    }
}

/// Validates the desired resources together and returns them resolved, in dependency order.
pub fn resolve(desired: &[Spec], current: &[State]) -> Result<Vec<Resolved>> {
    let mut diags = check_names(desired);
    let brokers = Brokers::new(desired, current);
    let mut resolved: Vec<Resolved> = desired
        .iter()
        .map(|s| Resolved {
            spec: Spec {
                depends_on: vec![],
                ..s.clone()
            },
            parsed: None,
        })
        .collect();
    for s in desired.iter().filter(|s| s.rtype == BROKER) {
        if let Err(d) = broker::parse(&s.name, &s.config) {
            diags.extend(d);
        }
    }
    let streams = resolve_streams(desired, &brokers, &mut resolved, &mut diags);
    resolve_consumers(desired, &brokers, &streams, &mut resolved, &mut diags);
    add_declared_dependencies(desired, &mut resolved, &mut diags);
    buses::kinesis::limits::resolve(desired, current, &mut resolved, &mut diags);
    let specs: Vec<&Spec> = resolved.iter().map(|r| &r.spec).collect();
    diags.extend(crate::targets::kubernetes::unreachable_streams(&specs));
    diags.extend(file_streams_on_memory_brokers(&specs));
    if !diags.is_empty() {
        return Err(Error::Validation(diags));
    }
    order(resolved, |r| &r.spec)
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

/// `depends_on` as written: every name must be a resource of this file.
fn add_declared_dependencies(
    desired: &[Spec],
    resolved: &mut [Resolved],
    diags: &mut Vec<FieldDiag>,
) {
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
            } else if !resolved[i].spec.depends_on.contains(d) {
                resolved[i].spec.depends_on.push(d.clone());
            }
        }
    }
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

/// A declared stream: its resource, broker and bus.
struct Declared {
    resource: String,
    broker: String,
    bus: &'static Bus,
}

/// Records the broker a stream or consumer was resolved to, in its spec and its config.
fn settle(r: &mut Resolved, bus: &'static Bus, mut config: Config, broker: &str) {
    r.spec.config.insert("broker_ref".into(), json!(broker));
    config.set_broker_ref(broker);
    r.parsed = Some(Parsed { bus, config });
}

fn resolve_streams(
    desired: &[Spec],
    brokers: &Brokers,
    resolved: &mut [Resolved],
    diags: &mut Vec<FieldDiag>,
) -> HashMap<String, Declared> {
    let mut streams: HashMap<String, Declared> = HashMap::new();
    let mut claims: HashMap<String, Claims> = HashMap::new();
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
        if brokers.declared.contains(b.as_str()) {
            resolved[i].spec.depends_on.push(b.clone());
        }
        if let Some(d) = streams.get(c.name()).filter(|d| d.broker == b) {
            diags.push(FieldDiag::new(
                &s.name,
                "config.name",
                format!("stream {} is also declared by {}", c.name(), d.resource),
                "give each stream resource its own name",
            ));
        } else {
            let claimed = claims.entry(b.clone()).or_default();
            if let Some((x, (y, owner))) = c
                .subjects()
                .into_iter()
                .find_map(|x| claimed.overlapping(x).map(|y| (x, y)))
            {
                let other = &resolved[owner].spec;
                let other_name = other
                    .config
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                diags.push(FieldDiag::new(&s.name, "config.subjects", format!("{x:?} overlaps {y:?} of stream {other_name} ({}); the server refuses overlapping streams", other.name), "make the subjects disjoint"));
            }
            for x in c.subjects() {
                claimed.add(x, i);
            }
        }
        streams.insert(
            c.name().to_string(),
            Declared {
                resource: s.name.clone(),
                broker: b.clone(),
                bus,
            },
        );
        settle(&mut resolved[i], bus, c, &b);
    }
    streams
}

fn resolve_consumers(
    desired: &[Spec],
    brokers: &Brokers,
    streams: &HashMap<String, Declared>,
    resolved: &mut [Resolved],
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
        let mut broker = None;
        for stream in c.streams() {
            match streams.get(stream) {
                Some(d) => {
                    if let Some(g) = c.broker_ref()
                        && g != d.broker
                    {
                        diags.push(FieldDiag::new(
                            &s.name,
                            "config.broker_ref",
                            format!("stream {stream} lives on broker {}, not {g}", d.broker),
                            format!("set broker_ref: {} or remove it", d.broker),
                        ));
                    }
                    broker = Some(d.broker.as_str());
                    if !resolved[i].spec.depends_on.contains(&d.resource) {
                        resolved[i].spec.depends_on.push(d.resource.clone());
                    }
                }
                None if declared.contains(stream) => {}
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
        let first = c.streams().first().copied().unwrap_or_default().to_string();
        if !names.insert((first.clone(), c.name().to_string())) {
            diags.push(FieldDiag::new(
                &s.name,
                "config.name",
                format!("consumer {} on stream {first} is declared twice", c.name()),
                "give each consumer resource its own name",
            ));
        }
        match broker.map(String::from) {
            Some(b) => settle(&mut resolved[i], bus, c, &b),
            None => resolved[i].parsed = Some(Parsed { bus, config: c }),
        }
    }
}

/// A broker whose JetStream keeps no files (App Platform with `jetstream.store: memory`)
/// refuses file streams; say so before anything is created.
pub(super) fn file_streams_on_memory_brokers(specs: &[&Spec]) -> Vec<FieldDiag> {
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
pub(super) fn order<T>(items: Vec<T>, spec: impl Fn(&T) -> &Spec) -> Result<Vec<T>> {
    let specs: Vec<&Spec> = items.iter().map(&spec).collect();
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
    while let Some((_, i)) = ready.pop_first() {
        out.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.insert((rank(&specs[u].rtype), u));
            }
        }
    }
    if out.len() != specs.len() {
        let placed: BTreeSet<usize> = out.iter().copied().collect();
        let stuck: Vec<&str> = (0..specs.len())
            .filter(|i| !placed.contains(i))
            .map(|i| specs[i].name.as_str())
            .collect();
        return Err(Error::invalid(
            stuck[0],
            "config.depends_on",
            format!("dependency cycle among {}", stuck.join(", ")),
            "remove one depends_on entry to break the cycle",
        ));
    }
    drop(specs);
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    Ok(out.into_iter().filter_map(|i| slots[i].take()).collect())
}
