//! `import`: brings an existing stream or consumer under management with its real config.

use super::{Ctx, Exit, Format, Opened, open, report_diags};
use crate::runtime::error_text;
use crate::state::{Record, State, now_rfc3339};
use anyhow::{Result, anyhow, bail};
use serde_json::json;

pub async fn run(ctx: &Ctx, name: &str, rtype: &str, id: &str) -> Result<Exit> {
    let mut state = State::open(&ctx.state, Some((ctx.lock_timeout, "import")))?;
    if state.get(name).is_some() {
        bail!(
            "{name} is already in the state {}: nothing to import",
            state.path().display()
        );
    }
    let session = match open(ctx, Some(&state)).await? {
        Opened::Ready(s) => s,
        Opened::Invalid(d) => return Ok(report_diags(ctx, &d)),
    };
    let imported = session
        .guest()
        .await?
        .import(id, rtype)
        .await?
        .map_err(|e| anyhow!(error_text(&e)))?;
    let now = now_rfc3339();
    let rec = Record {
        name: name.to_string(),
        rtype: imported.resource_type.clone(),
        provider: imported.provider.clone(),
        provider_ref: session.infra.provider_module.clone(),
        provider_id: imported.provider_id.clone(),
        config_hash: crate::state::config_hash(&imported.applied_config_json),
        applied_config: serde_json::from_str(&imported.applied_config_json)?,
        applied_config_source: "adoption".into(),
        outputs: serde_json::from_str(&imported.outputs_json)?,
        dependencies: vec![],
        created_at: now.clone(),
        updated_at: now,
    };
    state.upsert(rec.clone());
    state.save()?;
    match ctx.output {
        Format::Json => crate::outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"imported": rec}))?
        ),
        Format::Text => {
            crate::outln!(
                "Imported {id} as {name} ({rtype}). Its live config, to copy into {}:",
                ctx.file.display()
            );
            crate::outln!(
                "{}",
                serde_yaml_ng::to_string(&rec.applied_config).unwrap_or_default()
            );
        }
    }
    Ok(Exit::Ok)
}
