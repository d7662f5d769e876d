//! The Wasmtime side: one Engine, the component compiled once (cached on disk), an
//! InstancePre, and guests instantiated from it with no ambient WASI, a memory limit and a
//! deadline per call. A trap or timeout poisons only that instance.

pub mod cache;
pub mod limits;
pub mod oci;
pub mod pool;

use crate::caps::Caps;
use crate::caps::grant::CallGrant;
use anyhow::{Context, Result, anyhow};
use limits::{EPOCH_TICK, Limits};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "eventbus-provider",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "eventbus:iac/nats.connection": crate::caps::nats::ConnHandle,
            "eventbus:iac/kafka.connection": crate::caps::kafka::KafkaConn,
        },
    });
}

pub use bindings::eventbus::iac::types as wit;
use bindings::{EventbusProvider, EventbusProviderPre};

/// What one store holds: an empty WASI context (nothing inherited), its resource table,
/// its limits and the shared capabilities.
pub struct HostState {
    wasi: WasiCtx,
    pub table: ResourceTable,
    limits: StoreLimits,
    pub caps: Arc<Caps>,
    /// What the call in progress may do (read-only outside the mutating exports).
    pub grant: crate::caps::grant::CallGrant,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

pub struct Runtime {
    engine: Engine,
    pre: EventbusProviderPre<HostState>,
    pub caps: Arc<Caps>,
    pub limits: Limits,
    pub source: cache::Source,
    pub load_time: Duration,
}

/// Where the component is when no --component is given: beside the binary (a package), or
/// where `cargo build --target wasm32-wasip2 --release` puts it.
pub fn default_component() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let candidates = [
        dir.join("eventbus_guest.wasm"),
        dir.join("../wasm32-wasip2/release/eventbus_guest.wasm"),
        dir.join("../../wasm32-wasip2/release/eventbus_guest.wasm"),
    ];
    candidates.into_iter().find(|p| p.exists())
}

fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .ok();
}

impl Runtime {
    pub fn new(wasm: &Path, caps: Arc<Caps>) -> Result<Runtime> {
        let started = Instant::now();
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| anyhow!("starting Wasmtime: {e}"))?;
        let (component, source) = cache::load(&engine, wasm)?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("linking WASI: {e}"))?;
        EventbusProvider::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow!("linking the capabilities: {e}"))?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("the component's imports do not match this host: {e}"))?;
        let pre = EventbusProviderPre::new(pre)
            .map_err(|e| anyhow!("the component does not export the eventbus world: {e}"))?;
        start_epoch_ticker(&engine);
        let limits = caps.limits.clone();
        Ok(Runtime {
            engine,
            pre,
            caps,
            limits,
            source,
            load_time: started.elapsed(),
        })
    }

    /// A fresh instance in its own store.
    pub async fn instance(&self) -> Result<Guest> {
        let state = HostState {
            // No env, args, files, sockets or stdio; clocks at CLOCK_RESOLUTION.
            wasi: WasiCtx::builder()
                .wall_clock(limits::CoarseWallClock)
                .monotonic_clock(limits::CoarseMonotonicClock::new())
                .build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.limits.memory_bytes)
                .instances(4)
                .trap_on_grow_failure(true)
                .build(),
            caps: self.caps.clone(),
            grant: Default::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_hostcall_fuel(self.limits.hostcall_bytes);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(u64::MAX / 2);
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| anyhow!("instantiating the component: {e}"))?;
        Ok(Guest {
            store,
            bindings,
            limits: self.limits.clone(),
            poisoned: false,
            next_timeout: None,
            next_grant: None,
        })
    }
}

/// One live instance. After a trap or a timeout it refuses further calls.
pub struct Guest {
    store: Store<HostState>,
    bindings: EventbusProvider,
    limits: Limits,
    pub poisoned: bool,
    /// The deadline of the next call only, when it is not the usual one.
    next_timeout: Option<Duration>,
    /// What the next call may change, when it is a mutating one (else it may only read).
    next_grant: Option<crate::caps::grant::CallGrant>,
}

/// Runs one export under the per-call deadline; a trap or timeout poisons the instance.
macro_rules! call {
    ($self:ident, $iface:ident . $method:ident ( $($arg:expr),* )) => {{
        if $self.poisoned {
            return Err(anyhow!("this component instance trapped earlier and cannot be entered again"));
        }
        let timeout = $self.next_timeout.take().unwrap_or($self.limits.call_timeout);
        let mut grant = $self.next_grant.take().unwrap_or_default();
        grant.export = stringify!($method).trim_start_matches("call_");
        $self.store.data_mut().grant = grant;
        let ticks = (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        $self.store.set_epoch_deadline(ticks);
        let fut = $self.bindings.$iface().$method(&mut $self.store, $($arg),*);
        let out = match tokio::time::timeout(timeout + Duration::from_secs(1), fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(trap)) => {
                $self.poisoned = true;
                Err(anyhow!("the component trapped in {}: {}", stringify!($method), trap_text(&trap)))
            }
            Err(_) => {
                $self.poisoned = true;
                Err(anyhow!("the component's {} call exceeded {:?}", stringify!($method), timeout))
            }
        };
        $self.store.set_epoch_deadline(u64::MAX / 2);
        $self.store.data_mut().grant = Default::default();
        out
    }};
}

fn trap_text(e: &wasmtime::Error) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => "deadline exceeded (epoch interrupt)".into(),
        Some(t) => format!("{t}"),
        None => format!("{e:#}"),
    }
}

pub type GuestResult<T> = Result<std::result::Result<T, wit::ProviderError>>;

impl Guest {
    pub async fn initialize(&mut self, config_json: &str) -> GuestResult<()> {
        call!(self, eventbus_iac_provider.call_initialize(config_json))
    }
    pub async fn name(&mut self) -> Result<String> {
        call!(self, eventbus_iac_provider.call_name())
    }
    pub async fn version(&mut self) -> Result<String> {
        call!(self, eventbus_iac_provider.call_version())
    }
    pub async fn capabilities(&mut self) -> Result<wit::ProviderCapabilities> {
        call!(self, eventbus_iac_provider.call_capabilities())
    }
    pub async fn validate(&mut self, desired: &[wit::ResourceSpec]) -> GuestResult<()> {
        call!(self, eventbus_iac_provider.call_validate(desired))
    }
    pub async fn plan(
        &mut self,
        desired: &[wit::ResourceSpec],
        current: &[wit::ResourceState],
    ) -> GuestResult<wit::IacPlan> {
        call!(self, eventbus_iac_provider.call_plan(desired, current))
    }
    pub async fn destroy(&mut self, refs: &[wit::ResourceRef]) -> GuestResult<wit::DestroyResult> {
        let each: Vec<&wit::ResourceRef> = refs.iter().collect();
        self.next_grant = Some(CallGrant::mutating(&[], &each));
        call!(self, eventbus_iac_provider.call_destroy(refs))
    }
    pub async fn status(
        &mut self,
        refs: &[wit::ResourceRef],
    ) -> GuestResult<Vec<wit::ResourceStatus>> {
        call!(self, eventbus_iac_provider.call_status(refs))
    }
    pub async fn detect_drift(
        &mut self,
        refs: &[wit::ResourceRef],
        specs: &[wit::ResourceSpec],
    ) -> GuestResult<Vec<wit::DriftResult>> {
        call!(self, eventbus_iac_provider.call_detect_drift(refs, specs))
    }
    pub async fn import(
        &mut self,
        provider_id: &str,
        rtype: &str,
    ) -> GuestResult<wit::ResourceState> {
        call!(self, eventbus_iac_provider.call_import(provider_id, rtype))
    }
    pub async fn resolve_sizing(
        &mut self,
        rtype: &str,
        size: &str,
        hints: Option<&wit::ResourceHints>,
    ) -> GuestResult<wit::ProviderSizing> {
        call!(
            self,
            eventbus_iac_provider.call_resolve_sizing(rtype, size, hints)
        )
    }
    pub async fn bootstrap_state_backend(
        &mut self,
        config_json: &str,
    ) -> GuestResult<wit::BootstrapResult> {
        call!(
            self,
            eventbus_iac_provider.call_bootstrap_state_backend(config_json)
        )
    }
    pub async fn schema(&mut self, rtype: &str) -> GuestResult<String> {
        call!(self, eventbus_iac_provider.call_schema(rtype))
    }
    /// Brokers wait for their platform: their driver calls get the longer deadline.
    fn for_type(&mut self, rtype: &str) {
        if rtype == "infra.eventbus" {
            self.next_timeout = Some(self.limits.broker_call_timeout);
        }
    }

    pub async fn create(&mut self, spec: &wit::ResourceSpec) -> GuestResult<wit::ResourceOutput> {
        self.for_type(&spec.resource_type);
        self.next_grant = Some(CallGrant::mutating(&[spec], &[]));
        call!(
            self,
            eventbus_iac_driver.call_create(&spec.resource_type, spec)
        )
    }
    pub async fn read(&mut self, r: &wit::ResourceRef) -> GuestResult<wit::ResourceOutput> {
        call!(self, eventbus_iac_driver.call_read(&r.resource_type, r))
    }
    pub async fn update(
        &mut self,
        r: &wit::ResourceRef,
        spec: &wit::ResourceSpec,
    ) -> GuestResult<wit::ResourceOutput> {
        self.for_type(&r.resource_type);
        self.next_grant = Some(CallGrant::mutating(&[spec], &[r]));
        call!(
            self,
            eventbus_iac_driver.call_update(&r.resource_type, r, spec)
        )
    }
    pub async fn delete(&mut self, r: &wit::ResourceRef) -> GuestResult<()> {
        self.for_type(&r.resource_type);
        self.next_grant = Some(CallGrant::mutating(&[], &[r]));
        call!(self, eventbus_iac_driver.call_delete(&r.resource_type, r))
    }
    pub async fn diff(
        &mut self,
        desired: &wit::ResourceSpec,
        current: &wit::ResourceOutput,
    ) -> GuestResult<wit::DiffResult> {
        call!(
            self,
            eventbus_iac_driver.call_diff(&desired.resource_type, desired, current)
        )
    }
    pub async fn sensitive_keys(&mut self, rtype: &str) -> GuestResult<Vec<String>> {
        call!(self, eventbus_iac_driver.call_sensitive_keys(rtype))
    }
    pub async fn health_check(&mut self, r: &wit::ResourceRef) -> GuestResult<wit::HealthResult> {
        call!(
            self,
            eventbus_iac_driver.call_health_check(&r.resource_type, r)
        )
    }
    pub async fn scale(
        &mut self,
        r: &wit::ResourceRef,
        replicas: i32,
    ) -> GuestResult<wit::ResourceOutput> {
        self.next_grant = Some(CallGrant::mutating(&[], &[r]));
        call!(
            self,
            eventbus_iac_driver.call_scale(&r.resource_type, r, replicas)
        )
    }
    pub async fn troubleshoot(
        &mut self,
        r: &wit::ResourceRef,
        msg: &str,
    ) -> GuestResult<Vec<wit::Diagnostic>> {
        call!(
            self,
            eventbus_iac_driver.call_troubleshoot(&r.resource_type, r, msg)
        )
    }
}

/// The text wfctl matches on, for each error case.
pub fn error_text(e: &wit::ProviderError) -> String {
    use wit::ProviderError as E;
    match e {
        E::NotFound(m)
        | E::AlreadyExists(m)
        | E::RateLimited(m)
        | E::Transient(m)
        | E::Unauthorized(m)
        | E::Forbidden(m)
        | E::Unimplemented(m)
        | E::Internal(m) => m.clone(),
        E::Validation(d) => {
            let parts: Vec<String> = d
                .iter()
                .map(|d| {
                    let mut s = if d.resource.is_empty() {
                        format!("{}: {}", d.path, d.message)
                    } else {
                        format!("resource `{}`: {}: {}", d.resource, d.path, d.message)
                    };
                    if !d.fix.is_empty() {
                        s.push_str(&format!(" (fix: {})", d.fix));
                    }
                    s
                })
                .collect();
            format!("iac: validation error: {}", parts.join("; "))
        }
    }
}

pub fn component_path(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        // oci://REGISTRY/REPO@sha256:…: pulled, verified by digest and cached (runtime/oci/).
        Some(p) if p.to_str().is_some_and(oci::is_reference) => {
            oci::pull::fetch(p.to_str().unwrap_or_default())
        }
        Some(p) => Ok(p.to_path_buf()),
        None => default_component().context(
            "cannot find the component eventbus_guest.wasm: build it with `just build` (cargo build -p eventbus-guest --target wasm32-wasip2 --release) or pass --component",
        ),
    }
}
