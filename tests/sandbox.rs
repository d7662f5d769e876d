//! The sandbox proof (`just sandbox`, also part of `cargo test --workspace`).
//!
//! One hostile component (`tests/hostile`, built for wasm32-wasip2) implements the same world
//! as the real provider; `driver.create(<attack>, spec)` makes it attack the host in the way
//! the attack's name says. Each attack below runs against a real `Runtime` (the one the CLI
//! uses) with real capabilities: a nats-server, a token-protected nats-server, a listener that
//! counts every connection made to it, secrets in a `SecretStore`, and a canary in this
//! process's environment. An attack is contained when
//!
//! 1. the guest got a typed denial (`cap-error`) or the call trapped, and the trap poisoned
//!    only that instance (re-entering it is refused);
//! 2. the host keeps serving: a fresh instance from the same `Runtime` answers `name()` and a
//!    granted JetStream request;
//! 3. nothing leaked: no 8-character piece of the canary, the canary file or any secret value
//!    appears in what the guest got back, in error texts, or in the host's logs; and the
//!    listener saw no connection.
//!
//! Anything else is an escape. One line per attack, then `sandbox: N attacks, M contained,
//! E escapes`; the process exits 1 on any escape.

use eventbus_host::caps::Caps;
use eventbus_host::caps::cloud::CloudCap;
use eventbus_host::caps::http::HttpCap;
use eventbus_host::caps::nats::NatsCap;
use eventbus_host::caps::secrets::SecretStore;
use eventbus_host::runtime::limits::Limits;
use eventbus_host::runtime::pool::Pool;
use eventbus_host::runtime::{Guest, Runtime, error_text, wit};
use eventbus_tests::hostile::{Logs, hostile_wasm};
use eventbus_tests::tripwire::{TokenServer, Tripwire};
use eventbus_tests::{NatsServer, TempDir, Value, json, workspace_root};
use std::future::Future;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// Standard base64 (what Kubernetes does to a Secret's `stringData`).
fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A cloud API (and HTTP target) on loopback that reflects what it is sent the way real APIs
/// do: `POST /api/store` keeps the body, `GET /api/store` returns it as stored, base64-encoded
/// (a Kubernetes Secret read back) and with the Authorization header it was sent;
/// `GET /redirect` answers 302 to the tripwire. Counts every request.
struct FakeApi {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl FakeApi {
    fn start(tripwire: u16) -> FakeApi {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the fake API");
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let stored = Arc::new(Mutex::new(Vec::<u8>::new()));
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                h.fetch_add(1, Ordering::SeqCst);
                let _ = Self::serve(s, &stored, tripwire);
            }
        });
        FakeApi { port, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn serve(
        mut s: std::net::TcpStream,
        stored: &Mutex<Vec<u8>>,
        tripwire: u16,
    ) -> std::io::Result<()> {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        let len: usize = header("content-length").parse().unwrap_or(0);
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[head_end..].to_vec();
        let mut line = head.lines().next().unwrap_or("").split(' ');
        let (method, path) = (line.next().unwrap_or(""), line.next().unwrap_or(""));
        let (status, extra, reply) = match (method, path) {
            ("POST", "/api/store") => {
                *stored.lock().unwrap() = body;
                ("201 Created", String::new(), json!({"stored": true}))
            }
            ("GET", "/api/store") => {
                let b = stored.lock().unwrap().clone();
                (
                    "200 OK",
                    format!("X-Echo-Authorization: {}\r\n", header("authorization")),
                    json!({"data": {"x": base64(&b)}, "raw": String::from_utf8_lossy(&b),
                           "auth": header("authorization")}),
                )
            }
            ("GET", "/redirect") => (
                "302 Found",
                format!("Location: http://127.0.0.1:{tripwire}/\r\n"),
                json!({}),
            ),
            _ => ("200 OK", String::new(), json!({"path": path})),
        };
        let reply = reply.to_string();
        write!(
            s,
            "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
            reply.len()
        )?;
        s.flush()
    }
}

/// 40 hex characters nobody can guess.
fn random_text(tag: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = format!("{tag}-");
    for i in 0..3u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(tag.len() + 41);
    out
}

const CANARY_VAR: &str = "EVENTBUS_SANDBOX_CANARY";
/// An env-backed secret the operator did not reference: it must stay out of reach too.
const CANARY_SECRET_VAR: &str = "EVENTBUS_SECRET_CANARY";

struct Env {
    wasm: PathBuf,
    /// The Kubernetes API fake, holding an operator's Secret the component must never read.
    kube: eventbus_tests::k8s_fake::Fake,
    nats: NatsServer,
    ungranted: NatsServer,
    locked: TokenServer,
    tripwire: Tripwire,
    logs: Logs,
    tmp: TempDir,
    /// In this process's environment only.
    canary: String,
    /// The content of a file the guest is pointed at.
    file_canary: String,
    canary_file: PathBuf,
    /// The locked server's token, held in the SecretStore as `locked-token`.
    token: String,
    /// Another secret in the store (`other`), valid nowhere.
    other: String,
    /// A secret with a quote in it (`quoted`): its JSON-escaped form differs from the value.
    quoted: String,
    /// The fake cloud account's bearer token: the operator's, known to the host only.
    cloud_token: String,
    /// The AWS account's (`aws`, on the fake API) access key id and secret access key.
    aws_key_id: String,
    aws_secret: String,
    fake: FakeApi,
    /// Everything the guest or the host said back during the current attack.
    seen: Mutex<String>,
}

impl Env {
    fn see(&self, text: &str) {
        let mut s = self.seen.lock().unwrap();
        s.push_str(text);
        s.push('\n');
    }

    /// Capabilities as an operator would grant them: the JetStream server (broker `local`),
    /// the token server (broker `locked`, credentials by handle), a websocket url on the
    /// JetStream server's host, three secrets, a cloud account and an HTTP allow-list.
    fn caps(&self, limits: Limits) -> Arc<Caps> {
        let nats = NatsCap::default();
        nats.grant(self.nats.url());
        nats.grant(&format!("ws://127.0.0.1:{}", self.nats.port()));
        nats.register_broker("local", &json!({"urls": [self.nats.url()]}));
        let secrets = SecretStore::default();
        let handle = secrets.put("locked-token", self.token.clone());
        secrets.put("other", self.other.clone());
        secrets.put("quoted", self.quoted.clone());
        nats.grant(&self.locked.url);
        nats.register_broker(
            "locked",
            &json!({"urls": [self.locked.url], "auth": {"kind": "token", "token": handle}}),
        );
        // One cloud account (GET and POST under /api) and an HTTP allow-list naming the fake
        // API by address and the tripwire by a name that resolves to loopback.
        let fake = format!("http://127.0.0.1:{}", self.fake.port);
        // And a Kubernetes API (the fake), granted everything in one namespace, the grant the
        // Kubernetes target needs; its Secrets stay write-only whatever the grant says.
        let cloud = CloudCap::from_config(
            &json!({"cloud_accounts": {
                "fake": {"base_url": fake, "token": self.cloud_token,
                    "allow": [{"methods": ["GET", "POST"], "paths": ["/api"]}]},
                "aws": aws::account(&fake, &self.aws_key_id, &self.aws_secret),
                "k8s": {"kind": "kubernetes", "base_url": self.kube.url(), "token": eventbus_tests::k8s_fake::TOKEN,
                    "allow": [{"methods": ["GET", "POST", "PUT", "PATCH", "DELETE"],
                        "paths": [format!("/api/v1/namespaces/{}/", kube_secrets::NS)]}]}}}),
            &secrets,
        )
        .expect("the fake cloud accounts");
        let http = HttpCap::from_config(&json!({"http_allow": [
            fake,
            format!("http://localhost:{}", self.tripwire.port),
        ]}));
        Arc::new(
            Caps::new(nats, secrets, limits)
                .with_cloud(cloud)
                .with_http(http),
        )
    }
}

/// The limits every attack runs under unless it says otherwise: the defaults, with a call
/// timeout short enough that a hung attack cannot stall the suite.
fn limits() -> Limits {
    Limits {
        call_timeout: Duration::from_secs(20),
        ..Limits::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Calling the hostile component

#[derive(Debug)]
enum Call {
    /// The attack's report (`outputs_json`).
    Out(Value),
    /// The guest returned a provider-error.
    Error(wit::ProviderError),
    /// The call trapped or timed out; the text is the host's.
    Trap(String),
}

impl Call {
    fn out(&self) -> Result<&Value, String> {
        match self {
            Call::Out(v) => Ok(v),
            Call::Error(e) => Err(format!("the guest returned an error: {}", error_text(e))),
            Call::Trap(t) => Err(format!("the call trapped: {t}")),
        }
    }
    fn trap(&self) -> Result<&str, String> {
        match self {
            Call::Trap(t) => Ok(t),
            Call::Out(v) => Err(format!("the attack ran to completion: {v}")),
            Call::Error(e) => Err(format!("the guest returned: {}", error_text(e))),
        }
    }
}

fn spec(attack: &str, params: &Value) -> wit::ResourceSpec {
    wit::ResourceSpec {
        name: attack.into(),
        resource_type: attack.into(),
        config_json: params.to_string(),
        size: String::new(),
        hints: None,
        depends_on: vec![],
    }
}

/// One attack call on `g`; everything that comes back is recorded for the leak check.
async fn call(e: &Env, g: &mut Guest, attack: &str, params: Value) -> Call {
    match g.create(&spec(attack, &params)).await {
        Ok(Ok(out)) => {
            e.see(&format!("{out:?}"));
            Call::Out(serde_json::from_str(&out.outputs_json).unwrap_or(Value::Null))
        }
        Ok(Err(pe)) => {
            e.see(&format!("{pe:?}"));
            Call::Error(pe)
        }
        Err(trap) => {
            let t = format!("{trap:#}");
            e.see(&t);
            Call::Trap(t)
        }
    }
}

/// `attack` carried in the config of a resource of type `rtype` (`resource` holds its own
/// config keys: a stream's `name`, a consumer's `stream_name` and `name`), through `export`, so
/// that the host grants the call exactly as it would that resource's. Exports without outputs
/// bring the report back as an `internal` error, `report: <json>`.
async fn call_as(
    e: &Env,
    g: &mut Guest,
    export: &str,
    rtype: &str,
    resource: Value,
    attack: &str,
    params: Value,
) -> Call {
    let mut config = resource.clone();
    config["attack"] = json!(attack);
    config["params"] = params;
    let spec = wit::ResourceSpec {
        name: "carrier".into(),
        resource_type: rtype.into(),
        config_json: config.to_string(),
        size: String::new(),
        hints: None,
        depends_on: vec![],
    };
    // A ref whose provider id names the resource (update) or carries the attack (read, status).
    let id = match (resource["stream_name"].as_str(), resource["name"].as_str()) {
        (Some(stream), Some(name)) => format!("local/{stream}/{name}"),
        (None, Some(name)) => format!("local/{name}"),
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
    let none = wit::ResourceOutput {
        name: "carrier".into(),
        resource_type: rtype.into(),
        provider_id: String::new(),
        outputs_json: "{}".into(),
        sensitive: vec![],
        status: String::new(),
    };
    let r: Result<Result<Value, wit::ProviderError>, String> = match export {
        "create" => flat(g.create(&spec).await, |o| o.outputs_json),
        "update" => flat(g.update(&named, &spec).await, |o| o.outputs_json),
        "plan" => flat(g.plan(&[spec], &[]).await, |_| String::new()),
        "validate" => flat(g.validate(&[spec]).await, |_| String::new()),
        "diff" => flat(g.diff(&spec, &none).await, |_| String::new()),
        "read" => flat(g.read(&carrying).await, |o| o.outputs_json),
        "status" => flat(g.status(&[carrying]).await, |_| String::new()),
        "detect_drift" => flat(g.detect_drift(&[], &[spec]).await, |_| String::new()),
        other => Err(format!("no such export in the harness: {other}")),
    };
    let c = match r {
        Ok(Ok(v)) => Call::Out(v),
        Ok(Err(wit::ProviderError::Internal(m))) if m.starts_with("report: ") => {
            Call::Out(serde_json::from_str(&m["report: ".len()..]).unwrap_or(Value::Null))
        }
        Ok(Err(pe)) => Call::Error(pe),
        Err(t) => Call::Trap(t),
    };
    e.see(&format!("{c:?}"));
    c
}

/// A guest result as (report, or provider error), or the trap's text.
fn flat<T>(
    r: eventbus_host::runtime::GuestResult<T>,
    out: impl FnOnce(T) -> String,
) -> Result<Result<Value, wit::ProviderError>, String> {
    match r {
        Ok(Ok(v)) => Ok(Ok(serde_json::from_str(&out(v)).unwrap_or(Value::Null))),
        Ok(Err(pe)) => Ok(Err(pe)),
        Err(trap) => Err(format!("{trap:#}")),
    }
}

async fn fresh(rt: &Runtime) -> Result<Guest, String> {
    rt.instance()
        .await
        .map_err(|err| format!("a fresh instance failed: {err:#}"))
}

/// A trap must poison exactly that instance: re-entering it is refused without running guest
/// code.
async fn poisoned(g: &mut Guest) -> Result<(), String> {
    if !g.poisoned {
        return Err("the trapped instance is not marked poisoned".into());
    }
    match g.name().await {
        Err(err) if format!("{err:#}").contains("trapped earlier") => Ok(()),
        Err(err) => Err(format!("re-entering the trapped instance: {err:#}")),
        Ok(n) => Err(format!("the trapped instance answered again ({n})")),
    }
}

/// `report[key]` is a cap-error of `kind`.
fn cap_err(v: &Value, kind: &str) -> Result<String, String> {
    if v["err"] == kind {
        Ok(v["message"].as_str().unwrap_or("").to_string())
    } else {
        Err(format!("expected cap-error {kind}, got {v}"))
    }
}

/// Opens a NATS connection as `conn` says and sends `requests`; returns the report.
async fn nats(e: &Env, g: &mut Guest, conn: Value, requests: Vec<Value>) -> Result<Value, String> {
    let mut p = conn;
    p["requests"] = Value::Array(requests);
    call(e, g, "nats", p).await.out().cloned()
}

fn req(subject: &str) -> Value {
    json!({"subject": subject, "payload": "{}", "timeout_ms": 1000})
}

/// Every request in the report was denied; returns how many.
fn all_denied(report: &Value, kind: &str) -> Result<usize, String> {
    let answers = report["requests"].as_array().cloned().unwrap_or_default();
    if answers.is_empty() {
        return Err(format!("no requests were made: {report}"));
    }
    for a in &answers {
        cap_err(a, kind)?;
    }
    Ok(answers.len())
}

/// The JetStream server seen directly (our own client, not through the sandbox).
async fn direct(e: &Env) -> async_nats::Client {
    async_nats::connect(e.nats.url())
        .await
        .expect("connect to the JetStream server directly")
}

/// Subscribes to the data subjects an attack might try to reach, to prove nothing arrived.
async fn watch_data(client: &async_nats::Client) -> Vec<async_nats::Subscriber> {
    let mut subs = Vec::new();
    for s in ["orders.>", "_INBOX.>", "$SYS.>", "evil.>", "hi"] {
        subs.push(client.subscribe(s).await.expect("subscribe"));
    }
    client.flush().await.ok();
    subs
}

async fn nothing_arrived(subs: &mut [async_nats::Subscriber]) -> Result<(), String> {
    use futures::StreamExt;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for s in subs.iter_mut() {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(10), s.next()).await {
            return Err(format!(
                "a message reached {} on the server: {:?}",
                m.subject, m.payload
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The attacks. Each returns how it was stopped, or what got through.

type R = Result<String, String>;

#[path = "sandbox/aws.rs"]
mod aws;
#[path = "sandbox/kafka.rs"]
mod kafka;
#[path = "sandbox/kube_secrets.rs"]
mod kube_secrets;
#[path = "sandbox/least_privilege.rs"]
mod least_privilege;
use aws::{
    forged_handles as aws_forged_handles, operations as aws_operations, regions as aws_regions,
    signature_headers as aws_signature_headers,
};
use kafka::{
    auto_create as kafka_auto_create, change_in_plan as kafka_in_plan, configs as kafka_configs,
    data as kafka_data, decoder_bombs as kafka_bombs, groups as kafka_groups,
    out_of_scope as kafka_scope, password as kafka_password, sasl_apis as kafka_sasl,
    ungranted as kafka_ungranted, wildcard_acls as kafka_acls,
};
use kube_secrets::{
    change_other as ks_change_other, crafted as ks_crafted, own_metadata as ks_own_metadata,
    read_other as ks_read_other,
};
use least_privilege::{
    another_resource_in_consumer_create as lp_other_in_consumer,
    another_resource_in_update as lp_other_in_update, cloud_change_during_plan as lp_cloud_in_plan,
    consumer_changed_during_read as lp_consumer_in_read,
    create_stream_during_status as lp_create_in_status,
    delete_stream_during_plan as lp_delete_in_plan, http_change_during_plan as lp_http_in_plan,
    msg_get as lp_msg_get, msg_next as lp_msg_next, odd_consumer_forms as lp_odd_consumers,
    purge_and_delete_messages as lp_purge, secret_generated_during_plan as lp_secret_in_plan,
    snapshot_and_admin as lp_admin, stream_changes_in_a_broker_call as lp_in_broker,
};
type BoxFut<'a> = Pin<Box<dyn Future<Output = R> + 'a>>;
type AttackFn = for<'a> fn(&'a Env, &'a Runtime) -> BoxFut<'a>;

macro_rules! boxed {
    ($f:ident) => {{
        fn b<'a>(e: &'a Env, rt: &'a Runtime) -> BoxFut<'a> {
            Box::pin($f(e, rt))
        }
        b as AttackFn
    }};
}

async fn env_vars(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let c = call(e, &mut g, "env", json!({"var": CANARY_VAR})).await;
    let v = c.out()?;
    let vars = v["vars"].as_array().map(Vec::len).unwrap_or(usize::MAX);
    let args = v["args"].as_array().map(Vec::len).unwrap_or(usize::MAX);
    if vars != 0 || !v["var"].is_null() || args != 0 {
        return Err(format!("the guest saw the environment: {v}"));
    }
    let cwd = v["cwd"]["ok"]
        .as_str()
        .unwrap_or("none")
        .trim_matches('"')
        .to_string();
    Ok(format!(
        "empty WASI environment: 0 variables, 0 args, {CANARY_VAR} unset, cwd {cwd:?} with nothing under it"
    ))
}

async fn fs_read(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let file = e.canary_file.display().to_string();
    let paths = [
        "/",
        "/etc/passwd",
        ".",
        "/proc/self/environ",
        "../../../etc/passwd",
        &file,
    ];
    let c = call(e, &mut g, "fs-read", json!({"paths": paths})).await;
    let v = c.out()?;
    let mut kinds = std::collections::BTreeSet::new();
    for p in paths {
        for op in ["read_dir", "read", "metadata"] {
            let r = &v[p][op];
            if r.get("ok").is_some() || r.is_null() {
                return Err(format!("{op} {p} succeeded: {r}"));
            }
            kinds.insert(r["err"].as_str().unwrap_or("?").to_string());
        }
    }
    Ok(format!(
        "no preopened directories: read_dir/read/metadata of {} paths (incl. /etc/passwd and a host file holding a canary) all fail ({})",
        paths.len(),
        kinds.into_iter().collect::<Vec<_>>().join(", ")
    ))
}

async fn fs_write(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let target = e.tmp.path().join("written-by-guest");
    let t = target.display().to_string();
    let c = call(
        e,
        &mut g,
        "fs-write",
        json!({"paths": [t, "/tmp/eventbus-hostile", "pwned"], "content": "pwned"}),
    )
    .await;
    let v = c.out()?;
    for (p, r) in v.as_object().into_iter().flatten() {
        if r["write"].get("ok").is_some() || r["create_dir"].get("ok").is_some() {
            return Err(format!("writing {p} succeeded: {r}"));
        }
    }
    if target.exists() || PathBuf::from("/tmp/eventbus-hostile").exists() {
        return Err("a file written by the guest exists on the host".into());
    }
    Ok(format!(
        "no preopened directories: writes and mkdir fail ({}); nothing appeared on the host",
        v[&t]["write"]["err"]
    ))
}

async fn clock(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let c = call(e, &mut g, "clock", json!({"window_ms": 300})).await;
    let v = c.out()?;
    let mono = v["monotonic_min_step_ns"].as_u64().unwrap_or(0);
    let wall = v["wall_min_step_ns"].as_u64().unwrap_or(0);
    let res = v["monotonic_resolution_ns"].as_u64().unwrap_or(0);
    let wres = v["wall_resolution_ns"].as_u64().unwrap_or(0);
    let subsec = v["wall_now_subsec_ns"].as_u64().unwrap_or(1);
    let floor = 1_000_000;
    if mono < floor || wall < floor || res < floor || wres < floor || subsec % floor != 0 {
        return Err(format!(
            "the guest can read a clock finer than 1 ms: monotonic step {mono} ns (advertised {res} ns), wall step {wall} ns (advertised {wres} ns), {} samples",
            v["samples"]
        ));
    }
    Ok(format!(
        "clocks quantised by the host: advertised resolution {} ms (monotonic) / {} ms (wall), smallest step observed {} ms / {} ms over {} samples",
        res / floor,
        wres / floor,
        mono / floor,
        wall / floor,
        v["samples"]
    ))
}

async fn sockets(e: &Env, rt: &Runtime) -> R {
    let before = e.tripwire.hits();
    let mut g = fresh(rt).await?;
    let trip = format!("127.0.0.1:{}", e.tripwire.port);
    let nats = format!("127.0.0.1:{}", e.nats.port());
    let c = call(
        e,
        &mut g,
        "sockets",
        json!({"tcp": [trip, nats], "udp": trip, "host": "localhost"}),
    )
    .await;
    let v = c.out()?;
    let mut errs = Vec::new();
    for t in v["tcp"].as_array().into_iter().flatten() {
        if t["connect"].get("ok").is_some() {
            return Err(format!("TCP connect succeeded: {t}"));
        }
        errs.push(t["connect"]["err"].as_str().unwrap_or("?").to_string());
    }
    for k in ["listen", "udp_bind", "udp_send", "dns"] {
        if v[k].get("ok").is_some() {
            return Err(format!("{k} succeeded: {}", v[k]));
        }
    }
    if e.tripwire.hits() != before {
        return Err("the tripwire listener saw a connection".into());
    }
    Ok(format!(
        "wasi:sockets with no network granted: connect to a live listener and to nats-server -> {}; listen -> {}; UDP -> {}; DNS -> {}; the listener saw 0 connections",
        errs.join("/"),
        v["listen"]["err"],
        v["udp_bind"]["err"],
        v["dns"]["err"]
    ))
}

/// Redirects this process's stdout and stderr into a file while `f` runs.
async fn capture_stdio<F: Future<Output = T>, T>(path: &std::path::Path, f: F) -> (T, String) {
    use std::os::fd::AsRawFd;
    std::io::stdout().flush().ok();
    std::io::stderr().flush().ok();
    let file = std::fs::File::create(path).expect("stdio capture file");
    // SAFETY: plain fd juggling on this process's own descriptors; restored below.
    let (out, err) = unsafe { (libc::dup(1), libc::dup(2)) };
    unsafe {
        libc::dup2(file.as_raw_fd(), 1);
        libc::dup2(file.as_raw_fd(), 2);
    }
    let t = f.await;
    std::io::stdout().flush().ok();
    std::io::stderr().flush().ok();
    unsafe {
        libc::dup2(out, 1);
        libc::dup2(err, 2);
        libc::close(out);
        libc::close(err);
    }
    (t, std::fs::read_to_string(path).unwrap_or_default())
}

async fn stdio(e: &Env, rt: &Runtime) -> R {
    let marker = random_text("stdio-marker");
    let mut g = fresh(rt).await?;
    let path = e.tmp.path().join("stdio");
    let (c, printed) =
        capture_stdio(&path, call(e, &mut g, "stdio", json!({"canary": marker}))).await;
    let v = c.out()?;
    let logged = e.logs.text().contains(&marker);
    if printed.contains(&marker) || logged {
        return Err("the guest's stdout/stderr reached the host's".into());
    }
    if v["stdin"].get("ok").is_some() && !v["stdin_text"].as_str().unwrap_or("").is_empty() {
        return Err(format!("the guest read the host's stdin: {v}"));
    }
    Ok(format!(
        "stdio is a sink: the guest printed a marker to stdout and stderr ({} bytes reached the host's fds, none of it the marker); stdin reads {}",
        printed.len(),
        v["stdin"]
    ))
}

async fn exit(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let c = call(e, &mut g, "exit", json!({"code": 3})).await;
    let t = c.trap()?.to_string();
    poisoned(&mut g).await?;
    Ok(format!(
        "wasi:cli/exit is a trap confined to the call, not a process exit (\"{}\")",
        first_line(&t)
    ))
}

async fn nats_sys(e: &Env, rt: &Runtime) -> R {
    let client = direct(e).await;
    let mut subs = watch_data(&client).await;
    let mut g = fresh(rt).await?;
    let v = nats(
        e,
        &mut g,
        json!({"broker": "local"}),
        vec![
            req("$SYS.REQ.SERVER.PING"),
            req("$SYS.REQ.SERVER.PING.CONNZ"),
            req("$SYS.REQ.ACCOUNT.$G.CONNZ"),
        ],
    )
    .await?;
    let n = all_denied(&v, "denied")?;
    nothing_arrived(&mut subs).await?;
    Ok(format!(
        "caps/nats.rs check_subject: {n} $SYS requests -> cap-error denied; nothing reached $SYS.> on the server"
    ))
}

async fn nats_data(e: &Env, rt: &Runtime) -> R {
    let client = direct(e).await;
    let mut subs = watch_data(&client).await;
    let mut g = fresh(rt).await?;
    let v = nats(
        e,
        &mut g,
        json!({"broker": "local"}),
        vec![
            req("orders.created"),
            req("_INBOX.stolen"),
            req("$JS.ACK.ORDERS.c.1.1.1.1.1"),
            req("$KV.config.password"),
            req("$JS.EVENT.ADVISORY.API"),
            req("$JS.API"),
            req("$JS.APIX.INFO"),
        ],
    )
    .await?;
    let n = all_denied(&v, "denied")?;
    nothing_arrived(&mut subs).await?;
    Ok(format!(
        "check_subject: {n} data/ack/KV/near-miss subjects -> cap-error denied; a subscriber on the server saw nothing"
    ))
}

async fn nats_wildcards(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let v = nats(
        e,
        &mut g,
        json!({"broker": "local"}),
        vec![
            req("$JS.API.>"),
            req("$JS.API.STREAM.INFO.*"),
            req("$JS.API.*"),
            req(">"),
            req("*"),
        ],
    )
    .await?;
    let n = all_denied(&v, "denied")?;
    Ok(format!(
        "check_subject: {n} wildcard subjects -> cap-error denied"
    ))
}

async fn nats_injection(e: &Env, rt: &Runtime) -> R {
    let client = direct(e).await;
    let mut subs = watch_data(&client).await;
    let mut g = fresh(rt).await?;
    let v = nats(
        e,
        &mut g,
        json!({"broker": "local"}),
        vec![
            req("$JS.API.INFO\r\nPUB orders.created 2\r\nhi"),
            req("$JS.API.INFO orders.created"),
            req("$JS.API.INFO\tx"),
            req("$JS.API.INFO\u{0}"),
            req("$JS.API..INFO"),
            req("$JS.API.INFO."),
            req(&format!("$JS.API.{}", "A".repeat(600))),
        ],
    )
    .await?;
    let n = all_denied(&v, "denied")?;
    nothing_arrived(&mut subs).await?;
    Ok(format!(
        "check_subject: {n} subjects with CR/LF, spaces, tabs, NUL, empty tokens or >512 bytes -> cap-error denied; no injected PUB reached the server"
    ))
}

async fn nats_domain(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let v = nats(
        e,
        &mut g,
        json!({"broker": "local"}),
        vec![req("$JS.hub.API.INFO"), req("$JS.hub.API.STREAM.LIST")],
    )
    .await?;
    let n = all_denied(&v, "denied")?;
    let mut bad = Vec::new();
    for d in ["a.b", "*", ">", "", "x y"] {
        let r = nats(
            e,
            &mut g,
            json!({"urls": [e.nats.url()], "domain": d}),
            vec![req("$JS.API.INFO")],
        )
        .await?;
        bad.push(cap_err(&r["open"], "invalid").map_err(|m| format!("domain {d:?}: {m}"))?);
    }
    Ok(format!(
        "a connection's prefix is fixed at open: {n} requests to another domain's API ($JS.hub.API.*) -> cap-error denied; {} malformed domains -> cap-error invalid",
        bad.len()
    ))
}

async fn nats_endpoint(e: &Env, rt: &Runtime) -> R {
    let before = e.tripwire.hits();
    let mut g = fresh(rt).await?;
    let trip = format!("nats://127.0.0.1:{}", e.tripwire.port);
    let attempts = [
        json!([e.ungranted.url()]),
        json!([e.nats.url(), e.ungranted.url()]),
        json!([trip]),
        json!([format!("nats://localhost:{}", e.ungranted.port())]),
        json!([format!("tls://127.0.0.1:{}", e.nats.port())]),
        json!([format!("wss://127.0.0.1:{}", e.nats.port())]),
    ];
    for urls in &attempts {
        let r = nats(e, &mut g, json!({"urls": urls}), vec![req("$JS.API.INFO")]).await?;
        cap_err(&r["open"], "denied").map_err(|m| format!("{urls}: {m}"))?;
    }
    if e.tripwire.hits() != before {
        return Err("the tripwire listener saw a connection".into());
    }
    Ok(format!(
        "caps/nats.rs grants: {} ungranted endpoints (another live nats-server, a mix with a granted url, other scheme or host alias) -> cap-error denied before any connection",
        attempts.len()
    ))
}

async fn nats_url_confusion(e: &Env, rt: &Runtime) -> R {
    let before = e.tripwire.hits();
    let mut g = fresh(rt).await?;
    let (good, evil) = (e.nats.port(), e.tripwire.port);
    let urls = [
        format!("nats://127.0.0.1:{evil}#@127.0.0.1:{good}"),
        format!("nats://127.0.0.1:{good}@127.0.0.1:{evil}"),
        format!("ws://127.0.0.1:{evil}\\@127.0.0.1:{good}"),
        format!("nats://127.0.0.1:{evil}/@127.0.0.1:{good}"),
        format!("nats://127.0.0.1:{evil}?@127.0.0.1:{good}"),
        format!("nats://u:p@127.0.0.1:{evil}#127.0.0.1:{good}"),
        format!(" nats://127.0.0.1:{evil}"),
    ];
    let mut kinds = Vec::new();
    for u in &urls {
        let r = nats(e, &mut g, json!({"urls": [u]}), vec![req("$JS.API.INFO")]).await?;
        if r["open"].get("ok").is_some() || r["open"]["err"] == "unavailable" {
            return Err(format!(
                "{u:?} passed the grant check and was dialled: {}",
                r["open"]
            ));
        }
        kinds.push(r["open"]["err"].as_str().unwrap_or("?").to_string());
    }
    let hits = e.tripwire.hits() - before;
    if hits != 0 {
        return Err(format!(
            "the listener behind a granted-looking url saw {hits} connection(s)"
        ));
    }
    kinds.sort();
    kinds.dedup();
    Ok(format!(
        "{} urls that name a granted host:port only to a naive parser (fragment, userinfo, backslash, path, query) -> cap-error {}; the listener they really point at saw 0 connections",
        urls.len(),
        kinds.join("/")
    ))
}

async fn nats_unknown_broker(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let mut msgs = Vec::new();
    for b in ["prod", "", "../local", "local "] {
        let r = nats(e, &mut g, json!({"broker": b}), vec![req("$JS.API.INFO")]).await?;
        msgs.push(cap_err(&r["open"], "unknown").map_err(|m| format!("broker {b:?}: {m}"))?);
    }
    Ok(format!(
        "open-broker knows brokers only by exact name: {} unknown/ambiguous names -> cap-error unknown",
        msgs.len()
    ))
}

async fn nats_forged_handle(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let url = e.locked.url.clone();
    // Control: the real handle does authenticate, so the refusals below are the policy's.
    let ok = nats(
        e,
        &mut g,
        json!({"urls": [url], "token": "{{secret:locked-token}}"}),
        vec![],
    )
    .await?;
    if ok["open"].get("ok").is_none() {
        return Err(format!("control: the real handle did not connect: {ok}"));
    }
    let mut out = Vec::new();
    for (token, kind) in [
        ("{{secret:nope}}", "unknown"),
        ("{{secret:}}", "unknown"),
        ("{{secret:locked-token}} ", "unknown"),
        ("guessed-token", "unknown"),
        ("{{secret:other}}", "denied"),
    ] {
        let r = nats(e, &mut g, json!({"urls": [url], "token": token}), vec![]).await?;
        cap_err(&r["open"], kind).map_err(|m| format!("token {token:?}: {m}"))?;
        out.push(format!("{token:?}->{kind}"));
    }
    Ok(format!(
        "credentials are resolved from the host's store only: {}; the server refused the wrong secret and no error echoed a value",
        out.join(", ")
    ))
}

async fn nats_endpoint_readback(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let r = nats(e, &mut g, json!({"broker": "locked"}), vec![]).await?;
    let ep = r["open"]["ok"]["endpoint"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if !ep.contains("{{secret:locked-token}}") {
        return Err(format!(
            "connection.endpoint() of a credentialed broker: {}",
            r["open"]
        ));
    }
    Ok("connection.endpoint() of a token-protected broker gives back the credential's handle, not its value".into())
}

async fn nats_creds_parse(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let url = e.locked.url.clone();
    let mut out = Vec::new();
    for key in ["creds", "nkey", "password"] {
        let r = nats(
            e,
            &mut g,
            json!({"urls": [url], key: "{{secret:locked-token}}", "user": "x"}),
            vec![],
        )
        .await?;
        if r["open"].get("ok").is_some() {
            return Err(format!("{key}: connected with a token used as {key}"));
        }
        out.push(format!(
            "{key}->{}",
            r["open"]["err"].as_str().unwrap_or("?")
        ));
    }
    Ok(format!(
        "a token's handle used as creds, nkey seed or password (to make a parser echo it): {}; no error text carried the value",
        out.join(", ")
    ))
}

async fn secret_in_payload(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let body = json!({"name": "LEAK", "subjects": ["leak.>"], "description": "{{secret:locked-token}}",
        "metadata": {"t": "{{secret:other}}"}});
    // Carried by the stream it creates, so the create is in the call's scope.
    let v = call_as(
        e,
        &mut g,
        "create",
        "infra.eventbus.stream",
        json!({"name": "LEAK", "broker_ref": "local"}),
        "nats",
        json!({"broker": "local", "requests": [
            {"subject": "$JS.API.STREAM.CREATE.LEAK", "payload": body.to_string(), "timeout_ms": 5000},
            {"subject": "$JS.API.STREAM.INFO.LEAK", "payload": "", "timeout_ms": 5000},
        ]}),
    )
    .await
    .out()?
    .clone();
    let info = v["requests"][1]["ok"].as_str().unwrap_or("").to_string();
    let client = direct(e).await;
    let js = async_nats::jetstream::new(client);
    let stored = js
        .get_stream("LEAK")
        .await
        .map_err(|err| format!("the stream was not created: {err} ({v})"))?
        .cached_info()
        .config
        .description
        .clone()
        .unwrap_or_default();
    js.delete_stream("LEAK").await.ok();
    if stored != "{{secret:locked-token}}" || !info.contains("{{secret:locked-token}}") {
        return Err(format!(
            "the host substituted a handle in a payload: stored description {stored:?}"
        ));
    }
    Ok("handles are opaque outside credentials: a handle in a JetStream payload reached the server as the placeholder text, and reading it back gave the placeholder".into())
}

async fn secrets_handles(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let c = call(
        e,
        &mut g,
        "secrets",
        json!({"named": ["locked-token", "other", "canary", "CANARY", "../../etc/passwd", "{{secret:other}}", ""],
               "generate": ["new", "locked-token"]}),
    )
    .await;
    let v = c.out()?;
    let named = v["named"].as_array().cloned().unwrap_or_default();
    for (i, name) in ["locked-token", "other"].iter().enumerate() {
        if named[i]["handle"] != format!("{{{{secret:{name}}}}}") {
            return Err(format!("secrets.named({name}) returned {}", named[i]));
        }
    }
    for n in &named[2..] {
        cap_err(&n["result"], "unknown").map_err(|m| format!("{}: {m}", n["name"]))?;
    }
    // generate: denied, or (where the host keeps generated secrets) a handle, never a value.
    let mut generated = Vec::new();
    for made in v["generated"].as_array().into_iter().flatten() {
        let name = made["name"].as_str().unwrap_or("");
        match made["handle"].as_str() {
            Some(h) if h == format!("{{{{secret:{name}}}}}") => {
                let value = rt.caps.secrets.resolve(h).unwrap_or_default();
                let logs = e.logs.text();
                let seen = e.seen.lock().unwrap().clone();
                if value.len() >= 8 && (leaked(&seen, &value) || leaked(&logs, &value)) {
                    return Err(format!("the value generated for {name} came out"));
                }
                generated.push(format!("{name}->handle"));
            }
            Some(other) => return Err(format!("generate({name}) returned {other:?}")),
            None => {
                let kind = made["result"]["err"].as_str().unwrap_or("");
                if kind.is_empty() {
                    return Err(format!("generate({name}) returned {made}"));
                }
                generated.push(format!("{name}->{kind}"));
            }
        }
    }
    Ok(format!(
        "secrets.named returns only `{{{{secret:NAME}}}}` handles; {} names not in the store (incl. an env-backed EVENTBUS_SECRET_CANARY) -> cap-error unknown; generate: {} (no value came out)",
        named.len() - 2,
        generated.join(", ")
    ))
}

/// A cap-error of one of `kinds`; returns its kind.
fn typed(v: &Value, kinds: &[&str]) -> Result<String, String> {
    let k = v["err"].as_str().unwrap_or("");
    if kinds.contains(&k) {
        Ok(k.to_string())
    } else {
        Err(format!("expected cap-error {}, got {v}", kinds.join("|")))
    }
}

async fn cloud_accounts(e: &Env, rt: &Runtime) -> R {
    let before = e.fake.hits();
    let mut g = fresh(rt).await?;
    let calls: Vec<Value> = ["prod", "", "FAKE", "fake ", "default", "*", "fake/../fake"]
        .iter()
        .map(|a| json!({"account": a, "method": "GET", "path": "/api/store"}))
        .collect();
    let n = calls.len();
    let c = call(e, &mut g, "cloud", json!({"calls": calls})).await;
    for r in c.out()?.as_array().into_iter().flatten() {
        cap_err(r, "denied")?;
    }
    if e.fake.hits() != before {
        return Err("a request reached the cloud API".into());
    }
    Ok(format!(
        "caps/cloud.rs: {n} account names that are not exactly a granted one -> cap-error denied; the API saw 0 requests"
    ))
}

async fn cloud_methods_paths(e: &Env, rt: &Runtime) -> R {
    let before = e.fake.hits();
    let mut g = fresh(rt).await?;
    let call_ =
        |method: &str, path: &str| json!({"account": "fake", "method": method, "path": path});
    let mut calls = vec![
        call_("DELETE", "/api/store"),
        call_("PUT", "/api/store"),
        call_("PATCH", "/api/store"),
        call_("CONNECT", "/api"),
        call_("GET\r\nX-Injected: 1", "/api/store"),
        call_("GET", "/admin"),
        call_("GET", "/apix"),
        call_("GET", "/"),
        call_("GET", "api/store"),
        call_("GET", "/api/../admin"),
        call_("GET", "/api/./../admin"),
        call_("GET", "/api/%2e%2e/admin"),
        call_("GET", "/api/%2E%2E%2Fadmin"),
        call_("GET", "/api//admin"),
        call_("GET", "/api\\..\\admin"),
        call_("GET", "/api/store\r\nHost: evil"),
        call_("GET", "/api/store?x=1#frag"),
        call_("GET", "@127.0.0.1:1/api"),
    ];
    for (k, v) in [
        ("authorization", "Bearer {{secret:locked-token}}"),
        ("Authorization", "Bearer mine"),
        ("host", "evil.example"),
        ("proxy-authorization", "x"),
        ("x-token", "{{secret:locked-token}}"),
        ("cookie", "a=b"),
    ] {
        calls.push(
            json!({"account": "fake", "method": "GET", "path": "/api/store", "headers": {k: v}}),
        );
    }
    let c = call(e, &mut g, "cloud", json!({"calls": calls})).await;
    let answers = c.out()?.as_array().cloned().unwrap_or_default();
    let mut kinds = std::collections::BTreeMap::new();
    for (r, sent) in answers.iter().zip(&calls) {
        let k = typed(r, &["denied", "invalid"]).map_err(|m| format!("{sent}: {m}"))?;
        *kinds.entry(k).or_insert(0) += 1;
    }
    if e.fake.hits() != before {
        return Err(format!(
            "{} request(s) reached the cloud API",
            e.fake.hits() - before
        ));
    }
    Ok(format!(
        "caps/cloud.rs grant (GET, POST under /api): {} calls with other methods, paths outside or climbing out (.., %2e, //, \\), CR/LF, fragments, host-set headers or handles in headers -> {}; the API saw 0 requests",
        answers.len(),
        kinds
            .iter()
            .map(|(k, n)| format!("{n} cap-error {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

async fn cloud_reflection(e: &Env, rt: &Runtime) -> R {
    // Inside the grant: store a secret's handle (the host substitutes the value on the way
    // out), then read it back as an API would return it: as stored, base64-encoded (a
    // Kubernetes Secret's data), JSON-escaped, with the Authorization header it received.
    let mut g = fresh(rt).await?;
    let mut leaks = Vec::new();
    let mut decoded_total = 0;
    for (name, body) in [
        (
            "cloud/fake/token",
            r#"{"stringData":{"x":"{{secret:cloud/fake/token}}"}}"#,
        ),
        (
            "locked-token",
            r#"{"stringData":{"x":"{{secret:locked-token}}"}}"#,
        ),
        (
            "locked-token",
            r#"{"stringData":{"x":"A{{secret:locked-token}}"}}"#,
        ),
        (
            "locked-token",
            r#"{"stringData":{"x":"AB{{secret:locked-token}}"}}"#,
        ),
        ("quoted", r#"{"stringData":{"x":"{{secret:quoted}}"}}"#),
        ("other", r#"{{secret:other}}"#),
    ] {
        let calls = json!([
            {"account": "fake", "method": "POST", "path": "/api/store", "body": body,
             "headers": {"content-type": "application/json"}},
            {"account": "fake", "method": "GET", "path": "/api/store"},
        ]);
        let c = call(e, &mut g, "cloud", json!({"calls": calls})).await;
        let v = c.out()?.clone();
        let got = v.to_string();
        decoded_total += v[1]["decoded"].as_array().map(Vec::len).unwrap_or(0);
        for (what, secret) in [
            ("the cloud account's token", &e.cloud_token),
            ("secret `locked-token`", &e.token),
            ("secret `quoted`", &e.quoted),
            ("secret `other`", &e.other),
        ] {
            if leaked(&got, secret) {
                leaks.push(format!("{what} (stored via {{{{secret:{name}}}}})"));
            }
        }
        if name == "cloud/fake/token" {
            // The operator's own credential: no handle resolves to it.
            cap_err(&v[0], "unknown").map_err(|m| format!("storing the account's token: {m}"))?;
        } else if v[0]["status"] != 201 {
            return Err(format!("the store call did not reach the API: {v}"));
        }
    }
    if !leaks.is_empty() {
        leaks.sort();
        leaks.dedup();
        return Err(format!(
            "read back through the granted API, the guest recovered {}",
            leaks.join(", ")
        ));
    }
    Ok(format!(
        "inside the grant the API reflected each stored secret back (as stored, JSON-escaped twice, base64 at three alignments, and the bearer token in an echoed header); caps/secrets.rs mask() turned each form back into the handle before the guest saw it ({decoded_total} strings decoded by the guest, none a secret); the account's own token is host-only: its handle -> cap-error unknown"
    ))
}

async fn http_private(e: &Env, rt: &Runtime) -> R {
    let before = e.tripwire.hits();
    let mut g = fresh(rt).await?;
    let p = e.tripwire.port;
    let urls = [
        format!("http://127.0.0.1:{p}/"),
        format!("http://[::1]:{p}/"),
        format!("http://[::ffff:127.0.0.1]:{p}/"),
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/".to_string(),
        "http://10.0.0.1/".to_string(),
        "http://192.168.0.1/admin".to_string(),
        format!("http://2130706433:{p}/"),
        format!("http://0x7f.1:{p}/"),
        format!("http://0177.0.0.1:{p}/"),
        "file:///etc/passwd".to_string(),
        format!("gopher://127.0.0.1:{p}/_PUB%20x"),
        format!("nats://127.0.0.1:{}/", e.nats.port()),
    ];
    let c = call(e, &mut g, "http", json!({"urls": urls})).await;
    for r in c.out()?.as_array().into_iter().flatten() {
        cap_err(&r["result"], "denied").map_err(|m| format!("{}: {m}", r["url"]))?;
    }
    if e.tripwire.hits() != before {
        return Err("the tripwire listener saw an HTTP connection".into());
    }
    Ok(format!(
        "caps/http.rs allow-list: {} urls off it (loopback, IPv4-mapped, link-local metadata, private, numeric and octal IP forms, file, gopher, nats) -> cap-error denied; the listener saw 0 connections",
        urls.len()
    ))
}

async fn http_redirect_dns(e: &Env, rt: &Runtime) -> R {
    let before = e.tripwire.hits();
    let mut g = fresh(rt).await?;
    let (trip, fake) = (e.tripwire.port, e.fake.port);
    // 1. An allow-listed *name* that resolves to loopback.
    let c = call(
        e,
        &mut g,
        "http",
        json!({"urls": [format!("http://localhost:{trip}/")]}),
    )
    .await;
    let dns = c.out()?[0]["result"].clone();
    cap_err(&dns, "denied").map_err(|m| format!("localhost: {m}"))?;
    // 2. An allow-listed address that redirects to the tripwire: the 302 comes back as is.
    let c = call(
        e,
        &mut g,
        "http",
        json!({"urls": [format!("http://127.0.0.1:{fake}/redirect")]}),
    )
    .await;
    let redirect = c.out()?[0]["response"].clone();
    if redirect["status"] != 302 {
        return Err(format!(
            "the redirect was not returned as a 302: {redirect}"
        ));
    }
    // 3. Following it by hand goes through the allow-list again; so do tricks that put the
    //    allowed origin in front of another host.
    let urls = [
        format!("http://127.0.0.1:{trip}/"),
        format!("http://127.0.0.1:{fake}@127.0.0.1:{trip}/"),
        format!("http://127.0.0.1:{fake}\\@127.0.0.1:{trip}/"),
        format!("http://127.0.0.1:{fake}:{trip}/"),
    ];
    let c = call(e, &mut g, "http", json!({"urls": urls})).await;
    for r in c.out()?.as_array().into_iter().flatten() {
        cap_err(&r["result"], "denied").map_err(|m| format!("{}: {m}", r["url"]))?;
    }
    // 4. Headers the host owns.
    let c = call(
        e,
        &mut g,
        "http",
        json!({"urls": [format!("http://127.0.0.1:{fake}/")], "headers": {"Host": format!("127.0.0.1:{trip}")}}),
    )
    .await;
    cap_err(&c.out()?[0]["result"], "denied").map_err(|m| format!("Host header: {m}"))?;
    if e.tripwire.hits() != before {
        return Err(format!(
            "the tripwire behind the redirect saw {} connection(s)",
            e.tripwire.hits() - before
        ));
    }
    Ok("caps/http.rs: an allow-listed name resolving to loopback -> cap-error denied; an allow-listed server's 302 to the tripwire came back unfollowed (status 302); following it by hand, userinfo/backslash/port tricks and a Host header -> cap-error denied; the tripwire saw 0 connections".to_string())
}

async fn log_handle(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let c = call(
        e,
        &mut g,
        "log",
        json!({"messages": [
            {"level": "error", "message": "token={{secret:locked-token}}", "fields": {"token": "{{secret:locked-token}}"}},
            {"level": "info", "message": "{{secret:other}}"},
        ]}),
    )
    .await;
    c.out()?;
    let logs = e.logs.text();
    if !logs.contains("token={{secret:locked-token}}") {
        return Err("the guest's log line did not arrive as written".into());
    }
    Ok("the log import never resolves handles: the host logged the placeholder text, not the value".into())
}

async fn log_value(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    // As if the value had reached the guest some other way: the host still scrubs it.
    let mut messages = Vec::new();
    for level in ["trace", "debug", "info", "warn", "error"] {
        messages.push(
            json!({"level": level, "message": format!("token is {} ok", e.token),
            "fields": {"k": e.token, "other": format!("<{}>", e.other)}}),
        );
    }
    let c = call(e, &mut g, "log", json!({"messages": messages})).await;
    c.out()?;
    let logs = e.logs.text();
    if logs.matches("[redacted]").count() < 10 {
        return Err("the host did not redact the secret values in the guest's logs".into());
    }
    Ok("caps/log.rs redacts every value in the SecretStore: 10 values in messages and fields, at every level, logged as [redacted]".into())
}

async fn log_truncation(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    // The value straddles the 4096-character cut of a message, and of the fields.
    let mut messages = Vec::new();
    for cut in [4, 8, 12, 20, 30] {
        messages.push(json!({"level": "warn", "pad": 4096 - cut, "message": e.token}));
        messages.push(json!({"level": "warn", "message": "f",
            "fields": {"k": format!("{}{}", "y".repeat(4096 - 3 - cut), e.other)}}));
    }
    let c = call(e, &mut g, "log", json!({"messages": messages})).await;
    c.out()?;
    Ok("a value cut in half by the log import's 4096-character limit is still scrubbed (redaction runs before truncation)".into())
}

async fn secret_outputs(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let names = json!(["locked-token", "other"]);
    let c = call(e, &mut g, "outputs", json!({"named": names})).await;
    let v = c.out()?.clone();
    let c2 = call(
        e,
        &mut g,
        "outputs",
        json!({"named": names, "as_error": true}),
    )
    .await;
    let err = match c2 {
        Call::Error(pe) => error_text(&pe),
        other => return Err(format!("expected a provider-error: {:?}", other.out())),
    };
    if v["secrets"]["locked-token"] != "{{secret:locked-token}}"
        || !err.contains("{{secret:other}}")
    {
        return Err(format!("unexpected outputs {v} / {err}"));
    }
    Ok("everything the guest can obtain about a secret is its handle: written into outputs (marked not sensitive) and into an error, only placeholders came out".into())
}

async fn infinite_loop(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let t0 = Instant::now();
    let c = call(e, &mut g, "loop", json!({})).await;
    let t = c.trap()?.to_string();
    poisoned(&mut g).await?;
    Ok(format!(
        "epoch deadline (call_timeout {:?}): trapped after {:.1}s: \"{t}\"",
        rt.limits.call_timeout,
        t0.elapsed().as_secs_f64()
    ))
}

async fn log_flood(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let t0 = Instant::now();
    let c = call(e, &mut g, "log-loop", json!({})).await;
    let t = c.trap()?.to_string();
    poisoned(&mut g).await?;
    let _ = e.logs.take(); // a second of trace lines is not worth keeping
    Ok(format!(
        "a loop of host calls is interrupted the same way: trapped after {:.1}s: \"{t}\"",
        t0.elapsed().as_secs_f64()
    ))
}

async fn sleep_forever(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let t0 = Instant::now();
    let c = call(e, &mut g, "sleep", json!({"secs": 3600})).await;
    let t = c.trap()?.to_string();
    poisoned(&mut g).await?;
    if t0.elapsed() > Duration::from_secs(10) {
        return Err(format!("the sleep held the call for {:?}", t0.elapsed()));
    }
    Ok(format!(
        "blocked in a WASI poll (no wasm running, so no epoch check): the per-call tokio timeout cut it after {:.1}s: \"{t}\"",
        t0.elapsed().as_secs_f64()
    ))
}

async fn memory_growth(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let c = call(e, &mut g, "memory", json!({})).await;
    let t = c.trap()?.to_string();
    poisoned(&mut g).await?;
    Ok(format!(
        "StoreLimits memory_size {} MiB with trap_on_grow_failure: \"{}\"",
        rt.limits.memory_bytes >> 20,
        first_line(&t)
    ))
}

async fn huge_alloc(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let c = call(e, &mut g, "alloc-huge", json!({"bytes": 1_500_000_000u64})).await;
    let t = c.trap()?.to_string();
    poisoned(&mut g).await?;
    Ok(format!(
        "a single 1.5 GB allocation: memory.grow refused by the limiter -> trap: \"{}\"",
        first_line(&t)
    ))
}

async fn oversized_payload(e: &Env, rt: &Runtime) -> R {
    let client = direct(e).await;
    let mut subs = watch_data(&client).await;
    let mut g = fresh(rt).await?;
    let v = nats(
        e,
        &mut g,
        json!({"broker": "local"}),
        vec![json!({"subject": "$JS.API.INFO", "payload_len": 8 << 20, "timeout_ms": 1000})],
    )
    .await?;
    let m = cap_err(&v["requests"][0], "invalid")?;
    nothing_arrived(&mut subs).await?;
    Ok(format!(
        "max_payload ({} MiB): an 8 MiB request -> cap-error invalid (\"{m}\")",
        rt.limits.max_payload >> 20
    ))
}

async fn hostcall_100mib(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let c = call(
        e,
        &mut g,
        "nats",
        json!({"broker": "local", "requests": [{"subject": "$JS.API.INFO", "payload_len": 100 << 20}]}),
    )
    .await;
    let t = c.trap()?.to_string();
    poisoned(&mut g).await?;
    Ok(format!(
        "hostcall fuel ({} MiB per host call; memory raised to {} MiB so the guest can build it): a 100 MiB NATS payload traps before the host copies it: \"{}\"",
        rt.limits.hostcall_bytes >> 20,
        rt.limits.memory_bytes >> 20,
        first_line(&t)
    ))
}

async fn log_100mib(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let c = call(e, &mut g, "log-huge", json!({"len": 100 << 20})).await;
    let t = c.trap()?.to_string();
    poisoned(&mut g).await?;
    Ok(format!(
        "hostcall fuel: a 100 MiB log message traps before the host copies it: \"{}\"",
        first_line(&t)
    ))
}

async fn log_15mib(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let c = call(e, &mut g, "log-huge", json!({"len": 15 << 20})).await;
    c.out()?;
    let logs = e.logs.take();
    let longest = logs.lines().map(str::len).max().unwrap_or(0);
    if longest > 16 << 10 {
        return Err(format!("a {longest}-byte line reached the host's log"));
    }
    Ok(format!(
        "a 15 MiB log message (under the fuel) is cut to 4096 characters: the longest host log line was {longest} bytes"
    ))
}

async fn recursion(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    let c = call(e, &mut g, "recursion", json!({})).await;
    let t = c.trap()?.to_string();
    poisoned(&mut g).await?;
    Ok(format!(
        "stack exhaustion is a trap: \"{}\"",
        first_line(&t)
    ))
}

async fn panic_mid_apply(e: &Env, rt: &Runtime) -> R {
    let marker = random_text("panic-marker");
    let mut g = fresh(rt).await?;
    // Carried by the stream it creates: that create is the call's own resource.
    let c = call_as(
        e,
        &mut g,
        "create",
        "infra.eventbus.stream",
        json!({"name": "PANICKED", "broker_ref": "local"}),
        "panic-mid-apply",
        json!({"broker": "local", "stream": "PANICKED", "canary": marker}),
    )
    .await;
    let t = c.trap()?.to_string();
    poisoned(&mut g).await?;
    if t.contains(&marker) {
        return Err("the panic message reached the host".into());
    }
    let js = async_nats::jetstream::new(direct(e).await);
    let created = js.get_stream("PANICKED").await.is_ok();
    js.delete_stream("PANICKED").await.ok();
    if !created {
        return Err("the request made before the panic did not complete".into());
    }
    Ok(format!(
        "panic = abort = trap in that call (\"{}\"); the stream it created before panicking exists, the instance is discarded, the panic text went to the WASI stderr sink",
        first_line(&t)
    ))
}

async fn pooled_trap(e: &Env, _rt: &Runtime) -> R {
    // The pool the CLI's parallel apply uses, one instance wide: a trapped instance must not
    // go back, and must not keep its slot.
    let rt = Runtime::new(&e.wasm, e.caps(limits()))
        .map_err(|err| format!("the pool's runtime did not start: {err:#}"))?;
    let pool = Pool::new(rt, "{}".into(), 1);
    let get = || async {
        tokio::time::timeout(Duration::from_secs(10), pool.get())
            .await
            .map_err(|_| "the pool did not hand out an instance within 10s".to_string())?
            .map_err(|err| format!("the pool failed: {err:#}"))
    };
    let mut first = get().await?;
    let c = call(e, &mut first, "recursion", json!({})).await;
    let t = c.trap()?.to_string();
    drop(first);
    let mut second = get().await?;
    if second.poisoned {
        return Err("the pool handed out the trapped instance again".into());
    }
    let name = second
        .name()
        .await
        .map_err(|err| format!("the next pooled instance failed: {err:#}"))?;
    if name != "hostile" {
        return Err(format!("the next pooled instance answered {name:?}"));
    }
    Ok(format!(
        "runtime/pool.rs drops a poisoned instance instead of returning it: after \"{}\" the next get() on a 1-wide pool got a fresh instance",
        first_line(&t)
    ))
}

/// A trap's text without the wasm backtrace: the host's first words and Wasmtime's reason
/// (which `{:#}` appends to the last backtrace frame).
fn first_line(t: &str) -> String {
    let head = t.lines().next().unwrap_or("");
    let head = head
        .split_once("error while executing at wasm backtrace:")
        .map(|(h, _)| h.trim_end())
        .unwrap_or(head);
    let reason = if t.contains("wasm backtrace:") {
        let last = t.lines().last().unwrap_or("");
        let after = last.find(".wasm!").map(|i| &last[i..]).unwrap_or(last);
        after.split_once(": ").map(|(_, r)| r).unwrap_or(after)
    } else {
        ""
    };
    let mut s = format!("{head} {reason}").trim().to_string();
    if s.chars().count() > 200 {
        s = s.chars().take(200).collect::<String>() + "...";
    }
    s
}

// ---------------------------------------------------------------------------------------------
// The harness

struct Attack {
    name: &'static str,
    limits: fn() -> Limits,
    run: AttackFn,
}

fn short_timeout() -> Limits {
    Limits {
        call_timeout: Duration::from_secs(1),
        ..Limits::default()
    }
}

fn big_memory() -> Limits {
    Limits {
        memory_bytes: 256 << 20,
        ..limits()
    }
}

fn attacks() -> Vec<Attack> {
    let a = |name, limits, run| Attack { name, limits, run };
    vec![
        a("read environment variables", limits, boxed!(env_vars)),
        a("read files", limits, boxed!(fs_read)),
        a("write files", limits, boxed!(fs_write)),
        a("clock at high resolution", limits, boxed!(clock)),
        a("open sockets (TCP, UDP, DNS)", limits, boxed!(sockets)),
        a("write to the host's stdio", limits, boxed!(stdio)),
        a("exit the host process", limits, boxed!(exit)),
        a("NATS $SYS subjects", limits, boxed!(nats_sys)),
        a(
            "NATS read a message (MSG.GET, DIRECT.GET)",
            limits,
            boxed!(lp_msg_get),
        ),
        a(
            "NATS pull from a live consumer",
            limits,
            boxed!(lp_msg_next),
        ),
        a(
            "NATS purge or delete another stream's messages",
            limits,
            boxed!(lp_purge),
        ),
        a(
            "NATS snapshot, restore, cluster and account admin",
            limits,
            boxed!(lp_admin),
        ),
        a(
            "NATS delete a stream during plan",
            limits,
            boxed!(lp_delete_in_plan),
        ),
        a(
            "NATS create a stream during status",
            limits,
            boxed!(lp_create_in_status),
        ),
        a(
            "NATS another stream inside an update",
            limits,
            boxed!(lp_other_in_update),
        ),
        a(
            "NATS another consumer inside a create",
            limits,
            boxed!(lp_other_in_consumer),
        ),
        a(
            "NATS ephemeral and filtered consumer forms",
            limits,
            boxed!(lp_odd_consumers),
        ),
        a(
            "cloud change during plan, status, drift",
            limits,
            boxed!(lp_cloud_in_plan),
        ),
        a(
            "secret generated during plan",
            limits,
            boxed!(lp_secret_in_plan),
        ),
        a(
            "NATS change its own consumer during read",
            limits,
            boxed!(lp_consumer_in_read),
        ),
        a(
            "Kubernetes read another Secret: get, list, watch",
            limits,
            boxed!(ks_read_other),
        ),
        a(
            "Kubernetes Secret by crafted Accept or path",
            limits,
            boxed!(ks_crafted),
        ),
        a(
            "Kubernetes change another Secret",
            limits,
            boxed!(ks_change_other),
        ),
        a(
            "Kubernetes own Secret comes back without data",
            limits,
            boxed!(ks_own_metadata),
        ),
        a("HTTP change during plan", limits, boxed!(lp_http_in_plan)),
        a(
            "Kafka produce, fetch, delete records",
            limits,
            boxed!(kafka_data),
        ),
        a(
            "Kafka group membership, member commits",
            limits,
            boxed!(kafka_groups),
        ),
        a(
            "Kafka legacy AlterConfigs, broker configs",
            limits,
            boxed!(kafka_configs),
        ),
        a("Kafka SASL and credential APIs", limits, boxed!(kafka_sasl)),
        a(
            "Kafka topics outside the call's scope",
            limits,
            boxed!(kafka_scope),
        ),
        a("Kafka change during plan", limits, boxed!(kafka_in_plan)),
        a("Kafka wildcard ACL deletes", limits, boxed!(kafka_acls)),
        a(
            "Kafka bootstrap not granted",
            limits,
            boxed!(kafka_ungranted),
        ),
        a(
            "Kafka password handle's value",
            limits,
            boxed!(kafka_password),
        ),
        a("Kafka decoder bombs", limits, boxed!(kafka_bombs)),
        a(
            "Kafka topics auto-created by Metadata",
            limits,
            boxed!(kafka_auto_create),
        ),
        a(
            "NATS streams changed inside a broker call",
            limits,
            boxed!(lp_in_broker),
        ),
        a("NATS data subjects", limits, boxed!(nats_data)),
        a("NATS wildcard subjects", limits, boxed!(nats_wildcards)),
        a(
            "NATS protocol injection in a subject",
            limits,
            boxed!(nats_injection),
        ),
        a(
            "NATS domain prefix not granted",
            limits,
            boxed!(nats_domain),
        ),
        a("NATS endpoint not granted", limits, boxed!(nats_endpoint)),
        a(
            "NATS url parser confusion",
            limits,
            boxed!(nats_url_confusion),
        ),
        a("NATS unknown broker", limits, boxed!(nats_unknown_broker)),
        a(
            "NATS forged credential handle",
            limits,
            boxed!(nats_forged_handle),
        ),
        a(
            "NATS credentials read back from a connection",
            limits,
            boxed!(nats_endpoint_readback),
        ),
        a(
            "NATS secret through a credential parser",
            limits,
            boxed!(nats_creds_parse),
        ),
        a(
            "secret substituted into a payload",
            limits,
            boxed!(secret_in_payload),
        ),
        a(
            "secret value through the secrets import",
            limits,
            boxed!(secrets_handles),
        ),
        a("cloud accounts not granted", limits, boxed!(cloud_accounts)),
        a(
            "cloud methods and paths",
            limits,
            boxed!(cloud_methods_paths),
        ),
        a(
            "secret read back through a cloud API",
            limits,
            boxed!(cloud_reflection),
        ),
        a(
            "AWS operations outside the grant",
            limits,
            boxed!(aws_operations),
        ),
        a(
            "AWS headers overriding the signature",
            limits,
            boxed!(aws_signature_headers),
        ),
        a(
            "AWS other regions and endpoints",
            limits,
            boxed!(aws_regions),
        ),
        a(
            "AWS forged credential handles",
            limits,
            boxed!(aws_forged_handles),
        ),
        a("HTTP to private addresses", limits, boxed!(http_private)),
        a(
            "HTTP redirects and DNS to private",
            limits,
            boxed!(http_redirect_dns),
        ),
        a("secret handle into logs", limits, boxed!(log_handle)),
        a("secret value into logs", limits, boxed!(log_value)),
        a(
            "secret value cut by log truncation",
            limits,
            boxed!(log_truncation),
        ),
        a(
            "secret into outputs and errors",
            limits,
            boxed!(secret_outputs),
        ),
        a("infinite loop", short_timeout, boxed!(infinite_loop)),
        a(
            "infinite loop of host calls",
            short_timeout,
            boxed!(log_flood),
        ),
        a(
            "sleep forever in a host call",
            short_timeout,
            boxed!(sleep_forever),
        ),
        a("unbounded memory growth", limits, boxed!(memory_growth)),
        a("one huge allocation", limits, boxed!(huge_alloc)),
        a(
            "NATS payload over the limit",
            limits,
            boxed!(oversized_payload),
        ),
        a("100 MiB NATS payload", big_memory, boxed!(hostcall_100mib)),
        a("100 MiB log message", big_memory, boxed!(log_100mib)),
        a("15 MiB log message", big_memory, boxed!(log_15mib)),
        a("deep recursion", limits, boxed!(recursion)),
        a(
            "panic in the middle of an apply",
            limits,
            boxed!(panic_mid_apply),
        ),
        a("trap in a pooled instance", limits, boxed!(pooled_trap)),
    ]
}

/// No 8-character piece of `secret` in `text`.
fn leaked(text: &str, secret: &str) -> bool {
    let b = secret.as_bytes();
    b.windows(8)
        .any(|w| std::str::from_utf8(w).is_ok_and(|w| text.contains(w)))
}

/// After an attack: the host still serves (a fresh instance from the same runtime answers
/// `name()` and a granted JetStream request) and nothing leaked.
async fn aftermath(e: &Env, rt: &Runtime) -> R {
    let mut g = fresh(rt).await?;
    match g.name().await {
        Ok(n) if n == "hostile" => {}
        Ok(n) => return Err(format!("a fresh instance answered name() = {n:?}")),
        Err(err) => return Err(format!("a fresh instance failed name(): {err:#}")),
    }
    let v = nats(
        e,
        &mut g,
        json!({"broker": "local"}),
        vec![req("$JS.API.INFO")],
    )
    .await?;
    if v["requests"][0].get("ok").is_none() {
        return Err(format!(
            "a granted JetStream request failed afterwards: {v}"
        ));
    }
    let logs = e.logs.take();
    let seen = std::mem::take(&mut *e.seen.lock().unwrap());
    for (what, secret) in [
        ("the environment canary", &e.canary),
        ("the canary file", &e.file_canary),
        ("secret `locked-token`", &e.token),
        ("secret `other`", &e.other),
        ("secret `quoted`", &e.quoted),
        ("the cloud account's token", &e.cloud_token),
        ("the AWS account's secret access key", &e.aws_secret),
        ("the AWS account's access key id", &e.aws_key_id),
    ] {
        if leaked(&seen, secret) {
            return Err(format!(
                "{what} appeared in what came back to the guest or caller"
            ));
        }
        if leaked(&logs, secret) {
            return Err(format!("{what} appeared in the host's logs"));
        }
    }
    Ok(String::new())
}

fn main() {
    let wasm = hostile_wasm();
    if !wasm.is_file() {
        eprintln!(
            "sandbox: the hostile component {} is missing.\n\
             Build it first: `just sandbox` (or `just test`, or `just hostile`), or\n  \
             cargo build -p eventbus-hostile --target wasm32-wasip2 --release",
            wasm.display()
        );
        std::process::exit(1);
    }
    let canary = random_text("env-canary");
    let cache = workspace_root().join("target/sandbox-cache");
    // SAFETY: no other thread exists yet.
    unsafe {
        std::env::set_var(CANARY_VAR, &canary);
        std::env::set_var(CANARY_SECRET_VAR, &canary);
        std::env::set_var("EVENTBUS_CACHE_DIR", &cache);
    }
    let logs = Logs::capture();

    let tmp = TempDir::new("sandbox");
    let file_canary = random_text("file-canary");
    let canary_file = tmp.path().join("canary.txt");
    std::fs::write(&canary_file, &file_canary).unwrap();
    let token = random_text("token");
    let tripwire = Tripwire::start();
    let env = Env {
        wasm,
        nats: NatsServer::start(),
        ungranted: NatsServer::start(),
        locked: TokenServer::start(&token),
        logs,
        tmp,
        canary,
        file_canary,
        canary_file,
        token,
        other: random_text("other"),
        quoted: format!("{}\"<{}", random_text("q"), random_text("uoted")),
        cloud_token: random_text("cloud-token"),
        aws_key_id: random_text("AKIA").to_ascii_uppercase(),
        aws_secret: random_text("aws-secret"),
        fake: FakeApi::start(tripwire.port),
        kube: kube_secrets::start_api(),
        tripwire,
        seen: Mutex::new(String::new()),
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let attacks = attacks();
    // `cargo test -- --list` and friends: nothing to list, this is one program.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // An optional filter: only attacks whose name contains it (`just sandbox NATS`).
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let (mut n, mut contained, mut escapes) = (0, 0, 0);
    for attack in &attacks {
        if filter.as_deref().is_some_and(|f| !attack.name.contains(f)) {
            continue;
        }
        n += 1;
        let caps = env.caps((attack.limits)());
        let verdict = rt.block_on(async {
            let runtime = Runtime::new(&env.wasm, caps)
                .map_err(|err| format!("the runtime did not start: {err:#}"))?;
            let how = (attack.run)(&env, &runtime).await?;
            aftermath(&env, &runtime).await?;
            Ok::<_, String>(how)
        });
        match verdict {
            Ok(how) => {
                contained += 1;
                println!("contained  {:<46} {how}", attack.name);
            }
            Err(what) => {
                escapes += 1;
                println!("ESCAPE     {:<46} {what}", attack.name);
            }
        }
        let _ = env.logs.take();
        env.seen.lock().unwrap().clear();
    }
    println!("sandbox: {n} attacks, {contained} contained, {escapes} escapes");
    // A filter that matches nothing (say `cargo test --workspace other_test`) is not a failure.
    std::process::exit(if escapes == 0 && (n > 0 || filter.is_some()) {
        0
    } else {
        1
    });
}
