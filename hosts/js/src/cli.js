#!/usr/bin/env node
// `eventbus-js [plan|apply|destroy] -f infra.yaml`: the Rust CLI's three main verbs with its
// options (-o json, --state, --component, --allow-replace) and exit codes (plan: 0 no changes,
// 2 changes, 1 error; apply and destroy: 0 done, 1 failed).
import { parseArgs } from "node:util";
import { Session } from "./host.js";
import { Invalid } from "./infra.js";

const SIGIL = { create: "+", update: "~", replace: "-/+", delete: "-" };
const short = (v) => (v === null || v === undefined ? "(unset)" : typeof v === "string" ? v : JSON.stringify(v));

function render(source, plan) {
  if (!plan.actions.length) return `No changes: the live resources match ${source}.\n`;
  const width = Math.max(...plan.actions.map((a) => a.type.length));
  const out = [`Plan for ${source}:\n`];
  for (const a of plan.actions) {
    out.push(`  ${SIGIL[a.action].padStart(3)} ${a.action.padEnd(7)} ${a.type.padEnd(width)}  ${a.name}`);
    if (a.action === "create" && a.config && typeof a.config === "object") {
      for (const [k, v] of Object.entries(a.config)) if (k !== "iac_provider" && k !== "protected") out.push(`          ${k}: ${short(v)}`);
    } else {
      for (const c of a.changes) out.push(`          ${c.path}: ${short(c.old)} -> ${short(c.new)}${c.force_new ? `   # forces replacement: ${c.reason}` : ""}`);
    }
    for (const n of a.notes) out.push(`          note: ${n}`);
  }
  const s = plan.summary;
  out.push(`\nPlan: ${s.create} to create, ${s.update} to update, ${s.replace} to replace, ${s.delete} to delete.`);
  return out.join("\n") + "\n";
}

export async function main(argv = process.argv.slice(2)) {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      file: { type: "string", short: "f", default: "infra.yaml" }, output: { type: "string", short: "o", default: "text" },
      state: { type: "string" }, component: { type: "string" }, "allow-replace": { type: "string", multiple: true, default: [] },
      verbose: { type: "boolean", short: "v" }, help: { type: "boolean", short: "h" },
    },
  });
  const command = positionals[0];
  if (values.help || !["plan", "apply", "destroy"].includes(command)) {
    console.error("usage: eventbus-js [-o text|json] [-f infra.yaml] [--state PATH] [--component eventbus_guest.wasm] plan|apply [--allow-replace NAME]|destroy");
    return values.help ? 0 : 1;
  }
  if (values.verbose) process.env.EVENTBUS_LOG = "debug";
  const json = values.output === "json";
  let s;
  try {
    s = await Session.open(values.file, { state: values.state, component: values.component });
    if (command === "plan") {
      const plan = await s.plan();
      for (const n of s.infra.skipped) console.error(`note: ${n}`);
      process.stdout.write(json ? JSON.stringify(plan, null, 2) + "\n" : render(values.file, plan));
      return plan.actions.length ? 2 : 0;
    }
    const result = await s.apply({ destroy: command === "destroy", allowReplace: values["allow-replace"] });
    if (json) process.stdout.write(JSON.stringify(result, null, 2) + "\n");
    else {
      for (const r of result.results) console.log(`${r.action} ${r.name} ${r.ok ? "done" : `FAILED: ${r.error}`} (${r.millis} ms)`);
      console.log(`\n${command[0].toUpperCase()}${command.slice(1)} complete: ${result.results.length} actions, ${result.failed} failed. State: ${result.state}`);
    }
    return result.failed ? 1 : 0;
  } catch (e) {
    if (e instanceof Invalid) {
      if (json) console.log(JSON.stringify({ valid: false, diagnostics: e.diags }, null, 2));
      else { for (const d of e.diags) console.error(`error: ${d}`); console.error(`${e.diags.length} problem${e.diags.length === 1 ? "" : "s"} found; nothing was changed.`); }
      return 1;
    }
    console.error(`error: ${e.message}`);
    return 1;
  } finally {
    await s?.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith("/cli.js") || process.argv[1]?.endsWith("eventbus-js")) {
  main().then((code) => process.exit(code));
}
