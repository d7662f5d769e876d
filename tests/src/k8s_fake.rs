//! The Kubernetes API fake (tests/fakes/k8s_api.py) as a test fixture: every object written
//! checked against Kubernetes' own schema, a kubelet that can run pods as real nats-servers,
//! and its request log (`requests.jsonl`, with each answer) for judging what left it.

use crate::{Owned, TempDir, Value, json, nats_server_bin, python, workspace_root};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The bearer token the fake accepts.
pub const TOKEN: &str = "k8s-test-token-4f9c2";

pub struct Fake {
    child: Child,
    dir: TempDir,
    port: u16,
    /// The client port of pod 0 when the kubelet runs it.
    pub pod_port: Option<u16>,
}

impl Fake {
    pub fn start() -> Fake {
        Fake::start_with(false, 0.3)
    }

    /// With `pods`, pod 0 of the StatefulSet runs as a real nats-server on `pod_port`; a
    /// StatefulSet's status catches up with its spec `ready_after` seconds after a change.
    pub fn start_with(pods: bool, ready_after: f64) -> Fake {
        let dir = TempDir::new("k8s-api");
        let script = workspace_root().join("tests/fakes/k8s_api.py");
        let mut cmd = Command::new(python());
        cmd.arg(&script)
            .args([
                "--dir",
                &dir.path().display().to_string(),
                "--token",
                TOKEN,
                "--namespaces",
                "default,eventbus,other",
            ])
            .args(["--ready-after", &ready_after.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("fake.log")).unwrap());
        let mut pod_port = None;
        if pods {
            let p = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            pod_port = Some(p);
            cmd.args([
                "--nats-server",
                &nats_server_bin().display().to_string(),
                "--pod-port",
                &p.to_string(),
            ]);
        }
        let mut child = cmd
            .owned()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
        let port_file = dir.path().join("port");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let port = loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the fake Kubernetes API exited ({status}): {}\n(is kubernetes-validate installed in .venv? pip install kubernetes-validate)",
                    std::fs::read_to_string(dir.path().join("fake.log")).unwrap_or_default()
                );
            }
            if let Some(p) = std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|t| t.trim().parse::<u16>().ok())
            {
                break p;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the fake Kubernetes API did not listen within 30s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Fake {
            child,
            dir,
            port,
            pod_port,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request the fake answered, in order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("requests.jsonl line"))
            .collect()
    }

    /// The stored object `plural/name` in `ns`, as the API server keeps it.
    pub fn object(&self, ns: &str, plural: &str, name: &str) -> Option<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("objects.json")).unwrap();
        let all: Vec<Value> = serde_json::from_str(&text).unwrap();
        all.into_iter()
            .find(|o| {
                o["namespace"] == ns
                    && o["name"] == name
                    && o["resource"]
                        .as_str()
                        .is_some_and(|r| r.ends_with(&format!("/{plural}")))
            })
            .map(|o| o["object"].clone())
    }

    pub fn object_count(&self) -> usize {
        let text = std::fs::read_to_string(self.dir.path().join("objects.json")).unwrap();
        serde_json::from_str::<Vec<Value>>(&text).unwrap().len()
    }

    /// A change made behind eventbus's back, as `kubectl patch --type merge` would.
    pub fn merge_patch(&self, path: &str, patch: &Value) -> Value {
        let (status, body) = self.request("PATCH", path, "application/merge-patch+json", patch);
        assert_eq!(status, 200, "{body}");
        body
    }

    /// One request as the cluster's operator makes it (with the token): (status, JSON body).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> (u16, Value) {
        let body = (!body.is_null()).then_some(body);
        crate::http_json(&self.url(), method, path, Some(TOKEN), content_type, body)
    }

    pub fn set_faults(&self, faults: Value) {
        std::fs::write(self.dir.path().join("faults.json"), faults.to_string()).unwrap();
    }

    pub fn faults(&self) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.dir.path().join("faults.json")).unwrap())
            .unwrap()
    }

    pub fn pods(&self) -> Value {
        std::fs::read_to_string(self.dir.path().join("pods.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    /// No request was refused by schema or semantic validation, and every one carried the
    /// account's token (the host attaches it; the guest cannot).
    #[track_caller]
    pub fn assert_all_valid(&self) {
        let reqs = self.requests();
        assert!(!reqs.is_empty(), "the fake saw no request");
        for r in &reqs {
            assert!(
                r.get("invalid").is_none(),
                "the API server refused a request: {r:#}"
            );
            assert_eq!(
                r["authorized"],
                json!(true),
                "request without the account's bearer token: {r:#}"
            );
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        // SIGTERM lets the fake stop the nats-servers its kubelet started.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
