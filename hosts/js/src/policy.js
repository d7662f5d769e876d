// The capability rules every host of the component enforces, read from policy.json: the Rust
// CLI's `eventbus policy`, shipped with this package (the polyglot test checks it is current).
import { readFileSync } from "node:fs";

export const POLICY = JSON.parse(readFileSync(new URL("../policy.json", import.meta.url), "utf8"));
export const MUTATING_EXPORTS = POLICY.mutating_exports;
export const READ_ONLY_METHODS = POLICY.http.read_only_methods;
export const NATS_OPERATIONS = POLICY.nats.operations.map((o) => ({
  verb: o.verb.split("."), names: o.names, changes: o.changes, name: o.verb,
}));
