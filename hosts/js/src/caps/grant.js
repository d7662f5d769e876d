// What one call into the component may do (host/src/caps/grant.rs): every export is read-only
// but the mutating ones (policy.json), and a mutating call may change only its own stream (and
// its consumers) or consumer, named by its spec or provider id.
const STREAM = "infra.eventbus.stream";
const CONSUMER = "infra.eventbus.consumer";
const text = (v, k) => (typeof v?.[k] === "string" && v[k] ? v[k] : null);

function ofSpec(spec) {
  let config;
  try { config = JSON.parse(spec.configJson); } catch { return []; }
  if (!config || typeof config !== "object") return [];
  const broker = text(config, "broker_ref"), name = text(config, "name");
  if (!name) return [];
  if (spec.resourceType === STREAM) return [{ broker, stream: name, consumer: null }];
  if (spec.resourceType === CONSUMER) {
    const sn = config.stream_name;
    const streams = Array.isArray(sn) ? sn.filter((s) => typeof s === "string" && s) : [text(config, "stream_name")].filter(Boolean);
    return streams.map((stream) => ({ broker, stream, consumer: name }));
  }
  return [];
}

function ofRef(ref) {
  const p = ref.providerId.split("/");
  if (ref.resourceType === STREAM && p.length === 1 && p[0]) return [{ broker: null, stream: p[0], consumer: null }];
  if (ref.resourceType === STREAM && p.length === 2 && p[1]) return [{ broker: p[0] || null, stream: p[1], consumer: null }];
  if (ref.resourceType === CONSUMER && p.length === 3 && p[1] && p[2]) return [{ broker: p[0] || null, stream: p[1], consumer: p[2] }];
  return [];
}

export class CallGrant {
  constructor(exportName = "", mutates = false, objects = []) {
    this.export = exportName; this.mutates = mutates; this.objects = objects;
  }
  static readOnly(exportName = "") { return new CallGrant(exportName, false, []); }
  static mutating(exportName, specs, refs) {
    const objects = [];
    for (const o of [...specs.flatMap(ofSpec), ...refs.flatMap(ofRef)]) {
      if (!objects.some((x) => x.broker === o.broker && x.stream === o.stream && x.consumer === o.consumer)) objects.push(o);
    }
    return new CallGrant(exportName, true, objects);
  }
  mayWrite(broker, stream, consumer) {
    return this.mutates && this.objects.some((o) =>
      (o.broker === null || o.broker === broker) && o.stream === stream && (o.consumer === null || o.consumer === consumer));
  }
  refusal(what) {
    const exp = this.export || "this call";
    if (!this.mutates) {
      return `${what} changes the server, and \`${exp}\` may only read: changes are granted only inside create, update, delete, scale and destroy`;
    }
    const scope = this.objects.map((o) => (o.consumer ? `consumer ${o.stream}/${o.consumer}` : `stream ${o.stream} and its consumers`));
    return `${what} is outside this \`${exp}\` call's resource: it may change only ${scope.join(", ") || "no JetStream object"}`;
  }
}
