//! `apply` and `destroy`: run a plan action by action. State is saved after every
//! successful action; a failed action is reported and the run goes on with whatever does
//! not depend on it (as wfctl does). Protected resources are never replaced or deleted
//! without --allow-replace.

use super::plan::{compute, render_text, summary, to_json, verb};
use super::{Ctx, Exit, Format, Opened, Session, open, report_diags};
use crate::runtime::{error_text, wit};
use crate::state::{State, record_from};
use anyhow::Result;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub action: &'static str,
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ok: bool,
    pub error: Option<String>,
    pub millis: u128,
}

fn is_protected(a: &wit::PlanAction) -> bool {
    let flag = |text: &str| {
        serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("protected").cloned())
            .is_some_and(|p| p == json!(true) || p == json!("true"))
    };
    flag(&a.resource.config_json)
        || a.current
            .as_ref()
            .is_some_and(|c| flag(&c.applied_config_json))
}

/// Replaces and deletes of protected resources that were not explicitly allowed.
pub fn blocked(plan: &wit::IacPlan, allow: &[String]) -> Vec<String> {
    plan.actions
        .iter()
        .filter(|a| matches!(a.action, wit::ActionKind::Replace | wit::ActionKind::Delete))
        .filter(|a| is_protected(a) && !allow.iter().any(|n| n == &a.resource.name || n == "*"))
        .map(|a| {
            format!(
                "{} {} ({})",
                verb(a.action),
                a.resource.name,
                a.resource.resource_type
            )
        })
        .collect()
}

fn ref_of(a: &wit::PlanAction) -> wit::ResourceRef {
    wit::ResourceRef {
        name: a.resource.name.clone(),
        resource_type: a
            .current
            .as_ref()
            .map_or(a.resource.resource_type.clone(), |c| {
                c.resource_type.clone()
            }),
        provider_id: a
            .current
            .as_ref()
            .map(|c| c.provider_id.clone())
            .unwrap_or_default(),
    }
}

async fn delete(
    session: &mut Session,
    state: &mut State,
    r: &wit::ResourceRef,
) -> Result<std::result::Result<(), String>> {
    match session.guest().await?.delete(r).await {
        Ok(Ok(())) => {
            state.remove(&r.name);
            state.save()?;
            if r.resource_type == "infra.eventbus" {
                session.rt.caps.nats.forget_broker(&r.name);
            }
            Ok(Ok(()))
        }
        Ok(Err(e)) => Ok(Err(error_text(&e))),
        Err(trap) => Ok(Err(format!("{trap:#}"))),
    }
}

async fn create_or_update(
    session: &mut Session,
    state: &mut State,
    a: &wit::PlanAction,
    update: bool,
) -> Result<std::result::Result<(), String>> {
    let provider_ref = session.infra.provider_module.clone();
    let guest = session.guest().await?;
    let res = if update {
        guest.update(&ref_of(a), &a.resource).await
    } else {
        guest.create(&a.resource).await
    };
    match res {
        Ok(Ok(out)) => {
            if a.resource.resource_type == "infra.eventbus" {
                session.rt.caps.nats.register_broker(
                    &a.resource.name,
                    &serde_json::from_str(&out.outputs_json).unwrap_or(Value::Null),
                );
            }
            let prev = state.get(&a.resource.name).cloned();
            state.upsert(record_from(&a.resource, &out, &provider_ref, prev.as_ref()));
            state.save()?;
            Ok(Ok(()))
        }
        Ok(Err(e)) => Ok(Err(error_text(&e))),
        Err(trap) => Ok(Err(format!("{trap:#}"))),
    }
}

/// Runs the actions in order. Returns one outcome per action.
pub async fn execute(
    ctx: &Ctx,
    session: &mut Session,
    state: &mut State,
    plan: &wit::IacPlan,
) -> Result<Vec<Outcome>> {
    let total = plan.actions.len();
    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut outcomes = Vec::new();
    for (i, a) in plan.actions.iter().enumerate() {
        let started = Instant::now();
        let name = a.resource.name.clone();
        let progress = format!(
            "[{}/{total}] {} {} {}",
            i + 1,
            verb(a.action),
            a.resource.resource_type,
            name
        );
        match ctx.output {
            Format::Text => println!("{progress} ..."),
            Format::Json => eprintln!("{progress} ..."),
        }
        let result = if let Some(dep) = a.resource.depends_on.iter().find(|d| failed.contains(*d)) {
            Err(format!("skipped: it depends on {dep}, which failed"))
        } else {
            match a.action {
                wit::ActionKind::Create => create_or_update(session, state, a, false).await?,
                wit::ActionKind::Update => create_or_update(session, state, a, true).await?,
                wit::ActionKind::Delete => delete(session, state, &ref_of(a)).await?,
                wit::ActionKind::Replace => match delete(session, state, &ref_of(a)).await? {
                    Ok(()) => create_or_update(session, state, a, false)
                        .await?
                        .map_err(|e| format!("replace: create: {e}")),
                    Err(e) => Err(format!("replace: delete: {e}")),
                },
            }
        };
        let millis = started.elapsed().as_millis();
        let line = match &result {
            Ok(()) => format!(
                "[{}/{total}] {} {} done ({millis} ms)",
                i + 1,
                verb(a.action),
                name
            ),
            Err(e) => format!(
                "[{}/{total}] {} {} FAILED: {e}",
                i + 1,
                verb(a.action),
                name
            ),
        };
        match ctx.output {
            Format::Text => println!("{line}"),
            Format::Json => eprintln!("{line}"),
        }
        if result.is_err() {
            failed.insert(name.clone());
        }
        outcomes.push(Outcome {
            action: verb(a.action),
            name,
            rtype: a.resource.resource_type.clone(),
            ok: result.is_ok(),
            error: result.err(),
            millis,
        });
    }
    Ok(outcomes)
}

pub fn report(ctx: &Ctx, plan: &wit::IacPlan, outcomes: &[Outcome], state: &State) -> Exit {
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    match ctx.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&json!({"results": outcomes, "summary": summary(plan), "failed": failed, "state": state.path()})).unwrap_or_default()),
        Format::Text => {
            if failed == 0 {
                println!("\nApply complete: {} action{} done. State: {}", outcomes.len(), if outcomes.len() == 1 { "" } else { "s" }, state.path().display());
            } else {
                println!("\n{failed} of {} actions failed; the others were applied and recorded in {}:", outcomes.len(), state.path().display());
                for o in outcomes.iter().filter(|o| !o.ok) {
                    println!("  {} {}: {}", o.action, o.name, o.error.as_deref().unwrap_or(""));
                }
                println!("Fix the cause and run apply again: it continues from what succeeded.");
            }
        }
    }
    if failed == 0 { Exit::Ok } else { Exit::Failed }
}

/// `apply`, or `destroy` when `destroy` is true (a plan with nothing desired).
pub async fn run(ctx: &Ctx, allow: &[String], destroy: bool, refresh: bool) -> Result<Exit> {
    let command = if destroy { "destroy" } else { "apply" };
    let mut state = State::open(&ctx.state, Some((ctx.lock_timeout, command)))?;
    let mut session = match open(ctx, Some(&state)).await? {
        Opened::Ready(s) => s,
        Opened::Invalid(d) => return Ok(report_diags(ctx, &d)),
    };
    if destroy {
        session.infra.specs.clear();
    }
    let plan = match compute(&mut session, &state, refresh).await? {
        Ok(p) => p,
        Err(d) => return Ok(report_diags(ctx, &d)),
    };
    let refused = blocked(&plan, allow);
    if !refused.is_empty() {
        let msg = format!(
            "refusing to change protected resources: {}. Nothing was changed. Re-run with --allow-replace NAME for each one you mean.",
            refused.join(", ")
        );
        match ctx.output {
            Format::Json => println!("{}", json!({"error": msg, "plan": to_json(&plan)})),
            Format::Text => {
                print!("{}", render_text(&session.infra.display_name(), &plan));
                eprintln!("error: {msg}");
            }
        }
        return Ok(Exit::Failed);
    }
    if ctx.output == Format::Text {
        print!("{}", render_text(&session.infra.display_name(), &plan));
        if !plan.actions.is_empty() {
            println!();
        }
    }
    let outcomes = execute(ctx, &mut session, &mut state, &plan).await?;
    Ok(report(ctx, &plan, &outcomes, &state))
}
