// Reading a wfctl-format infra.yaml as the Rust CLI does (host/src/infra.rs): modules routed by
// `iac_provider` (else `provider`) to the iac.provider module whose provider is `eventbus`,
// `${ENV}` expanded with an error per missing variable, module-level `protected`, credentials
// (`${VAR}`, `secret://NAME`) swapped for handles before anything reaches the guest, and the
// endpoints the file grants (self_hosted brokers' urls, `allow_nats`).
import { readFileSync } from "node:fs";
import YAML from "yaml";
import { lookupNamed } from "./caps/secrets.js";

export const PROVIDER_NAME = "eventbus";
const SECRET_KEYS = ["token", "password", "nkey_seed", "creds"];

export class Diag {
  constructor(file, resource, type, path, message, fix) { Object.assign(this, { file, resource, type, path, message, fix }); }
  toString() {
    let s = this.file;
    if (this.resource) s += `: resource \`${this.resource}\`` + (this.type ? ` (${this.type})` : "");
    if (this.path) s += `: ${this.path}`;
    s += `: ${this.message}`;
    if (this.fix) s += `\n  fix: ${this.fix}`;
    return s;
  }
}

export class Invalid extends Error {
  constructor(diags) { super(diags.map(String).join("\n")); this.diags = diags; }
}

// JSON as serde_json writes a map: keys sorted, no spaces.
export function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  return JSON.stringify(v);
}

const s = (v) => (typeof v === "string" && v ? v : null);
const isMap = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

class Loader {
  constructor(file, secrets) { this.file = file; this.secrets = secrets; this.diags = []; }
  diag(...a) { this.diags.push(new Diag(this.file, ...a)); }
  expand(res, type, path, v) {
    if (typeof v === "string") return this.expandStr(res, type, path, v);
    if (Array.isArray(v)) return v.map((x, i) => this.expand(res, type, `${path}[${i}]`, x));
    if (isMap(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, this.expand(res, type, `${path}.${k}`, x)]));
    return v;
  }
  expandStr(res, type, path, str) {
    if (!str.includes("${")) return str;
    let out = "", rest = str;
    while (rest.includes("${")) {
      const start = rest.indexOf("${");
      out += rest.slice(0, start);
      const after = rest.slice(start + 2);
      const end = after.indexOf("}");
      if (end < 0) { this.diag(res, type, path, `unterminated \${ in ${JSON.stringify(str)}`, "close the reference with }"); return str; }
      const name = after.slice(0, end);
      rest = after.slice(end + 1);
      if (name.includes(".")) this.diag(res, type, path, `\${${name}} is a cross-module reference, which wfctl resolves; the standalone CLI does not`, "write the value, or use an environment variable");
      else if (/^[A-Za-z0-9_]+$/.test(name)) {
        if (process.env[name] !== undefined) out += process.env[name];
        else this.diag(res, type, path, `environment variable ${name} is not set`, `export ${name}=... before running`);
      } else this.diag(res, type, path, `\${${name}} is not a valid variable reference`, "use ${NAME} with letters, digits and _");
    }
    return out + rest;
  }
  swapCredentials(res, type, config) {
    const creds = config.credentials;
    if (!isMap(creds)) return;
    for (const key of SECRET_KEYS) {
      const raw = creds[key];
      if (typeof raw !== "string") continue;
      const path = `config.credentials.${key}`;
      let value;
      if (raw.startsWith("${") && raw.endsWith("}")) {
        const v = raw.slice(2, -1);
        if (process.env[v] === undefined) { this.diag(res, type, path, `environment variable ${v} is not set`, `export ${v}=... before running`); continue; }
        value = process.env[v];
      } else if (raw.startsWith("secret://")) {
        const name = raw.slice("secret://".length);
        value = lookupNamed(name);
        if (value === undefined) {
          const v = name.replace(/[^A-Za-z0-9]/g, "_").toUpperCase();
          this.diag(res, type, path, `secret ${JSON.stringify(name)} is not set`, `export EVENTBUS_SECRET_${v}=..., or put it in the file $EVENTBUS_SECRETS_DIR/${name}`);
          continue;
        }
      } else continue;
      creds[key] = this.secrets.put(`${res}/credentials.${key}`, value);
    }
  }
}

export function load(file, secrets) {
  let text;
  try { text = readFileSync(file, "utf8"); } catch (e) {
    throw new Invalid([new Diag(file, "", "", "", `cannot read the file: ${e.code}`, "pass the path of an infra.yaml with -f")]);
  }
  return parse(file, text, secrets);
}

export function parse(file, text, secrets) {
  const l = new Loader(file, secrets);
  let doc;
  try { doc = YAML.parse(text); } catch (e) {
    l.diag("", "", "", `not valid YAML: ${e.message}`, "fix the YAML syntax at the position shown");
    throw new Invalid(l.diags);
  }
  const modules = isMap(doc) ? doc.modules : undefined;
  if (!Array.isArray(modules)) {
    l.diag("", "", "modules", "no modules list", "write `modules:` with one entry per resource, as wfctl expects");
    throw new Invalid(l.diags);
  }
  const names = new Set(), providers = [];
  modules.forEach((m, i) => {
    m = isMap(m) ? m : {};
    const name = s(m.name) || "", type = s(m.type) || "";
    if (!name) { l.diag("", type, `modules[${i}].name`, "a module has no name", "give every module a unique name"); return; }
    if (names.has(name)) l.diag(name, type, "name", "two modules have this name", "give every module a unique name");
    names.add(name);
    if (type === "iac.provider") { const cfg = isMap(m.config) ? m.config : {}; providers.push([name, s(cfg.provider) || "", cfg]); }
  });
  const ours = providers.filter((p) => p[1] === PROVIDER_NAME);
  let providerModule = "", providerConfig = {};
  if (ours.length === 1) [providerModule, , providerConfig] = ours[0];
  else if (!ours.length) l.diag("", "iac.provider", "modules", "no iac.provider module has provider: eventbus", "add a module {name: eventbus, type: iac.provider, config: {provider: eventbus}}");
  else l.diag("", "iac.provider", "modules", `several iac.provider modules use the eventbus provider: ${ours.map((p) => p[0]).join(", ")}`, "keep one");
  providerConfig = l.expand(providerModule, "iac.provider", "config", providerConfig);
  const natsGrants = (providerConfig.allow_nats || []).filter((u) => typeof u === "string");
  const specs = [], skipped = [];
  for (const m of modules) {
    if (!isMap(m)) continue;
    const name = s(m.name), type = s(m.type);
    if (!name || !type || !(type.startsWith("infra.") || type.startsWith("platform."))) continue;
    let config = m.config ?? {};
    if (!isMap(config)) { l.diag(name, type, "config", "config must be a mapping", "write key: value pairs under config"); continue; }
    config = structuredClone(config);
    const route = s(config.iac_provider) || s(config.provider);
    const field = s(config.iac_provider) ? "config.iac_provider" : "config.provider";
    const target = route ? providers.find((p) => p[0] === route) : undefined;
    if (target && target[1] !== PROVIDER_NAME) { skipped.push(`${name} (${type}) is routed to ${target[0]} (provider ${target[1]})`); continue; }
    if (!target) {
      if (type.startsWith("infra.eventbus")) {
        const msg = route ? `routes to ${JSON.stringify(route)}, which is not declared as an iac.provider module` : "is missing: the resource is not routed to any iac.provider module";
        const fix = providerModule ? `set iac_provider: ${providerModule}` : "declare an iac.provider module with provider: eventbus and set iac_provider to its name";
        l.diag(name, type, route ? field : "config.iac_provider", msg, fix);
      } else skipped.push(`${name} (${type}) is not routed to the eventbus provider`);
      continue;
    }
    if (m.protected === true) config.protected = true;
    l.swapCredentials(name, type, config);
    config = l.expand(name, type, "config", config);
    if (type === "infra.eventbus" && s(config.deploy_target) === "self_hosted" && s(config.provider) !== "kafka") {
      const u = config.url ?? config.urls;
      if (typeof u === "string") natsGrants.push(u);
      else if (Array.isArray(u)) natsGrants.push(...u.filter((x) => typeof x === "string"));
    }
    const deps = config.depends_on;
    const dependsOn = Array.isArray(deps) ? deps.filter((d) => typeof d === "string") : typeof deps === "string" ? [deps] : [];
    specs.push({ name, resourceType: type, configJson: canonical(config), size: s(config.size) || "", hints: undefined, dependsOn });
  }
  if (l.diags.length) throw new Invalid(l.diags);
  return { file, providerModule, providerConfig, specs, skipped, natsGrants };
}
