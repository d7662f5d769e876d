//! The gRPC services wfctl calls, each forwarding into the component through [`Bridge`].
//! The bridge only translates; every decision is the guest's.

use super::bridge::Bridge;
use super::convert::{self, text};
use super::proto::go_plugin;
use super::proto::iac as pb;
use super::proto::iac::ia_c_provider_drift_config_detector_server::IaCProviderDriftConfigDetector;
use super::proto::iac::ia_c_provider_drift_detector_server::IaCProviderDriftDetector;
use super::proto::iac::ia_c_provider_finalizer_server::IaCProviderFinalizer;
use super::proto::iac::ia_c_provider_required_server::IaCProviderRequired;
use super::proto::iac::resource_driver_server::ResourceDriver;
use super::proto::plugin_v1;
use crate::runtime::wit;
use std::sync::Arc;
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

fn missing(what: &str) -> Status {
    Status::invalid_argument(format!("iac: validation error: {what} is required"))
}

/// The routing type wins over whatever the spec or ref says (wfctl sends both the same).
fn typed_spec(
    rtype: &str,
    spec: Option<pb::ResourceSpec>,
    what: &str,
) -> Result<wit::ResourceSpec, Status> {
    let mut s = convert::spec_in(spec.ok_or_else(|| missing(what))?)?;
    s.resource_type = rtype.to_string();
    Ok(s)
}

fn typed_ref(rtype: &str, r: Option<pb::ResourceRef>) -> Result<wit::ResourceRef, Status> {
    let mut r = convert::ref_in(r.ok_or_else(|| missing("ref"))?);
    r.resource_type = rtype.to_string();
    Ok(r)
}

#[tonic::async_trait]
impl IaCProviderRequired for Bridge {
    async fn initialize(
        &self,
        req: Request<pb::InitializeRequest>,
    ) -> Reply<pb::InitializeResponse> {
        let cfg = text(&req.into_inner().config_json, "config_json")?;
        Bridge::initialize(self, &cfg).await?;
        Ok(Response::new(pb::InitializeResponse {}))
    }

    async fn name(&self, _: Request<pb::NameRequest>) -> Reply<pb::NameResponse> {
        let mut g = self.guest().await?;
        let name = self.finish(g.get().name().await.map(Ok))?;
        Ok(Response::new(pb::NameResponse { name }))
    }

    async fn version(&self, _: Request<pb::VersionRequest>) -> Reply<pb::VersionResponse> {
        let mut g = self.guest().await?;
        let version = self.finish(g.get().version().await.map(Ok))?;
        Ok(Response::new(pb::VersionResponse { version }))
    }

    async fn capabilities(
        &self,
        _: Request<pb::CapabilitiesRequest>,
    ) -> Reply<pb::CapabilitiesResponse> {
        let mut g = self.guest().await?;
        let caps = self.finish(g.get().capabilities().await.map(Ok))?;
        Ok(Response::new(convert::capabilities_out(caps)))
    }

    async fn plan(&self, req: Request<pb::PlanRequest>) -> Reply<pb::PlanResponse> {
        let req = req.into_inner();
        let mut desired = req
            .desired
            .into_iter()
            .map(convert::spec_in)
            .collect::<Result<Vec<_>, _>>()?;
        for s in &mut desired {
            self.prepare_spec(s)?;
        }
        let current = req
            .current
            .into_iter()
            .map(convert::state_in)
            .collect::<Result<Vec<_>, _>>()?;
        for st in &current {
            self.learn_broker(&st.name, &st.resource_type, &st.outputs_json);
        }
        let mut g = self.guest().await?;
        let plan = self.finish(g.get().plan(&desired, &current).await)?;
        Ok(Response::new(pb::PlanResponse {
            plan: Some(convert::plan_out(plan)),
        }))
    }

    async fn destroy(&self, req: Request<pb::DestroyRequest>) -> Reply<pb::DestroyResponse> {
        let refs: Vec<wit::ResourceRef> = req
            .into_inner()
            .refs
            .into_iter()
            .map(convert::ref_in)
            .collect();
        self.learn_refs(&refs).await;
        let mut g = self.guest().await?;
        let result = self.finish(g.get().destroy(&refs).await)?;
        drop(g);
        for r in refs.iter().filter(|r| result.destroyed.contains(&r.name)) {
            self.forget_broker(&r.name, &r.resource_type);
        }
        Ok(Response::new(pb::DestroyResponse {
            result: Some(convert::destroy_out(result)),
        }))
    }

    async fn status(&self, req: Request<pb::StatusRequest>) -> Reply<pb::StatusResponse> {
        let refs: Vec<wit::ResourceRef> = req
            .into_inner()
            .refs
            .into_iter()
            .map(convert::ref_in)
            .collect();
        self.learn_refs(&refs).await;
        let mut g = self.guest().await?;
        let statuses = self.finish(g.get().status(&refs).await)?;
        Ok(Response::new(pb::StatusResponse {
            statuses: statuses.into_iter().map(convert::status_out).collect(),
        }))
    }

    async fn import(&self, req: Request<pb::ImportRequest>) -> Reply<pb::ImportResponse> {
        let req = req.into_inner();
        let mut g = self.guest().await?;
        let state = self.finish(g.get().import(&req.provider_id, &req.resource_type).await)?;
        Ok(Response::new(pb::ImportResponse {
            state: Some(convert::state_out(state)),
        }))
    }

    async fn resolve_sizing(
        &self,
        req: Request<pb::ResolveSizingRequest>,
    ) -> Reply<pb::ResolveSizingResponse> {
        let req = req.into_inner();
        let hints = convert::hints_in(req.hints);
        let mut g = self.guest().await?;
        let sizing = self.finish(
            g.get()
                .resolve_sizing(&req.resource_type, &req.size, hints.as_ref())
                .await,
        )?;
        Ok(Response::new(pb::ResolveSizingResponse {
            sizing: Some(convert::sizing_out(sizing)),
        }))
    }

    /// wfctl calls this on the first iac.provider module of a file whose iac.state backend is
    /// remote (spaces, s3...), before every apply; the component answers.
    async fn bootstrap_state_backend(
        &self,
        req: Request<pb::BootstrapStateBackendRequest>,
    ) -> Reply<pb::BootstrapStateBackendResponse> {
        let config = String::from_utf8_lossy(&req.into_inner().config_json).into_owned();
        let mut slot = self.guest().await?;
        let result = self.finish(slot.get().bootstrap_state_backend(&config).await)?;
        Ok(Response::new(pb::BootstrapStateBackendResponse {
            result: Some(convert::bootstrap_out(result)),
        }))
    }
}

#[tonic::async_trait]
impl ResourceDriver for Bridge {
    async fn create(
        &self,
        req: Request<pb::ResourceCreateRequest>,
    ) -> Reply<pb::ResourceCreateResponse> {
        let req = req.into_inner();
        self.check_type(&req.resource_type).await?;
        let mut spec = typed_spec(&req.resource_type, req.spec, "spec")?;
        self.prepare_spec(&mut spec)?;
        let mut g = self.guest().await?;
        let out = self.finish(g.get().create(&spec).await)?;
        drop(g);
        self.learn_broker(&spec.name, &spec.resource_type, &out.outputs_json);
        Ok(Response::new(pb::ResourceCreateResponse {
            output: Some(convert::output_out(out)),
        }))
    }

    async fn read(&self, req: Request<pb::ResourceReadRequest>) -> Reply<pb::ResourceReadResponse> {
        let req = req.into_inner();
        self.check_type(&req.resource_type).await?;
        let r = typed_ref(&req.resource_type, req.r#ref)?;
        self.learn_refs(std::slice::from_ref(&r)).await;
        let mut g = self.guest().await?;
        let out = self.finish(g.get().read(&r).await)?;
        drop(g);
        self.learn_broker(&r.name, &r.resource_type, &out.outputs_json);
        Ok(Response::new(pb::ResourceReadResponse {
            output: Some(convert::output_out(out)),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::ResourceUpdateRequest>,
    ) -> Reply<pb::ResourceUpdateResponse> {
        let req = req.into_inner();
        self.check_type(&req.resource_type).await?;
        let r = typed_ref(&req.resource_type, req.r#ref)?;
        let mut spec = typed_spec(&req.resource_type, req.spec, "spec")?;
        self.prepare_spec(&mut spec)?;
        let mut g = self.guest().await?;
        let out = self.finish(g.get().update(&r, &spec).await)?;
        drop(g);
        self.learn_broker(&spec.name, &spec.resource_type, &out.outputs_json);
        Ok(Response::new(pb::ResourceUpdateResponse {
            output: Some(convert::output_out(out)),
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::ResourceDeleteRequest>,
    ) -> Reply<pb::ResourceDeleteResponse> {
        let req = req.into_inner();
        self.check_type(&req.resource_type).await?;
        let r = typed_ref(&req.resource_type, req.r#ref)?;
        self.learn_refs(std::slice::from_ref(&r)).await;
        let mut g = self.guest().await?;
        self.finish(g.get().delete(&r).await)?;
        drop(g);
        self.forget_broker(&r.name, &r.resource_type);
        Ok(Response::new(pb::ResourceDeleteResponse {}))
    }

    async fn diff(&self, req: Request<pb::ResourceDiffRequest>) -> Reply<pb::ResourceDiffResponse> {
        let req = req.into_inner();
        self.check_type(&req.resource_type).await?;
        let mut desired = typed_spec(&req.resource_type, req.desired, "desired")?;
        self.prepare_spec(&mut desired)?;
        let current = convert::output_in(req.current.ok_or_else(|| missing("current"))?)?;
        let name = if current.name.is_empty() {
            desired.name.clone()
        } else {
            current.name.clone()
        };
        self.learn_broker(&name, &req.resource_type, &current.outputs_json);
        let mut g = self.guest().await?;
        let d = self.finish(g.get().diff(&desired, &current).await)?;
        Ok(Response::new(pb::ResourceDiffResponse {
            result: Some(convert::diff_out(d)),
        }))
    }

    async fn scale(
        &self,
        req: Request<pb::ResourceScaleRequest>,
    ) -> Reply<pb::ResourceScaleResponse> {
        let req = req.into_inner();
        self.check_type(&req.resource_type).await?;
        let r = typed_ref(&req.resource_type, req.r#ref)?;
        let mut g = self.guest().await?;
        let out = self.finish(g.get().scale(&r, req.replicas).await)?;
        Ok(Response::new(pb::ResourceScaleResponse {
            output: Some(convert::output_out(out)),
        }))
    }

    async fn health_check(
        &self,
        req: Request<pb::ResourceHealthCheckRequest>,
    ) -> Reply<pb::ResourceHealthCheckResponse> {
        let req = req.into_inner();
        self.check_type(&req.resource_type).await?;
        let r = typed_ref(&req.resource_type, req.r#ref)?;
        let mut g = self.guest().await?;
        let h = self.finish(g.get().health_check(&r).await)?;
        Ok(Response::new(pb::ResourceHealthCheckResponse {
            result: Some(convert::health_out(h)),
        }))
    }

    async fn sensitive_keys(
        &self,
        req: Request<pb::SensitiveKeysRequest>,
    ) -> Reply<pb::SensitiveKeysResponse> {
        let req = req.into_inner();
        self.check_type(&req.resource_type).await?;
        let mut g = self.guest().await?;
        let keys = self.finish(g.get().sensitive_keys(&req.resource_type).await)?;
        Ok(Response::new(pb::SensitiveKeysResponse { keys }))
    }

    async fn troubleshoot(
        &self,
        req: Request<pb::TroubleshootRequest>,
    ) -> Reply<pb::TroubleshootResponse> {
        let req = req.into_inner();
        self.check_type(&req.resource_type).await?;
        let r = typed_ref(&req.resource_type, req.r#ref)?;
        let mut g = self.guest().await?;
        let d = self.finish(g.get().troubleshoot(&r, &req.failure_msg).await)?;
        Ok(Response::new(pb::TroubleshootResponse {
            diagnostics: d.into_iter().map(convert::diagnostic_out).collect(),
        }))
    }
}

impl Bridge {
    async fn drift(
        &self,
        refs: Vec<pb::ResourceRef>,
        specs: Vec<wit::ResourceSpec>,
    ) -> Result<Vec<pb::DriftResult>, Status> {
        let refs: Vec<wit::ResourceRef> = refs.into_iter().map(convert::ref_in).collect();
        self.learn_refs(&refs).await;
        let mut specs = specs;
        for s in &mut specs {
            self.prepare_spec(s)?;
        }
        let mut g = self.guest().await?;
        let d = self.finish(g.get().detect_drift(&refs, &specs).await)?;
        Ok(d.into_iter().map(convert::drift_out).collect())
    }
}

#[tonic::async_trait]
impl IaCProviderDriftDetector for Bridge {
    async fn detect_drift(
        &self,
        req: Request<pb::DetectDriftRequest>,
    ) -> Reply<pb::DetectDriftResponse> {
        let drifts = self.drift(req.into_inner().refs, vec![]).await?;
        Ok(Response::new(pb::DetectDriftResponse { drifts }))
    }

    async fn detect_drift_with_specs(
        &self,
        req: Request<pb::DetectDriftWithSpecsRequest>,
    ) -> Reply<pb::DetectDriftWithSpecsResponse> {
        let req = req.into_inner();
        let drifts = self
            .drift(req.refs, convert::spec_map_in(req.specs)?)
            .await?;
        Ok(Response::new(pb::DetectDriftWithSpecsResponse { drifts }))
    }
}

#[tonic::async_trait]
impl IaCProviderDriftConfigDetector for Bridge {
    async fn detect_drift_config(
        &self,
        req: Request<pb::DetectDriftConfigRequest>,
    ) -> Reply<pb::DetectDriftConfigResponse> {
        let req = req.into_inner();
        let drifts = self
            .drift(req.refs, convert::spec_map_in(req.specs)?)
            .await?;
        Ok(Response::new(pb::DetectDriftConfigResponse { drifts }))
    }
}

/// Nothing is deferred to the end of an apply: every action is complete when its driver call
/// returns, so finalizing reports no errors (with status OK, as wfctl requires).
#[tonic::async_trait]
impl IaCProviderFinalizer for Bridge {
    async fn finalize_apply(
        &self,
        req: Request<pb::FinalizeApplyRequest>,
    ) -> Reply<pb::FinalizeApplyResponse> {
        tracing::debug!(plan_id = %req.into_inner().plan_id, "finalize apply: nothing deferred");
        Ok(Response::new(pb::FinalizeApplyResponse { errors: vec![] }))
    }
}

/// `workflow.plugin.v1.PluginService`: the contract registry; every other method of that
/// service is absent and so answers Unimplemented.
pub struct Registry {
    pub services: Vec<String>,
}

#[tonic::async_trait]
impl plugin_v1::plugin_service_server::PluginService for Registry {
    async fn get_contract_registry(&self, _: Request<()>) -> Reply<plugin_v1::ContractRegistry> {
        let mut names: Vec<&String> = self
            .services
            .iter()
            .filter(|s| s.starts_with("workflow.plugin.external.iac."))
            .collect();
        names.sort();
        names.dedup();
        let contracts = names
            .into_iter()
            .map(|n| plugin_v1::ContractDescriptor {
                kind: plugin_v1::ContractKind::Service as i32,
                service_name: n.clone(),
                mode: plugin_v1::ContractMode::StrictProto as i32,
            })
            .collect();
        let fds = <prost_types::FileDescriptorSet as prost::Message>::decode(
            super::proto::DESCRIPTOR_SET,
        )
        .ok();
        Ok(Response::new(plugin_v1::ContractRegistry {
            contracts,
            file_descriptor_set: fds,
        }))
    }
}

/// go-plugin's controller: Shutdown makes the process exit promptly.
pub struct Controller {
    pub shutdown: Arc<tokio::sync::watch::Sender<bool>>,
}

#[tonic::async_trait]
impl go_plugin::grpc_controller_server::GrpcController for Controller {
    async fn shutdown(&self, _: Request<go_plugin::Empty>) -> Reply<go_plugin::Empty> {
        tracing::info!("shutdown requested by the plugin client");
        let _ = self.shutdown.send(true);
        Ok(Response::new(go_plugin::Empty {}))
    }
}
