//! The plugin's gRPC server answers every standard client, not only go-plugin's. Here the
//! client is grpcio, Python's gRPC (tests/clients/grpcio_client.py, run with the project's
//! `.venv` Python): for a `unix:` target it sends the socket path as `:authority`,
//! percent-encoded by newer versions and raw by older ones, which h2 alone would refuse with a
//! protocol error. Each test starts the built plugin as go-plugin does and asks it for its
//! health and its contract registry over one kind of authority.
//!
//! grpcio is installed by `./dev setup`; without it these tests fail and say so.

use eventbus_host::wfctl::iac_services;
use eventbus_tests::{Owned, TempDir, Value, eventbus_bin, json, python, workspace_root};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the plugin logs (at debug) when it serves an invalid `:authority` as localhost.
const REPLACED: &str = "it is served as localhost";

/// The plugin, started with wfctl's handshake, its socket and secrets in a temp dir.
struct Plugin {
    child: Child,
    socket: String,
    stderr: Arc<Mutex<String>>,
    _dir: TempDir,
}

impl Plugin {
    fn start() -> Plugin {
        // A short name: the socket's path must fit in sun_path's 108 bytes.
        let dir = TempDir::new("gc");
        let mut child = Command::new(eventbus_bin())
            .current_dir(dir.path())
            .env("WORKFLOW_PLUGIN", "workflow-external-plugin-v1")
            .env("PLUGIN_PROTOCOL_VERSIONS", "1")
            .env("PLUGIN_UNIX_SOCKET_DIR", dir.path())
            .env("EVENTBUS_SECRETS_FILE", dir.path().join("secrets.json"))
            .env("EVENTBUS_LOG", "info,eventbus_host=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .owned()
            .spawn()
            .expect("start the eventbus binary as a plugin");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let parts: Vec<&str> = line.trim_end().split('|').collect();
        let Some(["1", "1", "unix", socket, "grpc"]) = parts.get(..5) else {
            let _ = child.kill();
            panic!(
                "no unix-socket handshake line, got {line:?}; stderr:\n{}",
                stderr.lock().unwrap()
            );
        };
        let socket = socket.to_string();
        Plugin {
            child,
            socket,
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The plugin's debug lines about replaced authorities, once it has logged them.
    fn replacements(&self) -> Vec<String> {
        // Logged when the request was read, which is before its answer: no wait needed.
        self.stderr()
            .lines()
            .filter(|l| l.contains(REPLACED))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- plugin stderr:\n{}", self.stderr());
        }
    }
}

/// Runs grpcio_client.py against the plugin with one kind of authority; its JSON lines.
fn grpcio(plugin: &Plugin, authority: &str) -> Vec<Value> {
    let script = workspace_root().join("tests/clients/grpcio_client.py");
    let mut child = Command::new(python())
        .arg(&script)
        .args([&plugin.socket, authority])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .owned()
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} with {:?}: {e}", script.display(), python()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!("grpcio_client.py did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    match status.code() {
        Some(0) => {}
        Some(3) => panic!(
            "grpcio is not installed for {}: run `./dev setup`, which installs it into .venv\n{err}",
            python().display()
        ),
        _ => panic!("grpcio_client.py {authority} failed ({status}):\n{err}\nstdout:\n{out}"),
    }
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Health SERVING for "plugin", and the registry listing every IaC service.
fn answers(authority: &str) -> Vec<Value> {
    vec![
        json!({"authority": authority, "call": "health", "status": 1}),
        json!({"authority": authority, "call": "registry", "services": iac_services()}),
    ]
}

/// `%XX` decoded, for reading back the authority grpcio sent.
fn percent_decoded(s: &str) -> String {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn grpcio_with_its_default_authority_is_served() {
    let plugin = Plugin::start();
    // grpcio's own choice of authority for a unix socket gets real answers...
    assert_eq!(grpcio(&plugin, "default"), answers("default"));
    // ...and that choice was the socket path (grpcio 1.85 drops its leading slash and
    // percent-encodes the rest), which the plugin served as localhost.
    let replaced = plugin.replacements();
    let sent: Vec<String> = replaced
        .iter()
        .filter_map(|l| l.split_once("authority=").map(|(_, a)| percent_decoded(a)))
        .collect();
    let path = plugin.socket.trim_start_matches('/');
    assert!(
        sent.iter().any(|a| a.trim_start_matches('/') == path),
        "no replaced authority naming {path} in the plugin's log: {replaced:?}"
    );
}

#[test]
fn grpcio_sending_the_raw_socket_path_as_authority_is_served() {
    let plugin = Plugin::start();
    // Older grpcio's raw path gets real answers...
    assert_eq!(grpcio(&plugin, "raw-path"), answers("raw-path"));
    // ...after the plugin served it as localhost.
    let replaced = plugin.replacements();
    assert!(
        replaced
            .iter()
            .any(|l| l.contains(&format!("authority={}", plugin.socket))),
        "no replaced authority {} in the plugin's log: {replaced:?}",
        plugin.socket
    );
}

#[test]
fn grpcio_sending_go_plugins_authority_is_served_untouched() {
    let plugin = Plugin::start();
    // go-plugin's "unused" is a valid authority: answered, and left as it was.
    assert_eq!(grpcio(&plugin, "unused"), answers("unused"));
    assert_eq!(plugin.replacements(), Vec::<String>::new());
}
