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
    /// Replaceable after start: under wfctl they arrive with `Initialize`.
    pub cloud: std::sync::RwLock<cloud::CloudCap>,
    pub http: std::sync::RwLock<http::HttpCap>,
    pub limits: Limits,
}

impl Caps {
    /// Capabilities with no cloud account granted.
    pub fn new(nats: nats::NatsCap, secrets: secrets::SecretStore, limits: Limits) -> Caps {
        Caps {
            nats,
            secrets,
            cloud: Default::default(),
            http: Default::default(),
            limits,
        }
    }

    pub fn with_http(self, http: http::HttpCap) -> Caps {
        self.set_http(http);
        self
    }

    pub fn with_cloud(self, cloud: cloud::CloudCap) -> Caps {
        self.set_cloud(cloud);
        self
    }

    pub fn set_cloud(&self, cloud: cloud::CloudCap) {
        *self.cloud.write().expect("cloud grants") = cloud;
    }

    pub fn set_http(&self, http: http::HttpCap) {
        *self.http.write().expect("http grants") = http;
    }
}

impl types::Host for HostState {}
impl capability_types::Host for HostState {}
