//! Changing a topic's replication factor in place: every partition is reassigned to a replica
//! list of the new length (current replicas kept, leader first; new ones spread over the
//! brokers), then the reassignment is followed until the cluster reports it finished.

use super::Admin;
use super::errors::{self, NO_REASSIGNMENT_IN_PROGRESS, NONE};
use super::topic::{self, Live};
use crate::bindings::eventbus::iac::kafka::Route;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// Polls of the reassignment's progress before giving up (with backoff, about two minutes).
const POLLS: u32 = 120;

/// The new replica list of every partition: the first `rf` current replicas, plus brokers
/// that do not hold it yet, taken round the sorted broker list from a partition's own offset.
pub fn target(l: &Live, rf: usize) -> BTreeMap<i32, Vec<i32>> {
    let mut brokers = l.brokers.clone();
    brokers.sort();
    l.partitions
        .iter()
        .map(|(p, current)| {
            let mut r: Vec<i32> = current.iter().copied().take(rf).collect();
            let start = (*p as usize) % brokers.len().max(1);
            for i in 0..brokers.len() {
                if r.len() >= rf {
                    break;
                }
                let b = brokers[(start + i) % brokers.len()];
                if !r.contains(&b) {
                    r.push(b);
                }
            }
            (*p, r)
        })
        .collect()
}

pub fn replication_factor(
    admin: &Admin,
    resource: &str,
    name: &str,
    l: &Live,
    rf: i16,
) -> Result<()> {
    let rf = rf as usize;
    if rf > l.brokers.len() {
        return Err(Error::invalid(
            resource,
            "config.replication_factor",
            format!(
                "{rf} replicas, and the cluster has {} brokers",
                l.brokers.len()
            ),
            format!("use at most {} or add brokers", l.brokers.len()),
        ));
    }
    let plan = target(l, rf);
    let what = format!("reassigning topic {name} to {rf} replicas");
    let r = admin.call(
        &topic::reassign_request(name, &plan),
        Route::Controller,
        &what,
    )?;
    if r.error_code != NONE {
        return Err(errors::to_error(
            resource,
            "config.replication_factor",
            &what,
            r.error_code,
            r.error_message.as_deref(),
        ));
    }
    if let Some(p) = r
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.error_code != NONE)
    {
        return Err(errors::to_error(
            resource,
            "config.replication_factor",
            &what,
            p.error_code,
            p.error_message.as_deref(),
        ));
    }
    wait(admin, resource, name, plan.keys().copied().collect(), &what)
}

/// Follows the reassignment until no partition of the topic is still moving.
fn wait(admin: &Admin, resource: &str, name: &str, partitions: Vec<i32>, what: &str) -> Result<()> {
    for attempt in 0..POLLS {
        let r = admin.call(
            &topic::ongoing_request(name, partitions.clone()),
            Route::Controller,
            what,
        )?;
        match r.error_code {
            NONE | NO_REASSIGNMENT_IN_PROGRESS => {}
            c => {
                return Err(errors::to_error(
                    resource,
                    "config.replication_factor",
                    what,
                    c,
                    r.error_message.as_deref(),
                ));
            }
        }
        let moving: usize = r.topics.iter().map(|t| t.partitions.len()).sum();
        if moving == 0 {
            return Ok(());
        }
        crate::log::debug(&format!("{what}: {moving} partitions still moving"));
        std::thread::sleep(std::time::Duration::from_millis(
            100 * u64::from(attempt.min(9) + 1),
        ));
    }
    Err(Error::Transient(format!(
        "{what}: still in progress; apply again to follow it"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(parts: &[&[i32]], brokers: &[i32]) -> Live {
        Live {
            partitions: parts
                .iter()
                .enumerate()
                .map(|(i, r)| (i as i32, r.to_vec()))
                .collect(),
            configs: Default::default(),
            overrides: vec![],
            brokers: brokers.to_vec(),
        }
    }

    #[test]
    fn raising_keeps_the_leader_and_spreads_new_replicas() {
        let t = target(&live(&[&[1], &[2], &[3]], &[1, 2, 3]), 3);
        for (p, r) in &t {
            assert_eq!(r.len(), 3, "{p}: {r:?}");
            let mut s = r.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3, "no broker twice: {r:?}");
        }
        assert_eq!(t[&0][0], 1);
        assert_eq!(t[&1][0], 2);
    }

    #[test]
    fn lowering_keeps_the_first_replicas() {
        let t = target(&live(&[&[2, 3, 1]], &[1, 2, 3]), 1);
        assert_eq!(t[&0], vec![2]);
    }
}
