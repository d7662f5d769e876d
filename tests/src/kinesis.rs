//! Kinesis servers for the tests, and an independent checker of what they hold.
//!
//! * [`KinesisMock`]: kinesis-mock (the npm package `kinesis-local`, pinned in
//!   `scripts/kinesis-mock-version`, installed into `.cache/kinesis-mock/` by
//!   `scripts/kinesis-mock.sh`, which is run here when it is missing), on Node.js. It follows
//!   AWS's validation closely but only checks that a signature is there and well formed. It
//!   cannot be told where to listen, so `listen_loopback.js` is preloaded to bind it to
//!   127.0.0.1.
//! * [`Moto`]: moto's server (`moto[server]`, pinned in requirements.txt, in `.venv`) on
//!   127.0.0.1 with `INITIAL_NO_AUTH_ACTION_COUNT=0`, so it verifies every signature: an
//!   unknown key is `InvalidClientTokenId`, a wrong secret `SignatureDoesNotMatch` (both 403).
//!   At start the checker makes the identities the tests sign with (an IAM user with a key, a
//!   role for web identity) through moto's `/moto-api/reset-auth`, which lets exactly that many
//!   requests through unsigned, and checks that a made-up key is then refused.
//! * [`KinesisCheck`]: `tests/src/kinesis_check.py` on boto3 (botocore signs and parses; no code
//!   shared with the provider), run with `.venv`'s Python, one process per command, answering
//!   JSON.
//!
//! Every server runs in its own temp dir (its log there) under the run's root and is started
//! through [`Owned`](crate::Owned), so the reaper stops it however the test ends; ready means
//! it accepts connections and answers the checker's ListStreams.

use crate::{Owned, TempDir, Value, free_ports, python, workspace_root};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The region every test server is asked in (moto keeps one backend per region).
pub const REGION: &str = "us-east-1";

/// From spawn to ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The pinned kinesis-mock version, `scripts/kinesis-mock-version` read at compile time.
pub const KINESIS_MOCK_VERSION: &str = pinned();

const VERSION_FILE: &str = include_str!("../../scripts/kinesis-mock-version");

const fn pinned() -> &'static str {
    let bytes = VERSION_FILE.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'\n' {
            end += 1;
        }
        let (_, rest) = bytes.split_at(start);
        let (line, _) = rest.split_at(end - start);
        let line = line.trim_ascii();
        if !line.is_empty() && line[0] != b'#' {
            match std::str::from_utf8(line) {
                Ok(s) => return s,
                Err(_) => panic!("scripts/kinesis-mock-version is not UTF-8"),
            }
        }
        start = end + 1;
    }
    panic!("scripts/kinesis-mock-version names no version")
}

/// kinesis-mock's package folder, installed by `scripts/kinesis-mock.sh` when missing.
pub fn kinesis_mock_package() -> PathBuf {
    let out = Command::new(workspace_root().join("scripts/kinesis-mock.sh"))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/kinesis-mock.sh: {e}"));
    assert!(
        out.status.success(),
        "scripts/kinesis-mock.sh could not install kinesis-local {KINESIS_MOCK_VERSION} (Node.js and npm needed)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A server process the tests started: its log in its temp dir, stopped on drop.
struct Server {
    what: &'static str,
    child: Option<Child>,
    dir: TempDir,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Waits until `port` accepts connections; Err("in use") when another process took it.
    fn wait_listening(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let log = self.log();
                if log.contains("in use") || log.contains("EADDRINUSE") {
                    return Err("in use".into());
                }
                return Err(format!(
                    "{} exited while starting ({status}):\n{log}",
                    self.what
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} did not listen on 127.0.0.1:{port} within {READY_TIMEOUT:?}:\n{}",
                    self.what,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `make(ports)` on fresh free ports until one attempt listens (a port picked free can
/// be taken before the server binds it).
fn start_on_free_ports(
    what: &'static str,
    n: usize,
    make: impl Fn(&[u16], &Path) -> Command,
) -> (Server, Vec<u16>) {
    let mut last = String::new();
    for _ in 0..4 {
        let ports = free_ports(n);
        let dir = TempDir::new(what);
        let log = std::fs::File::create(dir.path().join("server.log")).expect("the server log");
        let child = make(&ports, dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the server log"))
            .stderr(log)
            .owned()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut server = Server {
            what,
            child: Some(child),
            dir,
        };
        match server.wait_listening(ports[0]) {
            Ok(()) => return (server, ports),
            Err(e) if e == "in use" => last = e,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{what}: no free port in 4 attempts: {last}")
}

/// Polls the checker's ListStreams until it answers.
fn wait_answering(check: &KinesisCheck, server: &Server) {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match check.try_run("streams", &[]) {
            Ok(_) => return,
            Err(e) if Instant::now() > deadline => {
                panic!(
                    "{} does not answer ListStreams: {e}\n{}",
                    server.what,
                    server.log()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// kinesis-mock on a free loopback port (plain HTTP; its TLS port on another, unused).
pub struct KinesisMock {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    server: Server,
}

impl KinesisMock {
    pub fn start() -> KinesisMock {
        let pkg = kinesis_mock_package();
        let preload = workspace_root().join("tests/src/listen_loopback.js");
        let (server, ports) = start_on_free_ports("kinesis-mock", 2, |ports, _| {
            let mut c = Command::new("node");
            c.arg("--require")
                .arg(&preload)
                .arg(pkg.join("main.js"))
                .env("KINESIS_MOCK_PLAIN_PORT", ports[0].to_string())
                .env("KINESIS_MOCK_TLS_PORT", ports[1].to_string())
                // It will not start without its certificate, though only the TLS port uses it.
                .env("KINESIS_MOCK_CERT_PATH", pkg.join("server.json"))
                .env("LOG_LEVEL", "WARN");
            c
        });
        let mock = KinesisMock {
            endpoint: format!("http://127.0.0.1:{}", ports[0]),
            server,
        };
        wait_answering(&mock.check(), &mock.server);
        mock
    }

    /// boto3's view (kinesis-mock takes any well-formed signature).
    pub fn check(&self) -> KinesisCheck {
        KinesisCheck::new(&self.endpoint, None)
    }

    pub fn log(&self) -> String {
        self.server.log()
    }
}

/// moto's server on a free loopback port, verifying every signature.
pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    /// The IAM user `eventbus`'s key (allowed kinesis:*).
    pub access_key_id: String,
    pub secret_access_key: String,
    /// A role allowed kinesis:*, for AssumeRoleWithWebIdentity.
    pub role_arn: String,
    server: Server,
}

impl Moto {
    pub fn start() -> Moto {
        let (server, ports) = start_on_free_ports("moto", 1, |ports, _| {
            let mut c = Command::new(python());
            c.args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
                .arg(ports[0].to_string())
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
            c
        });
        let endpoint = format!("http://127.0.0.1:{}", ports[0]);
        let ids = KinesisCheck::new(&endpoint, None)
            .try_run("bootstrap", &[])
            .unwrap_or_else(|e| panic!("moto: making the test identities: {e}\n{}", server.log()));
        let s = |k: &str| ids[k].as_str().unwrap_or_default().to_string();
        let moto = Moto {
            endpoint,
            access_key_id: s("access_key_id"),
            secret_access_key: s("secret_access_key"),
            role_arn: s("role_arn"),
            server,
        };
        wait_answering(&moto.check(), &moto.server);
        moto
    }

    /// boto3's view, signing as the `eventbus` user.
    pub fn check(&self) -> KinesisCheck {
        KinesisCheck::new(
            &self.endpoint,
            Some((self.access_key_id.clone(), self.secret_access_key.clone())),
        )
    }

    /// Lets the next `n` requests through unverified: moto refuses unsigned requests that AWS
    /// takes (STS AssumeRoleWithWebIdentity is unsigned by design).
    pub fn allow_unsigned(&self, n: u32) {
        self.check().run("allow-unsigned", &[&n.to_string()]);
    }

    /// The requests moto has answered so far, one log line each (`"POST / HTTP/1.1" 200 -`),
    /// its own `/moto-api/` calls left out. Each line is written once the answer is sent.
    pub fn requests(&self) -> Vec<String> {
        self.server
            .log()
            .lines()
            .filter(|l| l.contains("\" ") && l.contains(" HTTP/1.") && !l.contains("/moto-api/"))
            .map(String::from)
            .collect()
    }

    pub fn log(&self) -> String {
        self.server.log()
    }
}

/// boto3's view of a Kinesis server (`tests/src/kinesis_check.py`).
pub struct KinesisCheck {
    endpoint: String,
    keys: Option<(String, String)>,
}

impl KinesisCheck {
    pub fn new(endpoint: &str, keys: Option<(String, String)>) -> KinesisCheck {
        KinesisCheck {
            endpoint: endpoint.to_string(),
            keys,
        }
    }

    /// One checker command (see kinesis_check.py's usage): its JSON answer, or its error.
    pub fn try_run(&self, command: &str, args: &[&str]) -> Result<Value, String> {
        let script = workspace_root().join("tests/src/kinesis_check.py");
        let mut cmd = Command::new(python());
        cmd.arg(&script)
            .args(["--endpoint", &self.endpoint, "--region", REGION]);
        if let Some((id, secret)) = &self.keys {
            cmd.args(["--access-key-id", id, "--secret-access-key", secret]);
        }
        let out = cmd
            .arg(command)
            .args(args)
            .stdin(Stdio::null())
            .owned()
            .output()
            .map_err(|e| {
                format!(
                    "cannot run {} with {}: {e}",
                    script.display(),
                    python().display()
                )
            })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("No module named 'boto3'") {
            return Err(format!(
                "boto3 is not installed for {}: run `./dev setup`",
                python().display()
            ));
        }
        if !out.status.success() {
            return Err(format!(
                "kinesis_check {command} {args:?}: {}",
                stderr.trim()
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "kinesis_check {command}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    #[track_caller]
    pub fn run(&self, command: &str, args: &[&str]) -> Value {
        self.try_run(command, args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every stream's name, sorted.
    pub fn streams(&self) -> Vec<String> {
        self.run("streams", &[])
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    }

    /// `{"name", "arn", "status", "mode", "open_shards", "retention_hours", "encryption",
    /// "key_id", "consumers", "tags"}`, or None when there is no such stream.
    pub fn stream(&self, name: &str) -> Option<Value> {
        Some(self.run("stream", &[name])).filter(|v| !v.is_null())
    }

    /// The stream's consumers, `[{"name", "arn", "status"}]` sorted by name.
    pub fn consumers(&self, stream: &str) -> Vec<Value> {
        self.run("consumers", &[stream])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Creates a provisioned stream (test setup, not what is tested).
    pub fn create_stream(&self, name: &str, shards: u32) {
        self.run("create-stream", &[name, &shards.to_string()]);
    }
}
