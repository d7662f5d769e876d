//! Checks of the test harness itself (no eventbus CLI needed): the nats-server fixture and the
//! direct JetStream helpers the pilot tests rely on to judge the CLI.

use eventbus_tests::{JetStream, NatsServer, consumer_filters, hours_ns, json};

/// The fixture starts a JetStream-enabled server on a loopback port and reports its version.
#[test]
fn nats_server_starts_with_jetstream_on_loopback() {
    let server = NatsServer::start();
    assert!(
        server.url().starts_with("nats://127.0.0.1:"),
        "{}",
        server.url()
    );
    assert!(server.port() > 0);
    let version = server.version();
    assert!(
        version.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "version {version:?}"
    );
    let js = JetStream::connect(server.url());
    let account = js.request_ok("$JS.API.INFO", &json!(null));
    assert!(
        account.get("limits").is_some(),
        "JetStream account info: {account}"
    );
    assert!(js.stream_names().is_empty());
}

/// Two fixtures run side by side on different ports without seeing each other's streams.
#[test]
fn servers_are_isolated() {
    let a = NatsServer::start();
    let b = NatsServer::start();
    assert_ne!(a.port(), b.port());
    let ja = JetStream::connect(a.url());
    ja.create_stream(&json!({"name": "ONLY_A", "subjects": ["a.>"]}));
    assert_eq!(ja.stream_names(), vec!["ONLY_A".to_string()]);
    assert!(JetStream::connect(b.url()).stream_names().is_empty());
}

/// The inspection and tampering helpers see and change what the server holds.
#[test]
fn jetstream_helpers_inspect_and_tamper() {
    let server = NatsServer::start();
    let js = JetStream::connect(server.url());
    js.create_stream(&json!({
        "name": "S1", "subjects": ["s1.>"], "max_age": hours_ns(1), "storage": "file"
    }));
    assert_eq!(
        js.stream_config("S1")["max_age"],
        json!(3_600_000_000_000u64)
    );
    assert!(js.stream_info("NOPE").is_none());
    assert!(js.consumer_info("S1", "nope").is_none());
    assert!(js.consumer_names("NOPE").is_empty());

    js.create_consumer(
        "S1",
        &json!({
            "durable_name": "c1", "filter_subject": "s1.x", "ack_policy": "explicit",
            "deliver_policy": "all", "max_deliver": 5
        }),
    );
    js.create_consumer("S1", &json!({"durable_name": "c2", "ack_policy": "none"}));
    assert_eq!(
        js.consumer_names("S1"),
        vec!["c1".to_string(), "c2".to_string()]
    );
    let c1 = js.consumer_config("S1", "c1");
    assert_eq!(consumer_filters(&c1), vec!["s1.x".to_string()]);
    assert_eq!(c1["max_deliver"], json!(5));
    assert_eq!(c1["durable_name"], json!("c1"));
    // Unset max_deliver reads back as -1.
    assert_eq!(js.consumer_config("S1", "c2")["max_deliver"], json!(-1));
    assert!(consumer_filters(&js.consumer_config("S1", "c2")).is_empty());

    js.delete_consumer("S1", "c1");
    assert_eq!(js.consumer_names("S1"), vec!["c2".to_string()]);

    let updated = js.update_stream("S1", |cfg| cfg["max_msgs"] = json!(1000));
    assert_eq!(updated["max_msgs"], json!(1000));
    assert_eq!(js.stream_config("S1")["max_msgs"], json!(1000));

    js.delete_stream("S1");
    assert!(js.stream_names().is_empty());
}

/// restart() brings the server back on the same port with its JetStream store intact.
#[test]
fn restart_keeps_port_and_store() {
    let mut server = NatsServer::start();
    let url = server.url().to_string();
    JetStream::connect(&url).create_stream(&json!({"name": "KEEP", "subjects": ["k.>"]}));
    server.restart();
    assert_eq!(server.url(), url);
    assert_eq!(
        JetStream::connect(server.url()).stream_names(),
        vec!["KEEP".to_string()]
    );
}
