//! Deploy targets: where a broker runs and what endpoint it yields. Adding one is a file
//! here and a line in `drivers.rs`.

pub mod digitalocean;
pub mod kubernetes;
pub mod self_hosted;
