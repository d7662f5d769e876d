//! AWS accounts of the `cloud` capability (`auth: aws`): the host signs every request with
//! Signature Version 4 for the account's region and service, with keys it found itself
//! (`credentials.rs`); the component names the operation (`X-Amz-Target`) and the body, never
//! the signature. Kinesis is the first user; MSK, ECS and EKS go through the same signer.
//!
//! What the component may not do on an AWS account, whatever the grant:
//! - set a header the signature is made of or carries (`SIGNATURE_HEADERS`), or put
//!   presigning parameters (`X-Amz-Signature`, `X-Amz-Credential`...) in the query;
//! - name an operation any other way than one `X-Amz-Target` (the Query protocol's
//!   `Action=` parameter or form body is refused, so the operation grant cannot be bypassed);
//! - choose the region, the service or the endpoint: all three are the account's.

pub mod credentials;
pub mod profile;
pub mod sigv4;
pub mod web_identity;

use super::ConfigProblem;
use crate::caps::CapError;
use crate::caps::secrets::SecretStore;
use credentials::{Credentials, Env};
use serde_json::Value;

/// An account with `auth: aws`.
pub struct AwsAccount {
    pub region: String,
    pub service: String,
    pub credentials: Credentials,
}

/// Headers only the signer sets: the signature, its inputs, and what proxies or the HTTP
/// client own. Refused from the guest (lower case).
pub const SIGNATURE_HEADERS: [&str; 12] = [
    "authorization",
    "host",
    "date",
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-signature",
    "x-amz-signedheaders",
    "x-amz-expires",
    "x-amz-region-set",
];

/// Operations a read-only call may make: AWS names its reads Describe*, List* and Get*.
pub const READ_ONLY_OPERATION_PREFIXES: [&str; 3] = ["Describe", "List", "Get"];

/// The operation half of a target (`Kinesis_20131202.DescribeStream` → `DescribeStream`)
/// reads nothing but is a read.
pub fn reads_only(target: &str) -> bool {
    let op = target.split_once('.').map_or(target, |(_, op)| op);
    READ_ONLY_OPERATION_PREFIXES
        .iter()
        .any(|p| op.starts_with(p))
}

/// https, or plain http to a loopback address (local test servers).
pub fn secure_url(url: &str) -> bool {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", ""));
    let host = rest.split(['/', ':']).next().unwrap_or("");
    let loopback = host == "localhost" || host.starts_with("127.") || rest.starts_with("[::1]");
    scheme == "https" || scheme == "http" && loopback
}

/// Reads an `auth: aws` account: region, service, endpoint, and its credentials by the chain.
/// Returns the account and its base URL.
pub fn from_config(
    name: &str,
    a: &Value,
    env: &Env,
    secrets: &SecretStore,
) -> Result<(AwsAccount, String), Vec<ConfigProblem>> {
    let at = |k: &str| format!("config.cloud_accounts.{name}.{k}");
    let word = |k: &str| {
        a.get(k)
            .and_then(Value::as_str)
            .filter(|v| {
                !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
            .map(String::from)
    };
    let mut problems = Vec::new();
    let region = word("region");
    if region.is_none() {
        problems.push((
            at("region"),
            "an AWS account needs its region".into(),
            "set region, such as eu-central-1".into(),
        ));
    }
    let service = word("service");
    if service.is_none() {
        problems.push((
            at("service"),
            "an AWS account needs the service it signs for".into(),
            "set service to the signing name, such as kinesis".into(),
        ));
    }
    let (Some(region), Some(service)) = (region, service) else {
        return Err(problems);
    };
    let base = a
        .get("base_url")
        .and_then(Value::as_str)
        .map(|b| b.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("https://{service}.{region}.amazonaws.com"));
    match credentials::find(name, a, &region, env, secrets) {
        Ok(credentials) => Ok((
            AwsAccount {
                region,
                service,
                credentials,
            },
            base,
        )),
        Err(p) => Err(vec![p]),
    }
}

/// The fields of an AWS account that hold keys: only `${ENV}` or `secret://NAME` in the file.
pub const KEY_FIELDS: [&str; 3] = ["access_key_id", "secret_access_key", "session_token"];

/// Keys written into the file in plain text (before `${ENV}` expansion): (field, message, fix).
pub fn plain_text_keys(provider_config: &Value) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    let Some(accounts) = provider_config
        .get("cloud_accounts")
        .and_then(Value::as_object)
    else {
        return out;
    };
    for (name, a) in accounts {
        for k in KEY_FIELDS {
            let Some(v) = a.get(k).and_then(Value::as_str) else {
                continue;
            };
            let reference = v.starts_with("secret://")
                || v.starts_with("${") && v.ends_with('}') && v.matches("${").count() == 1;
            if !reference {
                out.push((
                    format!("config.cloud_accounts.{name}.{k}"),
                    "an AWS key written in the file".into(),
                    format!(
                        "write {k}: ${{ENV_VAR}} or secret://NAME (or leave it out: the environment and ~/.aws are read)"
                    ),
                ));
            }
        }
    }
    out
}

/// The request's operation, after checking the guest's headers and query leave the signature
/// to the host: `Ok(Some(target))`, `Ok(None)` for a request naming no operation.
pub fn check_request<'a>(
    account: &str,
    headers: &'a [(String, String)],
    query: Option<&str>,
) -> Result<Option<&'a str>, CapError> {
    let mut target = None;
    for (k, v) in headers {
        let lk = k.to_ascii_lowercase();
        if SIGNATURE_HEADERS.contains(&lk.as_str()) {
            return Err(CapError::Denied(format!(
                "header {k:?} is set by the host when it signs for cloud account {account:?} (auth: aws), not by the component"
            )));
        }
        if lk == "content-type" && v.to_ascii_lowercase().contains("x-www-form-urlencoded") {
            return Err(CapError::Denied(format!(
                "a form body (AWS's Query protocol) on cloud account {account:?}: its Action escapes the X-Amz-Target grant, so the host sends only JSON and REST requests to AWS"
            )));
        }
        if lk == "x-amz-target" {
            if target.is_some() {
                return Err(CapError::Invalid(
                    "X-Amz-Target is given twice: a request names one operation".into(),
                ));
            }
            if !super::grant::valid_target(v) {
                return Err(CapError::Invalid(format!(
                    "X-Amz-Target {v:?} is not Service_Version.Operation"
                )));
            }
            target = Some(v.as_str());
        }
    }
    for pair in query.unwrap_or("").split('&') {
        let key = pair.split('=').next().unwrap_or("").to_ascii_lowercase();
        if key == "action" || SIGNATURE_HEADERS.contains(&key.as_str()) {
            return Err(CapError::Denied(format!(
                "the query parameter {key:?} on cloud account {account:?} would name an operation or a signature outside the host's: the host signs, and operations go in X-Amz-Target"
            )));
        }
    }
    Ok(target)
}

/// AWS's error code in an answer (`__type` of the JSON protocols, `<Code>` of the XML ones).
pub fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        let t = v.get("__type").or_else(|| v.get("code"))?.as_str()?;
        // `com.amazon.coral.service#UnrecognizedClientException`
        return Some(t.rsplit('#').next().unwrap_or(t).to_string());
    }
    let start = text.find("<Code>")? + "<Code>".len();
    let end = text[start..].find("</Code>")? + start;
    Some(text[start..end].trim().to_string())
}

/// Codes with which AWS refuses the credentials or the signature rather than the operation.
pub const CREDENTIAL_REFUSALS: [&str; 9] = [
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_signature_is_the_hosts_alone() {
        // Any header the signature is made of or carries is refused, whatever its case.
        for name in [
            "Authorization",
            "X-Amz-Date",
            "x-amz-security-token",
            "X-Amz-Content-Sha256",
            "Host",
        ] {
            let headers = h(&[(name, "x")]);
            let r = check_request("aws", &headers, None);
            assert!(matches!(r, Err(CapError::Denied(_))), "{name}: {r:?}");
        }
        for q in [
            "X-Amz-Signature=x",
            "a=1&X-Amz-Credential=y",
            "Action=DeleteStream",
        ] {
            let r = check_request("aws", &[], Some(q));
            assert!(matches!(r, Err(CapError::Denied(_))), "{q}: {r:?}");
        }
    }

    #[test]
    fn one_well_formed_operation_per_request() {
        // Two targets (a server might read either) and malformed ones are refused.
        let t = "Kinesis_20131202.ListStreams";
        assert_eq!(
            check_request("aws", &h(&[("X-Amz-Target", t)]), None).unwrap(),
            Some(t)
        );
        assert!(
            check_request("aws", &h(&[("X-Amz-Target", t), ("x-amz-target", t)]), None).is_err()
        );
        assert!(check_request("aws", &h(&[("X-Amz-Target", "Kinesis .List")]), None).is_err());
        let form = h(&[("Content-Type", "application/x-www-form-urlencoded")]);
        assert!(matches!(
            check_request("aws", &form, None),
            Err(CapError::Denied(_))
        ));
    }

    #[test]
    fn reads_are_describe_list_and_get() {
        assert!(reads_only("Kinesis_20131202.DescribeStreamSummary"));
        assert!(reads_only("Kinesis_20131202.ListStreamConsumers"));
        assert!(!reads_only("Kinesis_20131202.CreateStream"));
        assert!(!reads_only("Kinesis_20131202.UpdateShardCount"));
    }

    #[test]
    fn keys_in_the_file_must_be_references() {
        // A pasted key is refused; ${VAR} and secret://NAME are not.
        let cfg = serde_json::json!({"cloud_accounts": {"aws": {
            "access_key_id": "${AWS_KEY}", "secret_access_key": "wJalrXUtnFEMI", "session_token": "secret://t"}}});
        let p = plain_text_keys(&cfg);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "config.cloud_accounts.aws.secret_access_key");
    }

    #[test]
    fn error_codes_are_read_from_json_and_xml_answers() {
        assert_eq!(
            error_code(br#"{"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"x"}"#).as_deref(),
            Some("UnrecognizedClientException")
        );
        assert_eq!(
            error_code(
                b"<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code></Error></ErrorResponse>"
            )
            .as_deref(),
            Some("SignatureDoesNotMatch")
        );
    }
}
