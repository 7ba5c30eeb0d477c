//! `strata agent`: one stateless agent as its own process, talking to a
//! remote catalog over gRPC and to S3 or a directory for data.

use std::sync::Arc;

use anyhow::Context;
use strata_agent::{Agent, FaultControl, FaultInjectingStore};
use strata_catalog_api::GrpcCatalog;
use tracing::{info, warn};

use crate::cli::AgentArgs;
use crate::config::{AgentSettings, ConfigFile, S3Settings};

/// Runs the agent until SIGTERM or Ctrl-C, then flushes and commits every
/// buffered write before it exits.
pub(crate) async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let file = ConfigFile::load(args.config.as_deref())?;
    let limits = args.limits.or(file.agent_limits);
    let settings = AgentSettings::resolve(args.agent.or(file.agent), &limits)?;
    let s3 = S3Settings::resolve(args.s3.or(file.s3));
    if args.check_config {
        let printed = format!("{settings:#?}");
        return crate::catalog_cmd::check_store_config(&settings.object_store, &s3, &printed);
    }
    info!(?settings, ?s3, "starting the agent");

    let mut store = settings.object_store.open(&s3)?;
    let faults = settings.fault_injection.then(FaultControl::new);
    if let Some(control) = &faults {
        warn!(
            "FAULT INJECTION IS ON (--fault-injection): object-store calls obey PUT /faults on \
             the metrics endpoint; never use this in production"
        );
        store = Arc::new(FaultInjectingStore::new(store, control.clone()));
    }
    let catalog = GrpcCatalog::connect_lazy(&settings.catalog).with_context(|| {
        format!(
            "invalid catalog endpoint `{}`: use http://host:port",
            settings.catalog
        )
    })?;
    let agent = Agent::start(settings.agent.clone(), Arc::new(catalog), store).await?;
    let http = crate::http::Endpoint::start(
        settings.metrics_listen,
        "--metrics-listen",
        crate::http::Routes::metrics(Arc::new(Agent::metrics_renderer(&[&agent])))
            .with_readiness(Arc::new(agent.readiness()))
            .with_faults(faults.map(|f| Arc::new(f) as Arc<dyn crate::http::FaultSwitch>)),
    )
    .await?;
    info!(
        kafka = %agent.local_addr(),
        catalog = %settings.catalog,
        object_store = %settings.object_store,
        metrics = %settings.metrics_listen,
        "the agent is ready"
    );

    crate::shutdown::signal().await;
    info!("shutting down: flushing buffered writes");
    agent.shutdown().await;
    http.stop().await;
    info!("bye");
    Ok(())
}
