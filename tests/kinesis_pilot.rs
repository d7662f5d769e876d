//! Kinesis end to end through the `eventbus` CLI (issue 13): the pilot
//! (examples/bmw-kinesis/infra.yaml: one stream, six enhanced fan-out consumers) against
//! kinesis-mock, planned, applied, re-planned empty, changed in place, resharded in steps,
//! guarded, and destroyed; then against moto's server verifying every signature, with the
//! right keys and a wrong secret. Every step is judged by boto3 (`KinesisCheck`), never by
//! what the CLI says of itself, and no AWS secret may appear in a plan, the state or the logs.
//!
//! A `harness = false` test: one line per case, then
//! `kinesis-pilot: <passed>/<total> (kinesis-mock, moto-sigv4)` (`just kinesis` adds the
//! capability's own tests, tests/kinesis_cap.rs). Needs Node.js and the .venv (`./dev setup`).

use eventbus_tests::kinesis::{KinesisCheck, KinesisMock, Moto, REGION};
use eventbus_tests::{Output, Project, Value, json, workspace_root};
use std::panic::{AssertUnwindSafe, catch_unwind};

const STREAM: &str = "bmw-fulfillment";
const CONSUMERS: [&str; 6] = [
    "audit-log",
    "customer-notify",
    "inventory-reserve",
    "orders-intake",
    "payment-capture",
    "shipment-dispatch",
];
/// The secret access key the CLI is given: it must never be seen again.
const CANARY: &str = "kinesisCanarySecret0123456789abcdefABCDEF";
const KEY_ID: &str = "AKIAEVENTBUSPILOT000";

fn pilot_yaml() -> String {
    std::fs::read_to_string(workspace_root().join("examples/bmw-kinesis/infra.yaml"))
        .expect("read examples/bmw-kinesis/infra.yaml")
}

/// A project on `endpoint` with the pilot (or `yaml`), keys from the environment.
fn project(yaml: &str, endpoint: &str, key_id: &str, secret: &str) -> Project {
    Project::new(yaml, "")
        .env("KINESIS_ENDPOINT", endpoint)
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("EVENTBUS_LOG", "debug")
}

fn plan(p: &Project, code: i32) -> Value {
    let out = p.run_json(&["plan"]);
    out.expect_code(code);
    no_canary("plan", &out);
    out.json()
}

fn apply_ok(p: &Project) -> Output {
    let out = p.run_json(&["apply"]);
    no_canary("apply", &out);
    out.expect_code(0);
    out
}

fn actions_of<'a>(plan: &'a Value, kind: &str) -> Vec<&'a str> {
    plan["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["action"] == kind)
        .filter_map(|x| x["name"].as_str())
        .collect()
}

fn no_canary(what: &str, out: &Output) {
    assert!(
        !out.stdout.contains(CANARY) && !out.stderr.contains(CANARY),
        "{what}: the AWS secret appears in the CLI's output or logs"
    );
}

fn consumer_names(check: &KinesisCheck, stream: &str) -> Vec<String> {
    check
        .consumers(stream)
        .iter()
        .filter(|c| c["status"] == "ACTIVE")
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

fn state_text(p: &Project) -> String {
    std::fs::read_to_string(p.state_path()).unwrap_or_default()
}

/// Runs each case, catching its panic, and keeps the score.
#[derive(Default)]
struct Suite {
    passed: usize,
    total: usize,
}

impl Suite {
    fn case(&mut self, name: &str, f: impl FnOnce()) {
        self.total += 1;
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(()) => {
                self.passed += 1;
                println!("kinesis case {name} ... ok");
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("kinesis case {name} ... FAILED\n{msg}\n");
            }
        }
    }
}

fn pilot_cases(s: &mut Suite, mock: &KinesisMock) {
    let check = mock.check();
    let p = project(&pilot_yaml(), &mock.endpoint, KEY_ID, CANARY);
    s.case("pilot: plan creates 8 and changes nothing", || {
        let pl = plan(&p, 2);
        assert_eq!(actions_of(&pl, "create").len(), 8, "{pl}");
        assert!(
            !check.streams().contains(&STREAM.to_string()),
            "plan created the stream"
        );
    });
    s.case(
        "pilot: apply makes the stream and six ACTIVE consumers",
        || {
            apply_ok(&p);
            let st = check.stream(STREAM).expect("the stream exists");
            assert_eq!(st["status"], "ACTIVE", "{st}");
            assert_eq!(st["open_shards"], json!(2), "{st}");
            assert_eq!(st["retention_hours"], json!(168), "{st}");
            assert_eq!(
                st["tags"],
                json!({"team": "fulfillment", "pilot": "bmw"}),
                "{st}"
            );
            assert_eq!(consumer_names(&check, STREAM), CONSUMERS);
        },
    );
    s.case("pilot: a second plan is empty", || {
        let pl = plan(&p, 0);
        assert!(
            pl["actions"].as_array().is_none_or(|a| a.is_empty()),
            "{pl}"
        );
    });
    s.case("pilot: status reads every resource as running", || {
        let out = p.run_json(&["status"]);
        no_canary("status", &out);
        out.expect_code(0);
    });
    s.case(
        "change: shards 2->3, retention 168h->48h, tags, in place",
        || {
            p.replace_in_infra("shard_count: 2", "shard_count: 3");
            p.replace_in_infra("retention: 168h", "retention: 48h");
            p.replace_in_infra("pilot: bmw", "stage: pilot");
            let pl = plan(&p, 2);
            assert_eq!(actions_of(&pl, "update"), ["bmw-stream"], "{pl}");
            assert!(actions_of(&pl, "replace").is_empty(), "{pl}");
            apply_ok(&p);
            let st = check.stream(STREAM).expect("stream");
            assert_eq!(st["open_shards"], json!(3), "{st}");
            assert_eq!(st["retention_hours"], json!(48), "{st}");
            assert_eq!(
                st["tags"],
                json!({"team": "fulfillment", "stage": "pilot"}),
                "{st}"
            );
            assert_eq!(
                consumer_names(&check, STREAM).len(),
                6,
                "an update lost consumers"
            );
            plan(&p, 0);
        },
    );
    s.case("change: KMS encryption started and stopped", || {
        p.replace_in_infra(
            "retention: 48h",
            "retention: 48h\n      encryption: kms\n      kms_key_id: alias/aws/kinesis",
        );
        apply_ok(&p);
        let st = check.stream(STREAM).expect("stream");
        assert_eq!(st["encryption"], "KMS", "{st}");
        plan(&p, 0);
        p.replace_in_infra(
            "\n      encryption: kms\n      kms_key_id: alias/aws/kinesis",
            "",
        );
        apply_ok(&p);
        assert_eq!(check.stream(STREAM).expect("stream")["encryption"], "NONE");
    });
    s.case(
        "reshard: 3 -> 9 is planned as two steps and applied",
        || {
            p.replace_in_infra("shard_count: 3", "shard_count: 9");
            let pl = plan(&p, 2);
            let text = pl.to_string();
            assert!(
                text.contains("3 -> 6 -> 9"),
                "the plan names the steps: {pl}"
            );
            assert!(text.contains("2 steps"), "{pl}");
            apply_ok(&p);
            assert_eq!(
                check.stream(STREAM).expect("stream")["open_shards"],
                json!(9)
            );
            plan(&p, 0);
            let state: Value = serde_json::from_str(&state_text(&p)).expect("state");
            let rec = state["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == "bmw-stream")
                .cloned()
                .unwrap();
            assert_eq!(
                rec["outputs"]["rescales"].as_array().map(Vec::len),
                Some(3),
                "{rec}"
            );
        },
    );
    s.case(
        "guard: on_demand with shard_count is refused at plan",
        || {
            p.replace_in_infra("stream_mode: provisioned", "stream_mode: on_demand");
            let out = p.run(&["plan"]);
            out.expect_code(1);
            assert!(
                out.stderr.contains("shard_count") && out.stderr.contains("bmw-stream"),
                "{out}"
            );
            assert_eq!(check.stream(STREAM).expect("stream")["mode"], "PROVISIONED");
        },
    );
    s.case("change: to on_demand by UpdateStreamMode", || {
        p.replace_in_infra("      shard_count: 9\n", "");
        let pl = plan(&p, 2);
        assert_eq!(actions_of(&pl, "update"), ["bmw-stream"], "{pl}");
        apply_ok(&p);
        assert_eq!(check.stream(STREAM).expect("stream")["mode"], "ON_DEMAND");
        plan(&p, 0);
    });
    s.case("consumer: a new name replaces it", || {
        p.replace_in_infra("name: audit-log", "name: audit-trail");
        let pl = plan(&p, 2);
        assert_eq!(actions_of(&pl, "replace"), ["bmw-audit-log"], "{pl}");
        apply_ok(&p);
        let names = consumer_names(&check, STREAM);
        assert!(
            names.contains(&"audit-trail".into()) && !names.contains(&"audit-log".into()),
            "{names:?}"
        );
        plan(&p, 0);
    });
    s.case(
        "guard: deleting a stream with consumers left needs enforce_consumer_deletion",
        || {
            // audit-trail is forgotten by the state (so the plan does not delete it), then the
            // stream and every consumer leave the file: the plan stops, naming the flag.
            let mut state: Value = serde_json::from_str(&state_text(&p)).expect("state");
            state["resources"]
                .as_array_mut()
                .unwrap()
                .retain(|r| r["name"] != "bmw-audit-log");
            std::fs::write(p.state_path(), state.to_string()).unwrap();
            let yaml = p.infra();
            let cut = yaml
                .find("  - name: bmw-stream")
                .expect("the stream module");
            p.write_infra(&yaml[..cut]);
            let out = p.run(&["plan"]);
            out.expect_code(1);
            assert!(
                out.stderr.contains("enforce_consumer_deletion")
                    && out.stderr.contains("audit-trail"),
                "{out}"
            );
            assert!(check.stream(STREAM).is_some());
            // With the flag applied first, the stream goes with its last consumer.
            let kept = yaml[cut..]
                .split("\n  - name: bmw-orders-intake")
                .next()
                .unwrap()
                .to_string();
            p.write_infra(&format!(
                "{}{kept}\n      enforce_consumer_deletion: true\n",
                &yaml[..cut]
            ));
            apply_ok(&p);
            p.write_infra(&yaml[..cut]);
            plan(&p, 2);
            apply_ok(&p);
            assert!(check.stream(STREAM).is_none(), "the stream is gone");
            p.write_infra(&yaml);
        },
    );
    s.case("destroy: nothing is left", || {
        apply_ok(&p);
        assert_eq!(consumer_names(&check, STREAM).len(), 6);
        let out = p.run(&["destroy"]);
        no_canary("destroy", &out);
        out.expect_code(0);
        assert!(
            check.stream(STREAM).is_none(),
            "destroy left the stream\n{out}"
        );
    });
    s.case("canary: the secret is in no state file", || {
        let dir = p.state_path().parent().unwrap().to_path_buf();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            assert!(
                !text.contains(CANARY),
                "{} holds the AWS secret",
                e.path().display()
            );
        }
    });
}

fn plan_only_cases(s: &mut Suite, mock: &KinesisMock) {
    let check = mock.check();
    let base = pilot_yaml();
    s.case("plan: 2 -> 9 shards is named as 2 -> 4 -> 8 -> 9", || {
        let p = project(
            &base.replace(STREAM, "steps-2-9"),
            &mock.endpoint,
            KEY_ID,
            CANARY,
        );
        apply_ok(&p);
        p.replace_in_infra("shard_count: 2", "shard_count: 9");
        let pl = plan(&p, 2);
        assert!(pl.to_string().contains("2 -> 4 -> 8 -> 9"), "{pl}");
        assert!(pl.to_string().contains("3 steps"), "{pl}");
        assert_eq!(
            check.stream("steps-2-9").expect("stream")["open_shards"],
            json!(2),
            "plan changed nothing"
        );
        p.run(&["destroy"]).expect_code(0);
    });
    let refused = |name: &str, from: &str, to: &str, field: &str| {
        let p = project(&base, &mock.endpoint, KEY_ID, CANARY);
        p.replace_in_infra(from, to);
        let out = p.run(&["plan"]);
        out.expect_code(1);
        assert!(
            out.stderr.contains(field),
            "{name}: the refusal names {field}\n{out}"
        );
        assert!(check.streams().is_empty() || !check.streams().contains(&STREAM.to_string()));
    };
    s.case("plan: a stream name Kinesis refuses", || {
        refused(
            "name",
            "      name: bmw-fulfillment\n      stream_mode",
            "      name: bmw/fulfillment\n      stream_mode",
            "config.name",
        )
    });
    s.case("plan: retention below a day", || {
        refused(
            "retention",
            "retention: 168h",
            "retention: 12h",
            "config.retention",
        )
    });
    s.case("plan: 51 tags", || {
        let tags: String = (0..51).map(|i| format!("\n        t{i}: v")).collect();
        refused(
            "tags",
            "      tags:",
            &format!("      tags:{tags}"),
            "config.tags",
        )
    });
    s.case("plan: a 21st consumer on the stream", || {
        let extra: String = (0..15)
            .map(|i| format!("\n  - name: extra-{i}\n    type: infra.eventbus.consumer\n    config:\n      iac_provider: eventbus\n      stream_name: bmw-fulfillment\n      name: extra-{i}\n"))
            .collect();
        let p = project(&format!("{base}{extra}"), &mock.endpoint, KEY_ID, CANARY);
        let out = p.run(&["plan"]);
        out.expect_code(1);
        assert!(out.stderr.contains("20"), "{out}");
    });
    s.case("plan: a sixth new stream waits for the first", || {
        let extra: String = (0..5)
            .map(|i| format!("\n  - name: more-{i}\n    type: infra.eventbus.stream\n    config:\n      iac_provider: eventbus\n      name: more-{i}\n"))
            .collect();
        let p = project(&format!("{base}{extra}"), &mock.endpoint, KEY_ID, CANARY);
        let pl = plan(&p, 2);
        assert!(pl.to_string().contains("at most 5 streams CREATING at once"), "{pl}");
    });
}

fn moto_cases(s: &mut Suite) {
    let moto = Moto::start();
    let check = moto.check();
    let p = project(
        &pilot_yaml(),
        &moto.endpoint,
        &moto.access_key_id,
        &moto.secret_access_key,
    );
    s.case(
        "moto-sigv4: the pilot applied with verified signatures",
        || {
            apply_ok(&p);
            let st = check.stream(STREAM).expect("moto holds the stream");
            assert_eq!(st["open_shards"], json!(2), "{st}");
            assert_eq!(consumer_names(&check, STREAM).len(), 6);
            plan(&p, 0);
        },
    );
    s.case(
        "moto-sigv4: a wrong secret is refused and changes nothing",
        || {
            let bad = project(&pilot_yaml(), &moto.endpoint, &moto.access_key_id, CANARY);
            bad.write_infra(&pilot_yaml().replace(STREAM, "never-made"));
            let out = bad.run(&["apply"]);
            no_canary("apply with a wrong secret", &out);
            assert_ne!(out.code, 0, "{out}");
            assert!(
                out.stderr.contains("SignatureDoesNotMatch")
                    || out.stdout.contains("SignatureDoesNotMatch"),
                "{out}"
            );
            assert!(check.stream("never-made").is_none());
        },
    );
    s.case("moto-sigv4: destroy", || {
        p.run(&["destroy"]).expect_code(0);
        assert!(check.stream(STREAM).is_none());
    });
}

fn main() {
    // Each case prints its own failure; the default hook's backtrace would bury the lines.
    std::panic::set_hook(Box::new(|info| {
        if let Some(l) = info.location() {
            println!("  at {}:{}", l.file(), l.line());
        }
    }));
    let mut s = Suite::default();
    let mock = KinesisMock::start();
    pilot_cases(&mut s, &mock);
    plan_only_cases(&mut s, &mock);
    drop(mock);
    moto_cases(&mut s);
    println!(
        "kinesis-pilot: {}/{} (kinesis-mock, moto-sigv4)",
        s.passed, s.total
    );
    if s.passed != s.total {
        std::process::exit(1);
    }
}
