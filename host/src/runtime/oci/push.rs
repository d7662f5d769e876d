//! Publishing the component: its bytes as the one `application/wasm` layer, a small config in
//! wasm-pkg-tools' media type, and a manifest written here byte for byte, so the same .wasm
//! always gives the same manifest digest (no timestamps) and that digest is known before the
//! push. Returns the reference to pin: `oci://REGISTRY/REPO@sha256:<manifest digest>`.

use super::{CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, digest_of, display};
use anyhow::{Context, Result, anyhow};
use oci_client::secrets::RegistryAuth;
use serde_json::json;
use std::path::Path;

/// The artifact of one component: its config and manifest bytes and the manifest's digest.
pub struct Artifact {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub digest: String,
}

pub fn artifact(wasm: &[u8]) -> Result<Artifact> {
    let layer = digest_of(wasm);
    let config = serde_json::to_vec(&json!({
        "architecture": "wasm",
        "os": "wasip2",
        "layerDigests": [layer],
    }))?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": digest_of(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer,
            "size": wasm.len(),
            "annotations": {"org.opencontainers.image.title": "eventbus_guest.wasm"},
        }],
    }))?;
    let digest = digest_of(&manifest);
    Ok(Artifact {
        config,
        manifest,
        digest,
    })
}

/// Pushes the component at `wasm` to `target` (`oci://REGISTRY/REPO[:TAG]`), or with `dry_run`
/// only computes where it would be; either way returns the pinned reference.
pub async fn publish(wasm: &Path, target: &str, dry_run: bool) -> Result<String> {
    let r = super::parse(target, false)?;
    let bytes =
        std::fs::read(wasm).with_context(|| format!("reading the component {}", wasm.display()))?;
    if !bytes.starts_with(b"\0asm") {
        anyhow::bail!("{} is not a WebAssembly binary", wasm.display());
    }
    let Artifact {
        config,
        manifest,
        digest,
    } = artifact(&bytes)?;
    let pinned = format!(
        "{}{}/{}@{digest}",
        super::SCHEME,
        r.registry(),
        r.repository()
    );
    if dry_run {
        return Ok(pinned);
    }
    let layer = digest_of(&bytes);
    let config_digest = digest_of(&config);
    let client = super::client(&r);
    let name = display(&r);
    let fail = |what: &str| format!("pushing the {what} to {name}");
    client
        .store_auth_if_needed(r.resolve_registry(), &RegistryAuth::Anonymous)
        .await;
    client
        .push_blob(&r, bytes, &layer)
        .await
        .map_err(|e| anyhow!("{}: {e}", fail("component layer")))?;
    client
        .push_blob(&r, config, &config_digest)
        .await
        .map_err(|e| anyhow!("{}: {e}", fail("config")))?;
    // Under the tag if one was given, else under the digest itself.
    let at = match r.tag() {
        Some(_) => r.clone(),
        None => r.clone_with_digest(digest.clone()),
    };
    client
        .push_manifest_raw(
            &at,
            manifest,
            http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
        )
        .await
        .map_err(|e| anyhow!("{}: {e}", fail("manifest")))?;
    Ok(pinned)
}
