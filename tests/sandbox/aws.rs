//! Attacks on an AWS account of the cloud capability (`auth: aws`, region eu-west-1, service
//! kinesis, on the fake API): only ListStreams is granted as an operation, and GET /api/store
//! (which echoes the Authorization header it got) as a REST path. The host signs; the component
//! may not pick the operation outside the grant, the region, the endpoint, the keys or any part
//! of the signature. Judged on the fake's side: it counts every request, and none of the
//! refused ones may reach it; the keys are in the leak check of every attack (`aftermath`).

use super::*;

const LIST: &str = "Kinesis_20131202.ListStreams";

/// The account as `Env::caps` grants it.
pub fn account(fake: &str, key_id: &str, secret: &str) -> Value {
    json!({"auth": "aws", "region": "eu-west-1", "service": "kinesis", "base_url": fake,
        "access_key_id": key_id, "secret_access_key": secret,
        "allow": [{"targets": [LIST]}, {"methods": ["GET"], "paths": ["/api/store"]}]})
}

fn op(target: &str) -> Value {
    json!({"account": "aws", "method": "POST", "path": "/", "body": "{}",
        "headers": {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}})
}

/// Every call answered by a cap-error of one of `kinds`, and the fake saw none of them.
async fn all_refused(e: &Env, rt: &Runtime, calls: Vec<Value>, kinds: &[&str]) -> R {
    let before = e.fake.hits();
    let mut g = fresh(rt).await?;
    let c = call(e, &mut g, "cloud", json!({"calls": calls})).await;
    let answers = c.out()?.as_array().cloned().unwrap_or_default();
    if answers.len() != calls.len() {
        return Err(format!(
            "{} answers to {} calls",
            answers.len(),
            calls.len()
        ));
    }
    let mut seen = std::collections::BTreeMap::new();
    for (r, sent) in answers.iter().zip(&calls) {
        let k = typed(r, kinds).map_err(|m| format!("{sent}: {m}"))?;
        *seen.entry(k).or_insert(0) += 1;
    }
    if e.fake.hits() != before {
        return Err(format!(
            "{} request(s) reached the API",
            e.fake.hits() - before
        ));
    }
    Ok(seen
        .iter()
        .map(|(k, n)| format!("{n} cap-error {k}"))
        .collect::<Vec<_>>()
        .join(", "))
}

pub async fn operations(e: &Env, rt: &Runtime) -> R {
    // Operations the grant does not list, however they are spelt or smuggled.
    let mut calls = vec![
        op("Kinesis_20131202.CreateStream"),
        op("Kinesis_20131202.DeleteStream"),
        op("Kinesis_20131202.PutRecords"),
        op("DynamoDB_20120810.ListTables"),
        op("kinesis_20131202.liststreams"),
        op("Kinesis_20131202.ListStreams "),
        op("Kinesis_20131202.ListStreams\r\nX-Amz-Target: Kinesis_20131202.DeleteStream"),
        op("Kinesis_20131202.*"),
    ];
    let mut twice = op(LIST);
    twice["headers"]["x-amz-target"] = json!("Kinesis_20131202.DeleteStream");
    calls.push(twice);
    // No operation named: a POST / that no grant without targets covers.
    calls.push(json!({"account": "aws", "method": "POST", "path": "/", "body": "{}"}));
    // The Query protocol: the operation in a form body or the query string.
    calls.push(json!({"account": "aws", "method": "POST", "path": "/", "body": "Action=DeleteStream&StreamName=x",
        "headers": {"Content-Type": "application/x-www-form-urlencoded", "X-Amz-Target": LIST}}));
    let mut action = op(LIST);
    action["path"] = json!("/?Action=DeleteStream&StreamName=x");
    calls.push(action);
    let n = calls.len();
    let how = all_refused(e, rt, calls, &["denied", "invalid"]).await?;
    Ok(format!(
        "caps/cloud/aws: {n} operations outside {{targets: [{LIST}]}} (other operations and services, case, spaces, CR/LF, wildcards, two targets, none, Action=) -> {how}; the API saw 0 requests"
    ))
}

pub async fn signature_headers(e: &Env, rt: &Runtime) -> R {
    // Every header the signature is made of or carries, in odd cases, and presigning
    // parameters in the query.
    let mut calls = Vec::new();
    for (h, v) in [
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAOTHER/20260101/eu-west-1/kinesis/aws4_request, SignedHeaders=host, Signature=00",
        ),
        ("authorization", "Bearer x"),
        ("X-AMZ-DATE", "20200101T000000Z"),
        ("x-amz-security-token", "forged"),
        ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"),
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
        (
            "X-Amz-Credential",
            "AKIAOTHER/20260101/eu-west-1/kinesis/aws4_request",
        ),
        ("X-Amz-Signature", "00"),
        ("X-Amz-SignedHeaders", "host"),
        ("X-Amz-Expires", "604800"),
        ("Host", "kinesis.eu-west-1.amazonaws.com"),
        ("Date", "Mon, 01 Jan 2024 00:00:00 GMT"),
    ] {
        let mut c = op(LIST);
        c["headers"][h] = json!(v);
        calls.push(c);
    }
    for q in [
        "X-Amz-Signature=00",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAOTHER",
        "x-amz-security-token=forged",
        "X-Amz-Date=20200101T000000Z",
    ] {
        let mut c = op(LIST);
        c["path"] = json!(format!("/?{q}"));
        calls.push(c);
    }
    let n = calls.len();
    let how = all_refused(e, rt, calls, &["denied"]).await?;
    Ok(format!(
        "caps/cloud/aws: {n} requests carrying the signature's headers or presigning parameters -> {how}; the API saw 0 requests"
    ))
}

pub async fn regions(e: &Env, rt: &Runtime) -> R {
    // Other regions and endpoints: accounts that are not granted, a region set (SigV4a) or a
    // host of another region; then a granted request, whose signature the fake echoes back:
    // its scope is the account's region and service.
    let mut calls = vec![
        json!({"account": "aws-us-west-2", "method": "POST", "path": "/", "body": "{}"}),
        json!({"account": "AWS", "method": "GET", "path": "/api/store"}),
    ];
    for (h, v) in [
        ("X-Amz-Region-Set", "us-west-2"),
        ("Host", "kinesis.us-west-2.amazonaws.com"),
    ] {
        let mut c = op(LIST);
        c["headers"][h] = json!(v);
        calls.push(c);
    }
    let mut scoped = op(LIST);
    scoped["path"] =
        json!("/?X-Amz-Credential=AKIAOTHER%2F20260101%2Fus-west-2%2Fkinesis%2Faws4_request");
    calls.push(scoped);
    let n = calls.len();
    let how = all_refused(e, rt, calls, &["denied"]).await?;
    let mut g = fresh(rt).await?;
    let c = call(
        e,
        &mut g,
        "cloud",
        json!({"calls": [{"account": "aws", "method": "GET", "path": "/api/store"}]}),
    )
    .await;
    let answer = &c.out()?[0];
    let auth = answer["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|h| {
            h[0].as_str()
                .is_some_and(|k| k.eq_ignore_ascii_case("x-echo-authorization"))
        })
        .and_then(|h| h[1].as_str())
        .unwrap_or_default()
        .to_string();
    if !auth.contains("/eu-west-1/kinesis/aws4_request") {
        return Err(format!(
            "the granted request was not signed for eu-west-1/kinesis: {answer}"
        ));
    }
    Ok(format!(
        "caps/cloud/aws: {n} attempts at another region or endpoint -> {how}, the API saw 0 of them; a granted request is signed for the account's eu-west-1/kinesis (its key id masked in the echo)"
    ))
}

pub async fn forged_handles(e: &Env, rt: &Runtime) -> R {
    // The keys as handles: the names the host keeps them under resolve to nothing, in a body
    // or in a header; the secrets import does not hand them out either.
    let mut calls = Vec::new();
    for h in [
        "{{secret:cloud/aws/aws_secret_access_key}}",
        "{{secret:cloud/aws/aws_access_key_id}}",
        "{{secret:cloud/aws/aws_session_token}}",
        "{{secret:AWS_SECRET_ACCESS_KEY}}",
    ] {
        let mut body = op(LIST);
        body["body"] = json!(format!("{{\"ExclusiveStartStreamName\":\"{h}\"}}"));
        calls.push(body);
        let mut header = op(LIST);
        header["headers"]["X-Amz-User-Agent"] = json!(h);
        calls.push(header);
    }
    let n = calls.len();
    let how = all_refused(e, rt, calls, &["unknown", "denied"]).await?;
    let mut g = fresh(rt).await?;
    let c = call(
        e,
        &mut g,
        "secrets",
        json!({"named": ["cloud/aws/aws_secret_access_key", "cloud/aws/aws_access_key_id"]}),
    )
    .await;
    for r in c.out()?["named"].as_array().into_iter().flatten() {
        if r.get("handle").is_some() {
            return Err(format!(
                "the secrets import handed out a handle of the AWS keys: {r}"
            ));
        }
    }
    Ok(format!(
        "caps/cloud/aws, caps/secrets.rs: {n} requests with handles of the account's keys -> {how}, the API saw 0; secrets.named of them -> cap-error unknown"
    ))
}
