//! `plan`: what apply would do, for a careful reviewer: each action, each changed field,
//! why a change forces a replacement, and what a replacement costs.

use super::{Ctx, Exit, Format, Opened, Session, guest_diags, json_of, open, report_diags};
use crate::infra::Diag;
use crate::runtime::{error_text, wit};
use crate::state::State;
use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use std::fmt::Write;

pub fn verb(a: wit::ActionKind) -> &'static str {
    match a {
        wit::ActionKind::Create => "create",
        wit::ActionKind::Update => "update",
        wit::ActionKind::Replace => "replace",
        wit::ActionKind::Delete => "delete",
    }
}

fn sigil(a: wit::ActionKind) -> &'static str {
    match a {
        wit::ActionKind::Create => "+",
        wit::ActionKind::Update => "~",
        wit::ActionKind::Replace => "-/+",
        wit::ActionKind::Delete => "-",
    }
}

/// The guest's plan for the file against the state; input problems come back as diagnostics.
pub async fn compute(
    session: &Session,
    state: &State,
    refresh: bool,
) -> Result<std::result::Result<wit::IacPlan, Vec<Diag>>> {
    let desired = session.infra.specs.clone();
    let mut current = state.to_wit();
    if refresh {
        current = refreshed(session, current).await?;
    }
    let mut guest = session.guest().await?;
    match guest.plan(&desired, &current).await? {
        Ok(p) => Ok(Ok(p)),
        Err(e) => match guest_diags(&session.infra, &e) {
            Some(d) => Ok(Err(d)),
            None => Err(anyhow!(error_text(&e))),
        },
    }
}

/// State as the servers see it now: resources deleted out of band are dropped (so they plan
/// as creates) and outputs are re-read (so out-of-band changes plan as updates).
async fn refreshed(
    session: &Session,
    current: Vec<wit::ResourceState>,
) -> Result<Vec<wit::ResourceState>> {
    let mut out = Vec::with_capacity(current.len());
    for mut st in current {
        let r = wit::ResourceRef {
            name: st.name.clone(),
            resource_type: st.resource_type.clone(),
            provider_id: st.provider_id.clone(),
        };
        match session.guest().await?.read(&r).await? {
            Ok(live) => {
                let mut base = json_of(&st.outputs_json);
                if let (Value::Object(b), Value::Object(l)) =
                    (&mut base, json_of(&live.outputs_json))
                {
                    b.extend(l);
                }
                st.outputs_json = base.to_string();
                out.push(st);
            }
            Err(wit::ProviderError::NotFound(m)) => {
                tracing::info!(resource = %st.name, "refresh: gone from the server: {m}");
            }
            Err(e) => return Err(anyhow!("refreshing {}: {}", st.name, error_text(&e))),
        }
    }
    Ok(out)
}

#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
}

pub fn summary(plan: &wit::IacPlan) -> Summary {
    let mut s = Summary::default();
    for a in &plan.actions {
        match a.action {
            wit::ActionKind::Create => s.create += 1,
            wit::ActionKind::Update => s.update += 1,
            wit::ActionKind::Replace => s.replace += 1,
            wit::ActionKind::Delete => s.delete += 1,
        }
    }
    s
}

pub fn change_json(c: &wit::FieldChange) -> Value {
    json!({"path": c.path, "old": json_of(&c.old_json), "new": json_of(&c.new_json), "force_new": c.force_new, "reason": c.reason})
}

pub fn to_json(plan: &wit::IacPlan) -> Value {
    let actions: Vec<Value> = plan
        .actions
        .iter()
        .map(|a| {
            json!({
                "action": verb(a.action),
                "name": a.resource.name,
                "type": a.resource.resource_type,
                "provider_id": a.current.as_ref().map(|c| c.provider_id.clone()),
                "config": json_of(&a.resource.config_json),
                "depends_on": a.resource.depends_on,
                "changes": a.changes.iter().map(change_json).collect::<Vec<_>>(),
                "notes": a.notes,
            })
        })
        .collect();
    json!({"actions": actions, "summary": summary(plan)})
}

const HIDDEN: [&str; 2] = ["iac_provider", "protected"];

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(unset)".into(),
        other => other.to_string(),
    }
}

pub fn render_text(source: &str, plan: &wit::IacPlan) -> String {
    let mut out = String::new();
    if plan.actions.is_empty() {
        let _ = writeln!(out, "No changes: the live resources match {source}.");
        return out;
    }
    let _ = writeln!(out, "Plan for {source}:\n");
    let width = plan
        .actions
        .iter()
        .map(|a| a.resource.resource_type.len())
        .max()
        .unwrap_or(0);
    for a in &plan.actions {
        let _ = writeln!(
            out,
            "  {:>3} {:<7} {:<width$}  {}",
            sigil(a.action),
            verb(a.action),
            a.resource.resource_type,
            a.resource.name
        );
        match a.action {
            wit::ActionKind::Create => {
                if let Value::Object(cfg) = json_of(&a.resource.config_json) {
                    for (k, v) in cfg.iter().filter(|(k, _)| !HIDDEN.contains(&k.as_str())) {
                        let _ = writeln!(out, "          {k}: {}", short(v));
                    }
                }
            }
            _ => {
                for c in &a.changes {
                    let (old, new) = (short(&json_of(&c.old_json)), short(&json_of(&c.new_json)));
                    if c.force_new {
                        let _ = writeln!(
                            out,
                            "          {}: {old} -> {new}   # forces replacement: {}",
                            c.path, c.reason
                        );
                    } else {
                        let _ = writeln!(out, "          {}: {old} -> {new}", c.path);
                    }
                }
            }
        }
        for n in &a.notes {
            let _ = writeln!(out, "          note: {n}");
        }
    }
    let s = summary(plan);
    let _ = writeln!(
        out,
        "\nPlan: {} to create, {} to update, {} to replace, {} to delete.",
        s.create, s.update, s.replace, s.delete
    );
    out
}

pub async fn run(ctx: &Ctx, refresh: bool) -> Result<Exit> {
    let state = State::open(&ctx.state, None)?;
    let session = match open(ctx, Some(&state)).await? {
        Opened::Ready(s) => s,
        Opened::Invalid(d) => return Ok(report_diags(ctx, &d)),
    };
    let plan = match compute(&session, &state, refresh).await? {
        Ok(p) => p,
        Err(d) => return Ok(report_diags(ctx, &d)),
    };
    match ctx.output {
        Format::Json => crate::outln!("{}", serde_json::to_string_pretty(&to_json(&plan))?),
        Format::Text => {
            for s in &session.infra.skipped {
                eprintln!("note: {s}");
            }
            crate::out!("{}", render_text(&session.infra.display_name(), &plan));
        }
    }
    Ok(if plan.actions.is_empty() {
        Exit::Ok
    } else {
        Exit::Changes
    })
}
