// The eventbus IaC provider component under Node (jco + JSPI), with the Rust host's capability
// policy. See host.js for the library API and cli.js for the CLI.
export { Session, planJson } from "./host.js";
export { Diag, Invalid } from "./infra.js";
export { Guest, ProviderError, Runtime, Trap } from "./runtime.js";
