//! The server-truth matrix (`just fidelity`): for every field and transition in the tables,
//! create the resource through the CLI on a live server, ask the CLI for a plan of the changed
//! config, then try the same change in place directly on the server. The plan must say
//! `update` exactly when the server accepts it and `replace` exactly when it refuses. After
//! that the CLI applies the change and a second plan must be empty.
//!
//! Runs against every distinct nats-server it finds: `$FIDELITY_SERVERS` (colon-separated
//! paths), else the project's `.venv/bin/nats-server` (newest, PyPI) and Debian's
//! `/usr/sbin/nats-server` (2.9). Last line:
//! `fidelity: <N> field changes checked on <versions>, <M> mismatches`.

use eventbus_tests::{JetStream, NatsServer, Project, workspace_root};
use serde_json::{Map, Value, json};
use std::path::PathBuf;

#[derive(Clone, Copy, PartialEq)]
enum Res {
    Stream,
    Consumer,
}

struct Case {
    res: Res,
    /// What is being changed, for the report.
    label: &'static str,
    /// The user's config keys before and after (merged over the resource's base config).
    base: Value,
    change: Value,
    /// The same change in the server's wire form (null removes a key), tried in place.
    wire: Value,
    /// The first server version (major, minor) that knows every field involved.
    since: (u32, u32),
}

fn case(res: Res, label: &'static str, base: Value, change: Value, wire: Value) -> Case {
    Case {
        res,
        label,
        base,
        change,
        wire,
        since: (2, 9),
    }
}

impl Case {
    fn since(mut self, major: u32, minor: u32) -> Case {
        self.since = (major, minor);
        self
    }
}

const S: Res = Res::Stream;
const C: Res = Res::Consumer;
const SEC: i64 = 1_000_000_000;

fn cases() -> Vec<Case> {
    let e = json!({});
    vec![
        // Streams: identity and storage.
        case(
            S,
            "storage file->memory",
            e.clone(),
            json!({"storage": "memory"}),
            json!({"storage": "memory"}),
        ),
        case(
            S,
            "retention limits->interest",
            e.clone(),
            json!({"retention_policy": "interest"}),
            json!({"retention": "interest"}),
        ),
        case(
            S,
            "retention interest->limits",
            json!({"retention_policy": "interest"}),
            json!({"retention_policy": "limits"}),
            json!({"retention": "limits"}),
        ),
        case(
            S,
            "retention limits->workqueue",
            e.clone(),
            json!({"retention_policy": "workqueue"}),
            json!({"retention": "workqueue"}),
        ),
        case(
            S,
            "retention workqueue->limits",
            json!({"retention_policy": "workqueue"}),
            json!({"retention_policy": "limits"}),
            json!({"retention": "limits"}),
        ),
        case(
            S,
            "retention interest->workqueue",
            json!({"retention_policy": "interest"}),
            json!({"retention_policy": "workqueue"}),
            json!({"retention": "workqueue"}),
        ),
        // Streams: limits.
        case(
            S,
            "max_consumers -1->10",
            e.clone(),
            json!({"max_consumers": 10}),
            json!({"max_consumers": 10}),
        ),
        case(
            S,
            "max_msgs -1->100",
            e.clone(),
            json!({"max_msgs": 100}),
            json!({"max_msgs": 100}),
        ),
        case(
            S,
            "max_msgs 100->-1",
            json!({"max_msgs": 100}),
            json!({"max_msgs": -1}),
            json!({"max_msgs": -1}),
        ),
        case(
            S,
            "max_bytes -1->1MiB",
            e.clone(),
            json!({"max_bytes": 1048576}),
            json!({"max_bytes": 1048576}),
        ),
        case(
            S,
            "max_age 0->1h",
            e.clone(),
            json!({"max_age": "1h"}),
            json!({"max_age": 3600 * SEC}),
        ),
        case(
            S,
            "max_age 1h->2h",
            json!({"max_age": "1h"}),
            json!({"max_age": "2h"}),
            json!({"max_age": 7200 * SEC}),
        ),
        case(
            S,
            "max_msgs_per_subject -1->5",
            e.clone(),
            json!({"max_msgs_per_subject": 5}),
            json!({"max_msgs_per_subject": 5}),
        ),
        case(
            S,
            "max_msg_size -1->1024",
            e.clone(),
            json!({"max_msg_size": 1024}),
            json!({"max_msg_size": 1024}),
        ),
        case(
            S,
            "discard old->new",
            e.clone(),
            json!({"discard": "new"}),
            json!({"discard": "new"}),
        ),
        case(
            S,
            "discard new->old",
            json!({"discard": "new"}),
            json!({"discard": "old"}),
            json!({"discard": "old"}),
        ),
        case(
            S,
            "duplicate_window 2m->30s",
            e.clone(),
            json!({"duplicate_window": "30s"}),
            json!({"duplicate_window": 30 * SEC}),
        ),
        case(
            S,
            "description set",
            e.clone(),
            json!({"description": "orders"}),
            json!({"description": "orders"}),
        ),
        case(
            S,
            "subjects add one",
            e.clone(),
            json!({"subjects": ["$S.>", "$S-extra.>"]}),
            json!({"subjects": ["$S.>", "$S-extra.>"]}),
        ),
        case(
            S,
            "subjects replace",
            e.clone(),
            json!({"subjects": ["$S-other.>"]}),
            json!({"subjects": ["$S-other.>"]}),
        ),
        case(
            S,
            "no_ack false->true",
            e.clone(),
            json!({"no_ack": true}),
            json!({"no_ack": true}),
        ),
        // Streams: flags, including one-way ones.
        case(
            S,
            "allow_rollup_hdrs false->true",
            e.clone(),
            json!({"allow_rollup_hdrs": true}),
            json!({"allow_rollup_hdrs": true}),
        ),
        case(
            S,
            "allow_rollup_hdrs true->false",
            json!({"allow_rollup_hdrs": true}),
            json!({"allow_rollup_hdrs": false}),
            json!({"allow_rollup_hdrs": false}),
        ),
        case(
            S,
            "deny_delete false->true",
            e.clone(),
            json!({"deny_delete": true}),
            json!({"deny_delete": true}),
        ),
        case(
            S,
            "deny_delete true->false",
            json!({"deny_delete": true}),
            json!({"deny_delete": false}),
            json!({"deny_delete": false}),
        ),
        case(
            S,
            "deny_purge false->true",
            e.clone(),
            json!({"deny_purge": true}),
            json!({"deny_purge": true}),
        ),
        case(
            S,
            "deny_purge true->false",
            json!({"deny_purge": true}),
            json!({"deny_purge": false}),
            json!({"deny_purge": false}),
        ),
        case(
            S,
            "sealed false->true",
            e.clone(),
            json!({"sealed": true}),
            json!({"sealed": true}),
        ),
        case(
            S,
            "allow_direct false->true",
            e.clone(),
            json!({"allow_direct": true}),
            json!({"allow_direct": true}),
        ),
        case(
            S,
            "allow_direct true->false",
            json!({"allow_direct": true}),
            json!({"allow_direct": false}),
            json!({"allow_direct": false}),
        ),
        case(
            S,
            "republish none->set",
            e.clone(),
            json!({"republish": {"src": "$S.>", "dest": "rp.$S.>"}}),
            json!({"republish": {"src": "$S.>", "dest": "rp.$S.>"}}),
        ),
        case(
            S,
            "compression none->s2",
            e.clone(),
            json!({"compression": "s2"}),
            json!({"compression": "s2"}),
        )
        .since(2, 10),
        case(
            S,
            "metadata set",
            e.clone(),
            json!({"metadata": {"team": "fulfilment"}}),
            json!({"metadata": {"team": "fulfilment"}}),
        )
        .since(2, 10),
        case(
            S,
            "subject_transform none->set",
            e.clone(),
            json!({"subject_transform": {"src": "$S.>", "dest": "$S.t.>"}}),
            json!({"subject_transform": {"src": "$S.>", "dest": "$S.t.>"}}),
        )
        .since(2, 10),
        case(
            S,
            "consumer_limits none->set",
            e.clone(),
            json!({"consumer_limits": {"max_ack_pending": 100}}),
            json!({"consumer_limits": {"max_ack_pending": 100}}),
        )
        .since(2, 10),
        case(
            S,
            "allow_msg_ttl false->true",
            e.clone(),
            json!({"allow_msg_ttl": true}),
            json!({"allow_msg_ttl": true}),
        )
        .since(2, 11),
        case(
            S,
            "allow_msg_ttl true->false",
            json!({"allow_msg_ttl": true}),
            json!({"allow_msg_ttl": false}),
            json!({"allow_msg_ttl": false}),
        )
        .since(2, 11),
        case(
            S,
            "allow_atomic false->true",
            e.clone(),
            json!({"allow_atomic": true}),
            json!({"allow_atomic": true}),
        )
        .since(2, 12),
        case(
            S,
            "allow_msg_schedules false->true",
            json!({"allow_rollup_hdrs": true}),
            json!({"allow_msg_schedules": true}),
            json!({"allow_msg_schedules": true}),
        )
        .since(2, 12),
        case(
            S,
            "allow_msg_schedules true->false",
            json!({"allow_rollup_hdrs": true, "allow_msg_schedules": true}),
            json!({"allow_msg_schedules": false}),
            json!({"allow_msg_schedules": false}),
        )
        .since(2, 12),
        case(
            S,
            "allow_msg_counter false->true",
            e.clone(),
            json!({"allow_msg_counter": true}),
            json!({"allow_msg_counter": true}),
        )
        .since(2, 12),
        case(
            S,
            "persist_mode default->async",
            e.clone(),
            json!({"persist_mode": "async"}),
            json!({"persist_mode": "async"}),
        )
        .since(2, 12),
        case(
            S,
            "allow_batched false->true",
            e.clone(),
            json!({"allow_batched": true}),
            json!({"allow_batched": true}),
        )
        .since(2, 14),
        // Pull consumers.
        case(
            C,
            "deliver_policy all->new",
            e.clone(),
            json!({"deliver_policy": "new"}),
            json!({"deliver_policy": "new"}),
        ),
        case(
            C,
            "deliver_policy all->last",
            e.clone(),
            json!({"deliver_policy": "last"}),
            json!({"deliver_policy": "last"}),
        ),
        case(
            C,
            "opt_start_seq 1->2",
            json!({"deliver_policy": "by_start_sequence", "opt_start_seq": 1}),
            json!({"opt_start_seq": 2}),
            json!({"opt_start_seq": 2}),
        ),
        case(
            C,
            "ack_policy explicit->all",
            e.clone(),
            json!({"ack_policy": "all"}),
            json!({"ack_policy": "all"}),
        ),
        case(
            C,
            "ack_policy explicit->none",
            e.clone(),
            json!({"ack_policy": "none"}),
            json!({"ack_policy": "none"}),
        ),
        case(
            C,
            "ack_wait 30s->1m",
            e.clone(),
            json!({"ack_wait": "1m"}),
            json!({"ack_wait": 60 * SEC}),
        ),
        case(
            C,
            "max_deliver -1->5",
            e.clone(),
            json!({"max_deliver": 5}),
            json!({"max_deliver": 5}),
        ),
        case(
            C,
            "max_deliver 5->7",
            json!({"max_deliver": 5}),
            json!({"max_deliver": 7}),
            json!({"max_deliver": 7}),
        ),
        case(
            C,
            "backoff none->[1s,5s]",
            json!({"max_deliver": 5}),
            json!({"backoff": ["1s", "5s"]}),
            json!({"backoff": [SEC, 5 * SEC], "ack_wait": SEC}),
        ),
        case(
            C,
            "filter_subject a->b",
            e.clone(),
            json!({"filter_subject": "$S.b"}),
            json!({"filter_subject": "$S.b"}),
        ),
        case(
            C,
            "replay_policy instant->original",
            e.clone(),
            json!({"replay_policy": "original"}),
            json!({"replay_policy": "original"}),
        ),
        case(
            C,
            "max_waiting 512->100",
            e.clone(),
            json!({"max_waiting": 100}),
            json!({"max_waiting": 100}),
        ),
        case(
            C,
            "max_ack_pending 1000->50",
            e.clone(),
            json!({"max_ack_pending": 50}),
            json!({"max_ack_pending": 50}),
        ),
        case(
            C,
            "description set",
            e.clone(),
            json!({"description": "orders"}),
            json!({"description": "orders"}),
        ),
        case(
            C,
            "headers_only false->true",
            e.clone(),
            json!({"headers_only": true}),
            json!({"headers_only": true}),
        ),
        case(
            C,
            "sample_freq none->100%",
            e.clone(),
            json!({"sample_freq": "100%"}),
            json!({"sample_freq": "100%"}),
        ),
        case(
            C,
            "inactive_threshold none->1h",
            e.clone(),
            json!({"inactive_threshold": "1h"}),
            json!({"inactive_threshold": 3600 * SEC}),
        ),
        case(
            C,
            "max_batch none->10",
            e.clone(),
            json!({"max_batch": 10}),
            json!({"max_batch": 10}),
        ),
        case(
            C,
            "max_expires none->30s",
            e.clone(),
            json!({"max_expires": "30s"}),
            json!({"max_expires": 30 * SEC}),
        ),
        case(
            C,
            "max_bytes none->1024",
            e.clone(),
            json!({"max_bytes": 1024}),
            json!({"max_bytes": 1024}),
        ),
        case(
            C,
            "mem_storage false->true",
            e.clone(),
            json!({"mem_storage": true}),
            json!({"mem_storage": true}),
        ),
        case(
            C,
            "num_replicas 0->1",
            e.clone(),
            json!({"num_replicas": 1}),
            json!({"num_replicas": 1}),
        ),
        case(
            C,
            "metadata set",
            e.clone(),
            json!({"metadata": {"team": "fulfilment"}}),
            json!({"metadata": {"team": "fulfilment"}}),
        )
        .since(2, 10),
        case(
            C,
            "filter_subject->filter_subjects",
            e.clone(),
            json!({"filter_subject": null, "filter_subjects": ["$S.a", "$S.b"]}),
            json!({"filter_subject": null, "filter_subjects": ["$S.a", "$S.b"]}),
        )
        .since(2, 10),
        case(
            C,
            "priority_groups none->set",
            e.clone(),
            json!({"priority_groups": ["g"], "priority_policy": "overflow"}),
            json!({"priority_groups": ["g"], "priority_policy": "overflow"}),
        )
        .since(2, 11),
        // Push consumers.
        case(
            C,
            "deliver_subject d1->d2",
            json!({"deliver_subject": "d1.$S"}),
            json!({"deliver_subject": "d2.$S"}),
            json!({"deliver_subject": "d2.$S"}),
        ),
        case(
            C,
            "push->pull",
            json!({"deliver_subject": "d1.$S"}),
            json!({"deliver_subject": null}),
            json!({"deliver_subject": null}),
        ),
        case(
            C,
            "pull->push",
            e.clone(),
            json!({"deliver_subject": "d1.$S"}),
            json!({"deliver_subject": "d1.$S", "max_waiting": null}),
        ),
        case(
            C,
            "deliver_group none->g",
            json!({"deliver_subject": "d1.$S"}),
            json!({"deliver_group": "g"}),
            json!({"deliver_group": "g"}),
        ),
        case(
            C,
            "rate_limit_bps none->1e6",
            json!({"deliver_subject": "d1.$S"}),
            json!({"rate_limit_bps": 1000000}),
            json!({"rate_limit_bps": 1000000}),
        ),
        case(
            C,
            "idle_heartbeat 5s->10s",
            json!({"deliver_subject": "d1.$S", "idle_heartbeat": "5s"}),
            json!({"idle_heartbeat": "10s"}),
            json!({"idle_heartbeat": 10 * SEC}),
        ),
        case(
            C,
            "flow_control false->true",
            json!({"deliver_subject": "d1.$S", "idle_heartbeat": "5s"}),
            json!({"flow_control": true}),
            json!({"flow_control": true}),
        ),
    ]
}

fn subst(v: &Value, s: &str) -> Value {
    match v {
        Value::String(t) => Value::String(t.replace("$S", s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| subst(x, s)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), subst(x, s))).collect())
        }
        other => other.clone(),
    }
}

fn merge(base: &mut Map<String, Value>, over: &Value) {
    for (k, v) in over.as_object().into_iter().flatten() {
        if v.is_null() {
            base.remove(k);
        } else {
            base.insert(k.clone(), v.clone());
        }
    }
}

fn infra(c: &Case, s: &str, changed: bool) -> String {
    let mut stream = json!({"iac_provider": "eventbus", "name": s, "subjects": [format!("{s}.>")]})
        .as_object()
        .cloned()
        .unwrap();
    let mut consumer = json!({"iac_provider": "eventbus", "stream_name": s, "name": "C", "ack_policy": "explicit", "filter_subject": format!("{s}.a")}).as_object().cloned().unwrap();
    let target = if c.res == S {
        &mut stream
    } else {
        &mut consumer
    };
    merge(target, &subst(&c.base, s));
    if changed {
        merge(target, &subst(&c.change, s));
    }
    let mut modules = vec![
        json!({"name": "eventbus", "type": "iac.provider", "config": {"provider": "eventbus"}}),
        json!({"name": "broker", "type": "infra.eventbus", "config": {"iac_provider": "eventbus", "provider": "nats", "deploy_target": "self_hosted", "url": "${NATS_URL}"}}),
        json!({"name": "stream", "type": "infra.eventbus.stream", "config": stream}),
    ];
    if c.res == C {
        modules.push(
            json!({"name": "consumer", "type": "infra.eventbus.consumer", "config": consumer}),
        );
    }
    serde_json::to_string_pretty(&json!({"modules": modules})).unwrap()
}

/// Tries the change in place on the server with its own idea of the current config.
fn probe(js: &JetStream, c: &Case, s: &str, v: (u32, u32)) -> Result<(), String> {
    let wire = subst(&c.wire, s);
    let reply = match c.res {
        Res::Stream => {
            let mut cfg = js.stream_config(s).as_object().cloned().unwrap();
            merge(&mut cfg, &wire);
            js.request(&format!("$JS.API.STREAM.UPDATE.{s}"), &Value::Object(cfg))
        }
        Res::Consumer => {
            let mut cfg = js.consumer_config(s, "C").as_object().cloned().unwrap();
            merge(&mut cfg, &wire);
            let mut body = json!({"stream_name": s, "config": cfg});
            if v >= (2, 10) {
                body["action"] = json!("update");
            }
            js.request(&format!("$JS.API.CONSUMER.CREATE.{s}.C"), &body)
        }
    };
    match reply.get("error") {
        None => Ok(()),
        Some(e) => Err(format!(
            "{} ({})",
            e["description"].as_str().unwrap_or(""),
            e["err_code"]
        )),
    }
}

fn servers() -> Vec<PathBuf> {
    if let Ok(list) = std::env::var("FIDELITY_SERVERS") {
        return list
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
    }
    let mut v = vec![];
    let venv = workspace_root().join(".venv/bin/nats-server");
    if venv.is_file() {
        v.push(venv);
    }
    for p in ["/usr/sbin/nats-server", "/usr/bin/nats-server"] {
        if std::path::Path::new(p).is_file() {
            v.push(PathBuf::from(p));
            break;
        }
    }
    v
}

fn parse_version(v: &str) -> (u32, u32) {
    let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

fn main() {
    // Under `cargo test` with a filter meant for other suites, stay quiet and pass.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    if !args.is_empty() && !args.iter().any(|a| "fidelity".contains(a.as_str())) {
        return;
    }
    let only: Option<String> = std::env::var("FIDELITY_ONLY").ok();
    let mut versions = vec![];
    let (mut checked, mut mismatches, mut unsettled) = (0usize, 0usize, 0usize);
    let mut seen = std::collections::BTreeSet::new();
    for bin in servers() {
        let server = NatsServer::start_with(bin.clone());
        let version = server.version();
        if !seen.insert(version.clone()) {
            continue;
        }
        let v = parse_version(&version);
        let js = JetStream::connect(server.url());
        let mut n = 0;
        println!("== nats-server {version} ({})", bin.display());
        for (i, c) in cases().iter().enumerate() {
            if v < c.since || only.as_deref().is_some_and(|o| !c.label.contains(o)) {
                continue;
            }
            let s = format!("F{i}");
            let project = Project::new(&infra(c, &s, false), server.url());
            let created = project.run_json(&["apply"]);
            if created.code != 0 {
                println!(
                    "  SETUP    {:<36} base config not applied:\n{created}",
                    c.label
                );
                unsettled += 1;
                continue;
            }
            project.write_infra(&infra(c, &s, true));
            let plan = project.run_json(&["plan"]);
            let target = if c.res == S { "stream" } else { "consumer" };
            let ours = if plan.code == 2 {
                plan.json()["actions"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["name"] == target))
                    .map(|a| a["action"].as_str().unwrap_or("").to_string())
                    .unwrap_or_else(|| "none".into())
            } else if plan.code == 0 {
                "none".into()
            } else {
                format!("error: {}", plan.stderr.lines().next().unwrap_or(""))
            };
            let server_says = probe(&js, c, &s, v);
            let ok = matches!(
                (&server_says, ours.as_str()),
                (Ok(()), "update") | (Err(_), "replace")
            );
            n += 1;
            checked += 1;
            let verdict = match &server_says {
                Ok(()) => "accepts in place".to_string(),
                Err(e) => format!("refuses: {e}"),
            };
            if ok {
                println!("  ok       {:<36} plan {ours:<8} server {verdict}", c.label);
            } else {
                mismatches += 1;
                println!("  MISMATCH {:<36} plan {ours:<8} server {verdict}", c.label);
            }
            // Whatever happened, applying the changed config must converge to an empty plan.
            let applied = project.run_json(&["apply", "--allow-replace", "*"]);
            let again = project.run_json(&["plan"]);
            if applied.code != 0 || again.code != 0 {
                unsettled += 1;
                println!(
                    "  UNSETTLED {:<35} apply exit {}, next plan exit {}\n{applied}\n{again}",
                    c.label, applied.code, again.code
                );
            }
            js.request(&format!("$JS.API.STREAM.DELETE.{s}"), &Value::Null);
        }
        println!("   {n} field changes checked on {version}");
        versions.push(version);
    }
    if unsettled > 0 {
        println!("fidelity: {unsettled} cases did not converge to an empty plan after apply");
    }
    println!(
        "fidelity: {checked} field changes checked on {}, {mismatches} mismatches",
        versions.join(" and ")
    );
    if mismatches > 0 || unsettled > 0 || versions.is_empty() {
        std::process::exit(1);
    }
}
