//! `eventbus publish oci://REGISTRY/REPO`: the component pushed as an OCI artifact
//! (runtime/oci/push.rs); prints the digest-pinned reference that `--component` loads.

use super::{Ctx, Exit, Format};
use crate::runtime::{self, oci};
use anyhow::{Result, bail};

pub async fn run(ctx: &Ctx, target: &str, dry_run: bool) -> Result<Exit> {
    let given = ctx.component.as_deref();
    if given
        .and_then(|p| p.to_str())
        .is_some_and(oci::is_reference)
    {
        bail!("publish pushes a .wasm file: pass --component PATH (not an oci:// reference)");
    }
    let wasm = runtime::component_path(given)?;
    let pinned = oci::push::publish(&wasm, target, dry_run).await?;
    match ctx.output {
        Format::Json => crate::outln!("{}", serde_json::json!({ "component": pinned })),
        Format::Text => crate::outln!("{pinned}"),
    }
    Ok(Exit::Ok)
}
