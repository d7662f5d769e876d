//! Benchmarks (`just bench`): our CLI and plugin side by side with what the broker allows, on
//! one machine and one local nats-server started here (JetStream, temp store dir; the
//! benchmark's streams use `storage: memory` unless `BENCH_STORAGE=file`).
//!
//! The CLI is `eventbus_bin()`: `target/debug/eventbus`, or `EVENTBUS_BIN`, which `just bench`
//! points at the release build (`target/release/eventbus`, what `just package` ships) while
//! this binary is built with `--release` too.
//!
//! 1. Apply of N streams x 6 consumers through `eventbus apply` against
//!    (a) the practical limit: the same JetStream API requests (captured from our own apply,
//!    byte for byte) replayed by native async-nats on one connection with the same
//!    concurrency as `--parallelism`, every consumer after its stream; and (b) the same
//!    requests with one new NATS connection per resource (as terraform-provider-jetstream).
//!    Everything is deleted between runs.
//! 2. A no-op `eventbus plan` of the same resources (everything in sync).
//! 3. Start-up: the plugin binary from exec to its first answered Capabilities, cold and warm
//!    component cache; `eventbus validate` on the pilot.
//! 4. The host-guest boundary: one driver `diff` through Runtime + Guest::diff, per call,
//!    against the same diff called natively (`eventbus_guest::drivers::diff`).
//! 5. Peak host RSS of the CLI (VmHWM polled from /proc, and the kernel's ru_maxrss) and peak
//!    guest linear memory (found in-process by bisecting the per-instance memory limit).
//! 6. Side by side with OpenTofu and terraform-provider-jetstream (scripts/tofu.sh builds both;
//!    `BENCH_TOFU`, `BENCH_TOFU_PROVIDER`, else `.cache/tofu/`; left out when absent): the
//!    pilot and each size as Terraform files generated from the same infra, on the same
//!    server: apply from empty, no-op plans, an apply of one changed field; wall and CPU.
//!
//! Timings are printed, never asserted. `cargo test` runs a tiny version (N=5, few calls) to
//! keep the harness alive; `BENCH_FULL=1` (what `just bench` sets) runs N=100 and N=1000.
//! Knobs: `BENCH_SMALL=1`, `BENCH_N=100,1000`, `BENCH_PARALLELISM` (default 8, the CLI's
//! default), `BENCH_STORAGE=memory|file`, `BENCH_CALLS` (boundary calls), `BENCH_REPEAT`,
//! `BENCH_TOFU_N` (sizes for OpenTofu, default the same; 0: the pilot only), `BENCH_TOFU=0`.
//! The last line is `bench: apply/limit=<r> noop-plan-7000=<t>ms boundary=<t>us
//! warm-start=<t>ms tofu/ours-apply=<x> tofu/ours-plan=<y>`.

use bytes::Bytes;
use eventbus_host::caps::Caps;
use eventbus_host::caps::nats::NatsCap;
use eventbus_host::caps::secrets::SecretStore;
use eventbus_host::runtime::limits::Limits;
use eventbus_host::runtime::{Guest, Runtime, wit};
use eventbus_host::wfctl::proto::go_plugin;
use eventbus_host::wfctl::proto::go_plugin::grpc_controller_client::GrpcControllerClient;
use eventbus_host::wfctl::proto::iac as pb;
use eventbus_host::wfctl::proto::iac::ia_c_provider_required_client::IaCProviderRequiredClient;
use eventbus_tests::{NatsServer, Owned, TempDir, eventbus_bin, pilot_path, workspace_root};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Endpoint, Uri};

// ---------------------------------------------------------------------------------------------
// Settings

struct Opts {
    full: bool,
    sizes: Vec<usize>,
    per_stream: usize,
    parallelism: usize,
    storage: String,
    calls: usize,
    warm_starts: usize,
    plan_repeats: usize,
    repeat_override: Option<usize>,
    /// Sizes of the side-by-side with OpenTofu (the pilot always runs first).
    tofu_sizes: Vec<usize>,
}

impl Opts {
    fn from_env() -> Opts {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let num = |k: &str| var(k).and_then(|v| v.trim().parse::<usize>().ok());
        let small = var("BENCH_SMALL").is_some_and(|v| v != "0");
        let full = !small && var("BENCH_FULL").is_some_and(|v| v != "0");
        let list = |k: &str| {
            var(k).map(|v| {
                v.split(',')
                    .filter_map(|s| s.trim().parse().ok())
                    .collect::<Vec<usize>>()
            })
        };
        let sizes = list("BENCH_N")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| if full { vec![100, 1000] } else { vec![5] });
        // BENCH_TOFU_N=0: the pilot only.
        let tofu_sizes = list("BENCH_TOFU_N")
            .map(|v| v.into_iter().filter(|&n| n > 0).collect())
            .unwrap_or_else(|| sizes.clone());
        Opts {
            full,
            sizes,
            per_stream: 6,
            parallelism: num("BENCH_PARALLELISM").unwrap_or(8).max(1),
            storage: var("BENCH_STORAGE").unwrap_or_else(|| "memory".into()),
            calls: num("BENCH_CALLS")
                .unwrap_or(if full { 20_000 } else { 200 })
                .max(10),
            warm_starts: if full { 7 } else { 2 },
            plan_repeats: if full { 3 } else { 1 },
            repeat_override: num("BENCH_REPEAT"),
            tofu_sizes,
        }
    }

    /// Timed repetitions of the apply comparison at `n` streams (the median is reported).
    fn repeats(&self, n: usize) -> usize {
        self.repeat_override
            .unwrap_or(if self.full && n * (self.per_stream + 1) <= 2000 {
                3
            } else {
                1
            })
            .max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Every failure of the harness itself (not a slow number) fails the run. It panics rather
/// than exiting, so the nats-server and the temp dirs are dropped (cleaned up) on the way out.
fn fail(msg: impl std::fmt::Display) -> ! {
    println!("bench: FAILED: {msg}");
    panic!("bench: FAILED: {msg}");
}

/// How the native comparison (the guest crate linked into this binary) was compiled:
/// `just bench` builds it at the component's own opt-level and says so in BENCH_GUEST_OPT.
fn native_label() -> String {
    if !native::ENABLED {
        return "not measured: build with --features bench-native".into();
    }
    if !cfg!(debug_assertions) {
        // The workspace's release profile: the guest crate at the component's own opt-level.
        return "release profile: guest crate at opt-level s, its deps at 3".into();
    }
    match std::env::var("BENCH_GUEST_OPT") {
        Ok(o) if !o.is_empty() => format!("guest crate at opt-level {o}, its deps at 2"),
        _ => "guest crate at opt-level 0, dev profile".into(),
    }
}

/// How the CLI under test was built, from where it lives (`EVENTBUS_BIN` names another).
fn cli_build() -> &'static str {
    let bin = eventbus_bin();
    let parent = bin.parent().and_then(Path::file_name);
    match parent.and_then(|p| p.to_str()) {
        Some("release") => "release build",
        Some("debug") => "debug build: `just bench` measures the release build",
        _ => "given by EVENTBUS_BIN",
    }
}

/// How this benchmark binary (the in-process boundary, re-enactments, native baselines) was
/// built.
fn in_process_build() -> &'static str {
    if cfg!(debug_assertions) {
        "dev profile (our crates at opt-level 0, dependencies at 2)"
    } else {
        "release profile"
    }
}

fn component_wasm() -> PathBuf {
    match std::env::var_os("EVENTBUS_COMPONENT") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join("target/wasm32-wasip2/release/eventbus_guest.wasm"),
    }
}

/// The benchmark's infra.yaml (JSON is YAML): one self-hosted broker, `n` streams with
/// `per` consumers each, shaped like the pilot's.
fn infra(n: usize, per: usize, storage: &str) -> String {
    let mut modules = vec![
        json!({"name": "eventbus", "type": "iac.provider", "config": {"provider": "eventbus"}}),
        json!({"name": "bench-broker", "type": "infra.eventbus", "config": {"iac_provider": "eventbus", "provider": "nats", "deploy_target": "self_hosted", "url": "${NATS_URL}"}}),
    ];
    for s in 0..n {
        modules.push(json!({"name": format!("s{s}"), "type": "infra.eventbus.stream", "config": {
            "iac_provider": "eventbus", "broker_ref": "bench-broker", "name": format!("BENCH_{s}"),
            "subjects": [format!("bench.{s}.>")], "retention_policy": "limits", "max_age": "168h", "storage": storage}}));
        for c in 0..per {
            modules.push(json!({"name": format!("s{s}-c{c}"), "type": "infra.eventbus.consumer", "config": {
                "iac_provider": "eventbus", "stream_name": format!("BENCH_{s}"), "name": format!("c{c}"),
                "filter_subject": format!("bench.{s}.e{c}"), "ack_policy": "explicit", "max_deliver": 5}}));
        }
    }
    serde_json::to_string_pretty(&json!({"modules": modules})).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Running a process and measuring it: wall time from exec to reaped, VmHWM polled from
// /proc/<pid>/status while it runs, and the kernel's own peak (ru_maxrss from wait4).

struct Measured {
    wall: Duration,
    code: i32,
    stdout: String,
    stderr: String,
    /// Highest VmHWM seen while polling /proc/<pid>/status every 5 ms (KiB).
    hwm_kb: u64,
    /// ru_maxrss from wait4 (KiB): the exact peak RSS.
    maxrss_kb: u64,
    /// User + system CPU time of the process (from wait4), ms.
    cpu_ms: f64,
}

fn tv_ms(t: libc::timeval) -> f64 {
    t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3
}

/// User + system CPU of any process so far, from /proc/<pid>/stat (clock ticks of 10 ms).
fn proc_cpu_ms(pid: i32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Safety: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) * 1e3 / hz
}

/// User + system CPU of this process (every thread: the baselines' client work), ms.
fn self_cpu_ms() -> f64 {
    // Safety: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime)
}

fn vm_hwm_kb(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn run_measured(mut cmd: Command, timeout: Duration) -> Measured {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd
        .owned()
        .spawn()
        .unwrap_or_else(|e| fail(format!("cannot start {cmd:?}: {e}")));
    let pid = child.id() as i32;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    // This thread reaps the child (so std's Child is never waited on).
    let waiter = std::thread::spawn(move || {
        let mut status: libc::c_int = 0;
        // Safety: plain wait4 on our own child with valid out-pointers.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
            if r == pid
                || (r == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR))
            {
                break;
            }
        }
        let end = Instant::now();
        done2.store(true, Ordering::SeqCst);
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        };
        (
            end,
            code,
            ru.ru_maxrss as u64,
            tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime),
        )
    });
    let mut hwm = 0u64;
    let mut killed = false;
    while !done.load(Ordering::SeqCst) {
        if let Some(k) = vm_hwm_kb(pid) {
            hwm = hwm.max(k);
        }
        if !killed && t0.elapsed() > timeout {
            // Safety: SIGKILL to our own child, not yet reaped (the waiter has not returned).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let (end, code, maxrss_kb, cpu_ms) = waiter.join().unwrap();
    drop(child);
    let mut stderr = err_t.join().unwrap_or_default();
    if killed {
        stderr.push_str(&format!("\n[bench: killed after {timeout:?}]"));
    }
    Measured {
        wall: end - t0,
        code,
        stdout: out_t.join().unwrap_or_default(),
        stderr,
        hwm_kb: hwm,
        maxrss_kb,
        cpu_ms,
    }
}

/// The CLI with the benchmark's environment (server URL, warm component cache).
fn cli(env: &Env, file: &Path, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(eventbus_bin());
    cmd.arg("-f").arg(file).arg("--state").arg(state).args(args);
    cmd.env("NATS_URL", &env.url)
        .env("EVENTBUS_CACHE_DIR", &env.cache)
        .env_remove("EVENTBUS_LOG");
    cmd
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// The shared environment

struct Env {
    url: String,
    /// The nats-server's pid (its CPU time is read from /proc around each run).
    server_pid: i32,
    cache: PathBuf,
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
}

impl Env {
    fn js(&self, subject: &str, body: &Value) -> Value {
        let payload: Bytes = if body.is_null() {
            Bytes::new()
        } else {
            serde_json::to_vec(body).unwrap().into()
        };
        let client = self.client.clone();
        let s = subject.to_string();
        let msg = self
            .rt
            .block_on(async move {
                tokio::time::timeout(Duration::from_secs(30), client.request(s, payload)).await
            })
            .unwrap_or_else(|_| fail(format!("{subject}: no reply")))
            .unwrap_or_else(|e| fail(format!("{subject}: {e}")));
        serde_json::from_slice(&msg.payload)
            .unwrap_or_else(|e| fail(format!("{subject}: reply not JSON: {e}")))
    }

    /// (streams, consumers) on the server, from `$JS.API.INFO`.
    fn counts(&self) -> (u64, u64) {
        let info = self.js("$JS.API.INFO", &Value::Null);
        (
            info["streams"].as_u64().unwrap_or(0),
            info["consumers"].as_u64().unwrap_or(0),
        )
    }

    fn expect_counts(&self, what: &str, streams: usize, consumers: usize) {
        let got = self.counts();
        if got != (streams as u64, consumers as u64) {
            fail(format!(
                "{what}: expected {streams} streams and {consumers} consumers on the server, found {} and {}",
                got.0, got.1
            ));
        }
    }

    /// Deletes every stream (and so every consumer) with plain API requests.
    fn wipe(&self) {
        let mut names: Vec<String> = Vec::new();
        loop {
            let page = self.js("$JS.API.STREAM.NAMES", &json!({"offset": names.len()}));
            let got: Vec<String> = page["streams"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            if got.is_empty() {
                break;
            }
            names.extend(got);
            if names.len() as u64 >= page["total"].as_u64().unwrap_or(0) {
                break;
            }
        }
        let client = self.client.clone();
        self.rt.block_on(async move {
            futures::stream::iter(names)
                .for_each_concurrent(16, |n| {
                    let client = client.clone();
                    async move {
                        let _ = client
                            .request(format!("$JS.API.STREAM.DELETE.{n}"), Bytes::new())
                            .await;
                    }
                })
                .await;
        });
        self.expect_counts("after deleting everything", 0, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// The baselines: the captured requests replayed natively

/// One resource's requests (run in order), and the jobs its success unlocks.
struct Job {
    reqs: Vec<(String, Bytes)>,
    then: Vec<usize>,
}

struct Replay {
    jobs: Vec<Job>,
    roots: Vec<usize>,
    requests: usize,
    kinds: BTreeMap<String, usize>,
}

/// `$JS.API.CONSUMER.CREATE.S.C` -> `CONSUMER.CREATE`.
fn api_kind(subject: &str) -> String {
    let rest = subject.strip_prefix("$JS.API.").unwrap_or(subject);
    let parts: Vec<&str> = rest.split('.').collect();
    match parts.first() {
        Some(&"STREAM") | Some(&"CONSUMER") if parts.len() >= 2 => {
            format!("{}.{}", parts[0], parts[1])
        }
        _ => parts.first().map(|s| s.to_string()).unwrap_or_default(),
    }
}

/// Groups the captured traffic by resource: account-level requests (INFO: the broker's check)
/// first, then one job per stream, then its consumers' jobs once the stream's job is done.
fn build_replay(captured: &[(String, Bytes)]) -> Replay {
    let mut jobs: Vec<Job> = vec![Job {
        reqs: vec![],
        then: vec![],
    }];
    let mut streams: HashMap<String, usize> = HashMap::new();
    let mut consumers: HashMap<(String, String), usize> = HashMap::new();
    let mut kinds = BTreeMap::new();
    for (subject, payload) in captured {
        *kinds.entry(api_kind(subject)).or_insert(0) += 1;
        let rest = subject.strip_prefix("$JS.API.").unwrap_or(subject);
        let parts: Vec<&str> = rest.split('.').collect();
        let job = match parts.as_slice() {
            ["STREAM", _op, stream] => *streams.entry(stream.to_string()).or_insert_with(|| {
                jobs.push(Job {
                    reqs: vec![],
                    then: vec![],
                });
                let j = jobs.len() - 1;
                jobs[0].then.push(j);
                j
            }),
            ["CONSUMER", _op, stream, consumer, ..] => {
                let key = (stream.to_string(), consumer.to_string());
                match consumers.get(&key) {
                    Some(&j) => j,
                    None => {
                        jobs.push(Job {
                            reqs: vec![],
                            then: vec![],
                        });
                        let j = jobs.len() - 1;
                        consumers.insert(key, j);
                        match streams.get(*stream) {
                            Some(&s) => jobs[s].then.push(j),
                            None => jobs[0].then.push(j),
                        }
                        j
                    }
                }
            }
            _ => 0,
        };
        jobs[job].reqs.push((subject.clone(), payload.clone()));
    }
    let roots = if jobs[0].reqs.is_empty() {
        std::mem::take(&mut jobs[0].then)
    } else {
        vec![0]
    };
    Replay {
        jobs,
        roots,
        requests: captured.len(),
        kinds,
    }
}

struct ReplayResult {
    wall: Duration,
    errors: Vec<String>,
    /// Per request, microseconds (connect included for per-connection).
    latencies_us: Vec<f64>,
}

async fn run_job(
    url: String,
    shared: Option<async_nats::Client>,
    reqs: Vec<(String, Bytes)>,
) -> (Vec<f64>, Vec<String>) {
    let mut lat = Vec::with_capacity(reqs.len());
    let mut errors = Vec::new();
    let t = Instant::now();
    let client = match shared {
        Some(c) => c,
        None => match async_nats::connect(url.as_str()).await {
            Ok(c) => c,
            Err(e) => return (lat, vec![format!("connect: {e}")]),
        },
    };
    let mut first = Some(t);
    for (subject, payload) in reqs {
        let t = first.take().unwrap_or_else(Instant::now);
        match client.request(subject.clone(), payload).await {
            Ok(msg) => {
                lat.push(t.elapsed().as_secs_f64() * 1e6);
                match serde_json::from_slice::<Value>(&msg.payload) {
                    Ok(v) if v.get("error").is_some() => {
                        errors.push(format!("{subject}: {}", v["error"]))
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(format!("{subject}: reply not JSON: {e}")),
                }
            }
            Err(e) => errors.push(format!("{subject}: {e}")),
        }
    }
    (lat, errors)
}

/// Runs the jobs with at most `parallelism` in flight; a job's followers are queued (FIFO,
/// as the CLI's semaphore is) when it finishes. `per_connection`: every job opens its own
/// connection, as terraform-provider-jetstream does per resource.
fn replay(env: &Env, plan: &Replay, parallelism: usize, per_connection: bool) -> ReplayResult {
    let url = env.url.clone();
    env.rt.block_on(async {
        let t0 = Instant::now();
        let shared = if per_connection {
            None
        } else {
            Some(
                async_nats::connect(url.as_str())
                    .await
                    .unwrap_or_else(|e| fail(format!("connect: {e}"))),
            )
        };
        let mut ready: VecDeque<usize> = plan.roots.iter().copied().collect();
        let mut running = tokio::task::JoinSet::new();
        let mut errors = Vec::new();
        let mut latencies = Vec::with_capacity(plan.requests);
        loop {
            while running.len() < parallelism {
                let Some(j) = ready.pop_front() else { break };
                let reqs = plan.jobs[j].reqs.clone();
                let fut = run_job(url.clone(), shared.clone(), reqs);
                running.spawn(async move { (j, fut.await) });
            }
            let Some(done) = running.join_next().await else {
                break;
            };
            let (j, (lat, errs)) = done.unwrap_or_else(|e| fail(format!("replay task: {e}")));
            latencies.extend(lat);
            if errs.is_empty() {
                ready.extend(plan.jobs[j].then.iter().copied());
            }
            errors.extend(errs);
        }
        ReplayResult {
            wall: t0.elapsed(),
            errors,
            latencies_us: latencies,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The plugin: exec -> handshake -> dial -> first Capabilities answered

struct Start {
    handshake: Duration,
    capabilities: Duration,
}

fn plugin_start(env: &Env, cache: &Path) -> Start {
    let dir = TempDir::new("bench-plugin");
    let mut cmd = Command::new(eventbus_bin());
    cmd.current_dir(dir.path())
        .env("WORKFLOW_PLUGIN", "workflow-external-plugin-v1")
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env("EVENTBUS_CACHE_DIR", cache)
        .env("EVENTBUS_SECRETS_FILE", dir.path().join("secrets.json"))
        .env("EVENTBUS_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd
        .owned()
        .spawn()
        .unwrap_or_else(|e| fail(format!("start the plugin: {e}")));
    let mut err = child.stderr.take().unwrap();
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut line = String::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        let _ = child.kill();
        let _ = child.wait();
        fail(format!(
            "the plugin printed no handshake; stderr:\n{}",
            err_t.join().unwrap_or_default()
        ));
    }
    let handshake = t0.elapsed();
    let parts: Vec<String> = line.trim_end().split('|').map(String::from).collect();
    if parts.len() != 5 || parts[2] != "unix" {
        let _ = child.kill();
        let _ = child.wait();
        fail(format!("unexpected handshake {line:?}"));
    }
    let path = PathBuf::from(&parts[3]);
    let result = env.rt.block_on(async {
        let channel = Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| format!("dial: {e}"))?;
        let caps = IaCProviderRequiredClient::new(channel.clone())
            .capabilities(pb::CapabilitiesRequest {})
            .await
            .map_err(|e| format!("Capabilities: {e}"))?;
        let capabilities = t0.elapsed();
        if caps.into_inner().capabilities.is_empty() {
            return Err("Capabilities answered with no resource types".to_string());
        }
        let _ = GrpcControllerClient::new(channel)
            .shutdown(go_plugin::Empty {})
            .await;
        Ok(capabilities)
    });
    // Shutdown makes it exit; make sure, and reap it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
    let stderr = err_t.join().unwrap_or_default();
    match result {
        Ok(capabilities) => Start {
            handshake,
            capabilities,
        },
        Err(e) => fail(format!("plugin start: {e}; stderr:\n{stderr}")),
    }
}

// ---------------------------------------------------------------------------------------------
// In-process: the component through Runtime/Guest

fn runtime(limits: Limits) -> Runtime {
    let caps = Arc::new(Caps::new(
        NatsCap::default(),
        SecretStore::default(),
        limits,
    ));
    Runtime::new(&component_wasm(), caps).unwrap_or_else(|e| fail(format!("Runtime::new: {e:#}")))
}

async fn ready_guest(rt: &Runtime, cfg: &str) -> Result<Guest, String> {
    let mut g = rt.instance().await.map_err(|e| format!("{e:#}"))?;
    match g.initialize(cfg).await {
        Ok(Ok(())) => Ok(g),
        Ok(Err(e)) => Err(format!("initialize: {e:?}")),
        Err(e) => Err(format!("initialize: {e:#}")),
    }
}

/// The smallest per-instance memory limit (64 KiB pages) under which `probe` succeeds.
fn min_memory<F>(env: &Env, rt: &mut Runtime, mut probe: F) -> u64
where
    F: FnMut(&Runtime) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + '_>>,
{
    const PAGE: u64 = 64 << 10;
    let (mut lo, mut hi) = (0u64, (256u64 << 20) / PAGE);
    rt.limits.memory_bytes = (hi * PAGE) as usize;
    if !env.rt.block_on(probe(rt)) {
        fail("a memory probe fails even with 256 MiB per instance");
    }
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        rt.limits.memory_bytes = (mid * PAGE) as usize;
        if env.rt.block_on(probe(rt)) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    rt.limits.memory_bytes = Limits::default().memory_bytes;
    hi * PAGE
}

fn load_infra(path: &Path) -> eventbus_host::infra::Infra {
    match eventbus_host::infra::load(path, &SecretStore::default()) {
        Ok(Ok(i)) => i,
        Ok(Err(d)) => fail(format!(
            "{}: invalid: {:?}",
            path.display(),
            d.first().map(|d| d.to_string())
        )),
        Err(e) => fail(format!("{}: {e:#}", path.display())),
    }
}

fn wit_output(name: &str, rtype: &str, out: &wit::ResourceOutput) -> wit::ResourceOutput {
    wit::ResourceOutput {
        name: name.into(),
        resource_type: rtype.into(),
        ..out.clone()
    }
}

/// The native comparison: the guest crate linked into this binary (`--features bench-native`,
/// which `just bench` turns on; without it these report nothing, and the guest crate is not
/// built natively, so `cargo test` and `just lint` never compile it for the host).
#[cfg(feature = "bench-native")]
mod native {
    use super::{fail, per_call_us, wit};
    use eventbus_guest::model::{Output, Spec, State};

    pub const ENABLED: bool = true;

    fn spec(s: &wit::ResourceSpec) -> Spec {
        Spec {
            name: s.name.clone(),
            rtype: s.resource_type.clone(),
            config: serde_json::from_str(&s.config_json).unwrap(),
            size: s.size.clone(),
            depends_on: s.depends_on.clone(),
        }
    }

    fn output(o: &wit::ResourceOutput) -> Output {
        Output {
            name: o.name.clone(),
            rtype: o.resource_type.clone(),
            provider_id: o.provider_id.clone(),
            outputs: serde_json::from_str(&o.outputs_json).unwrap(),
            sensitive: o.sensitive.clone(),
            status: o.status.clone(),
        }
    }

    /// Per-call microseconds of `eventbus_guest::drivers::diff` on parsed values, and of the
    /// export's whole work (JSON text in, diff, changes out as JSON text), as lib.rs's `diff`
    /// does it inside the component.
    /// Natively there is no host to ask which bus a broker runs (the component imports that):
    /// tell the guest crate up front, as a plan learns it from the specs in the component.
    fn learn_buses(broker_refs: impl IntoIterator<Item = String>) {
        eventbus_guest::buses::learn("", "nats");
        for b in broker_refs {
            eventbus_guest::buses::learn(&b, "nats");
        }
    }

    fn broker_ref(s: &wit::ResourceSpec) -> Option<String> {
        serde_json::from_str::<serde_json::Value>(&s.config_json)
            .ok()?
            .get("broker_ref")?
            .as_str()
            .map(String::from)
    }

    pub fn diff_us(calls: usize, s: &wit::ResourceSpec, o: &wit::ResourceOutput) -> (f64, f64) {
        learn_buses(broker_ref(s));
        let (ns, no) = (spec(s), output(o));
        if !eventbus_guest::drivers::diff(&ns, &no)
            .unwrap_or_else(|e| fail(format!("native diff: {e}")))
            .is_empty()
        {
            fail("the native diff is not empty");
        }
        let pure = per_call_us(calls, || {
            std::hint::black_box(
                eventbus_guest::drivers::diff(std::hint::black_box(&ns), std::hint::black_box(&no))
                    .ok(),
            );
        });
        let with_json = per_call_us(calls, || {
            let ch = eventbus_guest::drivers::diff(
                &spec(std::hint::black_box(s)),
                &output(std::hint::black_box(o)),
            )
            .unwrap_or_default();
            let text: Vec<String> = ch.iter().map(|c| c.new.to_string()).collect();
            std::hint::black_box(text);
        });
        (pure, with_json)
    }

    /// Milliseconds of `eventbus_guest::plan::plan` on parsed values (no boundary, no JSON
    /// text); it must find nothing to do.
    pub fn noop_plan_ms(specs: &[wit::ResourceSpec], current: &[wit::ResourceState]) -> f64 {
        learn_buses(specs.iter().filter_map(broker_ref));
        let specs: Vec<Spec> = specs.iter().map(spec).collect();
        let cur: Vec<State> = current
            .iter()
            .map(|s| State {
                name: s.name.clone(),
                rtype: s.resource_type.clone(),
                provider_id: s.provider_id.clone(),
                applied_config: serde_json::from_str(&s.applied_config_json).unwrap_or_default(),
                outputs: serde_json::from_str(&s.outputs_json).unwrap_or_default(),
                dependencies: s.dependencies.clone(),
            })
            .collect();
        let t = std::time::Instant::now();
        let plan = eventbus_guest::plan::plan(&specs, &cur)
            .unwrap_or_else(|e| fail(format!("native plan: {e}")));
        let took = super::ms(t.elapsed());
        if !plan.is_empty() {
            fail("the native plan is not empty");
        }
        took
    }
}

#[cfg(not(feature = "bench-native"))]
mod native {
    use super::wit;

    pub const ENABLED: bool = false;

    pub fn diff_us(_: usize, _: &wit::ResourceSpec, _: &wit::ResourceOutput) -> (f64, f64) {
        (f64::NAN, f64::NAN)
    }

    pub fn noop_plan_ms(_: &[wit::ResourceSpec], _: &[wit::ResourceState]) -> f64 {
        f64::NAN
    }
}

struct Boundary {
    wasm_stream_us: f64,
    wasm_consumer_us: f64,
    null_call_us: f64,
    native_stream_us: f64,
    native_consumer_us: f64,
    native_json_stream_us: f64,
    native_json_consumer_us: f64,
    /// The export as wfctl's Diff uses it: pure diff plus the existence read on the server.
    live_stream_us: f64,
    live_consumer_us: f64,
    instance_ms: f64,
    /// Linear memory a fresh initialized instance needs, and one that created a stream and a
    /// consumer (what most of the apply's pool instances do), in bytes.
    mem_idle: u64,
    mem_create: u64,
}

/// Per-call microseconds of `f`, the median of 5 batches of `calls / 5`.
#[cfg_attr(not(feature = "bench-native"), allow(dead_code))]
fn per_call_us(calls: usize, mut f: impl FnMut()) -> f64 {
    let batch = (calls / 5).max(1);
    for _ in 0..batch.min(100) {
        f();
    }
    let mut v = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        v.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
    }
    median(v)
}

fn boundary(env: &Env, opts: &Opts) -> Boundary {
    let pilot = load_infra(&pilot_path());
    let cfg = pilot.provider_config.to_string();
    let spec = |t: &str| {
        pilot
            .specs
            .iter()
            .find(|s| s.resource_type == t)
            .cloned()
            .unwrap_or_else(|| fail(format!("the pilot has no {t}")))
    };
    let (broker, stream, consumer) = (
        spec("infra.eventbus"),
        spec("infra.eventbus.stream"),
        spec("infra.eventbus.consumer"),
    );
    let mut rt = runtime(Limits::default());
    for u in &pilot.nats_grants {
        rt.caps.nats.grant(u);
    }
    // Real outputs: create the pilot's broker, stream and consumer (as apply does); they stay
    // on the server until the end of this section.
    let (s_out, c_out) = env.rt.block_on(async {
        let mut g = ready_guest(&rt, &cfg)
            .await
            .unwrap_or_else(|e| fail(format!("{e:#}")));
        let b = g
            .create(&broker)
            .await
            .unwrap_or_else(|e| fail(format!("{e:#}")))
            .unwrap_or_else(|e| fail(format!("broker create: {e:?}")));
        rt.caps.nats.register_broker(
            &broker.name,
            &serde_json::from_str(&b.outputs_json).unwrap(),
        );
        let s = g
            .create(&stream)
            .await
            .unwrap_or_else(|e| fail(format!("{e:#}")))
            .unwrap_or_else(|e| fail(format!("stream create: {e:?}")));
        let c = g
            .create(&consumer)
            .await
            .unwrap_or_else(|e| fail(format!("{e:#}")))
            .unwrap_or_else(|e| fail(format!("consumer create: {e:?}")));
        (s, c)
    });
    // The driver export `diff` (lib.rs) is drivers::diff_live: the pure drivers::diff, then,
    // for a stream or consumer with a provider id, a read on the server (does it still
    // exist?). With the provider id left empty the export runs the pure diff only: that is
    // the boundary measurement. The live variant is measured too, with the round trip.
    let s_live = wit_output(&stream.name, &stream.resource_type, &s_out);
    let c_live = wit_output(&consumer.name, &consumer.resource_type, &c_out);
    let s_out = wit::ResourceOutput {
        provider_id: String::new(),
        ..s_live.clone()
    };
    let c_out = wit::ResourceOutput {
        provider_id: String::new(),
        ..c_live.clone()
    };
    env.expect_counts("after the boundary set-up", 1, 1);

    let calls = opts.calls;
    let mut g = env
        .rt
        .block_on(ready_guest(&rt, &cfg))
        .unwrap_or_else(|e| fail(format!("{e:#}")));
    let check = |g: &mut Guest, spec: &wit::ResourceSpec, out: &wit::ResourceOutput| {
        let d = env
            .rt
            .block_on(g.diff(spec, out))
            .unwrap_or_else(|e| fail(format!("{e:#}")))
            .unwrap_or_else(|e| fail(format!("diff: {e:?}")));
        if d.needs_update || !d.changes.is_empty() {
            fail(format!(
                "diff of freshly created {} is not empty: {:?}",
                spec.name, d.changes
            ));
        }
    };
    check(&mut g, &stream, &s_out);
    check(&mut g, &consumer, &c_out);
    check(&mut g, &stream, &s_live);
    check(&mut g, &consumer, &c_live);
    // One block_on per batch, so the runtime's own entry cost is not counted per call.
    let wasm =
        |g: &mut Guest, spec: &wit::ResourceSpec, out: &wit::ResourceOutput, calls: usize| -> f64 {
            let batch = (calls / 5).max(1);
            env.rt.block_on(async {
                for _ in 0..batch.min(100) {
                    let _ = g.diff(spec, out).await;
                }
                let mut v = Vec::new();
                for _ in 0..5 {
                    let t = Instant::now();
                    for _ in 0..batch {
                        let r = g.diff(spec, out).await;
                        std::hint::black_box(&r);
                    }
                    v.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
                }
                median(v)
            })
        };
    let wasm_stream_us = wasm(&mut g, &stream, &s_out, calls);
    let wasm_consumer_us = wasm(&mut g, &consumer, &c_out, calls);
    let live_calls = (calls / 10).max(10);
    let live_stream_us = wasm(&mut g, &stream, &s_live, live_calls);
    let live_consumer_us = wasm(&mut g, &consumer, &c_live, live_calls);
    let null_call_us = {
        let batch = (calls / 5).max(1);
        env.rt.block_on(async {
            let mut v = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                for _ in 0..batch {
                    let r = g.name().await;
                    std::hint::black_box(&r);
                }
                v.push(t.elapsed().as_secs_f64() * 1e6 / batch as f64);
            }
            median(v)
        })
    };
    // Natively: the same diff, on parsed values and with the export's JSON work.
    let (native_stream_us, native_json_stream_us) = native::diff_us(calls, &stream, &s_out);
    let (native_consumer_us, native_json_consumer_us) = native::diff_us(calls, &consumer, &c_out);
    drop(g);
    let n_inst = if opts.full { 20 } else { 3 };
    let t = Instant::now();
    for _ in 0..n_inst {
        drop(
            env.rt
                .block_on(ready_guest(&rt, &cfg))
                .unwrap_or_else(|e| fail(format!("{e:#}"))),
        );
    }
    let instance_ms = ms(t.elapsed()) / n_inst as f64;

    // Guest linear memory: an idle initialized instance, and one that created and deleted a
    // stream and a consumer (a pool instance during apply).
    let cfg2 = cfg.clone();
    let mem_idle = min_memory(env, &mut rt, |rt| {
        let cfg = cfg2.clone();
        Box::pin(async move {
            match ready_guest(rt, &cfg).await {
                Ok(mut g) => g.name().await.is_ok(),
                Err(_) => false,
            }
        })
    });
    let (stream2, consumer2) = (stream.clone(), consumer.clone());
    let mem_create = min_memory(env, &mut rt, |rt| {
        let (cfg, stream, consumer) = (cfg.clone(), stream2.clone(), consumer2.clone());
        Box::pin(async move {
            let Ok(mut g) = ready_guest(rt, &cfg).await else {
                return false;
            };
            matches!(g.create(&stream).await, Ok(Ok(_)))
                && matches!(g.create(&consumer).await, Ok(Ok(_)))
        })
    });
    // The probes leave the pilot's stream behind when they succeed: remove it.
    env.wipe();
    Boundary {
        wasm_stream_us,
        wasm_consumer_us,
        null_call_us,
        native_stream_us,
        native_consumer_us,
        native_json_stream_us,
        native_json_consumer_us,
        live_stream_us,
        live_consumer_us,
        instance_ms,
        mem_idle,
        mem_create,
    }
}

// ---------------------------------------------------------------------------------------------
// Apply and plan at one size

#[derive(Default)]
struct SizeResult {
    n: usize,
    resources: usize,
    requests: usize,
    kinds: BTreeMap<String, usize>,
    ours_ms: Vec<f64>,
    limit_ms: Vec<f64>,
    perconn_ms: Vec<f64>,
    preamble_ms: f64,
    noop_plan_ms: Vec<f64>,
    destroy_ms: f64,
    apply_hwm_kb: u64,
    apply_maxrss_kb: u64,
    plan_maxrss_kb: u64,
    action_ms: Vec<f64>,
    /// CPU ms (first repetition): (client, nats-server) for ours, the limit, per-connection;
    /// the CLI's CPU for the plan-only preamble and one no-op plan.
    cpu_ours: (f64, f64),
    cpu_limit: (f64, f64),
    cpu_perconn: (f64, f64),
    cpu_preamble: f64,
    cpu_noop: f64,
    /// Ours again with the state file on tmpfs (/dev/shm), where fdatasync costs nothing: how
    /// much of ours is the state journal's syncs.
    ours_tmpfs_ms: Option<f64>,
    limit_lat_us: Vec<f64>,
    perconn_lat_us: Vec<f64>,
    /// In-process breakdown of the no-op plan (ms): infra load, state, runtime, instance, plan call.
    profile: Vec<(String, f64)>,
    /// Guest linear memory the apply's plan call (empty state) and the no-op plan need.
    mem_apply_plan: u64,
    mem_noop_plan: u64,
    /// The apply re-run with --memory-mib at the measured peak: did it fit?
    fits_mib: Option<(u64, bool)>,
}

impl SizeResult {
    fn ours(&self) -> f64 {
        median(self.ours_ms.clone())
    }
    fn limit(&self) -> f64 {
        median(self.limit_ms.clone())
    }
    fn perconn(&self) -> f64 {
        median(self.perconn_ms.clone())
    }
    fn noop(&self) -> f64 {
        median(self.noop_plan_ms.clone())
    }
}

/// Our CLI's apply with a subscriber on `$JS.API.>` recording every request it sends.
fn capture_apply(
    env: &Env,
    file: &Path,
    state: &Path,
    opts: &Opts,
    memory_mib: Option<u64>,
) -> (Measured, Vec<(String, Bytes)>) {
    let captured: Arc<Mutex<Vec<(String, Bytes)>>> = Arc::default();
    let sink = captured.clone();
    let client = env.client.clone();
    let mut sub = env.rt.block_on(async move {
        let sub = client
            .subscribe("$JS.API.>")
            .await
            .unwrap_or_else(|e| fail(format!("subscribe: {e}")));
        client
            .flush()
            .await
            .unwrap_or_else(|e| fail(format!("flush: {e}")));
        sub
    });
    let task = env.rt.spawn(async move {
        while let Some(m) = sub.next().await {
            sink.lock()
                .unwrap()
                .push((m.subject.to_string(), m.payload));
        }
    });
    let p = opts.parallelism.to_string();
    let mut args = vec!["-o", "json", "--parallelism", &p];
    let mem;
    if let Some(m) = memory_mib {
        mem = m.to_string();
        args.extend(["--memory-mib", &mem]);
    }
    args.push("apply");
    let run = run_measured(cli(env, file, state, &args), Duration::from_secs(900));
    env.rt.block_on(async {
        let _ = env.client.flush().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    });
    task.abort();
    let out = captured.lock().unwrap().clone();
    (run, out)
}

fn summarize_actions(stdout: &str) -> Result<Vec<f64>, String> {
    let v: Value =
        serde_json::from_str(stdout).map_err(|e| format!("apply -o json printed no JSON ({e})"))?;
    if v["failed"].as_u64() != Some(0) {
        let first: Vec<&Value> = v["results"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|r| r["ok"] != json!(true))
                    .take(3)
                    .collect()
            })
            .unwrap_or_default();
        return Err(format!("{} actions failed, e.g. {first:?}", v["failed"]));
    }
    Ok(v["results"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["millis"].as_f64()).collect())
        .unwrap_or_default())
}

fn measure_size(env: &Env, opts: &Opts, n: usize, largest: bool) -> SizeResult {
    let per = opts.per_stream;
    let resources = 1 + n * (1 + per);
    let mut r = SizeResult {
        n,
        resources,
        ..Default::default()
    };
    let dir = TempDir::new(&format!("bench-{n}"));
    let file = dir.path().join("infra.yaml");
    std::fs::write(&file, infra(n, per, &opts.storage)).unwrap();
    let mut runs = 0usize;
    let mut state = || {
        runs += 1;
        dir.path().join(format!("state-{runs}.json"))
    };
    println!(
        "\n== N={n}: {n} streams x {per} consumers + 1 broker = {resources} resources, parallelism {}, storage {}",
        opts.parallelism, opts.storage
    );

    // Guest memory of the apply's plan call (all specs, empty state), bisected in-process.
    let infra_specs = load_infra(&file);
    let cfg = infra_specs.provider_config.to_string();
    let mut rt = runtime(Limits::default());
    if largest {
        let (specs, c2) = (infra_specs.specs.clone(), cfg.clone());
        r.mem_apply_plan = min_memory(env, &mut rt, |rt| {
            let (specs, cfg) = (specs.clone(), c2.clone());
            Box::pin(async move {
                let Ok(mut g) = ready_guest(rt, &cfg).await else {
                    return false;
                };
                matches!(g.plan(&specs, &[]).await, Ok(Ok(_)))
            })
        });
        println!(
            "  guest memory for the apply's plan call: {:.2} MiB",
            r.mem_apply_plan as f64 / 1048576.0
        );
    }

    // Warm-up: our apply with the API traffic recorded (the baselines replay it), then our
    // destroy. At the largest N it runs with --memory-mib at the measured plan peak, to show
    // the whole apply fits in it.
    let fit = largest.then(|| r.mem_apply_plan.div_ceil(1 << 20).max(1));
    let st = state();
    let (warm, captured) = capture_apply(env, &file, &st, opts, fit);
    if warm.code != 0 || summarize_actions(&warm.stdout).is_err() {
        if let Some(m) = fit {
            println!(
                "  the apply did NOT fit in --memory-mib {m}: {}",
                tail(&warm.stderr)
            );
            r.fits_mib = Some((m, false));
            env.wipe();
            let st = state();
            let (again, cap) = capture_apply(env, &file, &st, opts, None);
            if again.code != 0 {
                fail(format!(
                    "warm-up apply failed (exit {}):\n{}\n{}",
                    again.code,
                    tail(&again.stdout),
                    tail(&again.stderr)
                ));
            }
            return finish_size(env, opts, r, &file, &st, cap, &mut state, &mut rt, &cfg);
        }
        fail(format!(
            "warm-up apply failed (exit {}):\n{}\n{}",
            warm.code,
            tail(&warm.stdout),
            tail(&warm.stderr)
        ));
    }
    r.fits_mib = fit.map(|m| (m, true));
    println!(
        "  warm-up apply (API traffic recorded{}): {:.0} ms",
        fit.map(|m| format!(", --memory-mib {m}"))
            .unwrap_or_default(),
        ms(warm.wall)
    );
    finish_size(
        env, opts, r, &file, &st, captured, &mut state, &mut rt, &cfg,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish_size(
    env: &Env,
    opts: &Opts,
    mut r: SizeResult,
    file: &Path,
    warm_state: &Path,
    captured: Vec<(String, Bytes)>,
    state: &mut dyn FnMut() -> PathBuf,
    rt: &mut Runtime,
    cfg: &str,
) -> SizeResult {
    let (n, per) = (r.n, opts.per_stream);
    env.expect_counts("after the warm-up apply", n, n * per);
    let plan = build_replay(&captured);
    r.requests = plan.requests;
    r.kinds = plan.kinds.clone();
    let kinds: Vec<String> = plan.kinds.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "  our apply sent {} JetStream API requests: {}",
        plan.requests,
        kinds.join(", ")
    );
    if plan.kinds.get("STREAM.CREATE").copied().unwrap_or(0) != n
        || plan.kinds.get("CONSUMER.CREATE").copied().unwrap_or(0) != n * per
    {
        fail("the captured traffic does not hold one create per resource");
    }
    let d = run_measured(
        cli(
            env,
            file,
            warm_state,
            &[
                "-o",
                "json",
                "--parallelism",
                &opts.parallelism.to_string(),
                "destroy",
            ],
        ),
        Duration::from_secs(900),
    );
    if d.code != 0 {
        fail(format!(
            "destroy failed (exit {}):\n{}",
            d.code,
            tail(&d.stderr)
        ));
    }
    r.destroy_ms = ms(d.wall);
    env.expect_counts("after our destroy", 0, 0);

    // The apply's preamble alone: process start, infra, component, plan (state empty).
    let pre = run_measured(
        cli(env, file, &state(), &["-o", "json", "plan"]),
        Duration::from_secs(600),
    );
    if pre.code != 2 {
        fail(format!(
            "plan on empty state: exit {} (want 2):\n{}",
            pre.code,
            tail(&pre.stderr)
        ));
    }
    r.preamble_ms = ms(pre.wall);
    r.cpu_preamble = pre.cpu_ms;

    for rep in 0..opts.repeats(n) {
        // Ours.
        let st = state();
        let p = opts.parallelism.to_string();
        let server_cpu = proc_cpu_ms(env.server_pid);
        let run = run_measured(
            cli(
                env,
                file,
                &st,
                &["-o", "json", "--parallelism", &p, "apply"],
            ),
            Duration::from_secs(900),
        );
        let server_cpu = proc_cpu_ms(env.server_pid) - server_cpu;
        if run.code != 0 {
            fail(format!(
                "apply failed (exit {}):\n{}\n{}",
                run.code,
                tail(&run.stdout),
                tail(&run.stderr)
            ));
        }
        let actions = summarize_actions(&run.stdout).unwrap_or_else(|e| fail(e));
        env.expect_counts("after our apply", n, n * per);
        r.ours_ms.push(ms(run.wall));
        if rep == 0 {
            r.action_ms = actions;
            r.cpu_ours = (run.cpu_ms, server_cpu);
            r.apply_hwm_kb = run.hwm_kb;
            r.apply_maxrss_kb = run.maxrss_kb;
            // The no-op plan: everything in sync.
            for _ in 0..opts.plan_repeats {
                let p = run_measured(cli(env, file, &st, &["plan"]), Duration::from_secs(600));
                if p.code != 0 {
                    fail(format!(
                        "the plan after apply is not empty (exit {}):\n{}",
                        p.code,
                        tail(&p.stdout)
                    ));
                }
                r.noop_plan_ms.push(ms(p.wall));
                r.cpu_noop = p.cpu_ms;
                r.plan_maxrss_kb = r.plan_maxrss_kb.max(p.maxrss_kb);
            }
            r.profile = profile_noop_plan(env, file, &st, rt, cfg);
            if r.mem_apply_plan > 0 {
                let infra = load_infra(file);
                let current = eventbus_host::state::State::open(&st, None)
                    .unwrap_or_else(|e| fail(format!("{e:#}")))
                    .to_wit();
                let (specs, c2) = (infra.specs.clone(), cfg.to_string());
                r.mem_noop_plan = min_memory(env, rt, |rt| {
                    let (specs, current, cfg) = (specs.clone(), current.clone(), c2.clone());
                    Box::pin(async move {
                        let Ok(mut g) = ready_guest(rt, &cfg).await else {
                            return false;
                        };
                        matches!(g.plan(&specs, &current).await, Ok(Ok(p)) if p.actions.is_empty())
                    })
                });
            }
        }
        env.wipe();
        if rep == 0 && Path::new("/dev/shm").is_dir() {
            let shm = PathBuf::from(format!(
                "/dev/shm/eventbus-bench-{}-{n}",
                std::process::id()
            ));
            let _ = std::fs::create_dir_all(&shm);
            let run = run_measured(
                cli(
                    env,
                    file,
                    &shm.join("state.json"),
                    &["-o", "json", "--parallelism", &p, "apply"],
                ),
                Duration::from_secs(900),
            );
            let _ = std::fs::remove_dir_all(&shm);
            if run.code != 0 {
                fail(format!(
                    "apply (state on tmpfs) failed (exit {}):\n{}",
                    run.code,
                    tail(&run.stderr)
                ));
            }
            env.expect_counts("after our apply (state on tmpfs)", n, n * per);
            r.ours_tmpfs_ms = Some(ms(run.wall));
            env.wipe();
        }

        // (a) The limit: the same requests, one connection, same concurrency.
        let cpu = (self_cpu_ms(), proc_cpu_ms(env.server_pid));
        let lim = replay(env, &plan, opts.parallelism, false);
        let cpu_limit = (self_cpu_ms() - cpu.0, proc_cpu_ms(env.server_pid) - cpu.1);
        if !lim.errors.is_empty() {
            fail(format!(
                "limit replay: {} errors, e.g. {}",
                lim.errors.len(),
                lim.errors[0]
            ));
        }
        env.expect_counts("after the limit replay", n, n * per);
        r.limit_ms.push(ms(lim.wall));
        env.wipe();

        // (b) One new connection per resource.
        let cpu = (self_cpu_ms(), proc_cpu_ms(env.server_pid));
        let pc = replay(env, &plan, opts.parallelism, true);
        let cpu_perconn = (self_cpu_ms() - cpu.0, proc_cpu_ms(env.server_pid) - cpu.1);
        if !pc.errors.is_empty() {
            fail(format!(
                "per-connection replay: {} errors, e.g. {}",
                pc.errors.len(),
                pc.errors[0]
            ));
        }
        env.expect_counts("after the per-connection replay", n, n * per);
        r.perconn_ms.push(ms(pc.wall));
        env.wipe();
        if rep == 0 {
            r.limit_lat_us = lim.latencies_us;
            r.cpu_limit = cpu_limit;
            r.cpu_perconn = cpu_perconn;
            r.perconn_lat_us = pc.latencies_us;
        }
        println!(
            "  run {}: ours {:.0} ms, limit {:.0} ms, per-connection {:.0} ms",
            rep + 1,
            r.ours_ms.last().unwrap(),
            ms(lim.wall),
            ms(pc.wall)
        );
    }
    r
}

/// Where the no-op plan's time goes, re-enacted in-process with the host library (the same
/// debug build as the CLI): read infra.yaml, read state, load the component, instantiate and
/// initialize, the guest's plan call; plus the same plan computed natively.
fn profile_noop_plan(
    env: &Env,
    file: &Path,
    state: &Path,
    _rt: &mut Runtime,
    cfg: &str,
) -> Vec<(String, f64)> {
    let mut prof = Vec::new();
    let t = Instant::now();
    let infra = load_infra(file);
    prof.push(("read + check infra.yaml (host)".into(), ms(t.elapsed())));
    let t = Instant::now();
    let st =
        eventbus_host::state::State::open(state, None).unwrap_or_else(|e| fail(format!("{e:#}")));
    let current = st.to_wit();
    prof.push(("read state (host)".into(), ms(t.elapsed())));
    let t = Instant::now();
    let rt = runtime(Limits::default());
    prof.push(("load component (cached) + link".into(), ms(t.elapsed())));
    let t = Instant::now();
    let mut g = env
        .rt
        .block_on(ready_guest(&rt, cfg))
        .unwrap_or_else(|e| fail(format!("{e:#}")));
    prof.push(("instantiate + initialize".into(), ms(t.elapsed())));
    let t = Instant::now();
    let plan = env
        .rt
        .block_on(g.plan(&infra.specs, &current))
        .unwrap_or_else(|e| fail(format!("{e:#}")))
        .unwrap_or_else(|e| fail(format!("plan: {e:?}")));
    prof.push((
        "guest plan call (wasm, incl. boundary)".into(),
        ms(t.elapsed()),
    ));
    if !plan.actions.is_empty() {
        fail("the in-process plan is not empty");
    }
    // The same plan natively (the guest crate linked in: no boundary, no JSON text).
    prof.push((
        "same plan natively (guest crate linked in)".into(),
        native::noop_plan_ms(&infra.specs, &current),
    ));
    // The apply's scheduling set-up on a plan of this size (all creates).
    let t = Instant::now();
    let creates = env
        .rt
        .block_on(g.plan(&infra.specs, &[]))
        .unwrap_or_else(|e| fail(format!("{e:#}")))
        .unwrap_or_else(|e| fail(format!("plan: {e:?}")));
    prof.push((
        "guest plan call, empty state (apply's plan)".into(),
        ms(t.elapsed()),
    ));
    let t = Instant::now();
    let pre = eventbus_host::commands::apply::prerequisites(&creates);
    prof.push((
        "apply: prerequisites() over that plan (host)".into(),
        ms(t.elapsed()),
    ));
    std::hint::black_box(pre);
    // The apply's state journal, as create_or_update drives it under the state mutex: per
    // action a lookup of the previous record, then commit (serialize, append, fdatasync,
    // upsert); then the final compaction (the whole file, fsync, rename). On tmpfs when there
    // is one, so this is the CPU part only (the syncs' cost is the tmpfs run of the CLI).
    let shm = PathBuf::from(format!(
        "/dev/shm/eventbus-bench-state-{}",
        std::process::id()
    ));
    let dir = TempDir::new("bench-state");
    let path = if std::fs::create_dir_all(&shm).is_ok() {
        shm.join("state.json")
    } else {
        dir.path().join("state.json")
    };
    let mut fresh =
        eventbus_host::state::State::open(&path, Some((Duration::from_secs(5), "bench")))
            .unwrap_or_else(|e| fail(format!("{e:#}")));
    let t = Instant::now();
    for rec in st.records() {
        std::hint::black_box(fresh.get(&rec.name).cloned());
        fresh
            .commit(eventbus_host::state::Entry::Upsert {
                record: Box::new(rec.clone()),
            })
            .unwrap_or_else(|e| fail(format!("{e:#}")));
    }
    prof.push((
        "apply: state journal, a commit per resource, CPU only (serial, mutex)".into(),
        ms(t.elapsed()),
    ));
    let t = Instant::now();
    fresh.compact().unwrap_or_else(|e| fail(format!("{e:#}")));
    prof.push((
        "apply: final state compaction, CPU only".into(),
        ms(t.elapsed()),
    ));
    drop(fresh);
    let _ = std::fs::remove_dir_all(&shm);
    prof
}

// ---------------------------------------------------------------------------------------------
// Side by side with what users would pick instead: OpenTofu driving nats-io's
// terraform-provider-jetstream (scripts/tofu.sh builds both at pinned versions), on the same
// nats-server, from Terraform files generated from the same infra.

struct Tofu {
    bin: PathBuf,
    /// The directory holding `terraform-provider-jetstream` (dev_overrides points here).
    provider_dir: PathBuf,
    version: String,
    provider_version: String,
}

/// `BENCH_TOFU` (the tofu binary) and `BENCH_TOFU_PROVIDER` (the provider's directory), as
/// scripts/tofu.sh prints them; without them the newest build in `.cache/tofu/`; `BENCH_TOFU=0`
/// leaves the comparison out.
fn find_tofu() -> Result<Tofu, String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if var("BENCH_TOFU").as_deref() == Some("0") {
        return Err("BENCH_TOFU=0".into());
    }
    let newest = |prefix: &str, file: &str| -> Option<PathBuf> {
        let dir = workspace_root().join(".cache/tofu");
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path().join(file))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        found.pop()
    };
    let bin = var("BENCH_TOFU")
        .map(PathBuf::from)
        .or_else(|| newest("opentofu-", "tofu"))
        .ok_or("no OpenTofu: run scripts/tofu.sh (or set BENCH_TOFU)")?;
    let provider_dir = var("BENCH_TOFU_PROVIDER")
        .map(PathBuf::from)
        .or_else(|| {
            newest(
                "terraform-provider-jetstream-",
                "terraform-provider-jetstream",
            )
            .and_then(|p| p.parent().map(Path::to_path_buf))
        })
        .ok_or(
            "no terraform-provider-jetstream: run scripts/tofu.sh (or set BENCH_TOFU_PROVIDER)",
        )?;
    if !provider_dir.join("terraform-provider-jetstream").is_file() {
        return Err(format!(
            "{} holds no terraform-provider-jetstream",
            provider_dir.display()
        ));
    }
    let out = Command::new(&bin)
        .arg("version")
        // No user CLI config (without one it prints a warning first).
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .owned()
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let version = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("OpenTofu"))
        .unwrap_or("OpenTofu, unknown version")
        .trim()
        .to_string();
    let provider_version = std::fs::read_to_string(provider_dir.join("VERSION"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "unknown version".into());
    Ok(Tofu {
        bin,
        provider_dir,
        version,
        provider_version,
    })
}

/// A Terraform identifier for one of our resource names.
fn tf_label(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        s
    } else {
        format!("r_{s}")
    }
}

/// Seconds in one of our durations (`168h`, `30s`, `15m`, `500ms`).
fn duration_secs(v: &Value) -> Result<u64, String> {
    let s = v.as_str().ok_or(format!("duration {v} is not a string"))?;
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or(format!("duration {s:?} has no unit"))?;
    let n: u64 = s[..split].parse().map_err(|_| format!("duration {s:?}"))?;
    match &s[split..] {
        "s" => Ok(n),
        "m" => Ok(n * 60),
        "h" => Ok(n * 3600),
        "ms" if n.is_multiple_of(1000) => Ok(n / 1000),
        u => Err(format!("duration {s:?}: no mapping for unit {u:?}")),
    }
}

fn hcl(v: &Value) -> String {
    // HCL's string, number, bool and list literals are JSON's.
    v.to_string()
}

/// The Terraform equivalent of an infra file, field by field: the broker becomes the
/// `jetstream` provider's `servers`, each stream a `jetstream_stream`, each consumer a
/// `jetstream_consumer` whose `stream_id` references its stream (so Terraform orders them as
/// we do). A field with no equivalent fails the run rather than being dropped.
fn terraform(specs: &[wit::ResourceSpec]) -> String {
    let config = |s: &wit::ResourceSpec| -> serde_json::Map<String, Value> {
        match serde_json::from_str(&s.config_json) {
            Ok(Value::Object(m)) => m,
            _ => fail(format!("{}: config is not an object", s.name)),
        }
    };
    let unmapped = |s: &wit::ResourceSpec, k: &str| -> ! {
        fail(format!(
            "{}: no terraform-provider-jetstream equivalent for config.{k}",
            s.name
        ))
    };
    let mut labels: HashMap<String, String> = HashMap::new();
    for s in specs {
        if s.resource_type == "infra.eventbus.stream"
            && let Some(n) = config(s).get("name").and_then(Value::as_str)
        {
            labels.insert(n.to_string(), tf_label(&s.name));
        }
    }
    let mut servers = None;
    let mut body = String::new();
    for s in specs {
        let cfg = config(s);
        let mut lines: Vec<String> = Vec::new();
        match s.resource_type.as_str() {
            "infra.eventbus" => {
                for (k, v) in &cfg {
                    match k.as_str() {
                        "url" => servers = Some(v.clone()),
                        "deploy_target" if v == "self_hosted" => {}
                        "provider" if v == "nats" => {}
                        "jetstream" if v.get("enabled") == Some(&json!(true)) => {}
                        "iac_provider" => {}
                        _ => unmapped(s, k),
                    }
                }
                continue;
            }
            "infra.eventbus.stream" => {
                for (k, v) in &cfg {
                    match k.as_str() {
                        "name" | "subjects" | "storage" => lines.push(format!("{k} = {}", hcl(v))),
                        "retention_policy" => lines.push(format!("retention = {}", hcl(v))),
                        "max_age" => lines.push(format!(
                            "max_age = {}",
                            duration_secs(v).unwrap_or_else(|e| fail(format!("{}: {e}", s.name)))
                        )),
                        "iac_provider" | "broker_ref" => {}
                        _ => unmapped(s, k),
                    }
                }
                body.push_str(&format!(
                    "resource \"jetstream_stream\" \"{}\" {{\n",
                    tf_label(&s.name)
                ));
            }
            "infra.eventbus.consumer" => {
                let mut deliver = "deliver_all";
                for (k, v) in &cfg {
                    match k.as_str() {
                        "name" => lines.push(format!("durable_name = {}", hcl(v))),
                        "stream_name" => {
                            let label =
                                v.as_str().and_then(|n| labels.get(n)).unwrap_or_else(|| {
                                    fail(format!("{}: stream {v} not declared", s.name))
                                });
                            lines.push(format!("stream_id = jetstream_stream.{label}.id"));
                        }
                        "filter_subject" | "ack_policy" => lines.push(format!("{k} = {}", hcl(v))),
                        "max_deliver" => lines.push(format!("max_delivery = {}", hcl(v))),
                        "deliver_policy" => {
                            deliver = match v.as_str() {
                                Some("all") => "deliver_all",
                                Some("new") => "deliver_new",
                                Some("last") => "deliver_last",
                                Some("last_per_subject") => "deliver_last_per_subject",
                                _ => unmapped(s, k),
                            }
                        }
                        "iac_provider" => {}
                        _ => unmapped(s, k),
                    }
                }
                // Ours defaults to deliver_policy all; the provider wants exactly one of these.
                lines.push(format!("{deliver} = true"));
                body.push_str(&format!(
                    "resource \"jetstream_consumer\" \"{}\" {{\n",
                    tf_label(&s.name)
                ));
            }
            t => fail(format!(
                "{}: no terraform-provider-jetstream equivalent for {t}",
                s.name
            )),
        }
        for l in lines {
            body.push_str("  ");
            body.push_str(&l);
            body.push('\n');
        }
        body.push_str("}\n\n");
    }
    let servers = servers.unwrap_or_else(|| fail("the infra declares no self_hosted broker url"));
    format!(
        "terraform {{\n  required_providers {{\n    jetstream = {{ source = \"nats-io/jetstream\" }}\n  }}\n}}\n\n\
         provider \"jetstream\" {{\n  servers = {}\n}}\n\n{body}",
        hcl(&servers)
    )
}

/// One tool's run of the comparison: wall ms, CPU ms of the process (and of the provider
/// process OpenTofu starts and reaps: wait4 counts reaped descendants), nats-server's CPU ms.
#[derive(Clone, Copy, Default)]
struct Timed {
    wall: f64,
    cpu: f64,
    server_cpu: f64,
}

#[derive(Default)]
struct Side {
    apply: Timed,
    plan: Timed,
    plan_refresh: Timed,
    change: Timed,
}

struct Comparison {
    label: String,
    resources: usize,
    ours: Side,
    tofu: Side,
    /// Fields in which the server's configs differ after our apply and after OpenTofu's.
    config_diffs: Vec<String>,
}

fn timed(
    env: &Env,
    what: &str,
    cmd: Command,
    want: &[i32],
    timeout: Duration,
) -> (Timed, Measured) {
    let server = proc_cpu_ms(env.server_pid);
    let m = run_measured(cmd, timeout);
    let server_cpu = proc_cpu_ms(env.server_pid) - server;
    if !want.contains(&m.code) {
        fail(format!(
            "{what}: exit {} (want {want:?}):\n{}\n{}",
            m.code,
            tail(&m.stdout),
            tail(&m.stderr)
        ));
    }
    (
        Timed {
            wall: ms(m.wall),
            cpu: m.cpu_ms,
            server_cpu,
        },
        m,
    )
}

/// Every stream's and consumer's config as the server reports it, by `stream S` and
/// `consumer S/C`.
fn server_configs(env: &Env) -> BTreeMap<String, Value> {
    let names = |subject: &str, key: &str| -> Vec<String> {
        env.js(subject, &json!({"offset": 0}))[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = BTreeMap::new();
    for s in names("$JS.API.STREAM.NAMES", "streams") {
        let info = env.js(&format!("$JS.API.STREAM.INFO.{s}"), &Value::Null);
        out.insert(format!("stream {s}"), info["config"].clone());
        for c in names(&format!("$JS.API.CONSUMER.NAMES.{s}"), "consumers") {
            let info = env.js(&format!("$JS.API.CONSUMER.INFO.{s}.{c}"), &Value::Null);
            out.insert(format!("consumer {s}/{c}"), info["config"].clone());
        }
    }
    out
}

/// Where the server's configs differ after our apply and after OpenTofu's, one line per
/// kind, field and pair of values, with how many resources show it.
fn config_diffs(ours: &BTreeMap<String, Value>, theirs: &BTreeMap<String, Value>) -> Vec<String> {
    let show = |v: Option<&Value>| v.map_or("unset".to_string(), Value::to_string);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut add = |line: String| *seen.entry(line).or_insert(0) += 1;
    for (k, a) in ours {
        let kind = k.split(' ').next().unwrap_or("");
        let Some(b) = theirs.get(k) else {
            add(format!("{kind}: only ours created it"));
            continue;
        };
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            continue;
        };
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for f in keys {
            // Metadata carries the server's own _nats.* keys (the API level of the request).
            if f == "metadata" || f == "created" {
                continue;
            }
            if a.get(f) != b.get(f) {
                add(format!(
                    "{kind} {f}: {} (ours) vs {} (tofu)",
                    show(a.get(f)),
                    show(b.get(f))
                ));
            }
        }
    }
    for k in theirs.keys().filter(|k| !ours.contains_key(*k)) {
        add(format!(
            "{}: only tofu created it",
            k.split(' ').next().unwrap_or("")
        ));
    }
    seen.into_iter()
        .map(|(line, n)| format!("{line}, on {n}"))
        .collect()
}

/// The same work with both tools on the same (empty) server: apply from empty, a no-op plan
/// without and with reading every resource from the server, and an apply of one changed field
/// (the first stream's max_age, 168h -> 336h). `doc` is our infra file as JSON.
fn compare_tofu(env: &Env, tofu: &Tofu, opts: &Opts, label: &str, doc: &Value) -> Comparison {
    let dir = TempDir::new("bench-tofu");
    let file = dir.path().join("infra.yaml");
    let (streams, consumers) = {
        let mods = doc["modules"].as_array().cloned().unwrap_or_default();
        let count = |t: &str| mods.iter().filter(|m| m["type"] == t).count();
        (
            count("infra.eventbus.stream"),
            count("infra.eventbus.consumer"),
        )
    };
    fn first_stream(doc: &mut Value) -> &mut Value {
        doc["modules"]
            .as_array_mut()
            .and_then(|m| m.iter_mut().find(|m| m["type"] == "infra.eventbus.stream"))
            .unwrap_or_else(|| fail("the infra has no stream"))
    }
    let mut changed = doc.clone();
    let stream_name = {
        let s = first_stream(&mut changed);
        s["config"]["max_age"] = json!("336h");
        s["config"]["name"].as_str().unwrap_or_default().to_string()
    };
    let write =
        |doc: &Value| std::fs::write(&file, serde_json::to_string_pretty(doc).unwrap()).unwrap();
    let max_age_on_server = || {
        env.js(&format!("$JS.API.STREAM.INFO.{stream_name}"), &Value::Null)["config"]["max_age"]
            .as_u64()
            .unwrap_or(0)
    };
    let resources = 1 + streams + consumers;
    println!(
        "\n== side by side with OpenTofu, {label}: {streams} streams, {consumers} consumers ({resources} resources for us with the broker; {} for Terraform)",
        streams + consumers
    );
    let long = Duration::from_secs(3600);

    // Ours.
    env.wipe();
    write(doc);
    let state = dir.path().join("state.json");
    let p = opts.parallelism.to_string();
    let mut ours = Side::default();
    let (t, m) = timed(
        env,
        "our apply",
        cli(
            env,
            &file,
            &state,
            &["-o", "json", "--parallelism", &p, "apply"],
        ),
        &[0],
        long,
    );
    summarize_actions(&m.stdout).unwrap_or_else(|e| fail(e));
    env.expect_counts("after our apply", streams, consumers);
    ours.apply = t;
    let ours_configs = server_configs(env);
    ours.plan = timed(
        env,
        "our no-op plan",
        cli(env, &file, &state, &["plan"]),
        &[0],
        long,
    )
    .0;
    ours.plan_refresh = timed(
        env,
        "our no-op plan --refresh",
        cli(env, &file, &state, &["plan", "--refresh"]),
        &[0],
        long,
    )
    .0;
    write(&changed);
    ours.change = timed(
        env,
        "our apply of one change",
        cli(
            env,
            &file,
            &state,
            &["-o", "json", "--parallelism", &p, "apply"],
        ),
        &[0],
        long,
    )
    .0;
    if max_age_on_server() != 336 * 3600 * 1_000_000_000 {
        fail(format!(
            "after our apply of the change, {stream_name}'s max_age is not 336h"
        ));
    }
    println!(
        "  ours: apply {:.0} ms, no-op plan {:.0} ms, no-op plan --refresh {:.0} ms, apply of one change {:.0} ms",
        ours.apply.wall, ours.plan.wall, ours.plan_refresh.wall, ours.change.wall
    );

    // OpenTofu, in its own directory with a CLI config pointing at the local provider build
    // (dev_overrides: no registry, no `tofu init`).
    env.wipe();
    let work = dir.path().join("tf");
    std::fs::create_dir_all(&work).unwrap();
    let rc = dir.path().join("tofurc");
    std::fs::write(
        &rc,
        format!(
            "provider_installation {{\n  dev_overrides {{\n    \"nats-io/jetstream\" = {}\n  }}\n  direct {{}}\n}}\n",
            hcl(&json!(tofu.provider_dir.to_string_lossy()))
        ),
    )
    .unwrap();
    let tf_for = |doc: &Value| {
        write(doc);
        std::fs::write(work.join("main.tf"), terraform(&load_infra(&file).specs)).unwrap();
    };
    let tofu_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&tofu.bin);
        cmd.current_dir(&work)
            .args(args)
            .args(["-input=false", "-no-color"])
            .env("TF_CLI_CONFIG_FILE", &rc)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env_remove("TF_LOG")
            .env_remove("TF_CLI_ARGS")
            .env_remove("TF_DATA_DIR");
        cmd
    };
    tf_for(doc);
    let apply = timed(
        env,
        "tofu apply",
        tofu_cmd(&["apply", "-auto-approve"]),
        &[0],
        long,
    )
    .0;
    env.expect_counts("after tofu apply", streams, consumers);
    let tofu_configs = server_configs(env);
    let mut tofu_side = Side {
        apply,
        ..Side::default()
    };
    tofu_side.plan_refresh = timed(
        env,
        "tofu no-op plan",
        tofu_cmd(&["plan", "-detailed-exitcode"]),
        &[0],
        long,
    )
    .0;
    tofu_side.plan = timed(
        env,
        "tofu no-op plan -refresh=false",
        tofu_cmd(&["plan", "-detailed-exitcode", "-refresh=false"]),
        &[0],
        long,
    )
    .0;
    tf_for(&changed);
    tofu_side.change = timed(
        env,
        "tofu apply of one change",
        tofu_cmd(&["apply", "-auto-approve"]),
        &[0],
        long,
    )
    .0;
    if max_age_on_server() != 336 * 3600 * 1_000_000_000 {
        fail(format!(
            "after tofu's apply of the change, {stream_name}'s max_age is not 336h"
        ));
    }
    env.expect_counts("after tofu's apply of one change", streams, consumers);
    println!(
        "  tofu: apply {:.0} ms, no-op plan {:.0} ms (-refresh=false {:.0} ms), apply of one change {:.0} ms",
        tofu_side.apply.wall,
        tofu_side.plan_refresh.wall,
        tofu_side.plan.wall,
        tofu_side.change.wall
    );
    env.wipe();
    let config_diffs = config_diffs(&ours_configs, &tofu_configs);
    Comparison {
        label: label.to_string(),
        resources,
        ours,
        tofu: tofu_side,
        config_diffs,
    }
}

/// The pilot's infra file as JSON.
fn pilot_doc() -> Value {
    let text =
        std::fs::read_to_string(pilot_path()).unwrap_or_else(|e| fail(format!("pilot: {e}")));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| fail(format!("pilot: {e}")))
}

// ---------------------------------------------------------------------------------------------

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map(|k| format!("{:.1} GiB", k as f64 / 1048576.0))
        .unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find(|l| l.starts_with("PRETTY_NAME=")).map(|l| {
                l.trim_start_matches("PRETTY_NAME=")
                    .trim_matches('"')
                    .to_string()
            })
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "{cpus} CPUs ({cpu}), {mem} RAM, {os}, Linux {}, loadavg {}",
        kernel.trim(),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "bench".contains(a.as_str())) {
        return;
    }
    let opts = Opts::from_env();
    let wasm = component_wasm();
    if !wasm.is_file() {
        fail(format!(
            "the component {} is not built: run `just build`",
            wasm.display()
        ));
    }
    println!(
        "bench: {} run; machine: {}",
        if opts.full {
            "full"
        } else {
            "small (BENCH_FULL=1 for the full run)"
        },
        machine()
    );
    println!(
        "host: {} ({}); component: {} ({} KB); in-process measurements: {}",
        eventbus_bin().display(),
        cli_build(),
        wasm.display(),
        std::fs::metadata(&wasm)
            .map(|m| m.len() / 1000)
            .unwrap_or(0),
        in_process_build()
    );
    let server = NatsServer::start();
    println!(
        "nats-server {} at {} (JetStream, file store in a temp dir; benchmark streams: storage {})",
        server.version(),
        server.url(),
        opts.storage
    );
    let cache = TempDir::new("bench-cache");
    // Before any thread exists: the in-process runtime and infra loading read these.
    // Safety: single-threaded at this point.
    unsafe {
        std::env::set_var("NATS_URL", server.url());
        std::env::set_var("EVENTBUS_CACHE_DIR", cache.path());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(async_nats::connect(server.url()))
        .unwrap_or_else(|e| fail(format!("connect: {e}")));
    let server_pid = std::fs::read_dir(server.dir().join("ports"))
        .ok()
        .and_then(|d| {
            d.filter_map(Result::ok).find_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".ports")
                    .and_then(|n| n.rsplit('_').next())
                    .and_then(|p| p.parse().ok())
            })
        })
        .unwrap_or(0);
    let env = Env {
        url: server.url().to_string(),
        server_pid,
        cache: cache.path().to_path_buf(),
        rt,
        client,
    };

    // 3. Start-up (first: the cold start needs the empty cache).
    println!("\n== start-up");
    let cold = plugin_start(&env, cache.path());
    println!(
        "  plugin, cold cache: handshake {:.0} ms, first Capabilities answered {:.0} ms",
        ms(cold.handshake),
        ms(cold.capabilities)
    );
    let warm: Vec<Start> = (0..opts.warm_starts)
        .map(|_| plugin_start(&env, cache.path()))
        .collect();
    let warm_ms = median(warm.iter().map(|s| ms(s.capabilities)).collect());
    let warm_hs = median(warm.iter().map(|s| ms(s.handshake)).collect());
    println!(
        "  plugin, warm cache ({} starts): handshake {:.1} ms, first Capabilities {:.1} ms (median; min {:.1})",
        warm.len(),
        warm_hs,
        warm_ms,
        warm.iter()
            .map(|s| ms(s.capabilities))
            .fold(f64::INFINITY, f64::min)
    );
    let pilot = pilot_path();
    let mut validate = Vec::new();
    let mut validate_rss = 0;
    for _ in 0..opts.warm_starts {
        let m = run_measured(
            cli(
                &env,
                &pilot,
                &env.cache.join("no-state.json"),
                &["validate"],
            ),
            Duration::from_secs(300),
        );
        if m.code != 0 {
            fail(format!(
                "validate on the pilot failed (exit {}): {}",
                m.code, m.stderr
            ));
        }
        validate.push(ms(m.wall));
        validate_rss = m.maxrss_kb;
    }
    let validate_ms = median(validate);
    println!("  eventbus validate on the pilot: {validate_ms:.1} ms (median)");

    // 4. The boundary.
    println!(
        "\n== host-guest boundary ({} diff calls per measurement)",
        opts.calls
    );
    let b = boundary(&env, &opts);
    println!(
        "  diff through Runtime + Guest::diff: stream {:.1} us, consumer {:.1} us per call; empty call (name) {:.1} us; with the export's existence read on the server: {:.0} / {:.0} us",
        b.wasm_stream_us, b.wasm_consumer_us, b.null_call_us, b.live_stream_us, b.live_consumer_us
    );
    println!(
        "  same diff natively ({}): stream {:.1} us, consumer {:.1} us; with JSON decode like the export: {:.1} / {:.1} us",
        native_label(),
        b.native_stream_us,
        b.native_consumer_us,
        b.native_json_stream_us,
        b.native_json_consumer_us
    );
    println!(
        "  new instance + initialize: {:.2} ms; guest memory: idle instance {} KiB, after creating a stream + consumer {} KiB",
        b.instance_ms,
        b.mem_idle >> 10,
        b.mem_create >> 10
    );

    // 1, 2, 5. Apply, no-op plan, memory.
    let largest = *opts.sizes.iter().max().unwrap();
    let sizes: Vec<SizeResult> = opts
        .sizes
        .iter()
        .map(|&n| measure_size(&env, &opts, n, n == largest))
        .collect();

    // The same work with OpenTofu and terraform-provider-jetstream: the pilot, then each size.
    let tofu = find_tofu();
    let mut vs: Vec<Comparison> = Vec::new();
    match &tofu {
        Ok(t) => {
            println!(
                "\n== OpenTofu: {} ({}), terraform-provider-jetstream {} ({})",
                t.version,
                t.bin.display(),
                t.provider_version,
                t.provider_dir.display()
            );
            vs.push(compare_tofu(&env, t, &opts, "the pilot", &pilot_doc()));
            for &n in &opts.tofu_sizes {
                let doc = serde_json::from_str(&infra(n, opts.per_stream, &opts.storage)).unwrap();
                vs.push(compare_tofu(&env, t, &opts, &format!("N={n}"), &doc));
            }
        }
        Err(e) => {
            // Without OpenTofu the Terraform files are still generated, so the mapping from
            // our configs stays checked (CI runs this).
            let tf = terraform(&load_infra(&pilot_path()).specs);
            println!(
                "\n== side by side with OpenTofu: not measured ({e}); the pilot as Terraform: {} resources",
                tf.matches("\nresource ").count()
            );
        }
    }

    // The table.
    let big = sizes.iter().find(|s| s.n == largest).unwrap();
    println!("\n== results (wall times; medians where repeated)\n");
    println!("| measurement | value | target |");
    println!("|---|---:|---|");
    for s in &sizes {
        let (o, l, p) = (s.ours(), s.limit(), s.perconn());
        println!(
            "| apply N={} ({} resources): ours, `eventbus apply --parallelism {}` | {:.0} ms | |",
            s.n, s.resources, opts.parallelism, o
        );
        println!(
            "| apply N={}: limit, async-nats, 1 connection, {} in flight | {:.0} ms | |",
            s.n, opts.parallelism, l
        );
        println!(
            "| apply N={}: per-connection, async-nats, 1 connection per resource | {:.0} ms | |",
            s.n, p
        );
        println!("| apply N={}: ours/limit | {:.2}x | <= 1.25x |", s.n, o / l);
        println!(
            "| apply N={}: ours/per-connection (speed-up over per-connection = its inverse) | {:.2}x (speed-up {:.2}x) | <= 0.10x (>= 10x faster) |",
            s.n,
            o / p,
            p / o
        );
        println!(
            "| apply N={}: ours, plan-only preamble (`plan`, empty state) | {:.0} ms | |",
            s.n, s.preamble_ms
        );
        if let Some(t) = s.ours_tmpfs_ms {
            println!(
                "| apply N={}: ours with the state file on tmpfs (no fsync cost) | {:.0} ms ({:.2}x limit) | |",
                s.n,
                t,
                t / l
            );
        }
        let mut a = s.action_ms.clone();
        a.sort_by(|x, y| x.partial_cmp(y).unwrap());
        let mut ll = s.limit_lat_us.clone();
        ll.sort_by(|x, y| x.partial_cmp(y).unwrap());
        println!(
            "| apply N={}: per action p50/p99, ours from start to done (waits for a pool instance included) vs limit per request | {:.0}/{:.0} ms vs {:.2}/{:.2} ms | |",
            s.n,
            percentile(&a, 0.5),
            percentile(&a, 0.99),
            percentile(&ll, 0.5) / 1e3,
            percentile(&ll, 0.99) / 1e3
        );
        println!(
            "| apply N={}: CPU ms, client + nats-server: ours {:.0} + {:.0}, limit {:.0} + {:.0}, per-connection {:.0} + {:.0} | {:.2} ms CPU per action (ours, less the preamble's {:.0}) | |",
            s.n,
            s.cpu_ours.0,
            s.cpu_ours.1,
            s.cpu_limit.0,
            s.cpu_limit.1,
            s.cpu_perconn.0,
            s.cpu_perconn.1,
            (s.cpu_ours.0 - s.cpu_preamble) / s.resources as f64,
            s.cpu_preamble
        );
        println!(
            "| destroy N={} (ours, for reference) | {:.0} ms | |",
            s.n, s.destroy_ms
        );
        println!(
            "| no-op plan N={} ({} resources) | {:.0} ms ({:.0} ms CPU) | {}|",
            s.n,
            s.resources,
            s.noop(),
            s.cpu_noop,
            if s.n == 1000 { "< 1000 ms " } else { "" }
        );
        println!(
            "| peak host RSS, apply N={} (VmHWM polled / ru_maxrss) | {:.1} / {:.1} MiB | |",
            s.n,
            mib(s.apply_hwm_kb),
            mib(s.apply_maxrss_kb)
        );
        println!(
            "| peak host RSS, no-op plan N={} (ru_maxrss) | {:.1} MiB | |",
            s.n,
            mib(s.plan_maxrss_kb)
        );
    }
    println!(
        "| guest memory, apply N={}: plan instance (bisected) | {:.2} MiB | |",
        big.n,
        big.mem_apply_plan as f64 / 1048576.0
    );
    println!(
        "| guest memory, no-op plan N={} (bisected) | {:.2} MiB | |",
        big.n,
        big.mem_noop_plan as f64 / 1048576.0
    );
    println!(
        "| guest memory, a create-only pool instance (bisected) | {:.2} MiB | |",
        b.mem_create as f64 / 1048576.0
    );
    println!(
        "| guest memory, apply N={} total over {} instances (plan + {} creators) | {:.2} MiB | |",
        big.n,
        opts.parallelism,
        opts.parallelism - 1,
        (big.mem_apply_plan + (opts.parallelism as u64 - 1) * b.mem_create) as f64 / 1048576.0
    );
    if let Some((m, ok)) = big.fits_mib {
        println!(
            "| apply N={} re-run with --memory-mib {} | {} | |",
            big.n,
            m,
            if ok { "ok" } else { "FAILED" }
        );
    }
    println!(
        "| plugin start, cold cache (exec -> Capabilities) | {:.0} ms | |",
        ms(cold.capabilities)
    );
    println!("| plugin start, warm cache (exec -> Capabilities) | {warm_ms:.1} ms | < 50 ms |");
    println!("| plugin start, warm cache (exec -> handshake line) | {warm_hs:.1} ms | |");
    println!(
        "| `eventbus validate` on the pilot, warm cache | {validate_ms:.1} ms (RSS {:.1} MiB) | |",
        mib(validate_rss)
    );
    println!(
        "| diff across the boundary (Runtime + Guest::diff), stream / consumer | {:.1} / {:.1} us | < 20 us |",
        b.wasm_stream_us, b.wasm_consumer_us
    );
    println!(
        "| empty call across the boundary (Guest::name) | {:.1} us | |",
        b.null_call_us
    );
    println!(
        "| Guest::diff with its existence read on the server (wfctl's Diff), stream / consumer | {:.1} / {:.1} us | |",
        b.live_stream_us, b.live_consumer_us
    );
    println!(
        "| same diff natively, stream / consumer ({}) | {:.1} / {:.1} us | |",
        native_label(),
        b.native_stream_us,
        b.native_consumer_us
    );
    println!(
        "| same diff natively incl. JSON decode, stream / consumer | {:.1} / {:.1} us | |",
        b.native_json_stream_us, b.native_json_consumer_us
    );
    println!(
        "| boundary overhead: Guest::diff minus native diff, stream / consumer | {:.1} / {:.1} us | |",
        b.wasm_stream_us - b.native_stream_us,
        b.wasm_consumer_us - b.native_consumer_us
    );
    println!("| new instance + initialize | {:.2} ms | |", b.instance_ms);
    for c in &vs {
        let row = |what: &str, o: Timed, t: Timed, target: &str| {
            println!(
                "| vs OpenTofu, {} ({} resources), {what}: ours / tofu, wall ms (CPU ms; nats-server CPU ms) | {:.0} ({:.0}; {:.0}) / {:.0} ({:.0}; {:.0}) = tofu/ours {:.1}x wall, {:.1}x CPU | {target}|",
                c.label,
                c.resources,
                o.wall,
                o.cpu,
                o.server_cpu,
                t.wall,
                t.cpu,
                t.server_cpu,
                t.wall / o.wall,
                t.cpu / o.cpu
            );
        };
        let big = c.label == "N=1000";
        let ten = if big { ">= 10x " } else { "" };
        row("apply from empty", c.ours.apply, c.tofu.apply, ten);
        row(
            "no-op plan reading every resource (`plan --refresh` / `plan`)",
            c.ours.plan_refresh,
            c.tofu.plan_refresh,
            ten,
        );
        row(
            "no-op plan from state (`plan` / `plan -refresh=false`)",
            c.ours.plan,
            c.tofu.plan,
            "",
        );
        row(
            "no-op plan as each runs by default (`plan` / `plan`)",
            c.ours.plan,
            c.tofu.plan_refresh,
            "",
        );
        row(
            "apply of one changed field (`apply` / `apply`, each as by default)",
            c.ours.change,
            c.tofu.change,
            "",
        );
    }
    println!(
        "\n== where the time goes (in-process re-enactment with the host library, {}; ms)\n",
        in_process_build()
    );
    print!("  {:<68}", "step");
    for s in &sizes {
        print!(" {:>10}", format!("N={}", s.n));
    }
    println!();
    for (i, (k, _)) in big.profile.iter().enumerate() {
        print!("  {k:<68}");
        for s in &sizes {
            print!(" {:>10.1}", s.profile.get(i).map_or(f64::NAN, |p| p.1));
        }
        println!();
    }
    println!(
        "\nload at the end: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    // boundary = the whole per-call cost of a diff through Runtime + Guest::diff (the slower of
    // stream and consumer), the diff's own work included: the conservative reading.
    let boundary_us = b.wasm_stream_us.max(b.wasm_consumer_us);
    if big.n != 1000 {
        println!(
            "(not a full run: the figures below are for N={}, {} resources, not 7,000)",
            big.n, big.resources
        );
    }
    if let Some(c) = vs.first() {
        println!(
            "\nthe server's configs after our apply and after OpenTofu's ({}, {} resources): {}",
            c.label,
            c.resources,
            if c.config_diffs.is_empty() {
                "the same"
            } else {
                "differ in"
            }
        );
        for d in &c.config_diffs {
            println!("  {d}");
        }
    }
    // The ratios at the largest size OpenTofu ran (like for like: each tool's apply, and each
    // no-op plan that reads every resource from the server).
    let (tofu_apply, tofu_plan) = match vs.last() {
        Some(c) => {
            println!("(tofu/ours ratios: {}, {} resources)", c.label, c.resources);
            (
                c.tofu.apply.wall / c.ours.apply.wall,
                c.tofu.plan_refresh.wall / c.ours.plan_refresh.wall,
            )
        }
        None => (f64::NAN, f64::NAN),
    };
    println!(
        "bench: apply/limit={:.2} noop-plan-7000={:.0}ms boundary={:.1}us warm-start={:.1}ms tofu/ours-apply={:.1} tofu/ours-plan={:.1}",
        big.ours() / big.limit(),
        big.noop(),
        boundary_us,
        warm_ms,
        tofu_apply,
        tofu_plan
    );
}
