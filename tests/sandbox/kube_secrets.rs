//! Attacks on Kubernetes Secrets through a granted Kubernetes account (the fake API server,
//! granted every method in one namespace): the component may create Secrets and read its
//! own as metadata, never read or change another's. Judged on the fake's side: its request
//! log holds every answer it gave, and none may carry the operator's Secret.

use super::*;
use eventbus_tests::k8s_fake::Fake;

pub const NS: &str = "eventbus";
const OPERATORS: &str = "db-password";

/// The fake API, holding an operator's Secret whose value is a canary.
pub fn start_api() -> Fake {
    let fake = Fake::start();
    let body = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": OPERATORS, "namespace": NS},
        "data": {"password": b64(CANARY)}});
    let (status, answer) = fake.request(
        "POST",
        &format!("/api/v1/namespaces/{NS}/secrets"),
        "application/json",
        &body,
    );
    assert_eq!(status, 201, "creating the operator's Secret: {answer}");
    fake
}

const CANARY: &str = "operators-db-password-canary-7f1e";

fn b64(s: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Nothing the fake answered, and nothing the guest saw, holds the operator's Secret; and it
/// is still stored as the operator wrote it.
fn nothing_left(e: &Env, since: usize) -> Result<(), String> {
    for r in e.kube.requests().iter().skip(since) {
        let text = r["response"].to_string();
        if text.contains(&b64(CANARY)) || text.contains(CANARY) {
            return Err(format!(
                "the API answered {} {} with the operator's Secret",
                r["method"], r["path"]
            ));
        }
    }
    let seen = e.seen.lock().unwrap();
    if seen.contains(&b64(CANARY)) || seen.contains(CANARY) {
        return Err("the operator's Secret reached the component".into());
    }
    drop(seen);
    let stored = e
        .kube
        .object(NS, "secrets", OPERATORS)
        .ok_or("the operator's Secret is gone")?;
    if stored["data"]["password"] != json!(b64(CANARY)) {
        return Err(format!("the operator's Secret was changed: {stored}"));
    }
    Ok(())
}

/// `calls` through the `k8s` account from a create; every answer must be a denial.
async fn all_refused(e: &Env, rt: &Runtime, calls: Vec<Value>) -> Result<(usize, String), String> {
    let since = e.kube.requests().len();
    let mut g = fresh(rt).await?;
    let c = call(e, &mut g, "cloud", json!({"calls": calls})).await;
    let answers = c.out()?.as_array().cloned().unwrap_or_default();
    let mut first = String::new();
    for (a, sent) in answers.iter().zip(&calls) {
        let m = cap_err(a, "denied")
            .map_err(|m| format!("{} {}: {m}", sent["method"], sent["path"]))?;
        if first.is_empty() {
            first = m;
        }
    }
    nothing_left(e, since)?;
    Ok((answers.len(), first))
}

fn k8s(method: &str, path: &str) -> Value {
    json!({"account": "k8s", "method": method, "path": path})
}

pub async fn read_other(e: &Env, rt: &Runtime) -> R {
    let core = format!("/api/v1/namespaces/{NS}");
    let (n, m) = all_refused(
        e,
        rt,
        vec![
            k8s("GET", &format!("{core}/secrets/{OPERATORS}")),
            k8s("GET", &format!("{core}/secrets/{OPERATORS}/")),
            k8s("HEAD", &format!("{core}/secrets/{OPERATORS}")),
            k8s("GET", &format!("{core}/secrets")),
            k8s("GET", &format!("{core}/secrets/")),
            k8s("GET", &format!("{core}/secrets?labelSelector=app")),
            k8s("GET", &format!("{core}/secrets?watch=1")),
            k8s("GET", &format!("{core}/secrets/{OPERATORS}?watch=true")),
            k8s("GET", &format!("/api/v1/watch/namespaces/{NS}/secrets")),
            k8s("GET", "/api/v1/secrets"),
        ],
    )
    .await?;
    Ok(format!(
        "{n} gets, lists and watches of Secrets (trailing slash, query, watch path) -> denied (\"{}\"); the fake answered none with the operator's Secret",
        first_line(&m)
    ))
}

pub async fn crafted(e: &Env, rt: &Runtime) -> R {
    let core = format!("/api/v1/namespaces/{NS}");
    let mut with_accept = k8s("GET", &format!("{core}/secrets/{OPERATORS}"));
    with_accept["headers"] = json!({"Accept": "application/json"});
    let (n, _) = all_refused(
        e,
        rt,
        vec![
            with_accept,
            k8s("GET", &format!("{core}/configmaps/../secrets/{OPERATORS}")),
            k8s("GET", &format!("{core}/secrets%2f{OPERATORS}")),
            k8s("GET", &format!("{core}/secrets/%2e%2e/secrets/{OPERATORS}")),
            k8s("GET", &format!("{core}/secr%65ts/{OPERATORS}")),
            k8s(
                "GET",
                &format!("/api/v1/namespaces/{NS}/./secrets/{OPERATORS}"),
            ),
        ],
    )
    .await?;
    Ok(format!(
        "{n} reads of the operator's Secret with a crafted Accept, .., ., %2f, %2e and secr%65ts -> denied; nothing left the fake"
    ))
}

pub async fn change_other(e: &Env, rt: &Runtime) -> R {
    let core = format!("/api/v1/namespaces/{NS}");
    let mut patch = k8s("PATCH", &format!("{core}/secrets/{OPERATORS}"));
    patch["headers"] = json!({"Content-Type": "application/merge-patch+json"});
    patch["body"] = json!("{}");
    let mut put = k8s("PUT", &format!("{core}/secrets/{OPERATORS}"));
    put["headers"] = json!({"Content-Type": "application/json"});
    put["body"] = json!(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": OPERATORS, "namespace": NS}, "data": {"password": "eA=="}}).to_string());
    let (n, _) = all_refused(
        e,
        rt,
        vec![
            patch,
            put,
            k8s("DELETE", &format!("{core}/secrets/{OPERATORS}")),
            k8s("DELETE", &format!("{core}/secrets")),
        ],
    )
    .await?;
    Ok(format!(
        "{n} patches (an empty merge patch answers the whole Secret), replaces and deletes of the operator's Secret or the collection -> denied; it is stored unchanged"
    ))
}

pub async fn own_metadata(e: &Env, rt: &Runtime) -> R {
    // The component creates its own Secret and reads it back, asking for JSON: it gets the
    // Secret's metadata, never its data.
    let since = e.kube.requests().len();
    let mine = random_text("mine").to_lowercase();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": mine, "namespace": NS}, "stringData": {"v": "own-value-42"}});
    let core = format!("/api/v1/namespaces/{NS}");
    let mut create = k8s("POST", &format!("{core}/secrets"));
    create["headers"] = json!({"Content-Type": "application/json"});
    create["body"] = json!(secret.to_string());
    let mut read = k8s("GET", &format!("{core}/secrets/{mine}"));
    read["headers"] = json!({"Accept": "application/json"});
    let mut g = fresh(rt).await?;
    let c = call(e, &mut g, "cloud", json!({"calls": [create, read]})).await;
    let answers = c.out()?.as_array().cloned().unwrap_or_default();
    let text = serde_json::to_string(&answers).unwrap_or_default();
    if answers.len() != 2 || answers.iter().any(|a| a.get("err").is_some()) {
        return Err(format!(
            "the component could not create and read its own Secret: {text}"
        ));
    }
    if text.contains("own-value-42")
        || text.contains(&b64("own-value-42"))
        || text.contains("\"data\"")
    {
        return Err(format!("the Secret's data came back: {text}"));
    }
    let accept = e
        .kube
        .requests()
        .iter()
        .skip(since)
        .filter(|r| r["method"] == "GET")
        .map(|r| r["accept"].as_str().unwrap_or("").to_string())
        .collect::<Vec<_>>();
    if !accept
        .iter()
        .all(|a| a.contains("as=PartialObjectMetadata"))
    {
        return Err(format!("the read was not asked as metadata: {accept:?}"));
    }
    nothing_left(e, since)?;
    Ok("its own Secret: created, then read with Accept: application/json -> the host asked for PartialObjectMetadata and the answer held no data (nor the create's echo)".into())
}
