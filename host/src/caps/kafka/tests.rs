//! The Kafka policy on real encoded requests: each refusal, each in-scope and out-of-scope
//! case, the body guard, and every checked request at every version it is framed at.

use super::apis::{self, APIS};
use super::cluster::Cluster;
use super::{check, guard, scope};
use crate::caps::CapError;
use crate::caps::grant::CallGrant;
use crate::runtime::wit;
use bytes::BytesMut;
use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, Message, StrBytes};
use serde_json::json;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn topic(v: &str) -> TopicName {
    TopicName(s(v))
}

fn enc<T: Encodable>(msg: &T, v: i16) -> Vec<u8> {
    let mut b = BytesMut::new();
    msg.encode(&mut b, v).expect("encodes");
    b.to_vec()
}

fn spec(rtype: &str, config: serde_json::Value) -> wit::ResourceSpec {
    wit::ResourceSpec {
        name: "r".into(),
        resource_type: rtype.into(),
        config_json: config.to_string(),
        size: String::new(),
        hints: None,
        depends_on: vec![],
    }
}

/// A create of the topic `orders` on broker `k`.
fn topic_call() -> CallGrant {
    let s = spec(
        "infra.eventbus.stream",
        json!({"name": "orders", "broker_ref": "k"}),
    );
    let mut g = CallGrant::mutating(&[&s], &[]);
    g.export = "create";
    g
}

/// A create of the consumer group `billing` on `orders` on broker `k`.
fn group_call() -> CallGrant {
    let s = spec(
        "infra.eventbus.consumer",
        json!({"name": "billing", "stream_name": "orders", "broker_ref": "k"}),
    );
    let mut g = CallGrant::mutating(&[&s], &[]);
    g.export = "create";
    g
}

fn plan() -> CallGrant {
    let mut g = CallGrant::read_only();
    g.export = "plan";
    g
}

fn judge(key: ApiKey, v: i16, body: &[u8], grant: &CallGrant) -> Result<Vec<u8>, CapError> {
    scope::check(
        apis::find(key as i16).expect("permitted"),
        v,
        body,
        "k",
        grant,
    )
}

fn denied(r: Result<Vec<u8>, CapError>, says: &str) {
    match r {
        Err(CapError::Denied(m)) => assert!(m.contains(says), "{m:?} lacks {says:?}"),
        other => panic!("expected a denial saying {says:?}, got {other:?}"),
    }
}

fn create_topics(names: &[&str], validate_only: bool) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_topics(
            names
                .iter()
                .map(|n| {
                    CreatableTopic::default()
                        .with_name(topic(n))
                        .with_num_partitions(3)
                        .with_replication_factor(1)
                })
                .collect(),
        )
        .with_timeout_ms(5000)
        .with_validate_only(validate_only)
}

#[test]
fn apis_outside_administration_are_never_granted() {
    let cluster = Cluster::serving(&[(0, 0, 13), (1, 4, 17), (3, 0, 13), (19, 2, 7)]);
    let all = topic_call();
    for key in [
        0, 1, 11, 12, 13, 14, 17, 21, 22, 24, 25, 26, 28, 33, 36, 50, 51, 57, 9999,
    ] {
        let e = check(&cluster, "k", key, 0, b"", &all, 1 << 20).unwrap_err();
        assert!(
            matches!(&e, CapError::Denied(m) if m.contains("is not granted") && m.contains("CreateTopics")),
            "{key}: {e:?}"
        );
    }
    // Versions outside what both speak, APIs the cluster does not serve, oversized bodies.
    let body = enc(&MetadataRequest::default().with_topics(None), 4);
    assert!(check(&cluster, "k", 3, 4, &body, &all, 1 << 20).is_ok());
    assert!(matches!(
        check(&cluster, "k", 3, 14, &body, &all, 1 << 20),
        Err(CapError::Invalid(_))
    ));
    assert!(matches!(
        check(&cluster, "k", 19, 1, &body, &all, 1 << 20),
        Err(CapError::Invalid(_))
    ));
    assert!(matches!(
        check(&cluster, "k", 20, 4, &body, &all, 1 << 20),
        Err(CapError::Invalid(_))
    ));
    assert!(matches!(
        check(&cluster, "k", 3, 4, &body, &all, 2),
        Err(CapError::Invalid(_))
    ));
}

#[test]
fn reads_pass_in_any_call_untouched() {
    let body = enc(&ListGroupsRequest::default(), 4);
    assert_eq!(judge(ApiKey::ListGroups, 4, &body, &plan()).unwrap(), body);
    let d = DescribeConfigsRequest::default();
    assert!(judge(ApiKey::DescribeConfigs, 4, &enc(&d, 4), &plan()).is_ok());
}

#[test]
fn create_topics_changes_only_the_calls_topic_and_validates_anywhere() {
    // A plan may ask the server to validate any topic; only a create of that topic may create it.
    let v = 7;
    let ask = enc(&create_topics(&["orders", "other"], true), v);
    assert_eq!(judge(ApiKey::CreateTopics, v, &ask, &plan()).unwrap(), ask);
    let make = enc(&create_topics(&["orders"], false), v);
    denied(
        judge(ApiKey::CreateTopics, v, &make, &plan()),
        "`plan` may only read",
    );
    assert_eq!(
        judge(ApiKey::CreateTopics, v, &make, &topic_call()).unwrap(),
        make
    );
    let other = enc(&create_topics(&["orders", "payments"], false), v);
    denied(
        judge(ApiKey::CreateTopics, v, &other, &topic_call()),
        "CreateTopics on topic \"payments\" is outside this `create` call's resource: it may change only topic orders",
    );
    // A consumer's call may not create its topic, nor may another broker's.
    denied(
        judge(ApiKey::CreateTopics, v, &make, &group_call()),
        "outside",
    );
    let b = scope::check(
        apis::find(19).unwrap(),
        v,
        &make,
        "other-broker",
        &topic_call(),
    );
    denied(b, "outside");
}

#[test]
fn delete_topics_by_name_in_scope_only_never_by_id() {
    for v in [1, 5] {
        let r = DeleteTopicsRequest::default().with_topic_names(vec![topic("orders")]);
        assert!(judge(ApiKey::DeleteTopics, v, &enc(&r, v), &topic_call()).is_ok());
        denied(
            judge(ApiKey::DeleteTopics, v, &enc(&r, v), &plan()),
            "may only read",
        );
        let r = DeleteTopicsRequest::default().with_topic_names(vec![topic("victim")]);
        denied(
            judge(ApiKey::DeleteTopics, v, &enc(&r, v), &topic_call()),
            "\"victim\"",
        );
    }
    let by_name = DeleteTopicState::default().with_name(Some(topic("orders")));
    let r = DeleteTopicsRequest::default().with_topics(vec![by_name.clone()]);
    assert!(judge(ApiKey::DeleteTopics, 6, &enc(&r, 6), &topic_call()).is_ok());
    let id = uuid::Uuid::from_u128(0x1234);
    for t in [
        DeleteTopicState::default().with_topic_id(id),
        by_name.with_topic_id(id),
    ] {
        let r = DeleteTopicsRequest::default().with_topics(vec![t]);
        denied(
            judge(ApiKey::DeleteTopics, 6, &enc(&r, 6), &topic_call()),
            "by topic id is refused",
        );
    }
}

#[test]
fn create_partitions_in_scope_or_validate_only() {
    let r = |name: &str, validate| {
        CreatePartitionsRequest::default()
            .with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(topic(name))
                    .with_count(6),
            ])
            .with_validate_only(validate)
    };
    assert!(judge(ApiKey::CreatePartitions, 3, &enc(&r("x", true), 3), &plan()).is_ok());
    denied(
        judge(
            ApiKey::CreatePartitions,
            3,
            &enc(&r("orders", false), 3),
            &plan(),
        ),
        "may only read",
    );
    assert!(
        judge(
            ApiKey::CreatePartitions,
            3,
            &enc(&r("orders", false), 3),
            &topic_call()
        )
        .is_ok()
    );
    denied(
        judge(
            ApiKey::CreatePartitions,
            0,
            &enc(&r("x", false), 0),
            &topic_call(),
        ),
        "\"x\"",
    );
}

fn alter_configs(rtype: i8, name: &str, validate: bool) -> IncrementalAlterConfigsRequest {
    let config = AlterableConfig::default()
        .with_name(s("retention.ms"))
        .with_config_operation(0)
        .with_value(Some(s("1000")));
    IncrementalAlterConfigsRequest::default()
        .with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(rtype)
                .with_resource_name(s(name))
                .with_configs(vec![config]),
        ])
        .with_validate_only(validate)
}

#[test]
fn incremental_alter_configs_on_topics_only() {
    for v in [0, 1] {
        let ok = enc(&alter_configs(2, "orders", false), v);
        assert!(judge(ApiKey::IncrementalAlterConfigs, v, &ok, &topic_call()).is_ok());
        denied(
            judge(ApiKey::IncrementalAlterConfigs, v, &ok, &plan()),
            "may only read",
        );
        let check = enc(&alter_configs(2, "other", true), v);
        assert!(judge(ApiKey::IncrementalAlterConfigs, v, &check, &plan()).is_ok());
        let other = enc(&alter_configs(2, "other", false), v);
        denied(
            judge(ApiKey::IncrementalAlterConfigs, v, &other, &topic_call()),
            "\"other\"",
        );
        // Broker and broker-logger configs: never, not even to validate.
        for (t, word) in [
            (4, "broker resource"),
            (8, "broker-logger resource"),
            (32, "group"),
        ] {
            for validate in [true, false] {
                let b = enc(&alter_configs(t, "1", validate), v);
                denied(
                    judge(ApiKey::IncrementalAlterConfigs, v, &b, &topic_call()),
                    word,
                );
            }
        }
    }
}

#[test]
fn partition_reassignments_of_the_calls_topic_only() {
    let r = |name: &str| {
        AlterPartitionReassignmentsRequest::default().with_topics(vec![
            ReassignableTopic::default()
                .with_name(topic(name))
                .with_partitions(vec![
                    ReassignablePartition::default()
                        .with_partition_index(0)
                        .with_replicas(Some(vec![BrokerId(1)])),
                ]),
        ])
    };
    assert!(
        judge(
            ApiKey::AlterPartitionReassignments,
            0,
            &enc(&r("orders"), 0),
            &topic_call()
        )
        .is_ok()
    );
    denied(
        judge(
            ApiKey::AlterPartitionReassignments,
            0,
            &enc(&r("orders"), 0),
            &plan(),
        ),
        "may only read",
    );
    denied(
        judge(
            ApiKey::AlterPartitionReassignments,
            1,
            &enc(&r("x"), 1),
            &topic_call(),
        ),
        "\"x\"",
    );
}

fn commit(group: &str, topic_name: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(topic(topic_name))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42),
                ]),
        ])
}

#[test]
fn offset_commits_are_administrative_and_for_the_calls_group_only() {
    for v in [2, 8, 9] {
        let ok = enc(&commit("billing", "orders"), v);
        assert!(
            judge(ApiKey::OffsetCommit, v, &ok, &group_call()).is_ok(),
            "v{v}"
        );
        denied(
            judge(ApiKey::OffsetCommit, v, &ok, &plan()),
            "may only read",
        );
        // The topic's own call may not move a group's offsets on it.
        denied(
            judge(ApiKey::OffsetCommit, v, &ok, &topic_call()),
            "outside",
        );
        let other_topic = enc(&commit("billing", "payments"), v);
        denied(
            judge(ApiKey::OffsetCommit, v, &other_topic, &group_call()),
            "\"payments\"",
        );
        let other_group = enc(&commit("fraud", "orders"), v);
        denied(
            judge(ApiKey::OffsetCommit, v, &other_group, &group_call()),
            "\"fraud\"",
        );
        // As a member of the group: never.
        for member in [
            commit("billing", "orders").with_member_id(s("consumer-1-abc")),
            commit("billing", "orders").with_generation_id_or_member_epoch(3),
        ] {
            denied(
                judge(ApiKey::OffsetCommit, v, &enc(&member, v), &group_call()),
                "as a group member",
            );
        }
    }
    let instance = commit("billing", "orders").with_group_instance_id(Some(s("i-1")));
    denied(
        judge(ApiKey::OffsetCommit, 8, &enc(&instance, 8), &group_call()),
        "as a group member",
    );
}

#[test]
fn delete_groups_of_the_calls_consumer_only() {
    let r = |g: &str| DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(g))]);
    assert!(
        judge(
            ApiKey::DeleteGroups,
            2,
            &enc(&r("billing"), 2),
            &group_call()
        )
        .is_ok()
    );
    denied(
        judge(
            ApiKey::DeleteGroups,
            2,
            &enc(&r("billing"), 2),
            &topic_call(),
        ),
        "outside",
    );
    denied(
        judge(ApiKey::DeleteGroups, 0, &enc(&r("fraud"), 0), &group_call()),
        "\"fraud\"",
    );
}

fn acl(rtype: i8, name: &str, pattern: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(rtype)
        .with_resource_name(s(name))
        .with_resource_pattern_type(pattern)
        .with_principal(s("User:app"))
        .with_host(s("*"))
        .with_operation(3)
        .with_permission_type(3)
}

#[test]
fn acls_on_one_literal_topic_or_group_in_scope_only() {
    let r = |a: AclCreation| CreateAclsRequest::default().with_creations(vec![a]);
    for v in [1, 3] {
        assert!(
            judge(
                ApiKey::CreateAcls,
                v,
                &enc(&r(acl(2, "orders", 3)), v),
                &topic_call()
            )
            .is_ok()
        );
        assert!(
            judge(
                ApiKey::CreateAcls,
                v,
                &enc(&r(acl(3, "billing", 3)), v),
                &group_call()
            )
            .is_ok()
        );
        // A group's principal is granted Read on the topic the group reads, and no other.
        assert!(
            judge(
                ApiKey::CreateAcls,
                v,
                &enc(&r(acl(2, "orders", 3)), v),
                &group_call()
            )
            .is_ok()
        );
        denied(
            judge(
                ApiKey::CreateAcls,
                v,
                &enc(&r(acl(2, "payments", 3)), v),
                &group_call(),
            ),
            "\"payments\"",
        );
        denied(
            judge(
                ApiKey::CreateAcls,
                v,
                &enc(&r(acl(2, "orders", 3)), v),
                &plan(),
            ),
            "may only read",
        );
        denied(
            judge(
                ApiKey::CreateAcls,
                v,
                &enc(&r(acl(2, "x", 3)), v),
                &topic_call(),
            ),
            "\"x\"",
        );
        denied(
            judge(
                ApiKey::CreateAcls,
                v,
                &enc(&r(acl(2, "ord", 4)), v),
                &topic_call(),
            ),
            "pattern type 4",
        );
        denied(
            judge(
                ApiKey::CreateAcls,
                v,
                &enc(&r(acl(2, "*", 3)), v),
                &topic_call(),
            ),
            "never null or *",
        );
        denied(
            judge(
                ApiKey::CreateAcls,
                v,
                &enc(&r(acl(4, "kafka-cluster", 3)), v),
                &topic_call(),
            ),
            "resource type 4",
        );
    }
}

#[test]
fn acl_deletes_name_one_literal_resource_in_scope() {
    let f = |rtype: i8, name: Option<&str>, pattern: i8| {
        DeleteAclsRequest::default().with_filters(vec![
            DeleteAclsFilter::default()
                .with_resource_type_filter(rtype)
                .with_resource_name_filter(name.map(s))
                .with_pattern_type_filter(pattern)
                .with_operation(1)
                .with_permission_type(1),
        ])
    };
    for v in [1, 3] {
        assert!(
            judge(
                ApiKey::DeleteAcls,
                v,
                &enc(&f(2, Some("orders"), 3), v),
                &topic_call()
            )
            .is_ok()
        );
        denied(
            judge(
                ApiKey::DeleteAcls,
                v,
                &enc(&f(2, Some("orders"), 3), v),
                &plan(),
            ),
            "may only read",
        );
        denied(
            judge(
                ApiKey::DeleteAcls,
                v,
                &enc(&f(2, None, 3), v),
                &topic_call(),
            ),
            "never null or *",
        );
        denied(
            judge(
                ApiKey::DeleteAcls,
                v,
                &enc(&f(2, Some("*"), 3), v),
                &topic_call(),
            ),
            "never null or *",
        );
        for pattern in [1, 2, 4] {
            let any = enc(&f(2, Some("orders"), pattern), v);
            denied(
                judge(ApiKey::DeleteAcls, v, &any, &topic_call()),
                "only LITERAL",
            );
        }
        denied(
            judge(
                ApiKey::DeleteAcls,
                v,
                &enc(&f(1, Some("orders"), 3), v),
                &topic_call(),
            ),
            "resource type 1",
        );
        denied(
            judge(
                ApiKey::DeleteAcls,
                v,
                &enc(&f(2, Some("victim"), 3), v),
                &topic_call(),
            ),
            "\"victim\"",
        );
    }
}

#[test]
fn metadata_never_creates_the_topics_it_names() {
    let named = |auto| {
        MetadataRequest::default()
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic("t"))),
            ]))
            .with_allow_auto_topic_creation(auto)
    };
    for v in [4, 9, 12] {
        assert!(judge(ApiKey::Metadata, v, &enc(&named(false), v), &plan()).is_ok());
        denied(
            judge(ApiKey::Metadata, v, &enc(&named(true), v), &topic_call()),
            "allow_auto_topic_creation",
        );
    }
    denied(
        judge(ApiKey::Metadata, 1, &enc(&named(true), 1), &plan()),
        "version 4 or later",
    );
    let all = MetadataRequest::default().with_topics(None);
    assert!(judge(ApiKey::Metadata, 1, &enc(&all, 1), &plan()).is_ok());
}

#[test]
fn bodies_that_would_make_the_decoder_allocate_or_smuggle_are_refused() {
    // Two billion topics in seven bytes: refused before kafka-protocol sizes a Vec for them.
    let mut huge = vec![0x7f, 0xff, 0xff, 0xff];
    huge.extend([0, 0, 0]);
    let e = judge(ApiKey::CreateTopics, 4, &huge, &topic_call()).unwrap_err();
    assert!(
        matches!(&e, CapError::Invalid(m) if m.contains("claims 2147483647 elements")),
        "{e:?}"
    );
    // The same in a compact (flexible) array, nested a level down.
    let mut nested = enc(&create_topics(&["orders"], false), 7);
    let at = nested.len() - 1 - 4 - 1 - 1 - 1 - 1; // topic's tags, configs, assignments count
    nested[at] = 0xff;
    nested.splice(at + 1..at + 1, [0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        judge(ApiKey::CreateTopics, 7, &nested, &topic_call()),
        Err(CapError::Invalid(_))
    ));
    // Tagged fields the host cannot judge, and bytes after the request.
    let mut tagged = enc(&create_topics(&["orders"], false), 7);
    let last = tagged.len() - 1;
    tagged[last] = 1;
    tagged.extend([0, 1, 0]);
    let e = judge(ApiKey::CreateTopics, 7, &tagged, &topic_call()).unwrap_err();
    assert!(format!("{e:?}").contains("tagged fields"), "{e:?}");
    let mut trailing = enc(&create_topics(&["orders"], false), 4);
    trailing.push(0);
    let e = judge(ApiKey::CreateTopics, 4, &trailing, &topic_call()).unwrap_err();
    assert!(format!("{e:?}").contains("after the request"), "{e:?}");
}

/// A populated request of each checked API at version `v`, as the component would send it.
fn sample(key: ApiKey, v: i16) -> Vec<u8> {
    let assigned = CreatableReplicaAssignment::default()
        .with_partition_index(0)
        .with_broker_ids(vec![BrokerId(1)]);
    match key {
        ApiKey::CreateTopics => {
            let mut r = create_topics(&["a", "b"], true);
            r.topics[0].assignments = vec![assigned];
            r.topics[1].configs = vec![
                CreatableTopicConfig::default()
                    .with_name(s("x"))
                    .with_value(None),
            ];
            enc(&r, v)
        }
        ApiKey::DeleteTopics if v >= 6 => enc(
            &DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic("a"))),
            ]),
            v,
        ),
        ApiKey::DeleteTopics => enc(
            &DeleteTopicsRequest::default().with_topic_names(vec![topic("a"), topic("b")]),
            v,
        ),
        ApiKey::CreatePartitions => enc(
            &CreatePartitionsRequest::default().with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(topic("a"))
                    .with_assignments(Some(vec![
                        CreatePartitionsAssignment::default()
                            .with_broker_ids(vec![BrokerId(1), BrokerId(2)]),
                    ])),
                CreatePartitionsTopic::default().with_name(topic("b")),
            ]),
            v,
        ),
        ApiKey::IncrementalAlterConfigs => enc(&alter_configs(2, "a", true), v),
        ApiKey::AlterPartitionReassignments => enc(
            &AlterPartitionReassignmentsRequest::default().with_topics(vec![
                ReassignableTopic::default()
                    .with_name(topic("a"))
                    .with_partitions(vec![ReassignablePartition::default().with_replicas(None)]),
            ]),
            v,
        ),
        ApiKey::OffsetCommit => {
            let mut r = commit("g", "a");
            if v >= 7 {
                r.group_instance_id = None;
            }
            r.topics[0].partitions[0].committed_metadata = Some(s("m"));
            enc(&r, v)
        }
        ApiKey::DeleteGroups => enc(
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
            v,
        ),
        ApiKey::CreateAcls => enc(
            &CreateAclsRequest::default().with_creations(vec![acl(2, "a", 3), acl(3, "g", 3)]),
            v,
        ),
        ApiKey::DeleteAcls => enc(
            &DeleteAclsRequest::default().with_filters(vec![
                DeleteAclsFilter::default().with_resource_name_filter(Some(s("a"))),
            ]),
            v,
        ),
        _ => {
            let t = MetadataRequestTopic::default().with_name(Some(topic("a")));
            let r = MetadataRequest::default().with_topics(Some(vec![t]));
            enc(
                &if v >= 4 {
                    r.with_allow_auto_topic_creation(false)
                } else {
                    r
                },
                v,
            )
        }
    }
}

#[test]
fn every_checked_request_walks_and_round_trips_at_every_framed_version() {
    // The guard follows kafka-protocol's layout exactly: what the component encodes passes,
    // and the host sends it byte for byte as it was checked.
    let checked = APIS
        .iter()
        .filter(|a| a.changes != apis::Changes::Never || a.key == ApiKey::Metadata as i16);
    let mut seen = 0;
    for a in checked {
        let key = ApiKey::try_from(a.key).unwrap();
        for v in a.frame.min..=a.frame.max {
            let body = sample(key, v);
            guard::walk(key, v, &body).unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
            let sent =
                scope::check(a, v, &body, "k", &CallGrant::read_only()).or_else(|e| match e {
                    CapError::Denied(_) => Ok(body.clone()), // a change in a read-only call: judged
                    other => Err(other),
                });
            assert_eq!(sent.unwrap(), body, "{key:?} v{v}");
            seen += 1;
        }
    }
    assert!(seen > 40, "{seen}");
    assert_eq!(CreateTopicsRequest::VERSIONS.max, 7);
}
