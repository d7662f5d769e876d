//! `validate`: every check that needs no server, with file, resource, field and fix.

use super::{Ctx, Exit, Format, Opened, guest_diags, open, report_diags};
use crate::runtime::error_text;
use anyhow::{Result, anyhow};
use serde_json::json;

pub async fn run(ctx: &Ctx) -> Result<Exit> {
    let session = match open(ctx, None).await? {
        Opened::Ready(s) => s,
        Opened::Invalid(d) => return Ok(report_diags(ctx, &d)),
    };
    let specs = session.infra.specs.clone();
    if let Err(e) = session.guest().await?.validate(&specs).await? {
        return match guest_diags(&session.infra, &e) {
            Some(d) => Ok(report_diags(ctx, &d)),
            None => Err(anyhow!(error_text(&e))),
        };
    }
    match ctx.output {
        Format::Json => crate::outln!(
            "{}",
            json!({"valid": true, "diagnostics": [], "resources": specs.len()})
        ),
        Format::Text => crate::outln!(
            "{}: {} resources valid.",
            session.infra.display_name(),
            specs.len()
        ),
    }
    Ok(Exit::Ok)
}
