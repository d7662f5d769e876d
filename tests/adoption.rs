//! Create is idempotent by name: an identical stream or consumer that already exists is
//! adopted; a different one is a conflict naming the differing fields, unless the resource
//! says `adopt_existing: true`; `import` brings an existing one under management.

use eventbus_tests::{JetStream, NatsServer, Project};
use serde_json::{Value, json};

fn infra(stream_extra: &str, consumer: Option<&str>) -> String {
    let mut s = format!(
        r#"modules:
  - {{name: eventbus, type: iac.provider, config: {{provider: eventbus}}}}
  - name: broker
    type: infra.eventbus
    config: {{iac_provider: eventbus, provider: nats, deploy_target: self_hosted, url: "${{NATS_URL}}"}}
  - name: orders
    type: infra.eventbus.stream
    config: {{iac_provider: eventbus, name: ORDERS, subjects: ["orders.>"], max_age: 1h{stream_extra}}}
"#
    );
    if let Some(c) = consumer {
        s.push_str(&format!(
            "  - name: intake\n    type: infra.eventbus.consumer\n    config: {{iac_provider: eventbus, stream_name: ORDERS, name: intake, filter_subject: orders.created{c}}}\n"
        ));
    }
    s
}

fn setup(yaml: &str) -> (NatsServer, Project, JetStream) {
    let server = NatsServer::start();
    let project = Project::new(yaml, server.url());
    let js = JetStream::connect(server.url());
    (server, project, js)
}

const HOUR: i64 = 3_600_000_000_000;

#[test]
fn create_adopts_an_identical_existing_stream() {
    // Someone made exactly this stream already: apply takes it over without touching it.
    let (_s, project, js) = setup(&infra("", None));
    let before =
        js.create_stream(&json!({"name": "ORDERS", "subjects": ["orders.>"], "max_age": HOUR}));
    project.run_json(&["apply"]).expect_code(0);
    let info = js.stream_info("ORDERS").unwrap();
    assert_eq!(
        info["created"], before["created"],
        "the stream was not recreated"
    );
    project.run_json(&["plan"]).expect_code(0);
}

#[test]
fn create_over_a_different_stream_is_a_conflict_naming_the_fields() {
    // A stream of the same name with another max_msgs is not silently overwritten.
    let (_s, project, js) = setup(&infra("", None));
    js.create_stream(
        &json!({"name": "ORDERS", "subjects": ["orders.>"], "max_age": HOUR, "max_msgs": 5}),
    );
    let out = project.run_json(&["apply"]);
    out.expect_code(1);
    let results = out.json()["results"].clone();
    let failed: Vec<&Value> = results
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ok"] == json!(false))
        .collect();
    assert_eq!(failed.len(), 1, "{out}");
    let err = failed[0]["error"].as_str().unwrap();
    assert!(err.contains("iac: resource already exists"), "{err}");
    assert!(
        err.contains("max_msgs"),
        "the differing field is named: {err}"
    );
    assert!(
        err.contains("adopt_existing"),
        "the way out is named: {err}"
    );
    assert_eq!(
        js.stream_config("ORDERS")["max_msgs"],
        json!(5),
        "the stranger's stream is untouched"
    );
}

#[test]
fn adopt_existing_takes_over_a_different_stream_in_place() {
    // With adopt_existing the stream is updated to the declared config, keeping its messages.
    let (_s, project, js) = setup(&infra(", adopt_existing: true", None));
    let before = js.create_stream(
        &json!({"name": "ORDERS", "subjects": ["orders.>"], "max_age": HOUR, "max_msgs": 5}),
    );
    project.run_json(&["apply"]).expect_code(0);
    let info = js.stream_info("ORDERS").unwrap();
    assert_eq!(info["config"]["max_msgs"], json!(-1));
    assert_eq!(
        info["created"], before["created"],
        "updated in place, not recreated"
    );
    project.run_json(&["plan"]).expect_code(0);
}

#[test]
fn adopt_existing_refuses_a_stream_that_would_need_replacing() {
    // Adoption never deletes someone's stream: a storage difference stays a conflict.
    let (_s, project, js) = setup(&infra(", adopt_existing: true", None));
    js.create_stream(
        &json!({"name": "ORDERS", "subjects": ["orders.>"], "max_age": HOUR, "storage": "memory"}),
    );
    let out = project.run_json(&["apply"]);
    out.expect_code(1);
    assert!(out.stdout.contains("cannot be adopted in place"), "{out}");
    assert_eq!(js.stream_config("ORDERS")["storage"], json!("memory"));
}

#[test]
fn create_over_a_different_consumer_is_a_conflict_and_identical_is_adopted() {
    // The consumer made behind our back with another max_deliver is reported, not overwritten.
    let (_s, project, js) = setup(&infra("", Some(", max_deliver: 3")));
    js.create_stream(&json!({"name": "ORDERS", "subjects": ["orders.>"], "max_age": HOUR}));
    js.create_consumer("ORDERS", &json!({"durable_name": "intake", "ack_policy": "explicit", "filter_subject": "orders.created", "max_deliver": 9}));
    let out = project.run_json(&["apply"]);
    out.expect_code(1);
    assert!(out.stdout.contains("max_deliver"), "{out}");
    assert_eq!(
        js.consumer_config("ORDERS", "intake")["max_deliver"],
        json!(9)
    );

    // Once it matches, the same apply adopts it.
    js.delete_consumer("ORDERS", "intake");
    js.create_consumer("ORDERS", &json!({"durable_name": "intake", "ack_policy": "explicit", "filter_subject": "orders.created", "max_deliver": 3}));
    project.run_json(&["apply"]).expect_code(0);
    project.run_json(&["plan"]).expect_code(0);
}

#[test]
fn import_brings_an_existing_stream_under_management() {
    // Import records the live config; a file that then declares that config plans nothing.
    let broker_only = infra("", None)
        .split("  - name: orders\n")
        .next()
        .unwrap()
        .to_string();
    let (_s, project, js) = setup(&broker_only);
    project.run_json(&["apply"]).expect_code(0);
    js.create_stream(
        &json!({"name": "ORDERS", "subjects": ["orders.>"], "max_age": HOUR, "max_msgs": 42}),
    );

    let out = project.run_json(&[
        "import",
        "--name",
        "orders",
        "--type",
        "infra.eventbus.stream",
        "--id",
        "broker/ORDERS",
    ]);
    out.expect_code(0);
    let imported = out.json()["imported"].clone();
    assert_eq!(imported["applied_config"]["max_msgs"], json!(42), "{out}");
    assert_eq!(imported["applied_config"]["max_age"], json!("1h"), "{out}");

    project.write_infra(&infra(", max_msgs: 42", None));
    project.run_json(&["plan"]).expect_code(0);
    // Without the declaration, the imported stream would be planned for deletion.
    project.write_infra(&broker_only);
    let plan = project.run_json(&["plan"]);
    plan.expect_code(2);
    assert_eq!(
        plan.json()["actions"][0]["action"],
        json!("delete"),
        "{plan}"
    );
}
