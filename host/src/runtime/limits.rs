//! Sandbox limits: configuration with defaults, documented in the README.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory one instance may grow to.
    pub memory_bytes: usize,
    /// Wall time one guest call may take, host calls included.
    pub call_timeout: Duration,
    /// Wall time for creating, updating or deleting a broker, which waits for a platform
    /// (a rollout, a deployment) that takes minutes.
    pub broker_call_timeout: Duration,
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
            broker_call_timeout: Duration::from_secs(30 * 60),
            max_payload: 1 << 20,
            hostcall_bytes: 16 << 20,
        }
    }
}

/// The epoch ticks every this long; deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The granularity of every clock the guest can read (WASI wall and monotonic clocks,
/// resolution included). Provisioning logic needs seconds; a nanosecond clock would only
/// serve timing games against the host.
pub const CLOCK_RESOLUTION: Duration = Duration::from_millis(1);

/// The wall clock, rounded down to [`CLOCK_RESOLUTION`].
pub struct CoarseWallClock;

impl wasmtime_wasi::HostWallClock for CoarseWallClock {
    fn resolution(&self) -> Duration {
        CLOCK_RESOLUTION
    }
    fn now(&self) -> Duration {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let step = CLOCK_RESOLUTION.as_nanos();
        Duration::from_nanos(((t.as_nanos() / step) * step) as u64)
    }
}

/// A monotonic clock from the instance's creation, rounded down to [`CLOCK_RESOLUTION`].
pub struct CoarseMonotonicClock(std::time::Instant);

impl CoarseMonotonicClock {
    pub fn new() -> Self {
        CoarseMonotonicClock(std::time::Instant::now())
    }
}

impl Default for CoarseMonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl wasmtime_wasi::HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        CLOCK_RESOLUTION.as_nanos() as u64
    }
    fn now(&self) -> u64 {
        let step = CLOCK_RESOLUTION.as_nanos();
        ((self.0.elapsed().as_nanos() / step) * step) as u64
    }
}
