//! A real OCI registry on loopback for the distribution tests: Debian's `docker-registry`
//! (the CNCF distribution server), configured by a generated config.yml with its storage in a
//! temp dir, on a free 127.0.0.1 port; stopped on drop.

use crate::{Owned, TempDir, free_ports};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The registry binary: `$DOCKER_REGISTRY_BIN`, else `docker-registry` on PATH, if present.
pub fn registry_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DOCKER_REGISTRY_BIN") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("docker-registry"))
        .find(|p| p.is_file())
}

pub struct Registry {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Registry {
    /// Starts one and waits until `GET /v2/` answers 200.
    pub fn start(bin: &Path) -> Registry {
        let dir = TempDir::new("registry");
        let port = free_ports(1)[0];
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: eventbus-tests\n",
                storage.display()
            ),
        )
        .expect("write the registry's config.yml");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .owned()
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut r = Registry { child, port, dir };
        r.wait_ready(Duration::from_secs(30));
        r
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}) before answering:\n{}",
                    self.log()
                );
            }
            if self
                .get("/v2/")
                .is_some_and(|s| s.starts_with("HTTP/1.1 200"))
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry did not answer /v2/ within {timeout:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One plain HTTP GET on loopback: the whole response, or None if nothing answers yet.
    pub fn get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).ok()?;
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Where the filesystem driver keeps the blob `sha256:<hex>` (layers and manifests alike).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        self.dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
