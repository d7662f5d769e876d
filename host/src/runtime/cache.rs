//! The component compiled once and kept on disk, keyed by the wasm's sha256 and the
//! engine's compatibility hash, so a later start only maps the artifact (< 1 ms).

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("EVENTBUS_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("eventbus");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache").join("eventbus"),
        None => std::env::temp_dir().join("eventbus-cache"),
    }
}

/// How the component was obtained, for `--verbose` and the benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cached,
    Compiled,
}

pub fn load(engine: &Engine, wasm_path: &Path) -> Result<(Component, Source)> {
    let bytes = std::fs::read(wasm_path)
        .with_context(|| format!("reading the component {}", wasm_path.display()))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let dir = cache_dir();
    let file = dir.join(format!("{}-{:016x}.cwasm", &sha[..32], h.finish()));
    if file.exists() {
        // Safety: the file is our own precompiled artifact for this exact engine configuration
        // (its name carries the engine's compatibility hash); a damaged one fails to load and is
        // replaced below.
        match unsafe { Component::deserialize_file(engine, &file) } {
            Ok(c) => return Ok((c, Source::Cached)),
            Err(e) => tracing::warn!(
                "discarding unusable cached component {}: {e}",
                file.display()
            ),
        }
    }
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(|e| anyhow::anyhow!("compiling the component: {e}"))?;
    let component = unsafe { Component::deserialize(engine, &compiled) }
        .map_err(|e| anyhow::anyhow!("loading the compiled component: {e}"))?;
    if let Err(e) = write_atomic(&dir, &file, &compiled) {
        tracing::warn!(
            "could not cache the compiled component in {}: {e}",
            dir.display()
        );
    }
    Ok((component, Source::Compiled))
}

fn write_atomic(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        file.file_name().and_then(|n| n.to_str()).unwrap_or("c")
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}
