//! The `cloud` capability's AWS accounts (`auth: aws`, host/src/caps/cloud/aws/) against real
//! Kinesis servers (tests/src/kinesis.rs), through the component boundary: the hostile
//! component (tests/hostile, `cloud` attack) makes each request through the WIT import the
//! real provider uses, so what is tested is what a guest can do.
//!
//! moto verifies every signature (`INITIAL_NO_AUTH_ACTION_COUNT=0`): what it accepts the host
//! signed correctly, and a wrong secret is refused there. Requests the host must refuse are
//! shown not to have left: moto logs every request it answered, and a granted request made
//! afterwards is the last line. kinesis-mock keeps streams per region of the signature, which
//! shows whose region the host signs with. boto3 (tests/src/kinesis_check.py) checks what the
//! servers hold. Every test also runs the canary check: no key, token or web identity token
//! value may appear in anything the component got back or in the host's logs.
//!
//! Needs the hostile component (`just hostile`), moto and boto3 in `.venv` and Node.js
//! (`./dev setup`).

use eventbus_host::caps::Caps;
use eventbus_host::caps::cloud::CloudCap;
use eventbus_host::caps::cloud::aws::credentials::Env;
use eventbus_host::caps::nats::NatsCap;
use eventbus_host::caps::secrets::SecretStore;
use eventbus_host::runtime::limits::Limits;
use eventbus_host::runtime::{Runtime, wit};
use eventbus_tests::hostile::{Logs, hostile_wasm};
use eventbus_tests::kinesis::{KinesisMock, Moto, REGION};
use eventbus_tests::{TempDir, Value, json};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const LIST: &str = "Kinesis_20131202.ListStreams";
const CREATE: &str = "Kinesis_20131202.CreateStream";
const DELETE: &str = "Kinesis_20131202.DeleteStream";
const SUMMARY: &str = "Kinesis_20131202.DescribeStreamSummary";

// ---------------------------------------------------------------------------------------------
// The host's logs, captured for the canary check

/// Everything the host logs in this test binary, at trace.
fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(Logs::capture)
}

// ---------------------------------------------------------------------------------------------
// The host, with one AWS account, driven through the hostile component

struct Host {
    rt: Runtime,
    tokio: tokio::runtime::Runtime,
    /// Values that must never come back to the component or into a log.
    canaries: Vec<String>,
}

/// An `auth: aws` account named `aws` for Kinesis on `endpoint`, with `extra` settings
/// (keys, profile, region) and these operations granted.
fn account(endpoint: &str, extra: Value, targets: &[&str]) -> Value {
    let mut a = json!({"auth": "aws", "region": REGION, "service": "kinesis",
        "base_url": endpoint, "allow": [{"targets": targets}]});
    for (k, v) in extra.as_object().into_iter().flatten() {
        a[k] = v.clone();
    }
    json!({"cloud_accounts": {"aws": a}})
}

impl Host {
    /// The host with `config`'s cloud accounts, AWS credentials looked for in `env` alone.
    fn new(config: Value, env: Env, canaries: &[&str]) -> Host {
        logs();
        let wasm = hostile_wasm();
        assert!(
            wasm.is_file(),
            "build the hostile component first: cargo build -p eventbus-hostile --target wasm32-wasip2 --release"
        );
        let secrets = SecretStore::default();
        let cloud = CloudCap::from_config_in(&config, &secrets, &env)
            .unwrap_or_else(|p| panic!("the cloud accounts: {p:?}"));
        let caps =
            Arc::new(Caps::new(NatsCap::default(), secrets, Limits::default()).with_cloud(cloud));
        let rt = Runtime::new(&wasm, caps).expect("the runtime");
        let tokio = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Host {
            rt,
            tokio,
            canaries: canaries.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// The calls made by the component in a `create` (a mutating export), one answer each:
    /// `{"status", "headers", "body"}` or `{"err": "denied"|..., "message"}`.
    fn create(&self, calls: Vec<Value>) -> Vec<Value> {
        let params = json!({"calls": calls});
        let out = self.tokio.block_on(async {
            let mut g = self.rt.instance().await.expect("an instance");
            let spec = wit::ResourceSpec {
                name: "cloud".into(),
                resource_type: "cloud".into(),
                config_json: params.to_string(),
                size: String::new(),
                hints: None,
                depends_on: vec![],
            };
            match g.create(&spec).await {
                Ok(Ok(out)) => serde_json::from_str::<Value>(&out.outputs_json).unwrap(),
                other => panic!("the cloud attack failed: {other:?}"),
            }
        });
        self.no_canary(&out.to_string());
        out.as_array().cloned().unwrap_or_default()
    }

    /// The same calls in a `read` (a read-only export).
    fn read(&self, calls: Vec<Value>) -> Vec<Value> {
        let carried = json!({"attack": "cloud", "params": {"calls": calls}});
        let out = self.tokio.block_on(async {
            let mut g = self.rt.instance().await.expect("an instance");
            let r = wit::ResourceRef {
                name: "cloud".into(),
                resource_type: "infra.eventbus.stream".into(),
                provider_id: carried.to_string(),
            };
            match g.read(&r).await {
                Ok(Err(wit::ProviderError::Internal(m))) if m.starts_with("report: ") => {
                    serde_json::from_str::<Value>(&m["report: ".len()..]).unwrap()
                }
                other => panic!("the cloud attack in read failed: {other:?}"),
            }
        });
        self.no_canary(&out.to_string());
        out.as_array().cloned().unwrap_or_default()
    }

    /// No canary in `text` nor in the host's logs so far.
    #[track_caller]
    fn no_canary(&self, text: &str) {
        let logged = logs().text();
        for c in &self.canaries {
            assert!(
                !text.contains(c.as_str()),
                "a secret value came back to the component: {text}"
            );
            assert!(
                !logged.contains(c.as_str()),
                "a secret value is in the host's logs"
            );
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let logged = logs().text();
        if !std::thread::panicking() {
            for c in &self.canaries {
                assert!(
                    !logged.contains(c.as_str()),
                    "a secret value is in the host's logs"
                );
            }
        }
    }
}

/// A Kinesis JSON call: POST / with X-Amz-Target.
fn op(target: &str, body: Value) -> Value {
    json!({"account": "aws", "method": "POST", "path": "/", "body": body.to_string(),
        "headers": {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}})
}

/// The answer's status, or a panic naming the error.
#[track_caller]
fn status(answer: &Value) -> u64 {
    answer["status"]
        .as_u64()
        .unwrap_or_else(|| panic!("not an answer: {answer}"))
}

/// The text of a `cap-error` of kind `kind` (denied, invalid, unknown, unavailable).
#[track_caller]
fn cap_error(answer: &Value, kind: &str) -> String {
    assert_eq!(answer["err"], kind, "expected cap-error {kind}: {answer}");
    answer["message"].as_str().unwrap_or_default().to_string()
}

/// The environment of a host holding moto's `eventbus` user's keys.
fn env_keys(moto: &Moto) -> Env {
    Env::of([
        ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", moto.secret_access_key.as_str()),
    ])
}

/// Makes the granted `barrier` call and waits until moto has logged it: every request that
/// left before it is in the log by then, so the count of new lines is what reached moto.
#[track_caller]
fn requests_reaching_moto(moto: &Moto, host: &Host, before: usize, barrier: Value) -> usize {
    let answers = host.create(vec![barrier]);
    assert_eq!(status(&answers[0]), 200, "the barrier call: {}", answers[0]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = moto.requests();
        if now.len() > before {
            return now.len() - before - 1;
        }
        assert!(
            Instant::now() < deadline,
            "moto never logged the barrier call:\n{}",
            moto.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Signing

#[test]
fn moto_accepts_the_streams_the_host_signs_for() {
    // moto verifies the signature of each request: ListStreams and CreateStream through the
    // capability succeed, and the stream is there for boto3.
    let moto = Moto::start();
    let host = Host::new(
        account(&moto.endpoint, json!({}), &[LIST, CREATE]),
        env_keys(&moto),
        &[moto.secret_access_key.as_str()],
    );
    let a = host.create(vec![
        op(LIST, json!({})),
        op(CREATE, json!({"StreamName": "signed", "ShardCount": 1})),
    ]);
    assert_eq!(status(&a[0]), 200, "{}", a[0]);
    assert_eq!(status(&a[1]), 200, "{}", a[1]);
    assert_eq!(moto.check().streams(), ["signed"]);
}

#[test]
fn a_wrong_secret_is_refused_by_moto_and_named_as_such() {
    // The request reaches moto, which answers SignatureDoesNotMatch; the component gets a
    // typed denial naming the code and where the keys came from, and nothing is created.
    let moto = Moto::start();
    let wrong = "not-the-secret-of-this-key-0123456789";
    let host = Host::new(
        account(&moto.endpoint, json!({}), &[LIST, CREATE]),
        Env::of([
            ("AWS_ACCESS_KEY_ID", moto.access_key_id.as_str()),
            ("AWS_SECRET_ACCESS_KEY", wrong),
        ]),
        &[wrong],
    );
    let before = moto.requests().len();
    let a = host.create(vec![op(
        CREATE,
        json!({"StreamName": "refused", "ShardCount": 1}),
    )]);
    let e = cap_error(&a[0], "denied");
    assert!(e.contains("SignatureDoesNotMatch"), "{e}");
    assert!(
        e.contains("AWS_ACCESS_KEY_ID"),
        "names where the keys came from: {e}"
    );
    let seen = moto.requests();
    assert!(
        seen.len() > before && seen[before..].iter().any(|l| l.contains("\" 403 ")),
        "moto refused it itself: {seen:?}"
    );
    assert!(moto.check().streams().is_empty());
}

#[test]
fn an_unknown_key_is_refused_by_moto() {
    // A key moto never issued: InvalidClientTokenId, as a denial.
    let moto = Moto::start();
    let host = Host::new(
        account(&moto.endpoint, json!({}), &[LIST]),
        Env::of([
            ("AWS_ACCESS_KEY_ID", "AKIAUNKNOWN000000000"),
            ("AWS_SECRET_ACCESS_KEY", "unknown-secret-0123456789"),
        ]),
        &["unknown-secret-0123456789"],
    );
    let a = host.create(vec![op(LIST, json!({}))]);
    assert!(
        cap_error(&a[0], "denied").contains("InvalidClientTokenId"),
        "{}",
        a[0]
    );
}

#[test]
fn the_region_is_the_accounts() {
    // kinesis-mock files a stream under the region of the signature's scope: the ARN it
    // answers names the account's region, whatever the component would like.
    let mock = KinesisMock::start();
    let host = Host::new(
        account(
            &mock.endpoint,
            json!({"region": "eu-west-3"}),
            &[CREATE, SUMMARY],
        ),
        Env::of([
            ("AWS_ACCESS_KEY_ID", "AKIAMOCK"),
            ("AWS_SECRET_ACCESS_KEY", "mock-secret-key"),
        ]),
        &["mock-secret-key"],
    );
    let a = host.create(vec![
        op(CREATE, json!({"StreamName": "regional", "ShardCount": 1})),
        op(SUMMARY, json!({"StreamName": "regional"})),
    ]);
    assert_eq!(status(&a[0]), 200, "{}", a[0]);
    let summary: Value = serde_json::from_str(a[1]["body"].as_str().unwrap()).unwrap();
    let arn = summary["StreamDescriptionSummary"]["StreamARN"]
        .as_str()
        .unwrap_or_default();
    assert!(arn.starts_with("arn:aws:kinesis:eu-west-3:"), "{summary}");
    // The checker asks in us-east-1, where the stream is not.
    assert!(mock.check().stream("regional").is_none());
}

// ---------------------------------------------------------------------------------------------
// Grants, checked before signing

#[test]
fn an_operation_outside_the_grant_never_leaves_the_host() {
    // Only ListStreams is granted: CreateStream and DeleteStream are denied naming the grant to
    // add, and moto saw no request but the granted one that followed.
    let moto = Moto::start();
    moto.check().create_stream("kept", 1);
    let host = Host::new(
        account(&moto.endpoint, json!({}), &[LIST]),
        env_keys(&moto),
        &[moto.secret_access_key.as_str()],
    );
    let before = moto.requests().len();
    let a = host.create(vec![
        op(CREATE, json!({"StreamName": "nope", "ShardCount": 1})),
        op(DELETE, json!({"StreamName": "kept"})),
    ]);
    let e = cap_error(&a[0], "denied");
    assert!(
        e.contains("add {targets: [Kinesis_20131202.CreateStream]} to cloud_accounts.aws.allow"),
        "{e}"
    );
    assert!(cap_error(&a[1], "denied").contains("Kinesis_20131202.DeleteStream"));
    assert_eq!(
        requests_reaching_moto(&moto, &host, before, op(LIST, json!({}))),
        0
    );
    assert_eq!(moto.check().streams(), ["kept"]);
}

#[test]
fn the_component_cannot_set_the_signature() {
    // Each header the signature is made of or carries, and presigning query parameters, are
    // refused before signing; none of those requests reached moto.
    let moto = Moto::start();
    let host = Host::new(
        account(&moto.endpoint, json!({}), &[LIST]),
        env_keys(&moto),
        &[moto.secret_access_key.as_str()],
    );
    let before = moto.requests().len();
    let mut calls = Vec::new();
    for (h, v) in [
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAOTHER/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=00",
        ),
        ("X-Amz-Date", "20200101T000000Z"),
        ("X-Amz-Security-Token", "forged"),
        ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"),
        ("Host", "kinesis.eu-west-1.amazonaws.com"),
    ] {
        let mut c = op(LIST, json!({}));
        c["headers"][h] = json!(v);
        calls.push(c);
    }
    let mut presigned = op(LIST, json!({}));
    presigned["path"] = json!("/?X-Amz-Signature=00&X-Amz-Credential=AKIAOTHER");
    calls.push(presigned);
    let mut twice = op(LIST, json!({}));
    twice["headers"]["x-amz-target"] = json!(CREATE);
    calls.push(twice);
    let a = host.create(calls);
    for (i, answer) in a.iter().enumerate() {
        assert!(
            answer["err"].is_string(),
            "call {i} was not refused: {answer}"
        );
    }
    assert!(
        cap_error(&a[1], "denied").contains("set by the host when it signs"),
        "{}",
        a[1]
    );
    assert_eq!(
        requests_reaching_moto(&moto, &host, before, op(LIST, json!({}))),
        0
    );
}

#[test]
fn a_read_only_call_makes_only_describe_list_and_get_operations() {
    // In `read` (a read-only export) ListStreams goes out and CreateStream is refused as a
    // change, though both are granted and both are POSTs.
    let moto = Moto::start();
    let host = Host::new(
        account(&moto.endpoint, json!({}), &[LIST, CREATE]),
        env_keys(&moto),
        &[moto.secret_access_key.as_str()],
    );
    let a = host.read(vec![
        op(LIST, json!({})),
        op(CREATE, json!({"StreamName": "in-read", "ShardCount": 1})),
    ]);
    assert_eq!(status(&a[0]), 200, "{}", a[0]);
    assert!(
        cap_error(&a[1], "denied").contains("may only read"),
        "{}",
        a[1]
    );
    assert!(moto.check().streams().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Where the keys come from

#[test]
fn keys_from_a_profile_in_a_shared_credentials_file() {
    // AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE, as the AWS CLI reads them.
    let moto = Moto::start();
    let dir = TempDir::new("aws-files");
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = AKIADEFAULT000000000\naws_secret_access_key = wrong\n\n[ci]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            moto.access_key_id, moto.secret_access_key
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let host = Host::new(
        account(&moto.endpoint, json!({}), &[CREATE]),
        Env::of([
            ("AWS_SHARED_CREDENTIALS_FILE", file.as_str()),
            ("AWS_CONFIG_FILE", "/nonexistent"),
            ("AWS_PROFILE", "ci"),
        ]),
        &[moto.secret_access_key.as_str()],
    );
    let a = host.create(vec![op(
        CREATE,
        json!({"StreamName": "from-profile", "ShardCount": 1}),
    )]);
    assert_eq!(status(&a[0]), 200, "{}", a[0]);
    assert_eq!(moto.check().streams(), ["from-profile"]);
}

#[test]
fn keys_from_secret_handles_in_the_account() {
    // access_key_id and secret_access_key as secret://NAME, read as every secret:// is.
    let moto = Moto::start();
    let host = Host::new(
        account(
            &moto.endpoint,
            json!({"access_key_id": "secret://moto-key-id", "secret_access_key": "secret://moto-secret"}),
            &[CREATE],
        ),
        Env::of([
            ("EVENTBUS_SECRET_MOTO_KEY_ID", moto.access_key_id.as_str()),
            (
                "EVENTBUS_SECRET_MOTO_SECRET",
                moto.secret_access_key.as_str(),
            ),
        ]),
        &[moto.secret_access_key.as_str()],
    );
    let a = host.create(vec![op(
        CREATE,
        json!({"StreamName": "from-secrets", "ShardCount": 1}),
    )]);
    assert_eq!(status(&a[0]), 200, "{}", a[0]);
    assert_eq!(moto.check().streams(), ["from-secrets"]);
}

#[test]
fn keys_from_a_web_identity_token() {
    // AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN: the host exchanges the token at STS (moto's,
    // through AWS_ENDPOINT_URL_STS) for the role's temporary keys and signs with them and their
    // session token; moto checks both. The exchange is unsigned, as AWS takes it; moto refuses
    // unsigned requests, so exactly one is let through. The keys are kept for the next call.
    let moto = Moto::start();
    let dir = TempDir::new("web-identity");
    let token_file = dir.path().join("token");
    let token = "eyJhbGciOiJSUzI1NiJ9.web-identity-canary-token.c2ln";
    std::fs::write(&token_file, token).unwrap();
    let token_path = token_file.display().to_string();
    let host = Host::new(
        account(&moto.endpoint, json!({}), &[LIST, CREATE]),
        Env::of([
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token_path.as_str()),
            ("AWS_ROLE_ARN", moto.role_arn.as_str()),
            ("AWS_ENDPOINT_URL_STS", moto.endpoint.as_str()),
        ]),
        &[token],
    );
    moto.allow_unsigned(1);
    let a = host.create(vec![
        op(
            CREATE,
            json!({"StreamName": "from-web-identity", "ShardCount": 1}),
        ),
        op(LIST, json!({})),
    ]);
    assert_eq!(status(&a[0]), 200, "{}", a[0]);
    assert_eq!(status(&a[1]), 200, "{}", a[1]);
    assert_eq!(moto.check().streams(), ["from-web-identity"]);
    let sts: Vec<String> = moto
        .log()
        .lines()
        .filter(|l| l.contains("AssumeRoleWithWebIdentity"))
        .map(String::from)
        .collect();
    assert!(sts.len() <= 1, "the role's keys are fetched once: {sts:?}");
}

// ---------------------------------------------------------------------------------------------
// Secrets stay in the host

#[test]
fn key_values_never_reach_the_component_or_the_logs() {
    // The component tries to get the keys: as a handle in a tag value (host-held names have no
    // handle that resolves), reflected in an error, and by reading what it stored. Every answer
    // and the host's logs are searched for the values (Host::no_canary, after every call).
    let moto = Moto::start();
    let host = Host::new(
        account(
            &moto.endpoint,
            json!({}),
            &[
                CREATE,
                "Kinesis_20131202.AddTagsToStream",
                "Kinesis_20131202.ListTagsForStream",
            ],
        ),
        env_keys(&moto),
        &[moto.secret_access_key.as_str(), moto.access_key_id.as_str()],
    );
    let a = host.create(vec![
        op(CREATE, json!({"StreamName": "canary", "ShardCount": 1})),
        op(
            "Kinesis_20131202.AddTagsToStream",
            json!({"StreamName": "canary", "Tags": {"k": "{{secret:cloud/aws/aws_secret_access_key}}"}}),
        ),
        op(
            "Kinesis_20131202.AddTagsToStream",
            json!({"StreamName": "canary", "Tags": {"id": moto.access_key_id}}),
        ),
        op("Kinesis_20131202.ListTagsForStream", json!({"StreamName": "canary"})),
    ]);
    assert_eq!(status(&a[0]), 200, "{}", a[0]);
    assert!(
        cap_error(&a[1], "unknown").contains("unknown to the host"),
        "{}",
        a[1]
    );
    // The id the component wrote in plain text is stored, but reads back masked.
    assert_eq!(status(&a[3]), 200, "{}", a[3]);
    assert!(
        a[3]["body"]
            .as_str()
            .unwrap()
            .contains("{{secret:cloud/aws/aws_access_key_id}}"),
        "{}",
        a[3]
    );
    assert_eq!(
        moto.check().stream("canary").unwrap()["tags"]["id"],
        json!(moto.access_key_id)
    );
}
