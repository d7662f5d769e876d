//! The Kafka fixtures themselves (tests/src/kafka.rs): for each pinned version a single node
//! that takes a topic the checker then describes, a SASL node that refuses a wrong password
//! and accepts the right one (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN), and a three-node cluster of
//! the newest version that reports three brokers and places three replicas. Each prints how
//! long its servers took from spawn to ready. `just kafka-servers` runs them.

use eventbus_tests::kafka::{KAFKA_VERSIONS, Kafka, KafkaCheck, KafkaOpts};
use std::time::Instant;

/// Starts a Kafka and prints how long it took from spawn to ready (and with the wait for
/// other tests' starts).
fn timed(version: &str, what: &str, opts: KafkaOpts) -> Kafka {
    let t = Instant::now();
    let kafka = Kafka::start_with(version, opts);
    eprintln!(
        "kafka {version} {what}: ready {:.1}s after spawn ({:.1}s after asking)",
        kafka.startup.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    kafka
}

fn single_node(version: &str) {
    let kafka = timed(version, "single node", KafkaOpts::default());
    assert_eq!(kafka.version, version);
    assert_eq!(kafka.node_ids(), vec![1]);
    let check = kafka.check();
    let cluster = check.cluster();
    assert_eq!(cluster["brokers"], 1, "{cluster}");
    assert_eq!(cluster["controller"], 1, "{cluster}");
    assert_eq!(
        cluster["cluster_id"],
        kafka.cluster_id.as_str(),
        "{cluster}"
    );

    assert_eq!(check.topic("orders"), None);
    check.create_topic("orders", 3, 1);
    let topic = check.topic("orders").expect("the topic just created");
    assert_eq!(topic["partitions"], 3, "{topic}");
    assert_eq!(topic["replication_factor"], 1, "{topic}");
    assert_eq!(
        topic["replicas"],
        serde_json::json!([[1], [1], [1]]),
        "{topic}"
    );
    assert_eq!(topic["configs"], serde_json::json!({}), "{topic}");
    assert_eq!(check.topics(), vec!["orders".to_string()]);
    // A default, seen as the effective value.
    assert_eq!(
        check.topic_config("orders", "cleanup.policy").as_deref(),
        Some("delete")
    );

    check.produce("orders", 7);
    assert_eq!(check.group("nobody"), None);
    assert!(check.groups().is_empty());
    assert!(check.acls("User:alice").is_empty());
}

fn sasl(version: &str) {
    let opts = KafkaOpts {
        sasl: Some(("alice".into(), "alice-secret".into())),
        ..Default::default()
    };
    let kafka = timed(version, "SASL node", opts);
    let wrong = KafkaCheck::sasl(&kafka.bootstrap, "alice", "wrong", "SCRAM-SHA-512");
    let refused = wrong
        .try_run("cluster", &[])
        .expect_err("a wrong password must be refused");
    assert!(
        refused.to_lowercase().contains("authentication"),
        "{refused}"
    );
    let nobody = KafkaCheck::new(&kafka.bootstrap);
    assert!(
        nobody.try_run("topics", &[]).is_err(),
        "PLAINTEXT on the SASL listener must fail"
    );

    // The right password, through each mechanism.
    assert_eq!(kafka.check().cluster()["brokers"], 1);
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let check = KafkaCheck::sasl(&kafka.bootstrap, "alice", "alice-secret", mechanism);
        let cluster = check
            .try_run("cluster", &[])
            .unwrap_or_else(|e| panic!("{mechanism}: {e}"));
        assert_eq!(cluster["brokers"], 1, "{mechanism}: {cluster}");
    }
    kafka.check().create_topic("secured", 1, 1);
    assert_eq!(kafka.check().topics(), vec!["secured".to_string()]);
}

#[test]
fn single_node_3() {
    single_node(KAFKA_VERSIONS[0]);
}

#[test]
fn single_node_4() {
    single_node(KAFKA_VERSIONS[1]);
}

#[test]
fn sasl_3() {
    sasl(KAFKA_VERSIONS[0]);
}

#[test]
fn sasl_4() {
    sasl(KAFKA_VERSIONS[1]);
}

#[test]
fn three_nodes_newest() {
    let version = KAFKA_VERSIONS[1];
    let opts = KafkaOpts {
        nodes: 3,
        ..Default::default()
    };
    let mut kafka = timed(version, "three nodes", opts);
    assert_eq!(kafka.node_ids(), vec![1, 2, 3]);
    assert_eq!(kafka.bootstrap.split(',').count(), 3);
    let check = kafka.check();
    let cluster = check.cluster();
    assert_eq!(cluster["brokers"], 3, "{cluster}");
    assert_eq!(
        cluster["broker_ids"],
        serde_json::json!([1, 2, 3]),
        "{cluster}"
    );
    check.create_topic("replicated", 2, 3);
    let topic = check.topic("replicated").expect("the topic just created");
    assert_eq!(topic["replication_factor"], 3, "{topic}");
    for replicas in topic["replicas"].as_array().unwrap() {
        let mut ids: Vec<i64> = replicas
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_i64())
            .collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3], "{topic}");
    }
    kafka.stop();
    assert!(
        KafkaCheck::new(&kafka.bootstrap)
            .try_run("cluster", &[])
            .is_err(),
        "stopped"
    );
}

/// The versions the fixture runs are the ones the script fetches.
#[test]
fn versions_are_pinned_once() {
    let root = eventbus_tests::workspace_root();
    let file = std::fs::read_to_string(root.join("scripts/kafka-versions")).unwrap();
    let listed: Vec<&str> = file
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(listed, KAFKA_VERSIONS);
    assert!(KAFKA_VERSIONS[0].starts_with("3.9."), "{KAFKA_VERSIONS:?}");
    assert!(KAFKA_VERSIONS[1].starts_with("4."), "{KAFKA_VERSIONS:?}");
}
