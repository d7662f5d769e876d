//! Sandbox limits: configuration with defaults, documented in the README.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Wall time one guest call may take, host calls included.
    pub call_timeout: Duration,
    /// Largest NATS request or reply payload crossing the boundary.
    pub max_payload: usize,
    /// Bytes one host call may copy out of the guest (Wasmtime hostcall fuel).
    pub hostcall_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(120),
            max_payload: 1 << 20,
            hostcall_bytes: 16 << 20,
        }
    }
}

/// The epoch ticks every this long; deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
