//! The Kafka server-truth matrix (`just fidelity-kafka`): for every topic field transition in
//! the table, on each pinned Kafka version, the CLI creates the topic in its `from` state and
//! plans the `to` state; then the same change is tried in place directly on the server, on a
//! twin topic, with an independent client (confluent-kafka). The plan must say `update`
//! exactly when the server accepts the change in place, `replace` when Kafka cannot do it in
//! place (a partition decrease, with allow_data_loss), and refuse the plan when the server
//! refuses the value. The replication factor is changed on a three-node cluster. After an update or replace the CLI applies it, the server must hold the
//! new value, and a second plan must be empty.
//!
//! Last line: `fidelity-kafka: <N> field changes checked on <v3> and <v4>, <M> mismatches`.

use eventbus_tests::kafka::{KAFKA_VERSIONS, Kafka, KafkaCheck, KafkaOpts};
use eventbus_tests::{Project, eventually, json};
use std::time::Duration;

/// Where a transition is expected to land, from what the server did with it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Verdict {
    Update,
    Replace,
    Refused,
}

/// One transition of one topic config (Kafka's name and value form), `None` = not set.
struct Case {
    key: &'static str,
    from: Option<&'static str>,
    to: &'static str,
}

const fn c(key: &'static str, from: Option<&'static str>, to: &'static str) -> Case {
    Case { key, from, to }
}

const DAY: &str = "86400000";
const MAX: &str = "9223372036854775807";

/// The transitions: every field of the topic table, some both ways, some values the server
/// refuses, and the partition count up and down.
const CASES: &[Case] = &[
    c("partitions", Some("3"), "6"),
    c("partitions", Some("6"), "3"),
    c("retention.ms", Some("604800000"), "259200000"),
    c("retention.ms", Some("259200000"), "-1"),
    c("retention.bytes", None, "1073741824"),
    c("retention.bytes", Some("1073741824"), "-1"),
    c("cleanup.policy", Some("delete"), "compact"),
    c("cleanup.policy", Some("compact"), "compact,delete"),
    c("min.insync.replicas", None, "2"),
    c("max.message.bytes", None, "2097152"),
    c("max.message.bytes", Some("2097152"), "-5"),
    c("segment.bytes", None, "536870912"),
    c("segment.bytes", Some("536870912"), "1000"),
    c("segment.ms", None, DAY),
    c("compression.type", None, "zstd"),
    c("compression.type", Some("zstd"), "lz4"),
    c("message.timestamp.type", None, "LogAppendTime"),
    c("delete.retention.ms", None, "172800000"),
    c("min.compaction.lag.ms", None, "3600000"),
    c("max.compaction.lag.ms", Some(MAX), "604800000"),
    c("min.cleanable.dirty.ratio", None, "0.1"),
    c("min.cleanable.dirty.ratio", Some("0.1"), "1.5"),
    c("file.delete.delay.ms", None, "120000"),
    c("flush.messages", None, "10000"),
    c("flush.ms", None, "1000"),
    c("preallocate", None, "true"),
    c("unclean.leader.election.enable", None, "true"),
    c("segment.index.bytes", None, "5242880"),
    c("index.interval.bytes", None, "8192"),
    c("segment.jitter.ms", None, "3600000"),
    c("message.timestamp.before.max.ms", None, "3600000"),
    c("message.timestamp.after.max.ms", None, "7200000"),
    c("message.downconversion.enable", None, "false"),
];

/// The topic module of case `i` in the state `value` (Kafka's names; `configs` for any name
/// outside the provider's table).
fn module(i: usize, case: &Case, value: Option<&str>) -> String {
    let mut cfg = json!({"iac_provider": "eventbus", "broker_ref": "kafka", "name": format!("fid.{i}"), "partitions": 3});
    if let Some(v) = value {
        if case.key == "partitions" {
            cfg["partitions"] = json!(v.parse::<u32>().unwrap());
            cfg["allow_data_loss"] = json!(true);
        } else if case.key == "message.downconversion.enable" {
            cfg["configs"] = json!({case.key: v});
        } else {
            cfg[case.key] = json!(v);
        }
    }
    json!({"name": format!("topic-{i}"), "type": "infra.eventbus.stream", "config": cfg})
        .to_string()
}

fn infra(modules: &[String]) -> String {
    let mut all = vec![
        json!({"name": "eventbus", "type": "iac.provider", "config": {"provider": "eventbus"}}).to_string(),
        json!({"name": "kafka", "type": "infra.eventbus", "config": {"iac_provider": "eventbus", "provider": "kafka", "deploy_target": "self_hosted", "bootstrap_servers": "${KAFKA_BOOTSTRAP}"}}).to_string(),
    ];
    all.extend(modules.iter().cloned());
    format!("{{\"modules\": [{}]}}", all.join(",\n"))
}

/// What the server does with the change in place, on a twin topic made in the `from` state.
fn truth(check: &KafkaCheck, i: usize, case: &Case) -> (Verdict, String) {
    let twin = format!("twin.{i}");
    let mut configs = json!({});
    let mut partitions = 3;
    match (case.key, case.from) {
        ("partitions", Some(p)) => partitions = p.parse().unwrap(),
        (_, Some(v)) => configs[case.key] = json!(v),
        _ => {}
    }
    let made = check.try_create_topic(&twin, partitions, 1, &configs);
    assert_eq!(
        made["ok"],
        json!(true),
        "setup: twin topic {twin} in the from state: {made}"
    );
    let answer = if case.key == "partitions" {
        check.try_partitions(&twin, case.to.parse().unwrap())
    } else {
        check.try_alter(&twin, case.key, case.to)
    };
    let detail = answer["error"].as_str().unwrap_or("accepted").to_string();
    match (answer["ok"] == json!(true), case.key) {
        (true, _) => (Verdict::Update, detail),
        (false, "partitions") => (Verdict::Replace, detail),
        (false, _) => (Verdict::Refused, detail),
    }
}

/// What our plan says of the change: its action for the topic, or a refused plan.
fn ours(project: &Project, module: &str) -> (Verdict, String) {
    let out = project.run_json(&["plan"]);
    if out.code == 1 {
        let first = out
            .stderr
            .lines()
            .chain(out.stdout.lines())
            .find(|l| l.contains(module))
            .unwrap_or("")
            .to_string();
        return (Verdict::Refused, first);
    }
    let plan = out.json();
    let action = plan["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == module))
        .map(|a| a["action"].as_str().unwrap_or("").to_string())
        .unwrap_or_default();
    match action.as_str() {
        "update" => (Verdict::Update, String::new()),
        "replace" => (Verdict::Replace, String::new()),
        other => panic!("plan has no update/replace for {module} (got {other:?}):\n{out}"),
    }
}

/// The server's effective value of the case's key on `topic`.
fn on_server(check: &KafkaCheck, topic: &str, key: &str) -> Option<String> {
    if key == "partitions" {
        return check.topic(topic).map(|t| t["partitions"].to_string());
    }
    check.topic_config(topic, key)
}

fn same(key: &str, a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ if key == "cleanup.policy" => {
            let set = |s: &str| {
                let mut v: Vec<String> = s.split(',').map(|p| p.trim().to_string()).collect();
                v.sort();
                v
            };
            set(a) == set(b)
        }
        _ => a.eq_ignore_ascii_case(b),
    }
}

fn run_version(version: &str, checked: &mut usize, mismatches: &mut Vec<String>) {
    let kafka = Kafka::start(version);
    let check = kafka.check();
    let mut modules: Vec<String> = Vec::new();
    let project = Project::new(&infra(&modules), "").env("KAFKA_BOOTSTRAP", &kafka.bootstrap);
    println!("== Kafka {version}");
    for (i, case) in CASES.iter().enumerate() {
        let name = format!("topic-{i}");
        let topic = format!("fid.{i}");
        // From: created through the CLI.
        modules.push(module(i, case, case.from));
        project.write_infra(&infra(&modules));
        let out = project.run_json(&["apply"]);
        assert_eq!(
            out.code, 0,
            "setup: {topic} in its from state ({:?} = {:?})\n{out}",
            case.key, case.from
        );
        let (want, why) = truth(&check, i, case);
        // To: planned by the CLI.
        modules[i] = module(i, case, Some(case.to));
        project.write_infra(&infra(&modules));
        let (got, said) = ours(&project, &name);
        *checked += 1;
        let label = format!(
            "{version} {} {} -> {}",
            case.key,
            case.from.unwrap_or("(default)"),
            case.to
        );
        if got != want {
            println!("MISMATCH {label}: plan {got:?}, server {want:?} ({why}) {said}");
            mismatches.push(label);
            modules[i] = module(i, case, case.from);
            project.write_infra(&infra(&modules));
            continue;
        }
        if got == Verdict::Refused {
            println!("ok   {label}: refused, as the server refuses it ({why})");
            modules[i] = module(i, case, case.from);
            project.write_infra(&infra(&modules));
            continue;
        }
        let out = project.run_json(&["apply"]);
        let held = on_server(&check, &topic, case.key);
        let again = project.run_json(&["plan"]);
        if out.code != 0
            || !held.as_deref().is_some_and(|h| same(case.key, h, case.to))
            || again.code != 0
        {
            println!(
                "MISMATCH {label}: {got:?} planned, but apply exit {}, server holds {held:?}, second plan exit {}\n{out}\n{again}",
                out.code, again.code
            );
            mismatches.push(label);
            continue;
        }
        println!("ok   {label}: {got:?} ({why}), applied, second plan empty");
    }
}

/// Replication factor on a three-node cluster: Kafka changes it in place by reassigning the
/// partitions (confluent-kafka has no reassignment call, so the truth is that every partition
/// ends up with that many replicas, all in sync with the plan's `update`).
fn replication_factor(version: &str, checked: &mut usize, mismatches: &mut Vec<String>) {
    let kafka = Kafka::start_with(
        version,
        KafkaOpts {
            nodes: 3,
            ..Default::default()
        },
    );
    let check = kafka.check();
    let topic = |rf: u32| {
        json!({"name": "rf", "type": "infra.eventbus.stream", "config": {"iac_provider": "eventbus", "broker_ref": "kafka", "name": "fid.rf", "partitions": 3, "replication_factor": rf}}).to_string()
    };
    let project = Project::new(&infra(&[topic(1)]), "").env("KAFKA_BOOTSTRAP", &kafka.bootstrap);
    project.run_json(&["apply"]).expect_code(0);
    for (from, to) in [(1, 3), (3, 2)] {
        project.write_infra(&infra(&[topic(to)]));
        let (got, _) = ours(&project, "rf");
        let out = project.run_json(&["apply"]);
        // Every broker learns the new replica lists from the controller a moment later.
        let replicas_now = || -> Vec<usize> {
            check
                .topic("fid.rf")
                .and_then(|t| t["replicas"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|r| r.as_array().map_or(0, Vec::len))
                .collect()
        };
        let replicas = eventually("the new replica lists", Duration::from_secs(30), || {
            let r = replicas_now();
            if r == vec![to as usize; 3] {
                Ok(r)
            } else {
                Err(format!("{r:?}"))
            }
        });
        let again = project.run_json(&["plan"]);
        *checked += 1;
        let label = format!("{version} replication_factor {from} -> {to} (3 brokers)");
        if got == Verdict::Update
            && out.code == 0
            && replicas == vec![to as usize; 3]
            && again.code == 0
        {
            println!(
                "ok   {label}: Update, reassigned, every partition has {to} replicas, second plan empty"
            );
        } else {
            println!(
                "MISMATCH {label}: plan {got:?}, apply exit {}, replicas {replicas:?}, second plan exit {}\n{out}",
                out.code, again.code
            );
            mismatches.push(label);
        }
    }
}

fn main() {
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"fidelity_kafka".contains(a.as_str()))
    {
        return;
    }
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for v in KAFKA_VERSIONS {
        run_version(v, &mut checked, &mut mismatches);
        replication_factor(v, &mut checked, &mut mismatches);
    }
    println!(
        "fidelity-kafka: {checked} field changes checked on {} and {}, {} mismatches",
        KAFKA_VERSIONS[0],
        KAFKA_VERSIONS[1],
        mismatches.len()
    );
    if !mismatches.is_empty() {
        std::process::exit(1);
    }
}
