//! What nats-server lets an update change, per server version, as data.
//! Authority: nats-server `configUpdateCheckLocked` (streams) and `checkNewConsumerConfig`
//! (consumers), read tag by tag; see ARCHITECTURE.md for the references.

use serde_json::Value;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// The newest behaviour we know; used when the server's version is unknown.
    pub const NEWEST: Version = Version(2, 15, 0);

    pub fn parse(text: &str) -> Option<Version> {
        let t = text.trim().trim_start_matches('v');
        let core = t.split(['-', '+']).next()?;
        let mut it = core.split('.').map(|p| p.parse::<u32>().ok());
        Some(Version(
            it.next()??,
            it.next().flatten().unwrap_or(0),
            it.next().flatten().unwrap_or(0),
        ))
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        self >= Version(major, minor, 0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// How one field may change in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Mutable,
    /// Any change is refused; the server's words follow.
    Immutable(&'static str),
    /// false -> true is allowed, true -> false is refused.
    OneWay(&'static str),
    /// limits <-> interest is allowed; anything to or from workqueue is refused.
    WorkqueueFixed(&'static str),
    /// A push consumer (deliver_subject set) cannot become pull, nor the reverse.
    PushPullFixed(&'static str),
    /// Only removal is allowed (a mirror can be promoted to a normal stream, 2.12+).
    RemoveOnly(&'static str),
}

/// A field's rule from a version on; the last row whose version is <= the server's wins.
pub struct RuleRow {
    pub wire: &'static str,
    pub since: &'static [(Version, Rule)],
}

const V2_0: Version = Version(2, 0, 0);

use Rule::*;

pub const STREAM: &[RuleRow] = &[
    RuleRow {
        wire: "name",
        since: &[(
            V2_0,
            Immutable("stream configuration name must match original"),
        )],
    },
    RuleRow {
        wire: "storage",
        since: &[(V2_0, Immutable("can not change storage type"))],
    },
    RuleRow {
        wire: "retention",
        since: &[
            (V2_0, Immutable("can not change retention policy")),
            (
                Version(2, 10, 0),
                WorkqueueFixed("can not change retention policy to/from workqueue"),
            ),
        ],
    },
    RuleRow {
        wire: "max_consumers",
        since: &[
            (V2_0, Immutable("can not change MaxConsumers")),
            (Version(2, 14, 0), Mutable),
        ],
    },
    RuleRow {
        wire: "sealed",
        since: &[(V2_0, OneWay("can not unseal a sealed stream"))],
    },
    RuleRow {
        wire: "deny_delete",
        since: &[(V2_0, OneWay("can not cancel deny message deletes"))],
    },
    RuleRow {
        wire: "deny_purge",
        since: &[(V2_0, OneWay("can not cancel deny purge"))],
    },
    RuleRow {
        wire: "allow_msg_ttl",
        since: &[
            (
                Version(2, 11, 0),
                Immutable("message TTL status can not be changed after stream creation"),
            ),
            (
                Version(2, 12, 0),
                OneWay("message TTL status can not be disabled"),
            ),
        ],
    },
    RuleRow {
        wire: "allow_msg_schedules",
        since: &[(
            Version(2, 12, 0),
            OneWay("message schedules can not be disabled"),
        )],
    },
    RuleRow {
        wire: "allow_msg_counter",
        since: &[(
            Version(2, 12, 0),
            Immutable("can not change message counter setting"),
        )],
    },
    RuleRow {
        wire: "persist_mode",
        since: &[(Version(2, 12, 0), Immutable("can not change persist mode"))],
    },
    RuleRow {
        wire: "mirror",
        since: &[
            (
                V2_0,
                Immutable("stream mirror configuration can not be updated"),
            ),
            (
                Version(2, 12, 0),
                RemoveOnly("stream mirror configuration can not be updated (only removed)"),
            ),
        ],
    },
    RuleRow {
        wire: "republish",
        since: &[
            (V2_0, Immutable("can not change RePublish")),
            (Version(2, 10, 0), Mutable),
        ],
    },
];

pub const CONSUMER: &[RuleRow] = &[
    RuleRow {
        wire: "durable_name",
        since: &[(V2_0, Immutable("consumer name can not be changed"))],
    },
    RuleRow {
        wire: "deliver_policy",
        since: &[(V2_0, Immutable("deliver policy can not be updated"))],
    },
    RuleRow {
        wire: "opt_start_seq",
        since: &[(V2_0, Immutable("start sequence can not be updated"))],
    },
    RuleRow {
        wire: "opt_start_time",
        since: &[(V2_0, Immutable("start time can not be updated"))],
    },
    RuleRow {
        wire: "ack_policy",
        since: &[(V2_0, Immutable("ack policy can not be updated"))],
    },
    RuleRow {
        wire: "replay_policy",
        since: &[(V2_0, Immutable("replay policy can not be updated"))],
    },
    RuleRow {
        wire: "idle_heartbeat",
        since: &[(V2_0, Immutable("heart beats can not be updated"))],
    },
    RuleRow {
        wire: "flow_control",
        since: &[(V2_0, Immutable("flow control can not be updated"))],
    },
    RuleRow {
        wire: "max_waiting",
        since: &[
            (V2_0, Mutable),
            (
                Version(2, 9, 0),
                Immutable("max waiting can not be updated"),
            ),
        ],
    },
    RuleRow {
        wire: "filter_subject",
        since: &[
            (V2_0, Immutable("filter subject can not be updated")),
            (Version(2, 9, 0), Mutable),
        ],
    },
    RuleRow {
        wire: "deliver_subject",
        since: &[(
            V2_0,
            PushPullFixed("can not update push consumer to pull based"),
        )],
    },
    RuleRow {
        wire: "mem_storage",
        since: &[
            (V2_0, Mutable),
            (
                Version(2, 14, 5),
                Immutable("storage type can not be updated"),
            ),
        ],
    },
];

pub fn rule(table: &[RuleRow], wire: &str, v: Version) -> Rule {
    table
        .iter()
        .find(|r| r.wire == wire)
        .and_then(|r| r.since.iter().rev().find(|(since, _)| *since <= v))
        .map_or(Mutable, |(_, rule)| *rule)
}

fn truthy(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Bool(true)))
}

fn nonempty_str(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

/// The server's refusal if changing `old` to `new` in place is not allowed, else None.
pub fn refusal(rule: Rule, old: Option<&Value>, new: Option<&Value>) -> Option<&'static str> {
    if old == new {
        return None;
    }
    match rule {
        Mutable => None,
        Immutable(why) => Some(why),
        OneWay(why) => (truthy(old) && !truthy(new)).then_some(why),
        WorkqueueFixed(why) => {
            let wq = |v: Option<&Value>| v.and_then(Value::as_str) == Some("workqueue");
            (wq(old) || wq(new)).then_some(why)
        }
        PushPullFixed(why) => (nonempty_str(old) != nonempty_str(new)).then_some(why),
        RemoveOnly(why) => new.is_some().then_some(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retention_is_fixed_on_2_9_and_only_workqueue_is_fixed_from_2_10() {
        // limits -> interest replaces on 2.9 but updates in place on 2.10 and later.
        let (l, i, w) = (json!("limits"), json!("interest"), json!("workqueue"));
        let r29 = rule(STREAM, "retention", Version(2, 9, 25));
        let r210 = rule(STREAM, "retention", Version(2, 10, 0));
        assert!(refusal(r29, Some(&l), Some(&i)).is_some());
        assert!(refusal(r210, Some(&l), Some(&i)).is_none());
        assert!(refusal(r210, Some(&l), Some(&w)).is_some());
    }

    #[test]
    fn one_way_flags_refuse_only_the_forbidden_direction() {
        // Sealing is allowed; unsealing is not.
        let r = rule(STREAM, "sealed", Version::NEWEST);
        assert!(refusal(r, Some(&json!(false)), Some(&json!(true))).is_none());
        assert!(refusal(r, Some(&json!(true)), Some(&json!(false))).is_some());
        // An absent flag is false.
        assert!(refusal(r, Some(&json!(true)), None).is_some());
    }

    #[test]
    fn max_consumers_becomes_mutable_in_2_14() {
        // Older servers refuse the change; 2.14 accepts it.
        let (a, b) = (json!(-1), json!(10));
        assert!(
            refusal(
                rule(STREAM, "max_consumers", Version(2, 12, 3)),
                Some(&a),
                Some(&b)
            )
            .is_some()
        );
        assert!(
            refusal(
                rule(STREAM, "max_consumers", Version(2, 14, 0)),
                Some(&a),
                Some(&b)
            )
            .is_none()
        );
    }

    #[test]
    fn push_pull_switch_is_refused_but_a_new_push_subject_is_not() {
        // Changing one push subject for another is an update; removing it makes a pull consumer.
        let r = rule(CONSUMER, "deliver_subject", Version::NEWEST);
        assert!(refusal(r, Some(&json!("a")), Some(&json!("b"))).is_none());
        assert!(refusal(r, Some(&json!("a")), None).is_some());
    }

    #[test]
    fn a_mirror_can_only_be_removed_and_only_from_2_12() {
        // Promotion (removing the mirror) is allowed on 2.12; any edit is not.
        let (a, b) = (json!({"name": "A"}), json!({"name": "B"}));
        let r = rule(STREAM, "mirror", Version(2, 12, 0));
        assert!(refusal(r, Some(&a), None).is_none());
        assert!(refusal(r, Some(&a), Some(&b)).is_some());
        assert!(refusal(rule(STREAM, "mirror", Version(2, 11, 0)), Some(&a), None).is_some());
    }

    #[test]
    fn versions_parse_from_server_announcements() {
        // The INFO line's version, with or without a leading v or a suffix.
        assert_eq!(Version::parse("2.10.7"), Some(Version(2, 10, 7)));
        assert_eq!(Version::parse("v2.15.0-dev"), Some(Version(2, 15, 0)));
        assert_eq!(Version::parse("2.9"), Some(Version(2, 9, 0)));
        assert_eq!(Version::parse("x"), None);
    }
}
