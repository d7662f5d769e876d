//! Guest logs into the host's tracing, under target `guest`.

use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::log::{Host, Level};

impl Host for HostState {
    async fn log(
        &mut self,
        level: Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        // Redact before cutting to length (a value straddling the cut would otherwise leave
        // its first characters behind, no longer matching the whole value), on a prefix with
        // room for any value past the cut, so a 16 MiB line costs no more than a short one.
        let secrets = &self.caps.secrets;
        let cut = |s: &str| -> String {
            let head: String = s.chars().take(4096 + (64 << 10)).collect();
            secrets.redact(&head).chars().take(4096).collect()
        };
        let message = cut(&message);
        let fields = cut(&fields
            .iter()
            .map(|(k, v)| format!(" {k}={v}"))
            .collect::<String>());
        let text = format!("{message}{fields}");
        match level {
            Level::Trace => tracing::trace!(target: "guest", "{text}"),
            Level::Debug => tracing::debug!(target: "guest", "{text}"),
            Level::Info => tracing::info!(target: "guest", "{text}"),
            Level::Warn => tracing::warn!(target: "guest", "{text}"),
            Level::Error => tracing::error!(target: "guest", "{text}"),
        }
        Ok(())
    }
}
