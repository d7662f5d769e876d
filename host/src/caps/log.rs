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
        let message: String = message.chars().take(4096).collect();
        let fields: String = fields
            .iter()
            .map(|(k, v)| format!(" {k}={v}"))
            .collect::<String>()
            .chars()
            .take(4096)
            .collect();
        let text = self.caps.secrets.redact(&format!("{message}{fields}"));
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
