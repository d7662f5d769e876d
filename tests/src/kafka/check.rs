//! [`KafkaCheck`]: confluent-kafka's view of a cluster, through `tests/src/kafka_check.py`
//! (one process per command, about 0.2 s to 0.5 s, answering JSON).

use crate::{Owned, Value, python, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// confluent-kafka's view of a cluster (`tests/src/kafka_check.py`); every method runs one
/// command and panics with the checker's error when the cluster cannot be asked.
pub struct KafkaCheck {
    bootstrap: String,
    /// `(user, password, mechanism)`
    sasl: Option<(String, String, String)>,
    /// TLS (SSL, or SASL_SSL with `sasl`) trusting this CA certificate (PEM).
    ca: Option<PathBuf>,
}

impl KafkaCheck {
    /// A PLAINTEXT client of `bootstrap`.
    pub fn new(bootstrap: &str) -> KafkaCheck {
        KafkaCheck {
            bootstrap: bootstrap.to_string(),
            sasl: None,
            ca: None,
        }
    }

    /// A SASL_PLAINTEXT client (`mechanism`: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN).
    pub fn sasl(bootstrap: &str, user: &str, password: &str, mechanism: &str) -> KafkaCheck {
        KafkaCheck {
            bootstrap: bootstrap.to_string(),
            sasl: Some((user.into(), password.into(), mechanism.into())),
            ca: None,
        }
    }

    /// The same client over TLS (SSL, or SASL_SSL), trusting the CA certificate `ca` (PEM).
    pub fn with_ca(mut self, ca: &Path) -> KafkaCheck {
        self.ca = Some(ca.to_path_buf());
        self
    }

    /// `python kafka_check.py --bootstrap ... [--sasl-...]`, ready for a command.
    fn command(&self) -> Command {
        let script = workspace_root().join("tests/src/kafka_check.py");
        let mut cmd = Command::new(python());
        cmd.arg(&script).args(["--bootstrap", &self.bootstrap]);
        if let Some((user, password, mechanism)) = &self.sasl {
            cmd.args(["--sasl-user", user, "--sasl-password", password])
                .args(["--sasl-mechanism", mechanism]);
        }
        if let Some(ca) = &self.ca {
            cmd.arg("--ssl-ca").arg(ca);
        }
        cmd
    }

    /// One checker command (see kafka_check.py's usage): its JSON answer, or its error.
    pub fn try_run(&self, command: &str, args: &[&str]) -> Result<Value, String> {
        let script = workspace_root().join("tests/src/kafka_check.py");
        let mut cmd = self.command();
        let out = cmd
            .arg(command)
            .args(args)
            .stdin(Stdio::null())
            .owned()
            .output()
            .map_err(|e| {
                format!(
                    "cannot run {} with {}: {e}",
                    script.display(),
                    python().display()
                )
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named 'confluent_kafka'") {
            return Err(format!(
                "confluent-kafka is not installed for {}: run `./dev setup`",
                python().display()
            ));
        }
        if !out.status.success() {
            return Err(format!("kafka_check {command} {args:?}: {}", stderr.trim()));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            let text = String::from_utf8_lossy(&out.stdout);
            format!("kafka_check {command}: not JSON ({e}): {text}")
        })
    }

    #[track_caller]
    fn run(&self, command: &str, args: &[&str]) -> Value {
        self.try_run(command, args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `{"name", "topic_id", "partitions", "replication_factor", "configs": {non-default},
    /// "replicas"}`; a recreated topic has a new `topic_id`.
    pub fn topic(&self, name: &str) -> Option<Value> {
        Some(self.run("topic", &[name])).filter(|v| !v.is_null())
    }

    /// The topic's effective value of `key`, defaults included.
    pub fn topic_config(&self, name: &str, key: &str) -> Option<String> {
        self.run("topic-config", &[name, key])
            .as_str()
            .map(String::from)
    }

    /// Every topic but the internal ones, sorted.
    pub fn topics(&self) -> Vec<String> {
        strings(self.run("topics", &[]))
    }

    /// Creates a topic (test setup, not what is tested).
    pub fn create_topic(&self, name: &str, partitions: u32, replication_factor: u16) {
        let (p, rf) = (partitions.to_string(), replication_factor.to_string());
        self.run("create-topic", &[name, &p, &rf]);
    }

    /// `{"state", "members": n, "offsets": {"topic": {"0": offset, ...}}}`.
    pub fn group(&self, id: &str) -> Option<Value> {
        Some(self.run("group", &[id])).filter(|v| !v.is_null())
    }

    /// Every consumer group's id, sorted.
    pub fn groups(&self) -> Vec<String> {
        strings(self.run("groups", &[]))
    }

    /// The ACL bindings naming `principal` (`User:alice`), each `{"resource_type",
    /// "resource_name", "pattern_type", "principal", "host", "operation", "permission"}`.
    pub fn acls(&self, principal: &str) -> Vec<Value> {
        match self.run("acls", &[principal]) {
            Value::Array(items) => items,
            other => panic!("kafka_check acls: not a list: {other}"),
        }
    }

    /// Writes `n` messages to `topic`, round-robin over its partitions.
    pub fn produce(&self, topic: &str, n: usize) {
        self.run("produce", &[topic, &n.to_string()]);
    }

    /// Whether the server accepts a topic with these configs (`{"ok": true}` or its refusal).
    pub fn try_create_topic(&self, name: &str, partitions: u32, rf: u16, configs: &Value) -> Value {
        let (p, r) = (partitions.to_string(), rf.to_string());
        self.run("create-topic-with", &[name, &p, &r, &configs.to_string()])
    }

    /// Whether the server accepts one topic config set in place (incremental alter).
    pub fn try_alter(&self, topic: &str, key: &str, value: &str) -> Value {
        self.run("alter", &[topic, key, value])
    }

    /// Whether the server accepts raising (or lowering) a topic's partition count in place.
    pub fn try_partitions(&self, topic: &str, n: u32) -> Value {
        self.run("partitions", &[topic, &n.to_string()])
    }

    /// A live member of `group` on `topic` (a confluent-kafka consumer), until dropped.
    pub fn join(&self, group: &str, topic: &str) -> Member {
        let mut cmd = self.command();
        let mut child = cmd
            .args(["join", group, topic])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .owned()
            .spawn()
            .expect("start kafka_check.py join");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("read the member's first line");
        assert!(
            line.contains("joined"),
            "the consumer did not join {group}: {line:?}"
        );
        Member { child }
    }

    /// `{"cluster_id", "controller", "brokers": n, "broker_ids": [..]}`.
    pub fn cluster(&self) -> Value {
        self.run("cluster", &[])
    }
}

fn strings(v: Value) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .iter()
            .filter_map(|s| s.as_str().map(String::from))
            .collect(),
        other => panic!("kafka_check: not a list of names: {other}"),
    }
}

/// A live consumer group member; it leaves the group when dropped.
pub struct Member {
    child: std::process::Child,
}

impl Drop for Member {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
