//! Protobuf messages (wfctl's wire) <-> WIT types (the component's contract). The two carry
//! the same fields; JSON travels as bytes on the wire and as text in WIT.

use super::proto::iac as pb;
use crate::runtime::wit;
use std::collections::HashMap;
use tonic::Status;

/// JSON bytes from the wire as text for the guest. Not UTF-8 is the caller's mistake.
pub fn text(bytes: &[u8], field: &str) -> Result<String, Status> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        Status::invalid_argument(format!("iac: validation error: {field} is not UTF-8 JSON"))
    })
}

fn ts_in(t: Option<prost_types::Timestamp>) -> Option<wit::Timestamp> {
    t.map(|t| wit::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos.clamp(0, 999_999_999) as u32,
    })
}

fn ts_out(t: Option<wit::Timestamp>) -> Option<prost_types::Timestamp> {
    t.map(|t| prost_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos.min(999_999_999) as i32,
    })
}

pub fn hints_in(h: Option<pb::ResourceHints>) -> Option<wit::ResourceHints> {
    h.map(|h| wit::ResourceHints {
        cpu: h.cpu,
        memory: h.memory,
        storage: h.storage,
    })
}

fn hints_out(h: Option<wit::ResourceHints>) -> Option<pb::ResourceHints> {
    h.map(|h| pb::ResourceHints {
        cpu: h.cpu,
        memory: h.memory,
        storage: h.storage,
    })
}

pub fn spec_in(s: pb::ResourceSpec) -> Result<wit::ResourceSpec, Status> {
    Ok(wit::ResourceSpec {
        config_json: text(&s.config_json, "config_json")?,
        name: s.name,
        resource_type: s.r#type,
        size: s.size,
        hints: hints_in(s.hints),
        depends_on: s.depends_on,
    })
}

pub fn spec_out(s: wit::ResourceSpec) -> pb::ResourceSpec {
    pb::ResourceSpec {
        name: s.name,
        r#type: s.resource_type,
        config_json: s.config_json.into_bytes(),
        size: s.size,
        hints: hints_out(s.hints),
        depends_on: s.depends_on,
    }
}

pub fn ref_in(r: pb::ResourceRef) -> wit::ResourceRef {
    wit::ResourceRef {
        name: r.name,
        resource_type: r.r#type,
        provider_id: r.provider_id,
    }
}

pub fn output_in(o: pb::ResourceOutput) -> Result<wit::ResourceOutput, Status> {
    let mut sensitive: Vec<(String, bool)> = o.sensitive.into_iter().collect();
    sensitive.sort();
    Ok(wit::ResourceOutput {
        outputs_json: text(&o.outputs_json, "outputs_json")?,
        name: o.name,
        resource_type: o.r#type,
        provider_id: o.provider_id,
        sensitive,
        status: o.status,
    })
}

pub fn output_out(o: wit::ResourceOutput) -> pb::ResourceOutput {
    pb::ResourceOutput {
        name: o.name,
        r#type: o.resource_type,
        provider_id: o.provider_id,
        outputs_json: o.outputs_json.into_bytes(),
        sensitive: o.sensitive.into_iter().collect::<HashMap<_, _>>(),
        status: o.status,
    }
}

pub fn state_in(s: pb::ResourceState) -> Result<wit::ResourceState, Status> {
    Ok(wit::ResourceState {
        applied_config_json: text(&s.applied_config_json, "applied_config_json")?,
        outputs_json: text(&s.outputs_json, "outputs_json")?,
        id: s.id,
        name: s.name,
        resource_type: s.r#type,
        provider: s.provider,
        provider_ref: s.provider_ref,
        provider_id: s.provider_id,
        config_hash: s.config_hash,
        applied_config_source: s.applied_config_source,
        dependencies: s.dependencies,
        created_at: ts_in(s.created_at),
        updated_at: ts_in(s.updated_at),
        last_drift_check: ts_in(s.last_drift_check),
    })
}

pub fn state_out(s: wit::ResourceState) -> pb::ResourceState {
    pb::ResourceState {
        id: s.id,
        name: s.name,
        r#type: s.resource_type,
        provider: s.provider,
        provider_ref: s.provider_ref,
        provider_id: s.provider_id,
        config_hash: s.config_hash,
        applied_config_json: s.applied_config_json.into_bytes(),
        applied_config_source: s.applied_config_source,
        outputs_json: s.outputs_json.into_bytes(),
        dependencies: s.dependencies,
        created_at: ts_out(s.created_at),
        updated_at: ts_out(s.updated_at),
        last_drift_check: ts_out(s.last_drift_check),
    }
}

/// `reason` has no field on wfctl's wire; it is dropped here.
pub fn change_out(c: wit::FieldChange) -> pb::FieldChange {
    pb::FieldChange {
        path: c.path,
        old_json: c.old_json.into_bytes(),
        new_json: c.new_json.into_bytes(),
        force_new: c.force_new,
    }
}

pub fn diff_out(d: wit::DiffResult) -> pb::DiffResult {
    pb::DiffResult {
        needs_update: d.needs_update,
        needs_replace: d.needs_replace,
        changes: d.changes.into_iter().map(change_out).collect(),
    }
}

pub fn action_name(k: wit::ActionKind) -> &'static str {
    match k {
        wit::ActionKind::Create => "create",
        wit::ActionKind::Update => "update",
        wit::ActionKind::Replace => "replace",
        wit::ActionKind::Delete => "delete",
    }
}

/// The reviewer notes have no field on the wire either.
pub fn plan_out(p: wit::IacPlan) -> pb::IaCPlan {
    pb::IaCPlan {
        id: p.id,
        actions: p
            .actions
            .into_iter()
            .map(|a| pb::PlanAction {
                action: action_name(a.action).into(),
                resource: Some(spec_out(a.resource)),
                current: a.current.map(state_out),
                changes: a.changes.into_iter().map(change_out).collect(),
                resolved_config_hash: a.resolved_config_hash,
            })
            .collect(),
        created_at: ts_out(p.created_at),
        desired_hash: p.desired_hash,
        schema_version: p.schema_version,
        input_snapshot: p.input_snapshot.into_iter().collect(),
    }
}

pub fn capabilities_out(c: wit::ProviderCapabilities) -> pb::CapabilitiesResponse {
    pb::CapabilitiesResponse {
        capabilities: c
            .capabilities
            .into_iter()
            .map(|d| pb::IaCCapabilityDeclaration {
                resource_type: d.resource_type,
                tier: d.tier,
                operations: d.operations,
            })
            .collect(),
        canonical_keys: c.canonical_keys,
        compute_plan_version: c.compute_plan_version,
    }
}

pub fn status_out(s: wit::ResourceStatus) -> pb::ResourceStatus {
    pb::ResourceStatus {
        name: s.name,
        r#type: s.resource_type,
        provider_id: s.provider_id,
        status: s.status,
        outputs_json: s.outputs_json.into_bytes(),
    }
}

pub fn drift_out(d: wit::DriftResult) -> pb::DriftResult {
    let class = match d.class {
        wit::DriftClass::Unknown => pb::DriftClass::Unknown,
        wit::DriftClass::InSync => pb::DriftClass::InSync,
        wit::DriftClass::Ghost => pb::DriftClass::Ghost,
        wit::DriftClass::Config => pb::DriftClass::Config,
    };
    pb::DriftResult {
        name: d.name,
        r#type: d.resource_type,
        drifted: d.drifted,
        class: class as i32,
        expected_json: d.expected_json.into_bytes(),
        actual_json: d.actual_json.into_bytes(),
        fields: d.fields,
    }
}

pub fn destroy_out(d: wit::DestroyResult) -> pb::DestroyResult {
    pb::DestroyResult {
        destroyed: d.destroyed,
        errors: d.errors.into_iter().map(action_error_out).collect(),
    }
}

pub fn action_error_out(e: wit::ActionError) -> pb::ActionError {
    pb::ActionError {
        resource: e.resource,
        action: e.action,
        error: e.error,
    }
}

pub fn sizing_out(s: wit::ProviderSizing) -> pb::ProviderSizing {
    pb::ProviderSizing {
        instance_type: s.instance_type,
        specs_json: s.specs_json.into_bytes(),
    }
}

pub fn bootstrap_out(b: wit::BootstrapResult) -> pb::BootstrapResult {
    pb::BootstrapResult {
        bucket: b.bucket,
        region: b.region,
        endpoint: b.endpoint,
        env_vars: b.env_vars.into_iter().collect(),
    }
}

pub fn health_out(h: wit::HealthResult) -> pb::HealthResult {
    pb::HealthResult {
        healthy: h.healthy,
        message: h.message,
    }
}

pub fn diagnostic_out(d: wit::Diagnostic) -> pb::Diagnostic {
    pb::Diagnostic {
        id: d.id,
        phase: d.phase,
        cause: d.cause,
        at: ts_out(d.at),
        detail: d.detail,
    }
}

/// `map<string, ResourceSpec>` keyed by resource name; a spec without a name takes its key.
pub fn spec_map_in(
    specs: HashMap<String, pb::ResourceSpec>,
) -> Result<Vec<wit::ResourceSpec>, Status> {
    let mut out: Vec<wit::ResourceSpec> = specs
        .into_iter()
        .map(|(k, s)| {
            let mut s = spec_in(s)?;
            if s.name.is_empty() {
                s.name = k;
            }
            Ok(s)
        })
        .collect::<Result<_, Status>>()?;
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_states_survive_the_round_trip_through_the_wire_types() {
        // Every field, timestamps included, comes back as it went out.
        let spec = wit::ResourceSpec {
            name: "s".into(),
            resource_type: "infra.eventbus.stream".into(),
            config_json: r#"{"name":"S"}"#.into(),
            size: "m".into(),
            hints: Some(wit::ResourceHints {
                cpu: "1".into(),
                memory: "2Gi".into(),
                storage: "".into(),
            }),
            depends_on: vec!["b".into()],
        };
        let back = spec_in(spec_out(spec.clone())).unwrap();
        assert_eq!(format!("{back:?}"), format!("{spec:?}"));
        let st = wit::ResourceState {
            id: "s".into(),
            name: "s".into(),
            resource_type: "t".into(),
            provider: "eventbus".into(),
            provider_ref: "eventbus".into(),
            provider_id: "b/S".into(),
            config_hash: "h".into(),
            applied_config_json: "{}".into(),
            applied_config_source: "apply".into(),
            outputs_json: r#"{"a":1}"#.into(),
            dependencies: vec!["b".into()],
            created_at: Some(wit::Timestamp {
                seconds: 5,
                nanos: 6,
            }),
            updated_at: None,
            last_drift_check: Some(wit::Timestamp {
                seconds: 7,
                nanos: 0,
            }),
        };
        let back = state_in(state_out(st.clone())).unwrap();
        assert_eq!(format!("{back:?}"), format!("{st:?}"));
    }

    #[test]
    fn drift_classes_map_onto_the_wire_enum() {
        // A missed translation would make every class UNKNOWN on wfctl's side.
        let d = |class| wit::DriftResult {
            name: "n".into(),
            resource_type: "t".into(),
            drifted: true,
            class,
            expected_json: "{}".into(),
            actual_json: "{}".into(),
            fields: vec![],
        };
        assert_eq!(
            drift_out(d(wit::DriftClass::Ghost)).class,
            pb::DriftClass::Ghost as i32
        );
        assert_eq!(drift_out(d(wit::DriftClass::Config)).class, 3);
        assert_eq!(drift_out(d(wit::DriftClass::InSync)).class, 1);
    }

    #[test]
    fn invalid_utf8_config_is_refused_as_a_validation_error() {
        let s = pb::ResourceSpec {
            config_json: vec![0xff, 0xfe],
            ..Default::default()
        };
        let e = spec_in(s).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("iac: validation error"));
    }
}
