//! `schema`: the JSON Schema of each resource type's config, from the component.

use super::{Ctx, Exit};
use crate::caps::Caps;
use crate::runtime::{self, Runtime, error_text};
use anyhow::{Result, anyhow};
use serde_json::{Map, Value};
use std::sync::Arc;

pub const TYPES: [&str; 3] = [
    "infra.eventbus",
    "infra.eventbus.stream",
    "infra.eventbus.consumer",
];

pub async fn run(ctx: &Ctx, rtype: Option<&str>, bus: Option<&str>) -> Result<Exit> {
    let caps = Arc::new(Caps::new(
        Default::default(),
        Default::default(),
        ctx.limits.clone(),
    ));
    let rt = Runtime::new(&runtime::component_path(ctx.component.as_deref())?, caps)?;
    let mut guest = rt.instance().await?;
    let mut out = Map::new();
    for t in TYPES.iter().filter(|t| rtype.is_none_or(|r| r == **t)) {
        let s = guest
            .schema(t)
            .await?
            .map_err(|e| anyhow!(error_text(&e)))?;
        let schema: Value = serde_json::from_str(&s)?;
        out.insert(t.to_string(), for_bus(schema, bus)?);
    }
    if out.is_empty() {
        return Err(anyhow!(
            "unknown resource type {:?}: use one of {}",
            rtype.unwrap_or(""),
            TYPES.join(", ")
        ));
    }
    let v = if out.len() == 1 {
        out.into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or(Value::Null)
    } else {
        Value::Object(out)
    };
    crate::outln!("{}", serde_json::to_string_pretty(&v)?);
    Ok(Exit::Ok)
}

/// With `--bus`, a stream's or consumer's per-bus schema (its `anyOf` entry of that `x-bus`);
/// a broker's schema is the same for every bus.
fn for_bus(schema: Value, bus: Option<&str>) -> Result<Value> {
    let (Some(bus), Some(each)) = (bus, schema.get("anyOf").and_then(Value::as_array)) else {
        return Ok(schema);
    };
    let buses: Vec<&str> = each
        .iter()
        .filter_map(|s| s.get("x-bus")?.as_str())
        .collect();
    each.iter()
        .find(|s| s.get("x-bus").and_then(Value::as_str) == Some(bus))
        .cloned()
        .ok_or_else(|| anyhow!("unknown bus {bus:?}: use one of {}", buses.join(", ")))
}
