//! Crash safety (`just chaos`): the apply (and the destroy) is killed with SIGKILL at random
//! instants, then run again to completion. Every time the state file must parse, the server
//! must hold exactly the desired resources, nothing may be duplicated in state or orphaned on
//! the server, and a plan after the rerun must be empty.
//!
//! The pilot and a wide config run on NATS, and the pilot's Kafka version on Kafka (topics and
//! consumer groups, checked with confluent-kafka).
//!
//! `CHAOS_KILLS` sets the number of kills (default 12 under `cargo test`, 60 for `just chaos`);
//! `CHAOS_SEED` makes a run repeatable. Last line: `chaos: <K> kills, <L> lost, <D> duplicated,
//! <O> orphaned`.

use eventbus_tests::kafka::{KAFKA_VERSIONS, Kafka, KafkaCheck};
use eventbus_tests::{JetStream, NatsServer, Owned, Project, eventbus_bin, workspace_root};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A small deterministic generator: the same seed kills at the same instants.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// `streams` streams with `per` consumers each, plus the broker: the wide config.
fn wide(streams: usize, per: usize) -> String {
    let mut modules = vec![
        json!({"name": "eventbus", "type": "iac.provider", "config": {"provider": "eventbus"}}),
        json!({"name": "broker", "type": "infra.eventbus", "config": {"iac_provider": "eventbus", "provider": "nats", "deploy_target": "self_hosted", "url": "${NATS_URL}"}}),
    ];
    for s in 0..streams {
        modules.push(json!({"name": format!("s{s}"), "type": "infra.eventbus.stream", "config": {"iac_provider": "eventbus", "name": format!("S{s}"), "subjects": [format!("s{s}.>")], "max_age": "1h"}}));
        for c in 0..per {
            modules.push(json!({"name": format!("s{s}-c{c}"), "type": "infra.eventbus.consumer", "config": {"iac_provider": "eventbus", "stream_name": format!("S{s}"), "name": format!("c{c}"), "filter_subject": format!("s{s}.{c}"), "max_deliver": 5}}));
        }
    }
    serde_json::to_string_pretty(&json!({"modules": modules})).unwrap()
}

/// What the file declares: stream name -> consumer names.
fn declared(yaml: &str) -> BTreeMap<String, BTreeSet<String>> {
    let doc: Value = serde_yaml_ng::from_str(yaml).unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in doc["modules"].as_array().unwrap() {
        match m["type"].as_str().unwrap() {
            "infra.eventbus.stream" => {
                out.entry(m["config"]["name"].as_str().unwrap().to_string())
                    .or_default();
            }
            "infra.eventbus.consumer" => {
                out.entry(m["config"]["stream_name"].as_str().unwrap().to_string())
                    .or_default()
                    .insert(m["config"]["name"].as_str().unwrap().to_string());
            }
            _ => {}
        }
    }
    out
}

/// The server a scenario runs on, asked directly (never through the CLI).
enum Server {
    Nats(NatsServer, JetStream),
    Kafka(Kafka, KafkaCheck),
}

impl Server {
    /// The variable the scenario's infra.yaml reads the address from, and its value.
    fn env(&self) -> (&'static str, String) {
        match self {
            Server::Nats(s, _) => ("NATS_URL", s.url().to_string()),
            Server::Kafka(k, _) => ("KAFKA_BOOTSTRAP", k.bootstrap.clone()),
        }
    }

    /// Stream (topic) name -> its consumers (groups with a position on it).
    fn contents(&self) -> BTreeMap<String, BTreeSet<String>> {
        match self {
            Server::Nats(_, js) => js
                .stream_names()
                .into_iter()
                .map(|s| {
                    let c = js.consumer_names(&s).into_iter().collect();
                    (s, c)
                })
                .collect(),
            Server::Kafka(_, check) => {
                let mut out: BTreeMap<String, BTreeSet<String>> = check
                    .topics()
                    .into_iter()
                    .map(|t| (t, BTreeSet::new()))
                    .collect();
                for g in check.groups() {
                    let Some(v) = check.group(&g) else { continue };
                    for t in v["offsets"].as_object().into_iter().flat_map(|o| o.keys()) {
                        out.entry(t.clone()).or_default().insert(g.clone());
                    }
                }
                out
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    kills: usize,
    lost: usize,
    duplicated: usize,
    orphaned: usize,
    other: Vec<String>,
}

/// Starts `eventbus <command>` and kills it with SIGKILL after `delay`; returns whether it
/// was still running when killed.
fn kill_after(project: &Project, command: &str, delay: Duration) -> bool {
    let mut child = Command::new(eventbus_bin())
        .args([
            "-f",
            &project.infra_path().display().to_string(),
            "--state",
            &project.state_path().display().to_string(),
            command,
        ])
        .env(project_env(project).0, project_env(project).1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .owned()
        .spawn()
        .expect("start eventbus");
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    // Child::kill sends SIGKILL on Unix: no handler, no cleanup, like a power cut.
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// The address variable written beside the scenario's project (`NAME=value`).
fn project_env(project: &Project) -> (String, String) {
    let text = std::fs::read_to_string(project.dir().join("env")).unwrap();
    let (k, v) = text.split_once('=').unwrap();
    (k.to_string(), v.to_string())
}

/// After the rerun: compare state and server with what is desired.
fn check(
    project: &Project,
    server: &Server,
    want: &BTreeMap<String, BTreeSet<String>>,
    t: &mut Tally,
    label: &str,
) {
    let text = std::fs::read_to_string(project.state_path())
        .unwrap_or_else(|_| "{\"resources\":[]}".into());
    let state: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            t.other.push(format!("{label}: state does not parse: {e}"));
            return;
        }
    };
    let names: Vec<&str> = state["resources"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["name"].as_str()).collect())
        .unwrap_or_default();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    t.duplicated += names.len() - unique.len();
    let have = server.contents();
    for (s, cs) in want {
        match have.get(s) {
            None => t.lost += 1 + cs.len(),
            Some(hc) => t.lost += cs.difference(hc).count(),
        }
    }
    for (s, hc) in &have {
        match want.get(s) {
            None => t.orphaned += 1 + hc.len(),
            Some(cs) => t.orphaned += hc.difference(cs).count(),
        }
    }
    if want.is_empty() {
        // After a destroy, state is empty too.
        if !names.is_empty() {
            t.other.push(format!(
                "{label}: state still lists {names:?} after destroy"
            ));
        }
        return;
    }
    let plan = project.run_json(&["plan"]);
    if plan.code != 0 {
        t.other.push(format!(
            "{label}: the plan after the rerun is not empty (exit {}):\n{}",
            plan.code,
            plan.stdout.chars().take(2000).collect::<String>()
        ));
    }
}

fn scenario(name: &str, server: Server, yaml: &str, kills: usize, rng: &mut Lcg, t: &mut Tally) {
    let (var, value) = server.env();
    let project = Project::new(yaml, "").env(var, &value);
    std::fs::write(project.dir().join("env"), format!("{var}={value}")).unwrap();
    let want = declared(yaml);
    let none = BTreeMap::new();
    // Calibrate: how long does an uninterrupted apply and destroy take here?
    // The fastest of three rounds, so the kill instants fall inside a typical run.
    let (mut apply_ms, mut destroy_ms) = (u64::MAX, u64::MAX);
    for _ in 0..3 {
        let t0 = Instant::now();
        project.run_json(&["apply"]).expect_code(0);
        apply_ms = apply_ms.min(t0.elapsed().as_millis() as u64);
        let t0 = Instant::now();
        project.run_json(&["destroy"]).expect_code(0);
        destroy_ms = destroy_ms.min(t0.elapsed().as_millis() as u64);
    }
    println!(
        "== {name}: {} streams, apply {apply_ms} ms, destroy {destroy_ms} ms uninterrupted",
        want.len()
    );
    // Count only real kills: a run that finished before its kill instant is checked too, but
    // does not count towards the target.
    let target = t.kills + kills;
    let mut k = 0;
    while t.kills < target && k < kills * 3 {
        k += 1;
        let destroying = k % 3 == 0;
        if destroying {
            project.run_json(&["apply"]).expect_code(0);
        }
        let window = if destroying { destroy_ms } else { apply_ms };
        let delay = Duration::from_millis(rng.below((window * 9 / 10).max(1)));
        let killed = kill_after(
            &project,
            if destroying { "destroy" } else { "apply" },
            delay,
        );
        t.kills += usize::from(killed);
        let label = format!(
            "{name} #{k} ({} killed at {} ms{})",
            if destroying { "destroy" } else { "apply" },
            delay.as_millis(),
            if killed { "" } else { ", had finished" }
        );
        // Rerun to completion, then check.
        let again = project.run_json(&[if destroying { "destroy" } else { "apply" }]);
        if again.code != 0 {
            t.other.push(format!("{label}: the rerun failed:\n{again}"));
            continue;
        }
        let before = (t.lost, t.duplicated, t.orphaned, t.other.len());
        check(
            &project,
            &server,
            if destroying { &none } else { &want },
            t,
            &label,
        );
        let clean = before == (t.lost, t.duplicated, t.orphaned, t.other.len());
        println!("  {} {label}", if clean { "ok  " } else { "BAD " });
        if !destroying {
            project.run_json(&["destroy"]).expect_code(0);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "chaos".contains(a.as_str())) {
        return;
    }
    let kills: usize = std::env::var("CHAOS_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("chaos seed {seed} (CHAOS_SEED={seed} repeats this run)");
    let mut rng = Lcg(seed);
    let mut t = Tally::default();
    let pilot = eventbus_tests::pilot_yaml();
    let nats = || {
        let s = NatsServer::start();
        let js = JetStream::connect(s.url());
        Server::Nats(s, js)
    };
    let kafka_pilot =
        std::fs::read_to_string(workspace_root().join("examples/bmw-kafka/infra.yaml")).unwrap();
    let kafka = || {
        let k = Kafka::start(KAFKA_VERSIONS[1]);
        let check = k.check();
        Server::Kafka(k, check)
    };
    let (pilot_kills, kafka_kills) = (kills / 3, kills / 3);
    scenario("pilot", nats(), &pilot, pilot_kills, &mut rng, &mut t);
    scenario(
        "pilot on Kafka",
        kafka(),
        &kafka_pilot,
        kafka_kills,
        &mut rng,
        &mut t,
    );
    scenario(
        "300 resources",
        nats(),
        &wide(30, 9),
        kills - pilot_kills - kafka_kills,
        &mut rng,
        &mut t,
    );
    for o in &t.other {
        println!("problem: {o}");
    }
    println!(
        "chaos: {} kills, {} lost, {} duplicated, {} orphaned",
        t.kills, t.lost, t.duplicated, t.orphaned
    );
    if t.lost + t.duplicated + t.orphaned > 0 || !t.other.is_empty() {
        std::process::exit(1);
    }
}
