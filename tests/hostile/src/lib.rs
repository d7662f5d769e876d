//! A hostile guest for the sandbox proof (`tests/sandbox.rs`, `just sandbox`).
//!
//! It implements the same world as the real provider, but `driver.create(resource_type,
//! spec)` is an attack chosen by `resource_type`, with its parameters in `spec.config_json`.
//! Every attack reports what it observed as JSON in `outputs_json`, so the host-side test can
//! judge whether anything got through; attacks that are meant to end in a trap (loops,
//! memory, recursion, panics, exit) never return. Everything else answers benignly:
//! `name()` is "hostile", which is what the tests use to prove the host still serves.

pub mod bindings {
    wit_bindgen::generate!({
        path: ["../../wit", "wit"],
        world: "eventbus:hostile/hostile",
        pub_export_macro: true,
        export_macro_name: "export_hostile",
        generate_all,
    });
}

mod kafka;

use bindings::eventbus::iac::capability_types::CapError;
use bindings::eventbus::iac::nats::{Auth, Connection, Endpoint};
use bindings::eventbus::iac::types as wit;
use bindings::eventbus::iac::{cloud, http, log, secrets};
use bindings::exports::eventbus::iac::{driver, provider};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Hostile;

fn s(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A cap-error as the report shows it: which variant, and the host's text.
fn cap(e: CapError) -> Value {
    let (kind, msg) = match e {
        CapError::Denied(m) => ("denied", m),
        CapError::Unavailable(m) => ("unavailable", m),
        CapError::Invalid(m) => ("invalid", m),
        CapError::Unknown(m) => ("unknown", m),
    };
    json!({"err": kind, "message": msg})
}

fn io<T: std::fmt::Debug>(r: std::io::Result<T>) -> Value {
    match r {
        Ok(v) => json!({"ok": format!("{v:?}")}),
        Err(e) => json!({"err": format!("{:?}", e.kind()), "message": e.to_string()}),
    }
}

/// `p.headers` (an object) as a header list.
fn headers(p: &Value) -> Vec<(String, String)> {
    p.get("headers")
        .and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Standard or URL-safe base64, padding optional; None if `s` is not base64 of UTF-8 text.
fn unbase64(s: &str) -> Option<String> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8(out).ok().filter(|t| !t.is_empty())
}

/// Every string in `v`, and what each decodes to if it is base64 or JSON-escaped text: what a
/// guest would do to recover a secret an API reflected back in another encoding.
fn decode_all(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if let Some(t) = unbase64(s) {
                out.push(t);
            }
            if let Ok(Value::String(t)) = serde_json::from_str::<Value>(&format!("\"{s}\"")) {
                out.push(t);
            }
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                decode_all(&inner, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| decode_all(x, out)),
        Value::Object(o) => o.values().for_each(|x| decode_all(x, out)),
        _ => {}
    }
}

/// A cloud/http response as the report shows it, with everything the guest could decode.
fn response(r: cloud::Response) -> Value {
    let body = String::from_utf8_lossy(&r.body).to_string();
    let mut decoded = Vec::new();
    if let Ok(v) = serde_json::from_str::<Value>(&body) {
        decode_all(&v, &mut decoded);
    }
    json!({"status": r.status, "headers": r.headers, "body": body, "decoded": decoded})
}

/// Opens a connection as `p` says: `{"broker": name}` or `{"urls": [...], "token"|"creds"|
/// "nkey"|"password": handle, "domain": d}`.
fn open(p: &Value) -> Result<Connection, CapError> {
    if let Some(b) = p.get("broker").and_then(Value::as_str) {
        return Connection::open_broker(b);
    }
    let auth = if let Some(t) = p.get("token").and_then(Value::as_str) {
        Some(Auth::Token(t.into()))
    } else if let Some(c) = p.get("creds").and_then(Value::as_str) {
        Some(Auth::Creds(c.into()))
    } else if let Some(k) = p.get("nkey").and_then(Value::as_str) {
        Some(Auth::NkeySeed(k.into()))
    } else {
        p.get("password")
            .and_then(Value::as_str)
            .map(|pw| Auth::UserPassword((s(p, "user"), pw.into())))
    };
    Connection::open_endpoint(&Endpoint {
        urls: strings(p, "urls"),
        auth,
        domain: p.get("domain").and_then(Value::as_str).map(String::from),
    })
}

/// Opens a connection, then sends every request in `p.requests` (`subject`, `payload` text or
/// `payload_len` bytes, `timeout_ms`) and reports each answer.
fn nats(p: &Value) -> Value {
    let conn = match open(p) {
        Ok(c) => c,
        Err(e) => return json!({"open": cap(e)}),
    };
    let mut answers = Vec::new();
    for r in p
        .get("requests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let payload = match r.get("payload_len").and_then(Value::as_u64) {
            Some(len) => vec![b'x'; len as usize],
            None => s(r, "payload").into_bytes(),
        };
        let timeout = r.get("timeout_ms").and_then(Value::as_u64).unwrap_or(2000) as u32;
        answers.push(match conn.request(&s(r, "subject"), &payload, timeout) {
            Ok(reply) => json!({"ok": String::from_utf8_lossy(&reply)}),
            Err(e) => cap(e),
        });
    }
    json!({
        "open": {"ok": {
            "broker": conn.broker(),
            "api_prefix": conn.api_prefix(),
            "server_version": conn.server_version(),
            "endpoint": format!("{:?}", conn.endpoint()),
        }},
        "requests": answers,
    })
}

/// The smallest non-zero step a clock shows over `window`, sampled as fast as possible.
fn clock_steps(window: Duration) -> Value {
    let started = Instant::now();
    let (mut mono_min, mut mono_steps, mut mono_last) = (u128::MAX, 0u64, Instant::now());
    let (mut wall_min, mut wall_last) = (u128::MAX, SystemTime::now());
    let mut samples = 0u64;
    while started.elapsed() < window && samples < 50_000_000 {
        samples += 1;
        let now = Instant::now();
        let d = now.duration_since(mono_last).as_nanos();
        if d > 0 {
            mono_min = mono_min.min(d);
            mono_steps += 1;
        }
        mono_last = now;
        let wall = SystemTime::now();
        if let Ok(d) = wall.duration_since(wall_last)
            && d.as_nanos() > 0
        {
            wall_min = wall_min.min(d.as_nanos());
        }
        wall_last = wall;
    }
    let wall_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    use bindings::wasi::clocks::{monotonic_clock, wall_clock};
    let res = wall_clock::resolution();
    json!({
        "samples": samples,
        "monotonic_min_step_ns": mono_min as u64,
        "monotonic_steps": mono_steps,
        "wall_min_step_ns": wall_min as u64,
        "wall_now_subsec_ns": wall_now.subsec_nanos(),
        "monotonic_resolution_ns": monotonic_clock::resolution(),
        "monotonic_now_ns": monotonic_clock::now(),
        "wall_resolution_ns": res.seconds * 1_000_000_000 + u64::from(res.nanoseconds),
    })
}

#[inline(never)]
fn recurse(depth: u64, acc: &mut [u8; 256]) -> u64 {
    let mut frame = [0u8; 256];
    frame[(depth % 256) as usize] = depth as u8;
    black_box(&mut frame);
    acc[0] = acc[0].wrapping_add(frame[(depth % 256) as usize]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse(depth + 1, black_box(acc)) + u64::from(frame[0])
}

fn level(name: &str) -> log::Level {
    match name {
        "trace" => log::Level::Trace,
        "debug" => log::Level::Debug,
        "warn" => log::Level::Warn,
        "error" => log::Level::Error,
        _ => log::Level::Info,
    }
}

fn attack(name: &str, p: &Value) -> Result<Value, wit::ProviderError> {
    Ok(match name {
        // ---- ambient authority through WASI
        "env" => json!({
            "vars": std::env::vars().collect::<Vec<_>>(),
            "var": std::env::var(s(p, "var")).ok(),
            "args": std::env::args().collect::<Vec<_>>(),
            "cwd": io(std::env::current_dir()),
        }),
        "fs-read" => {
            let mut out = serde_json::Map::new();
            for path in strings(p, "paths") {
                out.insert(
                    path.clone(),
                    json!({
                        "read_dir": io(std::fs::read_dir(&path).map(|d| d.count())),
                        "read": io(std::fs::read_to_string(&path)),
                        "metadata": io(std::fs::metadata(&path).map(|m| m.len())),
                    }),
                );
            }
            Value::Object(out)
        }
        "fs-write" => {
            let mut out = serde_json::Map::new();
            for path in strings(p, "paths") {
                out.insert(
                    path.clone(),
                    json!({
                        "write": io(std::fs::write(&path, s(p, "content"))),
                        "create_dir": io(std::fs::create_dir_all(format!("{path}.d"))),
                    }),
                );
            }
            Value::Object(out)
        }
        "clock" => clock_steps(Duration::from_millis(n(p, "window_ms").max(1))),
        "sockets" => {
            let mut tcp = Vec::new();
            for addr in strings(p, "tcp") {
                tcp.push(json!({"addr": addr, "connect": io(std::net::TcpStream::connect(addr.as_str()))}));
            }
            json!({
                "tcp": tcp,
                "listen": io(std::net::TcpListener::bind("127.0.0.1:0")),
                "udp_bind": io(std::net::UdpSocket::bind("0.0.0.0:0")),
                "udp_send": io(std::net::UdpSocket::bind("127.0.0.1:0")
                    .and_then(|u| u.send_to(b"hi", s(p, "udp").as_str()))),
                "dns": io(std::net::ToSocketAddrs::to_socket_addrs(&(s(p, "host").as_str(), 80))
                    .map(|a| a.collect::<Vec<_>>())),
            })
        }
        "stdio" => {
            use std::io::{Read, Write};
            let canary = s(p, "canary");
            println!("stdout {canary}");
            eprintln!("stderr {canary}");
            let out = std::io::stdout().flush();
            let mut buf = String::new();
            json!({
                "flush": io(out),
                "stdin": io(std::io::stdin().read_to_string(&mut buf)),
                "stdin_text": buf,
            })
        }
        "exit" => std::process::exit(n(p, "code") as i32),

        // ---- the capability imports
        "nats" => nats(p),
        "cloud" => {
            let mut out = Vec::new();
            for c in p
                .get("calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let req = cloud::Request {
                    method: s(c, "method"),
                    path: s(c, "path"),
                    headers: headers(c),
                    body: s(c, "body").into_bytes(),
                };
                out.push(match cloud::call(&s(c, "account"), &req) {
                    Ok(r) => response(r),
                    Err(e) => cap(e),
                });
            }
            Value::Array(out)
        }
        "http" => {
            let mut out = Vec::new();
            for url in strings(p, "urls") {
                let req = http::Request {
                    method: p
                        .get("method")
                        .and_then(Value::as_str)
                        .unwrap_or("GET")
                        .into(),
                    url: url.clone(),
                    headers: headers(p),
                    body: vec![],
                };
                out.push(match http::fetch(&req) {
                    Ok(r) => json!({"url": url, "response": response(r)}),
                    Err(e) => json!({"url": url, "result": cap(e)}),
                });
            }
            Value::Array(out)
        }
        "secrets" => {
            let named: Vec<Value> = strings(p, "named")
                .iter()
                .map(|name| match secrets::named(name) {
                    Ok(h) => json!({"name": name, "handle": h}),
                    Err(e) => json!({"name": name, "result": cap(e)}),
                })
                .collect();
            let generated: Vec<Value> = strings(p, "generate")
                .iter()
                .map(|name| match secrets::generate(name, 32) {
                    Ok(h) => json!({"name": name, "handle": h}),
                    Err(e) => json!({"name": name, "result": cap(e)}),
                })
                .collect();
            json!({"named": named, "generated": generated})
        }
        "log" => {
            for m in p
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let message = format!("{}{}", "x".repeat(n(m, "pad") as usize), s(m, "message"));
                let fields: Vec<(String, String)> = m
                    .get("fields")
                    .and_then(Value::as_object)
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                log::log(level(&s(m, "level")), &message, &fields);
            }
            json!({"logged": true})
        }
        "log-huge" => {
            let message = "x".repeat(n(p, "len") as usize);
            log::log(log::Level::Error, &message, &[]);
            json!({"logged": message.len()})
        }
        "outputs" => {
            // Everything the guest can get hold of about a secret, written into outputs and
            // marked not sensitive.
            let mut got = serde_json::Map::new();
            for name in strings(p, "named") {
                let v = match secrets::named(&name) {
                    Ok(h) => Value::String(h),
                    Err(e) => cap(e),
                };
                got.insert(name, v);
            }
            got.insert(
                "given".into(),
                p.get("given").cloned().unwrap_or(Value::Null),
            );
            let got = Value::Object(got);
            if p.get("as_error").and_then(Value::as_bool) == Some(true) {
                return Err(wit::ProviderError::Internal(format!("outputs {got}")));
            }
            json!({"secrets": got})
        }

        // ---- resource exhaustion and crashes
        "loop" => {
            let mut i = 0u64;
            loop {
                i = black_box(i.wrapping_add(1));
            }
        }
        "log-loop" => loop {
            log::log(log::Level::Trace, "spin", &[]);
        },
        "sleep" => {
            std::thread::sleep(Duration::from_secs(n(p, "secs").max(1)));
            json!({"slept": true})
        }
        "memory" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[hoard.len() % (1 << 20)] = 1;
                hoard.push(black_box(chunk));
            }
        }
        "alloc-huge" => {
            let v: Vec<u8> = Vec::with_capacity(n(p, "bytes") as usize);
            json!({"capacity": black_box(v).capacity()})
        }
        "recursion" => {
            let mut acc = [0u8; 256];
            json!({"depth": recurse(0, &mut acc)})
        }
        "panic-mid-apply" => {
            let conn = Connection::open_broker(&s(p, "broker"))
                .map_err(|e| wit::ProviderError::Transient(cap(e).to_string()))?;
            let subject = format!("{}.STREAM.CREATE.{}", conn.api_prefix(), s(p, "stream"));
            let body = json!({"name": s(p, "stream"), "subjects": [format!("{}.>", s(p, "stream").to_lowercase())]});
            let reply = conn.request(&subject, body.to_string().as_bytes(), 5000);
            log::log(log::Level::Info, "stream created, now crashing", &[]);
            panic!(
                "boom in the middle of an apply (after {:?}); canary {}",
                reply.map(|r| r.len()),
                s(p, "canary")
            );
        }
        "trap" => {
            // A guest's own `unreachable`: the simplest trap.
            #[cfg(target_arch = "wasm32")]
            core::arch::wasm32::unreachable();
            #[cfg(not(target_arch = "wasm32"))]
            unreachable!()
        }
        "return-huge" => json!({"blob": "y".repeat(n(p, "len") as usize)}),
        "kafka" => kafka::kafka(p),
        "bus" => kafka::bus(p),
        "benign" => json!({"ok": true}),
        other => {
            return Err(wit::ProviderError::Unimplemented(format!(
                "no attack {other:?}"
            )));
        }
    })
}

/// An attack carried in a resource's config (`{"attack": NAME, "params": {...}, ...}`), so the
/// host sees a real resource type and name and grants the call as it would that resource's.
fn carried(config_json: &str) -> Option<(String, Value)> {
    let v: Value = serde_json::from_str(config_json).ok()?;
    Some((v.get("attack")?.as_str()?.to_string(), v["params"].clone()))
}

/// Runs a carried attack from an export that has no outputs to put its report in: the report
/// comes back as an `internal` error, `report: <json>`.
fn report_through<T>(config_json: &str) -> Result<T, wit::ProviderError> {
    let Some((name, params)) = carried(config_json) else {
        return unimplemented("do anything without an attack");
    };
    let report = attack(&name, &params)?;
    Err(wit::ProviderError::Internal(format!("report: {report}")))
}

fn unimplemented<T>(what: &str) -> Result<T, wit::ProviderError> {
    Err(wit::ProviderError::Unimplemented(format!(
        "the hostile component does not {what}"
    )))
}

impl provider::Guest for Hostile {
    fn initialize(_config_json: String) -> Result<(), wit::ProviderError> {
        Ok(())
    }
    fn name() -> String {
        "hostile".into()
    }
    fn version() -> String {
        "0.0.0".into()
    }
    fn capabilities() -> wit::ProviderCapabilities {
        wit::ProviderCapabilities {
            capabilities: vec![],
            canonical_keys: vec![],
            compute_plan_version: "1".into(),
        }
    }
    fn validate(desired: Vec<wit::ResourceSpec>) -> Result<(), wit::ProviderError> {
        match desired.first() {
            Some(d) if carried(&d.config_json).is_some() => report_through(&d.config_json),
            _ => Ok(()),
        }
    }
    fn plan(
        desired: Vec<wit::ResourceSpec>,
        _current: Vec<wit::ResourceState>,
    ) -> Result<wit::IacPlan, wit::ProviderError> {
        report_through(
            &desired
                .first()
                .map(|d| d.config_json.clone())
                .unwrap_or_default(),
        )
    }
    fn destroy(_refs: Vec<wit::ResourceRef>) -> Result<wit::DestroyResult, wit::ProviderError> {
        unimplemented("destroy")
    }
    /// The attack rides in the first ref's provider id.
    fn status(refs: Vec<wit::ResourceRef>) -> Result<Vec<wit::ResourceStatus>, wit::ProviderError> {
        report_through(
            &refs
                .first()
                .map(|r| r.provider_id.clone())
                .unwrap_or_default(),
        )
    }
    fn detect_drift(
        _refs: Vec<wit::ResourceRef>,
        specs: Vec<wit::ResourceSpec>,
    ) -> Result<Vec<wit::DriftResult>, wit::ProviderError> {
        report_through(
            &specs
                .first()
                .map(|s| s.config_json.clone())
                .unwrap_or_default(),
        )
    }
    fn import(
        _provider_id: String,
        _resource_type: String,
    ) -> Result<wit::ResourceState, wit::ProviderError> {
        unimplemented("import")
    }
    fn resolve_sizing(
        _resource_type: String,
        _size: String,
        _hints: Option<wit::ResourceHints>,
    ) -> Result<wit::ProviderSizing, wit::ProviderError> {
        unimplemented("size")
    }
    fn bootstrap_state_backend(
        _config_json: String,
    ) -> Result<wit::BootstrapResult, wit::ProviderError> {
        unimplemented("bootstrap")
    }
    fn schema(_resource_type: String) -> Result<String, wit::ProviderError> {
        Ok("{}".into())
    }
}

impl driver::Guest for Hostile {
    /// The attack named by `resource_type`, with `spec.config_json` as its parameters.
    fn create(
        resource_type: String,
        spec: wit::ResourceSpec,
    ) -> Result<wit::ResourceOutput, wit::ProviderError> {
        let (name, params) = carried(&spec.config_json).unwrap_or_else(|| {
            let params = serde_json::from_str(&spec.config_json).unwrap_or(Value::Null);
            (resource_type.clone(), params)
        });
        let report = attack(&name, &params)?;
        Ok(wit::ResourceOutput {
            name: spec.name,
            resource_type,
            provider_id: "hostile".into(),
            outputs_json: report.to_string(),
            sensitive: vec![("token".into(), false)],
            status: "running".into(),
        })
    }
    /// The attack rides in the ref's provider id.
    fn read(
        _resource_type: String,
        r: wit::ResourceRef,
    ) -> Result<wit::ResourceOutput, wit::ProviderError> {
        report_through(&r.provider_id)
    }
    fn update(
        _resource_type: String,
        _r: wit::ResourceRef,
        spec: wit::ResourceSpec,
    ) -> Result<wit::ResourceOutput, wit::ProviderError> {
        report_through(&spec.config_json)
    }
    fn delete(_resource_type: String, _r: wit::ResourceRef) -> Result<(), wit::ProviderError> {
        unimplemented("delete")
    }
    fn diff(
        _resource_type: String,
        desired: wit::ResourceSpec,
        _current: wit::ResourceOutput,
    ) -> Result<wit::DiffResult, wit::ProviderError> {
        report_through(&desired.config_json)
    }
    fn scale(
        _resource_type: String,
        _r: wit::ResourceRef,
        _replicas: i32,
    ) -> Result<wit::ResourceOutput, wit::ProviderError> {
        unimplemented("scale")
    }
    fn health_check(
        _resource_type: String,
        _r: wit::ResourceRef,
    ) -> Result<wit::HealthResult, wit::ProviderError> {
        unimplemented("check health")
    }
    fn sensitive_keys(_resource_type: String) -> Result<Vec<String>, wit::ProviderError> {
        Ok(vec![])
    }
    fn troubleshoot(
        _resource_type: String,
        _r: wit::ResourceRef,
        _failure_msg: String,
    ) -> Result<Vec<wit::Diagnostic>, wit::ProviderError> {
        Ok(vec![])
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export_hostile!(Hostile with_types_in bindings);
