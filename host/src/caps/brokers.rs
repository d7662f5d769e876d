//! The `brokers` capability and the registry behind it: the brokers the host knows by name,
//! on whichever bus they run (NATS or Kafka), so a stream or consumer can be routed to the bus
//! of the broker it references and a connection opened by name.
//!
//! Each bus keeps its own [`Registry`] of endpoints (credentials as secret handles); this file
//! says which bus a name belongs to, picks the default broker, and records a broker from what
//! the component reported for it (its outputs), whatever its bus.

use super::{CapError, Caps};
use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::brokers::Host;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

/// Brokers of one bus by name. A broker is *learned* in this process (from its outputs or its
/// provider id) or *restored* from what an earlier process saved; a restored one gives way to
/// the endpoint wfctl's state names for it.
pub struct Registry<E> {
    entries: RwLock<HashMap<String, E>>,
    restored: RwLock<BTreeSet<String>>,
}

impl<E> Default for Registry<E> {
    fn default() -> Self {
        Registry {
            entries: RwLock::new(HashMap::new()),
            restored: RwLock::new(BTreeSet::new()),
        }
    }
}

impl<E: Clone> Registry<E> {
    pub fn knows(&self, name: &str) -> bool {
        self.entries.read().expect("brokers").contains_key(name)
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .entries
            .read()
            .expect("brokers")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Records a broker learned in this process.
    pub fn insert(&self, name: &str, entry: E) {
        self.restored.write().expect("restored").remove(name);
        self.entries
            .write()
            .expect("brokers")
            .insert(name.to_string(), entry);
    }

    /// Records a broker as an earlier process knew it.
    pub fn restore(&self, name: &str, entry: E) {
        self.restored
            .write()
            .expect("restored")
            .insert(name.to_string());
        self.entries
            .write()
            .expect("brokers")
            .insert(name.to_string(), entry);
    }

    /// Learns a broker from its provider id. One learned in this process (with its credentials)
    /// is kept; one only restored is kept if it is at the same endpoint (`same`), else replaced.
    /// Returns whether the entry was (re)placed, so the caller grants its endpoint.
    pub fn learn(&self, name: &str, entry: E, same: impl Fn(&E, &E) -> bool) -> bool {
        let mut entries = self.entries.write().expect("brokers");
        let saved = self.restored.write().expect("restored").remove(name);
        if let Some(known) = entries.get(name)
            && (!saved || same(known, &entry))
        {
            return false;
        }
        entries.insert(name.to_string(), entry);
        true
    }

    pub fn forget(&self, name: &str) {
        self.entries.write().expect("brokers").remove(name);
        self.restored.write().expect("restored").remove(name);
    }

    /// Every broker, by name.
    pub fn all(&self) -> Vec<(String, E)> {
        let mut v: Vec<(String, E)> = self
            .entries
            .read()
            .expect("brokers")
            .iter()
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The named broker, or for "" the only one this bus knows.
    pub fn entry(&self, name: &str) -> Result<(String, E), CapError> {
        let entries = self.entries.read().expect("brokers");
        if name.is_empty() {
            return match entries.len() {
                1 => Ok(entries
                    .iter()
                    .next()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .expect("one broker")),
                0 => Err(CapError::Unknown(
                    "no broker is known to the host yet: apply the infra.eventbus resource first"
                        .into(),
                )),
                _ => Err(CapError::Unknown(format!(
                    "several brokers are known ({}): name one with broker_ref",
                    self.names().join(", ")
                ))),
            };
        }
        entries
            .get(name)
            .map(|e| (name.to_string(), e.clone()))
            .ok_or_else(|| {
                CapError::Unknown(format!(
                    "broker {name:?} is not known to the host (known: {}): apply it first",
                    self.names().join(", ")
                ))
            })
    }
}

/// Kafka brokers' outputs say `"bus": "kafka"`; everything else with `urls` is NATS (outputs
/// recorded before there was a second bus carry no `bus`).
pub fn is_kafka(outputs: &Value) -> bool {
    outputs.get("bus").and_then(Value::as_str) == Some("kafka")
}

impl Caps {
    /// The bus of the named broker, or of the only broker known (across buses) for "".
    pub fn bus_of(&self, name: &str) -> Result<&'static str, CapError> {
        let nats = self.nats.broker_names();
        let kafka = self.kafka.brokers.names();
        if !name.is_empty() {
            if kafka.iter().any(|n| n == name) {
                return Ok("kafka");
            }
            if nats.iter().any(|n| n == name) {
                return Ok("nats");
            }
            let mut all: Vec<String> = nats.into_iter().chain(kafka).collect();
            all.sort();
            return Err(CapError::Unknown(format!(
                "broker {name:?} is not known to the host (known: {}): apply it first",
                all.join(", ")
            )));
        }
        let mut all: Vec<(String, &'static str)> = nats
            .into_iter()
            .map(|n| (n, "nats"))
            .chain(kafka.into_iter().map(|n| (n, "kafka")))
            .collect();
        all.sort();
        match all.as_slice() {
            [(_, bus)] => Ok(bus),
            [] => Err(CapError::Unknown(
                "no broker is known to the host yet: apply the infra.eventbus resource first"
                    .into(),
            )),
            many => Err(CapError::Unknown(format!(
                "several brokers are known ({}): set broker_ref to name one",
                many.iter()
                    .map(|(n, b)| format!("{n} ({b})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Records a broker from the outputs the component reported for it, on its bus (and off
    /// the other, should a broker of that name have moved). Grants nothing by itself.
    pub fn register_broker(&self, name: &str, outputs: &Value) {
        if is_kafka(outputs) {
            if self.kafka.register_broker(name, outputs) {
                self.nats.forget_broker(name);
            }
        } else if outputs.get("urls").is_some() {
            self.nats.register_broker(name, outputs);
            if self.nats.knows(name) {
                self.kafka.brokers.forget(name);
            }
        }
    }

    /// Grants the endpoints a broker's outputs name: for a broker this run produced, or one
    /// recorded in state by an earlier run.
    pub fn grant_broker_outputs(&self, outputs: &Value) {
        if is_kafka(outputs) {
            for s in super::kafka::endpoint::server_list(outputs.get("bootstrap_servers")) {
                self.kafka.grant(&s);
            }
        } else {
            for u in outputs
                .get("urls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                self.nats.grant(u);
            }
        }
    }

    /// Learns a broker from its provider id (either bus's form); returns whether what is
    /// known changed.
    pub fn learn_broker_id(&self, name: &str, provider_id: &str) -> bool {
        if self.kafka.learn_from_id(name, provider_id) {
            self.nats.forget_broker(name);
            return true;
        }
        if self.nats.learn_from_id(name, provider_id) {
            self.kafka.brokers.forget(name);
            return true;
        }
        false
    }

    pub fn knows_broker(&self, name: &str) -> bool {
        self.nats.knows(name) || self.kafka.brokers.knows(name)
    }

    pub fn forget_broker(&self, name: &str) {
        self.nats.forget_broker(name);
        self.kafka.brokers.forget(name);
    }
}

impl Host for HostState {
    async fn bus(&mut self, broker: String) -> wasmtime::Result<Result<String, CapError>> {
        Ok(self.caps.bus_of(&broker).map(String::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn caps() -> Caps {
        Caps::new(Default::default(), Default::default(), Default::default())
    }

    #[test]
    fn the_bus_of_a_broker_is_the_one_it_was_registered_on() {
        let c = caps();
        c.register_broker("n", &json!({"urls": ["nats://127.0.0.1:4222"]}));
        assert_eq!(c.bus_of("n").unwrap(), "nats");
        assert_eq!(
            c.bus_of("").unwrap(),
            "nats",
            "the only broker is the default"
        );
        c.register_broker(
            "k",
            &json!({"bus": "kafka", "bootstrap_servers": ["127.0.0.1:9092"]}),
        );
        assert_eq!(c.bus_of("k").unwrap(), "kafka");
        match c.bus_of("") {
            Err(CapError::Unknown(m)) => {
                assert!(m.contains("k (kafka)") && m.contains("n (nats)"), "{m}");
                assert!(m.contains("broker_ref"), "{m}");
            }
            other => panic!("expected unknown, got {other:?}"),
        }
        assert!(matches!(c.bus_of("x"), Err(CapError::Unknown(_))));
        // A broker that moved to the other bus is known on that one only.
        c.register_broker(
            "n",
            &json!({"bus": "kafka", "bootstrap_servers": "127.0.0.1:9093"}),
        );
        assert_eq!(c.bus_of("n").unwrap(), "kafka");
        assert!(!c.nats.knows("n"));
        c.forget_broker("n");
        assert!(!c.knows_broker("n"));
        assert!(matches!(c.bus_of(""), Ok("kafka")));
    }

    #[test]
    fn outputs_grant_only_through_grant_broker_outputs() {
        let c = caps();
        let out = json!({"bus": "kafka", "bootstrap_servers": ["h1:9092", "h2:9093"]});
        c.register_broker("k", &out);
        assert!(!c.kafka.granted("h1:9092"));
        c.grant_broker_outputs(&out);
        assert!(c.kafka.granted("h1:9092") && c.kafka.granted("H2:9093"));
    }

    #[test]
    fn a_restored_entry_gives_way_to_another_endpoint_but_a_learned_one_stays() {
        let r: Registry<u32> = Registry::default();
        r.restore("b", 1);
        assert!(!r.learn("b", 1, |a, b| a == b), "same endpoint: kept");
        assert!(
            !r.learn("b", 2, |a, b| a == b),
            "now learned in this process"
        );
        r.forget("b");
        r.restore("c", 1);
        assert!(r.learn("c", 2, |a, b| a == b));
        assert_eq!(r.entry("c").unwrap().1, 2);
    }
}
