//! The `kubernetes` deploy target, end to end: the `eventbus` CLI against a fake Kubernetes API
//! server (`tests/fakes/k8s_api.py`) that validates every object written against Kubernetes'
//! own OpenAPI schema (the `kubernetes-validate` package, strict) and a subset of the API
//! server's semantic checks, keeps objects as the API server does (defaults, resourceVersion,
//! generation, immutable fields, canonical quantities, Secret stringData folded into data),
//! and runs a StatefulSet controller. With `--nats-server` its "kubelet" runs pod 0 as a real
//! local nats-server from the ConfigMap and Secret it was given, so the pilot's stream and six
//! consumers are applied through the broker's `external_endpoint`.
//!
//! Needs `.venv/bin/python` (or `python3`) with `kubernetes-validate` installed.

use eventbus_tests::k8s_fake::{Fake, TOKEN};
use eventbus_tests::{Cli, Output, TempDir, Value, json, nats_server_bin, pilot_yaml};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
const BROKER: &str = "bmw-nats";
const NS: &str = "eventbus";

fn method_path(r: &Value) -> (String, String) {
    (
        r["method"].as_str().unwrap_or("").to_string(),
        r["path"].as_str().unwrap_or("").to_string(),
    )
}

// ---------------------------------------------------------------------------------------------
// A project: infra.yaml + state, the CLI with the account's token in its environment

struct Proj {
    dir: TempDir,
    cli: Cli,
}

impl Proj {
    fn new(yaml: &str) -> Proj {
        let dir = TempDir::new("k8s-project");
        std::fs::write(dir.path().join("infra.yaml"), yaml).unwrap();
        let cli = Cli::new(dir.path()).env("K8S_TOKEN", TOKEN);
        Proj { dir, cli }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn write(&self, yaml: &str) {
        std::fs::write(self.path("infra.yaml"), yaml).unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut all = vec![
            "-f".to_string(),
            self.path("infra.yaml").display().to_string(),
            "--state".into(),
            self.path("state.json").display().to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        self.cli.run(&all)
    }

    fn state(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.path("state.json")).expect("state.json"))
            .unwrap()
    }

    /// The generated secrets the host keeps beside the state (never in it).
    fn generated(&self) -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(self.path("secrets.json"))
                .expect("secrets.json beside the state"),
        )
        .unwrap()
    }

    fn admin_password(&self) -> String {
        let g = self.generated();
        let key = format!("kubernetes/kubernetes/{NS}/{BROKER}/admin-password");
        g[&key]
            .as_str()
            .unwrap_or_else(|| panic!("no {key} in secrets.json: {g}"))
            .to_string()
    }
}

fn provider_module(fake: &Fake, paths: &[&str]) -> String {
    let paths: Vec<String> = paths.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        r#"modules:
  - name: eventbus
    type: iac.provider
    config:
      provider: eventbus
      cloud_accounts:
        kubernetes:
          kind: kubernetes
          base_url: {}
          token: ${{K8S_TOKEN}}
          allow:
            - methods: [GET, POST, PUT, PATCH, DELETE]
              paths: [{}]
"#,
        fake.url(),
        paths.join(", ")
    )
}

const GRANT: [&str; 2] = [
    "/api/v1/namespaces/eventbus/",
    "/apis/apps/v1/namespaces/eventbus/",
];

/// The broker module; `extra` is more YAML at the level of its config keys.
fn broker(replicas: u32, version: &str, kubernetes: &str, extra: &str) -> String {
    format!(
        r#"
  - name: {BROKER}
    type: infra.eventbus
    config:
      iac_provider: eventbus
      provider: nats
      deploy_target: kubernetes
      version: "{version}"
      replicas: {replicas}
      jetstream:
        enabled: true
        max_storage_bytes: 2147483648
        max_memory_bytes: 268435456
      limits:
        cpu: 500m
        memory: 1Gi
        storage: 5Gi
      kubernetes:
        namespace: {NS}
{kubernetes}{extra}"#
    )
}

fn infra(fake: &Fake, replicas: u32, version: &str) -> String {
    provider_module(fake, &GRANT)
        + &broker(
            replicas,
            version,
            "        external_endpoint: nats://127.0.0.1:4222\n",
            "",
        )
}

#[track_caller]
fn apply(p: &Proj) -> Output {
    let out = p.run(&["apply"]);
    out.expect_code(0);
    out
}

// ---------------------------------------------------------------------------------------------
// Create

#[test]
fn create_posts_every_object_valid_and_sized_as_configured() {
    // One server: Secret, ConfigMap, client Service and StatefulSet, each POSTed once and
    // accepted by the schema; no headless Service; replicas, image, volume and resources as
    // written; the broker's outputs name the in-cluster and external endpoints.
    let fake = Fake::start();
    let p = Proj::new(&infra(&fake, 1, "2.10"));
    apply(&p);
    fake.assert_all_valid();
    let posts: Vec<String> = fake
        .requests()
        .iter()
        .map(method_path)
        .filter(|(m, _)| m == "POST")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        posts,
        vec![
            "/api/v1/namespaces/eventbus/secrets",
            "/api/v1/namespaces/eventbus/configmaps",
            "/api/v1/namespaces/eventbus/services",
            "/apis/apps/v1/namespaces/eventbus/statefulsets",
        ]
    );
    assert!(
        fake.object(NS, "services", "bmw-nats-headless").is_none(),
        "no headless Service for one replica"
    );
    let sts = fake
        .object(NS, "statefulsets", BROKER)
        .expect("the StatefulSet");
    assert_eq!(sts["spec"]["replicas"], json!(1));
    let c = &sts["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], json!("nats:2.10"));
    assert_eq!(
        c["resources"]["limits"],
        json!({"cpu": "500m", "memory": "1Gi"})
    );
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "500m", "memory": "1Gi"})
    );
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        json!("5Gi")
    );
    let conf = fake.object(NS, "configmaps", "bmw-nats-config").unwrap()["data"]["nats.conf"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(conf.contains("max_file_store: 2147483648"), "{conf}");
    assert!(conf.contains("max_memory_store: 268435456"), "{conf}");
    assert!(!conf.contains("cluster {"), "{conf}");
    let svc = fake.object(NS, "services", BROKER).unwrap();
    assert_eq!(svc["spec"]["type"], json!("ClusterIP"));
    assert_eq!(svc["spec"]["ports"][0]["port"], json!(4222));

    let st = p.state();
    let text = st.to_string();
    assert!(
        text.contains("kubernetes/kubernetes/eventbus/bmw-nats"),
        "provider id in state: {st:#}"
    );
    assert!(
        text.contains("nats://bmw-nats.eventbus.svc:4222"),
        "in-cluster endpoint in state: {st:#}"
    );
    assert!(
        text.contains("nats://127.0.0.1:4222"),
        "external endpoint in state: {st:#}"
    );
}

#[test]
fn a_cluster_of_three_gets_a_headless_service_and_routes_nats_server_accepts() {
    // replicas: 3 adds the headless Service, and the cluster block routes to each pod's DNS
    // name; the rendered config (with the Secret's auth.conf beside it) passes `nats-server -t`.
    let fake = Fake::start();
    let p = Proj::new(&infra(&fake, 3, "2.10"));
    apply(&p);
    fake.assert_all_valid();
    let headless = fake
        .object(NS, "services", "bmw-nats-headless")
        .expect("the headless Service");
    assert_eq!(headless["spec"]["clusterIP"], json!("None"));
    let sts = fake.object(NS, "statefulsets", BROKER).unwrap();
    assert_eq!(sts["spec"]["replicas"], json!(3));
    assert_eq!(sts["spec"]["serviceName"], json!("bmw-nats-headless"));
    let conf = fake.object(NS, "configmaps", "bmw-nats-config").unwrap()["data"]["nats.conf"]
        .as_str()
        .unwrap()
        .to_string();
    for i in 0..3 {
        assert!(
            conf.contains(&format!(
                "nats://bmw-nats-{i}.bmw-nats-headless.eventbus.svc:6222"
            )),
            "{conf}"
        );
    }
    // The config as the pod sees it: nats.conf in config/, auth.conf from the Secret in auth/.
    let secret = fake.object(NS, "secrets", "bmw-nats-auth").unwrap();
    let auth = b64_decode(secret["data"]["auth.conf"].as_str().unwrap());
    let root = TempDir::new("pod-config");
    std::fs::create_dir_all(root.path().join("config")).unwrap();
    std::fs::create_dir_all(root.path().join("auth")).unwrap();
    std::fs::write(
        root.path().join("config/nats.conf"),
        conf.replace(
            "/data/jetstream",
            &root.path().join("js").display().to_string(),
        ),
    )
    .unwrap();
    std::fs::write(root.path().join("auth/auth.conf"), auth).unwrap();
    let t = Command::new(nats_server_bin())
        .arg("-t")
        .arg("-c")
        .arg(root.path().join("config/nats.conf"))
        .env("POD_NAME", "bmw-nats-0")
        .output()
        .unwrap();
    assert!(
        t.status.success(),
        "nats-server -t refused the rendered config: {}{}",
        String::from_utf8_lossy(&t.stdout),
        String::from_utf8_lossy(&t.stderr)
    );
}

fn b64_decode(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut acc, mut bits, mut out) = (0u32, 0, Vec::new());
    for c in s.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | T.iter().position(|&t| t == c).expect("base64") as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8(out).unwrap()
}

fn b64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, b)| a | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Plan, read, update, delete

#[test]
fn a_second_plan_is_empty_and_read_matches_create() {
    // Nothing changed: plan exits 0; status reads the broker back from the cluster as running,
    // and drift finds it in sync (read returns create's identity).
    let fake = Fake::start();
    let p = Proj::new(&infra(&fake, 3, "2.10"));
    apply(&p);
    let plan = p.run(&["plan"]);
    plan.expect_code(0);
    let status = p.run(&["-o", "json", "status"]);
    status.expect_code(0);
    let s = status.json();
    let text = s.to_string();
    assert!(text.contains("\"running\""), "{s:#}");
    assert!(text.contains("nats://127.0.0.1:4222"), "{s:#}");
    p.run(&["drift"]).expect_code(0);
    fake.assert_all_valid();
}

#[test]
fn read_sees_the_cluster_so_a_refreshed_plan_catches_an_out_of_band_scale() {
    // Read builds the broker's identity from the live objects: a refreshed plan is empty after
    // apply, and shows replicas 5 -> 3 once someone scaled the StatefulSet by hand, which
    // `apply --refresh` puts back.
    let fake = Fake::start();
    let p = Proj::new(&infra(&fake, 3, "2.10"));
    apply(&p);
    p.run(&["plan", "--refresh"]).expect_code(0);
    fake.merge_patch(
        "/apis/apps/v1/namespaces/eventbus/statefulsets/bmw-nats",
        &json!({"spec": {"replicas": 5}}),
    );
    let plan = p.run(&["-o", "json", "plan", "--refresh"]);
    plan.expect_code(2);
    let plan = plan.json();
    let changes = &plan["actions"][0]["changes"];
    assert_eq!(
        changes,
        &json!([{"path": "replicas", "old": 5, "new": 3, "force_new": false, "reason": "the cluster is resized; pods restart with the new routes"}]),
        "{plan:#}"
    );
    p.run(&["apply", "--refresh"]).expect_code(0);
    assert_eq!(
        fake.object(NS, "statefulsets", BROKER).unwrap()["spec"]["replicas"],
        json!(3)
    );
}

#[test]
fn create_waits_until_every_replica_is_ready() {
    // The controller takes 2 s to bring the pods up: apply returns only after the StatefulSet
    // reported all replicas ready and updated, having polled it meanwhile.
    let fake = Fake::start_with(false, 2.0);
    let p = Proj::new(&infra(&fake, 3, "2.10"));
    let started = std::time::Instant::now();
    apply(&p);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "apply returned after {:?}",
        started.elapsed()
    );
    let polls: Vec<u64> = fake
        .requests()
        .iter()
        .filter(|r| {
            r["method"] == "GET"
                && r["path"] == "/apis/apps/v1/namespaces/eventbus/statefulsets/bmw-nats"
        })
        .map(|r| {
            r["response"]["status"]["readyReplicas"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    assert!(polls.len() >= 2 && polls[0] == 0, "{polls:?}");
    assert_eq!(polls.last(), Some(&3), "{polls:?}");
}

#[test]
fn version_and_replicas_change_in_place_not_by_replace() {
    // 2.10 -> 2.11 and 1 -> 3 replicas: the plan is an update of those fields; apply patches
    // the StatefulSet (never deletes or re-creates it), adds the headless Service and rewrites
    // the ConfigMap; a third plan is empty.
    let fake = Fake::start();
    let p = Proj::new(&infra(&fake, 1, "2.10"));
    apply(&p);
    let uid = fake.object(NS, "statefulsets", BROKER).unwrap()["metadata"]["uid"].clone();
    let before = fake.requests().len();
    p.write(&infra(&fake, 3, "2.11"));
    let plan = p.run(&["-o", "json", "plan"]);
    plan.expect_code(2);
    let plan = plan.json();
    let action = &plan["actions"][0];
    assert_eq!(action["action"], json!("update"), "{plan:#}");
    let mut changed: Vec<&str> = action["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    changed.sort();
    assert_eq!(changed, ["replicas", "version"], "{plan:#}");
    assert!(
        action["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["force_new"] == json!(false)),
        "{plan:#}"
    );
    apply(&p);
    fake.assert_all_valid();
    let after: Vec<(String, String)> = fake.requests()[before..].iter().map(method_path).collect();
    let sts_path = "/apis/apps/v1/namespaces/eventbus/statefulsets/bmw-nats".to_string();
    assert!(
        after.contains(&("PATCH".into(), sts_path.clone())),
        "{after:?}"
    );
    assert!(
        after.contains(&(
            "PUT".into(),
            "/api/v1/namespaces/eventbus/configmaps/bmw-nats-config".into()
        )),
        "{after:?}"
    );
    assert!(
        after.contains(&("POST".into(), "/api/v1/namespaces/eventbus/services".into())),
        "{after:?}"
    );
    assert!(
        !after
            .iter()
            .any(|(m, path)| m == "DELETE" || (m == "POST" && path.ends_with("/statefulsets"))),
        "{after:?}"
    );
    let sts = fake.object(NS, "statefulsets", BROKER).unwrap();
    assert_eq!(sts["metadata"]["uid"], uid, "the same StatefulSet, updated");
    assert_eq!(sts["spec"]["replicas"], json!(3));
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("nats:2.11")
    );
    assert!(fake.object(NS, "services", "bmw-nats-headless").is_some());
    p.run(&["plan"]).expect_code(0);
}

#[test]
fn a_bigger_volume_is_a_replace_with_its_reason() {
    // volumeClaimTemplates are immutable: the plan says replace and why (data is lost).
    let fake = Fake::start();
    let p = Proj::new(&infra(&fake, 1, "2.10"));
    apply(&p);
    p.write(&infra(&fake, 1, "2.10").replace("storage: 5Gi", "storage: 20Gi"));
    let plan = p.run(&["-o", "json", "plan"]);
    plan.expect_code(2);
    let text = plan.json().to_string();
    assert!(text.contains("\"replace\""), "{text}");
    assert!(text.contains("volumeClaimTemplates"), "{text}");
}

#[test]
fn the_narrowest_grant_the_readme_suggests_is_enough() {
    // The README's grant: each object kind only with the methods the target uses on it.
    let fake = Fake::start();
    let ns = "/api/v1/namespaces/eventbus";
    let apps = "/apis/apps/v1/namespaces/eventbus";
    let narrow = provider_module(&fake, &GRANT).replace(
        "            - methods: [GET, POST, PUT, PATCH, DELETE]\n              paths: [\"/api/v1/namespaces/eventbus/\", \"/apis/apps/v1/namespaces/eventbus/\"]\n",
        &format!(
            "            - {{methods: [POST], paths: [{ns}/secrets, {ns}/configmaps, {ns}/services, {apps}/statefulsets]}}\n            - {{methods: [GET, PUT, DELETE], paths: [{ns}/secrets/, {ns}/configmaps/]}}\n            - {{methods: [GET, PATCH, DELETE], paths: [{ns}/services/, {apps}/statefulsets/]}}\n"
        ),
    );
    assert!(
        narrow.contains("methods: [POST]"),
        "test setup: the grant was not narrowed"
    );
    let yaml = narrow
        + &broker(
            3,
            "2.10",
            "        external_endpoint: nats://127.0.0.1:4222\n",
            "",
        );
    let p = Proj::new(&yaml);
    apply(&p);
    assert_eq!(fake.object_count(), 5);
    p.run(&["plan"]).expect_code(0);
    p.run(&["destroy"]).expect_code(0);
    assert_eq!(fake.object_count(), 0);
}

#[test]
fn destroy_deletes_every_object_statefulset_first() {
    // Nothing of the broker is left in the namespace; the StatefulSet goes before its config.
    let fake = Fake::start();
    let p = Proj::new(&infra(&fake, 3, "2.10"));
    apply(&p);
    assert_eq!(fake.object_count(), 5);
    let before = fake.requests().len();
    p.run(&["destroy"]).expect_code(0);
    assert_eq!(fake.object_count(), 0, "objects left after destroy");
    let deletes: Vec<String> = fake.requests()[before..]
        .iter()
        .map(method_path)
        .filter(|(m, _)| m == "DELETE")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        deletes.first().map(String::as_str),
        Some("/apis/apps/v1/namespaces/eventbus/statefulsets/bmw-nats"),
        "{deletes:?}"
    );
    assert_eq!(deletes.len(), 5, "{deletes:?}");
}

// ---------------------------------------------------------------------------------------------
// Grants, retries, secrets

#[test]
fn a_namespace_outside_the_grant_is_denied_naming_the_grant() {
    // The host refuses the call before it leaves; the error names the exact grant to add and
    // the API server never hears of the other namespace.
    let fake = Fake::start();
    let yaml = infra(&fake, 1, "2.10").replace(&format!("namespace: {NS}"), "namespace: other");
    let p = Proj::new(&yaml);
    let out = p.run(&["apply"]);
    out.expect_code(1);
    let text = out.text();
    assert!(text.contains("add {methods: [POST], paths: [/api/v1/namespaces/other/secrets]} to cloud_accounts.kubernetes.allow"), "{out}");
    assert!(
        !fake.requests().iter().any(|r| r["path"]
            .as_str()
            .unwrap_or("")
            .contains("/namespaces/other")),
        "a denied call reached the API server"
    );
}

#[test]
fn rate_limited_calls_are_retried_after_retry_after() {
    // Two 429s with Retry-After on creating the StatefulSet, then success: apply succeeds.
    let fake = Fake::start();
    fake.set_faults(json!([{"method": "POST", "path": "/apis/apps/v1/namespaces/eventbus/statefulsets", "status": 429, "times": 2, "retry_after": 1}]));
    let p = Proj::new(&infra(&fake, 1, "2.10"));
    apply(&p);
    let sts_posts: Vec<u64> = fake
        .requests()
        .iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"] == "/apis/apps/v1/namespaces/eventbus/statefulsets"
        })
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(sts_posts, vec![429, 429, 201]);
    assert_eq!(fake.faults()[0]["hits"], json!(2));
    assert!(fake.object(NS, "statefulsets", BROKER).is_some());
}

#[test]
fn persistent_rate_limiting_gives_up_with_the_sentinel() {
    // An API server that keeps answering 429 ends the apply with wfctl's rate-limited error.
    let fake = Fake::start();
    fake.set_faults(json!([{"method": "POST", "path": "/api/v1/namespaces/eventbus/secrets", "status": 429, "times": 100, "retry_after": 0}]));
    let p = Proj::new(&infra(&fake, 1, "2.10"));
    let out = p.run(&["apply"]);
    out.expect_code(1);
    assert!(out.text().contains("rate limited"), "{out}");
    assert!(out.text().contains("gave up after 6 attempts"), "{out}");
    assert_eq!(fake.faults()[0]["hits"], json!(6));
}

#[test]
fn the_generated_admin_password_never_leaves_the_host_except_into_the_secret() {
    // The host generates the password (kept 0600 beside the state) and puts it into the
    // Secret's body on the way out; it is in no plan, state, log line (-vvv) or output, and
    // no response the guest received carried it, in clear or base64.
    let fake = Fake::start();
    let p = Proj::new(&infra(&fake, 3, "2.10"));
    let plan = p.run(&["-vvv", "-o", "json", "plan"]);
    plan.expect_code(2);
    let applied = p.run(&["-vvv", "apply"]);
    applied.expect_code(0);
    let password = p.admin_password();
    assert!(password.len() >= 16, "{password}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p.path("secrets.json"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let status = p.run(&["-vvv", "-o", "json", "status"]);
    let replan = p.run(&["-vvv", "-o", "json", "plan"]);
    let state = std::fs::read_to_string(p.path("state.json")).unwrap();
    for (what, text) in [
        ("plan", plan.text()),
        ("apply output and -vvv log", applied.text()),
        ("status", status.text()),
        ("second plan", replan.text()),
        ("state", state.clone()),
    ] {
        assert!(
            !text.contains(&password),
            "the admin password is in the {what}"
        );
    }
    assert!(
        state.contains("{{secret:kubernetes/kubernetes/eventbus/bmw-nats/admin-password}}"),
        "the outputs carry the handle: {state}"
    );
    // It did reach the cluster: the Secret holds it (the host substituted the handle).
    let secret = fake.object(NS, "secrets", "bmw-nats-auth").unwrap();
    let auth = b64_decode(secret["data"]["auth.conf"].as_str().unwrap());
    assert!(
        auth.contains(&format!("password: \"{password}\"")),
        "{auth}"
    );
    // And never came back: no response body the guest got held it.
    let b64 = b64_encode(auth.as_bytes());
    for r in fake.requests() {
        let resp = r["response"].to_string();
        assert!(
            !resp.contains(&password) && !resp.contains(&b64),
            "a response carried the password: {} {}",
            r["method"],
            r["path"]
        );
    }
    // The secret requests asked for metadata only.
    for r in fake
        .requests()
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or("").contains("/secrets"))
    {
        assert!(
            r["accept"]
                .as_str()
                .unwrap_or("")
                .contains("as=PartialObjectMetadata"),
            "{r:#}"
        );
    }
}

#[test]
fn streams_on_a_broker_without_external_endpoint_are_refused_before_anything_changes() {
    // In-cluster only: nothing here could reach the broker to create the stream.
    let fake = Fake::start();
    let yaml = provider_module(&fake, &GRANT)
        + &broker(1, "2.10", "", "")
        + r#"
  - name: orders
    type: infra.eventbus.stream
    config:
      iac_provider: eventbus
      broker_ref: bmw-nats
      name: ORDERS
      subjects: ["orders.>"]
"#;
    let p = Proj::new(&yaml);
    let out = p.run(&["validate"]);
    out.expect_code(1);
    assert!(out.text().contains("kubernetes.external_endpoint"), "{out}");
    assert!(out.text().contains("broker_ref"), "{out}");
    p.run(&["apply"]).expect_code(1);
    assert!(
        fake.requests().is_empty(),
        "nothing may change when validation fails"
    );
}

// ---------------------------------------------------------------------------------------------
// The pilot, end to end through a pod the fake's kubelet runs

/// Connects to the pod as `user` (or anonymously).
fn connect(port: u16, user: Option<(&str, &str)>) -> Result<async_nats::Client, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = match user {
            Some((u, p)) => async_nats::ConnectOptions::with_user_and_password(u.into(), p.into()),
            None => async_nats::ConnectOptions::new(),
        };
        tokio::time::timeout(
            Duration::from_secs(5),
            opts.connect(format!("nats://127.0.0.1:{port}")),
        )
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| e.to_string())
    })
}

/// One JetStream API request as user admin with `password`, straight to the pod.
fn js_as_admin(port: u16, password: &str, subject: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client =
            async_nats::ConnectOptions::with_user_and_password("admin".into(), password.into())
                .connect(format!("nats://127.0.0.1:{port}"))
                .await
                .unwrap_or_else(|e| panic!("connecting as admin: {e}"));
        let msg = tokio::time::timeout(
            Duration::from_secs(10),
            client.request(subject.to_string(), "".into()),
        )
        .await
        .expect("JetStream answers")
        .expect("JetStream request");
        serde_json::from_slice(&msg.payload).unwrap()
    })
}

fn pilot_on_kubernetes(fake: &Fake) -> String {
    let pilot = pilot_yaml();
    let end = pilot
        .find("  - name: bmw-stream")
        .expect("the pilot's stream");
    let kube = broker(
        1,
        "2.10",
        &format!(
            "        external_endpoint: nats://127.0.0.1:{}\n",
            fake.pod_port.unwrap()
        ),
        "",
    )
    .replace(BROKER, "bmw-eventbus");
    let rest = &pilot[end..];
    format!(
        "{}{}\n{}",
        provider_module(fake, &GRANT),
        kube.trim_start_matches('\n'),
        rest
    )
}

#[test]
fn the_pilot_applies_through_the_brokers_external_endpoint() {
    // The broker's StatefulSet runs (pod 0 is a real nats-server started from the ConfigMap
    // and the Secret holding the generated password); then the stream and six consumers are
    // created through the external endpoint with that password; a second plan is empty.
    let fake = Fake::start_with(true, 0.3);
    let p = Proj::new(&pilot_on_kubernetes(&fake));
    let out = p.run(&["apply"]);
    out.expect_code(0);
    fake.assert_all_valid();
    assert_eq!(
        fake.pods()["eventbus/bmw-eventbus-0"]["ready"],
        json!(true),
        "{}",
        fake.pods()
    );
    let g = p.generated();
    let password = g["kubernetes/kubernetes/eventbus/bmw-eventbus/admin-password"]
        .as_str()
        .expect("generated password")
        .to_string();
    let port = fake.pod_port.unwrap();
    let anonymous = connect(port, None);
    assert!(
        anonymous
            .as_ref()
            .is_err_and(|e| e.contains("authorization")),
        "the broker must refuse clients without the password: {:?}",
        anonymous.map(|_| ())
    );
    let wrong = connect(port, Some(("admin", "not-the-password")));
    assert!(wrong.is_err(), "the broker must refuse a wrong password");
    let streams = js_as_admin(port, &password, "$JS.API.STREAM.NAMES");
    assert_eq!(streams["streams"], json!(["BMW_FULFILLMENT"]), "{streams}");
    let consumers = js_as_admin(port, &password, "$JS.API.CONSUMER.NAMES.BMW_FULFILLMENT");
    assert_eq!(
        consumers["consumers"].as_array().map(Vec::len),
        Some(6),
        "{consumers}"
    );
    p.run(&["plan"]).expect_code(0);
}

#[test]
fn an_image_update_rolls_the_pod_and_its_streams_survive() {
    // version 2.10 -> 2.11 on the running pilot: the pod restarts on the new template (the
    // kubelet restarts it), apply waits for it, and the stream and consumers are still there
    // (the data volume outlives the pod).
    let fake = Fake::start_with(true, 0.3);
    let p = Proj::new(&pilot_on_kubernetes(&fake));
    apply(&p);
    let pid = fake.pods()["eventbus/bmw-eventbus-0"]["pid"].clone();
    p.write(&pilot_on_kubernetes(&fake).replace("version: \"2.10\"", "version: \"2.11\""));
    apply(&p);
    let pod = &fake.pods()["eventbus/bmw-eventbus-0"];
    assert_eq!(pod["image"], json!("nats:2.11"), "{pod}");
    assert_ne!(pod["pid"], pid, "the pod was not restarted: {pod}");
    assert_eq!(pod["ready"], json!(true), "{pod}");
    let password = p.generated()["kubernetes/kubernetes/eventbus/bmw-eventbus/admin-password"]
        .as_str()
        .unwrap()
        .to_string();
    let consumers = js_as_admin(
        fake.pod_port.unwrap(),
        &password,
        "$JS.API.CONSUMER.NAMES.BMW_FULFILLMENT",
    );
    assert_eq!(
        consumers["consumers"].as_array().map(Vec::len),
        Some(6),
        "{consumers}"
    );
    p.run(&["plan"]).expect_code(0);
}
