// The library API: a Session is one infra.yaml read, its grants given, the component loaded
// and initialized; plan, apply and destroy work as the Rust CLI's commands (host/src/commands/),
// with the same plan and apply results as data.
//
//   import { Session } from "eventbus-host";
//   const s = await Session.open("infra.yaml");
//   const plan = await s.plan();          // {actions: [...], summary: {...}}
//   const result = await s.apply();       // {results: [...], failed: 0, ...}
//   await s.close();
import { SecretStore } from "./caps/secrets.js";
import { canonical, Diag, Invalid, load } from "./infra.js";
import { resolveComponent } from "./oci.js";
import { Caps, errorText, ProviderError, Runtime, Trap } from "./runtime.js";
import { defaultStatePath, recordFrom, secretsFile, State } from "./state.js";

const jsonOf = (t) => { try { return JSON.parse(t); } catch { return t; } };

// The plan as `eventbus -o json plan` prints it (host/src/commands/plan.rs `to_json`).
export function planJson(plan) {
  const summary = { create: 0, update: 0, replace: 0, delete: 0 };
  const actions = plan.actions.map((a) => {
    summary[a.action] += 1;
    const r = a.resource;
    return {
      action: a.action, name: r.name, type: r.resourceType, provider_id: a.current ? a.current.providerId : null,
      config: jsonOf(r.configJson), depends_on: r.dependsOn,
      changes: a.changes.map((c) => ({ path: c.path, old: jsonOf(c.oldJson), new: jsonOf(c.newJson), force_new: c.forceNew, reason: c.reason })),
      notes: a.notes,
    };
  });
  return { actions, summary };
}

const protectedFlag = (t) => { const v = jsonOf(t); return v && typeof v === "object" && (v.protected === true || v.protected === "true"); };

export class Session {
  static async open(file = "infra.yaml", { state, component } = {}) {
    const s = new Session();
    s.started = performance.now();
    s.file = file;
    s.statePath = state || defaultStatePath(file);
    s.secrets = new SecretStore();
    s.infra = load(file, s.secrets);
    s.state = new State(s.statePath);
    s.caps = new Caps(s.secrets, s.infra.providerConfig);
    for (const u of s.infra.natsGrants) s.caps.nats.grant(u);
    for (const r of s.state.resources) {
      if (r.type === "infra.eventbus" && r.outputs && typeof r.outputs === "object") { s.caps.grantBrokerOutputs(r.outputs); s.caps.registerBroker(r.name, r.outputs); }
    }
    s.secrets.keepGeneratedIn(secretsFile(s.statePath));
    s.runtime = await Runtime.load(await resolveComponent(component), s.caps);
    s.guest = await s.fresh();
    return s;
  }

  async fresh() {
    const g = await this.runtime.instance();
    const view = Object.fromEntries(Object.entries(this.infra.providerConfig).filter(([k]) => k !== "cloud_accounts"));
    try { await g.initialize(canonical(view)); } catch (e) { throw this.invalid(e, true) || e; }
    return g;
  }

  async close() { await this.caps.close(); }

  invalid(e, provider = false) {
    if (!(e instanceof ProviderError) || e.kind !== "validation") return null;
    const types = Object.fromEntries(this.infra.specs.map((s) => [s.name, s.resourceType]));
    return new Invalid(e.payload.map((d) => new Diag(this.file, provider ? this.infra.providerModule : d.resource,
      provider ? "iac.provider" : types[d.resource] || "", d.path, d.message, d.fix)));
  }

  async g() { if (this.guest.poisoned) this.guest = await this.fresh(); return this.guest; }

  async rawPlan(destroy = false) {
    try { return await (await this.g()).plan(destroy ? [] : this.infra.specs, this.state.toWit()); } catch (e) { throw this.invalid(e) || e; }
  }

  async plan() { return planJson(await this.rawPlan()); }

  // Runs the plan action by action in its order (dependencies first, deletes last), saving
  // state after each success; what depends on a failed action is skipped.
  async apply({ destroy = false, allowReplace = [] } = {}) {
    const plan = await this.rawPlan(destroy);
    const blocked = plan.actions.filter((a) => (a.action === "replace" || a.action === "delete")
      && (protectedFlag(a.resource.configJson) || (a.current && protectedFlag(a.current.appliedConfigJson)))
      && !allowReplace.includes(a.resource.name) && !allowReplace.includes("*"))
      .map((a) => `${a.action} ${a.resource.name} (${a.resource.resourceType})`);
    if (blocked.length) throw new Error(`refusing to change protected resources: ${blocked.join(", ")}. Nothing was changed. Re-run with --allow-replace NAME for each one you mean.`);
    const results = [], failed = new Set();
    for (const a of plan.actions) {
      const r = a.resource, t = performance.now();
      const blocker = r.dependsOn.find((d) => failed.has(d));
      const err = blocker ? `skipped: ${blocker} failed first` : await this.run(a);
      if (err) failed.add(r.name);
      results.push({ action: a.action, name: r.name, type: r.resourceType, ok: !err, error: err ?? null, millis: Math.round(performance.now() - t) });
    }
    return { results, summary: planJson(plan).summary, failed: results.filter((x) => !x.ok).length, state: this.statePath };
  }

  destroy() { return this.apply({ destroy: true }); }

  async run(a) {
    const r = a.resource, cur = a.current;
    const ref = { name: r.name, resourceType: cur ? cur.resourceType : r.resourceType, providerId: cur ? cur.providerId : "" };
    let out;
    try {
      if (a.action === "delete" || a.action === "replace") {
        await (await this.g()).delete(ref);
        this.state.remove(r.name);
        if (ref.resourceType === "infra.eventbus") this.caps.nats.forgetBroker(r.name);
        if (a.action === "delete") return null;
      }
      out = a.action === "update" ? await (await this.g()).update(ref, r) : await (await this.g()).create(r);
    } catch (e) {
      if (e instanceof ProviderError) return this.secrets.redact(errorText(e.kind, e.payload));
      if (e instanceof Trap) return `the component trapped: ${e.message}`;
      throw e;
    }
    if (r.resourceType === "infra.eventbus") {
      const outputs = jsonOf(out.outputsJson);
      if (outputs && typeof outputs === "object") { this.caps.grantBrokerOutputs(outputs); this.caps.registerBroker(r.name, outputs); }
    }
    this.state.upsert(recordFrom(r, out, this.infra.providerModule, this.state.get(r.name)));
    return null;
  }
}
