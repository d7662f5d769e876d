//! The Kafka APIs the component may use: cluster administration only. Each is read-only, or
//! changes the cluster (then only inside a mutating export, and only on the call's own topics
//! and groups: `scope.rs`), or changes it unless the request only asks the server to validate.
//! Everything else (Produce, Fetch, group membership, transactions, DeleteRecords, the legacy
//! AlterConfigs that resets what it does not name, SASL from the component, quotas, SCRAM
//! credentials, features, the KRaft and inter-broker APIs) is refused.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Message, VersionRange};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changes {
    /// Reads only.
    Never,
    /// Changes the cluster unless the request's `validate_only` is set (how plans ask).
    UnlessValidateOnly,
    /// Changes the cluster.
    Always,
}

impl Changes {
    pub fn as_str(self) -> &'static str {
        match self {
            Changes::Never => "never",
            Changes::UnlessValidateOnly => "unless validate_only",
            Changes::Always => "always",
        }
    }
}

/// One permitted API: its key and name, whether it changes the cluster, the versions the host
/// can frame (and decode, for the ones it checks), and the rule on what it may name.
#[derive(Debug)]
pub struct Api {
    pub key: i16,
    pub name: &'static str,
    pub changes: Changes,
    pub frame: VersionRange,
    pub rule: &'static str,
}

const fn api(
    key: ApiKey,
    name: &'static str,
    changes: Changes,
    frame: VersionRange,
    rule: &'static str,
) -> Api {
    Api {
        key: key as i16,
        name,
        changes,
        frame,
        rule,
    }
}

use Changes::{Always, Never, UnlessValidateOnly};

const ANY: &str = "";
const TOPICS: &str = "every topic in the call's scope";

/// Every permitted API.
pub const APIS: &[Api] = &[
    api(
        ApiKey::ApiVersions,
        "ApiVersions",
        Never,
        ApiVersionsRequest::VERSIONS,
        ANY,
    ),
    api(
        ApiKey::Metadata,
        "Metadata",
        Never,
        MetadataRequest::VERSIONS,
        "topics by name never auto-created: allow_auto_topic_creation false, version 4 or later",
    ),
    api(
        ApiKey::DescribeCluster,
        "DescribeCluster",
        Never,
        DescribeClusterRequest::VERSIONS,
        ANY,
    ),
    api(
        ApiKey::DescribeConfigs,
        "DescribeConfigs",
        Never,
        DescribeConfigsRequest::VERSIONS,
        ANY,
    ),
    api(
        ApiKey::FindCoordinator,
        "FindCoordinator",
        Never,
        FindCoordinatorRequest::VERSIONS,
        ANY,
    ),
    api(
        ApiKey::DescribeGroups,
        "DescribeGroups",
        Never,
        DescribeGroupsRequest::VERSIONS,
        ANY,
    ),
    api(
        ApiKey::ListGroups,
        "ListGroups",
        Never,
        ListGroupsRequest::VERSIONS,
        ANY,
    ),
    api(
        ApiKey::ListOffsets,
        "ListOffsets",
        Never,
        ListOffsetsRequest::VERSIONS,
        ANY,
    ),
    api(
        ApiKey::OffsetFetch,
        "OffsetFetch",
        Never,
        OffsetFetchRequest::VERSIONS,
        ANY,
    ),
    api(
        ApiKey::DescribeAcls,
        "DescribeAcls",
        Never,
        DescribeAclsRequest::VERSIONS,
        ANY,
    ),
    api(
        ApiKey::ListPartitionReassignments,
        "ListPartitionReassignments",
        Never,
        ListPartitionReassignmentsRequest::VERSIONS,
        ANY,
    ),
    api(
        ApiKey::CreateTopics,
        "CreateTopics",
        UnlessValidateOnly,
        CreateTopicsRequest::VERSIONS,
        TOPICS,
    ),
    api(
        ApiKey::CreatePartitions,
        "CreatePartitions",
        UnlessValidateOnly,
        CreatePartitionsRequest::VERSIONS,
        TOPICS,
    ),
    api(
        ApiKey::IncrementalAlterConfigs,
        "IncrementalAlterConfigs",
        UnlessValidateOnly,
        IncrementalAlterConfigsRequest::VERSIONS,
        "topic resources only (never broker, broker-logger or other resources); every topic in the call's scope",
    ),
    api(
        ApiKey::DeleteTopics,
        "DeleteTopics",
        Always,
        DeleteTopicsRequest::VERSIONS,
        "by name only (topic ids refused); every topic in the call's scope",
    ),
    api(
        ApiKey::AlterPartitionReassignments,
        "AlterPartitionReassignments",
        Always,
        AlterPartitionReassignmentsRequest::VERSIONS,
        TOPICS,
    ),
    api(
        ApiKey::OffsetCommit,
        "OffsetCommit",
        Always,
        OffsetCommitRequest::VERSIONS,
        "an administrative commit only (empty member id, generation -1, no group instance id); the group and each topic a consumer of the call's scope",
    ),
    api(
        ApiKey::DeleteGroups,
        "DeleteGroups",
        Always,
        DeleteGroupsRequest::VERSIONS,
        "every group a consumer of the call's scope",
    ),
    api(
        ApiKey::CreateAcls,
        "CreateAcls",
        Always,
        CreateAclsRequest::VERSIONS,
        "literal topic or group resources only, never the * name; each in the call's scope",
    ),
    api(
        ApiKey::DeleteAcls,
        "DeleteAcls",
        Always,
        DeleteAclsRequest::VERSIONS,
        "filters naming one literal topic or group only (no null, * or ANY/MATCH/PREFIXED pattern); each in the call's scope",
    ),
];

/// The permitted API with this key.
pub fn find(key: i16) -> Option<&'static Api> {
    APIS.iter().find(|a| a.key == key)
}

/// The protocol's name for a key, for denials ("API 9999" for one the protocol has not).
pub fn name_of(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(k) => format!("{k:?} ({key})"),
        Err(()) => format!("API {key}"),
    }
}

/// The permitted names, for denials.
pub fn permitted() -> String {
    APIS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_key_as_the_protocol_does() {
        for a in APIS {
            let k = ApiKey::try_from(a.key).expect("a protocol key");
            assert_eq!(format!("{k:?}"), a.name);
            assert!(!a.frame.is_empty());
        }
        for refused in [
            0, 1, 11, 12, 13, 14, 17, 21, 22, 24, 25, 26, 28, 33, 36, 50, 51, 57,
        ] {
            assert!(find(refused).is_none(), "{}", name_of(refused));
        }
        assert_eq!(name_of(0), "Produce (0)");
    }
}
