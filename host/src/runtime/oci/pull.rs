//! Loading `oci://REGISTRY/REPO@sha256:<manifest digest>`: the manifest's bytes must hash to
//! the digest in the reference, the one `application/wasm` layer's bytes to the digest in that
//! manifest, before anything is compiled. The verified blob is kept by digest under the cache
//! directory (`oci/`), and re-verified whenever it is used from there.

use super::{CONFIG_MEDIA_TYPE, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, digest_of, display};
use crate::runtime::cache::cache_dir;
use anyhow::{Context, Result, anyhow, bail};
use oci_client::Reference;
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use std::path::{Path, PathBuf};

/// The component's file for `reference` (`oci://…@sha256:…`), pulled and verified if the
/// cache does not already hold it. Blocking: it runs its own small runtime on a thread of its
/// own, so it may be called from inside the CLI's.
pub fn fetch(reference: &str) -> Result<PathBuf> {
    let r = super::parse(reference, true)?;
    let dir = cache_dir().join("oci");
    if let Some(path) = cached(&dir, &r)? {
        return Ok(path);
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime for the registry pull")?
                .block_on(pull(&dir, &r))
        })
        .join()
        .map_err(|_| anyhow!("the registry pull panicked"))?
    })
}

/// The blob the cache holds for this manifest digest, if both still hash to their digests.
fn cached(dir: &Path, r: &Reference) -> Result<Option<PathBuf>> {
    let want = r.digest().unwrap_or_default();
    let Ok(manifest) = std::fs::read(manifest_file(dir, want)) else {
        return Ok(None);
    };
    if digest_of(&manifest) != want {
        return Ok(None);
    }
    let layer = layer_of(r, &manifest)?;
    let blob = blob_file(dir, &layer);
    match std::fs::read(&blob) {
        Ok(bytes) if digest_of(&bytes) == layer => Ok(Some(blob)),
        _ => Ok(None),
    }
}

async fn pull(dir: &Path, r: &Reference) -> Result<PathBuf> {
    let name = display(r);
    let want = r.digest().unwrap_or_default().to_string();
    let client = super::client(r);
    let auth = RegistryAuth::Anonymous;
    let (manifest, _) = client
        .pull_manifest_raw(r, &auth, &[MANIFEST_MEDIA_TYPE])
        .await
        .map_err(|e| refusal(&name, "manifest", e))?;
    // oci-client compares the bytes with the reference's digest too; this check is ours, so
    // the guarantee does not rest on a dependency's internals.
    let got = digest_of(&manifest);
    if got != want {
        bail!(mismatch(&name, "manifest", &want, &got));
    }
    let layer = layer_of(r, &manifest)?;
    let parsed: OciImageManifest = serde_json::from_slice(&manifest)?;
    let mut blob = Vec::new();
    client
        .pull_blob(r, &parsed.layers[0], &mut blob)
        .await
        .map_err(|e| refusal(&name, "component layer", e))?;
    let got = digest_of(&blob);
    if got != layer {
        bail!(mismatch(&name, "component layer", &layer, &got));
    }
    let path = blob_file(dir, &layer);
    write_atomic(&path, &blob)
        .and_then(|()| write_atomic(&manifest_file(dir, &want), &manifest))
        .with_context(|| format!("caching the component in {}", dir.display()))?;
    tracing::info!(
        "pulled {name} ({} bytes) into {}",
        blob.len(),
        path.display()
    );
    Ok(path)
}

/// The digest of the one `application/wasm` layer of a component artifact's manifest.
fn layer_of(r: &Reference, manifest: &[u8]) -> Result<String> {
    let name = display(r);
    let m: OciImageManifest = serde_json::from_slice(manifest)
        .with_context(|| format!("{name}: the manifest is not an OCI image manifest"))?;
    if m.config.media_type != CONFIG_MEDIA_TYPE {
        bail!(
            "{name} is not a WebAssembly component artifact: its config is {:?}, not {CONFIG_MEDIA_TYPE:?} (publish it with `just publish`)",
            m.config.media_type
        );
    }
    match m.layers.as_slice() {
        [l] if l.media_type == LAYER_MEDIA_TYPE => Ok(l.digest.clone()),
        ls => bail!(
            "{name} is not a WebAssembly component artifact: it must have exactly one {LAYER_MEDIA_TYPE:?} layer, it has [{}]",
            ls.iter()
                .map(|l| l.media_type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// An error of oci-client's, with a digest mismatch said in our words.
fn refusal(name: &str, what: &str, e: OciDistributionError) -> anyhow::Error {
    match e {
        OciDistributionError::DigestError(DigestError::VerificationError { expected, actual }) => {
            anyhow!(mismatch(name, what, &expected, &actual))
        }
        e => anyhow!("pulling the {what} of {name}: {e}"),
    }
}

fn mismatch(name: &str, what: &str, expected: &str, actual: &str) -> String {
    format!(
        "refusing {name}: the registry's {what} does not match its digest: expected {expected}, \
         actual {actual}; nothing was compiled or cached. The registry serves bytes other than \
         those published (tampered or damaged storage, or a wrong registry): re-publish with \
         `just publish` and pin the digest it prints, or point --component at the registry \
         holding the original"
    )
}

fn blob_file(dir: &Path, digest: &str) -> PathBuf {
    dir.join(format!("{}.wasm", digest.replace(':', "-")))
}

fn manifest_file(dir: &Path, digest: &str) -> PathBuf {
    dir.join("manifests")
        .join(format!("{}.json", digest.replace(':', "-")))
}

fn write_atomic(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}
