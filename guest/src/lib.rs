//! The eventbus IaC provider as a WebAssembly component. This file is export glue only:
//! WIT types in, domain types through `plan`, `drivers` and `provider`, WIT types out.

pub mod buses;
pub mod config;
pub mod drivers;
pub mod error;
pub mod log;
pub mod model;
pub mod plan;
pub mod provider;
pub mod targets;

pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "eventbus-provider",
        pub_export_macro: true,
        export_macro_name: "export_provider",
    });
}

use bindings::eventbus::iac::types as wit;
use bindings::exports::eventbus::iac::{driver, provider as wprov};
use error::Error;
use model::{Action, ActionKind, Change, DriftClass, Json, Output, Ref, Spec, State};
use serde_json::Value;

struct Component;

fn obj(text: &str) -> Result<Json, wit::ProviderError> {
    if text.trim().is_empty() {
        return Ok(Json::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(Value::Null) => Ok(Json::new()),
        Ok(_) => Err(wit::ProviderError::Validation(vec![wit::FieldDiagnostic {
            resource: String::new(),
            path: "config".into(),
            message: "expected a JSON object".into(),
            fix: "pass the config as a mapping".into(),
        }])),
        Err(e) => Err(wit::ProviderError::Validation(vec![wit::FieldDiagnostic {
            resource: String::new(),
            path: "config".into(),
            message: format!("not JSON: {e}"),
            fix: String::new(),
        }])),
    }
}

fn text(o: &Json) -> String {
    serde_json::to_string(o).unwrap_or_else(|_| "{}".into())
}

impl From<Error> for wit::ProviderError {
    fn from(e: Error) -> Self {
        let m = e.to_string();
        match e {
            Error::NotFound(_) => wit::ProviderError::NotFound(m),
            Error::AlreadyExists(_) => wit::ProviderError::AlreadyExists(m),
            Error::Validation(d) => wit::ProviderError::Validation(
                d.into_iter()
                    .map(|d| wit::FieldDiagnostic {
                        resource: d.resource,
                        path: d.path,
                        message: d.message,
                        fix: d.fix,
                    })
                    .collect(),
            ),
            Error::RateLimited(_) => wit::ProviderError::RateLimited(m),
            Error::Transient(_) => wit::ProviderError::Transient(m),
            Error::Unauthorized(_) => wit::ProviderError::Unauthorized(m),
            Error::Forbidden(_) => wit::ProviderError::Forbidden(m),
            Error::Unimplemented(_) => wit::ProviderError::Unimplemented(m),
            Error::Internal(_) => wit::ProviderError::Internal(m),
        }
    }
}

fn spec_in(s: wit::ResourceSpec) -> Result<Spec, wit::ProviderError> {
    Ok(Spec {
        config: obj(&s.config_json)?,
        name: s.name,
        rtype: s.resource_type,
        size: s.size,
        depends_on: s.depends_on,
    })
}

fn spec_out(s: Spec) -> wit::ResourceSpec {
    wit::ResourceSpec {
        config_json: text(&s.config),
        name: s.name,
        resource_type: s.rtype,
        size: s.size,
        hints: None,
        depends_on: s.depends_on,
    }
}

fn ref_in(r: wit::ResourceRef) -> Ref {
    Ref {
        name: r.name,
        rtype: r.resource_type,
        provider_id: r.provider_id,
    }
}

/// A recorded resource; its applied config is parsed only when `with_config` (it is empty
/// otherwise).
fn state_in(s: wit::ResourceState, with_config: bool) -> Result<State, wit::ProviderError> {
    Ok(State {
        applied_config: if with_config {
            obj(&s.applied_config_json)?
        } else {
            Json::new()
        },
        outputs: obj(&s.outputs_json)?,
        name: s.name,
        rtype: s.resource_type,
        provider_id: s.provider_id,
        dependencies: s.dependencies,
    })
}

fn state_out(s: State, source: &str) -> wit::ResourceState {
    wit::ResourceState {
        id: s.name.clone(),
        name: s.name,
        resource_type: s.rtype,
        provider: provider::NAME.into(),
        provider_ref: String::new(),
        provider_id: s.provider_id,
        config_hash: String::new(),
        applied_config_json: text(&s.applied_config),
        applied_config_source: source.into(),
        outputs_json: text(&s.outputs),
        dependencies: s.dependencies,
        created_at: None,
        updated_at: None,
        last_drift_check: None,
    }
}

fn output_in(o: wit::ResourceOutput) -> Result<Output, wit::ProviderError> {
    Ok(Output {
        outputs: obj(&o.outputs_json)?,
        name: o.name,
        rtype: o.resource_type,
        provider_id: o.provider_id,
        sensitive: o.sensitive,
        status: o.status,
    })
}

fn output_out(o: Output) -> wit::ResourceOutput {
    wit::ResourceOutput {
        outputs_json: text(&o.outputs),
        name: o.name,
        resource_type: o.rtype,
        provider_id: o.provider_id,
        sensitive: o.sensitive,
        status: o.status,
    }
}

fn change_out(c: Change) -> wit::FieldChange {
    wit::FieldChange {
        path: c.path,
        old_json: c.old.to_string(),
        new_json: c.new.to_string(),
        force_new: c.force_new,
        reason: c.reason,
    }
}

fn action_out(a: Action) -> wit::PlanAction {
    wit::PlanAction {
        action: match a.kind {
            ActionKind::Create => wit::ActionKind::Create,
            ActionKind::Update => wit::ActionKind::Update,
            ActionKind::Replace => wit::ActionKind::Replace,
            ActionKind::Delete => wit::ActionKind::Delete,
        },
        resolved_config_hash: String::new(),
        resource: spec_out(a.spec),
        current: a.current.map(|s| state_out(s, "apply")),
        changes: a.changes.into_iter().map(change_out).collect(),
        notes: a.notes,
    }
}

fn typed(rtype: &str, mut spec: Spec) -> Spec {
    if spec.rtype.is_empty() {
        spec.rtype = rtype.to_string();
    }
    spec
}

impl wprov::Guest for Component {
    fn initialize(config_json: String) -> Result<(), wit::ProviderError> {
        let cfg = obj(&config_json)?;
        match cfg.get("provider").and_then(Value::as_str) {
            None | Some("eventbus") => Ok(()),
            Some(other) => Err(Error::invalid(
                "",
                "config.provider",
                format!("this plugin is the eventbus provider, not {other:?}"),
                "set provider: eventbus on the iac.provider module",
            )
            .into()),
        }
    }

    fn name() -> String {
        provider::NAME.into()
    }

    fn version() -> String {
        provider::VERSION.into()
    }

    fn capabilities() -> wit::ProviderCapabilities {
        wit::ProviderCapabilities {
            capabilities: provider::capabilities()
                .into_iter()
                .map(
                    |(resource_type, tier, operations)| wit::CapabilityDeclaration {
                        resource_type,
                        tier,
                        operations,
                    },
                )
                .collect(),
            canonical_keys: vec![],
            compute_plan_version: "v2".into(),
        }
    }

    fn validate(desired: Vec<wit::ResourceSpec>) -> Result<(), wit::ProviderError> {
        let desired = desired
            .into_iter()
            .map(spec_in)
            .collect::<Result<Vec<_>, _>>()?;
        plan::resolve(&desired, &[])?;
        Ok(())
    }

    fn plan(
        desired: Vec<wit::ResourceSpec>,
        current: Vec<wit::ResourceState>,
    ) -> Result<wit::IacPlan, wit::ProviderError> {
        let desired = desired
            .into_iter()
            .map(spec_in)
            .collect::<Result<Vec<_>, _>>()?;
        // A recorded resource's applied config is only read when it is deleted (it becomes
        // the delete's spec), so it is parsed only for those: a no-op plan skips them all.
        let wanted: std::collections::HashSet<&str> =
            desired.iter().map(|s| s.name.as_str()).collect();
        let current = current
            .into_iter()
            .map(|s| {
                let deleted = !wanted.contains(s.name.as_str());
                state_in(s, deleted)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut actions = plan::plan(&desired, &current)?;
        buses::preflight(&mut actions)?;
        Ok(wit::IacPlan {
            id: String::new(),
            actions: actions.into_iter().map(action_out).collect(),
            created_at: None,
            desired_hash: String::new(),
            schema_version: 1,
            input_snapshot: vec![],
        })
    }

    fn destroy(refs: Vec<wit::ResourceRef>) -> Result<wit::DestroyResult, wit::ProviderError> {
        let refs: Vec<Ref> = refs.into_iter().map(ref_in).collect();
        let (destroyed, errors) = provider::destroy(&refs);
        Ok(wit::DestroyResult {
            destroyed,
            errors: errors
                .into_iter()
                .map(|(resource, action, error)| wit::ActionError {
                    resource,
                    action,
                    error,
                })
                .collect(),
        })
    }

    fn status(refs: Vec<wit::ResourceRef>) -> Result<Vec<wit::ResourceStatus>, wit::ProviderError> {
        let refs: Vec<Ref> = refs.into_iter().map(ref_in).collect();
        Ok(provider::status(&refs)
            .into_iter()
            .map(|(r, status, outputs)| wit::ResourceStatus {
                name: r.name,
                resource_type: r.rtype,
                provider_id: r.provider_id,
                status,
                outputs_json: text(&outputs),
            })
            .collect())
    }

    fn detect_drift(
        refs: Vec<wit::ResourceRef>,
        specs: Vec<wit::ResourceSpec>,
    ) -> Result<Vec<wit::DriftResult>, wit::ProviderError> {
        let refs: Vec<Ref> = refs.into_iter().map(ref_in).collect();
        let specs = specs
            .into_iter()
            .map(spec_in)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(provider::detect_drift(&refs, &specs)?
            .into_iter()
            .map(|d| wit::DriftResult {
                drifted: d.class != DriftClass::InSync,
                class: match d.class {
                    DriftClass::InSync => wit::DriftClass::InSync,
                    DriftClass::Ghost => wit::DriftClass::Ghost,
                    DriftClass::Config => wit::DriftClass::Config,
                },
                name: d.name,
                resource_type: d.rtype,
                expected_json: text(&d.expected),
                actual_json: text(&d.actual),
                fields: d.fields,
            })
            .collect())
    }

    fn import(
        provider_id: String,
        resource_type: String,
    ) -> Result<wit::ResourceState, wit::ProviderError> {
        Ok(state_out(
            provider::import(&provider_id, &resource_type)?,
            "adoption",
        ))
    }

    fn resolve_sizing(
        resource_type: String,
        size: String,
        _hints: Option<wit::ResourceHints>,
    ) -> Result<wit::ProviderSizing, wit::ProviderError> {
        let (instance_type, specs) = provider::resolve_sizing(&resource_type, &size)?;
        Ok(wit::ProviderSizing {
            instance_type,
            specs_json: text(&specs),
        })
    }

    /// wfctl asks the first iac.provider module in a file to create the bucket of a remote
    /// state backend (spaces, s3, gcs...) before every apply. Event buses hold no wfctl state,
    /// so there is nothing to create: an empty result lets the apply go on (an error would fail
    /// every apply of a file that lists this provider first), and the log says whose job it is.
    fn bootstrap_state_backend(
        config_json: String,
    ) -> Result<wit::BootstrapResult, wit::ProviderError> {
        let config: Value = serde_json::from_str(&config_json).unwrap_or_default();
        let backend = config["backend"].as_str().unwrap_or("");
        log::warn(
            "nothing to bootstrap: the eventbus provider creates no state backend; if this backend's bucket does not exist yet, declare the iac.provider module that owns it before eventbus's, or run `wfctl infra bootstrap` with it",
            &[("backend", backend)],
        );
        Ok(wit::BootstrapResult {
            bucket: String::new(),
            region: String::new(),
            endpoint: String::new(),
            env_vars: vec![],
        })
    }

    fn schema(resource_type: String) -> Result<String, wit::ProviderError> {
        Ok(provider::schema(&resource_type)?.to_string())
    }
}

impl driver::Guest for Component {
    fn create(
        resource_type: String,
        spec: wit::ResourceSpec,
    ) -> Result<wit::ResourceOutput, wit::ProviderError> {
        Ok(output_out(drivers::create(&typed(
            &resource_type,
            spec_in(spec)?,
        ))?))
    }

    fn read(
        resource_type: String,
        r: wit::ResourceRef,
    ) -> Result<wit::ResourceOutput, wit::ProviderError> {
        let mut r = ref_in(r);
        r.rtype = resource_type;
        Ok(output_out(drivers::read(&r)?))
    }

    fn update(
        resource_type: String,
        r: wit::ResourceRef,
        spec: wit::ResourceSpec,
    ) -> Result<wit::ResourceOutput, wit::ProviderError> {
        let mut r = ref_in(r);
        r.rtype = resource_type.clone();
        Ok(output_out(drivers::update(
            &r,
            &typed(&resource_type, spec_in(spec)?),
        )?))
    }

    fn delete(resource_type: String, r: wit::ResourceRef) -> Result<(), wit::ProviderError> {
        let mut r = ref_in(r);
        r.rtype = resource_type;
        Ok(drivers::delete(&r)?)
    }

    fn diff(
        resource_type: String,
        desired: wit::ResourceSpec,
        current: wit::ResourceOutput,
    ) -> Result<wit::DiffResult, wit::ProviderError> {
        let changes = drivers::diff_live(
            &typed(&resource_type, spec_in(desired)?),
            &output_in(current)?,
        )?;
        Ok(wit::DiffResult {
            needs_update: !changes.is_empty(),
            needs_replace: changes.iter().any(|c| c.force_new),
            changes: changes.into_iter().map(change_out).collect(),
        })
    }

    fn scale(
        resource_type: String,
        _r: wit::ResourceRef,
        _replicas: i32,
    ) -> Result<wit::ResourceOutput, wit::ProviderError> {
        Err(Error::Unimplemented(format!(
            "scale of {resource_type}: set num_replicas and apply"
        ))
        .into())
    }

    fn health_check(
        resource_type: String,
        r: wit::ResourceRef,
    ) -> Result<wit::HealthResult, wit::ProviderError> {
        let mut r = ref_in(r);
        r.rtype = resource_type;
        Ok(match drivers::read(&r) {
            Ok(_) => wit::HealthResult {
                healthy: true,
                message: "answers".into(),
            },
            Err(e) => wit::HealthResult {
                healthy: false,
                message: e.to_string(),
            },
        })
    }

    fn sensitive_keys(resource_type: String) -> Result<Vec<String>, wit::ProviderError> {
        Ok(drivers::sensitive_keys(&resource_type)?)
    }

    fn troubleshoot(
        resource_type: String,
        r: wit::ResourceRef,
        failure_msg: String,
    ) -> Result<Vec<wit::Diagnostic>, wit::ProviderError> {
        let mut r = ref_in(r);
        r.rtype = resource_type;
        let detail = match drivers::read(&r) {
            Ok(o) => format!("the resource answers now; outputs: {}", text(&o.outputs)),
            Err(e) => e.to_string(),
        };
        Ok(vec![wit::Diagnostic {
            id: r.name,
            phase: "read".into(),
            cause: failure_msg,
            at: None,
            detail,
        }])
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export_provider!(Component with_types_in bindings);
