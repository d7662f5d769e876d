// Secret handles (host/src/caps/secrets.rs): the guest sees only `{{secret:NAME}}`; values are
// resolved where the host uses them (NATS credentials), masked in every answer going into the
// guest, redacted from logs and errors. Same handle format and masking forms as the Rust host.
import { randomInt } from "node:crypto";
import { readFileSync, writeFileSync, renameSync, mkdirSync, existsSync, openSync, fsyncSync, closeSync } from "node:fs";
import { dirname, join } from "node:path";
import { CapError } from "./errors.js";

export const PREFIX = "{{secret:";
export const SUFFIX = "}}";
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
export const handle = (name) => `${PREFIX}${name}${SUFFIX}`;

function escape(s, go, ascii) {
  let out = "";
  for (const c of s) {
    const cp = c.codePointAt(0);
    if (c === '"') out += '\\"';
    else if (c === "\\") out += "\\\\";
    else if (c === "\n") out += "\\n";
    else if (c === "\r") out += "\\r";
    else if (c === "\t") out += "\\t";
    else if (go && "<>&\u2028\u2029".includes(c)) out += `\\u${cp.toString(16).padStart(4, "0")}`;
    else if (cp < 0x20 || (ascii && cp > 0x7f)) {
      for (let i = 0; i < c.length; i++) out += `\\u${c.charCodeAt(i).toString(16).padStart(4, "0")}`;
    } else out += c;
  }
  return out;
}

// The forms a value takes in text passed on: as is, JSON-escaped (serde, Go, Python styles,
// once or twice), and each base64-encoded at the three alignments inside a longer string.
export function forms(v) {
  if (v.length < 4) return [];
  const texts = new Set([v]);
  for (const [go, ascii] of [[false, false], [true, false], [false, true], [true, true]]) {
    const once = escape(v, go, ascii);
    texts.add(once);
    texts.add(escape(once, false, false));
  }
  const out = new Set(texts);
  for (const text of texts) {
    const raw = Buffer.from(text, "utf8");
    for (let offset = 0; offset < 3; offset++) {
      const data = Buffer.concat([Buffer.alloc(offset), raw]);
      const first = Math.ceil((offset * 8) / 6), last = Math.floor((data.length * 8) / 6);
      let core = "";
      for (let i = first; i < last; i++) {
        const byte = Math.floor((6 * i) / 8), shift = (6 * i) % 8;
        const word = (data[byte] << 8) | (byte + 1 < data.length ? data[byte + 1] : 0);
        core += B64[(word >> (10 - shift)) & 63];
      }
      if (core.length >= 6) { out.add(core); out.add(core.replaceAll("+", "-").replaceAll("/", "_")); }
    }
  }
  return [...out].sort((a, b) => b.length - a.length);
}

export function writePrivate(path, data) {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode: 0o600 });
  const fd = openSync(tmp, "r");
  fsyncSync(fd);
  closeSync(fd);
  renameSync(tmp, path);
}

export class SecretStore {
  constructor() { this.values = new Map(); this.hostOnly = new Set(); this.generatedFile = null; }
  put(name, value) { this.values.set(name, value); return handle(name); }
  remember(name, value) { this.put(name, value); this.hostOnly.add(name); }
  resolve(h) {
    if (typeof h !== "string" || !h.startsWith(PREFIX) || !h.endsWith(SUFFIX)) return undefined;
    const name = h.slice(PREFIX.length, h.length - SUFFIX.length);
    return this.hostOnly.has(name) ? undefined : this.values.get(name);
  }
  has(name) { return this.values.has(name) && !this.hostOnly.has(name); }
  mask(text) {
    for (const [name, v] of this.values) for (const f of forms(v)) if (text.includes(f)) text = text.replaceAll(f, handle(name));
    return text;
  }
  redact(text) {
    for (const v of this.values.values()) for (const f of forms(v)) text = text.replaceAll(f, "[redacted]");
    return text;
  }
  keepGeneratedIn(path) {
    if (existsSync(path)) for (const [k, v] of Object.entries(JSON.parse(readFileSync(path, "utf8")))) this.values.set(k, v);
    this.generatedFile = path;
  }
  generate(name, length) {
    if (this.values.has(name)) return handle(name);
    const n = Math.max(16, Math.min(128, length));
    let value = "";
    for (let i = 0; i < n; i++) value += B64[randomInt(62)];
    this.values.set(name, value);
    if (this.generatedFile) {
      const saved = existsSync(this.generatedFile) ? JSON.parse(readFileSync(this.generatedFile, "utf8")) : {};
      saved[name] = value;
      writePrivate(this.generatedFile, JSON.stringify(saved, null, 2));
    }
    return handle(name);
  }
}

// `secret://NAME`: EVENTBUS_SECRET_<NAME> in the environment, or $EVENTBUS_SECRETS_DIR/NAME.
export function lookupNamed(name) {
  const v = name.replace(/[^A-Za-z0-9]/g, "_").toUpperCase();
  if (process.env[`EVENTBUS_SECRET_${v}`] !== undefined) return process.env[`EVENTBUS_SECRET_${v}`];
  const d = process.env.EVENTBUS_SECRETS_DIR;
  if (!d || name.includes("/") || name.includes("\\") || name.startsWith(".")) return undefined;
  try { return readFileSync(join(d, name), "utf8").replace(/[\r\n]+$/, ""); } catch { return undefined; }
}

export function named(store, name) {
  if (store.has(name)) return handle(name);
  throw CapError.unknown(`secret ${JSON.stringify(name)} is not configured: reference it as secret://${name} and set EVENTBUS_SECRET_${name.toUpperCase()}`);
}

export function generate(store, grant, name, length) {
  if (!name || name.length > 200 || name.includes("{") || name.includes("}")) throw CapError.invalid(`${JSON.stringify(name)} is not a secret name`);
  // Generating keeps a new secret: a change, so only a mutating call makes one.
  if (!grant.mutates && !store.has(name)) throw CapError.denied(grant.refusal(`generating the secret ${JSON.stringify(name)}`));
  return store.generate(name, length);
}
