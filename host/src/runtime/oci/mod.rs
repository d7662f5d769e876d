//! Distribution by digest: the component as an OCI artifact in the component-model layout
//! (wasm-pkg-tools' convention: a `application/vnd.wasm.config.v0+json` config and one
//! `application/wasm` layer), named `oci://REGISTRY/REPO@sha256:<manifest digest>`.
//! `pull.rs` fetches and verifies one, `push.rs` publishes one; this file has what they share.

pub mod pull;
pub mod push;

use anyhow::{Result, anyhow, bail};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference};

pub const SCHEME: &str = "oci://";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Whether `--component` names an OCI artifact rather than a file.
pub fn is_reference(s: &str) -> bool {
    s.starts_with(SCHEME)
}

/// `oci://HOST[:PORT]/REPO[:TAG][@sha256:HEX]`, split into the registry, the repository and
/// what follows. `require_digest` is for loading: a tag can move, a digest cannot.
pub fn parse(s: &str, require_digest: bool) -> Result<Reference> {
    let rest = s
        .strip_prefix(SCHEME)
        .ok_or_else(|| anyhow!("{s:?} is not an oci:// reference"))?;
    let (name, digest) = match rest.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (rest, None),
    };
    let Some((registry, path)) = name.split_once('/') else {
        bail!("{s:?} names no repository: write oci://REGISTRY/REPO@sha256:<digest>");
    };
    // A tag is a ':' after the last '/' (a ':' in the registry part is its port).
    let (repo, tag) = match path.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, Some(t)),
        _ => (path, None),
    };
    if registry.is_empty() || repo.is_empty() {
        bail!(
            "{s:?} names no registry or no repository: write oci://REGISTRY/REPO@sha256:<digest>"
        );
    }
    match digest {
        Some(d) => {
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "{s:?}: the digest must be sha256: followed by 64 hex digits (as `just publish` prints it)"
                );
            }
            Ok(match tag {
                Some(t) => Reference::with_tag_and_digest(
                    registry.into(),
                    repo.into(),
                    t.into(),
                    d.to_ascii_lowercase(),
                ),
                None => {
                    Reference::with_digest(registry.into(), repo.into(), d.to_ascii_lowercase())
                }
            })
        }
        None if require_digest => bail!(
            "{s:?} has no digest: the component is loaded only by digest, so that what runs is what \
             was published; write oci://{name}@sha256:<digest> (`just publish` prints it)"
        ),
        None => Ok(Reference::with_tag(
            registry.into(),
            repo.into(),
            tag.unwrap_or("latest").into(),
        )),
    }
}

/// Plain HTTP only for a registry on this machine (loopback); everything else over TLS.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn client(reference: &Reference) -> Client {
    // The host's TLS is rustls with ring (reqwest's rustls-no-provider): make it the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = reference.resolve_registry().to_string();
    let protocol = if is_loopback(&registry) {
        ClientProtocol::HttpsExcept(vec![registry])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        ..Default::default()
    })
}

/// `sha256:<hex>` of some bytes, the form OCI digests take.
pub fn digest_of(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Display form of a reference, as users write it.
pub fn display(reference: &Reference) -> String {
    let mut s = format!(
        "{SCHEME}{}/{}",
        reference.registry(),
        reference.repository()
    );
    if let Some(t) = reference.tag() {
        s.push(':');
        s.push_str(t);
    }
    if let Some(d) = reference.digest() {
        s.push('@');
        s.push_str(d);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_registry_port_repo_and_digest() {
        let r = parse(&format!("oci://127.0.0.1:5000/eventbus/iac@{D}"), true).unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "eventbus/iac");
        assert_eq!(r.digest(), Some(D));
        assert_eq!(
            display(&r),
            format!("oci://127.0.0.1:5000/eventbus/iac@{D}")
        );
    }

    #[test]
    fn loading_refuses_a_tag_without_a_digest() {
        let e = parse("oci://ghcr.io/acme/iac:1.0", true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no digest"), "{e}");
        assert!(parse("oci://ghcr.io/acme/iac:1.0", false).is_ok());
        assert!(parse("oci://ghcr.io/acme/iac@sha256:abc", true).is_err());
        assert!(parse("oci://ghcr.io@".to_string().as_str(), true).is_err());
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
