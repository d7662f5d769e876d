//! Faults around an apply: a second apply on the same state, an apply killed while holding
//! the lock, the broker stopped mid-apply, a frozen (slow) broker. Each time the run reports
//! what failed, keeps what succeeded, and a rerun converges.

use eventbus_tests::{JetStream, NatsServer, Owned, Project, eventbus_bin};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn wide(streams: usize, per: usize) -> String {
    let mut modules = vec![
        json!({"name": "eventbus", "type": "iac.provider", "config": {"provider": "eventbus"}}),
        json!({"name": "broker", "type": "infra.eventbus", "config": {"iac_provider": "eventbus", "provider": "nats", "deploy_target": "self_hosted", "url": "${NATS_URL}"}}),
    ];
    for s in 0..streams {
        modules.push(json!({"name": format!("s{s}"), "type": "infra.eventbus.stream", "config": {"iac_provider": "eventbus", "name": format!("S{s}"), "subjects": [format!("s{s}.>")]}}));
        for c in 0..per {
            modules.push(json!({"name": format!("s{s}-c{c}"), "type": "infra.eventbus.consumer", "config": {"iac_provider": "eventbus", "stream_name": format!("S{s}"), "name": format!("c{c}")}}));
        }
    }
    serde_json::to_string_pretty(&json!({"modules": modules})).unwrap()
}

fn spawn(project: &Project, url: &str, args: &[&str]) -> Child {
    Command::new(eventbus_bin())
        .args([
            "-f",
            &project.infra_path().display().to_string(),
            "--state",
            &project.state_path().display().to_string(),
        ])
        .args(args)
        .env("NATS_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .owned()
        .spawn()
        .expect("start eventbus")
}

/// Waits until the state journal shows the apply has started working.
fn wait_for_progress(project: &Project) {
    let journal = project.dir().join("state.json.journal");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "the apply never recorded progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_second_apply_on_the_same_state_fails_naming_the_holder() {
    // Two applies cannot interleave: the loser says who holds the lock and changes nothing.
    let server = NatsServer::start();
    let project = Project::new(&wide(30, 9), server.url());
    let first = spawn(&project, server.url(), &["apply"]);
    wait_for_progress(&project);
    let second = project.run(&["apply"]);
    let first = first.wait_with_output().unwrap();
    assert_eq!(second.code, 1, "{second}");
    assert!(
        second.stderr.contains("locked by another eventbus process"),
        "{second}"
    );
    assert!(
        second.stderr.contains("pid ") && second.stderr.contains("running `apply`"),
        "{second}"
    );
    assert_eq!(
        first.status.code(),
        Some(0),
        "the first apply is unaffected"
    );
    project.run(&["plan"]).expect_code(0);
}

#[test]
fn a_second_apply_with_lock_timeout_waits_its_turn() {
    // With --lock-timeout the second apply waits, then finds nothing left to do.
    let server = NatsServer::start();
    let project = Project::new(&wide(20, 6), server.url());
    let first = spawn(&project, server.url(), &["apply"]);
    wait_for_progress(&project);
    let second = project.run_json(&["apply", "--lock-timeout", "60"]);
    assert_eq!(first.wait_with_output().unwrap().status.code(), Some(0));
    second.expect_code(0);
    assert_eq!(
        second.json()["results"].as_array().map(Vec::len),
        Some(0),
        "{second}"
    );
}

#[test]
fn an_apply_killed_while_holding_the_lock_leaves_no_stale_lock() {
    // The lock is the kernel's: it dies with its holder, so the next apply starts at once.
    let server = NatsServer::start();
    let project = Project::new(&wide(20, 6), server.url());
    let mut first = spawn(&project, server.url(), &["apply"]);
    wait_for_progress(&project);
    let pid = first.id();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(
        project.dir().join("state.json.lock").exists(),
        "the lock file itself remains"
    );
    // `unlock` sees the lock free and says who held it last.
    let shown = project.run(&["unlock"]);
    shown.expect_code(0);
    assert!(
        shown.stdout.contains("not locked") && shown.stdout.contains(&format!("pid {pid} ")),
        "{shown}"
    );
    project
        .run(&["apply", "--lock-timeout", "0"])
        .expect_code(0);
    project.run(&["plan"]).expect_code(0);
}

#[test]
fn a_hung_holder_is_named_by_unlock_and_stopped_by_unlock_force() {
    // An apply that hangs while holding the lock (here: stopped with SIGSTOP) keeps the lock,
    // since it is alive. `unlock` names it; `unlock --force` stops it (a stopped process
    // ignores SIGTERM, so this also proves the SIGKILL fallback); nothing it recorded is lost
    // and the next apply finishes the job.
    let server = NatsServer::start();
    let project = Project::new(&wide(20, 6), server.url());
    project.run(&["unlock"]).expect_code(0);
    let mut holder = spawn(&project, server.url(), &["apply"]);
    wait_for_progress(&project);
    let pid = holder.id().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let shown = project.run(&["unlock"]);
    shown.expect_code(1);
    assert!(
        shown.stdout.contains(&format!("locked by pid {pid} ")),
        "unlock names the holder: {shown}"
    );
    project
        .run(&["apply", "--lock-timeout", "0"])
        .expect_code(1);
    let forced = project.run_json(&["unlock", "--force", "--grace", "1"]);
    forced.expect_code(0);
    let v: Value = serde_json::from_str(&forced.stdout).unwrap();
    assert_eq!(v["broken"], json!(true), "{forced}");
    assert_eq!(v["pid"], json!(holder.id()), "{forced}");
    let status = holder.wait().unwrap();
    assert!(!status.success(), "the holder was stopped: {status:?}");
    project.run(&["unlock"]).expect_code(0);
    project.run(&["apply"]).expect_code(0);
    project.run(&["plan"]).expect_code(0);
    let js = JetStream::connect(server.url());
    assert_eq!(js.stream_names().len(), 20);
}

#[test]
fn broker_stopped_mid_apply_keeps_what_succeeded_and_a_rerun_converges() {
    // Stop nats-server in the middle: failed actions are reported, successes stay recorded,
    // and after a restart the same apply finishes the job.
    let mut server = NatsServer::start();
    let url = server.url().to_string();
    let project = Project::new(&wide(30, 9), &url);
    let child = spawn(&project, &url, &["-o", "json", "apply"]);
    wait_for_progress(&project);
    server.stop();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the apply fails (signal {:?}): {}",
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    let ok = results.iter().filter(|r| r["ok"] == json!(true)).count();
    let failed: Vec<&Value> = results.iter().filter(|r| r["ok"] == json!(false)).collect();
    assert!(
        ok > 0 && !failed.is_empty(),
        "some succeeded ({ok}) and some failed ({})",
        failed.len()
    );
    assert!(
        failed.iter().any(|r| r["error"]
            .as_str()
            .unwrap_or("")
            .contains("iac: transient error")),
        "failures are transient: {:?}",
        failed.first()
    );
    // What succeeded is in state.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(project.state_path()).unwrap()).unwrap();
    assert_eq!(
        state["resources"].as_array().unwrap().len(),
        ok,
        "state holds exactly the successes"
    );
    server.restart();
    project.run(&["apply"]).expect_code(0);
    project.run(&["plan"]).expect_code(0);
    let js = JetStream::connect(server.url());
    assert_eq!(js.stream_names().len(), 30);
}

#[test]
fn a_frozen_broker_surfaces_as_transient_errors_then_converges() {
    // A broker that stops answering (SIGSTOP) makes requests time out: transient, not fatal.
    let server = NatsServer::start();
    let project = Project::new(&wide(3, 2), server.url());
    project.run(&["apply"]).expect_code(0);
    project.write_infra(&wide(4, 2));
    let pid = server.pid().unwrap().to_string();
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let started = Instant::now();
    let out = project.run_json(&["apply"]);
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    out.expect_code(1);
    assert!(out.stdout.contains("iac: transient error"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it gave up in bounded time"
    );
    project.run(&["apply"]).expect_code(0);
    project.run(&["plan"]).expect_code(0);
}
