//! `apply` and `destroy`: run a plan. Independent actions run in parallel on the instance
//! pool; an action starts only when the actions it depends on have succeeded (deletes after
//! every create and update, dependents' deletes first). Each success is committed to the
//! state journal before anything that depends on it starts. A failed action is reported, the
//! run goes on with whatever does not depend on it (as wfctl does), and protected resources
//! are never replaced or deleted without --allow-replace.

use super::plan::{compute, render_text, summary, to_json, verb};
use super::{Ctx, Exit, Format, Opened, Session, open, report_diags};
use crate::runtime::pool::Pool;
use crate::runtime::{error_text, wit};
use crate::state::{Entry, State, record_from};
use anyhow::Result;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::task::JoinSet;

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

/// For each action, the actions that must succeed before it starts: a create or update
/// waits for what it depends on; a delete waits for the deletes of its dependents. (Deletes
/// also wait for every create and update to settle: `execute` holds them behind that barrier.)
/// Linear in the plan's size: names are looked up, never searched.
pub fn prerequisites(plan: &wit::IacPlan) -> Vec<Vec<usize>> {
    let acts = &plan.actions;
    let is_delete = |a: &wit::PlanAction| a.action == wit::ActionKind::Delete;
    let mut others: HashMap<&str, usize> = HashMap::new();
    let mut deletes: HashMap<&str, usize> = HashMap::new();
    for (i, a) in acts.iter().enumerate() {
        if is_delete(a) {
            deletes.insert(&a.resource.name, i)
        } else {
            others.insert(&a.resource.name, i)
        };
    }
    let mut pre: Vec<Vec<usize>> = vec![Vec::new(); acts.len()];
    for (i, a) in acts.iter().enumerate() {
        for d in &a.resource.depends_on {
            if is_delete(a) {
                // `a` is deleted and depends on `d`: d's delete waits for a's.
                if let Some(&j) = deletes.get(d.as_str()) {
                    pre[j].push(i);
                }
            } else if let Some(&j) = others.get(d.as_str()) {
                pre[i].push(j);
            }
        }
    }
    pre
}

struct Shared {
    pool: Arc<Pool>,
    state: Mutex<State>,
    provider_ref: String,
    journal: GroupCommit,
}

impl Shared {
    /// Appends one action's result (built from the state as it is, under its lock) to the
    /// journal and waits until it is durable.
    async fn record(&self, entry: impl FnOnce(&State) -> Entry) -> Result<()> {
        let (journal, line) = {
            let mut state = self.state.lock().expect("state");
            let e = entry(&state);
            let journal = state.append(e)?;
            // Numbered under the state lock, so every line up to a number read later has
            // been written to the journal.
            (
                journal,
                self.journal.appended.fetch_add(1, Ordering::SeqCst) + 1,
            )
        };
        self.journal.durable(line, journal).await
    }
}

/// Group commit for the state journal: one fdatasync at a time, each covering every line
/// written before it started, so actions finishing close together share one sync. An action
/// returns (counts as done, so its dependents may start) only once a sync that began after
/// its own line was written has finished.
#[derive(Default)]
struct GroupCommit {
    /// Lines appended so far (numbered from 1).
    appended: AtomicU64,
    sync: Mutex<Synced>,
    finished: tokio::sync::Notify,
}

#[derive(Default)]
struct Synced {
    /// Every line up to this one is on disk.
    durable: u64,
    running: bool,
    syncs: u64,
}

impl GroupCommit {
    async fn durable(&self, line: u64, journal: std::fs::File) -> Result<()> {
        loop {
            let finished = self.finished.notified();
            tokio::pin!(finished);
            let lead = {
                let mut s = self.sync.lock().expect("journal sync");
                if s.durable >= line {
                    return Ok(());
                }
                if s.running {
                    // Registered before the lock is released, so the end of the running sync
                    // still wakes this waiter.
                    finished.as_mut().enable();
                    false
                } else {
                    s.running = true;
                    true
                }
            };
            if !lead {
                // The running sync may have started before this line was written: wait for
                // it, then look again (and lead the next one if still needed).
                finished.await;
                continue;
            }
            // Every line written so far, this one among them, rides on this sync.
            let upto = self.appended.load(Ordering::SeqCst);
            let r = tokio::task::spawn_blocking(move || journal.sync_data())
                .await
                .map_err(|e| anyhow::anyhow!("syncing the state journal: {e}"))
                .and_then(|r| r.map_err(|e| anyhow::anyhow!("syncing the state journal: {e}")));
            {
                let mut s = self.sync.lock().expect("journal sync");
                s.running = false;
                if r.is_ok() {
                    s.durable = s.durable.max(upto);
                    s.syncs += 1;
                }
            }
            self.finished.notify_waiters();
            return r;
        }
    }

    /// (lines appended, syncs that carried them).
    fn counts(&self) -> (u64, u64) {
        let syncs = self.sync.lock().expect("journal sync").syncs;
        (self.appended.load(Ordering::SeqCst), syncs)
    }
}

async fn delete(sh: &Shared, r: &wit::ResourceRef) -> Result<std::result::Result<(), String>> {
    let res = sh.pool.get().await?.delete(r).await;
    match res {
        Ok(Ok(())) => {
            sh.record(|_| Entry::Remove {
                name: r.name.clone(),
            })
            .await?;
            if r.resource_type == "infra.eventbus" {
                sh.pool.rt.caps.forget_broker(&r.name);
            }
            Ok(Ok(()))
        }
        Ok(Err(e)) => Ok(Err(error_text(&e))),
        Err(trap) => Ok(Err(format!("{trap:#}"))),
    }
}

async fn create_or_update(
    sh: &Shared,
    a: &wit::PlanAction,
    update: bool,
) -> Result<std::result::Result<(), String>> {
    let res = {
        let mut guest = sh.pool.get().await?;
        if update {
            guest.update(&ref_of(a), &a.resource).await
        } else {
            guest.create(&a.resource).await
        }
    };
    match res {
        Ok(Ok(out)) => {
            if a.resource.resource_type == "infra.eventbus" {
                let outputs = serde_json::from_str(&out.outputs_json).unwrap_or(Value::Null);
                // The endpoint a broker of this run produced is granted for this run.
                let caps = &sh.pool.rt.caps;
                caps.grant_broker_outputs(&outputs);
                caps.register_broker(&a.resource.name, &outputs);
            }
            sh.record(|state| {
                let prev = state.get(&a.resource.name);
                Entry::Upsert {
                    record: Box::new(record_from(&a.resource, &out, &sh.provider_ref, prev)),
                }
            })
            .await?;
            Ok(Ok(()))
        }
        Ok(Err(e)) => Ok(Err(error_text(&e))),
        Err(trap) => Ok(Err(format!("{trap:#}"))),
    }
}

async fn run_action(sh: &Shared, a: &wit::PlanAction) -> Result<std::result::Result<(), String>> {
    Ok(match a.action {
        wit::ActionKind::Create => create_or_update(sh, a, false).await?,
        wit::ActionKind::Update => create_or_update(sh, a, true).await?,
        wit::ActionKind::Delete => delete(sh, &ref_of(a)).await?,
        wit::ActionKind::Replace => match delete(sh, &ref_of(a)).await? {
            Ok(()) => create_or_update(sh, a, false)
                .await?
                .map_err(|e| format!("replace: create: {e}")),
            Err(e) => Err(format!("replace: delete: {e}")),
        },
    })
}

fn say(ctx: &Ctx, line: &str) {
    match ctx.output {
        Format::Text => crate::outln!("{line}"),
        Format::Json => eprintln!("{line}"),
    }
}

/// Which actions may start: counts of unsettled prerequisites, the first failed one, and the
/// barrier that holds deletes until every create and update has settled.
struct Schedule {
    is_delete: Vec<bool>,
    dependents: Vec<Vec<usize>>,
    waiting: Vec<usize>,
    failed_first: Vec<Option<usize>>,
    others_left: usize,
    other_failed: Option<usize>,
    ready: VecDeque<usize>,
}

impl Schedule {
    fn new(plan: &wit::IacPlan) -> Schedule {
        let total = plan.actions.len();
        let is_delete: Vec<bool> = plan
            .actions
            .iter()
            .map(|a| a.action == wit::ActionKind::Delete)
            .collect();
        let prereq = prerequisites(plan);
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); total];
        for (i, pre) in prereq.iter().enumerate() {
            for &j in pre {
                dependents[j].push(i);
            }
        }
        let waiting: Vec<usize> = prereq.iter().map(Vec::len).collect();
        let others_left = is_delete.iter().filter(|d| !**d).count();
        let ready = (0..total)
            .filter(|&i| waiting[i] == 0 && (!is_delete[i] || others_left == 0))
            .collect();
        Schedule {
            is_delete,
            dependents,
            waiting,
            failed_first: vec![None; total],
            others_left,
            other_failed: None,
            ready,
        }
    }

    /// The failed action that keeps `i` from running, if any.
    fn blocker(&self, i: usize) -> Option<usize> {
        self.failed_first[i].or(if self.is_delete[i] {
            self.other_failed
        } else {
            None
        })
    }

    /// Action `i` settled: release what waited for it.
    fn settle(&mut self, i: usize, ok: bool) {
        for &k in &self.dependents[i] {
            self.waiting[k] -= 1;
            if !ok && self.failed_first[k].is_none() {
                self.failed_first[k] = Some(i);
            }
            if self.waiting[k] == 0 && (!self.is_delete[k] || self.others_left == 0) {
                self.ready.push_back(k);
            }
        }
        if !self.is_delete[i] {
            self.others_left -= 1;
            if !ok && self.other_failed.is_none() {
                self.other_failed = Some(i);
            }
            if self.others_left == 0 {
                let deletes: Vec<usize> = (0..self.is_delete.len())
                    .filter(|&k| self.is_delete[k] && self.waiting[k] == 0)
                    .collect();
                self.ready.extend(deletes);
            }
        }
    }
}

/// Runs the actions, in parallel where they are independent. Outcomes are in completion order.
/// A finished action: its index in the plan, its outcome (a host error, or the guest's
/// error text), and how long it took in microseconds.
type Finished = (usize, Result<std::result::Result<(), String>>, u128);

pub async fn execute(
    ctx: &Ctx,
    session: &Session,
    state: State,
    plan: &wit::IacPlan,
) -> Result<(Vec<Outcome>, State)> {
    let total = plan.actions.len();
    let mut sched = Schedule::new(plan);
    let shared = Arc::new(Shared {
        pool: session.pool.clone(),
        state: Mutex::new(state),
        provider_ref: session.infra.provider_module.clone(),
        journal: GroupCommit::default(),
    });
    let mut outcomes = Vec::with_capacity(total);
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut done = 0usize;
    let verbose_progress = total <= 200
        || ctx.output == Format::Text && std::env::var_os("EVENTBUS_PROGRESS").is_some();
    let mut last_report = Instant::now();
    loop {
        while let Some(i) = sched.ready.pop_front() {
            let a = &plan.actions[i];
            if let Some(j) = sched.blocker(i) {
                let why = format!(
                    "skipped: {} {} failed first",
                    verb(plan.actions[j].action),
                    plan.actions[j].resource.name
                );
                done += 1;
                say(
                    ctx,
                    &format!(
                        "[{done}/{total}] {} {} SKIPPED ({why})",
                        verb(a.action),
                        a.resource.name
                    ),
                );
                outcomes.push(Outcome {
                    action: verb(a.action),
                    name: a.resource.name.clone(),
                    rtype: a.resource.resource_type.clone(),
                    ok: false,
                    error: Some(why),
                    millis: 0,
                });
                sched.settle(i, false);
                continue;
            }
            if verbose_progress {
                say(
                    ctx,
                    &format!(
                        "[start] {} {} {}",
                        verb(a.action),
                        a.resource.resource_type,
                        a.resource.name
                    ),
                );
            }
            let sh = shared.clone();
            let action = a.clone();
            running.spawn(async move {
                let t = Instant::now();
                let r = run_action(&sh, &action).await;
                (i, r, t.elapsed().as_millis())
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (i, r, millis) = joined?;
        let r = r?;
        let a = &plan.actions[i];
        done += 1;
        let line = match &r {
            Ok(()) => format!(
                "[{done}/{total}] {} {} done ({millis} ms)",
                verb(a.action),
                a.resource.name
            ),
            Err(e) => format!(
                "[{done}/{total}] {} {} FAILED: {e}",
                verb(a.action),
                a.resource.name
            ),
        };
        if verbose_progress || r.is_err() {
            say(ctx, &line);
        } else if last_report.elapsed().as_millis() >= 1000 || done == total {
            say(ctx, &format!("[{done}/{total}] actions finished"));
            last_report = Instant::now();
        }
        sched.settle(i, r.is_ok());
        outcomes.push(Outcome {
            action: verb(a.action),
            name: a.resource.name.clone(),
            rtype: a.resource.resource_type.clone(),
            ok: r.is_ok(),
            error: r.err(),
            millis,
        });
    }
    if done != total {
        anyhow::bail!(
            "internal: {} of {total} actions were never started (a dependency cycle in the plan?)",
            total - done
        );
    }
    let (lines, syncs) = shared.journal.counts();
    tracing::debug!(lines, syncs, "state journal: group commit");
    let shared =
        Arc::try_unwrap(shared).map_err(|_| anyhow::anyhow!("internal: actions still running"))?;
    let mut state = shared.state.into_inner().expect("state");
    state.compact()?;
    Ok((outcomes, state))
}

pub fn report(ctx: &Ctx, plan: &wit::IacPlan, outcomes: &[Outcome], state: &State) -> Exit {
    let failed = outcomes.iter().filter(|o| !o.ok).count();
    match ctx.output {
        Format::Json => crate::outln!(
            "{}",
            serde_json::to_string_pretty(&json!({"results": outcomes, "summary": summary(plan), "failed": failed, "state": state.path()})).unwrap_or_default()
        ),
        Format::Text => {
            if failed == 0 {
                crate::outln!("\nApply complete: {} action{} done. State: {}", outcomes.len(), if outcomes.len() == 1 { "" } else { "s" }, state.path().display());
            } else {
                crate::outln!("\n{failed} of {} actions failed; the others were applied and recorded in {}:", outcomes.len(), state.path().display());
                for o in outcomes.iter().filter(|o| !o.ok) {
                    crate::outln!("  {} {}: {}", o.action, o.name, o.error.as_deref().unwrap_or(""));
                }
                crate::outln!("Fix the cause and run apply again: it continues from what succeeded.");
            }
        }
    }
    if failed == 0 { Exit::Ok } else { Exit::Failed }
}

/// `apply`, or `destroy` when `destroy` is true (a plan with nothing desired).
pub async fn run(ctx: &Ctx, allow: &[String], destroy: bool, refresh: bool) -> Result<Exit> {
    let command = if destroy { "destroy" } else { "apply" };
    let state = State::open(&ctx.state, Some((ctx.lock_timeout, command)))?;
    let mut session = match open(ctx, Some(&state)).await? {
        Opened::Ready(s) => s,
        Opened::Invalid(d) => return Ok(report_diags(ctx, &d)),
    };
    if destroy {
        session.infra.specs.clear();
    }
    let plan = match compute(&session, &state, refresh).await? {
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
            Format::Json => crate::outln!("{}", json!({"error": msg, "plan": to_json(&plan)})),
            Format::Text => {
                crate::out!("{}", render_text(&session.infra.display_name(), &plan));
                eprintln!("error: {msg}");
            }
        }
        return Ok(Exit::Failed);
    }
    if ctx.output == Format::Text {
        crate::out!("{}", render_text(&session.infra.display_name(), &plan));
        if !plan.actions.is_empty() {
            crate::outln!();
        }
    }
    let (outcomes, state) = execute(ctx, &session, state, &plan).await?;
    Ok(report(ctx, &plan, &outcomes, &state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(kind: wit::ActionKind, name: &str, deps: &[&str]) -> wit::PlanAction {
        wit::PlanAction {
            action: kind,
            resource: wit::ResourceSpec {
                name: name.into(),
                resource_type: "infra.eventbus.stream".into(),
                config_json: "{}".into(),
                size: String::new(),
                hints: None,
                depends_on: deps.iter().map(|d| d.to_string()).collect(),
            },
            current: None,
            changes: vec![],
            resolved_config_hash: String::new(),
            notes: vec![],
        }
    }

    fn plan(actions: Vec<wit::PlanAction>) -> wit::IacPlan {
        wit::IacPlan {
            id: String::new(),
            actions,
            created_at: None,
            desired_hash: String::new(),
            schema_version: 1,
            input_snapshot: vec![],
        }
    }

    #[test]
    fn actions_start_when_their_prerequisites_settle_and_deletes_wait_for_the_rest() {
        // b, then s, then c; the deletes wait for all three, and x's delete for y's (y needs x).
        use wit::ActionKind::{Create, Delete};
        let p = plan(vec![
            action(Create, "b", &[]),
            action(Create, "s", &["b"]),
            action(Create, "c", &["s"]),
            action(Delete, "x", &[]),
            action(Delete, "y", &["x"]),
        ]);
        let mut s = Schedule::new(&p);
        assert_eq!(s.ready.drain(..).collect::<Vec<_>>(), vec![0]);
        s.settle(0, true);
        assert_eq!(s.ready.drain(..).collect::<Vec<_>>(), vec![1]);
        s.settle(1, true);
        assert_eq!(s.ready.drain(..).collect::<Vec<_>>(), vec![2]);
        s.settle(2, true);
        // Only y's delete is free: x's waits for it.
        assert_eq!(s.ready.drain(..).collect::<Vec<_>>(), vec![4]);
        s.settle(4, true);
        assert_eq!(s.ready.drain(..).collect::<Vec<_>>(), vec![3]);
    }

    #[test]
    fn a_failure_skips_what_depends_on_it_and_holds_the_deletes() {
        // s fails: c is skipped (s named as the blocker), and deletes do not run after it.
        use wit::ActionKind::{Create, Delete};
        let p = plan(vec![
            action(Create, "s", &[]),
            action(Create, "c", &["s"]),
            action(Delete, "x", &[]),
        ]);
        let mut s = Schedule::new(&p);
        s.ready.clear();
        s.settle(0, false);
        assert_eq!(s.blocker(1), Some(0));
        s.ready.clear();
        s.settle(1, false);
        assert_eq!(s.ready.iter().copied().collect::<Vec<_>>(), vec![2]);
        assert_eq!(s.blocker(2), Some(0));
    }
}
