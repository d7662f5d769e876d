//! `eventbus`: plan and apply event-bus infrastructure (NATS JetStream brokers, streams,
//! consumers) from a wfctl-format infra.yaml, with all provisioning logic sandboxed in a
//! WebAssembly component.

use clap::{Parser, Subcommand};
use eventbus_host::commands::{self, Ctx, Exit, Format};
use eventbus_host::runtime::limits::Limits;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "eventbus", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 success (plan/drift: nothing to change), 1 failure or invalid input, 2 plan/drift found changes.\n\
Example: NATS_URL=nats://127.0.0.1:4222 eventbus -f examples/bmw/infra.yaml apply"
)]
struct Cli {
    /// The wfctl-format infrastructure file.
    #[arg(
        short,
        long,
        global = true,
        default_value = "infra.yaml",
        env = "EVENTBUS_FILE"
    )]
    file: PathBuf,
    /// State file [default: <file's directory>/.eventbus/state.json].
    #[arg(long, global = true, env = "EVENTBUS_STATE")]
    state: Option<PathBuf>,
    /// Output format: text for people, json for programs.
    #[arg(short, long, global = true, value_enum, default_value = "text")]
    output: Format,
    /// The provider component: a .wasm file, or oci://REGISTRY/REPO@sha256:<digest> (pulled,
    /// verified by digest, cached) [default: beside this binary, or the cargo build output].
    #[arg(long, global = true, env = "EVENTBUS_COMPONENT")]
    component: Option<PathBuf>,
    /// Seconds to wait for another process's state lock.
    #[arg(long, global = true, default_value_t = 0)]
    lock_timeout: u64,
    /// Sandbox: linear memory per component instance, in MiB.
    #[arg(long, global = true, default_value_t = 64, env = "EVENTBUS_MEMORY_MIB")]
    memory_mib: usize,
    /// Sandbox: wall-clock limit for one call into the component, in seconds.
    #[arg(
        long,
        global = true,
        default_value_t = 120,
        env = "EVENTBUS_CALL_TIMEOUT"
    )]
    call_timeout: u64,
    /// Sandbox: wall-clock limit for creating, updating or deleting a broker (platform
    /// rollouts take minutes), in seconds.
    #[arg(
        long,
        global = true,
        default_value_t = 1800,
        env = "EVENTBUS_BROKER_CALL_TIMEOUT"
    )]
    broker_call_timeout: u64,
    /// Sandbox: largest NATS request or reply, and cloud or HTTP answer, crossing into the
    /// component, in KiB.
    #[arg(
        long,
        global = true,
        default_value_t = 1024,
        env = "EVENTBUS_MAX_PAYLOAD_KIB",
        value_name = "KIB"
    )]
    max_payload_kib: usize,
    /// Sandbox: bytes one host call may copy out of the component (Wasmtime hostcall fuel),
    /// in MiB.
    #[arg(
        long,
        global = true,
        default_value_t = 16,
        env = "EVENTBUS_HOSTCALL_MIB",
        value_name = "MIB"
    )]
    hostcall_mib: usize,
    /// Component instances working at once: independent actions run in parallel.
    #[arg(long, global = true, default_value_t = 8, env = "EVENTBUS_PARALLELISM")]
    parallelism: usize,
    /// More logging (-v info, -vv debug, -vvv trace); or set EVENTBUS_LOG.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the file without touching any server: schema, references, routing.
    Validate,
    /// Show what apply would change (exit 2 when there are changes).
    Plan {
        /// Read every resource from its server first, so out-of-band deletes and edits show.
        #[arg(long)]
        refresh: bool,
    },
    /// Create, update, replace and delete resources until they match the file.
    Apply {
        /// Allow replacing or deleting this protected resource (repeatable; * for all).
        #[arg(long = "allow-replace", value_name = "NAME")]
        allow_replace: Vec<String>,
        /// Read every resource from its server first: recreates what was deleted out of band
        /// and reverts out-of-band edits.
        #[arg(long)]
        refresh: bool,
    },
    /// Show every resource in state as the server sees it now.
    Status,
    /// Compare state with the servers: ghosts and changed fields (exit 2 on drift).
    Drift,
    /// Delete every resource in state: consumers, then streams, then brokers.
    Destroy {
        /// Allow deleting this protected resource (repeatable; * for all).
        #[arg(long = "allow-replace", value_name = "NAME")]
        allow_replace: Vec<String>,
    },
    /// Push the component (--component, or the default) to an OCI registry in the
    /// component-model layout; prints oci://REGISTRY/REPO@sha256:<digest> to pin.
    Publish {
        /// oci://REGISTRY/REPO[:TAG] (plain HTTP only for a loopback registry).
        target: String,
        /// Print the reference it would pin without pushing (the digest depends only on the
        /// component's bytes).
        #[arg(long)]
        dry_run: bool,
    },
    /// Bring an existing stream or consumer under management.
    Import {
        /// The resource (module) name to record it under.
        #[arg(long)]
        name: String,
        /// infra.eventbus.stream or infra.eventbus.consumer.
        #[arg(long = "type")]
        rtype: String,
        /// BROKER/STREAM or BROKER/STREAM/CONSUMER.
        #[arg(long)]
        id: String,
    },
    /// Show who holds the state lock; with --force, stop that process so the lock is free
    /// (nothing it finished is lost: the next apply continues from its journal).
    Unlock {
        /// Stop the holder: SIGTERM, then SIGKILL after --grace seconds.
        #[arg(long)]
        force: bool,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(long, default_value_t = 10, value_name = "SECS")]
        grace: u64,
    },
    /// Print the JSON Schema of a resource type's config (all types when omitted). A stream's
    /// and a consumer's config depend on the bus of their broker: one schema per bus.
    Schema {
        #[arg(value_name = "TYPE")]
        rtype: Option<String>,
        /// Only this bus's schema for streams and consumers (nats: streams and consumers;
        /// kafka: topics and consumer groups).
        #[arg(long, value_name = "BUS")]
        bus: Option<String>,
    },
    /// Print the capability rules every host enforces on the component, as JSON.
    Policy,
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVENTBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .init();
}

fn main() {
    // Started by wfctl (go-plugin handshake cookie): serve the plugin protocol instead.
    if eventbus_host::wfctl::started_as_plugin() {
        eventbus_host::wfctl::serve();
    }
    // SIGPIPE stays ignored (Rust's default): a pipe reader going away is handled where stdout
    // is written (`outln!`), and a broker resetting its socket mid-write is an I/O error to
    // report, not a reason to die without a word.
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let state = cli.state.clone().unwrap_or_else(|| {
        let dir = cli
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        dir.join(".eventbus").join("state.json")
    });
    let ctx = Ctx {
        file: cli.file.clone(),
        state,
        output: cli.output,
        component: cli.component.clone(),
        lock_timeout: Duration::from_secs(cli.lock_timeout),
        parallelism: cli.parallelism.max(1),
        limits: Limits {
            memory_bytes: cli.memory_mib << 20,
            call_timeout: Duration::from_secs(cli.call_timeout.max(1)),
            broker_call_timeout: Duration::from_secs(cli.broker_call_timeout.max(1)),
            max_payload: cli.max_payload_kib.max(1) << 10,
            hostcall_bytes: cli.hostcall_mib.max(1) << 20,
        },
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            std::process::exit(Exit::Failed as i32);
        }
    };
    let result = rt.block_on(async {
        match &cli.command {
            Command::Validate => commands::validate::run(&ctx).await,
            Command::Plan { refresh } => commands::plan::run(&ctx, *refresh).await,
            Command::Apply {
                allow_replace,
                refresh,
            } => commands::apply::run(&ctx, allow_replace, false, *refresh).await,
            Command::Status => commands::status::run(&ctx).await,
            Command::Drift => commands::drift::run(&ctx).await,
            Command::Destroy { allow_replace } => {
                commands::apply::run(&ctx, allow_replace, true, false).await
            }
            Command::Import { name, rtype, id } => {
                commands::import::run(&ctx, name, rtype, id).await
            }
            Command::Schema { rtype, bus } => {
                commands::schema::run(&ctx, rtype.as_deref(), bus.as_deref()).await
            }
            Command::Publish { target, dry_run } => {
                commands::publish::run(&ctx, target, *dry_run).await
            }
            Command::Policy => {
                let text = serde_json::to_string_pretty(&eventbus_host::caps::policy::describe())?;
                eventbus_host::outln!("{text}");
                Ok(Exit::Ok)
            }
            Command::Unlock { force, grace } => {
                commands::unlock::run(&ctx, *force, Duration::from_secs(*grace))
            }
        }
    });
    let code = match result {
        Ok(exit) => exit as i32,
        Err(e) => {
            if ctx.output == Format::Json {
                eventbus_host::outln!("{}", serde_json::json!({"error": format!("{e:#}")}));
            }
            eprintln!("error: {e:#}");
            Exit::Failed as i32
        }
    };
    std::process::exit(code);
}
