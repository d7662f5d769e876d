//! The real wfctl, end to end: the `wfctl` binary built from GoCodeAlone/workflow at the pinned
//! release (scripts/wfctl.sh) loads the packaged plugin (`just package`) from a plugin
//! directory, the way a user installs it, and plans, applies, edits and destroys the pilot:
//! on NATS (examples/bmw) and on Kafka (examples/bmw-kafka, on each pinned Kafka version).
//! After every step the broker is checked by a client of the test's own (JetStream, or
//! confluent-kafka through `KafkaCheck`), never only by what wfctl printed.
//!
//! `just wfctl-e2e` builds both and runs this suite; run alone, it needs `WFCTL` (the binary)
//! and `EVENTBUS_PLUGIN_PACKAGE` (the packaged plugin directory), or finds them where the
//! recipe puts them.

use eventbus_tests::do_fake::{self, DoFake};
use eventbus_tests::kafka::{KAFKA_VERSIONS, Kafka, KafkaCheck};
use eventbus_tests::{
    Cli, JetStream, NatsServer, Output, TempDir, Value, json, pilot_yaml, workspace_root,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const STREAM: &str = eventbus_tests::PILOT_STREAM;
const CONSUMERS: [&str; 6] = eventbus_tests::PILOT_CONSUMERS;
const PLUGIN: &str = "workflow-plugin-eventbus";

// ---------------------------------------------------------------------------------------------
// wfctl and the installed plugin

/// `$WFCTL`, else the binary scripts/wfctl.sh builds for the pinned version.
fn wfctl_bin() -> PathBuf {
    let path = std::env::var_os("WFCTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".cache/wfctl/v0.85.4/wfctl"));
    assert!(
        path.is_file(),
        "no wfctl at {}: run `just wfctl-e2e` (it builds wfctl), or set WFCTL",
        path.display()
    );
    path
}

/// `$EVENTBUS_PLUGIN_PACKAGE`, else `dist/workflow-plugin-eventbus` (what `just package` builds).
fn plugin_package() -> PathBuf {
    let path = std::env::var_os("EVENTBUS_PLUGIN_PACKAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("dist").join(PLUGIN));
    assert!(
        path.join("plugin.json").is_file(),
        "no packaged plugin at {}: run `just package` (or `just wfctl-e2e`)",
        path.display()
    );
    path
}

/// A user's machine as wfctl sees it: a home (wfctl's diff cache, the plugin's component
/// cache and generated secrets live under it) and a plugin directory holding a copy of the
/// packaged plugin, installed as `wfctl plugin install` lays it out.
struct Machine {
    home: TempDir,
    plugins: TempDir,
}

impl Machine {
    fn new() -> Machine {
        let plugins = TempDir::new("wfctl-plugins");
        copy_dir(&plugin_package(), &plugins.path().join(PLUGIN));
        Machine {
            home: TempDir::new("wfctl-home"),
            plugins,
        }
    }

    /// Removes the plugin's compiled component, so the next command compiles it again (a
    /// first run on a new machine).
    fn clear_component_cache(&self) {
        let _ = std::fs::remove_dir_all(self.home.path().join(".cache/eventbus"));
    }

    /// wfctl run in `dir`, with this machine's home and plugin directory.
    fn wfctl(&self, dir: &Path) -> Cli {
        Cli::program(wfctl_bin(), dir)
            .env("HOME", &self.home.path().display().to_string())
            .env(
                "XDG_CACHE_HOME",
                &self.home.path().join(".cache").display().to_string(),
            )
            .env(
                "XDG_DATA_HOME",
                &self.home.path().join(".local/share").display().to_string(),
            )
            .env(
                "WFCTL_PLUGIN_DIR",
                &self.plugins.path().display().to_string(),
            )
            .env("EVENTBUS_LOG", "warn")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            // fs::copy keeps the permission bits, so the binary stays executable.
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A directory with an infra.yaml, wfctl's filesystem state beside it, and wfctl pointed at it.
struct Project {
    dir: TempDir,
    wfctl: Cli,
}

impl Project {
    fn new(machine: &Machine, yaml: &str, env: &[(&str, &str)]) -> Project {
        let dir = TempDir::new("wfctl-project");
        std::fs::write(dir.path().join("infra.yaml"), yaml).unwrap();
        let mut wfctl = machine.wfctl(dir.path());
        for (k, v) in env {
            wfctl = wfctl.env(k, v);
        }
        Project { dir, wfctl }
    }

    /// `wfctl infra <verb> -c infra.yaml <args>`, its duration printed.
    fn infra(&self, verb: &str, args: &[&str]) -> Output {
        let mut all = vec!["infra", verb, "-c", "infra.yaml"];
        all.extend_from_slice(args);
        let started = Instant::now();
        let out = self.wfctl.run(&all);
        eprintln!(
            "wfctl infra {verb} {}: exit {} in {:.2} s",
            args.join(" "),
            out.code,
            started.elapsed().as_secs_f64()
        );
        out
    }

    /// `wfctl infra plan`, and its actions as (action, module name), read from the plan JSON
    /// wfctl writes with `-o`.
    #[track_caller]
    fn plan(&self) -> Vec<(String, String)> {
        let out = self.infra("plan", &["-o", "plan.json"]);
        out.expect_code(0);
        let text = std::fs::read_to_string(self.dir.path().join("plan.json"))
            .unwrap_or_else(|e| panic!("wfctl wrote no plan.json ({e})\n{out}"));
        let plan: Value = serde_json::from_str(&text).expect("plan.json is JSON");
        let mut actions: Vec<(String, String)> = plan["actions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["action"].as_str().unwrap_or("").to_string(),
                    a["resource"]["name"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        actions.sort();
        actions
    }

    /// `wfctl infra apply -y`, which must succeed; returns how long it took.
    #[track_caller]
    fn apply(&self) -> Duration {
        let started = Instant::now();
        let out = self.infra("apply", &["-y"]);
        let took = started.elapsed();
        out.expect_code(0);
        took
    }

    #[track_caller]
    fn destroy(&self) {
        self.infra("destroy", &["-y"]).expect_code(0);
    }

    #[track_caller]
    fn edit(&self, from: &str, to: &str) {
        let path = self.dir.path().join("infra.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches(from).count(), 1, "test setup: one `{from}`");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }

    /// Resource records in wfctl's filesystem state.
    fn state_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path().join(".wfctl-state"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".json")
                    .filter(|n| *n != "metadata")
                    .map(String::from)
            })
            .collect();
        names.sort();
        names
    }
}

// ---------------------------------------------------------------------------------------------
// The pilot, shaped as the original report had it

/// The pilot (examples/bmw, which declares wfctl's filesystem state) with every resource
/// routed with `iac_provider` while its `provider` says which bus it is (`nats`).
fn pilot_for_wfctl() -> String {
    let pilot = pilot_yaml();
    assert!(
        pilot.contains("    type: iac.state\n"),
        "the pilot declares no wfctl state"
    );
    let routed = "      iac_provider: eventbus\n";
    let with_bus = "      iac_provider: eventbus\n      provider: nats\n";
    pilot.replace(with_bus, routed).replace(routed, with_bus)
}

fn names(actions: &[(String, String)]) -> Vec<(&str, &str)> {
    actions
        .iter()
        .map(|(a, n)| (a.as_str(), n.as_str()))
        .collect()
}

/// The created-at time of a consumer as the server reports it: a replace makes a new one.
#[track_caller]
fn consumer_created(js: &JetStream, name: &str) -> String {
    js.consumer_info(STREAM, name)
        .unwrap_or_else(|| panic!("consumer {name} is not on the server"))["created"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// The pilot as the server must hold it, with orders-intake's `max_deliver` and audit-log's
/// `ack_policy` as infra.yaml says at that point.
#[track_caller]
fn assert_pilot_on_server(js: &JetStream, max_deliver: u64, audit_ack: &str) {
    let config = js.stream_config(STREAM);
    assert_eq!(config["subjects"], json!(["bmw.>"]), "{config}");
    assert_eq!(
        config["max_age"],
        json!(168u64 * 3600 * 1_000_000_000),
        "{config}"
    );
    assert_eq!(js.consumer_names(STREAM), CONSUMERS, "the six consumers");
    let intake = js.consumer_config(STREAM, "orders-intake");
    assert_eq!(intake["filter_subject"], json!("bmw.orders.created"));
    assert_eq!(intake["max_deliver"], json!(max_deliver));
    assert_eq!(
        js.consumer_config(STREAM, "audit-log")["ack_policy"],
        json!(audit_ack)
    );
}

/// plan, apply, a no-op plan, an in-place update, a replace, destroy: the pilot's whole life
/// under wfctl, with `js()` opening an independent client to wherever the broker is.
/// Returns the first apply's duration, with a cold component cache (the plan before it has
/// compiled the component: `machine` forgets it first).
fn pilot_lifecycle(machine: &Machine, project: &Project, js: impl Fn() -> JetStream) -> Duration {
    let all: Vec<String> = std::iter::once("bmw-eventbus".to_string())
        .chain(std::iter::once("bmw-stream".to_string()))
        .chain(
            [
                "bmw-audit-log",
                "bmw-customer-notify",
                "bmw-inventory-reserve",
                "bmw-orders-intake",
                "bmw-payment-capture",
                "bmw-shipment-dispatch",
            ]
            .map(String::from),
        )
        .collect();

    // A first plan creates all eight and changes nothing.
    let plan = project.plan();
    assert_eq!(plan.len(), 8, "{plan:?}");
    assert!(plan.iter().all(|(a, _)| a == "create"), "{plan:?}");

    machine.clear_component_cache();
    let first_apply = project.apply();
    let js = js();
    assert_pilot_on_server(&js, 5, "none");
    let mut recorded = all.clone();
    recorded.sort();
    assert_eq!(
        project.state_names(),
        recorded,
        "wfctl's state holds every resource"
    );

    // Nothing changed: nothing planned, and wfctl says so.
    assert_eq!(project.plan(), vec![], "a second plan is empty");
    let out = project.infra("plan", &[]);
    assert!(out.stdout.contains("No changes"), "{out}");

    // max_deliver is updatable in place: one update, the same consumer on the server.
    let created = consumer_created(&js, "orders-intake");
    project.edit("      max_deliver: 5\n", "      max_deliver: 7\n");
    assert_eq!(names(&project.plan()), [("update", "bmw-orders-intake")]);
    project.apply();
    assert_eq!(
        js.consumer_config(STREAM, "orders-intake")["max_deliver"],
        json!(7)
    );
    assert_eq!(
        consumer_created(&js, "orders-intake"),
        created,
        "updated in place"
    );

    // ack_policy the server refuses to change in place: a replace, a new consumer.
    let created = consumer_created(&js, "audit-log");
    project.edit("      ack_policy: none\n", "      ack_policy: explicit\n");
    assert_eq!(names(&project.plan()), [("replace", "bmw-audit-log")]);
    project.apply();
    assert_eq!(
        js.consumer_config(STREAM, "audit-log")["ack_policy"],
        json!("explicit")
    );
    assert_ne!(consumer_created(&js, "audit-log"), created, "replaced");
    assert_eq!(
        js.consumer_names(STREAM),
        CONSUMERS,
        "no consumer lost or added"
    );
    assert_eq!(project.plan(), vec![], "converged after the replace");

    // The stream's storage cannot change in place: wfctl replaces the stream alone (Delete,
    // Create), the server drops its consumers with it, and wfctl never looks again. The six
    // consumers must still be there, as configured, on the new stream.
    let stream_created = js.stream_info(STREAM).expect("the stream")["created"].clone();
    project.edit(
        "      max_age: 168h\n",
        "      max_age: 168h\n      storage: memory\n",
    );
    assert_eq!(names(&project.plan()), [("replace", "bmw-stream")]);
    project.apply();
    let stream = js.stream_info(STREAM).expect("the new stream");
    assert_ne!(stream["created"], stream_created, "replaced");
    assert_eq!(stream["config"]["storage"], json!("memory"));
    assert_eq!(
        js.consumer_names(STREAM),
        CONSUMERS,
        "the consumers came along"
    );
    assert_eq!(
        js.consumer_config(STREAM, "orders-intake")["max_deliver"],
        json!(7)
    );
    assert_eq!(
        js.consumer_config(STREAM, "audit-log")["ack_policy"],
        json!("explicit")
    );
    assert_eq!(
        project.plan(),
        vec![],
        "converged after the stream's replace"
    );

    first_apply
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn wfctl_plans_applies_updates_replaces_and_destroys_the_pilot_on_a_self_hosted_broker() {
    let server = NatsServer::start();
    let machine = Machine::new();
    let project = Project::new(&machine, &pilot_for_wfctl(), &[("NATS_URL", server.url())]);

    let cold = pilot_lifecycle(&machine, &project, || JetStream::connect(server.url()));
    project.destroy();
    let js = JetStream::connect(server.url());
    assert_eq!(
        js.stream_names(),
        Vec::<String>::new(),
        "destroy removed the stream"
    );
    assert_eq!(
        project.state_names(),
        Vec::<String>::new(),
        "and wfctl's state"
    );

    // The same machine again: the component is compiled and cached by now.
    let warm = project.apply();
    assert_pilot_on_server(&js, 7, "explicit");
    project.destroy();
    assert_eq!(js.stream_names(), Vec::<String>::new());
    eprintln!(
        "first `wfctl infra apply` of the pilot: {:.2} s with a cold component cache, {:.2} s warm",
        cold.as_secs_f64(),
        warm.as_secs_f64()
    );
}

#[test]
fn wfctl_applies_the_pilot_on_app_platform_with_the_token_from_the_environment() {
    let fake = DoFake::start(&format!("wfctl-do-token-{}", std::process::id()));
    let machine = Machine::new();
    let yaml = pilot_for_wfctl()
        .replacen(
            "      provider: eventbus\n",
            &format!(
                "      provider: eventbus\n      cloud_accounts:\n        digitalocean:\n          base_url: {}\n          token: ${{DIGITALOCEAN_TOKEN}}\n          allow:\n            - {{methods: [GET, POST, PUT, DELETE], paths: [\"/v2/apps\"]}}\n",
                fake.base
            ),
            1,
        )
        .replacen(
            "      deploy_target: self_hosted\n      url: ${NATS_URL}            # the demo starts a local nats-server and sets this\n",
            "      deploy_target: digitalocean.app_platform\n      version: \"2.10\"\n      digitalocean:\n        region: nyc\n        instance_size_slug: apps-s-1vcpu-1gb\n        acknowledge_ephemeral_storage: true\n",
            1,
        );
    assert!(
        yaml.contains("digitalocean.app_platform"),
        "test setup: the broker moved"
    );
    // wfctl expands ${DIGITALOCEAN_TOKEN} from its environment into the provider's config.
    let project = Project::new(&machine, &yaml, &[("DIGITALOCEAN_TOKEN", &fake.token)]);

    pilot_lifecycle(&machine, &project, || do_fake::connect(&fake));
    assert_eq!(fake.apps().len(), 1, "one app for the broker");
    project.destroy();
    assert_eq!(
        fake.apps(),
        Vec::<Value>::new(),
        "destroy deleted the broker's app"
    );
    assert_eq!(project.state_names(), Vec::<String>::new());
}

#[test]
fn wfctl_adopts_an_existing_stream_and_sizes_the_broker() {
    // What wfctl does beyond plain creates: `adopt_existing` makes it read by module name
    // before planning, and `size` makes it ask ResolveSizing and merge the answer into config.
    let server = NatsServer::start();
    let js = JetStream::connect(server.url());
    js.create_stream(
        &json!({"name": STREAM, "subjects": ["bmw.>"], "retention": "limits",
        "max_age": 168u64 * 3600 * 1_000_000_000u64, "storage": "file", "num_replicas": 1}),
    );
    let created = js.stream_info(STREAM).expect("the stream exists")["created"].clone();

    let machine = Machine::new();
    let yaml = pilot_for_wfctl()
        .replacen(
            "      deploy_target: self_hosted\n",
            "      deploy_target: self_hosted\n      size: s\n",
            1,
        )
        .replacen(
            "      name: BMW_FULFILLMENT\n",
            "      name: BMW_FULFILLMENT\n      adopt_existing: true\n",
            1,
        );
    let project = Project::new(&machine, &yaml, &[("NATS_URL", server.url())]);
    project.apply();
    assert_eq!(
        js.stream_info(STREAM).expect("the stream is still there")["created"],
        created,
        "the existing stream was adopted, not recreated"
    );
    assert_eq!(js.consumer_names(STREAM), CONSUMERS);
    assert!(project.state_names().contains(&"bmw-stream".to_string()));
    assert_eq!(
        project.plan(),
        vec![],
        "the adopted and sized pilot has converged"
    );
}

#[test]
fn wfctl_refuses_a_size_on_a_stream_before_changing_anything() {
    let server = NatsServer::start();
    let machine = Machine::new();
    let yaml = pilot_for_wfctl().replacen(
        "      name: BMW_FULFILLMENT\n",
        "      name: BMW_FULFILLMENT\n      size: m\n",
        1,
    );
    let project = Project::new(&machine, &yaml, &[("NATS_URL", server.url())]);
    let out = project.infra("apply", &["-y"]);
    assert_ne!(out.code, 0, "{out}");
    // ResolveSizing carries the type, not the module's name: the answer names the type, the
    // field and the fix.
    let text = out.text();
    assert!(
        text.contains("an infra.eventbus.stream has no size"),
        "{out}"
    );
    assert!(text.contains("remove size"), "{out}");
    assert_eq!(
        JetStream::connect(server.url()).stream_names(),
        Vec::<String>::new()
    );
}

#[test]
fn wfctl_bootstraps_a_remote_state_backend_with_eventbus_listed_first() {
    // Before every apply, wfctl asks the first iac.provider module of a file whose state
    // backend is remote to create that backend. Eventbus has none to create: the apply must
    // go on to wfctl's own state store (which here refuses, as no plugin serves `spaces`).
    let machine = Machine::new();
    let yaml = pilot_for_wfctl().replacen(
        "      backend: filesystem\n      directory: ./.wfctl-state\n",
        "      backend: spaces\n      bucket: bmw-state\n      region: nyc3\n",
        1,
    );
    let project = Project::new(&machine, &yaml, &[("NATS_URL", "nats://127.0.0.1:1")]);
    let out = project.infra("apply", &["-y"]);
    let text = out.text();
    assert!(
        text.contains("nothing to bootstrap"),
        "the plugin answered\n{out}"
    );
    assert!(!text.contains("provider method unimplemented"), "{out}");
    assert!(
        text.contains("spaces"),
        "wfctl got past the bootstrap to its state store\n{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// The pilot on Kafka (examples/bmw-kafka): the same eight modules, the broker a self-hosted
// Kafka cluster (`provider: kafka`), the stream a topic and each consumer a consumer group.

const KAFKA_TOPIC: &str = "bmw.fulfillment";

/// examples/bmw-kafka/infra.yaml as shipped (it declares wfctl's filesystem state and routes
/// every resource with `iac_provider`).
fn kafka_pilot_yaml() -> String {
    let path = workspace_root().join("examples/bmw-kafka/infra.yaml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        yaml.contains("    type: iac.state\n"),
        "the Kafka pilot declares no wfctl state"
    );
    yaml
}

/// The pilot's groups present on the server.
fn kafka_pilot_groups(check: &KafkaCheck) -> Vec<String> {
    check
        .groups()
        .into_iter()
        .filter(|g| CONSUMERS.contains(&g.as_str()))
        .collect()
}

/// The topic as declared (6 partitions, one replica, `retention_ms`), and every group on the
/// server with a committed position on each of the topic's 6 partitions.
#[track_caller]
fn assert_kafka_pilot_on_server(check: &KafkaCheck, retention_ms: &str) {
    let t = check
        .topic(KAFKA_TOPIC)
        .expect("the topic is on the server");
    assert_eq!(t["partitions"], json!(6), "{t}");
    assert_eq!(t["replication_factor"], json!(1), "{t}");
    assert_eq!(
        check.topic_config(KAFKA_TOPIC, "retention.ms").as_deref(),
        Some(retention_ms),
        "{t}"
    );
    assert_eq!(
        check
            .topic_config(KAFKA_TOPIC, "max.message.bytes")
            .as_deref(),
        Some("1048576"),
        "{t}"
    );
    assert_eq!(kafka_pilot_groups(check), CONSUMERS, "the six groups");
    for g in CONSUMERS {
        let v = check
            .group(g)
            .unwrap_or_else(|| panic!("group {g} is not on the server"));
        let offsets = v["offsets"][KAFKA_TOPIC]
            .as_object()
            .unwrap_or_else(|| panic!("{g}: no committed offsets on {KAFKA_TOPIC}: {v}"));
        assert_eq!(
            offsets.len(),
            6,
            "{g} has a position on every partition: {v}"
        );
    }
}

/// plan, apply, a no-op plan, retention updated in place, destroy: the Kafka pilot's life
/// under wfctl and the packaged plugin, judged on the server by confluent-kafka.
fn wfctl_kafka_lifecycle(version: &str) {
    let started = Instant::now();
    let kafka = Kafka::start(version);
    eprintln!(
        "Kafka {version} at {} ready in {:.1} s",
        kafka.bootstrap,
        kafka.startup.as_secs_f64()
    );
    let check = kafka.check();
    let machine = Machine::new();
    // wfctl expands ${KAFKA_BOOTSTRAP} in the broker's bootstrap_servers from its environment.
    let project = Project::new(
        &machine,
        &kafka_pilot_yaml(),
        &[("KAFKA_BOOTSTRAP", &kafka.bootstrap)],
    );
    let mut all: Vec<String> = [
        "bmw-kafka",
        "bmw-topic",
        "bmw-audit-log",
        "bmw-customer-notify",
        "bmw-inventory-reserve",
        "bmw-orders-intake",
        "bmw-payment-capture",
        "bmw-shipment-dispatch",
    ]
    .map(String::from)
    .to_vec();
    all.sort();

    // A first plan creates all eight and changes nothing on the server.
    let t = Instant::now();
    let plan = project.plan();
    let plan_took = t.elapsed();
    assert_eq!(plan.len(), 8, "{plan:?}");
    assert!(plan.iter().all(|(a, _)| a == "create"), "{plan:?}");
    let mut planned: Vec<String> = plan.iter().map(|(_, n)| n.clone()).collect();
    planned.sort();
    assert_eq!(planned, all, "every module planned");
    assert!(
        !check.topics().contains(&KAFKA_TOPIC.to_string()),
        "the plan created the topic"
    );
    assert_eq!(
        kafka_pilot_groups(&check),
        Vec::<String>::new(),
        "the plan created groups"
    );

    // Apply: the topic as declared, every group with a starting position, all in wfctl's state.
    let apply_took = project.apply();
    assert_kafka_pilot_on_server(&check, "604800000");
    assert_eq!(
        project.state_names(),
        all,
        "wfctl's state holds every resource"
    );
    let topic_id = check.topic(KAFKA_TOPIC).expect("the topic")["topic_id"].clone();
    assert!(topic_id.is_string(), "the checker reports the topic's id");

    // Nothing changed: nothing planned (broker defaults the file leaves out are no drift).
    assert_eq!(project.plan(), vec![], "a second plan is empty");
    let out = project.infra("plan", &[]);
    assert!(out.stdout.contains("No changes"), "{out}");

    // retention 168h -> 72h: one update in place, the same topic with the new retention.
    project.edit("      retention: 168h\n", "      retention: 72h\n");
    assert_eq!(names(&project.plan()), [("update", "bmw-topic")]);
    let update_took = project.apply();
    assert_kafka_pilot_on_server(&check, "259200000");
    assert_eq!(
        check.topic(KAFKA_TOPIC).expect("the topic")["topic_id"],
        topic_id,
        "updated in place, not recreated"
    );
    assert_eq!(project.plan(), vec![], "converged after the update");

    // Destroy: the topic and the groups are gone, and so is wfctl's state.
    project.destroy();
    assert!(
        !check.topics().contains(&KAFKA_TOPIC.to_string()),
        "destroy left the topic"
    );
    assert_eq!(
        kafka_pilot_groups(&check),
        Vec::<String>::new(),
        "destroy left groups"
    );
    assert_eq!(
        project.state_names(),
        Vec::<String>::new(),
        "and wfctl's state"
    );
    eprintln!(
        "wfctl on Kafka {version}: first plan {:.2} s, first apply {:.2} s, update {:.2} s; whole test {:.1} s",
        plan_took.as_secs_f64(),
        apply_took.as_secs_f64(),
        update_took.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn wfctl_plans_applies_updates_and_destroys_the_kafka_pilot_on_kafka_3() {
    wfctl_kafka_lifecycle(KAFKA_VERSIONS[0]);
}

#[test]
fn wfctl_plans_applies_updates_and_destroys_the_kafka_pilot_on_kafka_4() {
    wfctl_kafka_lifecycle(KAFKA_VERSIONS[1]);
}
