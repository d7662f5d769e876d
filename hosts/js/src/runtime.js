// Loading the component under Node and providing its imports.
//
// The component is transpiled by jco (pinned) into core Wasm + JS, once per component digest,
// into $EVENTBUS_CACHE_DIR (default ~/.cache/eventbus_host_js). JSPI (`--async-mode jspi`) lets
// the component's synchronous imports wait for the NATS client's promises: Node 25 or newer.
// WASI grants nothing: no environment, arguments or working directory, exit traps, and any
// other WASI interface (filesystem, sockets, HTTP) is a trap. Each export call carries a
// CallGrant (read-only, or mutating and scoped to its resource) the capabilities ask first.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { cli, clocks, io, random } from "@bytecodealliance/preview2-shim";
import { CapError } from "./caps/errors.js";
import { CallGrant } from "./caps/grant.js";
import { NatsCap, apiPrefix } from "./caps/nats.js";
import * as secretsCap from "./caps/secrets.js";

const JCO_VERSION = "1.35.0";
const P = "eventbus:iac/provider@0.1.0", D = "eventbus:iac/driver@0.1.0", N = "eventbus:iac/nats@0.1.0";
const PROVIDER_EXPORTS = ["initialize", "validate", "plan", "destroy", "status", "detect-drift", "import",
  "resolve-sizing", "bootstrap-state-backend", "schema", "name", "version", "capabilities"];
const DRIVER_EXPORTS = ["create", "read", "update", "delete", "diff", "scale", "health-check", "sensitive-keys", "troubleshoot"];

export class ProviderError extends Error {
  constructor(kind, payload) {
    super(errorText(kind, payload));
    this.kind = kind; this.payload = payload;
  }
}
export class Trap extends Error {}

export function errorText(kind, payload) {
  if (kind === "validation" && Array.isArray(payload)) {
    return payload.map((d) => `${d.resource}: ${d.path}: ${d.message} (fix: ${d.fix})`).join("; ");
  }
  return `${kind}: ${payload}`;
}

export function componentPath(explicit) {
  for (const p of [explicit, process.env.EVENTBUS_COMPONENT]) if (p) return resolve(p);
  for (let d = process.cwd(); ; d = dirname(d)) {
    const c = join(d, "target/wasm32-wasip2/release/eventbus_guest.wasm");
    if (existsSync(c)) return c;
    if (dirname(d) === d) break;
  }
  throw new Error("cannot find the component eventbus_guest.wasm: pass --component PATH or set EVENTBUS_COMPONENT (build it with `cargo build -p eventbus-guest --target wasm32-wasip2 --release`)");
}

// jco's output for this component, transpiled on first use and kept under its digest.
async function transpiled(wasm) {
  const bytes = readFileSync(wasm);
  const digest = createHash("sha256").update(bytes).digest("hex");
  const dir = join(process.env.EVENTBUS_CACHE_DIR || join(homedir(), ".cache/eventbus_host_js"), `${digest}-jco-${JCO_VERSION}`);
  if (!existsSync(join(dir, "done"))) {
    const { transpile } = await import("@bytecodealliance/jco");
    const { files } = await transpile(bytes, {
      name: "component", instantiation: "async", asyncMode: "jspi", noTypescript: true, quiet: true,
      asyncImports: [`${N}#[static]connection.open-broker`, `${N}#[static]connection.open-endpoint`, `${N}#[method]connection.request`],
      asyncExports: [...PROVIDER_EXPORTS.map((e) => `${P}#${e}`), ...DRIVER_EXPORTS.map((e) => `${D}#${e}`)],
    });
    const tmp = `${dir}.tmp-${process.pid}`;
    for (const [name, data] of Object.entries(files)) {
      mkdirSync(dirname(join(tmp, name)), { recursive: true, mode: 0o700 });
      writeFileSync(join(tmp, name), data);
    }
    writeFileSync(join(tmp, "done"), digest);
    mkdirSync(dirname(dir), { recursive: true, mode: 0o700 });
    try { renameSync(tmp, dir); } catch (e) { if (!existsSync(join(dir, "done"))) throw e; }
  }
  return { dir, mod: await import(pathToFileURL(join(dir, "component.js")).href) };
}

// Everything the instances share: grants, connections, secrets.
export class Caps {
  constructor(secrets, providerConfig = {}, maxPayload = 1 << 20) {
    this.secrets = secrets; this.nats = new NatsCap(secrets, maxPayload); this.providerConfig = providerConfig;
  }
  registerBroker(name, outputs) { if (outputs && outputs.bus !== "kafka") this.nats.registerBroker(name, outputs); }
  grantBrokerOutputs(outputs) {
    if (outputs && outputs.bus !== "kafka") for (const u of outputs.urls || []) if (typeof u === "string") this.nats.grant(u);
  }
  async close() { await this.nats.close(); }
}

const trap = (what) => () => { throw new Error(`${what} is not granted by this host`); };
const denyAll = (what) => new Proxy({}, { get: (_, k) => (typeof k === "string" ? trap(`${what}#${k}`) : undefined) });
const camel = (s) => s.replace(/-([a-z])/g, (_, c) => c.toUpperCase());

export class Runtime {
  static async load(wasm, caps) {
    const started = performance.now();
    if (typeof WebAssembly.Suspending !== "function") {
      throw new Error(`this Node (${process.version}) has no JSPI (WebAssembly.Suspending): the JS host needs Node 25 or newer; \`./dev setup\` installs one into .cache/node`);
    }
    const rt = new Runtime();
    rt.caps = caps;
    const { dir, mod } = await transpiled(wasm);
    rt.dir = dir; rt.mod = mod; rt.current = null;
    rt.modules = new Map();
    rt.loadTime = performance.now() - started;
    return rt;
  }

  async instance() {
    const g = new Guest(this);
    g.root = await this.mod.instantiate(async (path) => {
      if (!this.modules.has(path)) this.modules.set(path, await WebAssembly.compile(readFileSync(join(this.dir, path))));
      return this.modules.get(path);
    }, this.imports());
    return g;
  }

  grant() { return this.current?.grant ?? CallGrant.readOnly(); }

  imports() {
    if (this._imports) return this._imports;
    const rt = this, caps = this.caps;
    class Connection {
      constructor(c) { Object.assign(this, c); }
      static async openBroker(broker) {
        const [name, entry] = caps.nats.entry(broker);
        return Connection.open(name, entry);
      }
      static async openEndpoint(endpoint) {
        const { urls, auth, domain } = endpoint;
        if (!urls.length || urls.length > 16) throw CapError.invalid("an endpoint needs 1 to 16 urls");
        if (domain !== undefined && (!domain || /[.*> ]/.test(domain))) throw CapError.invalid(`${JSON.stringify(domain)} is not a JetStream domain`);
        return Connection.open("", { urls: [...urls], auth, domain });
      }
      static async open(name, entry) {
        const client = await caps.nats.connect(entry);
        return new Connection({ entry, client, name, prefix: apiPrefix(entry.domain), version: client.info?.version ?? "" });
      }
      broker() { return this.name; }
      apiPrefix() { return this.prefix; }
      serverVersion() { return this.version; }
      endpoint() { return { urls: [...this.entry.urls], auth: this.entry.auth, domain: this.entry.domain }; }
      async request(subject, payload, timeoutMs) {
        return caps.nats.request(this.client, this.prefix, this.name, rt.grant(), subject, payload, timeoutMs);
      }
    }
    // Kafka administration is the Rust host's: this host knows no Kafka broker and grants no
    // Kafka endpoint (a plan of new Kafka resources still works, as the Rust CLI's does before
    // their broker exists), so the methods, which need a connection, are never reached.
    const rust = "Kafka is not offered by the Node host: run this file with the Rust CLI (`eventbus`)";
    class KafkaConnection {
      static openBroker(b) { throw CapError.unknown(`Kafka broker ${JSON.stringify(b)} is not known to the host: ${rust}`); }
      static openEndpoint() { throw CapError.denied(rust); }
    }
    const order = ["trace", "debug", "info", "warn", "error"];
    const threshold = order.indexOf(process.env.EVENTBUS_LOG === "debug" ? "debug" : process.env.EVENTBUS_LOG || "warn");
    const ours = {
      "eventbus:iac/capability-types": {},
      "eventbus:iac/types": {},
      "eventbus:iac/nats": { Connection },
      "eventbus:iac/kafka": { Connection: KafkaConnection },
      "eventbus:iac/brokers": { bus: (broker) => (caps.nats.entry(broker) ? "nats" : "") },
      "eventbus:iac/cloud": {
        call: (account) => { throw CapError.denied(`cloud account ${JSON.stringify(account)}: cloud APIs are not offered by the Node host; deploy targets other than self_hosted need the Rust CLI (\`eventbus\`)`); },
      },
      "eventbus:iac/http": {
        fetch: (req) => { throw CapError.denied(`HTTP to ${req.url}: the Node host grants no HTTP origins; health probes need the Rust or Python host`); },
      },
      "eventbus:iac/secrets": {
        named: (name) => secretsCap.named(caps.secrets, name),
        generate: (name, length) => secretsCap.generate(caps.secrets, rt.grant(), name, length),
      },
      "eventbus:iac/log": {
        log(level, message, fields) {
          const cut = (s) => caps.secrets.redact(s.slice(0, 4096 + (64 << 10))).slice(0, 4096);
          const text = cut(message) + cut(fields.map(([k, v]) => ` ${k}=${v}`).join(""));
          if (order.indexOf(level) >= threshold) console.error(`${level.toUpperCase()} guest: ${text}`);
        },
      },
      "wasi:cli/environment": { getEnvironment: () => [], getArguments: () => [], initialCwd: () => undefined },
      "wasi:cli/exit": { exit: trap("wasi:cli/exit"), exitWithCode: trap("wasi:cli/exit") },
    };
    const shims = { "wasi:cli": cli, "wasi:clocks": clocks, "wasi:io": io, "wasi:random": random };
    const imports = {};
    for (const spec of this.mod.imports ?? []) imports[spec] = undefined;
    this._imports = new Proxy(imports, {
      get(_, name) {
        if (typeof name !== "string") return undefined;
        const bare = name.replace(/@[^@]*$/, "");
        if (bare in ours) return ours[bare];
        const [pkg, iface] = bare.split("/");
        const shim = shims[pkg]?.[camel(iface || "")];
        return shim ?? denyAll(bare);
      },
    });
    return this._imports;
  }
}

export class Guest {
  constructor(rt) { this.rt = rt; this.grant = CallGrant.readOnly(); this.poisoned = false; }

  async call(iface, name, args, grant) {
    if (this.poisoned) throw new Trap("this instance trapped earlier and is not used again");
    const f = this.root[iface]?.[camel(name)];
    if (!f) throw new Trap(`the component does not export ${iface}#${name}`);
    this.grant = grant ?? CallGrant.readOnly(name);
    this.rt.current = this;
    try {
      return await f(...args);
    } catch (e) {
      if (e && Object.prototype.hasOwnProperty.call(e, "payload") && e.payload?.tag && !(e instanceof CapError)) {
        throw new ProviderError(e.payload.tag, e.payload.val);
      }
      this.poisoned = true;
      throw new Trap(this.rt.caps.secrets.redact(String(e?.message || e)));
    } finally {
      this.rt.current = null;
      this.grant = CallGrant.readOnly();
    }
  }

  initialize(configJson) { return this.call("provider", "initialize", [configJson]); }
  name() { return this.call("provider", "name", []); }
  plan(desired, current) { return this.call("provider", "plan", [desired, current]); }
  status(refs) { return this.call("provider", "status", [refs]); }
  create(spec) { return this.call("driver", "create", [spec.resourceType, spec], CallGrant.mutating("create", [spec], [])); }
  update(ref, spec) { return this.call("driver", "update", [ref.resourceType, ref, spec], CallGrant.mutating("update", [spec], [ref])); }
  delete(ref) { return this.call("driver", "delete", [ref.resourceType, ref], CallGrant.mutating("delete", [], [ref])); }
}
