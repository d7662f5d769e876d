//! The CLI's subcommands, one file each, sharing the session set-up here: read infra.yaml,
//! grant what it declares, load the component, initialize the provider.

pub mod apply;
pub mod drift;
pub mod import;
pub mod plan;
pub mod publish;
pub mod schema;
pub mod status;
pub mod unlock;
pub mod validate;

use crate::caps::Caps;
use crate::caps::cloud::{CloudCap, guest_view};
use crate::caps::nats::NatsCap;
use crate::caps::secrets::SecretStore;
use crate::infra::{self, Diag, Infra};
use crate::runtime::limits::Limits;
use crate::runtime::pool::{Pool, Pooled};
use crate::runtime::{self, Runtime, wit};
use crate::state::State;
use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// Process exit codes: 0 done (or nothing to change), 1 failed, 2 changes or drift present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Failed = 1,
    Changes = 2,
}

#[derive(Debug, Clone)]
pub struct Ctx {
    pub file: PathBuf,
    pub state: PathBuf,
    pub output: Format,
    pub component: Option<PathBuf>,
    pub lock_timeout: Duration,
    pub limits: Limits,
    /// Component instances working at once (independent actions run in parallel).
    pub parallelism: usize,
}

pub struct Session {
    pub infra: Infra,
    pub pool: Arc<Pool>,
}

impl Session {
    /// A working instance from the pool (a fresh one replaces any that trapped).
    pub async fn guest(&self) -> Result<Pooled> {
        self.pool.get().await
    }

    pub fn caps(&self) -> &Arc<Caps> {
        &self.pool.rt.caps
    }
}

/// Input problems, printed the way the output format asks; always exit 1.
pub fn report_diags(ctx: &Ctx, diags: &[Diag]) -> Exit {
    match ctx.output {
        Format::Json => crate::outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"valid": false, "diagnostics": diags}))
                .unwrap_or_default()
        ),
        Format::Text => {
            for d in diags {
                eprintln!("error: {d}");
            }
            eprintln!(
                "{} problem{} found; nothing was changed.",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            );
        }
    }
    Exit::Failed
}

/// Guest validation diagnostics, with the file and each resource's type added.
pub fn guest_diags(infra: &Infra, e: &wit::ProviderError) -> Option<Vec<Diag>> {
    let wit::ProviderError::Validation(list) = e else {
        return None;
    };
    Some(
        list.iter()
            .map(|d| Diag {
                file: infra.display_name(),
                resource: d.resource.clone(),
                rtype: infra.type_of(&d.resource),
                path: d.path.clone(),
                message: d.message.clone(),
                fix: d.fix.clone(),
            })
            .collect(),
    )
}

pub enum Opened {
    Ready(Box<Session>),
    Invalid(Vec<Diag>),
}

/// Reads infra.yaml and starts the component with the grants the file and state imply.
pub async fn open(ctx: &Ctx, state: Option<&State>) -> Result<Opened> {
    let secrets = SecretStore::default();
    let infra = match infra::load(&ctx.file, &secrets)? {
        Ok(i) => i,
        Err(d) => return Ok(Opened::Invalid(d)),
    };
    let caps = Caps::new(NatsCap::default(), secrets, ctx.limits.clone());
    for u in &infra.nats_grants {
        caps.nats.grant(u);
    }
    for s in &infra.kafka_grants {
        caps.kafka.grant(s);
    }
    if let Some(st) = state {
        for r in st.records().iter().filter(|r| r.rtype == "infra.eventbus") {
            caps.grant_broker_outputs(&r.outputs);
            caps.register_broker(&r.name, &r.outputs);
        }
    }
    // Generated credentials live beside the state, never in it.
    let secrets_file = ctx
        .state
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("secrets.json"), |d| d.join("secrets.json"));
    if let Err(e) = caps.secrets.keep_generated_in(&secrets_file) {
        return Err(anyhow!(
            "reading the generated secrets in {}: {e}",
            secrets_file.display()
        ));
    }
    let cloud = match CloudCap::from_config(&infra.provider_config, &caps.secrets) {
        Ok(c) => c,
        Err(problems) => {
            return Ok(Opened::Invalid(
                problems
                    .into_iter()
                    .map(|(path, message, fix)| Diag {
                        file: infra.display_name(),
                        resource: infra.provider_module.clone(),
                        rtype: "iac.provider".into(),
                        path,
                        message,
                        fix,
                    })
                    .collect(),
            ));
        }
    };
    let caps = Arc::new(
        caps.with_cloud(cloud)
            .with_http(crate::caps::http::HttpCap::from_config(
                &infra.provider_config,
            )),
    );
    let wasm = runtime::component_path(ctx.component.as_deref())?;
    let rt = Runtime::new(&wasm, caps)?;
    tracing::debug!(source = ?rt.source, elapsed = ?rt.load_time, "component loaded");
    let mut guest = rt.instance().await?;
    // The guest sees the provider config without the operator's cloud credentials.
    let config = guest_view(&infra.provider_config).to_string();
    if let Err(e) = guest.initialize(&config).await? {
        if let Some(d) = guest_diags(&infra, &e) {
            return Ok(Opened::Invalid(
                d.into_iter()
                    .map(|mut d| {
                        d.resource = infra.provider_module.clone();
                        d.rtype = "iac.provider".into();
                        d
                    })
                    .collect(),
            ));
        }
        return Err(anyhow!(runtime::error_text(&e)));
    }
    let pool = Pool::new(rt, config, ctx.parallelism);
    pool.offer(guest);
    Ok(Opened::Ready(Box::new(Session { infra, pool })))
}

/// Parses a JSON text from the guest, falling back to a string.
pub fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}
