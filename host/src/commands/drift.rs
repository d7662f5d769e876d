//! `drift`: compares every resource in state with the server. Ghosts were deleted out of
//! band; config drift names each field with the applied and the live value.

use super::{Ctx, Exit, Format, Opened, json_of, open, report_diags};
use crate::runtime::{error_text, wit};
use crate::state::State;
use anyhow::{Result, anyhow};
use serde_json::{Value, json};

fn class(c: wit::DriftClass) -> &'static str {
    match c {
        wit::DriftClass::Unknown => "unknown",
        wit::DriftClass::InSync => "in-sync",
        wit::DriftClass::Ghost => "ghost",
        wit::DriftClass::Config => "config",
    }
}

pub async fn run(ctx: &Ctx) -> Result<Exit> {
    let state = State::open(&ctx.state, None)?;
    let session = match open(ctx, Some(&state)).await? {
        Opened::Ready(s) => s,
        Opened::Invalid(d) => return Ok(report_diags(ctx, &d)),
    };
    // Drift is measured against what was applied, as wfctl's DetectDriftConfig does.
    let specs: Vec<wit::ResourceSpec> = state
        .records()
        .iter()
        .map(|r| wit::ResourceSpec {
            name: r.name.clone(),
            resource_type: r.rtype.clone(),
            config_json: r.applied_config.to_string(),
            size: String::new(),
            hints: None,
            depends_on: r.dependencies.clone(),
        })
        .collect();
    let results = session
        .guest()
        .await?
        .detect_drift(&state.refs(), &specs)
        .await?
        .map_err(|e| anyhow!(error_text(&e)))?;
    let drifted = results.iter().filter(|d| d.drifted).count();
    match ctx.output {
        Format::Json => {
            let list: Vec<Value> = results
                .iter()
                .map(|d| json!({"name": d.name, "type": d.resource_type, "drifted": d.drifted, "class": class(d.class), "fields": d.fields, "expected": json_of(&d.expected_json), "actual": json_of(&d.actual_json)}))
                .collect();
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&json!({"drift": list, "drifted": drifted}))?
            );
        }
        Format::Text => {
            for d in &results {
                match d.class {
                    wit::DriftClass::InSync => {
                        crate::outln!("IN-SYNC  {} ({})", d.name, d.resource_type)
                    }
                    wit::DriftClass::Ghost => crate::outln!(
                        "GHOST    {} ({}): deleted outside eventbus; apply --refresh recreates it",
                        d.name,
                        d.resource_type
                    ),
                    wit::DriftClass::Config => {
                        crate::outln!(
                            "CONFIG   {} ({}): changed outside eventbus",
                            d.name,
                            d.resource_type
                        );
                        let (exp, act) = (json_of(&d.expected_json), json_of(&d.actual_json));
                        for f in &d.fields {
                            crate::outln!(
                                "           {f}: applied {} , live {}",
                                exp.get(f).unwrap_or(&Value::Null),
                                act.get(f).unwrap_or(&Value::Null)
                            );
                        }
                    }
                    wit::DriftClass::Unknown => {
                        crate::outln!("UNKNOWN  {} ({})", d.name, d.resource_type)
                    }
                }
            }
            if drifted == 0 {
                crate::outln!(
                    "\nNo drift: {} resources match what was applied.",
                    results.len()
                );
            } else {
                crate::outln!(
                    "\n{drifted} of {} resources drifted. `eventbus apply --refresh` puts them back.",
                    results.len()
                );
            }
        }
    }
    Ok(if drifted == 0 {
        Exit::Ok
    } else {
        Exit::Changes
    })
}
