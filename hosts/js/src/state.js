// The state file in the Rust CLI's format ({"version": 1, "resources": [record...]}), so either
// host reads what the other wrote; rewritten atomically after every successful action.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, unlinkSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { writePrivate } from "./caps/secrets.js";
import { canonical, PROVIDER_NAME } from "./infra.js";

const now = () => new Date().toISOString().replace(/\.\d+Z$/, "Z");

export class State {
  constructor(path) {
    this.path = path;
    this.resources = [];
    if (existsSync(path)) this.resources = JSON.parse(readFileSync(path, "utf8") || "{}").resources || [];
  }
  get(name) { return this.resources.find((r) => r.name === name); }
  upsert(record) {
    const i = this.resources.findIndex((r) => r.name === record.name);
    if (i >= 0) this.resources[i] = record; else this.resources.push(record);
    this.save();
  }
  remove(name) { this.resources = this.resources.filter((r) => r.name !== name); this.save(); }
  save() {
    writePrivate(this.path, JSON.stringify({ version: 1, resources: this.resources }, null, 2));
    if (existsSync(`${this.path}.journal`)) unlinkSync(`${this.path}.journal`);
  }
  toWit() {
    return this.resources.map((r) => ({
      id: r.name, name: r.name, resourceType: r.type, provider: r.provider ?? PROVIDER_NAME, providerRef: r.provider_ref ?? "",
      providerId: r.provider_id, configHash: r.config_hash ?? "", appliedConfigJson: canonical(r.applied_config ?? null),
      appliedConfigSource: r.applied_config_source ?? "", outputsJson: canonical(r.outputs ?? null), dependencies: r.dependencies ?? [],
      createdAt: undefined, updatedAt: undefined, lastDriftCheck: undefined,
    }));
  }
}

export function recordFrom(spec, out, providerRef, previous) {
  const t = now();
  return {
    name: spec.name, type: spec.resourceType, provider: PROVIDER_NAME, provider_ref: providerRef, provider_id: out.providerId,
    config_hash: createHash("sha256").update(spec.configJson).digest("hex"), applied_config: JSON.parse(spec.configJson),
    applied_config_source: "apply", outputs: out.outputsJson ? JSON.parse(out.outputsJson) : null, dependencies: spec.dependsOn,
    created_at: previous ? previous.created_at : t, updated_at: t,
  };
}

export const defaultStatePath = (file) => join(dirname(resolve(file)), ".eventbus", "state.json");
export const secretsFile = (statePath) => join(dirname(statePath), "secrets.json");
