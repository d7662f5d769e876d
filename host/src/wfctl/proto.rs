//! Messages, servers and clients generated from host/proto by build.rs.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// `workflow.plugin.external.iac`: wfctl's IaC provider and driver contract.
pub mod iac {
    tonic::include_proto!("workflow.plugin.external.iac");
}

/// `workflow.plugin.v1`: the PluginService (contract registry).
pub mod plugin_v1 {
    tonic::include_proto!("workflow.plugin.v1");
}

/// `plugin`: go-plugin's own controller service.
pub mod go_plugin {
    tonic::include_proto!("plugin");
}

/// The encoded FileDescriptorSet of every .proto above (for GetContractRegistry).
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/wfctl_descriptor.bin"));
