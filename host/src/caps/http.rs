//! Plain outbound HTTP for health probes, allow-listed by `scheme://host:port` in the
//! iac.provider module config (`http_allow`). Redirects are never followed; a name must
//! resolve only to public addresses unless the allow-list names a loopback or private
//! address literally; the connection goes to the address that was checked.

use super::CapError;
use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::cloud::Response;
use crate::runtime::bindings::eventbus::iac::http::{Host, Request};
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

#[derive(Default)]
pub struct HttpCap {
    allow: Vec<String>,
}

/// `scheme://host:port` of a URL (default ports filled in), and the host alone.
pub fn origin(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.contains(['@', '\\']) || authority.is_empty() {
        return None;
    }
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let port = authority[end + 1..]
            .strip_prefix(':')
            .map(|p| p.parse().ok())
            .unwrap_or(Some(default))?;
        (authority[..=end].to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (authority.to_string(), default),
        }
    };
    let host = host.to_ascii_lowercase();
    Some((format!("{scheme}://{host}:{port}"), host, port))
}

fn public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            !(v.is_private()
                || v.is_loopback()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || v.is_multicast()
                || v.octets()[0] == 100 && (v.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v) => {
            !(v.is_loopback()
                || v.is_unspecified()
                || v.is_multicast()
                || (v.segments()[0] & 0xfe00) == 0xfc00
                || (v.segments()[0] & 0xffc0) == 0xfe80
                || v.to_ipv4_mapped().is_some_and(|m| !public(IpAddr::V4(m))))
        }
    }
}

impl HttpCap {
    pub fn from_config(config: &Value) -> HttpCap {
        let allow = config
            .get("http_allow")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .filter_map(|u| origin(u).map(|o| o.0))
            .collect();
        HttpCap { allow }
    }

    pub fn allowed(&self, url: &str) -> bool {
        origin(url).is_some_and(|(o, _, _)| self.allow.contains(&o))
    }
}

impl Host for HostState {
    async fn fetch(&mut self, req: Request) -> wasmtime::Result<Result<Response, CapError>> {
        let caps = self.caps.clone();
        if let Err(e) = super::cloud::read_only_allows(&self.grant, &req.method, &req.url) {
            return Ok(Err(e));
        }
        Ok(fetch(&caps, req).await)
    }
}

pub async fn fetch(caps: &super::Caps, req: Request) -> Result<Response, CapError> {
    let Some((origin, host, port)) = origin(&req.url) else {
        return Err(CapError::Denied(format!(
            "{:?} is not an http(s) URL the host will fetch",
            req.url
        )));
    };
    if !caps.http.read().expect("http grants").allowed(&req.url) {
        tracing::warn!(url = %req.url, "http fetch denied: not allow-listed");
        return Err(CapError::Denied(format!(
            "HTTP to {origin} is not granted: add \"{origin}\" to `http_allow` in the iac.provider module config"
        )));
    }
    // Resolve here and pin the connection to a checked address: no DNS rebinding to the inside.
    let literal = host.trim_matches(['[', ']']).parse::<IpAddr>().ok();
    let addrs: Vec<SocketAddr> = match literal {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(a) => a.collect(),
            Err(e) => return Err(CapError::Unavailable(format!("{host}: {e}"))),
        },
    };
    if literal.is_none() && addrs.iter().any(|a| !public(a.ip())) {
        return Err(CapError::Denied(format!(
            "{host} resolves to a private or loopback address; only an allow-listed address literal may be private"
        )));
    }
    let Some(addr) = addrs.first().copied() else {
        return Err(CapError::Unavailable(format!("{host} has no address")));
    };
    let method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
        .map_err(|e| CapError::Invalid(e.to_string()))?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .resolve(host.trim_matches(['[', ']']), addr)
        .build()
        .map_err(|e| CapError::Unavailable(e.to_string()))?;
    let mut b = client.request(method, &req.url);
    for (k, v) in &req.headers {
        let lk = k.to_ascii_lowercase();
        if ["authorization", "proxy-authorization", "cookie", "host"].contains(&lk.as_str()) {
            return Err(CapError::Denied(format!(
                "header {k:?} is not for the guest to set"
            )));
        }
        b = b.header(k.as_str(), v.as_str());
    }
    if req.body.len() > caps.limits.max_payload {
        return Err(CapError::Invalid("request body too large".into()));
    }
    let resp = b
        .body(req.body)
        .send()
        .await
        .map_err(|e| CapError::Unavailable(format!("{origin}: {e}")))?;
    let status = resp.status().as_u16();
    let headers = super::guest_headers(caps, resp.headers(), &[]);
    let body = super::read_body(caps, resp, &origin, super::Oversize::Truncate).await?;
    let body = super::guest_body(caps, body);
    Ok(Response {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_port_and_reject_userinfo_tricks() {
        // `http://good@evil` must not pass as `good`.
        assert_eq!(
            origin("https://Example.com/health").unwrap().0,
            "https://example.com:443"
        );
        assert_eq!(
            origin("http://127.0.0.1:8222/healthz").unwrap().0,
            "http://127.0.0.1:8222"
        );
        assert!(origin("http://good.example@evil.example/").is_none());
        assert!(origin("ftp://x/").is_none());
        let cap = HttpCap::from_config(&serde_json::json!({"http_allow": ["https://example.com"]}));
        assert!(cap.allowed("https://example.com:443/x"));
        assert!(!cap.allowed("https://example.com:8443/x"));
        assert!(!cap.allowed("http://example.com/x"));
    }

    #[test]
    fn private_ranges_are_not_public() {
        // Names resolving here are refused: the inside of the network is not a health probe target.
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!public(ip.parse().unwrap()), "{ip}");
        }
        assert!(public("93.184.216.34".parse().unwrap()));
    }
}
