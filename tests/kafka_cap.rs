//! The host's `kafka` capability against real Kafka servers (tests/src/kafka.rs), through the
//! component boundary: the hostile component (tests/hostile, `kafka` attack) carries request
//! bodies this test encodes with kafka-protocol, so every byte goes through the WIT import the
//! real provider uses. On each pinned version: ApiVersions and Metadata through a PLAINTEXT
//! node, routed to any broker, a node by id and the controller; a broker known by name and its
//! bus; then a SASL node through SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN with the right password
//! handle, and refused with a wrong one, an unknown one or a value instead of a handle.
//!
//! Needs the hostile component (`just hostile`) and Kafka's jars (`scripts/kafka.sh`, fetched
//! by the fixture when missing).

use bytes::BytesMut;
use eventbus_host::caps::Caps;
use eventbus_host::caps::kafka::protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
};
use eventbus_host::caps::kafka::protocol::protocol::{Decodable, Encodable, StrBytes};
use eventbus_host::caps::nats::NatsCap;
use eventbus_host::caps::secrets::SecretStore;
use eventbus_host::runtime::limits::Limits;
use eventbus_host::runtime::{Runtime, wit};
use eventbus_tests::hostile::hostile_wasm;
use eventbus_tests::kafka::{KAFKA_VERSIONS, Kafka, KafkaOpts};
use eventbus_tests::{Value, json};
use std::sync::Arc;

const API_VERSIONS_V: i16 = 3;
const METADATA_V: i16 = 9;

fn hex<T: Encodable>(msg: &T, v: i16) -> String {
    let mut b = BytesMut::new();
    msg.encode(&mut b, v).expect("encode");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn decode<T: Decodable>(answer: &Value, v: i16) -> T {
    let body = unhex(
        answer["ok_hex"]
            .as_str()
            .unwrap_or_else(|| panic!("not ok: {answer}")),
    );
    T::decode(&mut bytes::Bytes::from(body), v).expect("decode the response")
}

fn api_versions() -> Value {
    // v3 carries a client software name and version the broker validates.
    let req = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("kafka-cap-test"))
        .with_client_software_version(StrBytes::from_static_str("1.0"));
    json!({"api_key": ApiKey::ApiVersions as i16, "api_version": API_VERSIONS_V,
        "body_hex": hex(&req, API_VERSIONS_V)})
}

/// Metadata for no topic, to `route` ("any", "controller" or a node id).
fn metadata(route: Value) -> Value {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![]))
        .with_allow_auto_topic_creation(false);
    json!({"api_key": ApiKey::Metadata as i16, "api_version": METADATA_V,
        "body_hex": hex(&req, METADATA_V), "route": route})
}

struct Host {
    rt: Runtime,
    tokio: tokio::runtime::Runtime,
}

impl Host {
    fn new(secrets: SecretStore) -> Host {
        let wasm = hostile_wasm();
        assert!(
            wasm.is_file(),
            "build the hostile component first: cargo build -p eventbus-hostile --target wasm32-wasip2 --release"
        );
        let caps = Arc::new(Caps::new(NatsCap::default(), secrets, Limits::default()));
        let rt = Runtime::new(&wasm, caps).expect("the runtime");
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Host { rt, tokio }
    }

    fn caps(&self) -> &Caps {
        &self.rt.caps
    }

    /// Runs a hostile attack inside a create (any export would do for reads).
    fn attack(&self, name: &str, params: Value) -> Value {
        self.tokio.block_on(async {
            let mut g = self.rt.instance().await.expect("an instance");
            let spec = wit::ResourceSpec {
                name: name.into(),
                resource_type: name.into(),
                config_json: params.to_string(),
                size: String::new(),
                hints: None,
                depends_on: vec![],
            };
            match g.create(&spec).await {
                Ok(Ok(out)) => serde_json::from_str(&out.outputs_json).unwrap(),
                other => panic!("the {name} attack failed: {other:?}"),
            }
        })
    }
}

fn plaintext(version: &str) {
    let kafka = Kafka::start(version);
    let host = Host::new(SecretStore::default());
    let server = kafka.bootstrap.clone();
    host.caps().kafka.grant(&server);
    host.caps().register_broker(
        "kbus",
        &json!({"bus": "kafka", "bootstrap_servers": [server]}),
    );

    let r = host.attack(
        "kafka",
        json!({"broker": "kbus", "api_versions": true, "requests": [
            api_versions(), metadata(json!("any")), metadata(json!(1)),
            metadata(json!("controller")), metadata(json!(99)),
        ]}),
    );
    assert_eq!(r["open"]["ok"]["broker"], "kbus", "{r}");
    // The permitted APIs the server serves: administration, never Produce or Fetch.
    let keys: Vec<i64> = r["api_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[0].as_i64().unwrap())
        .collect();
    for k in [3, 18, 19, 20, 32, 44] {
        assert!(
            keys.contains(&k),
            "{version}: api {k} missing from {keys:?}"
        );
    }
    for k in [0, 1, 11, 17, 21, 33, 36] {
        assert!(!keys.contains(&k), "{version}: api {k} offered: {keys:?}");
    }
    let reqs = r["requests"].as_array().unwrap();
    let av: ApiVersionsResponse = decode(&reqs[0], API_VERSIONS_V);
    assert_eq!(av.error_code, 0);
    assert!(
        av.api_keys.iter().any(|k| k.api_key == 0),
        "the server's own list, unfiltered"
    );
    for (i, a) in reqs[1..4].iter().enumerate() {
        let m: MetadataResponse = decode(a, METADATA_V);
        assert_eq!(m.brokers.len(), 1, "route {i}");
        assert_eq!(m.brokers[0].node_id.0, 1);
        assert_eq!(m.controller_id.0, 1);
        assert_eq!(
            m.cluster_id.as_ref().map(|c| c.to_string()),
            Some(kafka.cluster_id.clone())
        );
    }
    assert_eq!(reqs[4]["err"], "invalid", "{}", reqs[4]);
    assert!(
        reqs[4]["message"]
            .as_str()
            .unwrap()
            .contains("node 99 is not a broker")
    );

    // The same server as an explicit endpoint; an ungranted one is refused before any dial.
    let r = host.attack(
        "kafka",
        json!({"bootstrap": [server], "requests": [metadata(json!("any"))]}),
    );
    assert_eq!(r["open"]["ok"]["broker"], "", "{r}");
    assert!(r["requests"][0]["ok_hex"].is_string(), "{r}");
    let r = host.attack("kafka", json!({"bootstrap": ["127.0.0.1:1"]}));
    assert_eq!(r["open"]["err"], "denied", "{r}");
    assert!(
        r["open"]["message"]
            .as_str()
            .unwrap()
            .contains("allow_kafka"),
        "{r}"
    );

    // The broker's bus, by name and as the only broker.
    let b = host.attack("bus", json!({"names": ["kbus", "", "nope"]}));
    assert_eq!(b["buses"][0]["ok"], "kafka", "{b}");
    assert_eq!(b["buses"][1]["ok"], "kafka", "{b}");
    assert_eq!(b["buses"][2]["err"], "unknown", "{b}");
}

fn sasl(version: &str) {
    let (user, password) = ("alice", "alice-secret-4f1c");
    let kafka = Kafka::start_with(
        version,
        KafkaOpts {
            sasl: Some((user.into(), password.into())),
            ..Default::default()
        },
    );
    let secrets = SecretStore::default();
    let right = secrets.put("kafka/password", password.into());
    let wrong = secrets.put("kafka/wrong", "not-the-password-9e2a".into());
    let host = Host::new(secrets);
    let server = kafka.bootstrap.clone();
    host.caps().kafka.grant(&server);
    let open = |mechanism: &str, pw: &str| {
        json!({"bootstrap": [server], "sasl": {"mechanism": mechanism, "user": user, "password": pw},
            "requests": [metadata(json!("any")), metadata(json!(1))]})
    };
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let r = host.attack("kafka", open(mechanism, &right));
        for a in r["requests"].as_array().unwrap() {
            let m: MetadataResponse = decode(a, METADATA_V);
            assert_eq!(m.brokers[0].node_id.0, 1, "{version} {mechanism}");
        }
        let r = host.attack("kafka", open(mechanism, &wrong));
        assert_eq!(r["open"]["err"], "denied", "{version} {mechanism}: {r}");
        let text = r.to_string();
        assert!(text.contains("SASL"), "{text}");
        assert!(
            !text.contains(password) && !text.contains("not-the-password"),
            "{text}"
        );
    }
    let r = host.attack("kafka", open("SCRAM-SHA-512", "{{secret:nope}}"));
    assert_eq!(r["open"]["err"], "unknown", "{r}");
    let r = host.attack("kafka", open("SCRAM-SHA-512", password));
    assert_eq!(
        r["open"]["err"], "invalid",
        "a value instead of a handle: {r}"
    );

    // A broker known from its outputs (credentials as handles) opens by name.
    host.caps().register_broker(
        "secured",
        &json!({"bus": "kafka", "bootstrap_servers": [server], "security_protocol": "SASL_PLAINTEXT",
            "sasl": {"mechanism": "SCRAM-SHA-512", "user": user, "password": right}}),
    );
    let r = host.attack(
        "kafka",
        json!({"broker": "secured", "requests": [metadata(json!("controller"))]}),
    );
    let m: MetadataResponse = decode(&r["requests"][0], METADATA_V);
    assert_eq!(m.controller_id.0, 1);
    assert!(
        r["open"]["ok"]["endpoint"]
            .as_str()
            .unwrap()
            .contains("{{secret:kafka/password}}")
    );
}

#[test]
fn plaintext_node_versions_metadata_and_routes() {
    for v in KAFKA_VERSIONS {
        plaintext(v);
    }
}

#[test]
fn sasl_node_with_right_and_wrong_passwords() {
    for v in KAFKA_VERSIONS {
        sasl(v);
    }
}
