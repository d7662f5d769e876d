//! End-to-end specification of the `eventbus` CLI on the BMW pilot (examples/bmw/infra.yaml):
//! one broker, one JetStream stream, six consumers.
//!
//! Every test starts its own nats-server and works in its own temp directory, and judges the
//! CLI by what the server really holds (queried directly through the JetStream API).

use eventbus_tests::{
    JetStream, NatsServer, Output, Owned, Project, Value, consumer_filters, hours_ns, json,
    string_list,
};

const STREAM: &str = "BMW_FULFILLMENT";
const BROKER: &str = "bmw-eventbus";
const STREAM_MODULE: &str = "bmw-stream";

const TYPE_BROKER: &str = "infra.eventbus";
const TYPE_STREAM: &str = "infra.eventbus.stream";
const TYPE_CONSUMER: &str = "infra.eventbus.consumer";

/// What the pilot declares for each consumer, as the server must hold it.
struct ExpectedConsumer {
    module: &'static str,
    name: &'static str,
    filter: Option<&'static str>,
    deliver_policy: &'static str,
    ack_policy: &'static str,
    /// -1 is the server's "unlimited", what an unset max_deliver must become.
    max_deliver: i64,
}

const PILOT_CONSUMERS: [ExpectedConsumer; 6] = [
    ExpectedConsumer {
        module: "bmw-orders-intake",
        name: "orders-intake",
        filter: Some("bmw.orders.created"),
        deliver_policy: "all",
        ack_policy: "explicit",
        max_deliver: 5,
    },
    ExpectedConsumer {
        module: "bmw-payment-capture",
        name: "payment-capture",
        filter: Some("bmw.payments.authorized"),
        deliver_policy: "all",
        ack_policy: "explicit",
        max_deliver: -1,
    },
    ExpectedConsumer {
        module: "bmw-inventory-reserve",
        name: "inventory-reserve",
        filter: Some("bmw.inventory.>"),
        deliver_policy: "all",
        ack_policy: "explicit",
        max_deliver: -1,
    },
    ExpectedConsumer {
        module: "bmw-shipment-dispatch",
        name: "shipment-dispatch",
        filter: Some("bmw.shipments.ready"),
        deliver_policy: "all",
        ack_policy: "explicit",
        max_deliver: 10,
    },
    ExpectedConsumer {
        module: "bmw-customer-notify",
        name: "customer-notify",
        filter: Some("bmw.notifications.>"),
        deliver_policy: "new",
        ack_policy: "explicit",
        max_deliver: -1,
    },
    ExpectedConsumer {
        module: "bmw-audit-log",
        name: "audit-log",
        filter: None,
        deliver_policy: "all",
        ack_policy: "none",
        max_deliver: -1,
    },
];

fn consumer_modules() -> Vec<&'static str> {
    PILOT_CONSUMERS.iter().map(|c| c.module).collect()
}

fn consumer_names_sorted() -> Vec<String> {
    let mut v: Vec<String> = PILOT_CONSUMERS.iter().map(|c| c.name.to_string()).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// helpers

/// A fresh server and a project holding the pilot.
fn pilot() -> (NatsServer, Project, JetStream) {
    let server = NatsServer::start();
    let project = Project::pilot(server.url());
    let js = JetStream::connect(server.url());
    (server, project, js)
}

/// `apply -o json`, asserting exit 0 and that every result is ok.
#[track_caller]
fn apply_ok(project: &Project) -> Value {
    let out = project.run_json(&["apply"]);
    out.expect_code(0);
    let v = out.json();
    for r in array(&v["results"], &out) {
        assert_eq!(r["ok"], json!(true), "apply result not ok: {r}\n{out}");
    }
    v
}

#[track_caller]
fn array<'a>(v: &'a Value, out: &Output) -> &'a Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {v}\n{out}"))
}

/// `plan -o json` with the expected exit code; checks the summary matches the actions.
#[track_caller]
fn plan_json(project: &Project, code: i32) -> (Output, Value) {
    let out = project.run_json(&["plan"]);
    out.expect_code(code);
    let plan = out.json();
    check_summary(&plan, &out);
    (out, plan)
}

/// The plan's summary counts must equal what its action list holds.
#[track_caller]
fn check_summary(plan: &Value, out: &Output) {
    let actions = array(&plan["actions"], out);
    for kind in ["create", "update", "replace", "delete"] {
        let n = actions.iter().filter(|a| a["action"] == kind).count() as u64;
        assert_eq!(
            plan["summary"][kind].as_u64(),
            Some(n),
            "summary.{kind} disagrees with the {n} `{kind}` actions listed\n{out}"
        );
    }
}

fn names_of(actions: &[Value]) -> Vec<String> {
    actions
        .iter()
        .map(|a| a["name"].as_str().unwrap_or("<no name>").to_string())
        .collect()
}

/// Apply `edit` to the block of module `module` only (from its `- name:` line to the next).
#[track_caller]
fn edit_module(project: &Project, module: &str, from: &str, to: &str) {
    let text = project.infra();
    let header = format!("  - name: {module}\n");
    let start = text
        .find(&header)
        .unwrap_or_else(|| panic!("test setup: no module {module} in infra.yaml"));
    let body_start = start + header.len();
    let end = text[body_start..]
        .find("  - name: ")
        .map(|i| body_start + i)
        .unwrap_or(text.len());
    let block = &text[start..end];
    assert_eq!(
        block.matches(from).count(),
        1,
        "test setup: expected exactly one `{from}` in module {module}:\n{block}"
    );
    let new_text = format!(
        "{}{}{}",
        &text[..start],
        block.replacen(from, to, 1),
        &text[end..]
    );
    project.write_infra(&new_text);
}

/// Delete module `module`'s whole block from infra.yaml.
#[track_caller]
fn remove_module(project: &Project, module: &str) {
    let text = project.infra();
    let header = format!("  - name: {module}\n");
    let start = text
        .find(&header)
        .unwrap_or_else(|| panic!("test setup: no module {module} in infra.yaml"));
    let body_start = start + header.len();
    let end = text[body_start..]
        .find("  - name: ")
        .map(|i| body_start + i)
        .unwrap_or(text.len());
    project.write_infra(&format!("{}{}", &text[..start], &text[end..]));
}

/// Checks every consumer of the pilot on the server against what the pilot declares.
#[track_caller]
fn assert_pilot_consumers_on_server(js: &JetStream) {
    assert_eq!(
        js.consumer_names(STREAM),
        consumer_names_sorted(),
        "consumers on the server"
    );
    for c in &PILOT_CONSUMERS {
        let cfg = js.consumer_config(STREAM, c.name);
        let want_filters: Vec<String> = c.filter.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            consumer_filters(&cfg),
            want_filters,
            "{} filter: {cfg}",
            c.name
        );
        assert_eq!(
            cfg["ack_policy"],
            json!(c.ack_policy),
            "{} ack_policy: {cfg}",
            c.name
        );
        assert_eq!(
            cfg["deliver_policy"],
            json!(c.deliver_policy),
            "{} deliver_policy: {cfg}",
            c.name
        );
        assert_eq!(
            cfg["max_deliver"],
            json!(c.max_deliver),
            "{} max_deliver: {cfg}",
            c.name
        );
        // Managed consumers must be durable: a named ephemeral consumer is reaped by the
        // server after its inactive threshold and would vanish behind the CLI's back.
        assert_eq!(
            cfg["durable_name"],
            json!(c.name),
            "{} must be durable: {cfg}",
            c.name
        );
    }
}

/// A bad infra.yaml must be refused by validate (text and JSON), plan (text and JSON) and
/// apply, with messages naming the file, the resource and the field, and nothing may reach
/// the server.
#[track_caller]
fn assert_rejected(server: &NatsServer, project: &Project, resource: &str, field: &str) {
    let js = JetStream::connect(server.url());

    // validate, text: names file, resource and field.
    let out = project.run(&["validate"]);
    out.expect_code(1);
    let text = out.text();
    for needle in ["infra.yaml", resource, field] {
        assert!(
            text.contains(needle),
            "validate output does not name `{needle}`\n{out}"
        );
    }

    // validate, JSON: valid=false and a diagnostic pointing at resource + field, with a fix.
    let out = project.run_json(&["validate"]);
    out.expect_code(1);
    let v = out.json();
    assert_eq!(v["valid"], json!(false), "{out}");
    let diags = array(&v["diagnostics"], &out);
    let d = diags
        .iter()
        .find(|d| {
            d["resource"] == resource && d["path"].as_str().is_some_and(|p| p.contains(field))
        })
        .unwrap_or_else(|| {
            panic!("no diagnostic for resource `{resource}` at a path naming `{field}`\n{out}")
        });
    assert!(
        d["file"].as_str().is_some_and(|f| f.contains("infra.yaml")),
        "diagnostic does not name the file: {d}"
    );
    assert!(
        d["message"].as_str().is_some_and(|m| !m.trim().is_empty()),
        "empty message: {d}"
    );
    assert!(
        d["fix"].as_str().is_some_and(|m| !m.trim().is_empty()),
        "empty fix: {d}"
    );

    // plan, text: exit 1, diagnostics on stderr.
    let out = project.run(&["plan"]);
    out.expect_code(1);
    for needle in ["infra.yaml", resource, field] {
        assert!(
            out.stderr.contains(needle),
            "plan stderr does not name `{needle}`\n{out}"
        );
    }

    // plan, JSON: exit 1 with {"valid": false, "diagnostics": [...]} on stdout.
    let out = project.run_json(&["plan"]);
    out.expect_code(1);
    let v = out.json();
    assert_eq!(v["valid"], json!(false), "{out}");
    assert!(
        array(&v["diagnostics"], &out)
            .iter()
            .any(|d| d["resource"] == resource),
        "plan JSON diagnostics do not name `{resource}`\n{out}"
    );

    // apply: exit 1 and nothing created.
    let out = project.run(&["apply"]);
    out.expect_code(1);
    assert_eq!(
        js.stream_names(),
        Vec::<String>::new(),
        "a rejected config must create nothing on the server\n{out}"
    );
}

/// One mistake must not produce diagnostics about other, valid resources (for example a
/// consumer told its stream is "not declared" because the declared stream has a bad field).
#[track_caller]
fn assert_only_resource_diagnosed(project: &Project, resource: &str) {
    let out = project.run_json(&["validate"]);
    out.expect_code(1);
    let v = out.json();
    let others: Vec<&Value> = array(&v["diagnostics"], &out)
        .iter()
        .filter(|d| d["resource"] != resource)
        .collect();
    assert!(
        others.is_empty(),
        "only `{resource}` is wrong, yet other resources are diagnosed: {others:#?}\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// plan / apply on the pilot

/// A first plan of the pilot creates all eight resources, broker then stream then the six
/// consumers, and touches nothing on the server.
#[test]
fn pilot_plan_has_eight_creates_in_dependency_order() {
    let (_server, project, js) = pilot();

    let (out, plan) = plan_json(&project, 2);
    let actions = array(&plan["actions"], &out);
    assert_eq!(actions.len(), 8, "{out}");
    assert!(
        actions.iter().all(|a| a["action"] == "create"),
        "all creates\n{out}"
    );
    assert_eq!(plan["summary"]["create"], json!(8), "{out}");

    assert_eq!(actions[0]["name"], json!(BROKER), "broker first\n{out}");
    assert_eq!(actions[0]["type"], json!(TYPE_BROKER), "{out}");
    assert_eq!(
        actions[1]["name"],
        json!(STREAM_MODULE),
        "stream second\n{out}"
    );
    assert_eq!(actions[1]["type"], json!(TYPE_STREAM), "{out}");

    let mut rest = names_of(&actions[2..]);
    rest.sort();
    let mut want: Vec<String> = consumer_modules().iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(rest, want, "the six consumers come last\n{out}");
    assert!(
        actions[2..].iter().all(|a| a["type"] == TYPE_CONSUMER),
        "{out}"
    );

    // Planning is read-only.
    assert_eq!(
        js.stream_names(),
        Vec::<String>::new(),
        "plan must not create anything"
    );
}

/// Applying the pilot creates the stream and exactly its six consumers on the server, with
/// the declared settings (durations in ns, unset max_deliver as -1).
#[test]
fn pilot_apply_creates_everything_on_the_server() {
    let (_server, project, js) = pilot();

    let v = apply_ok(&project);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 8, "eight results: {v}");
    assert!(results.iter().all(|r| r["action"] == "create"), "{v}");

    assert_eq!(js.stream_names(), vec![STREAM.to_string()]);
    let cfg = js.stream_config(STREAM);
    assert_eq!(
        string_list(&cfg["subjects"]),
        vec!["bmw.>".to_string()],
        "{cfg}"
    );
    assert_eq!(
        cfg["max_age"],
        json!(hours_ns(168)),
        "max_age 168h in ns: {cfg}"
    );
    assert_eq!(cfg["max_age"], json!(604_800_000_000_000u64), "{cfg}");
    assert_eq!(cfg["retention"], json!("limits"), "{cfg}");
    assert_eq!(
        cfg["storage"],
        json!("file"),
        "default storage is file: {cfg}"
    );

    assert_pilot_consumers_on_server(&js);
}

/// After a successful apply, planning again finds nothing to do.
#[test]
fn second_plan_after_apply_is_empty() {
    let (_server, project, _js) = pilot();
    apply_ok(&project);

    let (out, plan) = plan_json(&project, 0);
    assert_eq!(plan["actions"], json!([]), "{out}");
    for kind in ["create", "update", "replace", "delete"] {
        assert_eq!(plan["summary"][kind], json!(0), "{out}");
    }
    // Text mode agrees on the exit code.
    project.run(&["plan"]).expect_code(0);
}

/// Applying an unchanged config again is a no-op that succeeds.
#[test]
fn second_apply_after_apply_changes_nothing() {
    let (_server, project, js) = pilot();
    apply_ok(&project);
    let created_before = js.stream_info(STREAM).unwrap()["created"].clone();

    let v = apply_ok(&project);
    assert_eq!(
        v["results"],
        json!([]),
        "second apply should have nothing to do: {v}"
    );
    assert_eq!(
        js.stream_info(STREAM).unwrap()["created"],
        created_before,
        "the stream must not have been recreated"
    );
    assert_pilot_consumers_on_server(&js);
}

/// `status` after apply lists all eight resources, each with a provider id and running.
#[test]
fn status_after_apply_reports_all_eight_running() {
    let (_server, project, _js) = pilot();
    apply_ok(&project);

    let out = project.run_json(&["status"]);
    out.expect_code(0);
    let v = out.json();
    let resources = array(&v["resources"], &out);
    let mut names = names_of(resources);
    names.sort();
    let mut want: Vec<String> = [BROKER, STREAM_MODULE]
        .into_iter()
        .chain(consumer_modules())
        .map(str::to_string)
        .collect();
    want.sort();
    assert_eq!(names, want, "{out}");
    for r in resources {
        assert!(
            r["provider_id"].as_str().is_some_and(|s| !s.is_empty()),
            "empty provider_id: {r}"
        );
        assert_eq!(r["status"], json!("running"), "{r}");
    }
}

/// Global options are accepted after the subcommand too.
#[test]
fn global_options_work_after_the_subcommand() {
    let (_server, project, _js) = pilot();
    let infra = project.infra_path().display().to_string();
    let state = project.state_path().display().to_string();
    let out = project
        .cli()
        .run(&["plan", "-f", &infra, "--state", &state, "-o", "json"]);
    out.expect_code(2);
    assert_eq!(out.json()["summary"]["create"], json!(8), "{out}");
}

// ---------------------------------------------------------------------------------------------
// changes

/// A mutable field (max_deliver) plans as an in-place update with old/new values, applies,
/// reaches the server, and leaves nothing to plan.
#[test]
fn mutable_change_plans_and_applies_as_update() {
    let (_server, project, js) = pilot();
    apply_ok(&project);
    let created_before = js.consumer_info(STREAM, "orders-intake").unwrap()["created"].clone();

    edit_module(
        &project,
        "bmw-orders-intake",
        "max_deliver: 5",
        "max_deliver: 7",
    );

    let (out, plan) = plan_json(&project, 2);
    let actions = array(&plan["actions"], &out);
    assert_eq!(actions.len(), 1, "only orders-intake changes\n{out}");
    let a = &actions[0];
    assert_eq!(a["action"], json!("update"), "{out}");
    assert_eq!(a["name"], json!("bmw-orders-intake"), "{out}");
    assert_eq!(a["type"], json!(TYPE_CONSUMER), "{out}");
    let changes = array(&a["changes"], &out);
    let c = changes
        .iter()
        .find(|c| c["path"] == "max_deliver")
        .unwrap_or_else(|| panic!("no change at path max_deliver\n{out}"));
    assert_eq!(c["old"], json!(5), "{out}");
    assert_eq!(c["new"], json!(7), "{out}");
    assert_eq!(c["force_new"], json!(false), "{out}");
    assert!(
        changes.iter().all(|c| c["force_new"] == false),
        "an update must have no force_new change\n{out}"
    );

    let v = apply_ok(&project);
    assert_eq!(v["results"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["results"][0]["action"], json!("update"), "{v}");

    let info = js
        .consumer_info(STREAM, "orders-intake")
        .expect("consumer still exists");
    assert_eq!(info["config"]["max_deliver"], json!(7), "{info}");
    assert_eq!(
        info["created"], created_before,
        "updated in place, not recreated: {info}"
    );

    let (out, plan) = plan_json(&project, 0);
    assert_eq!(plan["actions"], json!([]), "{out}");
}

/// An immutable field (stream storage) plans as a replace with a reason; after apply the
/// stream has the new storage, all six consumers are back, and the next plan is empty.
#[test]
fn immutable_change_plans_as_replace_with_reason() {
    let (_server, project, js) = pilot();
    // Start from an explicit `storage: file` so the change is file -> memory.
    edit_module(
        &project,
        STREAM_MODULE,
        "max_age: 168h\n",
        "max_age: 168h\n      storage: file\n",
    );
    apply_ok(&project);
    assert_eq!(js.stream_config(STREAM)["storage"], json!("file"));
    let created_before = js.stream_info(STREAM).unwrap()["created"].clone();

    edit_module(&project, STREAM_MODULE, "storage: file", "storage: memory");

    let (out, plan) = plan_json(&project, 2);
    let actions = array(&plan["actions"], &out);
    let (si, stream_action) = actions
        .iter()
        .enumerate()
        .find(|(_, a)| a["name"] == STREAM_MODULE)
        .unwrap_or_else(|| panic!("no action for {STREAM_MODULE}\n{out}"));
    assert_eq!(stream_action["action"], json!("replace"), "{out}");
    let changes = array(&stream_action["changes"], &out);
    let c = changes
        .iter()
        .find(|c| c["path"] == "storage")
        .unwrap_or_else(|| panic!("no change at path storage\n{out}"));
    assert_eq!(c["force_new"], json!(true), "{out}");
    assert_eq!(c["old"], json!("file"), "{out}");
    assert_eq!(c["new"], json!("memory"), "{out}");
    assert!(
        c["reason"].as_str().is_some_and(|r| !r.trim().is_empty()),
        "a force_new change needs a reason\n{out}"
    );

    // Whatever the plan says about the consumers must be consistent: the broker is untouched,
    // consumers are never deleted-only, and any consumer action comes after the stream's.
    for (i, a) in actions.iter().enumerate() {
        let name = a["name"].as_str().unwrap_or_default();
        assert_ne!(name, BROKER, "the broker does not change\n{out}");
        if a["type"] == TYPE_CONSUMER {
            assert!(
                a["action"] == "replace" || a["action"] == "create" || a["action"] == "update",
                "consumer {name} must survive the stream replace, not be {}\n{out}",
                a["action"]
            );
            assert!(
                i > si,
                "consumer {name} is planned before its stream\n{out}"
            );
        }
    }

    apply_ok(&project);
    let info = js
        .stream_info(STREAM)
        .expect("the stream exists after the replace");
    assert_ne!(
        info["created"], created_before,
        "the stream was not recreated: {info}"
    );
    let cfg = info["config"].clone();
    assert_eq!(cfg["storage"], json!("memory"), "{cfg}");
    assert_eq!(
        string_list(&cfg["subjects"]),
        vec!["bmw.>".to_string()],
        "{cfg}"
    );
    assert_pilot_consumers_on_server(&js);

    let (out, plan) = plan_json(&project, 0);
    assert_eq!(plan["actions"], json!([]), "{out}");
}

/// Destroy deletes every consumer, then the stream, then the broker; the server is left
/// empty and the state holds nothing.
#[test]
fn destroy_removes_consumers_then_stream_then_broker() {
    let (_server, project, js) = pilot();
    apply_ok(&project);

    let out = project.run_json(&["destroy"]);
    out.expect_code(0);
    let v = out.json();
    let results = array(&v["results"], &out);
    assert_eq!(results.len(), 8, "{out}");
    for r in results {
        assert_eq!(r["action"], json!("delete"), "{out}");
        assert_eq!(r["ok"], json!(true), "{out}");
    }
    let pos = |name: &str| {
        results
            .iter()
            .position(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no result for {name}\n{out}"))
    };
    let stream_pos = pos(STREAM_MODULE);
    let broker_pos = pos(BROKER);
    for m in consumer_modules() {
        assert!(
            pos(m) < stream_pos,
            "consumer {m} deleted after the stream\n{out}"
        );
    }
    assert!(
        stream_pos < broker_pos,
        "stream deleted after the broker\n{out}"
    );
    assert_eq!(broker_pos, 7, "the broker is last\n{out}");

    assert_eq!(
        js.stream_names(),
        Vec::<String>::new(),
        "no stream left on the server"
    );

    let out = project.run_json(&["status"]);
    out.expect_code(0);
    assert_eq!(
        out.json()["resources"],
        json!([]),
        "state still holds resources\n{out}"
    );

    // With the state empty, the pilot plans as eight creates again.
    let (out, plan) = plan_json(&project, 2);
    assert_eq!(plan["summary"]["create"], json!(8), "{out}");
}

/// Removing a consumer from the file plans exactly one delete, and apply removes it from the
/// server while the rest stays.
#[test]
fn removed_consumer_plans_as_delete_and_apply_deletes_it() {
    let (_server, project, js) = pilot();
    apply_ok(&project);

    remove_module(&project, "bmw-audit-log");

    let (out, plan) = plan_json(&project, 2);
    let actions = array(&plan["actions"], &out);
    assert_eq!(actions.len(), 1, "{out}");
    assert_eq!(actions[0]["action"], json!("delete"), "{out}");
    assert_eq!(actions[0]["name"], json!("bmw-audit-log"), "{out}");
    assert_eq!(actions[0]["type"], json!(TYPE_CONSUMER), "{out}");

    let v = apply_ok(&project);
    assert_eq!(v["results"].as_array().map(Vec::len), Some(1), "{v}");
    let mut want = consumer_names_sorted();
    want.retain(|n| n != "audit-log");
    assert_eq!(js.consumer_names(STREAM), want);
    assert!(js.stream_info(STREAM).is_some(), "the stream stays");

    let (out, plan) = plan_json(&project, 0);
    assert_eq!(plan["actions"], json!([]), "{out}");
}

/// Removing the stream and its consumers from the file plans deletes in reverse dependency
/// order (every consumer before the stream), and apply empties the server.
#[test]
fn removed_stream_and_consumers_delete_consumers_first() {
    let (_server, project, js) = pilot();
    apply_ok(&project);

    remove_module(&project, STREAM_MODULE);
    for m in consumer_modules() {
        remove_module(&project, m);
    }

    let (out, plan) = plan_json(&project, 2);
    let actions = array(&plan["actions"], &out);
    assert_eq!(actions.len(), 7, "{out}");
    assert!(actions.iter().all(|a| a["action"] == "delete"), "{out}");
    assert_eq!(
        actions[6]["name"],
        json!(STREAM_MODULE),
        "the stream is deleted last\n{out}"
    );

    let v = apply_ok(&project);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 7, "{v}");
    assert_eq!(results[6]["name"], json!(STREAM_MODULE), "{v}");
    assert_eq!(js.stream_names(), Vec::<String>::new());

    let out = project.run_json(&["status"]);
    let resources = out.json()["resources"].clone();
    assert_eq!(
        names_of(array(&resources, &out)),
        vec![BROKER.to_string()],
        "{out}"
    );
}

/// A failed action does not stop apply: the rest is applied and recorded, the failure is
/// reported with its error, apply exits 1, and the next plan holds only the failed create.
#[test]
fn apply_keeps_going_after_a_failure_and_records_only_successes() {
    let (_server, project, js) = pilot();
    // Valid on paper, refused by a single (non-clustered) server at create time.
    let mut yaml = project.infra();
    yaml.push_str(
        "
  - name: bmw-replicated
    type: infra.eventbus.stream
    config:
      iac_provider: eventbus
      broker_ref: bmw-eventbus
      name: BMW_REPLICATED
      subjects: [\"replicated.>\"]
      num_replicas: 3
",
    );
    project.write_infra(&yaml);
    project.run(&["validate"]).expect_code(0);

    let out = project.run_json(&["apply"]);
    out.expect_code(1);
    let v = out.json();
    let results = array(&v["results"], &out);
    assert_eq!(results.len(), 9, "every planned action is reported\n{out}");
    for r in results {
        if r["name"] == "bmw-replicated" {
            assert_eq!(r["ok"], json!(false), "{out}");
            assert!(
                r["error"].as_str().is_some_and(|e| !e.trim().is_empty()),
                "a failure carries its error\n{out}"
            );
        } else {
            assert_eq!(
                r["ok"],
                json!(true),
                "{} should have been applied\n{out}",
                r["name"]
            );
        }
    }

    assert_eq!(js.stream_names(), vec![STREAM.to_string()]);
    assert_pilot_consumers_on_server(&js);

    let (out, plan) = plan_json(&project, 2);
    let actions = array(&plan["actions"], &out);
    assert_eq!(actions.len(), 1, "only the failed create is left\n{out}");
    assert_eq!(actions[0]["action"], json!("create"), "{out}");
    assert_eq!(actions[0]["name"], json!("bmw-replicated"), "{out}");
}

/// A protected stream is not replaced without `--allow-replace`: apply exits 1 and changes
/// nothing; with `--allow-replace bmw-stream` the replace goes through.
#[test]
fn protected_stream_replace_needs_allow_replace() {
    let (_server, project, js) = pilot();
    edit_module(
        &project,
        STREAM_MODULE,
        "max_age: 168h\n",
        "max_age: 168h\n      protected: true\n      storage: file\n",
    );
    apply_ok(&project);
    let created_before = js.stream_info(STREAM).unwrap()["created"].clone();

    edit_module(&project, STREAM_MODULE, "storage: file", "storage: memory");

    let out = project.run(&["apply"]);
    out.expect_code(1);
    assert!(
        out.text().contains("--allow-replace"),
        "the refusal says how to override\n{out}"
    );
    let info = js.stream_info(STREAM).expect("stream untouched");
    assert_eq!(
        info["created"], created_before,
        "a refused replace must change nothing"
    );
    assert_eq!(info["config"]["storage"], json!("file"));
    assert_pilot_consumers_on_server(&js);

    let out = project.run_json(&["apply", "--allow-replace", STREAM_MODULE]);
    out.expect_code(0);
    assert_eq!(js.stream_config(STREAM)["storage"], json!("memory"));
    assert_pilot_consumers_on_server(&js);
}

// ---------------------------------------------------------------------------------------------
// bad input: refused before anything touches the server

/// A misspelt key in a consumer (`max_delivr`) is refused, naming the resource and the key.
#[test]
fn unknown_consumer_key_is_rejected() {
    let server = NatsServer::start();
    let project = Project::pilot(server.url());
    edit_module(
        &project,
        "bmw-orders-intake",
        "max_deliver: 5",
        "max_delivr: 5",
    );
    assert_rejected(&server, &project, "bmw-orders-intake", "max_delivr");
    assert_only_resource_diagnosed(&project, "bmw-orders-intake");
}

/// A consumer without stream_name is refused, naming the resource and `stream_name`.
#[test]
fn missing_stream_name_is_rejected() {
    let server = NatsServer::start();
    let project = Project::pilot(server.url());
    edit_module(
        &project,
        "bmw-payment-capture",
        "      stream_name: BMW_FULFILLMENT\n",
        "",
    );
    assert_rejected(&server, &project, "bmw-payment-capture", "stream_name");
    assert_only_resource_diagnosed(&project, "bmw-payment-capture");
}

/// A duration that is not a duration (`max_age: 7 days`) is refused, naming `max_age`.
#[test]
fn malformed_duration_is_rejected() {
    let server = NatsServer::start();
    let project = Project::pilot(server.url());
    edit_module(&project, STREAM_MODULE, "max_age: 168h", "max_age: 7 days");
    assert_rejected(&server, &project, STREAM_MODULE, "max_age");
    // The stream is declared, only one of its fields is bad: its six consumers are fine.
    assert_only_resource_diagnosed(&project, STREAM_MODULE);
}

/// A consumer whose stream_name names a stream no resource declares is refused.
#[test]
fn consumer_of_undeclared_stream_is_rejected() {
    let server = NatsServer::start();
    let project = Project::pilot(server.url());
    edit_module(
        &project,
        "bmw-shipment-dispatch",
        "stream_name: BMW_FULFILLMENT",
        "stream_name: BMW_NOWHERE",
    );
    assert_rejected(&server, &project, "bmw-shipment-dispatch", "stream_name");
    let out = project.run(&["validate"]);
    assert!(
        out.text().contains("BMW_NOWHERE"),
        "the message should name the missing stream\n{out}"
    );
}

/// A resource routed to an iac.provider module that does not exist is refused, naming the
/// module and `iac_provider`.
#[test]
fn routing_to_missing_iac_provider_is_rejected() {
    let server = NatsServer::start();
    let project = Project::pilot(server.url());
    edit_module(
        &project,
        "bmw-audit-log",
        "iac_provider: eventbus",
        "iac_provider: eventbuss",
    );
    assert_rejected(&server, &project, "bmw-audit-log", "iac_provider");
}

// ---------------------------------------------------------------------------------------------
// drift

/// Out-of-band changes are detected: a deleted consumer is a ghost, a changed stream setting
/// is config drift naming the field; untouched resources stay in sync.
#[test]
fn drift_reports_ghost_and_config_changes() {
    let (_server, project, js) = pilot();
    apply_ok(&project);

    // In sync right after apply.
    let out = project.run_json(&["drift"]);
    out.expect_code(0);
    let v = out.json();
    assert!(
        array(&v["drift"], &out)
            .iter()
            .all(|d| d["drifted"] == false),
        "nothing drifted yet\n{out}"
    );

    js.delete_consumer(STREAM, "payment-capture");
    let new_cfg = js.update_stream(STREAM, |cfg| cfg["max_msgs"] = json!(1000));
    assert_eq!(
        new_cfg["max_msgs"],
        json!(1000),
        "test setup: out-of-band update took"
    );

    let out = project.run_json(&["drift"]);
    out.expect_code(2);
    let v = out.json();
    let drift = array(&v["drift"], &out);
    let entry = |name: &str| {
        drift
            .iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("no drift entry for {name}\n{out}"))
    };

    let ghost = entry("bmw-payment-capture");
    assert_eq!(ghost["drifted"], json!(true), "{out}");
    assert_eq!(ghost["class"], json!("ghost"), "{out}");
    assert_eq!(ghost["type"], json!(TYPE_CONSUMER), "{out}");

    let stream = entry(STREAM_MODULE);
    assert_eq!(stream["drifted"], json!(true), "{out}");
    assert_eq!(stream["class"], json!("config"), "{out}");
    assert!(
        string_list(&stream["fields"])
            .iter()
            .any(|f| f == "max_msgs"),
        "stream drift must name field max_msgs\n{out}"
    );

    for name in ["bmw-orders-intake", "bmw-audit-log", BROKER] {
        let d = entry(name);
        assert_eq!(d["drifted"], json!(false), "{name} was not touched\n{out}");
        assert_eq!(d["class"], json!("in-sync"), "{out}");
    }
}

/// `apply --refresh` reads the servers first: a consumer deleted out of band is recreated and
/// an out-of-band edit is reverted, after which drift is clean.
#[test]
fn apply_refresh_recreates_ghosts_and_reverts_out_of_band_edits() {
    let (_server, project, js) = pilot();
    apply_ok(&project);
    js.delete_consumer(STREAM, "payment-capture");
    js.update_stream(STREAM, |cfg| cfg["max_msgs"] = json!(1000));

    // Without refresh the plan compares with state and sees nothing.
    project.run_json(&["plan"]).expect_code(0);

    let out = project.run_json(&["plan", "--refresh"]);
    out.expect_code(2);
    let v = out.json();
    let actions = array(&v["actions"], &out);
    let kind = |name: &str| {
        actions
            .iter()
            .find(|a| a["name"] == name)
            .map(|a| a["action"].clone())
    };
    assert_eq!(kind("bmw-payment-capture"), Some(json!("create")), "{out}");
    assert_eq!(kind(STREAM_MODULE), Some(json!("update")), "{out}");
    assert_eq!(actions.len(), 2, "{out}");

    project.run_json(&["apply", "--refresh"]).expect_code(0);
    assert!(
        js.consumer_info(STREAM, "payment-capture").is_some(),
        "the consumer is back"
    );
    assert_eq!(
        js.stream_config(STREAM)["max_msgs"],
        json!(-1),
        "the edit is reverted"
    );
    project.run_json(&["drift"]).expect_code(0);
}

#[test]
fn a_closed_stdout_pipe_ends_the_cli_quietly_without_a_panic() {
    // `eventbus schema | head -0`: the reader is gone before the CLI writes. SIGPIPE stays
    // ignored (so a broker dropping its socket mid-write is an error, not a silent death);
    // the CLI itself notices the broken pipe and exits 141 without a panic message.
    use std::process::{Command, Stdio};
    let mut child = Command::new(eventbus_tests::eventbus_bin())
        .arg("schema")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .owned()
        .spawn()
        .expect("start eventbus");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(141),
        "exit status {:?}: {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn the_payload_limit_is_a_setting_and_an_oversized_request_fails_the_call_clearly() {
    // `--max-payload-kib 1` with a 2,000-character stream description: the host refuses the
    // stream's create request with the limit named, before it reaches the server; the apply
    // reports it, and with the default limit the next apply converges.
    let (_server, project, js) = pilot();
    let long = "x".repeat(2000);
    edit_module(
        &project,
        STREAM_MODULE,
        "      max_age: 168h\n",
        &format!("      max_age: 168h\n      description: {long}\n"),
    );
    let out = project.run(&["--max-payload-kib", "1", "apply"]);
    out.expect_code(1);
    assert!(
        out.stdout.contains("exceeds the 1024-byte limit"),
        "the limit is named: {out}"
    );
    assert!(js.stream_names().is_empty(), "nothing reached the server");
    apply_ok(&project);
    assert_eq!(js.stream_names(), vec![STREAM.to_string()]);
    project.run(&["plan"]).expect_code(0);
}
