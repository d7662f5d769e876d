//! The pilot on Kafka (examples/bmw-kafka/infra.yaml) through the `eventbus` CLI, on each
//! pinned Kafka version: plan, apply, an empty second plan, changes in place, the refusals a
//! demanding user expects, and destroy. Every step is judged by an independent client
//! (confluent-kafka, `KafkaCheck`), never by what the CLI says of itself.

use eventbus_tests::kafka::{
    KAFKA_VERSIONS, Kafka, PILOT_GROUPS, PILOT_TOPIC, assert_pilot_groups,
};
use eventbus_tests::{Output, Project, Value, json, workspace_root};

const TOPIC: &str = PILOT_TOPIC;
const GROUPS: [&str; 6] = PILOT_GROUPS;

fn pilot_yaml() -> String {
    std::fs::read_to_string(workspace_root().join("examples/bmw-kafka/infra.yaml"))
        .expect("read examples/bmw-kafka/infra.yaml")
}

fn project(kafka: &Kafka) -> Project {
    Project::new(&pilot_yaml(), "").env("KAFKA_BOOTSTRAP", &kafka.bootstrap)
}

#[track_caller]
fn plan(project: &Project, code: i32) -> Value {
    let out = project.run_json(&["plan"]);
    out.expect_code(code);
    out.json()
}

#[track_caller]
fn apply_ok(project: &Project) -> Output {
    let out = project.run_json(&["apply"]);
    out.expect_code(0);
    for r in out.json()["results"].as_array().expect("results") {
        assert_eq!(r["ok"], json!(true), "apply result not ok: {r}\n{out}");
    }
    out
}

fn actions_of<'a>(plan: &'a Value, kind: &str) -> Vec<&'a str> {
    plan["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["action"] == kind)
                .filter_map(|x| x["name"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

fn lifecycle(version: &str) {
    let kafka = Kafka::start(version);
    let check = kafka.check();
    let project = project(&kafka);

    // The plan creates 8 resources and changes nothing on the server.
    let p = plan(&project, 2);
    assert_eq!(actions_of(&p, "create").len(), 8, "{p}");
    assert!(
        !check.topics().contains(&TOPIC.to_string()),
        "plan must not create the topic"
    );

    // Apply: the topic as declared, and every group with a starting position.
    apply_ok(&project);
    let t = check.topic(TOPIC).expect("the topic exists after apply");
    assert_eq!(t["partitions"], json!(6), "{t}");
    assert_eq!(t["replication_factor"], json!(1), "{t}");
    assert_eq!(
        check.topic_config(TOPIC, "retention.ms").as_deref(),
        Some("604800000")
    );
    assert_eq!(
        check.topic_config(TOPIC, "max.message.bytes").as_deref(),
        Some("1048576")
    );
    assert_pilot_groups(&check);

    // Nothing left to do: broker defaults the file does not set never show as drift.
    let p = plan(&project, 0);
    assert!(p["actions"].as_array().is_some_and(|a| a.is_empty()), "{p}");

    // Messages written, then `customer-notify` (deliver_policy: new) would have started at the
    // end; a second apply never moves an existing group.
    check.produce(TOPIC, 12);
    let before = check.group("orders-intake").expect("group");
    apply_ok(&project);
    assert_eq!(
        check.group("orders-intake").expect("group")["offsets"],
        before["offsets"],
        "apply moved a group"
    );

    // retention 168h -> 72h and 6 -> 8 partitions: updates in place, the topic keeps its data.
    project.replace_in_infra("retention: 168h", "retention: 72h");
    project.replace_in_infra("partitions: 6", "partitions: 8");
    let p = plan(&project, 2);
    assert_eq!(actions_of(&p, "update"), vec!["bmw-topic"], "{p}");
    assert!(actions_of(&p, "replace").is_empty(), "{p}");
    apply_ok(&project);
    assert_eq!(
        check.topic_config(TOPIC, "retention.ms").as_deref(),
        Some("259200000")
    );
    assert_eq!(check.topic(TOPIC).expect("topic")["partitions"], json!(8));
    plan(&project, 0);

    // 8 -> 4 partitions is what Kafka refuses: the plan says so, names the field and the
    // fix, and nothing changes.
    project.replace_in_infra("partitions: 8", "partitions: 4");
    let out = project.run(&["plan"]);
    out.expect_code(1);
    for needle in ["bmw-topic", "partitions", "allow_data_loss"] {
        assert!(
            out.stderr.contains(needle),
            "the refusal names {needle}\n{out}"
        );
    }
    let out = project.run(&["apply"]);
    out.expect_code(1);
    assert_eq!(
        check.topic(TOPIC).expect("topic")["partitions"],
        json!(8),
        "a refused plan changed the topic"
    );

    // With allow_data_loss the decrease is a replace, and the plan names what is lost.
    project.replace_in_infra(
        "partitions: 4",
        "partitions: 4\n      allow_data_loss: true",
    );
    let p = plan(&project, 2);
    assert_eq!(
        actions_of(&p, "replace").first().copied(),
        Some("bmw-topic"),
        "{p}"
    );
    assert!(
        p.to_string().contains("messages"),
        "the plan names the data loss: {p}"
    );

    // A config the server refuses is caught by the plan's validate-only question.
    project.replace_in_infra(
        "partitions: 4\n      allow_data_loss: true",
        "partitions: 8",
    );
    project.replace_in_infra("max_message_bytes: 1048576", "min_insync_replicas: 5");
    let out = project.run(&["plan"]);
    assert_ne!(
        out.code, 0,
        "min.insync.replicas 5 on one broker must not plan clean\n{out}"
    );
    project.replace_in_infra("min_insync_replicas: 5", "max_message_bytes: 1048576");

    // Destroy removes the topic and the groups.
    let out = project.run(&["destroy"]);
    out.expect_code(0);
    assert!(
        !check.topics().contains(&TOPIC.to_string()),
        "destroy left the topic\n{out}"
    );
    let left: Vec<String> = check
        .groups()
        .into_iter()
        .filter(|g| GROUPS.contains(&g.as_str()))
        .collect();
    assert!(left.is_empty(), "destroy left groups {left:?}\n{out}");
}

#[test]
fn the_pilot_on_kafka_3() {
    lifecycle(KAFKA_VERSIONS[0]);
}

#[test]
fn the_pilot_on_kafka_4() {
    lifecycle(KAFKA_VERSIONS[1]);
}

#[test]
fn a_bad_topic_is_refused_before_anything_changes() {
    // No server needed to refuse: the name and the duration are wrong in the file itself.
    let yaml = pilot_yaml()
        .replace("name: bmw.fulfillment", "name: bmw fulfillment")
        .replace("retention: 168h", "retention: 7 days");
    let project = Project::new(&yaml, "").env("KAFKA_BOOTSTRAP", "127.0.0.1:9");
    let out = project.run_json(&["validate"]);
    out.expect_code(1);
    let v = out.json();
    let paths: Vec<&str> = v["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["resource"] == "bmw-topic")
        .filter_map(|d| d["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"config.name") && paths.contains(&"config.retention"),
        "{out}"
    );
}

#[test]
fn the_schema_of_a_stream_and_a_consumer_is_given_per_bus() {
    // One schema per bus under anyOf, and --bus picks one: a topic has partitions and no
    // subjects; a JetStream stream has subjects and no partitions.
    let cli = eventbus_tests::Cli::new(std::env::temp_dir());
    let both = cli.run(&["schema", "infra.eventbus.stream"]);
    both.expect_code(0);
    let buses: Vec<String> = both.json()["anyOf"]
        .as_array()
        .expect("anyOf")
        .iter()
        .filter_map(|s| s["x-bus"].as_str().map(String::from))
        .collect();
    assert_eq!(buses, ["nats", "kafka", "kinesis"], "{both}");
    let kafka = cli.run(&["schema", "infra.eventbus.stream", "--bus", "kafka"]);
    kafka.expect_code(0);
    let props = &kafka.json()["properties"];
    assert!(
        props.get("partitions").is_some() && props.get("subjects").is_none(),
        "{kafka}"
    );
    let nats = cli.run(&["schema", "infra.eventbus.stream", "--bus", "nats"]);
    let props = &nats.json()["properties"];
    assert!(
        props.get("subjects").is_some() && props.get("partitions").is_none(),
        "{nats}"
    );
    let group = cli.run(&["schema", "infra.eventbus.consumer", "--bus", "kafka"]);
    assert!(
        group.json()["properties"].get("principal").is_some(),
        "{group}"
    );
    let wrong = cli.run(&["schema", "infra.eventbus.stream", "--bus", "rabbitmq"]);
    wrong.expect_code(1);
    assert!(
        wrong.stderr.contains("nats, kafka"),
        "the error names the buses: {wrong}"
    );
}

#[test]
fn a_groups_principal_gets_read_on_its_topic_and_group() {
    // principal: User:orders-service on one group: Read on the topic and on the group, as the
    // cluster's authorizer holds them.
    let kafka = Kafka::start(KAFKA_VERSIONS[1]);
    let check = kafka.check();
    let yaml = pilot_yaml().replace(
        "      name: orders-intake\n",
        "      name: orders-intake\n      principal: User:orders-service\n",
    );
    let project = Project::new(&yaml, "").env("KAFKA_BOOTSTRAP", &kafka.bootstrap);
    apply_ok(&project);
    let mut got: Vec<(String, String, String)> = check
        .acls("User:orders-service")
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or("").to_string();
            (s("resource_type"), s("resource_name"), s("operation"))
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("GROUP".into(), "orders-intake".into(), "READ".into()),
            ("TOPIC".into(), TOPIC.into(), "READ".into()),
        ]
    );
    plan(&project, 0);
    // Destroying the group takes its grant with it.
    project.run(&["destroy"]).expect_code(0);
    let left: Vec<Value> = check
        .acls("User:orders-service")
        .into_iter()
        .filter(|a| a["resource_type"] == "GROUP")
        .collect();
    assert!(left.is_empty(), "the group's ACL outlived it: {left:?}");
}

#[test]
fn a_group_with_live_members_is_not_deleted() {
    // A consumer is still in `audit-log`: removing the group from the file plans a delete,
    // and apply refuses it with the reason and the fix; once the consumer leaves, it goes.
    let kafka = Kafka::start(KAFKA_VERSIONS[1]);
    let check = kafka.check();
    let project = project(&kafka);
    apply_ok(&project);
    let member = check.join("audit-log", TOPIC);
    let without = pilot_yaml().replace(
        "  - name: bmw-audit-log\n    type: infra.eventbus.consumer\n    config:\n      iac_provider: eventbus\n      stream_name: bmw.fulfillment\n      name: audit-log\n",
        "",
    );
    assert_ne!(
        without,
        pilot_yaml(),
        "test setup: the audit-log module is removed"
    );
    project.write_infra(&without);
    let p = plan(&project, 2);
    assert_eq!(actions_of(&p, "delete"), vec!["bmw-audit-log"], "{p}");
    let out = project.run(&["apply"]);
    out.expect_code(1);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("live member") && text.contains("stop the group's consumers"),
        "{out}"
    );
    assert!(
        check.groups().contains(&"audit-log".to_string()),
        "the group in use was deleted"
    );
    drop(member);
    apply_ok(&project);
    assert!(
        !check.groups().contains(&"audit-log".to_string()),
        "the group outlived its last member"
    );
}
