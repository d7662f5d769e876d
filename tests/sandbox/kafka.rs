//! Attacks through the `kafka` import: the component may administer topics, partitions, topic
//! configs, its own consumer group's offsets and ACLs on one literal topic or group, and change
//! them only inside a mutating call for that very topic or group. Every attack runs on a real
//! Kafka (the newest pinned version, one KRaft node behind SASL SCRAM-SHA-512 whose password is
//! the secret `other`, so the aftermath's leak check covers it) and is judged on the server:
//! with confluent-kafka (tests/src/kafka_check.py), or with a granted read in a fresh call.
//! The Kafka starts with the first Kafka attack, so `just sandbox NATS` starts no JVM.

use super::*;
use eventbus_host::caps::kafka::protocol::messages::alter_configs_request::{
    AlterConfigsResource as LegacyResource, AlterableConfig as LegacyConfig,
};
use eventbus_host::caps::kafka::protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use eventbus_host::caps::kafka::protocol::messages::create_acls_request::AclCreation;
use eventbus_host::caps::kafka::protocol::messages::create_partitions_request::CreatePartitionsTopic;
use eventbus_host::caps::kafka::protocol::messages::create_topics_request::CreatableTopic;
use eventbus_host::caps::kafka::protocol::messages::delete_acls_request::DeleteAclsFilter;
use eventbus_host::caps::kafka::protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use eventbus_host::caps::kafka::protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use eventbus_host::caps::kafka::protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use eventbus_host::caps::kafka::protocol::messages::metadata_request::MetadataRequestTopic;
use eventbus_host::caps::kafka::protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use eventbus_host::caps::kafka::protocol::messages::*;
use eventbus_host::caps::kafka::protocol::protocol::{Decodable, Encodable, StrBytes};
use eventbus_tests::kafka::{KAFKA_VERSIONS, Kafka, KafkaCheck, KafkaOpts};
use std::sync::OnceLock;

const USER: &str = "sandbox";
const BROKER: &str = "kbus";
const STREAM: &str = "infra.eventbus.stream";
const CONSUMER: &str = "infra.eventbus.consumer";

static KAFKA: OnceLock<Kafka> = OnceLock::new();

/// The Kafka (started on first use) and the runtime's grant of it: broker `kbus`, credentials
/// as the handle of `other`.
fn kafka(e: &Env, rt: &Runtime) -> &'static Kafka {
    let k = KAFKA.get_or_init(|| {
        let opts = KafkaOpts {
            sasl: Some((USER.into(), e.other.clone())),
            ..Default::default()
        };
        tokio::task::block_in_place(|| Kafka::start_with(KAFKA_VERSIONS[1], opts))
    });
    rt.caps.kafka.grant(&k.bootstrap);
    rt.caps.register_broker(
        BROKER,
        &json!({"bus": "kafka", "bootstrap_servers": [k.bootstrap], "security_protocol": "SASL_PLAINTEXT",
            "sasl": {"mechanism": "SCRAM-SHA-512", "user": USER, "password": "{{secret:other}}"}}),
    );
    k
}

fn check(k: &Kafka) -> KafkaCheck {
    k.check()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A request as the hostile component carries it.
fn raw(key: ApiKey, v: i16, body: &[u8]) -> Value {
    json!({"api_key": key as i16, "api_version": v, "body_hex": hex(body), "timeout_ms": 10000})
}

fn body<T: Encodable>(msg: &T, v: i16) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    msg.encode(&mut b, v).expect("encode");
    b.to_vec()
}

fn rq<T: Encodable>(key: ApiKey, v: i16, msg: &T) -> Value {
    raw(key, v, &body(msg, v))
}

/// `requests` on broker `kbus` from inside `export` for a resource `rtype` with config
/// `resource`; the answers.
async fn send(
    e: &Env,
    rt: &Runtime,
    export: &str,
    rtype: &str,
    resource: Value,
    requests: Vec<Value>,
) -> Result<Vec<Value>, String> {
    let mut g = fresh(rt).await?;
    let params = json!({"broker": BROKER, "requests": requests});
    let c = call_as(e, &mut g, export, rtype, resource, "kafka", params).await;
    let out = c.out()?;
    if out["open"].get("ok").is_none() {
        return Err(format!("opening the granted broker failed: {out}"));
    }
    Ok(out["requests"].as_array().cloned().unwrap_or_default())
}

/// Every answer the cap-error `kind`; the first message.
fn all(answers: &[Value], kind: &str) -> Result<String, String> {
    if answers.is_empty() {
        return Err("no request was made".into());
    }
    let mut first = String::new();
    for (i, a) in answers.iter().enumerate() {
        let m = cap_err(a, kind).map_err(|m| format!("request {i}: {m}"))?;
        if first.is_empty() {
            first = m;
        }
    }
    Ok(first)
}

fn stream(name: &str) -> Value {
    json!({"name": name, "broker_ref": BROKER})
}

/// A topic of the test's with `messages` messages, not in any infra.yaml.
fn victim(k: &Kafka, messages: usize) -> String {
    let name = random_text("victim");
    let c = check(k);
    c.create_topic(&name, 1, 1);
    if messages > 0 {
        c.produce(&name, messages);
    }
    name
}

/// The log's earliest and latest offsets, read by a granted ListOffsets in a fresh call.
async fn offsets(e: &Env, rt: &Runtime, name: &str) -> Result<(i64, i64), String> {
    let ask = |ts: i64| {
        let p = ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(ts);
        let t = ListOffsetsTopic::default()
            .with_name(topic(name))
            .with_partitions(vec![p]);
        rq(
            ApiKey::ListOffsets,
            4,
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![t]),
        )
    };
    let a = send(e, rt, "read", STREAM, stream(name), vec![ask(-2), ask(-1)]).await?;
    let mut out = vec![];
    for answer in &a {
        let hexed = answer["ok_hex"]
            .as_str()
            .ok_or(format!("ListOffsets: {answer}"))?;
        let bytes: Vec<u8> = (0..hexed.len() / 2)
            .map(|i| u8::from_str_radix(&hexed[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        let r = ListOffsetsResponse::decode(&mut bytes::Bytes::from(bytes), 4)
            .map_err(|err| format!("ListOffsets: {err}"))?;
        out.push(r.topics[0].partitions[0].offset);
    }
    Ok((out[0], out[1]))
}

pub async fn data(e: &Env, rt: &Runtime) -> R {
    let k = kafka(e, rt);
    let v = victim(k, 3);
    // Inside a create of that very topic: reading, writing or deleting messages is never granted.
    let del = DeleteRecordsTopic::default()
        .with_name(topic(&v))
        .with_partitions(vec![
            DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(3),
        ]);
    let reqs = vec![
        rq(ApiKey::Produce, 9, &ProduceRequest::default().with_acks(-1)),
        rq(ApiKey::Fetch, 12, &FetchRequest::default()),
        rq(
            ApiKey::DeleteRecords,
            2,
            &DeleteRecordsRequest::default().with_topics(vec![del]),
        ),
    ];
    let m = all(
        &send(e, rt, "create", STREAM, stream(&v), reqs).await?,
        "denied",
    )?;
    let (first, last) = offsets(e, rt, &v).await?;
    if (first, last) != (0, 3) {
        return Err(format!(
            "the victim's log is now {first}..{last} instead of 0..3"
        ));
    }
    Ok(format!(
        "Produce, Fetch, DeleteRecords inside a create of that topic -> denied (\"{}\"); on the server its log is still 0..3",
        first_line(&m)
    ))
}

pub async fn groups(e: &Env, rt: &Runtime) -> R {
    let k = kafka(e, rt);
    let v = victim(k, 1);
    let group = random_text("live");
    let g = || GroupId(s(&group));
    let commit = |member: &str, generation: i32| {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(0)
            .with_committed_offset(1);
        OffsetCommitRequest::default()
            .with_group_id(g())
            .with_member_id(s(member))
            .with_generation_id_or_member_epoch(generation)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(topic(&v))
                    .with_partitions(vec![p]),
            ])
    };
    let reqs = vec![
        rq(
            ApiKey::JoinGroup,
            5,
            &JoinGroupRequest::default()
                .with_group_id(g())
                .with_session_timeout_ms(30000)
                .with_rebalance_timeout_ms(30000)
                .with_protocol_type(s("consumer")),
        ),
        rq(
            ApiKey::SyncGroup,
            3,
            &SyncGroupRequest::default().with_group_id(g()),
        ),
        rq(
            ApiKey::Heartbeat,
            3,
            &HeartbeatRequest::default().with_group_id(g()),
        ),
        rq(
            ApiKey::LeaveGroup,
            3,
            &LeaveGroupRequest::default().with_group_id(g()),
        ),
        rq(ApiKey::OffsetCommit, 8, &commit("consumer-1-x", 1)),
        rq(ApiKey::OffsetCommit, 8, &commit("", 3)),
    ];
    // Inside a create of that very consumer group on that topic.
    let consumer = json!({"name": group, "stream_name": v, "broker_ref": BROKER});
    let m = all(
        &send(e, rt, "create", CONSUMER, consumer, reqs).await?,
        "denied",
    )?;
    if let Some(found) = check(k).group(&group) {
        return Err(format!("the group exists on the server: {found}"));
    }
    Ok(format!(
        "JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit as a member, inside a create of that group -> denied (\"{}\"); the group does not exist on the server",
        first_line(&m)
    ))
}

fn alter(
    rtype: i8,
    name: &str,
    key: &str,
    value: &str,
    validate: bool,
) -> IncrementalAlterConfigsRequest {
    let c = AlterableConfig::default()
        .with_name(s(key))
        .with_config_operation(0)
        .with_value(Some(s(value)));
    IncrementalAlterConfigsRequest::default()
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(rtype)
                .with_resource_name(s(name))
                .with_configs(vec![c]),
        ])
        .with_validate_only(validate)
}

pub async fn configs(e: &Env, rt: &Runtime) -> R {
    let k = kafka(e, rt);
    let v = victim(k, 0);
    // A config of the topic's, set through the grant (an update of that topic may).
    let set = rq(
        ApiKey::IncrementalAlterConfigs,
        1,
        &alter(2, &v, "retention.ms", "3600000", false),
    );
    let ok = send(e, rt, "update", STREAM, stream(&v), vec![set]).await?;
    if ok[0].get("ok_hex").is_none() {
        return Err(format!("the granted config change failed: {}", ok[0]));
    }
    // The legacy AlterConfigs would reset retention.ms by not naming it; broker configs.
    let legacy = AlterConfigsRequest::default().with_resources(vec![
        LegacyResource::default()
            .with_resource_type(2)
            .with_resource_name(s(&v))
            .with_configs(vec![
                LegacyConfig::default()
                    .with_name(s("cleanup.policy"))
                    .with_value(Some(s("compact"))),
            ]),
    ]);
    let reqs = vec![
        rq(ApiKey::AlterConfigs, 2, &legacy),
        rq(
            ApiKey::IncrementalAlterConfigs,
            1,
            &alter(4, "1", "log.retention.ms", "1", false),
        ),
        rq(
            ApiKey::IncrementalAlterConfigs,
            1,
            &alter(4, "", "log.retention.ms", "1", true),
        ),
        rq(
            ApiKey::IncrementalAlterConfigs,
            1,
            &alter(8, "1", "kafka.server.KafkaApis", "TRACE", false),
        ),
    ];
    let m = all(
        &send(e, rt, "update", STREAM, stream(&v), reqs).await?,
        "denied",
    )?;
    let t = check(k).topic(&v).ok_or("the victim topic is gone")?;
    if t["configs"] != json!({"retention.ms": "3600000"}) {
        return Err(format!("the victim's configs changed: {}", t["configs"]));
    }
    Ok(format!(
        "legacy AlterConfigs, broker and broker-logger IncrementalAlterConfigs inside an update of that topic -> denied (\"{}\"); on the server its configs are as set",
        first_line(&m)
    ))
}

pub async fn sasl_apis(e: &Env, rt: &Runtime) -> R {
    kafka(e, rt);
    let auth = SaslAuthenticateRequest::default()
        .with_auth_bytes(bytes::Bytes::from_static(b"\0admin\0guess"));
    let reqs = vec![
        rq(
            ApiKey::SaslHandshake,
            1,
            &SaslHandshakeRequest::default().with_mechanism(s("PLAIN")),
        ),
        rq(ApiKey::SaslAuthenticate, 2, &auth),
        raw(
            ApiKey::DescribeUserScramCredentials,
            0,
            &[0xff, 0xff, 0xff, 0xff],
        ),
        raw(ApiKey::AlterUserScramCredentials, 0, &[]),
        raw(ApiKey::UpdateFeatures, 1, &[]),
        raw(ApiKey::CreateDelegationToken, 3, &[]),
    ];
    let a = send(e, rt, "create", STREAM, stream("orders"), reqs).await?;
    let m = all(&a, "denied")?;
    // The connection is still the host's, authenticated as it was: a read goes through.
    let meta = rq(
        ApiKey::Metadata,
        9,
        &MetadataRequest::default()
            .with_topics(Some(vec![]))
            .with_allow_auto_topic_creation(false),
    );
    let after = send(e, rt, "read", STREAM, stream("orders"), vec![meta]).await?;
    if after[0].get("ok_hex").is_none() {
        return Err(format!("a granted read failed afterwards: {}", after[0]));
    }
    Ok(format!(
        "SaslHandshake, SaslAuthenticate, SCRAM credential, feature and delegation-token APIs -> denied (\"{}\"); the host's session still serves",
        first_line(&m)
    ))
}

pub async fn out_of_scope(e: &Env, rt: &Runtime) -> R {
    let k = kafka(e, rt);
    let v = victim(k, 0);
    let intruder = random_text("intruder");
    let new = CreatableTopic::default()
        .with_name(topic(&intruder))
        .with_num_partitions(1)
        .with_replication_factor(1);
    let acl = AclCreation::default()
        .with_resource_type(2)
        .with_resource_name(s(&v))
        .with_resource_pattern_type(3)
        .with_principal(s("User:intruder"))
        .with_host(s("*"))
        .with_operation(3)
        .with_permission_type(3);
    let reassign = ReassignableTopic::default()
        .with_name(topic(&v))
        .with_partitions(vec![
            ReassignablePartition::default()
                .with_partition_index(0)
                .with_replicas(Some(vec![BrokerId(1)])),
        ]);
    let reqs = vec![
        rq(
            ApiKey::CreateTopics,
            7,
            &CreateTopicsRequest::default()
                .with_topics(vec![new])
                .with_timeout_ms(5000),
        ),
        rq(
            ApiKey::DeleteTopics,
            5,
            &DeleteTopicsRequest::default()
                .with_topic_names(vec![topic(&v)])
                .with_timeout_ms(5000),
        ),
        rq(
            ApiKey::IncrementalAlterConfigs,
            1,
            &alter(2, &v, "retention.ms", "1000", false),
        ),
        rq(
            ApiKey::CreatePartitions,
            3,
            &CreatePartitionsRequest::default()
                .with_topics(vec![
                    CreatePartitionsTopic::default()
                        .with_name(topic(&v))
                        .with_count(4),
                ])
                .with_timeout_ms(5000),
        ),
        rq(
            ApiKey::AlterPartitionReassignments,
            0,
            &AlterPartitionReassignmentsRequest::default().with_topics(vec![reassign]),
        ),
        rq(
            ApiKey::CreateAcls,
            3,
            &CreateAclsRequest::default().with_creations(vec![acl]),
        ),
    ];
    // Inside a create of another topic (`orders`).
    let m = all(
        &send(e, rt, "create", STREAM, stream("orders"), reqs).await?,
        "denied",
    )?;
    let c = check(k);
    let t = c.topic(&v).ok_or("the victim topic was deleted")?;
    if t["partitions"] != 1 || t["configs"] != json!({}) {
        return Err(format!("the victim topic changed: {t}"));
    }
    if c.topic(&intruder).is_some() {
        return Err("a topic outside the call's scope was created".into());
    }
    if !c.acls("User:intruder").is_empty() {
        return Err("an ACL on the victim was created".into());
    }
    Ok(format!(
        "CreateTopics, DeleteTopics, IncrementalAlterConfigs, CreatePartitions, AlterPartitionReassignments, CreateAcls on topics outside a create of `orders` -> denied (\"{}\"); on the server nothing changed",
        first_line(&m)
    ))
}

pub async fn change_in_plan(e: &Env, rt: &Runtime) -> R {
    let k = kafka(e, rt);
    let v = victim(k, 0);
    let planned = random_text("planned");
    let create = |validate| {
        let t = CreatableTopic::default()
            .with_name(topic(&planned))
            .with_num_partitions(1)
            .with_replication_factor(1);
        CreateTopicsRequest::default()
            .with_topics(vec![t])
            .with_timeout_ms(5000)
            .with_validate_only(validate)
    };
    let reqs = vec![
        rq(ApiKey::CreateTopics, 7, &create(false)),
        rq(
            ApiKey::DeleteTopics,
            5,
            &DeleteTopicsRequest::default().with_topic_names(vec![topic(&v)]),
        ),
        rq(ApiKey::CreateTopics, 7, &create(true)),
    ];
    let a = send(e, rt, "plan", STREAM, stream(&planned), reqs).await?;
    let m = all(&a[..2], "denied")?;
    if a[2].get("ok_hex").is_none() {
        return Err(format!(
            "a validate_only CreateTopics was refused in plan: {}",
            a[2]
        ));
    }
    let c = check(k);
    if c.topic(&planned).is_some() || c.topic(&v).is_none() {
        return Err("the plan changed the server's topics".into());
    }
    Ok(format!(
        "CreateTopics and DeleteTopics during plan -> denied (\"{}\"); validate_only answered; on the server nothing was created or deleted",
        first_line(&m)
    ))
}

pub async fn wildcard_acls(e: &Env, rt: &Runtime) -> R {
    let k = kafka(e, rt);
    let v = victim(k, 0);
    let principal = format!("User:{}", random_text("reader"));
    let acl = AclCreation::default()
        .with_resource_type(2)
        .with_resource_name(s(&v))
        .with_resource_pattern_type(3)
        .with_principal(s(&principal))
        .with_host(s("*"))
        .with_operation(3)
        .with_permission_type(3);
    let set = rq(
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(vec![acl]),
    );
    send(e, rt, "create", STREAM, stream(&v), vec![set]).await?;
    if check(k).acls(&principal).len() != 1 {
        return Err("setting up the victim's ACL failed".into());
    }
    let filter = |rtype: i8, name: Option<&str>, pattern: i8| {
        DeleteAclsFilter::default()
            .with_resource_type_filter(rtype)
            .with_resource_name_filter(name.map(s))
            .with_pattern_type_filter(pattern)
            .with_operation(1)
            .with_permission_type(1)
    };
    let prefix = &v[..4];
    let filters = [
        filter(2, None, 3),
        filter(2, Some("*"), 3),
        filter(2, Some(&v), 1),
        filter(2, Some(&v), 2),
        filter(2, Some(prefix), 4),
        filter(1, Some(&v), 3),
    ];
    let reqs: Vec<Value> = filters
        .iter()
        .map(|f| {
            rq(
                ApiKey::DeleteAcls,
                3,
                &DeleteAclsRequest::default().with_filters(vec![f.clone()]),
            )
        })
        .collect();
    // Inside a create of that very topic.
    let m = all(
        &send(e, rt, "create", STREAM, stream(&v), reqs).await?,
        "denied",
    )?;
    if check(k).acls(&principal).len() != 1 {
        return Err("the victim's ACL was deleted".into());
    }
    Ok(format!(
        "DeleteAcls with a null or * name, ANY, MATCH or PREFIXED patterns, or ANY resource type -> denied (\"{}\"); on the server the ACL is still there",
        first_line(&m)
    ))
}

pub async fn ungranted(e: &Env, rt: &Runtime) -> R {
    let k = kafka(e, rt);
    let before = e.tripwire.hits();
    let mut g = fresh(rt).await?;
    let trip = e.tripwire.port;
    let attempts = [
        json!({"bootstrap": [format!("127.0.0.1:{trip}")]}),
        json!({"bootstrap": [k.bootstrap, format!("localhost:{trip}")]}),
        json!({"bootstrap": [format!("127.0.0.1:{trip}")], "sasl": {"mechanism": "PLAIN", "user": USER, "password": "{{secret:other}}"}}),
        json!({"bootstrap": [format!("user@127.0.0.1:{trip}")]}),
    ];
    for p in &attempts {
        let r = call(e, &mut g, "kafka", p.clone()).await;
        let kind = &r.out()?["open"]["err"];
        if kind != "denied" && kind != "invalid" {
            return Err(format!("{p}: {:?}", r));
        }
    }
    let r = call(e, &mut g, "kafka", json!({"broker": "nobody"})).await;
    cap_err(&r.out()?["open"], "unknown")?;
    if e.tripwire.hits() != before {
        return Err("the tripwire listener saw a connection".into());
    }
    Ok(format!(
        "caps/kafka grants: {} ungranted bootstrap lists (the tripwire, a mix with the granted server, with the password handle, user info) and an unknown broker -> refused before any connection",
        attempts.len()
    ))
}

pub async fn password(e: &Env, rt: &Runtime) -> R {
    let k = kafka(e, rt);
    let mut g = fresh(rt).await?;
    // The broker's endpoint as the component reads it back: the handle, never the value.
    let r = call(e, &mut g, "kafka", json!({"broker": BROKER})).await;
    let ep = r.out()?["open"]["ok"]["endpoint"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if !ep.contains("{{secret:other}}") {
        return Err(format!("the endpoint read back shows no handle: {ep}"));
    }
    // The handle as the user name (the server is sent the value as a name and refuses it),
    // and PLAIN with the handle for both: refused, and no text carries the value.
    for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
        let p = json!({"bootstrap": [k.bootstrap], "sasl": {"mechanism": mechanism,
            "user": "{{secret:other}}", "password": "{{secret:other}}"}});
        let r = call(e, &mut g, "kafka", p).await;
        cap_err(&r.out()?["open"], "denied")?;
    }
    Ok("endpoint() shows {{secret:other}}; the handle as SASL user and password -> denied by the server, its value in no answer or log".into())
}

pub async fn decoder_bombs(e: &Env, rt: &Runtime) -> R {
    let k = kafka(e, rt);
    let v = victim(k, 0);
    let mut huge = vec![0x7f, 0xff, 0xff, 0xff];
    huge.extend([0, 0, 0, 0, 0]);
    let mut compact = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    compact.extend([0; 6]);
    let create = CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default().with_name(topic(&v))]);
    let mut trailing = body(&create, 4);
    trailing.extend([0, 0]);
    let mut tagged = body(&create, 7);
    let last = tagged.len() - 1;
    tagged[last] = 1;
    tagged.extend([0, 1, 0]);
    let acl = body(&DeleteAclsRequest::default(), 3);
    let reqs = vec![
        raw(ApiKey::CreateTopics, 4, &huge),
        raw(ApiKey::CreateTopics, 7, &compact),
        raw(ApiKey::DeleteAcls, 1, &huge),
        raw(ApiKey::CreateTopics, 4, &trailing),
        raw(ApiKey::CreateTopics, 7, &tagged),
        raw(ApiKey::DeleteAcls, 3, &acl[..acl.len() - 1]),
    ];
    let m = all(
        &send(e, rt, "create", STREAM, stream(&v), reqs).await?,
        "invalid",
    )?;
    Ok(format!(
        "arrays claiming 2^31 and 2^32 elements, trailing bytes, tagged fields, a cut body -> invalid before decoding (\"{}\")",
        first_line(&m)
    ))
}

pub async fn auto_create(e: &Env, rt: &Runtime) -> R {
    let k = kafka(e, rt);
    let ghost = random_text("ghost");
    let named = |v: i16, auto: bool| {
        let t = MetadataRequestTopic::default().with_name(Some(topic(&ghost)));
        let r = MetadataRequest::default().with_topics(Some(vec![t]));
        rq(
            ApiKey::Metadata,
            v,
            &if v >= 4 {
                r.with_allow_auto_topic_creation(auto)
            } else {
                r
            },
        )
    };
    let a = send(
        e,
        rt,
        "status",
        STREAM,
        stream(&ghost),
        vec![named(12, true), named(4, true)],
    )
    .await?;
    let m = all(&a, "denied")?;
    if check(k).topic(&ghost).is_some() {
        return Err("a topic was auto-created".into());
    }
    Ok(format!(
        "Metadata that would auto-create the topic it names (v12, v4) -> denied (\"{}\"); the topic does not exist",
        first_line(&m)
    ))
}
