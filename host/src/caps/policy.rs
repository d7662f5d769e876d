//! The capability rules as data: what `eventbus policy` prints and `just package` ships as
//! `policy.json`, so that every host loading the component (this one, and the Python and Node
//! hosts to come) enforces one description instead of keeping its own copy. Built from the
//! tables the Rust host enforces itself, so the two cannot drift apart.

use super::cloud::aws::{CREDENTIAL_REFUSALS, READ_ONLY_OPERATION_PREFIXES, SIGNATURE_HEADERS};
use super::grant::{MUTATING_EXPORTS, READ_ONLY_METHODS};
use super::kafka::apis::APIS;
use super::nats::OPERATIONS;
use serde_json::{Value, json};

pub fn describe() -> Value {
    let ops: Vec<Value> = OPERATIONS
        .iter()
        .map(|o| json!({"verb": o.verb, "names": o.names, "changes": o.changes}))
        .collect();
    let kafka_apis: Vec<Value> = APIS
        .iter()
        .map(|a| {
            let mut v = json!({"key": a.key, "name": a.name, "changes": a.changes.as_str()});
            if !a.rule.is_empty() {
                v["rule"] = json!(a.rule);
            }
            v
        })
        .collect();
    json!({
        "version": 1,
        "mutating_exports": MUTATING_EXPORTS,
        "read_only": "every other export: NATS operations that do not change, cloud and HTTP GET and HEAD, handles of existing secrets",
        "nats": {
            "subjects": "$JS.API.<verb>[.<stream>[.<consumer>]], or $JS.<domain>.API.... for a broker with a domain; no wildcards",
            "operations": ops,
            "scope": "a change is allowed only on the stream (and its consumers) or the consumer named by the call's spec config (stream: name; consumer: stream_name + name, on broker_ref) or provider id (BROKER/STREAM, BROKER/STREAM/CONSUMER); a broker's calls change no JetStream object",
        },
        "kafka": {
            "endpoints": "bootstrap servers (host:port) in allow_kafka or a self_hosted Kafka broker's bootstrap_servers, brokers in state or produced in this run; the brokers a granted cluster's Metadata advertises",
            "apis": kafka_apis,
            "refused": "every other API key: Produce, Fetch, group membership (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), transactions, DeleteRecords, the legacy AlterConfigs, SaslHandshake and SaslAuthenticate (the host authenticates), quotas, SCRAM credentials, UpdateFeatures, inter-broker and KRaft APIs",
            "scope": "a change (`always`, or `unless validate_only` without it) only in mutating exports, and only on the call's own objects: a topic is a stream spec's config name (or the provider id's STREAM); a group is a consumer spec's name, its topics its stream_name (one or a list); a broker's calls change no topic or group",
            "bodies": "changing and Metadata requests are decoded (arrays longer than the bytes left, tagged fields and trailing bytes refused) and re-encoded: the server reads what the host checked",
        },
        "cloud": {
            "read_only_methods": READ_ONLY_METHODS,
            "grant": "methods and path prefixes per account (cloud_accounts.NAME.allow); paths with //, \\, whitespace, . or .. segments, %2e, %2f or %5c are refused",
            "aws": {
                "applies_to": "cloud accounts with auth: aws, a region and a service (the signing name); base_url defaults to https://<service>.<region>.amazonaws.com",
                "signing": "Signature Version 4 by the host, for the account's region and service only, over the request as sent (the component's headers included); keys from the account's access_key_id/secret_access_key (${ENV} or secret:// only), its profile, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, the AWS_PROFILE profile of the shared files, or AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (STS AssumeRoleWithWebIdentity); never given to the component, and masked in every answer and log",
                "grant": "allow entries list targets: the X-Amz-Target operations allowed (methods default to [POST], paths to [/]); a request naming an operation needs an entry listing it exactly, one naming none an entry without targets; checked before signing",
                "read_only_operations": READ_ONLY_OPERATION_PREFIXES,
                "read_only": "outside the mutating exports, only operations whose name starts with one of read_only_operations (requests without X-Amz-Target: GET and HEAD)",
                "refused_headers": SIGNATURE_HEADERS,
                "refused": "a second X-Amz-Target, a malformed one, a form body (the Query protocol's Action would bypass the operation grant), and Action or any refused_headers name as a query parameter",
                "credential_refusals": CREDENTIAL_REFUSALS,
                "credential_refusal": "an answer with one of credential_refusals (HTTP 400 or 403) becomes cap-error denied naming where the keys came from; temporary keys are fetched again",
            },
        },
        "http": {"read_only_methods": READ_ONLY_METHODS, "grant": "origins in http_allow; public addresses only, no redirects followed"},
        "secrets": {"generate": "only in mutating exports"},
        "kubernetes_secrets": {
            "applies_to": "cloud accounts with kubeconfig or kind: kubernetes",
            "list_or_watch": "refused",
            "read": "by name, only if created by the component or named in the account's secrets, with Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1; an answer with data or stringData is refused",
            "change": "create allowed; replace, patch, delete under the read rule; collection delete refused; data and stringData removed from every answer",
            "paths": "a % is refused",
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_lists_what_the_host_enforces() {
        // The same tables the checks use: every granted verb, and the mutating exports.
        let p = describe();
        let verbs: Vec<&str> = p["nats"]["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["verb"].as_str().unwrap())
            .collect();
        assert!(verbs.contains(&"STREAM.CREATE") && !verbs.contains(&"STREAM.PURGE"));
        let kafka: Vec<&str> = p["kafka"]["apis"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert!(kafka.contains(&"CreateTopics") && !kafka.contains(&"Produce"));
        // The AWS rule: the signature's headers are refused, the signer's inputs listed.
        let refused = p["cloud"]["aws"]["refused_headers"].as_array().unwrap();
        assert!(
            refused.contains(&json!("authorization")) && refused.contains(&json!("x-amz-date"))
        );
        assert_eq!(
            p["mutating_exports"],
            json!(["create", "update", "delete", "scale", "destroy"])
        );
    }
}
