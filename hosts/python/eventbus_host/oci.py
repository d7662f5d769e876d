"""Loading the component by digest: `oci://REGISTRY/REPO@sha256:<manifest digest>`, as `just
publish` prints it. The manifest's bytes must hash to the pinned digest and its one
`application/wasm` layer's bytes to the digest in the manifest before anything is compiled; the
verified blob is kept by digest in the cache directory (`oci/`) and re-verified on every use.
Plain HTTP only for a loopback registry; anonymous pulls (the registry API's two GETs)."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import urllib.request
from pathlib import Path

SCHEME = "oci://"
CONFIG_MEDIA_TYPE = "application/vnd.wasm.config.v0+json"
LAYER_MEDIA_TYPE = "application/wasm"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
_REF = re.compile(r"^oci://(?P<registry>[^/]+)/(?P<repo>[^@]+?)(?::[^/@]+)?@(?P<digest>sha256:[0-9a-fA-F]{64})$")


class DigestMismatch(RuntimeError):
    """A reference that cannot be loaded as written (a RuntimeError, so the CLI reports it plainly)."""


def is_reference(s: str | os.PathLike) -> bool:
    return str(s).startswith(SCHEME)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _loopback(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if re.search(r":\d+$", registry) else registry
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cache_dir() -> Path:
    return Path(os.environ.get("EVENTBUS_CACHE_DIR") or Path.home() / ".cache/eventbus_host") / "oci"


def _mismatch(ref: str, what: str, expected: str, actual: str) -> DigestMismatch:
    return DigestMismatch(
        f"refusing {ref}: the registry's {what} does not match its digest: expected {expected}, actual {actual}; "
        "nothing was compiled or cached. The registry serves bytes other than those published (tampered or "
        "damaged storage, or a wrong registry): re-publish with `just publish` and pin the digest it prints, "
        "or point --component at the registry holding the original"
    )


def _layer(ref: str, manifest: bytes) -> str:
    m = json.loads(manifest)
    if m.get("config", {}).get("mediaType") != CONFIG_MEDIA_TYPE:
        raise DigestMismatch(f"{ref} is not a WebAssembly component artifact: its config is not {CONFIG_MEDIA_TYPE}")
    layers = m.get("layers", [])
    if len(layers) != 1 or layers[0].get("mediaType") != LAYER_MEDIA_TYPE:
        raise DigestMismatch(f"{ref} is not a WebAssembly component artifact: it must have exactly one {LAYER_MEDIA_TYPE} layer")
    return layers[0]["digest"]


def fetch(ref: str) -> Path:
    """The verified component file for `ref`, pulled unless the cache already holds it."""
    m = _REF.match(ref)
    if not m:
        raise DigestMismatch(f"{ref!r}: write oci://REGISTRY/REPO@sha256:<64 hex digits> (as `just publish` prints it)")
    registry, repo, want = m["registry"], m["repo"], m["digest"].lower()
    cache = _cache_dir()
    mfile = cache / "manifests" / f"{want.replace(':', '-')}.json"
    if mfile.is_file() and _digest(mfile.read_bytes()) == want:
        layer = _layer(ref, mfile.read_bytes())
        blob = cache / f"{layer.replace(':', '-')}.wasm"
        if blob.is_file() and _digest(blob.read_bytes()) == layer:
            return blob
    base = f"{'http' if _loopback(registry) else 'https'}://{registry}/v2/{repo}"
    req = urllib.request.Request(f"{base}/manifests/{want}", headers={"Accept": MANIFEST_MEDIA_TYPE})
    with urllib.request.urlopen(req, timeout=60) as r:
        manifest = r.read()
    if _digest(manifest) != want:
        raise _mismatch(ref, "manifest", want, _digest(manifest))
    layer = _layer(ref, manifest)
    with urllib.request.urlopen(f"{base}/blobs/{layer}", timeout=300) as r:
        data = r.read()
    if _digest(data) != layer:
        raise _mismatch(ref, "component layer", layer, _digest(data))
    blob = cache / f"{layer.replace(':', '-')}.wasm"
    for path, content in ((blob, data), (mfile, manifest)):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}")
        tmp.write_bytes(content)
        tmp.replace(path)
    return blob
