// Loading the component by digest: oci://REGISTRY/REPO@sha256:<manifest digest>, as `just publish`
// prints it. The manifest's bytes must hash to the pinned digest and its one application/wasm
// layer's bytes to the digest in the manifest before anything is transpiled; the verified blob is
// kept by digest in the cache directory (oci/) and re-verified on every use. Plain HTTP only for a
// loopback registry; anonymous pulls (the registry API's two GETs).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { componentPath } from "./runtime.js";

const CONFIG_MEDIA_TYPE = "application/vnd.wasm.config.v0+json";
const LAYER_MEDIA_TYPE = "application/wasm";
const MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json";
const REF = /^oci:\/\/([^/]+)\/([^@]+?)(?::[^/@]+)?@(sha256:[0-9a-fA-F]{64})$/;

export const isReference = (s) => typeof s === "string" && s.startsWith("oci://");

const digestOf = (bytes) => "sha256:" + createHash("sha256").update(bytes).digest("hex");

function loopback(registry) {
  const host = (/:\d+$/.test(registry) ? registry.replace(/:\d+$/, "") : registry).replace(/^\[|\]$/g, "");
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return isIP(host) === 6 && host === "::1";
}

function mismatch(ref, what, expected, actual) {
  return new Error(
    `refusing ${ref}: the registry's ${what} does not match its digest: expected ${expected}, actual ${actual}; ` +
      "nothing was compiled or cached. The registry serves bytes other than those published (tampered or damaged " +
      "storage, or a wrong registry): re-publish with `just publish` and pin the digest it prints, or point " +
      "--component at the registry holding the original",
  );
}

function layerOf(ref, manifest) {
  const m = JSON.parse(manifest.toString("utf8"));
  if (m.config?.mediaType !== CONFIG_MEDIA_TYPE) throw new Error(`${ref} is not a WebAssembly component artifact: its config is not ${CONFIG_MEDIA_TYPE}`);
  const layers = m.layers ?? [];
  if (layers.length !== 1 || layers[0].mediaType !== LAYER_MEDIA_TYPE) throw new Error(`${ref} is not a WebAssembly component artifact: it must have exactly one ${LAYER_MEDIA_TYPE} layer`);
  return layers[0].digest;
}

function writeAtomic(file, bytes) {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = join(dirname(file), `.tmp-${process.pid}`);
  writeFileSync(tmp, bytes);
  renameSync(tmp, file);
}

async function get(url, headers = {}) {
  const r = await fetch(url, { headers });
  if (!r.ok) throw new Error(`GET ${url}: ${r.status} ${r.statusText}`);
  return Buffer.from(await r.arrayBuffer());
}

// The verified component file for ref, pulled unless the cache already holds it.
export async function fetchComponent(ref) {
  const m = REF.exec(ref);
  if (!m) throw new Error(`${ref}: write oci://REGISTRY/REPO@sha256:<64 hex digits> (as \`just publish\` prints it)`);
  const [, registry, repo] = m;
  const want = m[3].toLowerCase();
  const cache = join(process.env.EVENTBUS_CACHE_DIR || join(homedir(), ".cache/eventbus_host_js"), "oci");
  const mfile = join(cache, "manifests", `${want.replace(":", "-")}.json`);
  if (existsSync(mfile) && digestOf(readFileSync(mfile)) === want) {
    const layer = layerOf(ref, readFileSync(mfile));
    const blob = join(cache, `${layer.replace(":", "-")}.wasm`);
    if (existsSync(blob) && digestOf(readFileSync(blob)) === layer) return blob;
  }
  const base = `${loopback(registry) ? "http" : "https"}://${registry}/v2/${repo}`;
  const manifest = await get(`${base}/manifests/${want}`, { Accept: MANIFEST_MEDIA_TYPE });
  if (digestOf(manifest) !== want) throw mismatch(ref, "manifest", want, digestOf(manifest));
  const layer = layerOf(ref, manifest);
  const data = await get(`${base}/blobs/${layer}`);
  if (digestOf(data) !== layer) throw mismatch(ref, "component layer", layer, digestOf(data));
  const blob = join(cache, `${layer.replace(":", "-")}.wasm`);
  writeAtomic(blob, data);
  writeAtomic(mfile, manifest);
  return blob;
}

// --component, $EVENTBUS_COMPONENT (a file, or an oci:// reference pulled and verified here), or
// the repository's release build.
export async function resolveComponent(explicit) {
  for (const p of [explicit, process.env.EVENTBUS_COMPONENT]) if (p) return isReference(p) ? fetchComponent(p) : componentPath(p);
  return componentPath(explicit);
}
