//! Signature Version 4, by the AWS SDK's signer (`aws-sigv4`): the headers to add to one
//! request (`authorization`, `x-amz-date`, and `x-amz-security-token` for temporary keys).
//! The region and service are the account's; the guest's headers are signed as they go out.

use super::credentials::Keys;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SigningParams, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::SystemTime;

/// The headers that sign `method url` with `headers` and `body`, at `at`.
#[allow(clippy::too_many_arguments)]
pub fn headers(
    keys: &Keys,
    region: &str,
    service: &str,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    at: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let identity: Identity = aws_credential_types::Credentials::new(
        keys.access_key_id.clone(),
        keys.secret_access_key.clone(),
        keys.session_token.clone(),
        keys.expires,
        "eventbus",
    )
    .into();
    let params: SigningParams = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(at)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let request = SignableRequest::new(
        method,
        url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("cannot sign the request: {e}"))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into_parts();
    let (added, _query) = instructions.into_parts();
    Ok(added
        .into_iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn keys(token: Option<&str>) -> Keys {
        Keys {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(String::from),
            expires: None,
        }
    }

    fn find<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_aws_test_suite_get_vanilla_signature() {
        // AWS's published SigV4 test vector "get-vanilla": GET / on example.amazonaws.com,
        // service "service", us-east-1, 2015-08-30T12:36:00Z.
        let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        let h = headers(
            &keys(None),
            "us-east-1",
            "service",
            "GET",
            "https://example.amazonaws.com/",
            &[],
            b"",
            at,
        )
        .unwrap();
        assert_eq!(find(&h, "x-amz-date"), Some("20150830T123600Z"));
        assert_eq!(
            find(&h, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
    }

    #[test]
    fn the_guests_headers_and_a_session_token_are_signed() {
        // X-Amz-Target and Content-Type are in SignedHeaders (a server would refuse them
        // changed in transit); temporary keys add their token.
        let h = headers(
            &keys(Some("session-token")),
            "eu-west-1",
            "kinesis",
            "POST",
            "http://127.0.0.1:4567/",
            &[
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                ("x-amz-target".into(), "Kinesis_20131202.ListStreams".into()),
            ],
            b"{}",
            SystemTime::now(),
        )
        .unwrap();
        let auth = find(&h, "authorization").unwrap();
        assert!(
            auth.contains("/eu-west-1/kinesis/aws4_request")
                && auth.contains(
                    "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target"
                ),
            "{auth}"
        );
        assert_eq!(find(&h, "x-amz-security-token"), Some("session-token"));
    }
}
