//! The native host of the eventbus IaC provider: Wasmtime runtime, capabilities, the
//! standalone CLI and its state.

pub mod caps;
pub mod commands;
pub mod infra;
pub mod runtime;
pub mod state;
pub mod wfctl;
