//! Real Apache Kafka servers for the tests, and an independent checker of what they hold.
//!
//! * [`Kafka`]: one KRaft node (`process.roles=broker,controller`) or a cluster of them, from
//!   the jars `scripts/kafka.sh` fetched into `.cache/kafka/<version>/libs/` (it is run here
//!   when they are missing), on free loopback ports, every listener bound to 127.0.0.1. Each
//!   node lives in its own temp dir (config, data, `server.log`) under the run's temp root;
//!   the JVMs are started through [`Owned`](crate::Owned), so the reaper stops them however
//!   the test ends. How a node is set up (`server.properties`, logging, the storage format):
//!   `kafka/setup.rs`.
//! * [`KafkaCheck`] (`kafka/check.rs`): `tests/src/kafka_check.py` on confluent-kafka
//!   (librdkafka, no code shared with the provider), run with `.venv`'s Python, one process
//!   per command (0.2 s to 0.5 s), answering JSON.
//!
//! Every node runs the StandardAuthorizer with `User:ANONYMOUS` (the PLAINTEXT listeners) and
//! the SASL user as super users, so ACLs can be created and read back; topics are never created
//! automatically (`auto.create.topics.enable=false`), and the internal topics have one replica
//! and one partition, so that the first group request is quick.
//!
//! Ready means: every node logged `Kafka Server started`, then the checker's metadata request
//! lists every broker (a cluster waits until all have registered); it fails with the logs' tails
//! when that does not happen within [`READY_TIMEOUT`]. Starts are serialised within a test
//! binary: two JVMs starting on two cores take as long as one after the other.

mod check;
mod setup;

pub use check::{KafkaCheck, Member};
pub use setup::make_ca;

use crate::{TempDir, free_ports};
use setup::{
    format_storage, java, kafka_libs, make_tls, random_cluster_id, server_properties, write,
    write_logging,
};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The pinned versions, `scripts/kafka-versions` read at compile time (the script reads the
/// same file): the newest 3.9.x, then the newest 4.x.
pub const KAFKA_VERSIONS: [&str; 2] = [pinned(0), pinned(1)];

const VERSIONS_FILE: &str = include_str!("../../scripts/kafka-versions");
const _: () = assert!(
    pinned_count() == 2,
    "scripts/kafka-versions must list two versions"
);

/// From spawn to ready, per node start (a cluster's JVMs start together).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The `n`th version line of `scripts/kafka-versions` (blank lines and `#` lines skipped).
const fn pinned(n: usize) -> &'static str {
    let bytes = VERSIONS_FILE.as_bytes();
    let (mut start, mut seen) = (0, 0);
    while start < bytes.len() {
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'\n' {
            end += 1;
        }
        let (_, rest) = bytes.split_at(start);
        let (line, _) = rest.split_at(end - start);
        let line = line.trim_ascii();
        if !line.is_empty() && line[0] != b'#' {
            if seen == n {
                match std::str::from_utf8(line) {
                    Ok(s) => return s,
                    Err(_) => panic!("scripts/kafka-versions is not UTF-8"),
                }
            }
            seen += 1;
        }
        start = end + 1;
    }
    panic!("scripts/kafka-versions lists fewer versions than KAFKA_VERSIONS holds")
}

const fn pinned_count() -> usize {
    let bytes = VERSIONS_FILE.as_bytes();
    let (mut i, mut count, mut line_start) = (0, 0, true);
    while i < bytes.len() {
        let b = bytes[i];
        if line_start && !b.is_ascii_whitespace() && b != b'#' {
            count += 1;
        }
        line_start = b == b'\n' || (line_start && (b == b' ' || b == b'\t'));
        i += 1;
    }
    count
}

/// How to start a [`Kafka`]: `KafkaOpts { nodes: 3, ..Default::default() }`.
#[derive(Clone, Debug)]
pub struct KafkaOpts {
    /// Nodes, each broker and controller (KRaft voters `1..=nodes`).
    pub nodes: usize,
    /// `(user, password)`: clients then connect through a SASL_PLAINTEXT listener, where this
    /// user exists for SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN (and is a super user). Plain
    /// words only: no quotes, commas, brackets or backslashes.
    pub sasl: Option<(String, String)>,
    /// The client listener on TLS: SSL, or SASL_SSL with `sasl`. A throwaway CA and a server
    /// certificate for 127.0.0.1 (an IP SAN) are made with the `openssl` CLI in the cluster's
    /// temp dir; clients trust [`Kafka::ca`]. The brokers' own listeners stay PLAINTEXT.
    pub tls: bool,
}

impl Default for KafkaOpts {
    fn default() -> Self {
        KafkaOpts {
            nodes: 1,
            sasl: None,
            tls: false,
        }
    }
}

struct Node {
    id: i32,
    child: Option<Child>,
    dir: PathBuf,
}

/// A running Kafka (one node or a cluster); stopped, its temp dirs removed, on drop.
pub struct Kafka {
    pub version: String,
    /// `127.0.0.1:PORT,...`: the client listener of every node (SASL_PLAINTEXT with `sasl`).
    pub bootstrap: String,
    /// The SASL user and password clients must use, if any.
    pub sasl: Option<(String, String)>,
    /// With `KafkaOpts.tls`: the CA certificate (PEM) clients must trust, in the temp dir.
    pub ca: Option<PathBuf>,
    /// The KRaft cluster id the storage was formatted with.
    pub cluster_id: String,
    /// From formatting the storage to ready (the last attempt's, when ports had to be
    /// picked again).
    pub startup: Duration,
    nodes: Vec<Node>,
    dir: Option<TempDir>,
}

static STARTING: Mutex<()> = Mutex::new(());

impl Kafka {
    /// One node, PLAINTEXT, on free loopback ports.
    pub fn start(version: &str) -> Kafka {
        Kafka::start_with(version, KafkaOpts::default())
    }

    /// `opts.nodes` nodes (a KRaft cluster when more than one), with SASL if `opts.sasl`.
    pub fn start_with(version: &str, opts: KafkaOpts) -> Kafka {
        assert!(opts.nodes >= 1, "a Kafka cluster needs at least one node");
        if let Some((user, password)) = &opts.sasl {
            // They go into a JAAS line and the storage tool's `[name=..,password=..]`.
            let plain =
                |s: &str| !s.is_empty() && !s.contains([' ', '"', '\\', ',', '[', ']', '=']);
            assert!(
                plain(user) && plain(password),
                "KafkaOpts.sasl: plain words only"
            );
        }
        let libs = kafka_libs(version);
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for _attempt in 0..4 {
            let t = Instant::now();
            let mut kafka = Kafka::spawn(version, &libs, &opts);
            match kafka.wait_ready() {
                Ok(()) => {
                    kafka.startup = t.elapsed();
                    return kafka;
                }
                // A port we picked was taken before the server bound it: pick again.
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("Kafka {version}: {e}"),
            }
        }
        panic!("Kafka {version}: no free ports in 4 attempts: {last}")
    }

    /// The nodes' ids (`1..=nodes`), which are both broker and controller ids.
    pub fn node_ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// A checker on this cluster, as its SASL user (SCRAM-SHA-512) when it has one, over TLS
    /// trusting [`Kafka::ca`] when the cluster has TLS.
    pub fn check(&self) -> KafkaCheck {
        let check = match &self.sasl {
            Some((user, password)) => {
                KafkaCheck::sasl(&self.bootstrap, user, password, "SCRAM-SHA-512")
            }
            None => KafkaCheck::new(&self.bootstrap),
        };
        match &self.ca {
            Some(ca) => check.with_ca(ca),
            None => check,
        }
    }

    /// The last `lines` lines of every node's `server.log` (and its stdout), for messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            for file in ["server.log", "stdout.log"] {
                let text = std::fs::read_to_string(node.dir.join(file)).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                let tail = all[all.len().saturating_sub(lines)..].join("\n");
                if !tail.is_empty() {
                    out += &format!("--- node {} {file} (last {lines} lines)\n{tail}\n", node.id);
                }
            }
        }
        out
    }

    /// Kills every JVM (SIGKILL) and removes the temp dirs (kept with `EVENTBUS_TEST_KEEP`).
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.dir = None;
    }

    fn spawn(version: &str, libs: &Path, opts: &KafkaOpts) -> Kafka {
        let n = opts.nodes;
        let dir = TempDir::new("kafka");
        let ports = free_ports(n * 3); // client, controller, internal (SASL or TLS) per node
        let port = |i: usize, kind: usize| ports[i * 3 + kind];
        let voters: Vec<String> = (0..n)
            .map(|i| format!("{}@127.0.0.1:{}", i + 1, port(i, 1)))
            .collect();
        let cluster_id = random_cluster_id();
        let tls = opts.tls.then(|| make_tls(dir.path()));
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let node_dir = dir.path().join(format!("node{}", i + 1));
            std::fs::create_dir_all(node_dir.join("data")).expect("create the node's data dir");
            let props = server_properties(
                i as i32 + 1,
                &node_dir,
                &voters.join(","),
                [port(i, 0), port(i, 1), port(i, 2)],
                opts,
                tls.as_ref(),
            );
            write(&node_dir.join("server.properties"), &props);
            write_logging(&node_dir);
            nodes.push(Node {
                id: i as i32 + 1,
                child: None,
                dir: node_dir,
            });
        }
        // Format every node's storage (one JVM each, together), then start them together.
        let formats: Vec<(Child, &Node)> = nodes
            .iter()
            .map(|node| (format_storage(libs, &node.dir, &cluster_id, opts), node))
            .collect();
        for (mut child, node) in formats {
            let status = child.wait().expect("wait for the storage format");
            if !status.success() {
                let out = std::fs::read_to_string(node.dir.join("format.log")).unwrap_or_default();
                panic!(
                    "Kafka {version}: formatting node {}'s storage failed ({status}):\n{out}",
                    node.id
                );
            }
        }
        for node in &mut nodes {
            node.child = Some(java(libs, &node.dir, "kafka.Kafka", "stdout.log", |c| {
                c.arg(node.dir.join("server.properties"));
            }));
        }
        let bootstrap = (0..n)
            .map(|i| format!("127.0.0.1:{}", port(i, 0)))
            .collect::<Vec<_>>()
            .join(",");
        Kafka {
            version: version.to_string(),
            bootstrap,
            sasl: opts.sasl.clone(),
            ca: tls.map(|t| t.ca),
            cluster_id,
            startup: Duration::ZERO,
            nodes,
            dir: Some(dir),
        }
    }

    /// Every node logged that it started, then a metadata answer lists every broker.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let fail = |kafka: &Kafka, what: String| Err(format!("{what}\n{}", kafka.log_tail(40)));
        for i in 0..self.nodes.len() {
            loop {
                let node = &mut self.nodes[i];
                let log = std::fs::read_to_string(node.dir.join("server.log")).unwrap_or_default();
                if log.contains("Kafka Server started") {
                    break;
                }
                let id = node.id;
                if let Some(status) = node
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    node.child = None;
                    return fail(self, format!("node {id} exited while starting ({status})"));
                }
                if Instant::now() > deadline {
                    return fail(
                        self,
                        format!("node {id} did not start within {READY_TIMEOUT:?}"),
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let check = self.check();
        let want = self.nodes.len() as u64;
        loop {
            let seen = check.try_run("cluster", &[]);
            if let Ok(c) = &seen
                && c["brokers"].as_u64() == Some(want)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return fail(
                    self,
                    format!("metadata did not list {want} brokers: {seen:?}"),
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Kafka pilot's topic and consumer groups (examples/bmw-kafka/infra.yaml).
pub const PILOT_TOPIC: &str = "bmw.fulfillment";
pub const PILOT_GROUPS: [&str; 6] = [
    "audit-log",
    "customer-notify",
    "inventory-reserve",
    "orders-intake",
    "payment-capture",
    "shipment-dispatch",
];

/// Every pilot group on the server, each with a committed position on all 6 partitions.
#[track_caller]
pub fn assert_pilot_groups(check: &KafkaCheck) {
    let groups: Vec<String> = check
        .groups()
        .into_iter()
        .filter(|g| PILOT_GROUPS.contains(&g.as_str()))
        .collect();
    assert_eq!(
        groups,
        PILOT_GROUPS.map(String::from).to_vec(),
        "groups on the server"
    );
    for g in PILOT_GROUPS {
        let v = check
            .group(g)
            .unwrap_or_else(|| panic!("group {g} is not on the server"));
        assert_eq!(
            v["offsets"][PILOT_TOPIC].as_object().map(|o| o.len()),
            Some(6),
            "{g} has a position on every partition: {v}"
        );
    }
}
