//! The host's Kafka capability over TLS against a real Kafka TLS listener: the pilot
//! (examples/bmw-kafka/infra.yaml) on SASL_SSL with SCRAM-SHA-512, through the `eventbus` CLI,
//! on the newest pinned Kafka, and on SSL alone on the 3.9 line. The broker's certificate comes from a throwaway CA
//! (`KafkaOpts.tls`), which the CLI trusts through SSL_CERT_FILE (the host's roots are the
//! platform's, read by rustls-native-certs, which takes SSL_CERT_FILE instead when it is set).
//! Judged by confluent-kafka (`KafkaCheck`, over TLS trusting the same CA).

use eventbus_tests::kafka::{
    KAFKA_VERSIONS, Kafka, KafkaCheck, KafkaOpts, PILOT_GROUPS, PILOT_TOPIC, assert_pilot_groups,
    make_ca,
};
use eventbus_tests::{Cli, Output, Project, TempDir, Value, json, workspace_root};

const TOPIC: &str = PILOT_TOPIC;
const GROUPS: [&str; 6] = PILOT_GROUPS;
const USER: &str = "provisioner";
const PASSWORD: &str = "s3cret-pw";

/// The pilot on SASL_SSL, the password from the environment (swapped for a handle by the host).
fn tls_yaml() -> String {
    let yaml = std::fs::read_to_string(workspace_root().join("examples/bmw-kafka/infra.yaml"))
        .expect("read examples/bmw-kafka/infra.yaml");
    let from = "      security_protocol: PLAINTEXT\n";
    assert!(
        yaml.contains(from),
        "test setup: the pilot's security_protocol line"
    );
    yaml.replace(
        from,
        "      security_protocol: SASL_SSL\n      sasl_mechanism: SCRAM-SHA-512\n      \
         credentials:\n        user: provisioner\n        password: ${KAFKA_PASSWORD}\n",
    )
}

fn project(kafka: &Kafka, cert_file: &std::path::Path) -> Project {
    Project::new(&tls_yaml(), "")
        .env("KAFKA_BOOTSTRAP", &kafka.bootstrap)
        .env("KAFKA_PASSWORD", PASSWORD)
        .env("SSL_CERT_FILE", &cert_file.display().to_string())
}

fn actions(plan: &Value) -> Vec<(String, String)> {
    plan["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    let s = |k: &str| x[k].as_str().unwrap_or("").to_string();
                    (s("action"), s("name"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing of the pilot on the server.
#[track_caller]
fn assert_nothing_created(check: &KafkaCheck, out: &Output) {
    assert!(
        !check.topics().contains(&TOPIC.to_string()),
        "the topic was created\n{out}"
    );
    let groups: Vec<String> = check
        .groups()
        .into_iter()
        .filter(|g| GROUPS.contains(&g.as_str()))
        .collect();
    assert!(groups.is_empty(), "groups were created: {groups:?}\n{out}");
}

#[test]
fn the_pilot_on_sasl_ssl_trusts_only_the_given_ca() {
    let kafka = Kafka::start_with(
        KAFKA_VERSIONS[1],
        KafkaOpts {
            tls: true,
            sasl: Some((USER.into(), PASSWORD.into())),
            ..Default::default()
        },
    );
    eprintln!(
        "Kafka {} (SASL_SSL) ready in {:?}",
        kafka.version, kafka.startup
    );
    let ca = kafka.ca.clone().expect("a TLS Kafka has a CA");
    let check = kafka.check();

    // Without the cluster's CA (SSL_CERT_FILE names another CA): the first plan asks no
    // server (the broker is created in this apply), apply fails on the handshake and says
    // why, and nothing is created.
    let other = TempDir::new("other-ca");
    let stranger = make_ca(other.path(), "stranger-ca");
    let untrusted = project(&kafka, &stranger);
    untrusted.run_json(&["plan"]).expect_code(2);
    let out = untrusted.run(&["apply"]);
    assert_tls_refused("apply", &out);
    assert_nothing_created(&check, &out);

    // With it: plan, apply, the topic and every group on the server, an empty second plan.
    let trusted = project(&kafka, &ca);
    let out = trusted.run_json(&["plan"]);
    out.expect_code(2);
    let p = out.json();
    let creates = actions(&p).iter().filter(|(a, _)| a == "create").count();
    assert_eq!(creates, 8, "{p}");
    assert_nothing_created(&check, &out);

    let out = trusted.run_json(&["apply"]);
    out.expect_code(0);
    for r in out.json()["results"].as_array().expect("results") {
        assert_eq!(r["ok"], json!(true), "apply result not ok: {r}\n{out}");
    }
    assert!(!out.stdout.contains(PASSWORD) && !out.stderr.contains(PASSWORD));
    let t = check.topic(TOPIC).expect("the topic exists after apply");
    assert_eq!(t["partitions"], json!(6), "{t}");
    assert_eq!(
        check.topic_config(TOPIC, "retention.ms").as_deref(),
        Some("604800000")
    );
    assert_pilot_groups(&check);

    // A second plan is empty, also when it reads every resource back over TLS (--refresh).
    for args in [&["plan"][..], &["plan", "--refresh"]] {
        let out = trusted.run_json(args);
        out.expect_code(0);
        let p = out.json();
        assert!(actions(&p).is_empty(), "a second {args:?} is empty: {p}");
    }

    // The same state without the CA: `plan --refresh` reads the cluster, so it fails on the
    // handshake (a plain plan of an unchanged file asks no server).
    let infra = trusted.infra_path().display().to_string();
    let state = trusted.state_path().display().to_string();
    let out = Cli::new(trusted.dir())
        .env("KAFKA_BOOTSTRAP", &kafka.bootstrap)
        .env("KAFKA_PASSWORD", PASSWORD)
        .env("SSL_CERT_FILE", &stranger.display().to_string())
        .run(&["-f", &infra, "--state", &state, "plan", "--refresh"]);
    assert_tls_refused("plan --refresh", &out);
}

/// `cmd` failed (not a plan's exit 2), naming TLS and the certificate, never the password.
#[track_caller]
fn assert_tls_refused(cmd: &str, out: &Output) {
    assert!(
        out.code != 0 && out.code != 2,
        "{cmd} without the CA must fail\n{out}"
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    let lower = text.to_lowercase();
    assert!(
        lower.contains("tls") && lower.contains("certificate"),
        "{cmd}'s error names TLS and the certificate\n{out}"
    );
    assert!(!text.contains(PASSWORD), "{cmd} echoed the password\n{out}");
    let line = text.lines().find(|l| l.to_lowercase().contains("tls"));
    eprintln!(
        "{cmd} without the CA: exit {}: {}",
        out.code,
        line.unwrap_or("")
    );
}

#[test]
fn the_pilot_on_ssl_on_kafka_3() {
    // SSL without SASL (the clients are User:ANONYMOUS), on the 3.9 line's PEM key store.
    let kafka = Kafka::start_with(
        KAFKA_VERSIONS[0],
        KafkaOpts {
            tls: true,
            ..Default::default()
        },
    );
    eprintln!("Kafka {} (SSL) ready in {:?}", kafka.version, kafka.startup);
    let ca = kafka.ca.clone().expect("a TLS Kafka has a CA");
    let check = kafka.check();
    let yaml = std::fs::read_to_string(workspace_root().join("examples/bmw-kafka/infra.yaml"))
        .expect("read examples/bmw-kafka/infra.yaml")
        .replace("security_protocol: PLAINTEXT", "security_protocol: SSL");
    let project = Project::new(&yaml, "")
        .env("KAFKA_BOOTSTRAP", &kafka.bootstrap)
        .env("SSL_CERT_FILE", &ca.display().to_string());
    project.run_json(&["apply"]).expect_code(0);
    assert_eq!(
        check.topic(TOPIC).expect("the topic")["partitions"],
        json!(6)
    );
    project.run_json(&["plan", "--refresh"]).expect_code(0);
    project.run(&["destroy"]).expect_code(0);
    assert!(
        !check.topics().contains(&TOPIC.to_string()),
        "destroy left the topic"
    );
}
