// The `nats` capability (host/src/caps/nats.rs): request/reply on whole JetStream management
// subjects only ($JS.API.<verb>[.<stream>[.<consumer>]], or $JS.<domain>.API...), the
// operations policy.json lists, a change only on the call's own stream or consumer, granted
// endpoints only, credentials resolved from handles by the host. On the official NATS client.
import { connect } from "@nats-io/transport-node";
import { credsAuthenticator, nkeyAuthenticator } from "@nats-io/nats-core";
import { NATS_OPERATIONS } from "../policy.js";
import { CapError } from "./errors.js";

const DEFAULT_PORTS = { nats: 4222, tls: 4222, ws: 80, wss: 443 };

// `scheme://host:port`, with NATS's default ports, for comparing grants.
export function grantKey(url) {
  const i = url.trim().indexOf("://");
  if (i < 0) return null;
  const scheme = url.trim().slice(0, i).toLowerCase();
  const hostport = url.trim().slice(i + 3).split("/")[0].split("?")[0].split("@").pop().toLowerCase();
  if (!hostport || !(scheme in DEFAULT_PORTS)) return null;
  const c = hostport.lastIndexOf(":");
  const hasPort = c > 0 && /^\d+$/.test(hostport.slice(c + 1)) && !hostport.endsWith("]");
  return hasPort ? `${scheme}://${hostport}` : `${scheme}://${hostport}:${DEFAULT_PORTS[scheme]}`;
}

// A url is judged only when every parser reads it alike: no userinfo, fragment, query,
// backslash or whitespace, so `nats://evil:1#@granted:2` cannot pass as the granted host.
function plain(url) {
  const i = url.indexOf("://");
  if (i < 0 || /\s/.test(url)) return false;
  const rest = url.slice(i + 3);
  return !/[@#?\\]/.test(rest) && !rest.replace(/\/$/, "").includes("/");
}

export function apiPrefix(domain) {
  return domain ? `$JS.${domain}.API` : "$JS.API";
}

export function authFromOutputs(a) {
  if (!a || typeof a !== "object") return null;
  if (a.kind === "token" && a.token) return { tag: "token", val: a.token };
  if (a.kind === "user_password" && a.user && a.password) return { tag: "user-password", val: [a.user, a.password] };
  if (a.kind === "nkey" && a.nkey_seed) return { tag: "nkey-seed", val: a.nkey_seed };
  if (a.kind === "creds" && a.creds) return { tag: "creds", val: a.creds };
  return null;
}

export class NatsCap {
  constructor(secrets, maxPayload = 1 << 20) {
    this.grants = new Set(); this.brokers = new Map(); this.secrets = secrets; this.maxPayload = maxPayload;
    this.clients = new Map();
  }
  grant(url) { const k = grantKey(url); if (k) this.grants.add(k); }
  granted(url) { const k = grantKey(url); return k !== null && this.grants.has(k); }
  registerBroker(name, outputs) {
    const urls = (outputs?.urls || []).filter((u) => typeof u === "string");
    if (!urls.length) return;
    const domain = typeof outputs.domain === "string" && outputs.domain ? outputs.domain : undefined;
    this.brokers.set(name, { urls, auth: authFromOutputs(outputs.auth) || undefined, domain });
  }
  forgetBroker(name) { this.brokers.delete(name); }
  entry(name) {
    if (!name) {
      if (this.brokers.size === 1) return [...this.brokers.entries()][0];
      if (!this.brokers.size) throw CapError.unknown("no broker is known to the host yet: apply the infra.eventbus resource first");
      throw CapError.unknown(`several brokers are known (${[...this.brokers.keys()].sort().join(", ")}): name one with broker_ref`);
    }
    if (!this.brokers.has(name)) {
      throw CapError.unknown(`broker ${JSON.stringify(name)} is not known to the host (known: ${[...this.brokers.keys()].sort().join(", ")}): apply it first`);
    }
    return [name, this.brokers.get(name)];
  }

  async connect(e) {
    for (const u of e.urls) {
      if (!plain(u) || !this.granted(u)) {
        throw CapError.denied(`NATS endpoint ${u} is not granted: declare it as the url of a self_hosted infra.eventbus resource, or add it to \`allow_nats\` in the iac.provider module config`);
      }
    }
    const key = JSON.stringify([e.urls, e.auth ?? null]);
    const known = this.clients.get(key);
    if (known && !known.isClosed()) return known;
    const secret = (h) => {
      const v = this.secrets.resolve(h);
      if (v === undefined) throw CapError.unknown(`secret handle ${h} is unknown to the host`);
      return v;
    };
    const opts = { servers: e.urls, name: "eventbus-iac", timeout: 5000, reconnect: false, ignoreClusterUpdates: true };
    if (e.auth) {
      const { tag, val } = e.auth;
      if (tag === "token") opts.token = secret(val);
      else if (tag === "user-password") { opts.user = val[0]; opts.pass = secret(val[1]); }
      else if (tag === "nkey-seed") opts.authenticator = nkeyAuthenticator(new TextEncoder().encode(secret(val)));
      else opts.authenticator = credsAuthenticator(new TextEncoder().encode(secret(val)));
    }
    let client;
    try {
      client = await connect(opts);
    } catch (err) {
      const text = this.secrets.redact(String(err?.message || err));
      if (/authoriz|authentic/i.test(text)) throw CapError.denied(`${e.urls.join(",")}: the server refused the credentials: ${text}`);
      throw CapError.unavailable(`cannot connect to ${e.urls.join(",")}: ${text}`);
    }
    this.clients.set(key, client);
    return client;
  }

  async request(client, prefix, broker, grant, subject, payload, timeoutMs) {
    try {
      checkSubject(prefix, subject);
      checkOperation(prefix, subject, broker, grant);
    } catch (e) {
      if (process.env.EVENTBUS_LOG === "debug") console.error(`denied NATS request ${subject} in ${grant.export || "a call"}`);
      throw e;
    }
    if (payload.length > this.maxPayload) throw CapError.invalid(`request payload of ${payload.length} bytes exceeds the ${this.maxPayload}-byte limit`);
    const timeout = Math.min(Math.max(timeoutMs, 100), 60000);
    let msg;
    try {
      msg = await client.request(subject, payload, { timeout });
    } catch (err) {
      const cause = err?.cause?.name || err?.name || "";
      if (/Timeout/.test(cause)) throw CapError.unavailable(`${subject}: no reply within ${timeout}ms`);
      if (/NoResponders/.test(cause) || err?.isNoResponders?.()) throw CapError.unavailable(`${subject}: no responders (is JetStream enabled, and the domain right?)`);
      throw CapError.unavailable(`${subject}: ${this.secrets.redact(String(err?.message || err))}`);
    }
    if (msg.data.length > this.maxPayload) throw CapError.invalid(`reply of ${msg.data.length} bytes exceeds the ${this.maxPayload}-byte limit`);
    return msg.data;
  }

  async close() {
    for (const c of this.clients.values()) await c.close().catch(() => {});
    this.clients.clear();
  }
}

// Only complete JetStream API subjects under this connection's prefix: no wildcards, no
// other subjects ($SYS.>, data subjects...).
export function checkSubject(prefix, subject) {
  const okChars = subject.length > 0 && Buffer.byteLength(subject) <= 512 && !/[\s\x00-\x1f\x7f*>]/.test(subject);
  const rest = subject.startsWith(prefix + ".") ? subject.slice(prefix.length + 1) : "";
  const under = rest.length > 0 && rest.split(".").every((t) => t.length > 0);
  if (!(okChars && under)) {
    throw CapError.denied(`subject ${JSON.stringify(subject)} is outside the JetStream management API (${prefix}.>): only JetStream API requests are granted`);
  }
}

export function checkOperation(prefix, subject, broker, grant) {
  const tokens = subject.slice(prefix.length + 1).split(".");
  for (const o of NATS_OPERATIONS) {
    if (tokens.length === o.verb.length + o.names && o.verb.every((v, i) => tokens[i] === v)) {
      if (!o.changes) return;
      const args = tokens.slice(o.verb.length);
      if (grant.mayWrite(broker, args[0], args[1] ?? null)) return;
      throw CapError.denied(grant.refusal(`${o.name} on ${args.join("/")}`));
    }
  }
  const verb = subject.startsWith(prefix) ? subject.slice(prefix.length).replace(/^\./, "") : subject;
  throw CapError.denied(`JetStream operation ${JSON.stringify(verb)} is not granted: the component may manage streams and durable consumers, never read, move or delete messages or administer the cluster or account (granted: ${NATS_OPERATIONS.map((o) => o.name).join(", ")})`);
}
