//! The wfctl plugin bridge. wfctl loads IaC providers only as go-plugin gRPC subprocesses:
//! started with `WORKFLOW_PLUGIN=workflow-external-plugin-v1`, this binary serves wfctl's
//! IaC services on a unix socket (TCP loopback as a fallback), registers the gRPC health
//! service `plugin` as SERVING, prints the handshake line `1|1|unix|<path>|grpc` on stdout
//! and forwards every call into the sandboxed component. Logs go to stderr only.

pub mod authority;
pub mod bridge;
pub mod brokers;
pub mod convert;
pub mod proto;
pub mod services;

use crate::caps::Caps;
use crate::caps::nats::NatsCap;
use crate::caps::secrets::SecretStore;
use crate::runtime::{self, limits::Limits};
use bridge::Bridge;
use proto::iac::ia_c_provider_drift_config_detector_server::IaCProviderDriftConfigDetectorServer;
use proto::iac::ia_c_provider_drift_detector_server::IaCProviderDriftDetectorServer;
use proto::iac::ia_c_provider_finalizer_server::IaCProviderFinalizerServer;
use proto::iac::ia_c_provider_required_server::IaCProviderRequiredServer;
use proto::iac::resource_driver_server::ResourceDriverServer;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::server::NamedService;

/// go-plugin's magic cookie, as wfctl sets it.
pub const COOKIE_KEY: &str = "WORKFLOW_PLUGIN";
pub const COOKIE_VALUE: &str = "workflow-external-plugin-v1";

/// True when wfctl (or any go-plugin client with wfctl's handshake) started this process.
pub fn started_as_plugin() -> bool {
    std::env::var(COOKIE_KEY).is_ok_and(|v| v == COOKIE_VALUE)
}

/// The full names of the IaC services this plugin registers (what GetContractRegistry lists).
pub fn iac_services() -> Vec<String> {
    let mut v = vec![
        <IaCProviderRequiredServer<Bridge> as NamedService>::NAME.to_string(),
        <ResourceDriverServer<Bridge> as NamedService>::NAME.to_string(),
        <IaCProviderDriftDetectorServer<Bridge> as NamedService>::NAME.to_string(),
        <IaCProviderDriftConfigDetectorServer<Bridge> as NamedService>::NAME.to_string(),
        <IaCProviderFinalizerServer<Bridge> as NamedService>::NAME.to_string(),
    ];
    v.sort();
    v
}

/// Sandbox limits from the same environment variables the CLI reads.
fn limits_from_env() -> Limits {
    let num = |k: &str| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let mut l = Limits::default();
    if let Some(mib) = num("EVENTBUS_MEMORY_MIB") {
        l.memory_bytes = (mib as usize) << 20;
    }
    if let Some(s) = num("EVENTBUS_CALL_TIMEOUT") {
        l.call_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(s) = num("EVENTBUS_BROKER_CALL_TIMEOUT") {
        l.broker_call_timeout = Duration::from_secs(s.max(1));
    }
    if let Some(kib) = num("EVENTBUS_MAX_PAYLOAD_KIB") {
        l.max_payload = (kib.max(1) as usize) << 10;
    }
    if let Some(mib) = num("EVENTBUS_HOSTCALL_MIB") {
        l.hostcall_bytes = (mib.max(1) as usize) << 20;
    }
    l
}

/// `$EVENTBUS_COMPONENT`, else beside this binary (a package), else the cargo build output.
fn component() -> anyhow::Result<PathBuf> {
    match std::env::var_os("EVENTBUS_COMPONENT") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => runtime::component_path(None),
    }
}

enum Listener {
    Unix(tokio::net::UnixListener, PathBuf),
    Tcp(tokio::net::TcpListener),
}

/// A unix socket in a fresh private directory (under `$PLUGIN_UNIX_SOCKET_DIR` if go-plugin
/// set it), else TCP on 127.0.0.1 with a port the OS picks.
fn listen() -> anyhow::Result<(Listener, String)> {
    let base = std::env::var_os("PLUGIN_UNIX_SOCKET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = base.join(format!("plugin-eventbus-{}-{nanos:x}", std::process::id()));
    let unix = (|| -> std::io::Result<(tokio::net::UnixListener, PathBuf)> {
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let path = dir.join("plugin.sock");
        Ok((tokio::net::UnixListener::bind(&path)?, path))
    })();
    match unix {
        Ok((l, path)) => {
            let line = format!("unix|{}", path.display());
            Ok((Listener::Unix(l, dir), line))
        }
        Err(e) => {
            tracing::warn!(
                "cannot listen on a unix socket in {} ({e}); using TCP on loopback",
                dir.display()
            );
            let _ = std::fs::remove_dir_all(&dir);
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.set_nonblocking(true)?;
            let addr = l.local_addr()?;
            Ok((
                Listener::Tcp(tokio::net::TcpListener::from_std(l)?),
                format!("tcp|{addr}"),
            ))
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVENTBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// Runs the plugin server until the client calls Shutdown (or the process is killed), then
/// exits the process.
pub fn serve() -> ! {
    init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match rt.block_on(run()) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            1
        }
    };
    // Do not wait for blocking tasks (a component still compiling, a stuck guest call).
    rt.shutdown_timeout(Duration::from_millis(100));
    std::process::exit(code);
}

/// SIGTERM stops the server like Shutdown does. SIGINT is ignored, as go-plugin plugins do:
/// a Ctrl-C in wfctl's terminal reaches the whole process group, and wfctl decides when its
/// plugins stop.
fn watch_signals(stop: Arc<tokio::sync::watch::Sender<bool>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot watch signals");
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("terminated: shutting down");
                    let _ = stop.send(true);
                    return;
                }
                _ = int.recv() => tracing::debug!("interrupt ignored: the plugin client stops this process"),
            }
        }
    });
}

async fn run() -> anyhow::Result<()> {
    // Generated broker credentials outlive this process (wfctl starts one per command), and
    // never go into wfctl's state: EVENTBUS_SECRETS_FILE, else ~/.local/share/eventbus.
    let secrets = SecretStore::default();
    let file = std::env::var_os("EVENTBUS_SECRETS_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let base = std::env::var_os("XDG_DATA_HOME")
                .map(std::path::PathBuf::from)
                .or_else(|| {
                    std::env::var_os("HOME")
                        .map(|h| std::path::PathBuf::from(h).join(".local/share"))
                })
                .unwrap_or_else(std::env::temp_dir);
            base.join("eventbus").join("secrets.json")
        });
    secrets
        .keep_generated_in(&file)
        .map_err(|e| anyhow::anyhow!("reading generated secrets in {}: {e}", file.display()))?;
    let caps = Caps::new(NatsCap::default(), secrets, limits_from_env());
    let brokers_file = file.with_file_name("brokers.json");
    let saved = brokers::SavedBrokers::load(&brokers_file, &caps)?;
    let caps = Arc::new(caps);
    let bridge = Arc::new(Bridge::new(caps, component(), Some(saved)));

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let tx = Arc::new(tx);
    watch_signals(tx.clone());
    let controller = services::Controller { shutdown: tx };
    let registry = services::Registry {
        services: iac_services(),
    };

    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(proto::plugin_v1::plugin_service_server::PluginServiceServer::new(registry))
        .add_service(
            proto::go_plugin::grpc_controller_server::GrpcControllerServer::new(controller),
        )
        .add_service(IaCProviderRequiredServer::from_arc(bridge.clone()))
        .add_service(ResourceDriverServer::from_arc(bridge.clone()))
        .add_service(IaCProviderDriftDetectorServer::from_arc(bridge.clone()))
        .add_service(IaCProviderDriftConfigDetectorServer::from_arc(
            bridge.clone(),
        ))
        .add_service(IaCProviderFinalizerServer::from_arc(bridge));

    let (listener, addr) = listen()?;
    let mut stop = rx.clone();
    let shutdown = async move {
        let _ = stop.wait_for(|v| *v).await;
    };
    // Handshake only once the socket accepts connections; stdout carries nothing else.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "1|1|{addr}|grpc")?;
        out.flush()?;
    }
    tracing::info!(%addr, "serving wfctl's IaC plugin protocol");

    let mut deadline = rx;
    let hard_stop = async move {
        let _ = deadline.wait_for(|v| *v).await;
        // Graceful shutdown waits for calls in flight; a stuck one must not keep us alive.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tracing::warn!("calls still in flight at shutdown; exiting anyway");
    };
    let result = match listener {
        Listener::Unix(l, dir) => {
            // Clients that name the socket path in :authority (grpcio) must not be refused.
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::UnixListenerStream::new(l),
                |conn| conn.map(authority::AcceptAnyAuthority::new),
            );
            let r = tokio::select! {
                r = router.serve_with_incoming_shutdown(incoming, shutdown) => r,
                _ = hard_stop => Ok(()),
            };
            let _ = std::fs::remove_dir_all(&dir);
            r
        }
        Listener::Tcp(l) => {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(l);
            tokio::select! {
                r = router.serve_with_incoming_shutdown(incoming, shutdown) => r,
                _ = hard_stop => Ok(()),
            }
        }
    };
    result.map_err(|e| anyhow::anyhow!("the gRPC server failed: {e}"))
}
