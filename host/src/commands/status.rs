//! `status`: every resource in state, as the server sees it now.

use super::{Ctx, Exit, Format, Opened, json_of, open, report_diags};
use crate::runtime::error_text;
use crate::state::State;
use anyhow::{Result, anyhow};
use serde_json::{Value, json};

fn summary(rtype: &str, o: &Value) -> String {
    let s = |k: &str| {
        o.get(k)
            .map(|v| match v {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            })
            .unwrap_or_default()
    };
    let kafka = o.get("bus").and_then(Value::as_str) == Some("kafka");
    match (rtype, kafka) {
        ("infra.eventbus", false) => format!(
            "endpoint {} (nats-server {})",
            s("endpoint"),
            s("server_version")
        ),
        ("infra.eventbus", true) => format!(
            "bootstrap {} (Kafka {}, {} brokers, metadata.version {})",
            s("endpoint"),
            s("version"),
            s("broker_count"),
            s("metadata_version")
        ),
        ("infra.eventbus.stream", false) => format!("subjects {}", s("subjects")),
        ("infra.eventbus.stream", true) => format!(
            "topic {}, {} partitions, replication factor {}",
            s("name"),
            s("partitions"),
            s("replication_factor")
        ),
        ("infra.eventbus.consumer", false) => format!("on stream {}", s("stream_name")),
        ("infra.eventbus.consumer", true) => format!(
            "group on topic {}, {}, {} members",
            s("stream_name"),
            s("state"),
            s("members")
        ),
        _ => String::new(),
    }
}

/// What was recorded at apply, updated with what the server reports now.
fn merged(state: &State, name: &str, live: &str) -> Value {
    let mut base = state
        .get(name)
        .map(|r| r.outputs.clone())
        .unwrap_or(json!({}));
    if let (Value::Object(b), Value::Object(l)) = (&mut base, json_of(live)) {
        b.extend(l);
    }
    base
}

pub async fn run(ctx: &Ctx) -> Result<Exit> {
    let state = State::open(&ctx.state, None)?;
    let session = match open(ctx, Some(&state)).await? {
        Opened::Ready(s) => s,
        Opened::Invalid(d) => return Ok(report_diags(ctx, &d)),
    };
    let refs = state.refs();
    let statuses = session
        .guest()
        .await?
        .status(&refs)
        .await?
        .map_err(|e| anyhow!(error_text(&e)))?;
    match ctx.output {
        Format::Json => {
            let list: Vec<Value> = statuses
                .iter()
                .map(|s| json!({"name": s.name, "type": s.resource_type, "provider_id": s.provider_id, "status": s.status, "outputs": merged(&state, &s.name, &s.outputs_json)}))
                .collect();
            crate::outln!(
                "{}",
                serde_json::to_string_pretty(&json!({"resources": list}))?
            );
        }
        Format::Text => {
            if statuses.is_empty() {
                crate::outln!("No resources in {}.", state.path().display());
            } else {
                let wn = statuses
                    .iter()
                    .map(|s| s.name.len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                let wt = statuses
                    .iter()
                    .map(|s| s.resource_type.len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                crate::outln!("{:<wn$}  {:<wt$}  {:<8}  DETAIL", "NAME", "TYPE", "STATUS");
                for s in &statuses {
                    let o = merged(&state, &s.name, &s.outputs_json);
                    let detail = match o.get("error").and_then(Value::as_str) {
                        Some(e) => e.to_string(),
                        None => summary(&s.resource_type, &o),
                    };
                    crate::outln!(
                        "{:<wn$}  {:<wt$}  {:<8}  {detail}",
                        s.name,
                        s.resource_type,
                        s.status
                    );
                }
                let running = statuses.iter().filter(|s| s.status == "running").count();
                crate::outln!("\n{running} of {} resources running.", statuses.len());
            }
        }
    }
    Ok(if statuses.iter().all(|s| s.status == "running") {
        Exit::Ok
    } else {
        Exit::Failed
    })
}
