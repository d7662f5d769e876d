//! The brokers a plugin process learned, kept for the next one.
//!
//! wfctl starts a plugin process per command and gives it no infra.yaml: the host learns a
//! broker's endpoint and credential handles only from calls that carry the broker (its Create,
//! Update, Read, or the outputs wfctl passes to its Diff). wfctl skips those calls whenever it
//! can: a broker whose Diff is in wfctl's diff cache (on by default, shared by every run on
//! the machine), `apply --plan`, or a new consumer on an unchanged broker. Without this file
//! the stream or consumer call that follows fails with "broker is not known to the host".
//!
//! The file (mode 0600, beside the generated secrets) holds, per broker name, its endpoint
//! (NATS: urls and JetStream domain; Kafka: `"bus": "kafka"`, bootstrap servers, security
//! protocol and SASL mechanism), credentials as secret handles (never values), and which urls
//! or servers were granted when it was saved: only those are granted again, so a broker's
//! outputs never grant anything by themselves. A broker deleted through the plugin is removed
//! from the file.

use crate::caps::Caps;
use crate::caps::brokers::is_kafka;
use crate::caps::kafka::endpoint::KafkaEndpoint;
use crate::caps::nats::{AuthSpec, BrokerEntry};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

pub struct SavedBrokers {
    path: PathBuf,
}

impl SavedBrokers {
    /// Restores the brokers saved in `path` (none if it does not exist yet) into `caps`.
    pub fn load(path: &Path, caps: &Caps) -> anyhow::Result<SavedBrokers> {
        if let Ok(text) = std::fs::read_to_string(path) {
            let saved: Map<String, Value> = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not a broker list ({e}): remove it, and the next broker call records it again",
                    path.display()
                )
            })?;
            for (name, v) in &saved {
                if is_kafka(v) {
                    let Some(e) = KafkaEndpoint::from_json(v) else {
                        continue;
                    };
                    for s in strings(&v["granted"]) {
                        caps.kafka.grant(&s);
                    }
                    caps.kafka.brokers.restore(name, e);
                    continue;
                }
                let Some(entry) = entry_from_json(v) else {
                    continue;
                };
                for url in strings(&v["granted"]) {
                    caps.nats.grant(&url);
                }
                caps.nats.restore_broker(name, entry);
            }
        }
        Ok(SavedBrokers {
            path: path.to_path_buf(),
        })
    }

    /// Writes every broker `caps` knows now. A failure is logged, not fatal: this process
    /// goes on with what it knows; only a later one would miss the broker.
    pub fn save(&self, caps: &Caps) {
        let nats = &caps.nats;
        let mut all = Map::new();
        for (name, e) in caps.kafka.brokers.all() {
            let granted: Vec<&String> = e
                .bootstrap
                .iter()
                .filter(|s| caps.kafka.granted(s))
                .collect();
            let mut v = e.to_json();
            v["granted"] = json!(granted);
            all.insert(name, v);
        }
        for (name, e) in nats.brokers() {
            let granted: Vec<&String> = e.urls.iter().filter(|u| nats.granted(u)).collect();
            let mut v = json!({"urls": e.urls, "granted": granted});
            if let Some(d) = &e.domain {
                v["domain"] = json!(d);
            }
            if let Some(a) = &e.auth {
                v["auth"] = a.to_json();
            }
            all.insert(name, v);
        }
        let bytes = serde_json::to_vec_pretty(&Value::Object(all)).unwrap_or_default();
        if let Err(e) = crate::caps::secrets::write_private(&self.path, &bytes) {
            tracing::warn!(
                "cannot keep the known brokers in {}: {e}; a later wfctl command may not find them",
                self.path.display()
            );
        }
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(String::from))
        .collect()
}

fn entry_from_json(v: &Value) -> Option<BrokerEntry> {
    let urls = strings(&v["urls"]);
    if urls.is_empty() {
        return None;
    }
    Some(BrokerEntry {
        urls,
        auth: AuthSpec::from_json(&v["auth"]),
        domain: v["domain"].as_str().map(String::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Caps {
        Caps::new(Default::default(), Default::default(), Default::default())
    }

    #[test]
    fn a_saved_broker_comes_back_with_its_handles_and_only_its_granted_urls() {
        let dir = std::env::temp_dir().join(format!("eventbus-brokers-{}", std::process::id()));
        let path = dir.join("brokers.json");
        let before = caps();
        before.nats.grant("nats://127.0.0.1:4222");
        before.nats.register_broker(
            "bus",
            &json!({"urls": ["nats://127.0.0.1:4222", "nats://10.0.0.9:4222"], "domain": "hub",
                    "auth": {"kind": "token", "token": "{{secret:bus/credentials.token}}"}}),
        );
        before.kafka.grant("127.0.0.1:9092");
        before.register_broker(
            "k",
            &json!({"bus": "kafka", "bootstrap_servers": ["127.0.0.1:9092", "10.0.0.9:9092"],
                    "security_protocol": "SASL_PLAINTEXT",
                    "sasl": {"mechanism": "SCRAM-SHA-512", "user": "admin", "password": "{{secret:k/credentials.password}}"}}),
        );
        SavedBrokers::load(&path, &before).unwrap().save(&before);

        // The file holds the handles, never a value, and is private to the user.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("{{secret:bus/credentials.token}}"), "{text}");
        assert!(text.contains("{{secret:k/credentials.password}}"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // A new process knows the brokers as the first one did, and grants only what was granted.
        let after = caps();
        SavedBrokers::load(&path, &after).unwrap();
        assert_eq!(after.nats.brokers(), before.nats.brokers());
        assert_eq!(after.kafka.brokers.all(), before.kafka.brokers.all());
        assert!(after.nats.granted("nats://127.0.0.1:4222"));
        assert!(
            !after.nats.granted("nats://10.0.0.9:4222"),
            "outputs alone grant nothing"
        );
        assert!(after.kafka.granted("127.0.0.1:9092"));
        assert!(!after.kafka.granted("10.0.0.9:9092"));
        assert_eq!(after.bus_of("k").unwrap(), "kafka");

        // wfctl's state is the authority on where a saved broker is now: a provider id naming
        // another endpoint replaces what was saved (maybe by another project's run).
        after.learn_broker_id("bus", "self_hosted/bus?urls=nats://127.0.0.1:5222");
        assert_eq!(
            after.nats.brokers()[0].1.urls,
            vec!["nats://127.0.0.1:5222"]
        );
        assert!(after.learn_broker_id("k", "kafka/k?bootstrap=127.0.0.1:9192&security=PLAINTEXT"));
        assert_eq!(
            after.kafka.brokers.all()[0].1.bootstrap,
            vec!["127.0.0.1:9192"]
        );
        assert!(after.kafka.granted("127.0.0.1:9192"));

        // A forgotten broker is gone from the file too.
        after.forget_broker("bus");
        after.forget_broker("k");
        SavedBrokers::load(&path, &caps()).unwrap().save(&after);
        let again = caps();
        SavedBrokers::load(&path, &again).unwrap();
        assert!(!again.knows_broker("bus") && !again.knows_broker("k"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
