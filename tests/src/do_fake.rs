//! The DigitalOcean App Platform fake (tests/fakes/do_api.py) as a test fixture: started on a
//! free port, stopped (with the nats-servers behind its apps) when dropped, and asked what the
//! API holds and received. Every suite that deploys a broker on App Platform uses it.

use crate::{JetStream, Owned, Value, python, workspace_root};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// tests/fakes/do_api.py, serving until dropped (its stdin closes: it stops its nats-servers).
pub struct DoFake {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`: the API's base URL (a cloud account's `base_url`).
    pub base: String,
    /// The bearer token the fake accepts.
    pub token: String,
}

impl DoFake {
    pub fn start(token: &str) -> DoFake {
        let script = workspace_root().join("tests/fakes/do_api.py");
        let mut child = Command::new(python())
            .arg(&script)
            .args(["--token", token, "--phase-seconds", "0.15"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .owned()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the fake's first line");
        let base = match line.trim().strip_prefix("LISTENING ") {
            Some(base) => base.to_string(),
            None => match line.trim().strip_prefix("FAILED ") {
                Some(reason) => panic!("the DigitalOcean fake did not start: {reason}"),
                None => panic!(
                    "the DigitalOcean fake exited before listening (its stderr is above): {line:?}"
                ),
            },
        };
        DoFake {
            child: Some(child),
            base,
            token: token.into(),
        }
    }

    /// One HTTP request to the fake: (status, JSON body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        crate::http_json(&self.base, method, path, token, "application/json", body)
    }

    /// The DigitalOcean API as a client with the right token sees it.
    #[track_caller]
    pub fn api(&self, method: &str, path: &str) -> Value {
        let (status, v) = self.http(method, path, None, Some(&self.token.clone()));
        assert_eq!(status, 200, "{method} {path} on the fake: {v}");
        v
    }

    #[track_caller]
    pub fn hook(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.http(method, path, body.as_ref(), None);
        assert_eq!(status, 200, "{method} {path} on the fake: {v}");
        v
    }

    pub fn apps(&self) -> Vec<Value> {
        self.api("GET", "/v2/apps?per_page=200")["apps"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The fake's own view: ports, whether the app's nats-server runs, deployments' phases.
    pub fn fake_apps(&self) -> Vec<Value> {
        self.hook("GET", "/_fake/apps", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every /v2 call the fake answered: (method, path, status).
    pub fn calls(&self) -> Vec<(String, String, u16)> {
        self.hook("GET", "/_fake/log", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|c| {
                (
                    c["method"].as_str().unwrap_or("").to_string(),
                    c["path"].as_str().unwrap_or("").to_string(),
                    c["status"].as_u64().unwrap_or(0) as u16,
                )
            })
            .collect()
    }

    /// The SECRET env values the API received in plain text (after the host's substitution).
    pub fn received_secrets(&self) -> Vec<String> {
        self.hook("GET", "/_fake/secrets", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    }
}

impl Drop for DoFake {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The broker's admin password: the one SECRET value the API received.
#[track_caller]
pub fn admin_password(fake: &DoFake) -> String {
    let mut secrets = fake.received_secrets();
    secrets.dedup();
    assert_eq!(
        secrets.len(),
        1,
        "expected one SECRET value (sent once per deployment) received by the API: {secrets:?}"
    );
    secrets[0].clone()
}

/// Connects to the one app's broker the way any client outside the app would: over its
/// WebSocket URL (the app's live URL), with the admin credentials.
#[track_caller]
pub fn connect(fake: &DoFake) -> JetStream {
    let apps = fake.apps();
    assert_eq!(apps.len(), 1, "expected one app: {apps:?}");
    let url = apps[0]["live_url"]
        .as_str()
        .expect("the app has a live URL")
        .replacen("http://", "ws://", 1);
    JetStream::connect_as(&url, "admin", &admin_password(fake))
}
