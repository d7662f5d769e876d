//! Plain domain types mirroring wfctl's IaC contract; lib.rs converts the WIT types once.

use serde_json::{Map, Value};

pub type Json = Map<String, Value>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    pub name: String,
    pub rtype: String,
    pub config: Json,
    pub size: String,
    pub depends_on: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ref {
    pub name: String,
    pub rtype: String,
    pub provider_id: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub name: String,
    pub rtype: String,
    pub provider_id: String,
    pub outputs: Json,
    pub sensitive: Vec<(String, bool)>,
    pub status: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub name: String,
    pub rtype: String,
    pub provider_id: String,
    pub applied_config: Json,
    pub outputs: Json,
    pub dependencies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The user's config key, e.g. `max_deliver`.
    pub path: String,
    pub old: Value,
    pub new: Value,
    pub force_new: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Diff {
    pub changes: Vec<Change>,
}

impl Diff {
    pub fn needs_replace(&self) -> bool {
        self.changes.iter().any(|c| c.force_new)
    }
    pub fn needs_update(&self) -> bool {
        !self.changes.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Create,
    Update,
    Replace,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    pub kind: ActionKind,
    pub spec: Spec,
    pub current: Option<State>,
    pub changes: Vec<Change>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriftClass {
    InSync,
    Ghost,
    Config,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    pub name: String,
    pub rtype: String,
    pub class: DriftClass,
    pub expected: Json,
    pub actual: Json,
    pub fields: Vec<String>,
}

pub const BROKER: &str = "infra.eventbus";
pub const STREAM: &str = "infra.eventbus.stream";
pub const CONSUMER: &str = "infra.eventbus.consumer";
pub const RESOURCE_TYPES: [&str; 3] = [BROKER, STREAM, CONSUMER];
