//! `unlock`: who holds the state lock, and with `--force` stop that holder so the lock is
//! free. The lock is the kernel's, so a holder that died already released it: a held lock
//! always belongs to a live process (a hung apply, one stopped with SIGSTOP, one still
//! waiting on a broker). Stopping it loses nothing: every action it finished is in the
//! journal, and the next apply continues from there.

use super::{Ctx, Exit, Format};
use crate::state::{self, LockStatus};
use anyhow::Result;
use serde_json::json;
use std::time::Duration;

pub fn run(ctx: &Ctx, force: bool, grace: Duration) -> Result<Exit> {
    let path = ctx.state.as_path();
    let status = state::lock_status(path)?;
    let (holder, pid) = match &status {
        LockStatus::Free { last } => {
            match ctx.output {
                Format::Json => crate::outln!(
                    "{}",
                    json!({"locked": false, "state": path, "last_holder": last})
                ),
                Format::Text => match last {
                    Some(l) => crate::outln!(
                        "The state {} is not locked (last held by {l}, which has ended; the kernel released its lock).",
                        path.display()
                    ),
                    None => crate::outln!("The state {} is not locked.", path.display()),
                },
            }
            return Ok(Exit::Ok);
        }
        LockStatus::Held { holder, pid } => (holder.clone(), *pid),
    };
    if !force {
        match ctx.output {
            Format::Json => crate::outln!(
                "{}",
                json!({"locked": true, "state": path, "holder": holder, "pid": pid, "broken": false})
            ),
            Format::Text => {
                crate::outln!("The state {} is locked by {holder}.", path.display());
                if pid.is_some() {
                    crate::outln!(
                        "It is a live process on this machine: wait for it, or stop it with `eventbus unlock --force` \
                         (SIGTERM, then SIGKILL after {}s). Every action it finished is kept; the next apply continues from there.",
                        grace.as_secs()
                    );
                } else {
                    crate::outln!(
                        "The holder is not a process on this machine with the lock file open: stop it where it runs."
                    );
                }
            }
        }
        return Ok(Exit::Failed);
    }
    let stopped = state::break_lock(path, grace)?;
    match ctx.output {
        Format::Json => crate::outln!(
            "{}",
            json!({"locked": false, "state": path, "holder": holder, "pid": stopped, "broken": stopped.is_some()})
        ),
        Format::Text => match stopped {
            Some(p) => crate::outln!(
                "Stopped pid {p} ({holder}); the state {} is unlocked. Run apply again: it continues from what was recorded.",
                path.display()
            ),
            None => crate::outln!("The state {} is not locked.", path.display()),
        },
    }
    Ok(Exit::Ok)
}
