//! What the suites that drive the hostile component share: where it is built, and every log
//! line the host writes, captured so a canary can be looked for in them.

use crate::workspace_root;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where `just hostile` (cargo build -p eventbus-hostile --target wasm32-wasip2 --release)
/// puts the hostile component; `$EVENTBUS_HOSTILE_WASM` overrides.
pub fn hostile_wasm() -> PathBuf {
    match std::env::var_os("EVENTBUS_HOSTILE_WASM") {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("wasm32-wasip2/release/eventbus_hostile.wasm"),
    }
}

/// Everything the host logs (all of `eventbus_host` and the guest's `log` import, at trace).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

struct LogWriter(Logs);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Installs the process's tracing subscriber, writing here; once per test binary.
    pub fn capture() -> Logs {
        let logs = Logs::default();
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "warn,eventbus_host=trace,guest=trace",
            ))
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .init();
        logs
    }

    /// What was logged since the last call.
    pub fn take(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut *self.0.lock().unwrap())).into_owned()
    }

    /// Everything logged so far, kept.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
