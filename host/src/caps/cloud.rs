//! Cloud accounts. No account is granted in this release: every call is a typed denial
//! naming the setting an operator will add when deploy targets need it.

use super::CapError;
use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::cloud::{Host, Request, Response};

impl Host for HostState {
    async fn call(
        &mut self,
        account: String,
        req: Request,
    ) -> wasmtime::Result<Result<Response, CapError>> {
        tracing::warn!(%account, method = %req.method, path = %req.path, "cloud call denied: no cloud accounts are granted");
        Ok(Err(CapError::Denied(format!(
            "cloud account {account:?} is not granted ({} {}): add it under `cloud_accounts` in the iac.provider module config",
            req.method, req.path
        ))))
    }
}
