//! The parts of a kubeconfig the host needs for a Kubernetes cloud account: the server, a
//! token or a client certificate, and the CA.

use serde_json::Value;

pub(super) fn read_file(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))
}

pub(super) struct Kube {
    pub server: String,
    pub token: Option<String>,
    pub ca: Option<Vec<u8>>,
    pub identity: Option<Vec<u8>>,
}

fn b64(s: &str) -> Result<Vec<u8>, String> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = T.iter().position(|&t| t == c).ok_or("invalid base64")? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// The parts of a kubeconfig the host needs: server, token or client certificate, CA.
pub(super) fn kubeconfig(path: &str, context: Option<&str>) -> Result<Kube, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let doc: Value =
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{path} is not YAML: {e}"))?;
    let ctx_name = context
        .map(String::from)
        .or_else(|| {
            doc.get("current-context")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .ok_or("no context given and no current-context")?;
    let find = |list: &str, name: &str| {
        doc.get(list).and_then(Value::as_array).and_then(|a| {
            a.iter()
                .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
                .cloned()
        })
    };
    let ctx =
        find("contexts", &ctx_name).ok_or(format!("context {ctx_name:?} is not in {path}"))?;
    let cluster_name = ctx
        .pointer("/context/cluster")
        .and_then(Value::as_str)
        .ok_or("the context names no cluster")?;
    let user_name = ctx
        .pointer("/context/user")
        .and_then(Value::as_str)
        .unwrap_or("");
    let cluster = find("clusters", cluster_name)
        .ok_or(format!("cluster {cluster_name:?} is not in {path}"))?;
    let user = find("users", user_name).unwrap_or(Value::Null);
    let data = |v: &Value, inline: &str, file: &str| -> Result<Option<Vec<u8>>, String> {
        if let Some(d) = v.get(inline).and_then(Value::as_str) {
            return b64(d).map(Some);
        }
        v.get(file)
            .and_then(Value::as_str)
            .map(read_file)
            .transpose()
    };
    let c = cluster.get("cluster").cloned().unwrap_or(Value::Null);
    let u = user.get("user").cloned().unwrap_or(Value::Null);
    let ca = data(&c, "certificate-authority-data", "certificate-authority")?;
    let cert = data(&u, "client-certificate-data", "client-certificate")?;
    let key = data(&u, "client-key-data", "client-key")?;
    let identity = cert.zip(key).map(|(mut c, k)| {
        c.push(b'\n');
        c.extend(k);
        c
    });
    Ok(Kube {
        server: c
            .get("server")
            .and_then(Value::as_str)
            .ok_or("the cluster has no server")?
            .to_string(),
        token: u.get("token").and_then(Value::as_str).map(String::from),
        ca,
        identity,
    })
}
