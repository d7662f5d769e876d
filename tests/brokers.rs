//! End-to-end tests of how a broker is reached: through a JetStream domain
//! (`$JS.<domain>.API`) and over a WebSocket listener (`ws://`).
//!
//! Every test starts its own nats-server from a config file (see
//! `NatsServer::start_with_config` in tests/src/lib.rs), applies a small pilot-like set (one
//! stream, one durable consumer) through the CLI, and checks the result on the server with the
//! test's own JetStream client over the server's plain NATS port. A second plan after every
//! successful apply must be empty.
//!
//! `NATS_SERVER_BIN=/usr/sbin/nats-server` runs the suite on another server version.

use eventbus_tests::{JetStream, NatsServer, Project, Value, json, nats_server_bin};

const STREAM: &str = "ORDERS";
const CONSUMER: &str = "intake";

// ---------------------------------------------------------------------------------------------
// helpers

/// A server with JetStream in domain `domain`.
fn server_with_domain(domain: &str) -> NatsServer {
    NatsServer::start_with_config(
        nats_server_bin(),
        &format!(
            r#"listen: "127.0.0.1:-1"
jetstream {{
  store_dir: "{{{{dir}}}}/store"
  domain: {domain}
  max_memory_store: 64MB
  max_file_store: 256MB
}}
"#
        ),
    )
}

/// A server with JetStream, a plain-text WebSocket listener and a monitoring port, each on a
/// free port.
fn server_with_websocket() -> NatsServer {
    NatsServer::start_with_config(
        nats_server_bin(),
        r#"listen: "127.0.0.1:-1"
http: "127.0.0.1:-1"
jetstream {
  store_dir: "{{dir}}/store"
  max_memory_store: 64MB
  max_file_store: 256MB
}
websocket {
  listen: "127.0.0.1:-1"
  no_tls: true
}
"#,
    )
}

/// An infra file (JSON, which the CLI reads as YAML): a self_hosted broker `bus` with the
/// given extra config (`url`, `domain`...), the stream ORDERS on `orders.>` and the durable
/// pull consumer `intake` on `orders.created`.
fn infra(broker: Value) -> String {
    let mut bus = json!({"iac_provider": "eventbus", "provider": "nats",
                         "deploy_target": "self_hosted"});
    for (k, v) in broker.as_object().unwrap() {
        bus[k] = v.clone();
    }
    serde_json::to_string_pretty(&json!({"modules": [
        {"name": "eventbus", "type": "iac.provider", "config": {"provider": "eventbus"}},
        {"name": "bus", "type": "infra.eventbus", "config": bus},
        {"name": "orders", "type": "infra.eventbus.stream", "config": {
            "iac_provider": "eventbus", "broker_ref": "bus", "name": STREAM,
            "subjects": ["orders.>"], "max_age": "168h"}},
        {"name": "orders-intake", "type": "infra.eventbus.consumer", "config": {
            "iac_provider": "eventbus", "stream_name": STREAM, "name": CONSUMER,
            "filter_subject": "orders.created", "ack_policy": "explicit", "max_deliver": 5}},
    ]}))
    .unwrap()
}

/// `apply -o json`, asserting exit 0 and that every result is ok.
#[track_caller]
fn apply_ok(project: &Project) -> Value {
    let out = project.run_json(&["apply"]);
    out.expect_code(0);
    let v = out.json();
    let results = v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results\n{out}"));
    assert_eq!(results.len(), 3, "broker, stream and consumer\n{out}");
    for r in results {
        assert_eq!(r["ok"], json!(true), "apply result not ok: {r}\n{out}");
    }
    v
}

/// A second plan must be empty: exit 0 and no actions.
#[track_caller]
fn assert_plan_empty(project: &Project) {
    let out = project.run_json(&["plan"]);
    assert_eq!(out.code, 0, "the plan after apply is not empty\n{out}");
    let n = out.json()["actions"].as_array().map_or(0, Vec::len);
    assert_eq!(n, 0, "the plan after apply lists actions\n{out}");
}

/// The stream and the consumer exist as declared, seen through `api` (`$JS.API` or
/// `$JS.<domain>.API`).
#[track_caller]
fn assert_set_on_server(js: &JetStream, api: &str) {
    let info = js.request_ok(&format!("{api}.STREAM.INFO.{STREAM}"), &Value::Null);
    assert_eq!(info["config"]["subjects"], json!(["orders.>"]), "{info}");
    assert_eq!(
        info["config"]["max_age"],
        json!(168u64 * 3600 * 1_000_000_000),
        "{info}"
    );
    let c = js.request_ok(
        &format!("{api}.CONSUMER.INFO.{STREAM}.{CONSUMER}"),
        &Value::Null,
    );
    assert_eq!(c["config"]["durable_name"], json!(CONSUMER), "{c}");
    assert_eq!(
        c["config"]["filter_subject"],
        json!("orders.created"),
        "{c}"
    );
    assert_eq!(c["config"]["ack_policy"], json!("explicit"), "{c}");
    assert_eq!(c["config"]["max_deliver"], json!(5), "{c}");
}

// ---------------------------------------------------------------------------------------------
// JetStream domains

/// A broker with `domain: hub` on a server whose JetStream domain is `hub`: the stream and
/// consumer apply, the server holds them (asked through `$JS.hub.API`), and the next plan is
/// empty.
#[test]
fn a_broker_with_a_jetstream_domain_applies_through_that_domain() {
    let server = server_with_domain("hub");
    let js = JetStream::connect(server.url());
    let project = Project::new(
        &infra(json!({"url": server.url(), "domain": "hub"})),
        server.url(),
    );

    apply_ok(&project);

    assert_set_on_server(&js, "$JS.hub.API");
    assert_plan_empty(&project);
}

/// `status` and `drift` read through the broker's domain too: after an apply both report
/// everything in place (exit 0), and a consumer deleted behind the CLI's back is reported as
/// drift (exit 2) by name.
#[test]
fn status_and_drift_read_through_the_jetstream_domain() {
    let server = server_with_domain("hub");
    let js = JetStream::connect(server.url());
    let project = Project::new(
        &infra(json!({"url": server.url(), "domain": "hub"})),
        server.url(),
    );
    apply_ok(&project);

    project.run(&["status"]).expect_code(0);
    project.run(&["drift"]).expect_code(0);

    js.request_ok(
        &format!("$JS.hub.API.CONSUMER.DELETE.{STREAM}.{CONSUMER}"),
        &Value::Null,
    );
    let out = project.run(&["drift"]);
    out.expect_code(2);
    assert!(
        out.text().contains("orders-intake"),
        "drift does not name the deleted consumer\n{out}"
    );
}

/// A broker whose `domain` does not exist on the server fails the apply (exit 1) with a
/// message that names the domain and says what is wrong, and nothing is created: no stream in
/// the server's real domain, and no stream or consumer recorded in state.
#[test]
fn a_wrong_jetstream_domain_fails_clearly_and_creates_nothing() {
    let server = server_with_domain("hub");
    let js = JetStream::connect(server.url());
    let project = Project::new(
        &infra(json!({"url": server.url(), "domain": "spoke"})),
        server.url(),
    );

    let out = project.run(&["apply"]);

    out.expect_code(1);
    let text = out.text();
    assert!(
        text.contains("spoke"),
        "the error does not name the domain\n{out}"
    );
    assert!(
        text.contains("domain"),
        "the error does not point at the domain as the likely cause\n{out}"
    );
    let names = js.request_ok("$JS.hub.API.STREAM.NAMES", &json!({}));
    assert_eq!(
        names["streams"],
        Value::Null,
        "streams were created: {names}"
    );
    assert_eq!(names["total"], json!(0), "{names}");
    let state = std::fs::read_to_string(project.state_path()).unwrap_or_default();
    assert!(
        !state.contains(STREAM) && !state.contains(CONSUMER),
        "state records resources that were never created:\n{state}"
    );
}

// ---------------------------------------------------------------------------------------------
// WebSocket

/// A broker whose only url is the server's WebSocket listener (`ws://127.0.0.1:<port>`, which
/// speaks nothing but WebSocket): the stream and consumer apply over it, the server holds them
/// (checked over the plain NATS port), the next plan is empty, and the server's connection
/// list (`/connz`) shows every connection the CLI made as a WebSocket one.
#[test]
fn a_broker_reached_over_websocket_applies_and_converges() {
    let server = server_with_websocket();
    let ws = server
        .websocket_url()
        .unwrap_or_else(|| panic!("no websocket port in {}", server.ports()));
    assert!(ws.starts_with("ws://127.0.0.1:"), "{ws}");
    let js = JetStream::connect(server.url());
    let project = Project::new(&infra(json!({"url": ws})), server.url());

    apply_ok(&project);

    assert_set_on_server(&js, "$JS.API");
    assert_plan_empty(&project);
    let connz = server
        .monitor("/connz?state=all&limit=1024")
        .expect("connz");
    let ours: Vec<&Value> = connz["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == "eventbus-iac")
        .collect();
    assert!(!ours.is_empty(), "no connection from the CLI in {connz}");
    for c in ours {
        assert_eq!(
            c["type"],
            json!("websocket"),
            "a CLI connection is not WebSocket: {c}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Grants

/// A broker that declares its endpoint under `urls` and leaves `url` empty (YAML `url:` is
/// null) is reachable: the guest reads a null `url` as absent and uses `urls`, so the host must
/// grant `urls` too. `validate` already accepts this file; apply must not then refuse the
/// declared endpoint as "not granted".
///
/// Fails today: host/src/infra.rs `load` grants `config.get("url").or_else(|| config.get("urls"))`,
/// and `get("url")` is `Some(Null)`, so nothing is granted (host/src/wfctl/bridge.rs does the same).
#[test]
fn a_broker_declared_under_urls_with_an_empty_url_is_granted() {
    let server = NatsServer::start();
    let js = JetStream::connect(server.url());
    let project = Project::new(
        &infra(json!({"url": null, "urls": [server.url()]})),
        server.url(),
    );
    project.run(&["validate"]).expect_code(0);

    apply_ok(&project);

    assert_set_on_server(&js, "$JS.API");
    assert_plan_empty(&project);
}
