//! What the sandbox proofs (tests/sandbox.rs, tests/polyglot.rs) set out as bait: a listener
//! that counts every connection made to it, and a nats-server that only a token opens.

use crate::{Owned, nats_server_bin};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A loopback listener that counts every connection anyone makes to it.
pub struct Tripwire {
    pub port: u16,
    hits: Arc<AtomicUsize>,
}

impl Tripwire {
    pub fn start() -> Tripwire {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the tripwire");
        let port = l.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                h.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        });
        Tripwire { port, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A nats-server that requires a token (`--auth`), without JetStream.
pub struct TokenServer {
    child: Child,
    pub url: String,
}

impl TokenServer {
    pub fn start(token: &str) -> TokenServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--auth", token])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .owned()
            .spawn()
            .expect("start the token nats-server");
        // Ready when it accepts a connection.
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the token nats-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        TokenServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
