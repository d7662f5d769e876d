//! Plain outbound HTTP. Nothing is allow-listed in this release: every fetch is a typed
//! denial naming the setting to add.

use super::CapError;
use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::cloud::Response;
use crate::runtime::bindings::eventbus::iac::http::{Host, Request};

impl Host for HostState {
    async fn fetch(&mut self, req: Request) -> wasmtime::Result<Result<Response, CapError>> {
        tracing::warn!(url = %req.url, "http fetch denied: no hosts are allow-listed");
        Ok(Err(CapError::Denied(format!(
            "HTTP to {} is not granted: add its scheme://host:port under `http_allow` in the iac.provider module config",
            req.url
        ))))
    }
}
