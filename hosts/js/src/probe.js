// The polyglot sandbox proof's driver for this host (tests/polyglot.rs): runs the hostile
// component (tests/hostile) under this host's runtime and capabilities, one fresh instance per
// call, and prints what the guest got back; the test judges containment on the servers.
//
//   node src/probe.js INPUT.json
//
// INPUT and output as hosts/python/eventbus_host/probe.py describes.
import { readFileSync } from "node:fs";
import { CallGrant } from "./caps/grant.js";
import { SecretStore } from "./caps/secrets.js";
import { Caps, ProviderError, Runtime, Trap } from "./runtime.js";

const report = (t) => (typeof t === "string" && t.startsWith("report: ") ? JSON.parse(t.slice(8)) : null);

export async function run(inp) {
  process.env.EVENTBUS_LOG = "debug";
  const secrets = new SecretStore();
  for (const [k, v] of Object.entries(inp.secrets || {})) secrets.put(k, v);
  for (const [k, v] of Object.entries(inp.host_only || {})) secrets.remember(k, v);
  const caps = new Caps(secrets, {});
  for (const u of inp.grants || []) caps.nats.grant(u);
  for (const [name, outputs] of Object.entries(inp.brokers || {})) caps.registerBroker(name, outputs);
  const rt = await Runtime.load(inp.component, caps);
  const out = [];
  try {
    for (const c of inp.calls) {
      const config = c.config;
      const spec = { name: "carrier", resourceType: c.resource_type, configJson: JSON.stringify(config), size: "", hints: undefined, dependsOn: [] };
      const stream = config.stream_name, name = config.name;
      const pid = typeof stream === "string" && name ? `local/${stream}/${name}` : name ? `local/${name}` : "";
      const ref = { name: "carrier", resourceType: c.resource_type, providerId: pid };
      const g = await rt.instance();
      let r;
      try {
        if (c.export === "create") r = { ok: JSON.parse((await g.create(spec)).outputsJson) };
        else if (c.export === "update") r = { ok: await g.call("driver", "update", [c.resource_type, ref, spec], CallGrant.mutating("update", [spec], [ref])) };
        else if (c.export === "plan") r = { ok: await g.plan([spec], []) };
        else if (c.export === "status") r = { ok: await g.status([{ ...ref, providerId: JSON.stringify(config) }]) };
        else throw new Error(`unknown export ${c.export}`);
      } catch (e) {
        if (e instanceof ProviderError) {
          const rep = report(e.payload);
          r = rep !== null ? { ok: rep } : { err: e.kind, message: String(e.payload) };
        } else if (e instanceof Trap) r = { trap: e.message };
        else throw e;
      }
      try { r.alive = (await (await rt.instance()).name()) === "hostile"; } catch (e) { r.alive = false; r.alive_error = String(e); }
      out.push(r);
    }
  } finally {
    await caps.close();
  }
  return out;
}

const inp = JSON.parse(readFileSync(process.argv[2], "utf8"));
for (const r of await run(inp)) process.stdout.write(JSON.stringify(r) + "\n");
process.exit(0);
