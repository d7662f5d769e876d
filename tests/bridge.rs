//! The wfctl plugin bridge, driven the way wfctl drives it: the built binary started as
//! go-plugin starts a plugin (magic cookie in the environment, working directory = the plugin
//! dir), the handshake line parsed from stdout, the unix socket dialled with a gRPC client
//! generated from our .proto files, and then wfctl's apply semantics re-enacted by a small
//! harness ([`Wfctl`]): plan via the driver's Diff against state, apply action by action
//! (replace = Delete then Create, nothing cascaded), `${...}` expanded from the environment,
//! `--allow-replace` for protected resources, Destroy with refs in state order.
//!
//! Every test starts its own nats-server and judges the plugin by what that server holds.
//! The `conformance::` tests mirror wfctl's conformance scenarios by name
//! (`just wfctl-conformance` runs and counts them).

use eventbus_host::wfctl::proto::go_plugin::grpc_controller_client::GrpcControllerClient;
use eventbus_host::wfctl::proto::iac as pb;
use eventbus_host::wfctl::proto::iac::ia_c_provider_drift_detector_client::IaCProviderDriftDetectorClient;
use eventbus_host::wfctl::proto::iac::ia_c_provider_finalizer_client::IaCProviderFinalizerClient;
use eventbus_host::wfctl::proto::iac::ia_c_provider_required_client::IaCProviderRequiredClient;
use eventbus_host::wfctl::proto::iac::resource_driver_client::ResourceDriverClient;
use eventbus_host::wfctl::proto::plugin_v1::plugin_service_client::PluginServiceClient;
use eventbus_host::wfctl::proto::{go_plugin, plugin_v1};
use eventbus_tests::{
    JetStream, NatsServer, Owned, TempDir, Value, eventbus_bin, json, pilot_yaml,
};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

const BROKER: &str = "bmw-eventbus";
const STREAM_MODULE: &str = "bmw-stream";
const STREAM: &str = "BMW_FULFILLMENT";
const T_BROKER: &str = "infra.eventbus";
const T_STREAM: &str = "infra.eventbus.stream";
const T_CONSUMER: &str = "infra.eventbus.consumer";

// ---------------------------------------------------------------------------------------------
// The plugin process, started as go-plugin starts it

struct Plugin {
    rt: tokio::runtime::Runtime,
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    channel: Channel,
    /// `unix|/path` or `tcp|127.0.0.1:port`, from the handshake line.
    addr: String,
    handshake_after: Duration,
    started: Instant,
    _plugin_dir: TempDir,
}

/// Env for every plugin the tests start: debug logs help when a test fails.
fn plugin_cmd(bin: &Path, plugin_dir: &Path, extra_env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(plugin_dir)
        .env("WORKFLOW_PLUGIN", "workflow-external-plugin-v1")
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env("EVENTBUS_LOG", "info,eventbus_host=debug")
        // Generated secrets and learned brokers stay with this plugin directory, not the
        // user's ~/.local/share/eventbus (a test may name a shared file in extra_env).
        .env("EVENTBUS_SECRETS_FILE", plugin_dir.join("secrets.json"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd
}

impl Plugin {
    fn start() -> Plugin {
        Self::start_with(&[])
    }

    fn start_with(extra_env: &[(&str, &str)]) -> Plugin {
        Self::launch(&eventbus_bin(), TempDir::new("plugins"), extra_env, &[])
    }

    /// Starts `bin` with the working directory `plugin_dir`, as go-plugin does for wfctl.
    fn launch(
        bin: &Path,
        plugin_dir: TempDir,
        extra_env: &[(&str, &str)],
        remove_env: &[&str],
    ) -> Plugin {
        let started = Instant::now();
        let mut cmd = plugin_cmd(bin, plugin_dir.path(), extra_env);
        for k in remove_env {
            cmd.env_remove(k);
        }
        let mut child = cmd
            .owned()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} as a plugin: {e}", bin.display()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        // The handshake: exactly one line on stdout.
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Anything more on stdout would corrupt go-plugin's protocol: record it.
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            assert!(
                rest.is_empty(),
                "the plugin wrote more than the handshake on stdout: {rest:?}"
            );
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "no handshake line within 60s; stderr:\n{}",
                    stderr.lock().unwrap()
                )
            });
        let handshake_after = started.elapsed();
        let parts: Vec<&str> = line.trim_end_matches('\n').split('|').collect();
        assert_eq!(
            parts.len(),
            5,
            "handshake {line:?} is not CORE|APP|NETWORK|ADDR|PROTOCOL; stderr:\n{}",
            stderr.lock().unwrap()
        );
        assert_eq!(
            (parts[0], parts[1], parts[4]),
            ("1", "1", "grpc"),
            "handshake {line:?}"
        );
        assert!(
            parts[2] == "unix" || parts[2] == "tcp",
            "network {}",
            parts[2]
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (network, address) = (parts[2].to_string(), parts[3].to_string());
        let channel = rt.block_on(async {
            if network == "unix" {
                let path = PathBuf::from(&address);
                Endpoint::try_from("http://[::]:50051")
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
            } else {
                Endpoint::try_from(format!("http://{address}"))
                    .unwrap()
                    .connect()
                    .await
            }
        });
        let channel = channel.unwrap_or_else(|e| {
            panic!(
                "cannot dial {line}: {e}; stderr:\n{}",
                stderr.lock().unwrap()
            )
        });
        Plugin {
            rt,
            child: Some(child),
            stderr,
            channel,
            addr: format!("{network}|{address}"),
            handshake_after,
            started,
            _plugin_dir: plugin_dir,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn provider(&self) -> IaCProviderRequiredClient<Channel> {
        IaCProviderRequiredClient::new(self.channel.clone())
    }

    fn driver(&self) -> ResourceDriverClient<Channel> {
        ResourceDriverClient::new(self.channel.clone())
    }

    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn initialize(&self, cfg: Value) -> Result<(), Status> {
        self.block(self.provider().initialize(pb::InitializeRequest {
            config_json: cfg.to_string().into_bytes(),
        }))
        .map(|_| ())
    }

    fn capabilities(&self) -> Result<pb::CapabilitiesResponse, Status> {
        self.block(self.provider().capabilities(pb::CapabilitiesRequest {}))
            .map(|r| r.into_inner())
    }

    fn create(&self, spec: &pb::ResourceSpec) -> Result<pb::ResourceOutput, Status> {
        let req = pb::ResourceCreateRequest {
            resource_type: spec.r#type.clone(),
            spec: Some(spec.clone()),
        };
        self.block(self.driver().create(req))
            .map(|r| r.into_inner().output.expect("create returns an output"))
    }

    fn read(&self, r: &pb::ResourceRef) -> Result<pb::ResourceOutput, Status> {
        let req = pb::ResourceReadRequest {
            resource_type: r.r#type.clone(),
            r#ref: Some(r.clone()),
        };
        self.block(self.driver().read(req))
            .map(|r| r.into_inner().output.expect("read returns an output"))
    }

    fn update(
        &self,
        r: &pb::ResourceRef,
        spec: &pb::ResourceSpec,
    ) -> Result<pb::ResourceOutput, Status> {
        let req = pb::ResourceUpdateRequest {
            resource_type: spec.r#type.clone(),
            r#ref: Some(r.clone()),
            spec: Some(spec.clone()),
        };
        self.block(self.driver().update(req))
            .map(|r| r.into_inner().output.expect("update returns an output"))
    }

    fn delete(&self, r: &pb::ResourceRef) -> Result<(), Status> {
        let req = pb::ResourceDeleteRequest {
            resource_type: r.r#type.clone(),
            r#ref: Some(r.clone()),
        };
        self.block(self.driver().delete(req)).map(|_| ())
    }

    fn diff(
        &self,
        desired: &pb::ResourceSpec,
        current: &pb::ResourceOutput,
    ) -> Result<pb::DiffResult, Status> {
        let req = pb::ResourceDiffRequest {
            resource_type: desired.r#type.clone(),
            desired: Some(desired.clone()),
            current: Some(current.clone()),
        };
        self.block(self.driver().diff(req))
            .map(|r| r.into_inner().result.expect("diff returns a result"))
    }

    fn plan_rpc(
        &self,
        desired: Vec<pb::ResourceSpec>,
        current: Vec<pb::ResourceState>,
    ) -> Result<pb::IaCPlan, Status> {
        self.block(self.provider().plan(pb::PlanRequest { desired, current }))
            .map(|r| r.into_inner().plan.expect("plan"))
    }

    fn destroy(&self, refs: Vec<pb::ResourceRef>) -> Result<pb::DestroyResult, Status> {
        self.block(self.provider().destroy(pb::DestroyRequest { refs }))
            .map(|r| r.into_inner().result.expect("destroy result"))
    }

    /// go-plugin's Shutdown; returns how long the process took to exit, and its exit code.
    fn shutdown(&mut self) -> (Duration, Option<i32>) {
        let asked = Instant::now();
        let r = self
            .block(GrpcControllerClient::new(self.channel.clone()).shutdown(go_plugin::Empty {}));
        assert!(r.is_ok(), "Shutdown failed: {r:?}");
        let mut child = self.child.take().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return (asked.elapsed(), st.code());
            }
            // Only a guard against a hang: the exit itself is asserted by the caller.
            if asked.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                panic!(
                    "the plugin did not exit within 60 s of Shutdown; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            // Killed, the plugin cannot remove its socket directory: do it for it.
            let ours = |d: &&Path| {
                d.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("plugin-eventbus-"))
            };
            if let Some(sock) = self.addr.strip_prefix("unix|")
                && let Some(dir) = Path::new(sock).parent().filter(ours)
            {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        if std::thread::panicking() {
            eprintln!("--- plugin stderr:\n{}", self.stderr());
        }
    }
}

#[track_caller]
fn expect_err<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, text: &str) -> Status {
    match r {
        Ok(v) => panic!("expected {code:?} containing {text:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "status {s:?}");
            assert!(
                s.message().contains(text),
                "status message {:?} lacks {text:?}",
                s.message()
            );
            s
        }
    }
}

fn js_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

// ---------------------------------------------------------------------------------------------
// infra.yaml -> ResourceSpecs, as wfctl builds them

/// The modules wfctl routes to our iac.provider module, as ResourceSpecs: `infra.*` types,
/// `config.iac_provider` naming the module whose `provider` is eventbus, module-level
/// `protected: true` injected into config, `depends_on` from config.
fn specs_from_yaml(yaml: &str, nats_url: &str) -> Vec<pb::ResourceSpec> {
    let text = yaml.replace("${NATS_URL}", nats_url);
    let doc: Value = serde_yaml_ng::from_str(&text).expect("infra.yaml parses");
    let modules = doc["modules"].as_array().expect("modules").clone();
    let ours: BTreeSet<String> = modules
        .iter()
        .filter(|m| m["type"] == "iac.provider" && m["config"]["provider"] == "eventbus")
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    modules
        .iter()
        .filter(|m| m["type"].as_str().is_some_and(|t| t.starts_with("infra.")))
        .filter(|m| {
            let route = m["config"]["iac_provider"]
                .as_str()
                .or(m["config"]["provider"].as_str())
                .unwrap_or("");
            ours.contains(route)
        })
        .map(|m| {
            let mut config = m["config"].clone();
            if m["protected"] == json!(true) {
                config["protected"] = json!(true);
            }
            spec(
                m["name"].as_str().unwrap(),
                m["type"].as_str().unwrap(),
                config,
            )
        })
        .collect()
}

fn spec(name: &str, rtype: &str, config: Value) -> pb::ResourceSpec {
    let depends_on = config["depends_on"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    pb::ResourceSpec {
        name: name.into(),
        r#type: rtype.into(),
        config_json: config.to_string().into_bytes(),
        size: String::new(),
        hints: None,
        depends_on,
    }
}

fn config_of(s: &pb::ResourceSpec) -> Value {
    js_of(&s.config_json)
}

/// Edit one spec's config in a list of specs.
fn edit(specs: &mut [pb::ResourceSpec], name: &str, f: impl FnOnce(&mut Value)) {
    let s = specs
        .iter_mut()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no spec {name}"));
    let mut cfg = config_of(s);
    f(&mut cfg);
    *s = spec(&s.name, &s.r#type.clone(), cfg);
}

fn pilot_specs(nats: &NatsServer) -> Vec<pb::ResourceSpec> {
    specs_from_yaml(&pilot_yaml(), nats.url())
}

// ---------------------------------------------------------------------------------------------
// A small wfctl: state, plan via Diff, apply action by action

#[derive(Debug, Clone)]
struct Record {
    name: String,
    rtype: String,
    provider_id: String,
    outputs: Value,
    config: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Update,
    Replace,
    Delete,
}

#[derive(Debug, Clone)]
struct Action {
    kind: Kind,
    spec: pb::ResourceSpec,
    current: Option<Record>,
}

struct Wfctl<'p> {
    plugin: &'p Plugin,
    state: Vec<Record>,
    /// Names whose driver Delete / Create / Update was called, in order ("delete x").
    calls: Vec<String>,
}

impl<'p> Wfctl<'p> {
    fn new(plugin: &'p Plugin) -> Self {
        Wfctl {
            plugin,
            state: vec![],
            calls: vec![],
        }
    }

    fn get(&self, name: &str) -> Option<&Record> {
        self.state.iter().find(|r| r.name == name)
    }

    fn record(&self, name: &str) -> &Record {
        self.get(name)
            .unwrap_or_else(|| panic!("{name} is not in state"))
    }

    fn ref_of(r: &Record) -> pb::ResourceRef {
        pb::ResourceRef {
            name: r.name.clone(),
            r#type: r.rtype.clone(),
            provider_id: r.provider_id.clone(),
        }
    }

    /// `current` as wfctl rebuilds it from state for Diff: name, type, provider_id, outputs.
    fn current_of(r: &Record) -> pb::ResourceOutput {
        pb::ResourceOutput {
            name: r.name.clone(),
            r#type: r.rtype.clone(),
            provider_id: r.provider_id.clone(),
            outputs_json: r.outputs.to_string().into_bytes(),
            sensitive: Default::default(),
            status: String::new(),
        }
    }

    /// wfctl's plan: new -> create; existing -> Diff (needs_replace or any force_new ->
    /// replace, needs_update -> update); gone -> delete. Creates and updates ordered by
    /// depends_on, deletes in reverse state order, last.
    fn plan(&self, desired: &[pb::ResourceSpec]) -> Result<Vec<Action>, Status> {
        let mut actions = vec![];
        for s in order(desired) {
            match self.get(&s.name) {
                None => actions.push(Action {
                    kind: Kind::Create,
                    spec: s.clone(),
                    current: None,
                }),
                Some(cur) => {
                    let d = self.plugin.diff(
                        &resolve(&s, &self.state).unwrap_or(s.clone()),
                        &Self::current_of(cur),
                    )?;
                    let kind = if d.needs_replace || d.changes.iter().any(|c| c.force_new) {
                        Some(Kind::Replace)
                    } else if d.needs_update {
                        Some(Kind::Update)
                    } else {
                        None
                    };
                    if let Some(kind) = kind {
                        actions.push(Action {
                            kind,
                            spec: s.clone(),
                            current: Some(cur.clone()),
                        });
                    }
                }
            }
        }
        let names: BTreeSet<&str> = desired.iter().map(|s| s.name.as_str()).collect();
        for r in self
            .state
            .iter()
            .rev()
            .filter(|r| !names.contains(r.name.as_str()))
        {
            let sp = spec(&r.name, &r.rtype, r.config.clone());
            actions.push(Action {
                kind: Kind::Delete,
                spec: sp,
                current: Some(r.clone()),
            });
        }
        Ok(actions)
    }

    /// The --allow-replace gate: replace or delete of a protected resource needs its name.
    fn gate(actions: &[Action], allow: &[&str]) -> Result<(), String> {
        let blocked: Vec<&str> = actions
            .iter()
            .filter(|a| matches!(a.kind, Kind::Replace | Kind::Delete))
            .filter(|a| {
                config_of(&a.spec)["protected"] == json!(true)
                    || a.current
                        .as_ref()
                        .is_some_and(|c| c.config["protected"] == json!(true))
            })
            .filter(|a| !allow.contains(&a.spec.name.as_str()))
            .map(|a| a.spec.name.as_str())
            .collect();
        if blocked.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "plan replaces or deletes protected resources: {}; re-run with {}",
                blocked.join(", "),
                blocked
                    .iter()
                    .map(|b| format!("--allow-replace={b}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
        }
    }

    /// Applies action by action, going on after a failure; returns the failures.
    fn apply(&mut self, actions: &[Action]) -> Vec<(String, Status)> {
        let mut errors = vec![];
        for a in actions {
            let r = match a.kind {
                Kind::Create => self.create(&a.spec),
                Kind::Update => self.update(a),
                Kind::Delete => self.delete(a.current.as_ref().unwrap()),
                Kind::Replace => self
                    .delete(a.current.as_ref().unwrap())
                    .and_then(|_| self.create(&a.spec)),
            };
            if let Err(e) = r {
                errors.push((a.spec.name.clone(), e));
            }
        }
        errors
    }

    /// plan + gate + apply, panicking on any failure.
    #[track_caller]
    fn converge(&mut self, desired: &[pb::ResourceSpec]) -> Vec<Action> {
        let plan = self
            .plan(desired)
            .unwrap_or_else(|e| panic!("plan failed: {e:?}\n{}", self.plugin.stderr()));
        let errors = self.apply(&plan);
        assert!(
            errors.is_empty(),
            "apply failed: {errors:?}\n{}",
            self.plugin.stderr()
        );
        plan
    }

    fn resolved(&self, s: &pb::ResourceSpec) -> Result<pb::ResourceSpec, Status> {
        resolve(s, &self.state).map_err(Status::invalid_argument)
    }

    fn save(&mut self, s: &pb::ResourceSpec, out: pb::ResourceOutput) {
        assert!(
            !out.provider_id.is_empty(),
            "{}: provider_id must never be empty",
            s.name
        );
        let rec = Record {
            name: s.name.clone(),
            rtype: s.r#type.clone(),
            provider_id: out.provider_id,
            outputs: js_of(&out.outputs_json),
            config: config_of(s),
        };
        match self.state.iter_mut().find(|r| r.name == s.name) {
            Some(r) => *r = rec,
            None => self.state.push(rec),
        }
    }

    fn create(&mut self, s: &pb::ResourceSpec) -> Result<(), Status> {
        let s = self.resolved(s)?;
        self.calls.push(format!("create {}", s.name));
        let out = self.plugin.create(&s)?;
        self.save(&s, out);
        Ok(())
    }

    fn update(&mut self, a: &Action) -> Result<(), Status> {
        let s = self.resolved(&a.spec)?;
        self.calls.push(format!("update {}", s.name));
        let out = self
            .plugin
            .update(&Self::ref_of(a.current.as_ref().unwrap()), &s)?;
        self.save(&s, out);
        Ok(())
    }

    fn delete(&mut self, r: &Record) -> Result<(), Status> {
        self.calls.push(format!("delete {}", r.name));
        self.plugin.delete(&Self::ref_of(r))?;
        self.state.retain(|x| x.name != r.name);
        Ok(())
    }
}

/// Creates and updates by depends_on (stable: input order otherwise).
fn order(specs: &[pb::ResourceSpec]) -> Vec<pb::ResourceSpec> {
    let names: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut out = vec![];
    while out.len() < specs.len() {
        let before = out.len();
        for s in specs {
            if !done.contains(&s.name)
                && s.depends_on
                    .iter()
                    .all(|d| done.contains(d) || !names.contains(d.as_str()))
            {
                done.insert(s.name.clone());
                out.push(s.clone());
            }
        }
        assert!(out.len() > before, "dependency cycle");
    }
    out
}

/// `${...}` in config strings as the real wfctl treats them when it reads infra.yaml: expanded
/// from the environment (an unset variable is empty), so `${module.field}` arrives empty. Only
/// under `env_vars`, `env_vars_secret` and `secret_env_vars` does wfctl keep them and resolve
/// them from earlier outputs just before the action (id = provider_id); none of our resource
/// types has those keys.
fn resolve(s: &pb::ResourceSpec, state: &[Record]) -> Result<pb::ResourceSpec, String> {
    const KEPT: [&str; 3] = ["env_vars", "env_vars_secret", "secret_env_vars"];
    fn expand(text: &str, lookup: &dyn Fn(&str) -> String) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let Some(end) = rest[i..].find('}').map(|e| e + i) else {
                break;
            };
            out.push_str(&lookup(&rest[i + 2..end]));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }
    fn walk(v: &mut Value, lookup: &dyn Fn(&str) -> String) {
        match v {
            Value::String(text) if text.contains("${") => *text = expand(text, lookup),
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, lookup)),
            Value::Object(o) => o
                .iter_mut()
                .filter(|(k, _)| !KEPT.contains(&k.as_str()))
                .for_each(|(_, x)| walk(x, lookup)),
            _ => {}
        }
    }
    let from_outputs = |inner: &str| {
        let (module, field) = inner.split_once('.').unwrap_or((inner, ""));
        let rec = state.iter().find(|r| r.name == module);
        match (rec, field) {
            (Some(r), "id") => r.provider_id.clone(),
            (Some(r), f) => match r.outputs.get(f) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            },
            (None, _) => String::new(),
        }
    };
    let mut cfg = config_of(s);
    if let Value::Object(o) = &mut cfg {
        for key in KEPT {
            if let Some(v) = o.get_mut(key) {
                walk(v, &|inner| from_outputs(inner));
            }
        }
    }
    walk(&mut cfg, &|name| std::env::var(name).unwrap_or_default());
    Ok(spec(&s.name, &s.r#type, cfg))
}

fn kinds(plan: &[Action]) -> Vec<(Kind, String)> {
    plan.iter().map(|a| (a.kind, a.spec.name.clone())).collect()
}

/// A plugin initialized for the eventbus provider, with the pilot applied on `nats`.
fn applied_pilot<'p>(plugin: &'p Plugin, nats: &NatsServer) -> (Wfctl<'p>, Vec<pb::ResourceSpec>) {
    plugin
        .initialize(json!({"provider": "eventbus"}))
        .expect("initialize");
    let specs = pilot_specs(nats);
    let mut w = Wfctl::new(plugin);
    let plan = w.converge(&specs);
    assert_eq!(
        plan.len(),
        8,
        "the pilot is one broker, one stream, six consumers"
    );
    assert!(plan.iter().all(|a| a.kind == Kind::Create));
    (w, specs)
}

fn consumer_created(js: &JetStream, name: &str) -> String {
    js.consumer_info(STREAM, name)
        .unwrap_or_else(|| panic!("consumer {name} missing"))["created"]
        .as_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// The protocol and the pilot

#[test]
fn handshake_health_registry_and_capabilities_as_wfctl_sees_them() {
    // What go-plugin and wfctl check before any resource call.
    let plugin = Plugin::start();
    assert!(
        plugin.addr.starts_with("unix|"),
        "a unix socket is preferred: {}",
        plugin.addr
    );

    // go-plugin's health check of service "plugin".
    let mut health = tonic_health::pb::health_client::HealthClient::new(plugin.channel.clone());
    let h = plugin
        .block(health.check(tonic_health::pb::HealthCheckRequest {
            service: "plugin".into(),
        }))
        .expect("health check")
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // The registry: one SERVICE/STRICT_PROTO descriptor per served IaC service, sorted.
    let reg = plugin
        .block(PluginServiceClient::new(plugin.channel.clone()).get_contract_registry(()))
        .expect("GetContractRegistry")
        .into_inner();
    let names: Vec<&str> = reg
        .contracts
        .iter()
        .map(|c| c.service_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "workflow.plugin.external.iac.IaCProviderDriftConfigDetector",
            "workflow.plugin.external.iac.IaCProviderDriftDetector",
            "workflow.plugin.external.iac.IaCProviderFinalizer",
            "workflow.plugin.external.iac.IaCProviderRequired",
            "workflow.plugin.external.iac.ResourceDriver",
        ]
    );
    assert!(
        reg.contracts
            .iter()
            .all(|c| c.kind == plugin_v1::ContractKind::Service as i32
                && c.kind == 3
                && c.mode == 3)
    );
    let fds = reg.file_descriptor_set.expect("descriptor set");
    assert!(
        fds.file
            .iter()
            .any(|f| f.package() == "workflow.plugin.external.iac")
    );

    // Other PluginService methods answer Unimplemented (wfctl then reads plugin.json).
    let mut raw = tonic::client::Grpc::new(plugin.channel.clone());
    let r: Result<tonic::Response<()>, Status> = plugin.block(async {
        raw.ready().await.unwrap();
        raw.unary(
            tonic::Request::new(()),
            "/workflow.plugin.v1.PluginService/GetManifest"
                .parse()
                .unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
    });
    assert_eq!(r.unwrap_err().code(), Code::Unimplemented);

    plugin
        .initialize(json!({"provider": "eventbus"}))
        .expect("initialize");
    let caps = plugin.capabilities().expect("capabilities");
    assert_eq!(
        caps.compute_plan_version, "v2",
        "wfctl refuses anything but v2"
    );
    let types: BTreeSet<&str> = caps
        .capabilities
        .iter()
        .map(|c| c.resource_type.as_str())
        .collect();
    assert_eq!(types, BTreeSet::from([T_BROKER, T_STREAM, T_CONSUMER]));
    let name = plugin
        .block(plugin.provider().name(pb::NameRequest {}))
        .unwrap()
        .into_inner()
        .name;
    assert_eq!(name, "eventbus");
    let version = plugin
        .block(plugin.provider().version(pb::VersionRequest {}))
        .unwrap()
        .into_inner()
        .version;
    assert!(!version.is_empty());
    eprintln!(
        "plugin start -> handshake {:?}; start -> first Capabilities answered {:?}",
        plugin.handshake_after,
        plugin.started.elapsed()
    );
}

#[test]
fn initialize_refuses_another_provider_with_the_validation_sentinel() {
    // Config from Initialize is validated by the guest; the error keeps wfctl's sentinel.
    let plugin = Plugin::start();
    let e = expect_err(
        plugin.initialize(json!({"provider": "digitalocean"})),
        Code::InvalidArgument,
        "iac: validation error",
    );
    assert!(e.message().contains("config.provider"), "{e:?}");
    expect_err(
        plugin.initialize(json!(["not", "an", "object"])),
        Code::InvalidArgument,
        "iac: validation error",
    );
    plugin
        .initialize(json!({"provider": "eventbus", "allow_nats": ["nats://127.0.0.1:1"]}))
        .expect("a valid config is accepted after a refused one");
}

#[test]
fn resource_driver_routes_by_type_and_maps_errors_to_codes() {
    // Empty type: InvalidArgument. Unknown type: NotFound. Unsupported: Unimplemented.
    let nats = NatsServer::start();
    let plugin = Plugin::start();
    plugin.initialize(json!({"provider": "eventbus"})).unwrap();
    let mut s = spec("x", "", json!({}));
    let req = pb::ResourceCreateRequest {
        resource_type: String::new(),
        spec: Some(s.clone()),
    };
    expect_err(
        plugin.block(plugin.driver().create(req)),
        Code::InvalidArgument,
        "iac: validation error",
    );
    s.r#type = "infra.database".into();
    expect_err(plugin.create(&s), Code::NotFound, "iac: resource not found");
    let keys = plugin
        .block(plugin.driver().sensitive_keys(pb::SensitiveKeysRequest {
            resource_type: T_STREAM.into(),
        }))
        .unwrap()
        .into_inner()
        .keys;
    assert!(keys.is_empty());
    expect_err(
        plugin.block(plugin.driver().sensitive_keys(pb::SensitiveKeysRequest {
            resource_type: "infra.vpc".into(),
        })),
        Code::NotFound,
        "iac: resource not found",
    );
    let boot = plugin.block(plugin.provider().bootstrap_state_backend(
        pb::BootstrapStateBackendRequest {
            config_json: b"{}".to_vec(),
        },
    ));
    // Called by wfctl before every apply when the state backend is remote: nothing to create.
    let boot = boot.expect("BootstrapStateBackend answers").into_inner();
    assert_eq!(boot.result.map(|r| r.bucket), Some(String::new()));
    // A stream before any broker is known: a validation error naming broker_ref, never "not
    // found" (wfctl drops a resource from state on a not-found delete).
    let stream = spec(
        STREAM_MODULE,
        T_STREAM,
        json!({"name": STREAM, "subjects": ["bmw.>"]}),
    );
    expect_err(
        plugin.create(&stream),
        Code::InvalidArgument,
        "config.broker_ref",
    );
    // A deploy target that does not exist: the guest's validation text, with its field.
    let broker = spec(
        BROKER,
        T_BROKER,
        json!({"provider": "nats", "deploy_target": "mainframe", "url": nats.url()}),
    );
    let e = expect_err(
        plugin.create(&broker),
        Code::InvalidArgument,
        "iac: validation error",
    );
    assert!(e.message().contains("deploy_target"), "{e:?}");
    // Validation errors name the resource and field.
    let bad = spec("s2", T_STREAM, json!({"subjects": []}));
    let e = expect_err(
        plugin.create(&bad),
        Code::InvalidArgument,
        "iac: validation error",
    );
    assert!(e.message().contains("s2"), "{e:?}");
}

#[test]
fn pilot_applies_action_by_action_replans_empty_and_destroys_dependents_first() {
    // The pilot through wfctl's apply, a second plan with nothing to do, then Destroy with
    // refs in a scrambled order: consumers go before the stream, the stream before the broker.
    let nats = NatsServer::start();
    let js = JetStream::connect(nats.url());
    let mut plugin = Plugin::start();
    let (w, specs) = applied_pilot(&plugin, &nats);
    assert_eq!(js.stream_names(), vec![STREAM.to_string()]);
    assert_eq!(js.consumer_names(STREAM).len(), 6);
    let filters = js.consumer_config(STREAM, "orders-intake");
    assert_eq!(filters["filter_subject"], "bmw.orders.created");
    assert_eq!(filters["max_deliver"], 5);

    // Outputs carry everything Diff compares: a second plan against state is empty.
    let again = w.plan(&specs).expect("replan");
    assert!(
        again.is_empty(),
        "second plan should be empty: {:?}",
        kinds(&again)
    );

    // Status reports every resource running.
    let refs: Vec<pb::ResourceRef> = w.state.iter().map(Wfctl::ref_of).collect();
    let st = plugin
        .block(
            plugin
                .provider()
                .status(pb::StatusRequest { refs: refs.clone() }),
        )
        .unwrap()
        .into_inner()
        .statuses;
    assert_eq!(st.len(), 8);
    assert!(st.iter().all(|s| s.status == "running"), "{st:?}");

    // Destroy: broker first, stream in the middle, consumers scattered.
    let mut scrambled = refs.clone();
    scrambled.sort_by_key(|r| (r.r#type != T_BROKER, r.name.len() % 3, r.name.clone()));
    assert_eq!(scrambled[0].r#type, T_BROKER);
    let res = plugin.destroy(scrambled).expect("destroy");
    assert!(res.errors.is_empty(), "{:?}", res.errors);
    assert_eq!(res.destroyed.len(), 8);
    let pos = |n: &str| res.destroyed.iter().position(|d| d == n).unwrap();
    for r in refs.iter().filter(|r| r.r#type == T_CONSUMER) {
        assert!(
            pos(&r.name) < pos(STREAM_MODULE),
            "consumer {} after the stream: {:?}",
            r.name,
            res.destroyed
        );
    }
    assert!(pos(STREAM_MODULE) < pos(BROKER), "{:?}", res.destroyed);
    assert!(
        js.stream_names().is_empty(),
        "the stream is gone from the server"
    );

    // FinalizeApply answers OK with no errors.
    let fin = plugin
        .block(
            IaCProviderFinalizerClient::new(plugin.channel.clone()).finalize_apply(
                pb::FinalizeApplyRequest {
                    plan_id: "p1".into(),
                },
            ),
        )
        .unwrap()
        .into_inner();
    assert!(fin.errors.is_empty());

    // Shutdown: the process exits at once, cleanly, and removes its socket.
    let socket = PathBuf::from(plugin.addr.trim_start_matches("unix|"));
    let (took, code) = plugin.shutdown();
    assert_eq!(code, Some(0));
    // go-plugin kills a plugin 2 s after Shutdown. With no call in flight the server stops at
    // once, without the in-flight grace (1.5 s) that would say so in the log. (How long the
    // exit takes is the benchmarks' business; a loaded machine may stretch it.)
    eprintln!("exit {took:?} after Shutdown");
    assert!(
        !plugin.stderr().contains("calls still in flight"),
        "the exit waited for the in-flight grace:\n{}",
        plugin.stderr()
    );
    assert!(!socket.exists(), "socket {} left behind", socket.display());
}

#[test]
fn a_fresh_plugin_process_destroys_what_an_earlier_one_created() {
    // wfctl starts a new plugin for `destroy`: it gets only refs. The broker's provider id
    // carries its endpoint, so the new process reaches the server and removes everything.
    let nats = NatsServer::start();
    let js = JetStream::connect(nats.url());
    let mut first = Plugin::start();
    let (w, _specs) = applied_pilot(&first, &nats);
    let refs: Vec<pb::ResourceRef> = w.state.iter().map(Wfctl::ref_of).collect();
    drop(w);
    first.shutdown();
    let second = Plugin::start();
    second
        .initialize(json!({"provider": "eventbus"}))
        .expect("initialize");
    let res = second.destroy(refs).expect("destroy");
    assert!(res.errors.is_empty(), "{:?}", res.errors);
    assert_eq!(res.destroyed.len(), 8);
    assert!(
        js.stream_names().is_empty(),
        "the stream is gone from the server"
    );
}

#[test]
fn consumers_deleted_out_of_band_are_recreated_by_the_next_plan() {
    // Diff checks the server for streams and consumers, so when wfctl does call it (no diff
    // cache entry, or WFCTL_DIFFCACHE=disabled) consumers deleted behind its back are
    // recreated instead of the state being believed.
    let nats = NatsServer::start();
    let js = JetStream::connect(nats.url());
    let plugin = Plugin::start();
    let (mut w, specs) = applied_pilot(&plugin, &nats);
    for name in js.consumer_names(STREAM) {
        js.delete_consumer(STREAM, &name);
    }
    let again = w.converge(&specs);
    assert_eq!(again.len(), 6, "{:?}", kinds(&again));
    assert_eq!(js.consumer_names(STREAM).len(), 6);
    assert!(w.plan(&specs).unwrap().is_empty());
}

#[test]
fn drift_detection_reports_ghosts_and_config_changes() {
    // IaCProviderDriftDetector: a consumer deleted and a stream changed behind our back.
    let nats = NatsServer::start();
    let js = JetStream::connect(nats.url());
    let plugin = Plugin::start();
    let (w, specs) = applied_pilot(&plugin, &nats);
    js.delete_consumer(STREAM, "audit-log");
    js.update_stream(STREAM, |c| c["max_msgs"] = json!(1000));
    let refs: Vec<pb::ResourceRef> = w
        .state
        .iter()
        .filter(|r| r.rtype != T_BROKER)
        .map(Wfctl::ref_of)
        .collect();
    let specs_map = specs.iter().map(|s| (s.name.clone(), s.clone())).collect();
    let mut client = IaCProviderDriftDetectorClient::new(plugin.channel.clone());
    let drifts = plugin
        .block(
            client.detect_drift_with_specs(pb::DetectDriftWithSpecsRequest {
                refs,
                specs: specs_map,
            }),
        )
        .unwrap()
        .into_inner()
        .drifts;
    let class = |n: &str| {
        drifts
            .iter()
            .find(|d| d.name == n)
            .map(|d| d.class)
            .unwrap()
    };
    assert_eq!(class("bmw-audit-log"), pb::DriftClass::Ghost as i32);
    assert_eq!(class(STREAM_MODULE), pb::DriftClass::Config as i32);
    assert_eq!(class("bmw-orders-intake"), pb::DriftClass::InSync as i32);
    let stream_drift = drifts.iter().find(|d| d.name == STREAM_MODULE).unwrap();
    assert!(
        stream_drift.drifted && stream_drift.fields.iter().any(|f| f == "max_msgs"),
        "{stream_drift:?}"
    );
}

#[test]
fn a_guest_timeout_fails_one_call_and_the_next_call_gets_a_fresh_instance() {
    // A broker URL that accepts TCP but never speaks NATS: the call exceeds the 1 s limit.
    let nats = NatsServer::start();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("nats://{}", silent.local_addr().unwrap());
    // Only broker calls get the 1 s limit: the calls after it that prove the process still
    // serves keep the default, so a loaded machine cannot make them time out too.
    let plugin = Plugin::start_with(&[("EVENTBUS_BROKER_CALL_TIMEOUT", "1")]);
    plugin
        .initialize(json!({"provider": "eventbus", "allow_nats": [nats.url()]}))
        .unwrap();
    let stuck = spec(
        "stuck",
        T_BROKER,
        json!({"provider": "nats", "deploy_target": "self_hosted", "url": silent_url}),
    );
    let e = plugin.create(&stuck).unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("exceeded"), "{e:?}");
    // The process still serves, with a fresh instance.
    assert_eq!(
        plugin
            .capabilities()
            .expect("capabilities after a timeout")
            .compute_plan_version,
        "v2"
    );
    // The fresh instance does real work: the broker learned from the outputs wfctl passes to
    // its Diff (as when wfctl's diff cache skipped its Create), then a stream on the server.
    let broker = spec(
        BROKER,
        T_BROKER,
        json!({"provider": "nats", "deploy_target": "self_hosted", "url": nats.url()}),
    );
    let current = pb::ResourceOutput {
        name: BROKER.into(),
        r#type: T_BROKER.into(),
        provider_id: format!("self_hosted/{BROKER}?urls={}", nats.url()),
        outputs_json: json!({"urls": [nats.url()]}).to_string().into_bytes(),
        ..Default::default()
    };
    plugin.diff(&broker, &current).expect("the broker's diff");
    let stream = spec(
        STREAM_MODULE,
        T_STREAM,
        json!({"name": STREAM, "subjects": ["bmw.>"], "broker_ref": BROKER}),
    );
    plugin.create(&stream).expect("a stream after the timeout");
    assert!(JetStream::connect(nats.url()).stream_info(STREAM).is_some());
    assert!(
        plugin.stderr().contains("replacing a component instance"),
        "{}",
        plugin.stderr()
    );
    drop(silent);
}

/// A nats-server requiring a token, on a free port.
struct TokenServer {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl TokenServer {
    fn start(token: &str) -> TokenServer {
        let dir = TempDir::new("nats-token");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(eventbus_tests::nats_server_bin())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-js",
                "--auth",
                token,
                "-sd",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .owned()
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "token nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        TokenServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn credentials_from_wfctl_stay_in_the_host() {
    // wfctl hands the token as plain text; the guest sees a handle, outputs carry the handle,
    // streams on that broker authenticate, and a wrong token is refused without echoing it.
    let server = TokenServer::start("s3cret-token-42");
    let plugin = Plugin::start();
    plugin.initialize(json!({"provider": "eventbus"})).unwrap();
    let broker = spec(
        BROKER,
        T_BROKER,
        json!({"provider": "nats", "deploy_target": "self_hosted", "url": server.url, "credentials": {"token": "s3cret-token-42"}}),
    );
    let out = plugin
        .create(&broker)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", plugin.stderr()));
    let outputs = String::from_utf8(out.outputs_json.clone()).unwrap();
    assert!(
        !outputs.contains("s3cret-token-42"),
        "the token leaked into outputs: {outputs}"
    );
    assert!(
        outputs.contains("{{secret:bmw-eventbus/credentials.token}}"),
        "{outputs}"
    );
    let stream = spec(
        STREAM_MODULE,
        T_STREAM,
        json!({"name": STREAM, "subjects": ["bmw.>"], "broker_ref": BROKER}),
    );
    plugin
        .create(&stream)
        .expect("the stream opens the broker by name with the host-held token");

    let wrong = spec(
        "other",
        T_BROKER,
        json!({"provider": "nats", "deploy_target": "self_hosted", "url": server.url, "credentials": {"token": "wrong-token-99"}}),
    );
    let e = plugin.create(&wrong).unwrap_err();
    assert!(!e.message().contains("wrong-token-99"), "{e:?}");
    assert!(e.message().contains("iac: "), "{e:?}");
    assert!(
        !plugin.stderr().contains("s3cret-token-42"),
        "the token reached the log"
    );
}

#[test]
fn startup_time_with_a_cold_and_a_warm_component_cache() {
    // Start -> first Capabilities, compiling the component (cold) and mapping it (warm).
    let cache = TempDir::new("cache");
    let dir = cache.path().display().to_string();
    let mut times = vec![];
    for label in ["cold", "warm"] {
        let plugin = Plugin::start_with(&[("EVENTBUS_CACHE_DIR", dir.as_str())]);
        plugin.initialize(json!({"provider": "eventbus"})).unwrap();
        assert_eq!(plugin.capabilities().unwrap().compute_plan_version, "v2");
        let total = plugin.started.elapsed();
        let source = if plugin.stderr().contains("source=Cached") {
            "cached"
        } else {
            "compiled"
        };
        eprintln!(
            "{label} cache: handshake after {:?}, first Capabilities after {total:?} (component {source})",
            plugin.handshake_after
        );
        times.push((source, total));
    }
    assert_eq!(times[0].0, "compiled");
    assert_eq!(times[1].0, "cached");
}

#[test]
fn packaged_directory_loads_the_way_wfctl_loads_it() {
    // scripts/package.sh into a plugin dir; then wfctl's discovery (the subdirectory whose
    // plugin.json names provider eventbus), the launch of <dir>/<name>/<name> from the plugin
    // dir with no hint where the component is, and a broker created through it.
    let nats = NatsServer::start();
    let plugins = TempDir::new("plugin-dir");
    let wasm = std::env::var_os("EVENTBUS_COMPONENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            eventbus_tests::workspace_root()
                .join("target/wasm32-wasip2/release/eventbus_guest.wasm")
        });
    let out = Command::new(eventbus_tests::workspace_root().join("scripts/package.sh"))
        .arg("debug")
        .env("DIST_DIR", plugins.path())
        .env("PACKAGE_BIN", eventbus_bin())
        .env("PACKAGE_WASM", &wasm)
        .env("SKIP_TARBALL", "1")
        .output()
        .expect("run scripts/package.sh");
    assert!(
        out.status.success(),
        "package.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The capability rules ship beside the component, for any other host of it.
    let policy: Value = serde_json::from_str(
        &std::fs::read_to_string(plugins.path().join("workflow-plugin-eventbus/policy.json"))
            .expect("policy.json in the package"),
    )
    .expect("policy.json is JSON");
    assert_eq!(policy, eventbus_host::caps::policy::describe());

    // wfctl's findIaCPluginDir: capabilities.iacProvider.name == the iac.provider module's provider.
    let found: Vec<PathBuf> = std::fs::read_dir(plugins.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| {
            std::fs::read_to_string(d.join("plugin.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|m| m["capabilities"]["iacProvider"]["name"] == "eventbus")
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "exactly one plugin serves provider eventbus: {found:?}"
    );
    let dir = &found[0];
    let name = dir.file_name().unwrap().to_str().unwrap().to_string();
    assert_eq!(name, "workflow-plugin-eventbus");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("plugin.json")).unwrap()).unwrap();
    assert_eq!(manifest["name"], name);
    assert_eq!(manifest["type"], "external");
    // wfctl's manifest check refuses to load the plugin otherwise (seen with wfctl v0.85.4:
    // "manifest: author is required"): a lower-case name, an X.Y.Z version, an author and a
    // description.
    let text = |k: &str| manifest[k].as_str().unwrap_or("").to_string();
    assert!(
        text("name")
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
        "{manifest}"
    );
    let version = text("version");
    let version = version.strip_prefix('v').unwrap_or(&version);
    assert!(
        version.split('.').count() == 3
            && version
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())),
        "version {version:?} is not X.Y.Z"
    );
    assert!(!text("author").is_empty(), "no author");
    assert!(!text("description").is_empty(), "no description");
    assert_eq!(manifest["iacProvider"]["computePlanVersion"], "v2");
    let types: Vec<&str> = manifest["capabilities"]["iacProvider"]["resourceTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(types, [T_BROKER, T_CONSUMER, T_STREAM]);
    for t in &types {
        assert!(
            manifest["capabilities"]["moduleTypes"]
                .as_array()
                .unwrap()
                .contains(&json!(t))
        );
        // A broker's schema, or for a stream or consumer one schema per bus under anyOf.
        let schema = &manifest["capabilities"]["iacProvider"]["configSchema"][t];
        let each: Vec<&Value> = match schema["anyOf"].as_array() {
            Some(buses) => buses.iter().collect(),
            None => vec![schema],
        };
        assert!(
            each.iter().all(|s| s["properties"].is_object()),
            "schema of {t}: {schema}"
        );
    }

    let bin = dir.join(&name);
    let plugin = Plugin::launch(&bin, plugins, &[], &["EVENTBUS_COMPONENT"]);
    // `wfctl plugin verify-capabilities`: iacServices must equal the runtime registry.
    let reg = plugin
        .block(PluginServiceClient::new(plugin.channel.clone()).get_contract_registry(()))
        .unwrap()
        .into_inner();
    let served: Vec<Value> = reg
        .contracts
        .iter()
        .map(|c| json!(c.service_name))
        .collect();
    assert_eq!(manifest["iacServices"].as_array().unwrap(), &served);
    plugin.initialize(json!({"provider": "eventbus"})).unwrap();
    assert_eq!(plugin.capabilities().unwrap().compute_plan_version, "v2");
    let broker = spec(
        BROKER,
        T_BROKER,
        json!({"provider": "nats", "deploy_target": "self_hosted", "url": nats.url()}),
    );
    plugin
        .create(&broker)
        .unwrap_or_else(|e| panic!("{e:?}\n{}", plugin.stderr()));
    assert!(
        plugin.stderr().contains(&format!(
            "component={}",
            dir.join("eventbus_guest.wasm").display()
        )),
        "the component beside the binary is used:\n{}",
        plugin.stderr()
    );
}

// ---------------------------------------------------------------------------------------------
// wfctl's conformance scenarios, by name

#[allow(non_snake_case)]
mod conformance {
    use super::*;

    #[test]
    fn CrossResourceConstraintRejection() {
        // The provider checks resources against each other (Plan RPC, as wfctl's engine steps
        // call it): overlapping stream subjects on one broker and a consumer naming an
        // undeclared stream are refused with the validation sentinel, and nothing is created.
        let nats = NatsServer::start();
        let js = JetStream::connect(nats.url());
        let plugin = Plugin::start();
        plugin.initialize(json!({"provider": "eventbus"})).unwrap();
        let pilot = pilot_specs(&nats);
        // Control: the pilot alone plans, broker first.
        let ok = plugin
            .plan_rpc(pilot.clone(), vec![])
            .expect("the pilot plans");
        assert_eq!(ok.actions.len(), 8);
        assert_eq!(ok.actions[0].action, "create");
        assert_eq!(ok.actions[0].resource.as_ref().unwrap().name, BROKER);

        let mut bad = pilot.clone();
        bad.push(spec("bmw-orders-audit", T_STREAM, json!({"iac_provider": "eventbus", "name": "ORDERS_AUDIT", "subjects": ["bmw.orders.>"]})));
        bad.push(spec(
            "bmw-ghost-consumer",
            T_CONSUMER,
            json!({"iac_provider": "eventbus", "name": "ghost", "stream_name": "NO_SUCH_STREAM"}),
        ));
        let e = expect_err(
            plugin.plan_rpc(bad, vec![]),
            Code::InvalidArgument,
            "iac: validation error",
        );
        assert!(
            e.message().contains("bmw-orders-audit") && e.message().contains("config.subjects"),
            "{e:?}"
        );
        assert!(
            e.message().contains("bmw-ghost-consumer")
                && e.message().contains("config.stream_name"),
            "{e:?}"
        );
        assert!(
            js.stream_names().is_empty(),
            "a refused plan touched the server"
        );
    }

    #[test]
    fn DeleteActionInApplyInvokesDriverDelete() {
        // A module removed from the file plans as one delete, which reaches the driver's
        // Delete and removes the consumer from the server (and from state).
        let nats = NatsServer::start();
        let js = JetStream::connect(nats.url());
        let plugin = Plugin::start();
        let (mut w, mut specs) = applied_pilot(&plugin, &nats);
        specs.retain(|s| s.name != "bmw-audit-log");
        w.calls.clear();
        let plan = w.converge(&specs);
        assert_eq!(
            kinds(&plan),
            vec![(Kind::Delete, "bmw-audit-log".to_string())]
        );
        assert_eq!(w.calls, vec!["delete bmw-audit-log"]);
        assert!(
            js.consumer_info(STREAM, "audit-log").is_none(),
            "the consumer is still on the server"
        );
        assert_eq!(js.consumer_names(STREAM).len(), 5);
        assert!(w.get("bmw-audit-log").is_none());
        let gone = pb::ResourceRef {
            name: "bmw-audit-log".into(),
            r#type: T_CONSUMER.into(),
            provider_id: format!("{BROKER}/{STREAM}/audit-log"),
        };
        expect_err(
            plugin.read(&gone),
            Code::NotFound,
            "iac: resource not found",
        );
    }

    #[test]
    fn DiffSurvivesGRPCRoundTrip() {
        // Create's outputs go back as Diff's `current` over the wire, with extra JSON of every
        // shape; the changes come back with paths, JSON old/new values and force_new intact.
        let nats = NatsServer::start();
        let plugin = Plugin::start();
        let (w, mut specs) = applied_pilot(&plugin, &nats);
        edit(&mut specs, "bmw-orders-intake", |c| {
            c["max_deliver"] = json!(7);
            c["deliver_policy"] = json!("last");
        });
        let desired = specs
            .iter()
            .find(|s| s.name == "bmw-orders-intake")
            .unwrap();
        let mut current = Wfctl::current_of(w.record("bmw-orders-intake"));
        let mut outputs = js_of(&current.outputs_json);
        outputs["conformance_extra"] = json!({"string": "hello", "int_42": 42, "float": 2.5, "bool_true": true, "bool_false": false, "null": null, "list": ["a", "b", 7], "nested": {"k": "v", "n": 99}});
        current.outputs_json = outputs.to_string().into_bytes();
        current.sensitive.insert("conformance_extra".into(), false);
        current.status = "running".into();
        let d = plugin.diff(desired, &current).expect("diff");
        assert!(d.needs_update && d.needs_replace, "{d:?}");
        assert!(d.changes.iter().all(|c| !c.path.is_empty()));
        let change = |p: &str| {
            d.changes
                .iter()
                .find(|c| c.path == p)
                .unwrap_or_else(|| panic!("no change at {p}: {d:?}"))
        };
        let md = change("max_deliver");
        assert_eq!(
            (js_of(&md.old_json), js_of(&md.new_json), md.force_new),
            (json!(5), json!(7), false)
        );
        let dp = change("deliver_policy");
        assert_eq!(
            (js_of(&dp.old_json), js_of(&dp.new_json), dp.force_new),
            (json!("all"), json!("last"), true)
        );
        assert_eq!(d.changes.len(), 2, "only what changed: {d:?}");
        // Unchanged spec against the same decorated outputs: no changes.
        let same = pilot_specs(&nats)
            .into_iter()
            .find(|s| s.name == "bmw-orders-intake")
            .unwrap();
        let d = plugin.diff(&same, &current).unwrap();
        assert!(
            !d.needs_update && !d.needs_replace && d.changes.is_empty(),
            "{d:?}"
        );
    }

    #[test]
    fn InfraOutputCrossModuleResolution() {
        // The real wfctl expands `${module.field}` outside env_vars as an environment variable
        // when it reads infra.yaml, so a consumer naming its stream `${bmw-stream.name}`
        // reaches the plugin with an empty stream_name. The create fails before anything
        // changes, saying which field and why it is empty; a literal name works.
        let nats = NatsServer::start();
        let js = JetStream::connect(nats.url());
        let plugin = Plugin::start();
        plugin.initialize(json!({"provider": "eventbus"})).unwrap();
        let mut specs: Vec<pb::ResourceSpec> = pilot_specs(&nats)
            .into_iter()
            .filter(|s| s.r#type != T_CONSUMER)
            .collect();
        let mut w = Wfctl::new(&plugin);
        w.converge(&specs);
        let by_ref = spec(
            "bmw-by-ref",
            T_CONSUMER,
            json!({"iac_provider": "eventbus", "name": "by-ref", "stream_name": "${bmw-stream.name}"}),
        );
        let plan = w.plan(std::slice::from_ref(&by_ref)).unwrap();
        let errors = w.apply(
            &plan
                .into_iter()
                .filter(|a| a.kind == Kind::Create)
                .collect::<Vec<_>>(),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].1.message();
        assert!(
            text.contains("config.stream_name") && text.contains("env_vars"),
            "{text}"
        );
        assert!(js.consumer_names(STREAM).is_empty(), "nothing was created");
        specs.push(spec(
            "bmw-literal",
            T_CONSUMER,
            json!({"iac_provider": "eventbus", "name": "literal", "stream_name": STREAM}),
        ));
        w.converge(&specs);
        assert_eq!(js.consumer_names(STREAM), ["literal"]);
    }

    #[test]
    fn NeedsReplaceTriggersReplaceAction() {
        // deliver_policy cannot change in place: Diff says replace, apply deletes and
        // recreates the consumer, and the server holds a new consumer with the new policy.
        let nats = NatsServer::start();
        let js = JetStream::connect(nats.url());
        let plugin = Plugin::start();
        let (mut w, mut specs) = applied_pilot(&plugin, &nats);
        let before = consumer_created(&js, "orders-intake");
        let pid_before = w.record("bmw-orders-intake").provider_id.clone();
        edit(&mut specs, "bmw-orders-intake", |c| {
            c["deliver_policy"] = json!("new")
        });
        w.calls.clear();
        let plan = w.converge(&specs);
        assert_eq!(
            kinds(&plan),
            vec![(Kind::Replace, "bmw-orders-intake".to_string())]
        );
        assert_eq!(
            w.calls,
            vec!["delete bmw-orders-intake", "create bmw-orders-intake"]
        );
        assert_eq!(
            js.consumer_config(STREAM, "orders-intake")["deliver_policy"],
            "new"
        );
        assert_ne!(
            consumer_created(&js, "orders-intake"),
            before,
            "the consumer was not recreated"
        );
        assert_eq!(
            w.record("bmw-orders-intake").provider_id,
            pid_before,
            "provider_id is stable"
        );
        assert!(w.plan(&specs).unwrap().is_empty());
    }

    #[test]
    fn OutputsConsistencyAcrossReadCycles() {
        // Read after Create returns Create's outputs, and Read after Read the same again, for
        // the broker, the stream and every consumer.
        let nats = NatsServer::start();
        let plugin = Plugin::start();
        let (w, _) = applied_pilot(&plugin, &nats);
        for rec in &w.state {
            let first = plugin.read(&Wfctl::ref_of(rec)).expect("read");
            let second = plugin.read(&Wfctl::ref_of(rec)).expect("read again");
            assert_eq!(
                js_of(&first.outputs_json),
                js_of(&second.outputs_json),
                "{}: read-after-read differs",
                rec.name
            );
            assert_eq!(
                js_of(&first.outputs_json),
                rec.outputs,
                "{}: read-after-create differs",
                rec.name
            );
            assert_eq!(first.provider_id, rec.provider_id);
        }
    }

    #[test]
    fn OutputsRefreshDetectsNewFields() {
        // State written with fewer output keys (an older plugin) and a server changed behind
        // our back: Read returns the full, live outputs, and Diff against them finds the change.
        let nats = NatsServer::start();
        let js = JetStream::connect(nats.url());
        let plugin = Plugin::start();
        let (w, specs) = applied_pilot(&plugin, &nats);
        let mut stale = w.record(STREAM_MODULE).clone();
        stale.outputs.as_object_mut().unwrap().remove("subjects");
        js.update_stream(STREAM, |c| c["max_msgs"] = json!(1000));
        let live = plugin.read(&Wfctl::ref_of(&stale)).expect("read");
        let outputs = js_of(&live.outputs_json);
        assert_eq!(
            outputs["subjects"],
            json!(["bmw.>"]),
            "the missing key is back: {outputs}"
        );
        assert_eq!(
            outputs["config"]["max_msgs"],
            json!(1000),
            "the live value is reported: {outputs}"
        );
        let desired = specs.iter().find(|s| s.name == STREAM_MODULE).unwrap();
        let d = plugin.diff(desired, &live).unwrap();
        assert!(d.needs_update && !d.needs_replace, "{d:?}");
        assert!(
            d.changes
                .iter()
                .any(|c| c.path == "max_msgs" && js_of(&c.old_json) == json!(1000)),
            "{d:?}"
        );
        // Against the stale state the change is invisible: refreshing is what finds it.
        assert!(
            plugin
                .diff(desired, &Wfctl::current_of(&stale))
                .unwrap()
                .changes
                .is_empty()
        );
    }

    #[test]
    fn PlanStaleDiagnostic() {
        // A plan made, then the world changes before apply (the consumer deleted behind our
        // back): applying the stale update fails with the not-found sentinel naming the
        // consumer and what to do; state keeps the record; drift then calls it a ghost.
        let nats = NatsServer::start();
        let js = JetStream::connect(nats.url());
        let plugin = Plugin::start();
        let (mut w, mut specs) = applied_pilot(&plugin, &nats);
        edit(&mut specs, "bmw-payment-capture", |c| {
            c["max_deliver"] = json!(3)
        });
        let plan = w.plan(&specs).unwrap();
        assert_eq!(
            kinds(&plan),
            vec![(Kind::Update, "bmw-payment-capture".to_string())]
        );
        js.delete_consumer(STREAM, "payment-capture");
        let errors = w.apply(&plan);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0].1;
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert!(
            e.message().contains("iac: resource not found")
                && e.message().contains("payment-capture"),
            "{e:?}"
        );
        assert!(
            e.message().contains("drift"),
            "the message says what to do: {e:?}"
        );
        assert!(
            w.get("bmw-payment-capture").is_some(),
            "a failed action keeps its record"
        );
        assert!(
            js.consumer_info(STREAM, "payment-capture").is_none(),
            "the stale update must not recreate it"
        );
        let r = Wfctl::ref_of(w.record("bmw-payment-capture"));
        let mut client = IaCProviderDriftDetectorClient::new(plugin.channel.clone());
        let drifts = plugin
            .block(client.detect_drift(pb::DetectDriftRequest {
                refs: vec![r.clone()],
            }))
            .unwrap()
            .into_inner()
            .drifts;
        assert_eq!(drifts[0].class, pb::DriftClass::Ghost as i32);
        let diag = plugin
            .block(plugin.driver().troubleshoot(pb::TroubleshootRequest {
                resource_type: T_CONSUMER.into(),
                r#ref: Some(r),
                failure_msg: e.message().into(),
            }))
            .unwrap()
            .into_inner()
            .diagnostics;
        assert!(
            diag[0].detail.contains("iac: resource not found"),
            "{diag:?}"
        );
    }

    fn protected_pilot<'p>(
        plugin: &'p Plugin,
        nats: &NatsServer,
    ) -> (Wfctl<'p>, Vec<pb::ResourceSpec>) {
        plugin.initialize(json!({"provider": "eventbus"})).unwrap();
        let yaml = pilot_yaml().replace(
            "  - name: bmw-orders-intake\n    type: infra.eventbus.consumer\n",
            "  - name: bmw-orders-intake\n    type: infra.eventbus.consumer\n    protected: true\n",
        );
        let specs = specs_from_yaml(&yaml, nats.url());
        assert_eq!(
            config_of(
                specs
                    .iter()
                    .find(|s| s.name == "bmw-orders-intake")
                    .unwrap()
            )["protected"],
            json!(true)
        );
        let mut w = Wfctl::new(plugin);
        w.converge(&specs);
        (w, specs)
    }

    #[test]
    fn ProtectedReplaceWithoutOverride() {
        // `protected: true` in config is accepted, is not itself a change, and Diff still
        // reports the replace; the gate refuses it with a hint and the server is untouched.
        let nats = NatsServer::start();
        let js = JetStream::connect(nats.url());
        let plugin = Plugin::start();
        let (mut w, mut specs) = protected_pilot(&plugin, &nats);
        assert!(
            w.plan(&specs).unwrap().is_empty(),
            "the protected flag alone is no change"
        );
        let before = consumer_created(&js, "orders-intake");
        edit(&mut specs, "bmw-orders-intake", |c| {
            c["ack_policy"] = json!("all")
        });
        let plan = w.plan(&specs).unwrap();
        assert_eq!(
            kinds(&plan),
            vec![(Kind::Replace, "bmw-orders-intake".to_string())]
        );
        let err = Wfctl::gate(&plan, &[]).unwrap_err();
        assert!(err.contains("--allow-replace=bmw-orders-intake"), "{err}");
        let err = Wfctl::gate(&plan, &["bmw-payment-capture"]).unwrap_err();
        assert!(
            err.contains("bmw-orders-intake"),
            "another name must not unblock it: {err}"
        );
        // Refused: nothing applied.
        assert_eq!(consumer_created(&js, "orders-intake"), before);
        assert_eq!(
            js.consumer_config(STREAM, "orders-intake")["ack_policy"],
            "explicit"
        );
        let _ = &mut w;
    }

    #[test]
    fn ProtectedReplaceWithOverride() {
        // The same replace with --allow-replace for that resource goes through.
        let nats = NatsServer::start();
        let js = JetStream::connect(nats.url());
        let plugin = Plugin::start();
        let (mut w, mut specs) = protected_pilot(&plugin, &nats);
        let before = consumer_created(&js, "orders-intake");
        edit(&mut specs, "bmw-orders-intake", |c| {
            c["ack_policy"] = json!("all")
        });
        let plan = w.plan(&specs).unwrap();
        Wfctl::gate(&plan, &["bmw-orders-intake"]).expect("allowed");
        let errors = w.apply(&plan);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            js.consumer_config(STREAM, "orders-intake")["ack_policy"],
            "all"
        );
        assert_ne!(consumer_created(&js, "orders-intake"), before);
        assert_eq!(
            w.record("bmw-orders-intake").config["protected"],
            json!(true)
        );
    }

    #[test]
    fn ReplaceCascadePreservesDependents() {
        // The stream is replaced (storage cannot change in place). wfctl replaces the stream
        // alone, Delete then Create, with no cascade to its consumers, and the server deletes
        // them with the old stream. The plugin carries them to the new one: all six exist,
        // configured as before, and the next plan is empty.
        let nats = NatsServer::start();
        let js = JetStream::connect(nats.url());
        let plugin = Plugin::start();
        let (mut w, mut specs) = applied_pilot(&plugin, &nats);
        let stream_created = js.stream_info(STREAM).unwrap()["created"].clone();
        let before = js.consumer_config(STREAM, "orders-intake");
        edit(&mut specs, STREAM_MODULE, |c| {
            c["storage"] = json!("memory")
        });
        let plan = w.converge(&specs);
        assert_eq!(
            kinds(&plan),
            vec![(Kind::Replace, STREAM_MODULE.to_string())]
        );
        assert_eq!(js.stream_config(STREAM)["storage"], "memory");
        assert_ne!(
            js.stream_info(STREAM).unwrap()["created"],
            stream_created,
            "the stream was not replaced"
        );
        assert_eq!(js.consumer_names(STREAM).len(), 6, "every consumer exists");
        assert_eq!(
            js.consumer_config(STREAM, "orders-intake")["max_deliver"],
            before["max_deliver"]
        );
        assert!(w.plan(&specs).unwrap().is_empty(), "converged");
    }

    #[test]
    fn UpsertOnAlreadyExists() {
        // State lost: every Create meets an existing, identical resource and adopts it (same
        // provider ids, nothing recreated). A same-named stream with another config is a
        // conflict with the already-exists sentinel, unless adopt_existing asks to take it over.
        let nats = NatsServer::start();
        let js = JetStream::connect(nats.url());
        let plugin = Plugin::start();
        let (w, specs) = applied_pilot(&plugin, &nats);
        let before = consumer_created(&js, "orders-intake");
        let mut fresh = Wfctl::new(&plugin);
        let plan = fresh.converge(&specs);
        assert_eq!(plan.len(), 8);
        for r in &w.state {
            assert_eq!(
                fresh.record(&r.name).provider_id,
                r.provider_id,
                "{}",
                r.name
            );
        }
        assert_eq!(
            consumer_created(&js, "orders-intake"),
            before,
            "an identical consumer is adopted, not recreated"
        );

        js.create_stream(&json!({"name": "OTHER", "subjects": ["other.>"], "max_msgs": 10}));
        let other = spec(
            "other-stream",
            T_STREAM,
            json!({"iac_provider": "eventbus", "name": "OTHER", "subjects": ["other.>"], "broker_ref": BROKER}),
        );
        let e = expect_err(
            plugin.create(&other),
            Code::AlreadyExists,
            "iac: resource already exists",
        );
        assert!(
            e.message().contains("max_msgs"),
            "the conflict names the field: {e:?}"
        );
        let adopt = spec(
            "other-stream",
            T_STREAM,
            json!({"iac_provider": "eventbus", "name": "OTHER", "subjects": ["other.>"], "broker_ref": BROKER, "adopt_existing": true}),
        );
        plugin.create(&adopt).expect("adopt_existing takes it over");
        assert_eq!(js.stream_config("OTHER")["max_msgs"], json!(-1));
    }
}
