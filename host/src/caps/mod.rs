//! The capabilities: the only doors out of the sandbox. One module per WIT import, each
//! owning its policy check. Every denial is a typed error naming the grant to add.

pub mod cloud;
pub mod http;
pub mod log;
pub mod nats;
pub mod secrets;

use crate::runtime::HostState;
use crate::runtime::bindings::eventbus::iac::{capability_types, types};
use crate::runtime::limits::Limits;

pub use capability_types::CapError;

/// Everything every store shares: grants, connections, secrets, limits.
pub struct Caps {
    pub nats: nats::NatsCap,
    pub secrets: secrets::SecretStore,
    pub cloud: cloud::CloudCap,
    pub http: http::HttpCap,
    pub limits: Limits,
}

impl Caps {
    /// Capabilities with no cloud account granted.
    pub fn new(nats: nats::NatsCap, secrets: secrets::SecretStore, limits: Limits) -> Caps {
        Caps { nats, secrets, cloud: cloud::CloudCap::default(), http: http::HttpCap::default(), limits }
    }

    pub fn with_http(mut self, http: http::HttpCap) -> Caps {
        self.http = http;
        self
    }

    pub fn with_cloud(mut self, cloud: cloud::CloudCap) -> Caps {
        self.cloud = cloud;
        self
    }
}

impl types::Host for HostState {}
impl capability_types::Host for HostState {}
